"""W1's Python-side cost in instructions, which a busy machine cannot blur.

    python -m bench.callgrind_w1 [SRC ...]    # each SRC: a checkout's src/ (default: ours)

Bulk reads (W1) spend most of their time in the kernel's copy, so on a shared machine their
time ratio moves by +-30% between runs and cannot tell two versions of the read path apart.
valgrind's callgrind counts the user-space instructions instead (the kernel's copy is not
counted): a socketpair with 1 MiB written ahead, read back in 64 KiB ``read_sequence`` calls
that each find their bytes there.  The count of a short and a long run are subtracted, so
start-up and imports cancel out; the result is instructions per 64 KiB read, for
``socket.recv_into`` (the floor) and for sockstream from each SRC.  Needs valgrind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CHUNK = 65536
SHORT, LONG = 16, 272  # rounds of 16 reads each

_CHILD = r"""
import socket, sys
mode, rounds = sys.argv[1], int(sys.argv[2])
CHUNK = 65536
a, b = socket.socketpair()
for s in (a, b):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
data = b"x" * (16 * CHUNK)
buf = bytearray(CHUNK)
if mode == "recv":
    read = a.recv_into
else:
    import sockstream
    stream = sockstream.SocketStream(a, "io", "unsigned-byte-8")  # (kept: a dropped stream closes)
    read = stream.read_sequence
for _ in range(rounds):
    b.sendall(data)
    for _ in range(16):
        assert read(buf) == CHUNK
"""


def callgrind_total(child: str, args: list[str], src: str | None) -> int:
    """The instructions that ``python -c child *args`` runs under callgrind (``src`` first on
    ``PYTHONPATH``): start-up included, so callers subtract a short run from a long one."""
    env = dict(os.environ)
    # One string hash for every run: with random ones a count moves by a few percent between
    # runs (dict and set layouts), which would blur an A/B of a few instructions a line.
    env.setdefault("PYTHONHASHSEED", "0")
    if src is not None:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            child,
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    m = re.search(r"Collected : (\d+)", out)
    if m is None:
        raise RuntimeError(f"no callgrind total in: {out[-500:]}")
    return int(m.group(1))


def _count(mode: str, rounds: int, src: str | None) -> int:
    return callgrind_total(_CHILD, [mode, str(rounds)], src)


def per_read(mode: str, src: str | None) -> float:
    """Instructions per 64 KiB read of ``mode`` ("recv" or "ss")."""
    return (_count(mode, LONG, src) - _count(mode, SHORT, src)) / ((LONG - SHORT) * 16)


def main(argv: list[str]) -> int:
    srcs = argv or [str(Path(__file__).resolve().parent.parent / "src")]
    print(f"socket.recv_into: {per_read('recv', srcs[0]):,.0f} instructions per 64 KiB read")
    for src in srcs:
        print(f"sockstream read_sequence ({src}): {per_read('ss', src):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

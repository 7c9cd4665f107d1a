"""W8's cost in instructions per reply, which a busy machine cannot blur.

    python -m bench.callgrind_w8 [SRC ...]    # each SRC: a checkout's src/ (default: ours)

The W8 parser (``bench/w8_framing.py``: ``readline`` of a ``$<n>\\r\\n`` header, then a read
of ``n + 2`` bytes) over a socketpair with a block of 1,000 RESP replies written ahead each
round, counted by valgrind's callgrind (user-space instructions; the kernel's copy is not
counted).  The counts of a short and a long run are subtracted, so start-up and imports cancel
out.  Rows: ``makefile('rb')`` (the anchor), then for each SRC sockstream ``readline`` +
``read(n + 2)``, ``readline`` + ``read_sequence(bytearray(n + 2))`` and the same into one kept
buffer (``read_sequence(kept, 0, n + 2)``, "into_one"); the implementation is
whatever the environment picks (``SOCKSTREAM_PUREPYTHON=1``: pure Python).  Needs valgrind.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .callgrind_w1 import callgrind_total

SHORT, LONG = 4, 24  # rounds of 1,000 replies each
REPLIES = 1000

_CHILD = r"""
import socket, sys
sys.path.insert(0, sys.argv[3])
from bench.sender import resp_block
mode, rounds = sys.argv[1], int(sys.argv[2])
a, b = socket.socketpair()
for s in (a, b):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
block = resp_block()
if mode == "makefile":
    f = a.makefile("rb")
    readline, read = f.readline, f.read
    body = lambda n: len(read(n)) - n
else:
    import sockstream
    stream = sockstream.SocketStream(a, "io", "unsigned-byte-8")  # (kept: a dropped stream closes)
    readline = stream.readline
    if mode == "read":
        read = stream.read
        body = lambda n: len(read(n)) - n
    elif mode == "into_one":
        read_sequence, kept = stream.read_sequence, bytearray(65536)
        body = lambda n: read_sequence(kept, 0, n) - n
    else:
        read_sequence = stream.read_sequence
        body = lambda n: read_sequence(bytearray(n)) - n
for _ in range(rounds):
    b.sendall(block)
    for _ in range(1000):
        assert body(int(readline()[1:-2]) + 2) == 0
"""


def _count(mode: str, rounds: int, src: str | None) -> int:
    root = str(Path(__file__).resolve().parent.parent)
    return callgrind_total(_CHILD, [mode, str(rounds), root], src)


def per_reply(mode: str, src: str | None) -> float:
    """Instructions per reply of ``mode`` ("makefile", "read", "read_sequence", "into_one")."""
    return (_count(mode, LONG, src) - _count(mode, SHORT, src)) / ((LONG - SHORT) * REPLIES)


def main(argv: list[str]) -> int:
    srcs = argv or [str(Path(__file__).resolve().parent.parent / "src")]
    anchor = per_reply("makefile", srcs[0])
    print(f"makefile('rb') readline + read: {anchor:,.0f} instructions per reply")
    for src in srcs:
        for mode in ("read", "read_sequence", "into_one"):
            n = per_reply(mode, src)
            print(f"sockstream readline + {mode} ({src}): {n:,.0f} ({anchor / n:.2f} of makefile)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

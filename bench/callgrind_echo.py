"""The echo server's user-space cost per round trip in instructions (issue 16's echo goal).

    python -m bench.callgrind_echo [SRC ...]    # each SRC: a checkout's src/ (default: ours)

``python -m bench.serving echo`` is dominated by system time and GIL hand-overs on a 2-core
machine, and moves by +-20% between runs on a shared one.  This counts what the server runs in
user space per round trip instead (valgrind's callgrind; the kernel is not counted): the server
(``sockstream.serve`` with the bench's echo handler, or ``socketserver.ThreadingTCPServer`` with
its ``StreamRequestHandler``) runs under valgrind; one client in this process (not counted)
makes round trips of 64-byte lines on one connection.  The counts of a short and a long run are
subtracted, so start-up, imports and the accept cancel out.  Needs valgrind.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = b"x" * 63 + b"\n"
SHORT, LONG = 500, 4500

_SERVER = r"""
import socket, sys, threading
sys.path.insert(0, sys.argv[2])
from bench.serving import _Handler, _Server, _echo
kind = sys.argv[1]
if kind == "sockstream":
    import sockstream
    srv = sockstream.serve(_echo, address="127.0.0.1", max_connections=4)
    port, stop = srv.port, srv.terminate
else:
    ss = _Server(("127.0.0.1", 0), _Handler)
    port = ss.server_address[1]
    t = threading.Thread(target=ss.serve_forever, daemon=True)
    t.start()
    def stop():
        ss.shutdown()
        ss.server_close()
print(port, flush=True)
sys.stdin.readline()
stop()
"""


def _count(kind: str, rounds: int, src: str) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = src
    p = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            "-c",
            _SERVER,
            kind,
            str(ROOT),
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    port = int(p.stdout.readline())
    with socket.create_connection(("127.0.0.1", port), timeout=120) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = c.makefile("rb")
        for _ in range(rounds):
            c.sendall(LINE)
            if f.readline() != LINE:
                raise RuntimeError("bad echo")
        f.close()
    _, err = p.communicate("stop\n", timeout=300)
    m = re.search(r"Collected : (\d+)", err)
    if m is None:
        raise RuntimeError(f"no callgrind total in: {err[-500:]}")
    return int(m.group(1))


def per_round_trip(kind: str, src: str) -> float:
    """Instructions the server runs per echo round trip (``kind``: sockstream or socketserver)."""
    return (_count(kind, LONG, src) - _count(kind, SHORT, src)) / (LONG - SHORT)


def main(argv: list[str]) -> int:
    srcs = argv or [str(ROOT / "src")]
    anchor = per_round_trip("socketserver", srcs[0])
    print(f"socketserver StreamRequestHandler: {anchor:,.0f} instructions per round trip")
    for src in srcs:
        ours = per_round_trip("sockstream", src)
        print(f"sockstream serve ({src}): {ours:,.0f} ({ours / anchor:.2f}x socketserver's)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

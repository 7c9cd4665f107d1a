"""W4's and W9's CRLF row in instructions, which a busy machine cannot blur.

    python -m bench.callgrind_text [--case NAME,...] [SRC ...]   # SRC: a checkout's src/

As ``callgrind_w1``: valgrind's callgrind counts the user-space instructions of a short and a
long run, subtracted (start-up and imports cancel out), per unit of work, over a socketpair
served in the same thread (no second process, no clock).  Cases:

* ``crlf`` / ``crlf_mf``: a 40-byte CRLF line, ``read_line`` on a stream with
  ``newline="\\r\\n"`` / ``makefile('r', encoding='latin-1', newline='\\r\\n').readline``
  (64,000 bytes sent per round, then read back to the last line of the round);
* ``rb`` / ``rb_limit`` / ``rb_mf``: a 40-byte LF line, ``readline`` on an ``unsigned-byte-8``
  stream (with ``max_line_length=65536``: W2's limit row) / ``makefile('rb').readline``, as
  W2's bytes rows (same rounds);
* ``ws`` / ``ws_utf8`` / ``wseq`` / ``w_mf``: a 40-byte write, ``write_string`` (Latin-1,
  UTF-8), ``write_sequence``, ``makefile('wb').write``; 16,000 per round, drained after.

The implementation is the one ``sockstream`` picks (``SOCKSTREAM_PUREPYTHON=1``: pure).  Needs
valgrind.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .callgrind_w1 import callgrind_total

SHORT, LONG = 4, 36  # rounds
PER_ROUND = {
    "crlf": 1600,
    "crlf_mf": 1600,
    "lf": 1600,
    "rb": 1600,
    "rb_limit": 1600,
    "rb_mf": 1600,
}
WRITES = 16000

_CHILD = r"""
import socket, sys


def main():
    case, rounds = sys.argv[1], int(sys.argv[2])
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    LINE = b"sockstream benchmark line: 0123456789a\r\n"
    if case == "lf" or case.startswith("rb"):
        LINE = b"sockstream benchmark line: 0123456789ab\n"
    if case.startswith("rb"):
        data = LINE * 1600
        if case == "rb_mf":
            read = a.makefile("rb").readline
        else:
            import sockstream
            kw = {"max_line_length": 65536} if case == "rb_limit" else {}
            stream = sockstream.SocketStream(a, "io", "unsigned-byte-8", **kw)
            read = stream.readline
        for _ in range(rounds):
            b.sendall(data)
            for _ in range(1600):
                read()
    elif case.startswith("crlf") or case == "lf":
        data = LINE * 1600
        if case == "crlf_mf":
            f = a.makefile("r", encoding="latin-1", newline="\r\n")
            read = f.readline
            for _ in range(rounds):
                b.sendall(data)
                for _ in range(1600):
                    read()
        else:
            import sockstream
            nl = "\n" if case == "lf" else "\r\n"
            stream = sockstream.SocketStream(a, "io", "base-char", newline=nl)
            read = stream.read_line
            for _ in range(rounds):
                b.sendall(data)
                for _ in range(1600):
                    read()
    else:
        b.setblocking(False)
        sink = bytearray(1 << 20)
        line = b"sockstream benchmark line: 0123456789ab\n"
        if case == "w_mf":
            f = a.makefile("wb")
            write = f.write
            flush = f.flush
        else:
            import sockstream
            if case == "wseq":
                stream = sockstream.SocketStream(a, "io", "unsigned-byte-8")
                write = stream.write_sequence
            else:
                enc = "utf-8" if case == "ws_utf8" else "latin-1"
                stream = sockstream.SocketStream(a, "io", "base-char", encoding=enc)
                write = stream.write_string
                line = line.decode()
            flush = stream.force_output
        for _ in range(rounds):
            for _ in range(16000):
                write(line)
            flush()
            while True:
                try:
                    b.recv_into(sink)
                except BlockingIOError:
                    break


main()
"""


def _count(case: str, rounds: int, src: str | None) -> int:
    return callgrind_total(_CHILD, [case, str(rounds)], src)


def per_unit(case: str, src: str | None) -> float:
    """Instructions per line read or write made of ``case``."""
    unit = PER_ROUND.get(case, WRITES)
    return (_count(case, LONG, src) - _count(case, SHORT, src)) / ((LONG - SHORT) * unit)


def main(argv: list[str]) -> int:
    cases = ["crlf_mf", "crlf", "rb_mf", "rb", "rb_limit", "w_mf", "ws", "ws_utf8", "wseq"]
    if argv[:1] == ["--case"]:
        cases = argv[1].split(",")
        argv = argv[2:]
    srcs = argv or [str(Path(__file__).resolve().parent.parent / "src")]
    for case in cases:
        for src in srcs if not case.endswith("_mf") else srcs[:1]:
            print(f"{case:8} {src}: {per_unit(case, src):,.0f} instructions", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

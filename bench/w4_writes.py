"""W4 small writes: millions of 40-byte writes, flushed at the end.

Here the measuring process writes and the sender drains.  The clock runs from the first write to
the sender's acknowledgement that it received every byte (it answers the count after our
half-close), so a writer cannot look fast by leaving data in its own buffer.
sockstream `write_string` (str, base-char) and `write_sequence` (bytes, unsigned-byte-8) against
`socket.makefile('wb').write`.  Goal: >= 0.95 of makefile (issue 14, pure Python; 1.2 with the
C extension).
"""

from __future__ import annotations

import socket
import time

from ._harness import Case, Env, Ratio, check
from .sender import LINE, LINE_LEN

LINE_STR = LINE.decode("latin-1")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _makefile(env: Env) -> float:
    n_writes = env.sizes["W4"]
    with env.peer("drain") as sock, sock.makefile("wb") as f:
        write = f.write
        line = LINE
        t0 = time.perf_counter()
        for _ in range(n_writes):
            write(line)
        f.flush()
        sock.shutdown(socket.SHUT_WR)
        ack = _recv_exact(sock, 8)
        elapsed = time.perf_counter() - t0
    check(int.from_bytes(ack, "big"), n_writes * LINE_LEN, "bytes drained")
    return elapsed


def _ss(env: Env, element_type: str, method: str) -> float:
    ss = env.ss()
    n_writes = env.sizes["W4"]
    with env.peer("drain") as sock:
        stream = ss.SocketStream(sock, "io", element_type)
        with stream:
            write = getattr(stream, method)
            line = LINE_STR if method == "write_string" else LINE
            ack = bytearray(8)
            t0 = time.perf_counter()
            for _ in range(n_writes):
                write(line)
            stream.shutdown_output()  # flush, then half-close
            got = stream.read_sequence(ack)
            elapsed = time.perf_counter() - t0
    check(got, 8, "acknowledgement bytes")
    check(int.from_bytes(ack, "big"), n_writes * LINE_LEN, "bytes drained")
    return elapsed


def _ss_write_string(env: Env) -> float:
    return _ss(env, "base-char", "write_string")


def _ss_write_sequence(env: Env) -> float:
    return _ss(env, "unsigned-byte-8", "write_sequence")


TITLE = "40-byte writes, flushed at the end"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W4']:,} writes"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    n = env.sizes["W4"]
    cases = [
        Case(
            "W4.ss_write_string",
            "sockstream write_string (str, base-char)",
            "sockstream",
            _ss_write_string,
            n,
            "writes",
        ),
        Case(
            "W4.ss_write_sequence",
            "sockstream write_sequence (bytes, unsigned-byte-8)",
            "sockstream",
            _ss_write_sequence,
            n,
            "writes",
        ),
        Case("W4.makefile_wb", "makefile('wb').write", "anchor", _makefile, n, "writes"),
    ]
    ratios = [
        Ratio("write_string / makefile('wb').write", "W4.ss_write_string", "W4.makefile_wb", 0.95),
        Ratio(
            "write_sequence / makefile('wb').write", "W4.ss_write_sequence", "W4.makefile_wb", 0.95
        ),
    ]
    return cases, ratios

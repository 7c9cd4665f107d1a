"""W8 framing: lines mixed with binary payloads (a RESP-style reply parser).

Each reply is a header line ``$<n>\\r\\n`` and a body of ``n`` bytes plus ``\\r\\n``, as Redis
bulk strings (memcached ``VALUE`` lines and PostgreSQL COPY rows have the same shape).  The
same parser function runs on both sides: ``readline`` of the header, then a read of ``n + 2``
bytes -- sockstream ``readline`` + ``read_sequence(bytearray(n + 2))`` on an unsigned-byte-8
stream, the same into one buffer made before the clock (``read_sequence(kept, 0, n + 2)``: how
read_sequence is meant to be used, and without a type call per reply that only our side would
pay), and sockstream ``readline`` + ``read(n + 2)`` (the anchor's very calls), against
``makefile('rb')``'s ``readline`` + ``read(n + 2)``.  (The ``bytearray(n + 2)`` that
``read_sequence`` fills is a type call of its own, about half of what sockstream's side of a
reply costs in C; ``read(n)`` makes the bytes in its one call, as makefile's does.)
Goal (issue 11, pure Python): >= 0.6 of makefile; issue 14's row is ``readline`` + ``read(n)``
(>= 1.2 with the extension, >= 0.6 pure).  In pure Python ``read(n)`` is served by the same byte
window as ``readline`` (docs/accel.md); ``python -m bench.callgrind_w8`` counts a reply's
instructions on each side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._harness import Case, Env, Ratio, check
from .sender import RESP_REPLIES_PER_BLOCK, resp_block

_BLOCK_LEN = len(resp_block())


def _total(env: Env) -> int:
    blocks = max(1, int(env.sizes["W8"]) // RESP_REPLIES_PER_BLOCK)
    return blocks * _BLOCK_LEN


def _replies(env: Env) -> int:
    return _total(env) // _BLOCK_LEN * RESP_REPLIES_PER_BLOCK


def parse(readline: Callable[[], bytes], read_body: Callable[[int], int]) -> int:
    """Read replies until end-of-file; the number read.  The same code for every stream."""
    n = 0
    while True:
        header = readline()
        if not header:
            return n
        if read_body(int(header[1:-2]) + 2) < 0:
            raise ValueError("short body")
        n += 1


def _makefile(env: Env) -> float:
    with env.peer("send", pattern="resp", total=_total(env)) as sock, sock.makefile("rb") as f:
        read = f.read

        def body(size: int) -> int:
            return len(read(size)) - size

        t0 = time.perf_counter()
        sock.sendall(b"g")
        n = parse(f.readline, body)
        elapsed = time.perf_counter() - t0
    check(n, _replies(env), "makefile('rb') replies")
    return elapsed


def _sockstream(env: Env, into_one: bool = False, **kw: Any) -> float:
    ss = env.ss()
    with env.peer("send", pattern="resp", total=_total(env)) as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8", **kw)
        with stream:
            read_sequence = stream.read_sequence
            kept = bytearray(65536)  # made before the clock: the bodies are at most 202 bytes

            def body(size: int) -> int:
                return read_sequence(bytearray(size)) - size

            def body_into_one(size: int) -> int:
                return read_sequence(kept, 0, size) - size

            if into_one:
                body = body_into_one

            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            n = parse(stream.readline, body)
            elapsed = time.perf_counter() - t0
    check(n, _replies(env), "sockstream replies")
    return elapsed


def _sockstream_read(env: Env) -> float:
    # The anchor's very calls: readline, then read(n + 2) (bytes), with the same body function.
    ss = env.ss()
    with env.peer("send", pattern="resp", total=_total(env)) as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8")
        with stream:
            read = stream.read

            def body(size: int) -> int:
                return len(read(size)) - size

            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            n = parse(stream.readline, body)
            elapsed = time.perf_counter() - t0
    check(n, _replies(env), "sockstream readline + read replies")
    return elapsed


def _ss_plain(env: Env) -> float:
    return _sockstream(env)


def _ss_limit(env: Env) -> float:
    return _sockstream(env, max_line_length=65536)


def _ss_into_one(env: Env) -> float:
    return _sockstream(env, into_one=True)


TITLE = "header line + binary payload (RESP-style replies)"


def describe_size(env: Env) -> str:
    return f"{_replies(env):,} replies"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    n = _replies(env)
    cases = [
        Case("W8.ss", "sockstream readline + read_sequence", "sockstream", _ss_plain, n, "replies"),
        Case(
            "W8.ss_limit",
            "sockstream, max_line_length=65536",
            "sockstream",
            _ss_limit,
            n,
            "replies",
        ),
        Case(
            "W8.ss_into",
            "sockstream readline + read_sequence(kept, 0, n + 2)",
            "sockstream",
            _ss_into_one,
            n,
            "replies",
        ),
        Case(
            "W8.ss_read", "sockstream readline + read", "sockstream", _sockstream_read, n, "replies"
        ),
        Case("W8.makefile_rb", "makefile('rb') readline + read", "anchor", _makefile, n, "replies"),
    ]
    ratios = [
        Ratio("readline + read_sequence / makefile('rb')", "W8.ss", "W8.makefile_rb", 0.6),
        Ratio("with max_line_length / makefile('rb')", "W8.ss_limit", "W8.makefile_rb"),
        Ratio(
            "readline + read_sequence into one buffer / makefile('rb')",
            "W8.ss_into",
            "W8.makefile_rb",
            note="issue 14: >= 1.2 with the extension (no bytearray per reply on our side only)",
        ),
        # Issue 14's row "header line + payload": the anchor's very calls on both sides.
        Ratio(
            "readline + read / makefile('rb')",
            "W8.ss_read",
            "W8.makefile_rb",
            0.6,
            note="issue 14: >= 1.2 with the extension, >= 0.6 pure (read(n) from the byte window)",
        ),
    ]
    return cases, ratios

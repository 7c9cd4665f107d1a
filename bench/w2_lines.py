"""W2 lines: millions of 40-byte lines, read one line per call.

sockstream `read_line` (str, without the newline) and `readline` (str) on a base-char stream and
`readline` (bytes) on an unsigned-byte-8 stream, against `makefile('rb').readline`,
`makefile('r', encoding='latin-1', newline='').readline`, asyncio `StreamReader.readline` and anyio
`BufferedByteReceiveStream.receive_until`.  Every loop calls a bound method and counts, so the
Python loop overhead is the same for all.  Goals: >= 1.0 of makefile for str and bytes, >= 3x
asyncio.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from ._harness import Case, Env, Ratio, check
from .sender import LINE_LEN


def _total(env: Env) -> int:
    return int(env.sizes["W2"]) * LINE_LEN


def _makefile(env: Env, mode: str) -> float:
    n_lines = env.sizes["W2"]
    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        f: Any
        if mode == "rb":
            f = sock.makefile("rb")
        else:
            f = sock.makefile("r", encoding="latin-1", newline="")
        with f:
            readline = f.readline
            n = 0
            t0 = time.perf_counter()
            sock.sendall(b"g")
            while readline():
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_lines, f"makefile({mode!r}).readline lines")
    return elapsed


def _makefile_rb(env: Env) -> float:
    return _makefile(env, "rb")


def _makefile_r(env: Env) -> float:
    return _makefile(env, "r")


def _makefile_iter(env: Env, mode: str) -> float:
    n_lines = env.sizes["W2"]
    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        f: Any
        if mode == "rb":
            f = sock.makefile("rb")
        else:
            f = sock.makefile("r", encoding="latin-1", newline="")
        with f:
            n = 0
            t0 = time.perf_counter()
            sock.sendall(b"g")
            for _line in f:
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_lines, f"for line in makefile({mode!r}) lines")
    return elapsed


def _makefile_rb_iter(env: Env) -> float:
    return _makefile_iter(env, "rb")


def _makefile_r_iter(env: Env) -> float:
    return _makefile_iter(env, "r")


def _asyncio(env: Env) -> float:
    n_lines = env.sizes["W2"]

    async def go(sock: socket.socket) -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(sock=sock)
        readline = reader.readline
        n = 0
        t0 = time.perf_counter()
        writer.write(b"g")
        await writer.drain()
        while await readline():
            n += 1
        elapsed = time.perf_counter() - t0
        writer.close()
        await writer.wait_closed()
        return n, elapsed

    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        n, elapsed = asyncio.run(go(sock))
    check(n, n_lines, "asyncio readline lines")
    return elapsed


def _anyio(env: Env) -> float:
    import anyio
    import anyio.abc
    from anyio.streams.buffered import BufferedByteReceiveStream

    n_lines = env.sizes["W2"]

    async def go(sock: socket.socket) -> tuple[int, float]:
        stream = await anyio.abc.SocketStream.from_socket(sock)
        async with stream:
            buffered = BufferedByteReceiveStream(stream)
            receive_until = buffered.receive_until
            n = 0
            t0 = time.perf_counter()
            await stream.send(b"g")
            try:
                while True:
                    await receive_until(b"\n", 65536)
                    n += 1
            except (anyio.EndOfStream, anyio.IncompleteRead):
                pass
            elapsed = time.perf_counter() - t0
        return n, elapsed

    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        n, elapsed = anyio.run(go, sock, backend="asyncio")
    check(n, n_lines, "anyio receive_until lines")
    return elapsed


def _ss_read_line(env: Env) -> float:
    ss = env.ss()
    n_lines = env.sizes["W2"]
    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        stream = ss.SocketStream(sock, "io", "base-char")
        with stream:
            read_line = stream.read_line
            n = 0
            t0 = time.perf_counter()
            stream.write("g")
            stream.force_output()
            while True:
                _line, missing = read_line(False)
                if missing:  # every line of the data ends in "\n": only end-of-file is
                    break
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_lines, "read_line lines")
    return elapsed


def _ss_readline(env: Env, element_type: str, **kw: Any) -> float:
    ss = env.ss()
    n_lines = env.sizes["W2"]
    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        stream = ss.SocketStream(sock, "io", element_type, **kw)
        with stream:
            readline = stream.readline
            n = 0
            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            while readline():
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_lines, f"readline ({element_type}) lines")
    return elapsed


def _ss_iter(env: Env, element_type: str) -> float:
    ss = env.ss()
    n_lines = env.sizes["W2"]
    with env.peer("send", pattern="lines", total=_total(env)) as sock:
        stream = ss.SocketStream(sock, "io", element_type)
        with stream:
            n = 0
            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            for _line in stream:
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_lines, f"for line in stream ({element_type}) lines")
    return elapsed


def _ss_iter_str(env: Env) -> float:
    return _ss_iter(env, "base-char")


def _ss_iter_bytes(env: Env) -> float:
    return _ss_iter(env, "unsigned-byte-8")


def _ss_readline_str(env: Env) -> float:
    return _ss_readline(env, "base-char")


def _ss_readline_bytes(env: Env) -> float:
    return _ss_readline(env, "unsigned-byte-8")


def _ss_readline_bytes_limit(env: Env) -> float:
    # serve's default limit: it must cost nothing measurable (issue 11, defect 6).
    return _ss_readline(env, "unsigned-byte-8", max_line_length=65536)


TITLE = "40-byte lines, one per call"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W2']:,} lines"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    n = env.sizes["W2"]
    cases = [
        Case(
            "W2.ss_read_line", "sockstream read_line (str)", "sockstream", _ss_read_line, n, "lines"
        ),
        Case(
            "W2.ss_readline_str",
            "sockstream readline (str, base-char)",
            "sockstream",
            _ss_readline_str,
            n,
            "lines",
        ),
        Case(
            "W2.ss_readline_bytes",
            "sockstream readline (bytes, unsigned-byte-8)",
            "sockstream",
            _ss_readline_bytes,
            n,
            "lines",
        ),
        Case(
            "W2.ss_readline_bytes_limit",
            "sockstream readline (bytes), max_line_length=65536",
            "sockstream",
            _ss_readline_bytes_limit,
            n,
            "lines",
        ),
        Case("W2.makefile_rb", "makefile('rb').readline", "anchor", _makefile_rb, n, "lines"),
        Case(
            "W2.makefile_r",
            "makefile('r', encoding='latin-1', newline='').readline",
            "anchor",
            _makefile_r,
            n,
            "lines",
        ),
        Case(
            "W2.ss_iter_str",
            "for line in stream (str, base-char)",
            "sockstream",
            _ss_iter_str,
            n,
            "lines",
        ),
        Case(
            "W2.ss_iter_bytes",
            "for line in stream (bytes, unsigned-byte-8)",
            "sockstream",
            _ss_iter_bytes,
            n,
            "lines",
        ),
        Case(
            "W2.makefile_rb_iter",
            "for line in makefile('rb')",
            "anchor",
            _makefile_rb_iter,
            n,
            "lines",
        ),
        Case(
            "W2.makefile_r_iter",
            "for line in makefile('r', encoding='latin-1', newline='')",
            "anchor",
            _makefile_r_iter,
            n,
            "lines",
        ),
        Case("W2.asyncio", "asyncio StreamReader.readline", "anchor", _asyncio, n, "lines"),
        Case(
            "W2.anyio",
            "anyio BufferedByteReceiveStream.receive_until",
            "anchor",
            _anyio,
            n,
            "lines",
        ),
    ]
    ratios = [
        Ratio("read_line (str) / makefile('r').readline", "W2.ss_read_line", "W2.makefile_r", 1.0),
        Ratio(
            "readline (str) / makefile('r').readline", "W2.ss_readline_str", "W2.makefile_r", 1.0
        ),
        Ratio(
            "readline (bytes) / makefile('rb').readline",
            "W2.ss_readline_bytes",
            "W2.makefile_rb",
            1.0,
        ),
        Ratio(
            "for line in stream (str) / for line in makefile('r')",
            "W2.ss_iter_str",
            "W2.makefile_r_iter",
            1.0,
        ),
        Ratio(
            "for line in stream (bytes) / for line in makefile('rb')",
            "W2.ss_iter_bytes",
            "W2.makefile_rb_iter",
            1.0,
        ),
        Ratio("read_line (str) / asyncio readline", "W2.ss_read_line", "W2.asyncio", 3.0),
        Ratio("readline (bytes) / asyncio readline", "W2.ss_readline_bytes", "W2.asyncio", 3.0),
        Ratio("readline (bytes) / anyio receive_until", "W2.ss_readline_bytes", "W2.anyio"),
        Ratio(
            "readline (bytes), max_line_length / makefile('rb').readline",
            "W2.ss_readline_bytes_limit",
            "W2.makefile_rb",
            note="issue 14: >= 1.5 with the extension, >= 0.7 pure",
        ),
        Ratio(
            "readline (bytes), max_line_length / without",
            "W2.ss_readline_bytes_limit",
            "W2.ss_readline_bytes",
            0.95,
        ),
    ]
    return cases, ratios

"""W9 text: UTF-8 lines, CRLF lines and header blocks, one per call.

sockstream `read_line` on a stream with `encoding="utf-8"` against
`makefile('r', encoding='utf-8', newline='').readline` (lines with non-ASCII characters, where
decoding line by line only ties makefile); `read_line` with `newline="\\r\\n"` against
`makefile('r', encoding='latin-1', newline='\\r\\n').readline`; `read_until(b"\\r\\n\\r\\n")` of
200-byte header blocks against the `makefile('rb')` loop a user would write (lines until an
empty one).  Goals (issue 13): >= 1.0, >= 0.9 and >= 1.0.
"""

from __future__ import annotations

import time
from typing import Any

from ._harness import Case, Env, Ratio, check
from .sender import HEADER_BLOCK, TEXT_LINE_LEN

#: Header blocks per run: as many bytes as the W9 lines.
_HEADER_LEN = len(HEADER_BLOCK)


def _lines(env: Env) -> int:
    return int(env.sizes["W9"])


def _blocks(env: Env) -> int:
    return int(env.sizes["W9"]) * TEXT_LINE_LEN // _HEADER_LEN


def _makefile_lines(env: Env, pattern: str, **kw: Any) -> float:
    n_lines = _lines(env)
    with (
        env.peer("send", pattern=pattern, total=n_lines * TEXT_LINE_LEN) as sock,
        sock.makefile("r", **kw) as f,
    ):
        readline = f.readline
        n = 0
        t0 = time.perf_counter()
        sock.sendall(b"g")
        while readline():
            n += 1
        elapsed = time.perf_counter() - t0
    check(n, n_lines, f"makefile {kw} lines")
    return elapsed


def _ss_lines(env: Env, pattern: str, **kw: Any) -> float:
    ss = env.ss()
    n_lines = _lines(env)
    with env.peer("send", pattern=pattern, total=n_lines * TEXT_LINE_LEN) as sock:
        stream = ss.SocketStream(sock, "io", "base-char", **kw)
        with stream:
            read_line = stream.read_line
            n = 0
            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            while True:
                _line, missing = read_line(False)
                if missing:
                    break
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_lines, f"read_line {kw} lines")
    return elapsed


def _makefile_utf8(env: Env) -> float:
    return _makefile_lines(env, "utf8lines", encoding="utf-8", newline="")


def _ss_utf8(env: Env) -> float:
    return _ss_lines(env, "utf8lines", encoding="utf-8")


def _makefile_crlf(env: Env) -> float:
    return _makefile_lines(env, "crlflines", encoding="latin-1", newline="\r\n")


def _ss_crlf(env: Env) -> float:
    return _ss_lines(env, "crlflines", newline="\r\n")


def _makefile_headers(env: Env) -> float:
    n_blocks = _blocks(env)
    with (
        env.peer("send", pattern="headers", total=n_blocks * _HEADER_LEN) as sock,
        sock.makefile("rb") as f,
    ):
        readline = f.readline
        n = 0
        t0 = time.perf_counter()
        sock.sendall(b"g")
        while True:
            line = readline()
            if not line:
                break
            if line == b"\r\n":  # the end of one header block
                n += 1
        elapsed = time.perf_counter() - t0
    check(n, n_blocks, "makefile('rb') header blocks")
    return elapsed


def _ss_headers(env: Env) -> float:
    ss = env.ss()
    n_blocks = _blocks(env)
    with env.peer("send", pattern="headers", total=n_blocks * _HEADER_LEN) as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8")
        with stream:
            read_until = stream.read_until
            n = 0
            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            while True:
                _block, missing = read_until(b"\r\n\r\n", False)
                if missing:
                    break
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, n_blocks, "read_until header blocks")
    return elapsed


TITLE = "text: UTF-8 lines, CRLF lines, header blocks"


def describe_size(env: Env) -> str:
    lines, blocks = _lines(env), _blocks(env)
    return f"{lines:,} lines of {TEXT_LINE_LEN} bytes; {blocks:,} blocks of {_HEADER_LEN}"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    n = _lines(env)
    b = _blocks(env)
    cases = [
        Case(
            "W9.ss_utf8",
            "sockstream read_line (encoding='utf-8')",
            "sockstream",
            _ss_utf8,
            n,
            "lines",
        ),
        Case(
            "W9.makefile_utf8",
            "makefile('r', encoding='utf-8', newline='').readline",
            "anchor",
            _makefile_utf8,
            n,
            "lines",
        ),
        Case(
            "W9.ss_crlf",
            "sockstream read_line (newline='\\r\\n')",
            "sockstream",
            _ss_crlf,
            n,
            "lines",
        ),
        Case(
            "W9.makefile_crlf",
            "makefile('r', encoding='latin-1', newline='\\r\\n').readline",
            "anchor",
            _makefile_crlf,
            n,
            "lines",
        ),
        Case(
            "W9.ss_until",
            "sockstream read_until(b'\\r\\n\\r\\n') (bytes)",
            "sockstream",
            _ss_headers,
            b,
            "blocks",
        ),
        Case(
            "W9.makefile_headers",
            "makefile('rb').readline until an empty line",
            "anchor",
            _makefile_headers,
            b,
            "blocks",
        ),
    ]
    ratios = [
        Ratio("read_line (utf-8) / makefile utf-8 readline", "W9.ss_utf8", "W9.makefile_utf8", 1.0),
        Ratio(
            "read_line (CRLF) / makefile newline='\\r\\n' readline",
            "W9.ss_crlf",
            "W9.makefile_crlf",
            0.9,
        ),
        Ratio(
            "read_until header block / makefile('rb') line loop",
            "W9.ss_until",
            "W9.makefile_headers",
            1.0,
        ),
    ]
    return cases, ratios

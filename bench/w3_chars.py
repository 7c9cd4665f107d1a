"""W3 characters: megabytes read one `read_char` at a time.

sockstream `read_char` on a base-char stream against
`socket.makefile('r', encoding='latin-1').read(1)` (a TextIOWrapper, default newline handling).
Goal: >= 0.8 of makefile.
"""

from __future__ import annotations

import time

from ._harness import Case, Env, Ratio, check


def _makefile(env: Env) -> float:
    total = env.sizes["W3"]
    with (
        env.peer("send", pattern="lines", total=total) as sock,
        sock.makefile("r", encoding="latin-1") as f,
    ):
        read = f.read
        n = 0
        t0 = time.perf_counter()
        sock.sendall(b"g")
        while read(1):
            n += 1
        elapsed = time.perf_counter() - t0
    check(n, total, "makefile('r').read(1) characters")
    return elapsed


def _ss_read_char(env: Env) -> float:
    ss = env.ss()
    total = env.sizes["W3"]
    with env.peer("send", pattern="lines", total=total) as sock:
        stream = ss.SocketStream(sock, "io", "base-char")
        with stream:
            read_char = stream.read_char
            n = 0
            t0 = time.perf_counter()
            stream.write("g")
            stream.force_output()
            while read_char(False) is not None:
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, total, "read_char characters")
    return elapsed


def _ss_peek_read(env: Env) -> float:
    # A lexer's loop: look at the next character, then take it (two calls per character).
    ss = env.ss()
    total = env.sizes["W3"]
    with env.peer("send", pattern="lines", total=total) as sock:
        stream = ss.SocketStream(sock, "io", "base-char")
        with stream:
            peek_char, read_char = stream.peek_char, stream.read_char
            n = 0
            t0 = time.perf_counter()
            stream.write("g")
            stream.force_output()
            while peek_char(False) is not None:
                read_char()
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, total, "peek_char + read_char characters")
    return elapsed


def _ss_read_unread(env: Env) -> float:
    # A reader's loop: take a character, put it back, take it again (three calls per character).
    ss = env.ss()
    total = env.sizes["W3"]
    with env.peer("send", pattern="lines", total=total) as sock:
        stream = ss.SocketStream(sock, "io", "base-char")
        with stream:
            read_char, unread_char = stream.read_char, stream.unread_char
            n = 0
            t0 = time.perf_counter()
            stream.write("g")
            stream.force_output()
            while (char := read_char(False)) is not None:
                unread_char(char)
                read_char()
                n += 1
            elapsed = time.perf_counter() - t0
    check(n, total, "read_char + unread_char + read_char characters")
    return elapsed


TITLE = "one character per call"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W3'] / 1e6:g} MB"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    n = env.sizes["W3"]
    cases = [
        Case("W3.ss_read_char", "sockstream read_char", "sockstream", _ss_read_char, n, "chars"),
        Case(
            "W3.ss_peek_read",
            "sockstream peek_char + read_char",
            "sockstream",
            _ss_peek_read,
            n,
            "chars",
        ),
        Case(
            "W3.ss_read_unread",
            "sockstream read_char + unread_char + read_char",
            "sockstream",
            _ss_read_unread,
            n,
            "chars",
        ),
        Case(
            "W3.makefile_read1",
            "makefile('r', encoding='latin-1').read(1)",
            "anchor",
            _makefile,
            n,
            "chars",
        ),
    ]
    ratios = [
        Ratio("read_char / makefile('r').read(1)", "W3.ss_read_char", "W3.makefile_read1", 0.8),
        Ratio(
            "peek_char + read_char / makefile('r').read(1)", "W3.ss_peek_read", "W3.makefile_read1"
        ),
        Ratio(
            "read_char + unread_char + read_char / makefile('r').read(1)",
            "W3.ss_read_unread",
            "W3.makefile_read1",
        ),
    ]
    return cases, ratios

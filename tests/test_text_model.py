"""The text model test: random UTF-8 text with random LF/CRLF endings, sent in random chunks
(each arriving in a ``recv`` of its own), read with a random mix of every character verb,
``read_until`` and byte reads, in every newline mode: what was read is what was sent.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import termios
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LONG, PeerThread
from sockstream import SocketStream

OPS = ["read_char", "no_hang", "peek", "unread", "read_line", "readline", "until", "read",
       "read1", "bytes", "list", "listen"]  # fmt: skip

texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=10)


def _pending(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(st.tuples(texts, st.sampled_from(["\n", "\r\n"])), max_size=10),
    tail=texts,
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(1, 5)), min_size=1, max_size=30),
    newline=st.sampled_from(["\n", "\r\n", None]),
)
def test_text_model(
    lines: list[tuple[str, str]],
    tail: str,
    chunks: list[int],
    ops: list[tuple[str, int]],
    newline: str | None,
) -> None:
    data = ("".join(a + e for a, e in lines) + tail).encode()
    a, b = socket.socketpair()
    s = SocketStream(a, encoding="utf-8", newline=newline, read_timeout=LONG)

    def sender() -> None:
        i = k = 0
        while i < len(data):
            n = chunks[k % len(chunks)]
            k += 1
            b.sendall(data[i : i + n])
            i += n
            deadline = time.monotonic() + LONG
            while _pending(a) and time.monotonic() < deadline:  # its own recv
                os.sched_yield()
        b.shutdown(socket.SHUT_WR)

    t = PeerThread(sender)
    t.start()
    out = bytearray()
    last: str | None = None
    try:
        for step in range(200):
            op, n = ops[step % len(ops)]
            if len(out) == len(data) and step >= len(ops):
                break
            try:
                last = _one(s, op, n, out, last, data, newline)
            except UnicodeDecodeError:
                # A byte read split a character: nothing was consumed; read a byte as a user
                # would and go on.
                got = bytearray(1)
                assert s.read_sequence(got) == 1
                assert data[len(out)] == got[0]
                out += got
                last = None
        rest = s.read_sequence(buf := bytearray(len(data)))
        out += buf[:rest]
        assert bytes(out) == data
    finally:
        t.join_checked()
        s.close()
        b.close()


def _one(
    s: SocketStream,
    op: str,
    n: int,
    out: bytearray,
    last: str | None,
    data: bytes,
    newline: str | None,
) -> str | None:
    here = data[len(out) :]
    if op in ("read_char", "no_hang", "peek"):
        if op == "read_char":
            c = s.read_char(eof_error=False)
        elif op == "no_hang":
            c = s.read_char_no_hang(eof_error=False)
        else:
            c = s.peek_char(eof_error=False)
            if c is not None:
                assert here.startswith(c.encode())
            return last
        if c is not None:
            assert here.startswith(c.encode())
            out += c.encode()
        return c
    if op == "unread":
        if last is not None:
            s.unread_char(last)
            del out[-len(last.encode()) :]
        return None
    if op == "read_line":
        line, missing = s.read_line(eof_error=False, eof_value="")
        enc = line.encode()
        assert here.startswith(enc)
        out += enc
        if not missing:
            after = here[len(enc) :]
            lenient_crlf = newline is None and after.startswith(b"\r\n")
            term = b"\r\n" if newline == "\r\n" or lenient_crlf else b"\n"
            assert after.startswith(term)
            out += term
        return None
    if op == "readline":
        got = s.readline().encode()
        assert here.startswith(got)
        out += got
        return None
    if op == "until":
        chunk, missing = s.read_until(b"\r\n", eof_error=False, eof_value="")
        enc = chunk.encode()
        assert here.startswith(enc)
        out += enc
        if not missing:
            assert here[len(enc) :].startswith(b"\r\n")
            out += b"\r\n"
        return None
    if op in ("read", "read1"):
        got = (s.read(n) if op == "read" else s.read1(n)).encode()
        assert here.startswith(got)
        out += got
        return None
    if op == "list":
        seq = [""] * n
        k = s.read_sequence(seq)
        got = "".join(seq[:k]).encode()
        assert here.startswith(got)
        out += got
        return None
    if op == "bytes":
        buf = bytearray(n)
        k = s.read_sequence(buf)
        assert here.startswith(bytes(buf[:k]))
        out += buf[:k]
        return None
    s.listen()
    return last

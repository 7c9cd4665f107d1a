"""Chunking cannot matter: random bytes, random chunks, a random mix of every reading verb.

A peer thread sends random bytes (rich in newlines) in random chunk sizes over a socketpair or a
loopback TCP connection, then half-closes.  The reader consumes them with a random sequence of
every reading verb (characters, lines, bytes, sequences of every kind, the file protocol, peek,
unread, listen, no-hang reads), on each of the three element types; whatever each verb returns
is turned back into raw bytes, and the bytes seen must equal the bytes sent, followed by
end-of-file.  ``peek_char`` and ``listen`` are checked against the known data as they happen.
"""

from __future__ import annotations

import array
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import LONG
from sockstream import LineTooLongError, SocketStream

pytestmark = pytest.mark.filterwarnings("ignore:The 'u' type code is deprecated:DeprecationWarning")

ELEMENT_TYPES = ["base-char", "unsigned-byte-8", "signed-byte-8"]
KINDS = ["bytearray", "memoryview", "array-B", "array-b", "array-u", "list"]
VERBS = [
    "read_char",
    "read_char_no_hang",
    "peek_char",
    "unread_char",
    "read_line",
    "readline",
    "read_byte",
    "read_sequence",
    "read",
    "read1",
    "readinto",
    "next",
    "listen",
]


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        a = socket.create_connection(lsock.getsockname())
        b, _ = lsock.accept()
    for s in (a, b):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


def _send(sock: socket.socket, data: bytes, chunks: list[int]) -> None:
    i = 0
    k = 0
    while i < len(data):
        n = chunks[k % len(chunks)]
        sock.sendall(data[i : i + n])
        i += n
        k += 1
    sock.shutdown(socket.SHUT_WR)


def _container(kind: str, n: int) -> Any:
    if kind == "bytearray":
        return bytearray(n)
    if kind == "memoryview":
        return memoryview(bytearray(n))
    if kind == "array-B":
        return array.array("B", bytes(n))
    if kind == "array-b":
        return array.array("b", bytes(n))
    if kind == "array-u":
        return array.array("u", "\0" * n)
    return [None] * n


def _raw(kind: str, seq: Any, start: int, stop: int, et: str) -> bytes:
    """The raw bytes that ``seq[start:stop]`` stands for."""
    part = seq[start:stop]
    if kind in ("bytearray", "memoryview", "array-B"):
        return bytes(part)
    if kind == "array-b":
        return part.tobytes()  # type: ignore[no-any-return]
    if kind == "array-u":
        return part.tounicode().encode("latin-1")  # type: ignore[no-any-return]
    # list: characters on base-char, integers of the element type otherwise
    if et == "base-char":
        assert all(type(c) is str and len(c) == 1 for c in part)
        return "".join(part).encode("latin-1")
    if et == "signed-byte-8":
        assert all(-128 <= v <= 127 for v in part)
        return array.array("b", part).tobytes()
    return bytes(part)


def _natural_to_raw(et: str, value: Any) -> bytes:
    if et == "base-char":
        assert isinstance(value, str)
        return value.encode("latin-1")
    assert isinstance(value, bytes)
    return value


_data = st.lists(st.one_of(st.just(b"\n"), st.binary(min_size=1, max_size=40)), max_size=80).map(
    b"".join
)
_ops = st.lists(
    st.tuples(st.sampled_from(VERBS), st.integers(-1, 300), st.sampled_from(KINDS)),
    min_size=1,
    max_size=40,
)


def _run(
    data: bytes,
    chunks: list[int],
    ops: list[tuple[str, int, str]],
    et: str,
    transport: str,
    max_line_length: int | None = None,
) -> None:
    a, b = socket.socketpair() if transport == "socketpair" else _tcp_pair()
    sender = threading.Thread(target=_send, args=(b, data, chunks), daemon=True)
    sender.start()
    try:
        with SocketStream(a, "input", et, max_line_length=max_line_length) as s:
            seen = _consume(s, data, ops, et)
            assert seen == data
            assert s.read_char(False, "eof") == "eof"
            assert s.read() in ("", b"")
            assert s.listen() is False
    finally:
        sender.join(LONG)
        b.close()
    assert not sender.is_alive()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=_data,
    chunks=st.lists(st.integers(1, 600), min_size=1, max_size=30),
    ops=_ops,
    et=st.sampled_from(ELEMENT_TYPES),
    transport=st.sampled_from(["socketpair", "tcp"]),
    max_line_length=st.one_of(st.none(), st.integers(1, 60)),
)
def test_random_reads_see_every_byte_once(
    data: bytes,
    chunks: list[int],
    ops: list[tuple[str, int, str]],
    et: str,
    transport: str,
    max_line_length: int | None,
) -> None:
    _run(data, chunks, ops, et, transport, max_line_length)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(60_000, 400_000),
    chunks=st.lists(st.integers(1, 100_000), min_size=1, max_size=10),
    ops=st.lists(
        st.tuples(st.sampled_from(VERBS), st.integers(-1, 80_000), st.sampled_from(KINDS)),
        min_size=1,
        max_size=20,
    ),
    et=st.sampled_from(ELEMENT_TYPES),
    transport=st.sampled_from(["socketpair", "tcp"]),
)
def test_random_reads_of_large_data(
    seed: int,
    size: int,
    chunks: list[int],
    ops: list[tuple[str, int, str]],
    et: str,
    transport: str,
) -> None:
    """Hundreds of KiB and reads of up to 80 KB: buffer growth, compaction and the bypass."""
    rng = random.Random(seed)
    data = bytearray(rng.randbytes(size))
    for _ in range(size // 100):  # lines of random length, some long
        data[rng.randrange(size)] = 10
    _run(bytes(data), chunks, ops, et, transport)


def _line_too_long(s: SocketStream, data: bytes, at: int) -> bool:
    """Whether the line starting at ``data[at]`` is longer than the stream's limit."""
    limit = s.max_line_length
    if limit is None:
        return False
    end = data.find(b"\n", at)
    return (len(data) if end < 0 else end) - at > limit


def _consume(s: SocketStream, data: bytes, ops: list[tuple[str, int, str]], et: str) -> bytes:
    """Apply ``ops`` round-robin until every byte has been read; return the bytes read."""
    seen = bytearray()
    can_unread: str | None = None
    unread_at: set[int] = set()
    step = 0
    deadline = time.monotonic() + LONG
    ops = [*ops, ("read_char", 1, "list")]  # at least one verb that consumes
    while len(seen) < len(data):
        verb, n, kind = ops[step % len(ops)]
        step += 1
        assert time.monotonic() < deadline, "no progress"
        before = len(seen)
        just_read: str | None = None
        if verb == "read_byte" and et == "base-char":
            verb = "read_char"
        if verb == "read_char":
            c = s.read_char(False, None)
            if c is not None:
                seen += c.encode("latin-1")
                just_read = c
        elif verb == "read_char_no_hang":
            c = s.read_char_no_hang(False, "eof")
            assert c != "eof", "end-of-file before all the data"
            if c is not None:
                assert isinstance(c, str)
                seen += c.encode("latin-1")
                just_read = c
        elif verb == "peek_char":
            c = s.peek_char(False, None)
            assert c == chr(data[len(seen)])
        elif verb == "unread_char":
            # Each character is put back at most once, so the round-robin always progresses.
            if can_unread is not None and len(seen) not in unread_at:
                unread_at.add(len(seen))
                s.unread_char(can_unread)
                del seen[-1]
        elif verb in ("read_line", "readline", "next") and _line_too_long(s, data, len(seen)):
            # A line longer than max_line_length: read_line, readline() and iteration refuse
            # it and consume nothing (readline(size) may refuse it too).
            if verb == "readline" and n >= 0:
                try:
                    seen += _natural_to_raw(et, s.readline(n))
                except LineTooLongError:
                    pass
            else:
                refuse: dict[str, Callable[[], Any]] = {
                    "read_line": s.read_line,
                    "readline": s.readline,
                    "next": s.__next__,
                }
                with pytest.raises(LineTooLongError):
                    refuse[verb]()
        elif verb == "read_line":
            line, missing = s.read_line(False, None)
            if line is not None:
                seen += line.encode("latin-1") + (b"" if missing else b"\n")
        elif verb == "readline":
            seen += _natural_to_raw(et, s.readline(n))
        elif verb == "read_byte":
            v = s.read_byte(False, None)
            if v is not None:
                assert (-128 <= v <= 127) if et == "signed-byte-8" else (0 <= v <= 255)
                seen.append(v & 0xFF)
        elif verb == "read_sequence":
            size = abs(n) % 120 if abs(n) <= 300 else abs(n)
            seq = _container(kind, size + 3)
            stop = s.read_sequence(seq, 2, 2 + size)
            assert 2 <= stop <= 2 + size
            seen += _raw(kind, seq, 2, stop, et)
        elif verb == "read":
            seen += _natural_to_raw(et, s.read(n if n >= 0 else len(data) - len(seen)))
        elif verb == "read1":
            seen += _natural_to_raw(et, s.read1(n))
        elif verb == "readinto":
            buf = bytearray(abs(n) % 200 if abs(n) <= 300 else abs(n))
            k = s.readinto(buf)
            seen += buf[:k]
        elif verb == "next":
            line = next(s, None)
            if line is not None:
                seen += _natural_to_raw(et, line)
        elif verb == "listen" and s.listen():
            assert len(seen) < len(data)
        can_unread = just_read
        lo = min(before, len(seen))
        assert seen[lo:] == data[lo : len(seen)], f"mismatch after {verb} at {lo}"
        if len(seen) == before:
            # Nothing read: only a zero-size request, a no-hang miss, or a verb that does not
            # consume may give nothing; end-of-file before all the data would be a bug.
            assert (
                verb in ("peek_char", "listen", "unread_char", "read_char_no_hang")
                or (verb in ("read_line", "readline", "next") and _line_too_long(s, data, before))
                or (n == 0 and verb in ("readline", "read", "read1", "readinto"))
                or (verb == "read_sequence" and abs(n) % 120 == 0 and abs(n) <= 300)
                or (verb == "readinto" and abs(n) % 200 == 0 and abs(n) <= 300)
            ), f"{verb}({n}) read nothing before end-of-file"
    return bytes(seen)

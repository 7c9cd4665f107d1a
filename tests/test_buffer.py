"""The sans-IO input buffer (``_buffer.InputBuffer``), without any socket.

Every scenario three ways (as h11's ``t_body_reader``): the data fed whole, byte at a time, and
with trailing data after it; then the invariants that the stream relies on: compaction keeps the
last consumed byte (so ``unread_char`` works after a refill), the newline search resumes where
it stopped, and the buffer grows to hold whatever it is fed.  A hypothesis model test drives
random feeds and takes against a plain ``bytes`` model.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockstream._buffer import MIN_FREE, InputBuffer, OutputBuffer


def take_line(ib: InputBuffer) -> bytes | None:
    """One line with its newline, or None if no complete line is buffered."""
    i = ib.find_newline()
    if i < 0:
        return None
    return ib.take(i + 1 - ib.pos)


def feed_whole(ib: InputBuffer, data: bytes) -> None:
    ib.feed(data)


def feed_bytewise(ib: InputBuffer, data: bytes) -> None:
    for i in range(len(data)):
        ib.feed(data[i : i + 1])


def feed_via_writable(ib: InputBuffer, data: bytes) -> None:
    """As the stream does: recv_into the free tail, then commit."""
    i = 0
    while i < len(data):
        view = ib.writable()
        n = min(len(view), len(data) - i, 7)
        view[:n] = data[i : i + n]
        view.release()
        ib.commit(n)
        i += n


FEEDERS: list[Callable[[InputBuffer, bytes], None]] = [
    feed_whole,
    feed_bytewise,
    feed_via_writable,
]


@pytest.fixture(params=FEEDERS, ids=lambda f: f.__name__)
def feeder(request: pytest.FixtureRequest) -> Callable[[InputBuffer, bytes], None]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=[16, 65536], ids=["tiny", "default"])
def ib(request: pytest.FixtureRequest) -> InputBuffer:
    return InputBuffer(request.param)


def test_empty_buffer() -> None:
    ib = InputBuffer()
    assert len(ib) == 0
    assert ib.take(5) == b""
    assert ib.take_all() == b""
    assert ib.take_into(memoryview(bytearray(4))) == 0
    assert ib.find_newline() == -1
    assert ib.clear() == 0
    assert ib.unread_byte(0) is False  # nothing consumed yet


@pytest.mark.parametrize("trailing", [b"", b"trailing data"])
def test_lines(
    ib: InputBuffer, feeder: Callable[[InputBuffer, bytes], None], trailing: bytes
) -> None:
    message = b"first line\r\n\nthird\n" + bytes(range(11, 200)) + b"\n"
    feeder(ib, message + trailing)
    assert len(ib) == len(message) + len(trailing)
    assert take_line(ib) == b"first line\r\n"
    assert take_line(ib) == b"\n"
    assert take_line(ib) == b"third\n"
    assert take_line(ib) == bytes(range(11, 200)) + b"\n"
    assert take_line(ib) is None  # the trailing data is not a line
    assert ib.take_all() == trailing


@pytest.mark.parametrize("trailing", [b"", b"\x00\xff more"])
def test_take_and_take_into(
    ib: InputBuffer, feeder: Callable[[InputBuffer, bytes], None], trailing: bytes
) -> None:
    data = bytes(range(256))
    feeder(ib, data + trailing)
    assert ib.take(10) == data[:10]
    out = bytearray(100)
    assert ib.take_into(memoryview(out)) == 100
    assert out == data[10:110]
    assert ib.take(146) == data[110:]
    assert ib.take(1000) == trailing  # fewer than asked: what there is
    assert len(ib) == 0


def test_newline_search_resumes_where_it_stopped() -> None:
    ib = InputBuffer(16)
    ib.feed(b"abc")
    assert ib.find_newline() == -1
    assert ib.scan == ib.end  # nothing before here is a newline
    ib.feed(b"def")
    assert ib.find_newline() == -1
    ib.feed(b"g\nh")
    i = ib.find_newline()
    assert ib.buf[i] == 10
    assert i - ib.pos == 7
    assert take_line(ib) == b"abcdefg\n"
    assert ib.take_all() == b"h"


def test_unread_byte() -> None:
    ib = InputBuffer()
    ib.feed(b"xyz")
    assert ib.take(1) == b"x"
    assert ib.unread_byte(ord("q")) is False  # not the byte just consumed: nothing changes
    assert len(ib) == 2
    assert ib.unread_byte(ord("x")) is True
    assert ib.take_all() == b"xyz"


def test_reset_when_empty_keeps_the_last_byte_for_unread() -> None:
    ib = InputBuffer(16)
    ib.feed(b"0123456789")
    assert ib.take_all() == b"0123456789"
    ib.writable()  # empty: starts again near the front...
    assert ib.pos == ib.end == 1
    assert ib.unread_byte(ord("9")) is True  # ...keeping the last byte consumed
    assert ib.take_all() == b"9"


def test_compaction_keeps_the_last_byte_for_unread() -> None:
    ib = InputBuffer(16)
    ib.feed(b"abcdefghijkl")  # 12 of 16
    assert ib.take(10) == b"abcdefghij"
    view = ib.writable(8)  # only 4 free: compacts instead of growing
    assert len(view) >= 8
    view.release()
    assert len(ib.buf) == 16  # compacted, not grown
    assert ib.pos == 1
    ib.feed(b"mn")
    assert ib.unread_byte(ord("j")) is True
    assert ib.take_all() == b"jklmn"


def test_growth() -> None:
    ib = InputBuffer(16)
    data = bytes(range(256)) * 10
    ib.feed(data)
    assert len(ib.buf) >= len(data)
    assert len(ib) == len(data)
    view = ib.writable(100_000)
    assert len(view) >= 100_000
    view.release()
    assert ib.take_all() == data


def test_writable_default_room() -> None:
    ib = InputBuffer(16)
    view = ib.writable()
    assert len(view) >= MIN_FREE
    view[:3] = b"abc"
    view.release()
    ib.commit(3)
    assert ib.take_all() == b"abc"


def test_feed_accepts_bytes_like() -> None:
    ib = InputBuffer(16)
    ib.feed(b"a")
    ib.feed(bytearray(b"b"))
    ib.feed(memoryview(b"xcx")[1:2])
    ib.feed(b"")
    assert ib.take_all() == b"abc"


def test_clear() -> None:
    ib = InputBuffer(16)
    ib.feed(b"abcdef")
    ib.take(2)
    assert ib.clear() == 4
    assert len(ib) == 0
    ib.feed(b"new")
    assert ib.take_all() == b"new"


def test_output_buffer_starts_empty() -> None:
    ob = OutputBuffer()
    assert ob.buf == bytearray()


# ---- a model test -----------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("feed"), st.binary(max_size=40)),
        st.tuples(st.just("take"), st.integers(0, 50)),
        st.tuples(st.just("take_into"), st.integers(0, 50)),
        st.tuples(st.just("line"), st.none()),
        st.tuples(st.just("room"), st.integers(1, 64)),
        st.tuples(st.just("unread"), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, size=st.integers(1, 32))
def test_model(ops: list[tuple[str, object]], size: int) -> None:
    """Random feeds and takes against a bytes model; unread always works right after a take."""
    ib = InputBuffer(size)
    model = b""
    last: int | None = None  # the byte just consumed, if unread is allowed now
    for op, arg in ops:
        if op == "feed":
            assert isinstance(arg, bytes)
            ib.feed(arg)
            model += arg  # feeding (even with compaction) keeps the byte just consumed
        elif op == "take":
            assert isinstance(arg, int)
            got = ib.take(arg)
            assert got == model[:arg]
            model = model[len(got) :]
            if got:
                last = got[-1]
        elif op == "take_into":
            assert isinstance(arg, int)
            out = bytearray(arg)
            n = ib.take_into(memoryview(out))
            assert bytes(out[:n]) == model[:n]
            assert n == min(arg, len(model))
            model = model[n:]
            if n:
                last = out[n - 1]
        elif op == "line":
            line = take_line(ib)
            if b"\n" in model:
                expected = model[: model.index(b"\n") + 1]
                assert line == expected
                model = model[len(expected) :]
                last = 10
            else:
                assert line is None
        elif op == "room":
            assert isinstance(arg, int)
            view = ib.writable(arg)
            assert len(view) >= arg
            view.release()
        elif op == "unread" and last is not None:
            assert ib.unread_byte(last) is True
            model = bytes([last]) + model
            last = None
        assert len(ib) == len(model)
        assert bytes(ib.buf[ib.pos : ib.end]) == model
    assert ib.take_all() == model


def test_unread_newline_is_found_again() -> None:
    """A newline put back after a line was taken is the next line (the resumed search restarts)."""
    ib = InputBuffer()
    ib.feed(b"\n")
    assert ib.find_newline() == 0
    ib.pos = 1
    assert ib.find_newline() == -1
    assert ib.unread_byte(10)
    assert ib.find_newline() == 0

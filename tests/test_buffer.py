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

from sockstream._buffer import (
    BYTES_LINE_NL,
    MIN_FREE,
    STR_LINE,
    STR_LINE_NL,
    InputBuffer,
    OutputBuffer,
)
from sockstream._errors import LineTooLongError

# Every test over both buffers: the compiled twin and the pure class (conftest).
pytestmark = pytest.mark.usefixtures("buffer_impl")


def take_line(ib: InputBuffer) -> bytes | None:
    """One line with its newline, or None if no complete line is buffered."""
    line = ib.maybe_take_line(BYTES_LINE_NL)
    assert line is None or isinstance(line, bytes)
    return line


def state(ib: InputBuffer) -> bytes:
    """What is buffered, without consuming it."""
    data = ib.take_all()
    ib.unread_bytes(data)
    return data


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
    assert ib.maybe_take(1) is None
    assert ib.maybe_take(0) == b""
    assert ib.maybe_take_char() is None
    assert ib.peek_char() is None
    assert ib.take_into(memoryview(bytearray(4))) == 0
    assert ib.maybe_take_line(BYTES_LINE_NL) is None
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
    assert take_line(ib) is None
    assert ib._scan == ib._end  # nothing before here is a newline
    ib.feed(b"def")
    assert take_line(ib) is None
    ib.feed(b"g\nh")
    assert take_line(ib) == b"abcdefg\n"
    assert ib.take_all() == b"h"


def test_line_kinds_and_limit() -> None:
    ib = InputBuffer()
    ib.feed(b"one\ntwo\nthree\nfour")
    assert ib.maybe_take_line(STR_LINE) == ("one", False)
    assert ib.maybe_take_line(STR_LINE_NL) == "two\n"
    assert ib.maybe_take_line(BYTES_LINE_NL, 3) == b"thr"  # readline(size): a piece
    assert ib.maybe_take_line(BYTES_LINE_NL, 30) == b"ee\n"
    assert ib.maybe_take_line(BYTES_LINE_NL) is None  # "four" has no newline yet
    assert ib.maybe_take_line(BYTES_LINE_NL, 2) == b"fo"
    assert ib.take_all() == b"ur"


def test_max_line_consumes_nothing() -> None:
    ib = InputBuffer(max_line=4)
    ib.feed(b"abcd\nabcde\n")
    assert ib.maybe_take_line(BYTES_LINE_NL) == b"abcd\n"
    with pytest.raises(LineTooLongError):
        ib.maybe_take_line(BYTES_LINE_NL)
    assert state(ib) == b"abcde\n"
    ib2 = InputBuffer(max_line=4)
    ib2.feed(b"abcde")  # no newline yet, and already too long
    with pytest.raises(LineTooLongError):
        ib2.maybe_take_line(STR_LINE)
    assert state(ib2) == b"abcde"


@pytest.mark.parametrize("kind", [STR_LINE, STR_LINE_NL, BYTES_LINE_NL])
@pytest.mark.parametrize("mll", [None, 5])
def test_batch_serves_lines_and_settles(kind: int, mll: int | None) -> None:
    ib = InputBuffer(max_line=mll)
    lines = [b"a", b"bb", b"ccc", b"dddd", b"ee\r", b"toolong", b"f"]
    ib.feed(b"\n".join(lines) + b"\ntail")
    got: list[object] = []
    for _ in range(5):  # the first lines one by one, then from a batch
        got.append(ib.maybe_take_line(kind))
    expect: list[object] = []
    for line in lines[:5]:
        if kind == STR_LINE:
            expect.append((line.decode("latin-1"), False))
        elif kind == STR_LINE_NL:
            expect.append(line.decode("latin-1") + "\n")
        else:
            expect.append(line + b"\n")
    assert got == expect
    # Any other method settles the batch first: nothing served is seen again.
    if mll is None:
        assert ib.take(8) == b"toolong\n"
    else:
        with pytest.raises(LineTooLongError):
            ib.maybe_take_line(kind)
        assert ib.take(8) == b"toolong\n"
    assert ib.take_all() == b"f\ntail"


def test_batch_unpublished_by_settle() -> None:
    from sockstream._buffer import InputBuffer as PureInputBuffer  # the twin cuts no batches

    ib = PureInputBuffer()
    ib.feed(b"1\n2\n3\n4\n5\n")
    for _ in range(3):
        ib.maybe_take_line(BYTES_LINE_NL)
    assert ib.next_line() == b"4\n"  # the published batch
    assert ib.maybe_take_char() == "5"  # settles
    assert ib.next_line() is None
    assert ib.take_all() == b"\n"


def test_unread_byte() -> None:
    ib = InputBuffer()
    ib.feed(b"xyz")
    assert ib.take(1) == b"x"
    assert ib.unread_byte(ord("q")) is False  # not the byte just consumed: nothing changes
    assert len(ib) == 2
    assert ib.unread_byte(ord("x")) is True
    assert ib.unread_refused()
    assert ib.unread_byte(ord("x")) is False  # once
    assert ib.take_all() == b"xyz"


def test_compaction_keeps_the_last_byte_for_unread() -> None:
    ib = InputBuffer(16)
    ib.feed(b"abcdefghijkl")  # 12 of 16
    assert ib.take(10) == b"abcdefghij"
    view = ib.writable(8)  # only 4 free: compacts instead of growing
    assert len(view) >= 8
    view.release()
    assert len(ib._buf) == 16  # compacted, not grown
    ib.feed(b"mn")
    assert ib.unread_byte(ord("j")) is True
    assert ib.take_all() == b"jklmn"


def test_filled_elsewhere_is_what_unread_puts_back() -> None:
    ib = InputBuffer(16)
    ib.feed(b"abc")
    assert ib.take_all() == b"abc"
    ib.filled_elsewhere(ord("z"))  # a large read went past the buffer, ending in "z"
    assert ib.unread_byte(ord("c")) is False
    assert ib.unread_byte(ord("z")) is True
    assert ib.take_all() == b"z"
    fresh = InputBuffer(16)
    fresh.filled_elsewhere(ord("q"))
    assert fresh.unread_byte(ord("q")) is True
    assert fresh.take_all() == b"q"


def test_unread_bytes_goes_in_front() -> None:
    ib = InputBuffer(16)
    ib.feed(b"abcdef")
    assert ib.take(4) == b"abcd"
    ib.unread_bytes(b"XYZ")
    assert ib.take_all() == b"XYZef"
    ib.unread_bytes(b"0123456789" * 3)  # more than the history before pos
    assert ib.take_all() == b"0123456789" * 3


def test_growth() -> None:
    ib = InputBuffer(16)
    data = bytes(range(256)) * 10
    ib.feed(data)
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
    assert ib.unread_byte(ord("b")) is False  # nothing discarded can come back
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
        assert bytes(ib._buf[ib._pos : ib._end]) == model
    assert ib.take_all() == model


def test_unread_newline_is_found_again() -> None:
    """A newline put back after a line was taken is the next line (the resumed search restarts)."""
    ib = InputBuffer()
    ib.feed(b"\n")
    assert take_line(ib) == b"\n"
    assert take_line(ib) is None
    assert ib.unread_byte(10)
    assert take_line(ib) == b"\n"

"""An interrupt at each point of the flush where a signal handler can run: nothing is lost.

``force_output`` takes the output buffer whole and puts back what it did not send.  A
``KeyboardInterrupt`` can land wherever CPython runs a signal handler: after a call returns,
after a backward jump (and, on 3.10, after a taken conditional jump).  Each test below finds
every such point that a flush of its shape passes, then flushes again once per point with a
``KeyboardInterrupt`` raised there (by an opcode trace hook), and checks the peer's bytes:
all of them once, in order, or, if the stream says it broke, a prefix of them.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from types import CodeType

import pytest

from conftest import PeerThread, drain
from landing import Point, Tracer, describe, order
from sockstream import SocketIOError, SocketStream, _stream

#: The frames whose landing points are tried: the flush and its locking wrapper.
_CODES: tuple[CodeType, ...] = (
    _stream.SocketStream.force_output.__code__,
    _stream.SocketStream._flush_out_locked.__code__,
)


def _flush_with(
    write: Callable[[SocketStream], None], data: bytes, inject: Point | None
) -> tuple[set[Point], str, bytes]:
    """``write(s)`` (which leaves ``data`` written, flushed or not), then ``force_output``,
    all traced; then flush until it goes through or the stream says it broke.  Returns the
    landing points passed, the outcome and what the peer received."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    outcome = "exact"
    with b:
        collector = PeerThread(drain, b)
        collector.start()
        s = SocketStream(a, "io", "unsigned-byte-8")
        tracer = Tracer(_CODES.__contains__, inject)
        try:
            with tracer:
                write(s)
                s.force_output()
        except KeyboardInterrupt:
            pass
        try:
            s.force_output()  # what was put back goes now
        except SocketIOError as exc:
            assert "broken" in str(exc) or "interrupted" in str(exc)  # noqa: PT017
            outcome = "broken"
        s.close(abort=outcome == "broken")
        got: bytes = collector.join_checked()
    return tracer.seen, outcome, got


def _small(data: bytes) -> Callable[[SocketStream], None]:
    return lambda s: s.write_sequence(data)  # buffered: the flush sends it in one call


_SMALL = bytes(range(256)) * 4
_LARGE = b"".join(b"%08d\n" % i for i in range(120_000))  # over a megabyte: several sends


@pytest.mark.parametrize(
    ("write", "data"),
    [(_small(_SMALL), _SMALL), (_small(_LARGE), _LARGE)],
    ids=["one-send", "many-sends"],
)
def test_an_interrupt_at_each_landing_point_of_the_flush(
    write: Callable[[SocketStream], None], data: bytes
) -> None:
    points, outcome, got = _flush_with(write, data, None)
    assert outcome == "exact"
    assert got == data
    # The points after the take, where a lost buffer would show, are among them.
    assert any(code is _CODES[1] for code, _ in points)
    outcomes = set()
    for point in order(points):
        _, outcome, got = _flush_with(write, data, point)
        where = describe(point)
        if outcome == "exact":
            assert got == data, f"bytes lost or doubled by an interrupt in {where}"
        else:
            assert data.startswith(got), f"bytes doubled or reordered by an interrupt in {where}"
        outcomes.add(outcome)
    assert "exact" in outcomes

"""An interrupt at each point of the constructor where a signal handler can run: the socket
is closed (API.md), also when a second one lands in the cleanup after a failure."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from landing import ENTRY, Point, Tracer, describe, library_code, order
from sockstream import SocketStream, _stream

_INIT = _stream.SocketStream.__init__.__code__


def _make(inject: Point | None, **kw: Any) -> tuple[set[Point], bool, bool]:
    """``SocketStream(a, **kw)`` traced; the points passed, whether it raised
    KeyboardInterrupt, and whether ``a`` is closed."""
    a, b = socket.socketpair()
    with a, b:
        tracer = Tracer(library_code, inject)
        interrupted = False
        try:
            with tracer:
                s = SocketStream(a, **kw)
        except KeyboardInterrupt:
            interrupted = True
        except ValueError:  # (the failing constructor below)
            pass
        else:
            s.close()
        if inject is not None:
            assert tracer.fired, f"never reached {describe(inject)}"
        return tracer.seen, interrupted, a.fileno() == -1


@pytest.mark.parametrize(
    "kw",
    [{}, {"element_type": "unsigned-byte-8", "encoding": "utf-8"}, {"direction": "sideways"}],
    ids=["text", "bytes", "refused"],
)
def test_an_interrupt_at_each_landing_point_of_the_constructor(kw: dict[str, Any]) -> None:
    """Each point of a constructor (one that fails with ValueError too: then each point of its
    cleanup, a second interrupt): the socket ends closed, or the stream is made."""
    _make(None, **kw)  # (once first: what is cached on first use is not passed again)
    points, _, closed = _make(None, **kw)
    assert closed  # (made and closed, or refused)
    failures = []
    for point in order(points):
        if point == (_INIT, ENTRY):
            continue  # (before the constructor runs at all: the caller's to close)
        _, interrupted, closed = _make(point, **kw)
        if interrupted and not closed:
            failures.append(describe(point))
    assert not failures, "the socket was left open by an interrupt at:\n" + "\n".join(failures)

"""An interrupt at each point of the flush where a signal handler can run: nothing is lost.

``force_output`` takes the output buffer whole and puts back what it did not send.  A
``KeyboardInterrupt`` can land wherever CPython runs a signal handler: after a call returns,
after a backward jump (and, on 3.10, after a taken conditional jump).  Each test below finds
every such point that a flush of its shape passes, then flushes again once per point with a
``KeyboardInterrupt`` raised there (by an opcode trace hook), and checks the peer's bytes:
all of them once, in order, or, if the stream says it broke, a prefix of them.
"""

from __future__ import annotations

import dis
import socket
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

import pytest

from conftest import PeerThread, drain
from sockstream import SocketIOError, SocketStream, _stream

#: The frames whose landing points are tried: the flush and its locking wrapper.
_CODES: tuple[CodeType, ...] = (
    _stream.SocketStream.force_output.__code__,
    _stream.SocketStream._flush_out_locked.__code__,
)
_OPS = {code: {i.offset: i for i in dis.get_instructions(code)} for code in _CODES}
_JUMPS_THAT_CHECK = {"JUMP_BACKWARD", "JUMP_ABSOLUTE"}


def _lands_after(prev: dis.Instruction, offset: int) -> bool:
    """Whether a signal handler can run between ``prev`` and the instruction at ``offset``."""
    if prev.opname.startswith("CALL"):
        return True
    if prev.opname in _JUMPS_THAT_CHECK:
        return True
    # 3.10 also checks after a taken conditional jump (3.11 and later do not).
    taken = offset != prev.offset + 2
    return sys.version_info < (3, 11) and prev.opname.startswith("POP_JUMP_IF") and taken


def _tracing(inject: tuple[CodeType, int] | None, seen: set[tuple[CodeType, int]]) -> Any:
    """A trace function: records each landing point passed in ``seen``; raises
    ``KeyboardInterrupt`` at ``inject`` the first time it is reached."""
    fired = [False]

    def glob(frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code not in _OPS:
            return None
        frame.f_trace_opcodes = True
        ops = _OPS[frame.f_code]
        prev: list[dis.Instruction | None] = [None]

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event != "opcode":
                # (3.13.0 starts opcode events only once this is set again after the call)
                frame.f_trace_opcodes = True
                return local
            here = frame.f_lasti
            before = prev[0]
            prev[0] = ops.get(here)
            if before is not None and _lands_after(before, here):
                point = (frame.f_code, here)
                seen.add(point)
                if point == inject and not fired[0]:
                    fired[0] = True
                    raise KeyboardInterrupt
            return local

        return local

    return glob


def _flush_with(
    write: Callable[[SocketStream], None], data: bytes, inject: tuple[CodeType, int] | None
) -> tuple[set[tuple[CodeType, int]], str, bytes]:
    """``write(s)`` (which leaves ``data`` written, flushed or not), then ``force_output``,
    all traced; then flush until it goes through or the stream says it broke.  Returns the
    landing points passed, the outcome and what the peer received."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    seen: set[tuple[CodeType, int]] = set()
    outcome = "exact"
    with b:
        collector = PeerThread(drain, b)
        collector.start()
        s = SocketStream(a, "io", "unsigned-byte-8")
        old = sys.gettrace()
        sys.settrace(_tracing(inject, seen))
        try:
            try:
                write(s)
                s.force_output()
            except KeyboardInterrupt:
                pass
        finally:
            sys.settrace(old)
        try:
            s.force_output()  # what was put back goes now
        except SocketIOError as exc:
            assert "broken" in str(exc) or "interrupted" in str(exc)  # noqa: PT017
            outcome = "broken"
        s.close(abort=outcome == "broken")
        got: bytes = collector.join_checked()
    return seen, outcome, got


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
    for point in sorted(points, key=lambda p: (p[0].co_name, p[1])):
        _, outcome, got = _flush_with(write, data, point)
        where = f"{point[0].co_name} at offset {point[1]}: {_OPS[point[0]][point[1]].opname}"
        if outcome == "exact":
            assert got == data, f"bytes lost or doubled by an interrupt in {where}"
        else:
            assert data.startswith(got), f"bytes doubled or reordered by an interrupt in {where}"
        outcomes.add(outcome)
    assert "exact" in outcomes

"""Races at a byte window's end (pure core): the steps of two threads forced in order."""

from __future__ import annotations

import inspect
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from conftest import use_buffers
from sockstream import SocketStream, _buffer

RECORD = 9  # b"%08d\n"


def at_line(func: Any, text: str, step: Callable[[], None]) -> Callable[[], None]:
    """Run ``step`` once, in this thread, just before ``func`` runs its line holding ``text``
    (a trace hook: the other thread's steps where a switch can land).  Returns the undo."""
    lines, first = inspect.getsourcelines(func)
    at = first + next(i for i, line in enumerate(lines) if text in line)
    code = func.__code__
    done = [False]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == at and not done[0]:
            done[0] = True
            step()
        return local

    def glob(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    old = sys.gettrace()
    sys.settrace(glob)

    def undo() -> None:
        sys.settrace(old)
        assert done[0], f"{func.__qualname__} never reached {text!r}"

    return undo


def test_unread_bytes_while_another_thread_cuts_a_window() -> None:
    """A's window end goes back by ``unread_bytes`` (another thread took past it); after its
    check for a batch and before its commit, B cuts the next window at ``pos``.  A's bytes
    must still be read once (the window's settle must not jump over them)."""
    undo = use_buffers("pure")
    try:
        data = b"".join(b"%08d\n" % i for i in range(2000))
        a, b = socket.socketpair()
        with SocketStream(a, "io", "unsigned-byte-8") as s, b:
            b.sendall(data)
            b.shutdown(socket.SHUT_WR)
            ib = s._in
            got = [s.readline() for _ in range(3)]
            window = ib._batch
            assert window is not None
            assert window[3] == _buffer._WINDOW
            take = ib.next_read
            part = take(10**6)  # A: the window's rest, for a payload one record longer
            assert part
            assert len(part) % RECORD == 0
            got.append(s.read(RECORD))  # B: settles the window and takes a record past it

            def b_cuts() -> None:
                while ib._batch is None:
                    got.append(s.readline())
                got.append(s.readline())

            off = at_line(_buffer.InputBuffer.unread_bytes, "pos = self._pos", b_cuts)
            try:
                with pytest.raises(RuntimeError, match="another thread"):
                    ib._read_more(len(part) + RECORD, part, take)
            finally:
                off()
            got.append(s.read())
        pieces = b"".join(got)
        seen = sorted(pieces[i : i + RECORD] for i in range(0, len(pieces), RECORD))
        assert b"".join(seen) == data
    finally:
        undo()

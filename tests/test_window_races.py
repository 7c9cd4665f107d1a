"""Races at a byte window's end (pure core): the steps of two threads forced in order."""

from __future__ import annotations

import contextlib
import inspect
import random
import socket
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from conftest import PeerThread, use_buffers
from sockstream import SocketIOError, SocketStream, _buffer

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


@contextlib.contextmanager
def _records_after_the_end() -> Iterator[tuple[SocketStream, bytes]]:
    """A pure-buffer byte stream whose peer sent 2,000 records and then end-of-file."""
    undo = use_buffers("pure")
    try:
        data = b"".join(b"%08d\n" % i for i in range(2000))
        a, b = socket.socketpair()
        with SocketStream(a, "io", "unsigned-byte-8") as s, b:
            b.sendall(data)
            b.shutdown(socket.SHUT_WR)
            yield s, data
    finally:
        undo()


def _assert_each_record_once(got: list[bytes], data: bytes) -> None:
    pieces = b"".join(got)
    seen = sorted(pieces[i : i + RECORD] for i in range(0, len(pieces), RECORD))
    assert b"".join(seen) == data


def test_unread_bytes_while_another_thread_cuts_a_window() -> None:
    """A's window end goes back by ``unread_bytes`` (another thread took past it); after its
    check for a batch and before its commit, B cuts the next window at ``pos``.  A's bytes
    must still be read once (the window's settle must not jump over them)."""
    with _records_after_the_end() as (s, data):
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
        _assert_each_record_once(got, data)


def send_in_pieces(sock: socket.socket, data: bytes, seed: int) -> None:
    """``data`` in pieces of a few records, so that windows are short and end often."""
    rnd = random.Random(seed)
    i = 0
    while i < len(data):
        n = rnd.randrange(1, 400)
        sock.sendall(data[i : i + n])
        i += n


def _mixer(s: SocketStream, got: list[bytes], seed: int, refused: list[int]) -> None:
    """Lines (two in a row cut a byte window) and reads of 1-7 records, sized and into a
    bytearray, so that reads often outrun a window's end (its end goes back)."""
    rnd = random.Random(seed)
    while True:
        how = rnd.randrange(6)
        try:
            if how < 3:
                piece = s.readline()
            elif how < 5:
                piece = s.read(RECORD * rnd.choice((1, 3, 7)))
            else:
                seq = bytearray(RECORD * rnd.choice((2, 5)))
                piece = bytes(seq[: s.read_sequence(seq)])
        except RuntimeError:
            refused.append(1)  # two reads overlapped at a window's end: nothing read
            continue
        if not piece:
            return
        got.append(piece)


@pytest.mark.parametrize("seed", range(3))
def test_two_readers_outrunning_window_ends(fast_switching: None, seed: int) -> None:
    """Two threads of lines and payloads that often outrun a window's end: every record
    exactly once (a window end put back while the other thread cuts the next window)."""
    undo = use_buffers("pure")
    try:
        for trial in range(3):
            first = (seed * 3 + trial) * 15000
            data = b"".join(b"%08d\n" % i for i in range(first, first + 15000))
            a, b = socket.socketpair()
            with SocketStream(a, "io", "unsigned-byte-8") as s, b:
                sender = PeerThread(send_in_pieces, b, data, seed + trial)
                sender.start()
                got: list[list[bytes]] = [[], []]
                refused: list[int] = []
                readers = [
                    PeerThread(_mixer, s, got[i], seed * 10 + trial * 2 + i, refused)
                    for i in range(2)
                ]
                for t in readers:
                    t.start()
                sender.join_checked()
                b.shutdown(socket.SHUT_WR)
                for t in readers:
                    t.join_checked()
            pieces = b"".join(p for g in got for p in g)
            seen = sorted(pieces[i : i + RECORD] for i in range(0, len(pieces), RECORD))
            assert b"".join(seen) == data
    finally:
        undo()


def raise_at(func: Any, text: str) -> Callable[[], None]:
    """``at_line`` with a KeyboardInterrupt as the step (a signal's handler raising there)."""

    def interrupt() -> None:
        raise KeyboardInterrupt

    return at_line(func, text, interrupt)


@pytest.mark.parametrize("verb", ["read", "read_sequence"])
def test_an_interrupt_before_a_window_end_goes_back(verb: str) -> None:
    """A read that outruns the byte window took its end from the window; an interrupt at the
    entry of the call that puts it back (a function entry is where CPython runs a signal
    handler) must leave the stream exact (nothing read) or broken, never without those
    bytes."""
    with _records_after_the_end() as (s, data):
        got = [s.readline() for _ in range(3)]
        window = s._in._batch
        assert window is not None
        assert window[3] == _buffer._WINDOW
        want = len(window[1]) - window[0].tell() + RECORD  # the window's rest and more
        if verb == "read":
            more: Any = _buffer.InputBuffer._read_more
            text = "if data:"

            def go() -> object:
                return s.read(want)
        else:
            more, text = _buffer.InputBuffer._seq_more, "if n:"

            def go() -> object:
                return s.read_sequence(bytearray(want))

        off = raise_at(more, text)
        try:
            with pytest.raises(KeyboardInterrupt):
                go()
        finally:
            off()
        try:
            got.append(s.read())
        except SocketIOError as exc:  # broken, and saying so: allowed
            assert "broken" in str(exc)  # noqa: PT017
            return
        assert b"".join(got) == data


def test_a_take_while_the_filler_compacts() -> None:
    """The filler (``writable``, under the read lock) compacts the buffer; another thread
    takes without that lock, after the filler read ``pos`` and before it moves the bytes.
    The take must not be undone (its bytes served twice): the compaction is a
    compare-and-set."""
    with _records_after_the_end() as (s, data):
        ib = s._in
        got = [s.readline() for _ in range(3)]  # (a byte window now)
        got.append(s.read(RECORD * 5))

        def b_takes() -> None:
            got.append(s.read(RECORD))

        off = at_line(_buffer.InputBuffer.writable, "keep = self._HISTORY", b_takes)
        try:
            with s._rlock:
                ib.writable(len(ib._buf)).release()  # A: no room: it compacts
        finally:
            off()
        got.append(s.read())
        _assert_each_record_once(got, data)


def test_a_take_while_another_takes_into() -> None:
    """``take_into`` (a short ``read_sequence``'s slow path) read ``pos``; another thread
    takes before it copies: the two must not get the same bytes."""
    with _records_after_the_end() as (s, data):
        ib = s._in
        got = [s.readline() for _ in range(3)]  # (a byte window now)
        got.append(s.read(RECORD * 5))

        def b_takes() -> None:
            got.append(s.read(RECORD))

        seq = bytearray(RECORD * 5)
        off = at_line(_buffer.InputBuffer.take_into, "n = self._end - pos", b_takes)
        try:
            n = ib.take_into(memoryview(seq))  # A
        finally:
            off()
        got.append(bytes(seq[:n]))
        got.append(s.read())
        _assert_each_record_once(got, data)

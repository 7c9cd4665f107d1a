"""``read(n)`` after a header line (RESP-style framing), served by the byte window.

On a byte stream of the pure core, ``SocketStream.read`` is the buffer's ``read``: it takes
``n`` bytes from the byte window (the ``BytesIO`` that serves ``readline``) when the window
holds them, and otherwise puts back what the window's end gave and takes the whole read from
the buffer, or fills.  These tests run over both buffer implementations: every byte once,
end-of-file and read timeouts as before, and two threads reading at once.
"""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from conftest import BUFFER_IMPLS, PeerThread, use_buffers
from sockstream import SocketStream, _buffer

RECORD = 9  # b"%08d\n"


@pytest.fixture(params=BUFFER_IMPLS)
def impl(request: pytest.FixtureRequest) -> Iterator[str]:
    undo = use_buffers(request.param)
    try:
        yield request.param
    finally:
        undo()


def replies(rnd: random.Random, count: int, big: bool = False) -> tuple[list[bytes], bytes]:
    """``count`` RESP bulk strings (bodies with newlines and CRLFs in them), and the wire."""
    bodies = []
    for _ in range(count):
        size = rnd.choice([0, 1, 2, 5, 30, 200, 300, 1000]) if not big else rnd.randrange(30000)
        bodies.append(bytes(rnd.choices(b"ab\n\r\n$0", k=size)))
    wire = b"".join(b"$%d\r\n%b\r\n" % (len(body), body) for body in bodies)
    return bodies, wire


def send_in_chunks(sock: socket.socket, data: bytes, seed: int, shut: bool = True) -> PeerThread:
    def go() -> None:
        rnd = random.Random(seed)
        i = 0
        while i < len(data):
            n = rnd.choice([1, 7, 100, 4096, 70000])
            sock.sendall(data[i : i + n])
            i += n
        if shut:
            sock.shutdown(socket.SHUT_WR)

    t = PeerThread(go)
    t.start()
    return t


def read_replies(s: SocketStream, bodies: list[bytes]) -> None:
    for body in bodies:
        header = s.readline()
        assert header == b"$%d\r\n" % len(body)
        assert s.read(len(body) + 2) == body + b"\r\n"


def test_read_is_the_buffers_on_pure_byte_streams(impl: str) -> None:
    a, b = socket.socketpair()
    with SocketStream(a, "io", "unsigned-byte-8") as s, b:
        pure = type(s._in) is _buffer.InputBuffer
        assert (s.__dict__.get("read") is not None) is pure
        # A text stream's read stays the stream's method (characters, not bytes).
        c, d = socket.socketpair()
        with SocketStream(c, "io", "base-char") as t, d:
            assert "read" not in t.__dict__
        if not pure:
            return
        b.sendall(b"$5\r\nhello\r\n" * 40)
        read_replies(s, [b"hello"] * 2)
        # Two header lines in a row (a payload between them does not count): a byte window.
        assert s.readline() == b"$5\r\n"
        batch = s._in._batch
        assert batch is not None
        assert batch[3] == _buffer._WINDOW
        assert s.read(7) == b"hello\r\n"
        assert s._in._batch is batch  # the payload came from the window
        read_replies(s, [b"hello"] * 37)
        b.shutdown(socket.SHUT_WR)
        assert s.read(5) == b""
        assert s.readline() == b""


def test_a_changed_encoding_rebinds_read(impl: str) -> None:
    """A byte stream whose buffer becomes the text buffer (a codec that is not Latin-1) reads
    with the stream's method again; a ``read`` bound before still reads the right bytes."""
    a, b = socket.socketpair()
    with SocketStream(a, "io", "unsigned-byte-8") as s, b:
        old_read = s.read
        bodies, wire = replies(random.Random(2), 30)
        b.sendall(wire)
        read_replies(s, bodies[:10])
        s.encoding = "utf-8"
        assert "read" not in s.__dict__
        read_replies(s, bodies[10:20])
        for body in bodies[20:]:
            assert s.readline() == b"$%d\r\n" % len(body)
            assert old_read(len(body) + 2) == body + b"\r\n"
        s.encoding = "latin-1"
        b.sendall(wire)
        read_replies(s, bodies)


@pytest.mark.parametrize("seed", range(6))
def test_replies_in_any_chunking(impl: str, seed: int) -> None:
    """Replies of every size (some cross the byte window's end, some the buffer's), sent in
    random pieces: every header and payload whole, then a short read at end-of-file."""
    rnd = random.Random(seed)
    bodies, wire = replies(rnd, 3000 if seed < 4 else 60, big=seed >= 4)
    a, b = socket.socketpair()
    with SocketStream(a, "io", "unsigned-byte-8", max_line_length=65536) as s, b:
        last = bodies[-1] + b"\r\n"
        header = b"$%d\r\n" % len(bodies[-1])
        cut = rnd.randrange(1, min(20, len(header) + len(last)))  # the last reply's end
        sender = send_in_chunks(b, wire[:-cut], seed)
        read_replies(s, bodies[:-1])
        got = s.readline()
        if len(last) >= cut:
            assert got == header
            assert s.read(len(last)) == last[: len(last) - cut]  # short: end-of-file
        else:
            assert got == header[: len(header) + len(last) - cut]
        assert s.read(3) == b""
        sender.join_checked()


def test_a_payload_cut_by_the_timeout_then_the_rest(impl: str) -> None:
    """A read of a payload that is not all there ends at the read timeout, short, with what
    came; the rest that comes later is the next read's."""
    rnd = random.Random(7)
    bodies, wire = replies(rnd, 200)
    a, b = socket.socketpair()
    with SocketStream(a, "io", "unsigned-byte-8", read_timeout=0.05) as s, b:
        body = b"0123456789" * 3
        head = b"$30\r\n" + body[:12]
        b.sendall(wire + head)
        read_replies(s, bodies)
        assert s.readline() == b"$30\r\n"
        assert s.read(32) == body[:12]
        assert s.timed_out
        b.sendall(body[12:] + b"\r\n" + wire)
        assert s.read(20) == body[12:] + b"\r\n"
        read_replies(s, bodies)


def _reader(s: SocketStream, got: list[bytes], seed: int, refused: list[int]) -> None:
    """Lines (two in a row cut a byte window) and reads of one or three records."""
    rnd = random.Random(seed)
    while True:
        how = rnd.randrange(4)
        try:
            if how < 2:
                piece = s.readline()
            elif how == 2:
                piece = s.read(RECORD)
            else:
                piece = s.read(RECORD * 3)
        except RuntimeError:
            # Two reads overlapped at the window's end: refused, nothing read (API.md
            # "Threads"); the bytes are still there.
            refused.append(1)
            continue
        if not piece:
            return
        got.append(piece)


def test_two_readers_of_lines_and_payloads(impl: str, fast_switching: None) -> None:
    """Two threads mixing ``readline`` and ``read(n)``: every record exactly once."""
    refused: list[int] = []
    for trial in range(6):
        data = b"".join(b"%08d\n" % i for i in range(trial * 20000, (trial + 1) * 20000))
        a, b = socket.socketpair()
        with SocketStream(a, "io", "unsigned-byte-8") as s, b:
            sender = send_in_chunks(b, data, trial)
            got: list[list[bytes]] = [[], []]
            threads = [PeerThread(_reader, s, got[i], trial * 2 + i, refused) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join_checked()
            sender.join_checked()
        pieces = [p for g in got for p in g]
        assert all(len(p) % RECORD == 0 for p in pieces)
        seen = sorted(p[i : i + RECORD] for p in pieces for i in range(0, len(p), RECORD))
        assert b"".join(seen) == data


@pytest.mark.parametrize("verb", ["read", "read_sequence"])
def test_a_window_end_put_back_after_the_next_window_was_cut(verb: str) -> None:
    """Thread A takes a byte window's last bytes for a payload that is longer; before A puts
    them back, thread B settles that window, cuts the next one and takes a line from it.  A's
    bytes must not be put back into B's window (its bytes would be served twice): A's read is
    refused (RuntimeError), and every record is still read once.  The two threads' steps are
    run here one after the other, in that order."""
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
            # A: the window's rest, for a payload one record longer.
            if verb == "read":
                take = ib.next_read
                part = take(10**6)
            else:
                into = ib.next_into
                seq = bytearray(10**6)
                part = bytes(seq[: into(seq)])
            assert part
            assert len(part) % RECORD == 0
            want = len(part) + RECORD
            # B: a line (the window is used up: it settles it and cuts the next one).
            got.append(s.readline())
            assert ib._batch is not None
            assert ib._batch[0] is not window[0]
            # A goes on: refused, nothing read.
            if verb == "read":
                with pytest.raises(RuntimeError, match="another thread"):
                    ib._read_more(want, part, take)
            else:
                with pytest.raises(RuntimeError, match="another thread"):
                    ib._seq_more(bytearray(want), len(part), into)
            got.append(s.read())
        pieces = b"".join(got)
        seen = sorted(pieces[i : i + RECORD] for i in range(0, len(pieces), RECORD))
        assert b"".join(seen) == data
    finally:
        undo()


def test_a_window_end_put_back_while_another_thread_receives() -> None:
    """As above, but the other thread has also compacted the buffer and is receiving into it
    (its view pins the bytearray, so the bytes cannot be inserted in front): they go back
    once that fill is over, and every record is still read once (before: BufferError, and
    the window's end was lost)."""
    import inspect

    undo = use_buffers("pure")
    try:
        data = b"".join(b"%08d\n" % i for i in range(2000))
        a, b = socket.socketpair()
        with SocketStream(a, "io", "unsigned-byte-8") as s, b:
            b.sendall(data)
            b.shutdown(socket.SHUT_WR)
            ib = s._in
            got = [s.readline() for _ in range(3)]
            take = ib.next_read
            part = take(10**6)  # A: the window's rest, for a payload one record longer
            assert part
            # B: settles the window, takes all that is buffered, compacts and receives.
            got.append(ib.take(len(ib)))
            s._rlock.acquire()
            view = ib.writable(len(ib._buf))
            assert ib._pos < len(part)  # no room in front any more
            outcome: list[BaseException] = []

            def a_goes_on() -> None:
                try:
                    ib._read_more(len(part) + RECORD, part, take)
                except BaseException as exc:
                    outcome.append(exc)

            t = threading.Thread(target=a_goes_on)
            t.start()
            # Wait (on its frame, not a clock) until A waits for the fill to end.
            lines, first = inspect.getsourcelines(_buffer.InputBuffer._untake_window_end)
            at = first + next(i for i, line in enumerate(lines) if "with stream._rlock" in line)
            deadline = time.monotonic() + 10
            while True:
                frame = sys._current_frames().get(t.ident or 0)
                if frame is not None and frame.f_lineno == at:
                    break
                assert time.monotonic() < deadline, "A never reached the read lock"
                os.sched_yield()
            view.release()
            s._rlock.release()
            t.join(10)
            assert len(outcome) == 1
            assert isinstance(outcome[0], RuntimeError)
            got.append(s.read())
        pieces = b"".join(got)
        seen = sorted(pieces[i : i + RECORD] for i in range(0, len(pieces), RECORD))
        assert b"".join(seen) == data
    finally:
        undo()

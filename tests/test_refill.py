"""The short refill and flush paths of a conversation (issue 16's echo goal).

``read_line`` and ``readline()`` with no whole line buffered refill by themselves: the buffer
calls the stream's ``_fill`` (one Python frame) and looks again, instead of the slow path's
chain; outside the main thread ``_fill`` is the one blocking receive itself.  ``force_output``
on a plain stream is one frame and the socket's send.  What must still hold, on real sockets,
both buffer implementations: lines in pieces, the read timeout (between extractions, ending in
end-of-file, nothing lost), end-of-file mid-line, a close from another thread, the line limit,
a verb bound before an encoding change, partial sends and write timeouts (nothing lost,
nothing twice).
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import BUFFER_IMPLS, LONG, SHORT, PeerThread, use_buffers
from sockstream import LineTooLongError, SocketStream, WriteTimeoutError, _impl

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs /proc/<pid>/task/<tid>/wchan"
)


@pytest.fixture(params=BUFFER_IMPLS)
def impl(request: pytest.FixtureRequest) -> Iterator[str]:
    undo = use_buffers(request.param)
    try:
        yield request.param
    finally:
        undo()


def _tcp() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        a = socket.create_connection(lsock.getsockname()[:2])
        b, _ = lsock.accept()
    for sock in (a, b):  # (pieces of a line go at once: no Nagle, no delayed ACK to wait for)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return a, b


@pytest.fixture
def pair(impl: str) -> Iterator[tuple[SocketStream, socket.socket]]:
    a, b = _tcp()
    s = SocketStream(a, read_timeout=LONG)
    try:
        yield s, b
    finally:
        s.close(abort=True)
        b.close()


def _started(fn: Any) -> PeerThread:
    t = PeerThread(fn)
    t.start()
    while t.native_id is None:  # pragma: no cover - set by start()
        pass
    return t


def _when_blocked(t: PeerThread) -> None:
    from test_faults import wait_until_blocked

    assert t.native_id is not None
    wait_until_blocked(t.native_id, ("wait_woken", "sk_wait_data", "poll", "do_sys_poll"))


def test_a_line_in_pieces_is_whole_and_a_conversation_loses_nothing(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    s, peer = pair
    t = _started(lambda: s.read_line())
    for piece in (b"ab", b"cd", b"ef\n"):
        _when_blocked(t)
        peer.sendall(piece)
    assert t.join_checked() == ("abcdef", False)

    def echo() -> int:
        n = 0
        while True:
            line, eof = s.read_line(eof_error=False, eof_value="")
            if eof:
                return n
            s.write_line(line)
            s.force_output()
            n += 1

    server = _started(echo)
    f = peer.makefile("rb")
    for i in range(200):
        line = b"%d" % i * (1 + i % 7) + b"\n"
        peer.sendall(line[:3])
        peer.sendall(line[3:])
        assert f.readline() == line
    peer.shutdown(socket.SHUT_WR)
    assert server.join_checked() == 200
    f.close()


def test_the_read_timeout_ends_a_partial_line_and_loses_nothing(impl: str) -> None:
    a, b = _tcp()
    s = SocketStream(a, read_timeout=SHORT)
    try:
        b.sendall(b"part")
        t0 = time.monotonic()
        got = PeerThread(lambda: s.read_line(False, "eof"))
        got.start()
        assert got.join_checked() == ("part", True)
        assert time.monotonic() - t0 >= SHORT * 0.9
        assert s.timed_out
        got = PeerThread(lambda: s.read_line(False, "eof"))
        got.start()
        assert got.join_checked() == ("eof", True)
        raised = PeerThread(s.read_line)
        raised.start()
        with pytest.raises(EOFError, match="read timeout"):
            raised.join_checked()
        # The clock runs between extractions: bytes that keep coming keep the line going.
        t = _started(lambda: s.read_line())
        for piece in (b"x", b"y", b"z\n"):
            _when_blocked(t)
            peer_sent = time.monotonic()
            b.sendall(piece)
        assert t.join_checked() == ("xyz", False)
        assert time.monotonic() - peer_sent < LONG
        b.sendall(b"after\n")
        got = PeerThread(lambda: s.read_line())
        got.start()
        assert got.join_checked() == ("after", False)
    finally:
        s.close(abort=True)
        b.close()


@pytest.mark.parametrize("element_type", ["base-char", "unsigned-byte-8"])
def test_readline_refills_too(impl: str, element_type: str) -> None:
    a, b = _tcp()
    s = SocketStream(a, element_type=element_type, read_timeout=SHORT)

    def natural(data: bytes) -> Any:
        return data.decode("latin-1") if element_type == "base-char" else data

    try:
        t = _started(lambda: s.readline())
        for piece in (b"ab", b"cd", b"ef\n"):
            _when_blocked(t)
            b.sendall(piece)
        assert t.join_checked() == natural(b"abcdef\n")
        b.sendall(b"part")  # the read timeout ends it: the rest, without a newline
        t = _started(lambda: [s.readline(), s.readline()])
        assert t.join_checked() == [natural(b"part"), natural(b"")]
        assert s.timed_out
        b.sendall(b"more\ntail")
        b.shutdown(socket.SHUT_WR)
        t = _started(lambda: [s.readline() for _ in range(3)])
        assert t.join_checked() == [natural(b"more\n"), natural(b"tail"), natural(b"")]
    finally:
        s.close(abort=True)
        b.close()


def test_end_of_file_mid_line(pair: tuple[SocketStream, socket.socket]) -> None:
    s, peer = pair
    t = _started(lambda: [s.read_line(False, "eof") for _ in range(3)])
    _when_blocked(t)
    peer.sendall(b"one\ntail")
    peer.shutdown(socket.SHUT_WR)
    assert t.join_checked() == [("one", False), ("tail", True), ("eof", True)]


def test_a_close_from_another_thread_wakes_the_refill(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    s, peer = pair
    peer.sendall(b"one\n")
    assert s.read_line() == ("one", False)
    t = _started(lambda: s.read_line(False, "eof"))
    _when_blocked(t)
    s.close()
    assert t.join_checked() == ("eof", True)
    with pytest.raises(ValueError, match="closed"):
        s.read_line()


def test_the_line_limit_holds_across_refills(impl: str) -> None:
    a, b = _tcp()
    s = SocketStream(a, read_timeout=LONG, max_line_length=10, element_type="unsigned-byte-8")
    try:
        t = _started(lambda: s.read_line())
        _when_blocked(t)
        b.sendall(b"0123456")
        _when_blocked(t)
        b.sendall(b"789abc\n")
        with pytest.raises(LineTooLongError):
            t.join_checked()
        seq = bytearray(14)  # nothing was consumed
        assert s.read_sequence(seq) == 14
        assert seq == b"0123456789abc\n"
    finally:
        s.close(abort=True)
        b.close()


def test_a_bound_read_line_after_an_encoding_change_reads_in_a_thread(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    s, peer = pair
    rl = s.read_line
    peer.sendall(b"one\n")
    assert rl() == ("one", False)
    s.encoding = "utf-8"
    t = _started(lambda: (rl(), s.read_line()))
    _when_blocked(t)
    peer.sendall("zwölf\ndrei\n".encode())
    assert t.join_checked() == (("zwölf", False), ("drei", False))


def _profiled(fn: Any, calls: list[str]) -> PeerThread:
    """``fn()`` started in a thread of its own, the sockstream Python functions it calls
    appended to ``calls``."""

    def prof(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and "sockstream" in frame.f_code.co_filename:
            calls.append(frame.f_code.co_name)

    def run() -> Any:
        sys.setprofile(prof)
        try:
            return fn()
        finally:
            sys.setprofile(None)

    return _started(run)


@pytest.mark.skipif(not _impl.ACCELERATED, reason="the compiled twin is not in use")
def test_a_refill_and_a_flush_are_few_python_frames() -> None:
    a, b = _tcp()
    s = SocketStream(a, read_timeout=LONG)
    try:
        # The first read finds out that the peer converses (and sets SO_RCVTIMEO).
        b.sendall(b"first\n")
        assert s.read_line() == ("first", False)
        t = _started(lambda: s.read_line())
        _when_blocked(t)
        b.sendall(b"x\n")
        assert t.join_checked() == ("x", False)
        # The conversation's own read: nothing buffered, the peer answers later.
        calls: list[str] = []
        t = _profiled(lambda: s.read_line(), calls)
        _when_blocked(t)
        b.sendall(b"y\n")
        assert t.join_checked() == ("y", False)
        assert calls == ["_fill"]
        calls = []
        t = _profiled(lambda: s.readline(), calls)
        _when_blocked(t)
        b.sendall(b"w\n")
        assert t.join_checked() == "w\n"
        assert calls == ["_fill"]
        s.write_line("z")
        calls = []
        _profiled(s.force_output, calls).join_checked()
        assert calls == ["force_output", "_flush_out_locked"]
        assert b.recv(10) == b"z\n"
    finally:
        s.close(abort=True)
        b.close()


def test_small_flushes_that_meet_a_full_socket_time_out_and_lose_nothing(impl: str) -> None:
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s = SocketStream(a, write_timeout=SHORT, element_type="unsigned-byte-8")
    try:
        sent = bytearray()
        timed_out = None
        for i in range(10_000):
            chunk = bytes([i % 251]) * 1000
            s.write_sequence(chunk)
            try:
                s.force_output()
            except WriteTimeoutError as exc:
                timed_out = exc
                sent += chunk
                break
            sent += chunk
        assert timed_out is not None, "the socket never filled"
        assert 0 <= timed_out.bytes_written < 1000
        got = bytearray()

        def drain() -> None:
            while len(got) < len(sent):
                data = b.recv(65536)
                assert data
                got.extend(data)

        reader = PeerThread(drain)
        reader.start()
        s.write_timeout = LONG
        s.force_output()  # what was not sent went back in front
        reader.join_checked()
        assert got == sent
    finally:
        s.close(abort=True)
        b.close()

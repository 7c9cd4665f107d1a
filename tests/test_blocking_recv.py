"""A plain stream read outside the main thread waits in the receive itself (issue 16).

The plain transport keeps the socket in blocking mode and passes ``MSG_DONTWAIT`` on every try
that must not block; a read that must wait outside the main thread is one blocking
``recv_into`` with ``read_timeout`` as ``SO_RCVTIMEO`` (``PlainTransport.recv_wait``), instead
of ``poll`` and then ``recv``.  What must still hold: the read timeout (between extractions, an
expired one is end-of-file and loses nothing), a change of ``read_timeout`` between reads, a
close from another thread waking the receive, a signal whose handler returns, writes that never
block past ``write_timeout``, STARTTLS (the TLS engine needs the socket non-blocking), a socket
handed back, and the main thread, which keeps waiting in ``poll`` (KeyboardInterrupt).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import LONG, SHORT, PeerThread
from sockstream import SocketStream, WriteTimeoutError, attach_ssl, detach_ssl
from sockstream._transport import MSG_DONTWAIT

pytestmark = [
    pytest.mark.skipif(not MSG_DONTWAIT, reason="no MSG_DONTWAIT here: the stream polls"),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="needs /proc/<pid>/task/<tid>/wchan"
    ),
]

#: Where a thread sleeps in a blocking receive: TCP's, or a Unix socket's.
IN_RECV = ("wait_woken", "sk_wait_data", "unix_stream_read", "unix_stream_data_wait")


def _pair(kind: str) -> tuple[socket.socket, socket.socket]:
    if kind == "unix":
        return socket.socketpair()
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        a = socket.create_connection(lsock.getsockname()[:2])
        b, _ = lsock.accept()
    return a, b


@pytest.fixture(params=["tcp", "unix"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[SocketStream, socket.socket]]:
    """A plain stream (base-char) and its peer's socket, over TCP or a Unix socketpair."""
    a, b = _pair(request.param)
    s = SocketStream(a, read_timeout=LONG)
    try:
        yield s, b
    finally:
        s.close(abort=True)
        b.close()


def _rcvtimeo(sock: socket.socket) -> tuple[int, int]:
    sec, usec = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    return sec, usec


def _started(fn: Callable[[], Any]) -> PeerThread:
    t = PeerThread(fn)
    t.start()
    while t.native_id is None:  # pragma: no cover - set by start()
        pass
    return t


def test_the_socket_is_blocking_and_a_thread_waits_in_the_receive(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    from test_faults import wait_until_blocked

    s, peer = pair
    assert s.socket is not None
    assert s.socket.getblocking()
    t = _started(lambda: s.read_line())
    assert t.native_id is not None
    wait_until_blocked(t.native_id, IN_RECV)  # not in poll
    peer.sendall(b"hello\n")
    assert t.join_checked() == ("hello", False)
    # The timeout is the socket's receive timeout now.
    assert s.socket is not None
    assert _rcvtimeo(s.socket) == (int(LONG), 0)


def test_read_timeout_in_a_thread_is_end_of_file_and_loses_nothing(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    s, peer = pair
    s.read_timeout = SHORT
    peer.sendall(b"par")  # part of a line: the read takes it, then waits for the rest

    def read() -> tuple[Any, float]:
        t0 = time.monotonic()
        got = s.read_line(eof_error=False, eof_value="EOF")
        return got, time.monotonic() - t0

    got, took = _started(read).join_checked()
    assert got == ("par", True)  # what came is returned, then end-of-file (LispWorks)
    # (SO_RCVTIMEO is counted in kernel ticks and may end up to one early: docs/serving.md)
    assert took >= SHORT * 0.9
    assert s.timed_out
    # The stream is not at end-of-file for good: what comes next is read, exactly once.
    peer.sendall(b"tial\nnext\n")
    assert _started(lambda: s.read_line()).join_checked() == ("tial", False)
    assert not s.timed_out
    assert _started(lambda: s.read_line()).join_checked() == ("next", False)


def test_eof_error_after_the_timeout_in_a_thread(pair: tuple[SocketStream, socket.socket]) -> None:
    s, _peer = pair
    s.read_timeout = SHORT

    def read() -> BaseException | None:
        try:
            s.read_char()
        except EOFError as exc:
            return exc
        return None

    exc = _started(read).join_checked()
    assert isinstance(exc, EOFError)
    assert "read timeout" in str(exc)


def test_a_change_of_read_timeout_reaches_the_receive(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    from test_faults import wait_until_blocked

    s, peer = pair
    s.read_timeout = SHORT
    assert _started(lambda: s.read_char(eof_error=False, eof_value=None)).join_checked() is None
    assert s.socket is not None
    assert _rcvtimeo(s.socket) == (0, int(SHORT * 1e6))
    s.read_timeout = None  # no limit: the receive waits until the data comes
    t = _started(lambda: s.read_char())
    assert t.native_id is not None
    wait_until_blocked(t.native_id, IN_RECV)
    assert _rcvtimeo(s.socket) == (0, 0)
    peer.sendall(b"x")
    assert t.join_checked() == "x"
    s.read_timeout = 1e-9  # below a microsecond: one microsecond, never "no limit"
    assert _started(lambda: s.read_char(eof_error=False, eof_value=None)).join_checked() is None
    assert _rcvtimeo(s.socket) != (0, 0)  # (the kernel keeps it in clock ticks)


def test_close_from_another_thread_wakes_the_receive(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    from test_faults import wait_until_blocked

    s, _peer = pair
    s.read_timeout = None
    t = _started(lambda: s.read_line(eof_error=False, eof_value="EOF"))
    assert t.native_id is not None
    wait_until_blocked(t.native_id, IN_RECV)
    s.close()
    assert t.join_checked() == ("EOF", True)


def test_a_signal_whose_handler_returns_does_not_end_the_receive(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    from test_faults import wait_until_blocked

    if not hasattr(signal, "pthread_kill"):
        pytest.skip("needs signal.pthread_kill")
    s, peer = pair
    seen = threading.Event()
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.set())
    try:
        t = _started(lambda: s.read_line())
        assert t.native_id is not None
        assert t.ident is not None
        wait_until_blocked(t.native_id, IN_RECV)
        signal.pthread_kill(t.ident, signal.SIGUSR1)  # EINTR in the reader; CPython retries
        # The handler runs in the main thread, when it next runs bytecode (not while blocked
        # in Event.wait: the signal went to the reader), so spin, as wait_until_blocked does.
        deadline = time.monotonic() + LONG
        while not seen.is_set():
            assert time.monotonic() < deadline, "the handler never ran"
            os.sched_yield()
        wait_until_blocked(t.native_id, IN_RECV)  # and the reader waits again
        peer.sendall(b"after the signal\n")
        assert t.join_checked() == ("after the signal", False)
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_the_main_thread_still_waits_in_poll(pair: tuple[SocketStream, socket.socket]) -> None:
    """In the main thread a signal handler may raise (Ctrl-C): it waits in poll, where that
    loses nothing (tests/test_faults.py, tests/test_threads.py)."""
    from test_faults import main_native_id, wait_until_blocked

    s, peer = pair
    nid = main_native_id()

    def send_when_polling() -> None:
        wait_until_blocked(nid, "poll")
        peer.sendall(b"polled\n")

    helper = _started(send_when_polling)
    assert s.read_line() == ("polled", False)
    helper.join_checked()


def test_writes_never_block_past_write_timeout(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    s, _peer = pair
    s.write_timeout = SHORT
    data = "x" * (16 * 1024 * 1024)  # more than the kernel's buffers hold

    def write() -> tuple[BaseException | None, float]:
        t0 = time.monotonic()
        try:
            s.write_string(data)
            s.force_output()
        except WriteTimeoutError as exc:
            return exc, time.monotonic() - t0
        return None, time.monotonic() - t0

    for run in (_started(write).join_checked, lambda: write()):  # a thread, then the main one
        exc, took = run()
        assert isinstance(exc, WriteTimeoutError)
        assert took >= SHORT


def test_starttls_makes_the_socket_non_blocking_and_back(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    from test_faults import wait_until_blocked

    a, b = socket.socketpair()
    with SocketStream(a, read_timeout=LONG) as server, SocketStream(b, read_timeout=LONG) as client:
        t = _started(lambda: attach_ssl(server, ssl_ctx=server_ctx, handshake_timeout=LONG))
        attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client", tlsext_host_name="localhost")
        t.join_checked()
        assert server.socket is not None
        assert not server.socket.getblocking()
        # A TLS read in a thread: the engine's receives never block (it waits in poll).
        t = _started(lambda: server.read_line())
        assert t.native_id is not None
        wait_until_blocked(t.native_id, "poll")
        client.write_line("over TLS")
        client.force_output()
        assert t.join_checked() == ("over TLS", False)
        t = _started(lambda: detach_ssl(server))
        detach_ssl(client)
        t.join_checked()
        assert server.socket is not None
        assert server.socket.getblocking()
        t = _started(lambda: server.read_line())
        assert t.native_id is not None
        wait_until_blocked(t.native_id, IN_RECV)
        client.write_line("plain again")
        client.force_output()
        assert t.join_checked() == ("plain again", False)


def test_a_socket_handed_back_has_no_receive_timeout_left(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    s, _peer = pair
    s.read_timeout = SHORT
    assert _started(lambda: s.read_char(eof_error=False, eof_value=None)).join_checked() is None
    old = s.replace_socket(None)
    assert old is not None
    try:
        assert old.getblocking()
        assert _rcvtimeo(old) == (0, 0)
    finally:
        old.close()


def test_a_preset_receive_timeout_is_used_and_a_different_one_replaced(
    pair: tuple[SocketStream, socket.socket],
) -> None:
    """``serve`` presets SO_RCVTIMEO in its accept loop (a setsockopt with a buffer costs the
    thread that first makes one a page of stack); the stream's thread finds it there."""
    from sockstream._transport import preset_rcvtimeo

    s, _peer = pair
    sock = s.socket
    assert sock is not None
    preset_rcvtimeo(sock, SHORT)
    s.read_timeout = SHORT
    assert _started(lambda: s.read_char(eof_error=False, eof_value=None)).join_checked() is None
    assert s.timed_out
    assert _rcvtimeo(sock) == (0, int(SHORT * 1e6))
    # A preset that is not the stream's timeout is not trusted: the read still times out
    # after SHORT (not LONG).
    s.replace_socket(s.replace_socket(None))  # a fresh transport, which knows nothing yet
    preset_rcvtimeo(sock, LONG)
    t0 = time.monotonic()
    assert _started(lambda: s.read_char(eof_error=False, eof_value=None)).join_checked() is None
    assert time.monotonic() - t0 < LONG
    assert _rcvtimeo(sock) == (0, int(SHORT * 1e6))


def test_serve_presets_the_receive_timeout_of_plain_connections() -> None:
    from sockstream import serve

    seen: list[tuple[int, int]] = []

    def handler(stream: SocketStream) -> None:
        assert stream.socket is not None
        seen.append(_rcvtimeo(stream.socket))
        stream.write_line(stream.read_line()[0])
        stream.force_output()

    with (
        serve(handler, address="127.0.0.1", read_timeout=7.5) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LONG) as c,
    ):
        c.sendall(b"ping\n")
        got = b""
        while not got.endswith(b"\n"):
            chunk = c.recv(100)
            assert chunk
            got += chunk
        assert got == b"ping\n"
    assert seen == [(7, 500_000)]

"""Bad input gets a clear error and changes nothing (issue 12, "Bad input").

Each case asserts the exception type, that the message names the bad value, and that nothing was
sent to the peer and nothing consumed.  Huge timeouts are not bad input: they wait as long as the
OS allows, and never crash with an ``OverflowError``.
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import LONG, Make, PeerThread
from sockstream import (
    SocketIOError,
    SocketStream,
    attach_ssl,
    open_tcp_stream,
    serve,
    wait_for_input_streams,
)

LOCAL = "127.0.0.1"
HUGE = [3e6, 1e306, 2**70]


def nothing_received(peer: socket.socket) -> bool:
    """True if ``peer`` has received no byte (end-of-file or nothing yet)."""
    peer.setblocking(False)
    try:
        return peer.recv(1) == b""
    except (BlockingIOError, ConnectionResetError):  # nothing, or closed with nothing sent
        return True
    finally:
        peer.setblocking(True)


# ---- huge timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [*HUGE, 10**400])
def test_wait_for_input_streams_with_a_huge_timeout(make: Make, timeout: float) -> None:
    s, peer = make()
    peer.sendall(b"x")  # on the socket, not in the buffer: the call must poll
    assert wait_for_input_streams([s], timeout=timeout) == [s]
    assert s.read_char() == "x"


@pytest.mark.parametrize("timeout", HUGE)
def test_stream_waiter_with_a_huge_timeout(make: Make, timeout: float) -> None:
    from sockstream import StreamWaiter

    s, peer = make()
    peer.sendall(b"x")
    with StreamWaiter([s]) as waiter:
        assert waiter.wait(timeout=timeout) == [s]


@pytest.mark.parametrize("timeout", HUGE)
def test_wait_for_input_streams_waits_with_a_huge_timeout(
    make: Make, peer: Callable[..., PeerThread], timeout: float
) -> None:
    s, p = make()
    started = threading.Event()

    def later() -> None:
        started.wait(LONG)
        threading.Event().wait(0.1)  # let the waiter enter poll: it must then wait, not crash
        p.sendall(b"y")

    t = peer(later)
    started.set()
    assert wait_for_input_streams([s], timeout=timeout) == [s]
    t.join_checked()


@pytest.mark.parametrize("errorp", [True, False])
@pytest.mark.parametrize("timeout", HUGE)
def test_open_tcp_stream_with_a_huge_timeout(errorp: bool, timeout: float) -> None:
    with socket.create_server((LOCAL, 0)) as listener:
        s = open_tcp_stream(LOCAL, listener.getsockname()[1], timeout=timeout, errorp=errorp)
        assert s is not None
        conn, _ = listener.accept()
        with s, conn:
            conn.sendall(b"hi")
            assert s.read(2) == "hi"


def test_open_tcp_stream_by_name_with_a_huge_timeout() -> None:
    with socket.create_server((LOCAL, 0)) as listener:
        s = open_tcp_stream("localhost", listener.getsockname()[1], timeout=1e306, ipv6=False)
        assert s is not None
        conn, _ = listener.accept()
        s.close()
        conn.close()


@pytest.mark.parametrize("timeout", HUGE)
def test_huge_read_timeout_is_accepted_and_then_works(
    make: Make, peer: Callable[..., PeerThread], timeout: float
) -> None:
    s, p = make(read_timeout=timeout)
    assert s.read_timeout == float(timeout)
    p.sendall(b"a")

    def later() -> None:
        threading.Event().wait(0.1)  # the read has taken "a" and waits for "b"
        p.sendall(b"b")

    t = peer(later)
    assert s.read(2) == "ab"  # waited (in pieces the OS accepts) and read
    t.join_checked()
    s.read_timeout = timeout  # the setter too
    s.write_timeout = timeout
    s.write("ok")
    s.flush()
    assert p.recv(2) == b"ok"


def test_huge_handshake_timeout_works(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    a, b = socket.socketpair()

    def server() -> Any:
        with SocketStream(b, ssl_ctx=server_ctx, handshake_timeout=1e306) as srv:
            line = srv.read_line()
            srv.write_line("done")
            return line

    t = PeerThread(server)
    t.start()
    with SocketStream(
        a,
        ssl_ctx=client_ctx,
        ssl_side="client",
        tlsext_host_name="localhost",
        handshake_timeout=1e306,
    ) as cli:
        cli.write_line("over TLS")
        cli.flush()
        assert cli.read_line() == ("done", False)
    assert t.join_checked() == ("over TLS", False)


@pytest.mark.parametrize("keyword", ["read_timeout", "write_timeout", "handshake_timeout"])
def test_timeout_too_large_for_a_float_is_a_value_error(keyword: str) -> None:
    a, b = socket.socketpair()
    with b:
        kw: dict[str, Any] = {keyword: 10**400}
        with pytest.raises(ValueError, match=rf"{keyword} must be .*, not 1000000000") as info:
            SocketStream(a, **kw)
        assert not isinstance(info.value, OverflowError)
        assert a.fileno() == -1  # the constructor closed the socket, as it always does
        assert nothing_received(b)


def test_timeout_too_large_elsewhere(make: Make) -> None:
    s, p = make()
    p.sendall(b"kept")
    with pytest.raises(ValueError, match="read_timeout must be"):
        s.read_timeout = 10**400
    assert s.read_timeout is None  # unchanged
    with pytest.raises(ValueError, match="timeout must be"):
        open_tcp_stream(LOCAL, 9, timeout=10**400)
    with pytest.raises(ValueError, match="read_timeout must be"):
        open_tcp_stream(LOCAL, 9, read_timeout=10**400)
    with pytest.raises(ValueError, match="read_timeout must be"):
        serve(lambda s: None, address=LOCAL, read_timeout=10**400)
    assert s.read(4) == "kept"  # nothing consumed
    assert nothing_received(p)


# ---- sockets that cannot carry a stream ------------------------------------------------------


def test_udp_socket_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind((LOCAL, 0))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.connect(peer.getsockname())
        with pytest.raises(ValueError, match="SOCK_STREAM socket, not a SOCK_DGRAM one"):
            SocketStream(udp)
        assert udp.fileno() == -1
        assert nothing_received(peer)


def test_udp_socket_as_a_descriptor_is_refused() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = udp.detach()
    with pytest.raises(ValueError, match="SOCK_DGRAM"):
        SocketStream(fd)
    with pytest.raises(OSError):  # the descriptor was closed with the failed stream
        socket.socket(fileno=fd).close()


def test_listening_socket_is_refused() -> None:
    with socket.create_server((LOCAL, 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=LONG)
        with client:
            fd = listener.fileno()
            with pytest.raises(ValueError, match="not a listening one") as info:
                SocketStream(listener)
            assert f"fd={fd}" in str(info.value)
            assert nothing_received(client)


def test_unconnected_socket_is_refused() -> None:
    sock = socket.socket()
    with pytest.raises(ValueError, match="not an unconnected one"):
        SocketStream(sock, "input")
    assert sock.fileno() == -1


def test_closed_socket_is_refused() -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(ValueError, match="not a closed one"):
        SocketStream(sock)


def test_replace_socket_refuses_a_udp_socket_and_changes_nothing(make: Make) -> None:
    s, p = make()
    p.sendall(b"abc")
    assert s.read_char() == "a"
    s.write("pending")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(ValueError, match="SOCK_DGRAM"):
            s.replace_socket(udp)
        assert udp.fileno() >= 0  # not ours: left open
    assert s.read(2) == "bc"  # same socket, nothing consumed
    assert nothing_received(p)  # the pending output was not sent...
    s.flush()
    assert p.recv(100) == b"pending"  # ...and is still there


def test_a_connection_reset_before_the_stream_is_an_io_error(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
) -> None:
    """A socket that was connected and then reset is the peer's doing, not a caller's mistake:
    an I/O error (as serve logs peer faults), not the "unconnected" ValueError."""
    a, b = tcp_pair()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    b.close()  # RST
    select.select([a], [], [], LONG)  # until the reset has arrived
    with pytest.raises(SocketIOError, match="reset") as info:
        SocketStream(a)
    assert not isinstance(info.value, ValueError)


# ---- TLS without a host name on a socket without an IP peer ----------------------------------


def test_tls_client_over_socketpair_without_host_name() -> None:
    a, b = socket.socketpair()
    with b:
        with pytest.raises(ValueError, match=r"tlsext_host_name=.*not '' \(AF_UNIX\)"):
            SocketStream(a, ssl_ctx=True, ssl_side="client")
        assert nothing_received(b)  # no ClientHello went out


def test_attach_ssl_client_without_host_name_sends_nothing(make: Make) -> None:
    s, p = make()
    s.write("pending output")
    with pytest.raises(ValueError, match="tlsext_host_name"):
        attach_ssl(s, ssl_ctx=True, ssl_side="client")
    assert nothing_received(p)


def test_tls_client_over_socketpair_with_host_name_is_fine(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    a, b = socket.socketpair()

    def server() -> None:
        with SocketStream(b, ssl_ctx=server_ctx) as srv:
            srv.write_line("hello")

    t = PeerThread(server)
    t.start()
    with SocketStream(
        a, ssl_ctx=client_ctx, ssl_side="client", tlsext_host_name="localhost"
    ) as cli:
        assert cli.read_line() == ("hello", False)
    t.join_checked()


# ---- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8"])
@pytest.mark.parametrize("bad", ["3", 2.5])
def test_read_size_that_is_not_an_int_names_size(make: Make, et: str, bad: Any) -> None:
    s, p = make(et)
    p.sendall(b"abcd")
    with pytest.raises(TypeError, match=f"size must be an int or None, not {bad!r}"):
        s.read(bad)
    with pytest.raises(TypeError, match="size must be"):
        s.readline(bad)
    data = s.read(4)
    assert data in ("abcd", b"abcd")  # nothing consumed
    assert nothing_received(p)


# ---- serve with TLS and no certificate ----------------------------------------------------------


@pytest.mark.parametrize("ssl_ctx", [True, "default", "tls-v1-2", "tls-v1-3", "context"])
def test_serve_tls_without_a_certificate_is_refused_at_start(ssl_ctx: Any) -> None:
    if ssl_ctx == "context":
        ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    threads = threading.active_count()
    with pytest.raises(ValueError, match="needs a server certificate") as info:
        serve(lambda s: None, address=LOCAL, ssl_ctx=ssl_ctx)
    message = str(info.value)
    assert "ctx_configure_callback" in message
    assert "load_cert_chain" in message
    assert repr(ssl_ctx) in message
    assert threading.active_count() == threads  # nothing started


def test_serve_tls_with_a_certificate_loaded_by_the_callback(
    server_cert: Any, client_ctx: ssl.SSLContext
) -> None:
    def handler(stream: SocketStream) -> None:
        stream.write_line(stream.read_line()[0].upper())

    with (
        serve(
            handler, address=LOCAL, ssl_ctx=True, ctx_configure_callback=server_cert.configure_cert
        ) as server,
        open_tcp_stream(
            LOCAL, server.port, ssl_ctx=client_ctx, tlsext_host_name="localhost", read_timeout=LONG
        ) as s,
    ):
        s.write_line("hello")
        s.flush()
        assert s.read_line() == ("HELLO", False)


def test_serve_tls_with_an_sni_callback_is_not_second_guessed() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.sni_callback = lambda obj, name, c: None
    serve(lambda s: None, address=LOCAL, ssl_ctx=ctx).terminate()


@pytest.mark.parametrize("timeout", HUGE)
def test_server_join_and_terminate_with_a_huge_timeout(timeout: float) -> None:
    entered = threading.Event()
    release = threading.Event()

    def handler(stream: SocketStream) -> None:
        entered.set()
        release.wait(LONG)

    server = serve(handler, address=LOCAL)
    with socket.create_connection((LOCAL, server.port), timeout=LONG):
        assert entered.wait(LONG)
        assert not server.join(timeout=0.01)
        release.set()
        server.terminate(timeout=timeout)
    assert server.join(timeout=timeout)

"""open_tcp_stream: resolution, happy eyeballs, timeouts, options, errors and TLS, on loopback."""

from __future__ import annotations

import errno
import math
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sockstream
from conftest import LONG, SHORT, PeerThread, requires_ipv6
from sockstream import SocketCreateError, SSLFailure, open_tcp_stream
from sockstream._connect import (
    CONNECTION_ATTEMPT_DELAY,
    happy_eyeballs_connect,
    host_string,
    is_ip_literal,
    reorder_for_rfc_8305_section_4,
    resolve_service,
)

# ---- helpers --------------------------------------------------------------------------------


@pytest.fixture
def listener(loopback_host: str) -> Iterator[socket.socket]:
    """A listening socket on the loopback address of the test."""
    family = socket.AF_INET6 if ":" in loopback_host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((loopback_host, 0))
        s.listen(8)
        yield s


def _listen(host: str = "127.0.0.1", backlog: int = 8) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(backlog)
    return s


def _refusing_port(host: str = "127.0.0.1") -> socket.socket:
    """A socket bound to a port but not listening: connecting to that port is refused."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((host, 0))
    return s


def _peer(stream: sockstream.SocketStream) -> tuple[Any, ...]:
    address = stream.peer_address
    assert isinstance(address, tuple)
    return address


def _echo_one_line(lsock: socket.socket) -> bytes:
    """Accept one connection, echo one line back, close; return the line."""
    conn, _ = lsock.accept()
    with conn, conn.makefile("rwb") as f:
        line = f.readline()
        f.write(line)
        f.flush()
    return line


def _echo_peer(peer: Callable[..., PeerThread], lsock: socket.socket) -> PeerThread:
    return peer(_echo_one_line, lsock)


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """An address whose accept queue is full, so that a new SYN is dropped and a connect hangs.

    Linux keeps backlog+1 connections in the accept queue and then drops SYNs; fill it with
    connections that are never accepted, until one of them no longer completes.
    """
    lsock = _listen(backlog=0)
    fillers: list[socket.socket] = []
    try:
        addr = lsock.getsockname()
        for _ in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(s)
            s.setblocking(False)
            s.connect_ex(addr)
            _, writable, _ = select.select([], [s], [], 0.5)
            if not writable:
                break
        else:
            pytest.skip("the kernel accepted every connection: cannot make a full backlog")
        yield addr
    finally:
        for s in fillers:
            s.close()
        lsock.close()


# ---- argument checks and private helpers ------------------------------------------------------


def test_resolve_service_names_and_numbers() -> None:
    assert resolve_service(8080) == 8080
    assert resolve_service("8080") == 8080
    assert resolve_service(" 443 ") == 443
    assert resolve_service("http") == socket.getservbyname("http", "tcp") == 80
    assert resolve_service("https") == 443
    assert resolve_service(0, allow_zero=True) == 0


def test_resolve_service_rejects_bad_values() -> None:
    with pytest.raises(SocketCreateError, match="no-such-service-here"):
        resolve_service("no-such-service-here")
    with pytest.raises(ValueError, match="70000"):
        resolve_service(70000)
    with pytest.raises(ValueError, match="0"):
        resolve_service(0)
    with pytest.raises(TypeError, match=r"1\.5"):
        resolve_service(1.5)
    with pytest.raises(TypeError, match="True"):
        resolve_service(True)
    with pytest.raises(ValueError):
        resolve_service("")


def test_host_string_accepts_int_addresses() -> None:
    assert host_string(0x7F000001) == "127.0.0.1"
    assert host_string("localhost") == "localhost"
    with pytest.raises(ValueError, match="4294967296"):
        host_string(2**32)
    with pytest.raises(TypeError, match="b'x'"):
        host_string(b"x")
    with pytest.raises(TypeError):
        host_string(True)


def test_is_ip_literal() -> None:
    assert is_ip_literal("127.0.0.1")
    assert is_ip_literal("::1")
    assert not is_ip_literal("localhost")
    assert not is_ip_literal("sni.example.test")


def test_rfc_8305_interleaving() -> None:
    v6: list[tuple[int, Any]] = [(socket.AF_INET6, (f"::{i}", 1, 0, 0)) for i in range(1, 4)]
    v4: list[tuple[int, Any]] = [(socket.AF_INET, (f"10.0.0.{i}", 1)) for i in range(1, 3)]
    ordered = reorder_for_rfc_8305_section_4(v6 + v4)
    assert [t[1][0] for t in ordered] == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]
    ordered = reorder_for_rfc_8305_section_4(v4 + v6)
    assert [t[0] for t in ordered][:4] == [socket.AF_INET, socket.AF_INET6] * 2
    assert reorder_for_rfc_8305_section_4([]) == []


@pytest.mark.parametrize(
    ("keyword", "value", "error"),
    [
        ("timeout", -1, ValueError),
        ("timeout", 0, ValueError),
        ("timeout", math.nan, ValueError),
        ("timeout", True, TypeError),
        ("timeout", "1", TypeError),
        ("read_timeout", -2, ValueError),
        ("write_timeout", "x", TypeError),
        ("handshake_timeout", 0, ValueError),
        ("ipv6", "both", ValueError),
        ("ipv6", 6, ValueError),
        ("direction", "sideways", ValueError),
        ("element_type", "utf-8", ValueError),
        ("local_port", 70000, ValueError),
        ("local_port", "80", TypeError),
        ("nodelay", 1, TypeError),
        ("errorp", None, TypeError),
    ],
)
def test_bad_arguments_raise_before_connecting(keyword: str, value: Any, error: type) -> None:
    with _listen() as lsock:
        lsock.setblocking(False)
        with pytest.raises(error, match=keyword):
            open_tcp_stream("127.0.0.1", lsock.getsockname()[1], **{keyword: value})
        with pytest.raises(BlockingIOError):
            lsock.accept()  # nothing connected


def test_bad_port_raises_even_with_errorp_false() -> None:
    with pytest.raises(ValueError, match="70000"):
        open_tcp_stream("127.0.0.1", 70000, errorp=False)
    with pytest.raises(ValueError, match="0"):
        open_tcp_stream("127.0.0.1", 0, errorp=False)


# ---- connecting -----------------------------------------------------------------------------


def test_connect_and_echo(
    loopback_host: str, listener: socket.socket, peer: Callable[..., PeerThread]
) -> None:
    port = listener.getsockname()[1]
    echo = _echo_peer(peer, listener)
    with open_tcp_stream(loopback_host, port) as stream:
        assert isinstance(stream, sockstream.SocketStream)
        assert stream.element_type == "base-char"
        assert stream.direction == "io"
        assert _peer(stream)[:2] == (loopback_host, port)
        stream.write_line("hello")
        stream.force_output()
        assert stream.read_line() == ("hello", False)
    assert echo.join_checked() == b"hello\n"


def test_service_as_string_and_int_host(peer: Callable[..., PeerThread]) -> None:
    with _listen() as lsock:
        port = lsock.getsockname()[1]
        echo = _echo_peer(peer, lsock)
        with open_tcp_stream(0x7F000001, str(port), element_type="(unsigned-byte 8)") as s:
            assert s.element_type == "unsigned-byte-8"
            s.write(b"x\n")
            s.force_output()
            assert s.read_line() == ("x", False)
        echo.join_checked()


def test_keywords_reach_the_stream_and_socket(peer: Callable[..., PeerThread]) -> None:
    with _listen() as lsock:
        echo = _echo_peer(peer, lsock)
        with open_tcp_stream(
            "127.0.0.1",
            lsock.getsockname()[1],
            read_timeout=1.5,
            write_timeout=2.5,
            nodelay=False,
            keepalive=True,
            direction="io",
        ) as s:
            assert s.read_timeout == 1.5
            assert s.write_timeout == 2.5
            sock = s.socket
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
            s.write_line("")
        echo.join_checked()
    with _listen() as lsock:
        echo = _echo_peer(peer, lsock)
        with open_tcp_stream("127.0.0.1", lsock.getsockname()[1]) as s:
            sock = s.socket
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
            s.write_line("")
        echo.join_checked()


def test_local_address_and_port(peer: Callable[..., PeerThread]) -> None:
    with socket.socket() as probe:  # find a free port, then let it go
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    with _listen() as lsock:
        echo = _echo_peer(peer, lsock)
        with open_tcp_stream(
            "127.0.0.1", lsock.getsockname()[1], local_address="127.0.0.1", local_port=local_port
        ) as s:
            assert (s.local_address or ())[:2] == ("127.0.0.1", local_port)
            s.write_line("")
        echo.join_checked()


@requires_ipv6
def test_local_address_of_another_family_is_an_error() -> None:
    with _listen() as lsock, pytest.raises(SocketCreateError, match="local_address"):
        open_tcp_stream("127.0.0.1", lsock.getsockname()[1], local_address="::1")


@requires_ipv6
def test_ipv6_on_loopback(peer: Callable[..., PeerThread]) -> None:
    with _listen("::1") as lsock:
        echo = _echo_peer(peer, lsock)
        with open_tcp_stream("::1", lsock.getsockname()[1], ipv6=True) as s:
            assert _peer(s)[0] == "::1"
            s.write_line("six")
            s.force_output()
            assert s.read_line() == ("six", False)
        echo.join_checked()


def test_ipv6_false_means_ipv4_only(peer: Callable[..., PeerThread]) -> None:
    with _listen() as lsock:
        echo = _echo_peer(peer, lsock)
        with open_tcp_stream("localhost", lsock.getsockname()[1], ipv6=False) as s:
            assert _peer(s)[0] == "127.0.0.1"
            s.write_line("")
        echo.join_checked()
    with pytest.raises(SocketCreateError, match="::1"):
        open_tcp_stream("::1", 80, ipv6=False)


@requires_ipv6
def test_ipv6_true_means_ipv6_only() -> None:
    with _listen() as lsock, pytest.raises(SocketCreateError, match=r"127\.0\.0\.1"):
        open_tcp_stream("127.0.0.1", lsock.getsockname()[1], ipv6=True)


@requires_ipv6
def test_localhost_falls_over_to_the_family_that_listens(peer: Callable[..., PeerThread]) -> None:
    """ "localhost" has two addresses; the one that refuses costs no more than its refusal."""
    infos = socket.getaddrinfo("localhost", 80, socket.AF_UNSPEC, socket.SOCK_STREAM)
    if {i[0] for i in infos} != {socket.AF_INET, socket.AF_INET6}:
        pytest.skip("localhost does not resolve to both ::1 and 127.0.0.1 here")
    with _listen() as lsock:
        port = lsock.getsockname()[1]
        with socket.socket(socket.AF_INET6) as v6:
            try:
                v6.bind(("::1", port))  # make sure [::1]:port refuses
            except OSError:
                pytest.skip("the same port is taken on ::1")
            echo = _echo_peer(peer, lsock)
            t0 = time.monotonic()
            with open_tcp_stream("localhost", port, timeout=LONG) as s:
                assert _peer(s)[0] == "127.0.0.1"
                s.write_line("")
            assert time.monotonic() - t0 < LONG / 2
            echo.join_checked()


@requires_ipv6
def test_happy_eyeballs_across_families(peer: Callable[..., PeerThread]) -> None:
    """An IPv6 address that refuses, then an IPv4 one that accepts (what "localhost" may give)."""
    with _refusing_port("::1") as refused, _listen() as good:
        targets = reorder_for_rfc_8305_section_4(
            [(socket.AF_INET6, refused.getsockname()), (socket.AF_INET, good.getsockname())]
        )
        sock, errors = happy_eyeballs_connect(targets, time.monotonic() + LONG)
        assert sock is not None
        with sock:
            assert sock.family == socket.AF_INET
        assert [e.errno for _, e in errors] == [errno.ECONNREFUSED]


def test_refused_raises_socket_create_error() -> None:
    with _refusing_port() as r:
        port = r.getsockname()[1]
        with pytest.raises(SocketCreateError) as info:
            open_tcp_stream("127.0.0.1", port)
        error = info.value
        assert error.errno == errno.ECONNREFUSED
        assert "127.0.0.1" in str(error)
        assert str(port) in str(error)
        assert isinstance(error.__cause__, ConnectionRefusedError) or (
            isinstance(error.__cause__, OSError) and error.__cause__.errno == errno.ECONNREFUSED
        )
        assert isinstance(error, OSError)
        assert open_tcp_stream("127.0.0.1", port, errorp=False) is None


def test_unknown_host_and_service() -> None:
    with pytest.raises(SocketCreateError, match=r"no-such-host\.invalid"):
        open_tcp_stream("no-such-host.invalid", 80, timeout=LONG)
    assert open_tcp_stream("127.0.0.1", "no-such-service-here", errorp=False) is None


def test_connect_timeout_on_a_full_backlog(blackhole: tuple[str, int]) -> None:
    t0 = time.monotonic()
    with pytest.raises(SocketCreateError) as info:
        open_tcp_stream(blackhole[0], blackhole[1], timeout=SHORT)
    elapsed = time.monotonic() - t0
    assert elapsed >= SHORT * 0.9
    assert elapsed < LONG
    assert info.value.errno == errno.ETIMEDOUT
    assert str(blackhole[1]) in str(info.value)
    assert open_tcp_stream(blackhole[0], blackhole[1], timeout=SHORT, errorp=False) is None


def test_happy_eyeballs_staggers_and_the_first_success_wins(
    blackhole: tuple[str, int], peer: Callable[..., PeerThread]
) -> None:
    with _listen() as good:
        targets = [(socket.AF_INET, blackhole), (socket.AF_INET, good.getsockname())]
        t0 = time.monotonic()
        sock, errors = happy_eyeballs_connect(targets, time.monotonic() + LONG)
        elapsed = time.monotonic() - t0
        assert sock is not None
        with sock:
            assert sock.getpeername() == good.getsockname()
            assert sock.getblocking()
        assert errors == []
        assert elapsed >= CONNECTION_ATTEMPT_DELAY * 0.9  # the second attempt waited its turn
        assert elapsed < LONG


def test_a_failed_attempt_starts_the_next_at_once() -> None:
    with _refusing_port() as refused, _listen() as good:
        targets = [(socket.AF_INET, refused.getsockname()), (socket.AF_INET, good.getsockname())]
        sock, errors = happy_eyeballs_connect(targets, None, delay=LONG * 10)
        assert sock is not None
        sock.close()
        assert len(errors) == 1
        assert errors[0][1].errno == errno.ECONNREFUSED


def test_timeout_is_one_budget_for_all_addresses(blackhole: tuple[str, int]) -> None:
    targets = [(socket.AF_INET, blackhole)] * 3
    t0 = time.monotonic()
    sock, errors = happy_eyeballs_connect(targets, time.monotonic() + 2 * SHORT, delay=SHORT)
    elapsed = time.monotonic() - t0
    assert sock is None
    assert errors
    assert all(isinstance(e, TimeoutError) for _, e in errors)
    assert 2 * SHORT * 0.9 <= elapsed < LONG  # not 3 x the timeout


# ---- TLS ------------------------------------------------------------------------------------


def _tls_echo_server(lsock: socket.socket, ctx: ssl.SSLContext, names: list[str | None]) -> None:
    def sni(_obj: Any, name: str | None, _ctx: Any) -> None:
        names.append(name)

    ctx.sni_callback = sni
    conn, _ = lsock.accept()
    with conn:
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with tls, tls.makefile("rwb") as f:
            f.write(f.readline())
            f.flush()
            try:
                tls.unwrap()
            except (ssl.SSLError, OSError):
                pass


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_client_verifies_and_sends_sni(
    host: str,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    peer: Callable[..., PeerThread],
) -> None:
    names: list[str | None] = []
    with _listen() as lsock:
        srv = peer(_tls_echo_server, lsock, server_ctx, names)
        with open_tcp_stream(host, lsock.getsockname()[1], ssl_ctx=client_ctx, timeout=LONG) as s:
            assert s.ssl_object is not None
            s.write_line("secret")
            s.force_output()
            assert s.read_line() == ("secret", False)
        srv.join_checked()
    # Python sends no SNI for an address; for a name it sends the name.
    assert names == (["localhost"] if host == "localhost" else [None])


def test_tls_with_a_context_made_by_the_stream(
    server_ctx: ssl.SSLContext, cert_files: dict[str, str], peer: Callable[..., PeerThread]
) -> None:
    configured: list[ssl.SSLContext] = []

    def configure(ctx: ssl.SSLContext) -> None:
        configured.append(ctx)
        ctx.load_verify_locations(cert_files["ca"])

    names: list[str | None] = []
    with _listen() as lsock:
        srv = peer(_tls_echo_server, lsock, server_ctx, names)
        with open_tcp_stream(
            "localhost",
            lsock.getsockname()[1],
            ssl_ctx=True,
            ctx_configure_callback=configure,
            tlsext_host_name="sni.example.test",
        ) as s:
            s.write_line("x")
            s.force_output()
            assert s.read_line() == ("x", False)
        srv.join_checked()
    assert len(configured) == 1
    assert names == ["sni.example.test"]


def test_tls_wrong_name_fails_and_errorp_false_returns_none(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, peer: Callable[..., PeerThread]
) -> None:
    for errorp in (True, False):
        with _listen() as lsock:
            srv = peer(_tls_echo_server, lsock, server_ctx, [])
            port = lsock.getsockname()[1]
            kwargs: dict[str, Any] = {"ssl_ctx": client_ctx, "tlsext_host_name": "wrong.example"}
            if errorp:
                with pytest.raises(SSLFailure):
                    open_tcp_stream("localhost", port, **kwargs)
            else:
                assert open_tcp_stream("localhost", port, errorp=False, **kwargs) is None
            srv.join_checked()


def test_tls_handshake_timeout_against_a_silent_server(client_ctx: ssl.SSLContext) -> None:
    with _listen() as lsock:  # accepts (in the kernel) but never answers the ClientHello
        t0 = time.monotonic()
        with pytest.raises(SSLFailure) as info:
            open_tcp_stream(
                "localhost", lsock.getsockname()[1], ssl_ctx=client_ctx, handshake_timeout=SHORT
            )
        assert isinstance(info.value, TimeoutError)
        assert SHORT * 0.9 <= time.monotonic() - t0 < LONG
        # ... and `timeout` bounds the handshake too when handshake_timeout is not given
        with pytest.raises(SSLFailure):
            open_tcp_stream("localhost", lsock.getsockname()[1], ssl_ctx=client_ctx, timeout=SHORT)

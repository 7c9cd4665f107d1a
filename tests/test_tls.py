"""TLS on socket streams: ssl_ctx forms, sides, callbacks, SNI, failures, timeouts, duplex, leaks.

Both ends are real loopback sockets with certificates made at test time by trustme (conftest's
session ``ca`` and ``server_cert``).  A TLS connection needs both handshakes to run at once, so
one side is built in a ``PeerThread`` while the other is built in the test's thread; everything
else is synchronised by joins, events and ``select`` on the descriptors, never by sleeping.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import LONG, SHORT, PeerThread
from sockstream import (
    SocketIOError,
    SocketStream,
    SSLFailure,
    SSLTruncatedError,
    WriteTimeoutError,
    detach_ssl,
    make_ssl_ctx,
    wait_for_input_streams,
)

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
ELEMENT_TYPES = ["base-char", "unsigned-byte-8", "signed-byte-8"]
PairMaker = Callable[..., "tuple[SocketStream, SocketStream]"]


def _pin(ctx: ssl.SSLContext, version: str) -> ssl.SSLContext:
    """Make ``ctx`` speak exactly one TLS version."""
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


def _closed(sock: socket.socket) -> bool:
    return sock.fileno() == -1


def _open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(params=list(VERSIONS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tls_pair(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]], streams: list[SocketStream]
) -> PairMaker:
    """Make ``(server, client)`` SocketStreams over one TCP pair, both handshakes concurrent."""

    def make(
        server_kw: dict[str, Any], client_kw: dict[str, Any], family: int = socket.AF_INET
    ) -> tuple[SocketStream, SocketStream]:
        csock, ssock = tcp_pair(family)
        server_kw = {"handshake_timeout": LONG, **server_kw}  # ssl_side: the default, server
        client_kw = {"ssl_side": "client", "handshake_timeout": LONG, **client_kw}
        t = PeerThread(lambda: SocketStream(ssock, **server_kw))
        t.start()
        try:
            client = SocketStream(csock, **client_kw)
        finally:
            t.join(LONG)
        streams.append(client)
        server = t.join_checked()
        streams.append(server)
        return server, client

    return make


def _configure_server(server_cert: Any) -> Callable[[ssl.SSLContext], None]:
    return lambda ctx: server_cert.configure_cert(ctx)


def _configure_client(ca: Any) -> Callable[[ssl.SSLContext], None]:
    return lambda ctx: ca.configure_trust(ctx)


# ---- round trips ----------------------------------------------------------------------------

ALL_BYTES = bytes(range(256))


def _exchange(a: SocketStream, b: SocketStream) -> None:
    """Send every byte value each way with the element type's own verbs, and check them."""
    for src, dst in ((a, b), (b, a)):
        if src.element_type == "base-char":
            src.write_string(ALL_BYTES.decode("latin-1"))
            src.write_line("line")
            src.force_output()
            got = "".join(dst.read_char() for _ in range(256))
            assert got == ALL_BYTES.decode("latin-1")
            assert dst.read_line() == ("line", False)
        else:
            signed = src.element_type == "signed-byte-8"
            values = [v - 256 if signed and v > 127 else v for v in ALL_BYTES]
            for v in values:
                src.write_byte(v)
            src.write_sequence(values)
            src.write_line("line")
            src.force_output()
            assert [dst.read_byte() for _ in range(256)] == values
            back: list[int] = [0] * 256
            assert dst.read_sequence(back) == 256
            assert back == values
            assert dst.read_line() == ("line", False)


@pytest.mark.parametrize("element_type", ELEMENT_TYPES)
def test_round_trip_every_element_type(
    tls_pair: PairMaker,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
    element_type: str,
) -> None:
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version), "element_type": element_type},
        {"ssl_ctx": _pin(client_ctx, version), "element_type": element_type},
    )
    assert server.ssl_object.version() == client.ssl_object.version() == f"TLSv{version}"
    assert server.ssl_object.server_side is True
    assert client.ssl_object.server_side is False
    _exchange(server, client)


@pytest.mark.parametrize("form", [True, "default", "v23", "tls-v1-2", "tls-v1-3"])
def test_ssl_ctx_forms_made_by_the_stream(
    tls_pair: PairMaker, ca: Any, server_cert: Any, form: object
) -> None:
    """Every keyword form makes a context on both sides; the client verifies with our CA."""
    made: dict[str, ssl.SSLContext] = {}

    def server_cb(ctx: ssl.SSLContext) -> None:
        made["server"] = ctx
        server_cert.configure_cert(ctx)

    def client_cb(ctx: ssl.SSLContext) -> None:
        made["client"] = ctx
        ca.configure_trust(ctx)

    server, client = tls_pair(
        {"ssl_ctx": form, "ctx_configure_callback": server_cb},
        {"ssl_ctx": form, "ctx_configure_callback": client_cb},
    )
    want_min = ssl.TLSVersion.TLSv1_3 if form == "tls-v1-3" else ssl.TLSVersion.TLSv1_2
    for ctx in made.values():
        assert ctx.minimum_version == want_min
    assert made["client"].verify_mode == ssl.CERT_REQUIRED
    assert made["client"].check_hostname
    assert server.ssl_object.context is made["server"]
    assert client.ssl_object.context is made["client"]
    _exchange(server, client)


def test_ssl_ctx_none_and_false_are_plain(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]], streams: list[SocketStream]
) -> None:
    a, b = tcp_pair()
    sa = SocketStream(a, ssl_ctx=None)
    sb = SocketStream(b, ssl_ctx=False)
    streams += [sa, sb]
    assert sa.ssl_object is None
    assert sb.ssl_object is None
    sa.write_line("plain")
    sa.force_output()
    assert b.recv(100) == b"plain\n"  # on the wire as it is: no TLS
    b.sendall(b"back\n")
    assert sa.read_line() == ("back", False)


def test_tls_v1_3_keyword_refuses_a_tls_1_2_peer(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_cert: Any,
    client_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()

    def server() -> None:
        with pytest.raises(SSLFailure):
            SocketStream(
                ssock,
                ssl_ctx="tls-v1-3",
                handshake_timeout=LONG,
                ctx_configure_callback=_configure_server(server_cert),
            )
        assert _closed(ssock)

    t = PeerThread(server)
    t.start()
    with pytest.raises(SSLFailure):
        SocketStream(
            csock, ssl_ctx=_pin(client_ctx, "1.2"), ssl_side="client", handshake_timeout=LONG
        )
    assert _closed(csock)
    t.join_checked()


@pytest.mark.parametrize("keyword", ["v2", "v3", "tls-v1", "tls-v1-1"])
@pytest.mark.parametrize("side", ["client", "server", "both"])
def test_insecure_keywords_are_refused(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]], keyword: str, side: str
) -> None:
    a, b = tcp_pair()
    with pytest.raises(ValueError, match="insecure") as info:
        SocketStream(a, ssl_ctx=keyword, ssl_side=side)
    assert repr(keyword) in str(info.value)
    assert _closed(a)
    b.settimeout(LONG)
    assert b.recv(10) == b""  # nothing was sent before the refusal
    with pytest.raises(ValueError, match="insecure"):
        make_ssl_ctx(keyword, side)


@pytest.mark.parametrize(
    ("kwargs", "exc", "named"),
    [
        ({"ssl_ctx": "tls-v9"}, ValueError, "'tls-v9'"),
        ({"ssl_ctx": 42}, (TypeError, ValueError), "42"),
        ({"ssl_ctx": True, "ssl_side": "middle"}, ValueError, "'middle'"),
        ({"ssl_ctx": True, "handshake_timeout": -1}, ValueError, "-1"),
        ({"ssl_ctx": True, "handshake_timeout": "1"}, TypeError, "'1'"),
        ({"ssl_ctx": True, "ssl_side": "client", "tlsext_host_name": 7}, TypeError, "7"),
    ],
)
def test_bad_tls_arguments_close_the_socket(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    kwargs: dict[str, Any],
    exc: type[Exception] | tuple[type[Exception], ...],
    named: str,
) -> None:
    a, b = tcp_pair()
    with pytest.raises(exc, match=re.escape(named)):
        SocketStream(a, **kwargs)
    assert _closed(a)
    b.settimeout(LONG)
    assert b.recv(10) == b""


# ---- sides ----------------------------------------------------------------------------------


def test_ssl_side_both_is_a_server_connection(
    tls_pair: PairMaker, server_cert: Any, client_ctx: ssl.SSLContext, ca: Any
) -> None:
    """``"both"`` makes a context usable on either side; the connection itself is a server."""
    made: list[ssl.SSLContext] = []

    def cb(ctx: ssl.SSLContext) -> None:
        made.append(ctx)
        server_cert.configure_cert(ctx)

    server, client = tls_pair(
        {"ssl_ctx": True, "ssl_side": "both", "ctx_configure_callback": cb},
        {"ssl_ctx": client_ctx},
    )
    assert server.ssl_object.server_side is True
    assert made[0].protocol == ssl.PROTOCOL_TLS
    assert made[0].minimum_version >= ssl.TLSVersion.TLSv1_2
    _exchange(server, client)


def test_ssl_side_default_is_server(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, _ = tls_pair({"ssl_ctx": server_ctx}, {"ssl_ctx": client_ctx})
    assert server.ssl_object.server_side is True
    server2, _ = tls_pair({"ssl_ctx": server_ctx, "ssl_side": "server"}, {"ssl_ctx": client_ctx})
    assert server2.ssl_object.server_side is True


def test_user_context_with_side_both_serves(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, client = tls_pair({"ssl_ctx": server_ctx, "ssl_side": "both"}, {"ssl_ctx": client_ctx})
    assert server.ssl_object.server_side is True
    _exchange(server, client)


# ---- make_ssl_ctx -----------------------------------------------------------------------------


@pytest.mark.parametrize("form", [True, "default", "v23", "tls-v1-2", "tls-v1-3"])
@pytest.mark.parametrize("side", ["client", "server", "both"])
def test_make_ssl_ctx(form: object, side: str) -> None:
    ctx = make_ssl_ctx(form, side)  # type: ignore[arg-type]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    if form == "tls-v1-3":
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert not ctx.options & ssl.OP_IGNORE_UNEXPECTED_EOF
    expected_protocol = {
        "client": ssl.PROTOCOL_TLS_CLIENT,
        "server": ssl.PROTOCOL_TLS_SERVER,
        "both": ssl.PROTOCOL_TLS,
    }[side]
    assert ctx.protocol == expected_protocol
    if side == "client":
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.check_hostname is True
    # Two calls make two contexts: configuring one never changes the other.
    assert make_ssl_ctx(form, side) is not ctx  # type: ignore[arg-type]


def test_make_ssl_ctx_defaults_to_a_server_context() -> None:
    ctx = make_ssl_ctx()
    assert ctx.protocol == ssl.PROTOCOL_TLS_SERVER
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_make_ssl_ctx_takes_lispworks_spellings() -> None:
    ctx = make_ssl_ctx(":TLS-V1-3", ":Client")
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ValueError, match="insecure"):
        make_ssl_ctx(":TLS-V1", "client")


def test_make_ssl_ctx_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="sideways"):
        make_ssl_ctx(True, "sideways")
    with pytest.raises(ValueError, match="tls-v7"):
        make_ssl_ctx("tls-v7", "client")


# ---- callbacks ------------------------------------------------------------------------------


def test_callbacks_get_the_right_objects_before_the_handshake(
    tls_pair: PairMaker, ca: Any, server_cert: Any
) -> None:
    seen: dict[str, Any] = {}

    def ctx_cb(name: str, configure: Callable[[ssl.SSLContext], None]) -> Any:
        def cb(ctx: ssl.SSLContext) -> None:
            assert isinstance(ctx, ssl.SSLContext)
            seen[f"{name}-ctx"] = ctx
            configure(ctx)

        return cb

    def obj_cb(name: str) -> Any:
        def cb(obj: ssl.SSLObject) -> None:
            assert isinstance(obj, ssl.SSLObject)
            seen[f"{name}-obj"] = obj
            seen[f"{name}-version-at-callback"] = obj.version()  # None: no handshake yet
            seen[f"{name}-ctx-at-callback"] = obj.context

        return cb

    server, client = tls_pair(
        {
            "ssl_ctx": True,
            "ctx_configure_callback": ctx_cb("server", server_cert.configure_cert),
            "ssl_configure_callback": obj_cb("server"),
        },
        {
            "ssl_ctx": True,
            "ctx_configure_callback": ctx_cb("client", ca.configure_trust),
            "ssl_configure_callback": obj_cb("client"),
            "tlsext_host_name": "localhost",
        },
    )
    for name, stream in (("server", server), ("client", client)):
        assert seen[f"{name}-obj"] is stream.ssl_object
        assert seen[f"{name}-version-at-callback"] is None
        assert seen[f"{name}-ctx-at-callback"] is seen[f"{name}-ctx"]
        assert stream.ssl_object.version() is not None
    assert seen["client-obj"].server_hostname == "localhost"


def test_ctx_configure_callback_not_called_with_a_users_context(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    calls: list[object] = []
    objs: list[ssl.SSLObject] = []
    server, client = tls_pair(
        {
            "ssl_ctx": server_ctx,
            "ctx_configure_callback": calls.append,
            "ssl_configure_callback": objs.append,
        },
        {
            "ssl_ctx": client_ctx,
            "ctx_configure_callback": calls.append,
            "ssl_configure_callback": objs.append,
        },
    )
    assert calls == []
    # ssl_configure_callback is still the way to reach the connection with a user's context.
    assert {id(o) for o in objs} == {id(server.ssl_object), id(client.ssl_object)}
    assert server.ssl_object.context is server_ctx
    assert client.ssl_object.context is client_ctx


def test_ssl_configure_callback_can_change_the_connection(
    tls_pair: PairMaker, server_cert: Any, client_ctx: ssl.SSLContext
) -> None:
    """What the callback does to the SSLObject takes effect in the handshake."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    server_ctx.set_alpn_protocols(["x-test"])
    client_ctx.set_alpn_protocols(["x-test"])
    _, client = tls_pair({"ssl_ctx": server_ctx}, {"ssl_ctx": client_ctx})
    assert client.ssl_object.selected_alpn_protocol() == "x-test"


@pytest.mark.parametrize("which", ["ctx_configure_callback", "ssl_configure_callback"])
@pytest.mark.parametrize("side", ["client", "server"])
def test_callback_that_raises_closes_the_socket(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]], which: str, side: str
) -> None:
    a, b = tcp_pair()

    class Boom(Exception):
        pass

    def cb(_: object) -> None:
        raise Boom("from the callback")

    with pytest.raises(Boom):
        SocketStream(a, ssl_ctx=True, ssl_side=side, **{which: cb})  # type: ignore[arg-type]
    assert _closed(a)
    b.settimeout(LONG)
    assert b.recv(10) == b""  # the peer sees the close, and nothing before it


@pytest.mark.parametrize("side", ["client", "server"])
def test_keyboard_interrupt_from_ssl_configure_callback(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]], side: str
) -> None:
    a, b = tcp_pair()

    def cb(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        SocketStream(a, ssl_ctx=True, ssl_side=side, ssl_configure_callback=cb)
    assert _closed(a)
    b.settimeout(LONG)
    assert b.recv(10) == b""


def test_fd_given_as_int_is_closed_on_failure(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
) -> None:
    a, _ = tcp_pair()
    fd = a.detach()
    before = _open_fd_count()
    with pytest.raises(ValueError, match="insecure"):
        SocketStream(fd, ssl_ctx="v3")
    assert _open_fd_count() == before - 1
    with pytest.raises(OSError):
        os.fstat(fd)


# ---- SNI and host names ---------------------------------------------------------------------


def test_server_sees_the_clients_sni_name(
    tls_pair: PairMaker, server_cert: Any, client_ctx: ssl.SSLContext
) -> None:
    names: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(server_ctx)
    server_ctx.sni_callback = lambda obj, name, ctx: names.append(name)
    server, client = tls_pair(
        {"ssl_ctx": server_ctx}, {"ssl_ctx": client_ctx, "tlsext_host_name": "sni.example.test"}
    )
    assert names == ["sni.example.test"]
    assert client.ssl_object.server_hostname == "sni.example.test"
    _exchange(server, client)


def test_sni_with_a_context_the_stream_made(tls_pair: PairMaker, ca: Any, server_cert: Any) -> None:
    names: list[str | None] = []

    def server_cb(ctx: ssl.SSLContext) -> None:
        server_cert.configure_cert(ctx)
        ctx.sni_callback = lambda obj, name, c: names.append(name)

    tls_pair(
        {"ssl_ctx": True, "ctx_configure_callback": server_cb},
        {
            "ssl_ctx": "tls-v1-2",
            "ctx_configure_callback": _configure_client(ca),
            "tlsext_host_name": "sni.example.test",
        },
    )
    assert names == ["sni.example.test"]


def test_client_verifies_the_address_it_connected_to_by_default(
    tls_pair: PairMaker, ca: Any, server_cert: Any, loopback_host: str
) -> None:
    """Without tlsext_host_name a verifying client checks the peer's IP against the cert."""
    family = socket.AF_INET6 if ":" in loopback_host else socket.AF_INET
    server, client = tls_pair(
        {"ssl_ctx": True, "ctx_configure_callback": _configure_server(server_cert)},
        {"ssl_ctx": True, "ctx_configure_callback": _configure_client(ca)},
        family,
    )
    assert client.ssl_object.getpeercert()["subjectAltName"]
    _exchange(server, client)


def test_host_name_mismatch_fails(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    ca: Any,
    server_cert: Any,
) -> None:
    csock, ssock = tcp_pair()

    def server() -> None:
        with pytest.raises(SSLFailure):
            SocketStream(
                ssock,
                ssl_ctx=True,
                handshake_timeout=LONG,
                ctx_configure_callback=_configure_server(server_cert),
            )

    t = PeerThread(server)
    t.start()
    with pytest.raises(SSLFailure, match=r"(?i)certificate|hostname"):
        SocketStream(
            csock,
            ssl_ctx=True,
            ssl_side="client",
            handshake_timeout=LONG,
            ctx_configure_callback=_configure_client(ca),
            tlsext_host_name="other.example.test",
        )
    assert _closed(csock)
    t.join_checked()
    assert _closed(ssock)


def test_certificate_without_the_ip_fails_default_host_check(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]], ca: Any
) -> None:
    """Host checking is on by default: a cert for another name fails against 127.0.0.1."""
    other = ca.issue_cert("only.example.test")
    csock, ssock = tcp_pair()

    def server() -> None:
        with pytest.raises(SSLFailure):
            SocketStream(
                ssock,
                ssl_ctx=True,
                handshake_timeout=LONG,
                ctx_configure_callback=other.configure_cert,
            )

    t = PeerThread(server)
    t.start()
    with pytest.raises(SSLFailure):
        SocketStream(
            csock,
            ssl_ctx=True,
            ssl_side="client",
            handshake_timeout=LONG,
            ctx_configure_callback=_configure_client(ca),
        )
    assert _closed(csock)
    t.join_checked()


# ---- handshake failures ---------------------------------------------------------------------


def test_default_verification_refuses_an_untrusted_certificate(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()
    before = _open_fd_count()

    def server() -> None:
        with pytest.raises(SSLFailure):
            SocketStream(ssock, ssl_ctx=server_ctx, handshake_timeout=LONG)

    t = PeerThread(server)
    t.start()
    with pytest.raises(SSLFailure, match=r"(?i)certificate") as info:
        SocketStream(csock, ssl_ctx=True, ssl_side="client", handshake_timeout=LONG)
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    assert _closed(csock)
    t.join_checked()
    assert _closed(ssock)
    assert _open_fd_count() == before - 2


@pytest.mark.parametrize("side", ["client", "server"])
def test_peer_speaking_garbage(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    side: str,
) -> None:
    a, b = tcp_pair()
    b.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)
    ctx = client_ctx if side == "client" else server_ctx
    start = time.monotonic()
    with pytest.raises(SSLFailure) as info:
        SocketStream(a, ssl_ctx=ctx, ssl_side=side, handshake_timeout=LONG)
    assert not isinstance(info.value, TimeoutError)
    assert time.monotonic() - start < LONG / 2
    assert _closed(a)


@pytest.mark.parametrize("side", ["client", "server"])
def test_peer_closing_during_handshake(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    side: str,
) -> None:
    a, b = tcp_pair()
    b.close()
    ctx = client_ctx if side == "client" else server_ctx
    with pytest.raises(SSLFailure):
        SocketStream(a, ssl_ctx=ctx, ssl_side=side, handshake_timeout=LONG)
    assert _closed(a)


@pytest.mark.parametrize("side", ["client", "server"])
def test_silent_peer_times_out_the_handshake(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    side: str,
) -> None:
    a, b = tcp_pair()
    ctx = client_ctx if side == "client" else server_ctx
    start = time.monotonic()
    with pytest.raises(SSLFailure) as info:
        SocketStream(a, ssl_ctx=ctx, ssl_side=side, handshake_timeout=SHORT)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TimeoutError)
    assert elapsed >= SHORT
    assert elapsed < 5
    assert _closed(a)
    b.settimeout(LONG)
    if side == "client":  # the ClientHello went out; then the close
        assert b.recv(5)[:1] == b"\x16"
        while b.recv(65536):
            pass
    assert b.recv(10) == b""


def test_handshake_timeout_is_a_deadline_not_an_idle_timer(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
) -> None:
    """A peer dribbling a ClientHello byte by byte cannot stretch the handshake forever."""
    a, b = tcp_pair()
    stop = threading.Event()

    def dribble() -> None:
        # A valid-looking record header promising a large ClientHello, one byte at a time.
        data = b"\x16\x03\x01\x40\x00\x01" + b"\x00" * 10000
        for byte in data:
            if stop.wait(SHORT / 8):
                return
            try:
                b.send(bytes([byte]))
            except OSError:
                return

    t = PeerThread(dribble)
    t.start()
    start = time.monotonic()
    try:
        with pytest.raises(SSLFailure) as info:
            SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=SHORT * 2)
    finally:
        stop.set()
        t.join_checked()
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TimeoutError)
    assert SHORT * 2 <= elapsed < 5


# ---- timeouts under TLS ---------------------------------------------------------------------


def test_read_timeout_under_tls_gives_eof_and_recovers(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, version: str
) -> None:
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version)},
        {"ssl_ctx": _pin(client_ctx, version), "read_timeout": SHORT},
    )
    start = time.monotonic()
    assert client.read_char(eof_error=False, eof_value="EOF") == "EOF"
    assert time.monotonic() - start >= SHORT
    assert client.timed_out
    assert client.read_line(eof_error=False) == (None, True)
    with pytest.raises(EOFError):
        client.read_char()
    server.write_line("later")
    server.force_output()
    assert client.read_line() == ("later", False)
    assert not client.timed_out
    # And the other way round, after the client's timeouts.
    client.write_line("still fine")
    client.force_output()
    assert server.read_line() == ("still fine", False)


def _shrink_buffers(*socks: socket.socket) -> None:
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)


def test_write_timeout_under_tls_raises_and_keeps_the_rest(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    csock, ssock = tcp_pair()
    _shrink_buffers(csock, ssock)
    t = PeerThread(
        lambda: SocketStream(ssock, "io", "unsigned-byte-8", ssl_ctx=_pin(server_ctx, version))
    )
    t.start()
    client = SocketStream(
        csock,
        "io",
        "unsigned-byte-8",
        ssl_ctx=_pin(client_ctx, version),
        ssl_side="client",
        write_timeout=SHORT,
    )
    streams.append(client)
    server = t.join_checked()
    streams.append(server)

    chunk = bytes(range(256)) * 256  # 64 KiB
    written = 0
    start = time.monotonic()
    err: WriteTimeoutError | None = None
    for _ in range(1000):  # 64 MiB at most; the peer reads nothing, so this ends early
        written += len(chunk)  # buffered by write(), whether or not a flush then times out
        try:
            client.write(chunk)  # 64 KiB fills the output buffer: write() flushes too
            client.force_output()
        except WriteTimeoutError as exc:
            err = exc
            break
    assert err is not None, "the flush never timed out"
    assert time.monotonic() - start >= SHORT
    assert isinstance(err, TimeoutError)
    assert isinstance(err, SocketIOError)
    assert not client.closed

    # The peer now reads everything; a later flush sends the rest and nothing is lost.
    def drain() -> Any:
        buf = bytearray(written)
        n = server.read_sequence(buf)
        return hashlib.sha256(buf[:n]).digest() + n.to_bytes(8, "big")

    reader = PeerThread(drain)
    reader.start()
    client.write_timeout = LONG
    client.force_output()
    digest = reader.join_checked()
    expect = hashlib.sha256(chunk * (written // len(chunk))).digest()
    assert digest == expect + written.to_bytes(8, "big")


# ---- session tickets and listen -------------------------------------------------------------


def test_tls13_session_tickets_do_not_make_listen_true(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server_ctx.num_tickets = 2
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, "1.3")}, {"ssl_ctx": _pin(client_ctx, "1.3")}
    )
    # The server sent its tickets when its handshake finished; wait until they are here.
    r, _, _ = select.select([client.fileno()], [], [], LONG)
    assert r, "the session tickets never arrived"
    assert client.listen() is False
    assert client.read_char_no_hang() is None
    assert wait_for_input_streams([client], timeout=0) == []
    assert client.listen() is False
    server.write_string("x")
    server.force_output()
    r, _, _ = select.select([client.fileno()], [], [], LONG)
    assert r
    assert client.listen() is True
    assert wait_for_input_streams([client], timeout=0) == [client]
    assert client.read_char() == "x"
    assert client.listen() is False


def test_listen_sees_decrypted_data_pending_in_the_engine(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, version: str
) -> None:
    """Data decrypted but not yet taken by the stream still counts as available."""
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version)}, {"ssl_ctx": _pin(client_ctx, version)}
    )
    payload = b"y" * 200_000
    server.write(payload)
    server.force_output()
    got = bytearray()
    got += client.read(1).encode("latin-1")
    while len(got) < len(payload):
        # Whatever is buffered or decrypted must be visible to listen() and the multiwait.
        assert wait_for_input_streams([client], timeout=2.0) == [client]
        assert client.listen()
        got += client.read1(65536).encode("latin-1")
    assert bytes(got) == payload
    assert client.listen() is False


# ---- truncation and close-notify ------------------------------------------------------------


def test_truncation_is_an_error(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, version: str
) -> None:
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version)}, {"ssl_ctx": _pin(client_ctx, version)}
    )
    server.write_line("before the cut")
    server.force_output()
    server.close(abort=True)  # no close-notify: a truncation as an attacker could make it
    assert client.read_line() == ("before the cut", False)
    with pytest.raises(SSLTruncatedError) as info:
        client.read_char()
    assert isinstance(info.value, SSLFailure)
    assert isinstance(info.value, SocketIOError)


def test_truncation_by_a_stdlib_peer(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """An ``ssl.SSLSocket`` peer whose TCP connection is closed without ``unwrap()``."""
    csock, ssock = tcp_pair()

    def server() -> None:
        with server_ctx.wrap_socket(ssock, server_side=True) as tls:
            tls.sendall(b"data\n")
            raw = socket.socket(fileno=os.dup(tls.fileno()))
        raw.shutdown(socket.SHUT_RDWR)  # TCP FIN without close-notify
        raw.close()

    t = PeerThread(server)
    t.start()
    client = SocketStream(csock, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG)
    streams.append(client)
    t.join_checked()
    assert client.read_line() == ("data", False)
    with pytest.raises(SSLTruncatedError):
        client.read_line()


def test_truncation_opt_out_via_ctx_configure_callback(
    tls_pair: PairMaker, ca: Any, server_cert: Any
) -> None:
    def client_cb(ctx: ssl.SSLContext) -> None:
        ca.configure_trust(ctx)
        ctx.options |= ssl.OP_IGNORE_UNEXPECTED_EOF

    server, client = tls_pair(
        {"ssl_ctx": True, "ctx_configure_callback": _configure_server(server_cert)},
        {"ssl_ctx": True, "ctx_configure_callback": client_cb},
    )
    server.write_line("last")
    server.force_output()
    server.close(abort=True)
    assert client.read_line() == ("last", False)
    assert client.read_char(eof_error=False, eof_value="EOF") == "EOF"
    assert not client.timed_out


@pytest.mark.parametrize("how", ["close", "shutdown_output"])
def test_close_sends_close_notify(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
    how: str,
) -> None:
    """A stdlib peer that refuses ragged EOFs sees a clean end after our close()."""
    csock, ssock = tcp_pair()
    got = bytearray()

    def server() -> None:
        with _pin(server_ctx, version).wrap_socket(
            ssock, server_side=True, suppress_ragged_eofs=False
        ) as tls:
            tls.settimeout(LONG)
            while True:
                data = tls.recv(65536)  # SSLEOFError here would be a truncation
                if not data:
                    break
                got.extend(data)
            if how == "shutdown_output":
                tls.sendall(b"reply after your close-notify\n")
                tls.unwrap()

    t = PeerThread(server)
    t.start()
    client = SocketStream(
        csock, ssl_ctx=_pin(client_ctx, version), ssl_side="client", handshake_timeout=LONG
    )
    try:
        client.write_line("bye")  # unflushed: close() flushes before its close-notify
        if how == "close":
            client.close()
        else:
            client.shutdown_output()
            assert client.read_line() == ("reply after your close-notify", False)
            assert client.read_char(eof_error=False) is None
    finally:
        client.close(abort=True)
        t.join_checked()
    assert bytes(got) == b"bye\n"


def test_peer_close_notify_reads_as_eof(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, version: str
) -> None:
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version)}, {"ssl_ctx": _pin(client_ctx, version)}
    )
    server.write_line("the end")
    server.close()
    assert client.read_line() == ("the end", False)
    assert client.read_line(eof_error=False, eof_value="EOF") == ("EOF", True)
    assert not client.timed_out
    assert client.read() == ""


def test_ssl_object_goes_away_with_close(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    _, client = tls_pair({"ssl_ctx": server_ctx}, {"ssl_ctx": client_ctx})
    assert isinstance(client.ssl_object, ssl.SSLObject)
    client.close()
    assert client.ssl_object is None
    assert client.closed


# ---- full duplex ----------------------------------------------------------------------------


def test_full_duplex_under_tls(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, version: str
) -> None:
    """Per stream, one thread reads 4 MiB while another writes 4 MiB."""
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version), "element_type": "unsigned-byte-8"},
        {"ssl_ctx": _pin(client_ctx, version), "element_type": "unsigned-byte-8"},
    )
    size = 4 * 1024 * 1024
    payloads = {
        "c2s": hashlib.shake_256(b"client").digest(size),
        "s2c": hashlib.shake_256(b"server").digest(size),
    }

    def writer(stream: SocketStream, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, size, 100_003):  # odd-sized pieces cross record boundaries
            stream.write_sequence(view[i : i + 100_003])
        stream.force_output()

    def reader(stream: SocketStream) -> bytes:
        buf = bytearray(size)
        assert stream.read_sequence(buf) == size
        return bytes(buf)

    threads = [
        PeerThread(reader, server),
        PeerThread(reader, client),
        PeerThread(writer, client, payloads["c2s"]),
        PeerThread(writer, server, payloads["s2c"]),
    ]
    for t in threads:
        t.start()
    results = [t.join_checked(LONG * 3) for t in threads]
    assert results[0] == payloads["c2s"]
    assert results[1] == payloads["s2c"]


# ---- descriptor leaks -----------------------------------------------------------------------


def test_no_descriptor_leaks_across_200_connections(
    ca: Any, server_cert: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """200 connections: successes, refused certificates, garbage and silent peers."""
    n = 200
    kinds = ["ok", "ok", "bad-name", "garbage", "ok", "closed"] * (n // 6) + ["ok"] * (n % 6)
    kinds[7] = kinds[77] = kinds[177] = "silent"
    before = _open_fd_count()
    outcomes: list[str] = []

    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        addr = lsock.getsockname()

        def serve() -> None:
            for _ in range(n):
                conn, _ = lsock.accept()
                try:
                    with SocketStream(conn, ssl_ctx=server_ctx, handshake_timeout=SHORT) as s:
                        s.write_line(s.read_line()[0])
                    outcomes.append("ok")
                except SSLFailure as exc:
                    outcomes.append("timeout" if isinstance(exc, TimeoutError) else "failed")

        t = PeerThread(serve)
        t.start()
        try:
            for kind in kinds:
                c = socket.create_connection(addr)
                if kind in ("ok", "bad-name"):
                    name = "localhost" if kind == "ok" else "wrong.example.test"
                    try:
                        with SocketStream(
                            c,
                            ssl_ctx=client_ctx,
                            ssl_side="client",
                            handshake_timeout=LONG,
                            tlsext_host_name=name,
                        ) as s:
                            s.write_line(kind)
                            s.force_output()
                            assert s.read_line() == (kind, False)
                    except SSLFailure:
                        assert kind == "bad-name"
                    assert c.fileno() == -1
                elif kind == "garbage":
                    with c:
                        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                        c.settimeout(LONG)
                        while c.recv(4096):
                            pass
                elif kind == "closed":
                    c.close()
                else:  # silent: wait for the server to give up
                    with c:
                        c.settimeout(LONG)
                        while c.recv(4096):
                            pass
        finally:
            t.join_checked(LONG * 3)
    assert outcomes.count("ok") == kinds.count("ok")
    assert outcomes.count("timeout") == kinds.count("silent")
    assert outcomes.count("failed") == n - kinds.count("ok") - kinds.count("silent")
    assert _open_fd_count() == before


# ---- partial records and readiness ----------------------------------------------------------


def test_read_timeout_in_the_middle_of_a_record_recovers(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    """Half a TLS record, then silence: EOF by timeout; the rest then reads normally."""
    csock, ssock = tcp_pair()
    ssock.settimeout(LONG)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    peer = _pin(server_ctx, version).wrap_bio(incoming, outgoing, server_side=True)

    def handshake() -> None:
        while True:
            try:
                peer.do_handshake()
                ssock.sendall(outgoing.read())
                return
            except ssl.SSLWantReadError:
                ssock.sendall(outgoing.read())
                incoming.write(ssock.recv(65536))

    t = PeerThread(handshake)
    t.start()
    client = SocketStream(
        csock,
        ssl_ctx=_pin(client_ctx, version),
        ssl_side="client",
        handshake_timeout=LONG,
        read_timeout=SHORT,
    )
    streams.append(client)
    t.join_checked()
    peer.write(b"a whole line\n")
    record = outgoing.read()
    ssock.sendall(record[:9])  # the header and a few bytes of the body
    start = time.monotonic()
    assert client.read_line(eof_error=False, eof_value="EOF") == ("EOF", True)
    assert time.monotonic() - start >= SHORT
    assert client.timed_out
    assert client.listen() is False
    assert client.read_char_no_hang() is None
    ssock.sendall(record[9:])
    assert client.read_line() == ("a whole line", False)
    assert not client.timed_out


def test_read_timeout_restarts_on_every_byte_of_a_slow_record(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """4 KiB records dribbled 64 bytes every 25 ms, read_timeout=1.0: they are read.

    A record takes 1.6 s to arrive whole, longer than the timeout; but the timeout is the time
    between extractions from the socket, and every partial record taken is one.
    """
    csock, ssock = tcp_pair()
    ssock.settimeout(LONG)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    peer = server_ctx.wrap_bio(incoming, outgoing, server_side=True)

    def handshake() -> None:
        while True:
            try:
                peer.do_handshake()
                ssock.sendall(outgoing.read())
                return
            except ssl.SSLWantReadError:
                ssock.sendall(outgoing.read())
                incoming.write(ssock.recv(65536))

    t = PeerThread(handshake)
    t.start()
    client = SocketStream(
        csock,
        "io",
        "unsigned-byte-8",
        ssl_ctx=client_ctx,
        ssl_side="client",
        handshake_timeout=LONG,
        read_timeout=1.0,
    )
    streams.append(client)
    t.join_checked()
    data = bytes(i % 253 for i in range(8192))
    peer.write(data[:4096])
    peer.write(data[4096:])
    wire = outgoing.read()

    def dribble() -> None:
        for i in range(0, len(wire), 64):
            ssock.sendall(wire[i : i + 64])
            time.sleep(0.025)  # the slow link under test, not synchronisation

    t = PeerThread(dribble)
    t.start()
    assert client.read(len(data)) == data
    assert not client.timed_out
    t.join_checked()


def test_close_notify_makes_the_stream_ready(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, version: str
) -> None:
    """End-of-file by close-notify counts as ready for wait_for_input_streams."""
    server, client = tls_pair(
        {"ssl_ctx": _pin(server_ctx, version)}, {"ssl_ctx": _pin(client_ctx, version)}
    )
    assert wait_for_input_streams([client], timeout=0) == []
    server.close()
    assert wait_for_input_streams([client], timeout=LONG) == [client]
    assert client.read_char(eof_error=False, eof_value="EOF") == "EOF"
    assert wait_for_input_streams([client], timeout=0) == [client]


def test_clear_input_under_tls(
    tls_pair: PairMaker, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, client = tls_pair({"ssl_ctx": server_ctx}, {"ssl_ctx": client_ctx})
    server.write_line("stale " * 100)  # one record, one segment: it arrives whole
    server.force_output()
    assert client.peek_char() == "s"
    client.clear_input()
    assert client.listen() is False
    server.write_line("fresh")
    server.force_output()
    assert client.read_line() == ("fresh", False)


@pytest.mark.parametrize("ending", ["shutdown_output", "detach_ssl"])
def test_close_notify_keeps_data_already_received(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    streams: list[SocketStream],
    ending: str,
) -> None:
    """Data received but not yet decrypted when our close-notify goes out is not lost.

    (OpenSSL's SSL_shutdown reads on after sending close-notify and drops application data it
    meets there.)  White-box: the raw records are moved into the engine without decrypting.
    A socketpair, so that a record is in our kernel queue as soon as the peer's send returns.
    """
    csock, ssock = socket.socketpair()
    t = PeerThread(lambda: SocketStream(ssock, ssl_ctx=server_ctx, handshake_timeout=LONG))
    t.start()
    client = SocketStream(
        csock,
        ssl_ctx=client_ctx,
        ssl_side="client",
        tlsext_host_name="localhost",
        handshake_timeout=LONG,
    )
    streams.append(client)
    server = t.join_checked()
    streams.append(server)
    server.write_string("already here\n")
    server.force_output()
    transport = client._transport
    while transport._receive_raw() > 0:  # type: ignore[attr-defined]
        pass
    assert transport.incoming.pending > 0  # type: ignore[attr-defined]
    if ending == "shutdown_output":
        client.shutdown_output()
        assert client.read_line() == ("already here", False)
        assert server.read_line(eof_error=False) == (None, True)  # our close-notify: clean EOF
    else:
        peer = PeerThread(detach_ssl, server)
        peer.start()
        detach_ssl(client)
        peer.join_checked()
        assert client.read_line() == ("already here", False)
        client.write_line("plain again")
        client.force_output()
        assert server.read_line() == ("plain again", False)

"""What real TLS clients need besides bytes: ALPN, clear verification errors, key logging,
shared default contexts and session resumption.

Both ends are ours, on loopback TCP, with certificates made by trustme at test time; the
third-party peers (``openssl s_server``, ``curl``) are in ``interop/test_tls_peers.py``.
"""

from __future__ import annotations

import datetime
import pickle
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import LONG, PeerThread
from sockstream import (
    SocketStream,
    SSLFailure,
    SSLVerificationError,
    attach_ssl,
    make_ssl_ctx,
    serve,
)

TcpPair = Callable[..., "tuple[socket.socket, socket.socket]"]
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


@pytest.fixture(params=list(VERSIONS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _pin(ctx: ssl.SSLContext, version: str) -> ssl.SSLContext:
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


def _pair(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_kw: dict[str, Any],
    client_kw: dict[str, Any],
) -> tuple[SocketStream, SocketStream]:
    """``(server, client)`` over one TCP pair, the two handshakes run at once."""
    csock, ssock = tcp_pair()
    t = PeerThread(lambda: SocketStream(ssock, handshake_timeout=LONG, **server_kw))
    t.start()
    try:
        client = SocketStream(csock, ssl_side="client", handshake_timeout=LONG, **client_kw)
    finally:
        t.join(LONG)
    streams.append(client)
    server = t.join_checked()
    streams.append(server)
    return server, client


def _refused(
    tcp_pair: TcpPair, server_ctx: ssl.SSLContext, client_kw: dict[str, Any]
) -> BaseException:
    """What the client raises against ``server_ctx``; the server side's failure is expected."""
    csock, ssock = tcp_pair()

    def server() -> None:
        with pytest.raises(SSLFailure):
            SocketStream(ssock, ssl_ctx=server_ctx, handshake_timeout=LONG)

    t = PeerThread(server)
    t.start()
    try:
        with pytest.raises(SSLFailure) as info:
            SocketStream(csock, ssl_side="client", handshake_timeout=LONG, **client_kw)
    finally:
        t.join_checked()
    assert csock.fileno() == -1
    return info.value


# ---- ALPN -----------------------------------------------------------------------------------


def test_alpn_agrees_on_the_servers_choice(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    server, client = _pair(
        tcp_pair,
        streams,
        {"ssl_ctx": _pin(server_ctx, version), "alpn_protocols": ["http/1.1"]},
        {"ssl_ctx": _pin(client_ctx, version), "alpn_protocols": ["h2", "http/1.1"]},
    )
    assert client.alpn_protocol == server.alpn_protocol == "http/1.1"


def test_alpn_with_contexts_the_streams_make(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    ca: Any,
    server_cert: Any,
) -> None:
    server, client = _pair(
        tcp_pair,
        streams,
        {
            "ssl_ctx": True,
            "ctx_configure_callback": server_cert.configure_cert,
            "alpn_protocols": ["h2"],
        },
        {
            "ssl_ctx": True,
            "ctx_configure_callback": ca.configure_trust,
            "alpn_protocols": ["h2", "http/1.1"],
        },
    )
    assert client.alpn_protocol == server.alpn_protocol == "h2"


def test_no_alpn_is_none(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    server, client = _pair(
        tcp_pair,
        streams,
        {"ssl_ctx": server_ctx},
        {"ssl_ctx": client_ctx, "alpn_protocols": ["h2"]},
    )
    assert client.alpn_protocol is None
    assert server.alpn_protocol is None


def test_alpn_protocol_is_none_on_a_plain_stream(tcp_pair: TcpPair) -> None:
    a, b = tcp_pair()
    with SocketStream(a) as s:
        assert s.alpn_protocol is None
        assert s.ssl_session is None
        assert s.session_reused is False
    b.close()


def test_alpn_through_attach_ssl(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()
    server, client = SocketStream(ssock), SocketStream(csock)
    streams += [server, client]
    t = PeerThread(
        lambda: attach_ssl(
            server, ssl_ctx=server_ctx, handshake_timeout=LONG, alpn_protocols=["smtp", "imap"]
        )
    )
    t.start()
    attach_ssl(
        client,
        ssl_ctx=client_ctx,
        ssl_side="client",
        handshake_timeout=LONG,
        alpn_protocols=["imap"],
    )
    t.join_checked()
    assert client.alpn_protocol == server.alpn_protocol == "imap"


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("h2", TypeError),
        (b"h2", TypeError),
        ([], ValueError),
        ([""], ValueError),
        (["x" * 256], ValueError),
        ([2], ValueError),
        (42, TypeError),
    ],
)
def test_bad_alpn_protocols_are_refused_before_anything_happens(
    tcp_pair: TcpPair, value: object, error: type[Exception]
) -> None:
    a, b = tcp_pair()
    with pytest.raises(error, match="alpn_protocols"):
        SocketStream(a, ssl_ctx=True, alpn_protocols=value)
    assert a.fileno() == -1  # the constructor closes the socket it was given
    with SocketStream(b) as s, pytest.raises(error, match="alpn_protocols"):
        attach_ssl(s, alpn_protocols=value)
    with pytest.raises(error, match="alpn_protocols"):
        serve(lambda s: None, ssl_ctx=True, alpn_protocols=value)  # type: ignore[arg-type]


# ---- verification errors --------------------------------------------------------------------


def test_unknown_ca_is_a_verification_error(
    tcp_pair: TcpPair,
    server_ctx: ssl.SSLContext,
) -> None:
    other = pytest.importorskip("trustme").CA()
    ctx = ssl.create_default_context()
    other.configure_trust(ctx)
    exc = _refused(tcp_pair, server_ctx, {"ssl_ctx": ctx, "tlsext_host_name": "localhost"})
    assert isinstance(exc, SSLVerificationError)
    assert exc.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert "issuer" in exc.verify_message
    assert exc.verify_message in str(exc)


def test_wrong_host_is_a_verification_error(
    tcp_pair: TcpPair,
    server_ctx: ssl.SSLContext,
    ca: Any,
) -> None:
    exc = _refused(
        tcp_pair,
        server_ctx,
        {
            "ssl_ctx": True,
            "ctx_configure_callback": ca.configure_trust,
            "tlsext_host_name": "other.example.test",
        },
    )
    assert isinstance(exc, SSLVerificationError)
    assert exc.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    assert "other.example.test" in exc.verify_message or "mismatch" in exc.verify_message


def test_expired_certificate_is_a_verification_error(
    tcp_pair: TcpPair,
    ca: Any,
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    old = ca.issue_cert(
        "localhost",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    old.configure_cert(sctx)
    cctx = ssl.create_default_context()
    ca.configure_trust(cctx)
    exc = _refused(tcp_pair, sctx, {"ssl_ctx": cctx, "tlsext_host_name": "localhost"})
    assert isinstance(exc, SSLVerificationError)
    assert exc.verify_code == 10  # X509_V_ERR_CERT_HAS_EXPIRED
    assert "expired" in exc.verify_message


def test_other_handshake_failures_are_not_verification_errors(
    tcp_pair: TcpPair,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """A protocol-version refusal is an SSLFailure, not an SSLVerificationError."""
    _pin(server_ctx, "1.2")
    exc = _refused(
        tcp_pair, server_ctx, {"ssl_ctx": "tls-v1-3", "ctx_configure_callback": lambda c: None}
    )
    assert not isinstance(exc, SSLVerificationError)


def test_verification_error_pickles() -> None:
    exc = SSLVerificationError(10, "certificate has expired")
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, SSLVerificationError)
    assert isinstance(back, SSLFailure)
    assert (back.verify_code, back.verify_message) == (10, "certificate has expired")
    assert str(back) == str(exc)


# ---- SSLKEYLOGFILE --------------------------------------------------------------------------


# A shared context keeps its key-log file open while it lives (OpenSSL's BIO), past the test.
@pytest.mark.allow_leaks
@pytest.mark.parametrize("configured", [False, True])
def test_keylog_file_gets_lines_from_both_sides(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    ca: Any,
    server_cert: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    version: str,
    configured: bool,
) -> None:
    """Client and server contexts the streams make, shared or configured, log their keys."""
    log = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(log))
    monkeypatch.setenv("SSL_CERT_FILE", _ca_file(ca, tmp_path))
    key = "tls-v1-3" if version == "1.3" else "tls-v1-2"

    def server_conf(ctx: ssl.SSLContext) -> None:
        server_cert.configure_cert(ctx)
        ctx.maximum_version = VERSIONS[version]

    client_kw: dict[str, Any] = {"ssl_ctx": key, "tlsext_host_name": "localhost"}
    if configured:
        client_kw["ctx_configure_callback"] = lambda ctx: setattr(
            ctx, "maximum_version", VERSIONS[version]
        )
    elif version == "1.2":
        pytest.skip("a shared client context cannot be capped at TLS 1.2 without configuring")
    server, client = _pair(
        tcp_pair, streams, {"ssl_ctx": key, "ctx_configure_callback": server_conf}, client_kw
    )
    client.write_line("hello")
    client.force_output()
    assert server.read_line() == ("hello", False)
    lines = log.read_text().splitlines()
    label = "CLIENT_RANDOM" if version == "1.2" else "CLIENT_TRAFFIC_SECRET_0"
    # Both ends log the same secrets: each label twice, once per side.
    assert sum(line.startswith(label) for line in lines) == 2, lines


def test_keylog_with_side_both(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_cert: Any,
    client_ctx: ssl.SSLContext,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(log))
    _pair(
        tcp_pair,
        streams,
        {"ssl_ctx": True, "ssl_side": "both", "ctx_configure_callback": server_cert.configure_cert},
        {"ssl_ctx": client_ctx},
    )
    assert log.read_text().strip(), "the 'both' server context logged nothing"


def test_make_ssl_ctx_honours_sslkeylogfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "k.log"))
    for side in ("client", "server", "both"):
        assert make_ssl_ctx(True, side).keylog_filename == str(tmp_path / "k.log")


def _ca_file(ca: Any, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


# ---- shared contexts, sessions --------------------------------------------------------------


def test_default_contexts_are_shared_configured_ones_never(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    ca: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_cert: Any,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", _ca_file(ca, tmp_path))
    seen: list[ssl.SSLContext] = []
    contexts = []

    def configure(ctx: ssl.SSLContext) -> None:
        seen.append(ctx)
        server_cert.configure_cert(ctx)

    for _ in range(2):
        _, client = _pair(
            tcp_pair,
            streams,
            {"ssl_ctx": True, "ctx_configure_callback": configure},
            {"ssl_ctx": True, "tlsext_host_name": "localhost"},
        )
        contexts.append(client.ssl_object.context)
    assert contexts[0] is contexts[1]  # the client's: no callback, shared
    assert seen[0] is not seen[1]  # the server's: configured, each its own
    assert make_ssl_ctx() is not make_ssl_ctx()


def test_session_resumption_between_our_ends(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_cert: Any,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    """The session of a first connection, offered on a second (same contexts), resumes."""
    _pin(client_ctx, version)
    session = None
    for round_ in range(2):
        server, client = _pair(
            tcp_pair,
            streams,
            {"ssl_ctx": _server_ctx_once(server_cert)},
            {"ssl_ctx": client_ctx, "ssl_session": session},
        )
        server.write_line("ticket time")  # TLS 1.3: the ticket comes after the handshake
        server.force_output()
        assert client.read_line() == ("ticket time", False)
        assert client.session_reused is (round_ == 1)
        assert server.session_reused is (round_ == 1)
        session = client.ssl_session
        assert isinstance(session, ssl.SSLSession)


_SERVER_CTX: dict[int, ssl.SSLContext] = {}


def _server_ctx_once(server_cert: Any) -> ssl.SSLContext:
    """One server context for the whole test run (its session cache is what resumes)."""
    ctx = _SERVER_CTX.get(0)
    if ctx is None:
        ctx = _SERVER_CTX[0] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_cert.configure_cert(ctx)
    return ctx


def test_bad_ssl_session_is_refused(tcp_pair: TcpPair) -> None:
    a, b = tcp_pair()
    with pytest.raises(TypeError, match="ssl_session"):
        SocketStream(a, ssl_ctx=True, ssl_side="client", ssl_session="not a session")  # type: ignore[arg-type]
    b.close()

"""STARTTLS: attach_ssl and detach_ssl on one connection, read-ahead, pipelining and injection.

Both ends are ours where the test is about our two ends agreeing; where the exact bytes on the
wire matter (data and plaintext around a close-notify, a pipelined ClientHello, RFC 3207 section 7
injection), one end is a raw socket or a stdlib ``ssl.SSLObject`` driven by hand over memory BIOs,
so the test decides what arrives in which segment.  To make the server's read-ahead hold a
ClientHello deterministically, the server waits with ``SO_RCVLOWAT`` + ``select`` until all of it
is in the kernel before its first read: no sleeps.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import LONG, SHORT, PeerThread
from sockstream import (
    SocketStream,
    SSLFailure,
    attach_ssl,
    detach_ssl,
)

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
TcpPair = Callable[..., "tuple[socket.socket, socket.socket]"]


def _pin(ctx: ssl.SSLContext, version: str) -> ssl.SSLContext:
    ctx.minimum_version = ctx.maximum_version = VERSIONS[version]
    return ctx


@pytest.fixture(params=list(VERSIONS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _wait_for_bytes(sock: socket.socket, n: int) -> None:
    """Block until at least ``n`` bytes are readable on ``sock`` (without reading them)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
    try:
        r, _, _ = select.select([sock], [], [], LONG)
        assert r, f"{n} bytes never arrived"
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def _wait_for_line_and_record(sock: socket.socket, line: bytes) -> int:
    """Block until ``line`` and one whole TLS record after it are in the kernel; their size."""
    _wait_for_bytes(sock, len(line) + 5)
    head = sock.recv(len(line) + 5, socket.MSG_PEEK)
    assert head[: len(line)] == line
    assert head[len(line)] == 0x16, "not a TLS handshake record"
    total = len(line) + 5 + int.from_bytes(head[-2:], "big")
    _wait_for_bytes(sock, total)
    return total


class BioPeer:
    """A TLS end made of a stdlib ``SSLObject`` over memory BIOs on a blocking socket.

    Unlike ``SSLSocket`` it lets the test put records, alerts and plaintext into one segment.
    """

    def __init__(
        self,
        sock: socket.socket,
        ctx: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        sock.settimeout(LONG)
        self.sock = sock
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=server_hostname
        )

    def _send_out(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
                self._send_out()
                return
            except ssl.SSLWantReadError:
                self._send_out()
                self._receive()

    def records(self, data: bytes) -> bytes:
        """Encrypt ``data``; the records are returned, not sent."""
        self.obj.write(data)
        return self.outgoing.read()

    def close_notify(self) -> bytes:
        """Our close-notify alert, returned, not sent."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            try:
                out += self.obj.read(n - len(out))
            except ssl.SSLWantReadError:
                self._receive()
        return bytes(out)

    def await_close_notify(self) -> bytes:
        """Read until the peer's close-notify; return the raw bytes that came after it."""
        while True:
            try:
                self.obj.unwrap()
                return self.incoming.read()
            except ssl.SSLWantReadError:
                self._receive()

    def recv_plain(self, leftover: bytes, n: int) -> bytes:
        data = bytearray(leftover)
        while len(data) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "end of file before the plaintext"
            data += chunk
        return bytes(data)


def _both(server_fn: Callable[[], Any], client_fn: Callable[[], Any]) -> tuple[Any, Any]:
    """Run the server's step in a thread and the client's here; both results."""
    t = PeerThread(server_fn)
    t.start()
    try:
        client_result = client_fn()
    finally:
        t.join(LONG)
    return t.join_checked(), client_result


def _ssl_object(stream: SocketStream) -> Any:
    """``stream.ssl_object``, not narrowed by an earlier ``assert ... is None`` (for mypy)."""
    return stream.ssl_object


def _say(stream: SocketStream, line: str) -> None:
    stream.write_line(line)
    stream.force_output()


# ---- the full cycle -------------------------------------------------------------------------


@pytest.mark.parametrize("element_type", ["base-char", "unsigned-byte-8"])
def test_plain_tls_plain_on_one_connection(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
    element_type: str,
) -> None:
    csock, ssock = tcp_pair()
    server = SocketStream(ssock, element_type=element_type)
    client = SocketStream(csock, element_type=element_type)
    streams += [server, client]
    big = "".join(chr(i % 256) for i in range(100_000))

    for round_ in range(2):  # on, off, and on and off again
        # Plain: each way.
        _say(client, f"EHLO {round_}")
        assert server.read_line() == (f"EHLO {round_}", False)
        _say(server, "250 hello")
        assert client.read_line() == ("250 hello", False)
        _say(client, "STARTTLS")
        assert server.read_line() == ("STARTTLS", False)
        _say(server, "220 go ahead")
        assert client.read_line() == ("220 go ahead", False)
        assert server.ssl_object is None
        assert client.ssl_object is None

        # attach: both at once.
        _both(
            lambda: attach_ssl(server, ssl_ctx=_pin(server_ctx, version), handshake_timeout=LONG),
            lambda: attach_ssl(
                client, ssl_ctx=_pin(client_ctx, version), ssl_side="client", handshake_timeout=LONG
            ),
        )
        sobj, cobj = _ssl_object(server), _ssl_object(client)
        assert sobj.version() == cobj.version() == f"TLSv{version}"
        assert sobj.server_side
        assert not cobj.server_side
        assert server.element_type == client.element_type == element_type

        # TLS: each way, small and large.
        _say(client, "secret from client")
        assert server.read_line() == ("secret from client", False)
        _say(server, "secret from server")
        assert client.read_line() == ("secret from server", False)

        def send_big() -> None:
            client.write_string(big)
            client.force_output()

        t = PeerThread(send_big)
        t.start()
        assert server.read(len(big)) == (
            big if element_type == "base-char" else big.encode("latin-1")
        )
        t.join_checked()

        # detach: both at once, then plain again, each way.
        _both(lambda: detach_ssl(server), lambda: detach_ssl(client))
        assert server.ssl_object is None
        assert client.ssl_object is None
        _say(server, "plain again from server")
        assert client.read_line() == ("plain again from server", False)
        _say(client, "plain again from client")
        # On the wire as it is (no TLS): peek at the server's socket.
        _wait_for_bytes(ssock, len("plain again from client\n"))
        assert ssock.recv(100, socket.MSG_PEEK) == b"plain again from client\n"
        assert server.read_line() == ("plain again from client", False)


def test_pipelined_client_hello_in_the_servers_read_ahead(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    """The client writes STARTTLS and starts its handshake without waiting for a reply."""
    csock, ssock = tcp_pair()
    client = SocketStream(csock)
    streams.append(client)

    def server() -> str:
        # Let the line and the whole ClientHello arrive before the stream reads anything, so
        # its first read takes them both into its buffer.
        total = _wait_for_line_and_record(ssock, b"STARTTLS\n")
        s = SocketStream(ssock)
        streams.append(s)
        assert s.read_line() == ("STARTTLS", False)
        assert s.listen(), "the ClientHello should be in the stream's read-ahead"
        assert total > len("STARTTLS\n") + 100
        attach_ssl(s, ssl_ctx=_pin(server_ctx, version), handshake_timeout=LONG)
        _say(s, "welcome")
        line, _ = s.read_line()
        return str(line)

    t = PeerThread(server)
    t.start()
    client.write_line("STARTTLS")
    client.force_output()
    attach_ssl(client, ssl_ctx=_pin(client_ctx, version), ssl_side="client", handshake_timeout=LONG)
    assert client.read_line() == ("welcome", False)
    _say(client, "thanks")
    assert t.join_checked() == "thanks"


def test_attach_flushes_pending_output_first(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()
    client = SocketStream(csock)
    server = SocketStream(ssock)
    streams += [client, server]
    client.write_line("STARTTLS")  # buffered, not flushed

    def serve() -> str:
        line, _ = server.read_line()  # must be the plain line, in front of the ClientHello
        attach_ssl(server, ssl_ctx=server_ctx, handshake_timeout=LONG)
        return str(line)

    t = PeerThread(serve)
    t.start()
    attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG)
    assert t.join_checked() == "STARTTLS"
    _say(client, "over tls")
    assert server.read_line() == ("over tls", False)


def test_attach_on_an_output_only_stream_flushes(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """Direction ``output``: attach still flushes first, and TLS then carries the output."""
    csock, ssock = tcp_pair()
    client = SocketStream(csock, "output")
    streams.append(client)
    client.write_line("STARTTLS")

    def serve() -> bytes:
        peer = BioPeer(ssock, server_ctx, server_side=True)
        _wait_for_bytes(ssock, len(b"STARTTLS\n"))
        assert ssock.recv(len(b"STARTTLS\n")) == b"STARTTLS\n"
        peer.handshake()
        return peer.read(len(b"hello\n"))

    t = PeerThread(serve)
    t.start()
    attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG)
    _say(client, "hello")
    assert t.join_checked() == b"hello\n"


def test_tls_on_an_input_only_stream(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """Direction ``input``: the handshake and detach still write what TLS needs to."""
    csock, ssock = tcp_pair()
    client = SocketStream(csock, "input")
    streams.append(client)
    peer = BioPeer(ssock, server_ctx, server_side=True)

    def serve() -> bytes:
        peer.handshake()
        ssock.sendall(
            peer.records(b"to an input-only stream\n") + peer.close_notify() + b"plain after\n"
        )
        return peer.await_close_notify()

    t = PeerThread(serve)
    t.start()
    attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG)
    assert client.read_line() == ("to an input-only stream", False)
    detach_ssl(client)
    assert t.join_checked() == b""
    assert client.read_line() == ("plain after", False)


# ---- detach: nothing lost on either side of the close-notify ---------------------------------


def test_detach_keeps_data_before_and_plaintext_after_close_notify(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
) -> None:
    """Peer sends [records][close-notify][plaintext] in one write; detach loses none of it."""
    csock, ssock = tcp_pair()
    before = b"".join(b"record %06d\n" % i for i in range(20_000))  # 280 kB: many records
    after = b"plain after close-notify\n"
    peer = BioPeer(ssock, _pin(server_ctx, version), server_side=True)
    t = PeerThread(peer.handshake)
    t.start()
    client = SocketStream(
        csock,
        ssl_ctx=_pin(client_ctx, version),
        ssl_side="client",
        handshake_timeout=LONG,
        read_timeout=LONG,
    )
    streams.append(client)
    t.join_checked()

    def peer_side() -> bytes:
        ssock.sendall(peer.records(before) + peer.close_notify() + after)
        leftover = peer.await_close_notify()
        return peer.recv_plain(leftover, len(b"plain from client\n"))

    t = PeerThread(peer_side)
    t.start()
    detach_ssl(client)
    assert client.ssl_object is None
    assert client.read(len(before)) == before.decode("latin-1")
    assert client.read_line() == (after.decode().rstrip("\n"), False)
    _say(client, "plain from client")
    assert t.join_checked() == b"plain from client\n"


@pytest.mark.parametrize("first_read", [20_000, 100, 0])
def test_detach_keeps_unread_data_in_the_buffer_and_in_the_engine(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
    first_read: int,
) -> None:
    """30,000 bytes and the close-notify arrive; we read some, detach: the rest stays readable.

    ``read(20000)`` goes straight into the caller's memory and leaves the rest in the TLS
    engine (decrypted or not); ``read(100)`` leaves it in the stream's buffer.  Then the
    plaintext after the close-notify, and no APPLICATION_DATA_AFTER_CLOSE_NOTIFY.
    """
    csock, ssock = tcp_pair()
    data = bytes(i % 251 for i in range(30_000))
    after = b"plain after close-notify\n"
    peer = BioPeer(ssock, _pin(server_ctx, version), server_side=True)
    t = PeerThread(peer.handshake)
    t.start()
    client = SocketStream(
        csock,
        "io",
        "unsigned-byte-8",
        ssl_ctx=_pin(client_ctx, version),
        ssl_side="client",
        handshake_timeout=LONG,
        read_timeout=LONG,
    )
    streams.append(client)
    t.join_checked()
    wire = peer.records(data) + peer.close_notify() + after
    ssock.sendall(wire)
    _wait_for_bytes(csock, len(wire))  # all of it in the kernel before we read
    got = client.read(first_read)
    assert got == data[:first_read]
    t = PeerThread(lambda: peer.recv_plain(peer.await_close_notify(), len(b"plain back\n")))
    t.start()
    detach_ssl(client)
    assert client.ssl_object is None
    assert client.read(len(data) - first_read) == data[first_read:]
    assert client.read_line() == (after.decode().rstrip("\n"), False)
    _say(client, "plain back")
    assert t.join_checked() == b"plain back\n"


@pytest.mark.parametrize("first_read", [20_000, 100])
def test_detach_with_unread_data_when_the_peer_answers_our_close_notify(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    version: str,
    first_read: int,
) -> None:
    """Unread data, and the peer's close-notify comes only after ours: no false
    APPLICATION_DATA_AFTER_CLOSE_NOTIFY, and nothing lost."""
    csock, ssock = tcp_pair()
    data = bytes(i % 251 for i in range(30_000))
    after = b"plain after close-notify\n"
    peer = BioPeer(ssock, _pin(server_ctx, version), server_side=True)
    t = PeerThread(peer.handshake)
    t.start()
    client = SocketStream(
        csock,
        "io",
        "unsigned-byte-8",
        ssl_ctx=_pin(client_ctx, version),
        ssl_side="client",
        handshake_timeout=LONG,
        read_timeout=LONG,
    )
    streams.append(client)
    t.join_checked()
    wire = peer.records(data)
    ssock.sendall(wire)
    _wait_for_bytes(csock, len(wire))
    assert client.read(first_read) == data[:first_read]

    def peer_side() -> bytes:
        leftover = peer.await_close_notify()  # ours first; then the peer answers
        ssock.sendall(peer.outgoing.read() + after)
        return peer.recv_plain(leftover, len(b"plain back\n"))

    t = PeerThread(peer_side)
    t.start()
    detach_ssl(client)
    assert client.read(len(data) - first_read) == data[first_read:]
    assert client.read_line() == (after.decode().rstrip("\n"), False)
    _say(client, "plain back")
    assert t.join_checked() == b"plain back\n"


def test_detach_when_the_peer_already_sent_close_notify(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """The peer's close-notify was read (as EOF) before detach: detach still completes."""
    csock, ssock = tcp_pair()
    peer = BioPeer(ssock, server_ctx, server_side=True)
    t = PeerThread(peer.handshake)
    t.start()
    client = SocketStream(csock, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG)
    streams.append(client)
    t.join_checked()
    ssock.sendall(peer.records(b"last\n") + peer.close_notify())
    assert client.read_line() == ("last", False)
    assert client.read_char(eof_error=False) is None  # the close-notify: end of TLS data
    t = PeerThread(lambda: peer.recv_plain(peer.await_close_notify(), 6))
    t.start()
    detach_ssl(client)
    _say(client, "plain")
    assert t.join_checked() == b"plain\n"


def test_detach_without_the_peers_close_notify_fails_within_read_timeout(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()
    peer = BioPeer(ssock, server_ctx, server_side=True)
    t = PeerThread(peer.handshake)
    t.start()
    client = SocketStream(
        csock, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG, read_timeout=SHORT
    )
    streams.append(client)
    t.join_checked()
    start = time.monotonic()
    with pytest.raises(SSLFailure, match="read_timeout"):
        detach_ssl(client)
    assert time.monotonic() - start >= SHORT
    assert client.ssl_object is not None  # still TLS: nothing was switched


# ---- RFC 3207 section 7 ---------------------------------------------------------------------


def test_plaintext_injected_after_starttls_never_reads_as_protected(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """``STARTTLS\\r\\nINJECTED\\r\\n`` in one segment, then a handshake."""
    csock, ssock = tcp_pair()
    segment = b"STARTTLS\r\nINJECTED\r\n"

    def serve() -> list[str]:
        _wait_for_bytes(ssock, len(segment))
        s = SocketStream(ssock)
        streams.append(s)
        assert s.read_line() == ("STARTTLS\r", False)
        lines: list[str] = []
        try:
            attach_ssl(s, ssl_ctx=server_ctx, handshake_timeout=LONG)
        except SSLFailure:
            assert s.closed
            return lines
        # Only if the handshake somehow succeeded: nothing injected may come out of it.
        s.read_timeout = SHORT
        while True:
            line, _ = s.read_line(eof_error=False)
            if line is None:
                return lines
            lines.append(str(line))

    t = PeerThread(serve)
    t.start()
    csock.sendall(segment)  # one small send on loopback: one segment
    client = SocketStream(csock)
    streams.append(client)
    with pytest.raises(SSLFailure):
        attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=LONG)
    lines = t.join_checked()
    assert not any("INJECTED" in line for line in lines)


# ---- timeouts across attach and detach -------------------------------------------------------


def test_read_timeout_survives_attach_and_detach(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()
    client = SocketStream(csock, read_timeout=SHORT)
    server = SocketStream(ssock, read_timeout=LONG)
    streams += [client, server]

    def times_out_then_recovers(stage: str) -> None:
        start = time.monotonic()
        assert client.read_char(eof_error=False, eof_value="EOF") == "EOF"
        assert time.monotonic() - start >= SHORT
        assert client.timed_out
        _say(server, stage)
        assert client.read_line() == (stage, False)

    times_out_then_recovers("plain")
    _both(
        lambda: attach_ssl(server, ssl_ctx=server_ctx),
        lambda: attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client"),
    )
    assert client.read_timeout == SHORT
    times_out_then_recovers("tls")
    _both(lambda: detach_ssl(server), lambda: detach_ssl(client))
    times_out_then_recovers("plain again")


def test_attach_handshake_timeout_closes_the_stream(
    tcp_pair: TcpPair, streams: list[SocketStream], client_ctx: ssl.SSLContext
) -> None:
    csock, _ = tcp_pair()  # the peer never answers
    client = SocketStream(csock)
    streams.append(client)
    start = time.monotonic()
    with pytest.raises(SSLFailure) as info:
        attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client", handshake_timeout=SHORT)
    assert isinstance(info.value, TimeoutError)
    assert SHORT <= time.monotonic() - start < 5
    assert client.closed
    assert csock.fileno() == -1


# ---- bad use --------------------------------------------------------------------------------


def test_attach_twice_and_detach_plain_are_errors(
    tcp_pair: TcpPair,
    streams: list[SocketStream],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    csock, ssock = tcp_pair()
    client = SocketStream(csock)
    server = SocketStream(ssock)
    streams += [client, server]
    with pytest.raises(ValueError, match="TLS"):
        detach_ssl(client)
    assert not client.closed
    _both(
        lambda: attach_ssl(server, ssl_ctx=server_ctx),
        lambda: attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client"),
    )
    obj = client.ssl_object
    with pytest.raises(ValueError, match="TLS"):
        attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client")
    assert client.ssl_object is obj
    _say(client, "still fine")
    assert server.read_line() == ("still fine", False)
    client.close()
    with pytest.raises(ValueError):
        attach_ssl(client, ssl_ctx=client_ctx, ssl_side="client")
    with pytest.raises(ValueError):
        detach_ssl(client)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"ssl_ctx": "v3"}, "insecure"),
        ({"ssl_ctx": "tls-v1-1"}, "insecure"),
        ({"ssl_ctx": "bogus"}, "'bogus'"),
        ({"ssl_ctx": True, "ssl_side": "upward"}, "'upward'"),
        ({"ssl_ctx": True, "handshake_timeout": 0}, "handshake_timeout"),
    ],
)
def test_attach_with_bad_arguments_changes_nothing(
    tcp_pair: TcpPair, streams: list[SocketStream], kwargs: dict[str, Any], named: str
) -> None:
    csock, ssock = tcp_pair()
    client = SocketStream(csock)
    streams.append(client)
    client.write_line("pending")
    with pytest.raises(ValueError, match=re.escape(named)):
        attach_ssl(client, **kwargs)
    assert not client.closed
    assert client.ssl_object is None
    client.force_output()
    ssock.settimeout(LONG)
    assert ssock.recv(100) == b"pending\n"


@pytest.mark.parametrize("which", ["ctx_configure_callback", "ssl_configure_callback"])
def test_attach_callback_that_raises_closes_the_stream(
    tcp_pair: TcpPair, streams: list[SocketStream], which: str
) -> None:
    """As attach_ssl's docstring promises: a raising callback closes the stream."""
    csock, _ = tcp_pair()
    client = SocketStream(csock)
    streams.append(client)

    def cb(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        attach_ssl(client, ssl_ctx=True, ssl_side="client", **{which: cb})  # type: ignore[arg-type]
    assert client.closed
    assert csock.fileno() == -1

"""STARTTLS command injection (RFC 3207 section 7, CVE-2011-0411 and kin) on the server side.

A man in the middle can append plaintext to the client's ``STARTTLS`` command.  A server that
reads ahead and, after the handshake, hands those buffered bytes to the application as if they
had come over TLS executes the attacker's commands in the protected session.  sockstream moves
every byte it has read ahead into the TLS engine on ``attach_ssl``, so injected plaintext can only
break the handshake; it is never returned by a read.

The server here is a tiny SMTP-like line protocol run by ``serve``; it records every command it
reads together with whether TLS was on.  The client side is the standard library's own TLS
(``ssl.SSLObject`` over memory BIOs), so the client controls every raw byte on the wire and does
not share code with the server under test.  The same attacks are also made with a legitimate
pipelined ClientHello, which must work (bytes read ahead are not lost either).
"""

from __future__ import annotations

import queue
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import LONG
from sockstream import Server, SocketStream, SSLFailure, attach_ssl, serve

EVIL = b"RCPT TO:<attacker@evil.example>\r\n"


class Recorder:
    """What the server read: (command, tls_on) pairs, and how the connection ended."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def outcome(self) -> tuple[list[tuple[str, bool]], Any]:
        """The commands of one connection and its end ("eof" or the exception)."""
        commands: list[tuple[str, bool]] = []
        while True:
            kind, value = self.events.get(timeout=LONG)
            if kind == "command":
                commands.append(value)
            else:
                return commands, value


def smtp_like(server_ctx: ssl.SSLContext, rec: Recorder) -> Any:
    def handler(stream: SocketStream) -> None:
        end: Any = "eof"
        try:
            stream.write(b"220 ready for you\r\n")
            stream.flush()
            while True:
                line, missing = stream.read_line(False, None)
                if line is None or missing:
                    break
                line = line.rstrip("\r")
                rec.events.put(("command", (line, stream.ssl_object is not None)))
                if line == "STARTTLS":
                    stream.write(b"220 go ahead\r\n")
                    stream.flush()
                    attach_ssl(stream, ssl_ctx=server_ctx, handshake_timeout=LONG)
                else:
                    stream.write(f"250 ok {line}\r\n".encode())
                    stream.flush()
        except (SSLFailure, OSError) as exc:
            end = exc
        finally:
            rec.events.put(("end", end))

    return handler


@pytest.fixture
def server(server_ctx: ssl.SSLContext) -> Iterator[tuple[Server, Recorder]]:
    rec = Recorder()
    srv = serve(smtp_like(server_ctx, rec), address="127.0.0.1", read_timeout=LONG)
    try:
        yield srv, rec
    finally:
        srv.terminate()


class Client:
    """A client that controls every raw byte: stdlib TLS over memory BIOs on a plain socket."""

    def __init__(self, port: int, client_ctx: ssl.SSLContext) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        self.raw = bytearray()  # plaintext received and not yet consumed
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = client_ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        assert self.plain_line() == b"220 ready for you\r\n"

    def close(self) -> None:
        self.sock.close()

    def plain_line(self) -> bytes:
        while b"\n" not in self.raw:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.raw += chunk
        i = self.raw.index(b"\n") + 1
        line = bytes(self.raw[:i])
        del self.raw[:i]
        return line

    def client_hello(self) -> bytes:
        """The first handshake flight, not sent yet."""
        with pytest.raises(ssl.SSLWantReadError):
            self.tls.do_handshake()
        return self.outgoing.read()

    def handshake(self) -> None:
        """Finish the handshake (after client_hello was sent); raises ssl.SSLError on failure."""
        if self.raw:  # bytes that followed the last plaintext line belong to TLS
            self.incoming.write(bytes(self.raw))
            self.raw.clear()
        while True:
            try:
                self.tls.do_handshake()
                self.sock.sendall(self.outgoing.read())
                return
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                data = self.sock.recv(65536)
                if not data:
                    raise ConnectionResetError("server closed during the handshake") from None
                self.incoming.write(data)

    def send_tls(self, data: bytes) -> None:
        self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def tls_line(self) -> bytes:
        buf = bytearray()
        while not buf.endswith(b"\n"):
            try:
                buf += self.tls.read(1)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                assert data, "server closed the connection"
                self.incoming.write(data)
        return bytes(buf)


@pytest.fixture
def client(server: tuple[Server, Recorder], client_ctx: ssl.SSLContext) -> Iterator[Client]:
    c = Client(server[0].port, client_ctx)
    try:
        yield c
    finally:
        c.close()


def assert_never_read(commands: list[tuple[str, bool]]) -> None:
    for line, _ in commands:
        assert "attacker" not in line, f"injected plaintext was read as a command: {line!r}"


def test_plaintext_in_the_same_segment_as_starttls(
    server: tuple[Server, Recorder], client: Client
) -> None:
    """The classic attack: STARTTLS and the injected command arrive in one TCP segment."""
    client.sock.sendall(b"EHLO client\r\nSTARTTLS\r\n" + EVIL)
    assert client.plain_line() == b"250 ok EHLO client\r\n"
    assert client.plain_line() == b"220 go ahead\r\n"
    client.sock.sendall(client.client_hello())
    with pytest.raises((ssl.SSLError, OSError)):
        client.handshake()
    commands, end = server[1].outcome()
    assert commands == [("EHLO client", False), ("STARTTLS", False)]
    assert_never_read(commands)
    assert isinstance(end, SSLFailure), end  # the injected bytes broke the handshake


def test_plaintext_sent_after_the_go_ahead(server: tuple[Server, Recorder], client: Client) -> None:
    """Injected plaintext that arrives only once the server is already in attach_ssl."""
    client.sock.sendall(b"STARTTLS\r\n")
    assert client.plain_line() == b"220 go ahead\r\n"
    client.sock.sendall(EVIL + client.client_hello())
    with pytest.raises((ssl.SSLError, OSError)):
        client.handshake()
    commands, end = server[1].outcome()
    assert commands == [("STARTTLS", False)]
    assert_never_read(commands)
    assert isinstance(end, SSLFailure), end


def test_plaintext_injected_into_the_tls_session(
    server: tuple[Server, Recorder], client: Client
) -> None:
    """Raw plaintext spliced between TLS records fails the session; it is never returned."""
    client.sock.sendall(b"STARTTLS\r\n")
    assert client.plain_line() == b"220 go ahead\r\n"
    client.sock.sendall(client.client_hello())
    client.handshake()
    client.send_tls(b"MAIL FROM:<good@example>\r\n")
    assert client.tls_line() == b"250 ok MAIL FROM:<good@example>\r\n"
    client.sock.sendall(EVIL)  # not a TLS record
    commands, end = server[1].outcome()
    assert commands == [("STARTTLS", False), ("MAIL FROM:<good@example>", True)]
    assert_never_read(commands)
    assert isinstance(end, SSLFailure), end


def test_pipelined_client_hello_is_not_lost(
    server: tuple[Server, Recorder], client: Client
) -> None:
    """The legitimate twin: a ClientHello pipelined behind STARTTLS (read ahead by the
    server with the command) goes to TLS, so the handshake works and nothing is lost."""
    client.sock.sendall(b"STARTTLS\r\n" + client.client_hello())
    assert client.plain_line() == b"220 go ahead\r\n"
    client.handshake()
    client.send_tls(b"MAIL FROM:<good@example>\r\n")
    assert client.tls_line() == b"250 ok MAIL FROM:<good@example>\r\n"
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()  # queues our close-notify
    client.sock.sendall(client.outgoing.read())
    client.sock.shutdown(socket.SHUT_WR)
    commands, end = server[1].outcome()
    assert commands == [("STARTTLS", False), ("MAIL FROM:<good@example>", True)]
    assert end == "eof"

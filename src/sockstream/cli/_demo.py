"""``sockstream demo``: a guided, self-checking tour of the library, and the tiny servers.

Goals: a newcomer types one command and sees, in a readable transcript, every promise of the
seed page kept on real loopback sockets: character I/O on a binary stream and binary I/O on a
character stream (the seed's two HTTP examples), a read timeout that reads as end-of-file and a
stream that recovers, a write timeout, TLS with SNI and a certificate made at run time, STARTTLS
on and off on one connection, waiting on 1000 streams, and a UTF-8, CRLF line protocol.  Each
step checks what it saw, so the demo doubles as a smoke test (exit 1 names the failing step).

Plan: every step is a function that opens what it needs in an ``ExitStack`` (servers, streams,
sockets), prints what it did ("->") and what it saw ("<-"), and raises :class:`StepFailed` when
the library did not do what the step expected.  A failing step never stops the others.  Steps
synchronise with events and sockets only; every read has a ``read_timeout`` and every wait a
bound (:data:`LONG`), so a broken library makes a step fail, never the demo hang.  Server handler
threads signal an event when they finish and the step waits for it: nothing outlives its step.

The servers behind ``sockstream serve`` (echo, discard, a tiny HTTP page) live here too, because
the demo's step 1 and 2 use the same HTTP handler.
"""

from __future__ import annotations

import array
import contextlib
import html
import os
import socket
import ssl
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from sockstream import Server, SocketStream

    from ._certs import RuntimeCertificates

__all__ = [
    "STEPS",
    "Transcript",
    "discard_handler",
    "echo_handler",
    "http_handler",
    "run_demo",
]

#: Upper bound of any single wait in the demo (a read, a join, a handshake); a passing demo never
#: comes near it.  A broken library turns into a failed step after this long, not a hang.
LONG = 10.0

#: The read timeout that step 3 lets fire, and the write timeout that step 4 lets fire.
SHORT = 0.3

#: The SNI name that step 5 asks for; the run-time certificate covers it.
SNI_NAME = "demo.sockstream.test"

#: array typecode for characters: 'u' is deprecated from Python 3.13 in favour of 'w'.
CHAR_TYPECODE = "w" if sys.version_info >= (3, 13) else "u"

#: How many streams step 7 waits on.  Two descriptors each (a socketpair).
MANY = 1000

#: Step 4 stops pushing after this much if the kernel never pushes back (it always does).
WRITE_LIMIT = 256 << 20


class StepFailed(Exception):
    """A demo step saw something other than what the library promises."""


def check(condition: object, message: str) -> None:
    """Raise :class:`StepFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise StepFailed(message)


# ---- the tiny servers (also `sockstream serve`) -----------------------------------------------

Log = Callable[[str], None]


def _no_log(message: str) -> None:
    pass


def _peer(stream: SocketStream) -> str:
    try:
        address = stream.peer_address
    except (OSError, ValueError):
        return "?"
    if not address or len(address) < 2:
        return "?"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def echo_handler(log: Log = _no_log) -> Callable[[SocketStream], None]:
    """A ``serve`` handler that sends back whatever it reads, until end-of-file."""

    def handle(stream: SocketStream) -> None:
        who = _peer(stream)
        log(f"{who} connected")
        total = 0
        try:
            while True:
                data = stream.read1(65536)
                if not data:
                    break
                total += len(data)
                stream.write(data)
                stream.flush()
        except (OSError, ValueError) as exc:
            log(f"{who}: {type(exc).__name__}: {exc}")
        log(f"{who} closed after {total} bytes echoed")

    return handle


def discard_handler(log: Log = _no_log) -> Callable[[SocketStream], None]:
    """A ``serve`` handler that reads and drops everything, until end-of-file."""

    def handle(stream: SocketStream) -> None:
        who = _peer(stream)
        log(f"{who} connected")
        total = 0
        buf = bytearray(65536)
        try:
            while True:
                n = stream.readinto(buf)
                if not n:
                    break
                total += n
        except (OSError, ValueError) as exc:
            log(f"{who}: {type(exc).__name__}: {exc}")
        log(f"{who} closed after {total} bytes discarded")

    return handle


#: Longest request or header line the HTTP handler accepts (what nginx allows by default: 8 KiB).
HTTP_MAX_LINE = 8192
#: Most header lines the HTTP handler reads before answering 431.
HTTP_MAX_HEADERS = 100

_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


def _page(target: str, peer: str, tls: str | None) -> bytes:
    how = f"over {html.escape(tls)}" if tls else "in plain text"
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>sockstream</title></head>\n'
        "<body><h1>Hello from sockstream</h1>\n"
        f"<p>You asked for <code>{html.escape(target)}</code> from {html.escape(peer)}, "
        f"{how}.</p>\n"
        "<p>This page was written by <code>sockstream serve --http</code>: one "
        "<code>SocketStream</code> per connection, read with <code>read_line</code>.</p>\n"
        "</body></html>\n"
    ).encode()


def http_handler(log: Log = _no_log) -> Callable[[SocketStream], None]:
    """A ``serve`` handler answering GET and HEAD with a tiny page, then closing (HTTP/1.0 style).

    It accepts bare ``"\\n"`` line ends as well as ``"\\r\\n"`` (the seed's example sends
    ``"GET / HTTP/1.0\\n\\n"``), answers in the request's version (1.0 or 1.1) with
    ``Connection: close``, 405 for other methods, 400 for a malformed request line and 431 for
    oversized headers.
    """

    def handle(stream: SocketStream) -> None:
        who = _peer(stream)
        version = "HTTP/1.0"
        try:
            first, _ = stream.read_line(eof_error=False, eof_value=None)
            if first is None:
                return
            request = first.rstrip("\r")
            status = 200
            for _ in range(HTTP_MAX_HEADERS + 1):
                line, _ = stream.read_line(eof_error=False, eof_value=None)
                if line is None or not line.rstrip("\r"):
                    break
            else:
                status = 431
            parts = request.split()
            method = target = ""
            if len(parts) == 3 and parts[2].startswith("HTTP/1."):
                method, target, proto = parts
                version = "HTTP/1.1" if proto == "HTTP/1.1" else "HTTP/1.0"
                if method not in ("GET", "HEAD") and status == 200:
                    status = 405
            elif status == 200:
                status = 400
            ssl_object = stream.ssl_object
            tls = ssl_object.version() if ssl_object is not None else None
            body = (
                _page(target, who, tls)
                if status == 200
                else (f"{status} {_REASONS[status]}\n".encode("ascii"))
            )
            ctype = "text/html" if status == 200 else "text/plain"
            head = (
                f"{version} {status} {_REASONS[status]}\r\n"
                f"Content-Type: {ctype}; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n"
                + ("Allow: GET, HEAD\r\n" if status == 405 else "")
                + "Connection: close\r\nServer: sockstream\r\n\r\n"
            )
            stream.write_string(head)
            if method != "HEAD":
                stream.write(body)
            stream.finish_output()
            log(f'{who} "{request}" {status}')
        except ValueError as exc:  # LineTooLongError: nothing was consumed; answer and close
            log(f"{who}: {exc}")
            with contextlib.suppress(OSError, ValueError):
                stream.write_string(f"{version} 431 {_REASONS[431]}\r\nConnection: close\r\n\r\n")
                stream.finish_output()
        except OSError as exc:
            log(f"{who}: {type(exc).__name__}: {exc}")

    return handle


# ---- the transcript ---------------------------------------------------------------------------


class Transcript:
    """Prints the demo: step titles, what was done ("->"), what was seen ("<-"), verdicts.

    ANSI colour only when ``colour`` is true (the CLI decides: a terminal and no ``NO_COLOR``).
    """

    def __init__(self, out: TextIO, *, colour: bool) -> None:
        self._out = out
        self._colour = colour

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self._colour else text

    def line(self, text: str = "") -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def title(self, number: int, total: int, text: str) -> None:
        self.line(self._paint("1", f"[{number}/{total}] {text}"))

    def did(self, text: str) -> None:
        self.line(f"  {self._paint('36', '->')} {text}")

    def saw(self, text: str) -> None:
        self.line(f"  {self._paint('33', '<-')} {text}")

    def note(self, text: str) -> None:
        self.line(f"     {self._paint('2', text)}")

    def ok(self, seconds: float) -> None:
        self.line(f"  {self._paint('1;32', 'ok')} {self._paint('2', f'({seconds:.2f} s)')}")

    def fail(self, reason: str) -> None:
        self.line(f"  {self._paint('1;31', 'FAILED')}: {reason}")

    def summary(self, passed: int, total: int, seconds: float, failed: Sequence[str]) -> None:
        text = f"{passed}/{total} steps passed in {seconds:.1f} s"
        if failed:
            self.line(self._paint("1;31", text + "; failed: " + ", ".join(failed)))
        else:
            self.line(self._paint("1;32", text))


# ---- the demo steps ---------------------------------------------------------------------------


class Demo:
    """What the steps share: the transcript, and run-time certificates made on first use."""

    def __init__(self, transcript: Transcript) -> None:
        self.t = transcript
        self._certs: RuntimeCertificates | None = None

    def certs(self) -> RuntimeCertificates:
        if self._certs is None:
            from ._certs import make_certificates

            self._certs = make_certificates([SNI_NAME])
            self.t.did(
                f"made a CA and a certificate for {', '.join(self._certs.names)} at run time "
                f"(with {self._certs.backend}; nothing is shipped)"
            )
        return self._certs

    def close(self) -> None:
        if self._certs is not None:
            self._certs.cleanup()
            self._certs = None


@contextlib.contextmanager
def _server(
    handler: Callable[[SocketStream], None], **keywords: Any
) -> Iterator[tuple[Server, threading.Event]]:
    """``serve(handler)`` on 127.0.0.1 port 0; yields the server and a "handler finished" event.

    On the way out the server is terminated and the last handler is waited for (bounded).
    """
    from sockstream import serve

    finished = threading.Event()

    def wrapped(stream: SocketStream) -> None:
        try:
            handler(stream)
        finally:
            finished.set()

    server = serve(wrapped, service=0, address="127.0.0.1", **keywords)
    try:
        yield server, finished
    finally:
        server.terminate()


def _addr(server: Server) -> str:
    return f"127.0.0.1:{server.port}"


def step_char_io_on_binary(d: Demo) -> None:
    from sockstream import open_tcp_stream

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(_server(http_handler()))
        d.t.did(f"started a tiny HTTP server with sockstream.serve on {_addr(server)}")
        x = stack.enter_context(
            open_tcp_stream(
                "127.0.0.1", server.port, element_type="unsigned-byte-8", read_timeout=LONG
            )
        )
        d.t.did("x = open_tcp_stream('127.0.0.1', port, element_type='unsigned-byte-8')")
        x.write_sequence("GET / HTTP/1.0\n\n")
        x.force_output()
        d.t.did(
            "x.write_sequence('GET / HTTP/1.0\\n\\n'); x.force_output()   # a str on a byte stream"
        )
        res = array.array(CHAR_TYPECODE, " " * 20)
        n = x.read_sequence(res)
        d.t.did(f"res = array('{CHAR_TYPECODE}', ' ' * 20); x.read_sequence(res)")
        text = res.tounicode()
        d.t.saw(f"{n}, {text!r}   # characters, as if by chr()")
        check(n == 20, f"read_sequence returned {n}, expected 20")
        check(text.startswith("HTTP/1.0 200 OK\r\n"), f"unexpected response {text!r}")
        x.close()
        check(finished.wait(LONG), "the HTTP handler did not finish")


def step_binary_io_on_char(d: Demo) -> None:
    from sockstream import open_tcp_stream

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(_server(http_handler()))
        d.t.did(f"the same HTTP server on {_addr(server)}")
        x = stack.enter_context(
            open_tcp_stream("127.0.0.1", server.port, element_type="base-char", read_timeout=LONG)
        )
        d.t.did("x = open_tcp_stream('127.0.0.1', port, element_type='base-char')")
        request = array.array("B", b"GET / HTTP/1.0\n\n")
        x.write_sequence(request)
        x.force_output()
        d.t.did(
            "x.write_sequence(array('B', b'GET / HTTP/1.0\\n\\n')); x.force_output()"
            "   # bytes on a character stream"
        )
        res = array.array("B", bytes(20))
        n = x.read_sequence(res)
        d.t.did("res = array('B', bytes(20)); x.read_sequence(res)")
        text = "".join(map(chr, res))
        d.t.saw(f"{n}, {res.tolist()[:8]}...")
        d.t.saw(f"''.join(map(chr, res)) = {text!r}")
        check(n == 20, f"read_sequence returned {n}, expected 20")
        check(text.startswith("HTTP/1.0 200 OK\r\n"), f"unexpected response {text!r}")
        x.close()
        check(finished.wait(LONG), "the HTTP handler did not finish")


def step_read_timeout(d: Demo) -> None:
    from sockstream import open_tcp_stream

    go = threading.Event()

    def late_writer(stream: SocketStream) -> None:
        if go.wait(LONG):
            stream.write_line("late data")
            stream.force_output()
            stream.read_line(eof_error=False)  # until the client closes

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(_server(late_writer))
        stack.callback(go.set)
        d.t.did(f"a server on {_addr(server)} that writes only when told to")
        s = stack.enter_context(open_tcp_stream("127.0.0.1", server.port, read_timeout=SHORT))
        d.t.did(f"s = open_tcp_stream(..., read_timeout={SHORT})")
        t0 = time.monotonic()
        line, missing = s.read_line(eof_error=False, eof_value=None)
        waited = time.monotonic() - t0
        d.t.saw(
            f"s.read_line(eof_error=False) -> ({line!r}, {missing}) after {waited:.2f} s; "
            f"s.timed_out = {s.timed_out}"
        )
        check(line is None and missing, f"expected end-of-file, got {line!r}")
        check(s.timed_out, "timed_out is not True after a read timeout")
        check(waited >= SHORT * 0.95, f"the timeout fired early, after {waited:.3f} s")
        go.set()
        s.read_timeout = LONG
        d.t.did(f"told the server to write; s.read_timeout = {LONG:g}")
        line, missing = s.read_line(eof_error=False, eof_value=None)
        d.t.saw(
            f"s.read_line() -> ({line!r}, {missing}); s.timed_out = {s.timed_out}"
            "   # the stream recovered"
        )
        check(line == "late data" and not missing, f"expected 'late data', got {line!r}")
        check(not s.timed_out, "timed_out is still True after a successful read")
        s.close()
        check(finished.wait(LONG), "the server handler did not finish")


def step_write_timeout(d: Demo) -> None:
    from sockstream import WriteTimeoutError, open_tcp_stream

    release = threading.Event()

    def never_reads(stream: SocketStream) -> None:
        release.wait(LONG)

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(_server(never_reads))
        stack.callback(release.set)
        d.t.did(f"a server on {_addr(server)} that never reads")
        s = stack.enter_context(open_tcp_stream("127.0.0.1", server.port, write_timeout=SHORT))
        stack.callback(s.close, abort=True)
        d.t.did(
            f"s = open_tcp_stream(..., write_timeout={SHORT}); "
            "s.write(1 MiB); s.force_output(); ... until it raises"
        )
        chunk = bytes(1 << 20)
        queued = 0
        error: WriteTimeoutError | None = None
        t0 = time.monotonic()
        try:
            while queued < WRITE_LIMIT:
                s.write(chunk)
                queued += len(chunk)
                t0 = time.monotonic()
                s.force_output()
        except WriteTimeoutError as exc:
            error = exc
        waited = time.monotonic() - t0
        check(error is not None, f"no WriteTimeoutError after {queued >> 20} MiB")
        assert error is not None
        d.t.saw(
            f"after {queued >> 20} MiB the kernel buffers were full; the last flush gave up "
            f"after {waited:.2f} s:"
        )
        d.t.saw(f"WriteTimeoutError: {error}")
        d.t.saw(
            f"error.bytes_written = {error.bytes_written}; "
            f"isinstance(error, TimeoutError) = {isinstance(error, TimeoutError)}"
        )
        check(isinstance(error, TimeoutError), "WriteTimeoutError is not a TimeoutError")
        check(waited >= SHORT * 0.95, f"the write timeout fired early, after {waited:.3f} s")
        release.set()
        s.close(abort=True)
        d.t.did("s.close(abort=True)   # drop what is still buffered")
        check(finished.wait(LONG), "the server handler did not finish")


def step_tls_sni(d: Demo) -> None:
    from sockstream import SocketStream, SSLFailure, open_tcp_stream

    certs = d.certs()
    server_ctx = certs.server_context()
    seen_sni: list[str | None] = []

    def on_sni(ssl_object: Any, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    server_ctx.sni_callback = on_sni

    def greeter(stream: SocketStream) -> None:
        line, _ = stream.read_line(eof_error=False, eof_value="")
        stream.write_line(f"hello {line}, you asked for {seen_sni[-1] if seen_sni else None}")
        stream.force_output()

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(
            _server(greeter, ssl_ctx=server_ctx, handshake_timeout=LONG, read_timeout=LONG)
        )
        d.t.did(f"sockstream.serve(..., ssl_ctx=<server context>) on {_addr(server)}")
        client_ctx = certs.client_context()
        s = stack.enter_context(
            open_tcp_stream(
                "127.0.0.1",
                server.port,
                ssl_ctx=client_ctx,
                tlsext_host_name=SNI_NAME,
                handshake_timeout=LONG,
                read_timeout=LONG,
            )
        )
        d.t.did(
            f"s = open_tcp_stream(..., ssl_ctx=<trusts the run-time CA only>, "
            f"tlsext_host_name={SNI_NAME!r})"
        )
        obj = s.ssl_object
        check(obj is not None, "ssl_object is None on a TLS stream")
        assert obj is not None
        cert = obj.getpeercert() or {}
        subject = ", ".join(
            f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"
        )
        issuer = ", ".join(
            f"{k}={v}" for rdn in cert.get("issuer", ()) for k, v in rdn if k == "organizationName"
        )
        san = ", ".join(f"{k}:{v}" for k, v in cert.get("subjectAltName", ()))
        cipher = obj.cipher()
        d.t.saw(
            f"{obj.version()}, {cipher[0] if cipher else '?'}; verified the server's "
            f"certificate: {subject}, issued by {issuer}"
        )
        d.t.saw(f"subjectAltName: {san}")
        s.write_line("client")
        s.force_output()
        reply, _ = s.read_line()
        d.t.saw(f"server says: {reply!r}")
        check(seen_sni == [SNI_NAME], f"the server saw SNI {seen_sni!r}, expected {SNI_NAME!r}")
        check(reply == f"hello client, you asked for {SNI_NAME}", f"unexpected reply {reply!r}")
        s.close()
        check(finished.wait(LONG), "the server handler did not finish")

    # Verification is real: a client expecting another name is refused during the handshake.
    a, b = socket.socketpair()
    outcome: list[BaseException | None] = []

    def tls_server() -> None:
        try:
            SocketStream(
                b, ssl_ctx=certs.server_context(), ssl_side="server", handshake_timeout=LONG
            ).close()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=tls_server, name="demo-tls-server", daemon=True)
    thread.start()
    try:
        SocketStream(
            a,
            ssl_ctx=certs.client_context(),
            ssl_side="client",
            tlsext_host_name="wrong.example.test",
            handshake_timeout=LONG,
        ).close()
        refused: BaseException | None = None
    except SSLFailure as exc:
        refused = exc
    finally:
        thread.join(LONG)
        a.close()  # the stream already closed them on failure; closing again is harmless
        b.close()
    check(refused is not None, "a client expecting 'wrong.example.test' was not refused")
    d.t.saw(f"a client expecting 'wrong.example.test' is refused: SSLFailure: {refused}")


def step_starttls(d: Demo) -> None:
    from sockstream import attach_ssl, detach_ssl, open_tcp_stream

    certs = d.certs()
    server_ctx = certs.server_context()

    def starttls_server(stream: SocketStream) -> None:
        # A toy line protocol: STARTTLS and STOPTLS switch; anything else is echoed with the
        # state it arrived in, so the client can see what the server saw.
        while True:
            line, _ = stream.read_line(eof_error=False, eof_value=None)
            if line is None:
                return
            if line == "STARTTLS":
                stream.write_line("OK go ahead")
                stream.force_output()
                attach_ssl(stream, ssl_ctx=server_ctx, ssl_side="server", handshake_timeout=LONG)
            elif line == "STOPTLS":
                stream.write_line("OK back to plain")
                stream.force_output()
                detach_ssl(stream)
            else:
                state = stream.ssl_object.version() if stream.ssl_object else "plain"
                stream.write_line(f"{line} ({state})")
                stream.force_output()

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(_server(starttls_server, read_timeout=LONG))
        d.t.did(f"a plain line server on {_addr(server)} that knows STARTTLS and STOPTLS")
        s = stack.enter_context(open_tcp_stream("127.0.0.1", server.port, read_timeout=LONG))

        def say(text: str) -> str:
            s.write_line(text)
            s.force_output()
            reply, _ = s.read_line()
            d.t.saw(f"{text!r} -> {reply!r}")
            return str(reply)

        check(say("hello") == "hello (plain)", "the plain exchange failed")
        check(say("STARTTLS") == "OK go ahead", "STARTTLS was not accepted")
        attach_ssl(
            s,
            ssl_ctx=certs.client_context(),
            ssl_side="client",
            tlsext_host_name="localhost",
            handshake_timeout=LONG,
        )
        check(s.ssl_object is not None, "ssl_object is None after attach_ssl")
        assert s.ssl_object is not None
        version = s.ssl_object.version()
        d.t.did(f"attach_ssl(s, ssl_side='client', tlsext_host_name='localhost') -> {version}")
        check(say("secret") == f"secret ({version})", "the TLS exchange failed")
        check(say("STOPTLS") == "OK back to plain", "STOPTLS was not accepted")
        detach_ssl(s)
        d.t.did(f"detach_ssl(s) -> s.ssl_object = {s.ssl_object}")
        check(s.ssl_object is None, "ssl_object is not None after detach_ssl")
        check(say("plain again") == "plain again (plain)", "the plain exchange after TLS failed")
        s.close()
        check(finished.wait(LONG), "the server handler did not finish")


def step_utf8_crlf(d: Demo) -> None:
    from sockstream import open_tcp_stream

    def greeter(stream: SocketStream) -> None:
        # A CRLF line protocol in UTF-8, as SMTP or IMAP would speak it.
        stream.write_line("220 grüße aus sockstream ✓")
        stream.force_output()
        while True:
            line, missing = stream.read_line(eof_error=False, eof_value=None)
            if line is None or missing:
                return
            stream.write_line(f"250 {len(line)} characters: {line.upper()}")
            stream.force_output()

    with contextlib.ExitStack() as stack:
        server, finished = stack.enter_context(
            _server(greeter, encoding="utf-8", newline="\r\n", read_timeout=LONG)
        )
        d.t.did(f"serve(handler, encoding='utf-8', newline='\\r\\n') on {_addr(server)}")
        s = stack.enter_context(
            open_tcp_stream(
                "127.0.0.1", server.port, encoding="utf-8", newline="\r\n", read_timeout=LONG
            )
        )
        d.t.did("s = open_tcp_stream(..., encoding='utf-8', newline='\\r\\n')")
        greeting, _ = s.read_line()
        d.t.saw(f"s.read_line() -> {greeting!r}   # no CR, no mojibake")
        check(greeting == "220 grüße aus sockstream ✓", f"unexpected greeting {greeting!r}")
        s.write_line("héllo wörld 😀")
        s.force_output()
        d.t.did("s.write_line('héllo wörld 😀')   # sends UTF-8 and CRLF")
        check(s.peek_char() == "2", "peek_char did not see the reply")
        head, _ = s.read_until(" ")
        d.t.saw(f"s.read_until(' ') -> {head!r}")
        check(head == "250", f"read_until gave {head!r}")
        rest, _ = s.read_line()
        d.t.saw(f"s.read_line() -> {rest!r}")
        check(rest == "13 characters: HÉLLO WÖRLD 😀", f"unexpected reply {rest!r}")
        s.write_line("é")
        s.force_output()
        data = bytearray(4)
        s.read_sequence(data)
        d.t.saw(f"s.read_sequence(bytearray(4)) -> {bytes(data)!r}   # bytes stay raw bytes")
        check(bytes(data) == b"250 ", f"read_sequence gave {bytes(data)!r}")
        char = s.read_char()
        d.t.saw(f"s.read_char() -> {char!r}")
        check(char == "1", f"read_char gave {char!r}")
        s.close()
        check(finished.wait(LONG), "the server handler did not finish")


def _raise_fd_limit(needed: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to ``needed`` if it is lower; say what was done."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return f"raised the descriptor limit RLIMIT_NOFILE from {soft} to {target}"


def _fd_budget() -> int:
    try:
        import resource
    except ImportError:
        return 1 << 30
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft


def step_wait_many(d: Demo) -> None:
    from sockstream import (
        SocketStream,
        wait_for_input_streams,
        wait_for_input_streams_returning_first,
    )

    spare = 64  # descriptors for everything else the process has open
    note = _raise_fd_limit(2 * MANY + spare)
    if note:
        d.t.did(note)
    count = min(MANY, (_fd_budget() - spare) // 2)
    check(count >= 2, "not enough file descriptors for this step")
    if count < MANY:
        d.t.note(f"only {count} streams: the hard descriptor limit is too low for {MANY}")
    streams: list[SocketStream] = []
    others: list[socket.socket] = []
    try:
        for _ in range(count):
            a, b = socket.socketpair()
            others.append(b)
            try:
                streams.append(SocketStream(a, read_timeout=LONG))
            except BaseException:
                a.close()
                raise
        d.t.did(f"made {count} SocketStreams over socketpairs")
        ready = wait_for_input_streams(streams, timeout=0)
        d.t.saw(f"wait_for_input_streams(streams, timeout=0) -> {len(ready)} ready")
        check(ready == [], f"{len(ready)} streams ready before anything was sent")
        k = count * 7 // 10
        others[k].sendall(b"!")
        d.t.did(f"wrote one byte to the peer of stream #{k}")
        t0 = time.monotonic()
        ready = wait_for_input_streams(streams, timeout=LONG)
        waited = time.monotonic() - t0
        got = [streams.index(s) for s in ready]
        d.t.saw(f"wait_for_input_streams(streams) -> streams {got} in {waited * 1000:.1f} ms")
        check(got == [k], f"expected stream #{k} alone, got {got}")
        char = streams[k].read_char()
        d.t.saw(f"streams[{k}].read_char() -> {char!r}")
        check(char == "!", f"read {char!r}, expected '!'")
        j = count // 5
        others[j].close()
        d.t.did(f"closed the peer of stream #{j} (end-of-file counts as ready)")
        first = wait_for_input_streams_returning_first(streams, timeout=LONG)
        index = streams.index(first) if first is not None else None
        d.t.saw(f"wait_for_input_streams_returning_first(streams) -> stream #{index}")
        check(index == j, f"expected stream #{j}, got {index}")
    finally:
        for s in streams:
            s.close()
        for b in others:
            b.close()


Step = tuple[str, Callable[[Demo], None]]

STEPS: tuple[Step, ...] = (
    ("Character I/O on a binary stream (the seed's first HTTP example)", step_char_io_on_binary),
    ("Binary I/O on a character stream (the seed's second HTTP example)", step_binary_io_on_char),
    ("A read timeout reads as end-of-file, and the stream recovers", step_read_timeout),
    ("A write timeout against a peer that never reads", step_write_timeout),
    ("TLS with a certificate made at run time, and SNI", step_tls_sni),
    ("STARTTLS on and off on one connection", step_starttls),
    (f"Waiting on {MANY} streams, one of them ready", step_wait_many),
    ("A UTF-8, CRLF line protocol (encoding=, newline=, read_until)", step_utf8_crlf),
)


#: The command runs each step under a watchdog: a step that takes longer than this (which only
#: a hang inside the library can cause, since every wait in a step is bounded by LONG) ends the
#: process with status 1 and says which step hung, instead of hanging the terminal.
STEP_LIMIT = 2 * LONG


def _watchdog(
    t: Transcript,
    number: int,
    limit: float,
    start: float,
    numbers: Sequence[int],
    failed: Sequence[str],
    cleanup: Callable[[], None],
) -> threading.Timer:
    def expire() -> None:
        cleanup()  # the run-time key must not stay behind in /tmp
        t.fail(f"step {number}: did not finish within {limit:g} s (a hang in the library)")
        t.line()
        t.summary(
            numbers.index(number) - len(failed),
            len(numbers),
            time.monotonic() - start,
            [*failed, f"{number} (hung; later steps not run)"],
        )
        os._exit(1)  # the hung thread cannot be interrupted: leave without joining it

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()
    return timer


def run_demo(
    out: TextIO | None = None,
    *,
    colour: bool = False,
    only: Sequence[int] | None = None,
    verbose: bool = False,
    step_limit: float | None = None,
) -> int:
    """Run the demo steps (all, or the 1-based numbers in ``only``); 0 if all passed, else 1.

    With ``step_limit``, a step that runs longer than that many seconds ends the *process*
    (``os._exit(1)``) after saying so: for the command line only, never in a library caller.
    """
    t = Transcript(out if out is not None else sys.stdout, colour=colour)
    demo = Demo(t)
    numbers = list(only) if only else list(range(1, len(STEPS) + 1))
    steps = f"{len(numbers)} step{'s' if len(numbers) != 1 else ''}"
    t.line(
        f"sockstream demo: {steps} on loopback, each checks what it sees "
        f"(Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION})"
    )
    failed: list[str] = []
    start = time.monotonic()
    try:
        for number in numbers:
            title, fn = STEPS[number - 1]
            t.line()
            t.title(number, len(STEPS), title)
            t0 = time.monotonic()
            timer = (
                _watchdog(t, number, step_limit, start, numbers, failed, demo.close)
                if step_limit
                else None
            )
            try:
                fn(demo)
            except Exception as exc:
                reason = (
                    str(exc) if isinstance(exc, StepFailed) else (f"{type(exc).__name__}: {exc}")
                )
                t.fail(f"step {number}: {reason}")
                if verbose:
                    for chunk in traceback.format_exception(type(exc), exc, exc.__traceback__):
                        for line in chunk.rstrip("\n").splitlines():
                            t.note(line)
                failed.append(str(number))
            else:
                t.ok(time.monotonic() - t0)
            finally:
                if timer is not None:
                    timer.cancel()
    finally:
        demo.close()
    t.line()
    t.summary(len(numbers) - len(failed), len(numbers), time.monotonic() - start, failed)
    return 1 if failed else 0


def use_colour(stream: TextIO) -> bool:
    """Colour when ``stream`` is a terminal, ``NO_COLOR`` is unset or empty and TERM is not dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

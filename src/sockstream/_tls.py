"""TLS for socket streams: contexts, the TLS transport, STARTTLS on and off.

Theory of operation
===================

The TLS engine is an ``ssl.SSLObject`` between two ``MemoryBIO``s (as in trio, anyio, urllib3's
``SSLTransport`` and httpcore): OpenSSL never touches the socket.  ``TLSTransport`` has the shape
of the plain transport -- non-blocking ``recv_into``/``send`` that answer ``WANT_READ`` or
``WANT_WRITE`` instead of blocking -- so the stream's one I/O loop, its deadlines and its buffers
serve TLS unchanged, and the stream can swap transports at run time:

* **attach** (STARTTLS): pending output is flushed as plain text first (Twisted #10445); input the
  stream had already read ahead (say, a ClientHello pipelined behind ``STARTTLS``) is moved from
  the stream's buffer into the engine's incoming BIO, never handed to the application
  (CPython #142352; RFC 3207 section 7: plaintext pipelined after STARTTLS is fed to the TLS
  engine, where it can only fail the handshake, and never reads as if it were protected).
* **detach**: our close-notify goes out; then we keep *reading* (``SSLObject.read``, not
  ``unwrap``, so application data that the peer sent before its close-notify lands in the
  stream's buffer instead of being discarded) until the peer's close-notify; whatever raw bytes
  follow it in the incoming BIO go back into the stream's buffer as plain input (trio/anyio
  ``unwrap``).

Two locks: ``_engine`` guards the SSLObject and its BIOs -- every touch of either, since
OpenSSL runs without the GIL and its objects are not safe for concurrent use, and one thread
may read while another writes; ``_wire`` serialises moving the engine's output to the socket,
so records from the two directions never interleave out of order.
Raw bytes that the socket would not take yet wait in ``_pending`` and go first next time.

Truncation: a TCP close without close-notify raises ``SSLTruncatedError`` unless the context has
``ssl.OP_IGNORE_UNEXPECTED_EOF`` set (contexts we make have it cleared, as trio and anyio do).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._errors import (
    SocketError,
    SocketIOError,
    SSLFailure,
    SSLHandshakeTimeout,
    SSLTruncatedError,
)
from ._options import TLSOptions
from ._options import check_ssl_side as _check_side
from ._wait import (
    WANT_MORE,
    WANT_READ,
    WANT_WRITE,
    deadline_after,
    make_poller,
    wait_fd,
)

if TYPE_CHECKING:
    from ._stream import SocketStream

#: What ``decrypt_into`` answers at the peer's close-notify.
CLOSED: Final = -3
#: Bytes asked of the socket at a time: four maximal TLS records.
RAW_CHUNK: Final = 65536
#: Plaintext handed to the engine at a time, so the outgoing BIO stays small.
WRITE_CHUNK: Final = 65536

_MIN_VERSION: Final = {
    "default": ssl.TLSVersion.TLSv1_2,
    "v23": ssl.TLSVersion.TLSv1_2,
    "tls-v1-2": ssl.TLSVersion.TLSv1_2,
    "tls-v1-3": ssl.TLSVersion.TLSv1_3,
}
_INSECURE: Final = ("v2", "v3", "tls-v1", "tls-v1-1")


def _keyword(ssl_ctx: object) -> str:
    """The protocol keyword of an ``ssl_ctx`` given as True or a string."""
    if ssl_ctx is True:
        return "default"
    if isinstance(ssl_ctx, str):
        key = ssl_ctx.lstrip(":").lower()
        if key == "t":
            key = "default"
        if key in _MIN_VERSION:
            return key
        if key in _INSECURE:
            raise ValueError(
                f"ssl_ctx={ssl_ctx!r} asks for a protocol version below TLS 1.2, which is "
                "insecure and refused; pass an ssl.SSLContext of your own to allow it"
            )
    raise ValueError(
        "ssl_ctx must be None, True, 'default', 'v23', 'tls-v1-2', 'tls-v1-3' or an "
        f"ssl.SSLContext, not {ssl_ctx!r}"
    )


def make_ssl_ctx(ssl_ctx: bool | str = True, ssl_side: str = "server") -> ssl.SSLContext:
    """Make a context of the kind ``ssl_side`` asks for, accepting TLS 1.2 or newer.

    A client context verifies the peer's certificate (system trust store) and host name.  A
    server context needs a certificate loaded before use (``load_cert_chain``).
    """
    side = _check_side(ssl_side)
    key = _keyword(ssl_ctx)
    if side == "client":
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    elif side == "server":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    else:
        # One context usable on both sides needs the generic method, which CPython deprecates
        # in favour of the side-specific ones; LispWorks' :both asks for exactly it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS)
    ctx.minimum_version = _MIN_VERSION[key]
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


class _Wakeup:
    """A descriptor one thread makes readable (``wake``) to end another thread's poll.

    An eventfd on Linux (one descriptor), a pipe elsewhere.
    """

    __slots__ = ("_w", "fd")

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            self.fd = self._w = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover  (not Linux)
            self.fd, self._w = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._w, False)

    def wake(self) -> None:
        try:
            os.write(self._w, (1).to_bytes(8, "little"))
        except BlockingIOError:  # pragma: no cover  (already readable)
            pass

    def clear(self) -> None:
        try:
            os.read(self.fd, 4096)
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)
        if self._w != self.fd:  # pragma: no cover
            os.close(self._w)


class TLSTransport:
    """TLS over a non-blocking socket, with the plain transport's non-blocking shape."""

    def __init__(self, sock: Any, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self.sock = sock
        self.ssl_object: ssl.SSLObject | None = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self._engine = threading.Lock()
        self._wire = threading.Lock()
        self._pending = memoryview(b"")
        self._held = bytearray()
        self.raw_eof = False
        self.peer_closed = False
        self.notify_sent = False
        # Wake-ups between the two sides during a TLS 1.2 renegotiation (see ``send``), made
        # by ``make_wakeups``.
        self.wake_reader: _Wakeup | None = None
        self.wake_writer: _Wakeup | None = None
        self._reader_woken = self._writer_woken = False
        self._writer_waiting = False

    def make_wakeups(self) -> None:
        """Make the two wake-ups (only TLS 1.2 renegotiates, so only it needs them)."""
        if self.wake_reader is None:
            self.wake_reader, self.wake_writer = _Wakeup(), _Wakeup()

    def close(self) -> None:
        """Release the wake-up descriptors (the socket is the stream's)."""
        for w in (self.wake_reader, self.wake_writer):
            if w is not None:
                w.close()
        self.wake_reader = self.wake_writer = None

    def _drain(self, sslobj: ssl.SSLObject) -> None:
        """Decrypt every whole record the engine holds into ``_held`` (the caller has the lock).

        Only ``SSL_read`` may take application data: ``SSL_write`` in the middle of a
        renegotiation meeting it fails (UNEXPECTED_RECORD), and ``SSL_shutdown`` fails on it
        (APPLICATION_DATA_AFTER_CLOSE_NOTIFY), losing it.  So what is received is decrypted
        first; the reads that follow get it from ``_held``.
        """
        held = self._held
        before = len(held)
        was_closed = self.peer_closed
        while self.incoming.pending or sslobj.pending():
            try:
                chunk = sslobj.read(RAW_CHUNK)
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                break
            except ssl.SSLError:  # a partial record, or an error the next read reports
                break
            if not chunk:
                self.peer_closed = True
                break
            held += chunk
        if (len(held) > before or self.peer_closed != was_closed) and self.wake_reader:
            self._reader_woken = True
            self.wake_reader.wake()

    def flush(self) -> int:
        """Send what the engine produced: 0 when all of it is on the wire, else WANT_WRITE."""
        with self._wire:
            data = self._pending
            while True:
                if not data:
                    # Under the engine lock too: another thread's SSL_write (which runs without
                    # the GIL) may be appending to this BIO right now.
                    with self._engine:
                        data = memoryview(self.outgoing.read())
                    if not data:
                        self._pending = data
                        return 0
                try:
                    n = self.sock.send(data)
                except BlockingIOError:
                    self._pending = data
                    return WANT_WRITE
                data = data[n:]

    def _receive_raw(self) -> int:
        """Move raw bytes from the socket into the engine: 1 if any moved, else WANT_READ."""
        if self.raw_eof:
            return 1  # the engine has seen the end; let it say what that means
        # recv and the BIO write under one lock: a writer waiting out a renegotiation may read
        # too, and two threads must never reorder raw bytes.
        with self._engine:
            try:
                data = self.sock.recv(RAW_CHUNK)
            except BlockingIOError:
                return WANT_READ
            if data:
                self.incoming.write(data)
            else:
                self.raw_eof = True
                self.incoming.write_eof()
            if self._writer_waiting and self.wake_writer:
                self._writer_woken = True
                self.wake_writer.wake()
        return 1

    def decrypt_into(self, view: memoryview) -> int:
        """Decrypt what the engine already holds into ``view``, without the socket.

        Returns a count (0: nothing whole is there yet), or ``WANT_READ`` (-1) when the engine
        needs more bytes from the socket, or ``CLOSED`` (-3) at the peer's close-notify.
        """
        sslobj = self.ssl_object
        assert sslobj is not None
        n = 0
        with self._engine:
            if self._reader_woken and self.wake_reader:
                self._reader_woken = False
                self.wake_reader.clear()
            held = self._held
            if held:  # decrypted before our close-notify went out (close_notify_step)
                n = min(len(view), len(held))
                view[:n] = held[:n]
                del held[:n]
                return n
            try:
                # Decrypt every whole record received, not just one, so that no input hides in
                # the engine where waiting on the socket cannot see it.
                while n < len(view):
                    got = int(sslobj.read(len(view) - n, view[n:]))
                    if got == 0:  # CPython's answer after the peer's close-notify
                        self.peer_closed = True
                        return n if n else CLOSED
                    n += got
            except ssl.SSLWantReadError:
                if n == 0:
                    return WANT_READ
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                if n == 0:
                    return CLOSED
            except ssl.SSLEOFError as exc:
                if n == 0:
                    raise SSLTruncatedError(
                        "the peer closed the connection without a TLS close-notify; the data "
                        "may be truncated"
                    ) from exc
            except ssl.SSLError as exc:
                if n == 0:
                    raise SSLFailure(f"TLS error while reading: {_describe(exc)}") from exc
        return n

    def recv_into(self, view: memoryview) -> int:
        """Decrypted bytes into ``view``: a count, 0 at close-notify, or WANT_READ.

        ``WANT_MORE`` instead of WANT_READ when raw bytes were taken from the socket on the way
        (a partial record): the wait that follows is a new one.
        """
        took = False
        while True:
            n = self.decrypt_into(view)
            if n != WANT_READ:
                return 0 if n == CLOSED else n
            self.flush()  # e.g. a KeyUpdate answer; what the socket won't take waits
            r = self._receive_raw()
            if r < 0:
                return WANT_MORE if took else r
            took = True

    def send(self, view: memoryview) -> int:
        """Encrypt from ``view``: the count of plaintext bytes taken, or WANT_WRITE/WANT_READ.

        Raw input received while a renegotiation needs it goes into the engine, where the next
        read decrypts it.
        """
        if self.flush() < 0:
            return WANT_WRITE
        sslobj = self.ssl_object
        assert sslobj is not None
        while True:
            with self._engine:
                if self._writer_woken and self.wake_writer:
                    self._writer_woken = False
                    self.wake_writer.clear()
                if self.incoming.pending:
                    # Received and not yet read (by us during a renegotiation, or by a reader
                    # that has not decrypted it yet): SSL_write must not meet application data.
                    self._drain(sslobj)
                try:
                    n = sslobj.write(view[:WRITE_CHUNK])
                    self._writer_waiting = False
                    break
                except ssl.SSLWantReadError:
                    # A renegotiation (TLS 1.2) is under way: it needs the peer's answer,
                    # which a reader on another thread may take first; it then wakes us.
                    self._writer_waiting = True
                except ssl.SSLError as exc:
                    self._writer_waiting = False
                    raise SSLFailure(f"TLS error while writing: {_describe(exc)}") from exc
            if self.flush() < 0:
                return WANT_WRITE
            r = self._receive_raw()
            if r < 0:
                return r  # WANT_READ: the stream waits until the socket is readable
        self.flush()
        return n

    def has_decrypted(self) -> bool:
        """True when the engine holds bytes (decrypted, or received and not yet decrypted)."""
        sslobj = self.ssl_object
        if sslobj is None:
            return False
        if self.peer_closed or self._held:
            return True
        with self._engine:  # OpenSSL objects are not safe against a concurrent SSL_read/write
            return self.incoming.pending > 0 or sslobj.pending() > 0

    def handshake_step(self) -> int:
        """One step of the handshake: 0 done, 1 progress, WANT_READ/WANT_WRITE."""
        sslobj = self.ssl_object
        assert sslobj is not None
        with self._engine:
            try:
                sslobj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as exc:
                raise SSLFailure(f"TLS handshake failed: {_describe(exc)}") from exc
        r = self.flush()
        if r < 0:
            return r
        if done:
            return 0
        if self.raw_eof:
            raise SSLFailure("TLS handshake failed: the peer closed the connection")
        return self._receive_raw()

    def take_held(self) -> bytes:
        """The decrypted bytes put aside (``_drain``) and not read yet, taken out."""
        with self._engine:
            held = bytes(self._held)
            del self._held[:]
        return held

    def close_notify_step(self) -> int:
        """Queue our close-notify (once) and send it: 0 when it is on the wire."""
        sslobj = self.ssl_object
        if not self.notify_sent and sslobj is not None:
            with self._engine:
                self._drain(sslobj)
                try:
                    sslobj.unwrap()
                except ssl.SSLWantReadError:
                    pass  # our alert is queued; the peer's comes later
                except ssl.SSLError as exc:
                    raise SSLFailure(f"TLS close-notify failed: {_describe(exc)}") from exc
            self.notify_sent = True
        return self.flush()


def _drive(stream: SocketStream, step: Callable[[], int], deadline: float | None) -> bool:
    """Run a non-blocking step until it returns 0; False if the deadline passed first."""
    while True:
        r = step()
        if r == 0:
            return True
        if r < 0 and not wait_fd(stream._fd, r, deadline):
            return False


def _peer_ip(sock: socket.socket) -> str:
    """The peer's IP address, to verify the certificate against; ValueError if it has none."""
    peer = sock.getpeername()
    if not (isinstance(peer, tuple) and peer):
        raise ValueError(
            f"a TLS client that checks host names needs tlsext_host_name= (the name to verify "
            f"the certificate against) on a socket whose peer has no IP address, not "
            f"{peer!r} ({socket.AddressFamily(sock.family).name})"
        )
    return str(ipaddress.ip_address(peer[0]))


def attach_ssl(
    stream: SocketStream,
    *,
    ssl_ctx: Any = True,
    ssl_side: str = "server",
    ctx_configure_callback: Callable[[ssl.SSLContext], Any] | None = None,
    ssl_configure_callback: Callable[[ssl.SSLObject], Any] | None = None,
    handshake_timeout: float | None = None,
    tlsext_host_name: str | None = None,
) -> None:
    """Start TLS on a plain stream (STARTTLS) and complete the handshake.

    Pending output is flushed first; input the stream already read ahead goes to TLS.  On
    failure (``SSLFailure``; a handshake timeout is also a ``TimeoutError``) or if a callback
    raises, the stream is closed: its connection is in an unknown state.
    """
    stream._check_open()
    if stream._transport.ssl_object is not None:
        raise ValueError("TLS is already on for this stream")
    if stream._sock is None:
        raise ValueError("the stream has no socket to start TLS on")
    start_tls(
        stream,
        TLSOptions.make(
            ssl_ctx=ssl_ctx,
            ssl_side=ssl_side,
            ctx_configure_callback=ctx_configure_callback,
            ssl_configure_callback=ssl_configure_callback,
            handshake_timeout=handshake_timeout,
            tlsext_host_name=tlsext_host_name,
        ),
    )


def start_tls(stream: SocketStream, tls: TLSOptions) -> None:
    """``attach_ssl`` with checked options, on an open plain stream with a socket."""
    assert stream._sock is not None
    side = tls.ssl_side
    timeout = tls.handshake_timeout
    tlsext_host_name = tls.tlsext_host_name
    ctx_configure_callback = tls.ctx_configure_callback
    ssl_configure_callback = tls.ssl_configure_callback
    made = False
    if isinstance(tls.ssl_ctx, ssl.SSLContext):
        ctx = tls.ssl_ctx
    else:
        ctx = make_ssl_ctx(tls.ssl_ctx, side)
        made = True
    # Bad arguments above change nothing; from here on a failure leaves the connection in an
    # unknown state, so the stream is closed.
    try:
        if made and ctx_configure_callback is not None:
            ctx_configure_callback(ctx)
        server_hostname = None
        if side == "client":
            server_hostname = tlsext_host_name
            if server_hostname is None and ctx.check_hostname:
                # Verify against the address we are connected to (an IP SAN).
                server_hostname = _peer_ip(stream._sock)
        if stream._direction != "input":
            stream._flush_out()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        try:
            sslobj = ctx.wrap_bio(
                incoming, outgoing, server_side=side != "client", server_hostname=server_hostname
            )
        except (ssl.SSLError, ValueError) as exc:
            raise SSLFailure(f"cannot start TLS: {exc}") from exc
        if ssl_configure_callback is not None:
            ssl_configure_callback(sslobj)
        if stream._direction != "output":
            ib = stream._in
            incoming.write(ib.take_all())
            ib.unread_mark = ib.pos  # a character read before TLS cannot come back after it
        transport = TLSTransport(stream._sock, sslobj, incoming, outgoing)
        stream._transport = transport
        try:
            done = _drive(stream, transport.handshake_step, deadline_after(timeout))
        except SSLFailure:
            raise
        except OSError as exc:
            raise SSLFailure(f"TLS handshake failed: {exc}") from exc
        if not done:
            assert timeout is not None
            raise SSLHandshakeTimeout(timeout)
        if sslobj.version() in ("TLSv1", "TLSv1.1", "TLSv1.2"):
            # Renegotiation: a writer may have to read, and a reader wait for a writer.
            transport.make_wakeups()
            assert transport.wake_reader
            assert transport.wake_writer
            stream._rpollers[WANT_READ] = make_poller(
                stream._fd, WANT_READ, transport.wake_reader.fd)
            stream._wpollers[WANT_READ] = make_poller(
                stream._fd, WANT_READ, transport.wake_writer.fd)
        if stream._watchers:
            stream._input_arrived()  # the engine may hold input that came with the handshake
    except BaseException:
        stream.close(abort=True)
        raise


def detach_ssl(stream: SocketStream) -> None:
    """End TLS (close-notify both ways) and leave a plain stream.

    Application data that arrives before the peer's close-notify stays readable, and so do the
    bytes that follow it, now as plain input.  Waiting for the peer's close-notify is bounded by
    the stream's ``read_timeout``; if it does not come, ``SSLFailure`` is raised and the stream
    stays as it was (TLS, our close-notify sent).
    """
    stream._check_open()
    transport = stream._transport
    if not isinstance(transport, TLSTransport):
        raise ValueError("the stream has no TLS to detach")
    if stream._direction != "input":
        stream._flush_out()
    if not _drive(stream, transport.close_notify_step, deadline_after(stream._write_timeout)):
        raise SSLFailure("TLS close-notify could not be sent within write_timeout")
    if stream._direction != "output":
        ib = stream._in
        while not transport.peer_closed:
            if stream._fill() == 0 and not transport.peer_closed:
                if stream._timed_out:
                    raise SSLFailure("the peer's TLS close-notify did not come within read_timeout")
                raise SSLFailure("the connection ended before the peer's TLS close-notify")
        # Decrypted before the close-notify and not read yet, then the plain bytes after it.
        ib.feed(transport.take_held())
        with transport._engine:
            leftover = transport.incoming.read()
        ib.feed(leftover)
    else:
        # Output-only: nothing may be handed to the application; just wait for the alert.
        while not transport.peer_closed:
            scratch = memoryview(bytearray(RAW_CHUNK))
            if stream._extract(scratch) == 0 and not transport.peer_closed:
                raise SSLFailure("the peer's TLS close-notify did not come")
    transport.ssl_object = None
    stream._install(stream._sock)
    if stream._watchers:
        stream._input_arrived()


def send_close_notify(stream: SocketStream) -> None:
    """Send our close-notify if TLS is on (for ``close`` and ``shutdown_output``)."""
    transport = stream._transport
    if isinstance(transport, TLSTransport) and not transport.notify_sent:
        try:
            deadline = deadline_after(stream._write_timeout or 5.0)
            _drive(stream, transport.close_notify_step, deadline)
        except SocketError:
            raise
        except OSError as exc:
            raise SocketIOError(f"sending TLS close-notify failed: {exc}") from exc


__all__ = ["RAW_CHUNK", "WANT_READ", "TLSTransport", "attach_ssl", "detach_ssl", "make_ssl_ctx"]

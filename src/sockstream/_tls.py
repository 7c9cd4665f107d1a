"""The TLS engine: an ``ssl.SSLObject`` between two memory BIOs, with the transport's shape.

Theory of operation
===================

OpenSSL never touches the socket (as in trio, anyio, urllib3's ``SSLTransport`` and httpcore).
``TLSTransport`` has the shape of the plain transport -- non-blocking ``recv_into``/``send`` that
answer ``WANT_READ`` or ``WANT_WRITE`` instead of blocking -- so the stream's one I/O loop, its
deadlines and its buffers serve TLS unchanged.  This module knows nothing of streams: ``start``
makes an engine on a socket with the bytes already read ahead; ``handshake_step`` and
``close_notify_step`` are non-blocking steps that the stream drives through its own wait
primitive; ``take_held`` and ``leftover`` hand back what is left when TLS ends.  Starting and
stopping TLS on a stream (STARTTLS) is the stream's own operation (``_stream.py``).

Only ``SSL_read`` may take application data.  ``SSL_write`` in the middle of a TLS 1.2
renegotiation that meets the peer's application data fails (UNEXPECTED_RECORD), and
``SSL_shutdown`` fails on it (APPLICATION_DATA_AFTER_CLOSE_NOTIFY).  So before either runs, what
the engine received is decrypted into ``_held``, which reads serve first (``_drain``).  One retry
helper (``_retry``, trio's ``_retry``, urllib3's ``_ssl_io_loop``) runs the handshake, the
writes and the close-notify: flush what the engine produced, take raw bytes when it wants them,
try again.  Reads have a loop of their own, the hot path: every whole record received is
decrypted at once, so no input hides in the engine where a wait on the socket cannot see it.

Two locks: ``_engine`` guards the SSLObject and its BIOs -- every touch of either, since
OpenSSL runs without the GIL and one thread may read while another writes; ``_wire`` serialises
moving the engine's output to the socket, so records never interleave out of order.  Raw bytes
that the socket would not take yet wait in ``_pending`` and go first next time.  On TLS 1.2
(which can renegotiate) two wake-up descriptors let a writer that took the reader's bytes wake
the reader, and a reader that took the bytes a waiting writer needs wake the writer.

Truncation: a TCP close without close-notify raises ``SSLTruncatedError`` unless the context has
``ssl.OP_IGNORE_UNEXPECTED_EOF`` set (contexts we make have it cleared, as trio and anyio do).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from ._errors import SSLFailure, SSLTruncatedError, SSLVerificationError
from ._wait import WANT_MORE, WANT_READ, WANT_WRITE

T = TypeVar("T")

#: What ``decrypt_into`` answers at the peer's close-notify.
CLOSED: Final = -3
#: Bytes asked of the socket at a time: four maximal TLS records.
RAW_CHUNK: Final = 65536
#: The raw receive buffer: made on the first receive after the handshake, this small (a chatty
#: connection costs little); it doubles whenever a receive fills it, up to ``RAW_MAX`` (one
#: ``recv_into`` per 256 KiB of a bulk transfer, where ``SSLSocket`` makes two ``read(2)`` calls
#: per 16 KiB record), and falls back to ``RAW_MIN`` when a receive uses less than a sixteenth
#: of it (the bulk transfer is over), so an idle stream never keeps a large one.
RAW_MIN: Final = 16384
RAW_MAX: Final = 262144
#: Plaintext handed to the engine at a time, so the outgoing BIO stays small.
WRITE_CHUNK: Final = 65536
#: Protocol versions that can renegotiate.
_RENEGOTIABLE: Final = ("TLSv1", "TLSv1.1", "TLSv1.2")


def describe(exc: BaseException) -> str:
    """A short reason for an ``ssl.SSLError``."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def start(
    sock: Any,
    ctx: ssl.SSLContext,
    server_side: bool,
    server_hostname: str | None,
    read_ahead: bytes,
    session: ssl.SSLSession | None = None,
) -> TLSTransport:
    """A new engine on ``sock``; ``read_ahead``: raw bytes already taken from the socket."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        sslobj = ctx.wrap_bio(
            incoming,
            outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
    except (ssl.SSLError, ValueError) as exc:
        raise SSLFailure(f"cannot start TLS: {exc}") from exc
    if read_ahead:
        incoming.write(read_ahead)
    return TLSTransport(sock, sslobj, incoming, outgoing)


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

    __slots__ = (
        "_engine",
        "_held",
        "_pending",
        "_pending_plain",
        "_raw_view",
        "_read",
        "_reader_woken",
        "_sock_recv_into",
        "_wire",
        "_writer_waiting",
        "_writer_woken",
        "incoming",
        "notify_sent",
        "outgoing",
        "peer_closed",
        "raw_eof",
        "sock",
        "ssl_object",
        "wake_reader",
        "wake_writer",
    )

    def __init__(
        self, sock: Any, sslobj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
    ) -> None:
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
        # The C objects under ssl.py's wrappers, called directly on the read path (one Python
        # frame fewer per record); they raise the same exceptions.
        engine: Any = getattr(sslobj, "_sslobj", sslobj)
        self._read: Callable[..., int] = engine.read
        self._pending_plain: Callable[[], int] = engine.pending
        self._sock_recv_into = sock.recv_into
        self._raw_view: memoryview | None = None
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

    @property
    def wakeups(self) -> tuple[int, int]:
        """The reader's and the writer's wake-up descriptors, or (-1, -1)."""
        if self.wake_reader is None or self.wake_writer is None:
            return -1, -1
        return self.wake_reader.fd, self.wake_writer.fd

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
            raw = self._raw_view
            if raw is None:
                raw = self._raw_view = memoryview(bytearray(RAW_MIN))
            try:
                n = self._sock_recv_into(raw)
            except BlockingIOError:
                return WANT_READ
            if n:
                size = len(raw)
                self.incoming.write(raw[:n] if n < size else raw)
                if n == size and size < RAW_MAX:  # a bulk transfer: receive more at a time
                    self._raw_view = memoryview(bytearray(2 * size))
                elif n < size >> 4 and size > RAW_MIN:
                    self._raw_view = memoryview(bytearray(RAW_MIN))
            else:
                self.raw_eof = True
                self.incoming.write_eof()
            if self._writer_waiting and self.wake_writer:
                self._writer_woken = True
                self.wake_writer.wake()
        return 1

    def _retry(self, op: Callable[[ssl.SSLObject], T], failed: str, drain: bool = True) -> T | int:
        """Run ``op`` on the engine until it completes; its result, or WANT_READ/WANT_WRITE.

        What the engine produces is flushed; when it wants the peer's bytes they are taken from
        the socket (application data among them goes to ``_held`` first, with ``drain``; not in
        the first handshake, which SSL_read would run itself) and ``op`` runs again.
        """
        sslobj = self.ssl_object
        assert sslobj is not None
        while True:
            with self._engine:
                if self._writer_woken and self.wake_writer:
                    self._writer_woken = False
                    self.wake_writer.clear()
                if drain and (self.incoming.pending or sslobj.pending()):
                    self._drain(sslobj)
                try:
                    result = op(sslobj)
                    self._writer_waiting = False
                    done = True
                except ssl.SSLWantReadError:
                    # A renegotiation (TLS 1.2) under way needs the peer's answer, which a
                    # reader on another thread may take first; it then wakes us.
                    self._writer_waiting = True
                    done = False
                except ssl.SSLCertVerificationError as exc:
                    raise SSLVerificationError(exc.verify_code, exc.verify_message) from exc
                except ssl.SSLError as exc:
                    self._writer_waiting = False
                    raise SSLFailure(f"{failed}: {describe(exc)}") from exc
            if done:
                self.flush()  # what the socket won't take yet goes first next time
                return result
            if self.flush() < 0:
                return WANT_WRITE
            if self.raw_eof:
                raise SSLFailure(f"{failed}: the peer closed the connection")
            r = self._receive_raw()
            if r < 0:
                return r

    def decrypt_into(self, view: memoryview) -> int:
        """Decrypt what the engine already holds into ``view``, without the socket.

        Returns a count (0: nothing whole is there yet), or ``WANT_READ`` (-1) when the engine
        needs more bytes from the socket, or ``CLOSED`` (-3) at the peer's close-notify.
        """
        n = 0
        with self._engine:
            if self._reader_woken and self.wake_reader:
                self._reader_woken = False
                self.wake_reader.clear()
            held = self._held
            if held:  # decrypted by a writer or before our close-notify (``_drain``)
                n = min(len(view), len(held))
                view[:n] = held[:n]
                del held[:n]
                return n
            if self.peer_closed:
                return CLOSED  # nothing comes after the peer's close-notify
            incoming = self.incoming
            pending = self._pending_plain
            if not incoming.pending and not pending() and not self.raw_eof:
                return WANT_READ  # nothing in the engine: a read is certain to fail
            read = self._read
            want = len(view)
            try:
                # Decrypt every whole record received, not just one, so that no input hides in
                # the engine where waiting on the socket cannot see it; but skip the read that
                # is certain to fail (an exception through ssl.py costs microseconds).
                while n < want:
                    got = read(want - n, view[n:]) if n else read(want, view)
                    if got == 0:  # CPython's answer after the peer's close-notify
                        self.peer_closed = True
                        return n if n else CLOSED
                    n += got
                    if not incoming.pending and not pending() and not self.raw_eof:
                        break
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
                    raise SSLFailure(f"TLS error while reading: {describe(exc)}") from exc
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
            if self._pending or self.outgoing.pending:
                # What our reads produced (a KeyUpdate answer, a renegotiation message); what
                # the socket won't take waits.  A writer flushes its own records itself.
                self.flush()
            r = self._receive_raw()
            if r < 0:
                return WANT_MORE if took else r
            took = True

    def send(self, view: memoryview) -> int:
        """Encrypt from ``view``: the count of plaintext bytes taken, or WANT_WRITE/WANT_READ."""
        if self.flush() < 0:
            return WANT_WRITE
        chunk = view[:WRITE_CHUNK]
        return self._retry(lambda obj: obj.write(chunk), "TLS error while writing")

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
        """The handshake, as far as it goes now: 0 done (and sent), or WANT_READ/WANT_WRITE."""
        r = self._retry(_do_handshake, "TLS handshake failed", drain=False)
        if r != 0:
            return r
        if self.ssl_object and self.ssl_object.version() in _RENEGOTIABLE:
            self.make_wakeups()
        self._raw_view = None  # an idle stream keeps no receive buffer
        return self.flush()  # done once our last flight is on the wire

    def take_held(self) -> bytes:
        """The decrypted bytes put aside (``_drain``) and not read yet, taken out."""
        with self._engine:
            held = bytes(self._held)
            del self._held[:]
        return held

    def close_notify_step(self) -> int:
        """Queue our close-notify (once) and send it: 0 when it is on the wire."""
        if not self.notify_sent:
            # SSL_shutdown wants the peer's alert too (WANT_READ): ours is queued by then, and
            # the peer's comes through reads.
            r = self._retry(_unwrap, "TLS close-notify failed")
            if r == WANT_WRITE:
                return r
            self.notify_sent = True
        return self.flush()

    def leftover(self) -> bytes:
        """The raw bytes received after the peer's close-notify: the plain stream's start."""
        with self._engine:
            return self.incoming.read()


def _do_handshake(obj: ssl.SSLObject) -> int:
    obj.do_handshake()
    return 0


def _unwrap(obj: ssl.SSLObject) -> int:
    try:
        obj.unwrap()
    except ssl.SSLWantReadError:
        pass  # our alert is queued; the peer's comes later
    return 0


__all__ = ["CLOSED", "RAW_CHUNK", "TLSTransport", "describe", "start"]

"""The transport seam: what the stream's buffers talk to instead of the socket.

A transport moves bytes between the stream's buffers and the OS socket **without ever blocking**:
``recv_into`` and ``send`` return a count (``0`` from ``recv_into`` is end-of-file), or
``WANT_READ``/``WANT_WRITE`` when the socket has to become readable or writable first.  The
stream's single I/O loop does the waiting, under its deadlines.  The plain transport below is a
thin shim over a non-blocking socket; the TLS transport (``_tls.py``) has the same shape, so the
stream can swap one for the other at run time (STARTTLS on and off) while its buffers stay put.

The plain transport keeps its socket in *blocking* mode at the OS level where ``MSG_DONTWAIT``
exists (Linux, the BSDs, macOS) and passes that flag on every ``recv_into`` and ``send``, so they
never block; it adds ``recv_wait``, one receive that blocks until input, end-of-file or
``SO_RCVTIMEO``: a read that must wait costs one system call, which releases the GIL, instead
of a ``poll`` and then a ``recv`` (as ``socketserver``'s ``rfile.readline`` does).  The stream
uses it only outside the main thread (where no signal handler can raise out of the receive,
see ``SocketStream._extract``).  The TLS transport wants a non-blocking socket; the stream
switches the mode when TLS starts and stops.
"""

from __future__ import annotations

import math
import socket as _socket
import ssl
import struct
from typing import Final, Protocol

from ._errors import SocketIOError
from ._wait import MAX_WAIT, WANT_READ, WANT_WRITE

#: The flag that makes one receive or send non-blocking on a blocking socket (0: none here).
MSG_DONTWAIT: Final = getattr(_socket, "MSG_DONTWAIT", 0)
_TIMEVAL: Final = struct.Struct("@ll")
_UNKNOWN: Final = -1.0  # SO_RCVTIMEO as we found it: not known, set it before relying on it


class Transport(Protocol):
    """What the stream needs of a transport."""

    @property
    def ssl_object(self) -> ssl.SSLObject | None: ...

    def recv_into(self, view: memoryview) -> int: ...

    def send(self, view: memoryview) -> int: ...

    def flush(self) -> int: ...

    def has_decrypted(self) -> bool: ...

    def decrypt_into(self, view: memoryview) -> int: ...

    def close(self) -> None: ...


class PlainTransport:
    """Bytes straight to and from the socket, never blocking but in ``recv_wait``.

    ``can_block``: the socket is in blocking mode and ``recv_wait`` may be used.
    """

    __slots__ = ("_rcvtimeo", "_recv_into", "_send", "can_block", "sock")

    ssl_object: None = None

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.can_block = MSG_DONTWAIT != 0
        sock.setblocking(self.can_block)
        self._recv_into = sock.recv_into
        self._send = sock.send
        self._rcvtimeo: float | None = _UNKNOWN

    def recv_into(self, view: memoryview) -> int:
        """Receive into ``view``: a count, 0 at end-of-file, or WANT_READ."""
        try:
            return self._recv_into(view, 0, MSG_DONTWAIT)
        except BlockingIOError:
            return WANT_READ

    def recv_wait(self, view: memoryview, timeout: float | None) -> int:
        """Receive into ``view``, waiting up to ``timeout`` seconds (None: no limit) in the
        receive itself: a count, 0 at end-of-file, or WANT_READ if the time passed first.

        Only when ``can_block`` and ``timeout`` is at most ``MAX_WAIT``.  A signal whose handler
        returns restarts the receive with the whole timeout (CPython retries it, PEP 475).
        """
        if timeout != self._rcvtimeo:
            self._set_rcvtimeo(timeout)
        try:
            return self._recv_into(view)
        except BlockingIOError:  # SO_RCVTIMEO passed
            return WANT_READ

    def _set_rcvtimeo(self, timeout: float | None) -> None:
        sock = self.sock
        if self._rcvtimeo == _UNKNOWN and _has_rcvtimeo(sock, timeout):
            self._rcvtimeo = timeout  # already there (preset_rcvtimeo): nothing to set
            return
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _timeval(timeout))
        self._rcvtimeo = timeout

    def send(self, view: memoryview) -> int:
        """Send from ``view``: a count, or WANT_WRITE."""
        try:
            return self._send(view, MSG_DONTWAIT)
        except BlockingIOError:
            return WANT_WRITE

    def flush(self) -> int:
        """Nothing is ever held back here."""
        return 0

    def has_decrypted(self) -> bool:
        return False

    def decrypt_into(self, view: memoryview) -> int:
        """Only a TLS transport holds bytes of its own."""
        return 0

    def close(self) -> None:
        """The socket is the stream's to close; one handed back has no receive timeout left."""
        if self._rcvtimeo is not None and self._rcvtimeo != _UNKNOWN and self.sock.fileno() >= 0:
            try:
                self._set_rcvtimeo(None)
            except OSError:
                pass


def _timeval(timeout: float | None) -> bytes:
    """``SO_RCVTIMEO``'s value for ``timeout`` (None: no limit; at most ``MAX_WAIT``)."""
    if timeout is None:
        return _TIMEVAL.pack(0, 0)
    assert timeout <= MAX_WAIT
    # Whole microseconds, rounded up and at least one (0 would mean no limit).
    return _TIMEVAL.pack(*divmod(max(1, math.ceil(timeout * 1e6)), 1_000_000))


def _has_rcvtimeo(sock: _socket.socket, timeout: float | None) -> bool:
    """True if ``sock``'s ``SO_RCVTIMEO`` is what setting it for ``timeout`` would give (the
    kernel keeps it in clock ticks, so up to one tick, at most 10 ms, more)."""
    try:
        sec, usec = _TIMEVAL.unpack(
            sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _TIMEVAL.size)
        )
    except OSError:
        return False
    got = float(sec + usec / 1e6)
    if timeout is None:
        return got == 0
    return timeout <= got <= timeout + 0.01


def preset_rcvtimeo(sock: _socket.socket, timeout: float | None) -> None:
    """Give ``sock`` now the ``SO_RCVTIMEO`` that a plain stream with ``read_timeout=timeout``
    will want (``serve``'s accept loop, for the connection's thread).

    The stream's thread then finds it there (one ``getsockopt``) instead of setting it, which
    the first time a thread does it costs the thread a page of stack (CPython's ``setsockopt``
    first tries two other argument forms, and the failed parse runs deep): 4 KiB per connection.
    """
    if not MSG_DONTWAIT or timeout is None or timeout > MAX_WAIT:
        return
    try:
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVTIMEO, _timeval(timeout))
    except OSError:  # gone already: the stream will find out
        pass


class NoTransport:
    """The stream has no socket (``stream.socket = None``): reads see end-of-file."""

    __slots__ = ()

    ssl_object: None = None

    def recv_into(self, view: memoryview) -> int:
        return 0

    def send(self, view: memoryview) -> int:
        raise SocketIOError("the stream has no socket to write to")

    def flush(self) -> int:
        return 0

    def has_decrypted(self) -> bool:
        return False

    def decrypt_into(self, view: memoryview) -> int:
        return 0

    def close(self) -> None:
        pass

"""The transport seam: what the stream's buffers talk to instead of the socket.

A transport moves bytes between the stream's buffers and the OS socket **without ever blocking**:
``recv_into`` and ``send`` return a count (``0`` from ``recv_into`` is end-of-file), or
``WANT_READ``/``WANT_WRITE`` when the socket has to become readable or writable first.  The
stream's single I/O loop does the waiting, under its deadlines.  The plain transport below is a
thin shim over a non-blocking socket; the TLS transport (``_tls.py``) has the same shape, so the
stream can swap one for the other at run time (STARTTLS on and off) while its buffers stay put.
"""

from __future__ import annotations

import socket as _socket
import ssl
from typing import Protocol

from ._errors import SocketIOError
from ._wait import WANT_READ, WANT_WRITE


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
    """Bytes straight to and from a non-blocking socket."""

    __slots__ = ("_recv_into", "_send", "sock")

    ssl_object: None = None

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self._recv_into = sock.recv_into
        self._send = sock.send

    def recv_into(self, view: memoryview) -> int:
        """Receive into ``view``: a count, 0 at end-of-file, or WANT_READ."""
        try:
            return self._recv_into(view)
        except BlockingIOError:
            return WANT_READ

    def send(self, view: memoryview) -> int:
        """Send from ``view``: a count, or WANT_WRITE."""
        try:
            return self._send(view)
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
        """The socket is the stream's to close."""


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

"""The exception hierarchy of sockstream.

One root, ``SocketError(OSError)``, so ``except OSError`` still catches everything a socket can
do to you; builtins are mixed in where callers expect them (``WriteTimeoutError`` is also a
``TimeoutError``; a handshake timeout is an ``SSLFailure`` that is also a ``TimeoutError``;
``LineTooLongError`` is a ``ValueError``).  Errors carry their facts as attributes and build their
message from them, and they pickle with those attributes.

LispWorks conditions -> Python:
    socket-error        SocketError
    socket-create-error SocketCreateError
    socket-io-error     SocketIOError
    ssl-failure         SSLFailure
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LineTooLongError",
    "SSLFailure",
    "SSLHandshakeTimeout",
    "SSLTruncatedError",
    "SSLVerificationError",
    "SocketCreateError",
    "SocketError",
    "SocketIOError",
    "WriteTimeoutError",
]


class SocketError(OSError):
    """Base of the package's own errors."""


class SocketCreateError(SocketError):
    """A socket could not be created, connected or made to listen."""


class SocketIOError(SocketError):
    """Input or output failed on an open stream (reset by the peer, broken pipe, ...)."""


class WriteTimeoutError(SocketIOError, TimeoutError):
    """Flushing the output buffer took longer than the stream's ``write_timeout``.

    What was not sent stays buffered; a later flush continues from there.
    """

    def __init__(self, timeout: float, bytes_written: int, pending: int) -> None:
        self.timeout = timeout
        self.bytes_written = bytes_written
        self.pending = pending
        super().__init__(
            f"write timed out after {timeout:g} s: {bytes_written} bytes sent by this flush, "
            f"{pending} still buffered"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.timeout, self.bytes_written, self.pending))


class SSLFailure(SocketError):
    """TLS could not be set up: bad configuration, a failed or refused handshake."""


class SSLHandshakeTimeout(SSLFailure, TimeoutError):
    """The TLS handshake did not finish within ``handshake_timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(f"TLS handshake did not finish within {timeout:g} s")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.timeout,))


class SSLVerificationError(SSLFailure):
    """The peer's certificate failed verification (expired, wrong host, unknown CA, ...).

    ``verify_code`` and ``verify_message`` are OpenSSL's, as in
    ``ssl.SSLCertVerificationError``.
    """

    def __init__(self, verify_code: int, verify_message: str) -> None:
        self.verify_code = verify_code
        self.verify_message = verify_message
        super().__init__(
            f"TLS handshake failed: certificate verification failed: {verify_message} "
            f"(verify code {verify_code})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.verify_code, self.verify_message))


class SSLTruncatedError(SSLFailure, SocketIOError):
    """The TLS peer closed the TCP connection without sending close-notify.

    An attacker who can cut the connection could otherwise make a truncated message look
    complete.  Opt out by setting ``ssl.OP_IGNORE_UNEXPECTED_EOF`` on the context (for example in
    ``ctx_configure_callback``): truncation then reads as an ordinary end-of-file.
    """


class LineTooLongError(ValueError):
    """A line is longer than the stream's ``max_line_length``; nothing was consumed."""

    def __init__(self, max_line_length: int, buffered: int) -> None:
        self.max_line_length = max_line_length
        self.buffered = buffered
        super().__init__(
            f"line longer than max_line_length={max_line_length} "
            f"({buffered} bytes at least); nothing was consumed"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.max_line_length, self.buffered))

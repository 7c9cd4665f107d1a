"""The stream keywords, validated once.  Pure.

``SocketStream``, ``open_tcp_stream``, ``serve`` and ``attach_ssl`` all take the same keywords
(API.md's ``SocketStream`` signature).  They are checked here, in one place, into a small frozen
``StreamOptions``; whoever builds one passes it on, and nothing downstream checks again.  A bad
value raises before anything is opened or changed, with "``<param>`` must be ..., not <repr>".
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, final

from ._elements import ElementType, check_direction, check_element_type
from ._text import check_encoding, check_errors, check_newline
from ._wait import check_timeout

_SIDES: Final = ("client", "server", "both")


def check_ssl_side(value: object) -> str:
    """The canonical TLS side (``"client"``, ``"server"``, ``"both"``; a leading colon is fine)."""
    if isinstance(value, str) and value.lstrip(":").lower() in _SIDES:
        return value.lstrip(":").lower()
    raise ValueError(f"ssl_side must be 'client', 'server' or 'both', not {value!r}")


def check_ssl_ctx(value: object) -> Any:
    """``None`` (also for ``False``: no TLS), ``True``, a protocol keyword string or a context.

    Whether a keyword string names a protocol is decided where the context is made.
    """
    if value is None or value is False:
        return None
    if value is True or isinstance(value, (str, ssl.SSLContext)):
        return value
    raise TypeError(
        f"ssl_ctx must be None, True, a protocol keyword string or an ssl.SSLContext, not {value!r}"
    )


def check_host_name(value: object) -> str | None:
    """``tlsext_host_name``: ``None`` or a ``str``."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"tlsext_host_name must be a str or None, not {value!r}")
    return value


def check_alpn(value: object) -> tuple[str, ...] | None:
    """``alpn_protocols``: ``None`` or a non-empty list of protocol names (1 to 255 bytes)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"alpn_protocols must be None or a list of protocol names, not {value!r}")
    names = tuple(value)
    if not names:
        raise ValueError("alpn_protocols must not be empty (None offers no ALPN)")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name.encode("utf-8", "replace")) < 256:
            raise ValueError(
                f"alpn_protocols must hold protocol names of 1 to 255 bytes, not {name!r}"
            )
    return names


def check_session(value: object) -> ssl.SSLSession | None:
    """``ssl_session``: ``None`` or an ``ssl.SSLSession`` (from ``stream.ssl_session``)."""
    if value is not None and not isinstance(value, ssl.SSLSession):
        raise TypeError(f"ssl_session must be None or an ssl.SSLSession, not {value!r}")
    return value


def check_callback(value: object, name: str) -> Any:
    """``None`` or a callable."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be None or callable, not {value!r}")
    return value


def check_max_line_length(value: object) -> int | None:
    """A line-length limit: ``None`` or a positive int."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max_line_length must be None or a positive int, not {value!r}")
    return value


@final
@dataclass(frozen=True)
class TLSOptions:
    """How to start TLS on a stream (the TLS keywords of ``SocketStream`` and ``attach_ssl``)."""

    ssl_ctx: Any = True
    ssl_side: str = "server"
    ctx_configure_callback: Callable[[ssl.SSLContext], object] | None = None
    ssl_configure_callback: Callable[[Any], object] | None = None
    handshake_timeout: float | None = None
    tlsext_host_name: str | None = None
    alpn_protocols: tuple[str, ...] | None = None
    ssl_session: ssl.SSLSession | None = None

    @classmethod
    def make(
        cls,
        *,
        ssl_ctx: Any = True,
        ssl_side: str = "server",
        ctx_configure_callback: Any = None,
        ssl_configure_callback: Any = None,
        handshake_timeout: object = None,
        tlsext_host_name: object = None,
        alpn_protocols: object = None,
        ssl_session: object = None,
    ) -> TLSOptions:
        """Validate the TLS keywords (``ssl_ctx`` must ask for TLS here)."""
        ctx = check_ssl_ctx(ssl_ctx)
        if ctx is None:
            raise TypeError(f"ssl_ctx must ask for TLS here, not {ssl_ctx!r}")
        return cls(
            ctx,
            check_ssl_side(ssl_side),
            check_callback(ctx_configure_callback, "ctx_configure_callback"),
            check_callback(ssl_configure_callback, "ssl_configure_callback"),
            check_timeout(handshake_timeout, "handshake_timeout"),
            check_host_name(tlsext_host_name),
            check_alpn(alpn_protocols),
            check_session(ssl_session),
        )


@final
@dataclass(frozen=True)
class StreamOptions:
    """Every stream keyword, checked: what a ``SocketStream`` is made with."""

    direction: str = "io"
    element_type: ElementType = "base-char"
    read_timeout: float | None = None
    write_timeout: float | None = None
    #: ``None``: no TLS.
    tls: TLSOptions | None = None
    max_line_length: int | None = None
    #: Text: the codec and error handler of every character operation, the line terminator.
    encoding: str = "latin-1"
    errors: str = "strict"
    newline: str | None = "\n"

    @classmethod
    def make(
        cls,
        *,
        direction: object = "io",
        element_type: object = "base-char",
        read_timeout: object = None,
        write_timeout: object = None,
        ssl_ctx: Any = None,
        ssl_side: object = "server",
        ctx_configure_callback: Any = None,
        ssl_configure_callback: Any = None,
        handshake_timeout: object = None,
        tlsext_host_name: object = None,
        max_line_length: object = None,
        encoding: object = "latin-1",
        errors: object = "strict",
        newline: object = "\n",
        alpn_protocols: object = None,
        ssl_session: object = None,
    ) -> StreamOptions:
        """Validate the keywords of API.md's ``SocketStream`` signature, all of them.

        The TLS keywords are checked even without ``ssl_ctx``, so a typo never goes unseen.
        """
        direction = check_direction(direction)
        element = check_element_type(element_type)
        rt = check_timeout(read_timeout, "read_timeout")
        wt = check_timeout(write_timeout, "write_timeout")
        side = check_ssl_side(ssl_side)
        ht = check_timeout(handshake_timeout, "handshake_timeout")
        host = check_host_name(tlsext_host_name)
        ccb = check_callback(ctx_configure_callback, "ctx_configure_callback")
        scb = check_callback(ssl_configure_callback, "ssl_configure_callback")
        ctx = check_ssl_ctx(ssl_ctx)
        mll = check_max_line_length(max_line_length)
        alpn = check_alpn(alpn_protocols)
        session = check_session(ssl_session)
        tls = None if ctx is None else TLSOptions(ctx, side, ccb, scb, ht, host, alpn, session)
        enc = check_encoding(encoding)
        err = check_errors(errors)
        nl = check_newline(newline)
        return cls(direction, element, rt, wt, tls, mll, enc, err, nl)


__all__ = [
    "StreamOptions",
    "TLSOptions",
    "check_alpn",
    "check_host_name",
    "check_max_line_length",
    "check_session",
    "check_ssl_ctx",
    "check_ssl_side",
]

"""TLS contexts: the ones sockstream makes, the ones it shares, and the caller's own.

A context made for ``ssl_ctx=True`` or a protocol keyword accepts TLS 1.2 or newer, clears
``OP_IGNORE_UNEXPECTED_EOF`` (so a truncation is an error, as in trio and anyio) and honours
``SSLKEYLOGFILE`` on both sides (``ssl.create_default_context`` does it only for clients).

Sharing: without a ``ctx_configure_callback``, such a context is made once per (keyword, side,
ALPN list, and the environment it reads: ``SSLKEYLOGFILE``, ``SSL_CERT_FILE``,
``SSL_CERT_DIR``) and shared by every stream that asks for it, so that its session cache and ticket
keys let a later connection resume an earlier one's session.  Sharing these costs nothing in
security: they hold no certificate or trust of the caller's, and every stream that uses one would
have made an identical one.  A context given to ``ctx_configure_callback`` is the caller's to
change and is never shared; neither is ``make_ssl_ctx``'s result.  A caller's own
``ssl.SSLContext`` is used as it is, except that ``alpn_protocols`` is set on it (Python keeps
ALPN on the context).
"""

from __future__ import annotations

import os
import ssl
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, Final

from ._options import check_ssl_side

_MIN_VERSION: Final = {
    "default": ssl.TLSVersion.TLSv1_2,
    "v23": ssl.TLSVersion.TLSv1_2,
    "tls-v1-2": ssl.TLSVersion.TLSv1_2,
    "tls-v1-3": ssl.TLSVersion.TLSv1_3,
}
_INSECURE: Final = ("v2", "v3", "tls-v1", "tls-v1-1")

#: What a context made here reads from the environment when it is made (the trust store
#: paths through ``load_default_certs``, the key log file): part of a shared context's key.
_ENVIRONMENT: Final = ("SSLKEYLOGFILE", "SSL_CERT_FILE", "SSL_CERT_DIR")

_shared: dict[
    tuple[str, str, tuple[str, ...] | None], tuple[tuple[str | None, ...], ssl.SSLContext]
] = {}
_shared_lock = threading.Lock()


def keyword(ssl_ctx: object) -> str:
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


def _keylog(ctx: ssl.SSLContext) -> None:
    """Honour SSLKEYLOGFILE as ``ssl.create_default_context`` does, on every side."""
    if sys.flags.ignore_environment:
        return
    path = os.environ.get("SSLKEYLOGFILE")
    if path and hasattr(ctx, "keylog_filename"):
        ctx.keylog_filename = path


def make_ssl_ctx(ssl_ctx: bool | str = True, ssl_side: str = "server") -> ssl.SSLContext:
    """Make a new context of the kind ``ssl_side`` asks for, accepting TLS 1.2 or newer.

    A client context verifies the peer's certificate (system trust store) and host name.  A
    server context needs a certificate loaded before use (``load_cert_chain``).  Every call
    makes a new context, the caller's to change.
    """
    side = check_ssl_side(ssl_side)
    key = keyword(ssl_ctx)
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
    _keylog(ctx)
    return ctx


def stream_context(
    ssl_ctx: Any,
    side: str,
    ctx_configure_callback: Callable[[ssl.SSLContext], Any] | None,
    alpn_protocols: tuple[str, ...] | None,
) -> ssl.SSLContext:
    """The context a stream uses for ``ssl_ctx`` (checked: a context, True or a keyword)."""
    if isinstance(ssl_ctx, ssl.SSLContext):
        if alpn_protocols is not None:
            ssl_ctx.set_alpn_protocols(list(alpn_protocols))
        return ssl_ctx
    key = keyword(ssl_ctx)
    if ctx_configure_callback is not None:
        ctx = make_ssl_ctx(key, side)
        if alpn_protocols is not None:
            ctx.set_alpn_protocols(list(alpn_protocols))
        ctx_configure_callback(ctx)
        return ctx
    env = tuple(os.environ.get(name) for name in _ENVIRONMENT)
    with _shared_lock:
        made = _shared.get((key, side, alpn_protocols))
        if made is None or made[0] != env:
            # New, or the environment changed: a new context replaces the old one, which goes
            # (with its key-log file) when the last stream using it does.
            ctx = make_ssl_ctx(key, side)
            if alpn_protocols is not None:
                ctx.set_alpn_protocols(list(alpn_protocols))
            made = _shared[(key, side, alpn_protocols)] = (env, ctx)
    return made[1]


__all__ = ["keyword", "make_ssl_ctx", "stream_context"]

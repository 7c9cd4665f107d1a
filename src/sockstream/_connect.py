"""open_tcp_stream: connect to a host and service and return a SocketStream.

Goals
    LispWorks' ``open-tcp-stream`` with every keyword: host names, address strings and integer
    IPv4 addresses; service names and port numbers; IPv4, IPv6 or both; a local address and port;
    ``nodelay`` and ``keepalive``; ``errorp``; and TLS on the client side.

Plan
    1. Validate every argument before touching the network ("nothing changed" on bad input).
    2. Resolve the service (``socket.getservbyname`` for a name) and the host (``getaddrinfo``).
    3. Connect with happy eyeballs (RFC 8305): the addresses are interleaved by family (§4), one
       attempt starts every ``CONNECTION_ATTEMPT_DELAY`` seconds (§5) or as soon as the previous
       one failed, the first connection to succeed wins and the others are closed.  All attempts
       are non-blocking sockets on one selector in the calling thread: no thread per attempt.
    4. Hand the connected socket to ``SocketStream``, which starts TLS if asked to.  When the
       constructor raises it closes the socket itself, so nothing is closed twice here.

Timeout
    ``timeout`` is one budget for the whole call (CPython #123793: a per-address timeout
    multiplies with the number of addresses): name resolution, every connection attempt, and the
    TLS handshake unless ``handshake_timeout`` is given.  ``getaddrinfo`` cannot be interrupted,
    so when a budget is set and the host is a name it runs in a helper thread that we stop
    waiting for when the budget is spent (the thread ends on its own when the resolver returns).

errorp
    ``errorp=False`` returns ``None`` for every failure to open the stream: resolution,
    connection, and TLS setup or handshake (all ``OSError``, in practice ``SocketError``); the
    reason is logged at debug level on the ``sockstream`` logger.  Bad arguments (``TypeError``,
    ``ValueError``) always raise: they are bugs, not network conditions.

Local port
    With a fixed ``local_port``, two concurrent attempts would collide on the same local
    address, so attempts are made one after the other (the next starts when one fails).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final, Literal, overload

from ._errors import SocketCreateError
from ._options import StreamOptions
from ._stream import SocketStream
from ._wait import check_timeout, clamp_wait, monotonic, select_ready

__all__ = ["CONNECTION_ATTEMPT_DELAY", "open_tcp_stream", "open_unix_stream"]

_log = logging.getLogger("sockstream")

#: RFC 8305 §5: "the recommended value for the Connection Attempt Delay is 250 ms".
CONNECTION_ATTEMPT_DELAY: Final = 0.25

IPv6Choice = bool | None | Literal["any"]
SSLCtxSpec = bool | str | ssl.SSLContext | None

_Target = tuple[int, Any]  # (address family, socket address)

# connect_ex on a non-blocking socket: the attempt is under way.
_IN_PROGRESS: Final = frozenset(
    {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}
)


# ---- argument checks ------------------------------------------------------------------------


def _check_family(ipv6: object) -> int:
    """Map LispWorks' ``ipv6`` (nil / t / :any) to an address family."""
    if ipv6 is None or ipv6 is False:
        return socket.AF_INET
    if ipv6 is True:
        return socket.AF_INET6
    if ipv6 == "any":
        return socket.AF_UNSPEC
    raise ValueError(f"ipv6 must be False, None, True or 'any', not {ipv6!r}")


def _check_port(value: object, name: str, *, allow_zero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {value!r}")
    lo = 0 if allow_zero else 1
    if not lo <= value <= 65535:
        raise ValueError(f"{name} must be a port number in {lo}..65535, not {value!r}")
    return value


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


def resolve_service(service: object, *, allow_zero: bool = False) -> int:
    """Return the port number of ``service``: an int, a string of digits, or a service name.

    A name is looked up in the services database (``/etc/services``) for TCP; an unknown name is
    a ``SocketCreateError`` (like an unknown host), a value of the wrong type or range a
    ``TypeError``/``ValueError``.
    """
    if isinstance(service, str):
        text = service.strip()
        if text.isdigit():
            return _check_port(int(text), "service", allow_zero=allow_zero)
        if not text:
            raise ValueError(f"service must be a port number or a service name, not {service!r}")
        try:
            return socket.getservbyname(text, "tcp")
        except OSError as exc:
            raise SocketCreateError(f"unknown TCP service name {service!r}") from exc
    if isinstance(service, bool) or not isinstance(service, int):
        raise TypeError(f"service must be a port number or a service name, not {service!r}")
    return _check_port(service, "service", allow_zero=allow_zero)


def host_string(hostspec: object) -> str:
    """The host as a string: a name or address string as given, an int as dotted IPv4."""
    if isinstance(hostspec, str):
        if not hostspec:
            raise ValueError("hostspec must be a host name or address, not ''")
        return hostspec
    if isinstance(hostspec, bool) or not isinstance(hostspec, int):
        raise TypeError(f"hostspec must be a str or an int IPv4 address, not {hostspec!r}")
    if not 0 <= hostspec <= 0xFFFFFFFF:
        raise ValueError(f"hostspec as an int must be an IPv4 address (0..2**32-1), not {hostspec}")
    return str(ipaddress.IPv4Address(hostspec))


def is_ip_literal(host: str) -> bool:
    """True when ``host`` is an IPv4 or IPv6 address (with an optional ``%scope``), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# ---- resolution -----------------------------------------------------------------------------


def _getaddrinfo(host: str, port: int, family: int, deadline: float | None) -> list[_Target]:
    """Resolve ``host``; a name is resolved in a helper thread when a deadline is set."""
    flags = socket.AI_NUMERICHOST if is_ip_literal(host) else 0

    def lookup() -> list[_Target]:
        infos = socket.getaddrinfo(
            host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, flags
        )
        return [(fam, addr) for fam, _, _, _, addr in infos]

    if deadline is None or flags:
        return lookup()
    result: list[list[_Target]] = []
    failure: list[OSError] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(lookup())
        except OSError as exc:
            failure.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run, name=f"sockstream resolve {host}", daemon=True)
    thread.start()
    while not done.wait(clamp_wait(max(0.0, deadline - monotonic()))):
        if monotonic() >= deadline:
            raise TimeoutError(f"name resolution of {host!r} did not finish in time")
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def reorder_for_rfc_8305_section_4(targets: Sequence[_Target]) -> list[_Target]:
    """Interleave address families, starting with the family of the first address (RFC 8305 §4)."""
    if not targets:
        return []
    first = targets[0][0]
    preferred = [t for t in targets if t[0] == first]
    others = [t for t in targets if t[0] != first]
    out: list[_Target] = []
    for i in range(max(len(preferred), len(others))):
        out.extend(group[i] for group in (preferred, others) if i < len(group))
    return out


# ---- happy eyeballs -------------------------------------------------------------------------


def _start_attempt(
    target: _Target, local: tuple[str | None, int]
) -> tuple[socket.socket | None, bool]:
    """Start a non-blocking connect; returns (socket, connected_already). Raises OSError."""
    family, sockaddr = target
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        local_address, local_port = local
        if local_address is not None or local_port:
            wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
            sock.bind((local_address or wildcard, local_port))
        rc = sock.connect_ex(sockaddr)
        if rc == 0:
            return sock, True
        if rc in _IN_PROGRESS:
            return sock, False
        raise OSError(rc, os.strerror(rc))
    except BaseException:
        sock.close()
        raise


def _format_addr(sockaddr: Any) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def happy_eyeballs_connect(
    targets: Sequence[_Target],
    deadline: float | None,
    local: tuple[str | None, int] = (None, 0),
    delay: float = CONNECTION_ATTEMPT_DELAY,
) -> tuple[socket.socket | None, list[tuple[Any, OSError]]]:
    """Connect to the first target that accepts, RFC 8305 style.

    Returns ``(socket, errors)``: the connected (blocking) socket or ``None``, and the error of
    every attempt that failed, as ``(sockaddr, error)``.  A spent ``deadline`` adds a
    ``TimeoutError`` for each attempt still under way.  Every losing socket is closed.
    """
    errors: list[tuple[Any, OSError]] = []
    winner: socket.socket | None = None
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, Any] = {}
    next_index = 0
    next_start = monotonic()
    timed_out = False
    try:
        while winner is None:
            now = monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if next_index < len(targets) and (not pending or now >= next_start):
                target = targets[next_index]
                next_index += 1
                try:
                    sock, connected = _start_attempt(target, local)
                except OSError as exc:
                    errors.append((target[1], exc))
                    continue
                assert sock is not None
                if connected:
                    winner = sock
                    break
                pending[sock] = target[1]
                sel.register(sock, selectors.EVENT_WRITE)
                next_start = now + delay
                continue
            if not pending:
                break  # every address failed
            wake_at = math.inf if deadline is None else deadline
            if next_index < len(targets):
                wake_at = min(wake_at, next_start)
            timeout = None if math.isinf(wake_at) else max(0.0, wake_at - now)
            for key, _ in select_ready(sel, clamp_wait(timeout)):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sockaddr = pending.pop(ready)
                sel.unregister(ready)
                err = ready.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0 and winner is None:
                    winner = ready
                    continue
                ready.close()
                if err:
                    errors.append((sockaddr, OSError(err, os.strerror(err))))
                    next_start = monotonic()  # RFC 8305 §5: a failure starts the next at once
        if winner is None:
            errors.extend(
                (sockaddr, TimeoutError(errno.ETIMEDOUT, "connect timed out"))
                for sockaddr in pending.values()
            )
            if timed_out and not pending and next_index < len(targets):
                untried = targets[next_index][1]
                errors.append((untried, TimeoutError(errno.ETIMEDOUT, "not tried: timed out")))
    finally:
        for sock in pending:
            if sock is not winner:
                sock.close()
        sel.close()
    if winner is not None:
        winner.setblocking(True)
    return winner, errors


def _connect_error(host: str, port: int, errors: list[tuple[Any, OSError]]) -> SocketCreateError:
    """One SocketCreateError naming the host, the port and every attempt's error."""
    detail = "; ".join(f"{_format_addr(addr)}: {exc}" for addr, exc in errors) or "no address"
    codes = {exc.errno for _, exc in errors}
    message = f"could not connect to {host!r} port {port}: {detail}"
    error = (
        SocketCreateError(codes.pop(), message)
        if len(codes) == 1 and None not in codes
        else SocketCreateError(message)
    )
    error.host = host  # type: ignore[attr-defined]
    error.port = port  # type: ignore[attr-defined]
    error.errors = [exc for _, exc in errors]  # type: ignore[attr-defined]
    return error


def _set_options(sock: socket.socket, nodelay: bool, keepalive: bool) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(keepalive))


# ---- the public function --------------------------------------------------------------------


@overload
def open_tcp_stream(
    hostspec: str | int,
    service: int | str,
    *,
    direction: str = ...,
    element_type: str = ...,
    errorp: Literal[True] = ...,
    read_timeout: float | None = ...,
    write_timeout: float | None = ...,
    timeout: float | None = ...,
    ssl_ctx: SSLCtxSpec = ...,
    ssl_side: str = ...,
    ctx_configure_callback: Callable[[ssl.SSLContext], object] | None = ...,
    ssl_configure_callback: Callable[[Any], object] | None = ...,
    handshake_timeout: float | None = ...,
    tlsext_host_name: str | None = ...,
    alpn_protocols: Sequence[str] | None = ...,
    ssl_session: ssl.SSLSession | None = ...,
    local_address: str | None = ...,
    local_port: int | None = ...,
    ipv6: IPv6Choice = ...,
    nodelay: bool = ...,
    keepalive: bool = ...,
    max_line_length: int | None = ...,
    encoding: str = ...,
    errors: str = ...,
    newline: str | None = ...,
) -> SocketStream: ...


@overload
def open_tcp_stream(
    hostspec: str | int,
    service: int | str,
    *,
    direction: str = ...,
    element_type: str = ...,
    errorp: bool,
    read_timeout: float | None = ...,
    write_timeout: float | None = ...,
    timeout: float | None = ...,
    ssl_ctx: SSLCtxSpec = ...,
    ssl_side: str = ...,
    ctx_configure_callback: Callable[[ssl.SSLContext], object] | None = ...,
    ssl_configure_callback: Callable[[Any], object] | None = ...,
    handshake_timeout: float | None = ...,
    tlsext_host_name: str | None = ...,
    alpn_protocols: Sequence[str] | None = ...,
    ssl_session: ssl.SSLSession | None = ...,
    local_address: str | None = ...,
    local_port: int | None = ...,
    ipv6: IPv6Choice = ...,
    nodelay: bool = ...,
    keepalive: bool = ...,
    max_line_length: int | None = ...,
    encoding: str = ...,
    errors: str = ...,
    newline: str | None = ...,
) -> SocketStream | None: ...


def open_tcp_stream(
    hostspec: str | int,
    service: int | str,
    *,
    direction: str = "io",
    element_type: str = "base-char",
    errorp: bool = True,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    timeout: float | None = None,
    ssl_ctx: SSLCtxSpec = None,
    ssl_side: str = "client",
    ctx_configure_callback: Callable[[ssl.SSLContext], object] | None = None,
    ssl_configure_callback: Callable[[Any], object] | None = None,
    handshake_timeout: float | None = None,
    tlsext_host_name: str | None = None,
    alpn_protocols: Sequence[str] | None = None,
    ssl_session: ssl.SSLSession | None = None,
    local_address: str | None = None,
    local_port: int | None = None,
    ipv6: IPv6Choice = "any",
    nodelay: bool = True,
    keepalive: bool = False,
    max_line_length: int | None = None,
    encoding: str = "latin-1",
    errors: str = "strict",
    newline: str | None = "\n",
) -> SocketStream | None:
    """Connect to ``hostspec``:``service`` and return a :class:`SocketStream` on the connection.

    ``hostspec`` is a host name, an address string or an int IPv4 address; ``service`` a port
    number, a string of digits or a service name (``"http"``).  ``timeout`` bounds the whole
    call, every address included; addresses are tried RFC 8305 style (happy eyeballs).  With
    ``ssl_ctx`` the stream is a TLS client; ``tlsext_host_name`` (SNI and the name the
    certificate is checked against) defaults to ``hostspec`` as a string.

    Raises:
        SocketCreateError: the host or service cannot be resolved or no address accepts.
        SSLFailure: TLS setup or the handshake failed.
        TypeError, ValueError: a bad argument (nothing was opened).
    With ``errorp=False`` every failure but a bad argument returns ``None`` instead.
    """
    # 1. Validate everything first.
    host = host_string(hostspec)
    family = _check_family(ipv6)
    options = StreamOptions.make(
        direction=direction,
        element_type=element_type,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        ssl_ctx=ssl_ctx,
        ssl_side=ssl_side,
        ctx_configure_callback=ctx_configure_callback,
        ssl_configure_callback=ssl_configure_callback,
        handshake_timeout=handshake_timeout,
        tlsext_host_name=tlsext_host_name,
        max_line_length=max_line_length,
        encoding=encoding,
        errors=errors,
        newline=newline,
        alpn_protocols=alpn_protocols,
        ssl_session=ssl_session,
    )
    budget = check_timeout(timeout, "timeout")
    _check_bool(errorp, "errorp")
    _check_bool(nodelay, "nodelay")
    _check_bool(keepalive, "keepalive")
    lport = 0 if local_port is None else _check_port(local_port, "local_port", allow_zero=True)
    if local_address is not None and not isinstance(local_address, str):
        raise TypeError(f"local_address must be a str or None, not {local_address!r}")

    deadline = None if budget is None else monotonic() + budget
    try:
        port = resolve_service(service)
        sock = _connect(host, port, family, deadline, local_address, lport)
        _set_options(sock, nodelay, keepalive)
    except OSError as exc:
        if errorp:
            raise
        _log.debug("open_tcp_stream(%r, %r) failed: %s", hostspec, service, exc)
        return None

    tls = options.tls
    if tls is not None:
        if tls.tlsext_host_name is None:
            # Python's ssl sends no SNI for an address, but still checks the certificate's IP
            # addresses against it, which is what a client asking for an address wants.
            tls = replace(tls, tlsext_host_name=host)
        if tls.handshake_timeout is None and deadline is not None:
            tls = replace(tls, handshake_timeout=max(deadline - monotonic(), 0.001))
        options = replace(options, tls=tls)
    try:
        return SocketStream._from_options(sock, options)
    except OSError as exc:  # the constructor has closed the socket
        if errorp:
            raise
        _log.debug("open_tcp_stream(%r, %r): TLS setup failed: %s", hostspec, service, exc)
        return None


def _connect(
    host: str,
    port: int,
    family: int,
    deadline: float | None,
    local_address: str | None,
    local_port: int,
) -> socket.socket:
    """Resolve and connect, raising one SocketCreateError that tells everything that failed."""
    try:
        targets = _getaddrinfo(host, port, family, deadline)
    except TimeoutError as exc:
        raise SocketCreateError(
            errno.ETIMEDOUT, f"could not connect to {host!r} port {port}: {exc}"
        ) from exc
    except OSError as exc:
        raise SocketCreateError(f"could not resolve host {host!r} (port {port}): {exc}") from exc
    if local_address is not None:
        try:
            local_family = _getaddrinfo(local_address, 0, family, None)[0][0]
        except OSError as exc:
            raise SocketCreateError(f"bad local_address {local_address!r}: {exc}") from exc
        targets = [t for t in targets if t[0] == local_family]
        if not targets:
            raise SocketCreateError(
                f"could not connect to {host!r} port {port}: no address of the same family as "
                f"local_address {local_address!r}"
            )
    delay = math.inf if local_port else CONNECTION_ATTEMPT_DELAY
    sock, errors = happy_eyeballs_connect(
        reorder_for_rfc_8305_section_4(targets), deadline, (local_address, local_port), delay
    )
    if sock is None:
        error = _connect_error(host, port, errors)
        raise error from (errors[-1][1] if errors else None)
    return sock


# ---- Unix domain sockets --------------------------------------------------------------------


def check_unix_path(path: object, name: str = "path") -> str | bytes:
    """A Unix socket path: a non-empty ``str``, ``bytes`` or ``os.PathLike`` (``"\\0..."``:
    Linux's abstract namespace)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, (str, bytes)) or not path:
        raise TypeError(f"{name} must be a non-empty str, bytes or path-like, not {path!r}")
    if (path[1:].find(b"\0") if isinstance(path, bytes) else path[1:].find("\0")) >= 0:
        raise ValueError(
            f"{name} must not contain a NUL character (but as its first), not {path!r}"
        )
    return path


def open_unix_stream(
    path: str | bytes | os.PathLike[str],
    *,
    timeout: float | None = None,
    ssl_side: str = "client",
    **stream_keywords: Any,
) -> SocketStream:
    """Connect to the Unix domain socket at ``path`` and return a :class:`SocketStream`.

    Every stream keyword of ``SocketStream`` is taken.  With ``ssl_ctx`` the stream is a TLS
    client, and ``tlsext_host_name`` names the host whose certificate is expected (there is no
    host name to default to); without it a context that checks host names is a ``ValueError``.
    ``timeout`` bounds the connect and the TLS handshake (unless ``handshake_timeout`` is given).

    Raises:
        SocketCreateError: nothing listens at ``path`` (or it is not a socket, or not ours to
            open).
        SSLFailure: TLS setup or the handshake failed.
        TypeError, ValueError: a bad argument (nothing was opened).
    """
    where = check_unix_path(path)
    options = StreamOptions.make(ssl_side=ssl_side, **stream_keywords)
    budget = check_timeout(timeout, "timeout")
    tls = options.tls
    if (
        tls is not None
        and tls.tlsext_host_name is None
        and tls.ssl_side != "server"
        and not (isinstance(tls.ssl_ctx, ssl.SSLContext) and not tls.ssl_ctx.check_hostname)
    ):
        raise ValueError(
            "open_unix_stream with TLS needs tlsext_host_name, the host name to verify the "
            "server's certificate against (or an ssl.SSLContext with check_hostname off)"
        )
    if not hasattr(socket, "AF_UNIX"):  # pragma: no cover - Windows without AF_UNIX
        raise SocketCreateError("Unix domain sockets are not available here")
    deadline = None if budget is None else monotonic() + budget
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise SocketCreateError(exc.errno, f"cannot make a Unix socket: {exc}") from exc
    try:
        sock.settimeout(budget)
        sock.connect(where)
        sock.settimeout(None)
    except OSError as exc:
        sock.close()
        if isinstance(exc, TimeoutError) and exc.errno is None:
            exc = TimeoutError(errno.ETIMEDOUT, "connect timed out")
        raise SocketCreateError(
            exc.errno, f"could not connect to Unix socket {where!r}: {exc.strerror or exc}"
        ) from exc
    if tls is not None and tls.handshake_timeout is None and deadline is not None:
        options = replace(
            options, tls=replace(tls, handshake_timeout=max(deadline - monotonic(), 0.001))
        )
    return SocketStream._from_options(sock, options)

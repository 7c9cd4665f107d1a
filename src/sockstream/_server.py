"""start_up_server, serve and Server: listening for TCP connections.

Goals
    ``start_up_server`` is LispWorks' ``start-up-server``: one thread listens and calls
    ``function(sock)`` with each accepted ``socket.socket``; like LispWorks, it accepts no further
    connection until ``function`` returns, so a function that does real work hands the socket to
    a thread of its own.  ``serve`` is that pattern done right once: each connection gets a thread
    in which its ``SocketStream`` is made (so a slow or hostile TLS handshake never blocks the
    accept loop), ``handler(stream)`` runs there, and the stream is closed when it returns.

Plan
    - The listening socket is made in the caller's thread, before ``start_up_server`` returns,
      whatever ``wait`` says: bind and listen never block, and ``server.port`` is then always
      known.  ``wait`` only decides how a failure is reported: raised (``wait=True``) or given
      to ``announce`` and the log (``wait=False``, the returned server is already stopped and
      has ``error`` set).  ``announce`` runs in the caller's thread.
    - The accept loop waits on one selector holding the (non-blocking) listener and the read end
      of a socketpair (trio's WakeupSocketpair).  ``terminate()`` writes a byte to the other end:
      the loop wakes at once; there is no polling timeout anywhere.  The loop thread alone closes
      the listener, the selector and the socketpair, so no descriptor is closed under a thread
      that still uses it.
    - Accept errors (trio's errno review): ECONNABORTED, EPROTO, EPERM and the like concern one
      connection that went away, so the loop goes on; EMFILE, ENFILE, ENOBUFS and ENOMEM mean we
      are out of resources, so the loop logs, waits ``ACCEPT_BACKOFF`` seconds (as the
      selector's timeout, still woken at once by ``terminate``) and goes on; anything else (the
      listener is broken) is logged and ends the loop.
    - ``serve``: ``max_connections`` bounds the connection threads, handshakes included.  When
      they are all busy the accept loop stops accepting until one ends, so excess connections
      wait in the kernel's backlog (and beyond it the client's SYNs are retried by its kernel):
      nothing is refused.  An idle client holds its slot until ``handshake_timeout`` (TLS, 10 s
      by default) or the handler's ``read_timeout`` ends it.
    - ``terminate()`` on a ``serve`` server closes the listener, then *aborts* the running
      connections: it closes their streams (``close(abort=True)``, which works from any thread:
      it shuts the socket down first, which wakes a thread blocked on it).  Handlers see
      end-of-file (or ``ValueError``: the stream is closed) and return.  The stream is made
      plain first (no I/O), published to ``terminate()`` under the pool's lock, and only then
      does its TLS handshake, so every blocking moment of a connection has a stream to close;
      a stream swaps its socket out atomically before closing it, so an abort never touches a
      descriptor number after it was closed (and perhaps reused), and it acts on the socket a
      handler installed, not on the one accepted.  One descriptor per connection: 10,000
      connections fit in a limit of about 10,100.  The threads are joined for up to
      ``timeout`` seconds (5 by default); one still running is logged.
    - A handler that raises is logged (logger ``"sockstream"``) with its traceback at ERROR and
      costs no one else.  A ``SocketError`` out of a handler (the peer reset the connection,
      vanished without a TLS close-notify, stopped reading) and a failed TLS handshake are the
      peer's doing, not bugs: they are logged at INFO without a traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import selectors
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import IO, Any, Final, final

from ._connect import (
    IPv6Choice,
    SSLCtxSpec,
    _check_bool,
    _check_family,
    check_unix_path,
    resolve_service,
)
from ._contexts import stream_context
from ._errors import LineTooLongError, SocketCreateError, SocketError
from ._listen import SocketFile, display_path, make_unix_listener
from ._options import StreamOptions
from ._stream import SocketStream
from ._transport import preset_rcvtimeo
from ._wait import WANT_READ, deadline_after, select_ready, wait_fd

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_LINE_LENGTH",
    "DEFAULT_READ_TIMEOUT",
    "Server",
    "serve",
    "server_terminate",
    "start_up_server",
]

_log = logging.getLogger("sockstream")

#: Seconds to wait before accepting again after running out of descriptors or memory (trio uses
#: 0.1 s too: long enough to let other threads close something, short enough to be unnoticed).
ACCEPT_BACKOFF: Final = 0.1

#: ``serve``'s TLS handshake timeout by default: a client that does not finish its handshake
#: in this long is dropped, so idle connections cannot hold threads for ever.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0

#: ``serve``'s ``max_line_length`` by default (h11 uses 64 KiB for its incomplete-event limit).
DEFAULT_MAX_LINE_LENGTH: Final = 65536

#: ``serve``'s ``read_timeout`` by default: a served stream whose read waits this long for a
#: byte sees end-of-file, so an idle client -- before its first request or between two -- frees
#: its connection slot (nginx's ``client_header_timeout`` is 60 s too).  ``SocketStream`` and
#: ``open_tcp_stream`` keep LispWorks' default of no read timeout.
DEFAULT_READ_TIMEOUT: Final = 60.0

#: How long ``terminate()`` waits for aborted connection threads, by default.
TERMINATE_JOIN_TIMEOUT: Final = 5.0

# accept() errors about one connection that went away before we took it.
_TRANSIENT_ACCEPT_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED",
        "EPROTO",
        "EPERM",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "EINTR",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
# accept() errors that mean we are out of resources: back off, then go on.
_RESOURCE_ACCEPT_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
    if hasattr(errno, name)
)

#: What a handler raises because of its peer, not because of a bug of its own: a reset, a
#: vanished peer, a broken TLS session, a write timeout (SocketError); a line longer than
#: max_line_length; end-of-file (or a read timeout) where the handler wanted more; bytes that
#: do not decode in the stream's encoding.  Logged at INFO without a traceback; anything else
#: out of a handler is an ERROR with its traceback.
_PEER_FAULTS: Final = (SocketError, LineTooLongError, EOFError, UnicodeDecodeError)

Announce = bool | Callable[[Any], object] | IO[str] | None

_NOT_GIVEN: Any = object()


# ---- listening ------------------------------------------------------------------------------


def _make_listener(
    address: str | None, port: int, family: int, backlog: int, reuse_port: bool = False
) -> socket.socket:
    """Bind and listen; raise SocketCreateError naming the address and port.

    ``reuse_port`` sets ``SO_REUSEPORT``: several sockets (processes) may listen on one port,
    and the kernel spreads the connections over them.
    """
    where = f"{address if address is not None else 'all interfaces'} port {port}"
    candidates: list[tuple[int, Any]]
    try:
        if address is None:
            if family == socket.AF_INET or not socket.has_ipv6:
                candidates = [(socket.AF_INET, ("0.0.0.0", port))]
            else:
                candidates = [(socket.AF_INET6, ("::", port, 0, 0))]
                if family == socket.AF_UNSPEC:  # dual stack, or IPv4 if the host has no IPv6
                    candidates.append((socket.AF_INET, ("0.0.0.0", port)))
        else:
            infos = socket.getaddrinfo(
                address, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_PASSIVE
            )
            candidates = [(info[0], info[4]) for info in infos[:1]]
    except OSError as exc:
        raise SocketCreateError(f"cannot listen on {where}: {exc}") from exc
    error: OSError | None = None
    for fam, sockaddr in candidates:
        try:
            sock = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as exc:
            error = exc
            continue
        try:
            if sys.platform != "win32":  # on Windows SO_REUSEADDR means something unsafe
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if fam == socket.AF_INET6:
                # ipv6=True: IPv6 only; "any": IPv4 too on the same socket (dual stack).
                sock.setsockopt(
                    socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(family == socket.AF_INET6)
                )
            sock.bind(sockaddr)
            sock.listen(backlog)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    assert error is not None
    raise SocketCreateError(
        error.errno, f"cannot listen on {where}: {error.strerror or error}"
    ) from error


def _configure_accepted(sock: socket.socket, nodelay: bool, keepalive: bool) -> None:
    try:
        sock.setblocking(True)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(nodelay))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, int(keepalive))
    except OSError:  # the peer may already be gone: the function will find out
        pass


def _announce(announce: Announce, what: Server | BaseException) -> None:
    """Report a start or a failure to ``announce`` (None, True, a callable or a text stream)."""
    if announce is None or announce is False:
        return
    if isinstance(what, Server) and what.path is not None:
        line = f"sockstream: server listening on Unix socket {what.path}"
    elif isinstance(what, Server):
        line = f"sockstream: server listening on {what.address} port {what.port}"
    else:
        line = f"sockstream: server failed to start: {what}"
    try:
        if announce is True:
            print(line, flush=True)
        elif hasattr(announce, "write"):
            announce.write(line + "\n")
            flush = getattr(announce, "flush", None)
            if flush is not None:
                flush()
        else:
            announce(what)
    except Exception:
        _log.exception("announce %r raised", announce)


# ---- the server -----------------------------------------------------------------------------


@final
class Server:
    """A TCP server listening in a thread of its own; made by start_up_server or serve.

    ``address`` and ``port`` are where it listens (``port`` is 0 and ``error`` is set when it
    could not start).  ``terminate()`` (or leaving a ``with`` block) stops it.
    """

    def __init__(
        self,
        listener: socket.socket | None,
        function: Callable[[socket.socket], object],
        *,
        nodelay: bool = True,
        keepalive: bool = False,
        name: str | None = None,
        error: BaseException | None = None,
        address: str = "",
    ) -> None:
        self._listener = listener
        self._function = function
        self._nodelay = nodelay
        self._keepalive = keepalive
        self.error = error
        self._pool: _ConnectionPool | None = None
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_w: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        #: The Unix socket path (``path=``), else None; ``address`` is then the path, ``port`` 0.
        self.path: str | None = None
        self._socket_file: SocketFile | None = None
        if listener is None:
            self.address, self.port = address, 0
            self._thread: threading.Thread | None = None
            return
        sockname = listener.getsockname()
        if isinstance(sockname, (str, bytes)):  # AF_UNIX
            self.address, self.port = display_path(sockname), 0
            self.path = self.address
        else:
            self.address, self.port = str(sockname[0]), int(sockname[1])
        # Everything the accept loop needs is made here, in the caller's thread, so that running
        # out of descriptors is a failure to start and not a dead thread.
        self._selector = selectors.DefaultSelector()
        try:
            self._wake_r, self._wake_w = socket.socketpair()
            for s in (self._wake_r, self._wake_w):
                s.setblocking(False)
            self._selector.register(listener, selectors.EVENT_READ)
            self._selector.register(self._wake_r, selectors.EVENT_READ)
        except BaseException:
            self._selector.close()
            for end in (self._wake_r, self._wake_w):
                if end is not None:
                    end.close()
            raise
        self._thread = threading.Thread(
            target=self._run,
            name=name or f"sockstream server {self.address} port {self.port}",
            daemon=True,
        )

    def __repr__(self) -> str:
        state = "failed" if self.error is not None else "listening" if self.listening else "stopped"
        return f"<sockstream.Server {state} on {self.address!r} port {self.port}>"

    def _start(self) -> None:
        if self._thread is not None:
            self._thread.start()

    @property
    def listening(self) -> bool:
        """True while the accept loop runs."""
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    @property
    def active_connections(self) -> int:
        """The number of connection threads running (``serve`` only; 0 otherwise)."""
        return 0 if self._pool is None else self._pool.active

    def terminate(self, *, timeout: float | None = TERMINATE_JOIN_TIMEOUT) -> None:
        """Stop listening and, for ``serve``, abort the running connections.

        Returns once the accept loop has ended and the listener is closed, and (for ``serve``)
        once the connection threads have ended or ``timeout`` seconds have passed.  Idempotent;
        it may be called from the server's own threads (it then does not wait for itself).
        """
        with self._lock:
            self._stopping = True
            if self._wake_w is not None:
                try:
                    self._wake_w.send(b"\0")
                except OSError:  # full (already woken) or closed (already stopped)
                    pass
        if self._pool is not None:
            self._pool.abort()
        me = threading.current_thread()
        if self._thread is not None and self._thread is not me and self._thread.ident is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the accept loop ends; True when it has."""
        if self._thread is None or self._thread.ident is None:
            return True
        self._thread.join(None if timeout is None else min(timeout, threading.TIMEOUT_MAX))
        return not self._thread.is_alive()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()

    # -- the accept loop (in the server thread) --

    def _run(self) -> None:
        listener, wake_r = self._listener, self._wake_r
        assert listener is not None
        assert wake_r is not None
        sel = self._selector
        try:
            backoff: float | None = None
            starved = False
            while not self._stopping:
                if backoff is None:
                    select_ready(sel, None)
                else:
                    # Out of descriptors: the listener stays readable, so wait on the wakeup
                    # socket alone (terminate() still ends the wait at once); never spin.
                    wait_fd(wake_r.fileno(), WANT_READ, deadline_after(backoff))
                    backoff = None
                if self._stopping:
                    break
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue  # the wakeup byte, or a connection that went away
                except OSError as exc:
                    if exc.errno in _TRANSIENT_ACCEPT_ERRNOS:
                        continue
                    if exc.errno in _RESOURCE_ACCEPT_ERRNOS:
                        # Connections wait in the backlog meanwhile (trio's accept loop does
                        # the same); one warning per episode, then DEBUG.
                        _log.log(
                            logging.DEBUG if starved else logging.WARNING,
                            "%r: accept failed (%s); retrying in %g s",
                            self,
                            exc,
                            ACCEPT_BACKOFF,
                        )
                        starved = True
                        backoff = ACCEPT_BACKOFF
                        continue
                    _log.error("%r: accept failed, server stops: %s", self, exc)
                    self.error = exc
                    break
                if starved:
                    _log.info("%r: accepting again", self)
                    starved = False
                _configure_accepted(conn, self._nodelay, self._keepalive)
                try:
                    self._function(conn)
                except Exception:
                    _log.exception("%r: server function %r raised", self, self._function)
        except Exception as exc:  # a bug here must not vanish silently
            _log.exception("%r: accept loop failed", self)
            self.error = exc
        finally:
            self._close_resources()
            listener.close()

    def _close_resources(self) -> None:
        """Close the selector and the wakeup socketpair (not the listener); remove our socket
        file (``path=``)."""
        with self._lock:
            self._stopping = True
            if self._socket_file is not None:
                self._socket_file.remove()
            self._selector.close()
            if self._wake_r is not None:
                self._wake_r.close()
            if self._wake_w is not None:
                self._wake_w.close()
                self._wake_w = None


def server_terminate(server: Server) -> None:
    """Stop ``server``: the same as ``server.terminate()``."""
    server.terminate()


def _check_backlog(backlog: object) -> int:
    if isinstance(backlog, bool) or not isinstance(backlog, int):
        raise TypeError(f"backlog must be an int, not {backlog!r}")
    if backlog < 0:
        raise ValueError(f"backlog must be 0 or more, not {backlog!r}")
    return backlog


def _check_announce(announce: object) -> None:
    if not (
        announce is None
        or isinstance(announce, bool)
        or callable(announce)
        or hasattr(announce, "write")
    ):
        raise TypeError(
            f"announce must be None, True, a callable or a text stream, not {announce!r}"
        )


def start_up_server(
    function: Callable[[socket.socket], object],
    *,
    service: int | str | None = 0,
    address: str | None = None,
    backlog: int = 128,
    ipv6: IPv6Choice = "any",
    nodelay: bool = True,
    keepalive: bool = False,
    announce: Announce = None,
    wait: bool = False,
    process_name: str | None = None,
    path: str | bytes | os.PathLike[str] | None = None,
    reuse_port: bool = False,
) -> Server:
    """Listen on ``address``:``service`` and call ``function(sock)`` for each connection.

    ``function`` runs in the server's thread and owns the accepted ``socket.socket``; no other
    connection is accepted until it returns (as in LispWorks).  ``address=None`` listens on all
    interfaces, as LispWorks does: pass ``"127.0.0.1"`` or ``"::1"`` to stay local.
    ``service`` 0 or None picks a free port (see ``server.port``).  ``announce`` is told of the
    start or the failure: None, True (print), a callable (given the Server or the exception) or
    a text stream.  ``wait=True`` raises ``SocketCreateError`` on failure; ``wait=False`` returns
    a stopped server whose ``error`` says why.  ``process_name`` names the thread.
    ``path`` listens on a Unix domain socket instead (the file is made, replaced if stale,
    never taken from a live server, and removed when the server stops); ``reuse_port`` sets
    ``SO_REUSEPORT`` so that several processes can listen on one port.
    """
    if not callable(function):
        raise TypeError(f"function must be callable, not {function!r}")
    port = 0 if service is None else resolve_service(service, allow_zero=True)
    family = _check_family(ipv6)
    _check_backlog(backlog)
    _check_bool(nodelay, "nodelay")
    _check_bool(keepalive, "keepalive")
    _check_bool(wait, "wait")
    _check_announce(announce)
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a str or None, not {address!r}")
    unix = _check_path(path, service, address, reuse_port)
    return _start(
        function,
        port,
        address,
        backlog,
        family,
        nodelay,
        keepalive,
        announce,
        wait,
        process_name,
        path=unix,
        reuse_port=reuse_port,
    )


def _check_path(
    path: object, service: object, address: object, reuse_port: object
) -> str | bytes | None:
    """``path=`` and ``reuse_port=``: a Unix socket path instead of ``service``/``address``."""
    _check_bool(reuse_port, "reuse_port")
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise SocketCreateError("reuse_port: SO_REUSEPORT is not available on this system")
    if path is None:
        return None
    unix = check_unix_path(path)
    if address is not None or service not in (0, None):
        raise ValueError(
            "path (a Unix socket) is instead of service and address: give one, "
            f"not both (path={path!r}, service={service!r}, address={address!r})"
        )
    if reuse_port:
        raise ValueError("reuse_port is for TCP ports, not for a Unix socket path")
    return unix


def _start(
    function: Callable[[socket.socket], object],
    port: int,
    address: str | None,
    backlog: int,
    family: int,
    nodelay: bool,
    keepalive: bool,
    announce: Announce,
    wait: bool,
    process_name: str | None,
    pool: _ConnectionPool | None = None,
    *,
    path: str | bytes | None = None,
    reuse_port: bool = False,
) -> Server:
    try:
        socket_file: SocketFile | None = None
        if path is not None:
            listener, socket_file = make_unix_listener(path, backlog)
        else:
            listener = _make_listener(address, port, family, backlog, reuse_port)
        server: Server | None = None
        try:
            server = Server(
                listener, function, nodelay=nodelay, keepalive=keepalive, name=process_name
            )
            server._socket_file = socket_file
            server._pool = pool
            server._start()
        except BaseException as exc:
            if server is not None:
                server._close_resources()
            elif socket_file is not None:
                socket_file.remove()
            listener.close()
            if isinstance(exc, (OSError, RuntimeError)):  # out of descriptors or threads
                raise SocketCreateError(
                    f"cannot start a server on {address} port {port}: {exc}"
                ) from exc
            raise
    except SocketCreateError as exc:
        _announce(announce, exc)
        if wait:
            raise
        _log.warning("sockstream server failed to start: %s", exc)
        where = address or (display_path(path) if path is not None else "")
        return Server(None, function, error=exc, address=where)
    _log.debug("%r started", server)
    _announce(announce, server)
    return server


# ---- serve ----------------------------------------------------------------------------------


class _Connection:
    """One connection of a ``serve`` server: its thread, and its stream once made (for aborts)."""

    __slots__ = ("aborted", "peer", "stream", "thread")

    def __init__(self, peer: str) -> None:
        self.aborted = False
        self.peer = peer
        #: Set (under the pool's lock) once the plain stream exists, before any blocking I/O:
        #: ``abort`` closes it from its own thread, which wakes the connection's thread.
        self.stream: SocketStream | None = None
        self.thread: threading.Thread | None = None


class _ConnectionPool:
    """The connection threads of a ``serve`` server, at most ``max_connections`` at once."""

    def __init__(
        self,
        handler: Callable[[SocketStream], object],
        max_connections: int,
        options: StreamOptions,
    ) -> None:
        self._handler = handler
        self._max = max_connections
        self._options = options
        # The stream is made plain (no blocking I/O), then TLS is started on it: a terminate()
        # during the handshake then closes a stream, never a bare descriptor number.
        self._tls = options.tls
        self._plain = options if options.tls is None else replace(options, tls=None)
        self._cond = threading.Condition()
        self._connections: set[_Connection] = set()
        self._stopping = False

    @property
    def active(self) -> int:
        with self._cond:
            return len(self._connections)

    def dispatch(self, sock: socket.socket) -> None:
        """Called by the accept loop: start a thread for ``sock``, then wait for a free slot."""
        try:
            peer = _format_peer(sock.getpeername())
        except OSError as exc:  # gone already
            _log.debug("connection lost before it was served: %s", exc)
            sock.close()
            return
        conn = _Connection(peer)
        if self._tls is None:
            preset_rcvtimeo(sock, self._options.read_timeout)  # saves each thread a stack page
        starved = False
        with self._cond:
            while True:
                if self._stopping:
                    sock.close()
                    return
                thread = threading.Thread(
                    target=self._run,
                    args=(conn, sock),
                    name=f"sockstream connection {peer}",
                    daemon=True,
                )
                conn.thread = thread
                self._connections.add(conn)
                try:
                    thread.start()
                except RuntimeError as exc:  # out of threads: keep the connection, as for fds
                    self._connections.discard(conn)
                    _log.log(
                        logging.DEBUG if starved else logging.WARNING,
                        "cannot start a thread (%s): connection from %s waits",
                        exc,
                        peer,
                    )
                    starved = True
                    self._cond.wait(ACCEPT_BACKOFF)
                    continue
                except BaseException:
                    self._connections.discard(conn)
                    sock.close()
                    raise
                break
            while len(self._connections) >= self._max and not self._stopping:
                self._cond.wait()

    def _open(self, conn: _Connection, sock: socket.socket) -> SocketStream | None:
        """The connection's stream (its TLS handshake done), or None (logged, socket closed)."""
        try:
            stream = SocketStream._from_options(sock, self._plain)  # no I/O: never blocks
        except OSError as exc:  # the constructor closed the socket
            _log.info("connection from %s dropped during set-up: %s", conn.peer, exc)
            return None
        except Exception:
            _log.exception("connection from %s: SocketStream could not be made", conn.peer)
            return None
        with self._cond:
            conn.stream = stream
            aborted = conn.aborted
        if aborted:  # terminate() came before the stream was there to close
            stream.close(abort=True)
            return None
        if self._tls is not None:
            try:
                stream._start_tls(self._tls)  # a failure closes the stream
            except Exception as exc:
                if conn.aborted:  # closed by terminate() during the handshake
                    _log.debug("handshake with %s ended by terminate(): %r", conn.peer, exc)
                elif isinstance(exc, OSError):  # the peer's doing: SSLFailure, a reset, ...
                    _log.info("connection from %s dropped during set-up: %s", conn.peer, exc)
                else:
                    _log.exception("connection from %s: TLS could not be started", conn.peer)
                return None
        return stream

    def _run(self, conn: _Connection, sock: socket.socket) -> None:
        try:
            stream = self._open(conn, sock)
            if stream is None:
                return
            try:
                self._handler(stream)
            except _PEER_FAULTS as exc:  # the peer's doing, not a bug: one line, no traceback
                _log.log(
                    logging.DEBUG if conn.aborted else logging.INFO,
                    "connection from %s broken by the peer: %s: %s",
                    conn.peer,
                    type(exc).__name__,
                    exc,
                )
            except Exception:
                if conn.aborted:
                    _log.debug("handler for %s ended by terminate()", conn.peer, exc_info=True)
                else:
                    _log.exception("handler for connection from %s raised", conn.peer)
            finally:
                try:
                    stream.close(abort=conn.aborted)
                except OSError as exc:
                    _log.debug("closing the stream of %s: %s", conn.peer, exc)
                    stream.close(abort=True)
        finally:
            with self._cond:
                self._connections.discard(conn)
                conn.stream = None
                self._cond.notify_all()

    def abort(self) -> None:
        """Refuse new connections and close the running ones' streams (wakes blocked threads).

        A stream's ``close()`` works from any thread and wakes a thread blocked in it; it acts
        on the stream's socket of the moment (a handler may have replaced it) and does nothing
        to a stream already closed, so no descriptor number is ever touched after it was
        closed (and perhaps reused by another connection).
        """
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            streams = []
            for conn in self._connections:
                conn.aborted = True
                if conn.stream is not None:
                    streams.append(conn.stream)
        for stream in streams:
            stream.close(abort=True)  # flushes nothing: cannot fail

    def join(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds in all for the connection threads to end."""
        with self._cond:
            threads = [c.thread for c in self._connections if c.thread is not None]
        me = threading.current_thread()
        end = None if timeout is None else time.monotonic() + timeout
        for t in threads:
            if t is not me:
                t.join(
                    None
                    if end is None
                    else min(max(0.0, end - time.monotonic()), threading.TIMEOUT_MAX)
                )
        stuck = [t.name for t in threads if t.is_alive() and t is not me]
        if stuck:
            _log.warning("terminate(): connection threads still running: %s", ", ".join(stuck))


def _lacks_certificate(ctx: ssl.SSLContext) -> bool:
    """True if a TLS server with ``ctx`` cannot finish any handshake for want of a certificate.

    Found by starting one handshake in memory against a client that accepts anything: a server
    without a certificate fails at once (no cipher suite can be used without one).  A context
    with an ``sni_callback`` may pick its certificate per connection: it is given the benefit
    of the doubt.
    """
    if ctx.sni_callback is not None:
        return False
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out)
    s = ctx.wrap_bio(s_in, s_out, server_side=True)
    try:
        c.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError:  # pragma: no cover (our own client): not the question asked
        return False
    s_in.write(c_out.read())
    try:
        s.do_handshake()
    except ssl.SSLWantReadError:
        return False  # it answered the ClientHello: it has what it needs
    except ssl.SSLError as exc:
        # Without a certificate OpenSSL finds no shared cipher; a TLS 1.3-only server without
        # one reports the protocol as unsupported (our client offers 1.2 and 1.3).
        return exc.reason == "NO_SHARED_CIPHER" or (
            exc.reason == "UNSUPPORTED_PROTOCOL" and ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        )
    return False


def _format_peer(sockaddr: Any) -> str:
    if isinstance(sockaddr, (str, bytes)):  # AF_UNIX: the client's path, usually unnamed
        return f"unix:{display_path(sockaddr)}" if sockaddr else "unix:(unnamed)"
    if isinstance(sockaddr, tuple):
        host, port = sockaddr[0], sockaddr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(sockaddr)


def serve(
    handler: Callable[[SocketStream], object],
    *,
    service: int | str | None = 0,
    address: str | None = None,
    max_connections: int = 100,
    backlog: int = 128,
    ipv6: IPv6Choice = "any",
    nodelay: bool = True,
    keepalive: bool = False,
    announce: Announce = None,
    process_name: str | None = None,
    path: str | bytes | os.PathLike[str] | None = None,
    reuse_port: bool = False,
    direction: str = "io",
    element_type: str = "base-char",
    read_timeout: float | None = _NOT_GIVEN,
    write_timeout: float | None = None,
    ssl_ctx: SSLCtxSpec = None,
    ssl_side: str = "server",
    ctx_configure_callback: Callable[[ssl.SSLContext], object] | None = None,
    ssl_configure_callback: Callable[[Any], object] | None = None,
    handshake_timeout: float | None = _NOT_GIVEN,
    tlsext_host_name: str | None = None,
    max_line_length: int | None = DEFAULT_MAX_LINE_LENGTH,
    encoding: str = "latin-1",
    errors: str = "strict",
    newline: str | None = "\n",
    alpn_protocols: Sequence[str] | None = None,
) -> Server:
    """Listen, and run ``handler(stream)`` for each connection in a thread of its own.

    The stream is a ``SocketStream`` made from the stream keywords in that thread (a TLS server
    with ``ssl_ctx``; ``handshake_timeout`` is 10 s by default then) and is closed when the
    handler returns.  ``read_timeout`` is ``DEFAULT_READ_TIMEOUT`` (60 s) by default, so idle
    clients free their slots; ``None`` waits for ever, as ``SocketStream`` does.  At most
    ``max_connections`` connections are served at once; more wait in the listen backlog.  A
    handler that raises is logged and the server goes on.  The server is listening when this
    returns; a failure to listen raises ``SocketCreateError``.
    ``terminate()`` stops listening and aborts the running connections.  ``path`` and
    ``reuse_port`` are those of ``start_up_server`` (a Unix socket; ``SO_REUSEPORT``).
    """
    if not callable(handler):
        raise TypeError(f"handler must be callable, not {handler!r}")
    if isinstance(max_connections, bool) or not isinstance(max_connections, int):
        raise TypeError(f"max_connections must be an int, not {max_connections!r}")
    if max_connections < 1:
        raise ValueError(f"max_connections must be 1 or more, not {max_connections!r}")
    port = 0 if service is None else resolve_service(service, allow_zero=True)
    family = _check_family(ipv6)
    _check_backlog(backlog)
    _check_bool(nodelay, "nodelay")
    _check_bool(keepalive, "keepalive")
    _check_announce(announce)
    if address is not None and not isinstance(address, str):
        raise TypeError(f"address must be a str or None, not {address!r}")
    unix = _check_path(path, service, address, reuse_port)
    if read_timeout is _NOT_GIVEN:
        read_timeout = DEFAULT_READ_TIMEOUT
    tls = ssl_ctx is not None and ssl_ctx is not False
    given_ctx = ssl_ctx
    if handshake_timeout is _NOT_GIVEN:
        handshake_timeout = DEFAULT_HANDSHAKE_TIMEOUT if tls else None
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
    )
    if options.tls is not None:
        # Make the context once, not per connection: loading certificates costs milliseconds,
        # and one SSLContext serves any number of connections (it is thread-safe).
        topts = options.tls
        ctx = stream_context(
            topts.ssl_ctx, topts.ssl_side, topts.ctx_configure_callback, topts.alpn_protocols
        )
        options = replace(
            options,
            tls=replace(topts, ssl_ctx=ctx, ctx_configure_callback=None, alpn_protocols=None),
        )
    if (
        options.tls is not None
        and options.tls.ssl_side != "client"
        and _lacks_certificate(options.tls.ssl_ctx)
    ):
        raise ValueError(
            "serve() with ssl_ctx=... needs a server certificate, and the context has none "
            f"(ssl_ctx={given_ctx!r}): every handshake would fail with 'no shared cipher'. "
            "Load one in ctx_configure_callback (ctx.load_cert_chain(certfile, keyfile)) or "
            "pass an ssl.SSLContext that has one"
        )
    pool = _ConnectionPool(handler, max_connections, options)
    return _start(
        pool.dispatch,
        port,
        address,
        backlog,
        family,
        nodelay,
        keepalive,
        announce,
        True,
        process_name,
        pool,
        path=unix,
        reuse_port=reuse_port,
    )

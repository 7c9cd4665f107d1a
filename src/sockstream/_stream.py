"""SocketStream: the glue between the buffers, the transport and the wait primitive.

Theory of operation
    Reading: one ``InputBuffer`` owns the input.  Every reading verb asks the buffer first
    (``maybe_*``, the hot path); only when it answers None does the verb call ``_fill``, the one
    I/O loop: try the transport without blocking, and when it would block, wait for the
    descriptor until ``read_timeout`` seconds after that attempt, then try again (a plain
    stream outside the main thread waits in the receive itself: ``_may_block``).  Each
    extraction starts a new wait, so the timeout measures the time between extractions, as
    LispWorks specifies; an expired wait reads as end-of-file and changes nothing else.

    Writing: one ``OutputBuffer`` (``_output``), whose writing verbs the stream binds as its
    own; they validate and encode their whole argument first (a bad character writes nothing),
    then append to its ``bytearray``.  ``_flush_out`` takes the buffer whole,
    sends it with the same try / wait / retry shape under one deadline (``write_timeout``), and
    puts back in front what was not sent (timeout, interrupt), so nothing is sent twice.

    State: each side has an explicit state (``_rstate``, ``_wstate``: open, closed, not this
    direction, shut, broken), checked once at each public entry (the writing verbs' fast paths:
    by the buffer itself, which refuses while the side is not open).  The sides share no mutable
    state: one thread may read while another writes.

Threads and interrupts (docs/reliability.md)
    Two readers (or two writers) are serialised: the buffer's takes are atomic, and filling
    and flushing hold the side's lock, so each operation is whole.  ``close()`` takes no lock:
    it shuts the socket down, which wakes any thread blocked on it.  An exception raised by a
    signal handler (KeyboardInterrupt) while the stream waits loses nothing.  One that lands
    between a ``recv``/``send`` and the count being recorded cannot be made exact in Python:
    the stream then marks itself broken and every later operation says so.
"""

from __future__ import annotations

import array
import errno
import io
import ipaddress
import os
import socket as _socket
import ssl
import threading
import weakref
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Final, NoReturn, Protocol, TypeVar, overload

from . import _tls
from ._buffer import (
    BYTES_LINE_NL,
    OUTPUT_BUFFER_SIZE,
    STR_LINE,
    STR_LINE_NL,
)
from ._buffer import InputBuffer as PureInputBuffer
from ._contexts import keyword, stream_context
from ._elements import (
    ElementType,
    byte_range,
    check_byte,
    decode_list,
    encode_chars,
    encode_items,
)
from ._errors import (
    SocketError,
    SocketIOError,
    SSLFailure,
    SSLHandshakeTimeout,
    WriteTimeoutError,
)
from ._fileobj import FileObjectMixin, check_read_size, check_size
from ._impl import (  # the twins or the pure core
    W_VERBS,
    InputBuffer,
    OutputBuffer,
    StreamBase,
    retype,
    twin_stream,
)
from ._options import StreamOptions, TLSOptions
from ._output import REFUSED
from ._text import Codec, as_delimiter, check_max_length, check_newline, terminator
from ._transport import MSG_DONTWAIT, NoTransport, PlainTransport, Transport
from ._wait import (
    MAX_WAIT,
    WANT_MORE,
    WANT_READ,
    WANT_WRITE,
    check_timeout,
    deadline_after,
    make_poller,
    wait_poller,
)

T = TypeVar("T")
_get_ident = threading.get_ident
#: The thread where Python runs signal handlers (see ``_may_block``); after a fork, the forker.
_main_ident = threading.main_thread().ident


def _forked() -> None:
    global _main_ident
    _main_ident = _get_ident()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class StreamWatcher(Protocol):
    """What watches a stream (a wait on many streams): told of input and of socket changes.

    Called synchronously, from whichever thread acts on the stream; must be cheap and must
    never raise.
    """

    def stream_input(self, stream: SocketStream) -> None:
        """Input may now be in the stream's memory (its buffer or its TLS engine)."""

    def stream_changed(self, stream: SocketStream) -> None:
        """The stream's socket was replaced, or the stream closed."""


_UNSIGNED: Final = tuple(range(256))
_SIGNED: Final = tuple(range(128)) + tuple(range(-128, 0))
#: A read into the caller's buffer of at least this much goes straight from the socket into
#: the caller's memory once our buffer is empty (one copy fewer).
_BYPASS: Final = 16384
#: clear_input drains at most this much that is already available, so a flooding peer cannot
#: keep it busy forever.
_CLEAR_INPUT_LIMIT: Final = 16 * 1024 * 1024
#: Output up to this size is first sent straight from the buffer, without a memoryview.
_SEND_AT_ONCE: Final = 65536
#: The default size of readline: the whole line.
_WHOLE: Final = -1
_ZERO: Final = 0  # read_sequence's default start (a cached int; a bool False is not it)
#: peek returns at most this much (or ``size``, if larger) of what is buffered.
_PEEK_MAX: Final = 65536

# A side's state (``_rstate``, ``_wstate``); anything but OPEN refuses at the public entry.
OPEN: Final = 0
CLOSED: Final = 1
NOT_THIS_WAY: Final = 2  # reading an output-only stream, or writing an input-only one
SHUT: Final = 3  # output after shutdown_output()
BROKEN: Final = 4  # an interrupt landed where no count could be kept (see the module comment)


def _as_socket(value: object) -> _socket.socket:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"socket file descriptor must be >= 0, not {value}")
        return _socket.socket(fileno=value)
    if isinstance(value, _socket.socket):
        if isinstance(value, ssl.SSLSocket):
            raise TypeError(
                "socket must be a plain socket.socket, not an ssl.SSLSocket: pass the plain "
                "socket and ssl_ctx=... so the stream owns the TLS layer"
            )
        return value
    raise TypeError(f"socket must be a connected socket.socket or a file descriptor, not {value!r}")


def _check_stream_socket(sock: _socket.socket) -> None:
    """Refuse a socket that cannot carry a stream (ValueError), naming what is wrong."""
    if sock.fileno() < 0:
        raise ValueError(f"socket must be a connected socket, not a closed one: {sock!r}")
    if sock.type != _socket.SOCK_STREAM:
        raise ValueError(
            f"socket must be a connected SOCK_STREAM socket, not a {sock.type.name} one: {sock!r}"
        )
    try:
        listening = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ACCEPTCONN)
    except (OSError, AttributeError):  # not known on this platform
        listening = 0
    if listening:
        raise ValueError(
            f"socket must be a connected socket, not a listening one (pass a socket that "
            f"accept() returned): {sock!r}"
        )
    try:
        sock.getpeername()
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        failed = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_ERROR)
        if failed:  # it was connected, and the peer reset it: not the caller's mistake
            raise SocketIOError(
                failed, f"the connection failed before the stream was made: {os.strerror(failed)}"
            ) from None
        raise ValueError(
            f"socket must be a connected socket, not an unconnected one (connect it first, or "
            f"use open_tcp_stream): {sock!r}"
        ) from None


def _peer_ip(sock: _socket.socket) -> str:
    """The peer's IP address, to verify its certificate against; ValueError if it has none."""
    peer = sock.getpeername()
    if not (isinstance(peer, tuple) and peer):
        raise ValueError(
            f"a TLS client that checks host names needs tlsext_host_name= (the name to verify "
            f"the certificate against) on a socket whose peer has no IP address, not "
            f"{peer!r} ({_socket.AddressFamily(sock.family).name})"
        )
    return str(ipaddress.ip_address(peer[0]))


def _check_bounds(start: object, end: object, length: int) -> tuple[int, int]:
    if isinstance(start, bool) or not isinstance(start, int):
        raise TypeError(f"start must be an int, not {start!r}")
    if end is None:
        end = length
    elif isinstance(end, bool) or not isinstance(end, int):
        raise TypeError(f"end must be an int or None, not {end!r}")
    if not 0 <= start <= end <= length:
        raise ValueError(f"start={start} and end={end} must satisfy 0 <= start <= end <= {length}")
    return start, end


class SocketStream(StreamBase, FileObjectMixin):
    """A buffered, bidirectional stream over a connected TCP socket (LispWorks ``socket-stream``).

    Character and byte I/O both work on every element type (characters are bytes as if by
    ``chr``/``ord``), except ``read_byte``/``write_byte``, which need a byte element type.
    Reads that wait longer than ``read_timeout`` seconds between extractions see end-of-file;
    a flush that takes longer than ``write_timeout`` raises ``WriteTimeoutError``.  With
    ``ssl_ctx`` the stream speaks TLS (see ``attach_ssl``).  If the constructor raises, the
    socket is closed.
    """

    def __init__(
        self,
        socket: _socket.socket | int,
        direction: str = "io",
        element_type: str = "base-char",
        *,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        ssl_ctx: Any = None,
        ssl_side: str = "server",
        ctx_configure_callback: Any = None,
        ssl_configure_callback: Any = None,
        handshake_timeout: float | None = None,
        tlsext_host_name: str | None = None,
        max_line_length: int | None = None,
        encoding: str = "latin-1",
        errors: str = "strict",
        newline: str | None = "\n",
        alpn_protocols: Any = None,
        ssl_session: ssl.SSLSession | None = None,
    ) -> None:
        self._closed = True  # until fully made; close() is then a no-op
        owned: Any = socket  # (no call before the try: an interrupt may land after any call)
        made = False
        try:
            sock = _as_socket(socket)
            owned = sock
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
            self._open(sock, options)
            made = True
        finally:
            # The socket is closed even if another interrupt lands in the cleanup.  (A finally
            # whose body begins with a try, not an except: 3.10 may run a signal handler at an
            # except clause's first instruction, never before a try.)
            # (And when it is made, no jump is taken on the way out: 3.10 may run one there.)
            try:
                if made:
                    pass
                else:
                    self._abandon(owned if isinstance(owned, _socket.socket) else None)
            finally:
                if made:
                    pass
                elif isinstance(owned, _socket.socket):
                    owned.close()

    @classmethod
    def _from_options(cls, sock: _socket.socket, options: StreamOptions) -> SocketStream:
        """A stream on ``sock`` made with checked options; if this raises, ``sock`` is closed."""
        self = cls.__new__(cls)
        self._closed = True
        try:
            self._open(sock, options)
        except BaseException:
            self._abandon(sock)
            raise
        return self

    def _open(self, sock: _socket.socket, options: StreamOptions) -> None:
        # The hot attributes first: CPython keeps the first 30 attribute names of a class's
        # instances in one shared key table, where they are found fastest.
        direction = options.direction
        self._rstate = OPEN if direction != "output" else NOT_THIS_WAY
        self._out = OutputBuffer()
        self._set_wstate(OPEN if direction != "input" else NOT_THIS_WAY)
        self._in = InputBuffer(max_line=options.max_line_length)
        self._transport: Transport = NoTransport()
        self._watchers: tuple[StreamWatcher, ...] = ()
        # ---- lifecycle
        self._sock: _socket.socket | None = None
        _check_stream_socket(sock)
        self._direction = direction
        self._element_type: ElementType = options.element_type
        self._set_codec(Codec(options.encoding, options.errors))
        self._set_newline(options.newline)
        self._byte_table: tuple[int, ...] | None = (
            None
            if self._element_type == "base-char"
            else _SIGNED
            if self._element_type == "signed-byte-8"
            else _UNSIGNED
        )
        self._text = self._element_type == "base-char"
        self._line_kind = STR_LINE_NL if self._text else BYTES_LINE_NL
        if self._byte_table is not None:
            self._out.lo, self._out.hi = byte_range(self._element_type)
        # Why the stream is broken (BROKEN), for the error every later operation raises.
        self._why_broken = ""
        # The peer (or the network) broke the connection: close() does not flush.
        self._peer_broken = False
        # What watches this stream (``_watch``) is a tuple, replaced whole, so that a watcher
        # added or removed by another thread never disturbs a notification under way.
        self._fd = -1
        # ---- the reading side
        self._serve_from_buffer()
        self._retype_input()
        self._rlock = threading.Lock()  # held while filling: one filler at a time
        self._read_timeout = options.read_timeout
        self._eof = False
        self._timed_out = False
        self._poll_first = False
        self._receiving = False  # a recv is under way whose count is not yet in the buffer
        self._error: BaseException | None = None
        # ---- the writing side
        self._serve_output()
        self._wlock = threading.Lock()  # held while flushing: one flusher at a time
        self._write_timeout = options.write_timeout
        self._sending = False  # a send is under way whose count is not yet recorded
        self._install(sock)
        self._closed = False
        if options.tls is not None:
            self._start_tls(options.tls)

    def _serve_from_buffer(self) -> None:
        """The hottest verbs are the buffer's own methods, bound on this stream (one call).

        The buffer falls back to the slow paths here through weak references, so the stream
        and its buffer make no cycle (a dropped stream is freed, and its socket closed, at once).
        """
        ref = weakref.ref(self)

        def slow_char(eof_error: bool, eof_value: Any) -> Any:
            stream = ref()
            if stream is None:  # pragma: no cover - the buffer outlived its stream
                raise ValueError("I/O operation on a closed stream")
            return stream._read_char_slow(eof_error, eof_value)

        def slow_byte(eof_error: bool, eof_value: Any) -> Any:
            stream = ref()
            if stream is None:  # pragma: no cover
                raise ValueError("I/O operation on a closed stream")
            return stream._read_byte_slow(eof_error, eof_value)

        def slow_line(size: Any) -> Any:
            stream = ref()
            if stream is None:  # pragma: no cover
                raise ValueError("I/O operation on a closed stream")
            return SocketStream.readline(stream, size)

        def slow_seq(seq: Any, start: Any, end: Any) -> int:
            stream = ref()
            if stream is None:  # pragma: no cover
                raise ValueError("I/O operation on a closed stream")
            if type(seq) is bytearray and start is _ZERO and end is None:
                # The buffer has just found that it does not hold all of it: fill from here
                # (a bulk read's path, one frame shorter than the dispatch below).
                if stream._rstate:
                    stream._read_refused()
                with memoryview(seq) as whole:
                    return stream._read_into(whole)
            return SocketStream.read_sequence(stream, seq, start, end)

        def slow_read_line(eof_error: Any, eof_value: Any) -> Any:
            stream = ref()
            if stream is None:  # pragma: no cover
                raise ValueError("I/O operation on a closed stream")
            return stream._read_line_slow(eof_error, eof_value)

        def slow_read(size: Any) -> Any:
            stream = ref()
            if stream is None:  # pragma: no cover
                raise ValueError("I/O operation on a closed stream")
            return SocketStream.read(stream, size)

        ib = self._in
        cls = type(self)
        ib.serve_elements(
            slow_char,
            slow_byte,
            self._byte_table or (),
            slow_line,
            self._line_kind,
            slow_seq,
            slow_read_line,
            ref,
            cls._fill,
            cls._line_end,
            slow_read,
        )
        self.read_char = ib.read_char  # type: ignore[method-assign]
        if self._byte_table is not None:
            self.read_byte = ib.read_byte  # type: ignore[method-assign]
        self.readline = ib.readline  # type: ignore[method-assign]
        self.read_line = ib.read_line  # type: ignore[method-assign]
        self.read_sequence = ib.read_sequence  # type: ignore[method-assign]
        if not self._text and type(ib) is PureInputBuffer and cls.read is SocketStream.read:
            # read(n) on a byte stream of the pure core: the buffer's, served by its byte
            # window (the twin's read is StreamBase's C method; a text buffer cuts no window).
            self.read = ib.read  # type: ignore[method-assign]
        elif "read" in self.__dict__:
            del self.read

    def _abandon(self, sock: _socket.socket | None) -> None:
        """The constructor failed: the stream is closed, and so is the socket."""
        self._closed = True
        self._rstate = CLOSED
        if not hasattr(self, "_out"):
            self._out = OutputBuffer()
        self._set_wstate(CLOSED)
        self._sock = None
        self._watchers = ()
        if sock is not None:
            sock.close()

    # ---- watchers ------------------------------------------------------------------------

    def _watch(self, watcher: StreamWatcher) -> None:
        """Tell ``watcher`` of input and socket changes from now on (idempotent)."""
        if watcher not in self._watchers:
            self._watchers += (watcher,)

    def _unwatch(self, watcher: StreamWatcher) -> None:
        """Stop telling ``watcher`` (absent is fine)."""
        if watcher in self._watchers:
            self._watchers = tuple(w for w in self._watchers if w is not watcher)

    def _input_arrived(self) -> None:
        """Tell the watchers that this stream may hold input now."""
        for watcher in self._watchers:
            watcher.stream_input(self)

    def _socket_changed(self) -> None:
        """Tell the watchers that the socket changed or the stream closed."""
        for watcher in self._watchers:
            watcher.stream_changed(self)

    # ---- state ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed stream")

    def _refused(self, state: int, reading: bool) -> NoReturn:
        """Raise what a side in ``state`` (not OPEN) answers."""
        if state == CLOSED or self._closed:
            raise ValueError("I/O operation on a closed stream")
        if state == NOT_THIS_WAY:
            raise io.UnsupportedOperation(
                "stream was opened for output only"
                if reading
                else "stream was opened for input only"
            )
        if state == SHUT:
            raise ValueError("output was shut down with shutdown_output()")
        raise SocketIOError(f"the stream is broken: {self._why_broken}")

    def _read_refused(self) -> NoReturn:
        self._refused(self._rstate, True)

    def _write_refused(self) -> NoReturn:
        self._refused(self._wstate, False)

    def _break(self, why: str) -> None:
        """Mark the stream broken: every later operation raises ``SocketIOError`` saying why."""
        if not self._why_broken:
            self._why_broken = why
        if self._rstate == OPEN:
            self._rstate = BROKEN
        if self._wstate == OPEN:
            self._set_wstate(BROKEN)
        self._peer_broken = True  # nothing more is sent, close() included
        self._in.clear()  # the reading verbs' fast path finds nothing, and asks the state

    # ---- socket management -------------------------------------------------------------

    def _install(self, sock: _socket.socket | None) -> None:
        """Make ``sock`` the stream's socket, with a plain transport."""
        self._transport.close()
        self._sock = sock
        if sock is None:
            self._transport = NoTransport()
            self._fd = -1
            self._can_block = False
        else:
            transport = PlainTransport(sock)  # sets the socket's blocking mode
            self._transport = transport
            self._fd = sock.fileno()
            self._can_block = transport.can_block  # see _may_block
        self._eof = False
        # Poll objects by what is awaited, one set for the reading side and one for the
        # writing side (a poll object must not be used by two threads at once); made on use.
        self._rpollers: dict[int, Any] = {}
        self._wpollers: dict[int, Any] = {}
        if self._watchers:
            self._socket_changed()

    @property
    def socket(self) -> _socket.socket | None:
        """The stream's socket.  Assigning a socket (or None) closes the old one first."""
        return self._sock

    @socket.setter
    def socket(self, new: _socket.socket | int | None) -> None:
        old = self.replace_socket(new)
        if old is not None and old is not self._sock:
            old.close()

    def replace_socket(self, new: _socket.socket | int | None) -> _socket.socket | None:
        """Install ``new`` (a socket, a descriptor or None) and return the old socket, open.

        Buffered input and output stay in the stream; TLS, being bound to the old connection,
        does not carry over.
        """
        self._check_open()
        sock = None if new is None else _as_socket(new)
        old = self._sock
        if sock is not None and sock is not old:
            _check_stream_socket(sock)
        if sock is old:
            return old  # the same socket again: nothing changes (and nothing is closed)
        self._install(sock)
        if old is not None and old.fileno() >= 0:
            old.setblocking(True)  # as the caller would expect of a socket handed back
        return old

    # ---- properties ----------------------------------------------------------------------

    @property
    def read_timeout(self) -> float | None:
        """Seconds without input after which a read sees end-of-file, or None."""
        return self._read_timeout

    @read_timeout.setter
    def read_timeout(self, value: float | None) -> None:
        self._read_timeout = check_timeout(value, "read_timeout")

    @property
    def write_timeout(self) -> float | None:
        """Seconds a flush may take before ``WriteTimeoutError``, or None."""
        return self._write_timeout

    @write_timeout.setter
    def write_timeout(self, value: float | None) -> None:
        self._write_timeout = check_timeout(value, "write_timeout")

    @property
    def element_type(self) -> str:
        return self._element_type

    @property
    def direction(self) -> str:
        return self._direction

    @property
    def max_line_length(self) -> int | None:
        return self._in.max_line

    # ---- text ------------------------------------------------------------------------------

    def _set_codec(self, codec: Codec) -> None:
        self._codec = codec
        # Writing (the output buffer's settings): str.encode's encoding (strict: the error
        # handler only where that fails), the codec's kind (the C twin's encoders), and the
        # characters below char_limit that are their own byte.
        out = self._out
        out.enc = "latin-1" if codec.latin1 else codec.canonical
        out.kind = codec.kind  # (the C twin encodes Latin-1, ASCII and UTF-8 itself)
        out.char_limit = 256 if codec.latin1 else 128 if codec.ascii_safe else 0
        self._plain_text = codec.latin1 and codec.errors == "strict"

    def _set_newline(self, newline: str | None) -> None:
        self._newline = newline
        self._out.eol = terminator(newline)

    def _retype_input(self) -> None:
        """After a text setting changed: the input buffer that serves it, holding the same bytes.

        The batch of lines cut under the old settings is settled first (``retype``).
        """
        old = self._in
        self._in = retype(old, self._codec, self._newline)
        if self._in is not old:
            # A verb bound from the stream before (``rl = stream.read_line``) is the old
            # buffer's: emptied, it finds nothing and asks the stream, which asks the new one
            # (its slow paths: it no longer refills by itself, which would fill the new one).
            old.clear()
            old._owner = old._fill = old._line_end = None
            self._serve_from_buffer()  # the stream's verbs are the new buffer's methods
        # Characters are not bytes: read/read1/read_sequence count them with the codec.
        self._decoding = not self._codec.latin1

    @property
    def encoding(self) -> str:
        """The codec of every character operation (``"latin-1"``: a byte is a character)."""
        return self._codec.encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        self._set_codec(Codec(value, self._codec.errors))
        self._retype_input()

    @property
    def errors(self) -> str:
        """The error handler of decoding and encoding (``"strict"``, ``"replace"``, ...)."""
        return self._codec.errors

    @errors.setter
    def errors(self, value: str) -> None:
        self._set_codec(Codec(self._codec.encoding, value))
        self._retype_input()

    @property
    def newline(self) -> str | None:
        """The line terminator: ``"\n"``, ``"\r\n"``, or ``None`` (LF or CRLF in, CRLF out)."""
        return self._newline

    @newline.setter
    def newline(self, value: str | None) -> None:
        self._set_newline(check_newline(value))
        self._retype_input()

    def _encode(self, text: object) -> bytes:
        """Characters as bytes, or the error that says why not (nothing is written)."""
        if not isinstance(text, str):
            raise TypeError(f"expected a str, not {type(text).__name__}")
        if self._plain_text:
            return encode_chars(text)
        return self._codec.encode(text)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def timed_out(self) -> bool:
        """True when the most recent reading operation ended because of ``read_timeout``."""
        return self._timed_out

    @property
    def ssl_object(self) -> Any:
        """The live ``ssl.SSLObject`` when TLS is on, else None."""
        return self._transport.ssl_object

    @property
    def alpn_protocol(self) -> str | None:
        """The protocol agreed by ALPN, or None (no TLS, or none agreed)."""
        obj = self._transport.ssl_object
        return None if obj is None else obj.selected_alpn_protocol()

    @property
    def ssl_session(self) -> ssl.SSLSession | None:
        """The TLS session (to offer again with ``ssl_session=``), or None."""
        obj = self._transport.ssl_object
        return None if obj is None else obj.session

    @property
    def session_reused(self) -> bool:
        """True when the TLS handshake resumed an earlier session."""
        obj = self._transport.ssl_object
        return False if obj is None else bool(obj.session_reused)

    @property
    def local_address(self) -> tuple[Any, ...] | str | None:
        """``(host, port)`` of this end (a Unix socket: its path, ``""`` if unnamed), or None
        without a socket."""
        return self._address(lambda s: s.getsockname())

    @property
    def peer_address(self) -> tuple[Any, ...] | str | None:
        """``(host, port)`` of the other end (a Unix socket: its path, ``""`` if unnamed), or
        None without a socket."""
        return self._address(lambda s: s.getpeername())

    def _address(self, get: Any) -> tuple[Any, ...] | str | None:
        self._check_open()
        if self._sock is None:
            return None
        addr = get(self._sock)
        if isinstance(addr, bytes):  # a Linux abstract name
            return os.fsdecode(addr)
        return tuple(addr[:2]) if isinstance(addr, tuple) else str(addr)

    def fileno(self) -> int:
        """The socket's descriptor."""
        self._check_open()
        if self._sock is None:
            raise ValueError("the stream has no socket")
        return self._fd

    def readable(self) -> bool:
        self._check_open()
        return self._direction != "output"

    def writable(self) -> bool:
        self._check_open()
        return self._direction != "input"

    def __repr__(self) -> str:
        if self._closed:
            return f"<SocketStream closed {self._direction} {self._element_type}>"
        tls = " tls" if self._transport.ssl_object is not None else ""
        try:
            where = f" {self.local_address} -> {self.peer_address}"
        except OSError:
            where = ""
        return f"<SocketStream fd={self._fd} {self._direction} {self._element_type}{tls}{where}>"

    # ---- the one input loop --------------------------------------------------------------

    def _extract(self, view: memoryview, wait: bool = True) -> int:
        """Receive into ``view``; 0 at end-of-file, at timeout, or (``wait=False``) would-block.

        The only place input is taken from the transport.  While a receive is under way
        ``_receiving`` is true, until the caller has recorded the count.
        """
        if self._eof:
            return 0
        if self._error is not None:  # found by a probe: reported by the next read
            exc, self._error = self._error, None
            raise exc
        transport = self._transport
        deadline: float | None = None
        waited = blocking = False
        n: int
        if wait and self._poll_first and (self._can_block or not transport.has_decrypted()):
            # The last optimistic try found nothing (a conversation, not a stream of data):
            # wait first, saving a system call that would only say "not yet".  (A transport
            # that can block is plain: it never holds decrypted input.)
            waited = True
            timeout = self._read_timeout
            blocking = (  # _may_block(), inline: the hot path of a conversation
                self._can_block
                and (timeout is None or timeout <= MAX_WAIT)
                and _get_ident() != _main_ident
            )
            if not blocking:
                deadline = deadline_after(self._read_timeout)
                if not self._wait_reading(WANT_READ, deadline):
                    self._timed_out = True
                    return 0
        while True:
            self._receiving = True
            try:
                if blocking:  # the receive waits (read_timeout is its SO_RCVTIMEO)
                    n = transport.recv_wait(view, self._read_timeout)  # type: ignore[attr-defined]
                else:
                    n = transport.recv_into(view)
            except OSError as exc:
                return self._recv_failed(exc)
            if n > 0:
                if n == len(view):
                    self._poll_first = False  # data is streaming in: try before waiting
                return n
            self._receiving = False
            if n == 0:
                self._eof = True
                return 0
            if not wait:
                return -1
            if blocking:  # read_timeout passed in the receive
                self._timed_out = True
                return 0
            if not waited or n == WANT_MORE:
                # A new wait; also after raw bytes taken from the socket without a whole TLS
                # record: every byte taken restarts the clock.
                waited = True
                self._poll_first = True
                if self._may_block():
                    blocking = True
                    continue
                deadline = deadline_after(self._read_timeout)
                n = WANT_READ
            if not self._wait_reading(n, deadline):
                self._timed_out = True
                return 0

    def _recv_failed(self, exc: OSError) -> int:
        """A receive raised ``exc``: 0 if the stream was closed by another thread meanwhile
        (not the peer's doing), else the stream is broken and this raises (a ``SocketError``
        as it is, any other as ``SocketIOError``)."""
        self._receiving = False
        if self._closed:
            return 0
        self._peer_broken = True
        if isinstance(exc, SocketError):
            raise exc
        raise SocketIOError(f"reading from the socket failed: {exc}") from exc

    def _may_block(self) -> bool:
        """True if this wait for input may be the receive itself (``recv_wait``).

        Only on a plain transport that allows it (``_can_block``), with a timeout it can take,
        and outside the main thread: there a signal handler may raise (KeyboardInterrupt) out
        of the receive, where it could not be told apart from one raised just after bytes were
        taken, which would break the stream; a wait in ``poll`` is interrupted harmlessly.
        """
        timeout = self._read_timeout
        return (
            self._can_block
            and (timeout is None or timeout <= MAX_WAIT)
            and _get_ident() != _main_ident
        )

    def _wait_reading(self, want: int, deadline: float | None) -> bool:
        """Wait, on the reading side's poll objects, until ready or the deadline passes."""
        return self._wait(self._rpollers, want, deadline)

    def _wait_writing(self, want: int, deadline: float | None) -> bool:
        """Wait, on the writing side's poll objects, until ready or the deadline passes."""
        return self._wait(self._wpollers, want, deadline)

    def _wait(self, pollers: dict[int, Any], want: int, deadline: float | None) -> bool:
        if self._closed:
            return True  # closed by another thread: the next try reports it
        poller = pollers.get(want)
        if poller is None:
            poller = pollers[want] = make_poller(self._fd, want)
        return wait_poller(poller, deadline)

    def _fill(self, wait: bool = True) -> int:
        """Extract more input into the buffer; the count added (0: end-of-file or timeout).

        Holds the reading lock: one filler at a time.  An exception that lands while a receive
        is under way (after the bytes left the socket, before they are counted) breaks the
        stream; one raised while waiting changes nothing.
        """
        with self._rlock:
            if self._rstate:
                self._read_refused()
            self._timed_out = False
            ib = self._in
            view = ib.writable()
            n: int
            try:
                transport = self._transport
                if (
                    wait
                    and self._poll_first
                    and self._can_block
                    and self._read_timeout == transport._rcvtimeo  # type: ignore[attr-defined]
                    and not self._eof
                    and self._error is None
                    and _get_ident() != _main_ident
                ):
                    # _extract's conversation outside the main thread, inline (the hot path
                    # of a server's reads): one receive that waits, SO_RCVTIMEO already set.
                    self._receiving = True
                    try:
                        n = transport._recv_into(view)  # type: ignore[attr-defined]
                    except BlockingIOError:  # SO_RCVTIMEO passed
                        self._receiving = False
                        self._timed_out = True
                        n = 0
                    except OSError as exc:
                        n = self._recv_failed(exc)
                    if n > 0:
                        ib.commit(n)
                        self._receiving = False
                        if n == len(view):
                            self._poll_first = False  # data is streaming in
                    elif self._receiving:
                        self._receiving = False
                        self._eof = True
                else:
                    n = self._extract(view, wait)
                    if n > 0:
                        ib.commit(n)
                        self._receiving = False
            except BaseException:
                if self._receiving:
                    self._receiving = False
                    self._break("interrupted while receiving: input may have been lost")
                raise
            finally:
                view.release()
            if self._watchers and (n > 0 or self._eof):
                self._input_arrived()
            return n

    def _eof_result(self, eof_error: bool, eof_value: Any) -> Any:
        if eof_error:
            why = " (read timeout)" if self._timed_out else ""
            raise EOFError(f"end of file on {self!r}{why}")
        return eof_value

    # ---- hooks for wait_for_input_streams ----------------------------------------------

    def _buffered_input(self) -> bool:
        """True, without a system call, if a read would not block now."""
        if self._rstate:
            self._read_refused()
        ib = self._in
        if len(ib) or self._eof or self._error is not None:
            return True
        transport = self._transport
        if not transport.has_decrypted():
            return False
        # The TLS engine holds bytes: decrypt what is whole, without the socket, and look.
        # A reader that holds the lock is taking input already: not ready for us.
        if not self._rlock.acquire(blocking=False):
            return False
        try:
            view = ib.writable()
            try:
                n = transport.decrypt_into(view)
                if n > 0:
                    ib.commit(n)
            except OSError as exc:
                self._error = exc
                return True
            finally:
                view.release()
        finally:
            self._rlock.release()
        if n > 0:
            if self._watchers:
                self._input_arrived()
            return True
        return bool(n == -3)  # the peer's close-notify: end-of-file is ready

    def _probe_input(self) -> bool:
        """One non-blocking extraction; True if input (or end-of-file, or an error) is there."""
        if self._buffered_input():
            return True
        try:
            n = self._fill(wait=False)
        except OSError as exc:
            self._error = exc  # the next read reports it
            return True
        return n > 0 or self._eof

    # ---- reading -----------------------------------------------------------------------

    @overload
    def read_char(self) -> str: ...
    @overload
    def read_char(self, eof_error: bool = ..., eof_value: T = ...) -> str | T: ...

    def read_char(self, eof_error: bool = True, eof_value: Any = None) -> Any:
        """Read one character; at end-of-file raise ``EOFError`` or return ``eof_value``."""
        # (Each stream answers this with its buffer's read_char: see _serve_from_buffer.)
        return self._in.read_char(eof_error, eof_value)

    def _read_char_slow(self, eof_error: bool, eof_value: Any) -> Any:
        """``read_char`` when nothing is buffered."""
        char = self._in.maybe_take_char()
        if char is not None:
            return char
        if self._rstate:
            self._read_refused()
        while self._fill():
            char = self._in.maybe_take_char()
            if char is not None:
                return char
        if self._eof:  # an incomplete character at the very end: invalid (or replaced)
            char = self._in.maybe_take_char(True)
            if char is not None:
                return char
        return self._eof_result(eof_error, eof_value)

    def read_char_no_hang(self, eof_error: bool = True, eof_value: Any = None) -> Any:
        """Read a character if one is available now; None if none is (without waiting)."""
        if self._rstate:
            self._read_refused()
        while True:
            char = self._in.maybe_take_char()
            if char is not None:
                return char
            n = self._fill(wait=False)
            if n < 0:
                return None
            if n == 0:
                char = self._in.maybe_take_char(self._eof)
                if char is not None:
                    return char
                return self._eof_result(eof_error, eof_value)

    def peek_char(self, eof_error: bool = True, eof_value: Any = None) -> Any:
        """The next character, left in the stream; at end-of-file as ``read_char``."""
        if self._rstate:
            self._read_refused()
        while True:
            char = self._in.peek_char()
            if char is not None:
                return char
            if not self._fill():
                char = self._in.peek_char(self._eof)
                if char is not None:
                    return char
                return self._eof_result(eof_error, eof_value)

    def unread_char(self, char: str) -> None:
        """Put back ``char``, which must be the character just read."""
        if self._rstate:
            self._read_refused()
        if not (isinstance(char, str) and len(char) == 1):
            raise TypeError(f"unread_char needs a single character, not {char!r}")
        ib = self._in
        if ib.unread_refused():
            raise ValueError("unread_char may put back only one character; nothing was unread")
        if not ib.unread_char(char):
            raise ValueError(f"{char!r} is not the character just read; nothing was unread")
        if self._watchers:
            self._input_arrived()
        self._timed_out = False

    def read_byte(self, eof_error: bool = True, eof_value: Any = None) -> Any:
        """Read one byte as an int of the element type (byte element types only)."""
        if self._byte_table is None:
            if self._rstate:
                self._read_refused()
            raise TypeError("read_byte needs a byte element type; this stream is base-char")
        return self._in.read_byte(eof_error, eof_value)

    def _read_byte_slow(self, eof_error: bool, eof_value: Any) -> Any:
        """``read_byte`` when nothing is buffered."""
        table = self._byte_table
        assert table is not None
        byte = self._in.maybe_take_byte(table)
        if byte is not None:
            return byte
        if self._rstate:
            self._read_refused()
        while self._fill():
            byte = self._in.maybe_take_byte(table)
            if byte is not None:
                return byte
        return self._eof_result(eof_error, eof_value)

    def _take_line(self, kind: int, limit: int = -1) -> Any:
        """One line in ``kind``'s form (see ``InputBuffer.maybe_take_line``), waiting for it.

        At end-of-file (or timeout) what is left is the last line (a str for str kinds, decoded
        before it is consumed); None if nothing is.
        """
        ib = self._in
        while True:
            line = ib.maybe_take_line(kind, limit)
            if line is not None:
                return line
            if not self._fill():
                line = ib.maybe_take_line(kind, limit)  # another reader may have filled
                if line is not None:
                    return line
                return ib.take_rest(kind != BYTES_LINE_NL, self._eof, limit)

    def read_line(self, eof_error: bool = True, eof_value: Any = None) -> tuple[Any, bool]:
        """Read a line: ``(line_without_newline, missing_newline)``.

        ``missing_newline`` is true when the line ended at end-of-file or timeout.  At
        end-of-file with nothing read: ``EOFError``, or ``(eof_value, True)``.
        """
        # (Each stream answers this with its buffer's read_line: see _serve_from_buffer.)
        return self._in.read_line(eof_error, eof_value)  # type: ignore[no-any-return]

    def _read_line_slow(self, eof_error: bool, eof_value: Any) -> tuple[Any, bool]:
        """``read_line`` when no whole line is buffered."""
        if self._rstate:
            self._read_refused()
        return self._line_result(self._take_line(STR_LINE), eof_error, eof_value)

    def _line_end(self, kind: int, eof_error: bool, eof_value: Any) -> Any:
        """``read_line`` (``kind`` STR_LINE) or ``readline`` (the stream's line kind) after the
        buffer's own refill found end-of-file or the read timeout (see
        ``InputBuffer.serve_elements``): what is left is the last line."""
        ib = self._in
        line = ib.maybe_take_line(kind)  # another reader may have filled
        if line is None:
            line = ib.take_rest(kind != BYTES_LINE_NL, self._eof)
        if kind == STR_LINE:
            return self._line_result(line, eof_error, eof_value)
        if line is None:
            return "" if self._text else b""
        if self._text and type(line) is bytes:
            return line.decode("latin-1")
        return line

    def _line_result(self, line: Any, eof_error: bool, eof_value: Any) -> tuple[Any, bool]:
        """What ``read_line`` returns for ``_take_line(STR_LINE)``'s answer ``line``."""
        if line is None:
            return self._eof_result(eof_error, eof_value), True
        if type(line) is str:  # the end of the input, without a newline
            return line, True
        return line  # type: ignore[no-any-return]

    def readline(self, size: int | None = -1) -> Any:
        """Read a line with its newline, in the natural type; empty at end-of-file."""
        if size is not _WHOLE:  # the default (-1, one cached object) skips the checks
            size = check_size(size)
            if size >= 0:
                return self._readline_slow(size)
        try:
            line = self._in.next_line()
        except StopIteration:  # the batch is used up
            line = None
        if not line:  # (no batch, or a byte window used up)
            line = self._in.maybe_take_line(self._line_kind)
            if line is None:
                return self._readline_slow(-1)
        return line

    def _readline_slow(self, size: int) -> Any:
        """``readline`` when no whole line is buffered (or with a size)."""
        if self._rstate:
            self._read_refused()
        line = self._take_line(self._line_kind, size)
        if line is None:
            return "" if self._text else b""
        if self._text and type(line) is bytes:
            return line.decode("latin-1")
        return line

    def read_until(
        self,
        delimiter: str | bytes | bytearray | memoryview,
        eof_error: bool = True,
        eof_value: Any = None,
        *,
        max_length: int | None = None,
    ) -> tuple[Any, bool]:
        """Read up to ``delimiter``: ``(data_before_it, missing_delimiter)``.

        The delimiter (a str, encoded with the stream's encoding, or bytes) is consumed, not
        returned; the data is in the natural type.  ``missing_delimiter`` is true when the
        data ended at end-of-file or timeout instead; with nothing at all read, ``EOFError``
        or ``(eof_value, True)``.  More than ``max_length`` bytes (default: the stream's
        ``max_line_length``) without the delimiter raise ``LineTooLongError``, consuming
        nothing.
        """
        ib = self._in
        text = self._text
        if type(delimiter) is bytes and delimiter and max_length is None:
            # The common case, short: a bytes delimiter, the stream's limit, data buffered
            # (in a batch of pieces after a few in a row, one C call each).
            if delimiter == ib.until_delimiter:
                try:
                    got = ib.next_until()  # None if the batch just ended
                except StopIteration:  # the batch is used up
                    got = None
                if got is not None:
                    return got  # type: ignore[no-any-return]
            data = ib.maybe_take_until(delimiter, text)
            if data is not None:
                return data, False
        if self._rstate:
            self._read_refused()
        delim = as_delimiter(delimiter, self._codec)
        limit = ib.max_line if max_length is None else check_max_length(max_length)
        while True:
            data = ib.maybe_take_until(delim, text, limit)
            if data is not None:
                return data, False
            if not self._fill():
                data = ib.maybe_take_until(delim, text, limit)  # another reader may have filled
                if data is not None:
                    return data, False
                data = ib.take_rest(text, self._eof)
                if data is None:
                    return self._eof_result(eof_error, eof_value), True
                return data, True

    def __iter__(self) -> Iterator[Any]:
        self._check_open()
        return self

    def __next__(self) -> Any:
        try:
            line = self._in.next_line()
        except StopIteration:  # the batch is used up
            line = None
        if not line:  # (no batch, or a byte window used up)
            line = self._in.maybe_take_line(self._line_kind)
            if line is None:
                line = self._readline_slow(-1)
                if not line:
                    raise StopIteration
        return line

    def _read_into(self, view: memoryview) -> int:
        """Fill ``view`` (raw bytes) until full or end-of-file; return how many bytes.

        Either the bytes are in ``view`` and counted, or (the call raised) they are back in
        the buffer: nothing taken is lost.
        """
        ib = self._in
        want = len(view)
        if want < _BYPASS:
            while len(ib) < want and self._fill():
                pass
            return ib.take_into(view)
        # Large: what is buffered, then straight from the socket into the caller's memory.
        # The reading lock is held throughout, so no other reader fills in between.
        with self._rlock:
            # (The take is inside the try, and what it will take is known before: an
            # exception that lands after it returned, its count not yet stored, undoes it.)
            mark = ib.take_point(want)
            total = -1
            try:
                total = ib.take_into(view)
                while total < want:
                    if self._rstate:
                        self._read_refused()
                    self._timed_out = False
                    try:
                        n = self._extract(view[total:])
                        if n > 0:
                            total += n
                            self._receiving = False
                    except BaseException:
                        if self._receiving:
                            self._receiving = False
                            self._break("interrupted while receiving: input may have been lost")
                        raise
                    if n <= 0:
                        break
            except BaseException:
                if total < 0:
                    if not ib.untake(mark):
                        self._break("interrupted while reading: input may have been lost")
                elif self._rstate != BROKEN:
                    ib.unread_bytes(view[:total])
                raise
            if total:
                ib.filled_elsewhere(view[total - 1])
        if self._watchers and self._eof:
            self._input_arrived()
        return total

    def _read_bytes(self, size: int) -> bytes:
        """Up to ``size`` bytes, fewer only at end-of-file; ``size < 0``: all until then."""
        ib = self._in
        if size < 0:
            while self._fill():
                pass
            return ib.take_all()
        data = ib.maybe_take(size)
        if data is not None:
            return data
        if size < _BYPASS:
            while self._fill():
                data = ib.maybe_take(size)
                if data is not None:
                    return data
            return ib.take(size)
        out = bytearray(size)
        n = self._read_into(memoryview(out))
        del out[n:]
        return bytes(out)

    def _read_text(self, size: int) -> str:
        """``_read_bytes`` as characters: ``size`` of them, fewer only at end-of-file."""
        if self._decoding:
            return self._read_chars(size)
        if 0 <= size < _BYPASS:
            data = self._in.maybe_take_text(size)
            if data is not None:
                return data
        return self._read_bytes(size).decode("latin-1")

    def _read_chars(self, size: int) -> str:
        """``_read_text`` for an encoding whose characters are not single bytes."""
        ib = self._in
        if size < 0:
            while self._fill():
                pass
            return ib.take_rest(True, self._eof) or ""
        while True:
            data = ib.maybe_take_text(size)
            if data is not None:
                return data
            if not self._fill():
                data = ib.maybe_take_text(size)  # another reader may have filled
                if data is not None:
                    return data
                return ib.take_rest(True, self._eof, size) or ""

    def read_sequence(self, seq: Any, start: int = 0, end: int | None = None) -> int:
        """Fill ``seq[start:end]`` until it is full or at end-of-file.

        Returns the index of the first element not filled.  ``seq`` may be a bytearray, a
        writable memoryview, an ``array.array`` of bytes (``'B'``, ``'b'``) or of characters
        (``'u'``, ``'w'``), or a list (characters on base-char, integers otherwise).
        """
        if self._rstate:
            self._read_refused()
        if type(seq) is bytearray and start is _ZERO and end is None:
            # The common case (framed payloads), without a memoryview when it is all here.
            n = self._in.maybe_fill(seq)
            if n >= 0:
                return n
            with memoryview(seq) as whole:  # a bytearray's view: writable bytes, all of it
                return self._read_into(whole)
        if isinstance(seq, list):
            start, end = _check_bounds(start, end, len(seq))
            if self._decoding and self._text:
                chars = self._read_chars(end - start)
                seq[start : start + len(chars)] = chars
                return start + len(chars)
            data = self._read_bytes(end - start)
            seq[start : start + len(data)] = decode_list(data, self._element_type)
            return start + len(data)
        if isinstance(seq, array.array) and seq.typecode in ("u", "w"):
            start, end = _check_bounds(start, end, len(seq))
            chars = self._read_text(end - start)
            seq[start : start + len(chars)] = array.array(seq.typecode, chars)
            return start + len(chars)
        try:
            view = memoryview(seq)
        except TypeError:
            raise TypeError(
                "read_sequence needs a bytearray, memoryview, array.array or list, "
                f"not {type(seq).__name__}"
            ) from None
        with view:
            if view.readonly:
                raise TypeError(f"read_sequence needs a writable buffer, not {type(seq).__name__}")
            if view.itemsize != 1 or view.format not in ("B", "b", "c"):
                raise TypeError(
                    f"read_sequence needs a buffer of bytes, not one of format {view.format!r}"
                )
            start, end = _check_bounds(start, end, len(view))
            with view.cast("B") as raw:
                return start + self._read_into(raw[start:end])

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` with raw bytes until it is full or at end-of-file; return the count."""
        if self._rstate:
            self._read_refused()
        with memoryview(buffer) as view, view.cast("B") as raw:
            return self._read_into(raw)

    def read(self, size: int | None = -1) -> Any:
        """Read ``size`` elements (all until end-of-file if negative), in the natural type."""
        if self._rstate:
            self._read_refused()
        if type(size) is not int or size < -1:
            size = check_read_size(size)
        if self._text:
            return self._read_text(size)
        return self._read_bytes(size)

    def read1(self, size: int = -1) -> Any:
        """What is available, waiting only for the first byte; in the natural type."""
        if self._rstate:
            self._read_refused()
        if type(size) is not int:
            size = check_size(size)
        ib = self._in
        if self._decoding and self._text:
            n = -1 if size is None or size < 0 else size
            while n and not ib.has_char():  # wait for one whole character (or the end)
                if not self._fill():
                    return ib.take_rest(True, self._eof, n) or ""
            return ib.take_text(n)
        if size != 0 and not len(ib):
            self._fill()
        data = ib.take(len(ib) if size < 0 else size)
        return data.decode("latin-1") if self._text else data

    def peek(self, size: int = 0) -> bytes:
        """Raw bytes available, not consumed; waits for one unless at end-of-file (b"" then).

        As ``io.BufferedReader.peek``, it may return more or fewer than ``size`` bytes.
        """
        if self._rstate:
            self._read_refused()
        size = check_size(size)
        ib = self._in
        if not len(ib):
            self._fill()
        return ib.peek_bytes(max(size, _PEEK_MAX))

    def readinto1(self, buffer: Any) -> int:
        """Raw bytes into ``buffer``: what is available, waiting only for the first byte."""
        if self._rstate:
            self._read_refused()
        ib = self._in
        with memoryview(buffer) as view, view.cast("B") as raw:
            if not len(ib) and len(raw):
                self._fill()
            return ib.take_into(raw)

    def listen(self) -> bool:
        """True if a character is available without waiting (false at end-of-file)."""
        if self._rstate:
            self._read_refused()
        ib = self._in
        if ib.has_char():
            return True
        # Without waiting: what has arrived, until a whole character is there.
        while self._fill(wait=False) > 0:
            if ib.has_char():
                return True
        return False

    def clear_input(self) -> None:
        """Discard the input that is available now, without waiting."""
        if self._rstate:
            self._read_refused()
        ib = self._in
        dropped = ib.clear()
        while dropped < _CLEAR_INPUT_LIMIT and self._fill(wait=False) > 0:
            dropped += ib.clear()

    # ---- writing -----------------------------------------------------------------------
    #
    # The verbs are the output buffer's methods, bound on each stream (``_serve_output``):
    # their fast path checks no state (a side that is not OPEN holds ``REFUSED``, see
    # ``_output``), and they hand every other case to the ``_write_*_slow`` method here, which
    # checks the state first, then the argument (a bad argument writes nothing), then encodes
    # and appends with no call between loading ``_out.buf`` and the append.

    def _serve_output(self) -> None:
        """The writing verbs are the output buffer's own methods, bound on this stream.

        Not where a subclass overrides a verb: its method is then the one called.
        """
        out = self._out
        out.serve(weakref.ref(self))
        cls = type(self)
        for name in W_VERBS:  # the output buffer's methods (also its C twin's)
            if getattr(cls, name) is getattr(SocketStream, name):
                setattr(self, name, getattr(out, name))

    def _set_wstate(self, state: int) -> None:
        """The writing side's state changes only here (and in ``close``, which may not call):
        a side that is not OPEN holds the refusing buffer, so no verb can add to it."""
        self._wstate = state
        if state:
            self._out.buf = REFUSED

    def write_char(self, char: str) -> None:
        """Write one 8-bit character."""
        # (Each stream answers this with its output buffer's own: see _serve_output.)
        self._out.write_char(char)

    def _write_char_slow(self, char: str) -> None:
        if self._wstate:
            self._write_refused()
        if type(char) is not str or len(char) != 1:
            raise TypeError(f"write_char needs a single character, not {char!r}")
        code = ord(char)
        if code < self._out.char_limit:
            self._append(bytes((code,)))
        else:
            self._append(self._encode(char))

    def write_string(self, string: str, start: int = 0, end: int | None = None) -> None:
        """Write ``string[start:end]``; a character above 255 writes nothing and raises."""
        self._out.write_string(string, start, end)

    def _write_string_slow(self, string: str, start: Any, end: Any) -> None:
        if self._wstate:
            self._write_refused()
        if start or end is not None:
            if not isinstance(string, str):
                raise TypeError(f"write_string needs a str, not {type(string).__name__}")
            start, end = _check_bounds(start, end, len(string))
            string = string[start:end]
        try:
            # (Strict: where it succeeds every error handler gives the same bytes.)
            data = string.encode(self._out.enc)
        except (UnicodeEncodeError, AttributeError):
            data = self._encode(string)
        self._append(data)

    def write_line(self, string: str) -> None:
        """Write ``string`` and a newline."""
        self._out.write_line(string)

    def _write_line_slow(self, string: str) -> None:
        if self._wstate:
            self._write_refused()
        try:
            data = string.encode(self._out.enc)
        except (UnicodeEncodeError, AttributeError):
            data = self._encode(string)
        self._append(data + self._out.eol)

    def write_byte(self, byte: int) -> None:
        """Write one byte given as an int of the element type (byte element types only)."""
        self._out.write_byte(byte)

    def _write_byte_slow(self, byte: int) -> None:
        if self._wstate:
            self._write_refused()
        if self._byte_table is None:
            raise TypeError("write_byte needs a byte element type; this stream is base-char")
        code = check_byte(byte, self._element_type)
        self._append(bytes((code,)))

    def _append(self, data: Any) -> None:
        """Append what a slow path made, the state checked (it may have changed since)."""
        buf = self._out.buf
        try:
            buf += data
        except BufferError:  # stopped by another thread since the check
            self._write_refused()
        if len(buf) >= OUTPUT_BUFFER_SIZE:
            self._flush_out()

    def write_sequence(self, seq: Any, start: int = 0, end: int | None = None) -> None:
        """Write ``seq[start:end]``: a str, bytes-like, ``array.array`` or list/tuple.

        Lists and tuples hold characters or integers of the element type.  The whole slice is
        validated before anything is written.
        """
        self._out.write_sequence(seq, start, end)

    def _write_sequence_slow(self, seq: Any, start: Any, end: Any) -> None:
        if self._wstate:
            self._write_refused()
        cls = type(seq)
        if (cls is bytes or cls is bytearray) and not start and end is None:
            self._append(seq)
            return
        if isinstance(seq, str):
            self._write_string_slow(seq, start, end)
            return
        if isinstance(seq, (list, tuple)):
            start, end = _check_bounds(start, end, len(seq))
            self._append(encode_items(seq[start:end], self._element_type, self._encode))
            return
        if isinstance(seq, array.array) and seq.typecode in ("u", "w"):
            start, end = _check_bounds(start, end, len(seq))
            self._append(self._encode(seq[start:end].tounicode()))
            return
        try:
            view = memoryview(seq)
        except TypeError:
            raise TypeError(
                "write_sequence needs a str, bytes-like object, array.array, list or tuple, "
                f"not {type(seq).__name__}"
            ) from None
        with view:
            if view.itemsize != 1:
                raise TypeError(
                    f"write_sequence needs a buffer of bytes, not one of format {view.format!r}"
                )
            with view.cast("B") as raw:
                start, end = _check_bounds(start, end, len(raw))
                self._append(raw[start:end])

    def write(self, data: Any) -> int:
        """Write a str or bytes-like object; return the number of characters or bytes."""
        return self._out.write(data)

    def _write_slow(self, data: Any) -> int:
        if self._wstate:
            self._write_refused()
        cls = type(data)
        if cls is bytes or cls is bytearray:
            self._append(data)
            return len(data)
        if isinstance(data, str):
            self._write_string_slow(data, 0, None)
            return len(data)
        with memoryview(data) as view, view.cast("B") as raw:
            self._append(raw)
            return len(raw)

    def force_output(self) -> None:
        """Send buffered output now: all of it, within ``write_timeout``."""
        # (Also the stream's ``_flush_out``, one frame: holds the writing lock, one flusher at
        # a time.  The buffer is taken whole, writers go on appending to a fresh one; what is
        # not sent when this raises goes back in front.  An exception that lands while a send
        # is under way, its count unknown, breaks the stream.)
        with self._wlock:
            if self._wstate:
                self._write_refused()
            self._flush_out_locked()

    _flush_out = force_output

    def _flush_out_locked(self) -> None:
        out = self._out
        fresh = bytearray()
        transport = self._transport
        plain = type(transport) is PlainTransport
        sent = 0
        data = out.buf
        if data is REFUSED:  # stopped by another thread since the caller's check
            self._write_refused()
        # Taken with no call and no jump between this load and the store (where a writer in
        # another thread, a signal handler or a close could run), nor between the store and
        # the ``try`` that puts back what is not sent (so everything the ``try`` needs is
        # loaded above: ``type()`` is a call, where a signal handler runs); never the refusing
        # buffer.
        if out.buf is data:
            out.buf = fresh
        elif out.buf is REFUSED:
            self._write_refused()
        else:  # cleared by another thread meanwhile: what was there went with it
            data = fresh
        try:
            if data:
                total = len(data)
                if total <= _SEND_AT_ONCE:
                    # Small output (the usual case): one send from the bytearray itself; on a
                    # plain transport the socket's own (PlainTransport.send, inline).
                    self._sending = True
                    if plain:
                        try:
                            n = transport._send(data, MSG_DONTWAIT)  # type: ignore[attr-defined]
                        except BlockingIOError:
                            n = WANT_WRITE
                    else:
                        n = transport.send(data)  # type: ignore[arg-type]
                    if n > 0:
                        sent = n
                    self._sending = False
                deadline: float | None = None
                waited = False
                if sent < total:
                    with memoryview(data) as view:
                        while sent < total:
                            self._sending = True
                            n = transport.send(view[sent:])
                            if n >= 0:
                                sent += n
                                self._sending = False
                                continue
                            self._sending = False
                            if not waited:
                                deadline = deadline_after(self._write_timeout)
                                waited = True
                            if not self._wait_writing(n, deadline):
                                raise WriteTimeoutError(
                                    self._write_timeout or 0.0, sent, total - sent
                                )
            if plain:  # (a plain transport holds nothing back: its flush is 0)
                return
            self._sending = True
            while (n := transport.flush()) < 0:  # TLS records produced but not yet sent
                self._sending = False
                if not self._wait_writing(n, deadline_after(self._write_timeout)):
                    raise WriteTimeoutError(self._write_timeout or 0.0, sent, len(data) - sent)
                self._sending = True
            self._sending = False
        except BaseException as exc:
            # First (no call or jump before it, where another interrupt could land): what was
            # not sent goes back in front of whatever was written meanwhile, unless the side
            # stopped meanwhile (its buffer is then the refusing one, never sent).
            back = data[sent:]
            if back:
                buf = out.buf
                if buf is not REFUSED:
                    buf[0:0] = back
            if self._sending:
                self._sending = False
                if not isinstance(exc, OSError):
                    self._break("interrupted while sending: output may have been lost")
            if isinstance(exc, SocketError) or not isinstance(exc, OSError):
                raise
            if self._closed:  # closed by another thread while we waited
                raise ValueError("I/O operation on a closed stream") from exc
            self._peer_broken = True
            raise SocketIOError(f"writing to the socket failed: {exc}") from exc

    def flush(self) -> None:
        """Send buffered output now; on an input-only stream, nothing (as in ``io``)."""
        if self._direction == "input" or self._wstate == SHUT:
            self._check_open()
            return
        self._flush_out()

    def finish_output(self) -> None:
        """Send buffered output and return once all of it is handed to the kernel."""
        self._flush_out()

    def clear_output(self) -> None:
        """Drop output that has not been sent."""
        if self._wstate:
            self._write_refused()
        fresh = bytearray()
        out = self._out
        if out.buf is not REFUSED:  # (stopped by another thread since the check)
            out.buf = fresh

    def shutdown_output(self) -> None:
        """Flush, then half-close: the peer reads end-of-file; this side can still read."""
        self._check_open()
        if self._direction != "input":
            self._flush_out()
            self._send_close_notify()
            self._set_wstate(SHUT)
        if self._sock is not None:
            try:
                self._sock.shutdown(_socket.SHUT_WR)
            except OSError as exc:
                raise SocketIOError(f"shutdown of output failed: {exc}") from exc

    # ---- TLS on and off: the engine is _tls's, the waiting is the stream's -----------------

    def _drive(self, step: Any, deadline: float | None) -> bool:
        """Run a non-blocking TLS step until it returns 0; False if the deadline passed first."""
        while True:
            r = step()
            if r == 0:
                return True
            if r < 0 and not self._wait_writing(r, deadline):
                return False

    def _start_tls(self, tls: TLSOptions) -> None:
        """Start TLS on this plain stream and complete the handshake (STARTTLS).

        Pending output is flushed as plain text first; input already read ahead goes to the
        engine, never to the application (RFC 3207 section 7).  Any failure closes the stream:
        the connection is in an unknown state.
        """
        sock = self._sock
        assert sock is not None
        if not isinstance(tls.ssl_ctx, ssl.SSLContext):
            keyword(tls.ssl_ctx)  # an insecure or unknown keyword changes nothing
        try:
            side = tls.ssl_side
            ctx = stream_context(tls.ssl_ctx, side, tls.ctx_configure_callback, tls.alpn_protocols)
            server_hostname = None
            if side == "client":
                server_hostname = tls.tlsext_host_name
                if server_hostname is None and ctx.check_hostname:
                    # Verify against the address we are connected to (an IP SAN).
                    server_hostname = _peer_ip(sock)
            if self._direction != "input":
                self._flush_out()  # after the checks above: a refusal sends nothing
            read_ahead = b""
            if self._direction != "output":
                ib = self._in
                read_ahead = ib.take_all()
                ib.forbid_unread()  # a character read before TLS cannot come back after it
            self._transport.close()
            self._can_block = False
            sock.setblocking(False)  # the TLS engine's receives and sends must never block
            transport = _tls.start(
                sock, ctx, side != "client", server_hostname, read_ahead, tls.ssl_session
            )
            self._transport = transport
            if tls.ssl_configure_callback is not None:
                tls.ssl_configure_callback(transport.ssl_object)
            try:
                done = self._drive(transport.handshake_step, deadline_after(tls.handshake_timeout))
            except SSLFailure:
                raise
            except OSError as exc:
                raise SSLFailure(f"TLS handshake failed: {exc}") from exc
            if not done:
                assert tls.handshake_timeout is not None
                raise SSLHandshakeTimeout(tls.handshake_timeout)
            wake_reader, wake_writer = transport.wakeups
            if wake_reader >= 0:  # a protocol that renegotiates: the two sides wake each other
                self._rpollers[WANT_READ] = make_poller(self._fd, WANT_READ, wake_reader)
                self._wpollers[WANT_READ] = make_poller(self._fd, WANT_READ, wake_writer)
            if self._watchers:
                self._input_arrived()  # the engine may hold input that came with the handshake
        except BaseException:
            self.close(abort=True)
            raise

    def _stop_tls(self) -> None:
        """End TLS (close-notify both ways); the stream is plain again, nothing lost."""
        self._check_open()
        transport = self._transport
        if not isinstance(transport, _tls.TLSTransport):
            raise ValueError("the stream has no TLS to detach")
        if self._direction != "input":
            self._flush_out()
        if not self._drive(transport.close_notify_step, deadline_after(self._write_timeout)):
            raise SSLFailure("TLS close-notify could not be sent within write_timeout")
        if self._direction != "output":
            while not transport.peer_closed:
                if self._fill() == 0 and not transport.peer_closed:
                    if self._timed_out:
                        raise SSLFailure(
                            "the peer's TLS close-notify did not come within read_timeout"
                        )
                    raise SSLFailure("the connection ended before the peer's TLS close-notify")
            # Decrypted before the close-notify and not read yet, then the plain bytes after it.
            ib = self._in
            ib.feed(transport.take_held())
            ib.feed(transport.leftover())
        else:
            # Output-only: nothing may be handed to the application; just wait for the alert.
            scratch = memoryview(bytearray(_tls.RAW_CHUNK))
            while not transport.peer_closed:
                if self._extract(scratch) == 0 and not transport.peer_closed:
                    raise SSLFailure("the peer's TLS close-notify did not come")
        self._install(self._sock)
        if self._watchers:
            self._input_arrived()

    def _send_close_notify(self) -> None:
        """Send our close-notify if TLS is on (for ``close`` and ``shutdown_output``)."""
        transport = self._transport
        if isinstance(transport, _tls.TLSTransport) and not transport.notify_sent:
            try:
                self._drive(transport.close_notify_step, deadline_after(self._write_timeout or 5.0))
            except SocketError:
                raise
            except OSError as exc:
                raise SocketIOError(f"sending TLS close-notify failed: {exc}") from exc

    # ---- closing -----------------------------------------------------------------------

    def close(self, abort: bool = False) -> None:
        """Flush (unless ``abort``), end TLS (unless ``abort``), close the socket.  Idempotent.

        Works from any thread: a thread blocked reading or writing this stream is woken and
        sees it closed.  If another thread is flushing right now, nothing more is flushed.
        """
        if self._closed:
            return
        error: BaseException | None = None
        try:
            # Flush only if no other thread is writing: its wait must not be shared.
            if not abort and not self._peer_broken and self._wlock.acquire(blocking=False):
                try:
                    if self._wstate == OPEN:
                        try:
                            self._flush_out_locked()
                        except OSError as exc:
                            error = exc
                    if error is None:
                        try:
                            self._send_close_notify()
                        except OSError:
                            pass  # the peer is gone; closing is what the caller wants
                finally:
                    self._wlock.release()
        finally:
            # No call before the socket is taken, and its close in a finally of its own: an
            # interrupt landing here cannot leave the descriptor open.
            self._closed = True
            self._rstate = self._wstate = CLOSED
            self._out.buf = REFUSED  # (as _set_wstate does: no call may come before the socket)
            sock, self._sock = self._sock, None
            try:
                if self._watchers:
                    # Told while the descriptor is still open and quiet: a waiter unregisters
                    # it before the shutdown can wake it, and before its number can be reused.
                    self._socket_changed()
                if sock is not None:
                    try:
                        # Wakes any thread blocked in poll() on this socket before the fd goes.
                        sock.shutdown(_socket.SHUT_RDWR)
                    except OSError:
                        pass
            finally:
                if sock is not None:
                    sock.close()
                self._transport.close()
                self._transport = NoTransport()
                self._in.clear()
                self._watchers = ()
        if error is not None:
            raise error

    def __enter__(self) -> SocketStream:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# With the compiled twin, peek_char, unread_char, listen, read_until and iteration are C
# (``_speedups.StreamBase``); the methods above are then ``_py_<verb>``, what the C calls for
# whatever it does not serve.
twin_stream(SocketStream)


def attach_ssl(
    stream: SocketStream,
    *,
    ssl_ctx: Any = True,
    ssl_side: str = "server",
    ctx_configure_callback: Any = None,
    ssl_configure_callback: Any = None,
    handshake_timeout: float | None = None,
    tlsext_host_name: str | None = None,
    alpn_protocols: Any = None,
    ssl_session: ssl.SSLSession | None = None,
) -> None:
    """Start TLS on a plain stream (STARTTLS) and complete the handshake.

    Pending output is flushed first; input the stream already read ahead goes to TLS.  Bad
    arguments change nothing.  On failure (``SSLFailure``; a handshake timeout is also a
    ``TimeoutError``) or if a callback raises, the stream is closed: its connection is in an
    unknown state.
    """
    stream._check_open()
    if stream._transport.ssl_object is not None:
        raise ValueError("TLS is already on for this stream")
    if stream._sock is None:
        raise ValueError("the stream has no socket to start TLS on")
    stream._start_tls(
        TLSOptions.make(
            ssl_ctx=ssl_ctx,
            ssl_side=ssl_side,
            ctx_configure_callback=ctx_configure_callback,
            ssl_configure_callback=ssl_configure_callback,
            handshake_timeout=handshake_timeout,
            tlsext_host_name=tlsext_host_name,
            alpn_protocols=alpn_protocols,
            ssl_session=ssl_session,
        )
    )


def detach_ssl(stream: SocketStream) -> None:
    """End TLS (close-notify both ways) and leave a plain stream.

    Application data that came before the peer's close-notify stays readable, whether it was
    in the stream's buffer or still in the TLS engine, and so do the bytes that follow it, now
    as plain input.  Waiting for the peer's close-notify is bounded by the stream's
    ``read_timeout``; if it does not come, ``SSLFailure`` is raised and the stream stays as it
    was (TLS, our close-notify sent).
    """
    stream._stop_tls()


__all__ = ["SocketStream", "StreamWatcher", "attach_ssl", "detach_ssl"]

"""StreamWaiter: a persistent set of streams to wait on (the engine of ``_multiwait`` too).

Operations
    ``add`` registers a stream's descriptor once with an epoll object (``poll(2)`` where there is
    no epoll) and subscribes the waiter to the stream (the observer seam of ``_stream``:
    ``_watch``, ``stream_input``, ``stream_changed``).  ``wait`` then costs one ``epoll_wait``
    plus Python work for the streams that are, or just were, ready; nothing is asked of the
    idle ones.

Readiness (the rules of ``wait_for_input_streams``)
    A stream is ready when a read would not block: input in its buffer or its TLS engine, data
    on its socket that is input once decrypted, end-of-file, an error, or no socket at all.
    A readable descriptor is only a hint: the stream makes one non-blocking extraction
    (``_probe_input``) and is ready only if that leaves input, end-of-file or an error, so TLS
    records without data (TLS 1.3 session tickets) do not count, and a stream reported ready
    does not block on its next read.

How a wait costs O(ready), not O(N)
    Input can sit in a stream's memory with its socket quiet (a read that received more than
    it returned, ``unread_char``, a TLS record holding several reads' worth).  Rather than ask
    every stream, the waiter is told: a stream calls ``stream_input`` whenever input lands in
    its memory, and the waiter puts it in ``_dirty``.  ``wait`` asks only the dirty streams and
    those that held input at the last wait (``_holding``), keeps the ones that still do, and
    starts fresh sets (a set never shrinks, and iterating one sized for every stream would cost
    O(N) again).  Then one ``epoll_wait``: zero timeout when something is ready already (to find
    every other ready stream), else the caller's timeout.

Threads
    One thread waits on a waiter at a time (a second is a ``RuntimeError``).  ``add``,
    ``discard`` and ``close``, and closing or re-socketing a member stream, may happen in any
    thread, also while another waits: they take ``_lock``, and a blocked wait is woken through
    an eventfd (made on the first wait that blocks) when a member stream gains input from another
    thread (another waiter's probe, say) or is closed.  Probes are made under one module lock
    (``probe_lock``), so two waits sharing a stream never extract from it at once.

Closing
    A stream closed while in the set leaves it at once: the stream tells its watchers before its
    socket is closed, so the descriptor is unregistered while still open (never the epoll trap of
    a closed descriptor number reused by a new socket).  ``replace_socket`` and ``socket = ...``
    move the registration to the new socket.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, Final

from ._stream import SocketStream
from ._wait import MAX_WAIT as _MAX_WAIT
from ._wait import Poller as _Poller
from ._wait import Wakeup as _Wakeup
from ._wait import check_timeout as _check_timeout

monotonic = time.monotonic

#: The events the fast path asks ``epoll_wait`` for: more ready than this sends the call the
#: full way.  (CPython allocates the event array per call: one sized for 5,000 streams costs a
#: measurable part of a warm call.)
_FAST_EVENTS: Final = 64

#: Guards every probe, in every waiter and in ``wait_for_input_streams``: two waits that share a
#: stream never extract from it at the same time.  Probes never block, so it is held briefly.
probe_lock: Final = threading.Lock()


def check_timeout(timeout: object) -> float | None:
    """A wait's timeout: ``None`` or a non-negative real number (infinity means ``None``)."""
    return _check_timeout(timeout, "timeout", poll=True)


def check_stream(stream: object, what: str) -> SocketStream:
    """A readable, open ``SocketStream``, or the error naming ``what``."""
    if not isinstance(stream, SocketStream):
        raise TypeError(f"{what} must be a SocketStream, not {stream!r}")
    if stream.closed:
        raise ValueError(f"{what} is closed: {stream!r}")
    if stream.direction == "output":
        raise io.UnsupportedOperation(f"{what} was opened for output only: {stream!r}")
    return stream


def probe(stream: SocketStream) -> bool:
    """One non-blocking look at ``stream``: True if a read would not block now."""
    with probe_lock:
        try:
            return stream._probe_input()
        except ValueError:  # closed by another thread: its next operation will not block
            return True


def _buffered(stream: SocketStream) -> bool:
    try:
        return stream._buffered_input()
    except ValueError:  # closed by another thread just now: a read would not block
        return True


class StreamWaiter:
    """A persistent set of streams to wait on again and again (see ``wait``).

    ``StreamWaiter(streams)`` adds each stream.  ``add``/``discard`` change the set, ``wait``
    returns the streams ready for input, in the order they were added.  A stream closed while
    in the set leaves it.  ``close()`` (or leaving a ``with`` block) empties the set and
    releases the waiter's descriptors; the streams stay open.  The cost of ``wait`` grows with
    the number of ready streams, not with the size of the set.
    """

    def __init__(self, streams: Iterable[SocketStream] = ()) -> None:
        if isinstance(streams, (SocketStream, str, bytes, bytearray)) or not isinstance(
            streams, Iterable
        ):
            raise TypeError(f"streams must be an iterable of SocketStream, not {streams!r}")
        self._lock = threading.Lock()  # guards membership, _dirty and the registrations
        self._wait_lock = threading.Lock()  # held by the one thread in wait()
        # stream -> sequence number (insertion order: iteration is in the order added)
        self._members: dict[SocketStream, int] = {}
        self._seq = 0
        self._sock_of: dict[SocketStream, Any] = {}  # the socket object registered per stream
        self._fd_of: dict[SocketStream, int] = {}  # the descriptor registered per stream
        self._by_fd: dict[int, list[SocketStream]] = {}
        self._no_socket: set[SocketStream] = set()  # members without a socket: always ready
        self._dirty: set[SocketStream] = set()  # may hold input in memory (told, not asked)
        self._holding: tuple[SocketStream, ...] = ()  # held input at the last wait
        # The one stream of _holding when nothing else can be ready in memory (nothing told
        # since, no stream without a socket): ``_fast`` then only asks it and the kernel.  Set
        # by ``_scan`` under ``_lock``; every change of the set or news from a stream clears it.
        self._fast_stream: SocketStream | None = None
        self._left: list[SocketStream] = []  # members closed since the last wait began
        self._blocked = False  # a wait is in the kernel: wake it to tell it something
        self._wakeup: _Wakeup | None = None
        self._poller: _Poller | None = _Poller()
        #: Set when a member stream is closed (``_multiwait``'s cache uses it).
        self.lost_member = False
        try:
            for i, s in enumerate(streams):
                self._add(s, f"streams[{i}]")
        except BaseException:
            self.close()
            raise

    # ---- the set ---------------------------------------------------------------------------

    def add(self, stream: SocketStream) -> None:
        """Add ``stream`` (once: adding it again changes nothing).

        Raises ``ValueError`` for a closed stream, ``io.UnsupportedOperation`` for an
        output-only one, ``TypeError`` for anything else than a ``SocketStream``.
        """
        self._add(stream, "stream")

    def _add(self, stream: object, what: str) -> None:
        s = check_stream(stream, what)
        with self._lock:
            poller = self._poller
            if poller is None:
                raise ValueError("the StreamWaiter is closed")
            if s in self._members:
                return
            self._register(s, poller)
            self._members[s] = self._seq
            self._seq += 1
            self._dirty.add(s)  # it may hold input already
            self._fast_stream = None
            s._watch(self)
        if s.closed:  # closed by another thread meanwhile: it leaves at once
            self.stream_changed(s)

    def _register(self, s: SocketStream, poller: _Poller) -> None:
        """Register ``s``'s socket (the caller holds ``_lock``)."""
        sock = s.socket
        self._sock_of[s] = sock
        if sock is None:
            self._no_socket.add(s)
            return
        fd = sock.fileno()
        streams = self._by_fd.get(fd)
        if streams is None:
            poller.register(fd)
            self._by_fd[fd] = [s]
        else:  # two streams on one descriptor: watch it once
            streams.append(s)
        self._fd_of[s] = fd

    def _unregister(self, s: SocketStream, poller: _Poller | None) -> None:
        """Undo ``_register`` (the caller holds ``_lock``)."""
        self._sock_of.pop(s, None)
        self._no_socket.discard(s)
        fd = self._fd_of.pop(s, -1)
        streams = self._by_fd.get(fd)
        if streams is not None:
            streams.remove(s)
            if not streams:
                del self._by_fd[fd]
                if poller is not None:
                    poller.unregister(fd)

    def discard(self, stream: SocketStream) -> None:
        """Remove ``stream`` from the set; a stream not in it is fine."""
        with self._lock:
            if self._members.pop(stream, None) is None:
                return
            self._fast_stream = None
            self._unregister(stream, self._poller)
            self._dirty.discard(stream)
        stream._unwatch(self)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, stream: object) -> bool:
        return stream in self._members

    def __iter__(self) -> Iterator[SocketStream]:
        """The streams in the order they were added (a snapshot)."""
        return iter(list(self._members))

    def __repr__(self) -> str:
        state = "closed" if self._poller is None else f"{len(self._members)} streams"
        return f"<sockstream.StreamWaiter {state}>"

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._poller is None

    def close(self) -> None:
        """Empty the set and release the waiter's descriptors; the streams stay open."""
        with self._lock:
            members = list(self._members)
            self._members.clear()
            self._sock_of.clear()
            self._fd_of.clear()
            self._by_fd.clear()
            self._no_socket.clear()
            self._dirty = set()
            self._holding = ()
            self._fast_stream = None
            poller, self._poller = self._poller, None
            if self._blocked and self._wakeup is not None:
                self._wakeup.signal()  # the waiting thread closes the wakeup on its way out
            elif self._wakeup is not None:
                self._wakeup.close()
                self._wakeup = None
        if poller is not None:
            poller.close()
        for s in members:
            s._unwatch(self)

    def __enter__(self) -> StreamWaiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._poller is not None:
                self.close()
        except Exception:  # interpreter shutdown
            pass

    # ---- what the streams tell us (StreamWatcher) ----------------------------------------

    def stream_input(self, stream: SocketStream) -> None:
        with self._lock:
            self._dirty.add(stream)
            self._fast_stream = None
            if self._blocked and self._wakeup is not None:
                self._wakeup.signal()

    def stream_changed(self, stream: SocketStream) -> None:
        with self._lock:
            if stream not in self._members:
                return
            self._fast_stream = None
            poller = self._poller
            if stream.closed:
                del self._members[stream]
                self._unregister(stream, poller)
                self._dirty.discard(stream)
                self._left.append(stream)
                self.lost_member = True
            elif stream.socket is not self._sock_of.get(stream):
                self._unregister(stream, poller)
                if poller is not None:
                    try:
                        self._register(stream, poller)
                    except OSError:  # cannot watch the new socket: let a probe report it
                        self._no_socket.add(stream)
                self._dirty.add(stream)
            else:
                self._dirty.add(stream)  # same socket, new transport (detach_ssl)
            if self._blocked and self._wakeup is not None:
                self._wakeup.signal()
        if stream.closed:
            stream._unwatch(self)

    # ---- waiting ---------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> list[SocketStream]:
        """The streams ready for input, in the order added; ``[]`` after ``timeout`` seconds.

        ``timeout=None`` waits without limit, ``0`` polls.  A stream is ready when a read would
        not block (input buffered or pending in TLS, data on the socket, end-of-file, an
        error); TLS records without data do not count.  Streams closed since they were added
        have left the set and are not returned.  An empty set with no timeout is a
        ``ValueError`` (it would wait forever); two threads waiting at once a ``RuntimeError``.
        """
        if timeout is not None:
            t = type(timeout)
            if not ((t is float or t is int) and timeout >= 0):
                check_timeout(timeout)  # raises unless it is another kind of real number
        ready = self._fast()
        if ready is not None:
            return ready
        seconds = None if timeout is None else check_timeout(timeout)
        deadline = None if seconds is None else monotonic() + seconds
        return self._wait(deadline, None, report_closed=False)

    def _fast(self, report_closed: bool = False) -> list[SocketStream] | None:
        """The common case in O(1), or None when the full wait is needed.

        Nothing new was told, and the one stream that held input at the last wait still does:
        one ``epoll_wait`` without waiting finds any other ready stream.
        """
        s = self._fast_stream
        if s is None:
            return None
        if not self._wait_lock.acquire(False):
            raise RuntimeError("another thread is already waiting on this StreamWaiter")
        try:
            try:
                if not s._buffered_input() or self._fast_stream is not s:
                    return None
            except ValueError:  # closed by another thread just now
                return None
            poller = self._poller
            if poller is None:
                return None
            found = poller.poll(0, _FAST_EVENTS)
            if not found:
                return [s]
            if len(found) >= _FAST_EVENTS:
                return None  # perhaps more: the full wait finds them all
            ready = {s}
            self._confirm(found, ready, report_closed)
            return self._in_order(ready)
        finally:
            self._wait_lock.release()

    def _wait(
        self, deadline: float | None, wait_function: Any, *, report_closed: bool
    ) -> list[SocketStream]:
        """The engine of ``wait`` and ``wait_for_input_streams`` (``report_closed``: members
        closed during the call count as ready; ``wait_function``: checked every 50 ms)."""
        if not self._wait_lock.acquire(False):
            raise RuntimeError("another thread is already waiting on this StreamWaiter")
        try:
            poller = self._poller
            if poller is None:
                raise ValueError("the StreamWaiter is closed")
            if self._left:
                self._left = []
            ready = self._scan(report_closed)
            # One poll without waiting: with input buffered somewhere it finds every other
            # ready stream; otherwise it is the cheap answer before blocking.
            self._confirm(poller.wait(0), ready, report_closed)
            if ready:
                return self._in_order(ready)
            if deadline is None and wait_function is None and not self._members:
                raise ValueError(
                    "the StreamWaiter is empty and there is no timeout: it would wait forever"
                )
            if wait_function is not None and wait_function():
                return []
            if deadline is not None and monotonic() >= deadline:
                return []
            while True:
                found = self._block(poller, deadline, wait_function, report_closed)
                if found is None:
                    return []
                ready = self._scan(report_closed)
                self._confirm(found, ready, report_closed)
                if report_closed and self._left:
                    ready.update(self._left)
                if ready:
                    return self._in_order(ready)
        finally:
            self._wait_lock.release()

    def _confirm(
        self, found: list[tuple[int, int]], ready: set[SocketStream], report_closed: bool
    ) -> None:
        """Probe the streams behind the descriptors that fired; add the ready ones.

        A member closed by another thread that has not told us yet (its descriptor may fire
        as it is shut down) counts only with ``report_closed``: for ``wait`` it has left.
        """
        by_fd = self._by_fd
        for fd, _ in found:
            streams = by_fd.get(fd)
            if streams is not None:
                for s in streams:
                    if s not in ready and probe(s) and (report_closed or not s.closed):
                        ready.add(s)

    def _in_order(self, ready: set[SocketStream]) -> list[SocketStream]:
        if len(ready) == 1:
            return list(ready)
        order = self._members
        return sorted(ready, key=lambda s: order.get(s, -1))

    def _scan(self, report_closed: bool) -> set[SocketStream]:
        """Members ready without a system call: only the told and the holding are asked."""
        holding = self._holding
        if self._dirty:
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            candidates: Any = dirty.union(holding)
        else:
            candidates = holding
        self._fast_stream = None
        if not candidates:
            self._holding = ()
            return set(self._no_socket)
        members = self._members
        try:
            ready = {s for s in candidates if s._buffered_input() and s in members}
        except ValueError:  # one was closed by another thread just now
            ready = {
                s
                for s in candidates
                if _buffered(s) and s in members and (report_closed or not s.closed)
            }
        self._holding = tuple(ready)
        if len(ready) == 1:
            with self._lock:  # only if nothing was told meanwhile (see _fast_stream)
                if not self._dirty and not self._no_socket and ready <= self._members.keys():
                    self._fast_stream = self._holding[0]
        if self._no_socket:
            return ready | self._no_socket
        return set(ready)

    def _block(
        self,
        poller: _Poller,
        deadline: float | None,
        wait_function: Any,
        report_closed: bool,
    ) -> list[tuple[int, int]] | None:
        """Wait in the kernel until a descriptor fires (its events) or the deadline (None)."""
        wakeup = self._wakeup
        if wakeup is None:
            wakeup = self._wakeup = _Wakeup()
            poller.register(wakeup.fd)
        wfd = wakeup.fd
        interval = 0.05 if wait_function is not None else None
        try:
            while True:
                if self._poller is None:
                    raise ValueError("the StreamWaiter was closed while waiting")
                if deadline is None:
                    timeout = interval
                else:
                    timeout = max(0.0, deadline - monotonic())
                    if interval is not None:
                        timeout = min(timeout, interval)
                if timeout is not None and timeout > _MAX_WAIT:
                    timeout = _MAX_WAIT
                with self._lock:
                    told = bool(self._dirty) or (report_closed and bool(self._left))
                    self._blocked = not told
                if told:
                    return []
                try:
                    events = poller.wait(timeout)
                finally:
                    with self._lock:
                        self._blocked = False
                if self._poller is None:  # closed by another thread while we waited
                    raise ValueError("the StreamWaiter was closed while waiting")
                mine = [e for e in events if e[0] != wfd]
                if len(mine) != len(events):
                    # Drained only when it fired: signals come only while we are blocked, so
                    # one that came after the kernel returned leaves it readable, and the next
                    # wait that blocks finds it, drains it, and looks at what it was told.
                    wakeup.drain()
                    if self._dirty or (report_closed and self._left):
                        return mine
                if mine:
                    return mine
                if deadline is not None and monotonic() >= deadline:
                    return None
                if wait_function is not None and wait_function():
                    return None
        finally:
            if self._poller is None and self._wakeup is not None:
                self._wakeup.close()
                self._wakeup = None


__all__ = ["StreamWaiter"]

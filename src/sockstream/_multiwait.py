"""Waiting on many streams at once: ``wait_for_input_streams`` (LispWorks COMM).

Operations
    A stream is *ready* when a read would not block: its input buffer holds bytes, its TLS engine
    holds decrypted or undecrypted bytes, the peer closed, the socket is in error, or the stream
    has no socket at all (reads see end-of-file).  The stream answers the first three without a
    system call (``_buffered_input``); the socket is asked through the kernel.  Readiness is
    *confirmed*, never guessed: for each readable descriptor the stream makes one non-blocking
    extraction (``_probe_input``), so TLS 1.3 session tickets alone do not end a wait.

Two ways to wait
    * Lists of at least ``CACHE_MIN_STREAMS`` streams (with epoll), and shorter lists waited on
      twice in a row, go through a ``StreamWaiter`` (``_waiter``) that the calling thread keeps
      for its last list: calling again with the same streams costs one comparison of the list
      with the cache's copy (``same_list``: a memcmp of the two item arrays with the extension,
      ``==``'s C loop without; none for the same tuple), the Python work for
      the streams that hold input, and one ``epoll_wait``.  The waiter hears from the streams
      themselves (the observer seam of ``_stream``) when input lands in their memory, when a
      socket is replaced (the registration follows it) and when one is closed: the cache is
      then dropped and the next call re-checks the list.  Its descriptors are released at once
      when the thread that owns the cache closes the stream between two calls, else by that
      thread's call on its way out or its next call (or when the thread ends): only the owner
      closes the cache's epoll, so its warm call takes no lock.
    * The warm call (same list, nothing told, the one stream that held input at the last call
      still does) is inline in ``wait_for_input_streams``: the list comparison, ``len`` of that
      stream's buffer, and one ``epoll_wait(0, 1)``; anything else goes the full way.
    * A short list seen for the first time uses a one-shot ``poll(2)`` object, which holds no
      descriptor between calls (a program that waits on ever-changing small lists makes no
      epoll set per call).  When such a call is about to block, it subscribes to its streams
      for the duration, so that another thread's probe that moves input from a socket into a
      stream (the descriptor then goes quiet) wakes it through an eventfd.

Several threads
    Probes are made under ``_waiter.probe_lock``, so two threads waiting on the same stream never
    extract from it at once.  Each thread has its own cache (``threading.local``), so two threads
    never share an epoll; a ``wait_function`` that itself waits uses the one-shot path.  Input
    that another thread *reads* (not through a wait) is the caller's business, as in LispWorks.
    A stream closed by another thread during the wait is reported ready: its next operation
    raises ``ValueError`` at once rather than blocking.

Decisions where API.md is silent (also in docs/waiting.md)
    An output-only stream is ``io.UnsupportedOperation`` (as reading it would be), a closed one
    ``ValueError``; an empty list with neither ``timeout`` nor ``wait_function`` is a
    ``ValueError`` (it would wait forever); a stream listed twice is returned twice.
    ``wait_for_input_streams_returning_first`` also takes ``wait_function`` (LispWorks does).
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Callable, Iterable
from operator import methodcaller
from typing import Any, Final

from ._impl import _speedups
from ._stream import SocketStream
from ._wait import HAS_EPOLL as _HAS_EPOLL
from ._wait import MAX_WAIT, POLL_READ, poll_ready, read_poller
from ._wait import Wakeup as _Wakeup
from ._waiter import StreamWaiter, check_stream, check_timeout, probe

monotonic = time.monotonic

#: How often a ``wait_function`` is called while waiting, in seconds.  LispWorks calls it
#: "periodically"; 50 ms keeps a cancellation responsive at a negligible cost.
WAIT_FUNCTION_INTERVAL: Final = 0.05
#: Lists at least this long get a cached epoll registration on their first call; a shorter
#: list gets one when it is waited on twice in a row (the first call is one-shot: it leaves no
#: descriptor open, and a list that changes every call never pays for a registration).
CACHE_MIN_STREAMS: Final = 64


_buffered = methodcaller("_buffered_input")

#: ``a == b`` for the cache's check of a list: the extension's ``same_list`` answers it with one
#: ``memcmp`` of the item arrays when the lists hold the same objects (the warm call), about
#: five times faster at N = 5000 than ``==``'s loop; ``operator.eq`` is its pure twin.
same_list: Final[Callable[[Any, Any], Any]] = getattr(_speedups, "same_list", operator.eq)


class _Local(threading.local):
    """The calling thread's cache (class attributes are the defaults)."""

    #: The waiter for the last list waited on through the cache.
    entry: _Entry | None = None
    #: True while a call of this thread waits (a wait_function that waits goes one-shot).
    busy: bool = False
    #: ``entry.warm`` while the warm call may use it (a simple entry, not busy), else None.
    warm: tuple[Any, ...] | None = None
    #: The identities of the last short list waited on one-shot: the same again is cached.
    seen: tuple[int, ...] = ()


_local = _Local()

# Kept under their old names for the callers (and tests) that import them from here.
_check_timeout = check_timeout


# ---- argument checks ---------------------------------------------------------------------


def _as_list(streams: object) -> list[Any]:
    if isinstance(streams, (SocketStream, str, bytes, bytearray)) or not isinstance(
        streams, Iterable
    ):
        raise TypeError(f"streams must be a list of SocketStream objects, not {streams!r}")
    return list(streams)


def _check_items(items: list[Any]) -> None:
    """Every item must be a readable, open ``SocketStream``."""
    for i, s in enumerate(items):
        check_stream(s, f"streams[{i}]")


# ---- the cached path: a StreamWaiter per thread -------------------------------------------


class _Entry:
    """A thread's cached waiter for one list: the list's copy, and where each stream sits."""

    __slots__ = ("index", "items", "simple", "source", "waiter", "warm")

    def __init__(self, items: list[SocketStream]) -> None:
        self.items = items
        #: The caller's tuple, when it gave one: a tuple cannot change, so the same tuple again
        #: is the same streams, known without comparing them one by one.
        self.source: tuple[SocketStream, ...] | None = None
        self.index: dict[SocketStream, list[int]] = {}
        for i, s in enumerate(items):
            self.index.setdefault(s, []).append(i)
        #: Every stream listed once: the waiter's order is the list's, its answer is ours.
        self.simple = len(self.index) == len(items)
        self.waiter = _CacheWaiter(self.index)
        self.warm: tuple[Any, ...] | None = None
        self.arm()

    def arm(self) -> None:
        """Make ``warm``: what the warm call of ``wait_for_input_streams`` unpacks in one step
        (the list's copy, the caller's tuple, the waiter, its epoll's poll, the entry),
        or None if this entry cannot answer that way (a stream listed twice, a closed waiter)."""
        waiter = self.waiter
        poller = waiter._poller
        if not self.simple or poller is None:
            self.warm = None
        else:
            self.warm = (self.items, self.source, waiter, poller.poll, self)

    def close(self) -> None:
        self.waiter.close()


class _CacheWaiter(StreamWaiter):
    """One thread's waiter for its last list: it lets go of all its descriptors when one of its
    streams closes, at once if that thread closes it between two waits, else when that thread
    next calls (or ends).  Only that thread ever waits on it or closes it, so the warm call
    uses it without taking a lock: another thread never closes the epoll under it."""

    def __init__(self, streams: Iterable[SocketStream]) -> None:
        self._owner = threading.get_ident()
        super().__init__(streams)

    def stream_changed(self, stream: SocketStream) -> None:
        super().stream_changed(stream)
        if (
            stream.closed
            and threading.get_ident() == self._owner
            and self._wait_lock.acquire(blocking=False)
        ):
            try:
                self.close()
            finally:
                self._wait_lock.release()


def _cached(items: list[Any]) -> _Entry:
    """The calling thread's waiter for ``items`` (checked), made or reused."""
    entry = _local.entry
    if entry is not None:
        if not entry.waiter.lost_member and same_list(entry.items, items):
            return entry
        _local.entry = _local.warm = None
        entry.close()
    _check_items(items)
    items = list(items)  # our own copy: the caller may change theirs between calls
    entry = _Entry(items)
    _local.entry = entry
    _local.warm = entry.warm
    return entry


def _repeated(items: Any) -> bool:
    """True if the last one-shot call of this thread was on these streams (then forgotten);
    else remember them.  Identities only: a false match (an id reused) just makes a cache."""
    if not items:
        return False
    ids = tuple(map(id, items))
    if ids == _local.seen:
        _local.seen = ()
        return True
    _local.seen = ids
    return False


def _forget_registrations() -> None:
    """Close the calling thread's cached waiter, if any (for tests and benchmarks)."""
    entry = _local.entry
    _local.entry = _local.warm = None
    if entry is not None:
        entry.close()


def _wait_cached(
    items: list[Any],
    timeout: float | None,
    wait_function: Callable[[], object] | None,
    source: tuple[SocketStream, ...] | None = None,
    known: _Entry | None = None,
) -> list[SocketStream]:
    """Wait through the thread's cached waiter (``known``: the entry, already compared)."""
    if known is not None and not known.waiter.lost_member and _local.entry is known:
        entry = known
    else:
        entry = _cached(items)
    if source is not None and entry.source is not source:
        entry.source = source
        entry.arm()
        _local.warm = entry.warm
    waiter = entry.waiter
    index = entry.index
    ready = waiter._fast(True)
    if ready is None:
        seconds = check_timeout(timeout)
        deadline = None if seconds is None else monotonic() + seconds
        _local.busy = True
        _local.warm = None  # a wait_function that waits must not take the entry
        try:
            ready = waiter._wait(deadline, wait_function, report_closed=True)
        finally:
            _local.busy = False
            if waiter.lost_member:  # a stream was closed while we waited
                _forget_registrations()
            elif _local.entry is entry:
                _local.warm = entry.warm
        if not ready:
            return []
    if len(ready) == 1 and len(index[ready[0]]) == 1:
        return ready  # the stream itself is its one place in the list
    positions = sorted(i for s in ready for i in index[s])
    its = entry.items
    return [its[i] for i in positions]


# ---- the one-shot path: poll(2) for short lists -------------------------------------------


class _OneShotWatcher:
    """A blocked one-shot call, subscribed to its streams: told of input and of closing."""

    __slots__ = ("hints", "wakeup")

    def __init__(self, wakeup: _Wakeup) -> None:
        self.wakeup = wakeup
        self.hints: list[SocketStream] = []

    def stream_input(self, stream: SocketStream) -> None:
        self.hints.append(stream)
        self.wakeup.signal()

    def stream_changed(self, stream: SocketStream) -> None:
        self.hints.append(stream)
        self.wakeup.signal()


def _poll_fds(poll: Any, timeout: float | None) -> list[int]:
    return poll_ready(poll, None if timeout is None else min(timeout, MAX_WAIT))


def _wait_oneshot(
    items: list[SocketStream], deadline: float | None, wait_function: Callable[[], object] | None
) -> list[SocketStream]:
    by_fd: dict[int, list[int]] = {}
    ready: set[int] = set()
    for i, s in enumerate(items):
        try:
            fd = s.fileno()
        except ValueError:  # no socket (the items are checked open): end-of-file at once
            ready.add(i)
            continue
        by_fd.setdefault(fd, []).append(i)
    poll = read_poller(by_fd)

    def scan() -> None:
        try:
            flags = list(map(_buffered, items))  # in C
        except ValueError:  # one was closed by another thread just now
            flags = [_safe_buffered(s) for s in items]
        ready.update(i for i, flag in enumerate(flags) if flag)

    def confirm(fds: list[int]) -> None:
        for fd in fds:
            for i in by_fd.get(fd, ()):
                if i not in ready and probe(items[i]):
                    ready.add(i)

    scan()
    confirm(_poll_fds(poll, 0))
    if ready:
        return [items[i] for i in sorted(ready)]
    if wait_function is not None and wait_function():
        return []
    # About to block: subscribe, so that input another thread's probe moves into one of our
    # streams (leaving its descriptor quiet) wakes us; then look once more, for a probe made
    # before we subscribed.
    wakeup = _Wakeup()
    watcher = _OneShotWatcher(wakeup)
    poll.register(wakeup.fd, POLL_READ)
    watched = list(dict.fromkeys(items))
    for s in watched:
        s._watch(watcher)
    try:
        scan()
        if ready:
            return [items[i] for i in sorted(ready)]
        while True:
            timeout = None if deadline is None else max(0.0, deadline - monotonic())
            if wait_function is not None:
                timeout = (
                    WAIT_FUNCTION_INTERVAL
                    if timeout is None
                    else min(timeout, WAIT_FUNCTION_INTERVAL)
                )
            fired = _poll_fds(poll, timeout)
            confirm(fired)
            if wakeup.fd in fired:
                wakeup.drain()
                hints, watcher.hints = watcher.hints, []
                for s in hints:
                    if _safe_buffered(s) or s.closed:
                        ready.update(i for i, t in enumerate(items) if t is s)
            if ready:
                return [items[i] for i in sorted(ready)]
            if deadline is not None and monotonic() >= deadline:
                return []
            if wait_function is not None and wait_function():
                return []
    finally:
        for s in watched:
            s._unwatch(watcher)
        wakeup.close()


def _safe_buffered(stream: SocketStream) -> bool:
    try:
        return stream._buffered_input()
    except ValueError:  # closed by another thread just now: a read would not block
        return True


# ---- the public functions ------------------------------------------------------------------


def wait_for_input_streams(
    streams: Iterable[SocketStream],
    *,
    timeout: float | None = None,
    wait_function: Callable[[], object] | None = None,
) -> list[SocketStream]:
    """Wait until at least one stream is ready for input; return all ready ones, in order.

    A stream is ready when a read would not block: input buffered in the stream or its TLS
    engine, data on the socket, end-of-file, or an error.  TLS records that carry no data (TLS
    1.3 session tickets) do not count.  Returns ``[]`` after ``timeout`` seconds (``0`` polls
    without waiting; ``None`` waits without limit) or as soon as ``wait_function()``, called
    before waiting and then every ``WAIT_FUNCTION_INTERVAL`` seconds, returns true.

    Raises:
        TypeError: ``streams`` is not a list of ``SocketStream``, or a bad ``timeout`` type,
            or ``wait_function`` is not callable.
        ValueError: a stream is closed, ``timeout`` is negative or NaN, or ``streams`` is
            empty with neither ``timeout`` nor ``wait_function`` (it would wait forever).
        io.UnsupportedOperation: a stream is output-only.
    """
    if timeout is not None:
        t = type(timeout)
        if not ((t is float or t is int) and timeout >= 0):
            check_timeout(timeout)  # raises unless it is another kind of real number
    if wait_function is not None and not callable(wait_function):
        raise TypeError(f"wait_function must be None or callable, not {wait_function!r}")
    # A list is used as it is (the cache compares against its own copy); a tuple is known again
    # by identity (it cannot change); anything else is copied.
    kind = type(streams)
    items: Any = streams if kind is list or kind is tuple else _as_list(streams)
    warm = _local.warm
    if warm is not None:
        # The warm call, inline (see ``_Entry.warm``): the same streams, nothing new told, the
        # one stream that held input at the last wait still does, and the kernel has nothing.
        # No lock: only this thread waits on this waiter or closes its epoll (_CacheWaiter).
        copy, source, waiter, poll, known = warm
        if source is items or same_list(copy, items):
            # ``len(s._in)``: what ``_buffered_input`` asks first, without its call.  A stream
            # told meanwhile by another thread is found by the next call (it stays dirty).
            s = waiter._fast_stream
            if s is not None and not waiter.lost_member and len(s._in) and not poll(0, 1):
                return [s]  # nothing else ready (else the full way finds them all)
            if kind is tuple:
                return _wait_cached(list(items), timeout, wait_function, items, known)
            return _wait_cached(items, timeout, wait_function, None, known)
    # A wait_function may itself wait on streams: the nested call must not take the entry.
    if _HAS_EPOLL and not _local.busy:
        entry = _local.entry
        if entry is not None and (entry.source is items or same_list(entry.items, items)):
            cached = True
        else:
            cached = len(items) >= CACHE_MIN_STREAMS or _repeated(items)
        if cached:
            if kind is tuple:
                return _wait_cached(list(items), timeout, wait_function, items)
            return _wait_cached(items, timeout, wait_function)
    seconds = check_timeout(timeout)
    if not items and seconds is None and wait_function is None:
        raise ValueError(
            "streams is empty and there is no timeout or wait_function: it would wait forever"
        )
    deadline = None if seconds is None else monotonic() + seconds
    _check_items(items)
    return _wait_oneshot(items, deadline, wait_function)


def wait_for_input_streams_returning_first(
    streams: Iterable[SocketStream],
    *,
    timeout: float | None = None,
    wait_function: Callable[[], object] | None = None,
) -> SocketStream | None:
    """Like ``wait_for_input_streams``, but return the first ready stream in order, or None."""
    ready = wait_for_input_streams(streams, timeout=timeout, wait_function=wait_function)
    return ready[0] if ready else None

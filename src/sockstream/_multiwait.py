"""Waiting on many streams at once: ``wait_for_input_streams`` (LispWorks COMM).

Operations
    A stream is *ready* when a read would not block: its input buffer holds bytes, its TLS engine
    holds decrypted or undecrypted bytes, the peer closed, the socket is in error, or the stream
    has no socket at all (reads see end-of-file).  The stream answers the first three without a
    system call (``_buffered_input``); the socket is asked through the kernel.

Goals
    * Readiness is *confirmed*, never guessed: a readable descriptor is only a hint.  For each one
      the stream makes one non-blocking extraction (``_probe_input``, through TLS when TLS is on);
      only if that leaves input (or end-of-file, or an error) is the stream ready.  So a
      descriptor carrying nothing but TLS 1.3 session tickets does not end the wait, and after a
      stream is reported ready its next read does not block.
    * System-call cost grows with the number of ready streams, not with N: epoll, never
      ``select()`` (which fails above descriptor 1024), and the epoll registration is kept
      between calls on the same list, so a repeated call costs one ``epoll_wait``.  What remains
      O(N) is pure Python and in memory: argument checks and one ``_buffered_input()`` per stream,
      which cannot be skipped (input may sit in a buffer with the socket quiet).
    * Many threads may wait at once, on different lists or on the same one.

Plan
    1. Validate everything before waiting (``timeout``, ``wait_function``, every stream).
    2. Ask every stream ``_buffered_input()``, then poll the descriptors once with a zero
       timeout, probing each that fired.  If anything is ready, return every ready stream (as
       LispWorks does, not just the first found).
    3. Otherwise call the ``wait_function`` (if any; true ends the call with ``[]``), then wait on
       the descriptors until the monotonic deadline, probe each that fired, and return the
       confirmed ones in the caller's order, or wait again with the remaining time when none
       is (tickets only).  With a ``wait_function`` the waits are cut into slices of at most
       ``WAIT_FUNCTION_INTERVAL`` seconds, and it is called after each.

The registration cache
    Each thread keeps at most one epoll object (``threading.local``), made for a list of at
    least ``CACHE_MIN_STREAMS`` streams; shorter lists use a one-shot ``poll(2)`` object, which
    holds no descriptor, so casual use never leaves one behind.  The cache is keyed by the
    identity of every stream *and of its socket* (``stream.socket``), in order.  Identity is safe
    as a key because the entry holds the streams it watches (so an ``id`` cannot be reused while
    it is a key); closing any of them releases the entry's descriptors.
    Keying on the socket object and not the descriptor number catches the classic epoll trap:
    a socket closed and a new one opened with the same number is a different object, and
    ``close()`` and ``replace_socket()`` both change ``stream.socket``.  When the entry goes
    stale the epoll is closed at once if no call is using it (a non-blocking try of the entry's
    lock), else by its owner on the way out; it also goes with its thread's local data.
    Per-thread entries mean no lock is held while waiting and two threads never share an epoll.
    Closing a stream's socket behind the stream's back (``stream.socket.close()``) is not
    supported: the stream itself cannot read then either.

Several threads on the same streams
    Probes are made under one module lock, so two threads waiting on the same stream never
    extract from it at the same time (each probe is non-blocking, so the lock is held briefly).
    A probe has a side effect the kernel cannot see: it moves input from the socket into the
    stream, and the descriptor goes quiet.  Every waiter was woken by the arrival, but the others
    re-check the descriptor, find nothing and sleep on, while the stream holds input.  So each
    call that is about to block registers itself (a set guarded by the probe lock) with a wakeup
    descriptor (an eventfd; the cached epoll keeps one, a one-shot call makes one only when it
    blocks); a probe that moved input appends the stream to every other waiter's hints and
    signals its wakeup.  A woken waiter checks only the hinted streams that are its own.  A
    counter of such extractions, read before the buffer scan and again on registering, covers
    a probe made in between.  Input that another thread *reads* (not through a wait) is not
    signalled: two consumers of one stream are the caller's business, as in LispWorks.
    A stream closed by another thread during the wait is reported ready: its next operation
    raises ``ValueError`` at once rather than blocking.  (Closing a stream wakes a waiter through
    the ``shutdown`` that ``close()`` does first.)

What a cached call costs
    With a cache hit nothing is asked of every stream.  The list is compared with the entry's
    copy (identity, in C), and the entry's ``changed`` flag, set when one of its streams tells
    it (``stream_changed``, the stream's observer seam) that it got a new socket or closed,
    says whether the per-stream socket identities need comparing at all.  Buffered input is
    announced rather than scanned for: the entry watches each stream of its list
    (``SocketStream._watch``), and whenever input lands in a stream's memory (``_fill``,
    ``unread_char``, a TLS engine decrypting, ``attach_ssl``/``detach_ssl``) the stream calls
    ``stream_input``, which adds it to the entry's ``dirty`` set; a call asks only those
    streams, keeps the ones still holding input, and starts a fresh set each time (sets never
    shrink, and iterating one sized for every stream would be O(N) again).  Closing a stream
    tells its entries, which release their descriptors at once.  So a call costs O(ready)
    Python work plus one ``epoll_wait`` (bench/RESULTS.md, W7).  Input put into a stream's
    memory by a read in *another* thread, racing with the swap of the dirty set, could go
    unannounced: two consumers of one stream are the caller's business (see above).

Decisions where API.md is silent (also in docs/waiting.md)
    An output-only stream is ``io.UnsupportedOperation`` (as reading it would be), a closed one
    ``ValueError``; an empty list with neither ``timeout`` nor ``wait_function`` is a
    ``ValueError`` (it would wait forever); a stream listed twice is returned twice.
    ``wait_for_input_streams_returning_first`` also takes ``wait_function`` (LispWorks does).
"""

from __future__ import annotations

import io
import math
import os
import select
import selectors
import sys
import threading
import time
from collections.abc import Callable, Iterable
from operator import attrgetter, methodcaller
from typing import Any, Final

from ._stream import SocketStream
from ._wait import MAX_WAIT, check_timeout

monotonic = time.monotonic

#: How often a ``wait_function`` is called while waiting, in seconds.  LispWorks calls it
#: "periodically"; 50 ms keeps a cancellation responsive at a negligible cost.
WAIT_FUNCTION_INTERVAL: Final = 0.05
#: Lists at least this long get a cached epoll registration.  Below it a one-shot poll(2) costs
#: about the same as epoll_wait (it measures within a few microseconds at 64 descriptors) and
#: leaves no descriptor open between calls.
CACHE_MIN_STREAMS: Final = 64

_HAS_EPOLL: Final = hasattr(select, "epoll")
_HAS_POLL: Final = hasattr(select, "poll")
_HAS_EVENTFD: Final = hasattr(os, "eventfd")
_ONE: Final = (1).to_bytes(8, sys.byteorder) if _HAS_EVENTFD else b"\x01"
_EPOLL_MASK: Final = (select.EPOLLIN | select.EPOLLPRI) if _HAS_EPOLL else 0
_POLL_MASK: Final = (select.POLLIN | select.POLLPRI) if _HAS_POLL else 0

_get_socket = attrgetter("socket")
_buffered = methodcaller("_buffered_input")
_probe_lock = threading.Lock()
_local = threading.local()


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
        if not isinstance(s, SocketStream):
            raise TypeError(f"streams[{i}] must be a SocketStream, not {s!r}")
        if s.closed:
            raise ValueError(f"streams[{i}] is closed: {s!r}")
        if s.direction == "output":
            raise io.UnsupportedOperation(f"streams[{i}] was opened for output only: {s!r}")


class _Plan:
    """Which stream indices sit behind each descriptor, and which streams have no socket."""

    __slots__ = ("by_fd", "no_socket")

    def __init__(self, items: list[SocketStream]) -> None:
        self.by_fd: dict[int, list[int]] = {}
        self.no_socket: list[int] = []
        for i, s in enumerate(items):
            try:
                fd = s.fileno()
            except ValueError:  # no socket (the items are checked open)
                self.no_socket.append(i)
                continue
            self.by_fd.setdefault(fd, []).append(i)


# ---- descriptor waiting ------------------------------------------------------------------


class _Wakeup:
    """A descriptor that another thread can make readable: an eventfd, or a pipe elsewhere."""

    __slots__ = ("_wfd", "fd")

    def __init__(self) -> None:
        if _HAS_EVENTFD:
            self.fd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - not Linux
            self.fd, self._wfd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._wfd, False)

    def signal(self) -> None:
        try:
            os.write(self._wfd, _ONE)
        except OSError:  # already signalled to the brim: still readable, which is the point
            pass

    def drain(self) -> None:
        try:
            os.read(self.fd, 4096)
        except OSError:  # nothing to drain
            pass

    def close(self) -> None:
        fd, wfd, self.fd, self._wfd = self.fd, self._wfd, -1, -1
        if fd >= 0:
            os.close(fd)
        if wfd >= 0 and wfd != fd:
            os.close(wfd)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class _OneShot:
    """A poll(2) object (or, without poll, the default selector) for one call."""

    __slots__ = ("_poll", "_selector", "wakeup")

    def __init__(self, fds: Iterable[int]) -> None:
        self._poll: Any = None
        self._selector: selectors.BaseSelector | None = None
        self.wakeup: _Wakeup | None = None
        if _HAS_POLL:
            self._poll = select.poll()
        else:  # pragma: no cover - Windows
            self._selector = selectors.DefaultSelector()
        for fd in fds:
            self._add(fd)

    def _add(self, fd: int) -> None:
        if self._poll is not None:
            self._poll.register(fd, _POLL_MASK)
        else:  # pragma: no cover
            assert self._selector is not None
            self._selector.register(fd, selectors.EVENT_READ)

    def get_wakeup(self) -> _Wakeup:
        """A wakeup descriptor watched from now on (made on first use: only blocking calls pay)."""
        if self.wakeup is None:
            self.wakeup = _Wakeup()
            self._add(self.wakeup.fd)
        return self.wakeup

    def wait(self, timeout: float | None) -> list[int]:
        """Descriptors with an event within ``timeout`` seconds (None: no limit)."""
        if self._poll is not None:
            # poll(2) takes milliseconds: round up, as selectors does, so we never wake just
            # before the deadline and spin.
            ms = None if timeout is None else math.ceil(min(timeout, MAX_WAIT) * 1000)
            return [fd for fd, _ in self._poll.poll(ms)]
        assert self._selector is not None  # pragma: no cover
        return [k.fd for k, _ in self._selector.select(timeout)]  # pragma: no cover

    def close(self) -> None:
        if self.wakeup is not None:
            self.wakeup.close()
        if self._selector is not None:  # pragma: no cover
            self._selector.close()


_Key = tuple[tuple[int, ...], tuple[int, ...]]


class _Registration:
    """A thread's cached epoll registration for one list of streams (see the module comment)."""

    __slots__ = (
        "changed",
        "dirty",
        "epoll",
        "index",
        "items",
        "key",
        "lock",
        "maxevents",
        "plan",
        "stale",
        "wakeup",
    )

    def __init__(self, items: list[SocketStream], key: _Key, plan: _Plan) -> None:
        self.items = items
        self.key = key
        self.plan = plan
        self.changed = False
        self.stale = False
        self.lock = threading.Lock()
        self.index: dict[int, list[int]] = {}
        for i, s in enumerate(items):
            self.index.setdefault(id(s), []).append(i)
        # Streams that may hold input in memory; every one at first, then those that said so.
        self.dirty: set[SocketStream] = set(items)
        self.maxevents = len(plan.by_fd) + 1
        self.epoll = select.epoll(sizehint=self.maxevents)
        self.wakeup = _Wakeup()
        try:
            for fd in plan.by_fd:
                self.epoll.register(fd, _EPOLL_MASK)
            self.epoll.register(self.wakeup.fd, _EPOLL_MASK)
        except BaseException:
            self.close()
            raise
        for s in set(items):
            s._watch(self)

    def get_wakeup(self) -> _Wakeup:
        return self.wakeup

    def wait(self, timeout: float | None) -> list[int]:
        """Descriptors with an event within ``timeout`` seconds (None: no limit)."""
        events = self.epoll.poll(-1 if timeout is None else min(timeout, MAX_WAIT), self.maxevents)
        return [fd for fd, _ in events]

    def scan(self) -> set[int]:
        """Indices of the streams ready without a system call: only the dirty ones are asked."""
        ready = set(self.plan.no_socket)
        # A fresh set each time: a set never shrinks, and iterating one that once held every
        # stream would cost O(N) again.  Input arriving meanwhile goes into the new set.
        dirty, self.dirty = self.dirty, set()
        keep = self.dirty
        for s in list(dirty):
            if _safe_buffered(s):
                keep.add(s)
                ready.update(self.index[id(s)])
        return ready

    def stream_input(self, stream: SocketStream) -> None:
        """``stream`` may hold input in memory now: ask it at the next call."""
        self.dirty.add(stream)

    def stream_changed(self, stream: SocketStream) -> None:
        """``stream`` got a new socket (compare the keys next time) or closed (release us)."""
        self.changed = True
        if stream.closed:
            self.stream_closed()

    def stream_closed(self) -> None:
        """One of our streams was closed: release the descriptors now unless a call holds us."""
        self.stale = True
        if self.lock.acquire(blocking=False):
            try:
                self.close()
            finally:
                self.lock.release()

    def close(self) -> None:
        """Release the descriptors; the caller holds ``lock`` (or is the only user)."""
        self.stale = True
        self.epoll.close()
        self.wakeup.close()
        for s in set(self.items):
            s._unwatch(self)
        self.items = []
        self.dirty = set()


def _key(items: list[Any]) -> _Key:
    return (tuple(map(id, items)), tuple(map(id, map(_get_socket, items))))


def _cached_registration(items: list[Any]) -> _Registration:
    """The calling thread's epoll registration for ``items`` (checked), locked for the call.

    A hit costs one list comparison (identity, in C) when none of the entry's streams has
    changed its socket since (``changed``); otherwise the identities of the streams
    and of their sockets are compared, as the checks made when the entry was built still hold
    for the same objects (their direction cannot change; closing changes the socket to None).
    """
    entry: _Registration | None = getattr(_local, "entry", None)
    if entry is not None:
        entry.lock.acquire()
        if not entry.stale and entry.items == items:
            if not entry.changed:
                return entry
            entry.changed = False  # before comparing: a change from now on is seen next time
            try:
                key = _key(items)
            except Exception:  # not streams at all: the checks below say which
                key = None
            if entry.key == key and not any(items[i].closed for i in entry.plan.no_socket):
                return entry
        try:
            entry.close()
        finally:
            entry.lock.release()
        _local.entry = None
    _check_items(items)
    items = list(items)  # our own copy: the caller may change theirs between calls
    entry = _Registration(items, _key(items), _Plan(items))
    entry.lock.acquire()
    _local.entry = entry
    return entry


def _forget_registrations() -> None:
    """Close the calling thread's cached epoll registration, if any (for tests and benchmarks)."""
    entry: _Registration | None = getattr(_local, "entry", None)
    _local.entry = None
    if entry is not None:
        with entry.lock:
            entry.close()


# ---- probing, and telling the other waiters ----------------------------------------------


class _Waiting:
    """A call that is blocked (or about to block): it hears of streams other calls probed."""

    __slots__ = ("hints", "wakeup")

    def __init__(self, wakeup: _Wakeup) -> None:
        self.wakeup = wakeup
        self.hints: list[SocketStream] = []


#: The calls now waiting, and a count of probes that moved input into a stream; both guarded
#: by ``_probe_lock``.
_waiting: set[_Waiting] = set()
_extractions = 0


def _probe(stream: SocketStream, me: _Waiting | None) -> bool:
    """Probe ``stream``; if that moved input into it, tell every other waiting call."""
    global _extractions
    with _probe_lock:
        try:
            if stream._buffered_input():
                return True
            if not stream._probe_input():
                return False
        except ValueError:  # closed by another thread: its next operation will not block
            return True
        _extractions += 1
        for other in _waiting:
            if other is not me:
                other.hints.append(stream)
                other.wakeup.signal()
        return True


def _take_hints(me: _Waiting) -> list[SocketStream]:
    with _probe_lock:
        hints, me.hints = me.hints, []
    me.wakeup.drain()
    return hints


# ---- the wait ----------------------------------------------------------------------------


def _safe_buffered(stream: SocketStream) -> bool:
    try:
        return stream._buffered_input()
    except ValueError:  # closed by another thread just now: a read would not block
        return True


def _scan_buffers(items: list[SocketStream], plan: _Plan) -> set[int]:
    """Indices of the streams ready without a system call (input in memory, or no socket)."""
    try:
        flags = list(map(_buffered, items))  # the O(N) loop, run in C
    except ValueError:
        flags = list(map(_safe_buffered, items))
    ready = {i for i, flag in enumerate(flags) if flag}
    ready.update(plan.no_socket)
    return ready


def _in_order(items: list[SocketStream], ready: set[int]) -> list[SocketStream]:
    return [items[i] for i in sorted(ready)]


def _wait(
    items: list[SocketStream],
    plan: _Plan,
    waiter: _Registration | _OneShot,
    deadline: float | None,
    wait_function: Callable[[], object] | None,
) -> list[SocketStream]:
    extractions_before = _extractions
    by_fd = plan.by_fd
    scan: Callable[[], set[int]] = (
        waiter.scan if isinstance(waiter, _Registration) else lambda: _scan_buffers(items, plan)
    )
    ready = scan()
    buffered = bool(ready)
    # Poll once without waiting: with input buffered somewhere this finds every other ready
    # stream; otherwise it is the cheap answer before any wait_function or blocking.
    if _confirm(items, waiter.wait(0), by_fd, ready, None) or buffered:
        return _in_order(items, ready)
    if wait_function is not None and wait_function():
        return []
    # About to block.  Another call's probe may move input from a socket we watch into its
    # stream, leaving the descriptor quiet: register to be told (see the module comment).
    wakeup = waiter.get_wakeup()
    wakeup.drain()
    me = _Waiting(wakeup)
    with _probe_lock:
        _waiting.add(me)
        missed = _extractions != extractions_before
    try:
        if missed:
            ready = scan()
            if ready:
                return _in_order(items, ready)
        while True:
            timeout = None if deadline is None else max(0.0, deadline - monotonic())
            if wait_function is not None:
                timeout = (
                    WAIT_FUNCTION_INTERVAL
                    if timeout is None
                    else min(timeout, WAIT_FUNCTION_INTERVAL)
                )
            fired = waiter.wait(timeout)
            found = _confirm(items, fired, by_fd, ready, me)
            if wakeup.fd in fired and _confirm_hints(items, _take_hints(me), by_fd, ready):
                found = True
            if found:
                return _in_order(items, ready)
            if deadline is not None and monotonic() >= deadline:
                return []
            if wait_function is not None and wait_function():
                return []
    finally:
        with _probe_lock:
            _waiting.discard(me)


def _confirm(
    items: list[SocketStream],
    fired: list[int],
    by_fd: dict[int, list[int]],
    ready: set[int],
    me: _Waiting | None,
) -> bool:
    """Probe the streams behind the descriptors that fired; True if any is now ready."""
    found = False
    for fd in fired:
        for i in by_fd.get(fd, ()):
            if i in ready or _probe(items[i], me):
                ready.add(i)
                found = True
    return found


def _confirm_hints(
    items: list[SocketStream],
    hints: list[SocketStream],
    by_fd: dict[int, list[int]],
    ready: set[int],
) -> bool:
    """Mark the hinted streams (moved into their buffer by another call) that are ours."""
    found = False
    for s in hints:
        candidates: Iterable[int]
        try:
            candidates = by_fd.get(s.fileno(), ())
        except ValueError:  # closed (or socket removed) since: find it by identity
            candidates = range(len(items))
        for i in candidates:
            if items[i] is s and _safe_buffered(s):
                ready.add(i)
                found = True
    return found


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
    seconds = check_timeout(timeout, "timeout", poll=True)
    if wait_function is not None and not callable(wait_function):
        raise TypeError(f"wait_function must be None or callable, not {wait_function!r}")
    # A list is used as it is (the cache compares against its own copy); anything else is copied.
    items = streams if type(streams) is list else _as_list(streams)
    if not items and seconds is None and wait_function is None:
        raise ValueError(
            "streams is empty and there is no timeout or wait_function: it would wait forever"
        )
    deadline = None if seconds is None else monotonic() + seconds
    # A wait_function may itself wait on streams: the nested call must not take the entry.
    if _HAS_EPOLL and len(items) >= CACHE_MIN_STREAMS and not getattr(_local, "busy", False):
        entry = _cached_registration(items)
        _local.busy = True
        try:
            return _wait(items, entry.plan, entry, deadline, wait_function)
        finally:
            _local.busy = False
            entry.lock.release()
            if entry.stale:  # a stream was closed while we waited
                _forget_registrations()
    _check_items(items)
    plan = _Plan(items)
    oneshot = _OneShot(plan.by_fd)
    try:
        return _wait(items, plan, oneshot, deadline, wait_function)
    finally:
        oneshot.close()


def wait_for_input_streams_returning_first(
    streams: Iterable[SocketStream],
    *,
    timeout: float | None = None,
    wait_function: Callable[[], object] | None = None,
) -> SocketStream | None:
    """Like ``wait_for_input_streams``, but return the first ready stream in order, or None."""
    ready = wait_for_input_streams(streams, timeout=timeout, wait_function=wait_function)
    return ready[0] if ready else None

"""Deadlines and the wait primitives.  The only module that blocks.

Every blocking path of the package waits here: a non-blocking operation is tried first; when it
would block, the caller waits with ``poll(2)`` (``wait_fd``, ``wait_poller``, ``poll_ready``), a
selector (``select_ready``) or an epoll set (``Poller``, for ``StreamWaiter``) until a descriptor
is ready or the monotonic deadline passes, then tries again.  ``Wakeup`` is the descriptor another
thread makes readable to end such a wait early.  A timeout is a deadline, not a socket option:
``SO_RCVTIMEO`` is ignored by OpenSSL (CPython #74747) and ``socket.settimeout`` poisons
``makefile`` streams after a timeout (bpo-7322); here a timeout only ever means "this wait ended".

PEP 475: ``poll`` is retried by CPython on EINTR with the remaining time, so a signal whose
handler returns does not end a wait; one that raises (KeyboardInterrupt) propagates, and callers
only change their state after an operation succeeded, so the stream stays consistent.
"""

from __future__ import annotations

import math
import os
import select
import selectors
import sys
import time
from numbers import Real
from typing import Any, Final

monotonic = time.monotonic

#: Events to wait for, by what a non-blocking operation asked for.
WANT_READ: Final = -1
WANT_WRITE: Final = -2
#: WANT_READ after some bytes were taken (a partial TLS record): a new wait, a new deadline.
WANT_MORE: Final = -4

_MAX_POLL_MS: Final = 2**31 - 1

#: The longest single wait, in seconds (about 23 days): below what poll, epoll, select and
#: ``threading`` accept (poll's limit is INT_MAX milliseconds).  A longer timeout is waited in
#: pieces of this size: "as long as the OS allows", never an ``OverflowError``.
MAX_WAIT: Final = 2_000_000.0

_EVENTS: Final = {
    WANT_READ: select.POLLIN | select.POLLPRI,
    WANT_WRITE: select.POLLOUT,
}

HAS_EPOLL: Final = hasattr(select, "epoll")
_HAS_EVENTFD: Final = hasattr(os, "eventfd")
_ONE: Final = (1).to_bytes(8, sys.byteorder) if _HAS_EVENTFD else b"\x01"
_EPOLL_MASK: Final = (select.EPOLLIN | select.EPOLLPRI) if HAS_EPOLL else 0
#: What "readable" means to ``poll(2)`` (``read_poller``, ``Poller`` without epoll).
POLL_READ: Final = select.POLLIN | select.POLLPRI


class Wakeup:
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
        except OSError:  # full (still readable, which is the point) or closed
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


class Poller:
    """epoll where there is one, else poll(2): register, unregister, wait in seconds."""

    __slots__ = ("_ep", "_poll", "count", "poll")

    def __init__(self) -> None:
        self.count = 0
        ep: Any = select.epoll() if HAS_EPOLL else None
        self._ep = ep
        self._poll: Any = None if HAS_EPOLL else select.poll()
        #: ``poll(timeout, maxevents)``: epoll's own method (the fast path calls it directly).
        self.poll: Any = ep.poll if ep is not None else self._poll_events

    def _poll_events(self, timeout: float, maxevents: int) -> list[tuple[int, int]]:
        return self.wait(None if timeout < 0 else timeout)  # pragma: no cover - not Linux

    def register(self, fd: int) -> None:
        if self._ep is not None:
            self._ep.register(fd, _EPOLL_MASK)
        else:  # pragma: no cover - not Linux
            self._poll.register(fd, POLL_READ)
        self.count += 1

    def unregister(self, fd: int) -> None:
        try:
            if self._ep is not None:
                self._ep.unregister(fd)
            else:  # pragma: no cover - not Linux
                self._poll.unregister(fd)
        except (OSError, KeyError, ValueError):  # already gone (closed behind our back)
            return
        self.count -= 1

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """The events within ``timeout`` seconds (None: no limit; at most ``MAX_WAIT``)."""
        if self._ep is not None:
            result: list[tuple[int, int]] = self._ep.poll(
                -1 if timeout is None else timeout, self.count + 1
            )
            return result
        ms = None if timeout is None else math.ceil(timeout * 1000)  # pragma: no cover
        return list(self._poll.poll(ms))  # pragma: no cover

    def close(self) -> None:
        if self._ep is not None:
            self._ep.close()
        self._poll = self.poll = None


def read_poller(fds: Any) -> Any:
    """A one-shot ``select.poll`` object watching ``fds`` for input (see ``poll_ready``)."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, POLL_READ)
    return poller


def deadline_after(seconds: float | None) -> float | None:
    """The monotonic time ``seconds`` from now, or ``None`` (no deadline) for ``None``."""
    return None if seconds is None else monotonic() + seconds


def make_poller(fd: int, want: int, wakeup: int = -1) -> Any:
    """A poll object watching ``fd`` for ``want`` (WANT_READ/WANT_WRITE); None for no socket.

    ``wakeup``: a descriptor another thread makes readable to end the wait early.  A poll
    object must not be used by two threads at once, so each side of a stream keeps its own.
    """
    if fd < 0:
        return None
    poller = select.poll()
    poller.register(fd, _EVENTS[want])
    if wakeup >= 0:
        poller.register(wakeup, select.POLLIN)
    return poller


def wait_fd(fd: int, want: int, deadline: float | None) -> bool:
    """Wait until ``fd`` is ready for ``want`` (WANT_READ/WANT_WRITE) or ``deadline`` passes.

    Returns True when the descriptor is ready (or in error, or hung up: the next operation will
    tell), False when the deadline passed first.
    """
    return wait_poller(make_poller(fd, want), deadline)


def poll_ready(poller: Any, timeout: float | None) -> list[int]:
    """The descriptors of ``poller`` (a ``select.poll``) ready within ``timeout`` seconds.

    ``None`` waits without limit.  Milliseconds are rounded up, as selectors does.
    """
    ms = None if timeout is None else min(math.ceil(timeout * 1000), _MAX_POLL_MS)
    return [fd for fd, _ in poller.poll(ms)]


def select_ready(
    selector: selectors.BaseSelector, timeout: float | None
) -> list[tuple[selectors.SelectorKey, int]]:
    """``selector.select(timeout)``: the one place a selector blocks."""
    return selector.select(timeout)


def wait_poller(poller: Any, deadline: float | None) -> bool:
    """``wait_fd`` with a poll object made by ``make_poller``."""
    if poller is None:
        return True  # no socket: let the operation report it
    if deadline is None:
        return bool(poller.poll())
    while True:
        remaining = deadline - monotonic()
        # Round up to whole milliseconds (as selectors does), so we never wake just before the
        # deadline and spin; poll takes at most INT_MAX ms, so a longer wait goes round again.
        ms = math.ceil(min(remaining, MAX_WAIT) * 1000) if remaining > 0 else 0
        if poller.poll(ms):
            return True
        if remaining <= MAX_WAIT:
            return False


def clamp_wait(seconds: float | None) -> float | None:
    """``seconds`` for one wait, at most ``MAX_WAIT`` (None stays None: no limit).

    A caller that waits for a deadline further away waits again when this much has passed.
    """
    return None if seconds is None else min(seconds, MAX_WAIT)


def check_timeout(value: object, name: str, *, poll: bool = False) -> float | None:
    """Validate a timeout: ``None`` or a positive, finite real number of seconds.

    The one timeout check of the package.  With ``poll`` (the timeout of a wait, not of a
    stream) ``0`` is allowed (poll without waiting) and infinity means ``None`` (no limit).
    Bools and NaN are refused.  An int too large for a float is a ``ValueError`` (with
    ``poll``: no limit, as infinity).
    """
    if value is None:
        return None
    what = "a non-negative" if poll else "a positive"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be None or {what} number of seconds, not {value!r}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        if poll and value > 0:  # type: ignore[operator]
            return None
        raise ValueError(
            f"{name} must be None or {what} number of seconds that fits a float, not {value!r}"
        ) from None
    if poll:
        if not seconds >= 0:  # also catches NaN
            raise ValueError(f"{name} must be None or {what} number of seconds, not {value!r}")
        return None if math.isinf(seconds) else seconds
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{name} must be None or {what} number of seconds, not {value!r}")
    return seconds

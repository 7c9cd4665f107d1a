"""Deadlines and the one wait primitive.  The only module that blocks.

Every blocking path of the package goes through ``wait_fd``: a non-blocking operation is tried
first; when it would block, the caller waits here with ``poll(2)`` until the descriptor is ready or
the monotonic deadline passes, then tries again.  A timeout is a deadline, not a socket option:
``SO_RCVTIMEO`` is ignored by OpenSSL (CPython #74747) and ``socket.settimeout`` poisons
``makefile`` streams after a timeout (bpo-7322); here a timeout only ever means "this wait ended".

PEP 475: ``poll`` is retried by CPython on EINTR with the remaining time, so a signal whose
handler returns does not end a wait; one that raises (KeyboardInterrupt) propagates, and callers
only change their state after an operation succeeded, so the stream stays consistent.
"""

from __future__ import annotations

import math
import select
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

"""W7 waiting: one call over N idle streams of which one is ready, in microseconds per call.

N socketpairs; we keep one end (as a sockstream SocketStream, or as the bare socket for the
anchors) and hold the other open so that every stream is idle, except the one in the middle,
whose peer sent one byte that nobody reads.  Each call must therefore return exactly that one.
sockstream `wait_for_input_streams(streams)` against a persistent `selectors.EpollSelector` (all
N registered once, before the clock) and `select.select` (only while every descriptor is below
FD_SETSIZE = 1024).  No peer process: there is no data to move.
sockstream `StreamWaiter.wait` (issue 16) on the same streams, and the cost of registering N
streams (`StreamWaiter.add` against `EpollSelector.register`).
Goals: the cost grows with the ready streams, not with N; at N = 5000 StreamWaiter.wait >= 1.5x
and warm wait_for_input_streams >= 0.5x persistent epoll; registration <= 5 µs per stream.
The scaling rows compare the cost at the largest N with that at N = 10.
"""

from __future__ import annotations

import resource
import select
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case, Env, Ratio, Skip, check

FD_SETSIZE = 1024
WAIT_TIMEOUT = 10.0  # seconds: never reached, one stream is always ready


def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))  # works as root
            return
        except (ValueError, OSError):
            raise Skip(f"RLIMIT_NOFILE is {soft}/{hard}, {needed} needed") from None
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


class _Pairs:
    """N socketpairs: ours[i] is what we wait on, peers[i] is kept open; pair N//2 is ready."""

    def __init__(self, n: int) -> None:
        _raise_nofile(2 * n + 256)
        self.ours: list[socket.socket] = []
        self.peers: list[socket.socket] = []
        try:
            for _ in range(n):
                a, b = socket.socketpair()
                self.ours.append(a)
                self.peers.append(b)
            self.ready = n // 2
            self.peers[self.ready].send(b"x")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for s in self.ours + self.peers:
            s.close()


def _time_calls(call: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    return time.perf_counter() - t0


def _epoll(n: int, calls: int) -> Callable[[Env], float]:
    def run(env: Env) -> float:
        pairs = _Pairs(n)
        try:
            with selectors.EpollSelector() as sel:
                for s in pairs.ours:
                    sel.register(s, selectors.EVENT_READ)
                check(len(sel.select(WAIT_TIMEOUT)), 1, "ready streams (epoll)")
                return _time_calls(lambda: sel.select(WAIT_TIMEOUT), calls)
        finally:
            pairs.close()

    return run


def _select(n: int, calls: int) -> Callable[[Env], float]:
    def run(env: Env) -> float:
        pairs = _Pairs(n)
        try:
            if max(s.fileno() for s in pairs.ours) >= FD_SETSIZE:
                raise Skip(f"select.select: descriptors reach FD_SETSIZE ({FD_SETSIZE})")
            ours = pairs.ours
            check(len(select.select(ours, [], [], WAIT_TIMEOUT)[0]), 1, "ready (select)")
            return _time_calls(lambda: select.select(ours, [], [], WAIT_TIMEOUT), calls)
        finally:
            pairs.close()

    return run


def _ss(n: int, calls: int, as_tuple: bool = False) -> Callable[[Env], float]:
    def run(env: Env) -> float:
        ss = env.ss()
        pairs = _Pairs(n)
        streams: list[Any] = []
        try:
            streams = [ss.SocketStream(s, "io", "unsigned-byte-8") for s in pairs.ours]
            wait = ss.wait_for_input_streams
            listed: Any = tuple(streams) if as_tuple else streams
            ready = wait(listed, timeout=WAIT_TIMEOUT)
            check(len(ready), 1, "ready streams (sockstream)")
            return _time_calls(lambda: wait(listed, timeout=WAIT_TIMEOUT), calls)
        finally:
            for st in streams:
                st.close(abort=True)
            pairs.close()

    return run


def _waiter(n: int, calls: int) -> Callable[[Env], float]:
    def run(env: Env) -> float:
        ss = env.ss()
        pairs = _Pairs(n)
        streams: list[Any] = []
        try:
            streams = [ss.SocketStream(s, "io", "unsigned-byte-8") for s in pairs.ours]
            with ss.StreamWaiter(streams) as waiter:
                wait = waiter.wait
                check(len(wait(WAIT_TIMEOUT)), 1, "ready streams (StreamWaiter)")
                return _time_calls(lambda: wait(WAIT_TIMEOUT), calls)
        finally:
            for st in streams:
                st.close(abort=True)
            pairs.close()

    return run


def _register_ss(n: int) -> Callable[[Env], float]:
    """Seconds to add N streams to a new StreamWaiter (one add per stream, as a loop would)."""

    def run(env: Env) -> float:
        ss = env.ss()
        pairs = _Pairs(n)
        streams: list[Any] = []
        try:
            streams = [ss.SocketStream(s, "io", "unsigned-byte-8") for s in pairs.ours]
            waiter = ss.StreamWaiter()
            try:
                add = waiter.add
                t0 = time.perf_counter()
                for st in streams:
                    add(st)
                elapsed = time.perf_counter() - t0
                check(len(waiter), n, "streams registered")
                return elapsed
            finally:
                waiter.close()
        finally:
            for st in streams:
                st.close(abort=True)
            pairs.close()

    return run


def _register_epoll(n: int) -> Callable[[Env], float]:
    def run(env: Env) -> float:
        pairs = _Pairs(n)
        try:
            with selectors.EpollSelector() as sel:
                register = sel.register
                t0 = time.perf_counter()
                for s in pairs.ours:
                    register(s, selectors.EVENT_READ)
                return time.perf_counter() - t0
        finally:
            pairs.close()

    return run


TITLE = "wait on N idle streams, one ready"


def describe_size(env: Env) -> str:
    sizes = env.sizes["W7"]
    return "N = " + ", ".join(f"{n} ({c:,} calls)" for n, c in sizes.items())


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    cases: list[Case] = []
    ratios: list[Ratio] = []
    sizes: dict[int, int] = env.sizes["W7"]
    for n, calls in sizes.items():
        cases += [
            Case(
                f"W7.ss.{n}",
                f"sockstream wait_for_input_streams, N={n}",
                "sockstream",
                _ss(n, calls),
                calls,
                "call",
                "per_call",
            ),
            Case(
                f"W7.waiter.{n}",
                f"sockstream StreamWaiter.wait, N={n}",
                "sockstream",
                _waiter(n, calls),
                calls,
                "call",
                "per_call",
            ),
            Case(
                f"W7.epoll.{n}",
                f"persistent EpollSelector.select, N={n}",
                "anchor",
                _epoll(n, calls),
                calls,
                "call",
                "per_call",
            ),
        ]
        if 2 * n + 16 < FD_SETSIZE:
            cases.append(
                Case(
                    f"W7.select.{n}",
                    f"select.select, N={n}",
                    "anchor",
                    _select(n, calls),
                    calls,
                    "call",
                    "per_call",
                )
            )
    ns = list(sizes)
    big = ns[-1]
    cases += [
        Case(
            f"W7.ss_tuple.{big}",
            f"sockstream wait_for_input_streams, a tuple, N={big}",
            "sockstream",
            _ss(big, sizes[big], as_tuple=True),
            sizes[big],
            "call",
            "per_call",
        ),
        Case(
            f"W7.register.{big}",
            f"sockstream StreamWaiter.add, N={big}",
            "sockstream",
            _register_ss(big),
            big,
            "stream",
            "per_call",
        ),
        Case(
            f"W7.register_epoll.{big}",
            f"EpollSelector.register, N={big}",
            "anchor",
            _register_epoll(big),
            big,
            "stream",
            "per_call",
        ),
    ]
    for n in ns:
        # Issue 16: StreamWaiter.wait >= 1.5x EpollSelector.select at N = 5000, and warm
        # wait_for_input_streams calls >= 0.5x.
        ratios.append(
            Ratio(
                f"N={n}: StreamWaiter.wait / persistent epoll",
                f"W7.waiter.{n}",
                f"W7.epoll.{n}",
                1.5 if n == 5000 else None,
            )
        )
        goal = 0.5 if n == 5000 else None
        ratios.append(
            Ratio(
                f"N={n}: wait_for_input_streams / persistent epoll",
                f"W7.ss.{n}",
                f"W7.epoll.{n}",
                goal,
            )
        )
        if 2 * n + 16 < FD_SETSIZE:
            ratios.append(
                Ratio(f"N={n}: sockstream / select.select", f"W7.ss.{n}", f"W7.select.{n}")
            )
    ratios.append(
        Ratio(
            f"N={big}: wait_for_input_streams on a tuple / persistent epoll",
            f"W7.ss_tuple.{big}",
            f"W7.epoll.{big}",
            note="the same tuple again is known by identity: no O(N) comparison",
        )
    )
    ratios.append(
        Ratio(
            f"registration, N={big}: EpollSelector.register / StreamWaiter.add",
            f"W7.register.{big}",
            f"W7.register_epoll.{big}",
            note="issue 16: <= 5 us per stream (the table's us/stream)",
        )
    )
    if len(ns) > 1:
        # Ratios compare cost per call, so this row reads: cost at N=10 / cost at the largest N.
        # 1.0 is flat in N; our pass line (the issue gives no number) is the same factor 3 as
        # the epoll row.
        ratios.append(
            Ratio(
                f"scaling: µs/call at N={ns[0]} / at N={ns[-1]} (1 = flat)",
                f"W7.ss.{ns[-1]}",
                f"W7.ss.{ns[0]}",
                1 / 3,
            )
        )
        ratios.append(
            Ratio(
                f"scaling, StreamWaiter: µs/call at N={ns[0]} / at N={ns[-1]}",
                f"W7.waiter.{ns[-1]}",
                f"W7.waiter.{ns[0]}",
                1 / 3,
            )
        )
    return cases, ratios

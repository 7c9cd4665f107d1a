"""wait_for_input_streams and wait_for_input_streams_returning_first, on real sockets.

Most lists are built twice: below ``CACHE_MIN_STREAMS`` (one-shot poll) and above it (the cached
epoll registration), so both waiting paths see every case.  No sleeps: a peer that must act
*while* the call waits is released from the call's own ``wait_function``, which runs just before
the first wait.
"""

from __future__ import annotations

import io
import math
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import pytest

from conftest import LONG, SHORT, PeerThread
from sockstream import (
    SocketIOError,
    SocketStream,
    _multiwait,
    wait_for_input_streams,
    wait_for_input_streams_returning_first,
)

SIZES = [pytest.param(50, id="poll"), pytest.param(100, id="epoll")]
assert 50 < _multiwait.CACHE_MIN_STREAMS <= 100


@pytest.fixture(autouse=True)
def _forget_cache() -> Iterator[None]:
    """The main thread's cached epoll must not outlive the test (the leak guard counts fds)."""
    yield
    _multiwait._forget_registrations()


class Pairs:
    """``n`` socketpairs: ``streams[i]`` is a SocketStream on one end, ``peers[i]`` the other."""

    def __init__(self) -> None:
        self.streams: list[SocketStream] = []
        self.peers: list[socket.socket] = []

    def make(self, n: int, **kwargs: Any) -> tuple[list[SocketStream], list[socket.socket]]:
        streams, peers = [], []
        for _ in range(n):
            a, b = socket.socketpair()
            streams.append(SocketStream(a, **kwargs))
            peers.append(b)
        self.streams += streams
        self.peers += peers
        return streams, peers

    def close(self) -> None:
        for s in self.streams:
            s.close(abort=True)
        for p in self.peers:
            p.close()


@pytest.fixture
def pairs() -> Iterator[Callable[..., tuple[list[SocketStream], list[socket.socket]]]]:
    made = Pairs()
    yield made.make
    made.close()


def fd_readable(fd: int, timeout: float = 0) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(math.ceil(timeout * 1000)))


# ---- which streams are returned -----------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_only_the_ready_stream_is_returned(pairs: Any, n: int) -> None:
    streams, peers = pairs(n)
    ready = streams[17]
    peers[17].sendall(b"x")
    assert wait_for_input_streams(streams, timeout=LONG) == [ready]
    assert wait_for_input_streams_returning_first(streams, timeout=LONG) == ready
    assert ready.read_char() == "x"
    assert wait_for_input_streams(streams, timeout=0) == []


@pytest.mark.parametrize("n", SIZES)
def test_all_ready_streams_in_the_given_order(pairs: Any, n: int) -> None:
    streams, peers = pairs(n)
    for i in (30, 3, 12):
        peers[i].sendall(b"x")
    expected = [streams[3], streams[12], streams[30]]
    assert wait_for_input_streams(streams, timeout=LONG) == expected
    assert wait_for_input_streams_returning_first(streams, timeout=LONG) is streams[3]
    # In the caller's order, whatever it is.
    backwards = streams[::-1]
    assert wait_for_input_streams(backwards, timeout=LONG) == expected[::-1]
    assert wait_for_input_streams_returning_first(backwards) is streams[30]


@pytest.mark.parametrize("n", SIZES)
def test_buffered_and_socket_ready_streams_are_all_returned(pairs: Any, n: int) -> None:
    # One stream ready through its buffer: the others' sockets are still polled (timeout 0).
    streams, peers = pairs(n)
    peers[40].sendall(b"ab")
    assert streams[40].read_char() == "a"
    peers[2].sendall(b"z")
    assert wait_for_input_streams(streams) == [streams[2], streams[40]]


def test_a_stream_listed_twice_is_returned_twice(pairs: Any) -> None:
    streams, peers = pairs(3)
    peers[1].sendall(b"x")
    listed = [streams[1], streams[0], streams[1]]
    assert wait_for_input_streams(listed, timeout=LONG) == [streams[1], streams[1]]


def test_tuple_and_generator_are_accepted(pairs: Any) -> None:
    streams, peers = pairs(3)
    peers[2].sendall(b"x")
    assert wait_for_input_streams(tuple(streams), timeout=LONG) == [streams[2]]
    assert wait_for_input_streams((s for s in streams), timeout=LONG) == [streams[2]]


# ---- timeouts ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_timeout_returns_empty(pairs: Any, n: int) -> None:
    streams, _ = pairs(n)
    start = time.monotonic()
    assert wait_for_input_streams(streams, timeout=SHORT) == []
    assert time.monotonic() - start >= SHORT
    start = time.monotonic()
    assert wait_for_input_streams_returning_first(streams, timeout=SHORT) is None
    assert time.monotonic() - start >= SHORT


@pytest.mark.parametrize("n", SIZES)
def test_timeout_zero_polls(pairs: Any, n: int) -> None:
    streams, peers = pairs(n)
    start = time.monotonic()
    assert wait_for_input_streams(streams, timeout=0) == []
    assert wait_for_input_streams_returning_first(streams, timeout=0.0) is None
    assert time.monotonic() - start < LONG
    peers[5].sendall(b"x")
    assert wait_for_input_streams(streams, timeout=0) == [streams[5]]


def test_timeout_accepts_any_real_and_infinity(pairs: Any) -> None:
    streams, peers = pairs(2)
    assert wait_for_input_streams(streams, timeout=Fraction(1, 100)) == []  # type: ignore[arg-type]
    peers[0].sendall(b"x")
    assert wait_for_input_streams(streams, timeout=math.inf) == [streams[0]]


def test_empty_list_with_timeout_waits_it_out() -> None:
    start = time.monotonic()
    assert wait_for_input_streams([], timeout=SHORT) == []
    assert time.monotonic() - start >= SHORT
    assert wait_for_input_streams_returning_first([], timeout=0) is None


# ---- what counts as ready ---------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("consume", ["read_char", "peek_char", "read_char_no_hang"])
def test_buffered_input_counts(pairs: Any, n: int, consume: str) -> None:
    streams, peers = pairs(n)
    s = streams[9]
    peers[9].sendall(b"ab")
    assert fd_readable(s.fileno(), LONG)
    getattr(s, consume)()
    # The socket is drained: only the stream's buffer holds input now.
    assert not fd_readable(s.fileno())
    assert wait_for_input_streams(streams, timeout=0) == [s]
    assert wait_for_input_streams(streams, timeout=LONG) == [s]
    assert s.read_char_no_hang() == ("a" if consume == "peek_char" else "b")


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("consume", ["read_char", "peek_char", "read_char_no_hang", "read1"])
def test_input_buffered_between_cached_calls_counts(pairs: Any, n: int, consume: str) -> None:
    # The registration is built first; then a read leaves input in the buffer with the socket
    # drained.  A cached call must see it without scanning every stream.
    streams, peers = pairs(n)
    s = streams[n - 3]
    for _ in range(3):
        assert wait_for_input_streams(streams, timeout=0) == []
    peers[n - 3].sendall(b"abc")
    assert fd_readable(s.fileno(), LONG)
    if consume == "read1":
        assert s.read1(1) == "a"
    else:
        getattr(s, consume)()
    assert not fd_readable(s.fileno())
    for _ in range(3):  # and it stays ready, call after call, until the input is read
        assert wait_for_input_streams(streams, timeout=0) == [s]
    s.read_sequence(bytearray(3 if consume == "peek_char" else 2))
    assert wait_for_input_streams(streams, timeout=0) == []


@pytest.mark.parametrize("n", [2, 100])
def test_unread_char_counts(pairs: Any, n: int) -> None:
    streams, peers = pairs(n)
    assert wait_for_input_streams(streams, timeout=0) == []
    peers[1].sendall(b"a")
    assert streams[1].read_char() == "a"
    assert wait_for_input_streams(streams, timeout=0) == []
    streams[1].unread_char("a")
    assert wait_for_input_streams(streams, timeout=0) == [streams[1]]


@pytest.mark.parametrize("n", SIZES)
def test_end_of_file_counts(pairs: Any, n: int) -> None:
    streams, peers = pairs(n)
    peers[33].shutdown(socket.SHUT_WR)
    assert wait_for_input_streams(streams, timeout=LONG) == [streams[33]]
    assert streams[33].read_char(eof_error=False) is None
    # End-of-file already seen by the stream: still ready (a read returns at once).
    assert wait_for_input_streams(streams, timeout=0) == [streams[33]]
    peers[34].close()
    assert wait_for_input_streams(streams, timeout=LONG) == [streams[33], streams[34]]


def test_peer_reset_counts(tcp_pair: Any) -> None:
    a, b = tcp_pair()
    s = SocketStream(a)
    try:
        # SO_LINGER 0: close sends a RST, so the stream sees an error, not end-of-file.
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        b.close()
        assert wait_for_input_streams([s], timeout=LONG) == [s]
        # The read must not block, and it reports the reset that the probe saw.
        with pytest.raises(SocketIOError):
            s.read_char()
    finally:
        s.close(abort=True)


def test_a_stream_without_socket_is_ready(pairs: Any) -> None:
    streams, _ = pairs(3)
    old = streams[1].replace_socket(None)
    assert old is not None
    old.close()
    assert wait_for_input_streams(streams, timeout=0) == [streams[1]]
    assert streams[1].read_char(eof_error=False) is None


# ---- waking -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [pytest.param(1, id="one"), *SIZES])
def test_input_arriving_while_waiting_wakes_the_call(pairs: Any, peer: Any, n: int) -> None:
    streams, peers = pairs(n)
    waiting = threading.Event()

    def send_when_waiting() -> None:
        assert waiting.wait(LONG)
        peers[-1].sendall(b"x")

    peer(send_when_waiting)
    # The wait_function runs just before the first wait: the peer sends while we wait.
    got = wait_for_input_streams(streams, timeout=LONG, wait_function=lambda: waiting.set())
    assert got == [streams[-1]]


@pytest.mark.parametrize("n", SIZES)
def test_end_of_file_while_waiting_wakes_the_call(pairs: Any, peer: Any, n: int) -> None:
    streams, peers = pairs(n)
    waiting = threading.Event()

    def close_when_waiting() -> None:
        assert waiting.wait(LONG)
        peers[0].shutdown(socket.SHUT_WR)

    peer(close_when_waiting)
    assert (
        wait_for_input_streams_returning_first(
            streams, timeout=LONG, wait_function=lambda: waiting.set()
        )
        is streams[0]
    )


# ---- wait_function ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [pytest.param(0, id="empty"), *SIZES])
def test_wait_function_true_ends_the_wait(pairs: Any, n: int) -> None:
    streams, _ = pairs(n)
    calls = 0

    def third_time() -> bool:
        nonlocal calls
        calls += 1
        return calls == 3

    start = time.monotonic()
    assert wait_for_input_streams(streams, wait_function=third_time) == []
    # Called before the first wait, then after each slice of WAIT_FUNCTION_INTERVAL.
    assert calls == 3
    assert time.monotonic() - start >= 2 * _multiwait.WAIT_FUNCTION_INTERVAL
    assert wait_for_input_streams_returning_first(streams, wait_function=lambda: 1) is None


def test_ready_streams_win_over_wait_function(pairs: Any) -> None:
    streams, peers = pairs(2)
    peers[1].sendall(b"x")
    assert wait_for_input_streams(streams, wait_function=lambda: True) == [streams[1]]


def test_wait_function_does_not_stretch_the_timeout(pairs: Any) -> None:
    streams, _ = pairs(2)
    start = time.monotonic()
    assert wait_for_input_streams(streams, timeout=SHORT, wait_function=lambda: False) == []
    assert SHORT <= time.monotonic() - start < LONG


def test_wait_function_error_propagates(pairs: Any) -> None:
    streams, _ = pairs(2)

    def boom() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        wait_for_input_streams(streams, wait_function=boom)


def test_wait_function_may_wait_on_streams_itself(pairs: Any) -> None:
    # A nested call from the wait_function, in the same thread, on the cached path.
    outer, _ = pairs(100)
    inner, inner_peers = pairs(100)
    inner_peers[7].sendall(b"x")
    seen: list[list[SocketStream]] = []

    def nested() -> bool:
        seen.append(wait_for_input_streams(inner, timeout=0))
        seen.append(wait_for_input_streams(outer, timeout=0))
        return True

    assert wait_for_input_streams(outer, wait_function=nested) == []
    assert seen == [[inner[7]], []]
    assert wait_for_input_streams(outer, timeout=0) == []


# ---- the cached registration -----------------------------------------------------------


def test_replaced_socket_with_the_same_descriptor_number_is_seen(pairs: Any) -> None:
    # The classic epoll trap: a descriptor closed and reopened under the same number drops out
    # of an epoll set silently.  The cache is keyed by socket object, not by number.
    streams, _ = pairs(100)
    assert wait_for_input_streams(streams, timeout=0) == []  # builds the registration
    s = streams[50]
    number = s.fileno()
    old = s.replace_socket(None)
    assert old is not None
    old.close()
    c, d = socket.socketpair()
    try:
        assert c.fileno() == number  # the lowest free number comes back
        assert s.replace_socket(c) is None
        d.sendall(b"x")
        assert wait_for_input_streams(streams, timeout=LONG) == [s]
        assert s.read_char() == "x"
    finally:
        d.close()


def test_closed_stream_replaced_in_the_list_is_seen(pairs: Any) -> None:
    streams, _ = pairs(100)
    assert wait_for_input_streams(streams, timeout=0) == []
    streams[0].close()
    (fresh,), (fresh_peer,) = pairs(1)
    listed = [fresh, *streams[1:]]
    fresh_peer.sendall(b"x")
    assert wait_for_input_streams(listed, timeout=LONG) == [fresh]


def test_warm_calls_see_every_change(pairs: Any) -> None:
    # The warm call (one stream holding input, nothing told, the kernel asked once) must give
    # way to the full wait whenever anything else may be ready.
    streams, peers = pairs(100)
    s = streams[50]
    peers[50].sendall(b"abc")
    assert wait_for_input_streams(streams, timeout=LONG) == [s]
    assert s.read_char() == "a"  # the socket is drained, "bc" stays buffered
    for _ in range(3):
        assert wait_for_input_streams(streams, timeout=0) == [s]
    peers[20].sendall(b"x")  # another socket becomes readable
    assert wait_for_input_streams(streams, timeout=0) == [streams[20], s]
    assert streams[20].read_char() == "x"
    assert wait_for_input_streams(streams, timeout=0) == [s]
    peers[70].sendall(b"uv")
    assert fd_readable(streams[70].fileno(), LONG)
    assert streams[70].read_char() == "u"  # "v" in memory only: told, the socket is quiet
    assert not fd_readable(streams[70].fileno())
    assert wait_for_input_streams(streams, timeout=0) == [s, streams[70]]
    assert streams[70].read_char() == "v"
    assert s.read_sequence(bytearray(2)) == 2  # the held input is read
    assert wait_for_input_streams(streams, timeout=0) == []
    peers[50].shutdown(socket.SHUT_WR)  # end-of-file: ready with nothing buffered
    assert wait_for_input_streams(streams, timeout=LONG) == [s]
    assert wait_for_input_streams(streams, timeout=0) == [s]
    changed = list(streams)
    changed[50] = streams[10]  # the caller's list changed between calls: it is compared
    assert wait_for_input_streams(changed, timeout=0) == []
    assert wait_for_input_streams(changed, timeout=0) == []


def test_a_stream_closed_by_another_thread_between_cached_calls(pairs: Any) -> None:
    # Only the thread that waits on its cache closes the cache's epoll: a close in another
    # thread is seen (and the epoll released) by that thread's next call.
    streams, peers = pairs(100)
    peers[40].sendall(b"abc")
    assert wait_for_input_streams(streams, timeout=LONG) == [streams[40]]
    assert streams[40].read_char() == "a"
    assert wait_for_input_streams(streams, timeout=0) == [streams[40]]  # warm
    fds_with_cache = set(_open_fds())
    closer = PeerThread(streams[7].close)
    closer.start()
    closer.join_checked()
    with pytest.raises(ValueError, match=r"streams\[7\] is closed"):
        wait_for_input_streams(streams, timeout=0)
    # The stream's socket and the cache's epoll are gone; nothing else was opened.
    assert len(fds_with_cache - set(_open_fds())) == 2
    assert set(_open_fds()) <= fds_with_cache
    rest = streams[:7] + streams[8:]
    assert wait_for_input_streams(rest, timeout=0) == [streams[40]]
    assert wait_for_input_streams(rest, timeout=0) == [streams[40]]


def test_cache_descriptor_is_released_when_streams_are_collected() -> None:
    import gc

    fds_before = set(_open_fds())
    socks = [socket.socketpair() for _ in range(100)]
    streams = [SocketStream(a) for a, _ in socks]
    assert wait_for_input_streams(streams, timeout=0) == []
    for s in streams:
        s.close()
    for _, b in socks:
        b.close()
    del streams, socks, s
    gc.collect()
    assert set(_open_fds()) == fds_before


def _open_fds() -> list[int]:
    import os

    return [int(n) for n in os.listdir("/proc/self/fd")]


# ---- many threads ----------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_several_threads_wait_on_the_same_and_different_lists(pairs: Any, n: int) -> None:
    # The first probe moves the input into the stream and the socket goes quiet: the other
    # threads waiting on it must still be told.
    shared, shared_peers = pairs(n)
    own = [pairs(size) for size in (3, 80)]
    threads_waiting = threading.Semaphore(0)
    n_shared = 4

    def waiter(streams: list[SocketStream]) -> list[SocketStream]:
        return wait_for_input_streams(
            streams, timeout=LONG, wait_function=lambda: threads_waiting.release()
        )

    threads = [PeerThread(waiter, shared) for _ in range(n_shared)]
    threads += [PeerThread(waiter, streams) for streams, _ in own]
    for t in threads:
        t.start()
    try:
        for _ in threads:
            assert threads_waiting.acquire(timeout=LONG)
        shared_peers[n - 10].sendall(b"x")
        for _, peers in own:
            peers[1].sendall(b"y")
    finally:
        results = [t.join_checked() for t in threads]
    assert results[:n_shared] == [[shared[n - 10]]] * n_shared
    assert results[n_shared:] == [[streams[1]] for streams, _ in own]
    # The data was extracted once, whole, by the probes.
    assert shared[n - 10].read_char_no_hang() == "x"
    assert shared[n - 10].read_char_no_hang() is None


def test_threads_loop_waiting_and_reading(pairs: Any) -> None:
    # Each reader thread owns a list; a writer feeds them all; nothing is lost or duplicated.
    per_thread, n_threads, rounds = 70, 3, 20
    lists = [pairs(per_thread) for _ in range(n_threads)]

    def reader(streams: list[SocketStream]) -> int:
        got = 0
        while got < rounds:
            for s in wait_for_input_streams(streams, timeout=LONG):
                while s.read_char_no_hang() is not None:
                    got += 1
        return got

    threads = [PeerThread(reader, streams) for streams, _ in lists]
    for t in threads:
        t.start()
    try:
        for r in range(rounds):
            for _, peers in lists:
                peers[(r * 7) % per_thread].sendall(b"z")
    finally:
        assert [t.join_checked() for t in threads] == [rounds] * n_threads


# ---- 5000 streams --------------------------------------------------------------------------


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE to what 5000 pairs need, or skip."""
    need = 10200 + len(_open_fds())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        except (ValueError, OSError) as exc:
            pytest.skip(f"cannot raise RLIMIT_NOFILE to {need}: {exc}")
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_5000_streams_one_ready(pairs: Any, many_fds: None) -> None:
    streams, peers = pairs(5000)
    assert wait_for_input_streams(streams, timeout=0) == []  # warm-up: builds the registration
    for i in (4321, 17, 4999):
        peers[i].sendall(b"x")
        start = time.monotonic()
        got = wait_for_input_streams(streams, timeout=LONG)
        elapsed = time.monotonic() - start
        assert got == [streams[i]]
        assert elapsed < 1.0, f"{elapsed:.3f} s for one ready stream of 5000"
        assert streams[i].read_char() == "x"
    # A stream ready while waiting, too.
    waiting = threading.Event()
    t = PeerThread(lambda: (waiting.wait(LONG), peers[2500].sendall(b"y")))
    t.start()
    try:
        got = wait_for_input_streams(streams, timeout=LONG, wait_function=lambda: waiting.set())
    finally:
        t.join_checked()
    assert got == [streams[2500]]


# ---- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (True, TypeError),
        (False, TypeError),
        ("1", TypeError),
        (1j, TypeError),
        (-1, ValueError),
        (-0.001, ValueError),
        (math.nan, ValueError),
        (-math.inf, ValueError),
    ],
)
def test_bad_timeout(pairs: Any, timeout: Any, error: type[Exception]) -> None:
    streams, peers = pairs(2)
    peers[0].sendall(b"x")
    with pytest.raises(error, match="timeout"):
        wait_for_input_streams(streams, timeout=timeout)
    with pytest.raises(error, match="timeout"):
        wait_for_input_streams_returning_first(streams, timeout=timeout)
    # Nothing was consumed.
    assert streams[0].read_char() == "x"


def test_bad_streams(pairs: Any, tcp_pair: Any) -> None:
    streams, peers = pairs(3)
    peers[0].sendall(b"x")
    with pytest.raises(TypeError, match=r"streams\[1\]"):
        wait_for_input_streams([streams[0], peers[1]], timeout=0)
    with pytest.raises(TypeError, match=r"streams\[2\]"):
        wait_for_input_streams([streams[0], streams[1], 5], timeout=0)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="streams must be a list"):
        wait_for_input_streams(streams[0], timeout=0)
    with pytest.raises(TypeError, match="streams must be a list"):
        wait_for_input_streams(None, timeout=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="wait_function"):
        wait_for_input_streams(streams, wait_function=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="forever"):
        wait_for_input_streams([])
    with pytest.raises(ValueError, match="forever"):
        wait_for_input_streams_returning_first([])

    a, _ = tcp_pair()
    out = SocketStream(a, direction="output")
    try:
        with pytest.raises(io.UnsupportedOperation, match=r"streams\[1\].*output only"):
            wait_for_input_streams([streams[0], out], timeout=0)
    finally:
        out.close()
    closed = streams[2]
    closed.close()
    with pytest.raises(ValueError, match=r"streams\[1\] is closed"):
        wait_for_input_streams([streams[0], closed], timeout=0)
    with pytest.raises(ValueError, match="closed"):
        wait_for_input_streams_returning_first([closed])
    # Nothing was consumed by the failed calls.
    assert streams[0].read_char() == "x"


def test_input_only_stream_is_fine(pairs: Any) -> None:
    streams, peers = pairs(2, direction="input")
    peers[1].sendall(b"x")
    assert wait_for_input_streams(streams, timeout=LONG) == [streams[1]]


# ---- TLS -------------------------------------------------------------------------------------

TLS_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3"),
]


@pytest.fixture
def tls_pair(
    tcp_pair: Any, peer: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> Iterator[Callable[[ssl.TLSVersion], tuple[SocketStream, SocketStream]]]:
    """A factory: (server stream, client stream) over loopback TCP, handshake done."""
    made: list[SocketStream] = []

    def make(version: ssl.TLSVersion) -> tuple[SocketStream, SocketStream]:
        server_ctx.minimum_version = server_ctx.maximum_version = version
        a, b = tcp_pair()
        server = peer(lambda: SocketStream(a, ssl_ctx=server_ctx, ssl_side="server"))
        client = SocketStream(
            b, ssl_ctx=client_ctx, ssl_side="client", tlsext_host_name="localhost"
        )
        made.append(client)
        server_stream: SocketStream = server.join_checked()
        made.append(server_stream)
        assert (
            client.ssl_object.version()
            == {
                ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                ssl.TLSVersion.TLSv1_3: "TLSv1.3",
            }[version]
        )
        return server_stream, client

    yield make
    for s in made:
        s.close(abort=True)


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_tls_pending_input_counts(tls_pair: Any, version: ssl.TLSVersion) -> None:
    server: SocketStream
    client: SocketStream
    server, client = tls_pair(version)
    fd = client.fileno()
    # Let any session tickets go by first, so that what follows is only the data.
    if version == ssl.TLSVersion.TLSv1_3:
        assert fd_readable(fd, LONG)
        assert wait_for_input_streams([client], timeout=0) == []
    # Two records, both sent before the client reads anything.
    server.write_string("ab")
    server.force_output()
    server.write_string("cd")
    server.force_output()
    assert fd_readable(fd, LONG)
    assert client.read_char() == "a"
    # Read until the socket itself is drained, leaving input inside the stream or its engine.
    expected = "bcd"
    while fd_readable(fd):
        assert client.read_char() == expected[0]
        expected = expected[1:]
    assert expected, "everything was read before the socket was drained"
    assert wait_for_input_streams([client], timeout=0) == [client]
    assert wait_for_input_streams_returning_first([client], timeout=LONG) is client
    for ch in expected:
        assert client.read_char_no_hang() == ch
    assert wait_for_input_streams([client], timeout=0) == []


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_tls_record_left_in_the_engine_counts(tls_pair: Any, version: ssl.TLSVersion) -> None:
    # Record 1 holds exactly the one character read; record 2 arrived in the same recv and
    # waits, still encrypted, inside the TLS engine: the stream's buffer is empty and the socket
    # is drained, yet a read would not block.
    server, client = tls_pair(version)
    fd = client.fileno()
    if version == ssl.TLSVersion.TLSv1_3:
        assert fd_readable(fd, LONG)
        assert wait_for_input_streams([client], timeout=0) == []  # consumes the tickets
    server.write_string("a")
    server.force_output()
    server.write_string("bc")
    server.force_output()
    assert client.read_char() == "a"
    assert not fd_readable(fd), "the second record was not received with the first"
    assert wait_for_input_streams([client], timeout=SHORT) == [client]
    assert client.read_char_no_hang() == "b"


def test_tls13_session_tickets_alone_are_not_input(tls_pair: Any) -> None:
    server, client = tls_pair(ssl.TLSVersion.TLSv1_3)
    fd = client.fileno()
    # The server's NewSessionTicket messages arrive after the client's handshake ended.
    assert fd_readable(fd, LONG), "no session tickets arrived"
    start = time.monotonic()
    assert wait_for_input_streams([client], timeout=SHORT) == []
    assert time.monotonic() - start >= SHORT
    assert not fd_readable(fd)  # the probe consumed the tickets
    server.write_string("x")
    server.force_output()
    assert wait_for_input_streams([client], timeout=LONG) == [client]
    assert client.read_char_no_hang() == "x"  # the read does not block


def test_tls_many_streams_one_ready(tls_pair: Any, pairs: Any) -> None:
    server, client = tls_pair(ssl.TLSVersion.TLSv1_3)
    plain, _ = pairs(99)
    listed = [*plain[:40], client, *plain[40:]]
    assert wait_for_input_streams(listed, timeout=SHORT) == []
    server.write_line("hello")
    server.force_output()
    assert wait_for_input_streams(listed, timeout=LONG) == [client]
    assert client.read_line() == ("hello", False)


def test_tls_close_notify_counts(tls_pair: Any) -> None:
    server, client = tls_pair(ssl.TLSVersion.TLSv1_3)
    assert wait_for_input_streams([client], timeout=SHORT) == []
    server.close()
    assert wait_for_input_streams([client], timeout=LONG) == [client]
    assert client.read_char(eof_error=False) is None

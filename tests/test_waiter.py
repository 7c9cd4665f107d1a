"""StreamWaiter on real sockets: every method, every readiness rule, plain and TLS.

No sleeps: a peer that must act *while* a wait is blocked waits until the waiter says it is in
the kernel (``_blocked``, polled with a bounded event wait), then acts.
"""

from __future__ import annotations

import io
import math
import os
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import LONG, SHORT, PeerThread
from sockstream import SocketStream, StreamWaiter, _multiwait, wait_for_input_streams


@pytest.fixture(autouse=True)
def _forget_cache() -> Iterator[None]:
    yield
    _multiwait._forget_registrations()


class Pairs:
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


def until_blocked(waiter: StreamWaiter) -> None:
    """Return once ``waiter`` is blocked in the kernel (bounded: LONG)."""
    tick = threading.Event()
    deadline = time.monotonic() + LONG
    while not waiter._blocked:
        assert time.monotonic() < deadline, "the waiter never blocked"
        tick.wait(0.001)


def _open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


# ---- the set ---------------------------------------------------------------------------------


def test_set_operations(pairs: Any) -> None:
    streams, _ = pairs(4)
    with StreamWaiter(streams[:2]) as w:
        assert len(w) == 2
        assert streams[0] in w
        assert streams[2] not in w
        assert "x" not in w
        w.add(streams[3])
        w.add(streams[2])
        w.add(streams[3])  # twice: one entry
        assert len(w) == 4
        assert list(w) == [streams[0], streams[1], streams[3], streams[2]]  # order added
        w.discard(streams[1])
        w.discard(streams[1])  # absent: nothing happens
        assert list(w) == [streams[0], streams[3], streams[2]]
        w.add(streams[1])  # back in, now last
        assert list(w) == [streams[0], streams[3], streams[2], streams[1]]
        assert "4 streams" in repr(w)
    assert len(w) == 0
    assert w.closed
    assert "closed" in repr(w)
    assert not any(s.closed for s in streams)  # the streams stay open


def test_bad_additions_change_nothing(pairs: Any, tcp_pair: Any) -> None:
    streams, _ = pairs(2)
    closed = streams[1]
    closed.close()
    a, _ = tcp_pair()
    out = SocketStream(a, direction="output")
    try:
        with StreamWaiter([streams[0]]) as w:
            with pytest.raises(ValueError, match="closed"):
                w.add(closed)
            with pytest.raises(io.UnsupportedOperation, match="output only"):
                w.add(out)
            with pytest.raises(TypeError, match="SocketStream"):
                w.add(a)
            assert list(w) == [streams[0]]
        with pytest.raises(TypeError, match="iterable"):
            StreamWaiter(streams[0])
        with pytest.raises(ValueError, match=r"streams\[1\] is closed"):
            StreamWaiter([streams[0], closed])
    finally:
        out.close()


def test_close_releases_descriptors_and_is_final(pairs: Any) -> None:
    streams, peers = pairs(100)
    before = _open_fds()
    w = StreamWaiter(streams)
    peers[5].sendall(b"x")
    assert w.wait(LONG) == [streams[5]]
    assert w.wait(SHORT) == [streams[5]]  # still buffered: still ready
    w.close()
    w.close()  # idempotent
    assert _open_fds() == before
    with pytest.raises(ValueError, match="closed"):
        w.add(streams[0])
    with pytest.raises(ValueError, match="closed"):
        w.wait(0)
    assert streams[5].read_char() == "x"
    assert all(s._watchers == () for s in streams)


# ---- readiness ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 200])
def test_ready_streams_in_the_order_added(pairs: Any, n: int) -> None:
    streams, peers = pairs(n)
    order = list(reversed(streams))  # added in the reverse order of their descriptors
    with StreamWaiter(order) as w:
        assert w.wait(0) == []
        peers[0].sendall(b"a")
        peers[n - 1].sendall(b"b")
        peers[1].sendall(b"c")
        got = w.wait(LONG)
        while len(got) < 3:  # the kernel may not show all three at once on a loaded machine
            got = w.wait(LONG)
        assert got == [streams[n - 1], streams[1], streams[0]]
        assert streams[1].read_char() == "c"
        assert w.wait(LONG) == [streams[n - 1], streams[0]]


def test_more_ready_than_the_fast_path_asks_for_are_all_returned(pairs: Any) -> None:
    """The warm wait asks epoll for a few events (``_FAST_EVENTS``); more ready go the full way."""
    from sockstream._waiter import _FAST_EVENTS

    n = 3 * _FAST_EVENTS
    streams, peers = pairs(n)
    with StreamWaiter(streams) as w:
        peers[0].sendall(b"a")
        assert w.wait(LONG) == [streams[0]]  # its byte is in its buffer now
        assert w.wait(LONG) == [streams[0]]  # and it is the fast path's stream
        assert w._fast_stream is streams[0]
        for p in peers[1 : 2 * _FAST_EVENTS + 1]:
            p.sendall(b"b")
        assert w.wait(LONG) == streams[: 2 * _FAST_EVENTS + 1]
        assert w.wait(0) == streams[: 2 * _FAST_EVENTS + 1]


def test_timeout(pairs: Any) -> None:
    streams, _ = pairs(2)
    with StreamWaiter(streams) as w:
        start = time.monotonic()
        assert w.wait(SHORT) == []
        assert time.monotonic() - start >= SHORT
        assert w.wait(0) == []
        assert w.wait(0.0) == []
        bad: Any
        for bad, error in [
            (-1, ValueError),
            (math.nan, ValueError),
            ("1", TypeError),
            (True, TypeError),
        ]:
            with pytest.raises(error, match="timeout"):
                w.wait(bad)


def test_empty_waiter(pairs: Any) -> None:
    with StreamWaiter() as w:
        assert w.wait(0) == []
        assert w.wait(SHORT) == []
        with pytest.raises(ValueError, match="forever"):
            w.wait()


@pytest.mark.parametrize("how", ["peek", "unread", "partial"])
def test_input_in_memory_counts(pairs: Any, how: str) -> None:
    streams, peers = pairs(100)
    s = streams[40]
    with StreamWaiter(streams) as w:
        assert w.wait(0) == []
        peers[40].sendall(b"xy")
        if how == "peek":
            assert s.peek_char() == "x"
        elif how == "unread":
            assert s.read_char() == "x"
            assert s.read_char() == "y"
            s.unread_char("y")
        else:
            assert s.read_char() == "x"  # "y" stays in the buffer
        # The socket is drained; only the stream's memory holds input.
        assert w.wait(0) == [s]
        assert w.wait(LONG) == [s]
        s.clear_input() if how == "peek" else None
        while s.read_char_no_hang() is not None:
            pass
        assert w.wait(0) == []


def test_input_in_memory_before_adding_counts(pairs: Any) -> None:
    streams, peers = pairs(2)
    peers[1].sendall(b"xy")
    assert streams[1].read_char() == "x"
    with StreamWaiter(streams) as w:
        assert w.wait(0) == [streams[1]]


def test_end_of_file_and_reset_count(tcp_pair: Any, pairs: Any) -> None:
    streams, peers = pairs(3)
    a, b = tcp_pair()
    reset = SocketStream(a)
    try:
        with StreamWaiter([*streams, reset]) as w:
            assert w.wait(0) == []
            peers[2].close()
            assert w.wait(LONG) == [streams[2]]
            b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            b.close()  # RST
            got = w.wait(LONG)
            assert got == [streams[2], reset]
            assert streams[2].read_char(eof_error=False) is None
            with pytest.raises(OSError):
                reset.read_char()
    finally:
        reset.close(abort=True)


def test_stream_without_socket_is_ready_and_replaced_socket_is_followed(pairs: Any) -> None:
    streams, _ = pairs(3)
    with StreamWaiter(streams) as w:
        assert w.wait(0) == []
        old = streams[1].replace_socket(None)
        assert old is not None
        assert w.wait(0) == [streams[1]]  # no socket: reads see end-of-file at once
        # A new socket with the same descriptor number as the old one.
        fd = old.fileno()
        old.close()
        c, d = socket.socketpair()
        try:
            assert c.fileno() == fd
            streams[1].socket = c
            assert w.wait(0) == []
            d.sendall(b"z")
            assert w.wait(LONG) == [streams[1]]
            assert streams[1].read_char() == "z"
            assert w.wait(0) == []
            # replace_socket keeps the registration in step too
            e, f = socket.socketpair()
            try:
                back = streams[1].replace_socket(e)
                assert back is c
                d.sendall(b"ignored")  # the old socket: not watched any more
                assert w.wait(0) == []
                f.sendall(b"q")
                assert w.wait(LONG) == [streams[1]]
            finally:
                f.close()
        finally:
            d.close()
            c.close()


def test_input_arriving_while_blocked_wakes_the_wait(pairs: Any, peer: Any) -> None:
    streams, peers = pairs(100)
    with StreamWaiter(streams) as w:

        def send() -> None:
            until_blocked(w)
            peers[77].sendall(b"x")

        peer(send)
        assert w.wait(LONG) == [streams[77]]


# ---- streams that close ---------------------------------------------------------------------


def test_a_stream_closed_between_waits_leaves(pairs: Any) -> None:
    streams, peers = pairs(100)
    with StreamWaiter(streams) as w:
        peers[3].sendall(b"x")
        peers[4].sendall(b"y")
        assert w.wait(LONG)[:1] == [streams[3]]
        streams[3].close()
        assert streams[3] not in w
        assert len(w) == 99
        assert w.wait(LONG) == [streams[4]]
        streams[4].close()
        assert w.wait(0) == []
        assert streams[3]._watchers == ()


def test_a_stream_closed_by_another_thread_while_blocked_leaves(pairs: Any, peer: Any) -> None:
    streams, peers = pairs(100)
    with StreamWaiter(streams) as w:

        def close_then_send() -> None:
            until_blocked(w)
            streams[10].close()
            peers[11].sendall(b"x")

        peer(close_then_send)
        assert w.wait(LONG) == [streams[11]]
        assert streams[10] not in w
        assert len(w) == 99


def test_a_member_closed_but_not_yet_told_is_not_returned(pairs: Any) -> None:
    """The window of a close in another thread: the stream is closed, its descriptor fires
    (shut down, or here kept open by a dup), and the waiter has not been told yet."""
    streams, peers = pairs(3)
    keep = os.dup(streams[0].fileno())  # the file stays open (and readable) after the close
    try:
        with StreamWaiter(streams) as w:
            peers[0].sendall(b"x")
            streams[0]._unwatch(w)  # closed, and the waiter not told (yet)
            streams[0].close()
            assert w.wait(0) == []  # for wait(), a closed stream has left
            peers[1].sendall(b"y")
            assert w.wait(LONG) == [streams[1]]
    finally:
        os.close(keep)


class _Recorder:
    """A watcher that records, when told of a change, whether the socket was still intact."""

    def __init__(self, sock: socket.socket, peer: socket.socket) -> None:
        self.sock, self.peer = sock, peer
        self.seen: list[tuple[bool, bool]] = []

    def stream_input(self, stream: SocketStream) -> None:
        pass

    def stream_changed(self, stream: SocketStream) -> None:
        try:
            self.peer.recv(1, socket.MSG_DONTWAIT)
            quiet = False  # end-of-file: already shut down
        except BlockingIOError:
            quiet = True
        self.seen.append((self.sock.fileno() != -1, quiet))


def test_watchers_are_told_before_the_socket_is_shut_down_and_closed(pairs: Any) -> None:
    """A waiter unregisters a closing stream's descriptor while it is open and quiet: the
    shutdown cannot wake a wait for a stream that has left, and the number cannot be reused
    under the registration."""
    streams, peers = pairs(1)
    sock = streams[0].socket
    assert sock is not None
    recorder = _Recorder(sock, peers[0])
    streams[0]._watch(recorder)
    streams[0].close()
    assert recorder.seen == [(True, True)]


def test_close_of_the_waiter_from_another_thread_ends_a_blocked_wait(pairs: Any, peer: Any) -> None:
    streams, _ = pairs(3)
    w = StreamWaiter(streams)

    def close() -> None:
        until_blocked(w)
        w.close()

    peer(close)
    with pytest.raises(ValueError, match="closed"):
        w.wait(LONG)
    assert w.closed


def test_two_threads_waiting_on_one_waiter_is_an_error(pairs: Any, peer: Any) -> None:
    streams, peers = pairs(2)
    with StreamWaiter(streams) as w:

        def second() -> None:
            until_blocked(w)
            with pytest.raises(RuntimeError, match="already waiting"):
                w.wait(0)
            peers[0].sendall(b"x")

        peer(second)
        assert w.wait(LONG) == [streams[0]]


def test_input_moved_by_another_waiters_probe_wakes_the_wait(pairs: Any, peer: Any) -> None:
    streams, peers = pairs(100)
    a = StreamWaiter(streams)
    b = StreamWaiter(streams[50:])
    try:

        def other() -> list[SocketStream]:
            until_blocked(a)
            peers[60].sendall(b"x")
            return b.wait(LONG)  # its probe moves the byte into the stream: the socket is quiet

        t = peer(other)
        assert a.wait(LONG) == [streams[60]]
        assert t.join_checked() == [streams[60]]
    finally:
        a.close()
        b.close()


def test_discard_and_add_from_another_thread(pairs: Any, peer: Any) -> None:
    streams, peers = pairs(3)
    with StreamWaiter(streams[:2]) as w:

        def change() -> None:
            until_blocked(w)
            w.discard(streams[0])
            peers[0].sendall(b"ignored")
            w.add(streams[2])
            peers[2].sendall(b"x")

        peer(change)
        got = w.wait(LONG)
        assert got == [streams[2]]
        assert list(w) == [streams[1], streams[2]]


# ---- cost does not grow with the set ---------------------------------------------------------


class CountingStream(SocketStream):
    asked = 0

    def _buffered_input(self) -> bool:
        CountingStream.asked += 1
        return super()._buffered_input()


@pytest.fixture
def many_fds() -> Iterator[None]:
    import os

    need = 10400 + len(os.listdir("/proc/self/fd"))
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


def test_5000_streams_beyond_fd_setsize_and_cost_independent_of_n(many_fds: None) -> None:
    made = Pairs()
    try:
        for _ in range(5000):
            a, b = socket.socketpair()
            made.streams.append(CountingStream(a))
            made.peers.append(b)
        streams, peers = made.streams, made.peers
        assert max(s.fileno() for s in streams) > 1024
        with StreamWaiter(streams) as w:
            assert w.wait(0) == []  # the first wait asks every stream once (all are new)
            for i in (4321, 17, 4999, 2500):
                peers[i].sendall(b"xy")
                CountingStream.asked = 0
                assert w.wait(LONG) == [streams[i]]
                assert w.wait(LONG) == [streams[i]]
                assert CountingStream.asked <= 6, "wait asked the idle streams"
                assert streams[i].read(2) == "xy"
            # wait_for_input_streams on the same streams: beyond 1024 too
            peers[4000].sendall(b"z")
            assert wait_for_input_streams(streams, timeout=LONG) == [streams[4000]]
            CountingStream.asked = 0
            assert wait_for_input_streams(streams, timeout=LONG) == [streams[4000]]
            assert CountingStream.asked <= 6
    finally:
        made.close()


# ---- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_pair(
    tcp_pair: Any, peer: Any, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> Iterator[Callable[[ssl.TLSVersion], tuple[SocketStream, SocketStream]]]:
    made: list[SocketStream] = []

    def make(version: ssl.TLSVersion) -> tuple[SocketStream, SocketStream]:
        server_ctx.minimum_version = server_ctx.maximum_version = version
        a, b = tcp_pair()
        server = PeerThread(lambda: SocketStream(a, ssl_ctx=server_ctx, ssl_side="server"))
        server.start()
        client = SocketStream(
            b, ssl_ctx=client_ctx, ssl_side="client", tlsext_host_name="localhost"
        )
        made.append(client)
        server_stream: SocketStream = server.join_checked()
        made.append(server_stream)
        return server_stream, client

    yield make
    for s in made:
        s.close(abort=True)


def fd_readable(fd: int, timeout: float = 0) -> bool:
    import select

    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(math.ceil(timeout * 1000)))


TLS_VERSIONS = [
    pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2"),
    pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3"),
]


def test_tls13_session_tickets_alone_do_not_count(tls_pair: Any, pairs: Any) -> None:
    server, client = tls_pair(ssl.TLSVersion.TLSv1_3)
    plain, _ = pairs(80)
    with StreamWaiter([*plain, client]) as w:
        assert fd_readable(client.fileno(), LONG), "no session tickets arrived"
        start = time.monotonic()
        assert w.wait(SHORT) == []
        assert time.monotonic() - start >= SHORT
        assert not fd_readable(client.fileno())  # the probe consumed the tickets
        server.write_line("hello")
        server.force_output()
        assert w.wait(LONG) == [client]
        assert client.read_line() == ("hello", False)
        assert w.wait(0) == []


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_tls_input_pending_in_the_engine_counts(tls_pair: Any, version: ssl.TLSVersion) -> None:
    server, client = tls_pair(version)
    fd = client.fileno()
    with StreamWaiter([client]) as w:
        if version == ssl.TLSVersion.TLSv1_3:
            assert fd_readable(fd, LONG)
            assert w.wait(0) == []  # consumes the tickets
        server.write_string("a")
        server.force_output()
        server.write_string("bc")
        server.force_output()
        assert w.wait(LONG) == [client]
        assert client.read_char() == "a"
        # The rest is in the stream or its engine, whichever; a read would not block.
        assert w.wait(SHORT) == [client]
        assert client.read_char_no_hang() == "b"
        assert w.wait(SHORT) == [client]
        assert client.read_char_no_hang() == "c"


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_tls_close_notify_and_close_count(tls_pair: Any, version: ssl.TLSVersion) -> None:
    server, client = tls_pair(version)
    with StreamWaiter([client]) as w:
        assert w.wait(SHORT) == []
        server.close()
        assert w.wait(LONG) == [client]
        assert client.read_char(eof_error=False) is None
        client.close()
        assert len(w) == 0


def test_wait_for_input_streams_knows_a_tuple_again(pairs: Any) -> None:
    streams, peers = pairs(100)
    listed = tuple(streams)
    peers[30].sendall(b"x")
    assert wait_for_input_streams(listed, timeout=LONG) == [streams[30]]
    entry = _multiwait._local.entry
    assert entry is not None
    assert entry.source is listed
    assert wait_for_input_streams(listed, timeout=LONG) == [streams[30]]
    assert wait_for_input_streams(list(listed), timeout=LONG) == [streams[30]]  # same streams
    assert _multiwait._local.entry is entry
    streams[30].close()
    with pytest.raises(ValueError, match=r"streams\[30\] is closed"):
        wait_for_input_streams(listed, timeout=0)
    assert wait_for_input_streams(listed[:30], timeout=0) == []

"""Limits against hostile peers: max_line_length on streams, and serve under 1000 bad connections.

``max_line_length``: a line longer than the limit raises ``LineTooLongError`` (a ValueError whose
message names the limit) and consumes nothing, however the line arrives (whole, in pieces, over
TLS); the memory a hostile peer can make a line read hold is bounded by the limit plus one receive.

``serve``: with ``max_connections`` above the load it must carry, ``read_timeout`` and
``handshake_timeout``, the server keeps answering good clients while 1000 idle, slow (one byte a
second) and garbage connections are open; with a small ``max_connections`` the timeouts free the
slots, so a good client waiting behind idle connections is answered in bounded time.
"""

from __future__ import annotations

import os
import random
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import LONG, PeerThread
from sockstream import LineTooLongError, SocketStream, serve

# ---- max_line_length on a stream ----------------------------------------------------------------


@pytest.fixture(params=["plain", "tls"])
def make_stream(
    request: pytest.FixtureRequest,
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> Iterator[Callable[..., tuple[SocketStream, Callable[[bytes], None]]]]:
    """make(**keywords) -> (our stream, send(bytes) from the peer); plain or TLS."""
    made: list[SocketStream] = []

    def make(**keywords: Any) -> tuple[SocketStream, Callable[[bytes], None]]:
        a, b = tcp_pair()
        if request.param == "plain":
            s = SocketStream(a, **keywords)
            made.append(s)
            return s, b.sendall
        t = PeerThread(
            lambda: SocketStream(
                b,
                ssl_ctx=client_ctx,
                ssl_side="client",
                tlsext_host_name="localhost",
                handshake_timeout=LONG,
            )
        )
        t.start()
        try:
            s = SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=LONG, **keywords)
            made.append(s)
        finally:
            peer = t.join_checked()
            made.append(peer)

        def send(data: bytes) -> None:
            peer.write(data)
            peer.flush()

        return s, send

    yield make
    for s in made:
        s.close(abort=True)


@pytest.mark.parametrize("verb", ["read_line", "readline"])
def test_long_line_arriving_whole(make_stream: Any, verb: str) -> None:
    s, send = make_stream(max_line_length=10, read_timeout=LONG)
    send(b"0123456789\n" + b"x" * 11 + b"\nafter\n")
    read = getattr(s, verb)
    assert read() in (("0123456789", False), "0123456789\n")  # exactly the limit is fine
    with pytest.raises(LineTooLongError, match=r"max_line_length=10") as info:
        read()
    assert isinstance(info.value, ValueError)
    assert info.value.max_line_length == 10
    with pytest.raises(LineTooLongError):  # still there, still too long
        read()
    assert s.read(12) == "x" * 11 + "\n"  # nothing was consumed
    assert read() in (("after", False), "after\n")


@pytest.mark.parametrize("verb", ["read_line", "readline"])
def test_long_line_arriving_in_pieces(make_stream: Any, verb: str, peer: Any) -> None:
    """The limit holds however the line is cut: raised once more than the limit is buffered."""
    s, send = make_stream(max_line_length=100, read_timeout=LONG)
    line = bytes(random.Random(8).choice(b"abcdefgh") for _ in range(150)) + b"\n"
    done = threading.Event()

    def trickle() -> None:
        for i in range(0, len(line), 7):
            send(line[i : i + 7])
        done.set()

    peer(trickle)
    with pytest.raises(LineTooLongError, match="max_line_length=100"):
        getattr(s, verb)()
    assert done.wait(LONG)
    assert s.read(len(line)) == line.decode()  # every byte is still there, in order


def test_long_line_memory_is_bounded(make_stream: Any, peer: Any) -> None:
    """A peer streaming megabytes without a newline cannot make a line read hold them."""
    s, send = make_stream(max_line_length=1000, read_timeout=LONG)
    flood = b"z" * (8 * 1024 * 1024)
    peer(lambda: send(flood))
    with pytest.raises(LineTooLongError) as info:
        s.read_line()
    assert info.value.buffered <= 1000 + 2 * 65536 + 16 * 1024
    got = s.read(len(flood))  # and the flood is all readable, in order
    assert len(got) == len(flood)
    assert got == flood.decode()


def test_limit_counts_the_line_without_its_newline(make_stream: Any) -> None:
    s, send = make_stream(max_line_length=3, read_timeout=LONG)
    send(b"abc\nabc\r\n")
    assert s.read_line() == ("abc", False)
    with pytest.raises(LineTooLongError):  # "abc\r" is four characters
        s.read_line()
    assert s.read(5) == "abc\r\n"


def test_partial_line_at_eof_within_limit_is_returned(make_stream: Any) -> None:
    s, send = make_stream(max_line_length=8, read_timeout=0.05)
    send(b"short")
    assert s.read_line() == ("short", True)  # read timeout: the partial line, missing newline
    assert s.timed_out


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_bad_max_line_length_is_refused(
    bad: object, tcp_pair: Callable[..., tuple[socket.socket, socket.socket]]
) -> None:
    a, _ = tcp_pair()
    with pytest.raises((ValueError, TypeError), match="max_line_length"):
        SocketStream(a, max_line_length=bad)  # type: ignore[arg-type]
    assert a.fileno() == -1  # the constructor closed the socket it was given


def test_serve_has_a_safe_line_limit_by_default() -> None:
    """serve's streams have a finite max_line_length; a huge line fails in the handler only."""
    seen: list[Any] = []
    done = threading.Event()

    def handler(stream: SocketStream) -> None:
        seen.append(stream.max_line_length)
        try:
            stream.read_line()
        except LineTooLongError as exc:
            seen.append(exc)
            stream.write_line("too long")
        finally:
            done.set()

    with (
        serve(handler, address="127.0.0.1") as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LONG) as c,
    ):
        c.sendall(b"q" * (1024 * 1024))
        assert done.wait(LONG)
        assert c.recv(100).startswith(b"too long")
    assert isinstance(seen[0], int)
    assert 1 <= seen[0] <= 1024 * 1024
    assert isinstance(seen[1], LineTooLongError)


# ---- serve under hostile load ------------------------------------------------------------------

HOSTILE = int(os.environ.get("SOCKSTREAM_HOSTILE_CONNECTIONS", "1000"))


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Raise RLIMIT_NOFILE for a test that holds thousands of descriptors (restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * HOSTILE + 1024
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def ping_handler(stream: SocketStream) -> None:
    """A tiny line protocol: PING -> PONG, anything else -> ERR; until end-of-file."""
    while True:
        line, missing = stream.read_line(False, None)
        if line is None or missing:
            return
        stream.write_line("PONG" if line == "PING" else "ERR")
        stream.flush()


def good_client(port: int, ctx: ssl.SSLContext | None, rounds: int = 1) -> float:
    """Connect, PING ``rounds`` times, check each PONG; return the seconds it took."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
    kw: dict[str, Any] = {"read_timeout": LONG}
    if ctx is not None:
        kw.update(
            ssl_ctx=ctx, ssl_side="client", tlsext_host_name="localhost", handshake_timeout=LONG
        )
    with SocketStream(sock, **kw) as s:
        for _ in range(rounds):
            s.write_line("PING")
            s.flush()
            assert s.read_line() == ("PONG", False)
    return time.monotonic() - started


class Hostiles:
    """``HOSTILE`` client connections: a third idle, a third slow, a third garbage."""

    def __init__(self, port: int, n: int) -> None:
        self.rng = random.Random(1000)
        self.idle: list[socket.socket] = []
        self.slow: list[socket.socket] = []
        self.garbage: list[socket.socket] = []
        self.stop = threading.Event()
        self.slow_bytes = 0
        for i in range(n):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.settimeout(LONG)
            [self.idle, self.slow, self.garbage][i % 3].append(sock)
            sock.connect(("127.0.0.1", port))
        for sock in self.garbage:
            junk = bytes(self.rng.randrange(256) for _ in range(64))
            sock.sendall(junk.replace(b"\n", b"") + b"\n")  # one junk line each
        self.driver = PeerThread(self._drip)
        self.driver.start()

    def _drip(self) -> None:
        """One byte a second on each slow connection (the pace is the point, not a sync)."""
        while not self.stop.wait(1.0):
            for sock in self.slow:
                try:
                    sock.send(b"S")
                except OSError:
                    pass  # dropped by the server: fine, counted at the end
            self.slow_bytes += 1

    def close(self) -> None:
        self.stop.set()
        self.driver.join_checked()
        for sock in self.idle + self.slow + self.garbage:
            sock.close()  # SO_LINGER 0: an RST, so no TIME_WAIT pile-up on the loopback


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.timeout(120)
def test_serve_keeps_answering_among_1000_hostile_connections(
    tls: bool, many_fds: None, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """1000 idle, slow and garbage connections held open; good clients are answered all along."""
    started = time.monotonic()
    keywords: dict[str, Any] = {"read_timeout": 60.0, "max_line_length": 1024}
    if tls:
        keywords.update(ssl_ctx=server_ctx, handshake_timeout=60.0)
    server = serve(
        ping_handler, address="127.0.0.1", max_connections=HOSTILE + 100, backlog=1024, **keywords
    )
    hostiles: Hostiles | None = None
    try:
        hostiles = Hostiles(server.port, HOSTILE)
        latencies: list[float] = []
        deadline = time.monotonic() + 2.5  # long enough for the slow ones to drip twice
        # (At least three good clients: under load the first may take the whole deadline.)
        while time.monotonic() < deadline or hostiles.slow_bytes < 2 or len(latencies) < 3:
            latencies.append(good_client(server.port, client_ctx if tls else None, rounds=3))
            assert time.monotonic() - started < 60
        held = server.active_connections
        # The idle and slow connections are all still open on the server side (the garbage
        # ones too, in plain mode; over TLS their handshake failed and they were dropped).
        assert held >= len(hostiles.idle) + len(hostiles.slow), held
        # The first good client queues behind the hostile ones still waiting to be accepted;
        # after that, good clients are answered at once, however many hostile ones are open.
        assert latencies[0] < 30.0, latencies[0]
        assert max(latencies[1:]) < 5.0, max(latencies[1:])
        report = (
            f"{HOSTILE} hostile connections, {held} held by the server, "
            f"{len(latencies)} good clients answered, first in {latencies[0]:.3f} s, "
            f"then at most {max(latencies[1:]):.3f} s"
        )
        print(report)
    finally:
        server.terminate()
        if hostiles is not None:
            hostiles.close()
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_timeouts_free_the_slots_for_good_clients(
    tls: bool, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """max_connections=8, 40 idle connections first: the read or handshake timeout frees the
    slots, and a good client queued behind them is answered."""
    keywords: dict[str, Any] = {"read_timeout": 0.3}
    if tls:
        keywords.update(ssl_ctx=server_ctx, handshake_timeout=0.3)
    server = serve(ping_handler, address="127.0.0.1", max_connections=8, **keywords)
    idle = []
    try:
        for _ in range(40):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=LONG))
        took = good_client(server.port, client_ctx if tls else None)
        assert took < LONG
        # The idle ones were dropped by their timeout: each reads end-of-file (or a reset).
        for sock in idle:
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        server.terminate()
        for sock in idle:
            sock.close()

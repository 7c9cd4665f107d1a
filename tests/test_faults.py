"""Faults: resets, half-closes, signals, KeyboardInterrupt, a close from another thread, truncation.

Each fault is made to happen *while* the stream is blocked, not merely before the call: a helper
thread waits until the blocked thread sits in ``poll`` (read from ``/proc/self/task/<tid>/wchan``,
bounded, no sleeps) and only then resets the peer, sends the signal or closes the stream.  Every
test runs over plain TCP and over TLS (both ends SocketStreams).

What each fault must leave behind (README of the issue: "the stream stays consistent"):
* a reset: a ``SocketIOError`` that says what happened, bytes received before it still
  readable, ``close()`` does not raise;
* a signal whose handler returns: nothing (PEP 475), the read goes on;
* KeyboardInterrupt in a read: what was received is still readable; in a flush: what was not
  sent is still buffered and arrives exactly once;
* ``close()`` from another thread: the blocked reader returns promptly (end-of-file);
* a TLS peer that closes without close-notify: ``SSLTruncatedError`` (opt-out:
  ``OP_IGNORE_UNEXPECTED_EOF``).
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import LONG, PeerThread
from sockstream import (
    SocketIOError,
    SocketStream,
    SSLFailure,
    SSLTruncatedError,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs /proc/<pid>/task/<tid>/wchan (Linux)"
)

#: Bytes that certainly do not fit in the kernel's buffers of a loopback pair, so a flush blocks.
BIG = 16 * 1024 * 1024

# ---- helpers ----------------------------------------------------------------------------------


#: Where a thread sleeps in the kernel waiting for its socket: ``poll``, or (a plain stream read
#: outside the main thread, docs/reliability.md) a blocking receive, TCP's or a Unix socket's.
BLOCKED_IN = ("poll", "wait_woken", "sk_wait_data", "unix_stream_read", "unix_stream_data_wait")


def wait_until_blocked(native_id: int, what: str | tuple[str, ...] = BLOCKED_IN) -> None:
    """Return once thread ``native_id`` sleeps in the kernel in one of ``what`` (bounded by
    LONG): by default waiting for its socket (``BLOCKED_IN``)."""
    path = f"/proc/self/task/{native_id}"
    deadline = time.monotonic() + LONG
    names = (what,) if isinstance(what, str) else what
    while True:
        with open(f"{path}/wchan") as f:
            wchan = f.read()
        with open(f"{path}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        if state == "S" and any(name in wchan for name in names):
            return
        assert time.monotonic() < deadline, f"thread {native_id} never blocked ({wchan!r})"
        os.sched_yield()


def in_helper(fn: Callable[[], Any]) -> PeerThread:
    """Start ``fn`` in a thread (re-raise its error with ``join_checked``)."""
    t = PeerThread(fn)
    t.start()
    return t


def when_blocked(native_id: int, action: Callable[[], object]) -> PeerThread:
    """A helper thread that runs ``action`` once thread ``native_id`` is blocked on its socket."""

    def go() -> None:
        wait_until_blocked(native_id)
        action()

    return in_helper(go)


def main_native_id() -> int:
    nid = threading.main_thread().native_id
    assert nid is not None
    return nid


def write_and_flush(s: SocketStream, data: bytes) -> None:
    s.write(data)
    s.flush()


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST instead of a FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class Pair:
    """Our SocketStream and the peer: its raw TCP socket, and its SocketStream when TLS is on."""

    def __init__(
        self, ours: SocketStream, peer_sock: socket.socket, peer: SocketStream | None
    ) -> None:
        self.ours = ours
        self.peer_sock = peer_sock
        self.peer = peer

    def send(self, data: bytes) -> None:
        if self.peer is not None:
            self.peer.write(data)
            self.peer.flush()
        else:
            self.peer_sock.sendall(data)

    def recv_exactly(self, n: int) -> bytes:
        if self.peer is not None:
            return bytes(self.peer.read(n))
        out = bytearray()
        while len(out) < n:
            chunk = self.peer_sock.recv(min(n - len(out), 1 << 20))
            assert chunk, "end-of-file too early"
            out += chunk
        return bytes(out)

    def recv_to_eof(self) -> bytes:
        if self.peer is not None:
            return bytes(self.peer.read())
        out = bytearray()
        while chunk := self.peer_sock.recv(65536):
            out += chunk
        return bytes(out)

    def shutdown_peer_output(self) -> None:
        if self.peer is not None:
            self.peer.shutdown_output()
        else:
            self.peer_sock.shutdown(socket.SHUT_WR)

    def reset_peer(self) -> None:
        """The peer's end goes away with an RST (TLS: without close-notify either)."""
        if self.peer is not None:
            raw = self.peer.replace_socket(None)
            assert raw is not None
            self.peer.close(abort=True)
            reset(raw)
        else:
            reset(self.peer_sock)

    def close(self) -> None:
        self.ours.close(abort=True)
        if self.peer is not None:
            self.peer.close(abort=True)
        self.peer_sock.close()


@pytest.fixture(params=["plain", "tls"])
def pair(
    request: pytest.FixtureRequest,
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> Iterator[Pair]:
    """A connected pair over loopback TCP, plain or TLS (we are the TLS server)."""
    a, b = tcp_pair()
    if request.param == "plain":
        p = Pair(SocketStream(a), b, None)
        b.settimeout(LONG)
    else:
        t = in_helper(
            lambda: SocketStream(
                b,
                "io",
                "unsigned-byte-8",
                read_timeout=LONG,
                ssl_ctx=client_ctx,
                ssl_side="client",
                tlsext_host_name="localhost",
                handshake_timeout=LONG,
            )
        )
        try:
            ours = SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=LONG)
        finally:
            peer = t.join_checked()
        p = Pair(ours, b, peer)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def sigusr1() -> Iterator[Callable[[Callable[[int, Any], None]], None]]:
    """Install a SIGUSR1 handler for the test; the old one comes back afterwards."""
    old = signal.getsignal(signal.SIGUSR1)

    def install(handler: Callable[[int, Any], None]) -> None:
        signal.signal(signal.SIGUSR1, handler)

    yield install
    signal.signal(signal.SIGUSR1, old)


def interrupt_main_when_blocked() -> PeerThread:
    """A helper that sends SIGUSR1 to the main thread once it is blocked in poll."""
    nid = main_native_id()
    main_ident = threading.main_thread().ident
    assert main_ident is not None

    def go() -> None:
        wait_until_blocked(nid)
        signal.pthread_kill(main_ident, signal.SIGUSR1)

    return in_helper(go)


# ---- peer reset ---------------------------------------------------------------------------------


def test_peer_reset_during_read(pair: Pair) -> None:
    """RST while we wait inside read_line: SocketIOError; the bytes before it stay readable."""
    s = pair.ours
    pair.send(b"partial")
    assert s.read_char() == "p"  # "artial" is buffered now; read_line will wait for more
    nid = main_native_id()
    helper = when_blocked(nid, pair.reset_peer)
    with pytest.raises(SocketIOError) as info:
        s.read_line()
    helper.join_checked()
    assert "reset" in str(info.value).lower() or "truncat" in str(info.value).lower()
    assert s.read(6) == "artial"  # nothing that had arrived is lost
    s.close()  # a broken stream closes without raising
    assert s.closed


def test_peer_reset_during_write(pair: Pair) -> None:
    """RST while our flush waits for the peer to read: SocketIOError, then close() is quiet."""
    s = pair.ours
    nid = main_native_id()
    helper = when_blocked(nid, pair.reset_peer)
    with pytest.raises(SocketIOError) as info:
        write_and_flush(s, b"x" * BIG)  # more than the kernel buffers hold: the flush blocks
    helper.join_checked()
    text = str(info.value).lower()
    assert "writing" in text or "reset" in text or "pipe" in text
    s.close()
    assert s.closed


def test_peer_reset_while_idle_then_write(pair: Pair) -> None:
    """A write after the peer reset: a clear SocketIOError at the latest on the second flush."""
    s = pair.ours
    pair.reset_peer()
    with pytest.raises(SocketIOError):  # noqa: PT012 (the first send may still be taken)
        for _ in range(2):
            write_and_flush(s, b"y" * 100_000)
    s.close()


# ---- half-close ---------------------------------------------------------------------------------


def test_half_close_by_peer(pair: Pair) -> None:
    """The peer stops sending: we read its data, then end-of-file; we can still answer."""
    s = pair.ours
    pair.send(b"question\nno newline")
    pair.shutdown_peer_output()
    assert s.read_line() == ("question", False)
    assert s.read_line() == ("no newline", True)
    assert s.read_line(False, "EOF") == ("EOF", True)
    assert s.read_char(False, None) is None
    assert s.listen() is False
    s.write_line("answer")
    s.flush()
    assert pair.recv_exactly(7) == b"answer\n"


def test_half_close_by_us(pair: Pair) -> None:
    """We stop sending: the peer reads our data, then end-of-file; it can still talk to us."""
    s = pair.ours
    s.write_line("request")
    s.shutdown_output()
    with pytest.raises(ValueError):
        s.write_char("x")
    assert pair.recv_to_eof() == b"request\n"
    pair.send(b"reply\n")
    assert s.read_line() == ("reply", False)
    pair.shutdown_peer_output()
    assert s.read() == ""


# ---- signals ----------------------------------------------------------------------------------


def test_signal_during_read_goes_on(
    pair: Pair, sigusr1: Callable[[Callable[[int, Any], None]], None]
) -> None:
    """A signal whose handler returns does not end a blocking read (PEP 475)."""
    seen = threading.Event()
    sigusr1(lambda signum, frame: seen.set())
    s = pair.ours
    s.read_timeout = LONG  # if the signal ended the wait, the read would not see the data
    pair.send(b"hel")

    def signal_then_send() -> None:
        interrupt_main_when_blocked().join_checked()
        assert seen.wait(LONG)
        pair.send(b"lo\n")

    helper = in_helper(signal_then_send)
    assert s.read_line() == ("hello", False)
    helper.join_checked()
    assert seen.is_set()
    assert not s.timed_out


def test_keyboard_interrupt_during_read_keeps_data(
    pair: Pair, sigusr1: Callable[[Callable[[int, Any], None]], None]
) -> None:
    """KeyboardInterrupt inside read_line: the partial line is still there to read."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    sigusr1(raise_interrupt)
    s = pair.ours
    pair.send(b"first half, ")
    helper = interrupt_main_when_blocked()
    with pytest.raises(KeyboardInterrupt):
        s.read_line()
    helper.join_checked()
    pair.send(b"second half\n")
    assert s.read_line() == ("first half, second half", False)
    s.write_line("still usable")
    s.flush()
    assert pair.recv_exactly(13) == b"still usable\n"


def test_keyboard_interrupt_during_flush_keeps_unsent(
    pair: Pair, sigusr1: Callable[[Callable[[int, Any], None]], None]
) -> None:
    """KeyboardInterrupt inside a blocked flush: the rest stays buffered and arrives once."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    sigusr1(raise_interrupt)
    s = pair.ours
    # A pattern in which a lost, repeated or reordered block shows: 4-byte big-endian counters.
    data = b"".join(i.to_bytes(4, "big") for i in range(BIG // 4))
    helper = interrupt_main_when_blocked()
    with pytest.raises(KeyboardInterrupt):
        write_and_flush(s, data)  # a write this big flushes at once, and blocks
    helper.join_checked()
    reader = in_helper(lambda: pair.recv_exactly(len(data) + 4))
    s.write(b"\xff\xff\xff\xff")  # a marker after the rest: it must come right after
    s.flush()
    got = reader.join_checked()
    assert len(got) == len(data) + 4
    assert got == data + b"\xff\xff\xff\xff", "bytes lost or repeated after the interrupt"


def test_signal_during_flush_goes_on(
    pair: Pair, sigusr1: Callable[[Callable[[int, Any], None]], None]
) -> None:
    """A signal whose handler returns does not end a blocked flush; all the data arrives."""
    seen = threading.Event()
    sigusr1(lambda signum, frame: seen.set())
    s = pair.ours
    data = b"".join(i.to_bytes(4, "big") for i in range(BIG // 4))

    def signal_then_read() -> bytes:
        interrupt_main_when_blocked().join_checked()
        assert seen.wait(LONG)
        return pair.recv_exactly(len(data))

    reader = in_helper(signal_then_read)
    s.write(data)
    s.flush()
    assert reader.join_checked() == data
    assert seen.is_set()


def test_keyboard_interrupt_during_tls_handshake_closes_the_socket(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    sigusr1: Callable[[Callable[[int, Any], None]], None],
) -> None:
    """The constructor interrupted in its handshake: KeyboardInterrupt, and the socket closed."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    sigusr1(raise_interrupt)
    a, _b = tcp_pair()  # the peer never says hello
    helper = interrupt_main_when_blocked()
    with pytest.raises(KeyboardInterrupt):
        SocketStream(a, ssl_ctx=server_ctx)
    helper.join_checked()
    assert a.fileno() == -1


def test_peer_reset_during_tls_handshake(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
) -> None:
    """An RST in the middle of the handshake: SSLFailure (clear), and the socket closed."""
    a, b = tcp_pair()
    nid = main_native_id()
    helper = when_blocked(nid, lambda: reset(b))
    with pytest.raises(SSLFailure, match="handshake"):
        SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=LONG)
    helper.join_checked()
    assert a.fileno() == -1


# ---- a close from another thread ----------------------------------------------------------------


def test_close_from_another_thread_wakes_reader(pair: Pair) -> None:
    """close() while another thread blocks in a read: the reader sees end-of-file promptly."""
    s = pair.ours
    started = time.monotonic()
    reader = in_helper(lambda: s.read_line(False, "EOF"))
    assert reader.native_id is not None  # set before start() returns
    wait_until_blocked(reader.native_id)
    s.close()
    assert reader.join_checked() == ("EOF", True)
    assert time.monotonic() - started < LONG
    with pytest.raises(ValueError):
        s.read_char()


# ---- TLS truncation -----------------------------------------------------------------------------


def test_tls_peer_closes_without_close_notify(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """A TCP close with no close-notify is truncation, not end-of-file; earlier data is fine."""
    a, b = tcp_pair()
    t = in_helper(
        lambda: SocketStream(
            b,
            ssl_ctx=client_ctx,
            ssl_side="client",
            tlsext_host_name="localhost",
            handshake_timeout=LONG,
        )
    )
    with SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=LONG) as s:
        peer = t.join_checked()
        peer.write_line("complete line")
        peer.write("and then the attacker cuts")
        peer.flush()
        raw = peer.replace_socket(None)
        assert raw is not None
        peer.close()
        raw.shutdown(socket.SHUT_WR)  # a plain TCP FIN: no close-notify
        assert s.read_line() == ("complete line", False)
        with pytest.raises(SSLTruncatedError) as info:
            s.read_line()
        assert isinstance(info.value, SocketIOError)
        assert isinstance(info.value, SSLFailure)
        assert "close-notify" in str(info.value)
        raw.close()


def test_tls_truncation_opt_out_reads_as_eof(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    """With OP_IGNORE_UNEXPECTED_EOF set by the caller, truncation reads as end-of-file."""
    flag = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if not flag:
        pytest.skip("ssl.OP_IGNORE_UNEXPECTED_EOF needs OpenSSL 3")
    server_ctx.options |= flag
    a, b = tcp_pair()
    t = in_helper(
        lambda: SocketStream(
            b,
            ssl_ctx=client_ctx,
            ssl_side="client",
            tlsext_host_name="localhost",
            handshake_timeout=LONG,
        )
    )
    with SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=LONG) as s:
        peer = t.join_checked()
        peer.write("cut")
        peer.flush()
        raw = peer.replace_socket(None)
        assert raw is not None
        peer.close()
        raw.shutdown(socket.SHUT_WR)
        assert s.read_line() == ("cut", True)
        assert s.read_line(False, "EOF") == ("EOF", True)
        raw.close()

"""read_timeout and write_timeout: end-of-file that recovers, WriteTimeoutError that loses nothing.

A read timeout is measured between successful extractions from the socket, so a peer that
trickles a byte every 0.3 x read_timeout keeps a long read alive; the peer thread paces itself
with ``Event().wait(interval)`` (pacing of the peer, not synchronisation of the test: the test
only joins it).  Write timeouts are provoked with a peer that never reads (small kernel buffers,
a few MiB of output).  Time assertions are lower bounds only.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import LONG, SHORT, Make, PeerThread
from sockstream import SocketIOError, SocketStream, WriteTimeoutError

EOF = object()

#: A read timeout for the trickle tests and the interval at which the peer trickles.
TRICKLE_TIMEOUT = 0.5
TRICKLE_INTERVAL = 0.3 * TRICKLE_TIMEOUT
TRICKLE_BYTES = 8  # 8 x 0.15 s = 1.2 s in total: well past the timeout


def _read_sequence(s: SocketStream) -> tuple[int, bytes]:
    buf = bytearray(3)
    return s.read_sequence(buf), bytes(buf)


def _readinto(s: SocketStream) -> tuple[int, bytes]:
    buf = bytearray(3)
    return s.readinto(buf), bytes(buf)


#: verb -> (element type, call, result at timeout, result once "ok\n" has arrived)
VERBS: dict[str, tuple[str, Callable[[SocketStream], Any], Any, Any]] = {
    "read_char": ("base-char", lambda s: s.read_char(False, EOF), EOF, "o"),
    "peek_char": ("base-char", lambda s: s.peek_char(False, EOF), EOF, "o"),
    "read_byte": ("unsigned-byte-8", lambda s: s.read_byte(False, EOF), EOF, ord("o")),
    "read_line": ("base-char", lambda s: s.read_line(False, EOF), (EOF, True), ("ok", False)),
    "readline": ("base-char", lambda s: s.readline(), "", "ok\n"),
    "read": ("unsigned-byte-8", lambda s: s.read(3), b"", b"ok\n"),
    "read-all": ("base-char", lambda s: s.read(), "", "ok\n"),
    "read1": ("base-char", lambda s: s.read1(), "", "ok\n"),
    "read_sequence": ("base-char", _read_sequence, (0, bytes(3)), (3, b"ok\n")),
    "readinto": ("signed-byte-8", _readinto, (0, bytes(3)), (3, b"ok\n")),
    "next": ("base-char", lambda s: next(s, EOF), EOF, "ok\n"),
}


@pytest.mark.parametrize("verb", VERBS)
def test_read_timeout_is_eof_then_recovers(make: Make, verb: str) -> None:
    et, call, at_timeout, after = VERBS[verb]
    s, peer = make(et, read_timeout=SHORT)
    assert s.timed_out is False
    t0 = time.monotonic()
    assert call(s) == at_timeout
    assert time.monotonic() - t0 >= SHORT
    assert s.timed_out is True
    # the stream is not poisoned: data that arrives later is read normally
    peer.sendall(b"ok\n")
    if verb == "read-all":
        peer.shutdown(socket.SHUT_WR)
    assert call(s) == after
    assert s.timed_out is False


def test_read_timeout_raises_eoferror_by_default(make: Make) -> None:
    s, peer = make(read_timeout=SHORT)
    with pytest.raises(EOFError, match="timeout"):
        s.read_char()
    assert s.timed_out
    with pytest.raises(EOFError):
        s.read_line()
    with pytest.raises(EOFError):
        s.peek_char()
    peer.sendall(b"x")
    assert s.read_char() == "x"
    assert not s.timed_out


def test_timed_out_is_false_at_real_end_of_file(make: Make) -> None:
    s, peer = make(read_timeout=LONG)
    peer.shutdown(socket.SHUT_WR)
    t0 = time.monotonic()
    assert s.read_char(False) is None
    assert time.monotonic() - t0 < LONG / 2  # end-of-file, not the timeout
    assert s.timed_out is False


def test_timed_out_reset_by_non_waiting_operations(make: Make) -> None:
    s, _peer = make(read_timeout=SHORT)
    assert s.read_char(False) is None
    assert s.timed_out
    assert s.read_char_no_hang() is None
    assert s.timed_out is False


def _trickle(sock: socket.socket, data: bytes, interval: float) -> None:
    """Send ``data`` one byte at a time, ``interval`` seconds apart (pacing only)."""
    pace = threading.Event()  # never set: wait() is the pacing clock
    for i in range(len(data)):
        pace.wait(interval)
        sock.sendall(data[i : i + 1])


TRICKLED = b"trickle\n"
assert len(TRICKLED) == TRICKLE_BYTES


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("read", TRICKLED.decode()),
        ("read_line", ("trickle", False)),
        ("read_sequence", TRICKLE_BYTES),
    ],
)
def test_trickling_peer_outlasts_the_timeout(
    make: Make, peer: Callable[..., PeerThread], verb: str, expected: Any
) -> None:
    """The timeout is the time between extractions, not the time inside the call."""
    s, b = make(read_timeout=TRICKLE_TIMEOUT)
    t0 = time.monotonic()
    sender = peer(_trickle, b, TRICKLED, TRICKLE_INTERVAL)
    if verb == "read":
        got = s.read(TRICKLE_BYTES)
    elif verb == "read_line":
        got = s.read_line()
    else:
        buf = bytearray(TRICKLE_BYTES)
        got = s.read_sequence(buf)
        assert buf == TRICKLED
    elapsed = time.monotonic() - t0
    sender.join_checked()
    assert got == expected
    assert s.timed_out is False
    assert elapsed > TRICKLE_TIMEOUT  # the call outlasted the timeout without end-of-file


def _trickle_chunks(sock: socket.socket, data: bytes, size: int, interval: float) -> None:
    pace = threading.Event()  # never set: wait() is the pacing clock
    for i in range(0, len(data), size):
        pace.wait(interval)
        sock.sendall(data[i : i + size])


def test_trickling_peer_outlasts_the_timeout_on_a_large_read(
    make: Make, peer: Callable[..., PeerThread]
) -> None:
    """Reads of 16 KiB or more go straight into the caller's buffer; same clock there."""
    s, b = make("unsigned-byte-8", read_timeout=TRICKLE_TIMEOUT)
    data = bytes(range(256)) * 100  # 25600 bytes in 7 pieces of 4000
    t0 = time.monotonic()
    sender = peer(_trickle_chunks, b, data, 4000, TRICKLE_INTERVAL)
    got = s.read(len(data))
    elapsed = time.monotonic() - t0
    sender.join_checked()
    assert got == data
    assert s.timed_out is False
    assert elapsed > TRICKLE_TIMEOUT


def test_partial_line_at_timeout_then_the_rest(make: Make) -> None:
    s, peer = make(read_timeout=SHORT)
    peer.sendall(b"partial")
    assert s.read_line() == ("partial", True)
    assert s.timed_out is True
    peer.sendall(b" rest\nnext")
    assert s.read_line() == (" rest", False)
    assert s.timed_out is False
    assert s.readline() == "next"  # partial again, with readline
    assert s.timed_out is True
    peer.sendall(b"\n")
    assert s.readline() == "\n"


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8"])
def test_partial_read_at_timeout(make: Make, et: str) -> None:
    s, peer = make(et, read_timeout=SHORT)
    peer.sendall(b"abc")
    got = s.read(10)
    assert got in ("abc", b"abc")
    assert s.timed_out
    peer.sendall(b"xyz")
    assert s.read() in ("xyz", b"xyz")  # read-all ends at the timeout too
    assert s.timed_out
    buf = bytearray(10)
    peer.sendall(b"de")
    assert s.read_sequence(buf, 1) == 3
    assert buf[1:3] == b"de"
    assert s.timed_out


def test_read_timeout_can_be_changed_between_reads(
    make: Make, peer: Callable[..., PeerThread]
) -> None:
    s, b = make(read_timeout=SHORT)
    assert s.read_char(False) is None
    assert s.timed_out
    s.read_timeout = None
    assert s.read_timeout is None

    def late() -> None:
        threading.Event().wait(2 * SHORT)  # pacing: later than the old timeout
        b.sendall(b"L")

    t0 = time.monotonic()
    sender = peer(late)
    assert s.read_char() == "L"  # waits: no timeout any more
    assert time.monotonic() - t0 >= SHORT
    sender.join_checked()
    s.read_timeout = SHORT / 2
    assert s.read_timeout == SHORT / 2
    assert s.read_char(False) is None
    assert s.timed_out


def test_read_timeout_on_an_input_stream() -> None:
    """The seed's example: (make-instance 'socket-stream :direction :input :read-timeout 42)."""
    a, b = socket.socketpair()
    with b, SocketStream(a, direction="input", read_timeout=42) as s:
        assert s.read_timeout == 42
        b.sendall(b"x")
        assert s.read_char() == "x"


def test_huge_finite_read_timeout_waits(make: Make, peer: Callable[..., PeerThread]) -> None:
    """A timeout of ~30 years is accepted, and then must not break the wait itself."""
    s, b = make(read_timeout=1e9)

    def late() -> None:
        threading.Event().wait(SHORT)  # pacing: let the reader block first
        b.sendall(b"H")

    peer(late)
    assert s.read_char() == "H"


def test_huge_finite_write_timeout_waits(tcp_pair: Any, peer: Callable[..., PeerThread]) -> None:
    a, b = tcp_pair()
    _shrink_buffers(a, b)
    s = SocketStream(a, write_timeout=1e9)
    data = b"w" * (2 << 20)

    def late_drain() -> bytes:
        threading.Event().wait(SHORT)  # pacing: let the writer block first
        return _drain(b)

    reader = peer(late_drain)
    s.write(data)
    s.close()
    assert reader.join_checked() == data


# ---- write timeout --------------------------------------------------------------------------


def _shrink_buffers(writer: socket.socket, reader: socket.socket) -> None:
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)


def _drain(sock: socket.socket) -> bytes:
    sock.settimeout(LONG)
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_write_timeout_against_a_peer_that_never_reads(
    tcp_pair: Any, peer: Callable[..., PeerThread]
) -> None:
    a, b = tcp_pair()
    _shrink_buffers(a, b)
    s = SocketStream(a, write_timeout=SHORT)
    assert s.write_timeout == SHORT
    data = bytes(range(256)) * (16 << 10)  # 4 MiB: far more than the kernel buffers hold
    t0 = time.monotonic()
    with pytest.raises(WriteTimeoutError) as info:  # noqa: PT012  (either call may time out)
        s.write(data)  # more than the output buffer holds: the write flushes
        s.force_output()
    assert time.monotonic() - t0 >= SHORT
    err = info.value
    assert isinstance(err, TimeoutError)
    assert isinstance(err, SocketIOError)
    assert err.timeout == SHORT
    assert 0 < err.bytes_written < len(data)
    assert err.pending == len(data) - err.bytes_written
    assert str(err.bytes_written) in str(err)
    first = err.bytes_written

    # Still nobody reads: the next flush sends nothing and says so; nothing was dropped.
    with pytest.raises(WriteTimeoutError) as info:
        s.finish_output()
    assert info.value.bytes_written == 0
    assert info.value.pending == len(data) - first

    # The peer starts reading; a later flush delivers everything, exactly once and in order,
    # with output written after the timeout queued behind what was still buffered.
    reader = peer(_drain, b)
    s.write_timeout = None
    s.write_string("tail")
    s.flush()
    s.shutdown_output()
    assert reader.join_checked() == data + b"tail"
    s.close()


def test_write_timeout_on_flush_of_small_output(tcp_pair: Any) -> None:
    """Output below the buffer threshold is held until flushed; the flush is what times out."""
    a, b = tcp_pair()
    _shrink_buffers(a, b)
    s = SocketStream(a, write_timeout=SHORT)
    # Fill the kernel buffers with output the peer never reads.
    with pytest.raises(WriteTimeoutError):
        s.write(b"f" * (4 << 20))
    s.clear_output()  # drop what is still ours to drop
    s.write_string("small")
    with pytest.raises(WriteTimeoutError) as info:
        s.flush()
    assert info.value.bytes_written == 0
    assert info.value.pending == 5
    s.close(abort=True)


def test_close_with_output_that_cannot_be_sent(tcp_pair: Any) -> None:
    """close() still closes when its flush times out, then reports the timeout."""
    a, b = tcp_pair()
    _shrink_buffers(a, b)
    s = SocketStream(a, write_timeout=SHORT)
    with pytest.raises(WriteTimeoutError):
        s.write(b"c" * (4 << 20))
    with pytest.raises(WriteTimeoutError):
        s.close()
    assert s.closed
    assert a.fileno() == -1
    s.close()  # idempotent, and quiet now


def test_no_write_timeout_when_the_peer_reads(
    tcp_pair: Any, peer: Callable[..., PeerThread]
) -> None:
    a, b = tcp_pair()
    _shrink_buffers(a, b)
    s = SocketStream(a, write_timeout=LONG)
    reader = peer(_drain, b)
    data = b"x" * (4 << 20)
    s.write(data)
    s.close()
    assert reader.join_checked() == data


# ---- validation of the timeout properties -------------------------------------------------

BAD_TIMEOUTS: list[tuple[Any, type[Exception]]] = [
    (0, ValueError),
    (0.0, ValueError),
    (-1, ValueError),
    (-0.5, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (-math.inf, ValueError),
    (True, TypeError),
    (False, TypeError),
    ("1", TypeError),
    ([1], TypeError),
    (1j, TypeError),
]


@pytest.mark.parametrize("prop", ["read_timeout", "write_timeout"])
@pytest.mark.parametrize(("value", "exc"), BAD_TIMEOUTS, ids=repr)
def test_timeout_setters_validate(make: Make, prop: str, value: Any, exc: type[Exception]) -> None:
    s, _ = make(**{prop: 3})
    with pytest.raises(exc, match=prop):
        setattr(s, prop, value)
    assert getattr(s, prop) == 3  # unchanged


@pytest.mark.parametrize("prop", ["read_timeout", "write_timeout"])
@pytest.mark.parametrize("value", [1, 0.25, 1e-3, 42, None])
def test_timeout_setters_accept(make: Make, prop: str, value: Any) -> None:
    s, _ = make()
    setattr(s, prop, value)
    assert getattr(s, prop) == value

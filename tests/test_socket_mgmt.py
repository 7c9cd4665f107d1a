"""The stream's socket: setf and replace, descriptors, addresses, half-close, close, duplex, leaks.

LispWorks: ``(setf socket-stream-socket)`` closes the socket the stream had before installing the
new one (or nil); ``replace-socket-stream-socket`` installs without closing.  Both are checked
with real sockets, as are integer descriptors, IPv4 and IPv6 addresses, half-close, abortive
close, full duplex from two threads (8 MiB each way) and descriptor hygiene over 1000 cycles.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from conftest import LONG, Make, PeerThread, drain
from sockstream import SocketStream


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- the socket property and replace_socket -------------------------------------------------


def test_socket_property_is_the_socket(make: Make) -> None:
    a, b = socket.socketpair()
    with b, SocketStream(a) as s:
        assert s.socket is a
        assert s.fileno() == a.fileno()


def test_setting_the_socket_closes_the_old_one(make: Make) -> None:
    s, b1 = make()
    old = s.socket
    assert old is not None
    b1.sendall(b"xy")
    assert s.read_char() == "x"  # "y" stays buffered in the stream
    s.write_string("to-old")  # buffered output is not sent by the swap
    c, d = socket.socketpair()
    with d:
        s.socket = c
        assert old.fileno() == -1  # closed
        assert s.socket is c
        assert s.fileno() == c.fileno()
        assert s.read_char() == "y"  # buffered input survives the swap
        d.sendall(b"from-new\n")
        assert s.read_line() == ("from-new", False)
        s.shutdown_output()
        assert drain(d) == b"to-old"
        b1.settimeout(LONG)
        assert b1.recv(100) == b""  # the old connection got end-of-file, nothing else


def test_setting_the_socket_to_none(make: Make) -> None:
    s, b = make()
    old = s.socket
    assert old is not None
    s.socket = None
    assert old.fileno() == -1
    assert s.socket is None
    assert s.local_address is None
    assert s.peer_address is None
    with pytest.raises(ValueError):
        s.fileno()
    assert s.read_char(False, "eof") == "eof"  # no socket: end-of-file
    assert s.listen() is False
    b.settimeout(LONG)
    assert b.recv(10) == b""
    # and a socket can be installed again
    c, d = socket.socketpair()
    with d:
        s.socket = c
        d.sendall(b"back")
        assert s.read(4) == "back"


def test_replace_socket_returns_the_old_one_open(make: Make) -> None:
    s, b = make()
    old = s.socket
    assert old is not None
    c, d = socket.socketpair()
    with d:
        returned = s.replace_socket(c)
        assert returned is old
        assert returned.fileno() != -1  # still open
        assert s.socket is c
        d.sendall(b"new")
        assert s.read(3) == "new"
        # the old socket still works, as a plain socket, in the caller's hands
        returned.setblocking(True)
        returned.sendall(b"still open")
        b.settimeout(LONG)
        assert b.recv(100) == b"still open"
        returned.close()


def test_replace_socket_gives_back_a_blocking_socket(make: Make) -> None:
    s, _b = make()
    c, d = socket.socketpair()
    with d:
        old = s.replace_socket(c)
        assert old is not None
        with old:
            assert old.getblocking(), "the stream made it non-blocking; give it back as it was"


def test_replace_socket_with_none_and_with_a_descriptor(make: Make) -> None:
    s, _b = make()
    first = s.replace_socket(None)
    assert first is not None
    assert first.fileno() != -1
    first.close()
    assert s.socket is None
    c, d = socket.socketpair()
    with d:
        fd = c.detach()
        assert s.replace_socket(fd) is None
        sock = s.socket
        assert isinstance(sock, socket.socket)
        assert sock.fileno() == fd
        d.sendall(b"fd")
        assert s.read(2) == "fd"


def test_assigning_the_same_socket_keeps_it(make: Make) -> None:
    s, b = make()
    sock = s.socket
    s.socket = sock
    assert sock is not None
    assert sock.fileno() != -1
    assert s.socket is sock
    b.sendall(b"alive")
    assert s.read(5) == "alive"


def test_setting_the_socket_validates(make: Make) -> None:
    s, b = make()
    old = s.socket
    for bad in ("sock", 1.5, object()):
        with pytest.raises(TypeError):
            s.socket = bad  # type: ignore[assignment]
        with pytest.raises(TypeError):
            s.replace_socket(bad)  # type: ignore[arg-type]
    assert s.socket is old
    assert old is not None
    assert old.fileno() != -1
    b.sendall(b"ok")
    assert s.read(2) == "ok"


# ---- integer file descriptors ---------------------------------------------------------------


def test_integer_descriptor_is_accepted_and_owned() -> None:
    a, b = socket.socketpair()
    with b:
        fd = a.detach()
        s = SocketStream(fd)
        assert isinstance(s.socket, socket.socket)
        assert s.fileno() == fd
        b.sendall(b"via fd\n")
        assert s.read_line() == ("via fd", False)
        s.write_line("back")
        s.close()
        with pytest.raises(OSError):
            os.fstat(fd)  # the stream owned the descriptor and closed it
        assert drain(b) == b"back\n"


# ---- addresses, fileno, readable/writable -------------------------------------------------


def test_addresses(tcp_pair: Any, loopback_host: str) -> None:
    family = socket.AF_INET6 if ":" in loopback_host else socket.AF_INET
    a, b = tcp_pair(family)
    with SocketStream(a) as s:
        local, peer = s.local_address, s.peer_address
        assert isinstance(local, tuple)
        assert isinstance(peer, tuple)
        assert local == a.getsockname()[:2]
        assert peer == a.getpeername()[:2]
        assert peer == b.getsockname()[:2]
        assert len(local) == 2
        assert local[0] == loopback_host
        assert isinstance(local[1], int)
        assert local[1] > 0
        assert s.fileno() == a.fileno()
        b.sendall(b"v6?\n")
        assert s.read_line() == ("v6?", False)
        s.write_line("yes")
        s.flush()
        b.settimeout(LONG)
        assert b.recv(10) == b"yes\n"


@pytest.mark.parametrize(
    ("direction", "readable", "writable"),
    [("input", True, False), ("output", False, True), ("io", True, True)],
)
def test_readable_writable_by_direction(
    make: Make, direction: str, readable: bool, writable: bool
) -> None:
    s, _ = make(direction=direction)
    assert s.direction == direction
    assert s.readable() is readable
    assert s.writable() is writable


# ---- shutdown_output, close, context manager ---------------------------------------------


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8"])
def test_shutdown_output_half_closes(make: Make, et: str) -> None:
    s, peer = make(et)
    s.write_string("request")  # buffered: shutdown_output flushes first
    s.shutdown_output()
    assert drain(peer) == b"request"  # the peer sees end-of-file
    peer.sendall(b"response\n")  # and this side can still read
    assert s.read_line() == ("response", False)
    with pytest.raises(ValueError):
        s.write_string("after shutdown")
    assert not s.closed
    peer.shutdown(socket.SHUT_WR)
    assert s.read_char(False) is None


def test_close_flushes(make: Make) -> None:
    s, peer = make()
    s.write_string("flushed by close")
    s.close()
    assert s.closed
    assert drain(peer) == b"flushed by close"


def test_close_abort_drops_output_and_is_idempotent(make: Make) -> None:
    s, peer = make()
    sock = s.socket
    s.write_string("never sent")
    s.close(abort=True)
    assert s.closed
    assert sock is not None
    assert sock.fileno() == -1
    assert s.socket is None
    assert drain(peer) == b""
    s.close(abort=True)
    s.close()


def _use_and_fail(stream: SocketStream) -> None:
    with stream as s:
        assert s is stream
        s.write_string("bye")
        raise RuntimeError("inside")


def test_context_manager_closes_even_on_error() -> None:
    a, b = socket.socketpair()
    with b:
        s = SocketStream(a)
        with pytest.raises(RuntimeError, match="inside"):
            _use_and_fail(s)
        assert s.closed
        assert a.fileno() == -1
        assert drain(b) == b"bye"


def test_repr_says_what_it_is(make: Make) -> None:
    s, _ = make("unsigned-byte-8", "input")
    text = repr(s)
    assert "SocketStream" in text
    assert "input" in text
    assert "unsigned-byte-8" in text
    s.close()
    assert "closed" in repr(s)


def test_close_from_another_thread_wakes_a_blocked_reader(
    make: Make, peer: Callable[..., PeerThread]
) -> None:
    s, _ = make()
    started = threading.Event()
    outcome: list[object] = []

    def reader() -> None:
        started.set()
        try:
            outcome.append(s.read_char(False, "eof"))
        except ValueError as exc:  # closed under us: acceptable too
            outcome.append(exc)

    t = peer(reader)
    started.wait(LONG)
    # The reader may not be inside poll() yet; close() must end the read either way.
    s.close()
    t.join_checked()
    assert outcome
    assert outcome[0] == "eof" or isinstance(outcome[0], ValueError)


# ---- full duplex ----------------------------------------------------------------------------


def test_full_duplex_8_mib_each_way(tcp_pair: Any, peer: Callable[..., PeerThread]) -> None:
    """One thread reads while another writes the same stream, on both ends at once."""
    a, b = tcp_pair()
    size = 8 << 20
    payload_a = os.urandom(size)
    payload_b = os.urandom(size)
    sa = SocketStream(a, element_type="unsigned-byte-8")
    sb = SocketStream(b, element_type="unsigned-byte-8")

    def writer(s: SocketStream, data: bytes) -> None:
        for i in range(0, len(data), 50_000):
            s.write(data[i : i + 50_000])
        s.shutdown_output()

    def reader(s: SocketStream) -> str:
        h = hashlib.sha256()
        n = 0
        buf = bytearray(70_000)
        while True:
            got = s.readinto(buf)
            if not got:
                break
            h.update(memoryview(buf)[:got])
            n += got
        return f"{n}:{h.hexdigest()}"

    with sa, sb:
        threads = [
            peer(writer, sa, payload_a),
            peer(writer, sb, payload_b),
        ]
        ra = peer(reader, sa)
        rb = peer(reader, sb)
        for t in threads:
            t.join_checked(60)
        assert ra.join_checked(60) == f"{size}:{hashlib.sha256(payload_b).hexdigest()}"
        assert rb.join_checked(60) == f"{size}:{hashlib.sha256(payload_a).hexdigest()}"


def test_full_duplex_lines_and_chars(make: Make, peer: Callable[..., PeerThread]) -> None:
    """Character verbs on one thread, writes on another, against an echoing peer."""
    s, b = make()
    n = 20_000

    def echo() -> None:
        b.settimeout(LONG)
        while chunk := b.recv(65536):
            b.sendall(chunk)
        b.shutdown(socket.SHUT_WR)

    def write() -> None:
        for i in range(n):
            s.write_line(f"line {i}")
        s.shutdown_output()

    peer(echo)
    w = peer(write)
    got = [s.read_line()[0] for _ in range(n)]
    w.join_checked()
    assert got == [f"line {i}" for i in range(n)]
    assert s.read_line(False) == (None, True)


# ---- descriptor hygiene ---------------------------------------------------------------------


def test_no_descriptor_leak_over_1000_cycles() -> None:
    before = open_fds()
    for i in range(1000):
        a, b = socket.socketpair()
        if i % 3 == 0:
            s = SocketStream(a.detach(), element_type="unsigned-byte-8")
        else:
            s = SocketStream(a)
        s.write_string("x")
        b.sendall(b"y")
        assert s.read_char() == "y"
        if i % 2:
            s.close()
        else:
            with s:
                pass
        b.close()
        if i % 10 == 0:  # failed constructions close what they were given
            c, d = socket.socketpair()
            with d, pytest.raises(ValueError):
                SocketStream(c, direction="sideways")
        if i % 10 == 5:  # swapping sockets closes the old one
            c, d = socket.socketpair()
            e, f = socket.socketpair()
            with SocketStream(c) as s2:
                s2.socket = e
                s2.socket = None
            d.close()
            f.close()
    assert open_fds() == before

"""The line verbs' common case (a whole Latin-1 line buffered; in C: ``line_hit``), checked
where a fast path could differ from the plain decode: the str's form (ASCII or not, at every
position of a high byte, short lines and the tail of the eight-byte steps), CRLF lines with a
lone LF or CR inside, lenient lines, the line limit at its bound, bytes lines with a terminator
setting, and ``(line, False)`` pairs a caller keeps.  Both implementations run these."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

import sockstream
from sockstream import LineTooLongError, SocketStream


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        yield a, b


def _lines() -> list[bytes]:
    """Lines (without terminator) of 0 to 19 bytes, all ASCII or with one byte >= 0x80 at
    each position."""
    out = []
    for n in range(20):
        base = bytes(0x61 + i % 26 for i in range(n))
        out.append(base)
        for k in range(n):
            out.append(base[:k] + bytes([0x80 + (k * 37) % 128]) + base[k + 1 :])
    return out


@pytest.mark.parametrize("newline", ["\n", "\r\n", None])
def test_latin1_lines_are_the_plain_decode(
    pair: tuple[socket.socket, socket.socket], newline: str | None
) -> None:
    a, b = pair
    lines = _lines()
    term = b"\n" if newline == "\n" else b"\r\n"
    b.sendall(b"".join(line + term for line in lines) * 2)
    b.shutdown(socket.SHUT_WR)
    with SocketStream(a, "io", "base-char", newline=newline) as stream:
        for line in lines:
            want = line.decode("latin-1")
            got, missing = stream.read_line()
            assert (got, missing) == (want, False)
            assert got.isascii() == want.isascii(), (line, got)  # the canonical form
        for line in lines:
            got2 = stream.readline()
            want2 = (line + term).decode("latin-1")
            assert got2 == want2
            assert got2.isascii() == want2.isascii(), (line, got2)
        assert stream.read_line(False, "end") == ("end", True)


def test_crlf_lines_keep_a_lone_lf_or_cr(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"a\nb\rc\r\n\n\r\n\r\r\nx\xe9\ny\r\n")
    b.shutdown(socket.SHUT_WR)
    with SocketStream(a, "io", "base-char", newline="\r\n") as stream:
        assert stream.read_line() == ("a\nb\rc", False)
        assert stream.read_line() == ("\n", False)
        assert stream.read_line() == ("\r", False)
        assert stream.readline() == "x\xe9\ny\r\n"
        assert stream.read_line(False) == (None, True)


def test_lenient_lines_take_an_optional_cr(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"a\r\nb\n\r\n\n\r\rc\r\n")
    b.shutdown(socket.SHUT_WR)
    with SocketStream(a, "io", "base-char", newline=None) as stream:
        assert [stream.read_line()[0] for _ in range(5)] == ["a", "b", "", "", "\r\rc"]
        assert stream.read_line(False) == (None, True)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("element_type", ["base-char", "unsigned-byte-8"])
def test_the_line_limit_at_its_bound(
    pair: tuple[socket.socket, socket.socket], newline: str, element_type: str
) -> None:
    a, b = pair
    term = newline.encode()
    b.sendall(b"12345" + term + b"123456" + term)
    b.shutdown(socket.SHUT_WR)
    with SocketStream(a, "io", element_type, newline=newline, max_line_length=5) as stream:
        binary = element_type == "unsigned-byte-8"
        want = "12345" + newline
        assert stream.readline() == (want.encode() if binary else want)
        for _ in range(2):  # raises and consumes nothing
            with pytest.raises(LineTooLongError):
                stream.readline()
        rest = "123456" + newline
        assert stream.read(len(rest)) == (rest.encode() if binary else rest)


def test_bytes_lines_with_a_terminator_setting(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"a\nb\r\n\xff\r\n")
    b.shutdown(socket.SHUT_WR)
    with SocketStream(a, "io", "unsigned-byte-8", newline="\r\n") as stream:
        assert stream.readline() == b"a\nb\r\n"
        assert stream.readline() == b"\xff\r\n"
        assert stream.readline() == b""


def test_kept_pairs_are_never_reused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    b.sendall(b"".join(b"line %d\r\n" % i for i in range(50)))
    b.shutdown(socket.SHUT_WR)
    with SocketStream(a, "io", "base-char", newline="\r\n") as stream:
        kept = [stream.read_line() for _ in range(25)]
        dropped = [stream.read_line()[0] for _ in range(25)]  # (the pair may be reused here)
    assert kept == [(f"line {i}", False) for i in range(25)]
    assert dropped == [f"line {i}" for i in range(25, 50)]


def test_accelerated_line_verbs_are_c() -> None:
    if not sockstream.ACCELERATED:
        pytest.skip("pure Python core")
    a, b = socket.socketpair()
    with a, b, SocketStream(a, "io", "base-char", newline="\r\n") as stream:
        assert type(stream.read_line).__name__ == "builtin_function_or_method"
        assert type(stream.readline).__name__ == "builtin_function_or_method"

"""Text on the reading side, over real sockets: characters decoded on demand from the one byte
buffer, whole characters whatever the chunking (each byte in its own ``recv``, one byte per TLS
record), CRLF split across chunks, ``unread_char`` of a multibyte character, strict errors that
consume nothing, ``surrogateescape`` round trips, ``read_until`` in every situation, and the
newline modes for str and bytes lines.
"""

from __future__ import annotations

import array
import fcntl
import os
import select
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from conftest import LONG, SHORT, PeerThread
from sockstream import LineTooLongError, SocketStream, serve

ELEMENT_TYPES = ["base-char", "unsigned-byte-8", "signed-byte-8"]
CHAR_TYPECODE = "w" if hasattr(array, "typecodes") and "w" in array.typecodes else "u"

#: (stream, send) : send(bytes) delivers bytes to the stream's socket, in pieces of its own.
Pair = tuple[SocketStream, Callable[[bytes], None]]


def _arrived(sock: socket.socket) -> None:
    """Wait until our end of the connection is readable (the piece just sent arrived)."""
    ready, _, _ = select.select([sock], [], [], LONG)
    assert ready, "the piece sent did not arrive"


@pytest.fixture
def pair(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
) -> Iterator[Callable[..., Pair]]:
    """``pair(**stream_keywords)``: a stream on loopback TCP and a function that sends to it."""
    made: list[tuple[SocketStream, socket.socket]] = []

    def make(element_type: str = "base-char", **kw: object) -> Pair:
        a, b = tcp_pair()
        s = SocketStream(a, "io", element_type, read_timeout=LONG, **kw)  # type: ignore[arg-type]
        made.append((s, b))
        return s, b.sendall

    yield make
    for s, b in made:
        s.close(abort=True)
        b.close()


def test_each_byte_of_a_4_byte_char_in_its_own_recv(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8")
    sock = s.socket
    assert sock is not None
    data = "😀".encode()
    for i in range(3):
        send(data[i : i + 1])
        _arrived(sock)
        assert s.read_char_no_hang() is None  # takes this byte: still no whole character
        assert not s.listen()
    send(data[3:])
    _arrived(sock)
    assert s.listen()
    assert s.peek_char() == "😀"
    assert s.read_char() == "😀"
    # unread_char puts back all four bytes: a byte read sees the first of them.
    s.unread_char("😀")
    assert s.read_sequence(buf := bytearray(4)) == 4
    assert bytes(buf) == data


def test_blocking_read_char_waits_for_the_rest(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8")
    data = "€".encode()

    def trickle() -> None:
        for i in range(len(data)):
            send(data[i : i + 1])

    t = PeerThread(trickle)
    t.start()
    assert s.read_char() == "€"
    t.join_checked()


@pytest.mark.parametrize("element_type", ELEMENT_TYPES)
def test_every_character_verb_decodes(pair: Callable[..., Pair], element_type: str) -> None:
    s, send = pair(element_type, encoding="utf-8")
    send("aé€😀\nzß\n".encode() + "ñü😀b".encode() + b"xxx")
    assert s.read_char() == "a"
    assert s.peek_char() == "é"
    assert s.read_char_no_hang() == "é"
    line, missing = s.read_line()
    assert (line, missing) == ("€😀", False)
    got = s.readline()
    assert got == ("zß\n" if element_type == "base-char" else "zß\n".encode())
    seq = [""] * 2 if element_type == "base-char" else None
    if seq is not None:
        assert s.read_sequence(seq) == 2
        assert seq == ["ñ", "ü"]
    else:
        s.read_char()
        s.read_char()
    chars = array.array(CHAR_TYPECODE, " " * 2)
    assert s.read_sequence(chars) == 2
    assert chars.tounicode() == "😀b"
    if element_type == "base-char":
        assert s.read(2) == "xx"
        assert s.read1(5) == "x"


def test_read_counts_characters(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8")
    send("é€😀abc".encode())
    assert s.read(3) == "é€😀"
    assert s.read1(10) == "abc"


TcpPair = Callable[..., tuple[socket.socket, socket.socket]]


def test_read_to_eof_counts_characters(tcp_pair: TcpPair) -> None:
    a, b = tcp_pair()
    with SocketStream(a, encoding="utf-8", read_timeout=LONG) as s, b:
        b.sendall("é€😀".encode())
        b.shutdown(socket.SHUT_WR)
        assert s.read() == "é€😀"
        assert s.read_char(eof_error=False, eof_value="EOF") == "EOF"


def test_incomplete_char_at_eof(tcp_pair: TcpPair) -> None:
    a, b = tcp_pair()
    with SocketStream(a, encoding="utf-8", read_timeout=LONG) as s, b:
        b.sendall("a€".encode()[:-1])
        b.shutdown(socket.SHUT_WR)
        assert s.read_char() == "a"
        with pytest.raises(UnicodeDecodeError):
            s.read_char()
        s.errors = "replace"
        assert s.read_char() == "\ufffd"
        assert s.read_char(eof_error=False) is None


def test_incomplete_char_at_timeout_stays(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8")
    s.read_timeout = SHORT
    send("€".encode()[:2])
    assert s.read_char(eof_error=False, eof_value="T") == "T"
    assert s.timed_out
    s.read_timeout = LONG
    send("€".encode()[2:])
    assert s.read_char() == "€"


def test_strict_decode_error_consumes_nothing(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8")
    send(b"ok\xff\xfeend\n")
    assert s.read_char() == "o"
    assert s.read_char() == "k"
    for verb in (s.read_char, s.peek_char, s.read_line, s.readline, lambda: s.read(3)):
        with pytest.raises(UnicodeDecodeError):
            verb()
    # The bytes are still there, readable as bytes ...
    assert s.read_sequence(buf := bytearray(1)) == 1
    assert bytes(buf) == b"\xff"
    # ... or as characters after changing errors.
    s.errors = "replace"
    assert s.read_line() == ("\ufffdend", False)


def test_surrogateescape_round_trips_arbitrary_bytes(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
) -> None:
    a, b = tcp_pair()
    blob = bytes(range(256)).replace(b"\n", b"") + "é€".encode() + b"\xc3"
    with SocketStream(a, encoding="utf-8", errors="surrogateescape", read_timeout=LONG) as s, b:
        b.sendall(blob + b"\n" + blob)
        b.shutdown(socket.SHUT_WR)
        line, missing = s.read_line()
        assert not missing
        chars = [s.read_char() for _ in range(len(blob) - 3)] + [s.read(-1)]
        s.write_line(line)
        s.write_string("".join(chars))
        s.shutdown_output()
        got = b""
        while chunk := b.recv(65536):
            got += chunk
    # What the stream sends back is byte for byte what it read.
    assert got == blob + b"\n" + blob


def _taken(sock: socket.socket) -> None:
    """Wait until the stream has received everything sent to ``sock`` (its queue is empty)."""
    deadline = time.monotonic() + LONG
    while _pending(sock):
        assert time.monotonic() < deadline, "the stream did not receive what was sent"
        os.sched_yield()


def _pending(sock: socket.socket) -> int:
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


@pytest.mark.parametrize(
    ("newline", "expect"),
    [
        ("\n", [("a\r", False), ("b", False), ("c\rd\r", False)]),
        ("\r\n", [("a", False), ("b\nc\rd", False)]),
        (None, [("a", False), ("b", False), ("c\rd", False)]),
    ],
)
def test_cr_and_lf_in_separate_recvs(
    pair: Callable[..., Pair], newline: str | None, expect: list[tuple[str, bool]]
) -> None:
    """A CR at the end of one recv and the LF at the start of the next are one CRLF."""
    s, send = pair(newline=newline)
    sock = s.socket
    assert sock is not None
    got: list[tuple[str, bool]] = []

    def reader() -> None:
        for _ in expect:
            got.append(s.read_line())

    t = PeerThread(reader)
    t.start()
    for piece in (b"a\r", b"\nb\n", b"c\rd\r", b"\n"):
        send(piece)
        _taken(sock)  # the reader took this piece in a recv of its own
    t.join_checked()
    assert got == expect


@pytest.mark.parametrize("element_type", ELEMENT_TYPES)
@pytest.mark.parametrize(
    ("newline", "lines"),
    [
        ("\n", ["é\r\n", "b\n"]),
        ("\r\n", ["é\r\n", "b\nc\r\n"]),
        (None, ["é\r\n", "b\n"]),
    ],
)
def test_readline_keeps_the_terminator(
    pair: Callable[..., Pair], element_type: str, newline: str | None, lines: list[str]
) -> None:
    s, send = pair(element_type, encoding="utf-8", newline=newline)
    data = "".join(lines)
    send(data.encode())
    got = [s.readline() for _ in lines]
    if element_type == "base-char":
        assert got == lines
    else:
        assert got == [line.encode() for line in lines]


def test_iteration_and_readlines_use_the_terminator(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8", newline="\r\n")
    send("ä\r\nö\nü\r\n".encode())
    assert next(iter(s)) == "ä\r\n"
    s.read_timeout = SHORT
    assert s.readlines() == ["ö\nü\r\n"]


def test_many_lines_batched_then_mixed(pair: Callable[..., Pair]) -> None:
    """Batches of decoded lines, then a byte read: nothing skipped, nothing repeated."""
    s, send = pair(encoding="utf-8", newline="\r\n")
    lines = [f"línea {i} €" for i in range(500)]
    send("".join(line + "\r\n" for line in lines).encode())
    for line in lines[:250]:
        assert s.read_line() == (line, False)
    assert s.read_sequence(buf := bytearray(2)) == 2
    assert bytes(buf) == b"l\xc3"  # half of "í": a character read now is an error ...
    with pytest.raises(UnicodeDecodeError):
        s.read_char()
    assert s.read_sequence(buf := bytearray(1)) == 1  # ... and its other half is still there
    assert bytes(buf) == b"\xad"
    assert s.read_char() == "n"
    assert s.read_line() == (lines[250][3:], False)
    for line in lines[251:]:
        assert s.readline() == line + "\r\n"


def test_settings_change_between_operations(pair: Callable[..., Pair]) -> None:
    s, send = pair()
    send("é\r\né\r\né\r\n".encode())
    assert s.read_line() == ("Ã©\r", False)  # Latin-1, LF: the seed's behaviour
    s.encoding = "utf-8"
    assert s.read_line() == ("é\r", False)
    s.newline = "\r\n"
    assert s.read_line() == ("é", False)


def test_max_line_length_counts_bytes_without_terminator(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8", newline="\r\n", max_line_length=4)
    send("éé\r\n".encode() + b"abcde")
    assert s.read_line() == ("éé", False)
    with pytest.raises(LineTooLongError):
        s.read_line()
    assert s.read(5) == "abcde"


# ---- read_until ---------------------------------------------------------------------------------


@pytest.mark.parametrize("element_type", ELEMENT_TYPES)
def test_read_until_split_delimiter(pair: Callable[..., Pair], element_type: str) -> None:
    s, send = pair(element_type, encoding="utf-8")
    sock = s.socket
    assert sock is not None
    data = "Host: é\r\nX: y\r\n\r\nbody".encode()
    out: list[object] = []

    def reader() -> None:
        out.append(s.read_until(b"\r\n\r\n"))

    t = PeerThread(reader)
    t.start()
    for i in range(len(data)):
        send(data[i : i + 1])
    t.join_checked()
    head = "Host: é\r\nX: y"
    assert out == [(head if element_type == "base-char" else head.encode(), False)]
    assert s.read(4) == ("body" if element_type == "base-char" else b"body")


def test_read_until_str_delimiter_and_natural_type(pair: Callable[..., Pair]) -> None:
    s, send = pair(encoding="utf-8")
    send("a€b€c".encode())
    assert s.read_until("€") == ("a", False)
    assert s.read_until(bytearray("€".encode())) == ("b", False)
    s.read_timeout = SHORT
    assert s.read_until("€") == ("c", True)  # at the timeout: what there was


def test_read_until_at_eof(tcp_pair: TcpPair) -> None:
    a, b = tcp_pair()
    with SocketStream(a, "io", "unsigned-byte-8", read_timeout=LONG) as s, b:
        b.sendall(b"one;two")
        b.shutdown(socket.SHUT_WR)
        assert s.read_until(b";") == (b"one", False)
        assert s.read_until(b";") == (b"two", True)
        assert s.read_until(b";", False, "END") == ("END", True)
        with pytest.raises(EOFError):
            s.read_until(b";")


def test_read_until_timeout_returns_partial_then_the_rest(pair: Callable[..., Pair]) -> None:
    s, send = pair()
    s.read_timeout = SHORT
    send(b"partial")
    assert s.read_until("\r\n\r\n") == ("partial", True)
    assert s.timed_out
    s.read_timeout = LONG
    send(b" more\r\n\r\nnext")
    assert s.read_until("\r\n\r\n") == (" more", False)
    assert s.read(4) == "next"


def test_read_until_max_length_consumes_nothing(pair: Callable[..., Pair]) -> None:
    s, send = pair(max_line_length=100)
    send(b"0123456789")
    with pytest.raises(LineTooLongError):
        s.read_until(b"\r\n", max_length=5)
    assert s.read(3) == "012"
    send(b"\r\n")
    assert s.read_until(b"\r\n", max_length=7) == ("3456789", False)
    # The stream's max_line_length is the default bound.
    send(b"x" * 101)
    with pytest.raises(LineTooLongError):
        s.read_until(b"\r\n")
    assert len(s.read(101)) == 101


def test_read_until_bad_arguments(pair: Callable[..., Pair]) -> None:
    s, _ = pair()
    with pytest.raises(ValueError, match="must not be empty"):
        s.read_until(b"")
    with pytest.raises(TypeError, match="delimiter"):
        s.read_until(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_length"):
        s.read_until(b"\n", max_length=0)
    with pytest.raises(UnicodeEncodeError):
        s.read_until("€")  # not Latin-1


# ---- TLS with one byte per record ------------------------------------------------------------


def test_tls_one_byte_records(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    a, b = tcp_pair()
    text = "héllo 😀 wörld\r\nsecond €\r\nHost: x\r\n\r\ntail ß"
    data = text.encode()
    go = threading.Event()

    def server() -> None:
        with server_ctx.wrap_socket(b, server_side=True) as tls:
            go.wait(LONG)
            for i in range(len(data)):
                tls.sendall(data[i : i + 1])  # one record per byte
            tls.unwrap()

    t = PeerThread(server)
    t.start()
    with SocketStream(
        a,
        ssl_ctx=client_ctx,
        ssl_side="client",
        tlsext_host_name="localhost",
        encoding="utf-8",
        newline="\r\n",
        read_timeout=LONG,
    ) as s:
        go.set()
        assert s.read_char() == "h"
        assert s.peek_char() == "é"
        assert s.read_char() == "é"
        assert s.read_until("😀") == ("llo ", False)
        s.unread_char("😀")
        assert s.read_char() == "😀"
        assert s.read_line() == (" wörld", False)
        assert s.readline() == "second €\r\n"
        assert s.read_until(b"\r\n\r\n") == ("Host: x", False)
        assert s.read() == "tail ß"
    t.join_checked()


# ---- a UTF-8 line protocol over serve ------------------------------------------------------


def test_utf8_line_protocol_over_serve() -> None:
    def handler(stream: SocketStream) -> None:
        for line in stream:
            stream.write_line(f"{len(line.rstrip(chr(13) + chr(10)))}:{line.strip()[::-1]}")
            stream.flush()

    with serve(
        handler, address="127.0.0.1", encoding="utf-8", newline=None, read_timeout=LONG
    ) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=LONG)
        with SocketStream(sock, encoding="utf-8", newline="\r\n", read_timeout=LONG) as s:
            for word in ("grüße", "日本語", "😀x"):
                s.write_line(word)
                s.flush()
                assert s.read_line() == (f"{len(word)}:{word[::-1]}", False)

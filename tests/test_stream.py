"""SocketStream reading and writing verbs, bivalence and the file protocol, on real sockets.

Every reading verb and every writing verb is run on all three element types.  The peer is the
other end of a ``socket.socketpair()`` (or a loopback TCP connection for the seed's HTTP/1.0
examples), driven directly by the test or by a peer thread; end-of-file is the peer's
``shutdown(SHUT_WR)``.  Synchronisation is by sockets (``select`` on the stream's descriptor)
and joins, never by sleeping.
"""

from __future__ import annotations

import array
import select
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sockstream
from conftest import LONG, SHORT, Make, PeerThread
from sockstream import LineTooLongError, SocketStream

pytestmark = pytest.mark.filterwarnings("ignore:The 'u' type code is deprecated:DeprecationWarning")

ELEMENT_TYPES = ["base-char", "unsigned-byte-8", "signed-byte-8"]
BYTE_TYPES = ["unsigned-byte-8", "signed-byte-8"]
CHAR_TYPECODES = ["u"] + (["w"] if sys.version_info >= (3, 13) else [])
ALL_BYTES = bytes(range(256))


def natural(element_type: str, data: bytes) -> str | bytes:
    """``data`` in the natural type of a stream of ``element_type``."""
    return data.decode("latin-1") if element_type == "base-char" else data


def as_ints(element_type: str, data: bytes) -> list[int]:
    """``data`` as integers of a byte element type."""
    if element_type == "signed-byte-8":
        return array.array("b", data).tolist()
    return list(data)


def feed(peer: socket.socket, data: bytes, eof: bool = True) -> None:
    """Send ``data`` from the peer, then end-of-file unless ``eof`` is false."""
    peer.sendall(data)
    if eof:
        peer.shutdown(socket.SHUT_WR)


def drain(peer: socket.socket) -> bytes:
    """Everything the peer receives until end-of-file."""
    chunks = []
    peer.settimeout(LONG)
    while chunk := peer.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def sent_by(s: SocketStream, peer: socket.socket) -> bytes:
    """Flush and half-close ``s``; return all the peer received."""
    s.shutdown_output()
    return drain(peer)


def wait_readable(s: SocketStream) -> None:
    """Wait (on the socket, not a clock) until the stream's descriptor has input."""
    r, _, _ = select.select([s.fileno()], [], [], LONG)
    assert r, "input did not arrive"


def u_array(typecode: str, text: str) -> array.array[Any]:
    return array.array(typecode, text)


# ---- element types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("base-char", "base-char"),
        (sockstream.BASE_CHAR, "base-char"),
        ("unsigned-byte-8", "unsigned-byte-8"),
        ("(unsigned-byte 8)", "unsigned-byte-8"),
        (sockstream.UNSIGNED_BYTE_8, "unsigned-byte-8"),
        ("signed-byte-8", "signed-byte-8"),
        ("(signed-byte 8)", "signed-byte-8"),
        (sockstream.SIGNED_BYTE_8, "signed-byte-8"),
    ],
)
def test_element_type_spellings(make: Make, spelling: str, canonical: str) -> None:
    s, _ = make(spelling)
    assert s.element_type == canonical


def test_defaults(make: Make) -> None:
    a, b = socket.socketpair()
    with b, SocketStream(a) as s:
        assert s.element_type == "base-char"
        assert s.direction == "io"
        assert s.read_timeout is None
        assert s.write_timeout is None
        assert s.closed is False
        assert s.timed_out is False
        assert s.ssl_object is None
        assert s.max_line_length is None


# ---- character reads on every element type ---------------------------------------------


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read_char_all_bytes_as_chr(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, ALL_BYTES)
    got = [s.read_char() for _ in range(256)]
    assert got == [chr(i) for i in range(256)]
    with pytest.raises(EOFError):
        s.read_char()
    sentinel = object()
    assert s.read_char(eof_error=False, eof_value=sentinel) is sentinel
    assert s.read_char(False) is None


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read_line(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"first\nsecond\r\n\n\xe9t\xe9\ntail")
    assert s.read_line() == ("first", False)
    assert s.read_line() == ("second\r", False)
    assert s.read_line() == ("", False)
    assert s.read_line() == ("\xe9t\xe9", False)
    assert s.read_line() == ("tail", True)
    with pytest.raises(EOFError):
        s.read_line()
    sentinel = object()
    assert s.read_line(eof_error=False, eof_value=sentinel) == (sentinel, True)
    assert s.read_line(False) == (None, True)


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read_line_arriving_in_pieces(make: Make, et: str, peer: Callable[..., PeerThread]) -> None:
    """A 1 MiB line sent in small pieces (buffer growth, resumed newline search)."""
    s, b = make(et)
    line = bytes(range(11, 256)) * 4300  # no newline inside

    def send() -> None:
        for i in range(0, len(line), 1000):
            b.sendall(line[i : i + 1000])
        b.sendall(b"\nnext\n")
        b.shutdown(socket.SHUT_WR)

    peer(send)
    text, missing = s.read_line()
    assert missing is False
    assert text == line.decode("latin-1")
    assert s.read_line() == ("next", False)


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_peek_char(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"xy")
    assert s.peek_char() == "x"
    assert s.peek_char() == "x"
    assert s.read_char() == "x"
    assert s.peek_char() == "y"
    assert s.read_char() == "y"
    with pytest.raises(EOFError):
        s.peek_char()
    assert s.peek_char(False, "eof") == "eof"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_unread_char(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"ab\xff")
    c = s.read_char()
    assert c == "a"
    s.unread_char(c)
    assert s.read_char() == "a"
    assert s.read_char() == "b"
    s.unread_char("b")
    assert s.read_line() == ("b\xff", True)
    s.unread_char("\xff")
    assert s.read_char() == "\xff"


def test_unread_char_wrong_character_changes_nothing(make: Make) -> None:
    s, peer = make()
    feed(peer, b"abc")
    assert s.read_char() == "a"
    with pytest.raises(ValueError, match="'z'"):
        s.unread_char("z")
    with pytest.raises(ValueError):
        s.unread_char("\u0100")
    with pytest.raises(TypeError):
        s.unread_char("ab")
    with pytest.raises(TypeError):
        s.unread_char(97)  # type: ignore[arg-type]
    assert s.read(2) == "bc"


def test_unread_char_before_any_read(make: Make) -> None:
    s, peer = make()
    feed(peer, b"abc")
    with pytest.raises(ValueError):
        s.unread_char("a")
    assert s.read() == "abc"


def test_unread_char_only_once(make: Make) -> None:
    s, peer = make()
    feed(peer, b"aab")
    s.read_char()
    s.read_char()
    s.unread_char("a")
    with pytest.raises(ValueError):
        s.unread_char("a")
    assert s.read_char() == "a"  # the one put back
    s.unread_char("a")  # a new read allows a new unread
    assert s.read(2) == "ab"


def test_unread_char_after_peek_refilled_the_buffer(make: Make) -> None:
    """peek_char refills an emptied buffer; the character read before it can still be unread."""
    s, peer = make()
    peer.sendall(b"a")
    assert s.read_char() == "a"  # the buffer is now empty
    feed(peer, b"b")
    assert s.peek_char() == "b"  # refill: the buffer keeps the last byte consumed
    s.unread_char("a")
    assert s.read(2) == "ab"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read_char_no_hang(make: Make, et: str) -> None:
    s, peer = make(et)
    assert s.read_char_no_hang() is None  # nothing yet: no waiting
    peer.sendall(b"q")
    wait_readable(s)
    assert s.read_char_no_hang() == "q"
    assert s.read_char_no_hang() is None
    peer.shutdown(socket.SHUT_WR)
    wait_readable(s)
    with pytest.raises(EOFError):
        s.read_char_no_hang()
    assert s.read_char_no_hang(False, "eof") == "eof"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_listen(make: Make, et: str) -> None:
    s, peer = make(et)
    assert s.listen() is False
    peer.sendall(b"z")
    wait_readable(s)
    assert s.listen() is True
    assert s.listen() is True  # listening consumes nothing
    assert s.read_char() == "z"
    assert s.listen() is False
    peer.shutdown(socket.SHUT_WR)
    wait_readable(s)
    assert s.listen() is False  # false at end-of-file


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_clear_input(make: Make, et: str) -> None:
    s, peer = make(et)
    peer.sendall(b"junk1\njunk2")
    wait_readable(s)
    assert s.read_char() == "j"  # part of it in our buffer, part maybe still in the kernel
    s.clear_input()
    assert s.listen() is False
    s.clear_input()  # nothing available: returns without waiting
    feed(peer, b"fresh\n")
    assert s.read_line() == ("fresh", False)


# ---- bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize("et", BYTE_TYPES)
def test_read_byte(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, ALL_BYTES)
    got = [s.read_byte() for _ in range(256)]
    assert got == as_ints(et, ALL_BYTES)
    with pytest.raises(EOFError):
        s.read_byte()
    assert s.read_byte(False, -999) == -999


def test_signed_bytes_round_trip(make: Make) -> None:
    s, peer = make("signed-byte-8")
    feed(peer, b"\x00\x01\x7f\x80\x81\xfe\xff")
    assert [s.read_byte() for _ in range(7)] == [0, 1, 127, -128, -127, -2, -1]
    for v in (-128, -1, 0, 127):
        s.write_byte(v)
    s.write_sequence([-2, 5])
    s.write_sequence(array.array("b", [-128, 1]))
    assert sent_by(s, peer) == b"\x80\xff\x00\x7f\xfe\x05\x80\x01"


def test_unsigned_bytes_round_trip(make: Make) -> None:
    s, peer = make("unsigned-byte-8")
    for v in (0, 127, 128, 255):
        s.write_byte(v)
    assert sent_by(s, peer) == b"\x00\x7f\x80\xff"


def test_mixed_char_and_byte_reads_share_one_buffer(make: Make) -> None:
    s, peer = make("unsigned-byte-8")
    feed(peer, b"AB\x01line one\nrest\xff")
    assert s.read_char() == "A"
    assert s.read_byte() == ord("B")
    assert s.peek_char() == "\x01"
    assert s.read_byte() == 1
    assert s.read_line() == ("line one", False)
    assert s.read(2) == b"re"
    buf = bytearray(1)
    assert s.readinto(buf) == 1
    assert buf == b"s"
    assert s.read_char() == "t"
    assert s.read_byte() == 255
    assert s.read() == b""


# ---- read_sequence into every kind of sequence -----------------------------------------

SEQUENCE_KINDS = [
    "bytearray", "memoryview", "array-B", "array-b", *(f"array-{c}" for c in CHAR_TYPECODES),
    "list",
]  # fmt: skip


def _containers(et: str) -> list[tuple[str, Callable[[int], Any], Callable[[Any], list[Any]]]]:
    """(name, make(n), to_list) for every sequence read_sequence accepts."""
    return [
        ("bytearray", lambda n: bytearray(n), list),
        ("memoryview", lambda n: memoryview(bytearray(n)), lambda m: list(m)),
        ("array-B", lambda n: array.array("B", bytes(n)), lambda a: a.tolist()),
        ("array-b", lambda n: array.array("b", bytes(n)), lambda a: a.tolist()),
        *[
            (f"array-{tc}", (lambda n, tc=tc: u_array(tc, "\0" * n)), lambda a: a.tolist())
            for tc in CHAR_TYPECODES
        ],
        ("list", lambda n: [None] * n, list),
    ]


def _expected(name: str, et: str, data: bytes) -> list[Any]:
    if name in ("bytearray", "memoryview", "array-B"):
        return list(data)
    if name == "array-b":
        return array.array("b", data).tolist()
    if name.startswith("array-"):
        return list(data.decode("latin-1"))
    # list: characters on base-char, integers of the element type otherwise
    if et == "base-char":
        return list(data.decode("latin-1"))
    return as_ints(et, data)


@pytest.mark.parametrize("et", ELEMENT_TYPES)
@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
def test_read_sequence(make: Make, et: str, kind: str) -> None:
    mk, to_list = next((m, t) for n, m, t in _containers(et) if n == kind)
    s, peer = make(et)
    data = bytes([0x41, 0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x42, 0xE9])
    feed(peer, data + b"tail")
    seq = mk(10)
    before = to_list(seq)
    # start/end: fills seq[2:6] only and returns the index after the last element filled.
    assert s.read_sequence(seq, 2, 6) == 6
    got = to_list(seq)
    assert got[2:6] == _expected(kind, et, data[:4])
    assert got[:2] == before[:2]
    assert got[6:] == before[6:]
    # whole sequence, but end-of-file comes first: returns the index of the first unfilled one.
    seq = mk(10)
    assert s.read_sequence(seq) == 8
    assert to_list(seq)[:8] == _expected(kind, et, data[4:] + b"tail")
    # at end-of-file: nothing filled, returns start.
    assert s.read_sequence(seq, 3) == 3
    assert s.read_sequence(mk(0)) == 0


def test_read_sequence_waits_until_full(make: Make, peer: Callable[..., PeerThread]) -> None:
    s, b = make("unsigned-byte-8")
    data = bytes(range(256)) * 1024  # 256 KiB: more than one buffer, exercises the bypass

    def send() -> None:
        for i in range(0, len(data), 7000):
            b.sendall(data[i : i + 7000])

    peer(send)
    seq = bytearray(len(data))
    assert s.read_sequence(seq) == len(data)
    assert seq == data


def test_read_sequence_of_payloads_into_one_buffer(
    make: Make, peer: Callable[..., PeerThread]
) -> None:
    # The framing shape (a header line, then its payload into a buffer kept for payloads, by
    # start/end): served from what is buffered, and across receives, the same in both
    # implementations; every byte once.
    s, b = make("unsigned-byte-8")
    replies = [bytes([65 + i % 26]) * (i % 200 + 1) for i in range(300)]
    wire = b"".join(b"$%d\r\n" % len(r) + r + b"\r\n" for r in replies)
    done = threading.Event()

    def send() -> None:
        b.sendall(wire[:5000])
        done.wait(LONG)  # the rest once the reader has taken all of the first part
        for i in range(5000, len(wire), 777):
            b.sendall(wire[i : i + 777])

    peer(send)
    buf = bytearray(b"#" * 300)
    got = []
    for i in range(len(replies)):
        if i == 20:
            done.set()
        header = s.readline()
        n = int(header[1:-2])
        start = i % 3  # not always at 0
        assert s.read_sequence(buf, start, start + n + 2) == start + n + 2
        assert buf[start + n : start + n + 2] == b"\r\n"
        got.append(bytes(buf[start : start + n]))
    assert got == replies
    # end=None with a start, a bool, an int past the buffer, a huge int: as before.
    b.sendall(b"abcdef")
    assert s.read_sequence(buf, 297) == 300
    assert buf[297:] == b"abc"
    with pytest.raises(TypeError):
        s.read_sequence(buf, True, 2)
    with pytest.raises(ValueError, match="start"):
        s.read_sequence(buf, 0, 301)
    with pytest.raises(ValueError, match="start"):
        s.read_sequence(buf, 0, 2**70)
    assert s.read_sequence(buf, 1, 4) == 4
    assert buf[1:4] == b"def"


@pytest.mark.parametrize(
    ("seq", "exc"),
    [
        (b"abc", TypeError),  # read-only
        (memoryview(b"abc"), TypeError),
        (array.array("H", [0, 0]), TypeError),
        ((0, 0), TypeError),
        ("abc", TypeError),
        (42, TypeError),
    ],
)
def test_read_sequence_rejects_bad_sequences(make: Make, seq: Any, exc: type[Exception]) -> None:
    s, peer = make("unsigned-byte-8")
    feed(peer, b"data")
    with pytest.raises(exc):
        s.read_sequence(seq)
    assert s.read() == b"data"  # nothing consumed


@pytest.mark.parametrize(("start", "end"), [(-1, None), (0, 11), (5, 4), (11, None)])
@pytest.mark.parametrize("kind", ["bytearray", "list", "array-u"])
def test_read_sequence_bad_bounds(make: Make, start: int, end: int | None, kind: str) -> None:
    mk = next(m for n, m, _ in _containers("base-char") if n == kind)
    s, peer = make()
    feed(peer, b"data")
    with pytest.raises(ValueError, match="start"):
        s.read_sequence(mk(10), start, end)
    with pytest.raises(TypeError):
        s.read_sequence(mk(10), 1.0)  # type: ignore[arg-type]
    assert s.read() == "data"


# ---- the file protocol ----------------------------------------------------------------------


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"hello, world\xff")
    assert s.read(0) == natural(et, b"")
    assert s.read(5) == natural(et, b"hello")
    assert s.read(None) == natural(et, b", world\xff")
    assert s.read() == natural(et, b"")
    assert s.read(10) == natural(et, b"")


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read_size_waits_for_all_or_eof(
    make: Make, et: str, peer: Callable[..., PeerThread]
) -> None:
    s, b = make(et)

    def send() -> None:
        for piece in (b"ab", b"cd", b"ef"):
            b.sendall(piece)
        b.shutdown(socket.SHUT_WR)

    peer(send)
    assert s.read(5) == natural(et, b"abcde")
    assert s.read(5) == natural(et, b"f")


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_read1(make: Make, et: str) -> None:
    s, peer = make(et)
    peer.sendall(b"abc")
    wait_readable(s)
    assert s.read1(2) == natural(et, b"ab")
    assert s.read1() == natural(et, b"c")
    peer.sendall(b"defg")
    assert s.read1(-1) == natural(et, b"defg")  # waits for the first byte only
    peer.shutdown(socket.SHUT_WR)
    assert s.read1() == natural(et, b"")


def test_zero_size_reads_do_not_wait(make: Make) -> None:
    """Asking for nothing returns nothing at once (no waiting: the read timeout never fires)."""
    s, _ = make(read_timeout=SHORT)
    calls: list[tuple[str, Callable[[], Any], Any]] = [
        ("read(0)", lambda: s.read(0), ""),
        ("read1(0)", lambda: s.read1(0), ""),
        ("readline(0)", lambda: s.readline(0), ""),
        ("readinto(empty)", lambda: s.readinto(bytearray(0)), 0),
        ("read_sequence(2, 2)", lambda: s.read_sequence(bytearray(5), 2, 2), 2),
    ]
    for name, call, expected in calls:
        assert call() == expected, name
        assert s.timed_out is False, f"{name} waited for input"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_readline_and_iteration(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"one\ntwo\r\n\nabcdefgh\nlast")
    assert s.readline() == natural(et, b"one\n")
    assert s.readline(-1) == natural(et, b"two\r\n")
    assert s.readline(None) == natural(et, b"\n")
    assert s.readline(3) == natural(et, b"abc")
    assert s.readline(0) == natural(et, b"")
    assert list(s) == [natural(et, b"defgh\n"), natural(et, b"last")]
    assert s.readline() == natural(et, b"")
    assert list(s) == []
    assert iter(s) is s


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_readinto_raw_bytes_on_every_type(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"\x00\x80\xffxyz")
    buf = bytearray(4)
    assert s.readinto(buf) == 4
    assert buf == b"\x00\x80\xffx"
    mv = memoryview(bytearray(10))
    assert s.readinto(mv[2:]) == 2
    assert bytes(mv[2:4]) == b"yz"
    assert s.readinto(bytearray(3)) == 0


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_write_str_and_bytes(make: Make, et: str) -> None:
    s, peer = make(et)
    assert s.write("h\xe9") == 2
    assert s.write(b"\x00\xff") == 2
    assert s.write(bytearray(b"ab")) == 2
    assert s.write(memoryview(b"xyz")[1:]) == 2
    assert s.write(array.array("b", [-1])) == 1
    assert s.write("") == 0
    assert sent_by(s, peer) == b"h\xe9\x00\xffabyz\xff"


# ---- writing verbs on every element type ---------------------------------------------------


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_write_char_string_line(make: Make, et: str) -> None:
    s, peer = make(et)
    s.write_char("a")
    s.write_char("\xff")
    s.write_string("0123456789", 2, 5)
    s.write_string("xyz", 1)
    s.write_string("")
    s.write_line("line")
    s.write_line("")
    assert sent_by(s, peer) == b"a\xff234yzline\n\n"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        ("str\xe9", b"str\xe9"),
        (b"bytes\x00", b"bytes\x00"),
        (bytearray(b"\xffba"), b"\xffba"),
        (memoryview(b"view"), b"view"),
        (array.array("B", [0, 200]), b"\x00\xc8"),
        (array.array("b", [-1, 5]), b"\xff\x05"),
        ("array-u", b"ch\xe0rs"),
        (["c", "h", "\xff"], b"ch\xff"),
        (("t", "u"), b"tu"),
        ([], b""),
    ],
    ids=lambda v: type(v).__name__,
)
def test_write_sequence(make: Make, et: str, seq: Any, expected: bytes) -> None:
    if seq == "array-u":
        seq = u_array("u", "ch\xe0rs")
    s, peer = make(et)
    s.write_sequence(seq)
    assert sent_by(s, peer) == expected


@pytest.mark.parametrize("typecode", CHAR_TYPECODES)
def test_write_sequence_char_arrays(make: Make, typecode: str) -> None:
    s, peer = make("unsigned-byte-8")
    s.write_sequence(u_array(typecode, "abc\xff"), 1)
    assert sent_by(s, peer) == b"bc\xff"


@pytest.mark.parametrize(
    ("et", "ints", "expected"),
    [
        ("base-char", [0, 65, 255], b"\x00A\xff"),
        ("unsigned-byte-8", [0, 65, 255], b"\x00A\xff"),
        ("signed-byte-8", [-128, -1, 0, 127], b"\x80\xff\x00\x7f"),
    ],
)
def test_write_sequence_of_integers(make: Make, et: str, ints: list[int], expected: bytes) -> None:
    s, peer = make(et)
    s.write_sequence(ints)
    s.write_sequence(tuple(ints))
    assert sent_by(s, peer) == expected * 2


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_write_sequence_start_end(make: Make, et: str) -> None:
    s, peer = make(et)
    s.write_sequence("0123456789", 1, 3)
    s.write_sequence(b"0123456789", 8)
    s.write_sequence(bytearray(b"abcdef"), 2, 4)
    s.write_sequence(memoryview(b"abcdef"), 5, 6)
    s.write_sequence(array.array("B", b"ABCD"), 0, 1)
    s.write_sequence(list("wxyz"), 3)
    s.write_sequence(tuple(b"WXYZ"), 1, 2)
    s.write_sequence(b"abc", 3, 3)
    assert sent_by(s, peer) == b"1289cdfAzX"


def test_write_sequence_bad_bounds_write_nothing(make: Make) -> None:
    s, peer = make()
    s.write_string("ok")
    for seq in ("abc", b"abc", [1, 2, 3], array.array("B", b"abc")):
        with pytest.raises(ValueError):
            s.write_sequence(seq, 2, 1)
        with pytest.raises(ValueError):
            s.write_sequence(seq, 0, 4)
    with pytest.raises(TypeError):
        s.write_sequence(42)
    with pytest.raises(TypeError):
        s.write_sequence(array.array("H", [1]))
    assert sent_by(s, peer) == b"ok"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_large_writes_are_delivered_in_order(
    make: Make, et: str, peer: Callable[..., PeerThread]
) -> None:
    s, b = make(et)
    reader = peer(drain, b)
    data = bytes(range(256)) * 2048  # 512 KiB, several output buffers
    for i in range(0, len(data), 3000):
        s.write(data[i : i + 3000])
    s.write_string("end")
    s.shutdown_output()
    assert reader.join_checked() == data + b"end"


def test_buffered_until_force_output(make: Make) -> None:
    s, peer = make()
    s.write_string("buffered")
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)  # nothing sent yet
    s.force_output()
    peer.setblocking(True)
    peer.settimeout(LONG)
    assert peer.recv(100) == b"buffered"
    s.write_string("again")
    s.flush()
    assert peer.recv(100) == b"again"
    s.write_string("finish")
    s.finish_output()
    assert peer.recv(100) == b"finish"
    s.force_output()  # nothing buffered: no-op
    s.finish_output()


def test_clear_output(make: Make) -> None:
    s, peer = make()
    s.write_string("dropped")
    s.clear_output()
    s.write_string("kept")
    s.clear_output()
    s.write_string("sent")
    assert sent_by(s, peer) == b"sent"


# ---- max_line_length ------------------------------------------------------------------------


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_max_line_length(make: Make, et: str) -> None:
    s, peer = make(et, max_line_length=5)
    assert s.max_line_length == 5
    feed(peer, b"12345\n123456\nrest")
    assert s.read_line() == ("12345", False)
    with pytest.raises(LineTooLongError) as info:
        s.read_line()
    assert isinstance(info.value, ValueError)
    assert info.value.max_line_length == 5
    with pytest.raises(LineTooLongError):
        s.readline()
    assert s.read() == natural(et, b"123456\nrest")  # nothing was consumed


@pytest.mark.parametrize("verb", ["read_line", "readline", "next"])
def test_max_line_length_after_many_short_lines(make: Make, verb: str) -> None:
    """The limit holds for a long line that follows lines already split ahead of time."""
    s, peer = make(max_line_length=5)
    feed(peer, b"ab\n" * 50 + b"toolong\n" + b"ok\n")
    read: Callable[[], Any] = {
        "read_line": lambda: s.read_line()[0] + "\n",
        "readline": s.readline,
        "next": lambda: next(s),
    }[verb]
    assert [read() for _ in range(50)] == ["ab\n"] * 50
    with pytest.raises(LineTooLongError):
        read()
    with pytest.raises(LineTooLongError):
        read()
    assert s.read(8) == "toolong\n"
    assert read() == "ok\n"


@pytest.mark.parametrize("et", ELEMENT_TYPES)
def test_line_reads_mixed_with_other_verbs(make: Make, et: str) -> None:
    s, peer = make(et)
    feed(peer, b"".join(b"line %d\n" % i for i in range(300)))
    assert s.read_line() == ("line 0", False)
    assert s.read_char() == "l"
    s.unread_char("l")
    assert s.readline() == natural(et, b"line 1\n")
    assert s.peek_char() == "l"
    assert next(s) == natural(et, b"line 2\n")
    assert s.read(3) == natural(et, b"lin")
    assert s.read_line() == ("e 3", False)
    buf = bytearray(4)
    assert s.readinto(buf) == 4
    assert buf == b"line"
    assert s.readline(2) == natural(et, b" 4")
    assert s.read_line() == ("", False)
    for i in range(5, 100):
        assert s.read_line() == (f"line {i}", False)
    assert s.read_char() == "l"
    seq = [None] * 3
    assert s.read_sequence(seq) == 3
    assert s.read1(4) == natural(et, b" 100")
    assert s.read_line() == ("", False)
    assert s.readline() == natural(et, b"line 101\n")
    s.clear_input()
    assert s.read_line(False) == (None, True)


def test_max_line_length_without_newline_yet(make: Make) -> None:
    """A line already longer than the limit fails without waiting for its newline."""
    s, peer = make(max_line_length=4)
    peer.sendall(b"abcdefgh")
    with pytest.raises(LineTooLongError):
        s.read_line()
    assert s.read(3) == "abc"


# ---- the seed's two examples, against a peer that speaks HTTP/1.0 -------------------------

HTTP_RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n"


def _http10_server(lsock: socket.socket) -> bytes:
    """Accept one connection, read a request up to its empty line, answer, close."""
    conn, _ = lsock.accept()
    with conn:
        conn.settimeout(LONG)
        request = b""
        while b"\n\n" not in request.replace(b"\r\n", b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        conn.sendall(HTTP_RESPONSE)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):  # until the client closes
            pass
    return request


@pytest.fixture
def http_server(peer: Callable[..., PeerThread]) -> Iterator[tuple[tuple[str, int], PeerThread]]:
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        yield lsock.getsockname(), peer(_http10_server, lsock)


def test_seed_example_string_buffer_from_binary_stream(
    http_server: tuple[tuple[str, int], PeerThread],
) -> None:
    """(read-sequence (make-array 20 :element-type 'base-char) x) on an (unsigned-byte 8) stream."""
    address, server = http_server
    with SocketStream(socket.create_connection(address), element_type="(unsigned-byte 8)") as x:
        x.write_sequence("GET / HTTP/1.0\n\n")
        x.force_output()
        res = u_array("u", " " * 20)
        assert x.read_sequence(res) == 20
        assert res.tounicode() == HTTP_RESPONSE[:20].decode("latin-1")
        assert res.tounicode() == "HTTP/1.0 200 OK\r\nCon"
    assert server.join_checked() == b"GET / HTTP/1.0\n\n"


def test_seed_example_bytes_from_base_char_stream(
    http_server: tuple[tuple[str, int], PeerThread],
) -> None:
    """(read-sequence (make-array 20 :element-type '(unsigned-byte 8)) x) on a base-char stream."""
    address, server = http_server
    with SocketStream(socket.create_connection(address), element_type="base-char") as x:
        x.write_sequence(bytes(map(ord, "GET / HTTP/1.0\n\n")))
        x.force_output()
        res = array.array("B", bytes(20))
        assert x.read_sequence(res) == 20
        assert "".join(map(chr, res)) == "HTTP/1.0 200 OK\r\nCon"
        # and the rest of the response, read as lines, then end-of-file
        assert x.read_line() == ("tent-Type: text/plain\r", False)
        rest = list(x)
        assert rest[-1] == "hello\n"
        assert x.read_char(False) is None
    assert server.join_checked() == b"GET / HTTP/1.0\n\n"


def test_unread_after_clear_input_is_refused(make: Make) -> None:
    """What clear_input discarded cannot come back through unread_char."""
    s, b = make()
    b.sendall(b"ab")
    assert s.read_char() == "a"
    assert s.listen()
    s.clear_input()
    with pytest.raises(ValueError):
        s.unread_char("b")
    b.sendall(b"c")
    assert s.read_char() == "c"

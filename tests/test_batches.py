"""The batches behind the fastest verbs: byte windows, character batches, CRLF splits.

A byte window (a BytesIO over a copy of whole lines) serves ``readline`` and
``read_sequence`` on byte streams after a few lines in a row; a batch of characters serves
``read_char`` after many in a row; CRLF windows are cut with ``splitlines`` where that is
exact.  Whatever ends a batch (a read that needs more than the window, another verb, a second
thread), every byte is delivered exactly once and in order.
"""

from __future__ import annotations

import random
import socket
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import Make, PeerThread
from sockstream import LineTooLongError, SocketStream
from sockstream._textbuffer import _split_crlf


def _lines(s: SocketStream, n: int) -> list[bytes]:
    return [s.readline() for _ in range(n)]


def test_read_sequence_past_the_window_end_takes_it_whole(make: Make) -> None:
    """A payload that starts in the window and ends after it: one piece, from the buffer."""
    s, peer = make("unsigned-byte-8")
    body = b"x" * 50 + b"\n" + b"y" * 300  # the window ends at its newline
    peer.sendall(b"h1\nh2\nh3\n" + body + b"\r\nh4\n")
    assert _lines(s, 3) == [b"h1\n", b"h2\n", b"h3\n"]  # the third starts a window
    seq = bytearray(len(body) + 2)
    assert s.read_sequence(seq) == len(seq)
    assert bytes(seq) == body + b"\r\n"
    assert s.readline() == b"h4\n"


def test_read_sequence_when_the_rest_is_still_to_come(make: Make) -> None:
    s, peer = make("unsigned-byte-8")
    peer.sendall(b"a\nb\nc\n" + b"p" * 10 + b"\n")
    assert _lines(s, 3) == [b"a\n", b"b\n", b"c\n"]
    peer.sendall(b"q" * 20)  # not yet in our buffer: the slow path waits for it
    seq = bytearray(31)
    assert s.read_sequence(seq) == 31
    assert bytes(seq) == b"p" * 10 + b"\n" + b"q" * 20
    peer.shutdown(socket.SHUT_WR)
    assert s.read(10) == b""


def test_window_then_other_verbs(make: Make) -> None:
    s, peer = make("unsigned-byte-8")
    peer.sendall(b"1\n2\n3\n4\n5\n6\n")
    peer.shutdown(socket.SHUT_WR)
    assert _lines(s, 3) == [b"1\n", b"2\n", b"3\n"]
    assert s.read_byte() == ord("4")  # settles the window
    s.unread_char("4")
    assert s.read_char() == "4"
    assert s.peek_char() == "\n"
    assert s.readline() == b"\n"
    assert s.read_line() == ("5", False)
    assert s.read() == b"6\n"


def test_window_respects_a_small_line_limit(make: Make) -> None:
    s, peer = make("unsigned-byte-8", max_line_length=5)
    peer.sendall(b"ab\ncd\nef\ngh\n" + b"z" * 8 + b"\nok\n")
    assert _lines(s, 4) == [b"ab\n", b"cd\n", b"ef\n", b"gh\n"]
    with pytest.raises(LineTooLongError):
        s.readline()
    assert s.read(9) == b"z" * 8 + b"\n"  # nothing was consumed
    assert s.readline() == b"ok\n"


def test_character_batch_with_unread_peek_and_lines(make: Make) -> None:
    s, peer = make()
    text = "".join(chr(ord("a") + i % 26) for i in range(200)) + "\nrest\n"
    peer.sendall(text.encode("latin-1"))
    got = [s.read_char() for _ in range(40)]  # a batch starts after 16 in a row
    assert "".join(got) == text[:40]
    s.unread_char(got[-1])
    with pytest.raises(ValueError):
        s.unread_char(got[-2])
    assert s.read_char() == text[39]
    assert s.peek_char() == text[40]
    assert [s.read_char() for _ in range(30)] == list(text[40:70])
    assert s.read_line() == (text[70:200], False)
    assert s.readline() == "rest\n"


def test_peek_and_unread_between_characters_start_no_batches(make: Make) -> None:
    """A batch cut short by ``peek_char`` or ``unread_char`` starts the row of characters
    again: alternating them with ``read_char`` reads one character at a time (a batch for each
    character would decode a window per character)."""
    s, peer = make()
    text = "".join(chr(ord("a") + i % 26) for i in range(3000))
    peer.sendall(text.encode("latin-1"))
    got = [s.read_char() for _ in range(40)]  # a batch is under way
    starts = 0
    for i in range(40, 1000):
        before = s._in._batch
        assert s.peek_char() == text[i]
        got.append(s.read_char())
        if i % 2:
            s.unread_char(got[-1])
            assert s.read_char() == text[i]
        if s._in._batch is not None and s._in._batch is not before:
            starts += 1
    assert "".join(got) == text[:1000]
    assert starts <= 1  # (the pure buffer; the twin never batches)
    assert [s.read_char() for _ in range(2000)] == list(text[1000:])


def test_verbs_bound_before_an_encoding_change_go_on_where_the_stream_is(make: Make) -> None:
    """``rl = stream.read_line`` keeps the buffer of its time; after the encoding changes
    (a new buffer takes over the bytes), it must not serve those bytes a second time."""
    s, peer = make()
    peer.sendall("one\ntwo\nthree\nfour\nfünf\nsix\nsieben\n".encode())
    rl, rd, rc, rs = s.read_line, s.readline, s.read_char, s.read_sequence
    assert rl() == ("one", False)
    s.encoding = "utf-8"
    assert rl() == ("two", False)
    assert s.read_line() == ("three", False)
    assert rd() == "four\n"
    assert rl() == ("fünf", False)
    s.encoding = "latin-1"
    assert rc() == "s"
    seq = bytearray(3)
    assert rs(seq) == 3
    assert seq == b"ix\n"
    assert s.read_line() == ("sieben", False)


def test_character_batches_across_fills(make: Make) -> None:
    s, peer = make()
    data = bytes(random.Random(7).randrange(256) for _ in range(300_000))

    def send() -> None:
        peer.sendall(data)
        peer.shutdown(socket.SHUT_WR)

    sender = PeerThread(send)
    sender.start()
    out = []
    while (ch := s.read_char(False)) is not None:
        out.append(ch)
    sender.join_checked()
    assert "".join(out).encode("latin-1") == data


@pytest.mark.parametrize("how", ["lines+sequences", "chars"])
def test_two_readers_of_batches_see_every_byte_once(make: Make, how: str) -> None:
    s, peer = make("unsigned-byte-8")
    data = b"".join(b"%07d\n" % i for i in range(40_000))

    def send() -> None:
        peer.sendall(data)
        peer.shutdown(socket.SHUT_WR)

    got: list[list[bytes]] = [[], []]

    def reader(i: int) -> None:
        rnd = random.Random(i)
        out = got[i]
        seq = bytearray(8)
        while True:
            if how == "chars":
                ch = s.read_char(False)
                if ch is None:
                    return
                out.append(ch.encode("latin-1"))
            elif rnd.randrange(3):
                line = s.readline()
                if not line:
                    return
                out.append(line)
            else:
                n = s.read_sequence(seq)
                if not n:
                    return
                out.append(bytes(seq[:n]))

    sender = PeerThread(send)
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
    sender.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    sender.join_checked()
    if how == "chars":
        counts = sorted(b"".join(got[0] + got[1]))
        assert counts == sorted(data)
    else:
        pieces = got[0] + got[1]
        assert all(len(p) == 8 for p in pieces)  # whole records, each once
        assert sorted(pieces) == sorted(data[i : i + 8] for i in range(0, len(data), 8))


@given(st.text(alphabet="ab\r\n\x0b\x1c\x85\u2028", max_size=40))
def test_split_crlf_is_split(text: str) -> None:
    assert _split_crlf(text + "\r\n") == text.split("\r\n")


def test_crlf_lines_with_lone_breaks(make: Make) -> None:
    s, peer = make(newline="\r\n")
    lines = ["plain", "lone\rcr", "lone\nlf", "vt\x0bff\x0c", "nel\x85", ""] * 50
    peer.sendall("".join(line + "\r\n" for line in lines).encode("latin-1"))
    peer.shutdown(socket.SHUT_WR)
    assert [s.read_line()[0] for _ in lines] == lines
    assert s.read_line(False, None) == (None, True)


def test_window_end_taken_while_another_reader_settles() -> None:
    """The race of two readers at a window's end, played step by step on the buffer: a
    ``read_sequence`` took the window's last bytes, another thread settled the window first."""
    from sockstream._buffer import BYTES_LINE_NL, InputBuffer

    for overlap in (False, True):
        ib = InputBuffer()
        ib.feed(b"1\n2\n3\n" + b"ab\n" + b"cdef\nnext")
        ib.serve_elements(
            lambda *a: None, lambda *a: None, (), lambda *a: None, BYTES_LINE_NL, lambda *a: -1
        )
        assert [ib.readline() for _ in range(3)] == [b"1\n", b"2\n", b"3\n"]
        assert ib.readline() == b"ab\n"  # from the window, which ends after "cdef\n"...
        seq = bytearray(7)
        into = ib.next_into
        n = into(seq)  # ...so a read of 7 takes its last 5 bytes only
        assert n == 5
        assert ib.settle()  # the other thread: its settle counts those 5 as read
        if not overlap:
            assert ib._seq_more(seq, n, into) == 7  # put back exactly, then read whole
            assert bytes(seq) == b"cdef\nne"
            assert ib.take_all() == b"xt"
        else:
            assert ib.take(2) == b"ne"  # and it read on
            with pytest.raises(RuntimeError):
                ib._seq_more(seq, n, into)
            assert ib.take_all() == b"cdef\nxt"  # nothing lost

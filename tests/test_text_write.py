"""Text on the writing side: every character write encodes with the stream's encoding and
error handler, nothing of a call is written on an encode error, ``write_line`` ends lines with
the stream's terminator, and no other write translates anything.  The text keywords on every
way of making a stream, and the properties.
"""

from __future__ import annotations

import array
import socket
import sys

import pytest

from conftest import Make, drain
from sockstream import SocketStream, open_tcp_stream, serve

ELEMENT_TYPES = ["base-char", "unsigned-byte-8", "signed-byte-8"]
#: array typecode for characters: 'u' is deprecated from Python 3.13 in favour of 'w'.
CHARS = "w" if sys.version_info >= (3, 13) else "u"


def sent(stream: SocketStream, peer: socket.socket) -> bytes:
    stream.close()
    return drain(peer)


@pytest.mark.parametrize("element_type", ELEMENT_TYPES)
def test_every_character_write_encodes(make: Make, element_type: str) -> None:
    s, peer = make(element_type, encoding="utf-8")
    s.write_char("é")
    s.write_string("€x", 0, 1)
    s.write_string("😀")
    s.write_line("ü")
    s.write_sequence(["a", "ß"])
    s.write_sequence(array.array(CHARS, "€"))
    s.write_sequence("ñ")
    assert s.write("ö") == 1
    s.write_sequence(b"\xff")  # bytes are bytes: never encoded
    assert sent(s, peer) == "é€😀ü\naß€ñö".encode() + b"\xff"


@pytest.mark.parametrize(("newline", "eol"), [("\n", b"\n"), ("\r\n", b"\r\n"), (None, b"\r\n")])
@pytest.mark.parametrize("element_type", ELEMENT_TYPES)
def test_write_line_ends_with_the_terminator(
    make: Make, element_type: str, newline: str | None, eol: bytes
) -> None:
    s, peer = make(element_type, newline=newline)
    s.write_line("a")
    s.write_line("")
    # Other writes are never translated.
    s.write_string("b\nc\r\n")
    s.write("d\n")
    s.write(b"e\n")
    s.write_char("\n")
    assert sent(s, peer) == b"a" + eol + eol + b"b\nc\r\nd\ne\n\n"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.write_string("ab€"),
        lambda s: s.write_line("ab€"),
        lambda s: s.write_char("€"),
        lambda s: s.write_sequence(["a", "€"]),
        lambda s: s.write_sequence(array.array(CHARS, "a€")),
        lambda s: s.write("a€"),
    ],
)
def test_encode_error_writes_nothing(make: Make, call: object) -> None:
    s, peer = make(encoding="cp1252")
    s.write_string("é")
    s.encoding = "ascii"
    with pytest.raises(ValueError, match="nothing was written"):
        call(s)  # type: ignore[operator]
    s.encoding = "cp1252"
    s.write_string("€")
    assert sent(s, peer) == "é€".encode("cp1252")


def test_encode_error_is_a_unicode_encode_error(make: Make) -> None:
    s, peer = make(encoding="ascii")
    with pytest.raises(UnicodeEncodeError) as info:
        s.write_string("abc\u00e9")
    assert info.value.start == 3
    assert sent(s, peer) == b""


def test_latin1_default_keeps_its_message(make: Make) -> None:
    s, peer = make()
    with pytest.raises(ValueError, match="above 255"):
        s.write_string("a€")
    assert sent(s, peer) == b""


@pytest.mark.parametrize(
    ("errors", "expect"),
    [("replace", b"a?"), ("ignore", b"a"), ("backslashreplace", b"a\\u20ac"),
     ("xmlcharrefreplace", b"a&#8364;")],
)  # fmt: skip
def test_errors_apply_to_writes(make: Make, errors: str, expect: bytes) -> None:
    s, peer = make(errors=errors)
    s.write_string("a€")
    assert sent(s, peer) == expect


def test_surrogateescape_writes_the_bytes_back(make: Make) -> None:
    s, peer = make(encoding="utf-8", errors="surrogateescape")
    s.write_string(b"\xff\xfe ok \xc3".decode("utf-8", "surrogateescape"))
    assert sent(s, peer) == b"\xff\xfe ok \xc3"


def test_properties_settable_between_operations(make: Make) -> None:
    s, peer = make()
    assert (s.encoding, s.errors, s.newline) == ("latin-1", "strict", "\n")
    s.write_line("é")
    s.encoding = "utf-8"
    s.newline = "\r\n"
    s.write_line("é")
    s.errors = "replace"
    s.encoding = "ascii"
    s.newline = None
    s.write_line("é")
    assert (s.encoding, s.errors, s.newline) == ("ascii", "replace", None)
    assert sent(s, peer) == b"\xe9\n\xc3\xa9\r\n?\r\n"


def test_bad_settings_change_nothing(make: Make) -> None:
    s, _ = make(encoding="utf-8", errors="replace", newline="\r\n")
    with pytest.raises(ValueError, match="single bytes 10 and 13"):
        s.encoding = "utf-16"
    with pytest.raises(ValueError, match="error handler"):
        s.errors = "nope"
    with pytest.raises(ValueError, match="newline must be"):
        s.newline = "\r"
    assert (s.encoding, s.errors, s.newline) == ("utf-8", "replace", "\r\n")


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"encoding": "utf-16"}, "single bytes 10 and 13"), ({"encoding": "utf-32-be"}, "UTF-32"),
     ({"errors": "bogus"}, "error handler"), ({"newline": "\r"}, "newline must be"),
     ({"newline": ""}, "newline must be")],
)  # fmt: skip
def test_bad_keywords_close_the_socket(kw: dict[str, object], match: str) -> None:
    a, b = socket.socketpair()
    with b, pytest.raises(ValueError, match=match):
        SocketStream(a, **kw)  # type: ignore[arg-type]
    assert a.fileno() == -1


def test_open_tcp_stream_and_serve_take_the_keywords() -> None:
    got: list[tuple[str, str, str | None]] = []

    def handler(stream: SocketStream) -> None:
        got.append((stream.encoding, stream.errors, stream.newline))
        stream.write_line("€")

    with serve(handler, address="127.0.0.1", encoding="utf-8", errors="replace",
               newline=None) as server:  # fmt: skip
        s = open_tcp_stream("127.0.0.1", server.port, encoding="utf-8", newline="\r\n",
                            read_timeout=10)  # fmt: skip
        with s:
            assert (s.encoding, s.errors, s.newline) == ("utf-8", "strict", "\r\n")
            assert s.read_sequence(bytearray(5)) == 5  # "€" and CRLF, raw
    assert got == [("utf-8", "replace", None)]
    with pytest.raises(ValueError, match="single bytes"):
        serve(handler, address="127.0.0.1", encoding="utf-16")
    with pytest.raises(ValueError, match="single bytes"):
        open_tcp_stream("127.0.0.1", 9, encoding="utf-32")

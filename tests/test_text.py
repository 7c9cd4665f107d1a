"""The sans-IO text layer (``_text``): encodings, decoding on demand, terminators, delimiters.

Every scenario three ways (whole, byte at a time, with trailing data), then hypothesis drives
random text in random chunkings against ``bytes.decode`` / ``str.split`` as the model.
"""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockstream._text import (
    Codec,
    as_delimiter,
    check_encoding,
    check_errors,
    check_newline,
    find_delimiter,
    find_line_end,
    terminator,
)

GOOD = ["latin-1", "utf-8", "ascii", "cp1252", "shift_jis", "gb18030", "euc_kr", "koi8_r"]
BAD = ["utf-16", "utf-16-le", "utf-32", "utf-7", "iso2022_jp", "hz", "utf-8-sig", "cp037"]


# ---- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize("enc", GOOD)
def test_good_encodings(enc: str) -> None:
    assert check_encoding(enc) == enc
    assert Codec(enc).encoding == enc


@pytest.mark.parametrize("enc", BAD)
def test_bad_encodings_name_the_rule(enc: str) -> None:
    with pytest.raises(ValueError, match="single bytes 10 and 13") as info:
        check_encoding(enc)
    assert repr(enc) in str(info.value)


@pytest.mark.parametrize("enc", ["rot13", "base64", "zlib"])
def test_non_text_codecs_refused(enc: str) -> None:
    with pytest.raises(ValueError, match="text codec"):
        check_encoding(enc)


def test_unknown_encoding_and_types() -> None:
    with pytest.raises(ValueError, match="known Python codec, not 'no-such'"):
        check_encoding("no-such")
    with pytest.raises(TypeError, match="encoding must be a str"):
        check_encoding(8)


def test_errors_and_newline_checks() -> None:
    for name in ("strict", "replace", "ignore", "surrogateescape", "backslashreplace"):
        assert check_errors(name) == name
    with pytest.raises(ValueError, match="errors must name a registered error handler"):
        check_errors("nope")
    with pytest.raises(TypeError):
        check_errors(None)
    for nl in ("\n", "\r\n", None):
        assert check_newline(nl) == nl
    for bad in ("\r", "", "\n\r", b"\n", 10, "crlf"):
        with pytest.raises(ValueError, match="newline must be"):
            check_newline(bad)
    assert terminator("\n") == b"\n"
    assert terminator("\r\n") == terminator(None) == b"\r\n"


# ---- encoding -----------------------------------------------------------------------------


def test_encode() -> None:
    assert Codec("utf-8").encode("é€") == "é€".encode()
    with pytest.raises(UnicodeEncodeError, match="nothing was written") as info:
        Codec("latin-1").encode("a€")
    assert isinstance(info.value, ValueError)
    assert info.value.start == 1
    assert Codec("ascii", "replace").encode("é") == b"?"
    assert Codec("ascii", "backslashreplace").encode("é") == b"\\xe9"
    assert Codec("utf-8", "surrogateescape").encode("\udcff") == b"\xff"


# ---- characters one at a time ---------------------------------------------------------------


def chars_of(codec: Codec, data: bytes, chunk: int) -> tuple[list[str], list[int]]:
    """Characters read one by one from ``data`` fed ``chunk`` bytes at a time."""
    buf = bytearray()
    pos = 0
    out: list[str] = []
    sizes: list[int] = []
    fed = 0
    while True:
        got = codec.char_at(buf, pos, len(buf), final=fed >= len(data))
        if got is None:
            if fed >= len(data):
                return out, sizes
            buf += data[fed : fed + chunk]
            fed += chunk
            continue
        char, size = got
        out.append(char)
        sizes.append(size)
        pos += size


TEXT = "aé€😀\r\nz"


@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
@pytest.mark.parametrize("enc", ["utf-8", "gb18030"])
def test_char_at_multibyte(enc: str, chunk: int) -> None:
    codec = Codec(enc)
    data = TEXT.encode(enc)
    chars, sizes = chars_of(codec, data, chunk)
    assert "".join(chars) == TEXT
    assert chars == list(TEXT)
    assert sum(sizes) == len(data)
    assert sizes == [len(c.encode(enc)) for c in TEXT]


def test_char_at_incomplete_is_none_until_final() -> None:
    codec = Codec("utf-8")
    four = "😀".encode()
    for n in range(1, 4):
        assert codec.char_at(bytearray(four[:n]), 0, n, final=False) is None
    assert codec.char_at(bytearray(four), 0, 4, final=False) == ("😀", 4)
    with pytest.raises(UnicodeDecodeError):
        codec.char_at(bytearray(four[:3]), 0, 3, final=True)
    assert Codec("utf-8", "replace").char_at(bytearray(four[:3]), 0, 3, final=True) == (
        "\ufffd",
        3,
    )


def test_char_at_invalid() -> None:
    data = bytearray(b"\xffa")
    with pytest.raises(UnicodeDecodeError):
        Codec("utf-8").char_at(data, 0, 2, final=False)
    assert Codec("utf-8", "replace").char_at(data, 0, 2, False) == ("\ufffd", 1)
    assert Codec("utf-8", "surrogateescape").char_at(data, 0, 2, False) == ("\udcff", 1)
    assert Codec("utf-8", "ignore").char_at(data, 0, 2, False) == ("", 1)
    assert Codec("utf-8", "backslashreplace").char_at(data, 0, 2, False) == ("\\xff", 1)
    # An invalid continuation: only the lead byte is bad, the next character is whole.
    data = bytearray(b"\xe2a")
    assert Codec("utf-8", "replace").char_at(data, 0, 2, False) == ("\ufffd", 1)
    assert Codec("ascii", "replace").char_at(bytearray(b"\x80"), 0, 1, False) == ("\ufffd", 1)
    with pytest.raises(UnicodeDecodeError):
        Codec("cp1252").char_at(bytearray(b"\x81"), 0, 1, False)


# ---- windows of characters --------------------------------------------------------------------


@pytest.mark.parametrize("enc", ["utf-8", "gb18030", "shift_jis", "latin-1", "cp1252"])
def test_decode_some_holds_back_an_incomplete_character(enc: str) -> None:
    codec = Codec(enc)
    text = "aé" + ("€😀" if enc in ("utf-8", "gb18030") else "é")
    if enc == "shift_jis":
        text = "aあい"
    data = bytearray(text.encode(enc))
    for cut in range(len(data) + 1):
        got, used = codec.decode_some(data, 0, cut)
        assert data[:used].decode(enc) == got
        assert text.startswith(got)
        # Nothing whole is held back.
        assert len(got) == len(data[:cut].decode(enc, "ignore")) or cut - used < 4


def test_decode_some_stops_before_an_error() -> None:
    codec = Codec("utf-8")
    data = bytearray(b"ab\xffc")
    assert codec.decode_some(data, 0, 4) == ("ab", 2)
    with pytest.raises(UnicodeDecodeError):
        codec.decode_some(data, 2, 4)
    assert Codec("utf-8", "surrogateescape").decode_some(data, 0, 4) == ("ab\udcffc", 4)


@pytest.mark.parametrize(
    ("enc", "errors", "data"),
    [
        ("utf-8", "strict", "aé€😀b".encode()),
        ("utf-8", "surrogateescape", b"a\xff\xc3\xa9\xfe"),
        ("utf-8", "replace", b"a\xff\xc3\xa9\xe2\x82z"),
        ("utf-8", "ignore", b"a\xff\xc3\xa9\xfez"),
        ("gb18030", "strict", "a€é😀b".encode("gb18030")),
        ("latin-1", "strict", bytes(range(256))),
        ("cp1252", "ignore", b"a\x81b\x80"),
    ],
)
def test_size_of_every_prefix(enc: str, errors: str, data: bytes) -> None:
    codec = Codec(enc, errors)
    buf = bytearray(b"xx" + data)
    text, used = codec.decode_some(buf, 2, len(buf))
    for n in range(len(text) + 2):
        size = codec.size_of(buf, 2, text, used, n)
        # The first n characters are exactly the decoding of that many bytes.
        assert str(bytes(buf[2 : 2 + size]), enc, errors) == text[:n]


def test_size_of_backslashreplace_never_splits_a_replacement() -> None:
    codec = Codec("utf-8", "backslashreplace")
    buf = bytearray(b"a\xffb")
    text, used = codec.decode_some(buf, 0, 3)
    assert text == "a\\xffb"
    assert codec.size_of(buf, 0, text, used, 1) == 1
    assert codec.size_of(buf, 0, text, used, 3) == 1  # "\\xff" does not fit in 3 - 1
    assert codec.size_of(buf, 0, text, used, 5) == 2


# ---- terminators -----------------------------------------------------------------------------


def lines_of(data: bytes, chunk: int, newline: str | None) -> list[tuple[bytes, bytes]]:
    """(data, terminator) of each whole line, fed ``chunk`` bytes at a time, resuming scans."""
    buf = bytearray()
    pos = scan = 0
    out = []
    for i in range(0, len(data), chunk):
        buf += data[i : i + chunk]
        while True:
            dend, lend, scan = find_line_end(buf, pos, scan, len(buf), newline)
            if dend < 0:
                break
            out.append((bytes(buf[pos:dend]), bytes(buf[dend:lend])))
            pos = scan = lend
    return out


MIXED = b"a\r\nb\nc\rd\r\r\ne\n\r\n\nf"


@pytest.mark.parametrize("chunk", [1, 2, 3, len(MIXED)])
def test_line_ends_each_mode(chunk: int) -> None:
    assert lines_of(MIXED, chunk, "\n") == [
        (b"a\r", b"\n"),
        (b"b", b"\n"),
        (b"c\rd\r\r", b"\n"),
        (b"e", b"\n"),
        (b"\r", b"\n"),
        (b"", b"\n"),
    ]
    assert lines_of(MIXED, chunk, "\r\n") == [
        (b"a", b"\r\n"),
        (b"b\nc\rd\r", b"\r\n"),
        (b"e\n", b"\r\n"),
    ]
    assert lines_of(MIXED, chunk, None) == [
        (b"a", b"\r\n"),
        (b"b", b"\n"),
        (b"c\rd\r", b"\r\n"),
        (b"e", b"\n"),
        (b"", b"\r\n"),
        (b"", b"\n"),
    ]


def test_crlf_split_across_chunks_resumes_on_the_cr() -> None:
    buf = bytearray(b"abc\r")
    assert find_line_end(buf, 0, 0, 4, "\r\n") == (-1, -1, 3)
    buf += b"\n"
    assert find_line_end(buf, 0, 3, 5, "\r\n") == (3, 5, 3)
    # Lenient: the CR before the LF belongs to the terminator even when it came first.
    buf = bytearray(b"abc\r")
    assert find_line_end(buf, 0, 0, 4, None) == (-1, -1, 4)
    buf += b"\n"
    assert find_line_end(buf, 0, 4, 5, None) == (3, 5, 4)


def test_delimiter_split_across_chunks() -> None:
    delim = b"\r\n\r\n"
    data = b"Host: x\r\nA: b\r\n\r\nbody"
    for chunk in range(1, len(data) + 1):
        buf = bytearray()
        scan = 0
        found = -1
        for i in range(0, len(data), chunk):
            buf += data[i : i + chunk]
            found, scan = find_delimiter(buf, 0, scan, len(buf), delim)
            if found >= 0:
                break
        assert found == data.index(delim)


def test_as_delimiter() -> None:
    assert as_delimiter("\r\n", Codec()) == b"\r\n"
    assert as_delimiter("€", Codec("utf-8")) == "€".encode()
    assert as_delimiter(bytearray(b"ab"), Codec()) == b"ab"
    assert as_delimiter(memoryview(b"ab"), Codec()) == b"ab"
    with pytest.raises(ValueError, match="must not be empty"):
        as_delimiter(b"", Codec())
    with pytest.raises(TypeError, match="delimiter must be"):
        as_delimiter(3, Codec())
    with pytest.raises(UnicodeEncodeError):
        as_delimiter("€", Codec())


# ---- the model --------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.tuples(texts, st.sampled_from(["\n", "\r\n"])), max_size=8),
    chunks=st.lists(st.integers(1, 7), min_size=1, max_size=10),
    newline=st.sampled_from(["\n", "\r\n", None]),
    enc=st.sampled_from(["utf-8", "gb18030"]),
)
def test_model_lines_and_chars(
    lines: list[tuple[str, str]], chunks: list[int], newline: str | None, enc: str
) -> None:
    text = "".join(a.replace("\r", "").replace("\n", "") + e for a, e in lines)
    data = text.encode(enc)
    codec = Codec(enc)
    # Characters in random chunkings: exactly the text.
    buf = bytearray()
    pos = fed = k = 0
    got: list[str] = []
    while True:
        r = codec.char_at(buf, pos, len(buf), final=fed >= len(data))
        if r is None:
            if fed >= len(data):
                break
            n = chunks[k % len(chunks)]
            k += 1
            buf += data[fed : fed + n]
            fed += n
            continue
        got.append(r[0])
        pos += r[1]
    assert "".join(got) == text
    # Lines in random chunkings: as str.split would cut them.
    found = [
        (codecs.decode(d, enc), codecs.decode(t, enc))
        for d, t in lines_of(data, chunks[0], newline)
    ]
    if newline == "\r\n":
        parts = text.split("\r\n")
        expect = [(p, "\r\n") for p in parts[:-1]]
    else:
        parts = text.split("\n")
        expect = []
        for p in parts[:-1]:
            if newline is None and p.endswith("\r"):
                expect.append((p[:-1], "\r\n"))
            else:
                expect.append((p, "\n"))
    assert found == expect


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=40),
    errors=st.sampled_from(["replace", "surrogateescape", "ignore", "backslashreplace"]),
    enc=st.sampled_from(["utf-8", "gb18030", "shift_jis", "cp1252", "ascii"]),
    n=st.integers(0, 45),
)
def test_model_random_bytes(data: bytes, errors: str, enc: str, n: int) -> None:
    """Any bytes, any handler: char by char, and n-character prefixes, agree with decode."""
    codec = Codec(enc, errors)
    buf = bytearray(data)
    whole = data.decode(enc, errors)
    pos = 0
    got = []
    while (r := codec.char_at(buf, pos, len(buf), final=True)) is not None:
        got.append(r[0])
        pos += r[1]
    assert pos == len(data)
    assert "".join(got) == whole
    text, used = codec.decode_some(buf, 0, len(buf))
    assert whole.startswith(text)
    size = codec.size_of(buf, 0, text, used, n)
    head = data[:size].decode(enc, errors)
    if errors != "backslashreplace" or enc in ("utf-8", "cp1252", "ascii"):
        # (A multibyte codec may cut an invalid sequence differently at the end of a prefix:
        # "\\x80\\x30" for b"\x80\x30" alone, "\\x80" then "0" when more follows.  Both are
        # the bytes; only backslashreplace shows the difference.)
        assert whole.startswith(head)
    assert len(head) <= max(n, 4) * (2 if errors == "backslashreplace" else 1)
    if errors == "surrogateescape" and enc == "utf-8":
        assert whole.encode(enc, errors) == data  # arbitrary bytes round-trip

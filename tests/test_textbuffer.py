"""The text input buffer (``_textbuffer``) and ``read_until``'s buffer method, without sockets.

Every scenario fed whole, byte at a time and with trailing data; after a failure the buffer
still holds the bytes.  A hypothesis model drives random UTF-8 lines with random LF/CRLF
endings in random chunkings through a random mix of every character verb, line kind,
``read_until`` and byte reads: what was consumed, plus what is left, is what was fed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockstream._buffer import BYTES_LINE_NL, STR_LINE, STR_LINE_NL, InputBuffer
from sockstream._errors import LineTooLongError
from sockstream._text import Codec
from sockstream._textbuffer import TextInputBuffer, retype

# Every test over both buffers: the compiled twin and the pure classes (conftest).
pytestmark = pytest.mark.usefixtures("buffer_impl")


def tb(
    enc: str = "utf-8",
    newline: str | None = "\n",
    errors: str = "strict",
    mll: int | None = None,
) -> TextInputBuffer:
    return TextInputBuffer(Codec(enc, errors), newline, max_line=mll)


def rest_of(ib: InputBuffer) -> bytes:
    """What the buffer holds, not consumed (settled first)."""
    ib.settle()
    return ib.take(1 << 30)


def test_chars_byte_at_a_time() -> None:
    ib = tb()
    got = []
    for b in "a😀é".encode():
        ib.feed(bytes([b]))
        c = ib.maybe_take_char()
        if c is not None:
            got.append(c)
    assert got == ["a", "😀", "é"]
    assert ib.maybe_take_char() is None


def test_unread_multibyte() -> None:
    ib = tb()
    ib.feed("😀x".encode())
    assert ib.maybe_take_char() == "😀"
    assert ib.unread_char("😀")
    assert ib.take(4) == "😀".encode()
    assert not ib.unread_char("é")  # not what was just read: nothing changes
    assert rest_of(ib) == b"x"


def test_unread_after_compaction() -> None:
    ib = tb()
    ib.feed(b"z" * 65530 + "😀".encode())
    ib.take(65530)
    assert ib.maybe_take_char() == "😀"
    ib.writable(60000).release()  # compacts: the character's bytes are kept
    assert ib.unread_char("😀")
    assert ib.take(4) == "😀".encode()


def test_strict_error_consumes_nothing() -> None:
    ib = tb()
    ib.feed(b"ab\xffcd\n")
    assert ib.maybe_take_char() == "a"
    assert ib.maybe_take_char() == "b"
    with pytest.raises(UnicodeDecodeError):
        ib.maybe_take_char()
    with pytest.raises(UnicodeDecodeError):
        ib.maybe_take_line(STR_LINE)
    with pytest.raises(UnicodeDecodeError):
        ib.maybe_take_until(b"\n", True)
    assert ib.take(1) == b"\xff"
    assert ib.maybe_take_line(STR_LINE) == ("cd", False)


@pytest.mark.parametrize(
    ("nl", "expect"),
    [
        ("\n", [("a\r", False), ("b", False), ("c\r", False)]),
        ("\r\n", [("a", False), ("b\nc", False)]),
        (None, [("a", False), ("b", False), ("c", False)]),
    ],
)
@pytest.mark.parametrize("chunk", [1, 2, 100])
def test_line_modes(nl: str | None, expect: list[tuple[str, bool]], chunk: int) -> None:
    ib = tb(newline=nl)
    data = b"a\r\nb\nc\r\nrest"
    got = []
    for i in range(0, len(data), chunk):
        ib.feed(data[i : i + chunk])
        while (line := ib.maybe_take_line(STR_LINE)) is not None:
            got.append(line)
    assert got == expect
    assert ib.take_rest(True, True) == "rest"


def test_batches_crlf_and_settle() -> None:
    ib = tb(newline="\r\n")
    lines = [f"lïne {i}" for i in range(200)]
    ib.feed("".join(line + "\r\n" for line in lines).encode())
    got = [ib.maybe_take_line(STR_LINE)[0] for _ in range(100)]
    assert got == lines[:100]
    assert ib.take(1) == b"l"  # settles the batch: exactly after the 100th line
    assert ib.maybe_take_line(STR_LINE_NL) == "ïne 100\r\n"
    rest = []
    while (line := ib.maybe_take_line(BYTES_LINE_NL)) is not None:
        rest.append(line)
    assert rest == [(line + "\r\n").encode() for line in lines[101:]]


def test_lenient_batches() -> None:
    ib = tb(newline=None)
    data = "".join(f"é{i}" + ("\r\n" if i % 2 else "\n") for i in range(100))
    ib.feed(data.encode())
    got = []
    while (line := ib.maybe_take_line(STR_LINE)) is not None:
        got.append(line[0])
    assert got == [f"é{i}" for i in range(100)]
    ib.feed(data.encode())
    kept = []
    while (line := ib.maybe_take_line(STR_LINE_NL)) is not None:
        kept.append(line)
    assert "".join(kept) == data  # with the terminator as received


def test_max_line_length_crlf() -> None:
    ib = tb(newline="\r\n", mll=3)
    ib.feed(b"abc\r")  # 3 bytes of data and perhaps the first half of CRLF: not too long
    assert ib.maybe_take_line(STR_LINE) is None
    ib.feed(b"\n")
    assert ib.maybe_take_line(STR_LINE) == ("abc", False)
    ib.feed(b"abcd")
    with pytest.raises(LineTooLongError):
        ib.maybe_take_line(STR_LINE)
    assert rest_of(ib) == b"abcd"


@pytest.mark.parametrize("make", [InputBuffer, tb], ids=["plain", "text"])
def test_until_split_limit_and_rest(make: Callable[[], InputBuffer]) -> None:
    ib = make()
    data = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"
    got = None
    for j in range(len(data)):
        ib.feed(data[j : j + 1])
        got = ib.maybe_take_until(b"\r\n\r\n", False)
        if got is not None:
            ib.feed(data[j + 1 :])
            break
    assert got == b"GET / HTTP/1.1\r\nHost: x"
    ib.feed(b"\r\n\r")
    assert ib.maybe_take_until(b"\r\n\r\n", True, 5) is None  # maybe a delimiter: not too long
    ib.feed(b"xx")
    with pytest.raises(LineTooLongError):
        ib.maybe_take_until(b"\r\n\r\n", True, 5)
    assert rest_of(ib) == b"body\r\n\rxx"


@pytest.mark.parametrize(
    "make", [InputBuffer, tb, lambda: tb("latin-1", "\r\n")], ids=["plain", "utf-8", "crlf"]
)
def test_until_batches_then_mixed(make: Callable[[], InputBuffer]) -> None:
    ib = make()
    blocks = [b"H%d: v\r\nX: y" % i for i in range(300)]
    ib.feed(b"".join(b + b"\r\n\r\n" for b in blocks))
    got = [ib.maybe_take_until(b"\r\n\r\n", False) for _ in range(150)]
    assert got == blocks[:150]
    assert ib.take(2) == b"H1"  # settles: exactly after the 150th delimiter
    assert ib.maybe_take_until(b"\r\n\r\n", True) == blocks[150][2:].decode()
    assert ib.maybe_take_line(STR_LINE_NL) == "H151: v\r\n"
    rest = []
    while (d := ib.maybe_take_until(b"\r\n\r\n", True)) is not None:
        rest.append(d)
    assert rest == ["X: y"] + [b.decode() for b in blocks[152:]]
    ib.feed(b"aa\r\n\r\n\r\n")  # a delimiter that overlaps itself: cut as find would
    assert ib.maybe_take_until(b"\r\n\r\n", False) == b"aa"
    assert ib.maybe_take_until(b"\r\n\r\n", False) is None
    assert rest_of(ib) == b"\r\n"


def test_counting_characters() -> None:
    ib = tb()
    ib.feed("aé😀b".encode())
    assert ib.maybe_take_text(5) is None
    assert ib.maybe_take_text(3) == "aé😀"
    ib.feed("ü".encode()[:1])
    assert ib.take_text(10) == "b"
    assert ib.take_text(10) == ""
    assert not ib.has_char()
    ib.feed("ü".encode()[1:])
    assert ib.has_char()
    assert ib.take_text(-1) == "ü"


def test_retype_keeps_the_bytes() -> None:
    ib = InputBuffer()
    ib.feed("é\r\nz".encode())
    t = retype(ib, Codec("utf-8"), "\r\n")
    assert isinstance(t, TextInputBuffer)
    assert t.maybe_take_line(STR_LINE) == ("é", False)
    p = retype(t, Codec(), "\n")
    assert type(p) is InputBuffer
    assert p.maybe_take_char() == "z"


# ---- the model ---------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=12)
OPS = ["char", "peek", "unread", "line", "lineNL", "blineNL", "byte", "until", "text3", "text"]


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.tuples(texts, st.sampled_from(["\n", "\r\n"])), max_size=12),
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=8),
    ops=st.lists(st.sampled_from(OPS), min_size=1, max_size=40),
    newline=st.sampled_from(["\n", "\r\n", None]),
)
def test_model(
    lines: list[tuple[str, str]], chunks: list[int], ops: list[str], newline: str | None
) -> None:
    data = "".join(a + e for a, e in lines).encode()
    ib = tb(newline=newline)
    out = bytearray()  # what was consumed
    fed = k = 0
    last: str | None = None
    for step in range(400):
        op = ops[step % len(ops)]
        if fed < len(data) and step % 2 == 0:
            n = chunks[k % len(chunks)]
            k += 1
            ib.feed(data[fed : fed + n])
            fed += n
        try:
            last = _one(ib, op, fed >= len(data), newline, out, last, data)
        except UnicodeDecodeError:
            # A byte read split a character: nothing was consumed; read a byte and go on.
            out += ib.take(1)
            last = None
    assert bytes(out) + rest_of(ib) + data[fed:] == data


def _one(
    ib: TextInputBuffer,
    op: str,
    final: bool,
    newline: str | None,
    out: bytearray,
    last: str | None,
    data: bytes,
) -> str | None:
    here = data[len(out) :]
    if op == "char":
        c = ib.maybe_take_char(final)
        if c is not None:
            out += c.encode()
            return c
    elif op == "peek":
        c = ib.peek_char(final)
        assert c is None or here.startswith(c.encode())
        return last
    elif op == "unread" and last is not None:
        if ib.unread_char(last):
            del out[-len(last.encode()) :]
    elif op in ("line", "lineNL", "blineNL"):
        kind = {"line": STR_LINE, "lineNL": STR_LINE_NL, "blineNL": BYTES_LINE_NL}[op]
        got = ib.maybe_take_line(kind)
        if got is not None:
            if kind == STR_LINE:
                line = got[0].encode()
                assert here.startswith(line)
                after = here[len(line) :]
                crlf = newline == "\r\n" or (newline is None and after.startswith(b"\r\n"))
                term = b"\r\n" if crlf else b"\n"
                assert after.startswith(term)
                out += line + term
            else:
                out += got.encode() if isinstance(got, str) else got
    elif op == "byte":
        out += ib.take(1)
    elif op == "until":
        d = ib.maybe_take_until(b"\r\n", True, None)
        if d is not None:
            out += d.encode() + b"\r\n"
    elif op == "text3":
        t = ib.maybe_take_text(3, final)
        if t is not None:
            out += t.encode()
    else:
        out += ib.take_text(2).encode()
    return None

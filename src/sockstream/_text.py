"""Text: encodings, line terminators and delimiters.  Pure (no sockets, no clocks).

Operations
    The input stays one byte buffer (``_buffer.InputBuffer``); characters are decoded from it on
    demand, by the functions here, which take ``buf``, ``start`` and ``end`` and never keep
    bytes of their own.  So a byte read after a character read sees exactly the next byte, and
    a character whose bytes are still arriving is simply not there yet ("need more").

The rule that makes this simple (API.md)
    An accepted encoding writes ``"\\n"`` and ``"\\r"`` as the single bytes 10 and 13, and those
    bytes are never part of another character's bytes.  Then a line terminator or a delimiter
    is found in the *bytes* (``bytearray.find``, in C) whatever the encoding, the bytes before
    it are whole characters, and decoding them is one C call.  UTF-16/32 (where ``"\\n"`` is two
    or four bytes) and stateful codecs (UTF-7, ISO-2022, HZ: the meaning of a byte depends on
    what came before, so decoding cannot start anywhere) break the rule and are refused.

Goals
    * Latin-1, the default, costs what it did: a byte is a character, ``n`` characters are
      ``n`` bytes, and the stream keeps its own fast paths for it.
    * UTF-8 and ASCII have fast paths too (the UTF-8 lead byte gives a character's length;
      ``codecs.utf_8_decode`` decodes a window and says how many bytes it used).
    * Everything else goes through the codec's incremental decoder, which tells a character
      still incomplete ("need more") from bytes that are invalid (an error, or the error
      handler's replacement).

Characters and error handlers
    One "character" of the character verbs is what the bytes of one character decode to: one
    code point normally; ``""`` for bytes that ``errors="ignore"`` drops (the verbs go on to the
    next character); the handler's whole replacement for an invalid sequence otherwise (one
    ``"\\ufffd"`` with ``"replace"``, one lone surrogate per byte with ``"surrogateescape"``, the
    escape ``"\\\\xNN"`` with ``"backslashreplace"``).  With ``"strict"`` an invalid sequence raises
    ``UnicodeDecodeError`` and nothing is consumed.
"""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable
from typing import Any, Final, final

from ._elements import CHARS

#: Codec kinds, each with its own fast path.
LATIN1: Final = 0
ASCII: Final = 1
UTF8: Final = 2
#: One byte per character, but not Latin-1 (cp1252, koi8-r, mac-roman, ...).
SINGLE: Final = 3
#: Multibyte codecs (shift_jis, gb18030, euc-kr, big5, ...).
MULTI: Final = 4

_KNOWN: Final = {"iso8859-1": LATIN1, "latin-1": LATIN1, "ascii": ASCII, "utf-8": UTF8}
#: Stateful codecs by their canonical names' prefixes: the meaning of a byte depends on shift
#: sequences met before it, so decoding cannot begin at an arbitrary character.
_STATEFUL: Final = ("utf-7", "utf_7", "iso2022", "hz")
#: The longest character of any accepted codec, in bytes (GB 18030 and UTF-8 have 4).
MAX_CHAR_BYTES: Final = 8

#: UTF-8: the length of a character by its lead byte; 0 for a byte that cannot start one.
_UTF8_LEN: Final = bytes(
    1
    if b < 0x80
    else 2
    if 0xC2 <= b < 0xE0
    else 3
    if 0xE0 <= b < 0xF0
    else 4
    if 0xF0 <= b < 0xF5
    else 0
    for b in range(256)
)

#: Decoding error handlers under which decoding then encoding with the same handler gives back
#: exactly the bytes (so ``len(text[:n].encode())`` is the size of ``n`` characters).
_ROUND_TRIP: Final = ("strict", "surrogateescape", "surrogatepass")

NEWLINES: Final = ("\n", "\r\n", None)

_RULE: Final = (
    "encoding must be a text codec in which '\\n' and '\\r' are the single bytes 10 and 13 and "
    "never part of another character's bytes, and which keeps no shift state (not UTF-16, "
    "UTF-32, UTF-7, ISO-2022 or HZ)"
)


def check_newline(value: object) -> str | None:
    """The line terminator: ``"\\n"``, ``"\\r\\n"`` or ``None`` (LF, or CRLF, when reading)."""
    if value is None or (type(value) is str and value in ("\n", "\r\n")):
        return value
    raise ValueError(f"newline must be '\\n', '\\r\\n' or None, not {value!r}")


def check_errors(value: object) -> str:
    """The name of a registered error handler (``"strict"``, ``"replace"``, ...)."""
    if not isinstance(value, str):
        raise TypeError(f"errors must be a str naming an error handler, not {value!r}")
    try:
        codecs.lookup_error(value)
    except LookupError:
        raise ValueError(
            "errors must name a registered error handler ('strict', 'replace', 'ignore', "
            f"'surrogateescape', 'backslashreplace', ...), not {value!r}"
        ) from None
    return value


def check_encoding(value: object) -> str:
    """``value`` if it names an encoding that the stream can decode on demand (see the rule)."""
    if not isinstance(value, str):
        raise TypeError(f"encoding must be a str naming a codec, not {value!r}")
    _codec_kind(value)
    return value


@functools.lru_cache(maxsize=64)
def _codec_kind(name: str) -> tuple[str, int]:
    """(canonical name, kind) of an acceptable codec; ``ValueError`` naming the rule otherwise."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(f"encoding must name a known Python codec, not {name!r}") from None
    canonical = info.name
    kind = _KNOWN.get(canonical)
    if kind is not None:
        return canonical, kind
    if not getattr(info, "_is_text_encoding", True) or canonical.startswith(_STATEFUL):
        raise ValueError(f"{_RULE}, not {name!r}")
    try:
        ok = (
            "\n".encode(canonical) == b"\n"
            and "\r".encode(canonical) == b"\r"
            and b"\r\n".decode(canonical) == "\r\n"
        )
        decoder = codecs.getincrementaldecoder(canonical)("strict")
        ok = ok and decoder.getstate() == (b"", 0)
    except (UnicodeError, LookupError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ValueError(f"{_RULE}, not {name!r}")
    leads = _pending_leads(canonical)
    if any(_newline_continues(canonical, lead) for lead in leads):
        raise ValueError(f"{_RULE}, not {name!r}")
    return canonical, MULTI if leads else SINGLE


def _pending(canonical: str, data: bytes) -> bool:
    """True if ``data`` is the valid beginning of a character, not a whole one."""
    decoder = codecs.getincrementaldecoder(canonical)("strict")
    try:
        return decoder.decode(data) == "" and decoder.getstate()[0] != b""
    except UnicodeDecodeError:
        return False


def _pending_leads(canonical: str) -> list[bytes]:
    """The bytes that start a character of more than one byte."""
    return [bytes([b]) for b in range(256) if _pending(canonical, bytes([b]))]


def _newline_continues(canonical: str, prefix: bytes, depth: int = 1) -> bool:
    """True if byte 10 or 13 can continue the incomplete character ``prefix``.

    Probes ``prefix + b"\\n"`` (and ``b"\\r"``); then one level deeper along the first byte
    that keeps the character incomplete, up to the longest character.
    """
    for t in (b"\n", b"\r"):
        decoder = codecs.getincrementaldecoder(canonical)("strict")
        try:
            out = decoder.decode(prefix + t)
        except UnicodeDecodeError:
            continue  # the codec refuses it: the newline stays a newline
        if out.endswith(t.decode("ascii")) and not decoder.getstate()[0]:
            continue
        if out or _completes(canonical, prefix + t):
            return True
    if depth >= 3:
        return False
    for b in range(256):
        longer = prefix + bytes([b])
        if _pending(canonical, longer):
            return _newline_continues(canonical, longer, depth + 1)
    return False


def _completes(canonical: str, pending: bytes) -> bool:
    """True if one more byte makes the incomplete ``pending`` a valid character."""
    for b in range(256):
        try:
            if str(pending + bytes([b]), canonical, "strict"):
                return True
        except UnicodeDecodeError:  # noqa: PERF203  (once per codec, cached)
            continue
    return False


@functools.lru_cache(maxsize=64)
def _ascii_safe(canonical: str) -> bool:
    try:
        return bytes(range(128)).decode(canonical) == "".join(map(chr, range(128)))
    except UnicodeDecodeError:
        return False


@final
class Codec:
    """How a stream turns bytes into characters and back: an encoding and an error handler.

    Immutable; the stream replaces its ``Codec`` when ``encoding`` or ``errors`` is set.
    """

    __slots__ = (
        "_decoder",
        "ascii_safe",
        "canonical",
        "encoding",
        "errors",
        "exact",
        "kind",
        "latin1",
        "one_to_one",
    )

    def __init__(self, encoding: str = "latin-1", errors: str = "strict") -> None:
        check_encoding(encoding)
        check_errors(errors)
        self.encoding = encoding
        self.errors = errors
        self.canonical, self.kind = _codec_kind(encoding)
        #: Latin-1: a byte is a character whatever ``errors`` says (it never fails to decode).
        self.latin1 = self.kind == LATIN1
        #: ``n`` characters are always ``n`` bytes.
        self.one_to_one = self.latin1 or (
            self.kind in (ASCII, SINGLE) and errors in ("strict", "replace", "surrogateescape")
        )
        #: ``text[:n]`` of a decoded window is exactly its first ``n`` characters' decoding.
        self.exact = self.one_to_one or (self.kind == UTF8 and errors in _ROUND_TRIP)
        #: The characters below 128 are their own single byte.
        self.ascii_safe = _ascii_safe(self.canonical)
        self._decoder: Callable[[str], Any] = codecs.getincrementaldecoder(self.canonical)

    def __repr__(self) -> str:
        return f"Codec({self.encoding!r}, {self.errors!r})"

    # ---- encoding ------------------------------------------------------------------------

    def encode(self, text: str) -> bytes:
        """``text`` as bytes; a character that cannot be encoded raises ``UnicodeEncodeError``
        (a ``ValueError``) whose message says that nothing was written."""
        try:
            return text.encode(self.canonical, self.errors)
        except UnicodeEncodeError as exc:
            raise UnicodeEncodeError(
                exc.encoding,
                exc.object,
                exc.start,
                exc.end,
                f"{exc.reason} (character {exc.object[exc.start]!r}, code "
                f"{ord(exc.object[exc.start])}); nothing was written",
            ) from None

    # ---- decoding ------------------------------------------------------------------------

    def decode(self, data: bytes | bytearray | memoryview) -> str:
        """Whole bytes as text (an incomplete character at the end is an error, or replaced)."""
        return str(data, self.canonical, self.errors)

    def decode_some(self, buf: bytearray, start: int, end: int) -> tuple[str, int]:
        """The whole characters at the front of ``buf[start:end]``: ``(text, bytes used)``.

        An incomplete character at the end is left (not counted).  With ``errors="strict"``
        an invalid sequence raises ``UnicodeDecodeError`` (positions relative to ``start``),
        unless whole characters come before it: then those are returned and the error is
        raised by the next call.
        """
        if self.one_to_one:
            return str(buf[start:end], self.canonical, self.errors), end - start
        data = bytes(buf[start:end])
        try:
            return self._decode_prefix(data, False)
        except UnicodeDecodeError as exc:
            if exc.start == 0:
                raise
            return self._decode_prefix(data[: exc.start], False)

    def _decode_prefix(self, data: bytes, final: bool) -> tuple[str, int]:
        if self.kind == UTF8:
            return codecs.utf_8_decode(data, self.errors, final)
        decoder = self._decoder(self.errors)
        text = decoder.decode(data, final)
        return text, len(data) - len(decoder.getstate()[0])

    def size_of(self, buf: bytearray, start: int, text: str, used: int, n: int) -> int:
        """How many bytes from ``buf[start]`` the first ``n`` characters of ``text`` take.

        ``text, used`` is what ``decode_some(buf, start, ...)`` returned.  Where an error
        handler's replacement is several characters (``backslashreplace``) and straddles ``n``,
        the answer stops before that replacement (or takes it whole if it comes first).
        """
        if n >= len(text):
            return used
        if n <= 0:
            return 0
        if self.one_to_one:
            return n
        if self.exact:
            head = text[:n]
            if head.isascii():
                return n
            return len(head.encode("utf-8", self.errors))
        # The general case: the shortest prefix of bytes that decodes to n characters or more,
        # by bisection (each step one C call)...
        lo, hi = 1, used
        while lo < hi:
            mid = (lo + hi) // 2
            got, _ = self._decode_prefix(bytes(buf[start : start + mid]), False)
            if len(got) >= n:
                hi = mid
            else:
                lo = mid + 1
        got, size = self._decode_prefix(bytes(buf[start : start + lo]), False)
        if len(got) == n:
            return size
        # ... and where the last byte settled more than one character (bytes held back as
        # possibly incomplete, then found invalid), the last few characters one at a time.
        got, size = self._decode_prefix(bytes(buf[start : start + lo - 1]), False)
        count = len(got)
        pos = start + size
        stop = start + used
        while count < n and pos < stop:
            unit = self.char_at(buf, pos, stop, final=False)
            if unit is None or (count and count + len(unit[0]) > n):
                break
            count += len(unit[0])
            pos += unit[1]
        return pos - start

    def char_at(self, buf: bytearray, pos: int, end: int, final: bool) -> tuple[str, int] | None:
        """The next character at ``buf[pos:end]`` and its size in bytes; None if incomplete.

        ``final``: no more bytes will come (end-of-file): an incomplete character is then
        invalid, as are bytes that cannot be decoded: ``UnicodeDecodeError`` with
        ``errors="strict"`` (nothing is consumed: the caller moves nothing), else the error
        handler's replacement.  Bytes that the handler drops come back as ``("", size)``.
        """
        if pos >= end:
            return None
        lead = buf[pos]
        kind = self.kind
        if kind == LATIN1:
            return CHARS[lead], 1
        if kind == UTF8:
            if lead < 0x80:
                return CHARS[lead], 1
            size = _UTF8_LEN[lead]
            if size and pos + size <= end:
                try:
                    return str(buf[pos : pos + size], "utf-8"), size
                except UnicodeDecodeError:
                    pass  # invalid: the general path below says how much is bad
        elif kind == ASCII:
            if lead < 0x80:
                return CHARS[lead], 1
            return str(buf[pos : pos + 1], "ascii", self.errors), 1
        elif kind == SINGLE:
            return str(buf[pos : pos + 1], self.canonical, self.errors), 1
        data = bytes(buf[pos : min(end, pos + MAX_CHAR_BYTES)])
        try:
            text, used = self._strict_prefix(data)
        except UnicodeDecodeError as exc:
            if exc.start > 0:  # whole characters first: the first of them
                data = data[: exc.start]
                text, used = self._strict_prefix(data)
            else:
                bad = data[: max(exc.end, 1)]
                if self.errors == "strict":
                    raise
                return str(bad, self.canonical, self.errors), len(bad)
        if text:
            return self._first_char(data[:used], text, used)
        if not final:
            return None  # a character still arriving
        if self.errors == "strict":
            str(data, self.canonical, "strict")  # raises for the incomplete character
        return str(data, self.canonical, self.errors), len(data)

    def _strict_prefix(self, data: bytes) -> tuple[str, int]:
        if self.kind == UTF8:
            return codecs.utf_8_decode(data, "strict", False)
        decoder = self._decoder("strict")
        text = decoder.decode(data, False)
        return text, len(data) - len(decoder.getstate()[0])

    def _first_char(self, data: bytes, text: str, used: int) -> tuple[str, int]:
        """The first character of ``text``, the strict decoding of ``data``, and its size."""
        if len(text) == 1:
            return text, used
        if self.kind == UTF8:
            return text[0], len(text[0].encode("utf-8"))
        for size in range(1, used):
            try:
                if len(str(data[:size], self.canonical, "strict")) == 1:
                    return text[0], size
            except UnicodeDecodeError:  # noqa: PERF203  (at most a few bytes)
                continue
        return text[0], used  # not reached for a sane codec


LATIN_1: Final = Codec()


# ---- line terminators and delimiters --------------------------------------------------------


def terminator(newline: str | None) -> bytes:
    """What ``write_line`` sends after the line for a ``newline`` setting."""
    return b"\n" if newline == "\n" else b"\r\n"


def find_line_end(
    buf: bytearray, pos: int, scan: int, end: int, newline: str | None
) -> tuple[int, int, int]:
    """Look for the next line terminator in ``buf[pos:end]``, resuming at ``scan``.

    Returns ``(data_end, line_end, scan)``: the line's data is ``buf[pos:data_end]``, its
    terminator ``buf[data_end:line_end]``; ``(-1, -1, scan)`` when no whole terminator is
    buffered, with ``scan`` where the next search may resume (a CR at the very end may be the
    first half of a CRLF, so the search resumes on it).
    """
    start = scan if scan > pos else pos
    if newline == "\r\n":
        i = buf.find(b"\r\n", start, end)
        if i < 0:
            return -1, -1, end - 1 if end - 1 > pos else pos
        return i, i + 2, i
    i = buf.find(10, start, end)
    if i < 0:
        return -1, -1, end
    if newline is None and i > pos and buf[i - 1] == 13:
        return i - 1, i + 1, i
    return i, i + 1, i


def find_delimiter(
    buf: bytearray, pos: int, scan: int, end: int, delimiter: bytes
) -> tuple[int, int]:
    """Index of ``delimiter`` in ``buf[pos:end]`` resuming at ``scan``, or -1; and the next scan.

    A delimiter split across two fills is found: the search resumes ``len(delimiter) - 1``
    bytes before the end.
    """
    start = scan if scan > pos else pos
    i = buf.find(delimiter, start, end)
    if i >= 0:
        return i, i
    resume = end - len(delimiter) + 1
    return -1, resume if resume > pos else pos


def check_max_length(value: object) -> int:
    """``read_until``'s ``max_length``: a positive int (bytes)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_length must be None or a positive int, not {value!r}")
    return value


def as_delimiter(delimiter: object, codec: Codec) -> bytes:
    """``read_until``'s delimiter as bytes: a str is encoded with the stream's codec."""
    if isinstance(delimiter, str):
        data = codec.encode(delimiter)
    else:
        try:
            data = bytes(memoryview(delimiter))  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"delimiter must be a str or a bytes-like object, not {delimiter!r}"
            ) from None
    if not data:
        raise ValueError(f"delimiter must not be empty, not {delimiter!r}")
    return data


__all__ = [
    "LATIN_1",
    "Codec",
    "as_delimiter",
    "check_encoding",
    "check_errors",
    "check_max_length",
    "check_newline",
    "find_delimiter",
    "find_line_end",
    "terminator",
]

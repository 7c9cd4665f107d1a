"""The output buffer: one ``bytearray`` that the writing verbs append to and the flusher swaps.

The hottest verbs
    ``write_char``, ``write_string``, ``write_line``, ``write_byte``, ``write_sequence`` and
    ``write`` are methods of this buffer that the stream binds as its own (as the input
    buffer's reading verbs are): each serves the common case (an argument of the usual shape,
    the buffer open) with one short call, and hands everything else to the stream's slow path
    of the same verb (``_write_*_slow``), which checks the state first and then the argument,
    exactly as before.  A fast path that hands over has written nothing, so the slow path
    starts from scratch.  The stream is referred to weakly, so the buffer makes no cycle.

Refusal without a check
    The fast paths check no state.  A side that is not OPEN (closed, shut down, broken,
    input-only) holds ``REFUSED`` instead of a live buffer: a bytearray of
    ``OUTPUT_BUFFER_SIZE`` bytes pinned by a memoryview, so that any append to it raises
    ``BufferError`` (the fast path then hands over, and the slow path raises the side's own
    error) and an empty one finds it full and goes to the flush, which refuses.  ``REFUSED``
    is never sent: the flusher, ``clear_output`` and the put-back of an unsent rest leave it
    in place.  So a verb bound before the state changed (``write = stream.write_string``)
    refuses afterwards, as a fresh lookup does.

Threads
    Each fast path encodes first, then loads ``buf`` and appends with no call between (a
    flush in another thread swaps ``buf`` whole: the append lands before the swap and goes
    with that flush, or after it).  ``_speedups.OutputBufferBase`` is the compiled twin
    (``_impl`` picks); what it does not serve it hands to these methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ._buffer import OUTPUT_BUFFER_SIZE

#: The buffer of a side that is not OPEN: full, and pinned, so that nothing can be added.
REFUSED: Final = bytearray(OUTPUT_BUFFER_SIZE)
_PIN: Final = memoryview(REFUSED)


def _gone() -> Any:
    raise ValueError("I/O operation on a closed stream")


class OutputBuffer:
    """The output of one stream and its hot writing verbs.

    ``buf`` is replaced whole by the flusher (never resized by it); ``enc`` is the encoding
    that ``str.encode`` is asked first (strict: where it succeeds every error handler gives the
    same bytes), ``char_limit`` the characters below which a character is its own byte, ``eol``
    what ends a line, ``lo``..``hi`` the ints ``write_byte`` takes (an empty range on
    base-char).  ``_owner`` returns the stream (or raises, once it is gone).
    """

    __slots__ = ("_owner", "buf", "char_limit", "enc", "eol", "hi", "kind", "lo")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.enc = "latin-1"
        self.kind = 0  # the codec's kind (_text.LATIN1, ...): what the C twin encodes itself
        self.char_limit = 256
        self.eol = b"\n"
        self.lo = 0
        self.hi = -1
        self._owner: Callable[[], Any] = _gone

    def serve(self, owner: Callable[[], Any]) -> None:
        """Hand what the fast paths do not serve to ``owner()`` (a weak reference's call)."""

        def stream() -> Any:
            s = owner()
            if s is None:  # pragma: no cover - the buffer outlived its stream
                _gone()
            return s

        self._owner = stream

    def _full(self) -> None:
        self._owner()._flush_out()

    def write_char(self, char: str) -> None:
        """Write one character."""
        if type(char) is str and len(char) == 1:
            code = ord(char)
            if code < self.char_limit:
                buf = self.buf
                try:
                    buf.append(code)
                except BufferError:
                    return self._owner()._write_char_slow(char)  # type: ignore[no-any-return]
                if len(buf) >= OUTPUT_BUFFER_SIZE:
                    self._full()
                return None
        return self._owner()._write_char_slow(char)  # type: ignore[no-any-return]

    def write_string(self, string: str, start: int = 0, end: int | None = None) -> None:
        """Write ``string[start:end]``."""
        if start or end is not None:
            return self._owner()._write_string_slow(string, start, end)  # type: ignore[no-any-return]
        try:
            data = string.encode(self.enc)
            buf = self.buf  # (loaded after the encoding's call: see Threads)
            buf += data
        except (UnicodeEncodeError, AttributeError, BufferError):
            return self._owner()._write_string_slow(string, start, end)  # type: ignore[no-any-return]
        if len(buf) >= OUTPUT_BUFFER_SIZE:
            self._full()
        return None

    def write_line(self, string: str) -> None:
        """Write ``string`` and a newline."""
        try:
            data = string.encode(self.enc)
            buf = self.buf
            buf += data
            buf += self.eol  # (if ``data`` went in, ``buf`` is live: this cannot fail)
        except (UnicodeEncodeError, AttributeError, BufferError):
            return self._owner()._write_line_slow(string)  # type: ignore[no-any-return]
        if len(buf) >= OUTPUT_BUFFER_SIZE:
            self._full()
        return None

    def write_byte(self, byte: int) -> None:
        """Write one byte given as an int of the element type."""
        if type(byte) is int and self.lo <= byte <= self.hi:
            buf = self.buf
            try:
                buf.append(byte & 0xFF)
            except BufferError:
                return self._owner()._write_byte_slow(byte)  # type: ignore[no-any-return]
            if len(buf) >= OUTPUT_BUFFER_SIZE:
                self._full()
            return None
        return self._owner()._write_byte_slow(byte)  # type: ignore[no-any-return]

    def write_sequence(self, seq: Any, start: int = 0, end: int | None = None) -> None:
        """Write ``seq[start:end]``."""
        cls = type(seq)
        if (cls is bytes or cls is bytearray) and not start and end is None:
            buf = self.buf
            try:
                buf += seq  # the common case, without a memoryview
            except BufferError:
                return self._owner()._write_sequence_slow(seq, start, end)  # type: ignore[no-any-return]
            if len(buf) >= OUTPUT_BUFFER_SIZE:
                self._full()
            return None
        return self._owner()._write_sequence_slow(seq, start, end)  # type: ignore[no-any-return]

    def write(self, data: Any) -> int:
        """Write a str or bytes-like object; return the number of characters or bytes."""
        cls = type(data)
        if cls is bytes or cls is bytearray:
            buf = self.buf
            try:
                buf += data
            except BufferError:
                return self._owner()._write_slow(data)  # type: ignore[no-any-return]
            if len(buf) >= OUTPUT_BUFFER_SIZE:
                self._full()
            return len(data)
        if cls is str:
            try:
                encoded = data.encode(self.enc)
                buf = self.buf
                buf += encoded
            except (UnicodeEncodeError, BufferError):
                return self._owner()._write_slow(data)  # type: ignore[no-any-return]
            if len(buf) >= OUTPUT_BUFFER_SIZE:
                self._full()
            return len(data)
        return self._owner()._write_slow(data)  # type: ignore[no-any-return]

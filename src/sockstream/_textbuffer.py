"""The input buffer of a text stream: an encoding other than Latin-1, or CRLF lines.  Pure.

Operations
    ``TextInputBuffer`` is ``InputBuffer`` with the character and line methods decoding through a
    ``_text.Codec`` and cutting lines at the stream's terminator; the bytes, the batch of lines,
    the compare-and-set commits and the unread history are the base class's.  A stream with the
    defaults (Latin-1, ``"\\n"``) keeps a plain ``InputBuffer``, so it pays nothing for text;
    ``retype`` moves a buffer's state into the other class when a setting changes.

Goals
    * A terminator or delimiter is found in the bytes (the encoding rule of ``_text``), so the
      bytes before it are whole characters, decoded in one call; a window of lines is decoded
      once and split (a batch), as ``makefile`` decodes a chunk at a time.
    * With ``errors="strict"`` a decoding error raises before anything moves: nothing is
      consumed, and the bytes stay readable (as bytes, or after changing ``errors``).
    * A character still arriving is "need more" (None), never an error, until end-of-file.
"""

from __future__ import annotations

import re
from typing import Any, Final

from ._buffer import (
    BYTES_LINE_NL,
    STR_LINE,
    STR_LINE_NL,
    InputBuffer,
)
from ._errors import LineTooLongError
from ._text import MAX_CHAR_BYTES, Codec, find_line_end

#: A lenient line terminator: LF, and a CR right before it (RFC 9112 §2.2).
_CR_LF: Final = re.compile("\r?\n")


def _split_crlf(text: str) -> list[str]:
    """The lines of ``text``, which ends with CRLF, cut at CRLF: ``text[:-2].split("\\r\\n")``,
    faster where CRLF is the only line break in ``text``.

    ``splitlines`` (in C, a third faster than a split at two characters) also breaks at a lone
    CR or LF and at the other breaks of Unicode, all one character long: each would make the
    pieces and their terminators one character shorter than ``text``, so the lengths tell.
    """
    lines = text.splitlines()
    if len("".join(lines)) + 2 * len(lines) == len(text):
        return lines
    return text[:-2].split("\r\n")


def is_plain(codec: Codec, newline: str | None) -> bool:
    """True for the settings a plain ``InputBuffer`` serves (Latin-1 and LF lines)."""
    return codec.latin1 and newline == "\n"


def retype(ib: InputBuffer, codec: Codec, newline: str | None) -> InputBuffer:
    """The buffer to use for these settings: ``ib`` itself, or a new one holding its state.

    Settles first, so no line cut under the old settings is served under the new ones.
    """
    ib.settle()
    if is_plain(codec, newline):
        if type(ib) is InputBuffer:
            return ib
        new = InputBuffer.__new__(InputBuffer)
    else:
        if isinstance(ib, TextInputBuffer):
            ib.set_text(codec, newline)
            return ib
        new = TextInputBuffer.__new__(TextInputBuffer)
    for name in InputBuffer.__slots__:
        object.__setattr__(new, name, getattr(ib, name))
    if isinstance(new, TextInputBuffer):
        new._last = None
        new.set_text(codec, newline)
    return new


class TextInputBuffer(InputBuffer):
    """An ``InputBuffer`` whose characters and lines are decoded with a codec."""

    __slots__ = ("_codec", "_last", "_newline", "_term")

    #: The longest character of any accepted encoding (UTF-8, GB 18030: 4 bytes).
    _HISTORY = 4
    #: Pieces of text are decoded one by one (their bytes are not their characters).
    _splits_text = False

    def __init__(
        self,
        codec: Codec,
        newline: str | None = "\n",
        size: int = 65536,
        max_line: int | None = None,
    ) -> None:
        super().__init__(size, max_line)
        #: (pos after, epoch, size, character) of the last ``maybe_take_char``.
        self._last: tuple[int, int, int, str] | None = None
        self.set_text(codec, newline)

    def set_text(self, codec: Codec, newline: str | None) -> None:
        """Decode with ``codec``, cut lines at ``newline``'s terminator (between operations)."""
        self.settle()
        self._codec = codec
        self._newline = newline
        #: What a line ends with, as searched for in the bytes.
        self._term = b"\r\n" if newline == "\r\n" else b"\n"

    # ---- decoding the rest -----------------------------------------------------------------

    def decode(self, data: bytes | bytearray) -> str:
        """Whole bytes as characters, with the stream's codec."""
        return self._codec.decode(data)

    def take_rest(self, text: bool, final: bool, limit: int = -1) -> Any:
        """What is buffered, as the last piece of input (end-of-file or timeout); None if none.

        ``text``: decoded (``final``: an incomplete character at the end is invalid; else it
        stays buffered).  ``limit >= 0`` takes at most that many elements.
        """
        codec = self._codec
        while True:
            self.settle()
            pos, epoch, end = self._pos, self._epoch, self._end
            if pos >= end:
                return None
            buf = self._buf
            if not text:
                stop = end if limit < 0 else min(end, pos + limit)
                data: Any = bytes(buf[pos:stop])
            else:
                chars, used = codec.decode_some(buf, pos, end)
                stop = pos + used
                if 0 <= limit < len(chars):
                    stop = pos + codec.size_of(buf, pos, chars, used, limit)
                    data = codec.decode(buf[pos:stop])
                elif final and stop < end:
                    data = codec.decode(buf[pos:end])  # the incomplete end: raises, or replaced
                    stop = end
                else:
                    data = chars
                if stop == pos:
                    return None
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = stop
                self._run = 0
                return data

    # ---- the stream's own verbs (see InputBuffer.serve_elements) ------------------------------

    def read_char(self, eof_error: bool = True, eof_value: Any = None) -> Any:
        """``SocketStream.read_char``: a whole buffered character, else the stream's slow path."""
        char = self.maybe_take_char()
        if char is not None:
            return char
        return self._slow_char(eof_error, eof_value)

    # (readline, read_line and read_sequence are the base class's: lines cut at the stream's
    # terminator and decoded come from this class's maybe_take_line and batches.)

    # ---- characters ------------------------------------------------------------------------

    def maybe_take_char(self, final: bool = False) -> str | None:
        """One whole character, or None if none is buffered (or only part of one).

        ``final``: at end-of-file, an incomplete character is invalid (an error, or the error
        handler's replacement).  Bytes the handler drops are skipped.
        """
        codec = self._codec
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch = self._pos, self._epoch
            got = codec.char_at(self._buf, pos, self._end, final)
            if got is None:
                return None
            char, size = got
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = pos + size
                self._run = 0
                if char:
                    self._last = (pos + size, epoch, size, char)
                    return char

    def peek_char(self, final: bool = False) -> str | None:
        """The next whole character, not consumed; None if none is buffered."""
        codec = self._codec
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch = self._pos, self._epoch
            got = codec.char_at(self._buf, pos, self._end, final)
            if got is None:
                return None
            char, size = got
            if char:
                return char
            # Bytes that the handler drops: consume them, then look again.
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = pos + size

    def has_char(self) -> bool:
        """True if a whole character (or an error to report) is buffered."""
        try:
            return self.peek_char() is not None
        except UnicodeDecodeError:
            return True

    def unread_char(self, char: str) -> bool:
        """Put back the bytes of ``char``, the character just read; False if it is not that.

        Its bytes must be the ones just consumed (as the character's encoding, or as the bytes
        the last ``maybe_take_char`` decoded into it, e.g. a replacement character).
        """
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos == self._mark:
            return False
        buf = self._buf
        size = -1
        last = self._last
        if last is not None and last[0] == pos and last[1] == self._epoch and last[3] == char:
            size = last[2]
        else:
            try:
                data = self._codec.encode(char)
            except ValueError:
                return False
            if pos >= len(data) and buf[pos - len(data) : pos] == data:
                size = len(data)
        if size <= 0 or size > pos:
            return False
        # One run: the bytes come back and can be read again, once.
        self._pos = self._scan = self._mark = pos - size
        self._last = None
        return True

    # ---- many characters -----------------------------------------------------------------

    def maybe_take_text(self, n: int, final: bool = False) -> str | None:
        """Exactly ``n`` characters, or None if fewer are buffered (``final``: all there is).

        A strict decoding error before the ``n``-th character raises and consumes nothing.
        """
        codec = self._codec
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch, end = self._pos, self._epoch, self._end
            buf = self._buf
            window = min(end, pos + n * MAX_CHAR_BYTES)
            chars, used = codec.decode_some(buf, pos, window)
            if len(chars) < n and window < end:
                chars, used = codec.decode_some(buf, pos, end)
            if len(chars) >= n:
                size = codec.size_of(buf, pos, chars, used, n)
                out = chars[:n] if codec.exact else codec.decode(buf[pos : pos + size])
            else:
                if pos + used < end:
                    # Whole characters stopped short: an incomplete one (need more), or an
                    # error (raised here, with nothing consumed).
                    codec.char_at(buf, pos + used, end, final)
                if not final:
                    return None
                out = codec.decode(buf[pos:end])
                size = end - pos
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = pos + size
                self._run = 0
                return out

    def take_text(self, n: int) -> str:
        """Up to ``n`` whole characters of what is buffered ("" if not one is whole)."""
        codec = self._codec
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch, end = self._pos, self._epoch, self._end
            buf = self._buf
            window = end if n < 0 else min(end, pos + n * MAX_CHAR_BYTES)
            chars, used = codec.decode_some(buf, pos, window)
            if not chars and window < end:
                chars, used = codec.decode_some(buf, pos, end)
            if not chars and used == 0 and pos < end:
                codec.char_at(buf, pos, end, False)  # raises for bytes that cannot be decoded
            if 0 <= n < len(chars):
                used = codec.size_of(buf, pos, chars, used, n)
                chars = codec.decode(buf[pos : pos + used])
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = pos + used
                self._run = 0
                return chars

    # ---- lines -----------------------------------------------------------------------------

    def _over_limit(self, pos: int, end: int) -> int:
        """The bytes of line data buffered without a terminator (a CR at the end may be one)."""
        have = end - pos
        if self._newline != "\n" and have and self._buf[end - 1] == 13:
            have -= 1
        return have

    def maybe_take_line(self, kind: int, limit: int = -1) -> Any:
        """One whole line in ``kind``'s form, or None if no whole line is buffered.

        As ``InputBuffer.maybe_take_line``, with the stream's terminator and codec; ``limit``
        counts characters for str lines, bytes for bytes lines.  A line is decoded before
        anything is consumed: a strict decoding error consumes nothing.
        """
        mll = self._max_line
        codec = self._codec
        newline = self._newline
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch = self._pos, self._epoch
            end = self._end
            buf = self._buf
            dend, lend, scan = find_line_end(buf, pos, self._scan, end, newline)
            if dend < 0:
                if limit >= 0:
                    piece = self._piece(kind, limit, pos, end, False)
                    if piece is not None:
                        line, stop = piece
                        if self._pos == pos and self._epoch == epoch and self._batch is None:
                            self._pos = stop
                            self._run = 0
                            return line
                        continue
                if mll is not None:
                    have = self._over_limit(pos, end)
                    if have > mll:
                        raise LineTooLongError(mll, have)
                if self._pos == pos and self._epoch == epoch:
                    self._scan = scan
                return None
            if mll is not None and dend - pos > mll:
                raise LineTooLongError(mll, dend - pos)
            if limit >= 0:
                piece = self._piece(kind, limit, pos, lend, True)
                if piece is not None:
                    line, stop = piece
                    if self._pos == pos and self._epoch == epoch and self._batch is None:
                        self._pos = stop
                        self._run = 0
                        return line
                    continue
            elif (
                self._run >= 2
                and (kind == STR_LINE or kind == self._kind)  # (else readline would serve it)
                and self._start_batch(kind)
            ):
                try:
                    got = (self.next_line_tuple if kind == STR_LINE else self.next_line)()
                except StopIteration:
                    continue
                if got:
                    return got
                continue
            if kind == STR_LINE:
                line = (codec.decode(buf[pos:dend]), False)
            elif kind == STR_LINE_NL:
                line = codec.decode(buf[pos:lend])
            else:
                line = bytes(buf[pos:lend])
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = lend
                self._run += 1
                return line

    def _piece(self, kind: int, limit: int, pos: int, stop: int, found: bool) -> Any:
        """``readline(limit)``: ``(piece, new pos)`` when ``limit`` cuts ``buf[pos:stop]``.

        ``stop`` is the end of the whole line (``found``) or of what is buffered.  None when the
        limit does not cut: the whole line is taken, or more is needed.
        """
        buf = self._buf
        if kind == BYTES_LINE_NL:
            have = stop - pos
            if limit < have or (not found and limit <= have):
                return bytes(buf[pos : pos + limit]), pos + limit
            return None
        codec = self._codec
        chars, used = codec.decode_some(buf, pos, stop)
        if limit < len(chars) or (not found and limit <= len(chars)):
            size = codec.size_of(buf, pos, chars, used, limit)
            return codec.decode(buf[pos : pos + size]), pos + size
        return None

    def _start_batch(self, kind: int) -> bool:
        """Cut the whole lines of a window into a batch and publish it; False if none.

        The window is decoded once and split (in C).  A window that does not decode (a
        strict error) or might hold a line over the limit is not batched: the one-by-one path
        then serves the lines before it and raises for the bad one.
        """
        buf = self._buf
        pos, epoch = self._pos, self._epoch
        end = self._end
        term = self._term
        stop = min(end, pos + self._window)
        last = buf.rfind(term, pos, stop)
        if last < 0:
            last = buf.find(term, stop, end)
            if last < 0:
                return False
        mll = self._max_line
        if mll is not None and last - pos > mll:
            return False
        newline = self._newline
        lines: list[Any]
        if kind == BYTES_LINE_NL:
            data = bytes(buf[pos:last])
            if newline == "\r\n":
                lines = [line + b"\r\n" for line in data.split(b"\r\n")]
            else:  # "\n" and lenient: the terminator as received (a CR stays before the LF)
                lines = [line + b"\n" for line in data.split(b"\n")]
        else:
            try:
                if newline == "\r\n":  # (decoded with the last CRLF, which it ends with)
                    text = self._codec.decode(buf[pos : last + 2])
                else:
                    text = self._codec.decode(buf[pos:last])
            except UnicodeDecodeError:
                return False
            if newline == "\r\n":
                lines = _split_crlf(text)
                if kind == STR_LINE_NL:
                    lines = [line + "\r\n" for line in lines]
            elif kind == STR_LINE:
                if newline is None:
                    lines = _CR_LF.split(text)
                    if last > pos and buf[last - 1] == 13:
                        # The window stops at its last LF: the CR before it is still there.
                        lines[-1] = lines[-1][:-1]
                else:
                    lines = text.split("\n")
            else:
                lines = [line + "\n" for line in text.split("\n")]
        return self._publish_lines(lines, pos, epoch, kind, 0, last + len(term))

    def _batch_stop(self, lines: list[Any], start: int, served: int, extra: int) -> int:
        """Where the first ``served`` pieces end: found again in the bytes, since decoded lines
        are characters, not bytes (``read_until``'s pieces are bytes and counted as such)."""
        if extra:
            return super()._batch_stop(lines, start, served, extra)
        buf = self._buf
        term = self._term
        step = len(term)
        p = start
        for _ in range(served):
            p = buf.find(term, p) + step
        return p


__all__ = ["TextInputBuffer", "is_plain", "retype"]

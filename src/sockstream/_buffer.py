"""The input and output buffers: plain objects that know nothing of sockets or clocks.

Operations (after h11's ``_receivebuffer.py``)
    The input side is one ``bytearray`` with a read position ``pos`` and a fill mark ``end``;
    the bytes ``buf[pos:end]`` are the input not yet consumed.  Characters are decoded from
    these bytes on demand, so mixing character reads, byte reads, ``unread_char`` and
    ``peek_char`` can never lose or reorder anything: there is only ever one copy of the input.

Goals
    * The transport writes straight into the buffer (``recv_into`` a memoryview of the free
      tail), so a byte is copied once from the kernel and once to the caller.
    * Lines are found with ``bytearray.find`` from where the last search stopped, so a long line
      arriving in many pieces costs O(n) overall.
    * The byte just consumed is always still at ``buf[pos - 1]``: when the buffer is compacted
      one byte of history is kept, so ``unread_char`` always works after a ``read_char``.

Plan
    ``writable()`` makes room (reset when empty, compact when the tail is short, grow when
    full) and returns a memoryview of the free tail; the caller adds what it wrote with
    ``commit(n)``.  ``take_*`` methods return ``None`` for "need more data".

Lines in bulk
    A Python-level call per line costs several times what the line's bytes do, so a reader of
    many lines has ``split_lines`` cut a window of complete lines at once (one ``decode`` and
    one ``split``, in C) without consuming them; the stream then serves them one by one and
    moves ``pos`` past those it served when anything else touches the buffer (see
    ``_stream._LineMode``).
"""

from __future__ import annotations

import re
from typing import Any, Final

#: Initial capacity: 64 KiB holds four maximal TLS records and matches a typical socket
#: receive window chunk; reads of this size or more bypass the buffer entirely.
INPUT_BUFFER_SIZE: Final = 65536
#: Compact when the free tail is shorter than this, rather than recv a sliver.
MIN_FREE: Final = 8192
#: Output is sent once this much has accumulated (as BufferedWriter's default, times 8).
OUTPUT_BUFFER_SIZE: Final = 65536
#: Where bytes.splitlines breaks besides "\n".
_CR: Final = re.compile(b"\r")
#: Line cache window: from about three 80-column lines up to the whole buffer.
LINE_WINDOW_MIN: Final = 256
LINE_WINDOW_MAX: Final = INPUT_BUFFER_SIZE


class InputBuffer:
    """Bytes received and not yet consumed: ``buf[pos:end]``."""

    __slots__ = ("buf", "end", "pos", "scan", "size", "unread_mark")

    def __init__(self, size: int = INPUT_BUFFER_SIZE) -> None:
        # Allocated on first use: an idle stream costs no buffer memory.
        self.buf = bytearray()
        self.size = size
        self.pos = 0
        self.end = 0
        # Where the search for a newline resumes (nothing in buf[pos:scan] is a newline).
        self.scan = 0
        # pos right after an unread_char, so a second one in a row is refused (-1: none).
        self.unread_mark = -1

    def __len__(self) -> int:
        return self.end - self.pos

    def split_lines(self, kind: int, window: int) -> list[Any] | None:
        """The complete lines in about ``window`` bytes from ``pos``, not consumed; None if none.

        ``kind``: 0, str without the newline; 1, str with it; 2, bytes with it.
        """
        pos = self.pos
        buf = self.buf
        stop = min(self.end, pos + window)
        last = buf.rfind(10, pos, stop)
        if last < 0:
            last = buf.find(10, stop, self.end)
            if last < 0:
                return None
        if kind == 0:
            return buf[pos:last].decode("latin-1").split("\n")
        if kind == 1:
            return [line + "\n" for line in buf[pos:last].decode("latin-1").split("\n")]
        # bytes.splitlines(True) keeps the newlines in C, twice as fast as adding them back,
        # but it also breaks at "\r": use it only where there is none (a memchr-fast search).
        data = bytes(buf[pos : last + 1])
        if _CR.search(buf, pos, last) is None:
            return data.splitlines(True)
        return [line + b"\n" for line in data[:-1].split(b"\n")]

    def writable(self, want: int = MIN_FREE) -> memoryview:
        """Make at least ``want`` bytes of room at the tail and return a view of the free tail.

        The caller must drop the view before the next call (a live view pins the bytearray).
        """
        buf = self.buf
        pos, end = self.pos, self.end
        refuse_unread = self.unread_mark == pos  # kept across the moves below
        if pos == end and pos > 1:
            # Empty: start again at 1, keeping the last consumed byte for unread_char.
            buf[0] = buf[pos - 1]
            self.pos = self.end = self.scan = pos = end = 1
        if len(buf) - end < want:
            start = pos - 1 if pos > 0 else 0
            if start > 0:
                buf[0 : end - start] = buf[start:end]
                self.pos = pos = pos - start
                self.end = end = end - start
                self.scan = max(self.scan - start, pos)
            if len(buf) - end < want:
                more = bytes(max(len(buf), want, self.size))
                try:
                    buf.extend(more)
                except BufferError:  # a traceback still holds a view of it: use a new one
                    self.buf = buf = buf + more
        self.unread_mark = pos if refuse_unread else -1
        return memoryview(buf)[end:]

    def commit(self, n: int) -> None:
        """Account for ``n`` bytes written into the view returned by ``writable``."""
        self.end += n

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes (from a TLS engine, or handed back on detach)."""
        n = len(data)
        if n:
            self.writable(n)[:n] = data
            self.end += n

    def take(self, n: int) -> bytes:
        """Consume and return up to ``n`` bytes (fewer if fewer are buffered)."""
        pos = self.pos
        stop = min(pos + n, self.end)
        data = bytes(self.buf[pos:stop])
        self.pos = stop
        return data

    def take_all(self) -> bytes:
        """Consume and return everything buffered."""
        return self.take(self.end - self.pos)

    def take_into(self, view: memoryview) -> int:
        """Consume up to ``len(view)`` bytes into ``view``; return how many."""
        pos = self.pos
        n = min(len(view), self.end - pos)
        if n:
            view[:n] = self.buf[pos : pos + n]
            self.pos = pos + n
        return n

    def find_newline(self) -> int:
        """Index of the next newline in the buffer, or -1 (and remember where we stopped)."""
        start = self.scan if self.scan > self.pos else self.pos
        i = self.buf.find(10, start, self.end)
        if i < 0:
            self.scan = self.end
        return i

    def unread_byte(self, byte: int) -> bool:
        """Put back the byte just consumed; False if it is not the byte at ``pos - 1``."""
        pos = self.pos
        if pos > 0 and self.buf[pos - 1] == byte:
            self.pos = self.scan = pos - 1  # the byte put back may be a newline: search it again
            return True
        return False

    def clear(self) -> int:
        """Discard everything buffered; return how many bytes were discarded.

        Nothing discarded can be unread.
        """
        n = self.end - self.pos
        self.pos = self.unread_mark = self.end
        return n


class OutputBuffer:
    """Bytes written and not yet sent."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

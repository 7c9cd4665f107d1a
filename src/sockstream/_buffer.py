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

Line cache
    A Python-level call per line costs several times what the line's bytes do, so reading many
    lines splits a window of complete lines at once (one ``decode`` and one ``split`` in C) into
    ``lines``; each line read then costs a list index and a little arithmetic.  The cache is
    only a *view*: ``pos`` stays the truth.  A cache of kind K is valid while ``pos == lposK``
    (any other read moves ``pos`` and so invalidates it) and until ``writable()`` moves or
    reuses the bytes (it resets them).  ``lines`` ends with a ``None`` sentinel.  The window
    starts small and doubles each time a cache is used up, so a caller that mixes line reads
    with other reads never pays for splitting much more than it reads.
"""

from __future__ import annotations

from typing import Any, Final

#: Initial capacity: 64 KiB holds four maximal TLS records and matches a typical socket
#: receive window chunk; reads of this size or more bypass the buffer entirely.
INPUT_BUFFER_SIZE: Final = 65536
#: Compact when the free tail is shorter than this, rather than recv a sliver.
MIN_FREE: Final = 8192
#: Output is sent once this much has accumulated (as BufferedWriter's default, times 8).
OUTPUT_BUFFER_SIZE: Final = 65536
#: Line cache window: from about three 80-column lines up to the whole buffer.
LINE_WINDOW_MIN: Final = 256
LINE_WINDOW_MAX: Final = INPUT_BUFFER_SIZE


class InputBuffer:
    """Bytes received and not yet consumed: ``buf[pos:end]``."""

    __slots__ = (
        "buf", "end", "li", "lines", "lpos0", "lpos1", "lpos2", "lwin", "pos", "scan", "unread_mark"
    )

    def __init__(self, size: int = INPUT_BUFFER_SIZE) -> None:
        self.buf = bytearray(size)
        self.pos = 0
        self.end = 0
        # Where the search for a newline resumes (nothing in buf[pos:scan] is a newline).
        self.scan = 0
        # The line cache (see the module comment).
        self.lines: list[Any] = [None]
        self.li = 0
        # Where the cache's next line starts, per kind of cache (-1: no valid cache).
        self.lpos0 = self.lpos1 = self.lpos2 = -1
        self.lwin = LINE_WINDOW_MIN
        # pos right after an unread_char, so a second one in a row is refused (-1: none).
        self.unread_mark = -1

    def cache_lines(self, kind: int) -> bool:
        """Split complete lines at ``pos`` into the line cache; False if there is no newline.

        ``kind``: 0, str without the newline (``lpos0``); 1, str with it (``lpos1``); 2, bytes
        with it (``lpos2``).
        """
        pos = self.pos
        buf = self.buf
        # Grow the window after a cache was used up; start small again after it was abandoned.
        used_up = self.lines[self.li] is None
        win = min(self.lwin * 2, LINE_WINDOW_MAX) if used_up else LINE_WINDOW_MIN
        self.lwin = win
        stop = min(self.end, pos + win)
        last = buf.rfind(10, pos, stop)
        if last < 0:
            last = buf.find(10, stop, self.end)
            if last < 0:
                return False
        if kind == 0:
            lines: list[Any] = buf[pos:last].decode("latin-1").split("\n")
        elif kind == 1:
            lines = [line + "\n" for line in buf[pos:last].decode("latin-1").split("\n")]
        else:
            lines = [line + b"\n" for line in bytes(buf[pos:last]).split(b"\n")]
        lines.append(None)
        self.lines = lines
        self.li = 0
        self.lpos0 = pos if kind == 0 else -1
        self.lpos1 = pos if kind == 1 else -1
        self.lpos2 = pos if kind == 2 else -1
        return True

    def __len__(self) -> int:
        return self.end - self.pos

    def writable(self, want: int = MIN_FREE) -> memoryview:
        """Make at least ``want`` bytes of room at the tail and return a view of the free tail.

        The caller must drop the view before the next call (a live view pins the bytearray).
        """
        buf = self.buf
        pos, end = self.pos, self.end
        self.lpos0 = self.lpos1 = self.lpos2 = self.unread_mark = -1
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
                buf.extend(bytes(max(len(buf), want)))
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
            self.pos = pos - 1
            return True
        return False

    def clear(self) -> int:
        """Discard everything buffered; return how many bytes were discarded."""
        n = self.end - self.pos
        self.pos = self.end
        return n


class OutputBuffer:
    """Bytes written and not yet sent."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

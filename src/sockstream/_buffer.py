"""The input and output buffers: plain objects that know nothing of sockets or clocks.

Operations (after h11's ``_receivebuffer.py``)
    The input is one ``bytearray``; ``buf[pos:end]`` is what is not consumed yet.  Everything
    that reads (bytes, characters, lines, ``unread_char``) is a method here: ``maybe_*`` returns
    ``None`` for "need more", and the stream's I/O loop then feeds more and asks again.  There is
    only ever one copy of the input, so mixing verbs never loses or reorders anything.

Goals
    * The transport writes straight into the free tail (``writable`` + ``commit``).
    * A newline search resumes where the last one stopped: a long line costs O(n) overall.
    * The byte just consumed stays at ``buf[pos - 1]`` (compaction keeps one byte of history),
      so ``unread_char`` works after any read; ``forbid_unread`` ends that where it must not.

Lines in bulk
    A Python call per line costs more than the line's bytes, so a reader of many lines gets a
    *batch*: ``_start_batch`` cuts the complete lines of a window once (one ``decode``, one
    ``split``, in C) and publishes the list's iterator as ``next_line``/``next_line_tuple``,
    without moving ``pos``; on byte streams the batch is a *byte window*, a ``BytesIO`` over a
    copy of the window's whole lines, whose ``readline``, ``readinto`` (``next_into``) and
    ``read`` (``next_read``) serve lines and payloads alike.  Many ``read_char`` calls in a
    row get a batch of characters (``next_char``, a ``str`` iterator).  Any other method first
    ``settle``\\ s: it unpublishes the batch, then moves ``pos`` past what was served.  Batches
    of lines start only after two lines in a row (a payload read between them does not break
    the row, nor does ``read(n)`` right after a byte line), characters after 16, so mixed
    reads never pay for one.

The hottest verbs
    ``read_char``, ``read_byte``, ``readline``, ``read_line``, ``read_sequence`` (a whole
    bytearray) and, on byte streams of the pure core, ``read(n)`` are methods of the buffer
    that the stream binds as its own (``serve_elements``): one short Python call that asks the
    batch's C callable (a falsy answer or ``StopIteration``: nothing there) and otherwise a
    ``*_more`` method, which takes what is buffered or calls the stream's slow path, which
    fills and asks again.  A compiled twin of this class can then serve them from C.

Threads
    Every method that consumes commits in one run of bytecode without a call between reading
    the state and writing it (CPython switches threads and runs signal handlers only at calls,
    backward jumps and function entries, and 3.10 also at a taken conditional jump: the
    committing path takes none; docs/reliability.md), or, where it must call first, commits
    only if the state is unchanged (``pos`` and ``epoch``, a compare-and-set).  A second
    thread that finds a batch unsettled waits for the settling one (``_settling``).  Filling
    is the caller's to serialise (one filler at a time).
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Callable
from itertools import repeat
from typing import Any, Final

from ._elements import CHARS
from ._errors import LineTooLongError

#: Initial capacity: 64 KiB holds four maximal TLS records and matches a typical socket
#: receive window chunk.
INPUT_BUFFER_SIZE: Final = 65536
#: Compact when the free tail is shorter than this, rather than recv a sliver.
MIN_FREE: Final = 8192
#: A rest that is cheap to move to the front when more room is there than at the tail.
_SMALL_REST: Final = 4096
#: Output is sent once this much has accumulated (as BufferedWriter's default, times 8).
OUTPUT_BUFFER_SIZE: Final = 65536
#: Batch window: from about three 80-column lines up to the whole buffer.
LINE_WINDOW_MIN: Final = 256
LINE_WINDOW_MAX: Final = INPUT_BUFFER_SIZE
#: Lines taken one by one in a row before a batch is cut.
_LINES_BEFORE_BATCH: Final = 2

#: Line kinds: str without its newline (``read_line``, served as ``(line, False)``), str with
#: it (``readline`` on base-char), bytes with it (``readline`` on the byte types).
STR_LINE: Final = 0
STR_LINE_NL: Final = 1
BYTES_LINE_NL: Final = 2


class _Window(io.BytesIO):
    """A byte window: a BytesIO over a copy of whole lines, and where they end in the buffer."""

    __slots__ = ("back", "epoch", "full")

    def __init__(self, data: bytes, full: int, epoch: int) -> None:
        super().__init__(data)
        self.full = full  # the buffer position after its last byte
        self.epoch = epoch  # the buffer's epoch when it was cut
        # How many bytes of its short end were put back (stored with the commit that puts
        # them back): 0 until then.  A window is read short at most once.
        self.back = 0


def _need_more(*args: Any) -> Any:
    raise RuntimeError("InputBuffer.serve_elements was not called")


#: A read that overlapped another thread's at a window's end (``_untake_window_end``).
_OVERLAP: Final = "{}: another thread read from this stream at the same time; nothing was read"

_WHOLE: Final = -1  # readline's default size (a cached int: ``is`` is enough)
_ZERO: Final = 0  # read_sequence's default start (likewise; a bool False is not it)


#: What ``next_line``/``next_line_tuple``/``next_char`` are without a batch: a C callable
#: returning None.
_no_line: Final[Callable[[], None]] = type(None)
#: What ``next_into`` is without a byte window: a C callable that fills nothing (returns 0).
#: (An empty BytesIO that nothing ever writes to.)
_no_into: Final[Callable[[Any], int]] = io.BytesIO().readinto
#: What ``next_read`` is without a byte window: a C callable that reads nothing (returns b"").
_no_read: Final[Callable[[int], bytes]] = io.BytesIO().read

#: Batch kinds besides the line kinds: characters (``read_char``) and a byte window (a
#: BytesIO over a copy of whole lines, serving ``readline`` on byte streams and
#: ``read_sequence``).
_CHAR_BATCH: Final = 3
_WINDOW: Final = 4
#: Characters read one by one in a row before a batch of them is cut (a tokenizer that reads
#: a few and unreads one never pays for one).
_CHARS_BEFORE_BATCH: Final = 16
#: Bytes that ``str.splitlines`` breaks at besides "\n" (Latin-1): where none is, it cuts a
#: window of text in C with the newlines kept.
_OTHER_BREAKS: Final = (13, 11, 12, 28, 29, 30, 133)


class InputBuffer:
    """Bytes received and not yet consumed, and what can be taken from them."""

    #: ``read_until`` pieces of text are cut in a decoded window (Latin-1: bytes are characters).
    _splits_text = True

    #: Consumed bytes kept when the buffer is compacted, for ``unread_char``: one character.
    _HISTORY = 1

    __slots__ = (
        "_batch",
        "_buf",
        "_char_at",
        "_chars",
        "_end",
        "_epoch",
        "_fill",
        "_kind",
        "_line_at",
        "_line_end",
        "_mark",
        "_max_line",
        "_owner",
        "_pos",
        "_run",
        "_scan",
        "_settling",
        "_size",
        "_slow_byte",
        "_slow_char",
        "_slow_line",
        "_slow_read",
        "_slow_read_line",
        "_slow_seq",
        "_table",
        "_until",
        "_window",
        "next_char",
        "next_into",
        "next_line",
        "next_line_tuple",
        "next_read",
        "next_until",
        "until_delimiter",
    )

    def __init__(self, size: int = INPUT_BUFFER_SIZE, max_line: int | None = None) -> None:
        # Allocated on first use: an idle stream costs no buffer memory.
        self._buf = bytearray()
        self._size = size
        self._pos = 0
        self._end = 0
        # Bumped whenever bytes move (compaction), so a compare-and-set on pos is exact.
        self._epoch = 0
        # Where the newline search resumes (nothing in buf[pos:scan] is a newline).
        self._scan = 0
        # pos at which unread is refused (after an unread, a clear, a hand-over); -1: none.
        self._mark = -1
        self._max_line = max_line
        # The batch being served, or None: (iterator, pieces, start, kind, bytes after each
        # piece that are not in it (1 for STR_LINE's newline, the delimiter's length for
        # read_until), where it ends when all is served).  Kind _WINDOW: (BytesIO, its bytes,
        # start, _WINDOW, 0, end); _CHAR_BATCH: (str iterator, the str, start, _CHAR_BATCH, 0, end).
        self._batch: tuple[Any, Any, int, int, int, int] | None = None
        self._settling = threading.Lock()
        self._window = LINE_WINDOW_MIN
        self._run = 0  # lines taken one by one in a row
        # Where the delimiter search of ``maybe_take_until`` resumes: (pos, epoch, delimiter, i).
        self._until: tuple[int, int, bytes, int] = (-1, -1, b"", 0)
        #: The published batch: ``next_line()`` (kinds 1, 2) and ``next_line_tuple()``
        #: (kind 0) return the next line of the batch; None without a batch; StopIteration
        #: when the batch is used up.
        self.next_line: Callable[[], Any] = _no_line
        self.next_line_tuple: Callable[[], Any] = _no_line
        #: The published batch of characters (``read_char``), and the byte window's
        #: ``readinto`` (``read_sequence``); see ``settle``.
        self.next_char: Callable[[], Any] = _no_line
        self.next_into: Callable[[Any], int] = _no_into
        #: The byte window's ``read`` (``read(n)``); see ``settle``.
        self.next_read: Callable[[int], bytes] = _no_read
        # pos after the last line readline took one by one (a payload read from there on
        # keeps the lines in a row).
        self._line_at = -1
        self._char_at = -1  # pos after the last character read one by one
        self._chars = 0  # characters read one by one in a row
        #: The published batch of ``read_until`` pieces (``(data, False)``), and its delimiter.
        self.next_until: Callable[[], Any] = _no_line
        self.until_delimiter: bytes | None = None
        # What read_char / read_byte do when nothing is buffered (the stream's I/O loop).
        self._slow_char: Callable[[bool, Any], Any] = _need_more
        self._slow_byte: Callable[[bool, Any], Any] = _need_more
        self._table: tuple[int, ...] = ()
        self._slow_line: Callable[[Any], Any] = _need_more
        self._slow_seq: Callable[[Any, Any, Any], int] = _need_more
        self._slow_read_line: Callable[[Any, Any], Any] = _need_more
        self._slow_read: Callable[[Any], Any] = _need_more
        # The refill read_line does itself (see serve_elements): None, or the stream's weak
        # reference and its ``_fill`` and ``_line_end`` functions.
        self._owner: Any = None
        self._fill: Callable[[Any], int] | None = None
        self._line_end: Callable[[Any, int, Any, Any], Any] | None = None
        self._kind = BYTES_LINE_NL

    def serve_elements(
        self,
        slow_char: Callable[[bool, Any], Any],
        slow_byte: Callable[[bool, Any], Any],
        table: tuple[int, ...],
        slow_line: Callable[[Any], Any],
        kind: int,
        slow_seq: Callable[[Any, Any, Any], int],
        slow_read_line: Callable[[Any, Any], Any] = _need_more,
        owner: Any = None,
        fill: Callable[[Any], int] | None = None,
        line_end: Callable[[Any, int, Any, Any], Any] | None = None,
        slow_read: Callable[[Any], Any] = _need_more,
    ) -> None:
        """Make ``read_char``, ``read_byte``, ``readline``, ``read_line``, ``read_sequence`` (and
        ``read``, with ``slow_read``) the stream's verbs: what the buffer holds is answered here
        (one call, no wrapper), the rest by the stream's ``slow_*`` (same arguments).

        ``table`` maps a byte to the element read_byte returns (unsigned or signed); ``kind``
        is readline's line kind.  With ``owner`` (a weak reference to the stream), ``fill``
        and ``line_end``, ``read_line`` and ``readline()`` refill by themselves when no whole
        line is buffered: ``fill(stream)`` (the count added; 0 at end-of-file or timeout),
        then, at the end, ``line_end(stream, kind, eof_error, eof_value)`` answers; one Python
        frame per refill instead of the slow path's chain.
        """
        self._owner = owner
        self._fill = fill
        self._line_end = line_end
        self._slow_char = slow_char
        self._slow_byte = slow_byte
        self._table = table
        self._slow_line = slow_line
        self._kind = kind
        self._slow_seq = slow_seq
        self._slow_read_line = slow_read_line
        self._slow_read = slow_read

    # The verbs below are as short as they can be: the published batch's C callable answers
    # (a line, a tuple or a character: never empty), and a falsy answer or StopIteration (the
    # batch is used up) sends the call to ``*_more``.

    def readline(self, size: Any = -1) -> Any:
        """``SocketStream.readline``: a line of the batch or a whole buffered line, else the
        stream's slow path (which also checks ``size``)."""
        if size is _WHOLE:
            try:
                return self.next_line() or self._line_more()
            except StopIteration:  # the batch is used up
                return self._line_more()
        return self._slow_line(size)

    def _line_more(self) -> Any:
        """``readline`` when the batch has no line for it: refill until one is whole (see
        ``serve_elements``)."""
        fill, line_end, kind = self._fill, self._line_end, self._kind
        while True:
            line = self.maybe_take_line(kind)
            if line is not None:
                self._line_at = self._pos  # (a hint for read(n): no commit rests on it)
                return line
            if fill is None or line_end is None or (stream := self._owner()) is None:
                return self._slow_line(-1)
            if not fill(stream):
                return line_end(stream, kind, True, None)

    if sys.version_info >= (3, 12):

        def read_line(self, eof_error: Any = True, eof_value: Any = None) -> Any:
            """``SocketStream.read_line``: ``(line, False)`` from the batch or a whole buffered
            line, else the stream's slow path."""
            try:
                return self.next_line_tuple() or self._read_line_more(eof_error, eof_value)
            except StopIteration:  # the batch is used up
                return self._read_line_more(eof_error, eof_value)

    else:  # (3.10, 3.11: a method call's lookup of an instance attribute is not specialised,
        # and costs a twentieth of the whole call; loaded as an attribute, it is)

        def read_line(self, eof_error: Any = True, eof_value: Any = None) -> Any:
            """``SocketStream.read_line``: ``(line, False)`` from the batch or a whole buffered
            line, else the stream's slow path."""
            take = self.next_line_tuple
            try:
                return take() or self._read_line_more(eof_error, eof_value)
            except StopIteration:  # the batch is used up
                return self._read_line_more(eof_error, eof_value)

    def _read_line_more(self, eof_error: Any, eof_value: Any) -> Any:
        """``read_line`` when the batch has no line for it: refill until one is whole (see
        ``serve_elements``)."""
        fill, line_end = self._fill, self._line_end
        while True:
            line = self.maybe_take_line(STR_LINE)
            if line is not None:
                return line
            if fill is None or line_end is None or (stream := self._owner()) is None:
                return self._slow_read_line(eof_error, eof_value)
            if not fill(stream):
                return line_end(stream, STR_LINE, eof_error, eof_value)

    def read_sequence(self, seq: Any, start: Any = 0, end: Any = None) -> int:
        """``SocketStream.read_sequence``: a bytearray (whole, or ``seq[start:end]`` with ints
        in range) filled from here when that much is buffered, else the stream's slow path."""
        if type(seq) is bytearray:
            # (An interrupt between the window's take and the give-back of a short end, at a
            # call or at ``_seq_more``'s entry, puts it back: ``_window_interrupted``.)
            if start is _ZERO and end is None:
                into = self.next_into  # the byte window's readinto (0 without one)
                n = -1
                try:
                    n = into(seq)
                    if n == len(seq) and n:
                        return n
                    return self._seq_more(seq, n, into)
                except BaseException:
                    self._window_interrupted(into, n, len(seq))
                    raise
            if type(end) is int and type(start) is int and 0 <= start < end <= len(seq):
                # seq[start:end] (a payload into a buffer kept for it): from the byte window
                # when it holds that much, else as below.
                into = self.next_into
                n = -1
                try:
                    n = into(memoryview(seq)[start:end])  # (the views go at once)
                    if n == end - start:
                        return end
                    return self._seq_more(seq, n, into, start, end)
                except BaseException:
                    self._window_interrupted(into, n, end - start)
                    raise
        return self._slow_seq(seq, start, end)

    def _seq_more(
        self, seq: bytearray, n: int, into: Any = _no_into, start: int = 0, end: int | None = None
    ) -> int:
        """``read_sequence`` of a bytearray (``seq[start:end]``) that the byte window did not fill.

        ``n`` bytes of the window's end went into it (through ``into``): they are put back
        (the window settles before them), so the whole read is one piece again, from the
        buffer.
        """
        if n:
            window = into.__self__
            if not self.settle(n, window) and not self._untake_window_end(window, n):
                raise RuntimeError(_OVERLAP.format("read_sequence"))
        elif self._batch is not None:
            self.settle()
        last = len(seq) if end is None else end
        want = last - start
        # One run without a call: the copy and the commit.  (Lines before and after keep
        # counting as in a row: a header line, then its payload, then the next header.)
        pos = self._pos
        stop = pos + want
        if want > 0 and stop <= self._end and self._batch is None:
            seq[start:last] = self._buf[pos:stop]
            self._pos = stop
            return last
        return self._slow_seq(seq, start, end)

    def read(self, size: Any = -1) -> Any:
        """``SocketStream.read`` on a byte stream: ``size`` bytes from the byte window or the
        buffer when that many are there, else the stream's slow path (which also checks
        ``size``)."""
        if type(size) is int and size > 0:
            read = self.next_read  # the byte window's read (b"" without one)
            data = None
            try:
                data = read(size)
                if len(data) == size:
                    return data
                return self._read_more(size, data, read)
            except BaseException:  # (as in read_sequence)
                self._window_interrupted(read, -1 if data is None else len(data), size)
                raise
        return self._slow_read(size)

    def _window_interrupted(self, take: Any, n: int, want: int) -> None:
        """An exception came out of ``read(n)`` or ``read_sequence`` after ``take`` (a byte
        window's ``read`` or ``readinto``, or a stand-in without one) took ``n`` bytes (-1: it
        returned, but the count was lost) of the ``want`` asked for.

        A short end not yet put back (the exception landed before the give-back's commit, at
        a call or at ``_read_more``'s or ``_seq_more``'s entry) goes back now: the read
        consumed nothing.  A whole take was the call's result (as an interrupt just after it
        returned).  Where the count was lost with the window used up (it may have been a short
        end), or another thread settled the window first, the stream breaks.
        """
        window = getattr(take, "__self__", None)
        if type(window) is not _Window or n == 0 or n == want or window.back:
            return
        if n > 0 and self.settle(n, window):
            return  # back: nothing consumed
        if n < 0 and window.tell() < len(window.getvalue()):
            return  # a whole take (a short one uses the window up)
        stream = None if self._owner is None else self._owner()
        if stream is not None:
            stream._break("interrupted while reading: input may have been lost")

    def _read_more(self, size: int, data: bytes, read: Any) -> Any:
        """``read(size)`` that the byte window did not serve.

        ``data`` (the window's end, through ``read``) is put back as in ``_seq_more``, so the
        read is one piece again, from the buffer, else from the stream's slow path.  Lines
        before and after a payload keep counting as in a row where a byte window served, or
        where the payload follows a line that readline took (a header, then its payload);
        otherwise ``read`` ends the row, as ``maybe_take`` does.
        """
        if data:
            window = read.__self__
            if not self.settle(len(data), window) and not self._untake_window_end(
                window, len(data)
            ):
                raise RuntimeError(_OVERLAP.format("read"))
        else:
            batch = self._batch
            if batch is None:
                if self._pos != self._line_at:
                    self._run = 0
            elif batch[3] == _WINDOW:
                self.settle()
            else:
                self.settle()
                self._run = 0
        # One run without a call between the check and the commit (a compare-and-set).
        pos, epoch = self._pos, self._epoch
        stop = pos + size
        if stop <= self._end:
            data = bytes(self._buf[pos:stop])
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = stop
                return data
        return self._slow_read(size)

    def _untake_window_end(self, window: _Window, n: int) -> bool:
        """Put back the last ``n`` bytes of ``window`` after another thread settled it first
        (counting them as read).  Exact (True) if that thread took nothing since; otherwise
        the two reads overlapped, and the bytes go back in front (False: the caller raises
        ``RuntimeError``, refused, as API.md "Threads" allows: nothing is lost)."""
        pos = self._pos
        if pos == window.full and self._epoch == window.epoch and self._batch is None:
            # One run without a call: they are back where they were.  (Not with a newer
            # window published: its settle would move pos past them again.)
            self._pos = self._scan = pos - n
            window.back = n
            return True
        data = window.getvalue()[-n:]
        try:
            self.unread_bytes(data)
        except BufferError:
            # No room in front (the other thread compacted the buffer), and its receive holds
            # a view of it, so it cannot grow: put them back once that fill is over (fills
            # hold the stream's read lock).
            stream = None if self._owner is None else self._owner()
            if stream is None:
                raise
            with stream._rlock:
                self.unread_bytes(data)
        window.back = n
        return False

    # ---- state ----------------------------------------------------------------------------

    def __len__(self) -> int:
        if self._batch is not None:
            self.settle()
        return self._end - self._pos

    @property
    def max_line(self) -> int | None:
        """The line-length limit (bytes, without the newline), or None."""
        return self._max_line

    def settle(self, back: int = 0, window: Any = None) -> bool:
        """End the batch: move ``pos`` past what it served; False if there was none.

        ``back``: that many bytes at the end of what ``window`` (a byte window) served are not
        taken after all (``read_sequence`` or ``read`` found them too few); False, and nothing
        settled, if the batch is not that window (another thread settled it, and perhaps cut
        the next one, first).
        """
        with self._settling:
            batch = self._batch
            if batch is None or (window is not None and batch[0] is not window):
                return False
            # Unpublish first: from here on no thread can take a line of this batch.
            self.next_line = self.next_line_tuple = self.next_until = self.next_char = _no_line
            self.next_into = _no_into
            self.next_read = _no_read
            self.until_delimiter = None
            it, lines, start, kind, extra, full = batch
            if kind == _WINDOW:
                used = it.tell()
                left = len(lines) - used
                stop = start + used - back
            else:
                left = it.__length_hint__()
                if left == 0:
                    stop = full
                elif kind == _CHAR_BATCH:
                    stop = start + len(lines) - left
                else:
                    stop = self._batch_stop(lines, start, len(lines) - left, extra)
            if left == 0:
                self._window = min(self._window * 2, LINE_WINDOW_MAX)
            else:
                self._window = LINE_WINDOW_MIN
                self._run = 0
            if kind == _CHAR_BATCH:
                # A batch used up: the characters in a row go on (the next is batched at
                # once).  Cut short (a peek, an unread, a line): the row starts again, so
                # verbs that alternate with read_char never pay a batch for a character.
                self._char_at = stop if left == 0 else -1
            self._pos = stop
            self._batch = None
            if back:  # (not taken: nothing between the commit and this mark)
                it.back = back  # (``it`` is ``window``)
            return True

    def _batch_stop(self, lines: list[Any], start: int, served: int, extra: int) -> int:
        """Where the first ``served`` pieces of a batch cut at ``start`` end, in bytes."""
        return start + sum(map(len, lines[:served])) + served * extra

    # ---- filling --------------------------------------------------------------------------

    def writable(self, want: int = MIN_FREE) -> memoryview:
        """Make at least ``want`` bytes of room at the tail and return a view of the free tail.

        The caller drops the view before the next call (a live view pins the bytearray).
        """
        while True:
            if self._batch is not None:
                self.settle()
            buf = self._buf
            size = len(buf)
            # Readers take (and put back) without the reading lock: what is read of the state
            # here is written back only if it is unchanged, with no call (and no taken jump:
            # 3.10) between the check and the writes, so a take meanwhile is never undone.
            pos, end, epoch = self._pos, self._end, self._epoch
            free = size - end
            if free >= want and (end - pos > _SMALL_REST or free > pos):
                view = memoryview(buf)[end:]  # (from here on it pins buf: no insert in front)
                if self._epoch == epoch:
                    return view
                view.release()  # bytes were put back in front meanwhile: end moved
                continue
            # (Also when what is left is a small rest, say part of a line, and more room is at
            # the front than at the tail: moving it costs little, and the receive fills a whole
            # buffer, so a batch of lines is as long as it can be.)
            # Keep the last consumed byte(s): unread_char may put back a whole character.
            keep = self._HISTORY
            start = pos - keep if pos > keep else 0
            if start > 0:
                # Compact, keeping one consumed byte for unread_char: the bytes move and pos,
                # end and epoch change together (a compare-and-set).
                new = pos - start
                scan = self._scan - start
                scan = scan if scan > new else new
                mark = new if self._mark == pos else -1
                if self._pos == pos and self._epoch == epoch and self._batch is None:
                    buf[0 : end - start] = buf[start:end]
                    self._pos = new
                    self._end = end = end - start
                    self._epoch = epoch = epoch + 1
                    self._scan = scan
                    self._mark = mark
                else:
                    continue
            if size - end < want:
                more = bytes(max(size, want, self._size))
                try:
                    buf.extend(more)
                except BufferError:  # a traceback still holds a view of it: use a new one
                    self._buf = buf = buf + more
            view = memoryview(buf)[end:]
            if self._epoch == epoch:
                return view
            view.release()

    def commit(self, n: int) -> None:
        """Account for ``n`` bytes written into the view returned by ``writable``."""
        self._end += n

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes (from a TLS engine, or handed back on detach)."""
        n = len(data)
        if n:
            self.writable(n)[:n] = data
            self._end += n

    def unread_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Put ``data`` back in front of what is buffered (a read that failed part-way).

        Nothing of it can come back through ``unread_char`` beyond its last byte.
        """
        n = len(data)
        if not n:
            return
        while True:
            # One run without a call from the check to the commit: another thread (a window's
            # end put back races its reads) may cut a batch at pos until then, and its settle
            # would jump over these bytes.  (Each commit's jumps are not taken: 3.10.)
            pos = self._pos
            if pos >= n and self._batch is None:
                self._buf[pos - n : pos] = data
                self._pos = self._scan = pos - n
                self._epoch += 1
                self._mark = -1
                return
            pos = self._pos
            if pos < n and self._batch is None:
                self._buf[pos:pos] = data  # (BufferError while a view pins it: nothing moved)
                self._end += n
                self._scan = pos
                self._epoch += 1
                self._mark = -1
                return
            if self._batch is not None:
                self.settle()

    # ---- taking bytes -----------------------------------------------------------------------

    def maybe_take(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, or None if fewer are buffered."""
        while True:
            pos, epoch = self._pos, self._epoch
            stop = pos + n
            if stop > self._end:
                if self._batch is None:
                    return None
                self.settle()
                continue
            data = bytes(self._buf[pos:stop])
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = stop
                self._run = 0
                return data
            if self._batch is not None:
                self.settle()

    def maybe_fill(self, seq: bytearray) -> int:
        """Fill all of ``seq`` if that many bytes are buffered: ``len(seq)``, else -1."""
        n = len(seq)
        # One run without a call: the copy and the commit.
        pos = self._pos
        stop = pos + n
        if stop <= self._end and self._batch is None:
            seq[:] = self._buf[pos:stop]
            self._pos = stop
            self._run = 0
            return n
        if self._batch is not None:
            self.settle()
            return self.maybe_fill(seq)
        return -1

    def maybe_take_text(self, n: int, final: bool = False) -> str | None:
        """``maybe_take`` as characters (Latin-1)."""
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch = self._pos, self._epoch
            stop = pos + n
            if stop > self._end:
                return None
            data = self._buf[pos:stop].decode("latin-1")
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = stop
                self._run = 0
                return data

    def take(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer if fewer are buffered)."""
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch = self._pos, self._epoch
            stop = min(pos + n, self._end)
            data = bytes(self._buf[pos:stop])
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = stop
                self._run = 0
                return data

    def take_all(self) -> bytes:
        """Everything buffered."""
        return self.take(self._end)

    def take_into(self, view: memoryview) -> int:
        """Up to ``len(view)`` bytes into ``view``; how many."""
        size = len(view)
        while True:
            if self._batch is not None:
                self.settle()
            # A compare-and-set: no call, and no taken jump (3.10), between the check and the
            # copy and commit (before, ``len(view)`` here let another reader take the same
            # bytes).
            pos, epoch = self._pos, self._epoch
            n = self._end - pos
            if n > size:
                n = size
            if n <= 0:
                return 0
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                view[:n] = self._buf[pos : pos + n]
                self._pos = pos + n
                self._run = 0
                return n

    def take_point(self, want: int) -> tuple[int, int, int]:
        """Where a ``take_into`` of up to ``want`` bytes would start now (settled), the epoch,
        and how many it would take: for ``untake``."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        n = self._end - pos
        return pos, self._epoch, n if n < want else want

    def untake(self, point: tuple[int, int, int]) -> bool:
        """Undo the take made at ``point`` (``take_point``) whose count an exception lost:
        True if it is undone, or nothing was taken; False if the buffer moved otherwise
        meanwhile (another reader: the count cannot be known)."""
        pos, epoch, n = point
        if self._pos == pos + n and self._epoch == epoch and self._batch is None:
            self._pos = pos  # (one run without a call: the bytes are still there)
            return True
        return self._pos == pos and self._epoch == epoch

    def filled_elsewhere(self, last: int) -> None:
        """Bytes were read past this empty buffer (straight into the caller's memory).

        ``last`` is the last of them: it becomes the byte ``unread_char`` may put back.
        """
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos == self._end:
            if pos == 0:
                if not self._buf:
                    self._buf.append(0)
                self._pos = self._end = self._scan = pos = 1
                self._epoch += 1
            self._buf[pos - 1] = last
            self._mark = -1

    # ---- characters -------------------------------------------------------------------------

    def read_char(self, eof_error: Any = True, eof_value: Any = None) -> Any:
        """``SocketStream.read_char``: a character of the batch or a buffered one, else the
        stream's slow path."""
        try:
            return self.next_char() or self._char_more(eof_error, eof_value)
        except StopIteration:  # the batch is used up
            return self._char_more(eof_error, eof_value)

    def _char_more(self, eof_error: Any, eof_value: Any) -> Any:
        """``read_char`` when the batch has no character for it: one buffered character;
        after many in a row, a batch of them (a window decoded once, served by its str
        iterator)."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos < self._end and self._batch is None:
            # One run without a call: the take and the commit.
            self._pos = pos + 1
            self._run = 0
            char = CHARS[self._buf[pos]]
            chars = self._chars + 1 if pos == self._char_at else 1
            self._chars = chars
            self._char_at = pos + 1
            if chars >= _CHARS_BEFORE_BATCH:
                self._start_char_batch()
            return char
        return self._slow_char(eof_error, eof_value)

    def _start_char_batch(self) -> None:
        """Decode a window of characters and publish its iterator as ``next_char``."""
        pos, epoch = self._pos, self._epoch
        stop = min(self._end, pos + self._window)
        if stop - pos < 2:
            return
        text = self._buf[pos:stop].decode("latin-1")
        it = iter(text)
        if self._pos == pos and self._epoch == epoch and self._batch is None:
            self._batch = (it, text, pos, _CHAR_BATCH, 0, stop)
            self.next_char = it.__next__

    def read_byte(self, eof_error: bool = True, eof_value: Any = None) -> Any:
        """``SocketStream.read_byte``: a buffered byte, else the stream's slow path."""
        pos = self._pos
        if pos < self._end and self._batch is None:
            self._pos = pos + 1
            self._run = 0
            return self._table[self._buf[pos]]
        return self._slow_byte(eof_error, eof_value)

    def maybe_take_char(self, final: bool = False) -> str | None:
        """One character (Latin-1), or None if nothing is buffered."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos < self._end and self._batch is None:
            self._pos = pos + 1
            self._run = 0
            return CHARS[self._buf[pos]]
        return None

    def maybe_take_byte(self, table: tuple[int, ...]) -> int | None:
        """One byte through ``table`` (unsigned or signed), or None if nothing is buffered."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos < self._end and self._batch is None:
            self._pos = pos + 1
            self._run = 0
            return table[self._buf[pos]]
        return None

    def peek_char(self, final: bool = False) -> str | None:
        """The next character, not consumed, or None if nothing is buffered."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos < self._end:
            return CHARS[self._buf[pos]]
        return None

    def peek_bytes(self, n: int) -> bytes:
        """Up to ``n`` bytes, not consumed."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        return bytes(self._buf[pos : min(self._end, pos + n)])

    def unread_byte(self, byte: int) -> bool:
        """Put back the byte just consumed; False (nothing changes) if it is not that byte."""
        if self._batch is not None:
            self.settle()
        pos = self._pos
        if pos > 0 and pos != self._mark and self._buf[pos - 1] == byte:
            # The byte put back may be a newline: the search starts again from it.
            self._pos = self._scan = self._mark = pos - 1
            return True
        return False

    def unread_refused(self) -> bool:
        """True right after an unread (or a clear, or a hand-over): a second is refused."""
        if self._batch is not None:
            self.settle()
        return self._pos == self._mark

    def forbid_unread(self) -> None:
        """Nothing consumed so far can come back through ``unread_byte``."""
        if self._batch is not None:
            self.settle()
        self._mark = self._pos

    def has_char(self) -> bool:
        """True if a whole character is buffered."""
        if self._batch is not None:
            self.settle()
        return self._pos < self._end

    def unread_char(self, char: str) -> bool:
        """Put back ``char``, the character just read; False (nothing changes) if it is not."""
        code = ord(char)
        return code < 256 and self.unread_byte(code)

    def take_text(self, n: int) -> str:
        """Up to ``n`` characters of what is buffered (all of it if ``n < 0``)."""
        return self.take(self._end if n < 0 else n).decode("latin-1")

    def decode(self, data: bytes | bytearray) -> str:
        """Whole bytes as characters (Latin-1)."""
        return data.decode("latin-1")

    def take_rest(self, text: bool, final: bool, limit: int = -1) -> Any:
        """What is buffered, as the last piece of input (end-of-file or timeout); None if none.

        ``text``: as characters.  ``limit >= 0`` takes at most that many.
        """
        data = self.take(self._end if limit < 0 else limit)
        if not data:
            return None
        return data.decode("latin-1") if text else data

    def maybe_take_until(self, delimiter: bytes, text: bool, limit: int | None = -1) -> Any:
        """The data before the next ``delimiter``, which is consumed too; None if not buffered.

        ``text``: the data as characters (decoded before anything is consumed).  More than
        ``limit`` bytes (-1: ``max_line``) buffered without the delimiter raise
        ``LineTooLongError`` and consume nothing.  The search resumes where the last one
        stopped, ``len(delimiter) - 1`` bytes before the end, so a delimiter split across
        fills is found and a long wait is O(n).
        """
        if limit == -1:
            limit = self._max_line
        pos = self._pos
        if self._batch is None and self._until[0] != pos:
            # The common case, short: the delimiter is there, found from pos.
            epoch = self._epoch
            buf = self._buf
            i = buf.find(delimiter, pos, self._end)
            if i >= 0 and (limit is None or i - pos <= limit):
                if self._run >= _LINES_BEFORE_BATCH and self._start_until_batch(
                    delimiter, text, limit
                ):
                    try:
                        got = self.next_until()
                    except StopIteration:  # another reader took them all
                        got = None
                    if got is not None:
                        return got[0]
                    return self._take_until(delimiter, text, limit)
                data: Any = self.decode(buf[pos:i]) if text else bytes(buf[pos:i])
                if self._pos == pos and self._epoch == epoch and self._batch is None:
                    self._pos = i + len(delimiter)
                    self._run += 1
                    return data
        return self._take_until(delimiter, text, limit)

    def _start_until_batch(self, delimiter: bytes, text: bool, limit: int | None) -> bool:
        """Cut the whole pieces of a window at ``delimiter`` into a batch; False if none.

        ``split`` cuts left to right without overlaps, exactly as one ``find`` after another
        would; the last piece (not followed by the delimiter) is left in the buffer.
        """
        buf = self._buf
        pos, epoch = self._pos, self._epoch
        stop = min(self._end, pos + self._window)
        pieces: list[Any]
        if text:
            if not self._splits_text:
                return False
            pieces = buf[pos:stop].decode("latin-1").split(delimiter.decode("latin-1"))
        else:
            pieces = bytes(buf[pos:stop]).split(delimiter)
        full = stop - len(pieces.pop())  # after the last delimiter
        if not pieces or (limit is not None and max(map(len, pieces)) > limit):
            return False  # the one-by-one path serves (or refuses) them
        it = iter(pieces)
        # (The pairs are made as they are served: zip takes from ``it`` exactly one a pair.)
        pairs = zip(it, repeat(False))
        if self._pos == pos and self._epoch == epoch and self._batch is None:
            self._batch = (it, pieces, pos, STR_LINE_NL, len(delimiter), full)
            self.until_delimiter = delimiter
            self.next_until = pairs.__next__
            return True
        return False

    def _take_until(self, delimiter: bytes, text: bool, limit: int | None) -> Any:
        """``maybe_take_until``, every case."""
        size = len(delimiter)
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch, end = self._pos, self._epoch, self._end
            buf = self._buf
            resume = self._until
            start = (
                resume[3]
                if resume[0] == pos and resume[1] == epoch and resume[2] == delimiter
                else pos
            )
            i = buf.find(delimiter, start, end)
            if i < 0:
                if limit is not None and end - pos > limit:
                    have = end - pos - _partial_suffix(buf, pos, end, delimiter)
                    if have > limit:
                        raise LineTooLongError(limit, have)
                nxt = end - size + 1
                self._until = (pos, epoch, delimiter, nxt if nxt > pos else pos)
                return None
            if limit is not None and i - pos > limit:
                raise LineTooLongError(limit, i - pos)
            data = self.decode(buf[pos:i]) if text else bytes(buf[pos:i])
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = i + size
                self._run += 1
                return data

    def clear(self) -> int:
        """Discard everything buffered; how many bytes.  Nothing discarded can be unread."""
        if self._batch is not None:
            self.settle()
        pos, end = self._pos, self._end
        self._pos = self._mark = end
        return end - pos

    # ---- lines --------------------------------------------------------------------------------

    def maybe_take_line(self, kind: int, limit: int = -1) -> Any:
        """One whole line in ``kind``'s form, or None if no whole line is buffered.

        ``kind``: ``STR_LINE`` gives ``(line_without_newline, False)``; ``STR_LINE_NL`` a str
        and ``BYTES_LINE_NL`` bytes, with the newline.  With ``limit >= 0`` at most that many
        bytes are taken (``readline(size)``; a shorter piece is then a "line" too).  A line
        longer than ``max_line`` (judged on what would be returned, without the newline, so
        chunking never matters) raises ``LineTooLongError`` and consumes nothing.  After a
        few lines in a row the complete lines buffered are cut into a batch (see above).
        """
        if limit < 0 and self._run < _LINES_BEFORE_BATCH and self._batch is None:
            # The common case, short: a whole line, no batch.
            pos = self._pos
            epoch = self._epoch
            buf = self._buf
            scan = self._scan
            i = buf.find(10, scan if scan > pos else pos, self._end)
            mll = self._max_line
            if i >= 0 and (mll is None or i - pos <= mll):
                line: Any
                if kind == BYTES_LINE_NL:
                    line = bytes(buf[pos : i + 1])
                elif kind == STR_LINE:
                    line = (buf[pos:i].decode("latin-1"), False)
                else:
                    line = buf[pos : i + 1].decode("latin-1")
                if self._pos == pos and self._epoch == epoch and self._batch is None:
                    self._pos = i + 1
                    self._run += 1
                    return line
        return self._take_line(kind, limit)

    def _take_line(self, kind: int, limit: int) -> Any:
        """``maybe_take_line``, every case."""
        mll = self._max_line
        while True:
            if self._batch is not None:
                self.settle()
            pos, epoch = self._pos, self._epoch
            end = self._end
            buf = self._buf
            i = buf.find(10, self._scan if self._scan > pos else pos, end)
            if i < 0:
                have = end - pos
                if 0 <= limit <= have:
                    if mll is not None and limit > mll:
                        raise LineTooLongError(mll, limit)
                    stop = pos + limit
                    line: Any = bytes(buf[pos:stop])
                else:
                    if mll is not None and have > mll:
                        raise LineTooLongError(mll, have)
                    if self._pos == pos and self._epoch == epoch:
                        self._scan = end
                    return None
            elif 0 <= limit < i + 1 - pos:
                if mll is not None and limit > mll:
                    raise LineTooLongError(mll, limit)
                stop = pos + limit
                line = bytes(buf[pos:stop])
            else:
                if mll is not None and i - pos > mll:
                    raise LineTooLongError(mll, i - pos)
                if (
                    limit < 0
                    and self._run >= _LINES_BEFORE_BATCH
                    and (kind == STR_LINE or kind == self._kind)  # (else readline would serve it)
                    and self._start_batch(kind)
                ):
                    try:
                        got = (self.next_line_tuple if kind == STR_LINE else self.next_line)()
                    except StopIteration:  # another reader took them all
                        continue
                    if got:  # (b"": a byte window used up by another reader)
                        return got
                    continue
                stop = i + 1
                if kind == STR_LINE:
                    line = (buf[pos:i].decode("latin-1"), False)
                elif kind == STR_LINE_NL:
                    line = buf[pos:stop].decode("latin-1")
                else:
                    line = bytes(buf[pos:stop])
                if self._pos == pos and self._epoch == epoch and self._batch is None:
                    self._pos = stop
                    self._run += 1
                    return line
                continue
            # A piece cut by ``limit``: bytes, converted by the caller.
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._pos = stop
                self._run = 0
                return line

    def _start_batch(self, kind: int) -> bool:
        """Cut the complete lines of a window into a batch and publish it; False if none.

        Byte lines get a byte window instead: a BytesIO over a copy of the whole lines, whose
        ``readline`` and ``readinto`` serve ``readline`` and ``read_sequence`` in C.
        """
        buf = self._buf
        pos, epoch = self._pos, self._epoch
        end = self._end
        mll = self._max_line
        if kind == BYTES_LINE_NL:
            # No line of the window may be over the limit: the window is no longer than a
            # line of the limit (serve's 64 KiB default: as long as ever).
            cap = end if mll is None else min(end, pos + mll + 1)
            stop = min(cap, pos + self._window)
            last = buf.rfind(10, pos, stop)
            if last < 0:
                last = buf.find(10, stop, cap)
                if last < 0:
                    return False
            data = bytes(buf[pos : last + 1])
            window = _Window(data, last + 1, epoch)
            # (The callables are made before the compare-and-set, as in _publish_lines.)
            readline, readinto, read = window.readline, window.readinto, window.read
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._batch = (window, data, pos, _WINDOW, 0, last + 1)
                self.next_line = readline
                self.next_into = readinto
                self.next_read = read
                return True
            return False
        stop = min(end, pos + self._window)
        last = buf.rfind(10, pos, stop)
        if last < 0:
            last = buf.find(10, stop, end)
            if last < 0:
                return False
        lines: list[Any]
        if kind == STR_LINE:
            lines = buf[pos:last].decode("latin-1").split("\n")
        else:
            text = buf[pos : last + 1].decode("latin-1")
            if _only_newlines(buf, pos, last):
                lines = text.splitlines(True)  # in C, the newlines kept
            else:
                lines = [line + "\n" for line in text[:-1].split("\n")]
        full = last + 1
        if mll is not None and last - pos > mll:
            # A line over the limit ends the batch before it (one C pass to know); the
            # one-by-one path then raises for it.  A window no longer than the limit (serve's
            # 64 KiB default) needs no look at all.
            most = mll if kind == STR_LINE else mll + 1
            if max(map(len, lines)) > most:
                for j, line in enumerate(lines):
                    if len(line) > most:
                        del lines[j:]
                        break
                if not lines:
                    return False
                full = pos + sum(map(len, lines)) + (len(lines) if kind == STR_LINE else 0)
        return self._publish_lines(lines, pos, epoch, kind, 1 if kind == STR_LINE else 0, full)

    def _publish_lines(
        self, lines: list[Any], pos: int, epoch: int, kind: int, extra: int, full: int
    ) -> bool:
        """Publish ``lines``, cut at ``pos`` in ``epoch``, as the batch (``extra``, ``full``:
        as in ``_batch``); False if the buffer moved meanwhile.

        The callable is made before the compare-and-set: a call between the check and the
        publication would let another thread settle (or start) a batch there, and this one
        would then publish lines already given back (served twice).
        """
        it = iter(lines)
        if kind == STR_LINE:
            # (The pairs are made as they are served: zip takes one line a pair.)
            take = zip(it, repeat(False)).__next__
            if self._pos == pos and self._epoch == epoch and self._batch is None:
                self._batch = (it, lines, pos, kind, extra, full)
                self.next_line_tuple = take
                return True
            return False
        take = it.__next__
        if self._pos == pos and self._epoch == epoch and self._batch is None:
            self._batch = (it, lines, pos, kind, extra, full)
            self.next_line = take
            return True
        return False


def _only_newlines(buf: bytearray, pos: int, stop: int) -> bool:
    """True if no byte of ``buf[pos:stop]`` is a line break of ``str.splitlines`` but "\\n"."""
    return all(buf.find(byte, pos, stop) < 0 for byte in _OTHER_BREAKS)


def _partial_suffix(buf: bytearray, pos: int, end: int, delimiter: bytes) -> int:
    """The length of the longest end of ``buf[pos:end]`` that begins ``delimiter``."""
    for k in range(min(len(delimiter) - 1, end - pos), 0, -1):
        if buf[end - k : end] == delimiter[:k]:
            return k
    return 0


class OutputBuffer:
    """Bytes written and not yet sent."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

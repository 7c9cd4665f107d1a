"""The compiled twins of the input and output buffers' hot verbs (``_speedups.c``, ``_impl``)."""

from typing import Any

MIN_FREE: int
SMALL_REST: int

def same_list(a: object, b: object, /) -> Any: ...

class InputBufferBase:
    """The state of an input buffer in C (the pure class's attribute names) and its hot verbs."""

    _buf: bytearray
    _pos: int
    _end: int
    _epoch: int
    _scan: int
    _mark: int
    _run: int
    _window: int
    _size: int
    _kind: int
    _max_line: int | None
    _batch: Any
    _settling: Any
    _until: Any
    _slow_char: Any
    _slow_byte: Any
    _slow_line: Any
    _slow_seq: Any
    _slow_read_line: Any
    _owner: Any
    _fill: Any
    _line_end: Any
    _table: Any
    next_line: Any
    next_line_tuple: Any
    next_until: Any
    until_delimiter: bytes | None
    def read_char(self, eof_error: bool = True, eof_value: Any = None) -> Any: ...
    def read_byte(self, eof_error: bool = True, eof_value: Any = None) -> Any: ...
    def readline(self, size: Any = -1) -> Any: ...
    def read_sequence(self, seq: Any, start: Any = 0, end: Any = None) -> int: ...
    def maybe_take_char(self, final: bool = False) -> str | None: ...
    def maybe_take_byte(self, table: tuple[int, ...], /) -> int | None: ...
    def peek_char(self, final: bool = False) -> str | None: ...
    def has_char(self) -> bool: ...
    def maybe_take_line(self, kind: int, limit: int = -1) -> Any: ...
    def maybe_take_until(self, delimiter: bytes, text: bool, limit: int | None = -1) -> Any: ...
    def writable(self, want: int = ...) -> memoryview: ...
    def commit(self, n: int, /) -> None: ...

class StreamBase:
    """The stream's reading verbs in C over its input buffer ``_in`` (see ``_impl.twin_stream``)."""

    _in: Any
    _watchers: tuple[Any, ...]
    _timed_out: bool
    def peek_char(self, eof_error: bool = True, eof_value: Any = None) -> Any: ...
    def unread_char(self, char: str) -> None: ...
    def listen(self) -> bool: ...
    def read_until(
        self,
        delimiter: Any,
        eof_error: bool = True,
        eof_value: Any = None,
        *,
        max_length: int | None = None,
    ) -> tuple[Any, bool]: ...
    def read(self, size: int | None = -1) -> Any: ...
    def __next__(self) -> Any: ...

class OutputBufferBase:
    """The state of an output buffer in C (the pure class's attribute names) and its verbs."""

    buf: bytearray
    enc: str
    eol: bytes
    kind: int
    char_limit: int
    lo: int
    hi: int
    _owner: Any
    def write_char(self, char: Any) -> None: ...
    def write_string(self, string: Any, start: Any = 0, end: Any = None) -> None: ...
    def write_line(self, string: Any) -> None: ...
    def write_byte(self, byte: Any) -> None: ...
    def write_sequence(self, seq: Any, start: Any = 0, end: Any = None) -> None: ...
    def write(self, data: Any) -> int: ...

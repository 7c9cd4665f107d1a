"""The file-object face of ``SocketStream``: what code that takes a file object expects.

``FileObjectMixin`` holds the parts of Python's file protocol that are not stream I/O of their
own: ``readlines``, ``writelines``, ``seekable``/``isatty``, the refused ``tell``/``seek``/
``truncate``, ``name`` and ``mode``; the stream provides the reading and writing verbs they are
built on (``peek`` and ``readinto1`` live in the stream, next to ``read1``, because they touch
the buffer).

``isinstance(stream, io.IOBase)`` is true by *registration* (``io.IOBase.register``), not by
inheritance.  Inheriting from ``io.IOBase`` would bring behaviour we must not have:

* its ``__del__`` calls ``close()``, and our ``close()`` flushes (and sends a TLS close-notify):
  a garbage collection could then block, in whatever thread it runs, on a peer that does not
  read, or raise there.  A stream that is dropped unclosed only lets its socket go, as
  ``socket.socket`` does (with its ``ResourceWarning``).
* its own ``closed`` flag (set by ``IOBase.close``), ``__enter__``, ``__iter__``/``__next__``,
  ``readline``/``readlines`` and ``writelines``, which would have to be overridden one by one to
  keep the stream's faster ones and its single idea of being closed.

So the stream stays a plain class and says which ABC it belongs to; everything a consumer calls
is written here or in the stream.
"""

from __future__ import annotations

import io
import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

__all__ = ["FileObjectMixin", "check_read_size", "check_size"]

#: ``mode`` by (direction, is-text).
_MODES = {
    ("input", False): "rb",
    ("output", False): "wb",
    ("io", False): "rwb",
    ("input", True): "r",
    ("output", True): "w",
    ("io", True): "rw",
}


def check_size(size: object, name: str = "size") -> int:
    """``size`` as an int (None is -1), or the ``TypeError`` that io raises, naming ``name``."""
    if size is None:
        return -1
    try:
        return operator.index(size)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an int or None, not {size!r}") from None


def check_read_size(size: object) -> int:
    """``read``'s size: an int >= -1 or None (-1), as ``io.BufferedReader.read`` takes."""
    n = check_size(size)
    if n < -1:
        raise ValueError(f"size must be -1 (read to end-of-file) or more, not {size!r}")
    return n


class FileObjectMixin:
    """``readlines``, ``writelines``, ``seekable``, ``isatty``, ``tell``, ``seek``, ``truncate``,
    ``name`` and ``mode`` for ``SocketStream`` (see the module docstring)."""

    __slots__ = ()

    if TYPE_CHECKING:  # provided by SocketStream
        _closed: bool
        _direction: str
        _element_type: str

        def _check_open(self) -> None: ...
        def readline(self, size: int | None = -1) -> Any: ...
        def write(self, data: Any) -> int: ...
        def fileno(self) -> int: ...
        def __iter__(self) -> Any: ...

    def readlines(self, hint: int | None = -1) -> list[Any]:
        """The lines until end-of-file, or until their total length reaches ``hint`` (> 0)."""
        limit = check_size(hint, "hint")
        self._check_open()
        if limit <= 0:
            return list(self)
        lines = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if total >= limit:
                break
        return lines

    def writelines(self, lines: Iterable[Any]) -> None:
        """Write each item of ``lines`` (no newlines are added, as in ``io``)."""
        self._check_open()
        write = self.write
        for line in lines:
            write(line)

    def seekable(self) -> bool:
        """False: a socket stream cannot seek."""
        self._check_open()
        return False

    def isatty(self) -> bool:
        """False: a socket is not a terminal."""
        self._check_open()
        return False

    def _unsupported(self, what: str) -> NoReturn:
        self._check_open()
        raise io.UnsupportedOperation(f"{what}: a socket stream is not seekable")

    def tell(self) -> int:
        """Always ``io.UnsupportedOperation`` (an ``OSError``): a socket has no position."""
        self._unsupported("tell")

    def seek(self, offset: int, whence: int = 0) -> int:
        """Always ``io.UnsupportedOperation`` (an ``OSError``)."""
        self._unsupported("seek")

    def truncate(self, size: int | None = None) -> int:
        """Always ``io.UnsupportedOperation`` (an ``OSError``)."""
        self._unsupported("truncate")

    @property
    def name(self) -> int:
        """The socket's descriptor, as ``socket.makefile`` gives it (-1 once closed)."""
        if self._closed:
            return -1
        try:
            return self.fileno()
        except ValueError:  # no socket
            return -1

    @property
    def mode(self) -> str:
        """``"rb"``, ``"wb"`` or ``"rwb"`` by direction; ``"r"``, ``"w"``, ``"rw"`` on base-char."""
        return _MODES[self._direction, self._element_type == "base-char"]


# Virtual subclass: isinstance(stream, io.IOBase) without IOBase's __del__ (see above).
io.IOBase.register(FileObjectMixin)

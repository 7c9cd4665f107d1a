"""The one place that picks the input buffer's implementation: compiled twin or pure Python.

Operations
    ``_speedups.InputBufferBase`` (C) holds the buffer's state under the pure class's attribute
    names.  ``_twin`` builds a class on it whose namespace is the pure class's (every Python
    method, property and constant of ``_buffer.InputBuffer`` or ``_textbuffer.TextInputBuffer``),
    except the verbs the C base provides, which then resolve to C: the stream binds them as its
    own, so its public ``read_char``, ``readline``, ... are builtin methods.  What is not in C
    stays the pure code, unchanged, run on the C state: the twin cannot drift where it is not
    compiled.

Choice
    ``SOCKSTREAM_PUREPYTHON`` set (to anything but ``""`` or ``"0"``) forces the pure classes;
    otherwise the twin is used when the extension was built.  ``ACCELERATED`` says which.
"""

from __future__ import annotations

import os
import types
from typing import Any, Final, cast

from . import _buffer, _textbuffer
from ._text import Codec

PureInputBuffer: Final = _buffer.InputBuffer
PureTextInputBuffer: Final = _textbuffer.TextInputBuffer

#: The C verbs of the plain (Latin-1, LF) buffer.
C_PLAIN: Final = (
    "read_char",
    "read_byte",
    "readline",
    "read_sequence",
    "maybe_take_char",
    "maybe_take_byte",
    "peek_char",
    "has_char",
    "maybe_take_line",
    "maybe_take_until",
)
#: The C verbs that do not depend on the encoding (the text buffer keeps the rest in Python).
C_TEXT: Final = ("read_byte", "read_sequence", "maybe_take_byte")

_SKIP: Final = frozenset({"__slots__", "__dict__", "__weakref__", "__module__", "__qualname__"})


def _no_batch(self: Any, *args: Any) -> bool:
    """The twin serves each line in C: no batches of lines or pieces."""
    return False


def _twin(pure: type, base: type, c_names: tuple[str, ...], batches: bool) -> type:
    """A class on ``base`` with ``pure``'s namespace, the ``c_names`` it inherits from
    ``_buffer.InputBuffer`` resolving to ``base``'s C methods."""
    ns: dict[str, Any] = {}
    slots: list[str] = []
    for klass in reversed(pure.__mro__[:-1]):
        for name, value in vars(klass).items():
            if name in _SKIP or isinstance(value, types.MemberDescriptorType):
                continue
            ns[name] = value
        for name in getattr(klass, "__slots__", ()):
            if not hasattr(base, name) and name not in slots:
                slots.append(name)  # state the C base does not hold (the text settings)
    for name in c_names:
        owner = next(k for k in pure.__mro__ if name in vars(k))
        if owner is PureInputBuffer:
            del ns[name]  # the C method of the base
    if not batches:
        ns["_start_batch"] = ns["_start_until_batch"] = _no_batch
    ns["__slots__"] = tuple(slots)
    ns["__module__"] = __name__
    ns["__qualname__"] = pure.__qualname__
    return type(pure.__name__, (base,), ns)


def _load() -> Any:
    if os.environ.get("SOCKSTREAM_PUREPYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    return _speedups


_speedups: Final = _load()

#: True when the compiled twin is in use.
ACCELERATED: Final = _speedups is not None

if _speedups is not None:
    AccelInputBuffer: type[_buffer.InputBuffer] | None = cast(
        "type[_buffer.InputBuffer]",
        _twin(PureInputBuffer, _speedups.InputBufferBase, C_PLAIN, batches=False),
    )
    AccelTextInputBuffer: type[_textbuffer.TextInputBuffer] | None = cast(
        "type[_textbuffer.TextInputBuffer]",
        _twin(PureTextInputBuffer, _speedups.InputBufferBase, C_TEXT, batches=True),
    )
else:
    AccelInputBuffer = AccelTextInputBuffer = None


def make_retype(plain: type[_buffer.InputBuffer], text: type[_textbuffer.TextInputBuffer]) -> Any:
    """``_textbuffer.retype`` for this pair of classes."""

    def retype(ib: _buffer.InputBuffer, codec: Codec, newline: str | None) -> _buffer.InputBuffer:
        """The buffer to use for these settings: ``ib`` itself, or a new one holding its state.

        Settles first, so no line cut under the old settings is served under the new ones.
        """
        ib.settle()
        new: _buffer.InputBuffer
        if _textbuffer.is_plain(codec, newline):
            if type(ib) is plain:
                return ib
            new = plain.__new__(plain)
        else:
            if type(ib) is text:
                ib.set_text(codec, newline)
                return ib
            new = text.__new__(text)
        for name in PureInputBuffer.__slots__:
            object.__setattr__(new, name, getattr(ib, name))
        if isinstance(new, text):
            new._last = None
            new.set_text(codec, newline)
        return new

    return retype


if AccelInputBuffer is not None and AccelTextInputBuffer is not None:
    InputBuffer: type[_buffer.InputBuffer] = AccelInputBuffer
    TextInputBuffer: type[_textbuffer.TextInputBuffer] = AccelTextInputBuffer
    retype = make_retype(AccelInputBuffer, AccelTextInputBuffer)
else:
    InputBuffer = PureInputBuffer
    TextInputBuffer = PureTextInputBuffer
    retype = _textbuffer.retype

__all__ = ["ACCELERATED", "InputBuffer", "TextInputBuffer", "retype"]

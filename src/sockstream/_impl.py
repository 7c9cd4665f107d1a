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
import warnings
from typing import TYPE_CHECKING, Any, Final, cast

from . import _buffer, _output, _textbuffer
from ._text import Codec

PureInputBuffer: Final = _buffer.InputBuffer
PureTextInputBuffer: Final = _textbuffer.TextInputBuffer

#: The verbs in C, for both buffers (the text buffer's decode with its codec in C, and call the
#: pure method, kept as ``_py_<verb>``, for what they do not handle).
C_VERBS: Final = (
    "read_char",
    "read_byte",
    "readline",
    "read_line",
    "read_sequence",
    "maybe_take_char",
    "maybe_take_byte",
    "peek_char",
    "has_char",
    "maybe_take_line",
    "maybe_take_until",
    "writable",
    "commit",
)

_SKIP: Final = frozenset({"__slots__", "__dict__", "__weakref__", "__module__", "__qualname__"})


def _no_batch(self: Any, *args: Any) -> bool:
    """The twin serves each line in C: no batches of lines or pieces."""
    return False


def _rebound(value: Any, cls: type) -> Any:
    """``value`` itself, or, for a function whose zero-argument ``super()`` names its class, a
    copy that names ``cls`` (the twin) instead."""
    if not isinstance(value, types.FunctionType) or "__class__" not in value.__code__.co_freevars:
        return value
    cells = tuple(
        types.CellType(cls) if name == "__class__" else cell
        for name, cell in zip(value.__code__.co_freevars, value.__closure__ or (), strict=True)
    )
    fn = types.FunctionType(
        value.__code__, value.__globals__, value.__name__, value.__defaults__, cells
    )
    fn.__kwdefaults__ = value.__kwdefaults__
    fn.__qualname__ = value.__qualname__
    fn.__doc__ = value.__doc__
    fn.__dict__.update(value.__dict__)
    return fn


def _twin(pure: type, base: type, c_names: tuple[str, ...]) -> type:
    """A class on ``base`` (the C type, or the plain twin) with ``pure``'s own namespace; those
    of ``c_names`` that ``pure`` defines are kept as ``_py_<name>``, so the names resolve to the
    C methods of the base.  ``TextInputBuffer`` is twinned on the plain twin, so the classes
    mirror the pure ones and ``super()`` goes where it does there."""
    ns: dict[str, Any] = {}
    for name, value in vars(pure).items():
        if name in _SKIP or isinstance(value, types.MemberDescriptorType):
            continue
        ns[name] = value
    for name in c_names:
        if name in ns:
            ns["_py_" + name] = ns.pop(name)
    # State the C base does not hold (the text buffer's _term, _batch_end).
    ns["__slots__"] = tuple(n for n in vars(pure).get("__slots__", ()) if not hasattr(base, n))
    # The twin serves every piece in C: whatever cuts a batch (of lines, pieces, characters, a
    # byte window) cuts none.
    for name in list(ns):
        if name.startswith("_start_") and callable(ns[name]):
            ns[name] = _no_batch
    ns["__module__"] = __name__
    ns["__qualname__"] = pure.__qualname__
    cls = type(pure.__name__, (base,), ns)
    for name, value in list(vars(cls).items()):
        fixed = _rebound(value, cls)
        if fixed is not value:
            setattr(cls, name, fixed)
    return cls


#: The stream's verbs in C (``_speedups.StreamBase``, over the stream's ``_in``); the stream's
#: pure methods are kept as ``_py_<verb>``, which the C verbs call for what they do not serve.
STREAM_C_VERBS: Final = ("peek_char", "unread_char", "listen", "read_until", "read", "__next__")

#: The writing verbs in C (``_speedups.OutputBufferBase``); the pure ones are kept as
#: ``_py_<verb>``, which the C verbs call for what they do not serve.
W_VERBS: Final = (
    "write_char",
    "write_string",
    "write_line",
    "write_byte",
    "write_sequence",
    "write",
)


def missing_from(module: Any) -> str | None:
    """The first C type or verb the package needs that ``module`` lacks, or None.

    An extension built from older sources (an editable install keeps its ``.so`` until it is
    rebuilt) must not be half used: the package then runs pure Python and says so.
    """
    for type_name, verbs in (
        ("InputBufferBase", C_VERBS),
        ("StreamBase", STREAM_C_VERBS),
        ("OutputBufferBase", W_VERBS),
    ):
        base = getattr(module, type_name, None)
        if base is None:
            return type_name
        for verb in verbs:
            if not hasattr(base, verb):
                return f"{type_name}.{verb}"
    return None if hasattr(module, "same_list") else "same_list"


def _load() -> Any:
    if os.environ.get("SOCKSTREAM_PUREPYTHON", "") not in ("", "0"):
        return None
    try:
        from . import _speedups
    except ImportError:
        return None
    missing = missing_from(_speedups)
    if missing is not None:
        warnings.warn(
            f"sockstream: the C extension was built from older sources (it has no {missing}); "
            "using pure Python (rebuild it: pip install -e .)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return _speedups


_speedups: Final = _load()

#: True when the compiled twin is in use.
ACCELERATED: Final = _speedups is not None

AccelInputBuffer: type[_buffer.InputBuffer] | None = None
AccelTextInputBuffer: type[_textbuffer.TextInputBuffer] | None = None
if _speedups is not None:
    _plain = _twin(PureInputBuffer, _speedups.InputBufferBase, C_VERBS)
    AccelInputBuffer = cast("type[_buffer.InputBuffer]", _plain)
    AccelTextInputBuffer = cast(
        "type[_textbuffer.TextInputBuffer]", _twin(PureTextInputBuffer, _plain, C_VERBS)
    )


class PureStreamBase:
    """The stream's base in the pure core: nothing (its verbs are its own methods)."""

    __slots__ = ()


if TYPE_CHECKING:
    StreamBase = PureStreamBase
else:
    StreamBase = PureStreamBase if _speedups is None else _speedups.StreamBase


def twin_stream(cls: type) -> None:
    """With the twin, make ``cls``'s verbs of ``STREAM_C_VERBS`` resolve to ``StreamBase``'s C
    methods (and ``__next__`` to its C slot: ``for line in stream`` calls C), keeping each pure
    method as ``_py_<verb>``; the pure core leaves ``cls`` as it is."""
    if StreamBase is PureStreamBase:
        return
    for name in STREAM_C_VERBS:
        setattr(cls, "_py_" + name, vars(cls)[name])
        delattr(cls, name)


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

# ---- the output buffer: the writing verbs (``_output``) ----------------------------------------

PureOutputBuffer: Final = _output.OutputBuffer
AccelOutputBuffer: type[_output.OutputBuffer] | None = None
if _speedups is not None:
    AccelOutputBuffer = cast(
        "type[_output.OutputBuffer]",
        _twin(PureOutputBuffer, _speedups.OutputBufferBase, W_VERBS),
    )
OutputBuffer: type[_output.OutputBuffer] = AccelOutputBuffer or PureOutputBuffer

__all__ = [
    "ACCELERATED",
    "InputBuffer",
    "OutputBuffer",
    "StreamBase",
    "TextInputBuffer",
    "retype",
    "twin_stream",
]

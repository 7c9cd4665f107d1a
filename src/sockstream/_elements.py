"""Element types and the conversions between characters, bytes and signed bytes.  Pure.

Characters are 8-bit: a character is the byte ``ord(char)``, a byte is the character ``chr(byte)``
(Latin-1, LispWorks' code-char / char-code on base-char).  Signed bytes are the unsigned byte
reinterpreted in two's complement, as ``(signed-byte 8)`` is in LispWorks.  Every conversion here
runs in C (``str.encode``, ``bytes.translate``, ``array``), never as a Python loop per byte.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterable
from typing import Final, Literal

ElementType = Literal["base-char", "unsigned-byte-8", "signed-byte-8"]

BASE_CHAR: Final = "base-char"
UNSIGNED_BYTE_8: Final = "unsigned-byte-8"
SIGNED_BYTE_8: Final = "signed-byte-8"

_ELEMENT_TYPES: Final[dict[str, ElementType]] = {
    "base-char": "base-char",
    "unsigned-byte-8": "unsigned-byte-8",
    "(unsigned-byte 8)": "unsigned-byte-8",
    "signed-byte-8": "signed-byte-8",
    "(signed-byte 8)": "signed-byte-8",
}

DIRECTIONS: Final = ("input", "output", "io")

#: chr(i) for every byte, so that one character costs two subscripts.
CHARS: Final[tuple[str, ...]] = tuple(chr(i) for i in range(256))


def check_element_type(value: object) -> ElementType:
    """Return the canonical name of an element type, or raise ``ValueError`` naming the choices."""
    if isinstance(value, str):
        canonical = _ELEMENT_TYPES.get(value.strip().lower())
        if canonical is not None:
            return canonical
    raise ValueError(
        "element_type must be one of 'base-char', 'unsigned-byte-8' ('(unsigned-byte 8)') or "
        f"'signed-byte-8' ('(signed-byte 8)'), not {value!r}"
    )


def check_direction(value: object) -> str:
    """Return the direction, or raise ``ValueError`` naming the choices."""
    if isinstance(value, str) and value in DIRECTIONS:
        return value
    raise ValueError(f"direction must be 'input', 'output' or 'io', not {value!r}")


def encode_chars(text: str) -> bytes:
    """Encode 8-bit characters; a character above 255 is a ``ValueError`` that names it."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise ValueError(
            f"character {bad!r} (code {ord(bad)}) at index {exc.start} is above 255 and cannot "
            "be written to an 8-bit stream; nothing was written"
        ) from None
    except AttributeError:
        raise TypeError(f"expected a str, not {type(text).__name__}") from None


def byte_range(element_type: ElementType) -> tuple[int, int]:
    """The integers that stand for bytes on a stream of this element type."""
    return (-128, 127) if element_type == "signed-byte-8" else (0, 255)


def check_byte(value: object, element_type: ElementType) -> int:
    """Return the raw byte (0..255) for an integer of the element type, or raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"a byte must be an int, not {type(value).__name__} {value!r}")
    lo, hi = byte_range(element_type)
    if not lo <= value <= hi:
        raise ValueError(f"byte {value} is out of range {lo}..{hi}; nothing was written")
    return value & 0xFF


def encode_ints(values: Iterable[object], element_type: ElementType) -> bytes:
    """Encode integers of the element type as raw bytes (C fast path, Python only on error)."""
    try:
        if element_type == "signed-byte-8":
            return array.array("b", values).tobytes()  # type: ignore[type-var]
        return bytes(values)  # type: ignore[arg-type]
    except (ValueError, OverflowError, TypeError):
        for v in values:
            check_byte(v, element_type)
        raise


def encode_items(
    items: list[object] | tuple[object, ...],
    element_type: ElementType,
    encode: Callable[[str], bytes] | None = None,
) -> bytes:
    """Encode a list or tuple of characters, or of integers, as raw bytes.  Validates all first.

    ``encode`` turns characters into bytes (the stream's encoding; 8-bit by default).
    """
    if encode is None:
        encode = encode_chars
    if not items:
        return b""
    if all(type(x) is str for x in items):
        text = "".join(items)  # type: ignore[arg-type]
        if len(text) != len(items):
            bad = next(x for x in items if len(x) != 1)  # type: ignore[arg-type]
            raise ValueError(f"a sequence of characters must hold single characters, not {bad!r}")
        return encode(text)
    if all(type(x) is int for x in items):
        return encode_ints(items, element_type)  # in C
    out = bytearray()
    for x in items:
        if isinstance(x, str) and len(x) == 1:
            out += encode(x)
        else:
            out.append(check_byte(x, element_type))
    return bytes(out)


def decode_signed(data: bytes | bytearray | memoryview) -> list[int]:
    """Raw bytes as a list of signed integers."""
    return array.array("b", bytes(data)).tolist()


def decode_list(data: bytes | bytearray | memoryview, element_type: ElementType) -> list[object]:
    """Raw bytes as list elements of the stream's natural kind (chars on base-char, else ints)."""
    if element_type == "base-char":
        return list(bytes(data).decode("latin-1"))
    if element_type == "signed-byte-8":
        return list(decode_signed(data))
    return list(bytes(data))

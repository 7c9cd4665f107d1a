"""Where CPython can run a signal handler, and a ``KeyboardInterrupt`` raised at exactly one
such point: an opcode trace hook shared by the interrupt tests.

A signal handler (and so a ``KeyboardInterrupt``) runs only at some points of the bytecode:
after a call instruction returns, after a backward jump, at a function's entry (a call, or a
generator resumed), and on 3.10 also after a taken conditional jump and at the entry of an
exception handler (but never before a ``SETUP_FINALLY`` or ``SETUP_WITH`` there). ``Tracer``
records every such point that the traced code passes (``seen``, as ``(code, offset)``;
``ENTRY`` for the entry), or raises a ``KeyboardInterrupt`` at one of them (``inject``), the
first time it is reached (or the ``inject_nth``), as a handler would.  (Raising in a trace
function ends the tracing: the ``KeyboardInterrupt`` is the last thing it does.)  The model
over-approximates slightly on 3.11 and later (a call into a Python function there is checked
at the callee's entry only), never under: a point that is passed is a point that is tried.
"""

from __future__ import annotations

import dis
import inspect
import itertools
import sys
from collections.abc import Callable
from types import CodeType, FrameType, TracebackType
from typing import Any

#: A landing point: a code object and the offset of the instruction before which the handler
#: runs, or ``ENTRY``.
Point = tuple[CodeType, int]
ENTRY = -1

_JUMPS_THAT_CHECK = {"JUMP_BACKWARD", "JUMP_ABSOLUTE"}
_OPS: dict[CodeType, dict[int, dis.Instruction]] = {}
#: Each instruction's offset -> the next one's (where it goes when it neither jumps nor raises).
_NEXT: dict[CodeType, dict[int, int]] = {}
_JUMPS = set(dis.hasjabs) | set(dis.hasjrel)
_NO_CHECK = {"SETUP_FINALLY", "SETUP_WITH", "BEFORE_ASYNC_WITH", "YIELD_FROM"}


def ops(code: CodeType) -> dict[int, dis.Instruction]:
    """``code``'s instructions by offset (cached)."""
    got = _OPS.get(code)
    if got is None:
        listed = list(dis.get_instructions(code))
        got = _OPS[code] = {i.offset: i for i in listed}
        _NEXT[code] = {a.offset: b.offset for a, b in itertools.pairwise(listed)}
    return got


def lands_after(prev: dis.Instruction, offset: int, code: CodeType | None = None) -> bool:
    """Whether a signal handler can run between ``prev`` and the instruction at ``offset``
    (of ``code``: to tell a call that returned from one that raised)."""
    if sys.version_info < (3, 11) and code is not None and ops(code)[offset].opname in _NO_CHECK:
        return False  # (3.10's loop does not check before these)
    successor = prev.offset + 2 if code is None else _NEXT[code].get(prev.offset)
    onward = offset == successor
    jumped = not onward and prev.opcode in _JUMPS and prev.argval == offset
    if not onward and not jumped:
        # An exception's way into a handler: 3.10 checks there (it resumes at the top of
        # its loop); 3.11 and later do not (after a call that raised, nothing is checked).
        return sys.version_info < (3, 11)
    if prev.opname.startswith("CALL") and prev.opname != "CALL_INTRINSIC_1":
        return True
    if prev.opname in _JUMPS_THAT_CHECK:
        return True
    # 3.10 also checks after a taken conditional jump (3.11 and later do not).
    return sys.version_info < (3, 11) and prev.opname.startswith("POP_JUMP_IF") and jumped


def describe(point: Point) -> str:
    """``point`` for a failure message: file, function, line and instruction."""
    code, offset = point
    where = f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_name}"
    if offset == ENTRY:
        return f"{where} at its entry"
    line = next((n for a, b, n in code.co_lines() if a <= offset < b), None)
    op = ops(code)[offset]
    return f"{where} line {line}, before offset {offset} ({op.opname} {op.argrepr})"


def key(point: Point) -> tuple[str, int, str, int]:
    """A sort key for ``point``: file, function, offset."""
    code, offset = point
    return (code.co_filename, code.co_firstlineno, code.co_name, offset)


def order(points: set[Point]) -> list[Point]:
    """``points`` in a stable order."""
    return sorted(points, key=key)


def library_code(code: CodeType) -> bool:
    """Whether ``code`` is the library's (``src/sockstream``, not the tests)."""
    return "/sockstream/" in code.co_filename and "/tests/" not in code.co_filename


class Tracer:
    """``with Tracer(wanted, inject, on_call):`` trace this thread.

    ``wanted(code)`` picks the frames whose landing points count.  Without ``inject`` every
    point they pass is added to ``seen``; with it, only ``inject``'s function is traced by
    opcode (fast), and a ``KeyboardInterrupt`` is raised there once (``fired``).  ``on_call``
    sees every frame's entry first (a peer's next step, say), wanted or not.
    """

    def __init__(
        self,
        wanted: Callable[[CodeType], bool] | None,
        inject: Point | None = None,
        on_call: Callable[[FrameType], None] | None = None,
    ) -> None:
        self.wanted = wanted
        self.inject = inject
        self.on_call = on_call
        self.seen: set[Point] = set()
        #: How many times each point was passed while ``tag`` (what the caller set: say, the
        #: step it runs) had each value, as ``{(tag, point): count}``.  With ``inject_tag``
        #: the interrupt comes only while ``tag`` is that, at the ``inject_nth`` time there.
        self.tag: Any = None
        self.inject_tag: Any = None
        self.inject_nth = 1
        self.tagged: dict[tuple[Any, Point], int] = {}
        self.fired = False
        self._old: Any = None

    def _hit(self, point: Point) -> None:
        if self.inject is None:
            self.seen.add(point)
            at = (self.tag, point)
            self.tagged[at] = self.tagged.get(at, 0) + 1
        elif (
            point == self.inject
            and not self.fired
            and (self.inject_tag is None or self.tag == self.inject_tag)
        ):
            self.inject_nth -= 1
            if self.inject_nth <= 0:
                self.fired = True
                raise KeyboardInterrupt

    def _glob(self, frame: FrameType, event: str, arg: Any) -> Any:
        if self.on_call is not None:
            self.on_call(frame)
        code = frame.f_code
        wanted = self.wanted
        if wanted is None or self.fired:
            return None
        if self.inject is not None:
            if code is not self.inject[0]:
                return None
        elif not wanted(code):
            return None
        if not code.co_flags & inspect.CO_GENERATOR:
            # (A generator's entries are its resumptions, and one is its close when it is
            # dropped, where an exception is only "ignored": not tried.)
            self._hit((code, ENTRY))
        frame.f_trace_opcodes = True
        table = ops(code)
        prev: list[dis.Instruction | None] = [None]

        def local(frame: FrameType, event: str, arg: Any) -> Any:
            if event != "opcode":
                # (3.13.0 starts opcode events only once this is set again after the call)
                frame.f_trace_opcodes = True
                return local
            here = frame.f_lasti
            before = prev[0]
            prev[0] = table.get(here)
            if before is not None and lands_after(before, here, code):
                self._hit((code, here))
            return local

        return local

    def __enter__(self) -> Tracer:
        self._old = sys.gettrace()
        sys.settrace(self._glob)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.settrace(self._old)

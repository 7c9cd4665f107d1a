"""An interrupt at each point of the writing verbs where a signal handler can run.

As ``test_read_interrupts.py`` for output: a few writing verbs in a row (the fast paths and
the slow ones: ``start``/``end``, memoryviews, lists, arrays, a refused character, a write
large enough to flush), then ``shutdown_output`` or ``close``; a traced run records every
landing point of the library's frames that each verb passes (``landing.py``), then the
scenario runs again once per (verb, point) with a ``KeyboardInterrupt`` raised there, and the
test closes the stream (flushing).  The peer must have received what the verbs before wrote,
and of the interrupted verb nothing or all of it; or, if the stream says it broke, a prefix
of that.  Both output buffer implementations.
"""

from __future__ import annotations

import array
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import PeerThread, drain
from landing import Point, Tracer, describe, key, library_code
from sockstream import SocketIOError, SocketStream

Step = Callable[[SocketStream], Any]

_CHARS = "w" if sys.version_info >= (3, 13) else "u"  # ('u' is deprecated from 3.13)
_BIG = b"".join(b"%08d\n" % i for i in range(9000))  # over the 64 KiB that starts a flush


def _refused(s: SocketStream) -> None:
    with pytest.raises(ValueError, match="above 255"):
        s.write_string("ok \u20ac")  # (Latin-1: nothing of it is written)


@dataclass(frozen=True)
class Scenario:
    element_type: str
    steps: Sequence[tuple[str, Step]]


SCENARIOS: dict[str, Scenario] = {
    "text": Scenario(
        "base-char",
        [
            ("write_char", lambda s: s.write_char("a")),
            ("write_string", lambda s: s.write_string("bcd")),
            ("write_string[1:3]", lambda s: s.write_string("xefx", 1, 3)),
            ("write_line", lambda s: s.write_line("gh")),
            ("refused", _refused),
            ("write_sequence(list)", lambda s: s.write_sequence(["i", "j"])),
            ("write_sequence(array)", lambda s: s.write_sequence(array.array(_CHARS, "kl"))),
            ("write(str)", lambda s: s.write("mn")),
            ("write(memoryview)", lambda s: s.write(memoryview(b"op"))),
            ("write_sequence(big)", lambda s: s.write_sequence(_BIG)),
            ("write_char", lambda s: s.write_char("q")),
            ("force_output", lambda s: s.force_output()),
            ("write_line", lambda s: s.write_line("rs")),
            ("shutdown_output", lambda s: s.shutdown_output()),
        ],
    ),
    "bytes": Scenario(
        "unsigned-byte-8",
        [
            ("write_byte", lambda s: s.write_byte(65)),
            ("write_sequence", lambda s: s.write_sequence(b"BCD")),
            ("write_sequence[1:3]", lambda s: s.write_sequence(bytearray(b"xEFx"), 1, 3)),
            ("write_sequence(memoryview)", lambda s: s.write_sequence(memoryview(b"GH"))),
            ("write_sequence(list)", lambda s: s.write_sequence([73, 74])),
            ("write_sequence(array B)", lambda s: s.write_sequence(array.array("B", b"KL"))),
            ("write(memoryview[1:])", lambda s: s.write(memoryview(b"xMN")[1:])),
            ("write(big)", lambda s: s.write(memoryview(_BIG))),
            ("write_byte", lambda s: s.write_byte(79)),
            ("close", lambda s: s.close()),
        ],
    ),
}


@dataclass
class Run:
    got: bytes  # what the peer received
    broken: bool
    interrupted: int | None
    seen: dict[tuple[int, Point], int]  # (a step, a landing point it passed): how often


def _run(
    scn: Scenario,
    *,
    record: bool = False,
    inject: tuple[int, Point, int] | None = None,
    upto: int | None = None,
) -> Run:
    a, b = socket.socketpair()
    interrupted = None
    broken = False
    with b:
        collector = PeerThread(drain, b)
        collector.start()
        s = SocketStream(a, "io", scn.element_type)
        tracer = Tracer(library_code if record or inject else None, inject and inject[1])
        if inject is not None:
            tracer.inject_tag, _, tracer.inject_nth = inject
        try:
            with tracer:
                for i, (_, step) in enumerate(scn.steps[:upto]):
                    tracer.tag = i
                    try:
                        step(s)
                    except KeyboardInterrupt:
                        interrupted = i
                        break
            broken = bool(s._why_broken)
            try:
                s.close()  # flushes what is left
            except SocketIOError as exc:
                assert "broken" in str(exc) or "interrupted" in str(exc)  # noqa: PT017
                broken = True
        finally:
            s.close(abort=True)
        got: bytes = collector.join_checked()
    if inject is not None:
        assert tracer.fired, f"never reached {describe(inject[1])}"
        assert interrupted is not None, f"the interrupt at {describe(inject[1])} was swallowed"
    return Run(got, broken, interrupted, tracer.tagged)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_an_interrupt_at_each_landing_point_of_the_writing_verbs(
    buffer_impl: str, name: str
) -> None:
    scn = SCENARIOS[name]
    ref = _run(scn, record=True)
    assert ref.interrupted is None
    assert not ref.broken
    sent = [_run(scn, upto=k).got for k in range(len(scn.steps) + 1)]
    assert sent[-1] == ref.got
    failures = []
    # Each landing point of each step, the first time the step passes it and the last.
    tries = [
        (k, point, nth) for (k, point), count in ref.seen.items() for nth in sorted({1, count})
    ]
    for k_at, point, nth in sorted(tries, key=lambda t: (t[0], key(t[1]), t[2])):
        run = _run(scn, inject=(k_at, point, nth))
        k = run.interrupted
        assert k is not None
        if run.got in (sent[k], sent[k + 1]):
            continue
        if (run.broken or scn.steps[k][0] == "close") and sent[k + 1].startswith(run.got):
            # (An interrupted close still closes, as with abort=True: what it had not sent
            # yet is dropped, and the caller sees the interrupt.)
            continue
        failures.append(
            f"{describe(point)} (time {nth}): step {k} ({scn.steps[k][0]}): the peer got "
            f"{len(run.got)} bytes, not {len(sent[k])} (nothing written) or "
            f"{len(sent[k + 1])} (all of it)"
            f"{' (broken)' if run.broken else ''}"
        )
    assert not failures, f"{len(failures)} of {len(tries)} tries:\n" + "\n".join(failures)

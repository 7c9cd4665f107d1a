"""An interrupt at each point of the reading verbs where a signal handler can run.

Each scenario is a stream, a peer that sends numbered records in pieces (one piece each time
the stream receives: some verbs wait for a refill, some meet a byte window's end, some see
end-of-file) and a few reading verbs in a row.  A first run, traced, records every landing
point of the library's frames that the scenario passes (``landing.py``); then the scenario is
run again once per point, with a ``KeyboardInterrupt`` raised there, and after it the test
reads the rest of the input raw (``readinto``).  The interrupted verb may have consumed
nothing, or exactly what it would have returned (as if the interrupt landed in the caller
just after it returned), or the stream may say it broke; anything else (part of a result
lost, a byte twice) fails, naming the point.  Both buffer implementations (the C twin still
runs Python frames: the fill, the slow paths, the stream).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest

from landing import Point, Tracer, describe, key, library_code
from sockstream import LineTooLongError, SocketIOError, SocketStream, _stream

Step = Callable[[SocketStream, list[Any]], Any]


@dataclass(frozen=True)
class Scenario:
    element_type: str
    options: dict[str, Any]
    data: bytes
    piece: int  # the peer sends this many bytes each time the stream receives
    steps: Sequence[tuple[str, Step]]


def _records(n: int, line: bytes = b"\n", text: str = "") -> bytes:
    """Numbered records of different lengths, and a last one without its terminator."""
    body = b"".join(
        b"%04d %s%s" % (i, b"x" * (i % 5) + text.encode() * (i % 2), line) for i in range(n)
    )
    return body + b"tail"


def _into(size: int, start: int = 0, end: int | None = None) -> Step:
    def step(s: SocketStream, got: list[Any]) -> Any:
        seq = bytearray(size)
        n = s.read_sequence(seq, start, end) if start or end is not None else s.read_sequence(seq)
        return bytes(seq[:n])

    return step


def _readinto(size: int) -> Step:
    def step(s: SocketStream, got: list[Any]) -> Any:
        buf = bytearray(size)
        return bytes(buf[: s.readinto(buf)])

    return step


def _unread(s: SocketStream, got: list[Any]) -> Any:
    return s.unread_char(got[-1])


def _n(name: str, step: Step, times: int = 1) -> list[tuple[str, Step]]:
    return [(name, step)] * times


_LINES = _n("readline", lambda s, g: s.readline(), 3)

SCENARIOS: dict[str, Scenario] = {
    "bytes": Scenario(
        "unsigned-byte-8",
        {},
        _records(40),
        37,
        [
            *_LINES,
            ("read(25)", lambda s, g: s.read(25)),
            *_LINES,
            ("read_sequence(30)", _into(30)),
            *_LINES,
            ("read_sequence(40, 5, 30)", _into(40, 5, 30)),
            *_LINES,
            ("read_sequence(20)", _into(20)),
            *_LINES,
            ("readinto(20)", _readinto(20)),
            *_n("read_byte", lambda s, g: s.read_byte(), 2),
            ("read_until", lambda s, g: s.read_until(b" ")),
            ("listen", lambda s, g: s.listen()),
            ("next", lambda s, g: next(iter(s))),
            ("read_sequence(40, 5, 30)", _into(40, 5, 30)),
            ("readline(5)", lambda s, g: s.readline(5)),
            ("read(12)", lambda s, g: s.read(12)),
            *_n("next", lambda s, g: next(iter(s)), 2),
            ("read(200)", lambda s, g: s.read(200)),
            ("readline", lambda s, g: s.readline()),
        ],
    ),
    "bytes-large": Scenario(
        "unsigned-byte-8",
        {},
        _records(3000),
        5000,
        [
            *_LINES,
            ("read(20000)", lambda s, g: s.read(20000)),  # (16 KiB and more: straight into
            ("read_sequence(17000)", _into(17000)),  # the caller's memory, refills there)
            ("readinto(16384)", _readinto(16384)),
            ("readline", lambda s, g: s.readline()),
            ("read_sequence(20000, 1, 19000)", _into(20000, 1, 19000)),
            ("read(20000)", lambda s, g: s.read(20000)),
        ],
    ),
    "latin-1-large": Scenario(
        "base-char",
        {},
        _records(2000),
        7000,
        [
            *_n("read_line", lambda s, g: s.read_line(False, None), 3),
            ("read(20000)", lambda s, g: s.read(20000)),
            ("read_char", lambda s, g: s.read_char()),
            ("read(20000)", lambda s, g: s.read(20000)),
        ],
    ),
    "bytes-limit": Scenario(
        "unsigned-byte-8",
        {"max_line_length": 12},
        _records(8) + b"\n" + b"y" * 20 + b"\n" + _records(8),
        23,
        [
            *_LINES,
            ("read(15)", lambda s, g: s.read(15)),
            *_n("readline", lambda s, g: s.readline(), 5),
            ("read_sequence(25)", _into(25)),
            ("readline", lambda s, g: s.readline()),
            ("read_until", lambda s, g: s.read_until(b"x")),
            *_LINES,
        ],
    ),
    "latin-1": Scenario(
        "base-char",
        {},
        _records(20),
        29,
        [
            *_n("read_line", lambda s, g: s.read_line(False, None), 3),
            *_n("read_char", lambda s, g: s.read_char(), 18),
            ("peek_char", lambda s, g: s.peek_char()),
            ("read_char", lambda s, g: s.read_char()),
            ("unread_char", _unread),
            ("readline", lambda s, g: s.readline()),
            ("read(11)", lambda s, g: s.read(11)),
            ("read_until", lambda s, g: s.read_until(" ", False, None)),
            ("listen", lambda s, g: s.listen()),
            ("next", lambda s, g: next(iter(s))),
            ("read_sequence(10)", _into(10)),
            *_n("read_line", lambda s, g: s.read_line(False, None), 4),
            ("read(100)", lambda s, g: s.read(100)),
            ("read_line", lambda s, g: s.read_line(False, None)),
        ],
    ),
    "latin-1-limit": Scenario(
        "base-char",
        {"max_line_length": 10},
        _records(6) + b"z" * 14 + b"\n" + _records(6),
        19,
        [
            *_n("read_line", lambda s, g: s.read_line(False, None), 8),
            ("read_char", lambda s, g: s.read_char()),
            *_n("read_line", lambda s, g: s.read_line(False, None), 4),
        ],
    ),
    "utf-8": Scenario(
        "base-char",
        {"encoding": "utf-8"},
        _records(16, text="é€"),
        17,
        [
            *_n("read_line", lambda s, g: s.read_line(False, None), 3),
            *_n("read_char", lambda s, g: s.read_char(), 6),
            ("peek_char", lambda s, g: s.peek_char()),
            ("read_char", lambda s, g: s.read_char()),
            ("unread_char", _unread),
            ("readline", lambda s, g: s.readline()),
            ("read(7)", lambda s, g: s.read(7)),
            ("read_until", lambda s, g: s.read_until("€", False, None)),
            ("listen", lambda s, g: s.listen()),
            ("next", lambda s, g: next(iter(s))),
            *_n("read_line", lambda s, g: s.read_line(False, None), 3),
            ("read(100)", lambda s, g: s.read(100)),
        ],
    ),
    "crlf": Scenario(
        "base-char",
        {"newline": "\r\n"},
        _records(16, b"\r\n"),
        21,
        [
            *_n("read_line", lambda s, g: s.read_line(False, None), 4),
            ("readline", lambda s, g: s.readline()),
            ("read_char", lambda s, g: s.read_char()),
            ("next", lambda s, g: next(iter(s))),
            ("read(9)", lambda s, g: s.read(9)),
            ("read_until", lambda s, g: s.read_until("x", False, None)),
            *_n("read_line", lambda s, g: s.read_line(False, None), 4),
            ("read_line", lambda s, g: s.read_line(False, None)),
        ],
    ),
}

_EXTRACT = _stream.SocketStream._extract.__code__


@dataclass
class Run:
    results: list[Any]
    interrupted: int | None  # the step the interrupt came out of
    rest: bytes | None  # read raw after the steps; None: the stream said it broke
    seen: dict[tuple[int, Point], int]  # (a step, a landing point it passed): how often


def _rest(s: SocketStream) -> bytes:
    out = bytearray()
    buf = bytearray(7)
    while n := s.readinto(buf):
        out += buf[:n]
    return bytes(out)


def _run(
    scn: Scenario,
    *,
    record: bool = False,
    inject: tuple[int, Point, int] | None = None,
    upto: int | None = None,
) -> Run:
    """Run ``scn``'s steps (the first ``upto``), traced (``record``: every point is recorded;
    ``inject``: the interrupt there), then read the rest."""
    a, b = socket.socketpair()
    pieces = [scn.data[i : i + scn.piece] for i in range(0, len(scn.data), scn.piece)]
    pieces.reverse()
    shut = [False]

    def send_next() -> None:
        if pieces:
            b.sendall(pieces.pop())
        elif not shut[0]:
            shut[0] = True
            b.shutdown(socket.SHUT_WR)

    def on_call(frame: FrameType) -> None:
        if frame.f_code is _EXTRACT:  # the stream receives: one more piece arrives
            send_next()

    results: list[Any] = []
    interrupted = None
    with b, SocketStream(a, "io", scn.element_type, read_timeout=10.0, **scn.options) as s:
        tracer = Tracer(library_code if record or inject else None, inject and inject[1], on_call)
        if inject is not None:
            tracer.inject_tag, _, tracer.inject_nth = inject
        with tracer:
            for i, (_, step) in enumerate(scn.steps[:upto]):
                tracer.tag = i
                try:
                    got = step(s, results)
                except (EOFError, LineTooLongError) as exc:
                    got = type(exc)
                except KeyboardInterrupt:
                    interrupted = i
                    break
                results.append(got)
        while pieces or not shut[0]:
            send_next()
        rest: bytes | None
        try:
            rest = _rest(s)
        except SocketIOError as exc:
            assert "broken" in str(exc)  # noqa: PT017
            rest = None
        if inject is not None:
            assert tracer.fired, f"never reached {describe(inject[1])}"
            assert interrupted is not None, f"the interrupt at {describe(inject[1])} was swallowed"
        s.close(abort=rest is None)
    return Run(results, interrupted, rest, tracer.tagged)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_an_interrupt_at_each_landing_point_of_the_reading_verbs(
    buffer_impl: str, name: str
) -> None:
    scn = SCENARIOS[name]
    ref = _run(scn, record=True)
    assert ref.interrupted is None
    assert ref.rest is not None
    # What is left after each step, read raw: the step's result consumed, or not yet.
    rests: list[bytes] = []
    for upto in range(len(scn.steps) + 1):
        left = _run(scn, upto=upto).rest
        assert left is not None
        rests.append(left)
    assert rests[-1] == ref.rest
    assert rests[0] == scn.data
    failures = []
    # Each landing point of each step, the first time the step passes it and the last.
    tries = [
        (k, point, nth) for (k, point), count in ref.seen.items() for nth in sorted({1, count})
    ]
    for k_at, point, nth in sorted(tries, key=lambda t: (t[0], key(t[1]), t[2])):
        run = _run(scn, inject=(k_at, point, nth))
        k = run.interrupted
        assert k is not None
        assert run.results == ref.results[:k]
        rest = run.rest
        if rest is None or rest in (rests[k], rests[k + 1]):
            continue
        failures.append(
            f"{describe(point)} (time {nth}): step {k} ({scn.steps[k][0]}): left {rest[:40]!r}, "
            f"not {rests[k][:40]!r} (nothing consumed) or {rests[k + 1][:40]!r} (its result)"
        )
    assert not failures, f"{len(failures)} of {len(tries)} tries:\n" + "\n".join(failures)

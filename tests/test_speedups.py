"""The compiled twin (``_speedups``): the selection, the verbs being C, and C against Python.

The differential test drives a pure buffer and its twin with the same random operations (feeds
in random chunkings, through ``feed`` and ``writable``/``commit``, every verb with random sizes,
limits and delimiters) and requires the same result or the same exception from each, then the
same bytes left.  ``scripts/asan`` runs this file under AddressSanitizer.
"""

from __future__ import annotations

import array
import importlib.util
import inspect
import itertools
import os
import socket
import subprocess
import sys
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sockstream
from conftest import BUFFER_IMPLS, Make, PeerThread, drain, use_buffers
from sockstream import SocketStream, _impl
from sockstream._buffer import BYTES_LINE_NL, STR_LINE, STR_LINE_NL
from sockstream._text import Codec
from sockstream._textbuffer import retype as pure_retype

accelerated = pytest.mark.skipif(
    "accel" not in BUFFER_IMPLS, reason="the extension is not built (or SOCKSTREAM_PUREPYTHON)"
)

_BUILT = importlib.util.find_spec("sockstream._speedups") is not None


def _accelerated_in_child(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("SOCKSTREAM_PUREPYTHON", None)
    if env_value is not None:
        env["SOCKSTREAM_PUREPYTHON"] = env_value
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sockstream; "
            "print(sockstream.ACCELERATED, 'sockstream._speedups' in sys.modules)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_purepython_variable_forces_the_pure_core() -> None:
    assert _accelerated_in_child("1") == "False False"


def test_accelerated_when_built() -> None:
    assert _accelerated_in_child(None) == ("True True" if _BUILT else "False False")
    assert _accelerated_in_child("0") == ("True True" if _BUILT else "False False")
    assert isinstance(sockstream.ACCELERATED, bool)
    if os.environ.get("SOCKSTREAM_PUREPYTHON", "") in ("", "0"):
        assert sockstream.ACCELERATED is _BUILT


@accelerated
def test_public_verbs_are_c_callables(make: Make) -> None:
    if not sockstream.ACCELERATED:
        pytest.skip("this run uses the pure core")
    stream, _peer = make("unsigned-byte-8")
    verbs = (stream.read_char, stream.readline, stream.read_line, stream.read_byte)
    for verb in (*verbs, stream.read_sequence):
        assert type(verb) is types.BuiltinMethodType, verb
    assert type(stream._in).__mro__[1].__module__ == "sockstream._speedups"
    stream.encoding = "utf-8"  # the text buffer: its byte verbs are still C
    assert type(stream.read_byte) is types.BuiltinMethodType


@pytest.mark.parametrize("impl", BUFFER_IMPLS)
def test_argument_errors_are_the_same(impl: str, make: Make) -> None:
    undo = use_buffers(impl)
    try:
        s, b = make("unsigned-byte-8", read_timeout=0.05)
        b.sendall(b"line\nmore")
        with pytest.raises(TypeError, match="'x'"):
            s.readline("x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            s.read_char(1, 2, 3)  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            s.read_char(bogus=1)  # type: ignore[call-overload]
        with pytest.raises(TypeError):
            s.read_sequence(b"immutable")
        assert s.read_char(eof_error=False) == "l"
        assert s.read_byte(eof_value=None) == ord("i")
        assert s.readline(size=-1) == b"ne\n"
        seq = bytearray(2)
        assert s.read_sequence(seq=seq) == 2
        assert seq == b"mo"
    finally:
        undo()


# ---- C against Python ------------------------------------------------------------------------

_UNSIGNED = tuple(range(256))
_SIGNED = tuple(b - 256 if b > 127 else b for b in range(256))
_DELIMS = [b"\n", b"\r\n", b"\r\n\r\n", b"ab", b"a", b"\xff\xfe"]

_data = st.binary(max_size=24) | st.sampled_from(
    [
        b"\n",
        b"\r\n",
        b"abc\r\n\r\nx",
        "é😀\n".encode(),
        "ü€\r\n".encode(),
        b"\xff\n",
        b"aab",
        b"\r",
        b"\xc3",  # UTF-8: incomplete, then invalid ones
        b"\xa9",
        b"\xed\xa0\x80",  # a surrogate
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xc0\xaf",  # overlong
        b"\xe0\x80\xaf",
        b"\xf0\x9f",
        b"\x98\x80",
        "日本\n".encode("shift_jis"),
    ]
)
_op = st.one_of(
    st.tuples(st.just("feed"), _data),
    st.tuples(st.just("commit"), _data),
    st.tuples(st.just("read_char"), st.none()),
    st.tuples(st.just("read_byte"), st.none()),
    st.tuples(st.just("read_line"), st.none()),
    st.tuples(st.just("readline"), st.sampled_from([-1, -1, 0, 3, None])),
    st.tuples(
        st.just("read_sequence"),
        st.tuples(
            st.integers(0, 12), st.sampled_from([0, 1]), st.one_of(st.none(), st.integers(0, 13))
        ),
    ),
    st.tuples(st.just("maybe_take_char"), st.booleans()),
    st.tuples(st.just("maybe_take_byte"), st.none()),
    st.tuples(st.just("peek_char"), st.none()),
    st.tuples(st.just("has_char"), st.none()),
    st.tuples(
        st.just("maybe_take_line"),
        st.tuples(st.sampled_from([STR_LINE, STR_LINE_NL, BYTES_LINE_NL]), st.integers(-1, 6)),
    ),
    st.tuples(
        st.just("maybe_take_until"),
        st.tuples(st.sampled_from(_DELIMS), st.booleans(), st.sampled_from([-1, None, 0, 2, 7])),
    ),
    st.tuples(st.just("unread_char"), st.sampled_from(["a", "\n", "é", "😀", "x", "\udcff"])),
    st.tuples(st.just("unread_byte"), st.integers(0, 255)),
    st.tuples(st.just("forbid_unread"), st.none()),
    st.tuples(st.just("take"), st.integers(0, 30)),
    st.tuples(st.just("take_into"), st.integers(0, 30)),
    st.tuples(st.just("maybe_take"), st.integers(0, 30)),
    st.tuples(st.just("unread_bytes"), st.binary(max_size=6)),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("len"), st.none()),
    st.tuples(st.just("set_max_line"), st.none() | st.integers(0, 10)),
)


#: Mostly lines in a row (the text window), with everything else in between.
_text_line = st.lists(st.sampled_from(["ab", "é€", "😀", "\r", "x" * 9, "\r\n"]), max_size=5).map(
    lambda parts: ("".join(parts) + "\n").encode("utf-8", "surrogatepass")
)
_line_read_op = st.one_of(
    st.tuples(st.just("read_line"), st.none()),
    st.tuples(st.just("readline"), st.just(-1)),
    st.tuples(
        st.just("maybe_take_line"), st.tuples(st.sampled_from([STR_LINE, STR_LINE_NL]), st.just(-1))
    ),
)
_line_feed_op = st.one_of(
    st.tuples(st.just("feed"), st.lists(_text_line, min_size=1, max_size=12).map(b"".join)),
    st.tuples(st.just("feed"), st.sampled_from([b"a\r\n" * 4, "ü\r\nü\n".encode() * 3])),
)
#: Everything else, but no feeds: an invalid byte in a strict buffer stops every line read at
#: it (as it must), which would end the run of lines.
_other_op = _op.filter(lambda op: op[0] not in ("feed", "commit"))


def _run(ib: Any, op: str, arg: Any, table: tuple[int, ...], kind: int) -> Any:
    """One operation; its result, or the exception it raised (type and message)."""
    try:
        if op == "feed":
            return ib.feed(arg)
        if op == "commit":
            view = ib.writable(max(1, len(arg)))
            view[: len(arg)] = arg
            view.release()
            return ib.commit(len(arg))
        if op == "read_char":
            return ib.read_char()
        if op == "read_byte":
            return ib.read_byte(False, "eof")
        if op == "read_line":
            return ib.read_line(False, "eof")
        if op == "readline":
            return ib.readline() if arg == -1 else ib.readline(arg)
        if op == "read_sequence":
            n, start, end = arg
            seq = bytearray(n)
            if end is not None:
                got = ib.read_sequence(seq, start, end)
            else:
                got = ib.read_sequence(seq) if start == 0 else ib.read_sequence(seq, start)
            return got, bytes(seq)
        if op == "maybe_take_char":
            return ib.maybe_take_char(arg)
        if op == "maybe_take_byte":
            return ib.maybe_take_byte(table)
        if op == "peek_char":
            return ib.peek_char()
        if op == "has_char":
            return ib.has_char()
        if op == "maybe_take_line":
            return ib.maybe_take_line(*arg)
        if op == "maybe_take_until":
            return ib.maybe_take_until(*arg)
        if op == "unread_char":
            return ib.unread_char(arg)
        if op == "unread_byte":
            return ib.unread_byte(arg)
        if op == "forbid_unread":
            return ib.forbid_unread()
        if op == "take":
            return ib.take(arg)
        if op == "take_into":
            buf = bytearray(arg)
            return ib.take_into(memoryview(buf)), bytes(buf)
        if op == "maybe_take":
            return ib.maybe_take(arg)
        if op == "unread_bytes":
            return ib.unread_bytes(arg)
        if op == "clear":
            return ib.clear()
        if op == "len":
            return len(ib)
        if op == "set_max_line":
            ib.settle()
            ib._max_line = arg
            return None
        raise AssertionError(op)  # pragma: no cover
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def _served(ib: Any, table: tuple[int, ...], kind: int) -> None:
    """The stream's slow paths, without the socket: what the buffer holds (the pure verbs hand
    a batch to them), else a marker, so the verbs' fallbacks are compared too."""

    def slow_char(eof_error: Any, eof_value: Any) -> Any:
        got = ib.maybe_take_char()
        return ("slow_char", eof_error, eof_value) if got is None else got

    def slow_byte(eof_error: Any, eof_value: Any) -> Any:
        got = ib.maybe_take_byte(table)
        return ("slow_byte", eof_error, eof_value) if got is None else got

    def slow_line(size: Any) -> Any:
        got = None
        if size is None or size == -1:
            got = ib.maybe_take_line(kind)
        elif type(size) is int and size >= 0:
            got = ib.maybe_take_line(kind, size)
        if got is None:
            return ("slow_line", size)
        return got.decode("latin-1") if kind != BYTES_LINE_NL and type(got) is bytes else got

    def slow_seq(seq: Any, start: Any, end: Any) -> Any:
        if type(seq) is bytearray and start == 0 and end is None:
            n = ib.maybe_fill(seq)
            if n >= 0:
                return n
        return ("slow_seq", len(seq), start, end)

    def slow_read_line(eof_error: Any, eof_value: Any) -> Any:
        got = ib.maybe_take_line(STR_LINE)
        return ("slow_read_line", eof_error, eof_value) if got is None else got

    ib.serve_elements(slow_char, slow_byte, table, slow_line, kind, slow_seq, slow_read_line)


_SETTINGS = [
    ("latin-1", "\n", "strict"),
    ("utf-8", "\n", "strict"),
    ("utf-8", "\r\n", "strict"),
    ("utf-8", None, "strict"),
    ("utf-8", "\n", "replace"),
    ("utf-8", "\r\n", "surrogateescape"),
    ("utf-8", None, "ignore"),
    ("utf-8", "\n", "backslashreplace"),
    ("ascii", "\n", "strict"),
    ("ascii", "\r\n", "replace"),
    ("latin-1", "\r\n", "strict"),
    ("latin-1", None, "strict"),
    ("cp1252", "\n", "replace"),
    ("shift_jis", "\r\n", "strict"),
]


@accelerated
@pytest.mark.timeout(600)
@settings(
    max_examples=int(os.environ.get("SOCKSTREAM_SPEEDUPS_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    ops=st.lists(_op, max_size=50),
    size=st.sampled_from([1, 4, 16, 65536]),
    mll=st.none() | st.integers(0, 12),
    text=st.sampled_from(_SETTINGS),
    signed=st.booleans(),
    bytes_kind=st.booleans(),
)
# Lines of another kind than readline's, two in a row after two lines: the pure buffer batched
# them, and readline then served that batch (bytes from a str buffer, str from a bytes one).
@example(
    ops=[("feed", b"a\nb\nc\nd\n"), *[("readline", -1)] * 2, ("maybe_take_line", (2, -1))]
    + [("readline", -1)] * 2,
    size=16,
    mll=None,
    text=("utf-8", "\n", "strict"),
    signed=False,
    bytes_kind=False,
)
@example(
    ops=[("feed", b"a\nb\nc\nd\n"), *[("read_line", None)] * 2, ("maybe_take_line", (1, -1))]
    + [("readline", -1)] * 2,
    size=16,
    mll=None,
    text=("latin-1", "\n", "strict"),
    signed=False,
    bytes_kind=True,
)
def test_twin_matches_pure(
    ops: list[tuple[str, Any]],
    size: int,
    mll: int | None,
    text: tuple[str, str | None, str],
    signed: bool,
    bytes_kind: bool,
) -> None:
    table = _SIGNED if signed else _UNSIGNED
    kind = BYTES_LINE_NL if bytes_kind else STR_LINE_NL
    enc, newline, errors = text
    plain, text_cls = _impl.AccelInputBuffer, _impl.AccelTextInputBuffer
    assert plain is not None
    assert text_cls is not None
    retype = _impl.make_retype(plain, text_cls)
    codec = Codec(enc, errors)
    pure = _impl.PureInputBuffer(size, mll)
    twin = plain(size, mll)

    pure = pure_retype(pure, codec, newline)
    twin = retype(twin, codec, newline)
    for ib in (pure, twin):
        _served(ib, table, kind)
    for i, (op, arg) in enumerate(ops):
        want = _run(pure, op, arg, table, kind)
        got = _run(twin, op, arg, table, kind)
        assert got == want, (i, op, arg)
    pure.settle()
    twin.settle()
    assert twin.take_all() == pure.take_all()


@accelerated
@pytest.mark.timeout(600)  # (scripts/asan runs thousands of examples, sanitized)
@settings(
    max_examples=int(os.environ.get("SOCKSTREAM_SPEEDUPS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    ops=st.lists(
        st.integers(0, 9).flatmap(
            lambda k: _line_read_op if k < 7 else _line_feed_op if k < 9 else _other_op
        ),
        min_size=20,
        max_size=80,
    ),
    size=st.sampled_from([16, 65536]),
    mll=st.none() | st.integers(0, 40),
    text=st.sampled_from([s for s in _SETTINGS if s[0] == "utf-8"] * 3 + _SETTINGS),
)
def test_twin_matches_pure_on_runs_of_lines(
    ops: list[tuple[str, Any]], size: int, mll: int | None, text: tuple[str, str | None, str]
) -> None:
    """Lines in a row (served from the twin's decoded window), interrupted by everything."""
    test_twin_matches_pure.hypothesis.inner_test(
        ops=ops, size=size, mll=mll, text=text, signed=False, bytes_kind=False
    )


# ---- the stream's C verbs (StreamBase) against the pure stream --------------------------------


@accelerated
def test_stream_verbs_are_c(make: Make) -> None:
    """peek_char, unread_char, listen, read_until, read and iteration resolve to C (issue 14)."""
    if not sockstream.ACCELERATED:
        pytest.skip("this run uses the pure core")
    cls = sockstream.SocketStream
    stream, peer = make("base-char")
    for verb in (
        stream.peek_char,
        stream.unread_char,
        stream.listen,
        stream.read_until,
        stream.read,
    ):
        assert type(verb) is types.BuiltinMethodType, verb
    # ``for line in stream`` looks __next__ up on the type: the C base's slot, not Python.
    assert "__next__" not in vars(cls)
    assert type(inspect.getattr_static(cls, "__next__")) is types.WrapperDescriptorType
    assert iter(stream) is stream
    peer.sendall(b"a\nb\n")
    assert next(stream) == "a\n"
    assert [*itertools.islice(stream, 1)] == ["b\n"]


def _stream_pair(impl: str, element_type: str, kw: dict[str, Any]) -> tuple[Any, socket.socket]:
    undo = use_buffers(impl)
    a, b = socket.socketpair()
    try:
        return sockstream.SocketStream(a, "io", element_type, **kw), b
    except BaseException:
        b.close()  # (the stream closed ``a``)
        raise
    finally:
        undo()


_CHARS = ["a", "\n", "é", "😀", "\r", "x", "\udcff", "\ufffd"]
_stream_op = st.one_of(
    st.tuples(st.just("send"), _data | _text_line | st.just(b"ab\r\n\r\ncd\n" * 3)),
    st.tuples(st.just("read_unread"), st.sampled_from(["same", "same", "twice", "other", "drain"])),
    st.tuples(st.just("read_char"), st.none()),
    st.tuples(st.just("peek_char"), st.sampled_from([(), (False,), (False, "eof"), "kw", "bad"])),
    st.tuples(st.just("unread_char"), st.sampled_from([*_CHARS, 5, "ab", "last", "last"])),
    st.tuples(st.just("listen"), st.sampled_from([(), (1,)])),
    st.tuples(
        st.just("read_until"),
        st.tuples(
            st.sampled_from([*_DELIMS, "\r\n", "é", b"", bytearray(b"\n")]),
            st.sampled_from([(), (False,), (False, "eof"), "kw", "mlen_none", "mlen", "bad"]),
        ),
    ),
    st.tuples(st.just("next"), st.none()),
    st.tuples(st.just("read_n"), st.sampled_from([1, 1, 2, 3, 5, 8, 13, 0, None, -2, "x", 2**70])),
    st.tuples(st.just("readline"), st.none()),
    st.tuples(st.just("read_line"), st.none()),
)


def _stream_run(s: Any, op: str, arg: Any, last: list[Any]) -> Any:
    """One stream operation; its result, or the exception (type, message without the stream's
    repr, which names its descriptor)."""
    try:
        if op == "read_char":
            got = s.read_char(False, "eof")
            last[:] = [got]
            return got
        if op == "peek_char":
            if arg == "kw":
                return s.peek_char(eof_error=False, eof_value="eof")
            if arg == "bad":
                return s.peek_char(False, None, 3)
            return s.peek_char(*arg) if arg else s.peek_char(False, "eof")
        if op == "unread_char":
            return s.unread_char(last[0] if arg == "last" and last else arg)
        if op == "read_unread":  # read_char, then unread_char (the usual pair)
            got = s.read_char(False, "eof")
            if got == "eof":
                return got
            if arg == "other":
                return got, s.unread_char("x" if got != "x" else "y")
            if arg == "drain":  # to the read timeout, then put back the last character
                chars = [got]
                while (more := s.read_char(False, "eof")) != "eof":
                    chars.append(more)
                return chars, s.timed_out, s.unread_char(chars[-1]), s.timed_out
            if arg == "twice":
                return (
                    got,
                    s.unread_char(got),
                    s.read_char(),
                    s.unread_char(got),
                    s.unread_char(got),
                )
            return got, s.unread_char(got), s.peek_char(), s.listen()
        if op == "listen":
            return s.listen(*arg)
        if op == "read_until":
            delim, how = arg
            if how == "kw":
                return s.read_until(delim, eof_error=False, eof_value="eof")
            if how == "mlen_none":
                return s.read_until(delim, False, max_length=None)
            if how == "mlen":
                return s.read_until(delim, False, max_length=3)
            if how == "bad":
                return s.read_until(delim, False, bogus=1)
            return s.read_until(delim, *how) if how else s.read_until(delim, False)
        if op == "next":
            return next(s, "stop")
        if op == "readline":
            return s.readline()
        if op == "read_line":
            return s.read_line(False, "eof")
        if op == "read":
            return s.read()
        if op == "read_n":
            return s.read(arg)
        raise AssertionError(op)  # pragma: no cover
    except Exception as exc:
        return ("raised", type(exc), str(exc).replace(repr(s), "<stream>"))


@accelerated
@pytest.mark.timeout(1800)  # (scripts/asan runs more examples, sanitized)
@settings(
    max_examples=int(os.environ.get("SOCKSTREAM_STREAM_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    first=st.lists(_text_line | st.just(b"ab\r\n\r\ncd\n"), min_size=1, max_size=6),
    ops=st.lists(_stream_op, min_size=4, max_size=40),
    text=st.sampled_from([_SETTINGS[0]] * 4 + _SETTINGS),
    element_type=st.sampled_from(["base-char", "base-char", "unsigned-byte-8"]),
    mll=st.none() | st.integers(0, 12),
)
def test_stream_c_verbs_match_pure(
    first: list[bytes],
    ops: list[tuple[str, Any]],
    text: tuple[str, str | None, str],
    element_type: str,
    mll: int | None,
) -> None:
    """The same operations on a stream over the twin and one over the pure buffer (whose
    ``StreamBase`` verbs then call the pure methods): the same results and exceptions, the same
    ``timed_out``, then the same bytes left."""
    enc, newline, errors = text
    kw = {
        "encoding": enc,
        "errors": errors,
        "newline": newline,
        "max_line_length": mll,
        "read_timeout": 0.01,
    }
    pairs: list[tuple[Any, socket.socket]] = []
    try:
        for impl in ("pure", "accel"):
            try:
                pairs.append(_stream_pair(impl, element_type, kw))
            except ValueError:  # settings the stream refuses (both do)
                assert impl == "pure"
                return
        assert isinstance(pairs[1][0]._in, _impl.StreamBase.__mro__[0]) is False
        assert type(pairs[1][0]._in).__mro__[-2].__module__ == "sockstream._speedups"
        assert type(pairs[0][0]._in) in (_impl.PureInputBuffer, _impl.PureTextInputBuffer)
        lasts: list[list[Any]] = [[], []]
        for i, (op, arg) in enumerate([("send", b"".join(first)), *ops]):
            if op == "send":
                for _, peer in pairs:
                    peer.sendall(arg)
                continue
            want, got = (_stream_run(s, op, arg, lasts[k]) for k, (s, _) in enumerate(pairs))
            assert got == want, (i, op, arg)
            assert pairs[1][0].timed_out == pairs[0][0].timed_out, (i, op, arg)
        for _, peer in pairs:
            peer.shutdown(socket.SHUT_WR)
        rests = [_stream_run(s, "read", None, []) for s, _ in pairs]
        assert rests[1] == rests[0]
    finally:
        for s, peer in pairs:
            s.close(abort=True)
            peer.close()


# ---- the writing verbs: C against Python ----------------------------------------------------

_BIG = bytes(range(256)) * 260  # over OUTPUT_BUFFER_SIZE: the verb flushes
_W_ARGS: dict[str, list[tuple[Any, ...]]] = {
    "write_char": [("a",), ("é",), ("Ā",), ("\n",), ("ab",), ("",), (5,), (b"a",)],
    "write_string": [
        ("abc",),
        ("",),
        ("é€",),
        ("aĀ",),
        ("\udcff",),
        (_BIG.decode("latin-1"),),
        (5,),
        (b"x",),
        ("abc", 1),
        ("abc", 1, 2),
        ("abc", 5),
        ("abc", 0, None),
        ("abc", -1),
        ("abc", "x"),
    ],
    "write_line": [("abc",), ("",), ("aĀ",), ("é",), (None,), ("a", "b")],
    "write_byte": [(0,), (255,), (127,), (256,), (-1,), (-128,), (True,), ("a",), (1.0,), (2**70,)],
    "write_sequence": [
        (b"ab",),
        (bytearray(b"ab"),),
        (b"",),
        (_BIG,),
        ("ab",),
        ([1, 2],),
        ((1, 300),),
        (["a", "é"],),
        (b"abc", 1),
        (b"abc", 1, 5),
        (array.array("B", [1, 2]),),
        (array.array("i", [1]),),
        (3,),
    ],
    "write": [(b"ab",), ("ab",), ("é",), (bytearray(b""),), (_BIG,), ("Ā",), (3,), (None,)],
}
_W_CALLS = [(verb, i) for verb, argl in _W_ARGS.items() for i in range(len(argl))]
_W_CHANGES = [
    "close",
    "shutdown_output",
    "break",
    "clear_output",
    "flush",
    "encoding=utf-8",
    "encoding=ascii",
    "encoding=latin-1",
    "encoding=cp1252",
    "errors=replace",
    "newline=\r\n",
    "newline=None",
]
_w_step = st.tuples(st.sampled_from(_W_CALLS), st.booleans()) | st.sampled_from(_W_CHANGES)


def _w_outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def _w_run(impl: str, element_type: str, direction: str, steps: list[Any]) -> Any:
    """Every step's outcome on a stream with ``impl``'s output buffer, and the bytes sent."""
    undo = use_buffers(impl)
    try:
        a, b = socket.socketpair()
        stream = SocketStream(a, direction, element_type)
    finally:
        undo()
    assert (type(stream._out).__module__ == "sockstream._impl") is (impl == "accel")
    bound = {verb: getattr(stream, verb) for verb in _W_ARGS}  # bound once, kept throughout
    collector = PeerThread(drain, b)
    collector.start()
    seen: list[Any] = []
    try:
        for step in steps:
            if isinstance(step, tuple):
                (verb, i), prebound = step
                fn = bound[verb] if prebound else getattr(stream, verb)
                seen.append(_w_outcome(fn, *_W_ARGS[verb][i]))
            elif step == "break":
                stream._break("test")
            elif "=" in step:
                name, value = step.split("=")
                seen.append(_w_outcome(setattr, stream, name, None if value == "None" else value))
            else:
                seen.append(_w_outcome(getattr(stream, step)))
        seen.append(_w_outcome(stream.close))
    finally:
        stream.close(abort=True)
        sent = collector.join_checked()
        b.close()
    return seen, sent


@accelerated
@pytest.mark.timeout(600)
@settings(
    max_examples=int(os.environ.get("SOCKSTREAM_SPEEDUPS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(_w_step, max_size=30),
    element_type=st.sampled_from(["base-char", "base-char", "unsigned-byte-8", "signed-byte-8"]),
    direction=st.sampled_from(["io", "io", "io", "output", "input"]),
)
def test_writing_twin_matches_pure(steps: list[Any], element_type: str, direction: str) -> None:
    """The same results, errors (type and message) and bytes out from the C writing verbs and
    the pure ones: every argument shape, good and bad, in every state (closed, shut down,
    broken, input-only), encodings, newlines, and verbs bound before the state changed."""
    want = _w_run("pure", element_type, direction, steps)
    got = _w_run("accel", element_type, direction, steps)
    assert got == want


@accelerated
def test_public_writing_verbs_are_c_callables(make: Make) -> None:
    if not sockstream.ACCELERATED:
        pytest.skip("this run uses the pure core")
    for element_type in ("base-char", "unsigned-byte-8"):
        stream, _peer = make(element_type)
        for verb in _W_ARGS:
            assert type(getattr(stream, verb)) is types.BuiltinMethodType, verb
        assert type(stream._out).__mro__[1].__module__ == "sockstream._speedups"


def test_a_subclass_override_of_a_writing_verb_is_called() -> None:
    """The stream binds the buffer's verbs only where its class does not override them."""
    calls: list[str] = []

    class Logged(SocketStream):
        def write_line(self, string: str) -> None:
            calls.append(string)
            super().write_line(string)

    a, b = socket.socketpair()
    with b, Logged(a) as s:
        s.write_line("x")
        s.write_string("y")
        s.flush()
        assert b.recv(10) == b"x\ny"
    assert calls == ["x"]


def test_an_extension_missing_a_verb_is_not_used() -> None:
    """An extension built from older sources (a stale ``.so`` of an editable install) that
    lacks a C verb the Python side expects is refused whole, with a warning, not half used."""
    stale = types.SimpleNamespace(
        InputBufferBase=type("InputBufferBase", (), dict.fromkeys(_impl.C_VERBS, None)),
        StreamBase=type("StreamBase", (), dict.fromkeys(_impl.STREAM_C_VERBS[:-2], None)),
        OutputBufferBase=type("OutputBufferBase", (), dict.fromkeys(_impl.W_VERBS, None)),
        same_list=None,
    )
    assert _impl.missing_from(stale) == f"StreamBase.{_impl.STREAM_C_VERBS[-2]}"
    del stale.same_list
    stale.StreamBase = type("StreamBase", (), dict.fromkeys(_impl.STREAM_C_VERBS, None))
    assert _impl.missing_from(stale) == "same_list"
    if _impl.ACCELERATED:
        assert _impl.missing_from(_impl._speedups) is None


def test_a_stale_extension_falls_back_to_pure_python() -> None:
    """Import with an extension that lacks a verb: a RuntimeWarning naming it, then pure."""
    if not _impl.ACCELERATED:
        pytest.skip("needs the built extension")
    so = _impl._speedups.__file__
    code = (
        "import importlib.util, sys, warnings\n"
        f"spec = importlib.util.spec_from_file_location('sockstream._speedups', {so!r})\n"
        "stale = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(stale)\n"
        "stale.StreamBase = type('StreamBase', (), {})\n"
        "sys.modules['sockstream._speedups'] = stale\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import sockstream\n"
        "print(sockstream.ACCELERATED, [str(x.message) for x in w])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SOCKSTREAM_PUREPYTHON"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("False "), out.stdout
    assert "built from older sources (it has no StreamBase.peek_char)" in out.stdout

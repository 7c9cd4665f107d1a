"""Bad input and misuse: each a clear error naming the bad value, and nothing changed.

Constructor arguments (the socket is closed when the constructor raises), characters above 255
and out-of-range bytes (nothing of that call is written: the peer receives exactly the good
output after a later flush), closed streams (``ValueError`` from every verb), the wrong
direction (``io.UnsupportedOperation`` from every verb), byte verbs on base-char streams, and
the error classes themselves (hierarchy as API.md, attributes, pickling).
"""

from __future__ import annotations

import array
import io
import math
import os
import pickle
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

import sockstream
from conftest import LONG, Make, drain
from sockstream import (
    LineTooLongError,
    SocketCreateError,
    SocketError,
    SocketIOError,
    SocketStream,
    SSLFailure,
    WriteTimeoutError,
)

pytestmark = pytest.mark.filterwarnings("ignore:The 'u' type code is deprecated:DeprecationWarning")


def is_closed(sock: socket.socket) -> bool:
    return sock.fileno() == -1


# ---- constructor --------------------------------------------------------------------------

BAD_CONSTRUCTOR_ARGS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"element_type": "character"}, ValueError, "'character'"),
    ({"element_type": "(unsigned-byte 16)"}, ValueError, "unsigned-byte-8"),
    ({"element_type": None}, ValueError, "None"),
    ({"element_type": 8}, ValueError, "8"),
    ({"direction": "both"}, ValueError, "'both'"),
    ({"direction": ":io"}, ValueError, "'input'"),
    ({"direction": None}, ValueError, "None"),
    ({"read_timeout": 0}, ValueError, "read_timeout"),
    ({"read_timeout": -1}, ValueError, "read_timeout"),
    ({"read_timeout": math.nan}, ValueError, "read_timeout"),
    ({"read_timeout": math.inf}, ValueError, "read_timeout"),
    ({"read_timeout": True}, TypeError, "read_timeout"),
    ({"read_timeout": "5"}, TypeError, "read_timeout"),
    ({"write_timeout": 0.0}, ValueError, "write_timeout"),
    ({"write_timeout": -0.1}, ValueError, "write_timeout"),
    ({"write_timeout": math.nan}, ValueError, "write_timeout"),
    ({"write_timeout": -math.inf}, ValueError, "write_timeout"),
    ({"write_timeout": False}, TypeError, "write_timeout"),
    ({"handshake_timeout": 0}, ValueError, "handshake_timeout"),
    ({"handshake_timeout": math.nan}, ValueError, "handshake_timeout"),
    ({"handshake_timeout": True}, TypeError, "handshake_timeout"),
    ({"max_line_length": 0}, ValueError, "max_line_length"),
    ({"max_line_length": -5}, ValueError, "max_line_length"),
    ({"max_line_length": True}, ValueError, "max_line_length"),
    ({"max_line_length": 1.5}, ValueError, "max_line_length"),
    ({"ssl_ctx": "v2"}, ValueError, "insecure"),
    ({"ssl_ctx": "tls-v1"}, ValueError, "insecure"),
]


def test_bad_constructor_argument_names_it_and_closes_the_socket() -> None:
    for kwargs, exc, match in BAD_CONSTRUCTOR_ARGS:
        a, b = socket.socketpair()
        with b:
            with pytest.raises(exc, match=match):
                SocketStream(a, **kwargs)
            assert is_closed(a), kwargs


def test_bad_argument_with_an_fd_closes_the_descriptor() -> None:
    a, b = socket.socketpair()
    with b:
        fd = a.detach()
        with pytest.raises(ValueError):
            SocketStream(fd, element_type="bogus")
        with pytest.raises(OSError):
            os.fstat(fd)  # the stream owned it and closed it


def test_failing_configure_callback_closes_the_socket(server_ctx: ssl.SSLContext) -> None:
    a, b = socket.socketpair()

    def boom(_: Any) -> None:
        raise KeyboardInterrupt

    with b:
        with pytest.raises(KeyboardInterrupt):
            SocketStream(a, ssl_ctx=server_ctx, ssl_configure_callback=boom)
        assert is_closed(a)


@pytest.mark.parametrize("bad", ["not a socket", 3.0, None, b"x", True, -1])
def test_bad_socket_argument(bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        SocketStream(bad)


def test_sslsocket_is_refused(server_ctx: ssl.SSLContext) -> None:
    a, b = socket.socketpair()
    with b:
        wrapped = server_ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
        with pytest.raises(TypeError, match="SSLSocket"):
            SocketStream(wrapped)
        assert is_closed(wrapped)


# ---- characters above 255 and bytes out of range: nothing written --------------------------

ABOVE_255 = "ok\u0100!"


def _bad_char_writes() -> list[tuple[str, Callable[[SocketStream], Any]]]:
    return [
        ("write_char", lambda s: s.write_char("\u0100")),
        ("write_char-emoji", lambda s: s.write_char("\U0001f600")),
        ("write_string", lambda s: s.write_string(ABOVE_255)),
        ("write_string-slice", lambda s: s.write_string(ABOVE_255, 1, 3)),
        ("write_line", lambda s: s.write_line(ABOVE_255)),
        ("write", lambda s: s.write(ABOVE_255)),
        ("write_sequence-str", lambda s: s.write_sequence(ABOVE_255)),
        ("write_sequence-list", lambda s: s.write_sequence(list(ABOVE_255))),
        ("write_sequence-tuple", lambda s: s.write_sequence(tuple(ABOVE_255))),
        ("write_sequence-array-u", lambda s: s.write_sequence(array.array("u", ABOVE_255))),
    ]


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8", "signed-byte-8"])
def test_char_above_255_writes_nothing(make: Make, et: str) -> None:
    s, peer = make(et)
    s.write_string("before|")
    for name, call in _bad_char_writes():
        with pytest.raises(ValueError, match="above 255") as info:
            call(s)
        assert "code 256" in str(info.value) or "code 128512" in str(info.value), name
    s.write_string("|after")
    s.shutdown_output()
    assert drain(peer) == b"before||after"


BAD_BYTES: list[tuple[str, Callable[[SocketStream], Any], type[Exception]]] = [
    ("write_byte-256", lambda s: s.write_byte(256), ValueError),
    ("write_byte-big", lambda s: s.write_byte(10**20), ValueError),
    ("write_byte-float", lambda s: s.write_byte(1.0), TypeError),  # type: ignore[arg-type]
    ("write_byte-bool", lambda s: s.write_byte(True), TypeError),
    ("write_byte-str", lambda s: s.write_byte("a"), TypeError),  # type: ignore[arg-type]
    ("write_sequence-list", lambda s: s.write_sequence([1, 2, 300]), ValueError),
    ("write_sequence-tuple", lambda s: s.write_sequence((1, -300)), ValueError),
    ("write_sequence-float", lambda s: s.write_sequence([1, 2.0]), TypeError),
    ("write_sequence-none", lambda s: s.write_sequence([None]), TypeError),
    ("write_sequence-multichar", lambda s: s.write_sequence(["ab"]), ValueError),
]


@pytest.mark.parametrize("et", ["unsigned-byte-8", "signed-byte-8"])
def test_out_of_range_byte_writes_nothing(make: Make, et: str) -> None:
    s, peer = make(et)
    s.write_byte(7)
    for _name, call, exc in BAD_BYTES:
        with pytest.raises(exc):
            call(s)
        s.write_byte(8)
    s.shutdown_output()
    assert drain(peer) == b"\x07" + b"\x08" * len(BAD_BYTES)


@pytest.mark.parametrize(
    ("et", "bad"),
    [
        ("unsigned-byte-8", -1),
        ("unsigned-byte-8", 256),
        ("signed-byte-8", 128),
        ("signed-byte-8", -129),
        ("signed-byte-8", 255),
    ],
)
def test_byte_range_depends_on_element_type(make: Make, et: str, bad: int) -> None:
    s, peer = make(et)
    with pytest.raises(ValueError, match=str(bad)):
        s.write_byte(bad)
    with pytest.raises(ValueError, match=str(bad)):
        s.write_sequence([0, bad])
    s.shutdown_output()
    assert drain(peer) == b""


def test_integers_on_base_char_stream_are_raw_bytes(make: Make) -> None:
    """A list of integers on a base-char stream is range-checked as 0..255."""
    s, peer = make()
    with pytest.raises(ValueError):
        s.write_sequence([65, 256])
    with pytest.raises(ValueError):
        s.write_sequence([-1])
    s.write_sequence([65, 255])
    s.shutdown_output()
    assert drain(peer) == b"A\xff"


# ---- read_byte / write_byte need a byte element type ---------------------------------------


def test_byte_verbs_on_base_char_are_type_errors(make: Make) -> None:
    s, peer = make("base-char")
    peer.sendall(b"AB")
    with pytest.raises(TypeError, match="base-char"):
        s.read_byte()
    with pytest.raises(TypeError, match="base-char"):
        s.write_byte(65)
    assert s.read_char() == "A"  # nothing consumed by the failed read_byte
    s.write_string("x")
    s.shutdown_output()
    assert drain(peer) == b"x"  # nothing written by the failed write_byte


# ---- every verb on a closed stream, and in the wrong direction -----------------------------

READ_VERBS: list[tuple[str, Callable[[SocketStream], Any]]] = [
    ("read_char", lambda s: s.read_char()),
    ("read_char-noerror", lambda s: s.read_char(False)),
    ("read_char_no_hang", lambda s: s.read_char_no_hang()),
    ("peek_char", lambda s: s.peek_char()),
    ("unread_char", lambda s: s.unread_char("a")),
    ("read_line", lambda s: s.read_line()),
    ("read_byte", lambda s: s.read_byte()),
    ("read_sequence-bytearray", lambda s: s.read_sequence(bytearray(3))),
    ("read_sequence-list", lambda s: s.read_sequence([0, 0, 0])),
    ("read_sequence-empty-list", lambda s: s.read_sequence([])),
    ("read_sequence-array-u", lambda s: s.read_sequence(array.array("u", "abc"))),
    ("read_sequence-array-b", lambda s: s.read_sequence(array.array("b", [0]))),
    ("listen", lambda s: s.listen()),
    ("clear_input", lambda s: s.clear_input()),
    ("read", lambda s: s.read()),
    ("read-n", lambda s: s.read(3)),
    ("read-0", lambda s: s.read(0)),
    ("read1", lambda s: s.read1()),
    ("readline", lambda s: s.readline()),
    ("readinto", lambda s: s.readinto(bytearray(3))),
    ("next", lambda s: next(s)),
]

WRITE_VERBS: list[tuple[str, Callable[[SocketStream], Any]]] = [
    ("write_char", lambda s: s.write_char("a")),
    ("write_string", lambda s: s.write_string("abc")),
    ("write_string-slice", lambda s: s.write_string("abc", 1)),
    ("write_line", lambda s: s.write_line("abc")),
    ("write_byte", lambda s: s.write_byte(1)),
    ("write_sequence-bytes", lambda s: s.write_sequence(b"abc")),
    ("write_sequence-str", lambda s: s.write_sequence("abc")),
    ("write_sequence-list", lambda s: s.write_sequence([1, 2])),
    ("write_sequence-empty", lambda s: s.write_sequence([])),
    ("write_sequence-array-u", lambda s: s.write_sequence(array.array("u", "abc"))),
    ("write-str", lambda s: s.write("abc")),
    ("write-bytes", lambda s: s.write(b"abc")),
    ("force_output", lambda s: s.force_output()),
    ("flush", lambda s: s.flush()),
    ("finish_output", lambda s: s.finish_output()),
    ("clear_output", lambda s: s.clear_output()),
]

OTHER_VERBS: list[tuple[str, Callable[[SocketStream], Any]]] = [
    ("fileno", lambda s: s.fileno()),
    ("readable", lambda s: s.readable()),
    ("writable", lambda s: s.writable()),
    ("shutdown_output", lambda s: s.shutdown_output()),
    ("local_address", lambda s: s.local_address),
    ("peer_address", lambda s: s.peer_address),
    ("replace_socket", lambda s: s.replace_socket(None)),
    ("set-socket", lambda s: setattr(s, "socket", None)),
    ("iter-for", lambda s: list(s)),
]


def _refusals(
    s: SocketStream, verbs: list[tuple[str, Callable[[SocketStream], Any]]], exc: type[Exception]
) -> list[str]:
    """Names of the verbs that did not raise ``exc`` on ``s``."""
    wrong = []
    for name, call in verbs:
        try:
            call(s)
        except exc:
            continue
        except Exception as other:  # reported below
            wrong.append(f"{name}: {type(other).__name__}: {other}")
        else:
            wrong.append(f"{name}: no error")
    return wrong


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8", "signed-byte-8"])
def test_every_verb_on_a_closed_stream_is_a_value_error(make: Make, et: str) -> None:
    s, peer = make(et)
    s.write_string("pending")
    s.close()
    assert s.closed
    assert _refusals(s, READ_VERBS + WRITE_VERBS + OTHER_VERBS, ValueError) == []
    with pytest.raises(ValueError, match="closed"):
        s.read_char()
    s.close()  # still idempotent
    s.close(abort=True)
    assert drain(peer) == b"pending"  # the close flushed; nothing after it


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8", "signed-byte-8"])
def test_reading_an_output_stream(make: Make, et: str) -> None:
    s, peer = make(et, "output")
    peer.sendall(b"abc\n")
    verbs = [(n, c) for n, c in READ_VERBS if not (et == "base-char" and n == "read_byte")]
    assert _refusals(s, verbs, io.UnsupportedOperation) == []
    with pytest.raises(io.UnsupportedOperation, match="output"):
        s.read_char()
    assert not s.readable()
    assert s.writable()
    s.write_string("still writable")
    s.shutdown_output()
    assert drain(peer) == b"still writable"


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8", "signed-byte-8"])
def test_writing_an_input_stream(make: Make, et: str) -> None:
    s, peer = make(et, "input")
    peer.sendall(b"in\n")
    # flush() on an input-only stream does nothing, as in io (API.md "File-object conformance").
    verbs = [
        (n, c)
        for n, c in WRITE_VERBS
        if not (et == "base-char" and n == "write_byte") and n != "flush"
    ]
    assert _refusals(s, verbs, io.UnsupportedOperation) == []
    s.flush()
    with pytest.raises(io.UnsupportedOperation, match="input"):
        s.write_char("x")
    assert s.readable()
    assert not s.writable()
    assert s.read_line() == ("in", False)
    s.close()
    peer.settimeout(LONG)
    assert peer.recv(10) == b""  # nothing was ever written


def test_unsupported_operation_is_both_oserror_and_valueerror(make: Make) -> None:
    s, _ = make(direction="input")
    with pytest.raises(OSError):
        s.write("x")
    with pytest.raises(ValueError):
        s.write("x")


def test_shutdown_output_on_an_input_stream_half_closes(make: Make) -> None:
    s, peer = make(direction="input")
    s.shutdown_output()
    peer.settimeout(LONG)
    assert peer.recv(10) == b""


# ---- the error classes ----------------------------------------------------------------------


def test_hierarchy_as_api_md_says() -> None:
    assert issubclass(SocketError, OSError)
    for cls in (SocketCreateError, SocketIOError, SSLFailure):
        assert issubclass(cls, SocketError)
    assert issubclass(WriteTimeoutError, SocketIOError)
    assert issubclass(WriteTimeoutError, TimeoutError)
    assert issubclass(sockstream.SSLHandshakeTimeout, SSLFailure)
    assert issubclass(sockstream.SSLHandshakeTimeout, TimeoutError)
    assert issubclass(LineTooLongError, ValueError)
    assert not issubclass(LineTooLongError, SocketError)
    # A timeout class must not also catch "refused" or other I/O failures.
    assert not issubclass(SocketCreateError, TimeoutError)
    assert not issubclass(SocketIOError, TimeoutError)
    assert not issubclass(SSLFailure, TimeoutError)


ERRORS: list[BaseException] = [
    SocketError("base"),
    SocketCreateError("could not connect to 127.0.0.1:1"),
    SocketIOError("reset"),
    WriteTimeoutError(0.5, 123, 456),
    SSLFailure("handshake failed"),
    sockstream.SSLHandshakeTimeout(2.5),
    sockstream.SSLTruncatedError("truncated"),
    LineTooLongError(100, 250),
]


@pytest.mark.parametrize("err", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_attributes(err: BaseException) -> None:
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is type(err)
    assert str(copy) == str(err)
    assert copy.args == err.args
    assert vars(copy) == vars(err)


def test_error_attributes_and_messages() -> None:
    w = WriteTimeoutError(0.5, 123, 456)
    assert (w.timeout, w.bytes_written, w.pending) == (0.5, 123, 456)
    assert "123" in str(w)
    assert "456" in str(w)
    assert "0.5" in str(w)
    h = sockstream.SSLHandshakeTimeout(2.5)
    assert h.timeout == 2.5
    assert "2.5" in str(h)
    m = LineTooLongError(100, 250)
    assert (m.max_line_length, m.buffered) == (100, 250)
    assert "100" in str(m)


def test_errors_are_importable_from_the_package() -> None:
    for name in (
        "SocketError",
        "SocketCreateError",
        "SocketIOError",
        "WriteTimeoutError",
        "SSLFailure",
        "LineTooLongError",
    ):
        assert getattr(sockstream, name).__module__.startswith("sockstream")


def test_io_failure_is_a_socket_io_error(make: Make) -> None:
    """Writing to a peer that is gone: SocketIOError, chained to the OSError."""
    s, peer = make()
    peer.close()
    s.write_string("x" * 100)
    with pytest.raises(SocketIOError) as info:
        s.flush()
    assert isinstance(info.value.__cause__, OSError)
    s.close()  # a broken stream still closes, without raising again

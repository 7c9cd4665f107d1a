"""The stream keywords are checked once (``_options``), and the stream's observer seam."""

from __future__ import annotations

import math
import socket
import ssl

import pytest

from conftest import Make
from sockstream import SocketStream
from sockstream._options import StreamOptions, TLSOptions
from sockstream._wait import check_timeout


def test_options_defaults_are_the_constructor_defaults() -> None:
    o = StreamOptions.make()
    assert (o.direction, o.element_type, o.read_timeout, o.write_timeout) == (
        "io",
        "base-char",
        None,
        None,
    )
    assert o.tls is None
    assert o.max_line_length is None


def test_options_canonical_values() -> None:
    o = StreamOptions.make(
        element_type="(signed-byte 8)",
        read_timeout=1,
        ssl_ctx=True,
        ssl_side=":CLIENT",
        max_line_length=10,
    )
    assert o.element_type == "signed-byte-8"
    assert o.read_timeout == 1.0
    assert type(o.read_timeout) is float
    assert o.tls == TLSOptions(True, "client")
    assert o.max_line_length == 10


def test_options_are_frozen() -> None:
    o = StreamOptions.make()
    with pytest.raises(AttributeError):
        o.direction = "input"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "exc", "names"),
    [
        # The TLS keywords are checked even without ssl_ctx: a typo is never silent.
        ({"ssl_side": "middle"}, ValueError, "'middle'"),
        ({"tlsext_host_name": 7}, TypeError, "7"),
        ({"handshake_timeout": 0}, ValueError, "handshake_timeout"),
        ({"ssl_configure_callback": 3}, TypeError, "ssl_configure_callback"),
        ({"ctx_configure_callback": "x"}, TypeError, "ctx_configure_callback"),
        ({"ssl_ctx": 3}, TypeError, "ssl_ctx"),
    ],
)
def test_bad_keyword_closes_the_socket_and_names_it(
    kw: dict[str, object], exc: type[Exception], names: str
) -> None:
    a, b = socket.socketpair()
    with b, pytest.raises(exc, match=names):
        SocketStream(a, **kw)  # type: ignore[arg-type]
    assert a.fileno() == -1


@pytest.mark.parametrize(
    ("value", "poll", "expected"),
    [
        (None, False, None),
        (2, False, 2.0),
        (0.5, False, 0.5),
        (0, True, 0.0),
        (math.inf, True, None),
        (1, True, 1.0),
    ],
)
def test_check_timeout_accepts(value: object, poll: bool, expected: float | None) -> None:
    assert check_timeout(value, "t", poll=poll) == expected


@pytest.mark.parametrize(
    ("value", "poll", "exc"),
    [
        (0, False, ValueError),
        (-1, False, ValueError),
        (math.inf, False, ValueError),
        (math.nan, False, ValueError),
        (math.nan, True, ValueError),
        (-0.1, True, ValueError),
        (True, False, TypeError),
        (True, True, TypeError),
        ("1", False, TypeError),
    ],
)
def test_check_timeout_refuses(value: object, poll: bool, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="t must be None or a"):
        check_timeout(value, "t", poll=poll)


# ---- the observer seam ------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, SocketStream]] = []

    def stream_input(self, stream: SocketStream) -> None:
        self.events.append(("input", stream))

    def stream_changed(self, stream: SocketStream) -> None:
        self.events.append(("changed", stream))


def test_watcher_hears_input_unread_replace_and_close(make: Make) -> None:
    s, peer = make()
    w = Recorder()
    s._watch(w)
    s._watch(w)  # idempotent
    peer.sendall(b"ab")
    assert s.read_char() == "a"
    assert w.events == [("input", s)]
    s.unread_char("a")
    assert w.events[-1] == ("input", s)
    a2, b2 = socket.socketpair()
    with b2:
        old = s.replace_socket(a2)
        assert w.events[-1] == ("changed", s)
        assert old is not None
        old.close()
        n = len(w.events)
        s.close()
        assert w.events[n:] == [("changed", s)]
        assert s.closed


def test_unwatch_stops_notifications(make: Make) -> None:
    s, peer = make()
    w = Recorder()
    s._watch(w)
    s._unwatch(w)
    s._unwatch(w)  # absent is fine
    peer.sendall(b"x")
    assert s.read_char() == "x"
    assert w.events == []


def test_watcher_hears_end_of_file(make: Make) -> None:
    s, peer = make()
    w = Recorder()
    s._watch(w)
    peer.shutdown(socket.SHUT_WR)
    assert s.read_char(eof_error=False) is None
    assert w.events == [("input", s)]


def test_no_module_global_socket_counter() -> None:
    import sockstream._stream as mod

    assert not hasattr(mod, "socket_generation")


def test_attach_ssl_checks_its_keywords_before_touching_the_stream(make: Make) -> None:
    from sockstream import attach_ssl

    s, _ = make()
    with pytest.raises(ValueError, match="'middle'"):
        attach_ssl(s, ssl_ctx=ssl.create_default_context(), ssl_side="middle")
    assert not s.closed
    assert s.ssl_object is None

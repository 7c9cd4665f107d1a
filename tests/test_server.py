"""start_up_server, serve and Server on loopback: accepting, limits, errors, TLS, terminate."""

from __future__ import annotations

import errno
import io
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sockstream
from conftest import LONG, SHORT, PeerThread, requires_ipv6
from sockstream import (
    Server,
    SocketCreateError,
    SocketStream,
    open_tcp_stream,
    serve,
    server_terminate,
    start_up_server,
)

LOCAL = "127.0.0.1"


class _Events(logging.Handler):
    """Collects records of the "sockstream" logger and wakes waiters on each."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def wait_for(
        self, predicate: Callable[[logging.LogRecord], bool], timeout: float = LONG
    ) -> logging.LogRecord:
        with self.cond:
            found: list[logging.LogRecord] = []

            def ready() -> bool:
                found[:] = [r for r in self.records if predicate(r)]
                return bool(found)

            assert self.cond.wait_for(ready, timeout), "expected log record did not come"
            return found[0]


@pytest.fixture
def log_events() -> Iterator[_Events]:
    handler = _Events()
    logger = logging.getLogger("sockstream")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _connect(server: Server, host: str = LOCAL) -> socket.socket:
    return socket.create_connection((host, server.port), timeout=LONG)


def _send_and_close(data: bytes) -> Callable[[socket.socket], None]:
    def function(sock: socket.socket) -> None:
        with sock:
            sock.sendall(data)

    return function


def _echo_lines(stream: SocketStream) -> None:
    while True:
        line, missing = stream.read_line(eof_error=False)
        if line is None:
            return
        stream.write_line(line)
        stream.force_output()
        if missing:
            return


# ---- start_up_server --------------------------------------------------------------------------


def test_start_up_server_hands_over_sockets() -> None:
    got: list[socket.socket] = []
    nodelay: list[int] = []

    def function(sock: socket.socket) -> None:
        got.append(sock)
        nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        with sock:
            sock.sendall(b"hello\n")

    with start_up_server(function, address=LOCAL, wait=True) as server:
        assert isinstance(server, Server)
        assert server.address == LOCAL
        assert server.port > 0
        assert server.listening
        with _connect(server) as c:
            assert c.makefile("rb").readline() == b"hello\n"
        assert isinstance(got[0], socket.socket)
        assert nodelay[0] != 0
    assert not server.listening
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOCAL, server.port), timeout=LONG).close()


def test_no_further_connection_until_the_function_returns() -> None:
    release = threading.Event()
    order: list[int] = []
    first_in = threading.Event()

    def function(sock: socket.socket) -> None:
        with sock:
            order.append(len(order))
            if len(order) == 1:
                first_in.set()
                assert release.wait(LONG)
            sock.sendall(b"%d\n" % order[-1])

    with start_up_server(function, address=LOCAL, wait=True) as server:
        a = _connect(server)
        b = _connect(server)  # the kernel completes it; the server does not take it yet
        with a, b:
            assert first_in.wait(LONG)
            b.settimeout(SHORT)
            with pytest.raises(TimeoutError):
                b.recv(1)
            assert order == [0]
            release.set()
            b.settimeout(LONG)
            assert a.makefile("rb").readline() == b"0\n"
            assert b.makefile("rb").readline() == b"1\n"


def test_terminate_is_prompt_and_idempotent() -> None:
    server = start_up_server(lambda s: s.close(), address=LOCAL, wait=True)
    t0 = time.monotonic()
    server.terminate()
    assert time.monotonic() - t0 < LONG / 2
    assert server.join(0)
    server.terminate()
    server_terminate(server)
    assert "stopped" in repr(server)


def test_server_terminate_function() -> None:
    server = start_up_server(lambda s: s.close(), address=LOCAL, wait=True)
    server_terminate(server)
    assert not server.listening


def test_terminate_from_inside_the_function() -> None:
    holder: list[Server] = []
    done = threading.Event()

    def function(sock: socket.socket) -> None:
        sock.close()
        holder[0].terminate()
        done.set()

    server = start_up_server(function, address=LOCAL, wait=True)
    holder.append(server)
    _connect(server).close()
    assert done.wait(LONG)
    assert server.join(LONG)


def test_a_function_that_raises_is_logged_and_the_server_goes_on(log_events: _Events) -> None:
    calls = []

    def function(sock: socket.socket) -> None:
        calls.append(sock)
        sock.close()
        if len(calls) == 1:
            raise RuntimeError("boom")

    with start_up_server(function, address=LOCAL, wait=True) as server:
        _connect(server).close()
        record = log_events.wait_for(lambda r: r.exc_info is not None)
        assert record.exc_info is not None
        assert "boom" in str(record.exc_info[1])
        with _connect(server) as c:
            assert c.recv(1) == b""  # closed by the function: it was called again
    assert len(calls) == 2


@pytest.mark.parametrize("kind", ["callable", "stream", "true"])
def test_announce_success(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[Any] = []
    out = io.StringIO()
    announce: Any = {"callable": seen.append, "stream": out, "true": True}[kind]
    with start_up_server(lambda s: s.close(), address=LOCAL, announce=announce) as server:
        if kind == "callable":
            assert seen == [server]
        else:
            text = out.getvalue() if kind == "stream" else capsys.readouterr().out
            assert f"port {server.port}" in text
            assert text.endswith("\n")


def test_listen_failure_wait_true_raises_and_announces() -> None:
    with socket.socket() as taken:
        taken.bind((LOCAL, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        seen: list[Any] = []
        with pytest.raises(SocketCreateError) as info:
            start_up_server(
                lambda s: s.close(), address=LOCAL, service=port, wait=True, announce=seen.append
            )
        assert info.value.errno == errno.EADDRINUSE
        assert str(port) in str(info.value)
        assert LOCAL in str(info.value)
        assert seen == [info.value]


def test_listen_failure_wait_false_returns_a_failed_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind((LOCAL, 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = io.StringIO()
        server = start_up_server(lambda s: s.close(), address=LOCAL, service=port, announce=out)
        assert isinstance(server.error, SocketCreateError)
        assert not server.listening
        assert server.port == 0
        assert "failed" in out.getvalue()
        assert "failed" in repr(server)
        assert "failed to start" in caplog.text
        server.terminate()  # harmless


@pytest.mark.parametrize(
    ("keyword", "value", "error"),
    [
        ("backlog", -1, ValueError),
        ("backlog", "8", TypeError),
        ("ipv6", "both", ValueError),
        ("service", 70000, ValueError),
        ("service", 1.5, TypeError),
        ("announce", 5, TypeError),
        ("wait", "yes", TypeError),
        ("address", 127, TypeError),
    ],
)
def test_start_up_server_bad_arguments(keyword: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=keyword):
        start_up_server(lambda s: s.close(), address=LOCAL, **{keyword: value})


def test_function_must_be_callable() -> None:
    with pytest.raises(TypeError, match="function"):
        start_up_server(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler"):
        serve(42)  # type: ignore[arg-type]


@requires_ipv6
def test_ipv6_server() -> None:
    with start_up_server(_send_and_close(b"6"), address="::1", ipv6=True, wait=True) as server:
        assert server.address == "::1"
        with _connect(server, "::1") as c:
            assert c.recv(1) == b"6"
    with pytest.raises(SocketCreateError, match="::1"):
        start_up_server(lambda s: s.close(), address="::1", ipv6=False, wait=True)


def test_all_interfaces_by_default() -> None:
    """address=None listens on every interface, as LispWorks does (reached here via loopback)."""
    with start_up_server(_send_and_close(b"*"), wait=True) as server:
        assert server.address in ("::", "0.0.0.0")
        with _connect(server) as c:
            assert c.recv(1) == b"*"


def test_service_as_digit_string() -> None:
    with socket.socket() as probe:
        probe.bind((LOCAL, 0))
        port = probe.getsockname()[1]
    with start_up_server(lambda s: s.close(), address=LOCAL, service=str(port), wait=True) as srv:
        assert srv.port == port


_EMFILE_SCRIPT = r"""
import errno, logging, os, resource, socket, threading
import sockstream

warned = threading.Event()

class Handler(logging.Handler):
    def emit(self, record):
        if "accept failed" in record.getMessage():
            warned.set()

logging.getLogger("sockstream").addHandler(Handler())
server = sockstream.start_up_server(
    lambda s: (s.sendall(b"ok"), s.close()), address="127.0.0.1", wait=True)
client = socket.socket()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
highest = max(int(n) for n in os.listdir("/proc/self/fd"))
resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))
fillers = []
while True:  # fill the holes below the limit: no descriptor is left
    try:
        fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
        break
client.connect(("127.0.0.1", server.port))
ok = warned.wait(10)
for fd in fillers:
    os.close(fd)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
assert ok, "no warning about accept"
client.settimeout(10)
assert client.recv(2) == b"ok"
assert server.listening
client.close()
server.terminate()
print("survived")
"""


def test_survives_running_out_of_descriptors() -> None:
    """EMFILE on accept: the server logs, backs off, and serves the client once it can.

    Run in a child process: while the descriptor limit is low, every thread of the process is
    starved, and pytest's own threads must not be.
    """
    done = subprocess.run(
        [sys.executable, "-c", _EMFILE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=LONG * 3,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "survived"


# ---- serve ------------------------------------------------------------------------------------


def test_serve_echo_and_stream_closed_after_handler() -> None:
    kinds: list[str] = []

    def handler(stream: SocketStream) -> None:
        kinds.append(stream.element_type)
        line, _ = stream.read_line()
        stream.write_line(line.upper())

    with serve(handler, address=LOCAL, element_type="unsigned-byte-8") as server:
        assert server.listening
        with open_tcp_stream(LOCAL, server.port) as s:
            s.write_line("abc")
            s.force_output()
            assert s.read_line() == ("ABC", False)
            assert s.read_line(eof_error=False) == (None, True)  # closed after the handler
    assert kinds == ["unsigned-byte-8"]


def test_serve_64_clients_100_lines_each() -> None:
    clients, lines = 64, 100
    with serve(_echo_lines, address=LOCAL, max_connections=clients) as server:
        results: dict[int, list[str]] = {}

        def client(i: int) -> None:
            with open_tcp_stream(LOCAL, server.port, read_timeout=LONG) as s:
                for n in range(lines):
                    s.write_line(f"client {i} line {n} " + "x" * (n % 17))
                s.force_output()
                got = []
                for _ in range(lines):
                    line, missing = s.read_line()
                    assert not missing
                    got.append(line)
                results[i] = got

        threads = [PeerThread(client, i) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join_checked(LONG * 3)
    for i in range(clients):
        assert results[i] == [f"client {i} line {n} " + "x" * (n % 17) for n in range(lines)]


def test_max_connections_makes_the_excess_wait() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def handler(stream: SocketStream) -> None:
        entered.release()
        stream.write_line("hello")
        stream.force_output()
        assert release.wait(LONG)

    with serve(handler, address=LOCAL, max_connections=2) as server:
        a = open_tcp_stream(LOCAL, server.port)
        b = open_tcp_stream(LOCAL, server.port)
        assert entered.acquire(timeout=LONG)
        assert entered.acquire(timeout=LONG)
        assert server.active_connections == 2
        c = open_tcp_stream(LOCAL, server.port, read_timeout=SHORT)  # in the backlog
        with a, b, c:
            assert c.read_line(eof_error=False) == (None, True)
            assert c.timed_out  # not served yet
            release.set()
            c.read_timeout = LONG
            assert c.read_line() == ("hello", False)


def test_handler_that_raises_is_logged_and_costs_no_one(log_events: _Events) -> None:
    def handler(stream: SocketStream) -> None:
        line, _ = stream.read_line()
        if line == "bad":
            raise RuntimeError("handler failure")
        stream.write_line("good")

    with serve(handler, address=LOCAL) as server:
        with open_tcp_stream(LOCAL, server.port) as s:
            s.write_line("bad")
            s.force_output()
            assert s.read_line(eof_error=False) == (None, True)
        record = log_events.wait_for(lambda r: r.exc_info is not None)
        assert record.name == "sockstream"
        assert record.levelno == logging.ERROR
        with open_tcp_stream(LOCAL, server.port) as s:
            s.write_line("ok")
            s.force_output()
            assert s.read_line() == ("good", False)


def test_a_peer_that_breaks_the_connection_is_logged_quietly(log_events: _Events) -> None:
    def handler(stream: SocketStream) -> None:
        stream.write_line("first")
        stream.force_output()
        raise sockstream.SocketIOError("the peer went away")  # as a reset would

    with serve(handler, address=LOCAL) as server:
        with open_tcp_stream(LOCAL, server.port) as s:
            assert s.read_line() == ("first", False)
        record = log_events.wait_for(lambda r: "broken" in r.getMessage())
        assert record.levelno == logging.INFO
        assert record.exc_info is None
        assert not [r for r in log_events.records if r.levelno >= logging.WARNING]


def test_terminate_with_handlers_running() -> None:
    started = threading.Semaphore(0)
    ended: list[str] = []

    def handler(stream: SocketStream) -> None:
        started.release()
        try:
            stream.read_line(eof_error=False)  # blocks: the clients never write
        finally:
            ended.append(threading.current_thread().name)

    server = serve(handler, address=LOCAL)
    clients = [open_tcp_stream(LOCAL, server.port) for _ in range(5)]
    try:
        for _ in clients:
            assert started.acquire(timeout=LONG)
        t0 = time.monotonic()
        server.terminate()
        assert time.monotonic() - t0 < LONG / 2
        assert len(ended) == 5
        assert server.active_connections == 0
        for c in clients:
            assert c.read_line(eof_error=False) == (None, True)
    finally:
        for c in clients:
            c.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_served_connection_holds_one_descriptor() -> None:
    """The server holds each connection's socket and nothing else (no dup for terminate)."""
    n = 20
    ready = threading.Semaphore(0)

    def handler(stream: SocketStream) -> None:
        stream.write_line(stream.read_line()[0])
        stream.force_output()
        ready.release()
        stream.read_line(eof_error=False)  # idle until the client leaves or terminate()

    with serve(handler, address=LOCAL, max_connections=n + 1) as server:
        base = _open_fds()
        clients = [socket.create_connection((LOCAL, server.port), timeout=LONG) for _ in range(n)]
        try:
            for c in clients:
                c.sendall(b"hello\n")
            for c in clients:
                assert c.recv(16) == b"hello\n"
            for _ in clients:
                assert ready.acquire(timeout=LONG)
            # Each connection: the client's socket and the server's, nothing more.
            assert _open_fds() - base == 2 * n
        finally:
            for c in clients:
                c.close()


def test_terminate_aborts_a_handler_that_replaced_its_socket() -> None:
    """terminate() acts on the stream's socket of the moment, not on the one accepted."""
    replaced = threading.Event()
    outcome: list[object] = []
    kept: list[socket.socket] = []

    def handler(stream: SocketStream) -> None:
        a, b = socket.socketpair()
        kept.append(b)
        old = stream.replace_socket(a)  # the accepted socket: now the handler's own
        assert old is not None
        kept.append(old)
        replaced.set()
        outcome.append(stream.read_line(eof_error=False))  # blocks on the socketpair

    server = serve(handler, address=LOCAL, read_timeout=None)
    try:
        with socket.create_connection((LOCAL, server.port), timeout=LONG):
            assert replaced.wait(LONG)
            t0 = time.monotonic()
            server.terminate()
            assert time.monotonic() - t0 < LONG / 2
            assert server.active_connections == 0
            assert outcome == [(None, True)]
    finally:
        server.terminate()
        for s in kept:
            s.close()


def test_terminate_leaves_a_socket_the_handler_took_alone() -> None:
    """A socket the handler took out of its stream is the handler's: terminate() does not
    shut it down (the stream it left is closed)."""
    taken: list[socket.socket] = []
    done = threading.Event()

    def handler(stream: SocketStream) -> None:
        a, b = socket.socketpair()
        old = stream.replace_socket(a)
        assert old is not None
        taken.extend((old, b))
        done.set()
        stream.read_line(eof_error=False)

    server = serve(handler, address=LOCAL, read_timeout=None)
    try:
        with socket.create_connection((LOCAL, server.port), timeout=LONG) as c:
            assert done.wait(LONG)
            server.terminate()
            taken[0].sendall(b"still mine\n")
            assert c.recv(16) == b"still mine\n"
    finally:
        server.terminate()
        for s in taken:
            s.close()


def test_terminate_while_waiting_for_a_slot() -> None:
    entered = threading.Event()

    def handler(stream: SocketStream) -> None:
        entered.set()
        stream.read_line(eof_error=False)

    server = serve(handler, address=LOCAL, max_connections=1)
    with open_tcp_stream(LOCAL, server.port) as a, open_tcp_stream(LOCAL, server.port) as b:
        assert entered.wait(LONG)
        server.terminate()
        assert a.read_line(eof_error=False) == (None, True)
        b.read_timeout = LONG
        try:  # never served: it was in the backlog of the closed listener
            result: Any = b.read_line(eof_error=False)
        except sockstream.SocketIOError as exc:
            result = exc.__cause__
        assert result == (None, True) or isinstance(result, ConnectionResetError)


@pytest.mark.parametrize(
    ("keyword", "value", "error"),
    [
        ("max_connections", 0, ValueError),
        ("max_connections", 1.5, TypeError),
        ("handshake_timeout", -1, ValueError),
        ("read_timeout", "1", TypeError),
        ("element_type", "utf-8", ValueError),
        ("direction", "up", ValueError),
        ("max_line_length", 0, ValueError),
        ("ssl_ctx", "v3", ValueError),
        ("backlog", -5, ValueError),
    ],
)
def test_serve_bad_arguments(keyword: str, value: Any, error: type) -> None:
    with pytest.raises(error, match=keyword if keyword != "ssl_ctx" else "insecure"):
        serve(_echo_lines, address=LOCAL, **{keyword: value})


def test_serve_raises_when_it_cannot_listen() -> None:
    with socket.socket() as taken:
        taken.bind((LOCAL, 0))
        taken.listen(1)
        with pytest.raises(SocketCreateError):
            serve(_echo_lines, address=LOCAL, service=taken.getsockname()[1])


def test_serve_line_limit_by_default() -> None:
    errors: list[sockstream.LineTooLongError] = []

    def handler(stream: SocketStream) -> None:
        try:
            stream.read_line()
        except sockstream.LineTooLongError as exc:
            errors.append(exc)

    with serve(handler, address=LOCAL) as server, open_tcp_stream(LOCAL, server.port) as s:
        s.write("x" * 70000)
        s.force_output()
        assert s.read_line(eof_error=False) == (None, True)
    assert len(errors) == 1
    assert errors[0].max_line_length == 65536


# ---- serve with TLS ---------------------------------------------------------------------------


def test_serve_tls_echo(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> None:
    with (
        serve(_echo_lines, address=LOCAL, ssl_ctx=server_ctx) as server,
        open_tcp_stream("localhost", server.port, ssl_ctx=client_ctx) as s,
    ):
        s.write_line("over tls")
        s.force_output()
        assert s.read_line() == ("over tls", False)


def test_serve_tls_context_made_once(
    cert_files: dict[str, str], client_ctx: ssl.SSLContext
) -> None:
    configured: list[ssl.SSLContext] = []

    def configure(ctx: ssl.SSLContext) -> None:
        configured.append(ctx)
        ctx.load_cert_chain(cert_files["cert"], cert_files["key"])

    with serve(_echo_lines, address=LOCAL, ssl_ctx=True, ctx_configure_callback=configure) as srv:
        for _ in range(3):
            with open_tcp_stream(LOCAL, srv.port, ssl_ctx=client_ctx) as s:
                s.write_line("x")
                s.force_output()
                assert s.read_line() == ("x", False)
    assert len(configured) == 1


def test_failed_handshake_is_logged_and_the_server_goes_on(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, log_events: _Events
) -> None:
    with serve(_echo_lines, address=LOCAL, ssl_ctx=server_ctx) as server:
        with socket.create_connection((LOCAL, server.port), timeout=LONG) as raw:
            raw.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not TLS
            while raw.recv(4096):
                pass  # the server drops us
        record = log_events.wait_for(lambda r: "set-up" in r.getMessage())
        assert record.levelno == logging.INFO
        assert record.exc_info is None
        with open_tcp_stream(LOCAL, server.port, ssl_ctx=client_ctx) as s:
            s.write_line("fine")
            s.force_output()
            assert s.read_line() == ("fine", False)


@pytest.mark.parametrize("flood", ["idle", "garbage"])
def test_flooded_tls_server_still_answers_quickly(
    flood: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    """100 connections that never finish a handshake do not delay a good client.

    The handshake timeout is long (LONG), so the good client is only quick if the handshakes run
    beside the accept loop and the bad connections hold only their own threads.
    """
    count = 100
    with serve(
        _echo_lines,
        address=LOCAL,
        ssl_ctx=server_ctx,
        handshake_timeout=LONG,
        max_connections=count + 20,
    ) as server:
        bad = [socket.create_connection((LOCAL, server.port), timeout=LONG) for _ in range(count)]
        try:
            if flood == "garbage":
                for b in bad:
                    b.sendall(b"\x16\x03\x01\x00\x05hello" + bytes(range(256)))
            t0 = time.monotonic()
            with open_tcp_stream(LOCAL, server.port, ssl_ctx=client_ctx) as s:
                s.write_line("still here")
                s.force_output()
                assert s.read_line() == ("still here", False)
            assert time.monotonic() - t0 < LONG / 2
        finally:
            for b in bad:
                b.close()


def test_an_idle_client_holds_its_slot_only_until_the_handshake_timeout(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    with (
        serve(
            _echo_lines,
            address=LOCAL,
            ssl_ctx=server_ctx,
            handshake_timeout=SHORT,
            max_connections=1,
        ) as server,
        socket.create_connection((LOCAL, server.port), timeout=LONG) as idle,
    ):
        t0 = time.monotonic()
        with open_tcp_stream(LOCAL, server.port, ssl_ctx=client_ctx) as s:
            s.write_line("next")
            s.force_output()
            assert s.read_line() == ("next", False)
        assert time.monotonic() - t0 >= SHORT * 0.9
        assert idle.recv(1) == b""  # dropped by the handshake timeout


def test_terminate_during_handshakes(server_ctx: ssl.SSLContext) -> None:
    in_handshake = threading.Semaphore(0)
    server = serve(
        _echo_lines,
        address=LOCAL,
        ssl_ctx=server_ctx,
        handshake_timeout=LONG * 5,
        ssl_configure_callback=lambda _obj: in_handshake.release(),
    )
    idle = [socket.create_connection((LOCAL, server.port), timeout=LONG) for _ in range(10)]
    try:
        for _ in idle:
            assert in_handshake.acquire(timeout=LONG)
        t0 = time.monotonic()
        server.terminate()
        assert time.monotonic() - t0 < LONG / 2
        assert server.active_connections == 0
        for s in idle:
            assert s.recv(1) == b""
    finally:
        for s in idle:
            s.close()

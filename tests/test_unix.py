"""Unix domain sockets (open_unix_stream, path=) and reuse_port, on real sockets.

Third-party peers (curl --unix-socket, socat) are in tests/interop/test_unix_peers.py.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import LONG
from sockstream import (
    SocketCreateError,
    SocketStream,
    SSLFailure,
    open_tcp_stream,
    open_unix_stream,
    serve,
    start_up_server,
)


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    short = Path(f"/tmp/ss-{os.getpid()}-{threading.get_ident() % 100000}")
    short.mkdir(exist_ok=True)
    path = short / "s.sock"
    yield str(path)
    if path.exists() or path.is_socket():
        path.unlink()
    short.rmdir()


def echo(stream: SocketStream) -> None:
    for line in stream:
        stream.write(line)
        stream.force_output()


def test_serve_on_a_path_and_open_unix_stream(sock_path: str) -> None:
    seen: list[tuple[Any, Any]] = []

    def handler(stream: SocketStream) -> None:
        seen.append((stream.local_address, stream.peer_address))
        echo(stream)

    with serve(handler, path=sock_path) as server:
        assert server.path == sock_path
        assert server.address == sock_path
        assert server.port == 0
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        with open_unix_stream(sock_path, read_timeout=LONG) as s:
            assert s.peer_address == sock_path
            assert s.local_address == ""  # an unnamed end
            s.write_line("hello")
            s.force_output()
            assert s.read_line() == ("hello", False)
        with open_unix_stream(Path(sock_path), element_type="unsigned-byte-8") as s:
            s.write_sequence(b"\x00\xffx\n")
            s.force_output()
            assert s.readline() == b"\x00\xffx\n"
    assert not os.path.lexists(sock_path), "the socket file was not removed"
    assert seen[0] == (sock_path, "")


def test_start_up_server_on_a_path(sock_path: str) -> None:
    got = threading.Event()

    def function(sock: socket.socket) -> None:
        with sock:
            sock.sendall(b"hi\n")
        got.set()

    server = start_up_server(function, path=sock_path, wait=True)
    try:
        with open_unix_stream(sock_path) as s:
            assert s.read_line() == ("hi", False)
        assert got.wait(LONG)
    finally:
        server.terminate()
    assert not os.path.lexists(sock_path)


def test_a_stale_socket_file_is_replaced(sock_path: str) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.listen(1)
    dead.close()  # a server that died without removing its file
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    with serve(echo, path=sock_path), open_unix_stream(sock_path) as s:
        s.write_line("x")
        s.force_output()
        assert s.read_line() == ("x", False)
    assert not os.path.lexists(sock_path)


def test_a_live_servers_file_is_never_taken(sock_path: str) -> None:
    with serve(echo, path=sock_path):
        inode = os.lstat(sock_path).st_ino
        with pytest.raises(SocketCreateError, match="a server is listening") as info:
            serve(echo, path=sock_path)
        assert info.value.errno == errno.EADDRINUSE
        failed = start_up_server(lambda s: s.close(), path=sock_path)  # wait=False
        assert failed.error is not None
        assert os.lstat(sock_path).st_ino == inode
        with open_unix_stream(sock_path) as s:  # the first still serves
            s.write_line("still")
            s.force_output()
            assert s.read_line() == ("still", False)
    # A live server that is busy (its backlog full) is still live.
    busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    busy.bind(sock_path)
    busy.listen(0)
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            fillers.append(c)
            try:
                c.connect(sock_path)
            except BlockingIOError:
                break
        with pytest.raises(SocketCreateError, match="listening"):
            serve(echo, path=sock_path)
    finally:
        for c in fillers:
            c.close()
        busy.close()
        os.unlink(sock_path)


def test_a_path_that_is_not_a_socket_is_left_alone(sock_path: str) -> None:
    Path(sock_path).write_text("precious")
    with pytest.raises(SocketCreateError, match="not a socket"):
        serve(echo, path=sock_path)
    assert Path(sock_path).read_text() == "precious"
    os.unlink(sock_path)


def test_stopping_removes_only_our_own_file(sock_path: str) -> None:
    first = serve(echo, path=sock_path)
    try:
        os.unlink(sock_path)  # someone removed it, and another server took the path
        with serve(echo, path=sock_path):
            first.terminate()
            assert os.path.lexists(sock_path), "the first server removed the second's file"
            with open_unix_stream(sock_path) as s:
                s.write_line("second")
                s.force_output()
                assert s.read_line() == ("second", False)
    finally:
        first.terminate()
    assert not os.path.lexists(sock_path)


@pytest.mark.skipif(not os.path.exists("/proc/net/unix"), reason="Linux abstract namespace")
def test_abstract_namespace(sock_path: str) -> None:
    name = "\0sockstream-test-" + str(os.getpid())
    with serve(echo, path=name), open_unix_stream(name) as s:
        s.write_line("abstract")
        s.force_output()
        assert s.read_line() == ("abstract", False)


def test_tls_over_a_unix_socket(
    sock_path: str, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    with serve(echo, path=sock_path, ssl_ctx=server_ctx):
        with open_unix_stream(
            sock_path, ssl_ctx=client_ctx, tlsext_host_name="localhost", read_timeout=LONG
        ) as s:
            assert s.ssl_object is not None
            s.write_line("secret")
            s.force_output()
            assert s.read_line() == ("secret", False)
        with pytest.raises(ValueError, match="tlsext_host_name"):
            open_unix_stream(sock_path, ssl_ctx=client_ctx)
        with pytest.raises(SSLFailure):
            open_unix_stream(sock_path, ssl_ctx=client_ctx, tlsext_host_name="wrong.example")
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with open_unix_stream(sock_path, ssl_ctx=insecure) as s:
            s.write_line("unchecked")
            s.force_output()
            assert s.read_line() == ("unchecked", False)


def test_open_unix_stream_failures(sock_path: str) -> None:
    with pytest.raises(SocketCreateError, match="could not connect") as info:
        open_unix_stream(sock_path)
    assert info.value.errno == errno.ENOENT
    Path(sock_path).write_text("")
    with pytest.raises(SocketCreateError):
        open_unix_stream(sock_path)  # not a socket
    os.unlink(sock_path)
    with pytest.raises(TypeError, match="path"):
        open_unix_stream(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="path"):
        open_unix_stream("")
    with pytest.raises(ValueError, match="NUL"):
        open_unix_stream("a\0b")
    with pytest.raises(ValueError, match="read_timeout"):
        open_unix_stream(sock_path, read_timeout=-1)
    with pytest.raises(TypeError):
        open_unix_stream(sock_path, no_such_keyword=1)


def test_path_and_reuse_port_argument_checks(sock_path: str) -> None:
    with pytest.raises(ValueError, match="instead of service"):
        serve(echo, path=sock_path, service=8080)
    with pytest.raises(ValueError, match="instead of service"):
        start_up_server(echo, path=sock_path, address="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reuse_port"):
        serve(echo, path=sock_path, reuse_port=True)
    with pytest.raises(TypeError, match="reuse_port"):
        serve(echo, reuse_port=1)  # type: ignore[arg-type]
    assert not os.path.lexists(sock_path)


# ---- reuse_port --------------------------------------------------------------------------------


def test_reuse_port_two_servers_on_one_port() -> None:
    def named(n: int) -> Any:
        def handler(stream: SocketStream) -> None:
            stream.write_line(str(n))

        return handler

    first = serve(named(1), address="127.0.0.1", reuse_port=True)
    try:
        port = first.port
        # Without SO_REUSEPORT the port is taken.
        with pytest.raises(SocketCreateError) as info:
            serve(named(9), address="127.0.0.1", service=port)
        assert info.value.errno == errno.EADDRINUSE
        with serve(named(2), address="127.0.0.1", service=port, reuse_port=True) as second:
            assert second.port == port
            answers = set()
            for _ in range(64):  # the kernel spreads connections by a hash of the 4-tuple
                with open_tcp_stream("127.0.0.1", port, read_timeout=LONG) as s:
                    answers.add(s.read_line()[0])
                if answers == {"1", "2"}:
                    break
            assert answers == {"1", "2"}
    finally:
        first.terminate()

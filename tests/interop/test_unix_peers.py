"""Unix domain sockets against real peers: curl --unix-socket and socat.

``curl`` talks to ``sockstream serve --unix PATH --http`` (the command line, as a user runs it);
``socat`` talks to an echo ``serve(path=...)`` and to ``sockstream serve --unix PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import LONG
from sockstream import SocketStream, serve

pytestmark = pytest.mark.interop


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it)")
    return path


@pytest.fixture
def sock_path() -> Iterator[str]:
    d = Path(f"/tmp/ss-peers-{os.getpid()}-{threading.get_ident() % 100000}")
    d.mkdir(exist_ok=True)
    path = d / "s.sock"
    yield str(path)
    if os.path.lexists(path):
        path.unlink()
    d.rmdir()


class Serve:
    """``sockstream serve --unix PATH ARGS...``, stopped with SIGINT (Ctrl-C) at the end."""

    def __init__(self, path: str, *args: str) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "sockstream", "serve", "--unix", path, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.p.stdout is not None
        line = self.p.stdout.readline().decode().strip()
        assert line == f"listening on unix:{path}", (line, self.stderr())

    def stderr(self) -> str:
        if self.p.poll() is None:
            return ""
        assert self.p.stderr is not None
        return self.p.stderr.read().decode(errors="replace")

    def stop(self) -> int:
        import signal

        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        try:
            code = self.p.wait(LONG)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait(LONG)
            for f in (self.p.stdout, self.p.stderr):
                if f is not None:
                    f.close()
        return code


def test_curl_unix_socket_against_serve_http_cli(sock_path: str) -> None:
    curl = _tool("curl")
    server = Serve(sock_path, "--http")
    try:
        r = subprocess.run(
            [
                curl,
                "--silent",
                "--show-error",
                "--max-time",
                str(LONG),
                "--unix-socket",
                sock_path,
                "-i",
                "http://localhost/",
            ],
            capture_output=True,
            text=True,
            timeout=LONG * 2,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("HTTP/1.")
        assert " 200 " in r.stdout.splitlines()[0]
        assert "Hello from sockstream" in r.stdout
    finally:
        assert server.stop() == 0
    assert not os.path.lexists(sock_path), "serve left its socket file behind"


def test_socat_against_an_echo_serve(sock_path: str) -> None:
    socat = _tool("socat")

    def echo(stream: SocketStream) -> None:
        for line in stream:
            stream.write(line)
        stream.force_output()

    with serve(echo, path=sock_path, read_timeout=LONG):
        payload = "".join(f"line {i} \u00e9\n" for i in range(200)).encode("latin-1")
        r = subprocess.run(
            [socat, "-t", str(LONG), "-", f"UNIX-CONNECT:{sock_path}"],
            input=payload,
            capture_output=True,
            timeout=LONG * 2,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == payload


def test_socat_against_serve_echo_cli(sock_path: str) -> None:
    socat = _tool("socat")
    server = Serve(sock_path)  # echo by default
    try:
        r = subprocess.run(
            [socat, "-t", str(LONG), "-", f"UNIX-CONNECT:{sock_path}"],
            input=b"hello over a Unix socket\n",
            capture_output=True,
            timeout=LONG * 2,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"hello over a Unix socket\n"
    finally:
        assert server.stop() == 0
    assert not os.path.lexists(sock_path)


def test_serve_cli_replaces_a_stale_file_and_refuses_a_live_one(sock_path: str) -> None:
    import socket

    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)
    dead.close()
    server = Serve(sock_path, "--http")
    try:
        r = subprocess.run(
            [sys.executable, "-m", "sockstream", "serve", "--unix", sock_path],
            capture_output=True,
            text=True,
            timeout=LONG * 2,
            check=False,
        )
        assert r.returncode == 1
        assert "a server is listening there" in r.stderr
        assert "Traceback" not in r.stderr
    finally:
        assert server.stop() == 0

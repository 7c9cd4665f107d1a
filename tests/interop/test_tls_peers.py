"""ALPN, session resumption, key logging and the CLI's TLS options against peers no one here
wrote: ``openssl s_server`` and ``curl``.  Certificates from the session's trustme CA.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import LONG
from interop.test_openssl import VERSION_FLAGS, Lines, _free_port, _reaped, _tell
from sockstream import SocketStream, open_tcp_stream, serve
from test_cli import one_error_line, run_cli

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command"),
]


@pytest.fixture(params=list(VERSION_FLAGS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextmanager
def s_server(
    cert_files: dict[str, str], *flags: str, naccept: int = 1
) -> Iterator[tuple[int, Any, Lines]]:
    """``openssl s_server`` on a free loopback port for ``naccept`` connections."""
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                "openssl",
                "s_server",
                "-accept",
                f"127.0.0.1:{port}",
                "-naccept",
                str(naccept),
                "-cert",
                cert_files["cert"],
                "-key",
                cert_files["key"],
                *flags,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        with _reaped(proc):
            assert proc.stdout is not None
            lines = Lines(proc.stdout)
            try:
                try:
                    lines.expect(b"ACCEPT")
                except AssertionError:
                    if any(
                        b"bind" in line.lower() or b"in use" in line.lower() for line in lines.seen
                    ):
                        continue
                    raise
                yield port, proc, lines
                return
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(LONG)
                lines.join()
    pytest.fail("openssl s_server could not bind a port in 5 tries")


# ---- ALPN -----------------------------------------------------------------------------------


def test_alpn_against_s_server(
    cert_files: dict[str, str], client_ctx: ssl.SSLContext, version: str
) -> None:
    with s_server(cert_files, VERSION_FLAGS[version], "-alpn", "http/1.1") as (port, proc, _):
        stream = open_tcp_stream(
            "127.0.0.1",
            port,
            ssl_ctx=client_ctx,
            tlsext_host_name="localhost",
            alpn_protocols=["h2", "http/1.1"],
            timeout=LONG,
            read_timeout=LONG,
        )
        assert stream is not None
        with stream:
            assert stream.alpn_protocol == "http/1.1"
            _tell(proc, b"agreed\n")
            assert stream.read_line() == ("agreed", False)


def _http_handler(agreed: list[str | None]) -> Any:
    def handler(stream: SocketStream) -> None:
        agreed.append(stream.alpn_protocol)
        while stream.read_line()[0].rstrip("\r"):
            pass  # the request head
        body = f"ALPN {stream.alpn_protocol}\n"
        stream.write_string(
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
        )

    return handler


def test_alpn_with_serve_our_client_and_curl(
    cert_files: dict[str, str], client_ctx: ssl.SSLContext
) -> None:
    agreed: list[str | None] = []
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_files["cert"], cert_files["key"])
    with serve(
        _http_handler(agreed), ssl_ctx=ctx, alpn_protocols=["http/1.1"], read_timeout=LONG
    ) as server:
        stream = open_tcp_stream(
            "127.0.0.1",
            server.port,
            ssl_ctx=client_ctx,
            tlsext_host_name="localhost",
            alpn_protocols=["h2", "http/1.1"],
            timeout=LONG,
        )
        assert stream is not None
        with stream:
            assert stream.alpn_protocol == "http/1.1"
            stream.write_string("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            stream.force_output()
            assert stream.read_line() == ("HTTP/1.1 200 OK\r", False)
        curl = shutil.which("curl")
        if curl is None:
            pytest.skip("no curl command")
        r = subprocess.run(
            [
                curl,
                "-sS",
                "-v",
                "--http1.1",
                "--max-time",
                str(LONG),
                "--noproxy",
                "*",
                "--cacert",
                cert_files["ca"],
                f"https://localhost:{server.port}/",
            ],
            capture_output=True,
            timeout=LONG + 5,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout == b"ALPN http/1.1\n"
        assert re.search(rb"ALPN[:,] server accepted (to use )?http/1.1", r.stderr), r.stderr
    assert agreed == ["http/1.1", "http/1.1"]


# ---- session resumption ---------------------------------------------------------------------


def test_session_resumption_against_s_server(
    cert_files: dict[str, str], version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared default contexts: the second connection offers the first one's session."""
    monkeypatch.setenv("SSL_CERT_FILE", cert_files["ca"])  # the shared context's trust store
    with s_server(cert_files, VERSION_FLAGS[version], naccept=2) as (port, proc, lines):
        session = None
        for round_ in range(2):
            stream = open_tcp_stream(
                "127.0.0.1",
                port,
                ssl_ctx=True,
                tlsext_host_name="localhost",
                ssl_session=session,
                timeout=LONG,
                read_timeout=LONG,
            )
            assert stream is not None
            with stream:
                assert stream.ssl_object.version() == f"TLSv{version}"
                # A line from the server: under TLS 1.3 the session ticket comes before it.
                _tell(proc, f"round {round_}\n".encode())
                assert stream.read_line() == (f"round {round_}", False)
                assert stream.session_reused is (round_ == 1)
                session = stream.ssl_session
                assert session is not None
        assert proc.wait(LONG) == 0  # both connections served, ended by our close-notify
        assert b"ERROR\n" not in lines.rest()


# ---- the CLI --------------------------------------------------------------------------------


def test_cli_connect_alpn_and_keylog(cert_files: dict[str, str], tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    with s_server(cert_files, "-alpn", "http/1.1", "-rev") as (port, _proc, _lines):
        r = run_cli(
            "connect",
            "localhost",
            str(port),
            "--cafile",
            cert_files["ca"],
            "--alpn",
            "h2,http/1.1",
            "--keylog",
            str(keylog),
            "-v",
            input=b"hello\n",
        )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"olleh\n"
    assert "ALPN http/1.1" in r.stderr.decode()
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()


def test_cli_connect_honours_sslkeylogfile(cert_files: dict[str, str], tmp_path: Path) -> None:
    keylog = tmp_path / "env-keys.log"
    with s_server(cert_files, "-rev") as (port, _proc, _lines):
        r = run_cli(
            "connect",
            "localhost",
            str(port),
            "--cafile",
            cert_files["ca"],
            input=b"abc\n",
            SSLKEYLOGFILE=str(keylog),
        )
    assert r.returncode == 0, r.stderr
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()


def test_cli_connect_explains_a_verification_error(cert_files: dict[str, str]) -> None:
    with s_server(cert_files, naccept=2) as (port, _proc, _lines):
        r = run_cli("connect", "localhost", str(port), "--tls", input=b"x\n")
        assert r.returncode == 1
        line = one_error_line(r)
        assert "certificate was refused" in line
        assert "verify code 20" in line
        assert "--cafile" in line
        r = run_cli(
            "connect",
            "127.0.0.1",
            str(port),
            "--cafile",
            cert_files["ca"],
            "--sni",
            "wrong.example.test",
            input=b"x\n",
        )
        assert r.returncode == 1
        line = one_error_line(r)
        assert "verify code 62" in line
        assert "--sni" in line


def test_cli_serve_tls_alpn_with_curl(tmp_path: Path) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl command")
    from test_cli import LISTENING, Proc

    ca = tmp_path / "ca.pem"
    p = Proc("serve", "0", "--http", "--tls", "--alpn", "http/1.1", "--write-ca", str(ca))
    try:
        m = LISTENING.match(p.readline().rstrip(b"\n"))
        assert m, p.stderr()
        r = subprocess.run(
            [
                curl,
                "-sS",
                "-v",
                "--http1.1",
                "--max-time",
                str(LONG),
                "--noproxy",
                "*",
                "--cacert",
                str(ca),
                f"https://localhost:{int(m.group(2))}/",
            ],
            capture_output=True,
            timeout=LONG + 5,
        )
        assert r.returncode == 0, r.stderr
        assert re.search(rb"ALPN[:,] server accepted (to use )?http/1.1", r.stderr), r.stderr
    finally:
        p.stop()


def test_cli_serve_alpn_needs_tls() -> None:
    r = run_cli("serve", "0", "--alpn", "h2")
    assert r.returncode == 2
    assert "--alpn needs --tls" in one_error_line(r)


def test_keylog_with_serve_and_s_client(
    cert_files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server context the stream makes logs its secrets too (s_client is the client)."""
    keylog = tmp_path / "server-keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    done = threading.Event()

    def handler(stream: SocketStream) -> None:
        stream.write_line(stream.read_line()[0])
        stream.force_output()
        done.set()

    with serve(
        handler,
        ssl_ctx=True,
        ctx_configure_callback=lambda c: c.load_cert_chain(cert_files["cert"], cert_files["key"]),
        read_timeout=LONG,
    ) as server:
        r = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-quiet",
                "-CAfile",
                cert_files["ca"],
                "-verify_return_error",
            ],
            input=b"via s_client\n",
            capture_output=True,
            timeout=LONG,
        )
        assert done.wait(LONG)
    assert b"via s_client" in r.stdout
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()

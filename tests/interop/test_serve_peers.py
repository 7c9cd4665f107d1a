"""serve against third-party clients: curl over HTTPS and HTTP, openssl s_client over TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from conftest import LONG, requires_ipv6
from sockstream import Server, SocketStream, serve

pytestmark = pytest.mark.interop

PAGE = "hello from sockstream\n"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def http_handler(stream: SocketStream) -> None:
    """A tiny HTTP/1.0 server: read the request head, answer with PAGE, close."""
    request, _ = stream.read_line()
    while True:  # the headers, up to the empty line
        line, missing = stream.read_line()
        if line in ("", "\r") or missing:
            break
    method = request.split(" ", 1)[0]
    head = (
        "HTTP/1.0 200 OK\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(PAGE)}\r\n"
        "Connection: close\r\n\r\n"
    )
    stream.write_string(head if method == "HEAD" else head + PAGE)


def upcase_handler(stream: SocketStream) -> None:
    """Echo one line in upper case, then close."""
    line, _ = stream.read_line()
    stream.write_line(line.upper())


@pytest.fixture
def https_server(server_ctx: ssl.SSLContext) -> Iterator[Server]:
    with serve(http_handler, address="127.0.0.1", ssl_ctx=server_ctx, read_timeout=LONG) as s:
        yield s


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("curl"), "--silent", "--show-error", "--max-time", str(LONG), *args],
        capture_output=True,
        text=True,
        timeout=LONG * 2,
        check=False,
    )


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_curl_https(host: str, https_server: Server, cert_files: dict[str, str]) -> None:
    done = _curl("--cacert", cert_files["ca"], f"https://{host}:{https_server.port}/")
    assert done.returncode == 0, done.stderr
    assert done.stdout == PAGE


def test_curl_rejects_an_untrusted_server(https_server: Server) -> None:
    done = _curl(f"https://localhost:{https_server.port}/")  # the test CA is not trusted
    assert done.returncode != 0
    # ... and the server goes on
    assert https_server.listening


def test_curl_https_with_a_context_made_by_serve(cert_files: dict[str, str]) -> None:
    def configure(ctx: ssl.SSLContext) -> None:
        ctx.load_cert_chain(cert_files["cert"], cert_files["key"])

    with serve(
        http_handler, address="127.0.0.1", ssl_ctx=True, ctx_configure_callback=configure
    ) as server:
        for tls in ("--tlsv1.2", "--tlsv1.3"):
            done = _curl(tls, "--cacert", cert_files["ca"], f"https://localhost:{server.port}/")
            assert done.returncode == 0, done.stderr
            assert done.stdout == PAGE


@requires_ipv6
def test_curl_https_ipv6(server_ctx: ssl.SSLContext, cert_files: dict[str, str]) -> None:
    with serve(http_handler, address="::1", ipv6=True, ssl_ctx=server_ctx) as server:
        done = _curl("--cacert", cert_files["ca"], f"https://[::1]:{server.port}/")
        assert done.returncode == 0, done.stderr
        assert done.stdout == PAGE


def test_curl_plain_http_many_times() -> None:
    with serve(http_handler, address="127.0.0.1") as server:
        url = f"http://127.0.0.1:{server.port}/"
        done = _curl(*[url] * 20)  # 20 requests, one connection each (HTTP/1.0 + close)
        assert done.returncode == 0, done.stderr
        assert done.stdout == PAGE * 20
        head = _curl("--head", url)
        assert head.stdout.startswith("HTTP/1.0 200 OK")


@pytest.mark.parametrize("version", [[], ["-tls1_2"], ["-tls1_3"]])
def test_openssl_s_client_talks_to_a_tls_echo(
    version: list[str], server_ctx: ssl.SSLContext, cert_files: dict[str, str]
) -> None:
    openssl = _tool("openssl")
    with serve(upcase_handler, address="127.0.0.1", ssl_ctx=server_ctx) as server:
        done = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-CAfile",
                cert_files["ca"],
                "-verify_return_error",
                "-quiet",
                "-servername",
                "localhost",
                "-verify_hostname",
                "localhost",
                *version,
            ],
            input="hello, tls\n",
            capture_output=True,
            text=True,
            timeout=LONG * 2,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "HELLO, TLS\n"


def test_openssl_s_client_fails_verification_against_a_wrong_name(
    server_ctx: ssl.SSLContext, cert_files: dict[str, str]
) -> None:
    openssl = _tool("openssl")
    with serve(upcase_handler, address="127.0.0.1", ssl_ctx=server_ctx) as server:
        done = subprocess.run(
            [
                openssl,
                "s_client",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-CAfile",
                cert_files["ca"],
                "-verify_return_error",
                "-quiet",
                "-verify_hostname",
                "wrong.example",
            ],
            input="x\n",
            capture_output=True,
            text=True,
            timeout=LONG * 2,
            check=False,
        )
        assert done.returncode != 0
        assert server.listening

"""Third-party peers for interop tests: an nginx started on loopback ports for the session.

``nginx`` yields ``(host, port)`` of a plain HTTP server serving ``INDEX_PAGE`` at ``/``;
``nginx_server`` gives the rest: a TLS port (certificate from the session test CA) and, when the
host has IPv6, the same site on ``[::1]``.  Skips (with the reason) only if nginx is not
installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from conftest import LONG, has_ipv6

INDEX_PAGE = "<html><body>hello from nginx</body></html>\n"
#: Served as /big.txt: with ``Accept-Encoding: gzip`` nginx sends it gzipped and chunked.
BIG_TEXT = "".join(f"line {i}: {'x' * (i % 50)}\n" for i in range(20000)).encode()
#: Served as /blob.bin (every byte value, CR and LF among them): a Content-Length body.
BLOB = bytes(range(256)) * 1024

#: How long one wait for nginx to come up may last: short, so a failure is noticed at once.
_POLL = 0.05


class NginxServer(NamedTuple):
    host: str
    port: int
    tls_port: int
    ipv6: bool  # also listening on [::1] with the same ports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    if has_ipv6():  # make sure the port is free on ::1 too
        with socket.socket(socket.AF_INET6) as s6:
            s6.bind(("::1", port))
    return port


def _config(prefix: Path, port: int, tls_port: int, ipv6: bool, cert: str, key: str) -> str:
    v6 = f"listen [::1]:{port}; listen [::1]:{tls_port} ssl;" if ipv6 else ""
    return f"""
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    default_type text/html;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 0;
    types {{ text/plain txt; application/octet-stream bin; text/html html; }}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        {v6}
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {prefix}/html;
        index index.html;
    }}
}}
"""


def _wait_until_accepting(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + LONG
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=LONG):
                return
        except ConnectionRefusedError:
            pass
        try:  # a short wait that ends at once if nginx exits
            proc.wait(_POLL)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"nginx exited with {proc.returncode}: {log.read_text()}")
    raise RuntimeError(f"nginx did not accept connections within {LONG} s: {log.read_text()}")


@pytest.fixture(scope="session")
def nginx_server(
    tmp_path_factory: pytest.TempPathFactory, cert_files: dict[str, str]
) -> Iterator[NginxServer]:
    exe = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if exe is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    prefix = tmp_path_factory.mktemp("nginx")
    (prefix / "html").mkdir()
    (prefix / "tmp").mkdir()
    (prefix / "html" / "index.html").write_text(INDEX_PAGE)
    (prefix / "html" / "big.txt").write_bytes(BIG_TEXT)
    (prefix / "html" / "blob.bin").write_bytes(BLOB)
    ipv6 = has_ipv6()
    conf = prefix / "nginx.conf"
    stderr_log = prefix / "stderr.log"
    for _attempt in range(3):  # a port picked free may be taken before nginx binds it
        port, tls_port = _free_port(), _free_port()
        conf.write_text(
            _config(prefix, port, tls_port, ipv6, cert_files["cert"], cert_files["key"])
        )
        with open(stderr_log, "wb") as err:
            proc = subprocess.Popen(
                [
                    exe,
                    "-c",
                    str(conf),
                    "-p",
                    str(prefix),
                    "-e",
                    str(prefix / "error.log"),
                    "-g",
                    "daemon off;",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            _wait_until_accepting(proc, port, stderr_log)
            break
        except RuntimeError:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if "Address already in use" not in stderr_log.read_text():
                raise
    else:
        raise RuntimeError(f"nginx could not bind a port: {stderr_log.read_text()}")
    try:
        yield NginxServer("127.0.0.1", port, tls_port, ipv6)
    finally:
        proc.terminate()
        try:
            proc.wait(LONG)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def nginx(nginx_server: NginxServer) -> tuple[str, int]:
    """(host, port) of an nginx serving INDEX_PAGE over plain HTTP on loopback."""
    return nginx_server.host, nginx_server.port


# ---- daemons for the recipes: Redis, memcached, an SMTP server -------------------------------


class Daemon(NamedTuple):
    host: str
    port: int
    tls_port: int | None


def _start_daemon(
    name: str, argv: Callable[[int, int], list[str]], log: Path, tls: bool = False
) -> tuple[subprocess.Popen[bytes], int, int | None]:
    """Start ``argv(port, tls_port)`` on free loopback ports; retry if a port was taken."""
    exe = shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed (scripts/test installs it with apt-get)")
    for _attempt in range(3):
        port = _free_port()
        tls_port = _free_port() if tls else 0
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [exe, *argv(port, tls_port)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_accepting(proc, port, log)
            if tls:
                _wait_until_accepting(proc, tls_port, log)
            return proc, port, (tls_port if tls else None)
        except RuntimeError:
            _stop(proc)
            if "in use" not in log.read_text():
                raise
    raise RuntimeError(f"{name} could not bind a port: {log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(LONG)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def redis_server(
    tmp_path_factory: pytest.TempPathFactory, cert_files: dict[str, str]
) -> Iterator[Daemon]:
    """A real ``redis-server`` on loopback: a plain port and a TLS port (the test CA)."""
    d = tmp_path_factory.mktemp("redis")

    def argv(port: int, tls_port: int) -> list[str]:
        return [
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            cert_files["cert"],
            "--tls-key-file",
            cert_files["key"],
            "--tls-ca-cert-file",
            cert_files["ca"],
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(d),
            "--daemonize",
            "no",
            "--proto-max-bulk-len",
            "64mb",
        ]

    proc, port, tls_port = _start_daemon("redis-server", argv, d / "redis.log", tls=True)
    try:
        yield Daemon("127.0.0.1", port, tls_port)
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def memcached_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A real ``memcached`` on loopback (TCP only, 64 MiB)."""
    d = tmp_path_factory.mktemp("memcached")

    def argv(port: int, _tls_port: int) -> list[str]:
        return ["-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64", "-u", "root"]

    proc, port, _ = _start_daemon("memcached", argv, d / "memcached.log")
    try:
        yield Daemon("127.0.0.1", port, None)
    finally:
        _stop(proc)

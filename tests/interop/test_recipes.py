"""The recipes of ``docs/recipes/``, run against the real servers they are written for.

Redis (``redis-server``, plain and TLS), memcached, an SMTP server with STARTTLS and AUTH
(``aiosmtpd``), nginx (HTTP/1.1 keep-alive, chunked, pipelining, TLS with SNI), and our own
line server talked to by ``socat`` and ``openssl s_client``.  Each server is started by a
fixture on a free loopback port; a test skips with the reason when its server is missing.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import LONG
from interop.conftest import BIG_TEXT, BLOB, Daemon, NginxServer

pytestmark = pytest.mark.interop

RECIPES = Path(__file__).resolve().parents[2] / "docs" / "recipes"


def load(name: str) -> ModuleType:
    """Import ``docs/recipes/<name>.py`` as a module, as a user running it would."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def redis_recipe() -> ModuleType:
    return load("redis_client")


# ---- Redis ------------------------------------------------------------------------------------


def test_redis_commands_and_binary_values(redis_server: Daemon, redis_recipe: ModuleType) -> None:
    with redis_recipe.Redis(redis_server.host, redis_server.port) as r:
        assert r.command("PING") == "PONG"
        value = b"a\r\nb\0c\r\n\r\n" + bytes(range(256))
        assert r.command("SET", "bin", value) == "OK"
        assert r.command("GET", "bin") == value
        assert r.command("GET", "missing") is None
        assert r.command("DEL", "bin") == 1
        with pytest.raises(redis_recipe.RedisError, match="unknown command"):
            r.command("NOSUCHCOMMAND")
        assert r.command("PING") == "PONG"  # the error reply consumed exactly itself


def test_redis_pipelines_ten_thousand_commands(
    redis_server: Daemon, redis_recipe: ModuleType
) -> None:
    with redis_recipe.Redis(redis_server.host, redis_server.port) as r:
        r.command("DEL", "n")
        for i in range(10_000):
            r.send("SET", f"p{i}", f"v{i}\r\n")
            r.send("INCR", "n")
        r.flush()
        replies = [r.reply() for _ in range(20_000)]
        assert replies[0::2] == ["OK"] * 10_000
        assert replies[1::2] == list(range(1, 10_001))
        for i in range(10_000):
            r.send("GET", f"p{i}")
        r.flush()
        assert [r.reply() for _ in range(10_000)] == [f"v{i}\r\n".encode() for i in range(10_000)]


def test_redis_ten_mebibyte_value(redis_server: Daemon, redis_recipe: ModuleType) -> None:
    big = os.urandom(1 << 20) * 10
    with redis_recipe.Redis(redis_server.host, redis_server.port) as r:
        assert r.command("SET", "big", big) == "OK"
        assert r.command("GET", "big") == big
        r.command("DEL", "big")


def test_redis_blpop_with_read_timeout(redis_server: Daemon, redis_recipe: ModuleType) -> None:
    with (
        redis_recipe.Redis(redis_server.host, redis_server.port) as r,
        redis_recipe.Redis(redis_server.host, redis_server.port) as producer,
    ):
        r.command("DEL", "jobs")
        r.stream.read_timeout = 0.2
        r.send("BLPOP", "jobs", 0)
        r.flush()
        with pytest.raises(TimeoutError):
            r.reply()
        assert r.stream.timed_out
        producer.command("RPUSH", "jobs", "job\r\n1")
        r.stream.read_timeout = LONG
        assert r.reply() == [b"jobs", b"job\r\n1"]  # the stream stayed usable, nothing lost
        assert r.command("PING") == "PONG"


def test_redis_pubsub_waits_on_many_connections(
    redis_server: Daemon, redis_recipe: ModuleType
) -> None:
    channels = [f"ch{i}" for i in range(5)]
    subs = [redis_recipe.subscribe(redis_server.host, redis_server.port, c) for c in channels]
    try:
        with redis_recipe.Redis(redis_server.host, redis_server.port) as pub:
            sent = [(channels[i % 5], f"m{i}\r\n".encode()) for i in range(50)]
            for channel, message in sent:
                assert pub.command("PUBLISH", channel, message) == 1
        got = redis_recipe.collect(subs, len(sent), timeout=LONG)
        assert sorted(got) == sorted(sent)
        for channel in channels:  # per channel, in the order published
            assert [m for c, m in got if c == channel] == [m for c, m in sent if c == channel]
    finally:
        for s in subs:
            s.close()


def test_redis_over_tls(
    redis_server: Daemon, redis_recipe: ModuleType, client_ctx: ssl.SSLContext
) -> None:
    assert redis_server.tls_port is not None
    with redis_recipe.Redis(
        redis_server.host, redis_server.tls_port, ssl_ctx=client_ctx, tlsext_host_name="localhost"
    ) as r:
        assert r.stream.ssl_object is not None
        value = os.urandom(300_000)
        assert r.command("SET", "tls", value) == "OK"
        assert r.command("GET", "tls") == value


def test_redis_recipe_demo_runs(
    redis_server: Daemon, redis_recipe: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_recipe.demo(redis_server.host, redis_server.port)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "PONG"
    assert out[1] == repr(b"hello\r\nworld\0")
    assert out[-2:] == ["no job yet", repr([b"jobs", b"job-1"])]


# ---- memcached ----------------------------------------------------------------------------


def test_memcached_set_get_cas_and_multiget(memcached_server: Daemon) -> None:
    recipe = load("memcached_client")
    mc = recipe.Memcache(memcached_server.host, memcached_server.port)
    try:
        assert mc.set("k", b"v\r\nEND\r\n")
        assert mc.get("k") == b"v\r\nEND\r\n"  # a value that looks like the end marker
        assert mc.get("nope") is None
        _, token = mc.gets("k")
        assert mc.cas("k", b"new", token)
        assert not mc.cas("k", b"stale", token)  # EXISTS: someone (we) changed it
        assert mc.get("k") == b"new"
        values = {f"key{i}": os.urandom(i % 700) + b"\r\n" for i in range(1000)}
        for key, v in values.items():
            assert mc.set(key, v, flags=7)
        got = mc.get_many(list(values))
        assert {k: v for k, (v, _) in got.items()} == values
        assert {flags for _, flags in got.values()} == {7}
    finally:
        mc.close()


# ---- SMTP with STARTTLS -----------------------------------------------------------------------


@pytest.fixture
def smtp_server(server_ctx: ssl.SSLContext) -> Iterator[tuple[Daemon, list[Any]]]:
    """aiosmtpd on loopback: STARTTLS required before AUTH, one user, messages kept."""
    controller_mod = pytest.importorskip("aiosmtpd.controller")
    smtp_mod = pytest.importorskip("aiosmtpd.smtp")
    inbox: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            inbox.append(envelope)
            return "250 OK"

    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        ok = auth_data.login == b"user" and auth_data.password == b"secret"
        return smtp_mod.AuthResult(success=ok)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = controller_mod.Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=authenticate,
        auth_require_tls=True,
        enable_SMTPUTF8=True,
        decode_data=False,
        ready_timeout=LONG,
    )
    controller.start()
    try:
        yield Daemon("127.0.0.1", port, None), inbox
    finally:
        controller.stop()


def test_smtp_starttls_auth_and_an_eight_bit_message(
    smtp_server: tuple[Daemon, list[Any]], client_ctx: ssl.SSLContext
) -> None:
    recipe = load("smtp_client")
    server, inbox = smtp_server
    smtp = recipe.SMTP(server.host, server.port)
    try:
        smtp.ehlo()
        assert "STARTTLS" in smtp.extensions
        with pytest.raises(recipe.SMTPError) as refused:  # AUTH is refused before TLS
            smtp.login("user", "secret")
        assert refused.value.code == 530 or refused.value.code == 538
        smtp.host = "localhost"  # the name the test certificate is for
        smtp.starttls(client_ctx)
        assert smtp.stream.ssl_object is not None
        smtp.login("user", "secret")
        message = (
            "From: a@example.test\r\nTo: b@example.test\r\n"
            "Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
            "Grüße, 世界\r\n.starts with a dot\r\n..two dots\r\n.\r\nlast\r\n"
        ).encode()
        smtp.send_mail("a@example.test", ["b@example.test"], message)
        smtp.quit()
    finally:
        smtp.close()
    assert len(inbox) == 1
    assert inbox[0].content == message  # byte-exact, dot-stuffing undone by the server
    assert inbox[0].rcpt_tos == ["b@example.test"]


def test_dot_stuffing() -> None:
    recipe = load("smtp_client")
    assert recipe.dot_stuff(b"a\n.b\n..c\r\n.\n") == b"a\r\n..b\r\n...c\r\n..\r\n"


# ---- HTTP/1.1 against nginx ------------------------------------------------------------------


def test_http_keep_alive_content_length_and_chunked(nginx_server: NginxServer) -> None:
    recipe = load("http_client")
    conn = recipe.HTTPConnection(nginx_server.host, nginx_server.port)
    try:
        r1 = conn.get("/blob.bin")
        assert (r1.status, r1.headers["content-length"]) == (200, str(len(BLOB)))
        assert r1.body == BLOB
        r2 = conn.get("/big.txt", {"Accept-Encoding": "gzip"})
        assert r2.headers.get("transfer-encoding") == "chunked"
        assert gzip.decompress(r2.body) == BIG_TEXT
        r3 = conn.get("/nothing-here")
        assert r3.status == 404
        assert conn.get("/").body.startswith(b"<html>")  # still the same connection
    finally:
        conn.close()


def test_http_pipelining(nginx_server: NginxServer) -> None:
    recipe = load("http_client")
    conn = recipe.HTTPConnection(nginx_server.host, nginx_server.port)
    try:
        paths = ["/blob.bin", "/", "/missing", "/big.txt"] * 5
        for path in paths:
            conn.send_request("GET", path)
        conn.stream.flush()
        responses = [conn.read_response() for _ in paths]
        assert [r.status for r in responses] == [200, 200, 404, 200] * 5
        assert all(r.body == BLOB for r in responses[0::4])
        assert all(r.body == BIG_TEXT for r in responses[3::4])
    finally:
        conn.close()


def test_http_over_tls_with_sni(nginx_server: NginxServer, client_ctx: ssl.SSLContext) -> None:
    recipe = load("http_client")
    conn = recipe.HTTPConnection("localhost", nginx_server.tls_port, tls=True, ssl_ctx=client_ctx)
    try:
        assert conn.stream.ssl_object.server_hostname == "localhost"
        assert conn.get("/blob.bin").body == BLOB
        assert gzip.decompress(conn.get("/big.txt", {"Accept-Encoding": "gzip"}).body) == BIG_TEXT
    finally:
        conn.close()


# ---- the line server, talked to by socat and openssl s_client ------------------------------


def _talk(argv: list[str], data: bytes) -> bytes:
    r = subprocess.run(argv, input=data, capture_output=True, timeout=LONG, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_line_server_with_socat() -> None:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed (scripts/test installs it)")
    recipe = load("line_server")
    with recipe.start() as server:
        out = _talk(
            ["socat", "-t", "5", "-", f"TCP:127.0.0.1:{server.port},crlf"],
            "UPPER grüße\nLEN 世界\nWHAT\nQUIT\n".encode(),
        )
    assert out.decode("utf-8").splitlines() == [
        "+READY",
        "+GRÜSSE",
        ":2",
        "-ERR unknown command 'WHAT'",
        "+BYE",
    ]


def test_line_server_refuses_a_long_line() -> None:
    recipe = load("line_server")
    with (
        recipe.start() as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LONG) as c,
    ):
        c.sendall(b"UPPER " + b"x" * (recipe.MAX_LINE + 10) + b"\r\n")
        got = b""
        while chunk := c.recv(4096):
            got += chunk
    assert got == b"+READY\r\n-ERR line too long\r\n"


def test_line_server_over_tls_with_openssl(
    server_ctx: ssl.SSLContext, cert_files: dict[str, str]
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    recipe = load("line_server")
    with recipe.start(ssl_ctx=server_ctx) as server:
        out = _talk(
            [
                "openssl",
                "s_client",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-CAfile",
                cert_files["ca"],
                "-verify_return_error",
                "-quiet",
                "-crlf",
                "-servername",
                "localhost",
            ],
            "UPPER tls é\nQUIT\n".encode(),
        )
    assert out.decode("utf-8").splitlines() == ["+READY", "+TLS É", "+BYE"]


def test_the_readme_recipe_runs(redis_server: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    """The Redis snippet of the README, as printed there, against a real Redis."""
    readme = (RECIPES.parents[1] / "README.md").read_text()
    section = readme.split("## A recipe: Redis", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "r = Redis()" in code
    code = code.replace("r = Redis()", f"r = Redis(port={redis_server.port})")
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["r"].stream.close()
    assert capsys.readouterr().out == repr(b"binary\r\n\0safe") + "\n"


def test_line_server_answers_bytes_that_are_not_utf8() -> None:
    recipe = load("line_server")
    with (
        recipe.start() as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=LONG) as c,
    ):
        c.sendall(b"UPPER caf\xe9\r\nUPPER caf\xc3\xa9\r\nQUIT\r\n")
        got = b""
        while chunk := c.recv(4096):
            got += chunk
    assert got == "+READY\r\n-ERR not UTF-8\r\n+CAFÉ\r\n+BYE\r\n".encode()

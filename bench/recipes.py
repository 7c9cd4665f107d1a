"""The recipes of docs/recipes/ against their real servers: sockstream against the same client
on ``socket.makefile('rwb')``, in one run.  Opt-in (it starts redis-server, memcached, nginx):

    python -m bench.recipes [--repeat N] [--quick]

The same client code runs over both: on the makefile side its stream is ``MakefileStream``, the
few lines a makefile user writes by hand instead of ``read_line`` (``readline()`` and strip the
terminator), ``read_until`` (read lines up to the empty one) and ``read_sequence``
(``readinto``). That costs the makefile side one Python call per line that a hand-inlined
client would not pay, so the ratio (makefile time / sockstream time; above 1: sockstream is
faster) leans a little towards sockstream.  Runs alternate between the
two so that drift on a shared machine hits both alike; the report gives the median and the
min-max of the ratios of paired runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import sockstream

RECIPES = Path(__file__).resolve().parents[1] / "docs" / "recipes"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def _daemon(argv: list[str], port: int) -> Iterator[None]:
    if shutil.which(argv[0]) is None:
        raise RuntimeError(f"{argv[0]} is not installed")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} did not start") from None
                time.sleep(0.02)  # waiting for a daemon to listen: nothing to wait on
        yield
    finally:
        proc.terminate()
        proc.wait(10)


class MakefileStream:
    """What the recipes use of a SocketStream, written on ``socket.makefile('rwb')``."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rwb")
        self.read = self.file.read
        self.write = self.file.write
        self.flush = self.file.flush
        self.timed_out = False

    def write_line(self, text: str) -> None:
        self.file.write(text.encode("utf-8") + b"\r\n")

    def read_line(self, eof_error: bool = True, eof_value: Any = None) -> tuple[Any, bool]:
        line = self.file.readline()
        if line.endswith(b"\n"):
            return line.rstrip(b"\r\n").decode("latin-1"), False
        return (line.decode("latin-1") if line else eof_value), True

    def read_until(self, delimiter: bytes) -> tuple[bytes, bool]:  # only b"\r\n\r\n" here
        lines = []
        while (line := self.file.readline()) not in (b"\r\n", b"\n", b""):
            lines.append(line)
        return b"".join(lines)[:-2], line == b""

    def read_sequence(self, seq: bytearray) -> int:
        n: int = self.file.readinto(seq)
        return n

    def close(self) -> None:
        self.file.close()


def _on_makefile(client: Any, host: str, port: int) -> Any:
    """The same client object with its stream swapped for a ``MakefileStream``."""
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.stream.close()
    client.stream = MakefileStream(sock)
    client._sock = sock  # keep it alive; closed with the file
    return client


def _close(client: Any) -> None:
    client.stream.close()
    sock = getattr(client, "_sock", None)
    if sock is not None:
        sock.close()


def _pair(
    make: Callable[[], Any], work: Callable[[Any], None], runs: int
) -> list[tuple[float, float]]:
    """(makefile seconds, sockstream seconds) of ``runs`` alternating paired runs."""
    out = []
    for i in range(runs):
        times = {}
        for kind in ("makefile", "sockstream") if i % 2 else ("sockstream", "makefile"):
            client = make()
            if kind == "makefile":
                client = _on_makefile(client, *client._where)
            try:
                work(client)  # warm: connection and caches
                t0 = time.perf_counter()
                work(client)
                times[kind] = time.perf_counter() - t0
            finally:
                _close(client)
        out.append((times["makefile"], times["sockstream"]))
    return out


def _report(name: str, pairs: list[tuple[float, float]]) -> dict[str, Any]:
    ratios = sorted(m / s for m, s in pairs)
    row = {
        "recipe": name,
        "runs": len(pairs),
        "median": statistics.median(ratios),
        "min": ratios[0],
        "max": ratios[-1],
        "sockstream_s": statistics.median(s for _, s in pairs),
        "makefile_s": statistics.median(m for m, _ in pairs),
    }
    print(
        f"{name:<44} {row['median']:5.2f}  ({row['min']:.2f}-{row['max']:.2f})  "
        f"sockstream {row['sockstream_s'] * 1e3:8.1f} ms  makefile "
        f"{row['makefile_s'] * 1e3:8.1f} ms",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.recipes")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    scale = 10 if args.quick else 1
    redis = _load("redis_client")
    memcached = _load("memcached_client")
    http = _load("http_client")
    print(
        f"recipes against real servers: ratio = makefile time / sockstream time, "
        f"median (min-max) of {args.repeat} paired runs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rport = _free_port()
        with _daemon(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(rport),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            rport,
        ):

            def make_redis() -> Any:
                r = redis.Redis("127.0.0.1", rport)
                r._where = ("127.0.0.1", rport)
                return r

            seed = make_redis()
            for i in range(1000):
                seed.send("SET", f"k{i}", os.urandom(100))
            seed.flush()
            for _ in range(1000):
                seed.reply()
            seed.close()
            n = 20_000 // scale

            def pipelined_gets(r: Any) -> None:
                for i in range(n):
                    r.send("GET", f"k{i % 1000}")
                r.flush()
                for _ in range(n):
                    r.reply()

            _report(
                f"Redis: {n} pipelined GETs of 100 B",
                _pair(make_redis, pipelined_gets, args.repeat),
            )
        mport = _free_port()
        with _daemon(
            ["memcached", "-l", "127.0.0.1", "-p", str(mport), "-U", "0", "-u", "root"], mport
        ):

            def make_mc() -> Any:
                mc = memcached.Memcache("127.0.0.1", mport)
                mc._where = ("127.0.0.1", mport)
                return mc

            seed = make_mc()
            keys = [f"key{i}" for i in range(1000)]
            for k in keys:
                seed.set(k, os.urandom(200))
            seed.close()
            rounds = 20 // scale or 1

            def multiget(mc: Any) -> None:
                for _ in range(rounds):
                    assert len(mc.get_many(keys)) == 1000

            _report(
                f"memcached: {rounds} x multi-get of 1000 x 200 B",
                _pair(make_mc, multiget, args.repeat),
            )
        hport = _free_port()
        root = Path(tmp) / "html"
        root.mkdir()
        (root / "small.txt").write_bytes(b"x" * 512)
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(f"""user root; worker_processes 1; pid {tmp}/nginx.pid;
error_log {tmp}/error.log; events {{ worker_connections 64; }}
http {{ access_log off; keepalive_requests 100000;
  client_body_temp_path {tmp}/b; proxy_temp_path {tmp}/p; fastcgi_temp_path {tmp}/f;
  uwsgi_temp_path {tmp}/u; scgi_temp_path {tmp}/s;
  server {{ listen 127.0.0.1:{hport}; root {root}; }} }}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        with _daemon(
            [nginx, "-c", str(conf), "-p", tmp, "-e", f"{tmp}/error.log", "-g", "daemon off;"],
            hport,
        ):

            def make_http() -> Any:
                c = http.HTTPConnection("127.0.0.1", hport)
                c._where = ("127.0.0.1", hport)
                return c

            reqs = 2000 // scale

            def pipelined(c: Any) -> None:
                for _ in range(reqs):
                    c.send_request("GET", "/small.txt")
                c.stream.flush()
                for _ in range(reqs):
                    assert len(c.read_response().body) == 512

            _report(
                f"HTTP/1.1: {reqs} pipelined GETs of 512 B (nginx)",
                _pair(make_http, pipelined, args.repeat),
            )
        smtp = _load("smtp_client")
        sport = _free_port()
        with _daemon(
            [
                sys.executable,
                "-m",
                "aiosmtpd",
                "-n",
                "-c",
                "aiosmtpd.handlers.Sink",
                "-l",
                f"127.0.0.1:{sport}",
            ],
            sport,
        ):

            def make_smtp() -> Any:
                c = smtp.SMTP("127.0.0.1", sport)
                c._where = ("127.0.0.1", sport)
                return c

            mails = 200 // scale
            body = (
                "From: a@example.test\r\nTo: b@example.test\r\nSubject: x\r\n\r\n"
                + "Grüße, a line of text that goes on a little.\r\n" * 40
            ).encode()

            def send_mails(c: Any) -> None:
                if not getattr(c, "_greeted", False):  # the makefile side: read the greeting
                    if isinstance(c.stream, MakefileStream):
                        c.expect(220)
                    c._greeted = True
                c.ehlo()
                for _ in range(mails):
                    c.send_mail("a@example.test", ["b@example.test"], body)

            _report(
                f"SMTP: {mails} mails of 2 KiB in one session (aiosmtpd)",
                _pair(make_smtp, send_mails, args.repeat),
            )
        lport = _free_port()
        with _daemon([sys.executable, str(RECIPES / "line_server.py"), str(lport)], lport):

            class LineClient:
                def __init__(self) -> None:
                    self.stream: Any = sockstream.open_tcp_stream(
                        "127.0.0.1", lport, encoding="utf-8", newline="\r\n"
                    )
                    self._where = ("127.0.0.1", lport)
                    self.greeted = False

            requests = 20_000 // scale

            def talk(c: Any) -> None:
                if not c.greeted:
                    c.stream.read_line()  # +READY
                    c.greeted = True
                for i in range(requests):
                    c.stream.write_line(f"UPPER grüße {i}")
                c.stream.flush()
                for _ in range(requests):
                    c.stream.read_line()

            _report(
                f"line server: {requests} pipelined UTF-8 requests",
                _pair(LineClient, talk, args.repeat),
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

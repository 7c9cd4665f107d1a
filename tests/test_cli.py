"""The ``sockstream`` command, driven as a user drives it: ``python -m sockstream ...``.

Every subprocess is stopped and waited for in a ``finally``; every read of its output is bounded
by a deadline (select on the pipe), so a broken command fails a test instead of hanging it.
Servers print ``listening on HOST:PORT`` once ready: the tests wait for that line, never sleep.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

LONG = 20.0  # seconds: bound on anything a passing test waits for (a subprocess start included)
DEMO_LIMIT = 30.0  # the acceptance bound of `sockstream demo` on 2 cores

SRC = Path(__file__).resolve().parents[1] / "src"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "sockstream", *args]


def run_cli(
    *args: str, input: bytes | None = None, timeout: float = LONG, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """Run the command to completion (killed after ``timeout``)."""
    return subprocess.run(
        _cmd(*args),
        input=input,
        capture_output=True,
        timeout=timeout,
        env=_env(**env),
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The single line of standard error, after checking that it is a single line."""
    err = result.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


class Proc:
    """A running ``python -m sockstream ...`` whose standard output is read with deadlines."""

    def __init__(
        self, *args: str, stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE, **env: str
    ) -> None:
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.p = subprocess.Popen(
            _cmd(*args), stdin=stdin, stdout=stdout, stderr=self._stderr, env=_env(**env)
        )
        self._pending = b""

    def readline(self, timeout: float = LONG) -> bytes:
        """The next line of standard output; fails after ``timeout`` or at end-of-file."""
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            assert left > 0, f"no line within {timeout} s; got {self._pending!r}; {self.stderr()}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"end of output before a line; {self._pending!r}; {self.stderr()}"
                self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line + b"\n"

    def read_all(self, timeout: float = LONG) -> bytes:
        """Everything left on standard output, until the process closes it."""
        assert self.p.stdout is not None
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        out = self._pending
        self._pending = b""
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"output not closed within {timeout} s; got {out!r}; {self.stderr()}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return out
                out += chunk

    def wait(self, timeout: float = LONG) -> int:
        return self.p.wait(timeout)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self) -> None:
        """Terminate (then kill) the process if it runs, wait for it, close its pipes."""
        try:
            if self.p.poll() is None:
                self.p.terminate()
                try:
                    self.p.wait(LONG)
                except subprocess.TimeoutExpired:
                    self.p.kill()
                    self.p.wait(LONG)
        finally:
            for f in (self.p.stdin, self.p.stdout):
                if f is not None:
                    f.close()
            self._stderr.close()


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    """Start ``sockstream`` processes; all are stopped and waited for after the test."""
    started: list[Proc] = []

    def start(*args: str, **kwargs: Any) -> Proc:
        p = Proc(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


LISTENING = re.compile(rb"^listening on (\S+):(\d+)$")


@pytest.fixture
def start_serve(procs: Callable[..., Proc]) -> Callable[..., tuple[Proc, int]]:
    """``sockstream serve 0 ARGS...``: the process and the port it printed."""

    def start(*args: str) -> tuple[Proc, int]:
        p = procs("serve", "0", *args)
        line = p.readline().rstrip(b"\n")
        m = LISTENING.match(line)
        assert m, f"unexpected first line {line!r}; {p.stderr()}"
        return p, int(m.group(2))

    return start


# ---- help, version, bad arguments -------------------------------------------------------------


def test_help_lists_the_verbs() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    out = r.stdout.decode()
    for verb in ("demo", "connect", "serve", "bench"):
        assert re.search(rf"^\s+{verb}\s+\S", out, re.M), out


@pytest.mark.parametrize("verb", ["demo", "connect", "serve", "bench"])
def test_every_verb_has_help(verb: str) -> None:
    r = run_cli(verb, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith(f"usage: sockstream {verb}")


def test_version() -> None:
    r = run_cli("--version")
    assert r.returncode == 0
    import sockstream

    assert r.stdout.decode().startswith(f"sockstream {sockstream.__version__} (Python ")


def test_no_verb_prints_usage_and_exits_2() -> None:
    r = run_cli()
    assert r.returncode == 2
    assert "usage: sockstream" in r.stderr.decode()
    assert "Traceback" not in r.stderr.decode()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["frobnicate"], "frobnicate"),
        (["serve", "99999"], "99999"),
        (["serve", "-1"], "-1"),
        (["serve", "eighty"], "eighty"),
        (["connect", "localhost", "0"], "'0'"),
        (["connect", "localhost", "70000"], "70000"),
        (["connect", "localhost", "no-such-service-xyz"], "no-such-service-xyz"),
        (["connect", "localhost"], "PORT"),
        (["connect", "localhost", "80", "--read-timeout", "-1"], "-1"),
        (["connect", "localhost", "80", "--read-timeout", "nan"], "nan"),
        (["connect", "localhost", "80", "--cafile", "/no/such/ca.pem"], "/no/such/ca.pem"),
        (["connect", "localhost", "80", "--element-type", "utf-8"], "utf-8"),
        (["serve", "0", "--cert", "/no/such/cert.pem"], "/no/such/cert.pem"),
        (["serve", "0", "--echo", "--http"], "--http"),
        (["serve", "0", "--bogus"], "--bogus"),
        (["demo", "--only", "9"], "9"),
        (["demo", "extra"], "extra"),
    ],
)
def test_bad_arguments_print_one_line_and_exit_2(args: list[str], named: str) -> None:
    r = run_cli(*args)
    assert r.returncode == 2, r.stderr
    line = one_error_line(r)
    assert line.startswith("sockstream"), line
    assert "error" in line
    assert named in line, line
    assert r.stdout == b""


def test_serve_key_without_cert_is_a_usage_error(cert_files: dict[str, str]) -> None:
    r = run_cli("serve", "0", "--key", cert_files["key"])
    assert r.returncode == 2
    assert "--key needs --cert" in one_error_line(r)


def test_serve_with_a_key_that_does_not_match(cert_files: dict[str, str]) -> None:
    # The CA certificate with the leaf's key: loading fails, and that is the user's mistake.
    r = run_cli("serve", "0", "--cert", cert_files["ca"], "--key", cert_files["key"])
    assert r.returncode == 2
    assert "cannot load --cert" in one_error_line(r)


def test_connection_refused_is_one_line_and_exit_1() -> None:
    with socket.socket() as s:  # bound, not listening: connecting to it is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = run_cli("connect", "127.0.0.1", str(port))
    assert r.returncode == 1
    line = one_error_line(r)
    assert line.startswith("sockstream: error:"), line


def test_serve_on_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = run_cli("serve", str(s.getsockname()[1]))
    assert r.returncode == 1
    assert one_error_line(r).startswith("sockstream: error:")
    assert r.stdout == b""


# ---- demo --------------------------------------------------------------------------------------


def test_demo_passes_every_step_quickly() -> None:
    t0 = time.monotonic()
    r = run_cli("demo", timeout=DEMO_LIMIT + 5)
    elapsed = time.monotonic() - t0
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    assert elapsed < DEMO_LIMIT
    from sockstream.cli._demo import STEPS

    for n in range(1, len(STEPS) + 1):
        assert f"[{n}/{len(STEPS)}]" in out
    assert out.count("\n  ok ") == len(STEPS), out
    assert re.search(rf"^{len(STEPS)}/{len(STEPS)} steps passed in \d+\.\d s$", out, re.M), out
    assert "\033[" not in out  # piped: no colour
    assert "FAILED" not in out
    assert r.stderr == b"", r.stderr.decode()


def test_demo_only_one_step_with_colour() -> None:
    r = run_cli("demo", "--only", "3", "--color", "always")
    assert r.returncode == 0, r.stdout.decode()
    out = r.stdout.decode()
    assert "\033[" in out
    assert "1/1 steps passed" in out
    assert "[1/" not in out


def test_demo_in_process_closes_everything_it_opens() -> None:
    # The autouse leak guard fails this test if a descriptor or a thread outlives the demo.
    import io

    from sockstream.cli._demo import run_demo

    out = io.StringIO()
    assert run_demo(out) == 0, out.getvalue()


def test_demo_reports_a_failing_step_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from sockstream.cli import _demo

    def passes(d: Any) -> None:
        d.t.saw("fine")

    def fails(d: Any) -> None:
        _demo.check(False, "the library broke its promise")

    monkeypatch.setattr(_demo, "STEPS", (("first", passes), ("second", fails), ("third", passes)))
    out = io.StringIO()
    assert _demo.run_demo(out) == 1
    text = out.getvalue()
    assert "FAILED: step 2: the library broke its promise" in text
    assert "[3/3] third" in text
    assert text.count("\n  ok ") == 2
    assert re.search(r"^2/3 steps passed in \d+\.\d s; failed: 2$", text, re.M), text


@pytest.mark.parametrize("no_color", ["", "1"])
def test_demo_colours_a_terminal_unless_no_color(no_color: str) -> None:
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    env = _env(NO_COLOR=no_color) if no_color else _env()
    try:
        with subprocess.Popen(
            _cmd("demo", "--only", "1"),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env=env,
        ) as proc:
            try:
                os.close(slave)
                slave = -1
                out = read_until(master, lambda b: b"steps passed" in b and b.endswith(b"\n"))
                assert proc.wait(LONG) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(LONG)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    assert b"1/1 steps passed" in out
    assert (b"\033[" in out) == (not no_color)


def test_demo_watchdog_ends_a_hung_step() -> None:
    # A step that never returns (only a hang in the library could do that) must not hang the
    # command: the watchdog says which step hung and exits 1.
    code = (
        "import threading, sockstream.cli._demo as d\n"
        "hang = lambda demo: threading.Event().wait()\n"
        "d.STEPS = (('fine', lambda demo: None), ('hangs', hang))\n"
        "raise SystemExit(d.run_demo(step_limit=0.5))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=LONG,
        env=_env(),
        stdin=subprocess.DEVNULL,
    )
    out = r.stdout.decode()
    assert r.returncode == 1, out + r.stderr.decode()
    assert "FAILED: step 2: did not finish within 0.5 s" in out
    assert "1/2 steps passed" in out


# ---- connect <-> serve -------------------------------------------------------------------------


def test_connect_talks_to_serve_echo(start_serve: Callable[..., tuple[Proc, int]]) -> None:
    _, port = start_serve()
    r = run_cli("connect", "127.0.0.1", str(port), input=b"hello\nworld\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello\nworld\n"
    assert r.stderr == b""


def test_connect_crlf(start_serve: Callable[..., tuple[Proc, int]]) -> None:
    _, port = start_serve("--echo")
    r = run_cli("connect", "127.0.0.1", str(port), "--crlf", input=b"a\nb\r\nc")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"a\r\nb\r\nc"


@pytest.mark.parametrize("element_type", ["base-char", "unsigned-byte-8", "signed-byte-8"])
def test_connect_carries_every_byte(
    start_serve: Callable[..., tuple[Proc, int]], element_type: str
) -> None:
    _, port = start_serve("--element-type", element_type)
    data = bytes(range(256)) * 1000
    r = run_cli("connect", "127.0.0.1", str(port), "--element-type", element_type, input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


def test_connect_ends_when_the_server_closes_with_stdin_still_open(
    procs: Callable[..., Proc], start_serve: Callable[..., tuple[Proc, int]]
) -> None:
    _, port = start_serve("--http")
    client = procs("connect", "127.0.0.1", str(port))
    assert client.p.stdin is not None
    client.p.stdin.write(b"GET /hi HTTP/1.0\r\n\r\n")
    client.p.stdin.flush()  # and standard input stays open
    out = client.read_all()
    assert client.wait() == 0, client.stderr()
    assert out.startswith(b"HTTP/1.0 200 OK\r\n")
    assert b"<code>/hi</code>" in out


def test_connect_read_timeout_ends_the_session(
    procs: Callable[..., Proc], start_serve: Callable[..., tuple[Proc, int]]
) -> None:
    _, port = start_serve("--discard")
    t0 = time.monotonic()
    client = procs("connect", "127.0.0.1", str(port), "--read-timeout", "0.3", "-v")
    assert client.read_all() == b""
    assert client.wait() == 0
    assert time.monotonic() - t0 >= 0.3
    assert "--read-timeout" in client.stderr()


def read_until(fd: int, pred: Callable[[bytes], bool], timeout: float = LONG) -> bytes:
    """Read ``fd`` until ``pred(everything read)`` holds, end-of-file, or ``timeout`` (fails)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not pred(seen):
        left = deadline - time.monotonic()
        assert left > 0, f"not there within {timeout} s: {seen!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side of a terminal is gone
                chunk = b""
            if not chunk:
                break
            seen += chunk
    return seen


def test_connect_sigint_exits_130_quietly(start_serve: Callable[..., tuple[Proc, int]]) -> None:
    _, port = start_serve()
    with subprocess.Popen(
        _cmd("connect", "127.0.0.1", str(port), "-v"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    ) as client:
        try:
            assert client.stderr is not None
            err = read_until(client.stderr.fileno(), lambda b: b"connected" in b)
            assert b"connected" in err, err  # -v says so once connected: now Ctrl-C it
            client.send_signal(signal.SIGINT)
            assert client.wait(LONG) == 130
            err += client.stderr.read()
            assert b"Traceback" not in err, err
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(LONG)


def test_connect_in_a_pseudo_terminal(start_serve: Callable[..., tuple[Proc, int]]) -> None:
    pty = pytest.importorskip("pty")
    _, port = start_serve()
    master, slave = pty.openpty()
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen(
            _cmd("connect", "127.0.0.1", str(port)),
            stdin=slave,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        os.close(slave)
        slave = -1
        os.write(master, b"ping over a tty\n")
        # The terminal echoes what was typed, then the server's echo comes back: twice.
        seen = read_until(master, lambda b: b.count(b"ping over a tty") >= 2)
        assert seen.count(b"ping over a tty\r\n") == 2, seen
        os.write(master, b"\x04")  # Ctrl-D: end of input -> half-close -> the server ends
        assert proc.wait(LONG) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(LONG)
        os.close(master)
        if slave != -1:
            os.close(slave)


# ---- TLS ---------------------------------------------------------------------------------------


def test_serve_tls_runtime_certificate_and_connect_with_cafile(
    start_serve: Callable[..., tuple[Proc, int]], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    server, port = start_serve("--tls", "--write-ca", str(ca), "--name", "cli.example.test")
    err = server.stderr()
    assert re.search(r"SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}", err), err
    assert str(ca) in err
    r = run_cli("connect", "localhost", str(port), "--cafile", str(ca), "-v", input=b"over tls\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"over tls\n"
    info = r.stderr.decode()
    assert "TLSv1." in info, info
    assert "cipher" in info, info
    assert "DNS:cli.example.test" in info, info
    # The name is verified: with --sni, the certificate must cover that name.
    r = run_cli(
        "connect", "127.0.0.1", str(port), "--cafile", str(ca), "--sni", "other.test", input=b"x\n"
    )
    assert r.returncode == 1
    assert "other.test" in one_error_line(r) or "certificate" in one_error_line(r)


def test_connect_without_trust_fails_and_insecure_warns(
    start_serve: Callable[..., tuple[Proc, int]],
) -> None:
    _, port = start_serve("--tls")
    r = run_cli("connect", "localhost", str(port), "--tls", input=b"x\n")
    assert r.returncode == 1
    assert "certificate" in one_error_line(r).lower()
    r = run_cli("connect", "localhost", str(port), "--insecure", input=b"still works\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"still works\n"
    assert "NOT verified" in one_error_line(r)


def test_serve_with_given_cert_and_key(
    start_serve: Callable[..., tuple[Proc, int]], cert_files: dict[str, str]
) -> None:
    _, port = start_serve("--cert", cert_files["cert"], "--key", cert_files["key"])
    r = run_cli(
        "connect", "localhost", str(port), "--cafile", cert_files["ca"], input=b"given cert\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"given cert\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.interop
def test_connect_talks_to_openssl_s_server(cert_files: dict[str, str]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command")
    for _attempt in range(5):  # the free port may be taken between probe and bind: retry
        port = _free_port()
        with subprocess.Popen(
            [
                openssl,
                "s_server",
                "-accept",
                f"127.0.0.1:{port}",
                "-cert",
                cert_files["cert"],
                "-key",
                cert_files["key"],
                "-rev",
                "-naccept",
                "1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as server:
            try:
                assert server.stdout is not None
                fd = server.stdout.fileno()
                banner = b""
                deadline = time.monotonic() + LONG
                while b"ACCEPT" not in banner:
                    left = deadline - time.monotonic()
                    assert left > 0, banner
                    if select.select([fd], [], [], left)[0]:
                        chunk = os.read(fd, 4096)
                        if not chunk:
                            break
                        banner += chunk
                if b"ACCEPT" not in banner:  # could not bind: try another port
                    continue
                r = run_cli(
                    "connect",
                    "localhost",
                    str(port),
                    "--cafile",
                    cert_files["ca"],
                    "-v",
                    input=b"hello\nsockstream\n",
                )
                assert r.returncode == 0, r.stderr
                assert r.stdout == b"olleh\nmaertskcos\n"
                assert "TLSv1.3" in r.stderr.decode()
                return
            finally:
                if server.poll() is None:
                    server.kill()
                server.wait(LONG)
    pytest.fail("openssl s_server could not bind a port in 5 attempts")


@pytest.mark.interop
def test_serve_http_tls_answers_curl(
    start_serve: Callable[..., tuple[Proc, int]], tmp_path: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl command")
    ca = tmp_path / "ca.pem"
    _, port = start_serve("--http", "--tls", "--write-ca", str(ca))
    base = [curl, "-sS", "--max-time", str(LONG), "--noproxy", "*", "--cacert", str(ca)]
    url = f"https://localhost:{port}/page?x=1"
    r = subprocess.run([*base, url], capture_output=True, timeout=LONG + 5)
    assert r.returncode == 0, r.stderr
    assert b"Hello from sockstream" in r.stdout
    assert b"TLSv1.3" in r.stdout
    r = subprocess.run([*base, "-I", "--http1.0", url], capture_output=True, timeout=LONG + 5)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"HTTP/1.0 200 OK\r\n")
    r = subprocess.run([*base, "-i", "-X", "POST", url], capture_output=True, timeout=LONG + 5)
    assert r.stdout.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), r.stdout


def test_serve_http_bad_request(start_serve: Callable[..., tuple[Proc, int]]) -> None:
    _, port = start_serve("--http")
    with socket.create_connection(("127.0.0.1", port), timeout=LONG) as s:
        s.sendall(b"nonsense\n\n")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 400 Bad Request\r\n")


# ---- serve: stopping ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_stops_cleanly_on_a_signal(
    start_serve: Callable[..., tuple[Proc, int]], sig: int
) -> None:
    server, port = start_serve()
    with socket.create_connection(("127.0.0.1", port), timeout=LONG) as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"  # a connection is being served
        server.p.send_signal(sig)
        assert server.wait() == 0
    assert "Traceback" not in server.stderr()
    assert "stopping" in server.stderr()


def test_serve_address_is_printed_for_ipv6(start_serve: Callable[..., tuple[Proc, int]]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    server, port = start_serve("--address", "::1")
    del server
    r = run_cli("connect", "::1", str(port), input=b"six\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"six\n"


# ---- bench -------------------------------------------------------------------------------------


def test_bench_passes_its_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from sockstream.cli import _main as _cli

    seen: list[list[str]] = []

    class FakeBench:
        @staticmethod
        def main(argv: list[str]) -> int:
            seen.append(argv)
            return 3

    monkeypatch.setattr(_cli, "_import_bench", lambda: FakeBench)
    assert (
        _cli.main(["bench", "--quick", "--only", "W1,W2", "--json", "r.json", "--repeat", "2"]) == 3
    )
    assert seen == [["--quick", "--only", "W1,W2", "--json", "r.json", "--repeat", "2"]]


def test_bench_outside_a_checkout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sockstream.cli import _main as _cli

    monkeypatch.setattr(_cli, "_import_bench", lambda: None)
    assert _cli.main(["bench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "ships with the source checkout" in err[0]


def test_bench_is_found_in_the_checkout() -> None:
    root = SRC.parent
    if not (root / "bench" / "__init__.py").is_file():
        pytest.skip("no bench/ package in this checkout")
    from sockstream.cli import _main as _cli

    bench = _cli._import_bench()
    assert bench is not None
    assert bench.__file__ is not None
    assert Path(bench.__file__).resolve().parent == (root / "bench").resolve()


# ---- pieces ------------------------------------------------------------------------------------


def test_to_crlf_across_chunks() -> None:
    from sockstream.cli._main import _to_crlf

    assert _to_crlf(b"a\nb\r\nc", False) == (b"a\r\nb\r\nc", False)
    out1, cr = _to_crlf(b"x\r", False)
    out2, _ = _to_crlf(b"\ny\n", cr)
    assert out1 + out2 == b"x\r\ny\r\n"


@pytest.mark.parametrize("backend", ["trustme", "openssl"])
def test_runtime_certificates(backend: str) -> None:
    if backend == "openssl" and shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    if backend == "trustme":
        pytest.importorskip("trustme")
    from sockstream.cli._certs import make_certificates

    with make_certificates(["extra.example.test"], backend=backend) as certs:  # type: ignore[arg-type]
        assert certs.backend == backend
        assert sorted(p.name for p in certs.directory.iterdir()) == [
            "ca.pem",
            "cert.pem",
            "key.pem",
        ]
        assert certs.key_file.stat().st_mode & 0o077 == 0
        server_ctx = certs.server_context()
        client_ctx = certs.client_context()
        client_ctx.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
        for name in ("localhost", "127.0.0.1", "::1", "extra.example.test"):
            a, b = socket.socketpair()
            with a, b:
                a.settimeout(LONG)
                b.settimeout(LONG)
                sa = client_ctx.wrap_socket(a, server_hostname=name, do_handshake_on_connect=False)
                sb = server_ctx.wrap_socket(b, server_side=True, do_handshake_on_connect=False)
                with sa, sb:
                    _handshake_pair(sa, sb)
                    assert sa.getpeercert() is not None
        directory = certs.directory
    assert not directory.exists()


def _handshake_pair(client: ssl.SSLSocket, server: ssl.SSLSocket) -> None:
    """Drive both handshakes from one thread with non-blocking sockets and select."""
    client.setblocking(False)
    server.setblocking(False)
    pending = {client, server}
    deadline = time.monotonic() + LONG
    while pending:
        assert time.monotonic() < deadline, "handshake did not finish"
        waiting_r: list[ssl.SSLSocket] = []
        waiting_w: list[ssl.SSLSocket] = []
        for s in list(pending):
            try:
                s.do_handshake()
                pending.discard(s)
            except ssl.SSLWantReadError:
                waiting_r.append(s)
            except ssl.SSLWantWriteError:
                waiting_w.append(s)
        if pending:
            select.select(waiting_r, waiting_w, [], 1.0)


def test_runtime_certificates_reject_bad_names() -> None:
    from sockstream.cli._certs import make_certificates

    with pytest.raises(ValueError, match="certificate name"):
        make_certificates(["two words"])


def test_the_cli_uses_only_the_public_api() -> None:
    """The application is apart from the library: ``sockstream.cli`` imports no private module."""
    import ast

    cli = SRC / "sockstream" / "cli"
    for path in sorted(cli.glob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level == 0 and module.startswith("sockstream"):
                    assert module in ("sockstream", "sockstream.cli"), (path.name, module)
                if node.level >= 2:  # from .. import x: the library's private modules
                    raise AssertionError(f"{path.name} imports from the library's internals")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name in ("sockstream",) or not alias.name.startswith(
                        "sockstream."
                    ), (path.name, alias.name)

"""``sockstream serve --workers N`` in a real terminal (tmux): start, serve, Ctrl-C stops all.

The terminal is a tmux server of its own (``tmux -L``), so nothing else's tmux is touched.  The
only way to see a terminal is to look at it: the pane is captured until the expected text shows
up, with a bounded wait between looks.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import LONG

ROOT = Path(__file__).resolve().parent.parent


class Terminal:
    def __init__(self, tmux: str) -> None:
        self.tmux = tmux
        # A tmux server of its own for each terminal: a name reused right after the previous
        # terminal's kill-server can meet that server still exiting ("server exited").
        self.name = f"sockstream-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._run("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", "sh")

    def _run(self, *args: str) -> str:
        r = subprocess.run(
            [self.tmux, "-L", self.name, *args],
            capture_output=True,
            text=True,
            timeout=LONG,
            check=True,
        )
        return r.stdout

    def type(self, line: str) -> None:
        self._run("send-keys", "-t", "t", line, "Enter")

    def ctrl_c(self) -> None:
        self._run("send-keys", "-t", "t", "C-c")

    def screen(self) -> str:
        return self._run("capture-pane", "-p", "-t", "t", "-S", "-200")

    def wait_for(self, pattern: str, timeout: float = LONG * 3) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        tick = threading.Event()
        while True:
            m = re.search(pattern, self.screen())
            if m:
                return m
            assert time.monotonic() < deadline, f"{pattern!r} never showed:\n{self.screen()}"
            tick.wait(0.05)

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.name, "kill-server"],
            capture_output=True,
            timeout=LONG,
            check=False,
        )


@pytest.fixture
def terminal() -> Iterator[Callable[[], Terminal]]:
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed")
    made: list[Terminal] = []

    def make() -> Terminal:
        t = Terminal(tmux)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too (its parent has not reaped it yet).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_dead(pids: list[int]) -> None:
    deadline = time.monotonic() + LONG * 2
    tick = threading.Event()
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        tick.wait(0.05)


def echo_once(port: int, text: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=LONG) as c:
        c.sendall(text)
        c.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := c.recv(4096):
            out += chunk
        return out


def command(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "sockstream", *args])


def test_workers_start_serve_and_ctrl_c_stops_them_all(terminal: Callable[[], Terminal]) -> None:
    t = terminal()
    t.type(f"cd {shlex.quote(str(ROOT))} && " + command("serve", "0", "--workers", "2"))
    port = int(t.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    m = t.wait_for(r"2 workers on \S+ \(SO_REUSEPORT\), pids (\d+), (\d+)")
    pids = [int(m.group(1)), int(m.group(2))]
    assert all(alive(p) for p in pids)
    for i in range(20):
        assert echo_once(port, b"ping %d\n" % i) == b"ping %d\n" % i
    t.ctrl_c()
    t.wait_for(r"stopping 2 workers")
    wait_dead(pids)
    t.type("echo EXIT=$?")
    t.wait_for(r"EXIT=0")
    with pytest.raises(OSError):
        echo_once(port, b"nobody\n")


def test_a_worker_that_dies_is_reported(terminal: Callable[[], Terminal]) -> None:
    import signal

    t = terminal()
    t.type(f"cd {shlex.quote(str(ROOT))} && " + command("serve", "0", "--workers", "2"))
    port = int(t.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
    m = t.wait_for(r"pids (\d+), (\d+)")
    first, second = int(m.group(1)), int(m.group(2))
    os.kill(first, signal.SIGKILL)
    t.wait_for(rf"worker 1 \(pid {first}\) died: killed by SIGKILL; 1 left")
    for i in range(5):  # the other still serves the port
        assert echo_once(port, b"still %d\n" % i) == b"still %d\n" % i
    t.ctrl_c()
    t.wait_for(r"stopping 2 workers")
    wait_dead([second])
    t.type("echo EXIT=$?")
    t.wait_for(r"EXIT=0")


def test_workers_do_not_outlive_their_parent() -> None:
    import signal

    p = subprocess.Popen(
        [sys.executable, "-m", "sockstream", "serve", "0", "--workers", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(ROOT),
        text=True,
    )
    try:
        assert p.stdout is not None
        assert p.stderr is not None
        port = int(p.stdout.readline().strip().rsplit(":", 1)[1])
        line = p.stderr.readline()
        m = re.search(r"pids (\d+), (\d+)", line)
        assert m, line
        pids = [int(m.group(1)), int(m.group(2))]
        assert echo_once(port, b"up\n") == b"up\n"
        p.send_signal(signal.SIGKILL)  # no chance to stop them itself
        p.wait(LONG)
        wait_dead(pids)  # each saw its standard input (the parent's pipe) close
        with pytest.raises(OSError):
            echo_once(port, b"nobody\n")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(LONG)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


def test_sigterm_to_the_parent_stops_every_worker() -> None:
    import signal

    p = subprocess.Popen(
        [sys.executable, "-m", "sockstream", "serve", "0", "--workers", "3", "--http"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(ROOT),
        text=True,
    )
    try:
        assert p.stdout is not None
        assert p.stderr is not None
        assert p.stdout.readline().startswith("listening on 127.0.0.1:")
        m = re.search(r"pids (\d+), (\d+), (\d+)", p.stderr.readline())
        assert m
        pids = [int(x) for x in m.groups()]
        p.send_signal(signal.SIGTERM)
        assert p.wait(LONG * 2) == 0
        wait_dead(pids)
        assert "stopping 3 workers" in p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(LONG)
        for f in (p.stdout, p.stderr):
            if f is not None:
                f.close()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["0", "--workers", "0"], "--workers"),
        (["0", "--workers", "two"], "--workers"),
        (["--unix", "/tmp/x.sock", "--workers", "2"], "--workers"),
        (["0", "--workers", "2", "--tls"], "--cert"),
        (["0", "--unix", "/tmp/x.sock"], "not both"),
        ([], "PORT"),
    ],
)
def test_bad_worker_and_unix_arguments(args: list[str], named: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "sockstream", "serve", *args],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=LONG,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert named in r.stderr
    assert "Traceback" not in r.stderr

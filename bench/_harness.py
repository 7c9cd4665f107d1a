"""The machinery shared by every workload: cases, the sender process, repeats and medians.

Plan
----
- A *case* is one way of doing a workload (sockstream's, or an anchor's: the standard library,
  asyncio, anyio, trio, C).  Its `run(env)` does its own set-up, times only the hot loop with
  `time.perf_counter`, checks that it got every byte, and returns the measured value (seconds, or
  bytes for the memory probe).
- The peer of every network case is ONE separate process (`python -m bench.sender`), driven over
  a pipe by `Env.peer(...)`: the sender connects to our listener, so set-up never races.
- A case is run `--repeat` times; the report uses the median and shows min-max.  A failing or
  hanging case (a per-run alarm ends it) is recorded as an error and the run goes on: the library
  is young and the benchmark must still report everything else.
- A *ratio* compares a sockstream case with an anchor of the same run, as a speed ratio (anchor
  value / sockstream value, so > 1 means sockstream is faster, or smaller for memory), next to the
  issue's goal.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the repository: bench/ and src/ live here
CHUNK = 64 * 1024  # the read size of the bulk workloads (the issue's 64 KiB)

# Work per run, by size class.  "full" is the issue's; "quick" keeps `--quick` (all workloads,
# 3 repeats) well under 2 minutes on 2 cores; "tiny" is for the CI smoke test.
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "W1": 1 << 30,
        "W2": 5_000_000,
        "W3": 5_000_000,
        "W4": 5_000_000,
        "W5": 50_000,
        "W6": 256 << 20,
        "W7": {10: 20_000, 100: 20_000, 1000: 20_000, 5000: 20_000},
        "MEM": 1000,
        "W8": 2_000_000,
        "W9": 5_000_000,
    },
    "quick": {
        "W1": 64 << 20,
        "W2": 500_000,
        "W3": 1_000_000,
        "W4": 500_000,
        "W5": 5_000,
        "W6": 32 << 20,
        "W7": {10: 2_000, 100: 1_000, 1000: 200, 5000: 40},
        "MEM": 1000,
        "W8": 200_000,
        "W9": 500_000,
    },
    "tiny": {
        "W1": 8 << 20,
        "W2": 50_000,
        "W3": 100_000,
        "W4": 50_000,
        "W5": 500,
        "W6": 4 << 20,
        "W7": {10: 200, 100: 100},
        "MEM": 100,
        "W8": 20_000,
        "W9": 50_000,
    },
}

RUN_LIMIT = {"full": 600.0, "quick": 120.0, "tiny": 60.0}  # seconds one run may take


class Skip(Exception):
    """A case that cannot run here (no compiler, no sockstream yet, N too big for select)."""


class RunTimeout(Exception):
    """A run took longer than its limit (a hang in the code under test)."""


class BenchError(Exception):
    """The peer or the check of the data failed."""


@dataclass
class Case:
    """One way of doing one workload."""

    id: str  # "W1.recv_into": unique, stable (the JSON and RESULTS.md key)
    label: str  # human text
    side: str  # "sockstream" or "anchor"
    run: Callable[[Env], float]
    units: float  # work per run: bytes, lines, characters, writes, round trips, calls, streams
    unit: str  # name of one unit
    kind: str = "time"  # "time": seconds for `units`; "per_call": the same shown as µs/unit;
    # "memory": bytes per stream (lower is better, no rate)


@dataclass
class Ratio:
    """Sockstream against an anchor, with the issue's goal (None: for information)."""

    label: str
    sockstream: str
    anchor: str
    goal: float | None = None
    note: str = ""


@dataclass
class Result:
    case: Case
    workload: str
    values: list[float] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None

    @property
    def median(self) -> float | None:
        if not self.values:
            return None
        v = sorted(self.values)
        n = len(v)
        return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


# ----------------------------------------------------------------------------------- the sender
class Sender:
    """The peer process, driven by one JSON line per command (see bench/sender.py)."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sender"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
        )
        self._pending = b""

    def command(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()

    def reply(self, timeout: float) -> dict[str, Any]:
        """The next line the sender prints, as a dict; BenchError when it does not come."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"the sender did not answer within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data = os.read(fd, 65536)
                if not data:
                    raise BenchError(f"the sender exited (status {self.proc.poll()})")
                self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        result: dict[str, Any] = json.loads(line)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.command({"op": "quit"})
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# ---------------------------------------------------------------------------------- environment
def _import_sockstream() -> tuple[ModuleType | None, str]:
    """sockstream as installed (or on PYTHONPATH), else from this checkout's src/."""
    try:
        import sockstream
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
        try:
            import sockstream
        except Exception as exc:
            return None, f"sockstream is not importable: {type(exc).__name__}: {exc}"
    except Exception as exc:
        return None, f"sockstream is not importable: {type(exc).__name__}: {exc}"
    if not hasattr(sockstream, "SocketStream"):
        return None, "sockstream has no SocketStream yet"
    return sockstream, ""


class Env:
    """What a case may use: sizes, the sender, a listener, certificates, sockstream."""

    def __init__(self, mode: str, repeat: int) -> None:
        self.mode = mode
        self.repeat = repeat
        self.sizes = SIZES[mode]
        self.run_limit = RUN_LIMIT[mode]
        self.sockstream, self.sockstream_missing = _import_sockstream()
        self.tmp = tempfile.TemporaryDirectory(prefix="sockstream-bench-")
        self.tmpdir = Path(self.tmp.name)
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.sender = Sender()
        self._certs: dict[str, str] | None = None

    def close(self) -> None:
        self.sender.close()
        self.listener.close()
        self.tmp.cleanup()

    # sockstream --------------------------------------------------------------------------
    def ss(self) -> Any:
        """The sockstream module; Skip when it cannot be imported yet."""
        if self.sockstream is None:
            raise Skip(self.sockstream_missing)
        return self.sockstream

    # certificates, made at run time: no key is ever committed ------------------------------
    def certs(self) -> dict[str, str]:
        if self._certs is None:
            import trustme

            ca = trustme.CA()
            cert = ca.issue_cert("localhost", "127.0.0.1")
            paths = {
                "ca": self.tmpdir / "ca.pem",
                "cert": self.tmpdir / "cert.pem",
                "key": self.tmpdir / "key.pem",
            }
            ca.cert_pem.write_to_path(str(paths["ca"]))
            cert.private_key_pem.write_to_path(str(paths["key"]))
            for i, blob in enumerate(cert.cert_chain_pems):
                blob.write_to_path(str(paths["cert"]), append=i > 0)
            self._certs = {k: str(v) for k, v in paths.items()}
        return self._certs

    def client_ctx(self) -> ssl.SSLContext:
        """A TLS client context trusting the run's CA (default ciphers and versions)."""
        ctx = ssl.create_default_context(cafile=self.certs()["ca"])
        return ctx

    # the peer ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def peer(self, op: str, *, tls: bool = False, **params: Any) -> Iterator[socket.socket]:
        """Have the sender connect to us and play `op`; yield our end of the connection.

        On leaving, our end is closed and the sender's answer is awaited; its failure becomes a
        BenchError unless the body already failed (that error is the one that matters)."""
        cmd: dict[str, Any] = {"op": op, "port": self.port, "tls": tls, **params}
        if tls:
            certs = self.certs()
            cmd.update(certfile=certs["cert"], keyfile=certs["key"])
        self.sender.command(cmd)
        conn, _ = self.listener.accept()
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        failed = True
        try:
            yield conn
            failed = False
        finally:
            conn.close()
            try:
                answer = self.sender.reply(self.run_limit)
            except BenchError:
                self.restart_sender()
                if not failed:
                    raise
            else:
                if not answer.get("ok") and not failed:
                    raise BenchError(f"sender: {answer.get('error')}")

    def restart_sender(self) -> None:
        self.sender.proc.kill()
        self.sender.close()
        self.sender = Sender()


def check(got: int, want: int, what: str) -> None:
    if got != want:
        raise BenchError(f"{what}: got {got}, expected {want}")


# ------------------------------------------------------------------------------------ running
@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise RunTimeout in the main thread after `seconds` (interrupts blocking calls)."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise RunTimeout(f"run took longer than {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Progress:
    """A \\r-updated line on a terminal; otherwise one line per finished case (both on stderr)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()

    def step(self, case: Case, rep: int, repeat: int) -> None:
        if self.tty:
            width = 24
            filled = width * self.done // max(self.total, 1)
            line = (
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{time.monotonic() - self.t0:5.0f}s  {case.id} ({rep + 1}/{repeat})"
            )
            sys.stderr.write(line[:110].ljust(110))
            sys.stderr.flush()

    def ran(self, n_runs: int = 1) -> None:
        self.done += n_runs

    def finished(self, res: Result) -> None:
        if self.tty:
            return
        sys.stderr.write(f"[{self.done}/{self.total}] {res.case.id}: {describe(res)}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r" + " " * 110 + "\r")
            sys.stderr.flush()


def describe(res: Result) -> str:
    """One short phrase for a result: median and rate, or why there is none."""
    if res.skipped:
        return f"skipped ({res.skipped})"
    if res.error and not res.values:
        return f"ERROR {res.error}"
    med = res.median
    assert med is not None
    text = f"median {fmt_value(res.case, med)}"
    rate = fmt_rate(res.case, med)
    if rate:
        text += f" ({rate})"
    if res.error:
        text += f"; later ERROR {res.error}"
    return text


def fmt_value(case: Case, value: float) -> str:
    if case.kind == "memory":
        return f"{value:,.0f} B"
    if case.kind == "per_call":
        return f"{value / case.units * 1e6:.2f} µs/{case.unit}"
    return f"{value:.3f} s"


def fmt_rate(case: Case, value: float) -> str:
    if case.kind != "time" or value <= 0:
        return ""
    rate = case.units / value
    if case.unit == "B":
        return f"{rate / 1e6:,.0f} MB/s"
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M {case.unit}/s"
    return f"{rate / 1e3:.1f} k {case.unit}/s"


def run_cases(env: Env, plan: list[tuple[str, list[Case]]], progress: Progress) -> list[Result]:
    """Run every case `env.repeat` times; errors and skips are recorded, never raised.

    Within a workload the repeats are interleaved (every case once, then every case again...),
    so that a drift of the machine (frequency, another tenant) spreads over all the cases instead
    of favouring whichever ran first."""
    results: list[Result] = []
    for workload, cases in plan:
        batch = [Result(case, workload) for case in cases]
        for rep in range(env.repeat):
            for res in batch:
                if res.skipped or res.error:
                    continue
                case = res.case
                progress.step(case, rep, env.repeat)
                try:
                    with time_limit(env.run_limit):
                        res.values.append(case.run(env))
                except Skip as exc:
                    res.skipped = str(exc) or "skipped"
                except Exception as exc:
                    res.error = f"{type(exc).__name__}: {exc}"[:300]
                progress.ran()
                if res.skipped or res.error:
                    progress.ran(env.repeat - rep - 1)  # the runs that will not happen
                if res.skipped or res.error or rep == env.repeat - 1:
                    progress.finished(res)
        results += batch
    return results

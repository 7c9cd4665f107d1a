"""Serving at scale (issue 16): idle connections, echo throughput, --workers.

    python -m bench.serving idle --n 1000,5000,10000 [--repeat 5]   # the 10k soak
    python -m bench.serving echo [--repeat 5]          # serve vs socketserver, 100 clients
    python -m bench.serving workers [--repeat 5]       # serve --workers 2 vs 1
    python -m bench.serving all --json FILE [--plot FILE.png]

idle: ``serve`` (echo handler, ``max_connections`` = N + 16) runs in a fresh process per run;
    a load generator in another process opens N connections, makes one round trip on each (so every
    handler is blocked in a read, as an idle keep-alive client's would be), and keeps them
    open.  Then a good client (in that process) makes 200 round trips on a connection of its
    own and 200 connect + round trip + close, and we record their p50/p99 latency, the resident
    memory per idle connection (``/proc/self/statm``, minus the baseline before the first
    connection) and the thread and descriptor counts.  The clients then leave, and the
    threads and descriptors must return to the baseline (checked, within 30 s).
echo: 100 clients in another process, each with its own connection and one 64-byte line in
    flight at a time, make round trips for a fixed time; the server is ``sockstream.serve`` with
    an echo handler (``read_line``/``write_line``/``force_output``), or
    ``socketserver.ThreadingTCPServer`` with a ``StreamRequestHandler`` doing the same
    (``rfile.readline``/``wfile.write``).  Round trips per second, same run, and the CPU each
    side used per round trip (``getrusage``: the server's process, the load generator's).
    Three load shapes, each a row (``--echo-modes``):
    ``epoll``: one thread drives the 100 connections (non-blocking sockets, one ``epoll``),
    so the load generator costs a few microseconds a round trip and the server is what is
    measured; ``epoll-pinned``: the same with the server on CPU 0 and the load generator on
    CPU 1 (``sched_setaffinity``; no migrations, no cross-CPU wake-ups: the steadiest figure);
    ``threads``: 100 client threads (``sendall`` + ``makefile('rb').readline``), the load
    generator of the first measurements, whose own GIL saturates first against a fast server.
workers: ``sockstream serve 0 --workers W`` (the command line, echo), W = 1 and 2, driven by the
    ``epoll`` load generator.

The descriptor limit is raised to its hard limit (``RLIMIT_NOFILE``), or beyond when we may
(root): 10,000 connections need about 10,100 descriptors in the server (one per connection: its
socket) and 10,100 in the load generator.
The machine may be shared: medians of the repeats with min-max are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import socketserver
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LINE = b"x" * 63 + b"\n"


def _raise_nofile(need: int = 0) -> int:
    """Raise the soft descriptor limit to the hard one, and the hard one to ``need`` if we may
    (root); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # works as root
            return need
        except (ValueError, OSError):
            pass
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _percentile(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


# ---- the load generator (another process) ----------------------------------------------------


def _client_main(argv: list[str]) -> int:
    """``python -m bench.serving _client MODE ...``: one JSON line of results on stdout."""
    _raise_nofile()
    if os.environ.get("BENCH_SERVING_CPU"):
        _pin(int(os.environ["BENCH_SERVING_CPU"]))
    mode = argv[0]
    if mode == "idle":
        host, port, n = argv[1], int(argv[2]), int(argv[3])
        sys.stdin.readline()  # "go"
        conns: list[socket.socket] = []
        for i in range(n):
            c = socket.create_connection((host, port), timeout=60)
            c.sendall(LINE)
            conns.append(c)
            if i % 256 == 255 or i == n - 1:  # read the echoes in batches
                for d in conns[-(i % 256 + 1) :]:
                    got = b""
                    while len(got) < len(LINE):
                        got += d.recv(4096)
        print(json.dumps({"ready": n}), flush=True)
        sys.stdin.readline()  # "measure"
        persistent: list[float] = []
        fresh: list[float] = []
        with socket.create_connection((host, port), timeout=60) as good:
            good.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(200):
                t0 = time.perf_counter()
                good.sendall(LINE)
                got = b""
                while len(got) < len(LINE):
                    got += good.recv(4096)
                persistent.append(time.perf_counter() - t0)
        for _ in range(200):
            t0 = time.perf_counter()
            with socket.create_connection((host, port), timeout=60) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                c.sendall(LINE)
                got = b""
                while len(got) < len(LINE):
                    got += c.recv(4096)
            fresh.append(time.perf_counter() - t0)
        print(
            json.dumps(
                {
                    "persistent_p50_ms": _percentile(persistent, 0.5) * 1e3,
                    "persistent_p99_ms": _percentile(persistent, 0.99) * 1e3,
                    "fresh_p50_ms": _percentile(fresh, 0.5) * 1e3,
                    "fresh_p99_ms": _percentile(fresh, 0.99) * 1e3,
                }
            ),
            flush=True,
        )
        sys.stdin.readline()  # "leave"
        for c in conns:
            c.close()
        print(json.dumps({"left": n}), flush=True)
        return 0
    if mode == "echo-epoll":
        host, port, clients, seconds = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        print(json.dumps({"round_trips_per_s": _echo_epoll(host, port, clients, seconds)}))
        return 0
    if mode == "echo":
        host, port, clients, seconds = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        counts = [0] * clients
        start = threading.Barrier(clients + 1)
        stop_at = [0.0]

        def run(k: int) -> None:
            with socket.create_connection((host, port), timeout=60) as c:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                f = c.makefile("rb")
                start.wait()
                n = 0
                while time.perf_counter() < stop_at[0]:
                    c.sendall(LINE)
                    if f.readline() != LINE:
                        raise RuntimeError("bad echo")
                    n += 1
                counts[k] = n

        threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        stop_at[0] = time.perf_counter() + 1e9
        start.wait()
        t0 = time.perf_counter()
        stop_at[0] = t0 + seconds
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        print(json.dumps({"round_trips_per_s": sum(counts) / elapsed}), flush=True)
        return 0
    raise SystemExit(f"unknown client mode {mode!r}")


def _echo_epoll(host: str, port: int, clients: int, seconds: float) -> float:
    """Round trips per second on ``clients`` connections driven by one thread and one epoll:
    each connection has one line in flight; its echo (checked) sends the next."""
    import select

    ep = select.epoll()
    conns: dict[int, list[Any]] = {}
    try:
        for _ in range(clients):
            c = socket.create_connection((host, port), timeout=60)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.setblocking(False)
            conns[c.fileno()] = [c, b""]
            ep.register(c.fileno(), select.EPOLLIN)
        size = len(LINE)
        n = 0
        t0 = time.perf_counter()
        stop = t0 + seconds
        for c, _ in conns.values():
            c.send(LINE)
        while time.perf_counter() < stop:
            for fd, _ev in ep.poll(1.0):
                conn = conns[fd]
                data = conn[0].recv(4096)
                if not data:
                    raise RuntimeError("the server closed a connection")
                got = conn[1] + data
                if len(got) < size:
                    conn[1] = got
                    continue
                if got != LINE:
                    raise RuntimeError("bad echo")
                conn[1] = b""
                n += 1
                conn[0].send(LINE)  # (64 bytes into an empty socket buffer: never short)
        elapsed = time.perf_counter() - t0
        # Take the lines still in flight (one a connection) before leaving, so that no server
        # meets a reset mid-echo.
        waiting = set(conns)
        while waiting:
            events = ep.poll(10.0)
            if not events:
                raise RuntimeError("the server did not echo the last lines")
            for fd, _ev in events:
                conn = conns[fd]
                data = conn[0].recv(4096)
                conn[1] += data
                if not data or len(conn[1]) >= size:
                    waiting.discard(fd)
                    ep.unregister(fd)
    finally:
        for c, _ in conns.values():
            c.close()
        ep.close()
    return n / elapsed


def _pin(cpu: int | None) -> set[int] | None:
    """Run the calling thread (and the threads it starts) on ``cpu``; the old set, or None."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return None
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    return old


class _Client:
    def __init__(self, *args: str, cpu: int | None = None) -> None:
        env = dict(os.environ)
        if cpu is not None:
            env["BENCH_SERVING_CPU"] = str(cpu)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH")])
        )
        self.p = subprocess.Popen(
            [sys.executable, "-m", "bench.serving", "_client", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
            text=True,
        )

    def read(self) -> dict[str, Any]:
        assert self.p.stdout is not None
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"the load generator ended (status {self.p.wait()})")
        result: dict[str, Any] = json.loads(line)
        return result

    def say(self, word: str) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(word + "\n")
        self.p.stdin.flush()

    def close(self) -> None:
        if self.p.stdin is not None:
            self.p.stdin.close()
        self.p.wait(60)
        if self.p.stdout is not None:
            self.p.stdout.close()


# ---- idle connections -----------------------------------------------------------------------


def _echo(stream: Any) -> None:
    while True:
        line, eof = stream.read_line(eof_error=False, eof_value="")
        if eof:
            return
        stream.write_line(line)
        stream.force_output()


def _wait_until(predicate: Any, timeout: float) -> bool:
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        tick.wait(0.02)
    return True


def idle_run(n: int) -> dict[str, Any]:
    import gc

    import sockstream

    # One descriptor per connection (its socket), and some slack.
    need = n + 500
    limit = _raise_nofile(need)
    if limit < need:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {limit} < {need}: raise it (ulimit -Hn)")
    gc.collect()
    base_threads, base_fds = threading.active_count(), _fds()
    with sockstream.serve(
        _echo, address="127.0.0.1", max_connections=n + 16, backlog=4096
    ) as server:
        client = _Client("idle", "127.0.0.1", str(server.port), str(n))
        try:
            base_rss = _rss()
            t_threads, t_fds = threading.active_count(), _fds()
            t0 = time.perf_counter()
            client.say("go")
            assert client.read()["ready"] == n
            setup = time.perf_counter() - t0
            assert _wait_until(lambda: server.active_connections >= n, 60)
            rss = _rss()
            threads, fds = threading.active_count(), _fds()
            client.say("measure")
            lat = client.read()
            client.say("leave")
            assert client.read()["left"] == n
            back = _wait_until(
                lambda: (
                    server.active_connections == 0
                    and threading.active_count() <= t_threads
                    and _fds() <= t_fds
                ),
                60,
            )
        finally:
            client.close()
        after_threads, after_fds = threading.active_count(), _fds()
    _wait_until(lambda: threading.active_count() <= base_threads and _fds() <= base_fds, 30)
    return {
        "n": n,
        "setup_s": setup,
        "rss_per_conn_kib": (rss - base_rss) / n / 1024,
        "threads_with_clients": threads - t_threads,
        "fds_with_clients": fds - t_fds,
        **lat,
        "back_to_baseline": bool(back and after_threads <= t_threads and after_fds <= t_fds),
        "threads_after": threading.active_count() - base_threads,
        "fds_after": _fds() - base_fds,
    }


# ---- echo throughput --------------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            line = self.rfile.readline()
            if not line:
                return
            self.wfile.write(line)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


#: The echo load shapes (see the module's docstring): load generator, pinned.
ECHO_MODES: dict[str, tuple[str, bool]] = {
    "epoll": ("echo-epoll", False),
    "epoll-pinned": ("echo-epoll", True),
    "threads": ("echo", False),
}


ECHO_LABELS: dict[str, str] = {
    "epoll": "one thread, epoll",
    "epoll-pinned": "one thread, epoll; server on CPU 0, load generator on CPU 1",
    "threads": "100 threads (`sendall` + `makefile` `readline`)",
}


def echo_run(kind: str, clients: int, seconds: float, mode: str = "epoll") -> dict[str, float]:
    """One run: round trips per second, and the CPU seconds per round trip of the server (this
    process) and of the load generator."""
    import sockstream

    client_mode, pinned = ECHO_MODES[mode]
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = pinned and len(cpus) >= 2
    old_cpus = _pin(cpus[0] if pinned else None)  # the server's threads inherit it
    stop: Any
    try:
        if kind == "sockstream":
            server = sockstream.serve(
                _echo, address="127.0.0.1", max_connections=clients + 16, backlog=256
            )
            port = server.port
            stop = server.terminate
        else:
            ss = _Server(("127.0.0.1", 0), _Handler)
            port = ss.server_address[1]
            t = threading.Thread(target=ss.serve_forever, daemon=True)
            t.start()

            def stop_socketserver() -> None:
                ss.shutdown()
                ss.server_close()

            stop = stop_socketserver
    finally:
        if old_cpus is not None:
            os.sched_setaffinity(0, old_cpus)
    try:
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = _Client(
            client_mode,
            "127.0.0.1",
            str(port),
            str(clients),
            str(seconds),
            cpu=cpus[1] if pinned else None,
        )
        try:
            rate = float(client.read()["round_trips_per_s"])
        finally:
            client.close()
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        stop()
    trips = rate * seconds

    def cpu(a: Any, b: Any) -> float:
        return float(b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime) / trips

    # (The load generator's figure includes its connects and start-up: a small share.)
    return {"rate": rate, "server_cpu": cpu(self0, self1), "client_cpu": cpu(child0, child1)}


def workers_run(workers: int, clients: int, seconds: float) -> float:
    env = dict(os.environ)
    p = subprocess.Popen(
        [sys.executable, "-m", "sockstream", "serve", "0", "--workers", str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert p.stdout is not None
        line = p.stdout.readline().strip()
        port = int(line.rsplit(":", 1)[1])
        client = _Client("echo-epoll", "127.0.0.1", str(port), str(clients), str(seconds))
        try:
            return float(client.read()["round_trips_per_s"])
        finally:
            client.close()
    finally:
        import signal

        p.send_signal(signal.SIGINT)
        p.wait(30)
        if p.stdout is not None:
            p.stdout.close()


# ---- main -----------------------------------------------------------------------------------


def _idle_in_fresh_process(n: int) -> dict[str, Any]:
    """``idle_run(n)`` in a new process: memory freed by an earlier run would hide the cost."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH")])
    )
    r = subprocess.run(
        [sys.executable, "-m", "bench.serving", "_idle", str(n)],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if r.returncode != 0:
        raise RuntimeError(f"idle run N={n} failed: {r.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def _summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "_client":
        return _client_main(args_list[1:])
    if args_list and args_list[0] == "_idle":
        print(json.dumps(idle_run(int(args_list[1]))), flush=True)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.serving")
    parser.add_argument(
        "what", choices=["idle", "echo", "workers", "all"], nargs="?", default="all"
    )
    parser.add_argument("--n", default="1000,5000,10000", help="idle connection counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--echo-modes",
        default=",".join(ECHO_MODES),
        help=f"echo load shapes, comma-separated, of {', '.join(ECHO_MODES)} (see above)",
    )
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--plot", metavar="FILE.png")
    parser.add_argument(
        "--results",
        action="store_true",
        help="write the figures into bench/RESULTS.md (its serving section)",
    )
    parser.add_argument("--from-json", metavar="FILE", help="report these results, run nothing")
    parser.add_argument(
        "--keep",
        metavar="FILE",
        help="an earlier --json file: the sections not run now are taken from it (each section "
        "records the machine's load when it ran)",
    )
    parser.add_argument(
        "--w7-json",
        metavar="FILE",
        help="a `python -m bench --only W7 --json` file to report with them",
    )
    args = parser.parse_args(args_list)
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load": os.getloadavg(),
        }
    }
    if args.from_json:
        out = json.loads(Path(args.from_json).read_text())
        args.what = "none"
    else:
        # When each section ran (a --keep'ed one may come from an earlier run).
        out["when"] = dict.fromkeys(("idle", "echo", "workers"), out["machine"])
    if args.keep and not args.from_json:
        kept = json.loads(Path(args.keep).read_text())
        for section in ("idle", "echo", "workers"):
            if section in kept and args.what not in (section, "all"):
                out[section] = kept[section]
                out["when"][section] = kept.get("when", {}).get(section, kept["machine"])
    if args.what in ("idle", "all"):
        out["idle"] = {}
        for n in (int(x) for x in args.n.split(",")):
            runs = [_idle_in_fresh_process(n) for _ in range(args.repeat)]
            row: dict[str, Any] = {
                k: _summary([r[k] for r in runs]) for k in runs[0] if isinstance(runs[0][k], float)
            }
            row["back_to_baseline"] = all(r["back_to_baseline"] for r in runs)
            row["runs"] = runs
            out["idle"][n] = row
            print(
                f"idle N={n}: {row['rss_per_conn_kib']['median']:.1f} KiB/conn "
                f"(min {row['rss_per_conn_kib']['min']:.1f}, max "
                f"{row['rss_per_conn_kib']['max']:.1f}); good client p99 persistent "
                f"{row['persistent_p99_ms']['median']:.2f} ms, new connection "
                f"{row['fresh_p99_ms']['median']:.2f} ms; back to baseline "
                f"{row['back_to_baseline']}",
                flush=True,
            )
    if args.what in ("echo", "all"):
        modes = [m for m in args.echo_modes.split(",") if m]
        out["echo"] = {"clients": args.clients, "seconds": args.seconds, "modes": {}}
        for mode in modes:
            echo_runs: dict[str, list[dict[str, float]]] = {"sockstream": [], "socketserver": []}
            for _ in range(args.repeat):  # interleaved
                for kind in echo_runs:
                    echo_runs[kind].append(echo_run(kind, args.clients, args.seconds, mode))
            ours = [r["rate"] for r in echo_runs["sockstream"]]
            theirs = [r["rate"] for r in echo_runs["socketserver"]]
            ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
            echo_row: dict[str, Any] = {
                "sockstream": _summary(ours),
                "socketserver": _summary(theirs),
                "ratio": _summary(ratios),
            }
            for kind, rs in echo_runs.items():
                for side in ("server_cpu", "client_cpu"):
                    echo_row[f"{kind}_{side}_us"] = _summary([r[side] * 1e6 for r in rs])
            out["echo"]["modes"][mode] = echo_row
            print(
                f"echo {mode}, {args.clients} clients: serve {statistics.median(ours):,.0f}/s, "
                f"socketserver {statistics.median(theirs):,.0f}/s, ratio "
                f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f});"
                f" CPU us per round trip, server/load generator: serve "
                f"{echo_row['sockstream_server_cpu_us']['median']:.1f}/"
                f"{echo_row['sockstream_client_cpu_us']['median']:.1f}, socketserver "
                f"{echo_row['socketserver_server_cpu_us']['median']:.1f}/"
                f"{echo_row['socketserver_client_cpu_us']['median']:.1f}",
                flush=True,
            )
    if args.what in ("workers", "all"):
        one: list[float] = []
        two: list[float] = []
        for _ in range(args.repeat):
            one.append(workers_run(1, args.clients, args.seconds))
            two.append(workers_run(2, args.clients, args.seconds))
        ratios = [b / a for a, b in zip(one, two, strict=True)]
        out["workers"] = {"1": _summary(one), "2": _summary(two), "ratio": _summary(ratios)}
        print(
            f"--workers 2 vs 1: {statistics.median(two):,.0f}/s vs {statistics.median(one):,.0f}"
            f"/s, ratio {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max "
            f"{max(ratios):.2f})",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    if args.results:
        w7 = json.loads(Path(args.w7_json).read_text()) if args.w7_json else None
        _put_section(ROOT / "bench" / "RESULTS.md", results_markdown(out, w7))
    if args.plot:
        _plot(out, args.plot)
    return 0


START = "<!-- serving (bench/serving.py --results) -->"
END = "<!-- /serving -->"


def keep_section(old: str, new: str) -> str:
    """``new`` (a regenerated RESULTS.md) with the serving section of ``old`` kept at its end."""
    if START in old and END in old:
        section = old[old.index(START) : old.index(END) + len(END)]
        return new.rstrip("\n") + "\n\n" + section + "\n"
    return new


def _put_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    block = f"{START}\n{section.rstrip()}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def _mm(d: dict[str, float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(d['median'])} ({fmt.format(d['min'])}-{fmt.format(d['max'])})"


def _when(out: dict[str, Any], section: str) -> list[str]:
    """A line saying when ``section`` ran, if that was another run than the header's."""
    when = out.get("when", {}).get(section)
    if not when or when == out["machine"]:
        return []
    return [
        f"(A run of its own, Python {when['python']}, load average "
        f"{', '.join(f'{x:.0f}' for x in when['load'])} at its start.)",
        "",
    ]


def results_markdown(out: dict[str, Any], w7: dict[str, Any] | None) -> str:
    """The "Serving" section of bench/RESULTS.md (medians, min-max in parentheses)."""
    m = out["machine"]
    lines = [
        "## Serving and waiting at scale (issue 16)",
        "",
        f"`python -m bench.serving idle|echo|workers --repeat 5` on {m['cpus']} cores, Python "
        f"{m['python']}, **shared with other agents' jobs** (load average "
        f"{', '.join(f'{x:.0f}' for x in m['load'])} at the start): medians of 5 runs, min-max "
        "in parentheses. Every idle run is a fresh process.",
        "",
    ]
    idle = out.get("idle")
    if idle:
        lines += [
            "### Idle connections (`serve`, one thread each, after one round trip)",
            "",
            "| N | KiB per idle connection | good client p99, own connection (ms) | good client "
            "p99, connect + round trip (ms) | threads / descriptors back to baseline |",
            "|---|---|---|---|---|",
        ]
        for n, row in sorted(idle.items(), key=lambda kv: int(kv[0])):
            back = sum(r["back_to_baseline"] for r in row["runs"])
            lines.append(
                f"| {int(n):,} | {_mm(row['rss_per_conn_kib'], '{:.1f}')} | "
                f"{_mm(row['persistent_p99_ms'])} | {_mm(row['fresh_p99_ms'])} | "
                f"{back} of {len(row['runs'])} runs within 60 s; all after stop |"
            )
        top = max(int(n) for n in idle)
        lines += [
            "",
            "Memory is the resident set (`/proc/self/statm`) over the baseline, per connection: "
            "64 KiB of it is the stream's input buffer, allocated at the first read. "
            "Latency: 200 round trips of a 64-byte line by a client in the load generator's "
            "process, on its own connection, and 200 connect + round trip + close.",
        ]
        if _when(out, "idle"):
            lines += ["", *_when(out, "idle")[:-1]]
        if top < 10_000:
            lines.append(
                f"N stops at {top:,} here: `serve` holds 1 descriptor per connection, and "
                "this machine's hard `RLIMIT_NOFILE` could not be raised (no "
                "`CAP_SYS_RESOURCE`); 10,000 connections need about 10,500."
            )
        lines.append("")
    echo = out.get("echo")
    if echo:
        lines += [
            f"### Echo round trips, {echo['clients']} concurrent clients (load generator in "
            "another process)",
            "",
        ]
        modes = echo.get("modes") or {"threads": echo}  # (the earlier JSON had one shape)
        lines += [
            "| load generator | `sockstream.serve` (round trips / s) | `socketserver` "
            "(round trips / s) | ratio (goal >= 1.2) | CPU µs per round trip: serve, its load "
            "generator | socketserver, its load generator |",
            "|---|---|---|---|---|---|",
        ]
        for mode, row in modes.items():
            cpu = [
                f"{row[k]['median']:.1f}" if k in row else "-"
                for k in (
                    "sockstream_server_cpu_us",
                    "sockstream_client_cpu_us",
                    "socketserver_server_cpu_us",
                    "socketserver_client_cpu_us",
                )
            ]
            lines.append(
                f"| {ECHO_LABELS.get(mode, mode)} | {_mm(row['sockstream'], '{:,.0f}')} | "
                f"{_mm(row['socketserver'], '{:,.0f}')} | {_mm(row['ratio'])} | "
                f"{cpu[0]}, {cpu[1]} | {cpu[2]}, {cpu[3]} |"
            )
        lines += [
            "",
            "`socketserver` is `ThreadingTCPServer` + `StreamRequestHandler`; both servers run "
            "a thread per connection. CPU is user + system time from `getrusage`, per round "
            "trip (medians).",
            "",
        ]
        lines += _when(out, "echo")
    workers = out.get("workers")
    if workers:
        lines += [
            "### `sockstream serve --workers`",
            "",
            "| workers | round trips / s |",
            "|---|---|",
            f"| 1 | {_mm(workers['1'], '{:,.0f}')} |",
            f"| 2 | {_mm(workers['2'], '{:,.0f}')} |",
            f"| ratio 2 / 1 (goal >= 1.5 if the load generator leaves room) | "
            f"{_mm(workers['ratio'])} |",
            "",
        ]
        lines += _when(out, "workers")
    if w7:
        cases, ratios = w7["cases"], {r["label"]: r for r in w7["ratios"]}
        lines += [
            "### Waiting (W7 alone, `python -m bench --only W7 --repeat 5`)",
            "",
            "| case | µs per call (min-max) |",
            "|---|---|",
        ]
        for case in cases.values():
            vals = sorted(v / case["units"] * 1e6 for v in case["values"])
            if vals:
                med = case["median"] / case["units"] * 1e6
                lines.append(f"| {case['label']} | {med:.2f} ({vals[0]:.2f}-{vals[-1]:.2f}) |")
        lines += ["", "| ratio (speed, > 1: sockstream faster) | value | goal |", "|---|---|---|"]
        for label, r in ratios.items():
            goal = f">= {r['goal']:.2g}" if r.get("goal") else ""
            lines.append(f"| {label} | {r['ratio']:.2f} | {goal} |")
        lines.append("")
    return "\n".join(lines)


def _plot(out: dict[str, Any], path: str) -> None:
    try:
        import matplotlib  # type: ignore[import-not-found]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found]
    except ImportError:
        print(
            "--plot: matplotlib is not installed (pip install matplotlib); no plot", file=sys.stderr
        )
        return
    idle = out.get("idle")
    if not idle:
        print("--plot: only the idle figures are plotted; run 'idle' or 'all'", file=sys.stderr)
        return
    ns = sorted(int(n) for n in idle)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ns, [idle[n]["rss_per_conn_kib"]["median"] for n in ns], "o-")
    a.axhline(100, linestyle="--", color="gray")
    a.set(xlabel="idle connections", ylabel="KiB per connection", title="memory")
    b.plot(ns, [idle[n]["persistent_p99_ms"]["median"] for n in ns], "o-", label="persistent")
    b.plot(ns, [idle[n]["fresh_p99_ms"]["median"] for n in ns], "o-", label="new connection")
    b.axhline(20, linestyle="--", color="gray")
    b.set(xlabel="idle connections", ylabel="p99 ms", title="good client latency")
    b.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    raise SystemExit(main())

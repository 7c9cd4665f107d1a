"""``sockstream serve --workers N``: N processes serving one port (SO_REUSEPORT).

Plan
    - The parent picks the port (for PORT 0) by binding a socket with ``SO_REUSEPORT`` that it
      never listens on, and keeps it bound until the end, so the port stays ours.
    - Each worker is ``python -m sockstream serve ... --reuse-port`` with a hidden
      ``--_worker-port PORT`` (and no ``--workers``), in a session of its own: a Ctrl-C at the
      terminal reaches only the parent, which then stops every worker once, with SIGTERM (the
      worker's clean stop), and SIGKILL after ``STOP_TIMEOUT`` seconds.  A worker's standard
      input is a pipe from the parent: if the parent dies, however, the worker sees end-of-file
      there and stops, so no worker outlives it.
    - The parent reads each worker's "listening on ..." line, then prints its own once all are
      up.  A worker that dies while serving is reported on standard error (its pid, exit status
      or signal); the others go on.  When none is left the parent exits with status 1.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final

#: Seconds the parent waits for its workers after SIGTERM before it kills them.
STOP_TIMEOUT: Final = 10.0
#: Seconds a worker may take to start listening.
START_TIMEOUT: Final = 30.0


def worker_argv(arguments: Sequence[str], port: int) -> list[str]:
    """The command line of one worker: the parent's ``serve`` arguments without ``--workers``."""
    out: list[str] = []
    skip = False
    for arg in arguments:
        if skip:
            skip = False
            continue
        if arg == "--workers":
            skip = True
            continue
        if arg.startswith("--workers="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "sockstream", *out, "--reuse-port", "--_worker-port", str(port)]


def reserve_port(address: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket on ``address``:``port`` (0: a free port)."""
    infos = socket.getaddrinfo(
        address, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP, socket.AI_PASSIVE
    )
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit status {code}"


class _Stop(Exception):
    """SIGTERM to the parent."""


def run_workers(
    arguments: Sequence[str],
    n: int,
    address: str,
    port: int,
    err: Callable[[str], None],
    hostport: Callable[[Any], str],
) -> int:
    """Start ``n`` workers on ``address``:``port``, wait for Ctrl-C or SIGTERM, stop them all."""
    reserved = reserve_port(address, port)
    port = reserved.getsockname()[1]
    procs: list[subprocess.Popen[bytes]] = []
    ended: queue.Queue[int] = queue.Queue()
    in_main = threading.current_thread() is threading.main_thread()
    old_int: Any = None
    old_term: Any = None
    if in_main:
        old_int = signal.signal(signal.SIGINT, signal.default_int_handler)

        def on_term(signum: int, frame: Any) -> None:
            raise _Stop

        old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        argv = worker_argv(arguments, port)
        procs.extend(
            subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
            )
            for _ in range(n)
        )
        for i, p in enumerate(procs):
            assert p.stdout is not None
            line = p.stdout.readline().decode(errors="replace").strip()
            if not line.startswith("listening on "):
                err(f"error: worker {i + 1} (pid {p.pid}) did not start")
                return 1

        def watch(i: int, p: subprocess.Popen[bytes]) -> None:
            p.wait()
            ended.put(i)

        for i, p in enumerate(procs):
            threading.Thread(
                target=watch, args=(i, p), daemon=True, name=f"sockstream worker {i + 1} watcher"
            ).start()
        print(f"listening on {hostport((address, port))}", flush=True)
        err(
            f"{n} workers on {hostport((address, port))} (SO_REUSEPORT), pids "
            + ", ".join(str(p.pid) for p in procs)
            + "; Ctrl-C stops them all"
        )
        alive = n
        while alive:
            i = ended.get()  # interruptible by signals on POSIX
            alive -= 1
            p = procs[i]
            err(f"worker {i + 1} (pid {p.pid}) died: {_describe_exit(p.returncode)}; {alive} left")
        err("error: every worker has died")
        return 1
    except (KeyboardInterrupt, _Stop):
        err(f"stopping {n} workers")
        return 0
    finally:
        try:
            _stop_all(procs, err)
        finally:
            reserved.close()
            if in_main:
                signal.signal(signal.SIGINT, old_int)
                signal.signal(signal.SIGTERM, old_term)


def _stop_all(procs: list[subprocess.Popen[bytes]], err: Callable[[str], None]) -> None:
    """SIGTERM every live worker, wait, then SIGKILL the ones left; close the pipes."""
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            err(f"worker pid {p.pid} did not stop in {STOP_TIMEOUT:g} s: killed")
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()


def watch_parent() -> None:
    """In a worker: stop (as by SIGTERM) when the parent's pipe on standard input closes."""

    def run() -> None:
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=run, daemon=True, name="sockstream worker: parent watch").start()

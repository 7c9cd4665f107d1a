"""MEM: memory per idle open stream, plain and TLS.

Each measurement runs in a fresh process (`python -m bench.mem ...`), so that the buffers of the
other workloads do not blur it.  That probe starts its own sender, which listens and holds the
connections (and is the TLS server); the probe opens one warm-up connection (imports, context,
first-use allocations), then measures, opens `n` more, and measures again:
- `rss`: resident set size from /proc/self/statm (pages x page size), after gc.collect().  This is
  what the issue asks: real memory, OpenSSL's allocations included; untouched zero pages of a
  lazily used buffer are not counted.
- `py`: bytes allocated by Python objects, from tracemalloc (started before the warm-up); counts
  buffers by their full size, but not OpenSSL's own memory.
Both are divided by `n`.  Anchors: a bare `socket.socket` and an `ssl.SSLSocket`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import subprocess
import sys
from typing import Any

from ._harness import ROOT, Case, Env, Ratio


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def probe(impl: str, tls: bool, n: int, measure: str, certs: dict[str, str]) -> float:
    """Bytes per idle stream (see the module comment); runs in its own process."""
    import ssl

    from ._harness import Sender

    if measure == "py":
        import tracemalloc

        tracemalloc.start()
    ss: Any = None
    if impl == "sockstream":
        from ._harness import _import_sockstream

        ss, missing = _import_sockstream()
        if ss is None:
            raise RuntimeError(missing)
    ctx = ssl.create_default_context(cafile=certs["ca"]) if tls else None
    sender = Sender()
    held: list[Any] = []
    try:
        sender.command(
            {
                "op": "hold",
                "n": n + 1,
                "tls": tls,
                "certfile": certs["cert"],
                "keyfile": certs["key"],
            }
        )
        port = sender.reply(30)["port"]

        def open_one() -> Any:
            sock = socket.create_connection(("127.0.0.1", port))
            if impl == "sockstream":
                if ctx is None:
                    return ss.SocketStream(sock, "io", "base-char")
                return ss.SocketStream(
                    sock,
                    "io",
                    "base-char",
                    ssl_ctx=ctx,
                    ssl_side="client",
                    tlsext_host_name="localhost",
                )
            if ctx is not None:
                return ctx.wrap_socket(sock, server_hostname="localhost")
            return sock

        held.append(open_one())
        gc.collect()
        before = tracemalloc.get_traced_memory()[0] if measure == "py" else _rss()
        for _ in range(n):
            held.append(open_one())
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] if measure == "py" else _rss()
        answer = sender.reply(60)
        if answer.get("held") != n + 1:
            raise RuntimeError(f"sender: {answer}")
    finally:
        for obj in held:
            obj.close()
        if sender.proc.poll() is None:
            sender.command({"op": "release"})  # the line op_hold waits for
            sender.reply(30)
        sender.close()
    return (after - before) / n


def _case(impl: str, tls: bool, measure: str) -> Any:
    def run(env: Env) -> float:
        if impl == "sockstream":
            env.ss()  # Skip when sockstream is not importable yet
        n = env.sizes["MEM"]
        certs = env.certs()
        pyenv = dict(os.environ)
        pyenv["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), pyenv.get("PYTHONPATH")]))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.mem",
                "--impl",
                impl,
                "--n",
                str(n),
                "--measure",
                measure,
                "--certs",
                json.dumps(certs),
            ]
            + (["--tls"] if tls else []),
            capture_output=True,
            text=True,
            cwd=str(ROOT),
            env=pyenv,
            timeout=env.run_limit,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                done.stderr.strip().splitlines()[-1]
                if done.stderr.strip()
                else f"probe exited {done.returncode}"
            )
        return float(json.loads(done.stdout)["per_stream"])

    return run


TITLE = "bytes per idle open stream"
NOTES = [
    "MEM: `rss` rows are resident memory from /proc/self/statm (OpenSSL included, untouched "
    "pages not); `py` rows are Python allocations from tracemalloc (buffers at full size, "
    "OpenSSL excluded). Both per stream, measured in a fresh process."
]


def describe_size(env: Env) -> str:
    return f"{env.sizes['MEM']:,} streams"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    cases: list[Case] = []
    ratios: list[Ratio] = []
    for measure in ("rss", "py"):
        for tls in (False, True):
            kind = "TLS" if tls else "plain"
            anchor_name = "ssl.SSLSocket" if tls else "socket.socket"
            ss_id = f"MEM.{measure}.{kind.lower()}.ss"
            anchor_id = f"MEM.{measure}.{kind.lower()}.anchor"
            cases += [
                Case(
                    ss_id,
                    f"sockstream SocketStream, {kind} ({measure})",
                    "sockstream",
                    _case("sockstream", tls, measure),
                    1,
                    "stream",
                    "memory",
                ),
                Case(
                    anchor_id,
                    f"{anchor_name} ({measure})",
                    "anchor",
                    _case("socket", tls, measure),
                    1,
                    "stream",
                    "memory",
                ),
            ]
            ratios.append(
                Ratio(
                    f"{kind} {measure}: sockstream / {anchor_name} (smaller > 1)", ss_id, anchor_id
                )
            )
    return cases, ratios


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mem")
    p.add_argument("--impl", choices=["sockstream", "socket"], required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--measure", choices=["rss", "py"], default="rss")
    p.add_argument("--certs", required=True, help="JSON: paths of ca, cert, key")
    a = p.parse_args()
    per = probe(a.impl, a.tls, a.n, a.measure, json.loads(a.certs))
    print(json.dumps({"per_stream": per}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""W1 bulk: read a large transfer in 64 KiB chunks.

sockstream's `read_sequence` into a bytearray and `readinto`, against `socket.recv_into` (the
goal's anchor: >= 0.95 of it), `socket.makefile('rb').readinto`, and a C `read(2)` loop compiled
at run time as the ceiling (skipped when there is no C compiler).  The C reader is handed our end
of the connection as fd 3 and times itself, so it measures exactly what the Python loops do:
"go" byte, then read to end-of-file.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from ._harness import CHUNK, BenchError, Case, Env, Ratio, Skip, check

C_READER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    static char buf[65536];
    struct timespec a, b;
    long long total = 0;
    int fd = atoi(argv[1]);
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (write(fd, "g", 1) != 1) return 2;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) return 3;
        if (n == 0) break;
        total += n;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld %.9f\n", total, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
"""


def _recv_into(env: Env) -> float:
    total = env.sizes["W1"]
    with env.peer("send", pattern="bulk", total=total) as sock:
        buf = bytearray(CHUNK)
        recv_into = sock.recv_into
        got = 0
        t0 = time.perf_counter()
        sock.sendall(b"g")
        while True:
            n = recv_into(buf)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - t0
    check(got, total, "recv_into")
    return elapsed


def _makefile_readinto(env: Env) -> float:
    total = env.sizes["W1"]
    with env.peer("send", pattern="bulk", total=total) as sock, sock.makefile("rb") as f:
        buf = bytearray(CHUNK)
        readinto = f.readinto
        got = 0
        t0 = time.perf_counter()
        sock.sendall(b"g")
        while True:
            n = readinto(buf)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - t0
    check(got, total, "makefile('rb').readinto")
    return elapsed


def _ss_read_sequence(env: Env) -> float:
    ss = env.ss()
    total = env.sizes["W1"]
    with env.peer("send", pattern="bulk", total=total) as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8")
        with stream:
            buf = bytearray(CHUNK)
            read_sequence = stream.read_sequence
            got = 0
            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            while True:
                n = read_sequence(buf)
                got += n
                if n < CHUNK:  # filled only up to end-of-file
                    break
            elapsed = time.perf_counter() - t0
    check(got, total, "read_sequence")
    return elapsed


def _ss_readinto(env: Env) -> float:
    ss = env.ss()
    total = env.sizes["W1"]
    with env.peer("send", pattern="bulk", total=total) as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8")
        with stream:
            buf = bytearray(CHUNK)
            readinto = stream.readinto
            got = 0
            t0 = time.perf_counter()
            stream.write(b"g")
            stream.force_output()
            while True:
                n = readinto(buf)
                if not n:
                    break
                got += n
            elapsed = time.perf_counter() - t0
    check(got, total, "readinto")
    return elapsed


def _c_reader_path(env: Env) -> str:
    exe = env.tmpdir / "bulk_reader"
    if not exe.exists():
        cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if cc is None:
            raise Skip("no C compiler")
        source = env.tmpdir / "bulk_reader.c"
        source.write_text(C_READER)
        done = subprocess.run(
            [cc, "-O2", "-o", str(exe), str(source)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise Skip(f"C compiler failed: {done.stderr.strip()[:200]}")
    return str(exe)


def _c_read(env: Env) -> float:
    exe = _c_reader_path(env)
    total = env.sizes["W1"]
    with env.peer("send", pattern="bulk", total=total) as sock:
        fd = sock.fileno()
        done = subprocess.run(
            [exe, str(fd)],
            pass_fds=(fd,),
            capture_output=True,
            text=True,
            timeout=env.run_limit,
            check=False,
        )
    if done.returncode != 0:
        raise BenchError(f"C reader exited {done.returncode}: {done.stderr.strip()}")
    got_s, elapsed_s = done.stdout.split()
    check(int(got_s), total, "C read loop")
    return float(elapsed_s)


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    total = env.sizes["W1"]
    cases = [
        Case(
            "W1.ss_read_sequence",
            "sockstream read_sequence(bytearray)",
            "sockstream",
            _ss_read_sequence,
            total,
            "B",
        ),
        Case("W1.ss_readinto", "sockstream readinto", "sockstream", _ss_readinto, total, "B"),
        Case("W1.recv_into", "socket.recv_into", "anchor", _recv_into, total, "B"),
        Case(
            "W1.makefile_readinto",
            "socket.makefile('rb').readinto",
            "anchor",
            _makefile_readinto,
            total,
            "B",
        ),
        Case("W1.c_read", "C read(2) loop (ceiling)", "anchor", _c_read, total, "B"),
    ]
    ratios = [
        Ratio("read_sequence / recv_into", "W1.ss_read_sequence", "W1.recv_into", 0.95),
        Ratio("readinto / recv_into", "W1.ss_readinto", "W1.recv_into", 0.95),
        Ratio("read_sequence / makefile readinto", "W1.ss_read_sequence", "W1.makefile_readinto"),
        Ratio("read_sequence / C read loop", "W1.ss_read_sequence", "W1.c_read"),
    ]
    return cases, ratios


TITLE = "bulk read, 64 KiB chunks"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W1'] >> 20} MiB"

"""W6 TLS bulk: a large transfer over TLS, read in 64 KiB chunks.

The sender is the TLS server (certificate from a trustme CA made at run time, never committed);
the measured side is the client with the default context (TLS 1.3 here) and verifies the host
name.  The handshake happens before the clock starts; the sender ends with a close-notify.
sockstream (`read_sequence`) against `ssl.SSLSocket.recv_into`, asyncio streams with ssl
(`read(65536)`) and trio `SSLStream.receive_some(65536)`.
Goals: >= 0.9 of SSLSocket, >= 1.5x asyncio.
"""

from __future__ import annotations

import asyncio
import socket
import time

from ._harness import CHUNK, Case, Env, Ratio, check


def _sslsocket(env: Env) -> float:
    total = env.sizes["W6"]
    ctx = env.client_ctx()
    with env.peer("send", tls=True, pattern="bulk", total=total) as sock, \
            ctx.wrap_socket(sock, server_hostname="localhost") as tls:
        buf = bytearray(CHUNK)
        recv_into = tls.recv_into
        got = 0
        t0 = time.perf_counter()
        tls.sendall(b"g")
        while True:
            n = recv_into(buf)
            if not n:
                break
            got += n
        elapsed = time.perf_counter() - t0
    check(got, total, "SSLSocket.recv_into bytes")
    return elapsed


def _asyncio(env: Env) -> float:
    total = env.sizes["W6"]
    ctx = env.client_ctx()

    async def go(sock: socket.socket) -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                       server_hostname="localhost")
        read = reader.read
        got = 0
        t0 = time.perf_counter()
        writer.write(b"g")
        await writer.drain()
        while True:
            data = await read(CHUNK)
            if not data:
                break
            got += len(data)
        elapsed = time.perf_counter() - t0
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:  # the sender may already be gone: not part of the measurement
            pass
        return got, elapsed

    with env.peer("send", tls=True, pattern="bulk", total=total) as sock:
        got, elapsed = asyncio.run(go(sock))
    check(got, total, "asyncio ssl bytes")
    return elapsed


def _trio(env: Env) -> float:
    import trio  # type: ignore[import-untyped]

    total = env.sizes["W6"]
    ctx = env.client_ctx()

    async def go(sock: socket.socket) -> tuple[int, float]:
        raw = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        stream = trio.SSLStream(raw, ctx, server_hostname="localhost")
        try:
            await stream.do_handshake()
            receive_some = stream.receive_some
            got = 0
            t0 = time.perf_counter()
            await stream.send_all(b"g")
            while True:
                data = await receive_some(CHUNK)
                if not data:
                    break
                got += len(data)
            elapsed = time.perf_counter() - t0
        finally:
            await raw.aclose()
        return got, elapsed

    with env.peer("send", tls=True, pattern="bulk", total=total) as sock:
        got, elapsed = trio.run(go, sock)
    check(got, total, "trio SSLStream bytes")
    return float(elapsed)


def _ss(env: Env) -> float:
    ss = env.ss()
    total = env.sizes["W6"]
    ctx = env.client_ctx()
    with env.peer("send", tls=True, pattern="bulk", total=total) as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8", ssl_ctx=ctx, ssl_side="client",
                                 tlsext_host_name="localhost")
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
                if n < CHUNK:
                    break
            elapsed = time.perf_counter() - t0
    check(got, total, "sockstream TLS bytes")
    return elapsed


TITLE = "TLS bulk read, 64 KiB chunks"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W6'] >> 20} MiB"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    total = env.sizes["W6"]
    cases = [
        Case("W6.ss", "sockstream TLS read_sequence(bytearray)", "sockstream", _ss, total, "B"),
        Case("W6.sslsocket", "ssl.SSLSocket.recv_into", "anchor", _sslsocket, total, "B"),
        Case("W6.asyncio", "asyncio streams (ssl) read(65536)", "anchor", _asyncio, total, "B"),
        Case("W6.trio", "trio SSLStream.receive_some(65536)", "anchor", _trio, total, "B"),
    ]
    ratios = [
        Ratio("sockstream / SSLSocket.recv_into", "W6.ss", "W6.sslsocket", 0.9),
        Ratio("sockstream / asyncio ssl", "W6.ss", "W6.asyncio", 1.5),
        Ratio("sockstream / trio SSLStream", "W6.ss", "W6.trio"),
    ]
    return cases, ratios

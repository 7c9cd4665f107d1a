"""W5 ping-pong: many round trips of 32 bytes (TCP_NODELAY on both ends).

We write 32 bytes, flush, and read the 32 bytes the sender echoes back, over and over.
sockstream (`write_sequence` + `force_output` + `read_sequence`) against raw blocking sockets,
asyncio streams (`write` + `drain` + `readexactly`) and trio (`send_all` + `receive_some`).
Goals: >= 0.85 of raw sockets, >= 1.5x asyncio.
"""

from __future__ import annotations

import asyncio
import socket
import time

from ._harness import Case, Env, Ratio, check

MSG = bytes(range(32))
SIZE = len(MSG)


def _raw(env: Env) -> float:
    n = env.sizes["W5"]
    with env.peer("echo") as sock:
        buf = bytearray(SIZE)
        view = memoryview(buf)
        sendall, recv_into = sock.sendall, sock.recv_into
        t0 = time.perf_counter()
        for _ in range(n):
            sendall(MSG)
            got = recv_into(buf)
            while got < SIZE:
                more = recv_into(view[got:])
                if not more:
                    raise EOFError("echo ended early")
                got += more
        elapsed = time.perf_counter() - t0
        sock.shutdown(socket.SHUT_WR)
    check(bytes(buf) == MSG, True, "echoed data")
    return elapsed


def _asyncio(env: Env) -> float:
    n = env.sizes["W5"]

    async def go(sock: socket.socket) -> tuple[bytes, float]:
        reader, writer = await asyncio.open_connection(sock=sock)
        write, drain, readexactly = writer.write, writer.drain, reader.readexactly
        data = b""
        t0 = time.perf_counter()
        for _ in range(n):
            write(MSG)
            await drain()
            data = await readexactly(SIZE)
        elapsed = time.perf_counter() - t0
        writer.close()
        await writer.wait_closed()
        return data, elapsed

    with env.peer("echo") as sock:
        data, elapsed = asyncio.run(go(sock))
    check(data == MSG, True, "echoed data")
    return elapsed


def _trio(env: Env) -> float:
    import trio  # type: ignore[import-untyped]

    n = env.sizes["W5"]

    async def go(sock: socket.socket) -> tuple[bytes, float]:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        async with stream:
            send_all, receive_some = stream.send_all, stream.receive_some
            data = b""
            t0 = time.perf_counter()
            for _ in range(n):
                await send_all(MSG)
                data = await receive_some(SIZE)
                while len(data) < SIZE:
                    more = await receive_some(SIZE - len(data))
                    if not more:
                        raise EOFError("echo ended early")
                    data += more
            elapsed = time.perf_counter() - t0
        return data, elapsed

    with env.peer("echo") as sock:
        data, elapsed = trio.run(go, sock)
    check(data == MSG, True, "echoed data")
    return float(elapsed)


def _ss(env: Env) -> float:
    ss = env.ss()
    n = env.sizes["W5"]
    with env.peer("echo") as sock:
        stream = ss.SocketStream(sock, "io", "unsigned-byte-8")
        with stream:
            buf = bytearray(SIZE)
            write_sequence = stream.write_sequence
            force_output = stream.force_output
            read_sequence = stream.read_sequence
            t0 = time.perf_counter()
            for _ in range(n):
                write_sequence(MSG)
                force_output()
                if read_sequence(buf) != SIZE:
                    raise EOFError("echo ended early")
            elapsed = time.perf_counter() - t0
    check(bytes(buf) == MSG, True, "echoed data")
    return elapsed


TITLE = "32-byte round trips"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W5']:,} round trips"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    n = env.sizes["W5"]
    cases = [
        Case(
            "W5.ss",
            "sockstream write_sequence+force_output+read_sequence",
            "sockstream",
            _ss,
            n,
            "round trips",
        ),
        Case("W5.raw", "raw socket sendall+recv_into", "anchor", _raw, n, "round trips"),
        Case(
            "W5.asyncio",
            "asyncio streams write+drain+readexactly",
            "anchor",
            _asyncio,
            n,
            "round trips",
        ),
        Case(
            "W5.trio", "trio SocketStream send_all+receive_some", "anchor", _trio, n, "round trips"
        ),
    ]
    ratios = [
        Ratio("sockstream / raw sockets", "W5.ss", "W5.raw", 0.85),
        Ratio("sockstream / asyncio streams", "W5.ss", "W5.asyncio", 1.5),
        Ratio("sockstream / trio", "W5.ss", "W5.trio"),
    ]
    return cases, ratios

"""W6 TLS reads: bulk in 64 KiB chunks (live sender and receiver-only), small records, lines.

Live: the sender process is the TLS server (certificate from a trustme CA made at run time,
never committed); the measured side is the client with the default context (TLS 1.3 here) and
verifies the host name.  The handshake happens before the clock starts; the sender ends with a
close-notify.  sockstream (`read_sequence`) against `ssl.SSLSocket.recv_into`, asyncio streams
with ssl (`read(65536)`) and trio `SSLStream.receive_some(65536)`.

Receiver-only (issue 15): the clock runs only while the receiver reads.  The TLS server is an
`SSLObject` in this process; for each round of 1 MiB it encrypts the round (16 KiB records for
bulk and lines, 512-byte records for "small"), writes all of it into the kernel and waits
(`SO_RCVLOWAT` + `select`) until all of it is in the receiver's socket buffer; only then the
clock starts, and it stops when the round is read.  The same rounds, unencrypted, give the
plain line rate and the plain `recv_into` rate, so that the cost of decryption is measured in
the same run: TLS lines must cost no more than plain lines plus that cost.
Goals: >= 0.95 of SSLSocket (live and receiver-only), >= 0.9 for small records, TLS lines
>= 1.0 of "plain lines + decryption", >= 1.5x asyncio.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from ._harness import CHUNK, Case, Env, Ratio, check


def _sslsocket(env: Env) -> float:
    total = env.sizes["W6"]
    ctx = env.client_ctx()
    with (
        env.peer("send", tls=True, pattern="bulk", total=total) as sock,
        ctx.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
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
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=ctx, server_hostname="localhost"
        )
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
        stream = ss.SocketStream(
            sock,
            "io",
            "unsigned-byte-8",
            ssl_ctx=ctx,
            ssl_side="client",
            tlsext_host_name="localhost",
        )
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


# ---- receiver-only rounds -------------------------------------------------------------------

ROUND = 1 << 20  # plaintext bytes per round
SMALL_RECORD = 512
LINE = b"sockstream benchmark line: 0123456789ab\n"  # 40 bytes, as the sender's
ROUND_LINES = ROUND // len(LINE)


class _Prewritten:
    """A loopback connection whose in-process peer puts a whole round in the kernel first."""

    def __init__(self, env: Env, tls: bool, record: int | None) -> None:
        self.record = record
        with socket.create_server(("127.0.0.1", 0)) as lsock:
            self.client = socket.socket()
            # Room for a whole round (and its TLS overhead) without the reader taking any.
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * ROUND)
            self.client.connect(lsock.getsockname())
            self.server, _ = lsock.accept()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * ROUND)
        self.obj: ssl.SSLObject | None = None
        self._hs: threading.Thread | None = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            certs = env.certs()
            ctx.load_cert_chain(certs["cert"], certs["key"])
            self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=True)
            self._hs = threading.Thread(target=self._handshake, daemon=True)
            self._hs.start()

    def _handshake(self) -> None:
        assert self.obj is not None
        while True:
            try:
                self.obj.do_handshake()
                self.server.sendall(self.outgoing.read())
                return
            except ssl.SSLWantReadError:
                self.server.sendall(self.outgoing.read())
                data = self.server.recv(65536)
                if not data:
                    return
                self.incoming.write(data)

    def handshaken(self) -> None:
        if self._hs is not None:
            self._hs.join(30)

    def put_round(self, payload: bytes) -> None:
        """Write one round into the kernel and wait until all of it is the receiver's."""
        if self.obj is None:
            raw = payload
        else:
            view = memoryview(payload)
            step = self.record or len(view)
            for i in range(0, len(view), step):
                self.obj.write(view[i : i + step])
            raw = self.outgoing.read()
        self.server.sendall(raw)
        self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, len(raw))
        try:
            ready, _, _ = select.select([self.client], [], [], 30)
            if not ready:
                raise TimeoutError("a round did not arrive in the receiver's socket buffer")
        finally:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)

    def close(self) -> None:
        self.server.close()
        self.client.close()


def _rounds(
    env: Env,
    tls: bool,
    record: int | None,
    total: int,
    payload: bytes,
    open_reader: Callable[[socket.socket], Any],
    read_round: Callable[[Any, int], int],
    want: int,
) -> float:
    """Seconds spent reading ``total`` bytes of rounds that were in the kernel beforehand."""
    conn = _Prewritten(env, tls, record)
    try:
        reader = open_reader(conn.client)
        if isinstance(reader, ssl.SSLSocket):
            conn.client = reader  # wrap_socket took over the socket
        conn.handshaken()
        elapsed = 0.0
        for _ in range(max(1, total // len(payload))):
            conn.put_round(payload)
            t0 = time.perf_counter()
            got = read_round(reader, want)
            elapsed += time.perf_counter() - t0
            check(got, want, "bytes (or lines) of a round")
        close = getattr(reader, "close", None)
        if close is not None:
            close()
        return elapsed
    finally:
        conn.close()


_BULK = bytes(range(256)) * (ROUND // 256)
_LINES = LINE * ROUND_LINES


def _read_recv_into(reader: Any, want: int) -> int:
    buf = bytearray(CHUNK)
    recv_into = reader.recv_into
    got = 0
    while got < want:
        n = recv_into(buf)
        if not n:
            break
        got += n
    return got


def _read_sequence(stream: Any, want: int) -> int:
    buf = bytearray(CHUNK)
    read_sequence = stream.read_sequence
    got = 0
    while got < want:
        n = read_sequence(buf)
        if not n:
            break
        got += n
    return got


def _read_lines(stream: Any, want: int) -> int:
    read_line = stream.read_line
    for i in range(want):
        _line, missing = read_line()
        if missing:
            return i
    return want


def _ssl_reader(env: Env) -> Callable[[socket.socket], Any]:
    ctx = env.client_ctx()
    return lambda sock: ctx.wrap_socket(sock, server_hostname="localhost")


def _ss_reader(
    env: Env, tls: bool, element_type: str = "unsigned-byte-8"
) -> Callable[[socket.socket], Any]:
    ss = env.ss()
    if not tls:
        return lambda sock: ss.SocketStream(sock, "io", element_type)
    ctx = env.client_ctx()
    return lambda sock: ss.SocketStream(
        sock, "io", element_type, ssl_ctx=ctx, ssl_side="client", tlsext_host_name="localhost"
    )


def _pre_ss(env: Env) -> float:
    return _rounds(
        env, True, None, env.sizes["W6"], _BULK, _ss_reader(env, True), _read_sequence, ROUND
    )


def _pre_ssl(env: Env) -> float:
    return _rounds(
        env, True, None, env.sizes["W6"], _BULK, _ssl_reader(env), _read_recv_into, ROUND
    )


def _small_ss(env: Env) -> float:
    return _rounds(
        env,
        True,
        SMALL_RECORD,
        env.sizes["W6"] // 4,
        _BULK,
        _ss_reader(env, True),
        _read_sequence,
        ROUND,
    )


def _small_ssl(env: Env) -> float:
    return _rounds(
        env,
        True,
        SMALL_RECORD,
        env.sizes["W6"] // 4,
        _BULK,
        _ssl_reader(env),
        _read_recv_into,
        ROUND,
    )


def _lines_tls(env: Env) -> float:
    return _rounds(
        env,
        True,
        None,
        env.sizes["W6"] // 4,
        _LINES,
        _ss_reader(env, True, "base-char"),
        _read_lines,
        ROUND_LINES,
    )


def _lines_budget(env: Env) -> float:
    """Plain lines plus the cost of decrypting the same bytes (SSLSocket minus plain recv)."""
    total = env.sizes["W6"] // 4
    plain_lines = _rounds(
        env,
        False,
        None,
        total,
        _LINES,
        _ss_reader(env, False, "base-char"),
        _read_lines,
        ROUND_LINES,
    )
    decrypting = _rounds(
        env, True, None, total, _LINES, _ssl_reader(env), _read_recv_into, len(_LINES)
    )
    plain = _rounds(
        env, False, None, total, _LINES, lambda sock: sock, _read_recv_into, len(_LINES)
    )
    return plain_lines + max(decrypting - plain, 0.0)


TITLE = "TLS reads: bulk 64 KiB chunks (live, receiver-only), 512-byte records, lines"


def describe_size(env: Env) -> str:
    return f"{env.sizes['W6'] >> 20} MiB"


def build(env: Env) -> tuple[list[Case], list[Ratio]]:
    total = env.sizes["W6"]
    rounds = max(1, total // ROUND) * ROUND
    small = max(1, (total // 4) // ROUND) * ROUND
    lines = max(1, (total // 4) // ROUND) * ROUND_LINES
    cases = [
        Case("W6.ss", "sockstream TLS read_sequence(bytearray)", "sockstream", _ss, total, "B"),
        Case("W6.sslsocket", "ssl.SSLSocket.recv_into", "anchor", _sslsocket, total, "B"),
        Case("W6.asyncio", "asyncio streams (ssl) read(65536)", "anchor", _asyncio, total, "B"),
        Case("W6.trio", "trio SSLStream.receive_some(65536)", "anchor", _trio, total, "B"),
        Case(
            "W6.pre.ss",
            "receiver-only: sockstream read_sequence",
            "sockstream",
            _pre_ss,
            rounds,
            "B",
        ),
        Case(
            "W6.pre.sslsocket",
            "receiver-only: SSLSocket.recv_into",
            "anchor",
            _pre_ssl,
            rounds,
            "B",
        ),
        Case(
            "W6.small.ss",
            "512-byte records, receiver-only: sockstream",
            "sockstream",
            _small_ss,
            small,
            "B",
        ),
        Case(
            "W6.small.sslsocket",
            "512-byte records, receiver-only: SSLSocket.recv_into",
            "anchor",
            _small_ssl,
            small,
            "B",
        ),
        Case(
            "W6.lines.ss",
            "TLS lines, receiver-only: sockstream read_line",
            "sockstream",
            _lines_tls,
            lines,
            "line",
        ),
        Case(
            "W6.lines.budget",
            "plain read_line + decryption (SSLSocket - recv_into)",
            "anchor",
            _lines_budget,
            lines,
            "line",
        ),
    ]
    ratios = [
        Ratio("sockstream / SSLSocket.recv_into", "W6.ss", "W6.sslsocket", 0.95),
        Ratio("receiver-only: sockstream / SSLSocket", "W6.pre.ss", "W6.pre.sslsocket", 0.95),
        Ratio("512-byte records: sockstream / SSLSocket", "W6.small.ss", "W6.small.sslsocket", 0.9),
        Ratio("TLS lines / (plain lines + decryption)", "W6.lines.ss", "W6.lines.budget", 1.0),
        Ratio("sockstream / asyncio ssl", "W6.ss", "W6.asyncio", 1.5),
        Ratio("sockstream / trio SSLStream", "W6.ss", "W6.trio"),
    ]
    return cases, ratios

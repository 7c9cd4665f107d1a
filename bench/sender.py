"""The peer process of the benchmarks: `python -m bench.sender` (standard library only).

Design: the measuring process starts ONE sender per run and drives it over stdin/stdout with one
JSON command per line; the sender answers each command with one JSON line (`{"ok": true, ...}`
or `{"ok": false, "error": ...}`).  Every command but `hold` names a port on 127.0.0.1 where the
measuring process is listening: the sender connects there, optionally becomes the TLS *server*
(the measuring side is always the TLS client), and then plays its part:

- `send`: wait for the one "go" byte, send `total` bytes of a pattern (`bulk`, `lines`), then
  close (with a TLS close-notify when TLS is on).  Waiting for "go" keeps the sender's head start
  (data sitting in the socket buffers before the clock starts) out of every measurement.
- `drain`: read to end-of-file, then answer the byte count as 8 bytes big-endian and close.
- `echo`: send back whatever arrives, until end-of-file (ping-pong).
- `hold`: listen, print the port, accept `n` connections (TLS handshake optional), report, keep
  them open until the next stdin line, then close them all (memory probe).

Running in a separate process is the point: on a 2-core machine the receiver and the sender each
get a core, so the measurement is of the receiving (or writing) code, not of a shared GIL.
"""

from __future__ import annotations

import json
import socket
import ssl
import sys
from typing import Any

LINE = b"sockstream benchmark line: 0123456789ab\n"  # 40 bytes with its newline
LINE_LEN = len(LINE)
LINES_PER_BLOCK = 1600  # 64,000 bytes: one send is about one 64 KiB chunk
BULK_BLOCK = 1 << 20  # 1 MiB per sendall: the sender must never be the bottleneck
assert LINE_LEN == 40
#: W8's lines: UTF-8 with non-ASCII characters, and CRLF; 40 bytes each, as LINE.
UTF8_LINE = "sockstream ligne: é€ü 0123456789abc\n".encode()
CRLF_LINE = b"sockstream benchmark line: 0123456789a\r\n"
TEXT_LINE_LEN = 40
assert len(UTF8_LINE) == len(CRLF_LINE) == TEXT_LINE_LEN
#: W8's header blocks: 200 bytes, CRLF lines ending with an empty one.
HEADER_BLOCK = (
    b"GET /index.html HTTP/1.1\r\nHost: bench.sockstream.test\r\n"
    b"User-Agent: sockstream-bench/1.0\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n"
    b"X-Pad: " + b"x" * 64 + b"\r\n\r\n"
)
assert len(HEADER_BLOCK) == 200


#: Payload sizes of the RESP-style replies (W8), cycled: mostly small values, as caches serve.
RESP_SIZES = (16, 5, 64, 32, 100, 8, 200, 24, 48, 3)
RESP_REPLIES_PER_BLOCK = 1000


def resp_block() -> bytes:
    """``RESP_REPLIES_PER_BLOCK`` bulk-string replies: ``$<n>\\r\\n``, n bytes, ``\\r\\n``."""
    out = bytearray()
    for i in range(RESP_REPLIES_PER_BLOCK):
        n = RESP_SIZES[i % len(RESP_SIZES)]
        out += b"$%d\r\n" % n + bytes((65 + (i + j) % 26) for j in range(n)) + b"\r\n"
    return bytes(out)


def pattern_block(pattern: str) -> bytes:
    """The repeating block of a send pattern (the receivers use it to check what they got)."""
    if pattern == "lines":
        return LINE * LINES_PER_BLOCK
    if pattern == "bulk":
        return bytes(range(256)) * (BULK_BLOCK // 256)
    if pattern == "resp":
        return resp_block()
    if pattern == "utf8lines":
        return UTF8_LINE * LINES_PER_BLOCK
    if pattern == "crlflines":
        return CRLF_LINE * LINES_PER_BLOCK
    if pattern == "headers":
        return HEADER_BLOCK * 320  # 64,000 bytes
    raise ValueError(
        "pattern must be 'bulk', 'lines', 'resp', 'utf8lines', 'crlflines' or 'headers', "
        f"not {pattern!r}"
    )


def _server_ctx(cmd: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cmd["certfile"], cmd["keyfile"])
    return ctx


def _connect(cmd: dict[str, Any]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", cmd["port"]), timeout=30)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if cmd.get("tls"):
        sock = _server_ctx(cmd).wrap_socket(sock, server_side=True)
    return sock


def _close(sock: socket.socket) -> None:
    if isinstance(sock, ssl.SSLSocket):
        try:
            sock.unwrap()  # close-notify; then waits for the peer's, or its plain close
        except (OSError, ValueError):
            pass
    sock.close()


def op_send(cmd: dict[str, Any]) -> dict[str, Any]:
    block = memoryview(pattern_block(cmd["pattern"]))
    total = int(cmd["total"])
    sock = _connect(cmd)
    try:
        go = sock.recv(1)
        if go != b"g":
            raise ConnectionError(f"receiver gave up before starting (got {go!r})")
        left = total
        size = len(block)
        while left >= size:
            sock.sendall(block)
            left -= size
        if left:
            sock.sendall(block[:left])
    finally:
        _close(sock)
    return {"sent": total}


def op_drain(cmd: dict[str, Any]) -> dict[str, Any]:
    sock = _connect(cmd)
    try:
        buf = bytearray(1 << 20)
        got = 0
        recv_into = sock.recv_into
        while True:
            n = recv_into(buf)
            if not n:
                break
            got += n
        sock.sendall(got.to_bytes(8, "big"))
    finally:
        _close(sock)
    return {"received": got}


def op_echo(cmd: dict[str, Any]) -> dict[str, Any]:
    sock = _connect(cmd)
    echoed = 0
    try:
        buf = bytearray(65536)
        view = memoryview(buf)
        recv_into = sock.recv_into
        sendall = sock.sendall
        while True:
            n = recv_into(buf)
            if not n:
                break
            sendall(view[:n])
            echoed += n
    finally:
        _close(sock)
    return {"echoed": echoed}


def op_hold(cmd: dict[str, Any]) -> dict[str, Any]:
    n = int(cmd["n"])
    ctx = _server_ctx(cmd) if cmd.get("tls") else None
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0), backlog=min(n, 4096)) as lsock:
        _reply({"port": lsock.getsockname()[1]})
        try:
            for _ in range(n):
                conn, _addr = lsock.accept()
                held.append(conn)
                if ctx is not None:
                    held[-1] = ctx.wrap_socket(conn, server_side=True)
            _reply({"held": len(held)})
            sys.stdin.readline()  # "release"
        finally:
            for s in held:
                s.close()
    return {"released": len(held)}


OPS = {"send": op_send, "drain": op_drain, "echo": op_echo, "hold": op_hold}


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            break
        try:
            result = OPS[cmd["op"]](cmd)
        except Exception as exc:  # reported to the measuring process, which decides
            _reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        else:
            _reply({"ok": True, **result})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""An HTTP/1.1 client on a sockstream: keep-alive, pipelining, Content-Length and chunked
bodies, TLS with SNI (RFC 9112).

    python http_client.py URL_HOST PORT PATH [--tls]

One connection carries many requests. A response head (the status line and the header lines) is
read in one call, ``read_until(b"\\r\\n\\r\\n")``, bounded by ``max_line_length``; then a body:
exactly ``Content-Length`` bytes read with ``read_sequence`` into a ``bytearray``, or chunks (a
hexadecimal size line read with ``read_line``, that many bytes, CRLF) until a zero chunk. The
stream's ``newline=None`` reads lines as RFC 9112 §2.2 asks: CRLF, or a bare LF.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

import sockstream

MAX_HEAD = 65536  # a longer response head is refused (LineTooLongError), never buffered


class Response(NamedTuple):
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case; repeated headers joined with ", "
    body: bytes


class HTTPConnection:
    def __init__(self, host: str, port: int, *, tls: bool = False, **stream_keywords: Any) -> None:
        self.host = host
        if tls:
            stream_keywords.setdefault("ssl_ctx", True)  # verifies certificate and host name
        self.stream = sockstream.open_tcp_stream(
            host,
            port,
            element_type="unsigned-byte-8",
            newline=None,
            max_line_length=MAX_HEAD,
            **stream_keywords,
        )

    def close(self) -> None:
        self.stream.close()

    def send_request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> None:
        """Buffer a request; several may be sent before reading (pipelining)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.stream.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _line(self) -> str:
        line: str
        line, missing = self.stream.read_line()
        if missing:
            raise ConnectionError(f"connection closed in the middle of a response ({line!r})")
        return line

    def _exactly(self, n: int) -> bytes:
        body = bytearray(n)
        if self.stream.read_sequence(body) != n:
            raise ConnectionError("connection closed in the middle of a body")
        return bytes(body)

    def read_response(self, method: str = "GET") -> Response:
        head, missing = self.stream.read_until(b"\r\n\r\n")
        if missing:
            raise ConnectionError(f"connection closed in a response head ({head!r})")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        _version, status, reason = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        code = int(status)
        if method == "HEAD" or code in (204, 304) or 100 <= code < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        else:  # the body ends with the connection
            body = self.stream.read()
        return Response(code, reason, headers, body)

    def _chunked(self) -> bytes:
        parts = []
        while size := int(self._line().split(";")[0], 16):
            parts.append(self._exactly(size))
            self._line()  # the CRLF after the chunk
        while self._line():  # trailers, up to the empty line
            pass
        return b"".join(parts)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        self.send_request("GET", path, headers)
        self.stream.flush()
        return self.read_response()


if __name__ == "__main__":
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = HTTPConnection(host, port, tls="--tls" in sys.argv)
    try:
        r = conn.get(path)
        print(r.status, r.reason, len(r.body), "bytes")
        sys.stdout.buffer.write(r.body)
    finally:
        conn.close()

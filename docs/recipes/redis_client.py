"""A Redis client (RESP2) on a sockstream: commands, pipelining, binary values, blocking pops
with a read timeout, pub/sub over many connections, TLS.

    python redis_client.py [HOST [PORT]]      # talks to a Redis server (default 127.0.0.1 6379)

Replies are parsed from one byte stream with CRLF lines (``newline="\\r\\n"``): a header line
(``$5``, ``*2``, ``:1``, ``+OK``, ``-ERR``) read with ``read_line``, which returns it without its
CRLF, then a bulk body of exactly the announced length read with ``read``: binary values with
``\\r\\n`` or ``\\0`` inside are safe, because a body is never searched for a line end.
"""

from __future__ import annotations

import sys
from typing import Any

import sockstream

Reply = Any  # str | int | bytes | None | list[Reply]


class RedisError(Exception):
    """An error reply (``-ERR ...``) from the server."""


class Redis:
    """One connection to a Redis server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, **stream_keywords: Any) -> None:
        self.stream = sockstream.open_tcp_stream(
            host, port, element_type="unsigned-byte-8", newline="\r\n", **stream_keywords
        )
        self._partial = ""  # a header line cut short by the read timeout, kept for the next try

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing: commands are arrays of bulk strings, buffered until flush -------------------
    def send(self, *args: bytes | str | int) -> None:
        """Buffer one command; nothing is sent until ``flush`` (so many commands pipeline)."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts += [b"$%d\r\n" % len(data), data, b"\r\n"]
        self.stream.write(b"".join(parts))

    def flush(self) -> None:
        self.stream.flush()

    # -- reading: one reply ------------------------------------------------------------------
    def reply(self) -> Reply:
        """Read one reply; ``TimeoutError`` if the stream's ``read_timeout`` passed first."""
        head, missing = self.stream.read_line(eof_error=False, eof_value="")
        line = self._partial + head
        self._partial = ""
        if missing:
            if self.stream.timed_out:  # nothing is lost: what came is kept for the next call
                self._partial = line
                raise TimeoutError("no reply within read_timeout")
            raise ConnectionError("connection closed in the middle of a reply")
        kind, rest = line[:1], line[1:]
        if kind == "+":
            return rest
        if kind == "-":
            raise RedisError(rest)
        if kind == ":":
            return int(rest)
        if kind == "$":
            n = int(rest)
            if n < 0:
                return None
            body = self.stream.read(n + 2)  # the value and its CRLF, whatever bytes they hold
            if len(body) != n + 2:
                raise ConnectionError("connection closed in the middle of a value")
            return body[:-2]
        if kind == "*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError(f"unexpected reply {line!r}")

    def command(self, *args: bytes | str | int) -> Reply:
        self.send(*args)
        self.flush()
        return self.reply()


def subscribe(host: str, port: int, channel: str, **stream_keywords: Any) -> Redis:
    """A connection subscribed to ``channel`` (the server has confirmed it)."""
    r = Redis(host, port, **stream_keywords)
    r.command("SUBSCRIBE", channel)  # [b'subscribe', b'<channel>', 1]
    return r


def collect(subscribers: list[Redis], count: int, timeout: float = 10) -> list[tuple[str, bytes]]:
    """``count`` messages from any of the subscribed connections, waiting on all at once."""
    by_stream = {id(r.stream): r for r in subscribers}
    got: list[tuple[str, bytes]] = []
    while len(got) < count:
        ready = sockstream.wait_for_input_streams([r.stream for r in subscribers], timeout=timeout)
        if not ready:
            raise TimeoutError(f"no message within {timeout} s")
        for stream in ready:
            kind, channel, message = by_stream[id(stream)].reply()
            if kind == b"message":
                got.append((channel.decode(), message))
    return got


def demo(host: str, port: int) -> None:
    with Redis(host, port) as r:
        print(r.command("PING"))  # PONG
        r.command("SET", "greeting", b"hello\r\nworld\0")  # binary-safe
        print(r.command("GET", "greeting"))  # b'hello\r\nworld\x00'
        for _ in range(1000):  # pipelining: one flush
            r.send("INCR", "counter")
        r.flush()
        print([r.reply() for _ in range(1000)][-1])
        # A blocking pop with a read timeout: the timeout reads as end-of-file, the stream
        # stays usable, and the reply that comes later is read normally.
        r.stream.read_timeout = 0.2
        r.send("BLPOP", "jobs", 0)
        r.flush()
        try:
            r.reply()
        except TimeoutError:
            print("no job yet")
        with Redis(host, port) as producer:
            producer.command("RPUSH", "jobs", "job-1")
        r.stream.read_timeout = None
        print(r.reply())  # [b'jobs', b'job-1']


if __name__ == "__main__":
    demo(
        sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1",
        int(sys.argv[2]) if len(sys.argv) > 2 else 6379,
    )

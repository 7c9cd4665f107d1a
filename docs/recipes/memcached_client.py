"""A memcached client (text protocol) on a sockstream: set, get, gets/cas, multi-get.

    python memcached_client.py [HOST [PORT]]      # default 127.0.0.1 11211

Each value comes as a header line ``VALUE <key> <flags> <bytes> [<cas>]`` (read with
``read_line`` on a CRLF stream: no terminator to strip) and then exactly ``<bytes>`` bytes and a
CRLF, read with ``read``: binary values are safe.
"""

from __future__ import annotations

import sys
from typing import Any

import sockstream


class MemcacheError(Exception):
    pass


class Memcache:
    def __init__(self, host: str = "127.0.0.1", port: int = 11211, **stream_keywords: Any) -> None:
        self.stream = sockstream.open_tcp_stream(
            host, port, element_type="unsigned-byte-8", newline="\r\n", **stream_keywords
        )

    def close(self) -> None:
        self.stream.close()

    def _line(self) -> str:
        line: str
        line, missing = self.stream.read_line()
        if missing:
            raise ConnectionError(f"connection closed in a reply ({line!r})")
        if line.startswith(("ERROR", "CLIENT_ERROR", "SERVER_ERROR")):
            raise MemcacheError(line)
        return line

    def _store(
        self, verb: str, key: str, value: bytes, flags: int, exptime: int, extra: str = ""
    ) -> str:
        head = f"{verb} {key} {flags} {exptime} {len(value)}{extra}\r\n".encode()
        self.stream.write(head + value + b"\r\n")
        self.stream.flush()
        return self._line()

    def set(self, key: str, value: bytes, flags: int = 0, exptime: int = 0) -> bool:
        return self._store("set", key, value, flags, exptime) == "STORED"

    def cas(
        self, key: str, value: bytes, cas_unique: int, flags: int = 0, exptime: int = 0
    ) -> bool:
        """Store only if nobody changed ``key`` since ``gets`` gave ``cas_unique``."""
        return self._store("cas", key, value, flags, exptime, f" {cas_unique}") == "STORED"

    def get_many(self, keys: list[str], with_cas: bool = False) -> dict[str, tuple[bytes, int]]:
        """``{key: (value, flags or cas)}`` for the keys found (one request for all of them)."""
        self.stream.write(
            ("gets " if with_cas else "get ").encode() + " ".join(keys).encode() + b"\r\n"
        )
        self.stream.flush()
        found: dict[str, tuple[bytes, int]] = {}
        while (line := self._line()) != "END":
            _, key, flags, size, *cas = line.split()
            data = self.stream.read(int(size) + 2)
            if len(data) != int(size) + 2:
                raise ConnectionError("connection closed in a value")
            found[key] = (data[:-2], int(cas[0]) if with_cas else int(flags))
        return found

    def get(self, key: str) -> bytes | None:
        hit = self.get_many([key])
        return hit[key][0] if key in hit else None

    def gets(self, key: str) -> tuple[bytes, int] | None:
        return self.get_many([key], with_cas=True).get(key)


def demo(host: str, port: int) -> None:
    mc = Memcache(host, port)
    try:
        mc.set("greeting", b"hello\r\n\0world")
        print(mc.get("greeting"))
        value, token = mc.gets("greeting") or (b"", 0)
        print(mc.cas("greeting", value + b"!", token), mc.cas("greeting", b"late", token))
        for i in range(100):
            mc.set(f"k{i}", bytes([i]) * i)
        print(len(mc.get_many([f"k{i}" for i in range(100)])))
    finally:
        mc.close()


if __name__ == "__main__":
    demo(
        sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1",
        int(sys.argv[2]) if len(sys.argv) > 2 else 11211,
    )

"""A line-protocol server with ``serve``: UTF-8 lines ending in CRLF, a line-length limit, TLS.

    python line_server.py PORT [CERT KEY]     # then: socat - TCP:127.0.0.1:PORT,crlf
                                              # or:   openssl s_client -connect 127.0.0.1:PORT

The protocol: the server greets with ``+READY``; each request line is a command and a text;
``UPPER text`` answers ``+TEXT``, ``LEN text`` answers ``:<characters>``, ``QUIT`` ends the
session; anything else is ``-ERR``. A line longer than ``MAX_LINE`` bytes gets ``-ERR line too
long`` and the connection is closed (nothing of it was buffered beyond the limit). The stream
does the text: ``encoding="utf-8"``, ``newline="\\r\\n"`` (``read_line`` without the CRLF,
``write_line`` adds it), and ``errors="surrogateescape"``, so bytes that are not UTF-8 arrive
as lone surrogates, are answered ``-ERR not UTF-8``, and cost nothing else.
"""

from __future__ import annotations

import ssl
import sys

import sockstream

MAX_LINE = 1024


def handle(stream: sockstream.SocketStream) -> None:
    """One session, in a thread of its own; ``serve`` closes the stream when it returns."""

    def send(text: str) -> None:
        stream.write_line(text)
        stream.flush()

    send("+READY")
    while True:
        try:
            line, missing = stream.read_line(eof_error=False, eof_value="")
        except sockstream.LineTooLongError:
            send("-ERR line too long")
            return
        if missing:  # end of file (or the idle timeout)
            return
        try:
            line.encode("utf-8")  # strict: the lone surrogates of undecodable bytes fail here
        except UnicodeEncodeError:
            send("-ERR not UTF-8")
            continue
        command, _, text = line.partition(" ")
        if command == "UPPER":
            send("+" + text.upper())
        elif command == "LEN":
            send(f":{len(text)}")
        elif command == "QUIT":
            send("+BYE")
            return
        else:
            send(f"-ERR unknown command {command!r}")


def start(
    port: int = 0, ssl_ctx: ssl.SSLContext | None = None, address: str = "127.0.0.1"
) -> sockstream.Server:
    return sockstream.serve(
        handle,
        service=port,
        address=address,
        ssl_ctx=ssl_ctx,
        encoding="utf-8",
        errors="surrogateescape",
        newline="\r\n",
        max_line_length=MAX_LINE,
        read_timeout=300,
    )


if __name__ == "__main__":
    ctx = None
    if len(sys.argv) > 3:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    with start(int(sys.argv[1]), ctx) as server:
        print(f"serving on {server.address}:{server.port}", flush=True)
        server.join()

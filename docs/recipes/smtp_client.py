"""Send a mail over SMTP with STARTTLS on a sockstream (RFC 5321, RFC 3207).

    python smtp_client.py HOST PORT FROM TO < message.eml

The stream speaks the protocol's text: UTF-8 lines ending in CRLF (``encoding="utf-8"``,
``newline="\\r\\n"``), so replies are read with ``read_line`` (no terminator to strip) and
commands sent with ``write_line``. The connection starts plain; after ``STARTTLS`` and the
server's ``220``, ``attach_ssl`` turns the same stream into TLS (anything the server sent early
is never taken as encrypted). The message body is bytes, sent dot-stuffed with CRLF line ends;
8-bit and UTF-8 bytes go through as they are (``8BITMIME``/``SMTPUTF8``).
"""

from __future__ import annotations

import base64
import ssl
import sys
from typing import Any

import sockstream


class SMTPError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class SMTP:
    """One SMTP session."""

    def __init__(self, host: str, port: int = 25, **stream_keywords: Any) -> None:
        self.host = host
        stream_keywords.setdefault("read_timeout", 30)
        self.stream = sockstream.open_tcp_stream(
            host, port, encoding="utf-8", errors="replace", newline="\r\n", **stream_keywords
        )
        self.extensions: dict[str, str] = {}
        self.expect(220)  # the greeting

    def close(self) -> None:
        self.stream.close()

    def reply(self) -> tuple[int, list[str]]:
        """One reply: its code and its lines (``250-a``, ``250-b``, ``250 c`` are one reply)."""
        lines: list[str] = []
        while True:
            line, missing = self.stream.read_line()
            if missing:
                raise ConnectionError(f"no complete reply from the server ({line!r})")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def expect(self, *codes: int) -> list[str]:
        code, lines = self.reply()
        if code not in codes:
            raise SMTPError(code, " ".join(lines))
        return lines

    def command(self, line: str, *codes: int) -> list[str]:
        self.stream.write_line(line)
        self.stream.flush()
        return self.expect(*codes)

    def ehlo(self, name: str = "client.invalid") -> None:
        lines = self.command(f"EHLO {name}", 250)
        self.extensions = {}
        for ext in lines[1:]:
            key, _, value = ext.partition(" ")
            self.extensions[key.upper()] = value

    def starttls(self, ssl_ctx: ssl.SSLContext | bool = True) -> None:
        self.command("STARTTLS", 220)
        sockstream.attach_ssl(
            self.stream, ssl_ctx=ssl_ctx, ssl_side="client", tlsext_host_name=self.host
        )
        self.ehlo()  # RFC 3207: forget what was learnt before TLS

    def login(self, user: str, password: str) -> None:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.command(f"AUTH PLAIN {token}", 235)

    def send_mail(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Send ``message`` (bytes, any line ends) to ``recipients``."""
        options = " BODY=8BITMIME" if "8BITMIME" in self.extensions else ""
        if "SMTPUTF8" in self.extensions and not (sender + "".join(recipients)).isascii():
            options += " SMTPUTF8"
        self.command(f"MAIL FROM:<{sender}>{options}", 250)
        for rcpt in recipients:
            self.command(f"RCPT TO:<{rcpt}>", 250, 251)
        self.command("DATA", 354)
        self.stream.write(dot_stuff(message))
        self.command(".", 250)

    def quit(self) -> None:
        self.command("QUIT", 221)
        self.close()


def dot_stuff(message: bytes) -> bytes:
    """CRLF line ends, a leading ``.`` doubled (RFC 5321 §4.5.2), and a final CRLF."""
    lines = message.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines)


def main(argv: list[str]) -> None:
    host, port, sender, rcpt = argv[0], int(argv[1]), argv[2], argv[3]
    smtp = SMTP(host, port)
    try:
        smtp.ehlo()
        smtp.starttls()
        smtp.send_mail(sender, [rcpt], sys.stdin.buffer.read())
        smtp.quit()
    finally:
        smtp.close()


if __name__ == "__main__":
    main(sys.argv[1:])

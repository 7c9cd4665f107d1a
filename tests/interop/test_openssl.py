"""Interop with peers no one here wrote: ``openssl s_server`` and ``openssl s_client``.

Our client stream talks to ``openssl s_server`` (which checks the SNI name with ``-servername``
and ``-servername_fatal``), and ``openssl s_client`` talks to our server stream; both sides verify
certificates against the session's trustme CA, over TLS 1.2 and 1.3.  The subprocesses' output is
read by a thread into a queue, so every wait is bounded; every subprocess is killed and waited
for.  Ports: bind port 0, close, hand the number to ``-accept``, and retry if openssl could not
bind it (another process took it in between).
"""

from __future__ import annotations

import queue
import select
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import pytest

from conftest import LONG, PeerThread
from sockstream import SocketStream, SSLFailure

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command"),
]

VERSION_FLAGS = {"1.2": "-tls1_2", "1.3": "-tls1_3"}
#: s_server's stdout line by line, so that what it prints after a command is an answer to it.
_LINE_BUFFERED = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
SNI = "sni.example.test"


@pytest.fixture(params=list(VERSION_FLAGS))
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Lines:
    """The lines a subprocess writes, read by a thread; ``None`` marks the end."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue()
        self.seen: list[bytes] = []
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[bytes]) -> None:
        try:
            for line in stream:
                self.queue.put(line)
        finally:
            self.queue.put(None)

    def expect(self, wanted: bytes) -> None:
        """Wait until a line equal to ``wanted`` (without line end) is printed."""
        while True:
            line = self.queue.get(timeout=LONG)
            assert line is not None, f"ended before {wanted!r}; saw {self.seen!r}"
            self.seen.append(line)
            if line.rstrip(b"\r\n") == wanted:
                return

    def rest(self) -> list[bytes]:
        """All remaining lines, once the process has ended."""
        out = []
        while (line := self.queue.get(timeout=LONG)) is not None:
            out.append(line)
        self.seen += out
        return out

    def join(self) -> None:
        self._thread.join(LONG)
        assert not self._thread.is_alive()


@contextmanager
def _reaped(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """Kill (if still running) and wait for ``proc`` at the end, and close its pipes."""
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(LONG)


@contextmanager
def s_server(cert_files: dict[str, str], *flags: str) -> Iterator[tuple[int, Any, Lines]]:
    """Run ``openssl s_server`` on a free loopback port: ``(port, process, output lines)``."""
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [
                *_LINE_BUFFERED,
                "openssl",
                "s_server",
                "-accept",
                f"127.0.0.1:{port}",
                "-naccept",
                "1",
                "-cert",
                cert_files["cert"],
                "-key",
                cert_files["key"],
                *flags,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        with _reaped(proc):
            assert proc.stdout is not None
            lines = Lines(proc.stdout)
            try:
                try:
                    lines.expect(b"ACCEPT")
                except AssertionError:
                    if any(
                        b"bind" in line.lower() or b"in use" in line.lower() for line in lines.seen
                    ):
                        continue  # the port was taken in between: try another
                    raise
                yield port, proc, lines
                return
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(LONG)
                lines.join()
    pytest.fail("openssl s_server could not bind a port in 5 tries")


def _tell(proc: Any, data: bytes) -> None:
    proc.stdin.write(data)
    proc.stdin.flush()


# ---- our client, openssl s_server -----------------------------------------------------------


def _s_server_flags(cert_files: dict[str, str], version: str) -> list[str]:
    return [
        VERSION_FLAGS[version],
        "-servername",
        SNI,
        "-servername_fatal",
        "-cert2",
        cert_files["cert"],
        "-key2",
        cert_files["key"],
    ]


def test_our_client_against_s_server(cert_files: dict[str, str], version: str) -> None:
    with s_server(cert_files, *_s_server_flags(cert_files, version)) as (port, proc, lines):
        sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        # A context the stream makes (verifying, system defaults) told to trust our CA only.
        with SocketStream(
            sock,
            ssl_ctx=True,
            ssl_side="client",
            tlsext_host_name=SNI,
            handshake_timeout=LONG,
            read_timeout=LONG,
            ctx_configure_callback=lambda ctx: ctx.load_verify_locations(cert_files["ca"]),
        ) as client:
            assert client.ssl_object.version() == f"TLSv{version}"
            assert not client.ssl_object.session_reused
            lines.expect(f'Hostname in TLS extension: "{SNI}"'.encode())
            client.write_line("hello from sockstream")
            client.force_output()
            lines.expect(b"hello from sockstream")
            _tell(proc, b"hello from openssl\n")
            assert client.read_line() == ("hello from openssl", False)
            if version == "1.3":
                # 'K': s_server sends a KeyUpdate asking us to update too.  It is not data.
                _tell(proc, b"K\n")
                r, _, _ = select.select([client.fileno()], [], [], LONG)
                assert r
                assert client.listen() is False
                _tell(proc, b"after the key update\n")
                assert client.read_line() == ("after the key update", False)
                client.write_line("ours after the key update")
                client.force_output()
                lines.expect(b"ours after the key update")
            else:
                # 'r': s_server renegotiates (HelloRequest).  Our engine answers it while
                # reading, and a write while the new handshake is under way must wait for it
                # (SSL_write answers WANT_READ then), not fail.  Whether the write lands in
                # the handshake depends on timing, so do it a number of times.
                for i in range(20):
                    _tell(proc, b"r\n")
                    r, _, _ = select.select([client.fileno()], [], [], LONG)
                    assert r
                    assert client.listen() is False  # the HelloRequest is not data
                    client.write_line(f"ours during renegotiation {i}")
                    client.force_output()
                    lines.expect(f"ours during renegotiation {i}".encode())
                    _tell(proc, f"after renegotiation {i}\n".encode())
                    assert client.read_line() == (f"after renegotiation {i}", False)
                # The new handshakes resumed the session: proof that they did happen.
                assert client.ssl_object.session_reused
            big = "0123456789abcdef" * 8192  # 128 KiB: many records
            client.write_line(big)
            client.force_output()
            lines.expect(big.encode())
        # close() sent a close-notify: s_server ends the connection cleanly ("DONE").
        assert proc.wait(LONG) == 0
        rest = lines.rest()
        assert b"DONE\n" in rest
        assert b"ERROR\n" not in rest


def test_our_client_with_its_own_context_against_s_server(
    cert_files: dict[str, str], version: str
) -> None:
    ctx = ssl.create_default_context(cafile=cert_files["ca"])
    ctx.minimum_version = ctx.maximum_version = getattr(
        ssl.TLSVersion, f"TLSv{version.replace('.', '_')}"
    )
    with s_server(cert_files, *_s_server_flags(cert_files, version)) as (port, proc, lines):
        sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        with SocketStream(
            sock,
            "io",
            "unsigned-byte-8",
            ssl_ctx=ctx,
            ssl_side="client",
            tlsext_host_name=SNI,
            handshake_timeout=LONG,
            read_timeout=LONG,
        ) as client:
            client.write_sequence(b"bytes from sockstream\n")
            client.force_output()
            lines.expect(b"bytes from sockstream")
            _tell(proc, b"bytes from openssl\n")
            buf = bytearray(len(b"bytes from openssl\n"))
            assert client.read_sequence(buf) == len(buf)
            assert bytes(buf) == b"bytes from openssl\n"
        assert proc.wait(LONG) == 0


def test_wrong_sni_name_is_refused_by_s_server(cert_files: dict[str, str], version: str) -> None:
    with s_server(cert_files, *_s_server_flags(cert_files, version)) as (port, _, lines):
        sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        with pytest.raises(SSLFailure):
            SocketStream(
                sock,
                ssl_ctx=True,
                ssl_side="client",
                tlsext_host_name="localhost",
                handshake_timeout=LONG,
                ctx_configure_callback=lambda c: c.load_verify_locations(cert_files["ca"]),
            )
        assert sock.fileno() == -1
        lines.expect(b'Hostname in TLS extension: "localhost"')


def test_s_server_certificate_untrusted_by_default(
    cert_files: dict[str, str], version: str
) -> None:
    """With the system trust store only, the trustme certificate is refused."""
    with s_server(cert_files, *_s_server_flags(cert_files, version)) as (port, _, _lines):
        sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        with pytest.raises(SSLFailure, match=r"(?i)certificate"):
            SocketStream(
                sock, ssl_ctx=True, ssl_side="client", tlsext_host_name=SNI, handshake_timeout=LONG
            )
        assert sock.fileno() == -1


# ---- openssl s_client, our server -----------------------------------------------------------


def _serve_one(
    lsock: socket.socket, server_ctx: ssl.SSLContext, names: list[str | None], reply: bool = True
) -> str:
    """Accept one connection with our server stream; echo a line back; the line read."""
    conn, _ = lsock.accept()
    server_ctx.sni_callback = lambda obj, name, ctx: names.append(name)
    with SocketStream(conn, ssl_ctx=server_ctx, handshake_timeout=LONG, read_timeout=LONG) as s:
        line, _ = s.read_line()
        if reply:
            s.write_line(f"ours got: {line}")
        return str(line)


def _s_client(port: int, cert_files: dict[str, str], version: str, *extra: str) -> list[str]:
    return [
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        VERSION_FLAGS[version],
        "-servername",
        "localhost",
        "-verify_hostname",
        "localhost",
        "-verify_return_error",
        "-quiet",
        *extra,
    ]


def test_s_client_against_our_server(
    cert_files: dict[str, str], server_ctx: ssl.SSLContext, version: str
) -> None:
    names: list[str | None] = []
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        port = lsock.getsockname()[1]
        t = PeerThread(_serve_one, lsock, server_ctx, names)
        t.start()
        proc = subprocess.Popen(
            _s_client(port, cert_files, version, "-CAfile", cert_files["ca"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with _reaped(proc):
                # -quiet implies -ign_eof: s_client ends when our server closes (close-notify).
                out, err = proc.communicate(b"hello from s_client\n", timeout=LONG)
        finally:
            if t.is_alive():  # s_client died before connecting: unblock accept()
                socket.create_connection(("127.0.0.1", port)).close()
            line = t.join_checked()
        assert proc.returncode == 0, err
        assert line == "hello from s_client"
        assert out == b"ours got: hello from s_client\n"
        assert names == ["localhost"]


def test_s_client_without_our_ca_refuses_our_server(
    cert_files: dict[str, str], server_ctx: ssl.SSLContext, version: str
) -> None:
    """s_client verifying with an empty trust store: it aborts, our server gets SSLFailure."""
    names: list[str | None] = []
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        port = lsock.getsockname()[1]

        def serve() -> None:
            with pytest.raises(SSLFailure):
                _serve_one(lsock, server_ctx, names)

        t = PeerThread(serve)
        t.start()
        proc = subprocess.Popen(
            _s_client(port, cert_files, version, "-no-CAfile", "-no-CApath", "-no-CAstore"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            with _reaped(proc):
                _, err = proc.communicate(b"never delivered\n", timeout=LONG)
        finally:
            if t.is_alive():
                socket.create_connection(("127.0.0.1", port)).close()
            t.join_checked()
        assert proc.returncode != 0
        assert b"verif" in err.lower() or b"certificate" in err.lower()


# ---- TLS 1.2 renegotiation with application data in flight ---------------------------------


def _wait_for_records(sock: socket.socket, count: int) -> None:
    """Block until ``count`` whole TLS records are in ``sock``'s kernel buffer (not read)."""
    have = 0
    for _ in range(count):
        _wait_for_bytes(sock, have + 5)
        head = sock.recv(have + 5, socket.MSG_PEEK)[have:]
        have += 5 + int.from_bytes(head[3:5], "big")
        _wait_for_bytes(sock, have)


def _wait_for_bytes(sock: socket.socket, n: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, n)
    try:
        r, _, _ = select.select([sock], [], [], LONG)
        assert r, f"{n} bytes never arrived"
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


@pytest.fixture
def renegotiating(
    cert_files: dict[str, str],
) -> Iterator[tuple[Any, Lines, socket.socket, SocketStream]]:
    """Our TLS 1.2 client connected to ``s_server -tls1_2``: ``(proc, lines, sock, stream)``."""
    if not _LINE_BUFFERED:
        pytest.skip("no stdbuf: s_server's answers to commands cannot be awaited")
    with s_server(cert_files, "-tls1_2") as (port, proc, lines):
        sock = socket.create_connection(("127.0.0.1", port), timeout=LONG)
        with SocketStream(
            sock,
            ssl_ctx="tls-v1-2",
            ssl_side="client",
            tlsext_host_name="localhost",
            handshake_timeout=LONG,
            read_timeout=LONG,
            ctx_configure_callback=lambda ctx: ctx.load_verify_locations(cert_files["ca"]),
        ) as client:
            _tell(proc, b"first\n")
            assert client.read_line() == ("first", False)
            yield proc, lines, sock, client
        assert proc.wait(LONG) == 0
        rest = lines.rest()
        assert b"DONE\n" in rest
        assert b"ERROR\n" not in rest


def _renegotiate(proc: Any, lines: Lines) -> None:
    """``R``: s_server sends a HelloRequest (asking for a client certificate too)."""
    _tell(proc, b"R\n")
    lines.expect(b"SSL_do_handshake -> 1")


def test_write_during_renegotiation_with_application_data_in_flight(
    renegotiating: tuple[Any, Lines, socket.socket, SocketStream],
) -> None:
    """HelloRequest, then data, then more data; we read one byte and write.

    The read takes the HelloRequest (our ClientHello goes out with the write) and the first
    line; the write must then wait for the new handshake, and meets the second line inside
    it: only a read may take application data, so the write drains it into the stream's input.
    """
    proc, lines, sock, client = renegotiating
    _renegotiate(proc, lines)
    first, second = b"x" * 200 + b"\n", b"y" * 200 + b"\n"
    _tell(proc, first)
    _wait_for_records(sock, 2)  # the HelloRequest and the first line
    assert client.read_char() == "x"
    _tell(proc, second)
    _wait_for_records(sock, 1)
    client.write_line("ours during renegotiation")
    client.force_output()
    lines.expect(b"ours during renegotiation")
    assert client.read_line() == (first[1:-1].decode(), False)
    assert client.read_line() == (second[:-1].decode(), False)
    _tell(proc, b"after\n")
    assert client.read_line() == ("after", False)
    assert client.ssl_object.session_reused  # the renegotiation did happen (and resumed)


def test_full_duplex_during_renegotiations(
    renegotiating: tuple[Any, Lines, socket.socket, SocketStream],
) -> None:
    """A reader thread and a writer thread on one stream while s_server renegotiates."""
    proc, lines, _sock, client = renegotiating
    got: queue.Queue[str] = queue.Queue()
    stop = threading.Event()

    def reader() -> None:
        while True:
            line, missing = client.read_line()
            assert not missing
            got.put(line)
            if line == "END":
                return

    def writer() -> int:
        i = 0
        while not stop.is_set():
            client.write_line(f"ours {i}")
            client.force_output()
            i += 1
        client.write_line("ours done")
        client.force_output()
        return i

    r, w = PeerThread(reader), PeerThread(writer)
    r.start()
    w.start()
    try:
        for i in range(10):
            _renegotiate(proc, lines)
            _tell(proc, f"data {i}\n".encode())
            assert got.get(timeout=LONG) == f"data {i}"
    finally:
        stop.set()
        count = w.join_checked()
        _tell(proc, b"END\n")
        r.join_checked()
    assert got.get_nowait() == "END"
    lines.expect(b"ours done")
    # One record a line, and s_server prints each record it reads as it comes.
    ours = [line.rstrip(b"\n") for line in lines.seen if line.startswith(b"ours ")]
    assert ours == [f"ours {i}".encode() for i in range(count)] + [b"ours done"]
    assert count > 0

"""open_tcp_stream against nginx: the seed's two examples, and more, on a server no one here wrote.

The seed (LispWorks manual, socket-stream) shows character I/O on an ``(unsigned-byte 8)``
stream and byte I/O on a ``base-char`` stream.  In Python::

    (make-array 20 :element-type 'base-char)            ->  array.array("u"/"w") or a list
    (make-array 20 :element-type '(unsigned-byte 8))    ->  bytearray(20)
    (write-sequence (format nil "GET / HTTP/1.0~%~%"))   ->  write_sequence("GET / HTTP/1.0\\n\\n")
"""

from __future__ import annotations

import array
import socket
import ssl
import sys

import pytest

from sockstream import SocketStream, open_tcp_stream

from .conftest import INDEX_PAGE, NginxServer

pytestmark = pytest.mark.interop

#: The character array type code: "u" until Python 3.13 deprecates it for "w".
CHAR_CODE = "w" if sys.version_info >= (3, 13) else "u"


def _status_ok(first20: str) -> bool:
    return first20.startswith(("HTTP/1.1 200 OK", "HTTP/1.0 200"))


def test_seed_example_characters_on_a_binary_stream(nginx: tuple[str, int]) -> None:
    host, port = nginx
    with open_tcp_stream(host, port, element_type="(unsigned-byte 8)") as x:
        x.write_sequence("GET / HTTP/1.0\n\n")
        x.force_output()
        res = array.array(CHAR_CODE, " " * 20)
        n = x.read_sequence(res)
    assert n == 20
    assert _status_ok(res.tounicode()), res.tounicode()


def test_seed_example_characters_into_a_list(nginx: tuple[str, int]) -> None:
    host, port = nginx
    with open_tcp_stream(host, port, element_type="unsigned-byte-8") as x:
        x.write_sequence("GET / HTTP/1.0\n\n")
        x.force_output()
        res: list[object] = [0] * 20
        n = x.read_sequence(res)
    assert n == 20
    # a list on a byte stream holds integers of the element type
    assert _status_ok("".join(map(chr, res))), res  # type: ignore[arg-type]


def test_seed_example_bytes_on_a_character_stream(nginx: tuple[str, int]) -> None:
    host, port = nginx
    with open_tcp_stream(host, port, element_type="base-char") as x:
        x.write_sequence(bytes(map(ord, "GET / HTTP/1.0\n\n")))
        x.force_output()
        res = bytearray(20)
        n = x.read_sequence(res)
    assert n == 20
    assert _status_ok("".join(map(chr, res))), res


def _get(stream: SocketStream, host_header: str = "localhost") -> tuple[str, dict[str, str], str]:
    stream.write_string(f"GET / HTTP/1.0\r\nHost: {host_header}\r\n\r\n")
    stream.force_output()
    status, _ = stream.read_line()
    headers = {}
    while True:
        line, _ = stream.read_line()
        if line in ("\r", ""):
            break
        name, _, value = line.rstrip("\r").partition(":")
        headers[name.lower()] = value.strip()
    body = stream.read()
    return status.rstrip("\r"), headers, body if isinstance(body, str) else body.decode("latin-1")


def test_whole_response_by_lines(nginx: tuple[str, int]) -> None:
    _, port = nginx
    with open_tcp_stream("localhost", str(port), read_timeout=10) as s:
        status, headers, body = _get(s)
    assert status.startswith("HTTP/1.1 200")
    assert headers["server"].startswith("nginx")
    assert int(headers["content-length"]) == len(INDEX_PAGE)
    assert body == INDEX_PAGE


def test_int_host_and_signed_bytes(nginx: tuple[str, int]) -> None:
    _, port = nginx
    with open_tcp_stream(0x7F000001, port, element_type="signed-byte-8") as s:
        s.write(b"GET / HTTP/1.0\r\n\r\n")
        s.force_output()
        first = [s.read_byte() for _ in range(4)]
    assert first == list(b"HTTP")


def test_ipv6(nginx_server: NginxServer) -> None:
    if not nginx_server.ipv6:
        pytest.skip("no IPv6 loopback")
    with open_tcp_stream("::1", nginx_server.port, ipv6=True) as s:
        status, _, body = _get(s, "[::1]")
        assert (s.peer_address or ("",))[0] == "::1"
    assert status.startswith("HTTP/1.1 200")
    assert body == INDEX_PAGE


def test_read_timeout_on_a_kept_alive_connection(nginx: tuple[str, int]) -> None:
    """nginx keeps an HTTP/1.1 connection open: the read timeout ends the wait as end-of-file."""
    host, port = nginx
    with open_tcp_stream(host, port, read_timeout=0.3) as s:
        s.write_string("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        s.force_output()
        data = s.read()
        assert s.timed_out
        assert isinstance(data, str)
        assert data.startswith("HTTP/1.1 200 OK")
        assert data.endswith(INDEX_PAGE)
        # the stream is still usable: a second request on the same connection works
        s.write_string("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        s.force_output()
        s.read_timeout = 10
        again = s.read()
        assert not s.timed_out
        assert isinstance(again, str)
        assert again.endswith(INDEX_PAGE)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_client_against_nginx(
    host: str, nginx_server: NginxServer, client_ctx: ssl.SSLContext
) -> None:
    with open_tcp_stream(host, nginx_server.tls_port, ssl_ctx=client_ctx, timeout=10) as s:
        assert s.ssl_object is not None
        status, _, body = _get(s)
    assert status.startswith("HTTP/1.1 200")
    assert body == INDEX_PAGE


def test_tls_client_made_context_verifies(
    nginx_server: NginxServer, cert_files: dict[str, str]
) -> None:
    from sockstream import SSLFailure

    with pytest.raises(SSLFailure):  # the test CA is not trusted by default
        open_tcp_stream("localhost", nginx_server.tls_port, ssl_ctx=True)
    with open_tcp_stream(
        "localhost",
        nginx_server.tls_port,
        ssl_ctx="tls-v1-2",
        ctx_configure_callback=lambda ctx: ctx.load_verify_locations(cert_files["ca"]),
    ) as s:
        status, _, _ = _get(s)
    assert status.startswith("HTTP/1.1 200")


def test_plain_socket_sanity(nginx: tuple[str, int]) -> None:
    """The fixture's server really is nginx (not something of ours)."""
    with socket.create_connection(nginx, timeout=10) as c:
        c.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
        assert b"Server: nginx" in c.recv(4096)


@pytest.mark.parametrize("newline", ["\r\n", None])
def test_crlf_headers_with_newline(nginx: tuple[str, int], newline: str | None) -> None:
    """nginx ends header lines with CRLF: with newline="\\r\\n" (or None) they come without CR."""
    _, port = nginx
    with open_tcp_stream("localhost", port, read_timeout=10, newline=newline,
                         encoding="utf-8") as s:  # fmt: skip
        s.write_line("GET / HTTP/1.1")  # write_line sends CRLF here
        s.write_line("Host: localhost")
        s.write_line("Connection: close")
        s.write_line("")
        s.flush()
        status, missing = s.read_line()
        assert status.startswith("HTTP/1.1 200 OK")
        assert not missing
        headers = {}
        while (line := s.read_line()[0]) != "":
            assert "\r" not in line
            assert "\n" not in line
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        assert headers["server"].startswith("nginx")
        body = s.read(int(headers["content-length"]))
    assert body == INDEX_PAGE


def test_header_block_with_read_until(nginx: tuple[str, int]) -> None:
    _, port = nginx
    with open_tcp_stream("localhost", port, element_type="unsigned-byte-8", read_timeout=10) as s:
        s.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        s.flush()
        head, missing = s.read_until(b"\r\n\r\n", max_length=16384)
        assert not missing
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 200 OK")
        fields = dict(x.lower().split(b": ", 1) for x in lines[1:])
        length = int(fields[b"content-length"])
        assert s.read(length) == INDEX_PAGE.encode()

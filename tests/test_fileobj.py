"""File-object conformance (API.md "File-object conformance").

Each consumer of file objects in the standard library runs over a ``SocketStream`` and over
``socket.makefile`` on the same bytes, from a real socket peer, and the results must be equal
(including what is left unread afterwards, so a consumer that stops early stops at the same byte).
"""

from __future__ import annotations

import csv
import email
import email.parser
import gzip
import hashlib
import http.client
import io
import json
import logging
import pickle
import re
import shutil
import socket
import socketserver
import ssl
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import LONG, PeerThread
from sockstream import SocketStream

KINDS = ["stream", "makefile"]
RAW = "unsigned-byte-8"


class Source:
    """A reader over ``data`` sent by a real peer (then end-of-file), as either kind."""

    def __init__(
        self, data: bytes, kind: str, direction: str = "input", element_type: str = RAW
    ) -> None:
        self.ours, self.peer = socket.socketpair()
        self.sender = PeerThread(self._send, data)
        self.sender.start()
        self.f: Any
        if kind == "stream":
            self.f = SocketStream(self.ours, direction, element_type)
        else:
            self.f = self.ours.makefile("rb")

    def _send(self, data: bytes) -> None:
        self.peer.sendall(data)
        self.peer.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sender.join_checked()
        self.f.close()
        self.ours.close()
        self.peer.close()


@pytest.fixture
def source() -> Iterator[Callable[..., Any]]:
    made: list[Source] = []

    def make(data: bytes, kind: str, **kw: Any) -> Any:
        src = Source(data, kind, **kw)
        made.append(src)
        return src.f

    yield make
    for src in made:
        src.close()


def on_both(
    source: Callable[..., Any], data: bytes, consume: Callable[[Any], Any], **kw: Any
) -> tuple[Any, Any]:
    """``(result, rest)`` of ``consume`` over a SocketStream and over makefile; asserts equal."""
    results = []
    for kind in KINDS:
        f = source(data, kind, **kw)
        try:
            result: Any = ("ok", consume(f))
        except Exception as exc:
            result = ("error", type(exc))
        rest = f.read() if not f.closed else None
        results.append((result, rest))
    assert results[0] == results[1]
    return results[0]


class Sink:
    """A writer whose bytes a real peer collects, as either kind."""

    def __init__(self, kind: str, text: bool = False) -> None:
        self.ours, self.peer = socket.socketpair()
        self.receiver = PeerThread(self._receive)
        self.receiver.start()
        self.f: Any
        if kind == "stream":
            self.f = SocketStream(self.ours, "output", RAW)
        else:
            self.f = self.ours.makefile("w" if text else "wb")

    def _receive(self) -> bytes:
        self.peer.settimeout(LONG)
        chunks = []
        h = hashlib.sha256()
        n = 0
        while chunk := self.peer.recv(1 << 20):
            h.update(chunk)
            n += len(chunk)
            if n <= 1 << 20:
                chunks.append(chunk)
        return b"".join(chunks) if n <= 1 << 20 else h.digest()

    def received(self) -> bytes:
        self.f.close()
        self.ours.close()
        data: bytes = self.receiver.join_checked()
        self.peer.close()
        return data


def written_by_both(produce: Callable[[Any], None], text: bool = False) -> bytes:
    """The bytes ``produce`` writes through a SocketStream and through makefile; asserts equal."""
    got = []
    for kind in KINDS:
        sink = Sink(kind, text)
        try:
            produce(sink.f)
        finally:
            got.append(sink.received())
    assert got[0] == got[1]
    return got[0]


# ---- the consumers ---------------------------------------------------------------------------


def test_text_io_wrapper(source: Callable[..., Any]) -> None:
    data = "première ligne\nzweite Zeile\n€ third\n".encode()

    def consume(f: Any) -> Any:
        t = io.TextIOWrapper(f, encoding="utf-8")
        first = t.readline()
        rest = t.read()
        t.close()  # flushes (an input-only stream: nothing to do), then closes the stream
        return first, rest, f.closed

    assert on_both(source, data, consume)[0] == (
        "ok",
        ("première ligne\n", "zweite Zeile\n€ third\n", True),
    )


def test_text_io_wrapper_detach(source: Callable[..., Any]) -> None:
    def consume(f: Any) -> Any:
        t = io.TextIOWrapper(f, encoding="utf-8")
        assert t.buffer is f
        assert t.detach() is f
        return f.read(4)

    assert on_both(source, b"abcdefgh", consume) == (("ok", b"abcd"), b"efgh")


def test_text_io_wrapper_writes(source: Callable[..., Any]) -> None:
    def produce(f: Any) -> None:
        t = io.TextIOWrapper(f, encoding="utf-8", newline="\r\n")
        print("héllo", file=t)
        t.write("wörld\n")
        t.detach().flush()

    assert written_by_both(produce) == "héllo\r\nwörld\r\n".encode()


MAIL = (
    b"From: a@example.test\r\nTo: b@example.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nBody line 1\r\nBody \xc3\xa9\r\n"
)


def _mail_facts(msg: Any) -> Any:
    return msg["Subject"], msg["To"], msg.get_payload(decode=True), msg.as_bytes()


def test_email_message_from_binary_file(source: Callable[..., Any]) -> None:
    result, _ = on_both(source, MAIL, lambda f: _mail_facts(email.message_from_binary_file(f)))
    assert result[0] == "ok"
    assert result[1][2] == "Body line 1\nBody é\n".encode()


def test_email_bytes_parser(source: Callable[..., Any]) -> None:
    result, _ = on_both(source, MAIL, lambda f: _mail_facts(email.parser.BytesParser().parse(f)))
    assert result[0] == "ok"


class _FakeSock:
    """What http.client.HTTPResponse needs of a socket: makefile() giving our file."""

    def __init__(self, f: Any) -> None:
        self.f = f

    def makefile(self, mode: str) -> Any:
        return self.f


RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n3\r\n!!!\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("data", [RESPONSE, CHUNKED], ids=["length", "chunked"])
def test_http_client_response(source: Callable[..., Any], data: bytes) -> None:
    def consume(f: Any) -> Any:
        r = http.client.HTTPResponse(_FakeSock(f))  # type: ignore[arg-type]
        r.begin()
        peeked = r.peek(3)[:3]  # peek() calls the file's peek
        first = r.read1(4)
        rest = r.read()
        return r.status, r.getheaders(), peeked, first, rest

    result, _ = on_both(source, data, consume)
    assert result[0] == "ok"
    assert result[1][3] + result[1][4] in (b"hello world", b"hello world!!!")


def test_stream_request_handler_style(source: Callable[..., Any]) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            self.wfile.writelines([b"you said: ", line.upper(), b"bye\n"])

    class StreamHandler(Handler):
        def setup(self) -> None:  # our stream instead of makefile
            self.connection = self.request
            self.rfile = self.wfile = SocketStream(self.request, "io", RAW)  # type: ignore[assignment]

    got = []
    for cls in (StreamHandler, Handler):
        ours, client = socket.socketpair()
        try:
            client.sendall(b"hello\n")
            cls(ours, ("peer", 0), None)  # type: ignore[arg-type]
            ours.close()
            client.settimeout(LONG)
            got.append(client.recv(1000))
        finally:
            ours.close()
            client.close()
    assert got[0] == got[1] == b"you said: HELLO\nbye\n"


def test_zipfile_fails_with_unsupported_operation(source: Callable[..., Any]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")

    def consume(f: Any) -> Any:
        # zipfile seeks to the end first: io.UnsupportedOperation, which zipfile (3.10 to 3.13)
        # turns into BadZipFile; either is caught by what careful callers write.
        try:
            zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__context__
            return type(exc), type(cause)
        raise AssertionError("ZipFile accepted a socket stream")

    result, rest = on_both(source, buf.getvalue(), consume)
    assert result[0] == "ok"
    assert result[1][1] is io.UnsupportedOperation
    assert rest == buf.getvalue()  # nothing consumed


def test_shutil_copyfileobj_50_mib(source: Callable[..., Any]) -> None:
    data = bytes(range(256)) * (50 * 4096)  # 50 MiB

    def consume(f: Any) -> Any:
        class Hasher:
            def __init__(self) -> None:
                self.h = hashlib.sha256()

            def write(self, b: Any) -> int:
                self.h.update(b)
                return len(b)

        out = Hasher()
        shutil.copyfileobj(f, out)
        return out.h.hexdigest()

    result, rest = on_both(source, data, consume)
    assert result == ("ok", hashlib.sha256(data).hexdigest())
    assert rest == b""


def test_shutil_copyfileobj_into_the_stream() -> None:
    data = bytes(range(256)) * (50 * 4096)
    digest = written_by_both(lambda f: shutil.copyfileobj(io.BytesIO(data), f))
    assert digest == hashlib.sha256(data).digest()


def test_json_load(source: Callable[..., Any]) -> None:
    doc = {"a": [1, 2.5, None, True], "é": "€", "n": {"x": "y" * 1000}}
    result, _ = on_both(source, json.dumps(doc).encode(), json.load)
    assert result == ("ok", doc)


def test_csv_reader_through_text_io_wrapper(source: Callable[..., Any]) -> None:
    data = 'a,b,c\r\n1,"two, with comma",3\r\n"multi\r\nline",é,\r\n'.encode()

    def consume(f: Any) -> Any:
        return list(csv.reader(io.TextIOWrapper(f, encoding="utf-8", newline="")))

    result, _ = on_both(source, data, consume)
    assert result == (
        "ok",
        [["a", "b", "c"], ["1", "two, with comma", "3"], ["multi\r\nline", "é", ""]],
    )


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_load_stops_at_the_right_byte(source: Callable[..., Any], protocol: int) -> None:
    obj = {
        "small": [1, 2, (3, "four")],
        "big": bytes(200_000),
        "text": "é" * 70_000,
        "nested": [[i, str(i)] for i in range(2000)],
    }
    data = pickle.dumps(obj, protocol=protocol) + pickle.dumps("second", protocol) + b"TRAILER"

    def consume(f: Any) -> Any:
        return pickle.load(f), pickle.load(f)

    result, rest = on_both(source, data, consume)
    assert result == ("ok", (obj, "second"))
    assert rest == b"TRAILER"


def test_tarfile_streaming(source: Callable[..., Any]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in [("a.txt", b"alpha" * 1000), ("b/c.bin", bytes(range(256)) * 300)]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

    def consume(f: Any) -> Any:
        out = []
        with tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                extracted = tar.extractfile(member)
                assert extracted is not None
                out.append((member.name, extracted.read()))
        return out

    result, _ = on_both(source, buf.getvalue(), consume)
    assert result[0] == "ok"
    assert [name for name, _ in result[1]] == ["a.txt", "b/c.bin"]


def test_gzip_file(source: Callable[..., Any]) -> None:
    data = b"compress me " * 50_000
    result, _ = on_both(source, gzip.compress(data), lambda f: gzip.GzipFile(fileobj=f).read())
    assert result == ("ok", data)


def test_elementtree_iterparse(source: Callable[..., Any]) -> None:
    data = (
        b"<root>"
        + b"".join(b"<item n='%d'>t\xc3\xa9xt %d</item>" % (i, i) for i in range(3000))
        + b"</root>"
    )

    def consume(f: Any) -> Any:
        return [(event, el.tag, el.get("n"), el.text) for event, el in ET.iterparse(f)]

    result, _ = on_both(source, data, consume)
    assert result[0] == "ok"
    assert len(result[1]) == 3001


@pytest.mark.skipif(sys.version_info < (3, 11), reason="hashlib.file_digest is new in 3.11")
def test_hashlib_file_digest(source: Callable[..., Any]) -> None:
    data = bytes(range(256)) * 20_000
    result, _ = on_both(source, data, lambda f: hashlib.file_digest(f, "sha256").hexdigest())  # type: ignore[attr-defined]
    assert result == ("ok", hashlib.sha256(data).hexdigest())


def test_print_to_the_stream() -> None:
    def produce(f: Any) -> None:
        print("hello", 42, "world", file=f)
        print("a", "b", sep="-", end="!\n", file=f, flush=True)

    assert written_by_both(produce, text=True) == b"hello 42 world\na-b!\n"


def test_logging_stream_handler() -> None:
    def produce(f: Any) -> None:
        log = logging.getLogger("sockstream.test_fileobj")
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        log.addHandler(handler)
        log.propagate = False
        try:
            log.warning("first %d", 1)
            log.error("second")
        finally:
            log.removeHandler(handler)
            log.propagate = True

    assert written_by_both(produce, text=True) == b"WARNING first 1\nERROR second\n"


# ---- the methods themselves -------------------------------------------------------------------


@pytest.mark.parametrize("et", ["base-char", "unsigned-byte-8", "signed-byte-8"])
def test_is_an_io_base(make: Any, et: str) -> None:
    s, _ = make(et)
    assert isinstance(s, io.IOBase)
    assert not isinstance(s, (io.RawIOBase, io.TextIOBase))


@pytest.mark.parametrize(
    ("direction", "et", "mode"),
    [
        ("input", RAW, "rb"),
        ("output", RAW, "wb"),
        ("io", RAW, "rwb"),
        ("io", "signed-byte-8", "rwb"),
        ("input", "base-char", "r"),
        ("output", "base-char", "w"),
        ("io", "base-char", "rw"),
    ],
)
def test_mode_and_name(make: Any, direction: str, et: str, mode: str) -> None:
    s, _ = make(et, direction)
    assert s.mode == mode
    assert s.name == s.fileno()
    s.close()
    assert s.name == -1  # as socket.makefile's raw object once closed
    assert s.mode == mode


def test_not_seekable_not_a_tty(make: Any) -> None:
    s, peer = make(RAW)
    peer.sendall(b"abc")
    assert s.seekable() is False
    assert s.isatty() is False
    for call in (
        s.tell,
        lambda: s.seek(0),
        lambda: s.seek(0, 2),
        s.truncate,
        lambda: s.truncate(0),
    ):
        with pytest.raises(io.UnsupportedOperation, match="not seekable"):
            call()
    assert s.read(3) == b"abc"  # nothing consumed


def test_peek(make: Any, peer: Callable[..., PeerThread]) -> None:
    s, p = make("base-char")
    p.sendall(b"hello")
    assert s.peek() == b"hello"  # raw bytes, whatever the element type
    assert s.peek(2)[:2] == b"he"
    assert s.read(2) == "he"
    assert s.peek(100) == b"llo"
    assert s.read(3) == "llo"
    # waits for at least one byte
    sender = peer(lambda: p.sendall(b"X"))
    assert s.peek() == b"X"
    sender.join_checked()
    assert s.read_char() == "X"
    p.shutdown(socket.SHUT_WR)
    assert s.peek() == b""  # end-of-file


def test_peek_at_read_timeout(make: Any) -> None:
    s, _ = make(RAW, read_timeout=0.05)
    assert s.peek() == b""
    assert s.timed_out


def test_readinto1(make: Any) -> None:
    s, p = make("base-char")
    p.sendall(b"abcdef")
    buf = bytearray(4)
    assert s.readinto1(buf) == 4
    assert buf == b"abcd"
    assert s.readinto1(memoryview(buf)[1:]) == 2
    assert buf == b"aefd"
    assert s.readinto1(bytearray(0)) == 0
    p.shutdown(socket.SHUT_WR)
    assert s.readinto1(buf) == 0


def test_readlines(make: Any) -> None:
    s, p = make(RAW)
    p.sendall(b"a\nbb\nccc\ndddd\ne")
    p.shutdown(socket.SHUT_WR)
    assert s.readlines(3) == [b"a\n", b"bb\n"]  # stops once the total reaches the hint
    assert s.readlines(None) == [b"ccc\n", b"dddd\n", b"e"]
    assert s.readlines() == []
    with pytest.raises(TypeError, match="hint"):
        s.readlines("3")


def test_readlines_base_char(make: Any) -> None:
    s, p = make("base-char")
    p.sendall(b"x\ny\n")
    p.shutdown(socket.SHUT_WR)
    assert s.readlines(0) == ["x\n", "y\n"]


def test_writelines(make: Any) -> None:
    s, p = make(RAW, "output")
    s.writelines([b"a", bytearray(b"b"), "c", memoryview(b"d\n")])
    s.writelines(iter([b"e"]))
    s.close()
    p.settimeout(LONG)
    assert p.recv(100) == b"abcd\ne"


def test_flush_on_an_input_stream_does_nothing(make: Any) -> None:
    s, _ = make(RAW, "input")
    s.flush()
    with pytest.raises(io.UnsupportedOperation):
        s.force_output()
    s.close()
    with pytest.raises(ValueError, match="closed"):
        s.flush()


def test_flush_after_shutdown_output_does_nothing(make: Any) -> None:
    s, _ = make(RAW)
    s.shutdown_output()
    s.flush()


FILE_VERBS: list[tuple[str, Callable[[Any], Any]]] = [
    ("iter", iter),
    ("enter", lambda s: s.__enter__()),
    ("readlines", lambda s: s.readlines()),
    ("readlines-hint", lambda s: s.readlines(1)),
    ("writelines", lambda s: s.writelines([])),
    ("peek", lambda s: s.peek()),
    ("readinto1", lambda s: s.readinto1(bytearray(1))),
    ("seekable", lambda s: s.seekable()),
    ("isatty", lambda s: s.isatty()),
    ("tell", lambda s: s.tell()),
    ("seek", lambda s: s.seek(0)),
    ("truncate", lambda s: s.truncate()),
    ("flush", lambda s: s.flush()),
    ("read1-n", lambda s: s.read1(1)),
    ("text-io-wrapper", lambda s: io.TextIOWrapper(s)),
]


@pytest.mark.parametrize("direction", ["input", "output", "io"])
def test_every_file_operation_on_a_closed_stream_is_a_value_error(
    make: Any, direction: str
) -> None:
    s, _ = make(RAW, direction)
    s.close()
    wrong = []
    for name, call in FILE_VERBS:
        try:
            call(s)
        except ValueError:
            continue
        except Exception as exc:
            wrong.append(f"{name}: {exc!r}")
        else:
            wrong.append(f"{name}: no error")
    assert wrong == []


def test_with_on_a_closed_stream(make: Any) -> None:
    s, _ = make()
    s.close()
    with pytest.raises(ValueError, match="closed"), s:
        pass


@pytest.mark.parametrize("bad", ["3", 2.5, b"1", [1]])
@pytest.mark.parametrize("verb", ["read", "read1", "readline", "peek"])
def test_size_that_is_not_an_integer(make: Any, verb: str, bad: Any) -> None:
    s, p = make(RAW)
    p.sendall(b"abc\n")
    with pytest.raises(TypeError, match="size must be an int or None, not " + re.escape(repr(bad))):
        getattr(s, verb)(bad)
    assert s.read(4) == b"abc\n"  # nothing consumed


def test_read_size_below_minus_one(make: Any) -> None:
    s, p = make(RAW)
    p.sendall(b"abc")
    with pytest.raises(ValueError, match="-2"):
        s.read(-2)
    assert s.read(3) == b"abc"


def test_sizes_as_io_takes_them(make: Any) -> None:
    import array

    s, p = make(RAW)
    p.sendall(b"a\nbcdef\n")
    p.shutdown(socket.SHUT_WR)
    assert s.readline(-5) == b"a\n"  # any negative size: the whole line, as in io
    assert s.read(array.array("b", [2])[0]) == b"bc"  # objects with __index__
    assert s.read1(-7) == b"def\n"
    assert s.read(None) == b""


# ---- over TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, pickle.HIGHEST_PROTOCOL])
def test_consumers_over_tls(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, protocol: int
) -> None:
    """The same consumers over a TLS stream and over ``SSLSocket.makefile`` (the peer is a TLS
    SocketStream that ends with a close-notify)."""
    obj = {"big": bytes(100_000), "text": "é" * 10_000}
    text = "ligne une\nligne deux\n"
    data = pickle.dumps(obj, protocol) + text.encode() + b"REST"

    def consume(f: Any) -> Any:
        got = pickle.load(f)
        peeked = f.peek()[:3]
        return got, peeked, io.TextIOWrapper(f, encoding="utf-8").read()

    results = []
    for kind in KINDS:
        ours, theirs = socket.socketpair()

        def serve_data(sock: socket.socket = theirs) -> None:
            with SocketStream(sock, "io", RAW, ssl_ctx=server_ctx) as peer:
                peer.write(data)

        sender = PeerThread(serve_data)
        sender.start()
        f: Any
        tls_sock: Any = None
        try:
            if kind == "stream":
                f = SocketStream(
                    ours,
                    "input",
                    RAW,
                    ssl_ctx=client_ctx,
                    ssl_side="client",
                    tlsext_host_name="localhost",
                )
            else:
                tls_sock = client_ctx.wrap_socket(ours, server_hostname="localhost")
                f = tls_sock.makefile("rb")
            results.append(consume(f))
            f.close()
            sender.join_checked()
        finally:
            if tls_sock is not None:
                tls_sock.close()
            ours.close()
            theirs.close()
    assert results[0] == results[1]
    assert results[0] == (obj, b"lig", "ligne une\nligne deux\nREST")

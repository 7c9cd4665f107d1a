"""Shared fixtures: loopback socket pairs, test certificates, and leak checks.

Every test runs under two autouse guards: no file descriptor and no thread may outlive it.
Synchronisation is by events, sockets and joins, never by sleeping.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sockstream import SocketStream

LONG = 10.0  # seconds: an upper bound that a passing test never comes near
SHORT = 0.2  # seconds: a timeout that is meant to fire


def _open_fds() -> set[int]:
    try:
        return {int(n) for n in os.listdir("/proc/self/fd")}
    except FileNotFoundError:  # not Linux: skip the check
        return set()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run long soak tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long-running: use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves descriptors or threads behind."""
    import gc

    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    if "allow_leaks" in request.keywords:
        return
    deadline = 5.0
    for t in set(threading.enumerate()) - threads_before:
        t.join(deadline)
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left running: {left}"
    leaked = _open_fds() - fds_before
    if leaked:  # maybe only garbage not yet collected: collect, then look again
        gc.collect()
        leaked = _open_fds() - fds_before
    if leaked:
        details = {}
        for fd in leaked:
            try:
                details[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        # A descriptor may have been closed and reopened with other content; report what's left.
        leaked = set(details)
    assert not leaked, f"file descriptors leaked: {details}"


def _tcp_pair(family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket]:
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_STREAM) as lsock:
        lsock.bind((host, 0))
        lsock.listen(1)
        a = socket.socket(family, socket.SOCK_STREAM)
        a.connect(lsock.getsockname()[:2])
        b, _ = lsock.accept()
    return a, b


@pytest.fixture
def tcp_pair() -> Iterator[Callable[..., tuple[socket.socket, socket.socket]]]:
    """A factory of connected loopback TCP socket pairs; all are closed after the test."""
    made: list[socket.socket] = []

    def make(family: int = socket.AF_INET) -> tuple[socket.socket, socket.socket]:
        a, b = _tcp_pair(family)
        made.extend((a, b))
        return a, b

    yield make
    for s in made:
        s.close()


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


requires_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 loopback")


@pytest.fixture(params=["127.0.0.1", pytest.param("::1", marks=requires_ipv6)])
def loopback_host(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class PeerThread(threading.Thread):
    """Run ``target(*args)`` in a thread; ``join_checked()`` re-raises what it raised."""

    def __init__(self, target: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._target_fn = target
        self._args = args
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn(*self._args)
        except BaseException as exc:  # re-raised in join_checked
            self.error = exc

    def join_checked(self, timeout: float = LONG) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "peer thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def peer() -> Iterator[Callable[..., PeerThread]]:
    """Start a peer thread; it is joined (and its error re-raised) at the end of the test."""
    started: list[PeerThread] = []

    def start(target: Callable[..., Any], *args: Any) -> PeerThread:
        t = PeerThread(target, *args)
        t.start()
        started.append(t)
        return t

    yield start
    for t in started:
        t.join_checked()


# ---- streams over socketpairs ---------------------------------------------------------------

Make = Callable[..., "tuple[SocketStream, socket.socket]"]


@pytest.fixture
def make() -> Iterator[Make]:
    """A factory: ``make(element_type, direction, **kw) -> (stream, peer_socket)``."""
    from sockstream import SocketStream

    made: list[tuple[SocketStream, socket.socket]] = []

    def factory(
        element_type: str = "base-char", direction: str = "io", **kw: Any
    ) -> tuple[SocketStream, socket.socket]:
        a, b = socket.socketpair()
        s = SocketStream(a, direction, element_type, **kw)
        made.append((s, b))
        return s, b

    yield factory
    for s, b in made:
        s.close(abort=True)
        b.close()


@pytest.fixture
def streams() -> Iterator[list[SocketStream]]:
    """Streams to close (abort) at the end of the test, whatever happened."""
    made: list[SocketStream] = []
    yield made
    for s in made:
        s.close(abort=True)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Let threads switch every microsecond (races between readers show sooner)."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def drain(peer: socket.socket) -> bytes:
    """Everything the peer socket receives until end-of-file."""
    peer.settimeout(LONG)
    chunks = []
    while chunk := peer.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# ---- TLS material, made at test time ------------------------------------------------------


@pytest.fixture(scope="session")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def server_cert(ca: Any) -> Any:
    """A leaf certificate for localhost, 127.0.0.1 and ::1."""
    return ca.issue_cert("localhost", "127.0.0.1", "::1", "sni.example.test")


@pytest.fixture(scope="session")
def cert_files(
    ca: Any, server_cert: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The CA, certificate chain and key as PEM files (for openssl, curl, the CLI)."""
    d = tmp_path_factory.mktemp("certs")
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server_cert.private_key_pem.write_to_path(str(paths["key"]))
    with open(paths["cert"], "wb") as f:
        for blob in server_cert.cert_chain_pems:
            f.write(blob.bytes())
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture
def server_ctx(server_cert: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


# ---- both input buffers (the compiled twin and the pure classes) ----------------------------

#: The buffer implementations this run can test: "pure" always, "accel" when the extension is
#: built and not switched off (SOCKSTREAM_PUREPYTHON).
BUFFER_IMPLS: list[str] = ["pure"]
try:
    from sockstream import _impl as _sockstream_impl

    if _sockstream_impl.AccelInputBuffer is not None:
        BUFFER_IMPLS.append("accel")
except ImportError:  # pragma: no cover - the package does not import at all
    pass


def buffer_classes(impl: str) -> dict[str, Any]:
    """``impl``'s ``InputBuffer``, ``TextInputBuffer``, ``retype`` and ``OutputBuffer``."""
    from sockstream import _impl, _textbuffer

    if impl == "accel":
        plain, text = _impl.AccelInputBuffer, _impl.AccelTextInputBuffer
        assert plain is not None
        assert text is not None
        return {
            "InputBuffer": plain,
            "TextInputBuffer": text,
            "retype": _impl.make_retype(plain, text),
            "OutputBuffer": _impl.AccelOutputBuffer,
        }
    return {
        "InputBuffer": _impl.PureInputBuffer,
        "TextInputBuffer": _impl.PureTextInputBuffer,
        "retype": _textbuffer.retype,
        "OutputBuffer": _impl.PureOutputBuffer,
    }


def use_buffers(impl: str, *modules: Any) -> Callable[[], None]:
    """Make new streams use ``impl``'s buffer classes (``_stream``'s ``InputBuffer`` and
    ``retype``), and ``modules``' names for them too; returns the undo."""
    from sockstream import _stream

    mp = pytest.MonkeyPatch()
    for name, value in buffer_classes(impl).items():
        for module in (_stream, *modules):
            if hasattr(module, name):
                mp.setattr(module, name, value)
    return mp.undo


@pytest.fixture(scope="module", params=BUFFER_IMPLS)
def buffer_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once per buffer implementation (as CPython's test_io over _io and
    _pyio): the module's own ``InputBuffer``/``TextInputBuffer``/``retype`` and new streams'."""
    undo = use_buffers(request.param, request.module)
    try:
        yield request.param
    finally:
        undo()

"""The public face: ``sockstream.__all__`` is exactly API.md's names (trio's ``test_exports``).

The expected names are written out here rather than parsed from ``../shared/API.md``, so the test
runs in a clone without ``shared/``; ``../shared/tools/check_api.py`` is run too when present.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import sockstream

ROOT = Path(__file__).resolve().parent.parent
CHECK_API = ROOT.parent / "shared" / "tools" / "check_api.py"

#: Every name API.md gives the package, section by section.
API_NAMES = {
    # Element types
    "BASE_CHAR",
    "UNSIGNED_BYTE_8",
    "SIGNED_BYTE_8",
    # SocketStream
    "SocketStream",
    # TLS
    "attach_ssl",
    "detach_ssl",
    "make_ssl_ctx",
    # Opening, serving, waiting
    "open_tcp_stream",
    "start_up_server",
    "Server",
    "server_terminate",
    "serve",
    "wait_for_input_streams",
    "wait_for_input_streams_returning_first",
    "StreamWaiter",
    "open_unix_stream",
    # Errors
    "SocketError",
    "SocketCreateError",
    "SocketIOError",
    "WriteTimeoutError",
    "SSLFailure",
    "SSLVerificationError",
    "LineTooLongError",
}

#: Public names beyond API.md's list, each the project's documented decision: the handshake
#: timeout that API.md describes ("an SSLFailure that is also a TimeoutError") and the
#: truncation error of a TLS peer that closes without close-notify.
EXTRA_NAMES = {"SSLHandshakeTimeout", "SSLTruncatedError"}

#: SocketStream's methods and properties by API.md ("SocketStream", "Reading", "Writing",
#: "The rest of the stream").
STREAM_METHODS = {
    "read_char", "read_char_no_hang", "peek_char", "unread_char", "read_line", "read_byte",
    "read_sequence", "listen", "clear_input", "read", "read1", "readline", "readinto",
    "__iter__", "__next__", "write_char", "write_string", "write_line", "write_byte",
    "write_sequence", "write", "force_output", "flush", "finish_output", "clear_output",
    "fileno", "readable", "writable", "shutdown_output", "close", "replace_socket",
    "__enter__", "__exit__",
}  # fmt: skip
STREAM_PROPERTIES = {
    "read_timeout", "write_timeout", "element_type", "direction", "closed", "timed_out",
    "ssl_object", "local_address", "peer_address", "socket",
    "encoding", "errors", "newline",
    "alpn_protocol", "ssl_session", "session_reused",
}  # fmt: skip
#: Properties that can be set (between operations).
SETTABLE = {"read_timeout", "write_timeout", "socket", "encoding", "errors", "newline"}
#: Keywords whose default is not None.
NOT_NONE_DEFAULTS = {"ssl_side": "server", "encoding": "latin-1", "errors": "strict",
                     "newline": "\n"}  # fmt: skip
STREAM_PARAMETERS = [
    "socket", "direction", "element_type", "read_timeout", "write_timeout", "ssl_ctx",
    "ssl_side", "ctx_configure_callback", "ssl_configure_callback", "handshake_timeout",
    "tlsext_host_name", "max_line_length", "encoding", "errors", "newline", "alpn_protocols",
    "ssl_session",
]  # fmt: skip


def test_all_is_exactly_the_api() -> None:
    assert set(sockstream.__all__) == API_NAMES | EXTRA_NAMES
    assert len(sockstream.__all__) == len(set(sockstream.__all__))  # no duplicates


def test_every_name_exists_and_lives_in_a_private_module() -> None:
    for name in sockstream.__all__:
        obj = getattr(sockstream, name)
        module = getattr(obj, "__module__", None)
        if module is not None and not isinstance(obj, str):
            assert module.startswith("sockstream._"), (name, module)


def test_no_public_submodules() -> None:
    """All code is in ``_``-modules (a public-looking module would be secretly private)."""
    package_dir = Path(sockstream.__file__).parent
    public = [p.name for p in package_dir.glob("*.py") if not p.name.startswith("_")]
    assert public == []


def test_element_type_constants() -> None:
    assert sockstream.BASE_CHAR == "base-char"
    assert sockstream.UNSIGNED_BYTE_8 == "unsigned-byte-8"
    assert sockstream.SIGNED_BYTE_8 == "signed-byte-8"


def test_socket_stream_signature() -> None:
    params = inspect.signature(sockstream.SocketStream).parameters
    assert list(params) == STREAM_PARAMETERS
    assert params["direction"].default == "io"
    assert params["element_type"].default == "base-char"
    assert params["ssl_side"].default == "server"
    for name in STREAM_PARAMETERS[3:]:
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].default == NOT_NONE_DEFAULTS.get(name), name


def test_socket_stream_members() -> None:
    cls = sockstream.SocketStream
    for name in STREAM_METHODS:
        assert callable(getattr(cls, name, None)), name
    for name in STREAM_PROPERTIES:
        assert isinstance(inspect.getattr_static(cls, name), property), name
    # the timeouts, the socket and the text settings are settable; the others are read-only
    for name in STREAM_PROPERTIES:
        settable = inspect.getattr_static(cls, name).fset is not None
        assert settable == (name in SETTABLE), name


def test_eof_defaults_of_reading_verbs() -> None:
    cls = sockstream.SocketStream
    for name in ("read_char", "read_char_no_hang", "peek_char", "read_line", "read_byte"):
        params = inspect.signature(getattr(cls, name)).parameters
        assert params["eof_error"].default is True, name
        assert params["eof_value"].default is None, name


def test_typed_package() -> None:
    assert (Path(sockstream.__file__).parent / "py.typed").exists()


@pytest.mark.skipif(not CHECK_API.exists(), reason="../shared/tools/check_api.py not present")
def test_check_api_tool_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(CHECK_API)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all names present" in result.stdout


def test_one_version_source() -> None:
    """pyproject.toml reads the version from ``sockstream.__version__``; nothing else holds one."""
    import importlib.metadata

    import sockstream

    assert importlib.metadata.version("sockstream") == sockstream.__version__
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text
    assert "\nversion =" not in text.split("[tool.setuptools.dynamic]")[0]

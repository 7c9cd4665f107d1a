"""The ``sockstream`` command: ``demo``, ``connect``, ``serve`` and ``bench``.

Goals: feel like ``openssl s_client`` and ``ncat``, only friendlier.  Every verb has ``--help``;
a mistake on the command line is one line on standard error and exit status 2, never a traceback;
a failure at run time (refused connection, failed handshake, missing file) is one line and exit
status 1; Ctrl-C is exit status 130 without a traceback (except ``serve``, for which Ctrl-C is the
normal way to stop: it exits 0).

Plan: one ``argparse`` parser whose ``error`` raises :class:`_UsageError` (so that ``main`` can be
called in-process and returns an int instead of calling ``sys.exit``).  Each verb is a function
``(args, extra) -> int``; ``extra`` is what argparse did not recognise, which only ``bench``
accepts (it passes it on to the benchmark suite).

* ``connect`` copies standard input to the socket in a thread and the socket to standard output
  in the main thread (full duplex on one ``SocketStream``).  Standard input is read with
  ``os.read`` on the descriptor, not through ``sys.stdin``: a daemon thread blocked inside a
  ``BufferedReader`` at interpreter exit can abort the interpreter ("could not acquire lock"),
  and ``os.read`` also hands over whatever arrived (a line on a terminal, a chunk on a pipe)
  instead of waiting for a full buffer.  At the end of standard input the stream is half-closed
  (``shutdown_output``) and the socket is read until the peer ends too.
* ``serve`` uses ``sockstream.serve`` and the handlers in ``_demo``; it prints
  ``listening on HOST:PORT`` on standard output (flushed) once ready, all else on standard error.
* ``bench`` imports the ``bench`` package of a source checkout (see :func:`_import_bench`).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import math
import os
import shutil
import signal
import socket
import ssl
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from sockstream import SocketStream

__all__ = ["main"]

PROG = "sockstream"

#: ``connect``: default bound on name resolution + TCP connect + TLS handshake, in seconds.
CONNECT_TIMEOUT = 30.0
#: ``serve --tls``: a client that does not finish its handshake in this long is dropped.
SERVE_HANDSHAKE_TIMEOUT = 30.0
#: ``serve --http``: an idle HTTP client is dropped after this long (nginx's default is 60 s).
HTTP_IDLE_TIMEOUT = 30.0
#: Size of one copy between a descriptor and a stream.
CHUNK = 65536

ELEMENT_TYPES = ("base-char", "unsigned-byte-8", "signed-byte-8")


class _UsageError(Exception):
    """A bad command line; the message is already printed."""


class _Stop(Exception):
    """SIGTERM arrived in ``serve``."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (naming the verb) and status 2."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        print(f"{self.prog}: error: {' '.join(message.split())}{hint}", file=sys.stderr, flush=True)
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            print(message.rstrip("\n"), file=sys.stderr, flush=True)
        raise SystemExit(status)


# ---- argument types: each names the bad value -------------------------------------------------


def _listen_port(text: str) -> int:
    if text.isdigit() and int(text) <= 65535:
        return int(text)
    raise argparse.ArgumentTypeError(f"port must be a number from 0 to 65535, not {text!r}")


def _connect_port(text: str) -> int | str:
    if text.isdigit():
        if 1 <= int(text) <= 65535:
            return int(text)
        raise argparse.ArgumentTypeError(f"port must be a number from 1 to 65535, not {text!r}")
    if text and text.replace("-", "").isalnum():
        try:
            socket.getservbyname(text, "tcp")  # the local services database, no network
        except OSError:
            pass
        else:
            return text
    raise argparse.ArgumentTypeError(
        f"port must be a number from 1 to 65535 or a TCP service name, not {text!r}"
    )


def _workers(text: str) -> int:
    if text.isdigit() and 1 <= int(text) <= 1024:
        return int(text)
    raise argparse.ArgumentTypeError(f"must be a number of processes from 1 to 1024, not {text!r}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _existing_file(text: str) -> str:
    if not os.path.isfile(text):
        what = "is a directory" if os.path.isdir(text) else "no such file"
        raise argparse.ArgumentTypeError(f"{what}: {text!r}")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text!r}")
    return text


def _element_type(text: str) -> str:
    from sockstream import BASE_CHAR, SIGNED_BYTE_8, UNSIGNED_BYTE_8

    names = {
        BASE_CHAR: BASE_CHAR,
        UNSIGNED_BYTE_8: UNSIGNED_BYTE_8,
        "(unsigned-byte 8)": UNSIGNED_BYTE_8,
        SIGNED_BYTE_8: SIGNED_BYTE_8,
        "(signed-byte 8)": SIGNED_BYTE_8,
    }
    canonical = names.get(text.strip().lower())
    if canonical is None:
        raise argparse.ArgumentTypeError(
            "element type must be one of 'base-char', 'unsigned-byte-8' ('(unsigned-byte 8)') or "
            f"'signed-byte-8' ('(signed-byte 8)'), not {text!r}"
        )
    return canonical


def _writable_path(text: str) -> str:
    parent = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"no such directory: {parent!r}")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"is a directory: {text!r}")
    return text


def _alpn_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not all(names) or any(len(name.encode()) > 255 for name in names):
        raise argparse.ArgumentTypeError(f"not a comma-separated list of protocol names: {text!r}")
    return names


def _step_list(text: str) -> list[int]:
    from ._demo import STEPS

    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not (part.isdigit() and 1 <= int(part) <= len(STEPS)):
            raise argparse.ArgumentTypeError(
                f"steps are numbers from 1 to {len(STEPS)} separated by commas, not {text!r}"
            )
        out.append(int(part))
    return out


# ---- the parser ------------------------------------------------------------------------------


class _Formatter(argparse.HelpFormatter):
    """Wraps prose paragraphs; keeps paragraphs whose lines are indented (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if len(lines) > 1 and all(line.startswith("  ") for line in lines[1:]):
                out.append("\n".join(indent + line for line in lines))
            else:
                out.append(
                    textwrap.fill(
                        " ".join(para.split()),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(out)


def _version() -> str:
    from sockstream import __version__

    return f"{PROG} {__version__} (Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``sockstream`` command."""
    fmt = _Formatter
    parser = _Parser(
        prog=PROG,
        formatter_class=fmt,
        description="LispWorks COMM socket streams for Python: a demo, a client, a server and "
        "benchmarks.",
        epilog="examples:\n"
        "  sockstream demo                         a guided tour on loopback (start here)\n"
        "  sockstream serve 8000 --http --tls      a tiny HTTPS page with a run-time certificate\n"
        "  sockstream connect example.org 443 --tls   like openssl s_client\n"
        "  sockstream bench --quick                the benchmark suite (source checkout)\n\n"
        "run 'sockstream VERB --help' for the options of a verb.",
    )
    parser.add_argument("--version", action="version", version=_version())
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs")

    demo = verbs.add_parser(
        "demo",
        formatter_class=fmt,
        help="walk through what the library does, on loopback",
        description="Start servers on loopback and walk through what the library does, checking "
        "each step: character and binary I/O (the seed's HTTP examples), read and write "
        "timeouts, TLS with SNI, STARTTLS on and off, waiting on 1000 streams.  Exits 0 if every "
        "step passed, 1 otherwise.",
    )
    demo.add_argument(
        "--only", metavar="N,N", type=_step_list, help="run only these steps (numbers from 1)"
    )
    demo.add_argument(
        "--color",
        "--colour",
        choices=("auto", "always", "never"),
        default="auto",
        help="ANSI colour: auto (a terminal and NO_COLOR unset), always, never",
    )
    demo.add_argument(
        "-v", "--verbose", action="store_true", help="print the traceback of a failing step"
    )
    demo.set_defaults(run=_cmd_demo)

    connect = verbs.add_parser(
        "connect",
        formatter_class=fmt,
        help="talk to a TCP or TLS server (like ncat / s_client)",
        description="Connect to HOST PORT and copy standard input to the socket and the socket to "
        "standard output, both at once.  At the end of standard input the sending side is "
        "half-closed and the reply is read until the server ends.\n\n"
        "examples:\n"
        "  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | sockstream connect localhost 8000\n"
        "  sockstream connect example.org 443 --tls --crlf -v\n"
        "  sockstream connect 127.0.0.1 8443 --cafile ca.pem --sni localhost",
    )
    connect.add_argument("host", metavar="HOST", help="host name or address")
    connect.add_argument(
        "port", metavar="PORT", type=_connect_port, help="port number or service name (e.g. https)"
    )
    tls = connect.add_argument_group(
        "TLS (--sni, --cafile, --insecure, --alpn and --keylog imply --tls)"
    )
    tls.add_argument("--tls", action="store_true", help="TLS, verifying the server's certificate")
    tls.add_argument(
        "--sni", metavar="NAME", help="server name to send and to verify (default: HOST)"
    )
    tls.add_argument(
        "--cafile",
        metavar="FILE",
        type=_existing_file,
        help="trust the CA certificates in this PEM file instead of the system's",
    )
    tls.add_argument(
        "--insecure", action="store_true", help="do not verify the certificate (prints a warning)"
    )
    tls.add_argument(
        "--alpn",
        metavar="PROTO,...",
        type=_alpn_list,
        help="offer these ALPN protocols, e.g. h2,http/1.1 (-v shows the one agreed)",
    )
    tls.add_argument(
        "--keylog",
        metavar="FILE",
        type=_writable_path,
        help="append the TLS secrets to FILE, for Wireshark (default: $SSLKEYLOGFILE when set)",
    )
    connect.add_argument(
        "--element-type",
        type=_element_type,
        default="base-char",
        metavar="TYPE",
        help=f"stream element type: {', '.join(ELEMENT_TYPES)}",
    )
    connect.add_argument(
        "--read-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="end (as at end-of-file) after this long without data",
    )
    connect.add_argument(
        "--connect-timeout",
        type=_seconds,
        metavar="SECONDS",
        default=CONNECT_TIMEOUT,
        help=f"bound on connecting and the TLS handshake (default {CONNECT_TIMEOUT:g})",
    )
    connect.add_argument("--crlf", action="store_true", help='send "\\n" as "\\r\\n"')
    connect.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="addresses, TLS version, cipher and certificate, on standard error",
    )
    connect.set_defaults(run=_cmd_connect)

    serve = verbs.add_parser(
        "serve",
        formatter_class=fmt,
        help="a TCP or TLS server: echo, discard or a tiny web page",
        description="Listen on PORT (0: any free port) and serve each connection in a thread.  "
        "Prints 'listening on HOST:PORT' on standard output once ready.  Ctrl-C stops it "
        "(exit status 0).\n\n"
        "examples:\n"
        "  sockstream serve 7000                   echo on 127.0.0.1:7000\n"
        "  sockstream serve 8443 --http --tls --write-ca ca.pem\n"
        "  curl --cacert ca.pem https://localhost:8443/\n"
        "  sockstream serve --unix /tmp/s.sock --http; curl --unix-socket /tmp/s.sock http://x/\n"
        "  sockstream serve 7000 --workers 2          two processes on one port",
    )
    serve.add_argument(
        "port",
        metavar="PORT",
        type=_listen_port,
        nargs="?",
        help="port; 0 picks a free one (or --unix PATH)",
    )
    serve.add_argument(
        "--unix",
        metavar="PATH",
        help="listen on a Unix domain socket at PATH instead of a port (a stale "
        "socket file is replaced, a live server's never; removed on exit)",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        type=_workers,
        default=1,
        help="run N processes on the one port (SO_REUSEPORT); Ctrl-C stops all",
    )
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT, so that other processes may serve the port too",
    )
    serve.add_argument(
        "--_worker-port", dest="worker_port", type=_listen_port, help=argparse.SUPPRESS
    )
    serve.add_argument(
        "--address",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; "
        "0.0.0.0 or :: for every interface)",
    )
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument(
        "--echo",
        dest="mode",
        action="store_const",
        const="echo",
        help="send back what is received (default)",
    )
    mode.add_argument(
        "--discard",
        dest="mode",
        action="store_const",
        const="discard",
        help="read and drop everything",
    )
    mode.add_argument(
        "--http",
        dest="mode",
        action="store_const",
        const="http",
        help="answer GET and HEAD with a tiny page, then close",
    )
    serve.set_defaults(mode="echo")
    stls = serve.add_argument_group("TLS (--cert implies --tls)")
    stls.add_argument(
        "--tls",
        action="store_true",
        help="TLS; without --cert, with a certificate made at run time",
    )
    stls.add_argument(
        "--cert",
        metavar="FILE",
        type=_existing_file,
        help="certificate chain (PEM); may hold the key too",
    )
    stls.add_argument("--key", metavar="FILE", type=_existing_file, help="private key (PEM)")
    stls.add_argument(
        "--name",
        metavar="NAME",
        action="append",
        default=[],
        help="extra name for the run-time certificate (besides localhost, "
        "127.0.0.1, ::1); repeatable",
    )
    stls.add_argument(
        "--write-ca",
        metavar="FILE",
        type=_writable_path,
        help="write the run-time CA certificate here (for curl --cacert)",
    )
    stls.add_argument(
        "--alpn",
        metavar="PROTO,...",
        type=_alpn_list,
        help="ALPN protocols to accept, in the server's order of preference",
    )
    serve.add_argument(
        "--element-type",
        type=_element_type,
        default="base-char",
        metavar="TYPE",
        help=f"stream element type: {', '.join(ELEMENT_TYPES)}",
    )
    serve.add_argument(
        "-v", "--verbose", action="store_true", help="log connections on standard error"
    )
    serve.set_defaults(run=_cmd_serve)

    bench = verbs.add_parser(
        "bench",
        formatter_class=fmt,
        help="run the benchmark suite (from a source checkout)",
        description="Run the benchmark suite of the source checkout (the 'bench' package next to "
        "'src'): a progress bar on standard error and a table of ratios at the end.  Options "
        "not listed here are passed on to the suite (see 'python -m bench --help').",
    )
    bench.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    bench.add_argument("--only", metavar="W1,W2", help="run only these workloads")
    bench.add_argument("--json", metavar="FILE", help="write the results as JSON")
    bench.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw a plot (needs matplotlib: pip install 'sockstream[plot]')",
    )
    bench.set_defaults(run=_cmd_bench)
    return parser


# ---- demo ------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    from ._demo import STEP_LIMIT, run_demo, use_colour

    colour = {"always": True, "never": False}.get(args.color)
    if colour is None:
        colour = use_colour(sys.stdout)
    return run_demo(
        sys.stdout, colour=colour, only=args.only, verbose=args.verbose, step_limit=STEP_LIMIT
    )


# ---- connect ---------------------------------------------------------------------------------


def _hostport(address: Any) -> str:
    try:
        host, port = address[0], address[1]
    except (TypeError, IndexError):
        return str(address)
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _describe_tls(stream: SocketStream) -> list[str]:
    from ._certs import fingerprint_of_der

    obj = stream.ssl_object
    if obj is None:
        return ["not TLS"]
    cipher = obj.cipher()
    lines = [
        f"TLS {obj.version()}, cipher {cipher[0] if cipher else '?'}"
        + (f", ALPN {stream.alpn_protocol}" if stream.alpn_protocol else "")
        + (", session resumed" if stream.session_reused else "")
    ]
    cert = obj.getpeercert()
    if cert:
        subject = ", ".join(f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
        issuer = ", ".join(f"{k}={v}" for rdn in cert.get("issuer", ()) for k, v in rdn)
        san = ", ".join(f"{k}:{v}" for k, v in cert.get("subjectAltName", ()))
        lines.append(f"peer certificate: {subject or '(no subject)'}")
        lines.append(f"  subjectAltName: {san or '(none)'}")
        lines.append(f"  issuer: {issuer}; valid until {cert.get('notAfter', '?')}")
    der = obj.getpeercert(binary_form=True)
    if der:
        lines.append(f"  SHA-256 {fingerprint_of_der(der)}")
    return lines


def _to_crlf(data: bytes, prev_cr: bool) -> tuple[bytes, bool]:
    """Turn each bare "\\n" into "\\r\\n"; ``prev_cr``: the previous chunk ended with "\\r"."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if prev_cr and data.startswith(b"\n"):
        out = out[1:]  # the "\r" went out with the previous chunk
    return out, data.endswith(b"\r")


def _cmd_connect(args: argparse.Namespace, extra: list[str]) -> int:
    from sockstream import SSLVerificationError, open_tcp_stream

    use_tls = bool(args.tls or args.sni or args.cafile or args.insecure or args.alpn or args.keylog)
    ctx: ssl.SSLContext | None = None
    if use_tls:
        ctx = ssl.create_default_context(cafile=args.cafile)  # honours SSLKEYLOGFILE
        if args.keylog:
            ctx.keylog_filename = args.keylog
        if args.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            _err(
                "warning: --insecure: the server's certificate is NOT verified; anyone on the "
                "path can read and change this connection"
            )
    try:
        stream = open_tcp_stream(
            args.host,
            args.port,
            element_type=args.element_type,
            read_timeout=args.read_timeout,
            timeout=args.connect_timeout,
            ssl_ctx=ctx,
            tlsext_host_name=(args.sni or args.host) if use_tls else None,
            handshake_timeout=args.connect_timeout if use_tls else None,
            alpn_protocols=args.alpn,
        )
    except SSLVerificationError as exc:
        hint = (
            "--cafile FILE trusts a private CA"
            if exc.verify_code != 62
            else "--sni NAME names the host the certificate must cover"
        )
        _err(
            f"error: the server's certificate was refused: {exc.verify_message} "
            f"(OpenSSL verify code {exc.verify_code}); {hint}"
        )
        return 1
    assert stream is not None  # errorp=True: a failure raised
    with contextlib.closing(stream):
        if args.verbose:
            _err(f"connected {_hostport(stream.local_address)} -> {_hostport(stream.peer_address)}")
            if use_tls:
                for line in _describe_tls(stream):
                    _err(line)
        return _copy_both_ways(
            stream, crlf=args.crlf, verbose=args.verbose, read_timeout=args.read_timeout
        )


def _copy_both_ways(
    stream: SocketStream, *, crlf: bool, verbose: bool, read_timeout: float | None
) -> int:
    finished = threading.Event()  # the main thread has stopped reading
    stdin_fd: int | None
    try:
        stdin_fd = sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        stdin_fd = None

    def send() -> None:
        prev_cr = False
        try:
            while stdin_fd is not None:
                data = os.read(stdin_fd, CHUNK)
                if not data or finished.is_set():
                    break
                if crlf:
                    data, prev_cr = _to_crlf(data, prev_cr)
                stream.write(data)
                stream.flush()
            if not finished.is_set():
                stream.shutdown_output()
                if verbose:
                    _err("end of standard input: sent end-of-file (half-close)")
        except (OSError, ValueError) as exc:
            if not finished.is_set():
                _err(f"error: sending: {_one_line(exc)}")

    sender = threading.Thread(target=send, name="sockstream-connect-stdin", daemon=True)
    sender.start()
    out = sys.stdout.buffer
    try:
        while True:
            data = stream.read1(CHUNK)
            if not data:
                break
            out.write(data.encode("latin-1") if isinstance(data, str) else data)
            out.flush()
    except BrokenPipeError:
        # Standard output went away (e.g. `| head`): stop quietly, and keep Python's exit-time
        # flush from complaining about the closed pipe.
        finished.set()
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return 1
    finally:
        finished.set()
    if verbose:
        if stream.timed_out:
            _err(f"no data for {read_timeout:g} s (--read-timeout): closing")
        else:
            _err("the server closed the connection")
    # If standard input had already ended, the sender is done: join it.  Otherwise it is blocked
    # reading standard input, which nothing can interrupt portably; it is a daemon thread.
    sender.join(0.5 if not sender.is_alive() else 0)
    return 0


# ---- serve -----------------------------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace, extra: list[str], parser: argparse.ArgumentParser) -> int:
    from sockstream import serve

    from ._certs import fingerprint_of_pem_file, make_certificates
    from ._demo import discard_handler, echo_handler, http_handler

    if args.worker_port is not None:
        args.port = args.worker_port
    if args.unix is not None and args.port is not None:
        parser.error("give PORT or --unix PATH, not both")
    if args.unix is None and args.port is None:
        parser.error("PORT (or --unix PATH) is required")
    if args.unix is not None and (args.workers > 1 or args.reuse_port):
        parser.error("--workers and --reuse-port are for a TCP port, not --unix")
    if args.workers > 1 and args.tls and not args.cert:
        parser.error(
            "--workers with --tls needs --cert (each worker would make its own "
            "certificate otherwise)"
        )
    if args.key and not args.cert:
        parser.error("--key needs --cert")
    if (args.name or args.write_ca) and args.cert:
        parser.error("--name and --write-ca are for the run-time certificate; not with --cert")
    use_tls = bool(args.tls or args.cert)
    if (args.name or args.write_ca) and not use_tls:
        parser.error("--name and --write-ca need --tls")
    if args.alpn and not use_tls:
        parser.error("--alpn needs --tls")
    if args.address:
        try:
            ipaddress.ip_address(args.address)
        except ValueError:
            if not all(c.isalnum() or c in ".-_" for c in args.address):
                parser.error(f"argument --address: not a host name or address: {args.address!r}")

    def log(message: str) -> None:
        if args.verbose:
            _err(message)

    ctx: ssl.SSLContext | None = None
    certs = None
    ca_path: str | None = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.load_cert_chain(args.cert, args.key)
        except (ssl.SSLError, OSError) as exc:
            parser.error(f"cannot load --cert {args.cert!r} / --key {args.key!r}: {_one_line(exc)}")
        _err(f"TLS certificate {args.cert}, SHA-256 {fingerprint_of_pem_file(args.cert)}")
    elif use_tls:
        certs = make_certificates(args.name)
    try:
        if certs is not None:
            ctx = certs.server_context()
            ca_path = str(certs.ca_file)
            if args.write_ca:
                shutil.copyfile(certs.ca_file, args.write_ca)
                ca_path = args.write_ca
            _err(
                f"TLS certificate made at run time (with {certs.backend}) for "
                f"{', '.join(certs.names)}"
            )
            _err(f"  SHA-256 {certs.fingerprint}")
            _err(
                f"  its CA certificate is in {ca_path}"
                + (
                    ""
                    if args.write_ca
                    else " (deleted when the server stops; --write-ca FILE keeps a copy)"
                )
            )
        handler = {"echo": echo_handler, "discard": discard_handler, "http": http_handler}[
            args.mode
        ](log)
        keywords: dict[str, Any] = {"element_type": args.element_type}
        if ctx is not None:
            keywords.update(
                ssl_ctx=ctx, handshake_timeout=SERVE_HANDSHAKE_TIMEOUT, alpn_protocols=args.alpn
            )
        if args.mode == "http":
            from ._demo import HTTP_MAX_LINE

            keywords.update(read_timeout=HTTP_IDLE_TIMEOUT, max_line_length=HTTP_MAX_LINE)
        if args.workers > 1:
            from ._workers import run_workers

            return run_workers(args.argv, args.workers, args.address, args.port, _err, _hostport)
        if args.worker_port is not None:
            from ._workers import watch_parent

            watch_parent()
        if args.unix is not None:
            keywords["path"] = args.unix
        else:
            keywords.update(service=args.port, address=args.address, reuse_port=args.reuse_port)
        return _serve_until_stopped(
            serve, handler, args, keywords, tls=ctx is not None, ca_path=ca_path
        )
    finally:
        if certs is not None:
            certs.cleanup()


def _serve_until_stopped(
    serve: Callable[..., Any],
    handler: Callable[[SocketStream], None],
    args: argparse.Namespace,
    keywords: dict[str, Any],
    *,
    tls: bool,
    ca_path: str | None,
) -> int:
    in_main = threading.current_thread() is threading.main_thread()
    old_int: Any = None
    old_term: Any = None
    if in_main:
        # A shell starts background jobs with SIGINT ignored; we want Ctrl-C/SIGINT to stop us.
        old_int = signal.signal(signal.SIGINT, signal.default_int_handler)

        def on_term(signum: int, frame: FrameType | None) -> None:
            raise _Stop

        old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        server = serve(handler, **keywords)
        worker = args.worker_port is not None
        try:
            if server.path is not None:
                where = f"unix:{server.path}"
                print(f"listening on {where}", flush=True)
                _err(
                    f"serving {'TLS, ' if tls else ''}{args.mode} on Unix socket {server.path}; "
                    "Ctrl-C stops"
                )
                if args.mode == "http":
                    cacert = f"--cacert {ca_path} " if ca_path else ""
                    scheme = "https" if tls else "http"
                    _err(f"  try: curl {cacert}--unix-socket {server.path} {scheme}://localhost/")
                forever = threading.Event()
                while not forever.wait():  # interruptible by signals on POSIX
                    pass
            where = _hostport((args.address, server.port))
            print(f"listening on {where}", flush=True)
            scheme = "https" if tls else "http"
            how = f"{'TLS, ' if tls else ''}{args.mode}"
            local = (
                " (this machine only)" if args.address in ("127.0.0.1", "::1", "localhost") else ""
            )
            if worker:  # the parent (--workers) speaks for its workers
                pass
            elif args.reuse_port:
                _err(f"serving {how} on {where}{local} (SO_REUSEPORT); Ctrl-C stops")
            else:
                _err(f"serving {how} on {where}{local}; Ctrl-C stops")
            if args.mode == "http" and not worker:
                host = (
                    "localhost"
                    if args.address in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::")
                    else args.address
                )
                cacert = f"--cacert {ca_path} " if ca_path else ""
                _err(f"  try: curl {cacert}{scheme}://{_hostport((host, server.port))}/")
            forever = threading.Event()
            while not forever.wait():  # interruptible by signals on POSIX
                pass
        except (KeyboardInterrupt, _Stop):
            if not worker:
                _err("stopping")
        finally:
            server.terminate()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
    return 0


# ---- bench -----------------------------------------------------------------------------------


def _import_bench() -> ModuleType | None:
    """The ``bench`` package of the source checkout this sockstream was installed from, or None.

    The benchmark suite is not part of the wheel: it needs a source checkout (``pip install -e``
    from a clone).  It is loaded from that checkout's ``bench/`` by path, never found on
    ``sys.path``, so an unrelated module named ``bench`` cannot stand in for it.
    """
    import importlib.util

    import sockstream

    root = Path(sockstream.__file__).resolve().parents[2]
    init = root / "bench" / "__init__.py"
    if not init.is_file():
        return None
    spec = importlib.util.spec_from_file_location(
        "bench", init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        return None
    bench = importlib.util.module_from_spec(spec)
    previous = sys.modules.get("bench")
    sys.modules["bench"] = bench  # the suite imports its own submodules as ``bench.*``
    try:
        spec.loader.exec_module(bench)
    except BaseException:
        if previous is None:
            sys.modules.pop("bench", None)
        else:
            sys.modules["bench"] = previous
        raise
    return bench if callable(getattr(bench, "main", None)) else None


def _cmd_bench(args: argparse.Namespace, extra: list[str]) -> int:
    rest: list[str] = []
    if args.quick:
        rest.append("--quick")
    if args.only:
        rest += ["--only", args.only]
    if args.json:
        rest += ["--json", args.json]
    if args.plot:
        rest += ["--plot", args.plot]
    rest += extra
    try:
        bench = _import_bench()
    except ImportError as exc:
        _err(f"error: the benchmark suite could not be imported: {_one_line(exc)}")
        return 1
    if bench is None:
        _err(
            "error: the benchmark suite ships with the source checkout; run from it "
            "(git clone the project, pip install -e '.[cli]', then sockstream bench)"
        )
        return 2
    result = bench.main(rest)
    return int(result) if result is not None else 0


# ---- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sockstream`` command with ``argv`` (default ``sys.argv[1:]``); return the status.

    Status: 0 success, 1 failure at run time, 2 bad command line, 130 interrupted (Ctrl-C).
    """
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args, extra = parser.parse_known_args(arguments)
            if args.verb is None:
                parser.print_help(sys.stderr)
                return 2
            if extra and args.verb != "bench":
                sub = f"{PROG} {args.verb}"
                print(
                    f"{sub}: error: unrecognized arguments: {' '.join(extra)} (see '{sub} --help')",
                    file=sys.stderr,
                    flush=True,
                )
                return 2
            if args.verb == "serve":
                args.argv = arguments  # for --workers: the workers' command line
                return _cmd_serve(args, extra, _subparser(parser, "serve"))
            run: Callable[[argparse.Namespace, list[str]], int] = args.run
            return run(args, extra)
        except _UsageError:
            return 2
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            return 130
        except (OSError, ValueError, RuntimeError) as exc:  # SocketError, ssl.SSLError, ...
            _err(f"error: {_one_line(exc)}")
            return 1
    except KeyboardInterrupt:  # a second Ctrl-C while printing or cleaning up
        return 130


def _subparser(parser: argparse.ArgumentParser, verb: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[verb]
            return found
    raise LookupError(verb)

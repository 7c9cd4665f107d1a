"""Certificates made at run time, for ``sockstream demo`` and ``sockstream serve --tls``.

Goals: the package never ships a private key, and TLS works out of the box on a fresh machine.

Plan: make a throw-away certificate authority and one leaf certificate signed by it, write the
PEM files into a private temporary directory (mode 0700, key files 0600), and delete the directory
when the caller is done.  A client trusts the CA file (``curl --cacert``); the server presents the
leaf.  Two back ends, tried in order:

1. ``trustme`` (the ``cli`` extra installs it): pure Python, fast, no subprocess.
2. the ``openssl`` binary: ``req -x509`` for the CA, ``req -new`` + ``x509 -req`` for the leaf,
   with a configuration file of our own so that neither the system's ``openssl.cnf`` nor its
   version changes the extensions.  The CA gets keyUsage and a subject key identifier and the
   leaf an authority key identifier, because Python 3.13 verifies with ``VERIFY_X509_STRICT``.

If neither is there, :class:`CertificateError` says how to get one.  The leaf names always include
``localhost``, ``127.0.0.1`` and ``::1``; callers add more (the demo adds an SNI name).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "DEFAULT_NAMES",
    "CertificateError",
    "RuntimeCertificates",
    "fingerprint_of_der",
    "fingerprint_of_pem_file",
    "make_certificates",
]

#: The names every run-time leaf certificate covers: the loopback interface by every name.
DEFAULT_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")

#: Validity of run-time certificates.  They live as long as one demo or one server run; a week
#: leaves room for clocks that are off and for a long-running `serve`.
VALID_DAYS = 7

#: Bound on each openssl invocation (key generation on a slow machine takes well under 1 s).
OPENSSL_TIMEOUT = 30.0

Backend = Literal["auto", "trustme", "openssl"]


class CertificateError(RuntimeError):
    """No run-time certificate could be made (neither trustme nor openssl works)."""


def fingerprint_of_der(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate, as colon-separated upper-case hex."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint_of_pem_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    text = Path(path).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    first = text[: text.index(end) + len(end)] + "\n"
    return fingerprint_of_der(ssl.PEM_cert_to_DER_cert(first))


class RuntimeCertificates:
    """A run-time CA and a leaf certificate, as PEM files in a private temporary directory.

    ``ca_file`` is what a client trusts, ``cert_file``/``key_file`` what a server loads.  Use as a
    context manager, or call :meth:`cleanup`, to delete the files (the key included).
    """

    def __init__(
        self, directory: Path, names: tuple[str, ...], backend: str, *, owns_directory: bool
    ) -> None:
        self.directory = directory
        self.names = names
        self.backend = backend
        self.ca_file = directory / "ca.pem"
        self.cert_file = directory / "cert.pem"
        self.key_file = directory / "key.pem"
        self._owns_directory = owns_directory

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the leaf certificate (what a browser shows)."""
        return fingerprint_of_pem_file(self.cert_file)

    @property
    def ca_fingerprint(self) -> str:
        """SHA-256 fingerprint of the CA certificate."""
        return fingerprint_of_pem_file(self.ca_file)

    def server_context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2 or newer) presenting the leaf certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the run-time CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def cleanup(self) -> None:
        """Delete the files (idempotent)."""
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            for p in (self.ca_file, self.cert_file, self.key_file):
                p.unlink(missing_ok=True)

    def __enter__(self) -> RuntimeCertificates:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _all_names(names: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in (*DEFAULT_NAMES, *names):
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"certificate name must be a host name or an address, not {name!r}")
        if name not in out:
            out.append(name)
    return tuple(out)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _with_trustme(directory: Path, names: tuple[str, ...]) -> None:
    import trustme

    ca: Any = trustme.CA(organization_name="sockstream run-time CA")
    not_after = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=VALID_DAYS)
    leaf: Any = ca.issue_cert(*names, common_name=names[0], not_after=not_after)
    (directory / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (directory / "cert.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    _write_private(directory / "key.pem", leaf.private_key_pem.bytes())


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _san(names: tuple[str, ...]) -> str:
    return ",".join(f"IP:{n}" if _is_address(n) else f"DNS:{n}" for n in names)


def _openssl_config(names: tuple[str, ...]) -> str:
    return f"""\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[v3_ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = {_san(names)}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _with_openssl(directory: Path, names: tuple[str, ...], openssl: str) -> None:
    cfg = directory / "openssl.cnf"
    cfg.write_text(_openssl_config(names), encoding="ascii")
    ca_key = directory / "ca.key"
    csr = directory / "leaf.csr"
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        proc = subprocess.run(
            [openssl, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=OPENSSL_TIMEOUT,
            check=False,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CertificateError(
                f"openssl {args[0]} failed: {err[-1] if err else f'exit {proc.returncode}'}"
            )

    try:
        old_umask = os.umask(0o077)  # key files are written by openssl: keep them private
        try:
            run(
                "req",
                "-x509",
                "-config",
                str(cfg),
                "-extensions",
                "v3_ca",
                *newkey,
                "-keyout",
                str(ca_key),
                "-out",
                str(directory / "ca.pem"),
                "-days",
                str(VALID_DAYS),
                "-subj",
                "/O=sockstream run-time CA/CN=sockstream CA",
            )
            run(
                "req",
                "-new",
                "-config",
                str(cfg),
                *newkey,
                "-keyout",
                str(directory / "key.pem"),
                "-out",
                str(csr),
                "-subj",
                f"/O=sockstream/CN={names[0]}",
            )
            run(
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(directory / "ca.pem"),
                "-CAkey",
                str(ca_key),
                "-set_serial",
                str(secrets.randbits(63) | 1),
                "-days",
                str(VALID_DAYS),
                "-extfile",
                str(cfg),
                "-extensions",
                "v3_leaf",
                "-out",
                str(directory / "cert.pem"),
            )
        finally:
            os.umask(old_umask)
    finally:
        # The CA key is never needed again: nobody can sign anything else with this CA.
        for p in (ca_key, csr, cfg):
            p.unlink(missing_ok=True)


def make_certificates(
    names: Iterable[str] = (),
    *,
    backend: Backend = "auto",
    directory: str | os.PathLike[str] | None = None,
) -> RuntimeCertificates:
    """Make a run-time CA and a leaf for ``localhost``, ``127.0.0.1``, ``::1`` and ``names``.

    ``backend`` is ``"trustme"``, ``"openssl"`` or ``"auto"`` (trustme if importable, else the
    openssl binary).  The files go to ``directory`` if given, else to a new private temporary
    directory that :meth:`RuntimeCertificates.cleanup` deletes.

    Raises:
        CertificateError: the back end is missing or failed.
        ValueError: a name is empty or contains white space.
    """
    all_names = _all_names(names)
    if backend not in ("auto", "trustme", "openssl"):
        raise ValueError(f"backend must be 'auto', 'trustme' or 'openssl', not {backend!r}")
    have_trustme = True
    if backend in ("auto", "trustme"):
        try:
            import trustme  # noqa: F401
        except ImportError:
            have_trustme = False
            if backend == "trustme":
                raise CertificateError(
                    "trustme is not installed: pip install 'sockstream[cli]'"
                ) from None
    openssl = shutil.which("openssl")
    use = "trustme" if backend != "openssl" and have_trustme else "openssl"
    if use == "openssl" and openssl is None:
        raise CertificateError(
            "cannot make a certificate at run time: install trustme "
            "(pip install 'sockstream[cli]') or the openssl command"
        )

    owns = directory is None
    path = Path(tempfile.mkdtemp(prefix="sockstream-certs-")) if owns else Path(directory or "")
    certs = RuntimeCertificates(path, all_names, use, owns_directory=owns)
    try:
        if use == "trustme":
            _with_trustme(path, all_names)
        else:
            assert openssl is not None
            _with_openssl(path, all_names, openssl)
    except BaseException:
        certs.cleanup()
        raise
    return certs

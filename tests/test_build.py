"""The optional build (issue 14): without a working C compiler, building the extension prints one
notice line and succeeds, and the package runs its pure-Python core.

The build runs ``setup.py build_ext`` in a scratch copy of the project (so the checkout's own
``.so`` is never touched), with ``CC=/bin/false``: a compiler that always fails.  No network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTICE = "sockstream: C extension not built ("


def _scratch_copy(tmp: Path) -> Path:
    """setup.py, pyproject.toml, README.md and src/ (without any built extension) under tmp."""
    proj = tmp / "proj"
    proj.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, proj / name)
    shutil.copytree(
        ROOT / "src",
        proj / "src",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "*.egg-info"),
    )
    return proj


@pytest.mark.timeout(120)
def test_failed_compiler_means_pure_python(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="setuptools (the test extra) runs setup.py")
    proj = _scratch_copy(tmp_path)
    build_lib, build_temp = tmp_path / "lib", tmp_path / "temp"
    env = dict(os.environ, CC="/bin/false", LDSHARED="/bin/false")
    env.pop("SOCKSTREAM_CFLAGS", None)
    env.pop("SOCKSTREAM_LDFLAGS", None)
    result = subprocess.run(
        [
            sys.executable,
            "setup.py",
            "-q",
            "build_ext",
            "--build-lib",
            str(build_lib),
            "--build-temp",
            str(build_temp),
        ],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    notices = [line for line in output.splitlines() if line.startswith("sockstream:")]
    assert len(notices) == 1, output
    assert notices[0].startswith(NOTICE), notices
    assert notices[0].endswith("); using pure Python"), notices
    built = [p for p in tmp_path.rglob("*") if p.suffix in (".so", ".pyd")]
    assert built == [], built

    # The copy has no extension: the package imports and runs pure, with the variable or not.
    for value in (None, "1"):
        child = dict(os.environ, PYTHONPATH=str(proj / "src"))
        child.pop("SOCKSTREAM_PUREPYTHON", None)
        if value is not None:
            child["SOCKSTREAM_PUREPYTHON"] = value
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import socket, sockstream; a, b = socket.socketpair(); "
                "s = sockstream.SocketStream(a); b.sendall(b'ok\\n'); "
                "print(sockstream.ACCELERATED, sockstream.__file__, s.read_line()); s.close()",
            ],
            env=child,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=tmp_path,
        )
        accelerated, where, line = out.stdout.strip().split(" ", 2)
        assert accelerated == "False", out.stdout
        assert where.startswith(str(proj)), out.stdout
        assert line == "('ok', False)", out.stdout

"""The optional C extension (``sockstream._speedups``); everything else is in pyproject.toml.

Where a C compiler or the Python headers are missing, the build prints one line and goes on:
the package then runs its pure-Python core (``sockstream.ACCELERATED`` is False).
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """``build_ext`` that never fails the install: a failed compile means pure Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler at all (DistutilsPlatformError, ...)
            self._skip(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError, a missing Python.h
            self._skip(exc)

    @staticmethod
    def _skip(exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        print(
            f"sockstream: C extension not built ({reason}); using pure Python", file=sys.stderr
        )


# SOCKSTREAM_CFLAGS / SOCKSTREAM_LDFLAGS: extra flags (scripts/asan builds with the sanitizer).
extra_compile = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
extra_compile += os.environ.get("SOCKSTREAM_CFLAGS", "").split()
extra_link = os.environ.get("SOCKSTREAM_LDFLAGS", "").split()

setup(
    ext_modules=[
        Extension(
            "sockstream._speedups",
            ["src/sockstream/_speedups.c"],
            extra_compile_args=extra_compile if os.name != "nt" else [],
            extra_link_args=extra_link,
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptionalBuildExt},
)

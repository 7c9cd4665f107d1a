"""The ``sockstream`` command: ``demo``, ``connect``, ``serve``, ``bench``.

The application, apart from the library: it uses only sockstream's public API, as any user's
program would (``tests/test_cli.py`` checks that no private module is imported from here).
"""

from ._main import main as main

__all__ = ["main"]

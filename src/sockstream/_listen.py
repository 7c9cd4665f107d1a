"""Listening on a Unix domain socket: the socket file, stale files, and removing ours.

Goals
    * ``path=`` creates the socket file; it is removed when the server stops, and only if it is
      still the file this server made (same device and inode), so a server that has since
      replaced it keeps its file.
    * A stale file (left by a server that died without removing it) is replaced.  A live
      server's file is never taken: before anything is removed, the file is probed by
      connecting to it.  Refused (``ECONNREFUSED``): nobody listens, the file is stale.
      Accepted, or would block (the listener's backlog is full): a server is there, and
      starting is a ``SocketCreateError`` (``EADDRINUSE``).  The file is removed only if it is
      still the one probed (same inode), so two servers starting at once on one stale path do
      not remove each other's new file (the window left is the gap between that check and the
      ``unlink``).
    * A path that exists and is not a socket is never removed (``SocketCreateError``).
    * Linux abstract names (a path starting with NUL) have no file: nothing to probe or remove;
      the kernel refuses a name in use.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Final

from ._errors import SocketCreateError

_LIVE_ERRNOS: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINPROGRESS})


def _is_abstract(path: str | bytes) -> bool:
    return path[:1] in ("\0", b"\0")


def display_path(path: str | bytes) -> str:
    """The path as text, for messages and ``Server.address``."""
    return os.fsdecode(path) if isinstance(path, bytes) else path


class SocketFile:
    """The socket file a server made; ``remove()`` deletes it if it is still that file."""

    __slots__ = ("_identity", "path")

    def __init__(self, path: str | bytes) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        if not _is_abstract(path):
            st = os.lstat(path)
            self._identity = (st.st_dev, st.st_ino)

    def remove(self) -> None:
        """Remove the file if it is still ours (idempotent; errors are ignored)."""
        identity, self._identity = self._identity, None
        if identity is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == identity:
                os.unlink(self.path)
        except OSError:
            pass


def _live(path: str | bytes) -> bool:
    """True when a server accepts connections at ``path`` (the probe of a socket file)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError as exc:
            if exc.errno in _LIVE_ERRNOS:
                return True  # its backlog is full: it is alive, only busy
            raise
        return True
    finally:
        probe.close()


def _clear_stale(path: str | bytes) -> None:
    """Remove ``path`` if it is the socket file of a dead server; raise if it is anything else."""
    where = display_path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SocketCreateError(exc.errno, f"cannot listen on {where!r}: {exc.strerror}") from exc
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketCreateError(
            errno.EADDRINUSE, f"cannot listen on {where!r}: it exists and is not a socket"
        )
    try:
        alive = _live(path)
    except OSError as exc:
        raise SocketCreateError(exc.errno, f"cannot listen on {where!r}: {exc.strerror}") from exc
    if alive:
        raise SocketCreateError(
            errno.EADDRINUSE, f"cannot listen on {where!r}: a server is listening there"
        )
    try:
        again = os.lstat(path)
        if (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino):
            os.unlink(path)  # stale: its server is gone
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SocketCreateError(
            exc.errno, f"cannot remove the stale socket file {where!r}: {exc.strerror}"
        ) from exc


def make_unix_listener(path: str | bytes, backlog: int) -> tuple[socket.socket, SocketFile]:
    """Listen at ``path`` (non-blocking); the socket and its file.  SocketCreateError on failure."""
    where = display_path(path)
    if not hasattr(socket, "AF_UNIX"):  # pragma: no cover - Windows without AF_UNIX
        raise SocketCreateError("Unix domain sockets are not available here")
    if not _is_abstract(path):
        _clear_stale(path)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    except OSError as exc:
        raise SocketCreateError(exc.errno, f"cannot listen on {where!r}: {exc.strerror}") from exc
    try:
        sock.bind(path)
        try:
            sock.listen(backlog)
            sock.setblocking(False)
            return sock, SocketFile(path)
        except BaseException:
            if not _is_abstract(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"cannot listen on {where!r}: another server took it just now"
        else:
            message = f"cannot listen on {where!r}: {exc.strerror or exc}"
        raise SocketCreateError(exc.errno, message) from exc
    except BaseException:
        sock.close()
        raise

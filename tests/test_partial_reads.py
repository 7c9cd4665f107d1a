"""Sized reads interrupted after a partial fill keep what they took; unread_char after large reads.

Issue 11, defects 2 and 3.  ``read(n)``, ``read_sequence`` and ``readinto`` wait for the rest of
their ``n`` bytes; a reset, a TLS truncation or a KeyboardInterrupt while they wait must leave
the bytes already received readable (small reads keep them in the buffer; large reads, which go
straight into the caller's memory, put them back).  A read of 16 KiB or more must not leave a
stale byte that ``unread_char`` would accept as the character just read.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest

from conftest import LONG, Make
from sockstream import SocketIOError, SocketStream, SSLTruncatedError
from test_faults import (  # pair and sigusr1 are fixtures, used by name
    Pair,
    in_helper,
    interrupt_main_when_blocked,
    main_native_id,
    pair,  # noqa: F401
    sigusr1,  # noqa: F401
    when_blocked,
)

PARTIAL = b"0123456789"

#: How each sized read is called for ``n`` bytes; what it returns, as bytes.
READS: dict[str, Callable[[SocketStream, int], bytes]] = {
    "read": lambda s, n: s.read(n).encode("latin-1"),
    "read_sequence": lambda s, n: bytes(_fill(s, bytearray(n))),
    "read_sequence_list": lambda s, n: "".join(_fill(s, [""] * n)).encode("latin-1"),
    "readinto": lambda s, n: bytes(_readinto(s, bytearray(n))),
}


def _fill(s: SocketStream, seq: Any) -> Any:
    got = s.read_sequence(seq)
    return seq[:got]


def _readinto(s: SocketStream, buf: bytearray) -> bytearray:
    got = s.readinto(buf)
    return buf[:got]


@pytest.mark.parametrize("how", list(READS))
@pytest.mark.parametrize("size", [100, 20000], ids=["small", "large"])
def test_reset_after_partial_fill_keeps_the_bytes(
    pair: Pair,  # noqa: F811 (the fixture)
    how: str,
    size: int,
) -> None:
    s = pair.ours
    pair.send(PARTIAL)
    helper = when_blocked(main_native_id(), pair.reset_peer)
    with pytest.raises(SocketIOError):
        READS[how](s, size)
    helper.join_checked()
    assert s.read(len(PARTIAL)) == PARTIAL.decode()  # nothing taken is lost
    s.close()


@pytest.mark.parametrize("how", list(READS))
@pytest.mark.parametrize("size", [100, 20000], ids=["small", "large"])
def test_keyboard_interrupt_after_partial_fill_keeps_the_bytes(
    pair: Pair,  # noqa: F811 (the fixture)
    sigusr1: Callable[[Callable[[int, Any], None]], None],  # noqa: F811 (the fixture)
    how: str,
    size: int,
) -> None:
    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    sigusr1(raise_interrupt)
    s = pair.ours
    pair.send(PARTIAL)
    helper = interrupt_main_when_blocked()
    with pytest.raises(KeyboardInterrupt):
        READS[how](s, size)
    helper.join_checked()
    rest = bytes(range(256)) * (size // 256 + 1)
    rest = rest[: size - len(PARTIAL)]
    pair.send(rest)
    assert READS[how](s, size) == PARTIAL + rest  # the same read again gets it all, in order


@pytest.mark.parametrize("how", list(READS))
@pytest.mark.parametrize("size", [100, 20000], ids=["small", "large"])
def test_tls_truncation_after_partial_fill_keeps_the_bytes(
    tcp_pair: Callable[..., tuple[socket.socket, socket.socket]],
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    how: str,
    size: int,
) -> None:
    a, b = tcp_pair()
    t = in_helper(
        lambda: SocketStream(
            b,
            ssl_ctx=client_ctx,
            ssl_side="client",
            tlsext_host_name="localhost",
            handshake_timeout=LONG,
        )
    )
    with SocketStream(a, ssl_ctx=server_ctx, handshake_timeout=LONG) as s:
        peer = t.join_checked()
        peer.write(PARTIAL)
        peer.flush()
        raw = peer.replace_socket(None)
        assert raw is not None
        peer.close()

        def cut() -> None:
            raw.shutdown(socket.SHUT_WR)  # a TCP FIN without close-notify

        helper = when_blocked(main_native_id(), cut)
        with pytest.raises(SSLTruncatedError):
            READS[how](s, size)
        helper.join_checked()
        assert s.read(len(PARTIAL)) == PARTIAL.decode()
        raw.close()


# ---- unread_char after large reads ----------------------------------------------------------


@pytest.mark.parametrize("how", list(READS))
def test_unread_char_after_a_large_read_is_the_last_byte_of_it(make: Make, how: str) -> None:
    s, peer = make()
    peer.sendall(b"x")
    assert s.read_char() == "x"  # "x" is now the byte before the buffer's position
    body = b"y" * 19999 + b"Z"
    peer.sendall(body)
    assert READS[how](s, len(body)) == body  # large: straight into the caller's memory
    with pytest.raises(ValueError, match="not the character just read"):
        s.unread_char("x")  # stale: it was read before
    s.unread_char("Z")
    peer.sendall(b"!")
    assert s.read(2) == "Z!"


def test_unread_char_after_a_large_read_on_a_fresh_stream(make: Make) -> None:
    s, peer = make()
    body = b"a" * 20000
    peer.sendall(body)
    assert s.read(20000) == body.decode()
    s.unread_char("a")
    assert s.read_char() == "a"

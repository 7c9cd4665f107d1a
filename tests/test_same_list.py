"""The warm-call check of ``wait_for_input_streams`` on a list (issue 16): ``same_list``.

A list may have been changed between two calls, so the cached registration is only reused when
the list equals the cache's copy.  The extension's ``_speedups.same_list`` answers ``a == b`` by
a memcmp of the two item arrays when they hold the same objects; its pure twin is
``operator.eq``.  Both must give ``a == b`` for anything, and the cache must notice a list
changed in place (same length, an item replaced or moved).
"""

from __future__ import annotations

import importlib.util
import math
import operator
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import LONG
from sockstream import SocketStream, _impl, wait_for_input_streams
from sockstream import _multiwait as mw

_BUILT = importlib.util.find_spec("sockstream._speedups") is not None


def _c_same_list() -> Any:
    if not _BUILT:
        pytest.skip("the C extension is not built")
    from sockstream import _speedups

    return _speedups.same_list


class _AlwaysEqual:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class _NeverEqual:
    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__


#: Objects to build lists of: some equal without being the same, some never equal to
#: themselves except by identity (NaN), some that claim equality with anything.
_POOL = [
    1,
    1.0,
    True,
    "a",
    "a" * 2,
    (),
    math.nan,
    float("nan"),
    _AlwaysEqual(),
    _NeverEqual(),
    object(),
    None,
]

_items = st.lists(st.sampled_from(_POOL), max_size=12)


class _MyList(list[Any]):
    pass


def test_the_implementation_in_use() -> None:
    if _impl.ACCELERATED:
        assert mw.same_list is _c_same_list()
    else:
        assert mw.same_list is operator.eq


@given(a=_items, b=_items)
def test_c_same_list_is_eq(a: list[Any], b: list[Any]) -> None:
    same_list = _c_same_list()
    assert same_list(a, b) is operator.eq(a, b)
    assert same_list(a, list(a)) is True  # the same objects: True, whatever their __eq__
    assert same_list(a, a) is True
    assert same_list(a, [*a, None]) is False


@given(a=_items, b=_items)
def test_c_same_list_of_other_sequences_is_eq(a: list[Any], b: list[Any]) -> None:
    same_list = _c_same_list()
    assert same_list(a, tuple(b)) == operator.eq(a, tuple(b))  # a list is never a tuple
    assert same_list(_MyList(a), b) == operator.eq(_MyList(a), b)
    assert same_list(tuple(a), tuple(b)) == operator.eq(tuple(a), tuple(b))


def test_c_same_list_arguments() -> None:
    same_list = _c_same_list()
    with pytest.raises(TypeError, match="2 arguments"):
        same_list([])
    assert same_list(1, 1) is True
    assert same_list([], []) is True


@pytest.fixture
def streams() -> Iterator[tuple[list[SocketStream], list[socket.socket]]]:
    ours: list[SocketStream] = []
    peers: list[socket.socket] = []
    try:
        for _ in range(80):  # at least CACHE_MIN_STREAMS: cached on the first call
            a, b = socket.socketpair()
            peers.append(b)
            ours.append(SocketStream(a))
        yield ours, peers
    finally:
        mw._forget_registrations()
        for s in ours:
            s.close(abort=True)
        for p in peers:
            p.close()


def test_a_list_changed_in_place_is_seen(
    streams: tuple[list[SocketStream], list[socket.socket]],
) -> None:
    ours, peers = streams
    listed = ours[:70]
    peers[5].sendall(b"x")
    assert wait_for_input_streams(listed, timeout=LONG) == [ours[5]]  # cached now
    assert wait_for_input_streams(listed, timeout=LONG) == [ours[5]]  # the warm call
    # The same length, one stream replaced by one that is not in the cache (and is ready).
    peers[75].sendall(b"y")
    listed[5] = ours[75]
    assert wait_for_input_streams(listed, timeout=LONG) == [ours[75]]
    assert wait_for_input_streams(listed, timeout=LONG) == [ours[75]]
    # Moved: the answer follows the list's new order.
    listed[5], listed[60] = listed[60], listed[5]
    peers[5].sendall(b"z")  # ours[5] is still ready (its byte is buffered), and listed again
    listed[0] = ours[5]
    assert wait_for_input_streams(listed, timeout=LONG) == [ours[5], ours[75]]
    listed[0], listed[60] = listed[60], listed[0]
    assert wait_for_input_streams(listed, timeout=LONG) == [ours[75], ours[5]]

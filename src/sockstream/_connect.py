"""PLACEHOLDER: replaced by the open_tcp_stream work (issue 4)."""

from typing import Any


def open_tcp_stream(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError

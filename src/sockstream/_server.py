"""PLACEHOLDER: replaced by the server work (issue 4)."""

from typing import Any


class Server:
    pass


def start_up_server(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def serve(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def server_terminate(server: Any) -> None:
    raise NotImplementedError

"""PLACEHOLDER: replaced by the waiting work (issue 5)."""

from typing import Any


def wait_for_input_streams(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def wait_for_input_streams_returning_first(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError

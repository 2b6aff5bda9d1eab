"""A value that holds for the code inside one `with`: who acts (history), which account's opening
(identity), which local host a request runs on (triggers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def scoped(var: ContextVar[T], value: T) -> Iterator[None]:
    """`var` is `value` inside the `with`, and what it was before once it ends, however it ends."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)

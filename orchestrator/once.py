"""`once`: a value of no arguments built by the first caller only, whichever thread calls.

`functools.cache` does not lock: every thread that calls before the first build has returned builds
its own copy, so 32 workers starting together build a costly table (the template catalogue: read,
expanded and parsed with tree-sitter) 32 times over. `once` holds a lock for the first build; later
calls read the stored value without taking it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Once(Generic[T]):
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: list[T] = []  # empty until built; a failed build is tried again by the next caller
        functools.update_wrapper(self, build)

    def __call__(self) -> T:
        if not self._value:
            with self._lock:
                if not self._value:  # another thread may have built it while this one waited
                    self._value.append(self._build())
        return self._value[0]


def once(build: Callable[[], T]) -> Callable[[], T]:
    """`build()` called once, by the first caller, under a lock; its value returned to every caller."""
    return _Once(build)

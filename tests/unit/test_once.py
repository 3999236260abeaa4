"""orchestrator.once: a value built once, by one thread, even when many ask for it together."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from orchestrator import templates
from orchestrator.once import once

WORKERS = 8


def test_threads_that_ask_together_share_one_build() -> None:
    builds: list[int] = []
    second_build = threading.Event()
    release = threading.Event()
    started = threading.Barrier(WORKERS + 1)

    @once
    def table() -> object:
        builds.append(1)
        if len(builds) > 1:
            second_build.set()
        release.wait(5)  # the first build stays in progress while the other threads arrive
        return object()

    def ask() -> object:
        started.wait(5)
        return table()

    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [pool.submit(ask) for _ in range(WORKERS)]
        started.wait(5)
        # Give the other threads a chance to start a build of their own while the first is in progress;
        # a correct `once` never lets them, and this bounded wait then simply runs out.
        second_build.wait(0.5)
        release.set()
        values = {id(f.result()) for f in futures}
    assert len(builds) == 1
    assert len(values) == 1


def test_a_failed_build_is_tried_again_by_the_next_caller() -> None:
    calls: list[int] = []

    @once
    def flaky() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("first read failed")
        return 42

    with pytest.raises(OSError):
        flaky()
    assert flaky() == 42
    assert flaky() == 42
    assert len(calls) == 2


def test_the_template_catalogue_is_read_once_for_every_thread() -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        selected = list(pool.map(lambda _: templates.select_template("facts", "default"), range(WORKERS)))
    assert all(t is selected[0] for t in selected)

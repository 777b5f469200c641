"""The collector's pace during a run (pipeline/collector_pace.py): raised while any run is inside, the process's
own setting back after the last, also when runs overlap or one fails."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from usagewatch.pipeline import collector_pace
from usagewatch.pipeline.collector_pace import YOUNG_THRESHOLD, fewer_young_collections


@pytest.fixture(autouse=True)
def own_threshold() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 11, 12)
    yield (700, 11, 12)
    gc.set_threshold(*before)


def test_raised_inside_and_restored_after_even_when_the_run_fails() -> None:
    seen: list[tuple[int, int, int]] = []

    def failing_run() -> None:
        with fewer_young_collections():
            seen.append(gc.get_threshold())
            raise RuntimeError("the run failed")

    with pytest.raises(RuntimeError):
        failing_run()
    assert seen == [(YOUNG_THRESHOLD, 11, 12)]
    assert gc.get_threshold() == (700, 11, 12)


def test_a_higher_setting_of_the_process_is_kept() -> None:
    gc.set_threshold(50_000, 11, 12)
    with fewer_young_collections():
        assert gc.get_threshold() == (50_000, 11, 12)
    assert gc.get_threshold() == (50_000, 11, 12)


def test_overlapping_runs_restore_once_the_last_leaves() -> None:
    inside, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with fewer_young_collections():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_run)
    with fewer_young_collections():
        thread.start()
        assert inside.wait(10)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the first run left, the other is still inside
    release.set()
    thread.join(10)
    assert gc.get_threshold() == (700, 11, 12) and collector_pace._runs == 0

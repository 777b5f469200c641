"""The garbage collector's pace while a run streams: fewer young-generation passes.

A run of 10,000 Keepnet companies makes about half a million short-lived containers (records, item dicts, their
DynamoDB encodings) and next to no reference cycles. At CPython's default, a young-generation pass every 700 net
allocations (and an older one every ten of those), the collector took 0.19-0.31 s of a 2.2-3.2 s run, most of it
walking items still buffered for their batch; with a pass every 10,000, 0.03-0.06 s (docs/performance.md: Round
four). A higher threshold only delays collecting cycles, which nothing in a run relies on; memory is bounded by the
pages and batches in flight, as before.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

YOUNG_THRESHOLD: Final = 10_000

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def fewer_young_collections() -> Iterator[None]:
    """The young-generation threshold at least YOUNG_THRESHOLD while any run of the process is inside; the
    process's own setting back when the last one leaves (runs may overlap in one process, as in the tests)."""
    global _runs, _saved
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], YOUNG_THRESHOLD), _saved[1], _saved[2])
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved)

"""What the pipeline needs from the table (declared by the store package) and the work queue."""

from __future__ import annotations

from typing import Protocol

from usagewatch.continuation import WorkItem
from usagewatch.store.interface import UsageStore


class WorkQueue(Protocol):
    def send(self, item: WorkItem) -> None: ...


__all__ = ["UsageStore", "WorkQueue"]

"""A monotonic clock whose sleeps move it on at once, for tests where waiting is not what is tested.

`PacingClock()` reads as `time.monotonic()` plus every second slept so far; `sleep(s)` returns at once and adds
`s`. Hand the same clock to a source (`install(monkeypatch)` sets it as every source's default clock and sleep)
and to a simulator that keeps its own time, and a client that waits for a rate window or a `Retry-After` sees
the window pass without the test waiting for it. Sleeps of concurrent threads add up, so time can only run ahead
of what real sleeps would give (a server's window passes sooner, never later).
"""

from __future__ import annotations

import threading
import time

import pytest

from usagewatch.sources.base import VendorSource


class PacingClock:
    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.offset += max(seconds, 0.0)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> PacingClock:
        """Every source built from now on (by the real handler, too) paces and backs off on this clock."""
        monkeypatch.setitem(VendorSource.__init__.__kwdefaults__, "clock", self)
        monkeypatch.setitem(VendorSource.__init__.__kwdefaults__, "sleep", self.sleep)
        return self

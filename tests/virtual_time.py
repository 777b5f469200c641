"""A monotonic clock whose sleeps move it on at once, for tests where waiting is not what is tested.

`PacingClock()` reads as `time.monotonic()` plus every second slept so far; `sleep(s)` returns at once and adds
`s`. Hand the same clock to a source (`install(monkeypatch)` sets it as every source's default clock and sleep)
and to a simulator that keeps its own time, and a client that waits for a rate window or a `Retry-After` sees
the window pass without the test waiting for it. Sleeps of concurrent threads add up, so time can only run ahead
of what real sleeps would give (a server's window passes sooner, never later).

`install_on(monkeypatch, SomeClient.__init__)` does the same for any callable taking keyword-only `clock` and
`sleep` (the PSA clients), and `botocore_sleeps(monkeypatch, clock)` sends botocore's own retry back-offs to the
clock too, so an AWS endpoint that does not answer is retried with botocore's real policy and no real wait.
`slept` lists every sleep in order, for tests that assert the back-off itself.
"""

from __future__ import annotations

import threading
import time
import types
from collections.abc import Callable
from typing import Any

import botocore.endpoint
import pytest

from usagewatch.sources.base import VendorSource


class PacingClock:
    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.offset += max(seconds, 0.0)
            self.slept.append(seconds)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> PacingClock:
        """Every source built from now on (by the real handler, too) paces and backs off on this clock."""
        return self.install_on(monkeypatch, VendorSource.__init__)

    def install_on(self, monkeypatch: pytest.MonkeyPatch, *functions: Callable[..., Any]) -> PacingClock:
        """Each function's keyword-only `clock` and `sleep` defaults become this clock."""
        for function in functions:
            monkeypatch.setitem(function.__kwdefaults__, "clock", self)
            monkeypatch.setitem(function.__kwdefaults__, "sleep", self.sleep)
        return self


def botocore_sleeps(monkeypatch: pytest.MonkeyPatch, clock: PacingClock) -> PacingClock:
    """botocore's retry back-offs (`time.sleep` in `botocore.endpoint`, its only use of `time`) go to `clock`."""
    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=clock.sleep))
    return clock

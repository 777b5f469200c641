"""How requests to a vendor are paced: three strategies side by side behind one interface.

`HttpClient` calls `acquire(deadline)` before every attempt and `hold(seconds)` when the server answered 429.
A pacer never starts a wait that would end past the run's `Deadline`: it raises `DeadlineError` instead.

- `RateLimiter`: a token bucket (Keepnet; the base of the other two).
- `PacedLimiter`: burst 1 just under the configured rate, slower after repeated 429s and back up step by
  step (AIMD), for a vendor whose documented limits are contradictory (GravityZone).
- `HeaderLedPacer`: a token bucket that also follows the server's own count of requests left in its window
  and waits for the window's reset when almost none are left (ThousandEyes' `X-Organization-Rate-Limit-*`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Final, Protocol

from usagewatch.errors import VendorApiError
from usagewatch.observability import logger


class DeadlineError(VendorApiError):
    """Vendor work stopped because the run's deadline came (or the next wait would pass it)."""


class Deadline:
    """When a run's vendor work must end: `left()` seconds from now (the invocation's time left less the
    reserve kept for storing, publishing and the run records). `reached` turns true once something stopped
    for it, so the run starts no further account."""

    def __init__(self, left: Callable[[], float]) -> None:
        self._left = left
        self.reached = False

    def left(self) -> float:
        return self._left()

    def stop(self, what: str) -> DeadlineError:
        """The error to raise for `what` (a sentence that completes "deadline: ...")."""
        self.reached = True
        return DeadlineError(f"deadline: {what}")

    def check_wait(self, seconds: float, what: str) -> None:
        """Raise unless a wait of `seconds` ends before the deadline."""
        left = self.left()
        if seconds > left:
            raise self.stop(
                f"{what}: waiting {seconds:.1f} s would pass the run's deadline ({max(left, 0):.1f} s away)"
            )


class Pacer(Protocol):
    """Paces one stream of requests (one key, API class or organisation)."""

    def acquire(self, deadline: Deadline | None = None) -> None:
        """Block until the next request may be sent (DeadlineError if that would pass `deadline`)."""

    def hold(self, seconds: float) -> None:
        """The server said wait (a 429): every caller waits, not just the one that saw it."""


class RateLimiter:
    """A thread-safe token bucket shared by every request made with one key.

    `hold(seconds)` makes every caller wait (the server said so with a 429), not just the one that
    saw it.
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        self.rate = rate_per_second
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._updated = clock()
        self._held_until = 0.0

    def acquire(self, deadline: Deadline | None = None) -> None:
        while True:
            with self._lock:
                now = self._clock()
                if now < self._held_until:
                    wait = self._held_until - now
                else:
                    self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                    self._updated = now
                    if self._tokens >= 1:
                        self._tokens -= 1
                        return
                    wait = (1 - self._tokens) / self.rate
            if deadline is not None:
                deadline.check_wait(wait, "request pacing")
            self._sleep(wait)

    def hold(self, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            if until > self._held_until:
                self._held_until = until
                self._tokens = 0.0
                self._updated = until


# --- paced, adaptive (GravityZone) ---------------------------------------------------------------

# Pace at this share of the configured rate: the server counts requests over a rolling second, and
# arrival times jitter; 3% slack (30 ms a second) keeps a run at the documented limit free of 429s.
PACING_MARGIN: Final = 0.97
# A 429 holds every request of that key and API for its wait. A second 429 within `RECOVERY_SECONDS`
# also slows the pace down by this factor (at most once a second), down to `SLOWDOWN_FLOOR` req/s: the
# vendor's documented limits are contradictory. An isolated 429 (arrival jitter squeezing six calls into
# one second) costs only its hold. After `RECOVERY_SECONDS` without a 429, the pace climbs back by a tenth
# of the configured rate (AIMD). Each run starts at the configured rate.
SLOWDOWN_FACTOR: Final = 0.7
SLOWDOWN_FLOOR: Final = 0.5
RECOVERY_SECONDS: Final = 10.0


class PacedLimiter(RateLimiter):
    """A key's limiter for one API: burst 1 at `PACING_MARGIN` of the configured rate; slower after repeated
    429s (at most once a second), back up step by step after `RECOVERY_SECONDS` without one."""

    def __init__(
        self,
        rate_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        vendor: str = "",
    ) -> None:
        super().__init__(rate_per_second * PACING_MARGIN, burst=1, clock=clock, sleep=sleep)
        # Empty at first: the key's last calls (an earlier invocation's chunk) may still be in the server's
        # rolling second, so even the first call waits one interval.
        self._tokens = 0.0
        self._vendor = vendor
        self.configured_rate = self.rate
        self.floor = min(self.rate, SLOWDOWN_FLOOR)
        self.slowdowns = 0
        self._last_slowdown = -math.inf
        self._last_recovery = -math.inf
        self._last_429 = -math.inf

    def acquire(self, deadline: Deadline | None = None) -> None:
        if self.rate < self.configured_rate:
            with self._lock:
                now = self._clock()
                if now - max(self._last_slowdown, self._last_recovery) >= RECOVERY_SECONDS:
                    self.rate = min(self.configured_rate, self.rate + self.configured_rate / 10)
                    self._last_recovery = now
        super().acquire(deadline)

    def restore(self) -> None:
        """Back to the configured pace (a new run)."""
        with self._lock:
            self.rate = self.configured_rate
            self._last_slowdown = self._last_recovery = self._last_429 = -math.inf

    def hold(self, seconds: float) -> None:
        super().hold(seconds)
        with self._lock:
            now = self._clock()
            previous, self._last_429 = self._last_429, now
            if now - previous >= RECOVERY_SECONDS:
                return
            if now - self._last_slowdown < 1.0 or self.rate <= self.floor:
                return
            self._last_slowdown = now
            self.rate = max(self.floor, self.rate * SLOWDOWN_FACTOR)
            self.slowdowns += 1
            rate = self.rate
        logger.warning(f"{self._vendor} rate limited: slowing down".lstrip(), extra={"rate_per_second": round(rate, 2)})


# --- header-led (ThousandEyes) -------------------------------------------------------------------

# Wait a little past the announced reset so a server clock a fraction ahead does not bite.
RESET_MARGIN_SECONDS: Final = 0.5
# Never wait longer than this for a reset (the window is one minute; a bigger number is a bad header).
MAX_RESET_WAIT_SECONDS: Final = 65.0


def seconds_until_reset(reset_at: float, now: float) -> float:
    """How long to wait for a window that resets at `reset_at` (epoch seconds), bounded."""
    return min(max(0.0, reset_at - now) + RESET_MARGIN_SECONDS, MAX_RESET_WAIT_SECONDS)


class HeaderLedPacer:
    """A token bucket plus what the server's last response said about its rate-limit window: when
    `low_remaining` or fewer requests are left, the next request waits for the window's reset."""

    def __init__(
        self,
        bucket: RateLimiter,
        *,
        low_remaining: int,
        vendor: str,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`wall_clock` gives epoch seconds, the unit of the server's reset time."""
        self.bucket = bucket
        self.lock = threading.Lock()
        self.remaining: float | None = None
        self.reset_at: float | None = None
        self._low_remaining = low_remaining
        self._vendor = vendor
        self._wall_clock = wall_clock
        self._sleep = sleep

    def observe(self, remaining: float | None, reset_at: float | None) -> None:
        """What a response said (None: it did not say)."""
        with self.lock:
            if remaining is not None:
                self.remaining = remaining
            if reset_at is not None:
                self.reset_at = reset_at

    def adopt(self, other: HeaderLedPacer) -> None:
        """Take `other`'s word on the window (it saw the latest response of the same window)."""
        with other.lock, self.lock:
            if other.remaining is not None:
                self.remaining, self.reset_at = other.remaining, other.reset_at

    def acquire(self, deadline: Deadline | None = None) -> None:
        self._wait_for_reset(deadline)
        self.bucket.acquire(deadline)

    def hold(self, seconds: float) -> None:
        self.bucket.hold(seconds)

    def _wait_for_reset(self, deadline: Deadline | None) -> None:
        with self.lock:
            remaining, reset_at = self.remaining, self.reset_at
            if remaining is None or remaining > self._low_remaining or reset_at is None:
                return
            self.remaining = None
        wait = reset_at - self._wall_clock() + RESET_MARGIN_SECONDS
        if wait > 0:
            wait = min(wait, MAX_RESET_WAIT_SECONDS)
            if deadline is not None:
                deadline.check_wait(wait, f"{self._vendor} rate-limit window reset")
            logger.info(
                f"{self._vendor} rate-limit window almost used; waiting for its reset",
                extra={"remaining": remaining, "wait_s": round(wait, 2)},
            )
            self._sleep(wait)

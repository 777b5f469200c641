"""HeaderLedPacer: the server's count of requests left decides when the next request waits for the reset.

The token bucket (`RateLimiter`) is tested in test_http_client.py, `PacedLimiter` in test_gravityzone_mapping.py.
"""

from __future__ import annotations

import pytest

from usagewatch.pacing import (
    MAX_RESET_WAIT_SECONDS,
    RESET_MARGIN_SECONDS,
    Deadline,
    DeadlineError,
    HeaderLedPacer,
    RateLimiter,
    seconds_until_reset,
)

EPOCH = 1_790_000_000.0


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(fake: FakeTime, *, low_remaining: int = 2) -> HeaderLedPacer:
    bucket = RateLimiter(1000, burst=10, clock=fake.clock, sleep=fake.sleep)
    return HeaderLedPacer(bucket, low_remaining=low_remaining, vendor="test", wall_clock=fake.wall, sleep=fake.sleep)


def test_almost_used_window_waits_for_its_reset_once() -> None:
    fake = FakeTime()
    paced = pacer(fake)
    paced.observe(2, EPOCH + 10)
    paced.acquire()
    assert fake.sleeps == [pytest.approx(10 + RESET_MARGIN_SECONDS)]
    paced.acquire()  # the wait used up what the server said; the next call does not wait again
    assert len(fake.sleeps) == 1


def test_window_with_requests_left_does_not_wait() -> None:
    fake = FakeTime()
    paced = pacer(fake)
    paced.observe(3, EPOCH + 10)
    paced.acquire()
    paced.observe(None, None)  # a response without the headers keeps the last word
    paced.acquire()
    assert fake.sleeps == []


def test_reset_wait_is_bounded_and_a_past_reset_costs_nothing() -> None:
    fake = FakeTime()
    paced = pacer(fake)
    paced.observe(0, EPOCH + 3600)
    paced.acquire()
    assert fake.sleeps == [MAX_RESET_WAIT_SECONDS]
    paced.observe(0, fake.wall() - 5)
    paced.acquire()
    assert fake.sleeps == [MAX_RESET_WAIT_SECONDS]
    assert seconds_until_reset(EPOCH - 5, EPOCH) == RESET_MARGIN_SECONDS
    assert seconds_until_reset(EPOCH + 3600, EPOCH) == MAX_RESET_WAIT_SECONDS


def test_adopt_takes_the_other_window_and_hold_stops_the_bucket() -> None:
    fake = FakeTime()
    mine, theirs = pacer(fake), pacer(fake)
    mine.observe(50, EPOCH + 1)
    theirs.observe(1, EPOCH + 20)
    mine.adopt(theirs)
    assert (mine.remaining, mine.reset_at) == (1, EPOCH + 20)
    mine.adopt(pacer(fake))  # a pacer that has seen nothing changes nothing
    assert (mine.remaining, mine.reset_at) == (1, EPOCH + 20)

    other = pacer(fake, low_remaining=0)
    other.hold(4.0)
    other.acquire()
    assert fake.sleeps[0] == pytest.approx(4.0)  # then one token's interval: the hold emptied the bucket


def test_a_reset_wait_past_the_deadline_is_refused() -> None:
    fake = FakeTime()
    paced = pacer(fake)
    paced.observe(1, EPOCH + 20)
    deadline = Deadline(lambda: 5.0 - fake.now)
    with pytest.raises(DeadlineError, match=r"test rate-limit window reset: waiting 20\.5 s would pass"):
        paced.acquire(deadline)
    assert fake.sleeps == [] and deadline.reached

"""The targets `make bench` judges by: the Keepnet latency bound, DynamoDB write calls, O(accounts) reads."""

from __future__ import annotations

import pytest

from bench.dynamodb import FIXED_WRITES, reads_flat, write_call_bound
from bench.keepnet import latency_bound


@pytest.mark.parametrize(
    ("companies", "expected"),
    [
        (10_000, 2.8),  # token, over-limit page, first page, then 99 pages 4 at a time: 3 + 25 round trips
        (1_000, 0.6),  # 3 + ceil(9 / 4)
        (100, 0.3),  # one page: nothing after the first
        (401, 0.4),  # 5 pages: 3 + ceil(4 / 4)
        (501, 0.5),  # 6 pages: 3 + ceil(5 / 4)
    ],
)
def test_keepnet_latency_bound_counts_round_trips_that_cannot_overlap(companies: int, expected: float) -> None:
    assert latency_bound(companies) == pytest.approx(expected)


def test_keepnet_latency_bound_follows_concurrency() -> None:
    assert latency_bound(10_000, concurrency=1) == pytest.approx(10.2)
    assert latency_bound(10_000, concurrency=8) == pytest.approx(1.6)


def test_write_call_bound_first_run_and_unchanged_run() -> None:
    # 500 new companies: 1,001 items in 41 batches, 4 totals in one, 41 alert states one by one, the fixed writes.
    assert write_call_bound(1_001, alert_states=41) == 41 + 1 + 41 + FIXED_WRITES
    # Nothing changed: the totals and the fixed records only.
    assert write_call_bound(0, alert_states=0) == 1 + FIXED_WRITES


def test_unchanged_run_rewriting_every_tenant_exceeds_its_bound() -> None:
    rewritten_calls = 41 + 1 + FIXED_WRITES  # what a run that wrote all 500 companies again would send
    assert rewritten_calls > write_call_bound(0, alert_states=0)


@pytest.mark.parametrize(
    ("small", "big", "flat"),
    [(15, 15, True), (15, 14, True), (1, 1, True), (15, 16, False), (15, 75, False)],
)
def test_reads_flat_passes_equal_counts_and_fails_growth(small: int, big: int, flat: bool) -> None:
    assert reads_flat(small, big) is flat

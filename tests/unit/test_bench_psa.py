"""The PSA bench's bound: the fewest requests a forward-only, per-agreement sync can read a PSA with."""

from __future__ import annotations

import pytest

from bench.psa import fewest_sync_requests


@pytest.mark.parametrize(
    ("companies", "additions", "expected"),
    [
        (2_000, [6] * 5_000, 2 + 5 + 5_000),  # the bench's: every agreement one page of additions
        (1, [], 1 + 1),  # empty listings still cost one request each
        (1_000, [1_000, 1_001, 0], 1 + 1 + (1 + 2 + 1)),  # a full page ends the listing; one more needs a page
        (2_500, [2_500], 3 + 1 + 3),  # docs/psa.md: 2,500 additions take 3 requests
    ],
)
def test_fewest_sync_requests(companies: int, additions: list[int], expected: int) -> None:
    assert fewest_sync_requests(companies, additions) == expected

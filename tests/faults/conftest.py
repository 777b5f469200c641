"""Fault-matrix fixtures: the integration harness (moto, the real handlers) plus a fast retry policy and
the handler's clock.

Retry knob (documented in docs/reliability.md): every source is constructed by the real handler with its
defaults (`KeepnetSource()`, ...). The fixture below replaces the *default value* of the `retry` argument of
`VendorSource`'s constructor (every source's) with `RetryPolicy(backoff_base=0.01)`: the same number of
attempts, the same total-time budget and the same cap on a server's `Retry-After`, only a 10 ms instead of
0.5 s first backoff. Sleeps stay
real (a `Retry-After: 1` really waits a second); nothing about what is retried changes. The tests about the
production bounds themselves opt out by requesting the `production_retry` fixture.
"""

from __future__ import annotations

import pytest

from tests.faults.harness import FrozenClock, fast_retry_policy
from tests.integration.conftest import aws, invoke  # noqa: F401  (fixtures re-exported)
from usagewatch import handler
from usagewatch.sources.base import VendorSource


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "solo: a ridden-out row run with the faulty account only (no healthy neighbour)")


@pytest.fixture(autouse=True)
def fast_retry(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if "production_retry" in request.fixturenames:
        return
    # Every source takes its default retry policy from VendorSource's constructor.
    monkeypatch.setitem(VendorSource.__init__.__kwdefaults__, "retry", fast_retry_policy())


@pytest.fixture
def production_retry() -> None:
    """Marker fixture: keep the sources' real RetryPolicy defaults (0.5 s backoff base)."""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    """The handler's wall clock (collected_at, computed_at, run times), set per run by Harness.run."""
    frozen = FrozenClock()
    monkeypatch.setitem(handler.handle.__kwdefaults__, "clock", frozen)
    return frozen

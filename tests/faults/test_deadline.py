"""The invocation's deadline bounds the vendor work in flight (docs/reliability.md, "The run's deadline").

Three Keepnet accounts whose every request hangs, with 40 s of the invocation left, through the real Keepnet
handler on moto. Time is a `FakeTime` shared by the Lambda context and the source's injectable clock and sleep:
back-offs cost no real time, and a hung request costs its real (short) read timeout. The retry policy's
back-off (16 s base, 20 s cap; production's 5 attempts and 90 s budget) makes the first account's planned
retries outlast the 36 s before the deadline whatever the jitter, as production's 20 s read timeouts do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import Harness, at
from tests.faults.sims import HookedKeepnet
from tests.integration.conftest import FakeLambdaContext, Invoke, load_app
from tests.local_aws import LocalAws
from tests.simulators.base import Fault
from tests.simulators.keepnet import make_companies
from usagewatch.handler import CollectionFailedError
from usagewatch.http import RetryPolicy
from usagewatch.sources.keepnet import KeepnetSource

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-deadline-secret-77c2"
INVOCATION_LEFT = 40.0
ACCOUNTS = ("kn-1", "kn-2", "kn-3")


class FakeTime:
    """Monotonic seconds: real time plus every sleep, which returns at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slept = 0.0

    def clock(self) -> float:
        with self._lock:
            return time.monotonic() + self._slept

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._slept += max(seconds, 0.0)


class CountdownContext(FakeLambdaContext):
    """A Lambda context whose time left runs down on the fake clock."""

    def __init__(self, fake: FakeTime, seconds: float) -> None:
        super().__init__()
        self.fake, self.ends = fake, fake.clock() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return int((self.ends - self.fake.clock()) * 1000)


@pytest.fixture
def hanging(aws: LocalAws, invoke: Invoke, clock: Any) -> Iterator[tuple[Harness, HookedKeepnet, Fault]]:
    companies = make_companies(4, seed=9, over_limit=0, unlimited=0, prefix="h")
    with HookedKeepnet(companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=2) as sim:
        assert isinstance(sim, HookedKeepnet)
        account = {
            "base_url": sim.url,
            "client_id": "msp",
            "client_secret": CLIENT_SECRET,
            "timeout_seconds": 0.5,
        }
        aws.put_secret(SECRET, [{"account_id": a, **account} for a in ACCOUNTS])
        hang = Fault("hang", times=-1, seconds=2.0)
        sim.inject(hang)
        yield Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET)), sim, hang


def test_a_run_out_of_time_stops_the_account_in_flight_and_skips_the_rest(
    hanging: tuple[Harness, HookedKeepnet, Fault], monkeypatch: pytest.MonkeyPatch, aws: LocalAws, clock: Any
) -> None:
    h, _sim, hang = hanging
    fake = FakeTime()
    defaults = KeepnetSource.__init__.__kwdefaults__
    monkeypatch.setitem(defaults, "retry", RetryPolicy(backoff_base=16.0, backoff_cap=20.0))
    monkeypatch.setitem(defaults, "sleep", fake.sleep)
    monkeypatch.setitem(defaults, "clock", fake.clock)
    for key, value in h.env.items():
        monkeypatch.setenv(key, value)
    clock.now = clock.now.replace(hour=6, minute=3)
    context = CountdownContext(fake, INVOCATION_LEFT)
    started = time.monotonic()

    with pytest.raises(CollectionFailedError) as failed:
        load_app("keepnet").lambda_handler({"scheduled_time": at("06:00")}, context)

    left = context.get_remaining_time_in_millis() / 1000
    assert 0 < left < INVOCATION_LEFT, f"the invocation returned with {left:.1f} s left (killed if <= 0)"
    assert time.monotonic() - started < 20, "the test's hung requests waited their real timeouts only"
    summary = failed.value.summary.to_dict()
    results = {a["account_id"]: a for a in summary["account_results"]}
    assert [results[a]["status"] for a in ACCOUNTS] == ["failed", "skipped", "skipped"], results
    assert results["kn-1"]["error"].startswith("deadline"), results["kn-1"]["error"]
    assert "/connect/token" in results["kn-1"]["error"]
    assert summary["accounts_skipped"] == ["kn-2", "kn-3"]
    # Only the first account sent requests, and not all the attempts its retry policy allows.
    assert 2 <= hang.fired < 5, hang.fired

    records = {a: h.run_record(a, at("06:00")) for a in ACCOUNTS}
    assert records["kn-1"]["status"] == "failed" and records["kn-1"]["finished_at"]
    assert records["kn-1"]["errors"][0].startswith("deadline")
    for account in ("kn-2", "kn-3"):
        assert records[account]["status"] == "skipped" and "deadline" in records[account]["errors"][0]
    failed_events = [e for e in aws.drain_events() if e["event_type"] == "collection.failed"]
    assert sorted(e["account_id"] for e in failed_events) == list(ACCOUNTS)
    assert all("deadline" in e["error"] for e in failed_events)

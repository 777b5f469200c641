"""Overlapping runs of one account (issue 11, point 1): a duplicate delivery of one schedule, a manual run
during a scheduled one, a run that outlived its lease. One Keepnet account with a slow vendor (every request
takes LATENCY seconds) behind the real handler, moto and the simulator; the invocations run in threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.faults.harness import CLOCK_OFFSET, FrozenClock, Harness, assert_clean_rerun_publishes_nothing, at
from tests.faults.sims import HookedKeepnet
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.keepnet import make_companies, over_limit
from usagewatch.handler import CollectionFailedError
from usagewatch.pipeline import LEASE_LOST, LEASE_TAKEN

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-overlap-secret-31cc"
ACCOUNT = "kn-main"
LATENCY = 0.4
BREACHED = "usage.threshold.breached"
# Runs racing each other against a really slow vendor: real time is what is under test.
pytestmark = pytest.mark.realtime


@pytest.fixture
def slow(aws: LocalAws, invoke: Invoke, clock: FrozenClock) -> Iterator[tuple[Harness, HookedKeepnet]]:
    companies = make_companies(5, seed=41, over_limit=2, unlimited=1, prefix="o")
    with HookedKeepnet(
        companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=2, latency=LATENCY
    ) as sim:
        assert isinstance(sim, HookedKeepnet)
        account = {"account_id": ACCOUNT, "base_url": sim.url, "client_id": "msp", "client_secret": CLIENT_SECRET}
        aws.put_secret(SECRET, [{**account, "requests_per_second": 200}])
        yield Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET)), sim


def _moment(when: str) -> datetime:
    return datetime.fromisoformat(when.replace("Z", "+00:00")) + CLOCK_OFFSET


def _start(h: Harness, when: str, results: dict[str, dict[str, Any]], name: str) -> threading.Thread:
    def body() -> None:
        try:
            results[name] = h.invoke("keepnet", {"scheduled_time": when}, h.env)
        except CollectionFailedError as exc:
            results[name] = exc.summary.to_dict()

    thread = threading.Thread(target=body, name=name)
    thread.start()
    return thread


def _wait_for_lease(h: Harness) -> None:
    """Until the first run holds the account's lease (under load, loading the handler takes a while)."""
    key = {"pk": {"S": f"LEASE#keepnet#{ACCOUNT}"}, "sk": {"S": "lease"}}
    deadline = time.monotonic() + 20
    while "Item" not in h.aws.client("dynamodb").get_item(TableName=h.aws.table_name, Key=key):
        assert time.monotonic() < deadline, "the first run never took the lease"
        time.sleep(0.02)


def _account(summary: dict[str, Any]) -> dict[str, Any]:
    (result,) = summary["account_results"]
    return result


def _breaches(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["alert_id"] for e in events if e["event_type"] == BREACHED)


def _flagged(sim: HookedKeepnet) -> int:
    return sum(1 for c in sim.default_companies if over_limit(c))


def test_two_deliveries_of_one_schedule_publish_each_breach_once(slow: tuple[Harness, HookedKeepnet]) -> None:
    h, sim = slow
    h.clock.now = _moment(at("06:00"))
    results: dict[str, dict[str, Any]] = {}
    first = _start(h, at("06:00"), results, "first")
    _wait_for_lease(h)  # the first holds the lease and waits on the vendor
    second = _start(h, at("06:00"), results, "second")
    first.join(60)
    second.join(60)
    events = h.aws.drain_events()

    statuses = sorted(_account(r)["status"] for r in results.values())
    assert statuses == ["ok", "skipped"], statuses
    skipped = next(_account(r) for r in results.values() if _account(r)["status"] == "skipped")
    assert skipped["error"] == LEASE_TAKEN
    breaches = _breaches(events)
    assert len(breaches) == len(set(breaches)) >= _flagged(sim), breaches
    assert h.run_record(ACCOUNT, at("06:00"))["status"] == "ok", "the skipped twin must not touch the run record"
    assert_clean_rerun_publishes_nothing(h, at("12:00"))


def test_a_manual_run_during_a_scheduled_one_is_skipped(slow: tuple[Harness, HookedKeepnet]) -> None:
    h, sim = slow
    h.clock.now = _moment(at("06:04"))
    results: dict[str, dict[str, Any]] = {}
    scheduled = _start(h, at("06:00"), results, "scheduled")
    _wait_for_lease(h)
    manual = _start(h, at("06:04"), results, "manual")
    scheduled.join(60)
    manual.join(60)
    events = h.aws.drain_events()

    assert _account(results["scheduled"])["status"] == "ok"
    assert _account(results["manual"])["status"] == "skipped"
    breaches = _breaches(events)
    assert len(breaches) == len(set(breaches)) >= _flagged(sim), breaches
    assert len({e["event_id"] for e in events}) == len(events)
    assert_clean_rerun_publishes_nothing(h, at("12:00"))


def test_a_run_that_outlived_its_lease_publishes_nothing(slow: tuple[Harness, HookedKeepnet]) -> None:
    """The first run stalls past its lease (600 s left at its start, plus the margin); a later run takes the
    account over and publishes; the stalled run, finishing after it, checks its lease and publishes nothing."""
    h, sim = slow
    h.clock.now = _moment(at("06:00"))
    results: dict[str, dict[str, Any]] = {}
    stalled = _start(h, at("06:00"), results, "stalled")
    _wait_for_lease(h)
    h.clock.now = _moment(at("06:00")) + timedelta(minutes=11)  # the stalled run's lease has expired
    later = _start(h, at("06:11"), results, "later")
    stalled.join(60)
    later.join(60)
    events = h.aws.drain_events()

    assert _account(results["later"])["status"] == "ok"
    outlived = _account(results["stalled"])
    assert (outlived["status"], outlived["error"], outlived["alerts_published"]) == ("skipped", LEASE_LOST, 0)
    breaches = _breaches(events)
    assert len(breaches) == len(set(breaches)) >= _flagged(sim), breaches
    assert_clean_rerun_publishes_nothing(h, at("18:00"))


def test_a_lease_left_by_a_killed_run_expires_with_its_invocation(slow: tuple[Harness, HookedKeepnet]) -> None:
    """Lambda's timeout kills the process: nothing releases the lease. The retry a minute after the
    timeout (600 s) is not locked out."""
    h, sim = slow
    store = h.store()
    started = _moment(at("06:00"))
    assert store.acquire_lease("keepnet", ACCOUNT, owner="killed-run", now=started, seconds=610)
    blocked = h.run(at("06:00"))
    assert blocked.account(ACCOUNT)["status"] == "skipped" and blocked.events == []

    h.clock.now = started + timedelta(seconds=660)
    retry = h.invoke("keepnet", {"scheduled_time": at("06:00")}, h.env)
    assert _account(retry)["status"] == "ok"
    assert len(_breaches(h.aws.drain_events())) >= _flagged(sim)

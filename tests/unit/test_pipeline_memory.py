"""The pipeline over the in-memory store: totals, carried numbers, removed customers, store failures.

No moto, no sockets: a scripted source hands the real `Pipeline` its tenants run by run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes.memory_store import MemoryStore
from usagewatch.alerts import BREACHED, FAILED, RESOLVED
from usagewatch.errors import PublishError, VendorApiError
from usagewatch.model import (
    CollectionRequest,
    Period,
    Tenant,
    TenantFailure,
    TenantResult,
    TenantUsage,
    UsageRecord,
    Window,
)
from usagewatch.pipeline import Pipeline
from usagewatch.rules import DEFAULT_RULES

VENDOR = "keepnet"
ACCOUNT = "kn-main"
PERIOD = Period(2026, 11)
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def usage(tenant_id: str, value: int, quota: int = 100, *, billed: bool = True) -> TenantUsage:
    tenant = Tenant(tenant_id, f"Company {tenant_id}", billed=billed)
    record = UsageRecord(VENDOR, ACCOUNT, tenant, "licensed_users", value, "users", Window.month(PERIOD), quota=quota)
    return TenantUsage(tenant, (record,))


def failure(tenant_id: str) -> TenantFailure:
    return TenantFailure(Tenant(tenant_id, f"Company {tenant_id}"), "HTTP 500 from the vendor")


@dataclass
class ScriptedSource:
    """A vendor whose next run answers `results` (set by the test before each run), or fails the whole
    account when `down`."""

    results: list[TenantResult] = field(default_factory=list)
    down: bool = False
    vendor: str = VENDOR

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> str:
        return str(raw["id"])

    def account_id(self, account: str) -> str:
        return account

    def collect(self, account: str, request: CollectionRequest) -> Iterator[TenantResult]:
        if self.down:
            raise VendorApiError("HTTP 503 from the vendor (simulated)")
        yield from self.results


@dataclass
class Events:
    sent: list[dict[str, Any]] = field(default_factory=list)
    refuse: bool = False

    def publish(self, event: dict[str, Any]) -> str:
        if self.refuse:
            raise PublishError("SNS unreachable (simulated)")
        self.sent.append(event)
        return str(len(self.sent))

    def drain(self) -> list[dict[str, Any]]:
        sent, self.sent = self.sent, []
        return sent


@dataclass
class World:
    source: ScriptedSource
    store: MemoryStore
    events: Events

    def run(self, when: datetime, *results: TenantResult) -> Any:
        self.source.results = list(results)
        pipeline = Pipeline(self.source, self.store, self.events, DEFAULT_RULES, clock=lambda: when)
        return pipeline.run([ACCOUNT], CollectionRequest(PERIOD, when)).accounts[0]

    def total(self) -> Any:
        (total,) = [t for t in self.store.period_totals(str(PERIOD)) if t.metric == "licensed_users"]
        return total


@pytest.fixture
def world() -> World:
    return World(ScriptedSource(), MemoryStore(), Events())


def test_a_run_stores_usage_totals_billed_tenants_and_publishes_a_breach_once(world: World) -> None:
    outcome = world.run(T0, usage("a", 40), usage("b", 120), usage("child", 7, billed=False))

    assert outcome.status == "ok" and outcome.tenants_collected == 2
    stored = {u.record.tenant_id: u.record.value for u in world.store.period_usage(str(PERIOD))}
    assert stored == {"a": 40, "b": 120, "child": 7}
    total = world.total()
    assert (total.value, total.tenant_count, total.carried_tenant_count, total.complete) == (160, 2, 0, True)
    breaches = [e for e in world.events.drain() if e["event_type"] == BREACHED]
    assert [(e["tenant_id"], e["rule"]) for e in breaches] == [("b", "over_quota")]
    assert [s.tenant_id for s in world.store.open_alerts(VENDOR, ACCOUNT).values()] == ["b"]
    (run,) = world.store.runs(VENDOR, ACCOUNT)
    assert (run.status, run.tenants_ok, run.records_written) == ("ok", 2, 3)

    world.run(T0 + timedelta(hours=6), usage("a", 40), usage("b", 120), usage("child", 7, billed=False))
    assert [e for e in world.events.drain() if e["event_type"] == BREACHED] == [], "announced once"


def test_a_failed_tenant_keeps_its_last_stored_numbers_in_the_total(world: World) -> None:
    world.run(T0, usage("a", 40), usage("b", 30))
    world.events.drain()

    outcome = world.run(T0 + timedelta(hours=6), usage("a", 45), failure("b"))

    assert outcome.status == "partial" and outcome.tenants_failed == 1
    total = world.total()
    assert (total.value, total.tenant_count, total.carried_tenant_count) == (75, 2, 1)
    assert [e["tenant_id"] for e in world.events.drain() if e["event_type"] == FAILED] == ["b"]
    assert world.store.runs(VENDOR, ACCOUNT, limit=1)[0].errors == ("tenant b (Company b): HTTP 500 from the vendor",)


def test_a_customer_gone_from_a_complete_listing_is_marked_removed_and_its_alert_resolved(world: World) -> None:
    world.run(T0, usage("a", 40), usage("leaver", 150))
    world.events.drain()

    world.run(T0 + timedelta(hours=6), usage("a", 40))

    (gone,) = world.store.tenant_usage(VENDOR, ACCOUNT, "leaver", str(PERIOD))
    assert gone.removed_at == "2026-11-22T12:00:00Z" and gone.record.value == 150, "kept for the record"
    assert (world.total().value, world.total().tenant_count) == (40, 1)
    resolved = [e for e in world.events.drain() if e["event_type"] == RESOLVED]
    assert [(e["tenant_id"], e["reason"]) for e in resolved] == [("leaver", "tenant_removed")]
    assert world.store.open_alerts(VENDOR, ACCOUNT) == {}


def test_a_store_refusing_the_totals_fails_the_account_and_publishes_nothing(world: World) -> None:
    world.store.fail.add("write_totals")

    outcome = world.run(T0, usage("b", 120))

    assert outcome.status == "failed" and "write_totals" in (outcome.error or "")
    assert world.events.drain() == []
    assert world.store.open_alerts(VENDOR, ACCOUNT) == {}
    (run,) = world.store.runs(VENDOR, ACCOUNT)
    assert run.status == "failed"


def test_an_alert_not_published_is_not_stored_and_is_sent_by_the_next_run(world: World) -> None:
    world.events.refuse = True
    first = world.run(T0, usage("b", 120))
    assert first.publish_failures == 1 and first.status == "partial"
    assert world.store.tenant_alerts(VENDOR, ACCOUNT, "b") == [], "no state advances without its event"

    world.events.refuse = False
    world.run(T0 + timedelta(hours=6), usage("b", 120))

    assert [e["tenant_id"] for e in world.events.drain() if e["event_type"] == BREACHED] == ["b"]
    (state,) = world.store.tenant_alerts(VENDOR, ACCOUNT, "b")
    assert (state.status, state.published, state.version) == ("firing", True, 1)

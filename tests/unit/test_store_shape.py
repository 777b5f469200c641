"""One item per tenant and period, written only on change, history as a change log (moto's DynamoDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from tests.local_aws import in_process_aws, provision
from usagewatch.model import Period, Tenant, UsageRecord, Window, utc_iso
from usagewatch.store import DynamoStore
from usagewatch.store.usage_shape import SHARDS

NOV = Window.month(Period(2026, 11))
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
RUN = timedelta(hours=6)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    credentials = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "eu-west-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    with in_process_aws():
        yield provision().table_name


def tenant_records(
    n: int, bump: int = 0, *, metrics: tuple[str, ...] = ("licensed_users", "monthly_users")
) -> list[UsageRecord]:
    tenant = Tenant(f"c-{n}", f"Company {n}")
    return [UsageRecord("keepnet", "kn", tenant, metric, 10 + n + bump, "users", NOV, quota=50) for metric in metrics]


def run(table: str, when: datetime, bumps: dict[int, int], tenants: int = 40) -> DynamoStore:
    """One run's store writes, through a fresh store (as each invocation has)."""
    store = DynamoStore(table, writers=1)
    for n in range(tenants):
        store.add_tenant(tenant_records(n, bumps.get(n, 0)), as_of=when, collected_at=when)
    store.flush()
    return store


def test_an_unchanged_run_writes_nothing_and_a_changed_tenant_writes_one_item(table: str) -> None:
    first = run(table, T0, {})
    assert first.tenants_changed == 40 and first.items_written == 40 * 2 + 1  # + the month's account entry

    same = run(table, T0 + RUN, {})
    assert (same.tenants_changed, same.tenants_unchanged, same.items_written) == (0, 40, 0)

    changed = run(table, T0 + 2 * RUN, {3: 5})
    assert (changed.tenants_changed, changed.items_written) == (1, 1), "the replaced reading is in the item's log"

    store = DynamoStore(table)
    usage = {(u.record.tenant_id, u.record.metric): u for u in store.period_usage("2026-11", vendor="keepnet")}
    assert len(usage) == 80
    assert usage[("c-3", "licensed_users")].record.value == 18
    assert usage[("c-3", "licensed_users")].collected_at == "2026-11-22T18:00:00Z", "last changed"
    assert usage[("c-4", "licensed_users")].collected_at == "2026-11-22T06:00:00Z"
    history = store.metric_history("keepnet", "kn", "c-3", "licensed_users")
    assert [(h.as_of, h.record.value) for h in history] == [("2026-11-22T06:00:00Z", 13), ("2026-11-22T18:00:00Z", 18)]
    monthly = store.monthly_history("keepnet", "kn", "c-3", "monthly_users", ["2026-10", "2026-11"])
    assert [(str(m.record.period), m.record.value) for m in monthly] == [("2026-11", 18)]


def test_a_reading_with_fewer_metrics_keeps_the_others(table: str) -> None:
    run(table, T0, {}, tenants=2)
    store = DynamoStore(table, writers=1)
    store.add_tenant(tenant_records(1, 7, metrics=("monthly_users",)), as_of=T0 + RUN, collected_at=T0 + RUN)
    store.flush()

    values = {
        u.record.metric: u.record.value for u in DynamoStore(table).tenant_usage("keepnet", "kn", "c-1", "2026-11")
    }
    assert values == {"licensed_users": 11, "monthly_users": 18}


def test_a_month_spreads_over_shards_of_each_account(table: str) -> None:
    run(table, T0, {}, tenants=40)
    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    keys = {i["pk"]["S"] for i in items if i["record_type"]["S"] == "usage"}
    assert keys <= {f"USAGE#keepnet#kn#2026-11#{n}" for n in range(SHARDS)} and len(keys) == SHARDS


def test_history_is_exact_across_a_full_log_and_its_snapshots(table: str) -> None:
    """Every reading of 40 changes comes back, each at its own run, whether it sits in the item's log or in a
    snapshot written when the log was full; a run retried at the same time writes nothing."""
    writes = []
    for n in range(40):
        store = DynamoStore(table, writers=1)
        when = T0 + n * RUN
        store.add_tenant(
            [*tenant_records(1, n * 3, metrics=("licensed_users",)), *tenant_records(1, n // 4)[1:]],
            as_of=when,
            collected_at=when + timedelta(seconds=7),
        )
        store.flush()
        writes.append(store.items_written)
    retried = DynamoStore(table, writers=1)
    retried.add_tenant(
        [*tenant_records(1, 39 * 3, metrics=("licensed_users",)), *tenant_records(1, 39 // 4)[1:]],
        as_of=T0 + 39 * RUN,
        collected_at=T0 + 39 * RUN,
    )
    retried.flush()
    assert retried.items_written == 0

    items = boto3.client("dynamodb").scan(TableName=table)["Items"]
    snapshots = [i for i in items if i["record_type"]["S"] == "snapshot"]
    assert 1 < len(snapshots) < 40 and sum(writes) == 40 + 1 + len(snapshots)  # + the month's account entry
    store = DynamoStore(table)
    licensed = store.metric_history("keepnet", "kn", "c-1", "licensed_users")
    assert [(h.as_of, h.collected_at, h.record.value) for h in licensed] == [
        (utc_iso(T0 + n * RUN), utc_iso(T0 + n * RUN + timedelta(seconds=7)), 11 + 3 * n) for n in range(40)
    ]
    monthly = store.metric_history("keepnet", "kn", "c-1", "monthly_users")
    assert [(h.as_of, h.record.value) for h in monthly] == [
        (utc_iso(T0 + n * RUN), 11 + n // 4) for n in range(0, 40, 4)
    ], "a metric's history lists its own changes"
    latest = {u.record.metric: u.record.value for u in store.tenant_usage("keepnet", "kn", "c-1", "2026-11")}
    assert latest == {"licensed_users": 11 + 3 * 39, "monthly_users": 11 + 39 // 4}


def test_a_renamed_customer_snapshots_its_log_and_keeps_every_reading(table: str) -> None:
    for n, name in enumerate(("Company 1", "Company 1", "Company One")):
        store = DynamoStore(table, writers=1)
        tenant = Tenant("c-1", name)
        records = [UsageRecord("keepnet", "kn", tenant, "licensed_users", 10 + n, "users", NOV, quota=50)]
        store.add_tenant(records, as_of=T0 + n * RUN, collected_at=T0 + n * RUN)
        store.flush()

    store = DynamoStore(table)
    history = store.metric_history("keepnet", "kn", "c-1", "licensed_users")
    assert [(h.as_of, h.record.tenant.tenant_name, h.record.value) for h in history] == [
        (utc_iso(T0), "Company 1", 10),
        (utc_iso(T0 + RUN), "Company 1", 11),
        (utc_iso(T0 + 2 * RUN), "Company One", 12),
    ]
    snapshots = [i for i in boto3.client("dynamodb").scan(TableName=table)["Items"] if i["pk"]["S"].startswith("SNAP#")]
    assert sorted(i["sk"]["S"] for i in snapshots) == [f"{utc_iso(T0)}#2026-11", f"{utc_iso(T0 + RUN)}#2026-11"]

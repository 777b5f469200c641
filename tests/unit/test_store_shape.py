"""One item per tenant and period, written only on change, history as a change log (moto's DynamoDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from tests.local_aws import provision
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.store import DynamoStore
from usagewatch.usage_shape import SHARDS

NOV = Window.month(Period(2026, 11))
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
RUN = timedelta(hours=6)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    credentials = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "eu-west-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
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


def test_an_unchanged_run_writes_nothing_and_a_changed_tenant_writes_one_item_and_one_snapshot(table: str) -> None:
    first = run(table, T0, {})
    assert first.tenants_changed == 40 and first.items_written == 40 * 2 + 1  # + the month's account entry

    same = run(table, T0 + RUN, {})
    assert (same.tenants_changed, same.tenants_unchanged, same.items_written) == (0, 40, 0)

    changed = run(table, T0 + 2 * RUN, {3: 5})
    assert (changed.tenants_changed, changed.items_written) == (1, 2)

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

"""One contract for both stores: `DynamoStore` on moto (the template's table) and the tests' `MemoryStore`.

Same answers, same conditional rules (alerts, leases, split runs, identities), same errors (StoreError for a
refused call, OldShapeError for a period of old-shape usage), and every method able to fail on demand. The last
test runs one scenario through both and compares every read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.fakes.memory_store import MemoryStore
from tests.local_aws import LocalAws
from usagewatch.continuation import ChunkKey
from usagewatch.errors import StoreError
from usagewatch.model import Period, Tenant, UsageRecord, Window, utc_iso
from usagewatch.store import DynamoStore, OldShapeError
from usagewatch.stored import AlertState, RunRecord, Total

TABLE = "usagewatch-usage"
PERIOD = Period(2026, 11)
WINDOW = Window.month(PERIOD)
T0 = datetime(2026, 11, 3, 6, tzinfo=UTC)


class FaultyClient:
    """The moto client, except that the next call of a named operation is refused as DynamoDB would."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._fail: set[str] = set()

    def fail_next(self, operation: str) -> None:
        self._fail.add(operation)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in self._fail:
            return method

        def refused(**_: Any) -> Any:
            self._fail.discard(name)
            error = {"Error": {"Code": "InternalServerError", "Message": "simulated"}}
            raise ClientError(error, name)  # type: ignore[arg-type]

        return refused


OPERATION = {
    "add_tenant": "query",
    "flush": "batch_write_item",
    "write_totals": "batch_write_item",
    "write_run": "put_item",
    "put_alert": "put_item",
    "open_alerts": "query",
    "alert_states": "batch_get_item",
    "tenant_alerts": "query",
    "period_usage": "query",
    "period_accounts": "query",
    "period_totals": "query",
    "tenant_usage": "batch_get_item",
    "closing_values": "query",
    "metric_history": "query",
    "monthly_usage": "batch_get_item",
    "runs": "query",
    "acquire_lease": "put_item",
    "holds_lease": "update_item",
    "release_lease": "delete_item",
    "start_chunked_run": "put_item",
    "claim_finish": "update_item",
    "recall_identities": "get_item",
    "remember_identities": "update_item",
}
"""The DynamoDB call a public method makes first (on a store that has read nothing yet)."""


@dataclass
class Backend:
    name: str
    store: Any
    fail_next: Callable[[str], None]
    seed_old_shape: Callable[[str], None]


def dynamo_backend(aws: LocalAws) -> Backend:
    faulty = FaultyClient(aws.client("dynamodb"))
    store = DynamoStore(aws.table_name, client=faulty, writers=2)  # type: ignore[arg-type]

    def seed_old_shape(period: str) -> None:  # one item per metric, keyed by the month alone
        store.put({"pk": f"USAGE#{period}", "sk": "v#a#t#m", "record_type": "usage", "period": period})

    return Backend("dynamo", store, lambda method: faulty.fail_next(OPERATION[method]), seed_old_shape)


def memory_backend() -> Backend:
    store = MemoryStore(table_name=TABLE)  # the name the table has in the template's stack (tests/local_aws.py)
    return Backend("memory", store, store.fail_next, store.old_shape_periods.add)


@pytest.fixture(params=["dynamo", "memory"])
def backend(request: pytest.FixtureRequest, aws: LocalAws) -> Backend:
    """The moto table is the template's, provisioned by the integration fixture `aws` (tests/local_aws.py)."""
    return dynamo_backend(aws) if request.param == "dynamo" else memory_backend()


def usage(tenant: str, metric: str, value: int, *, name: str | None = None, note: str = "") -> UsageRecord:
    attributes = {"note": note} if note else None
    return UsageRecord(
        "keepnet", "acct", Tenant(tenant, name or f"Tenant {tenant}"), metric, value, "users", WINDOW,
        attributes=attributes,
    )  # fmt: skip


def collect(store: Any, records: list[UsageRecord], at: datetime) -> None:
    by_tenant: dict[str, list[UsageRecord]] = {}
    for record in records:
        by_tenant.setdefault(record.tenant_id, []).append(record)
    for group in by_tenant.values():
        store.add_tenant(group, as_of=at, collected_at=at + timedelta(seconds=30))
    store.flush()


def values(found: list[Any]) -> list[tuple[str, str, Any, str | None]]:
    return [(u.record.tenant_id, u.record.metric, u.record.value, u.removed_at) for u in found]


# --- usage -------------------------------------------------------------------------------------------


def test_usage_reads_back_in_the_tables_order(backend: Backend) -> None:
    store = backend.store
    collect(
        store, [usage("b", "monthly_users", 3), usage("a#1", "target_users", 5), usage("a#1", "monthly_users", 2)], T0
    )
    assert values(store.period_usage(str(PERIOD))) == [
        ("a#1", "monthly_users", 2, None),
        ("a#1", "target_users", 5, None),
        ("b", "monthly_users", 3, None),
    ]
    assert values(store.period_usage(str(PERIOD), vendor="keepnet", account_id="other")) == []
    assert store.period_accounts(str(PERIOD)) == [("keepnet", "acct")]
    assert values(store.tenant_usage("keepnet", "acct", "a#1", str(PERIOD))) == [
        ("a#1", "monthly_users", 2, None),
        ("a#1", "target_users", 5, None),
    ]
    assert store.tenant_usage("keepnet", "acct", "nobody", str(PERIOD)) == []
    assert store.closing_values("keepnet", "acct", str(PERIOD)) == {
        ("a#1", "monthly_users"): 2,
        ("a#1", "target_users"): 5,
        ("b", "monthly_users"): 3,
    }
    found = store.monthly_usage("keepnet", "acct", "a#1", ["2026-10", str(PERIOD)])
    assert values(found) == [("a#1", "monthly_users", 2, None), ("a#1", "target_users", 5, None)]
    assert values(store.monthly_history("keepnet", "acct", "a#1", "target_users", [str(PERIOD)])) == [
        ("a#1", "target_users", 5, None)
    ]


def test_nothing_is_read_back_before_flush(backend: Backend) -> None:
    backend.store.add_tenant([usage("a", "monthly_users", 1)], as_of=T0, collected_at=T0)
    assert backend.store.period_usage(str(PERIOD)) == []
    backend.store.flush()
    assert values(backend.store.period_usage(str(PERIOD))) == [("a", "monthly_users", 1, None)]


def test_which_accounts_hold_a_tenant(backend: Backend) -> None:
    other = UsageRecord("keepnet", "other", Tenant("a", "Tenant a"), "monthly_users", 3, "users", WINDOW)
    collect(backend.store, [usage("a", "monthly_users", 1), usage("b", "monthly_users", 2)], T0)
    collect(backend.store, [other], T0)
    held = backend.store.accounts_holding("keepnet", ["acct", "other", "none"], str(PERIOD), ["a", "b", "c"])
    assert held == {"a": ["acct", "other"], "b": ["acct"]}
    assert backend.store.accounts_holding("keepnet", ["acct"], "2026-10", ["a"]) == {}


def test_a_reading_of_fewer_metrics_keeps_the_others(backend: Backend) -> None:
    collect(backend.store, [usage("a", "monthly_users", 1), usage("a", "target_users", 9)], T0)
    collect(backend.store, [usage("a", "monthly_users", 4)], T0 + timedelta(hours=6))
    assert values(backend.store.tenant_usage("keepnet", "acct", "a", str(PERIOD))) == [
        ("a", "monthly_users", 4, None),
        ("a", "target_users", 9, None),
    ]


def test_history_keeps_each_change_once_and_the_series_what_the_bounded_log_holds(backend: Backend) -> None:
    store, note = backend.store, "x" * 300  # a large item: its log fits few entries before a snapshot
    readings = [1, 2, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    for hour, value in enumerate(readings):
        collect(store, [usage("a", "monthly_users", value, note=note)], T0 + timedelta(hours=hour))
    history = store.metric_history("keepnet", "acct", "a", "monthly_users")
    assert [u.record.value for u in history] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert [u.as_of for u in history][:2] == [utc_iso(T0), utc_iso(T0 + timedelta(hours=1))]
    series = store.tenant_series("keepnet", "acct", "a", str(PERIOD))["monthly_users"]
    assert 1 <= len(series.points) < len(history)  # the log holds the recent changes only, as in DynamoDB
    assert series.points[-1] == (utc_iso(T0 + timedelta(hours=12)), 12)
    assert store.tenant_series("keepnet", "acct", "nobody", str(PERIOD)) == {}


def test_a_removed_customer_keeps_its_record_and_history_but_leaves_the_closing_values(backend: Backend) -> None:
    store = backend.store
    collect(store, [usage("a", "monthly_users", 1), usage("b", "monthly_users", 7)], T0)
    collect(store, [usage("a", "monthly_users", 2)], T0 + timedelta(hours=6))
    before = store.tenant_series("keepnet", "acct", "a", str(PERIOD))
    store.mark_removed(store.tenant_usage("keepnet", "acct", "a", str(PERIOD)), removed_at="2026-11-04T00:00:00Z")
    assert values(store.tenant_usage("keepnet", "acct", "a", str(PERIOD))) == [
        ("a", "monthly_users", 2, "2026-11-04T00:00:00Z")
    ]
    assert store.closing_values("keepnet", "acct", str(PERIOD)) == {("b", "monthly_users"): 7}
    assert store.tenant_series("keepnet", "acct", "a", str(PERIOD)) == before  # as_of and log kept
    history = store.metric_history("keepnet", "acct", "a", "monthly_users")
    # The log keeps metric deltas only: its earlier readings take the item's tenant fields, `removed_at` too.
    assert [(u.record.value, u.removed_at) for u in history] == [
        (1, "2026-11-04T00:00:00Z"),
        (2, "2026-11-04T00:00:00Z"),
    ]


def test_old_shape_usage_is_refused_with_the_migration_named(backend: Backend) -> None:
    backend.seed_old_shape(str(PERIOD))
    for call in (
        lambda: backend.store.period_usage(str(PERIOD)),
        lambda: backend.store.tenant_usage("keepnet", "acct", "a", str(PERIOD)),
        lambda: backend.store.add_tenant([usage("a", "monthly_users", 1)], as_of=T0, collected_at=T0),
    ):
        with pytest.raises(OldShapeError, match=f"usagewatch migrate --table {TABLE}"):
            call()
    assert backend.store.period_usage("2026-10") == []  # another month is not affected


def test_totals_and_runs(backend: Backend) -> None:
    store = backend.store
    totals = [
        Total("keepnet", "acct", str(PERIOD), metric, "users", value, 2, 0, utc_iso(T0))
        for metric, value in (("target_users", 8), ("monthly_users", 5))
    ]
    store.write_totals(totals)
    assert [(t.metric, t.value) for t in store.period_totals(str(PERIOD))] == [
        ("monthly_users", 5),
        ("target_users", 8),
    ]
    assert store.period_totals("2026-10") == []
    for hour in range(3):
        at = utc_iso(T0 + timedelta(hours=hour))
        store.write_run(RunRecord("keepnet", "acct", f"r{hour}", at, at, at, "ok", (str(PERIOD),), 2, 0, 2, 0, ()))
    assert [r.run_id for r in store.runs("keepnet", "acct", limit=2)] == ["r2", "r1"]
    assert store.runs("keepnet", "acct")[0].periods == (str(PERIOD),)
    first, second = utc_iso(T0), utc_iso(T0 + timedelta(hours=1))
    assert [r.run_id for r in store.runs_between("keepnet", "acct", first, second)] == ["r1", "r0"]
    assert store.runs_between("keepnet", "other", first, second) == []


# --- conditional rules -----------------------------------------------------------------------------------


def alert(
    tenant: str = "a", *, status: str = "firing", version: int = 0, rule: str = "quota_utilization"
) -> AlertState:
    return AlertState(
        f"id-{tenant}-{rule}", "keepnet", "acct", tenant, f"Tenant {tenant}", "monthly_users", rule, str(PERIOD),
        status, "warning", True, utc_iso(T0), utc_iso(T0), version=version,  # type: ignore[arg-type]
    )  # fmt: skip


def test_alert_writes_are_conditional_on_the_version_read(backend: Backend) -> None:
    store = backend.store
    assert store.put_alert(alert()) is True
    assert store.put_alert(alert()) is False  # unread (version 0) may not replace a firing alert
    stored = store.open_alerts("keepnet", "acct")["id-a-quota_utilization"]
    assert stored.version == 1
    assert store.put_alert(replace(stored, repeat_count=1)) is True
    assert store.put_alert(replace(stored, repeat_count=2)) is False  # a stale version loses
    current = store.alert_states("keepnet", "acct", [("a", str(PERIOD), "monthly_users", "quota_utilization")])
    assert current["id-a-quota_utilization"].repeat_count == 1 and current["id-a-quota_utilization"].version == 2
    assert store.put_alert(replace(current["id-a-quota_utilization"], status="resolved")) is True
    assert store.open_alerts("keepnet", "acct") == {}
    assert store.put_alert(alert()) is True  # a resolved alert may fire again unread
    assert store.put_alert(alert("a#b", status="resolved")) is True
    assert [s.tenant_id for s in store.tenant_alerts("keepnet", "acct", "a")] == ["a"]
    assert [s.status for s in store.tenant_alerts("keepnet", "acct", "a#b")] == ["resolved"]
    assert store.alert_states("keepnet", "acct", []) == {}


def test_one_lease_per_account(backend: Backend) -> None:
    store = backend.store
    assert store.acquire_lease("keepnet", "acct", owner="run-1", now=T0, seconds=600)
    assert not store.acquire_lease("keepnet", "acct", owner="run-2", now=T0 + timedelta(seconds=1), seconds=600)
    assert store.acquire_lease("keepnet", "acct", owner="run-1", now=T0 + timedelta(seconds=2), seconds=600)
    assert store.acquire_lease("keepnet", "other", owner="run-2", now=T0, seconds=600)
    assert store.holds_lease("keepnet", "acct", owner="run-1", now=T0 + timedelta(seconds=3))
    assert not store.holds_lease("keepnet", "acct", owner="run-2", now=T0 + timedelta(seconds=3))
    assert not store.holds_lease("keepnet", "acct", owner="run-1", now=T0 + timedelta(seconds=700))
    store.release_lease("keepnet", "acct", owner="run-2")  # not ours: kept
    assert not store.acquire_lease("keepnet", "acct", owner="run-2", now=T0 + timedelta(seconds=4), seconds=600)
    assert store.acquire_lease("keepnet", "acct", owner="run-2", now=T0 + timedelta(seconds=700), seconds=600)
    store.release_lease("keepnet", "acct", owner="run-2")
    assert store.acquire_lease("keepnet", "acct", owner="run-3", now=T0 + timedelta(seconds=701), seconds=60)


def test_a_split_run_finishes_once_with_what_every_chunk_found(backend: Backend) -> None:
    store, key = backend.store, ChunkKey("keepnet", "acct", utc_iso(T0))
    store.start_chunked_run(key, started_at=utc_iso(T0), chunk_count=3)
    state = store.complete_chunk(key, 0, failures={}, error=None, read=["a"])
    assert (state.count, state.done, state.started_at) == (3, 1, utc_iso(T0))
    store.start_chunked_run(key, started_at="later", chunk_count=3)  # a retried start keeps the progress
    assert store.complete_chunk(key, 0, failures={}, error=None, read=["a"]).done == 1  # idempotent
    store.complete_chunk(key, 1, failures={"t#1": ("T one", "timed out")}, error="chunk 1: partial", read=["b"])
    state = store.complete_chunk(key, 2, failures={}, error="chunk 2: boom")
    assert (state.count, state.done, state.started_at) == (3, 3, utc_iso(T0))
    assert state.failures == {"t#1": ("T one", "timed out")}
    assert state.errors == ("chunk 1: partial", "chunk 2: boom")
    assert state.read == frozenset({"a", "b"})
    assert store.claim_finish(key) is True
    assert store.claim_finish(key) is False


def test_the_first_identity_given_wins(backend: Backend) -> None:
    store = backend.store
    assert store.recall_identities("thousandeyes", "acct") == {}
    store.remember_identities("thousandeyes", "acct", {"1234": "1234", "99": "org-9"})
    store.remember_identities("thousandeyes", "acct", {"1234": "5678", "77": "77"})
    assert store.recall_identities("thousandeyes", "acct") == {"1234": "1234", "99": "org-9", "77": "77"}
    assert store.recall_identities("thousandeyes", "other") == {}


# --- failure on demand -------------------------------------------------------------------------------------

KEY = ChunkKey("keepnet", "acct", utc_iso(T0))
RUN = RunRecord("keepnet", "acct", "r", utc_iso(T0), utc_iso(T0), utc_iso(T0), "ok", (), 0, 0, 0, 0, ())
CALLS: dict[str, Callable[[Any], Any]] = {
    "add_tenant": lambda s: s.add_tenant([usage("n", "monthly_users", 1)], as_of=T0, collected_at=T0),
    "write_run": lambda s: s.write_run(RUN),
    "put_alert": lambda s: s.put_alert(alert("n")),
    "open_alerts": lambda s: s.open_alerts("keepnet", "acct"),
    "alert_states": lambda s: s.alert_states("keepnet", "acct", [("a", str(PERIOD), "monthly_users", "r")]),
    "tenant_alerts": lambda s: s.tenant_alerts("keepnet", "acct", "a"),
    "period_usage": lambda s: s.period_usage(str(PERIOD)),
    "period_accounts": lambda s: s.period_accounts(str(PERIOD)),
    "period_totals": lambda s: s.period_totals(str(PERIOD)),
    "tenant_usage": lambda s: s.tenant_usage("keepnet", "acct", "a", str(PERIOD)),
    "closing_values": lambda s: s.closing_values("keepnet", "acct", str(PERIOD)),
    "metric_history": lambda s: s.metric_history("keepnet", "acct", "a", "monthly_users"),
    "monthly_usage": lambda s: s.monthly_usage("keepnet", "acct", "a", [str(PERIOD)]),
    "runs": lambda s: s.runs("keepnet", "acct"),
    "acquire_lease": lambda s: s.acquire_lease("keepnet", "new", owner="o", now=T0, seconds=60),
    "holds_lease": lambda s: s.holds_lease("keepnet", "acct", owner="o", now=T0),
    "release_lease": lambda s: s.release_lease("keepnet", "acct", owner="o"),
    "start_chunked_run": lambda s: s.start_chunked_run(KEY, started_at=utc_iso(T0), chunk_count=2),
    "claim_finish": lambda s: s.claim_finish(KEY),
    "recall_identities": lambda s: s.recall_identities("thousandeyes", "acct"),
    "remember_identities": lambda s: s.remember_identities("thousandeyes", "acct", {"1": "one"}),
}
LANDED: dict[str, Callable[[Any], Any]] = {
    "write_run": lambda s: s.runs("keepnet", "acct"),
    "put_alert": lambda s: s.open_alerts("keepnet", "acct"),
    "acquire_lease": lambda s: not s.acquire_lease("keepnet", "new", owner="other", now=T0, seconds=60),
    "remember_identities": lambda s: s.recall_identities("thousandeyes", "acct"),
}
"""For a refused write: what shows whether it landed anyway (it must not)."""


@pytest.mark.parametrize("method", sorted(CALLS))
def test_every_method_can_fail_on_demand_as_a_store_error(backend: Backend, method: str) -> None:
    store = backend.store
    if method != "add_tenant":  # add_tenant's first call on DynamoDB is its one read of the period
        collect(store, [usage("a", "monthly_users", 1)], T0 - timedelta(days=1))
    if method == "claim_finish":
        store.start_chunked_run(KEY, started_at=utc_iso(T0), chunk_count=1)
    backend.fail_next(method)
    with pytest.raises(StoreError, match="failed"):
        CALLS[method](store)
    if method in LANDED:
        assert not LANDED[method](store)
    CALLS[method](store)  # once: the next call goes through


def test_a_failed_flush_loses_the_batch_and_the_next_run_writes_it_again(backend: Backend) -> None:
    store = backend.store
    store.add_tenant([usage("a", "monthly_users", 1)], as_of=T0, collected_at=T0)
    backend.fail_next("flush")
    with pytest.raises(StoreError):
        store.flush()
    assert store.period_usage(str(PERIOD)) == []
    collect(store, [usage("a", "monthly_users", 1)], T0)
    assert values(store.period_usage(str(PERIOD))) == [("a", "monthly_users", 1, None)]


def test_the_fake_refuses_to_fail_a_method_it_does_not_have() -> None:
    with pytest.raises(ValueError, match="no public method"):
        MemoryStore().fail_next("scan")


# --- both at once -------------------------------------------------------------------------------------------


def test_one_scenario_reads_the_same_from_both(aws: LocalAws) -> None:
    stores = [dynamo_backend(aws).store, memory_backend().store]
    note = "y" * 200
    for store in stores:
        for hour in range(10):
            records = [usage("a", "monthly_users", hour // 2, note=note), usage("b", "target_users", 4)]
            if hour % 3:
                records.append(usage("a", "target_users", hour, name="Renamed" if hour > 6 else None))
            collect(store, records, T0 + timedelta(hours=hour))
        store.mark_removed(store.tenant_usage("keepnet", "acct", "b", str(PERIOD)), removed_at=utc_iso(T0))

    def reads(store: Any) -> list[Any]:
        return [
            store.period_usage(str(PERIOD)),
            store.period_accounts(str(PERIOD), vendor="keepnet"),
            store.closing_values("keepnet", "acct", str(PERIOD)),
            {t: store.tenant_series("keepnet", "acct", t, str(PERIOD)) for t in ("a", "b")},
            {m: store.metric_history("keepnet", "acct", "a", m) for m in ("monthly_users", "target_users")},
            store.metric_history("keepnet", "acct", "b", "target_users"),
            store.monthly_usage("keepnet", "acct", "a", [str(PERIOD), "2026-12"]),
        ]

    dynamo, memory = (reads(store) for store in stores)
    assert len(dynamo[4]["monthly_users"]) == 5 and dynamo[0]
    assert dynamo == memory

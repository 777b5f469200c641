"""Issue 14: what usagewatch's projection adds to a Keepnet company's month (item writes, with and without the
materiality rule) and the CPU of reading a stored item's series. `python -m bench.projection_writes`, or the
`projection_writes` scenario of `make bench` (in a child process: it swaps the registry's Keepnet entry)."""

from __future__ import annotations

import dataclasses
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.common import Row, in_child
from tests.fakes.memory_store import MemoryStore
from tests.unit.test_pipeline_memory import Events, ScriptedSource
from usagewatch import projection, registry
from usagewatch.model import CollectionRequest, Period, Tenant, TenantUsage, UsageRecord, Window
from usagewatch.pipeline import Pipeline
from usagewatch.rules import parse_rules_document
from usagewatch.store import DynamoStore, key_part, remembered
from usagewatch.store.usage_shape import log_entry, tenant_attributes

NOV = Period(2026, 11)
RUNS = 120  # six-hourly
CHANGES = (4, 30, 90)


def month(changes: int, *, project: bool, seed: int) -> int:
    """Item writes of one Keepnet company over a month of RUNS runs with `changes` changes of monthly_users."""
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    entry = registry._vendors["keepnet"]
    registry._vendors["keepnet"] = dataclasses.replace(entry, cumulative_metrics=("monthly_users",) if project else ())
    try:
        store, source = MemoryStore(), ScriptedSource()
        pipeline = Pipeline(source, store, Events(), parse_rules_document({}))
        tenant, window = Tenant("c-1", "Acme"), Window.month(NOV)
        change_at = set(rng.sample(range(RUNS), changes))
        value, writes = 50, 0
        for i in range(RUNS):
            if i in change_at:
                value += rng.randint(5, 40)
            records = tuple(
                UsageRecord("keepnet", "kn", tenant, m, v, "users", window)
                for m, v in (("monthly_users", value), ("target_users", 300))
            )
            source.results = [TenantUsage(tenant, records)]
            before = store.writes
            pipeline.run(["kn"], CollectionRequest(NOV, datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=6 * i)))
            writes += store.writes > before
        return writes
    finally:
        registry._vendors["keepnet"] = entry


def series_cpu(tenants: int = 10_000, entries: int = 10) -> float:
    """Seconds for `tenant_series` over `tenants` stored Keepnet items with `entries` log entries each."""
    store = DynamoStore("bench", client=object())  # type: ignore[arg-type]
    known = {}
    window = Window.month(NOV)
    for n in range(tenants):
        tenant = Tenant(f"c-{n}", f"Company {n}")
        item: dict[str, object] | None = None
        for e in range(entries + 1):
            at = f"2026-11-{1 + e:02d}T06:00:00Z"
            records = [
                UsageRecord("keepnet", "kn", tenant, m, v, "users", window)
                for m, v in (("monthly_users", 10 + e), ("target_users", 300), ("inactive_target_users", 3))
            ]
            new = {**tenant_attributes(records, at), "as_of": at}
            if item is not None:
                new["log"] = [*item.get("log", []), log_entry(item, new)]  # type: ignore[list-item]
            item = new
        assert item is not None
        known[key_part(tenant.tenant_id)] = remembered(item)
    store._readings[("keepnet", "kn", str(NOV))] = known
    started = time.perf_counter()
    for n in range(tenants):
        store.tenant_series("keepnet", "kn", f"c-{n}", str(NOV))
    return time.perf_counter() - started


def _measure() -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for changes in CHANGES:
        runs[str(changes)] = {
            "plain": sum(month(changes, project=False, seed=s) for s in range(20)) / 20,
            "projected": sum(month(changes, project=True, seed=s) for s in range(20)) / 20,
        }
    share, units = projection.MATERIAL_SHARE, projection.MATERIAL_UNITS
    projection.MATERIAL_SHARE, projection.MATERIAL_UNITS = 0.0, 1e-9
    try:
        every = sum(month(4, project=True, seed=s) for s in range(20)) / 20
    finally:
        projection.MATERIAL_SHARE, projection.MATERIAL_UNITS = share, units
    started = time.process_time()
    series_cpu()
    return {"months": runs, "every_move_4": every, "series_cpu_s": time.process_time() - started}


def scenario() -> tuple[list[Row], dict[str, Any]]:
    raw = in_child(_measure)
    rows = [
        Row(
            "projection",
            f"item writes a month, {changes} changes in {RUNS} runs",
            raw["months"][str(changes)]["projected"],
            "",
            raw["months"][str(changes)]["plain"],
            "without projection",
        )
        for changes in CHANGES
    ]
    rows += [
        Row(
            "projection",
            "same, 4 changes, projection stored at every move",
            raw["every_move_4"],
            "",
            raw["months"]["4"]["projected"],
            "materiality rule (shipped)",
        ),
        Row("projection", "tenant_series over 10,000 items of 10 entries, CPU", raw["series_cpu_s"], "s"),
    ]
    return rows, raw


def main() -> None:
    for changes in CHANGES:
        plain = sum(month(changes, project=False, seed=s) for s in range(20)) / 20
        projected = sum(month(changes, project=True, seed=s) for s in range(20)) / 20
        print(f"{changes} changes/month, {RUNS} runs: item writes {plain:.1f} without projection, {projected:.1f} with")
    share, units = projection.MATERIAL_SHARE, projection.MATERIAL_UNITS
    projection.MATERIAL_SHARE, projection.MATERIAL_UNITS = 0.0, 1e-9
    try:
        every = sum(month(4, project=True, seed=s) for s in range(20)) / 20
    finally:
        projection.MATERIAL_SHARE, projection.MATERIAL_UNITS = share, units
    print(f"4 changes/month, projection stored at every move: {every:.1f} item writes")
    seconds = series_cpu()
    print(f"tenant_series, 10,000 Keepnet items with 10 log entries: {seconds:.2f} s ({seconds * 100:.0f} us a tenant)")


if __name__ == "__main__":
    main()

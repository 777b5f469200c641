"""The in-memory twin of `DynamoStore`: the same domain API, the same conditional-write rules, no AWS.

For unit tests of the pipeline (where moto adds nothing but time). `fail` names methods that raise
`StoreError`, the way a refused DynamoDB call surfaces from the real store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from usagewatch.continuation import ChunkedRunState, ChunkKey
from usagewatch.errors import StoreError
from usagewatch.model import AlertState, MetricSeries, Number, RunRecord, StoredUsage, Total, UsageRecord, utc_iso
from usagewatch.store import AlertKey, key_part

UsageKey = tuple[str, str, str, str, str]
"""(period, vendor, account_id, tenant_id, metric)"""


@dataclass
class _Chunked:
    count: int
    started_at: str
    done: set[int] = field(default_factory=set)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    finished: bool = False
    read: set[str] = field(default_factory=set)


class MemoryStore:
    """Everything a run writes, kept in dicts; reads return the model objects `DynamoStore` returns."""

    def __init__(self, *, fail: Iterable[str] = ()) -> None:
        self.fail = set(fail)
        self.writes = 0
        self.usage: dict[UsageKey, StoredUsage] = {}
        self.snapshots: dict[tuple[str, str, str, str], dict[tuple[str, str], StoredUsage]] = {}
        self.totals: dict[tuple[str, str, str, str], Total] = {}
        self.run_records: dict[tuple[str, str], dict[str, RunRecord]] = {}
        self.alerts: dict[tuple[str, str, AlertKey], AlertState] = {}
        self.leases: dict[tuple[str, str], tuple[str, datetime]] = {}
        self.chunked: dict[ChunkKey, _Chunked] = {}
        self._lock = threading.Lock()  # the pipeline stores alert states from a few threads

    def _check(self, operation: str) -> None:
        if operation in self.fail:
            raise StoreError(f"DynamoDB {operation} failed: simulated")

    # --- writes -------------------------------------------------------------------------------

    def add_tenant(self, records: Sequence[UsageRecord], *, as_of: datetime, collected_at: datetime) -> None:
        """Written only when the tenant's numbers changed, as `DynamoStore.add_tenant` (`writes` counts them)."""
        self._check("add_tenant")
        as_of_text = utc_iso(as_of)
        for record in records:
            period = str(record.period)
            identity = (record.vendor, record.account_id, record.tenant_id, record.metric)
            stored = self.usage.get((period, *identity))
            if stored is not None and stored.record == record and stored.removed_at is None:
                continue
            self.writes += 1
            self.usage[(period, *identity)] = StoredUsage(record, utc_iso(collected_at))
            history = self.snapshots.setdefault(identity, {})
            history[(as_of_text, period)] = StoredUsage(record, utc_iso(collected_at), as_of=as_of_text)

    def flush(self) -> None:
        self._check("flush")

    def write_totals(self, totals: Iterable[Total]) -> None:
        self._check("write_totals")
        for total in totals:
            self.totals[(total.period, total.vendor, total.account_id, total.metric)] = total

    def mark_removed(self, usages: Iterable[StoredUsage], *, removed_at: str) -> None:
        self._check("mark_removed")
        for usage in usages:
            record = usage.record
            key = (str(record.period), record.vendor, record.account_id, record.tenant_id, record.metric)
            self.usage[key] = replace(usage, removed_at=removed_at, as_of=None)

    def write_run(self, run: RunRecord) -> None:
        self._check("write_run")
        self.run_records.setdefault((run.vendor, run.account_id), {})[run.as_of] = run

    def put_alert(self, state: AlertState) -> bool:
        """Conditional on the version read, as `DynamoStore.put_alert`."""
        self._check("put_alert")
        key = (state.vendor, state.account_id, (state.tenant_id, state.period, state.metric, state.rule))
        with self._lock:
            stored = self.alerts.get(key)
            if state.version:
                allowed = stored is not None and stored.version == state.version
            else:
                allowed = stored is None or stored.status != "firing"
            if not allowed:
                return False
            self.alerts[key] = replace(state, version=state.version + 1)
            return True

    # --- leases ---------------------------------------------------------------------------------

    def acquire_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime, seconds: float) -> bool:
        self._check("acquire_lease")
        held = self.leases.get((vendor, account_id))
        if held is not None and held[1] >= now and held[0] != owner:
            return False
        self.leases[(vendor, account_id)] = (owner, now + timedelta(seconds=seconds))
        return True

    def holds_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime) -> bool:
        self._check("holds_lease")
        held = self.leases.get((vendor, account_id))
        return held is not None and held[0] == owner and held[1] > now

    def release_lease(self, vendor: str, account_id: str, *, owner: str) -> None:
        self._check("release_lease")
        held = self.leases.get((vendor, account_id))
        if held is not None and held[0] == owner:
            del self.leases[(vendor, account_id)]

    # --- runs split over several invocations ------------------------------------------------

    def start_chunked_run(self, key: ChunkKey, *, started_at: str, chunk_count: int) -> None:
        self._check("start_chunked_run")
        self.chunked.setdefault(key, _Chunked(chunk_count, started_at))

    def complete_chunk(
        self,
        key: ChunkKey,
        index: int,
        *,
        failures: Mapping[str, tuple[str, str]],
        error: str | None,
        read: Iterable[str] = (),
    ) -> ChunkedRunState:
        self._check("complete_chunk")
        run = self.chunked[key]
        run.failures.update(failures)
        run.read.update(read)
        if error is not None:
            run.errors[index] = error
        run.done.add(index)
        if len(run.done) < run.count:
            return ChunkedRunState(run.count, len(run.done), run.started_at)
        errors = tuple(run.errors[i] for i in sorted(run.errors))
        return ChunkedRunState(
            run.count, len(run.done), run.started_at, dict(run.failures), errors, frozenset(run.read)
        )

    def claim_finish(self, key: ChunkKey) -> bool:
        self._check("claim_finish")
        run = self.chunked[key]
        if run.finished:
            return False
        run.finished = True
        return True

    # --- reads --------------------------------------------------------------------------------

    def open_alerts(self, vendor: str, account_id: str) -> dict[str, AlertState]:
        self._check("open_alerts")
        return {
            s.alert_id: s
            for (v, a, _k), s in self.alerts.items()
            if (v, a) == (vendor, account_id) and s.status == "firing"
        }

    def alert_states(self, vendor: str, account_id: str, keys: Iterable[AlertKey]) -> dict[str, AlertState]:
        self._check("alert_states")
        found = (self.alerts.get((vendor, account_id, key)) for key in set(keys))
        return {s.alert_id: s for s in found if s is not None}

    def tenant_alerts(self, vendor: str, account_id: str, tenant_id: str) -> list[AlertState]:
        return [
            self.alerts[k]
            for k in sorted(self.alerts, key=lambda k: (key_part(k[2][0]), *k[2][1:]))
            if k[:2] == (vendor, account_id) and k[2][0] == tenant_id
        ]

    def period_usage(
        self, period: str, *, vendor: str | None = None, account_id: str | None = None
    ) -> list[StoredUsage]:
        self._check("period_usage")
        return [
            self.usage[k]
            for k in sorted(self.usage, key=lambda k: (k[1], k[2], key_part(k[3]), k[4]))
            if k[0] == period and vendor in (None, k[1]) and account_id in (None, k[2])
        ]

    def tenant_usage(self, vendor: str, account_id: str, tenant_id: str, period: str) -> list[StoredUsage]:
        self._check("tenant_usage")
        return [
            u
            for u in self.period_usage(period, vendor=vendor, account_id=account_id)
            if u.record.tenant_id == tenant_id
        ]

    def period_totals(self, period: str) -> list[Total]:
        return [self.totals[k] for k in sorted(self.totals) if k[0] == period]

    def metric_history(self, vendor: str, account_id: str, tenant_id: str, metric: str) -> list[StoredUsage]:
        history = self.snapshots.get((vendor, account_id, tenant_id, metric), {})
        return [history[k] for k in sorted(history)]

    def tenant_series(self, vendor: str, account_id: str, tenant_id: str, period: str) -> dict[str, MetricSeries]:
        """As `DynamoStore.tenant_series`, from the readings kept here (every change, not only the item's log)."""
        found: dict[str, MetricSeries] = {}
        for (v, a, t, metric), history in self.snapshots.items():
            if (v, a, t) != (vendor, account_id, tenant_id):
                continue
            points: list[tuple[str, Number]] = []
            for (as_of, p), usage in sorted(history.items()):
                if p == period and (not points or points[-1][1] != usage.record.value):
                    points.append((as_of, usage.record.value))
            current = self.usage.get((period, vendor, account_id, tenant_id, metric))
            if points and current is not None:
                record = current.record
                found[metric] = MetricSeries(
                    tuple(points), record.projected, record.projection_source, record.projection_fit
                )
        return found

    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]:
        return {
            (u.record.tenant_id, u.record.metric): u.record.value
            for u in self.period_usage(period, vendor=vendor, account_id=account_id)
            if u.removed_at is None
        }

    def runs(self, vendor: str, account_id: str, *, limit: int = 10) -> list[RunRecord]:
        records = self.run_records.get((vendor, account_id), {})
        return [records[k] for k in sorted(records, reverse=True)[:limit]]

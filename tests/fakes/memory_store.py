"""The in-memory twin of `DynamoStore` for the pipeline's unit tests (where moto adds nothing but time).

It keeps what the table keeps, in dicts instead of items: usage items in the item shape of
`usagewatch.store.usage_shape` (so a tenant's series holds only what its bounded change log holds, as in
DynamoDB), snapshots, accounts, totals, runs, alerts with their versions, leases, split runs, identities. The
conditional rules are `DynamoStore`'s; so are the errors: `StoreError` for a refused call, `OldShapeError` for a
period that holds only old-shape usage. Writes of `add_tenant` wait in a buffer until `flush`, as the real one's.
tests/integration/test_store_contract.py runs both through the same cases.

Failure on demand: `fail_next(method, error)` makes the next call of a public method raise (a `StoreError` naming
the method unless another error is given); `fail` is a set of methods that fail every time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from usagewatch.continuation import ChunkedRunState, ChunkKey
from usagewatch.errors import StoreError
from usagewatch.model import Number, UsageRecord, utc_iso
from usagewatch.store import AlertKey, OldShapeError, key_part
from usagewatch.store.usage import metric_changes, series_of, usage_keys, with_log
from usagewatch.store.usage_shape import (
    OLD_SHAPE,
    digest,
    group_by_period,
    merge_metrics,
    stored_usages,
    tenant_attributes,
)
from usagewatch.stored import AlertState, MetricSeries, RunRecord, StoredUsage, Total

TenantKey = tuple[str, str, str, str]
"""(vendor, account_id, period, tenant_id): one usage item."""


@dataclass
class _Chunked:
    count: int
    started_at: str
    done: set[int] = field(default_factory=set)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    read: dict[int, frozenset[str]] = field(default_factory=dict)
    finished: bool = False


class MemoryStore:
    """Everything a run writes, kept in dicts; reads return the model objects `DynamoStore` returns."""

    def __init__(self, *, fail: Iterable[str] = (), table_name: str = "memory", change_log: bool = True) -> None:
        self.table_name = table_name
        self.fail = set(fail)
        self._fail_next: dict[str, BaseException] = {}
        self._change_log = change_log
        self.writes = 0
        """Tenant items written (a tenant whose reading did not change writes nothing)."""
        self.items: dict[TenantKey, dict[str, Any]] = {}
        self.snapshots: dict[tuple[str, str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self.accounts: set[tuple[str, str, str]] = set()
        self.old_shape_periods: set[str] = set()
        """Periods holding usage of the shape before one item per tenant (`usagewatch migrate` rewrites them)."""
        self.totals: dict[tuple[str, str], Total] = {}
        self.run_records: dict[tuple[str, str], dict[str, RunRecord]] = {}
        self.alerts: dict[tuple[str, str, str], AlertState] = {}
        self.leases: dict[tuple[str, str], tuple[str, str]] = {}
        self.chunked: dict[ChunkKey, _Chunked] = {}
        self.identities: dict[tuple[str, str], dict[str, str]] = {}
        self._pending: dict[TenantKey, dict[str, Any]] = {}
        self._pending_snapshots: list[tuple[tuple[str, str, str], dict[str, Any]]] = []
        self._pending_accounts: set[tuple[str, str, str]] = set()
        self._lock = threading.RLock()  # the pipeline stores alert states from a few threads

    # --- failure on demand -------------------------------------------------------------------

    def fail_next(self, method: str, error: BaseException | None = None) -> None:
        """The next call of `method` raises `error` (default: a StoreError, as a refused DynamoDB call)."""
        if not callable(getattr(self, method, None)) or method.startswith("_"):
            raise ValueError(f"MemoryStore has no public method {method!r}")
        self._fail_next[method] = error or StoreError(f"DynamoDB {method} failed: simulated")

    def _check(self, operation: str) -> None:
        with self._lock:
            error = self._fail_next.pop(operation, None)
        if error is not None:
            raise error
        if operation in self.fail:
            raise StoreError(f"DynamoDB {operation} failed: simulated")

    def _refuse_old_shape(self, period: str) -> None:
        if period in self.old_shape_periods:
            raise OldShapeError(OLD_SHAPE.format(table=self.table_name))

    # --- usage writes ------------------------------------------------------------------------------

    def add_usage(self, record: UsageRecord, *, as_of: datetime, collected_at: datetime) -> None:
        self._check("add_usage")
        self.add_tenant([record], as_of=as_of, collected_at=collected_at)

    def add_tenant(self, records: Sequence[UsageRecord], *, as_of: datetime, collected_at: datetime) -> None:
        """As `DynamoStore.add_tenant`: an item per tenant and period, written (at `flush`) only when its reading
        changed; the reading it replaces goes into the item's log, or (log full) the stored item to a snapshot."""
        self._check("add_tenant")
        as_of_text = utc_iso(as_of)
        with self._lock:
            for period, group in group_by_period(records).items():
                first = group[0]
                key = (first.vendor, first.account_id, period, first.tenant_id)
                if not self._has_account_items(first.vendor, first.account_id, period):
                    self._refuse_old_shape(period)
                    self._pending_accounts.add((period, first.vendor, first.account_id))
                attributes = {**tenant_attributes(group, utc_iso(collected_at)), "as_of": as_of_text}
                stored = self._pending.get(key) or self.items.get(key)
                if stored is not None and not set(stored.get("metrics", {})) <= attributes["metrics"].keys():
                    attributes["metrics"] = merge_metrics(stored, attributes)
                if stored is not None and digest(stored) == digest(attributes):
                    continue
                keys = usage_keys(first.vendor, first.account_id, period, first.tenant_id)
                item = with_log(keys, stored, attributes) if self._change_log else attributes
                owner = (first.vendor, first.account_id, first.tenant_id)
                if stored is None or not self._change_log:
                    self._pending_snapshots.append((owner, attributes))
                elif item is attributes and "as_of" in stored:
                    self._pending_snapshots.append((owner, dict(stored)))
                self._pending[key] = item

    def _has_account_items(self, vendor: str, account_id: str, period: str) -> bool:
        return any(k[:3] == (vendor, account_id, period) for k in (*self.items, *self._pending))

    def flush(self) -> None:
        """Land what `add_tenant` buffered; a failed flush loses it (to be compared again by the next run)."""
        try:
            self._check("flush")
        except BaseException:
            self._drop_pending()
            raise
        with self._lock:
            self.writes += len(self._pending)
            self.items.update(self._pending)
            for owner, reading in self._pending_snapshots:
                snapshot = {**reading, "record_type": "snapshot"}
                self.snapshots.setdefault(owner, {})[(str(reading["as_of"]), str(reading["period"]))] = snapshot
            self.accounts |= self._pending_accounts
        self._drop_pending()

    def _drop_pending(self) -> None:
        with self._lock:
            self._pending, self._pending_snapshots, self._pending_accounts = {}, [], set()

    def write_totals(self, totals: Iterable[Total]) -> None:
        self._check("write_totals")
        for total in totals:
            self.totals[(total.period, f"{total.vendor}#{total.account_id}#{total.metric}")] = total
        self.flush()

    def mark_removed(self, usages: Iterable[StoredUsage], *, removed_at: str) -> None:
        """Kept for the record (its log and `as_of` too), out of every total."""
        self._check("mark_removed")
        tenants: dict[TenantKey, list[StoredUsage]] = {}
        for usage in usages:
            record = usage.record
            key = (record.vendor, record.account_id, str(record.period), record.tenant_id)
            tenants.setdefault(key, []).append(usage)
        with self._lock:
            for key, stored in tenants.items():
                found = self._pending.get(key) or self.items.get(key)
                if found:
                    attributes = dict(found)
                else:
                    attributes = tenant_attributes([u.record for u in stored], max(u.collected_at for u in stored))
                attributes["removed_at"] = removed_at
                self._pending[key] = attributes
        self.flush()

    # --- usage reads ---------------------------------------------------------------------------

    def period_accounts(self, period: str, *, vendor: str | None = None) -> list[tuple[str, str]]:
        self._check("period_accounts")
        found = [(v, a) for p, v, a in self.accounts if p == period and vendor in (None, v)]
        return sorted(found, key=lambda pair: f"{pair[0]}#{pair[1]}")

    def period_usage(
        self, period: str, *, vendor: str | None = None, account_id: str | None = None
    ) -> list[StoredUsage]:
        self._check("period_usage")
        found = [
            u
            for (v, a, p, _t), item in self.items.items()
            if p == period and vendor in (None, v) and account_id in (None, a)
            for u in stored_usages(item)
        ]
        if not found:
            self._refuse_old_shape(period)
        return sorted(
            found, key=lambda u: (u.record.vendor, u.record.account_id, key_part(u.record.tenant_id), u.record.metric)
        )

    def accounts_holding(
        self, vendor: str, accounts: Sequence[str], period: str, tenant_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        self._check("accounts_holding")
        found = {t: sorted(a for a in accounts if (vendor, a, period, t) in self.items) for t in tenant_ids}
        return {t: a for t, a in found.items() if a}

    def tenant_usage(self, vendor: str, account_id: str, tenant_id: str, period: str) -> list[StoredUsage]:
        self._check("tenant_usage")
        item = self.items.get((vendor, account_id, period, tenant_id))
        if item is None:
            self._refuse_old_shape(period)
            return []
        return stored_usages(item)

    def period_totals(self, period: str) -> list[Total]:
        self._check("period_totals")
        return [self.totals[k] for k in sorted(self.totals) if k[0] == period]

    def tenant_series(self, vendor: str, account_id: str, tenant_id: str, period: str) -> dict[str, MetricSeries]:
        """What the tenant's stored item and its bounded log hold, as `DynamoStore.tenant_series`."""
        self._check("tenant_series")
        key = (vendor, account_id, period, tenant_id)
        item = self._pending.get(key) or self.items.get(key)
        return {} if item is None else series_of(item)

    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]:
        self._check("closing_values")
        return {
            (tenant_id, metric): entry["value"]
            for (v, a, p, tenant_id), item in self.items.items()
            if (v, a, p) == (vendor, account_id, period) and not item.get("removed_at")
            for metric, entry in item.get("metrics", {}).items()
        }

    def metric_history(self, vendor: str, account_id: str, tenant_id: str, metric: str) -> list[StoredUsage]:
        """Every change of the metric (repeats left out, `removed_at` a change), from snapshots and items."""
        self._check("metric_history")
        snapshots = list(self.snapshots.get((vendor, account_id, tenant_id), {}).values())
        periods = {str(s["period"]) for s in snapshots}
        items = [self.items[k] for p in sorted(periods) if (k := (vendor, account_id, p, tenant_id)) in self.items]
        return metric_changes([*snapshots, *items], metric)

    def monthly_usage(self, vendor: str, account_id: str, tenant_id: str, periods: Iterable[str]) -> list[StoredUsage]:
        self._check("monthly_usage")
        found = [
            u
            for period in sorted(set(periods))
            if (item := self.items.get((vendor, account_id, period, tenant_id))) is not None
            for u in stored_usages(item)
        ]
        return sorted(found, key=lambda u: (u.record.period, u.record.metric))

    def monthly_history(
        self, vendor: str, account_id: str, tenant_id: str, metric: str, periods: Iterable[str]
    ) -> list[StoredUsage]:
        self._check("monthly_history")
        return [u for u in self.monthly_usage(vendor, account_id, tenant_id, periods) if u.record.metric == metric]

    # --- runs ------------------------------------------------------------------------------------

    def write_run(self, run: RunRecord) -> None:
        self._check("write_run")
        with self._lock:
            self.run_records.setdefault((run.vendor, run.account_id), {})[run.as_of] = run

    def runs(self, vendor: str, account_id: str, *, limit: int = 10) -> list[RunRecord]:
        self._check("runs")
        records = self.run_records.get((vendor, account_id), {})
        return [records[k] for k in sorted(records, reverse=True)[:limit]]

    def runs_between(self, vendor: str, account_id: str, start: str, end: str, *, limit: int = 10) -> list[RunRecord]:
        self._check("runs_between")
        records = self.run_records.get((vendor, account_id), {})
        return [records[k] for k in sorted(records, reverse=True) if start <= k <= end][:limit]

    # --- alerts ----------------------------------------------------------------------------------

    @staticmethod
    def _alert_sk(key: AlertKey) -> str:
        return "#".join((key_part(key[0]), *key[1:]))

    def put_alert(self, state: AlertState) -> bool:
        """Conditional on the version read, as `DynamoStore.put_alert`; False when another run got there first."""
        self._check("put_alert")
        sort_key = self._alert_sk((state.tenant_id, state.period, state.metric, state.rule))
        key = (state.vendor, state.account_id, sort_key)
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

    def open_alerts(self, vendor: str, account_id: str) -> dict[str, AlertState]:
        self._check("open_alerts")
        with self._lock:
            firing = [s for (v, a, _k), s in self.alerts.items() if (v, a) == (vendor, account_id)]
        return {s.alert_id: s for s in sorted(firing, key=lambda s: s.alert_id) if s.status == "firing"}

    def alert_states(self, vendor: str, account_id: str, keys: Iterable[AlertKey]) -> dict[str, AlertState]:
        self._check("alert_states")
        with self._lock:
            found = (self.alerts.get((vendor, account_id, self._alert_sk(key))) for key in sorted(set(keys)))
            return {s.alert_id: s for s in found if s is not None}

    def tenant_alerts(self, vendor: str, account_id: str, tenant_id: str) -> list[AlertState]:
        self._check("tenant_alerts")
        prefix = f"{key_part(tenant_id)}#"
        with self._lock:
            return [
                self.alerts[k]
                for k in sorted(self.alerts, key=lambda k: k[2])
                if k[:2] == (vendor, account_id) and k[2].startswith(prefix)
            ]

    # --- leases ----------------------------------------------------------------------------------

    def acquire_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime, seconds: float) -> bool:
        """Free, expired or already ours (the times compared as the table compares them: ISO text)."""
        self._check("acquire_lease")
        with self._lock:
            held = self.leases.get((vendor, account_id))
            if held is not None and not (held[1] < utc_iso(now) or held[0] == owner):
                return False
            self.leases[(vendor, account_id)] = (owner, utc_iso(now + timedelta(seconds=seconds)))
            return True

    def holds_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime) -> bool:
        self._check("holds_lease")
        held = self.leases.get((vendor, account_id))
        return held is not None and held[0] == owner and held[1] > utc_iso(now)

    def release_lease(self, vendor: str, account_id: str, *, owner: str) -> None:
        self._check("release_lease")
        with self._lock:
            held = self.leases.get((vendor, account_id))
            if held is not None and held[0] == owner:
                del self.leases[(vendor, account_id)]

    # --- runs split over several invocations ------------------------------------------------

    def start_chunked_run(self, key: ChunkKey, *, started_at: str, chunk_count: int) -> None:
        """A retried start keeps the progress already made."""
        self._check("start_chunked_run")
        with self._lock:
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
        """Idempotent per chunk; once every chunk is done, their failures, errors (in the table's order of the
        chunk numbers as text) and the tenants they read."""
        self._check("complete_chunk")
        with self._lock:
            run = self.chunked[key]
            run.failures.update(failures)
            tenants = frozenset(read)
            if tenants:
                run.read[index] = tenants
            if error is not None:
                run.errors[index] = error
            run.done.add(index)
            if len(run.done) < run.count:
                return ChunkedRunState(run.count, len(run.done), run.started_at)
            errors = tuple(run.errors[i] for i in sorted(run.errors, key=str))
            seen = frozenset[str]().union(*run.read.values())
            return ChunkedRunState(run.count, len(run.done), run.started_at, dict(run.failures), errors, seen)

    def claim_finish(self, key: ChunkKey) -> bool:
        """True for exactly one caller."""
        self._check("claim_finish")
        with self._lock:
            run = self.chunked[key]
            if run.finished:
                return False
            run.finished = True
            return True

    # --- identities a vendor does not send ------------------------------------------------------

    def recall_identities(self, vendor: str, account_id: str) -> dict[str, str]:
        self._check("recall_identities")
        with self._lock:
            return dict(self.identities.get((vendor, account_id), {}))

    def remember_identities(self, vendor: str, account_id: str, identities: Mapping[str, str]) -> None:
        """The first id given to a key wins."""
        self._check("remember_identities")
        with self._lock:
            known = self.identities.setdefault((vendor, account_id), {})
            for key, value in identities.items():
                known.setdefault(key, value)

"""Usage: one item per tenant and period with its change log, snapshots, the accounts of a month, totals, and the
history reads (item shape: usage_shape.py; keys: docs/data-model.md).

A run reads its account's stored tenants once per period (SHARDS paged Queries) and writes a tenant's item only
when its reading changed (the reading it replaces goes into the item's log, or with the log into a snapshot when
the log is full); freshness is the run record's. Snapshots are keyed by the run's as-of time, so a retried
invocation overwrites instead of duplicating.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any, Final

from usagewatch.model import Number, Period, Tenant, UsageRecord, Window, parse_utc, utc_iso
from usagewatch.store.table import Table, key_part, known_fields, serialize
from usagewatch.store.usage_shape import (
    OLD_SHAPE,
    OldShapeError,
    digest,
    group_by_period,
    item_size,
    log_entry,
    merge_metrics,
    readings,
    same_tenant_fields,
    stored_usages,
    tenant_attributes,
    usage_pk,
    usage_pks,
    write_budget,
)
from usagewatch.stored import MetricSeries, StoredUsage, Total

_TOTAL_FIELDS: Final = frozenset(f.name for f in fields(Total))


def usage_record(item: Mapping[str, Any]) -> UsageRecord:
    """A stored usage item back as the record it was written from."""
    tenant = Tenant(
        str(item["tenant_id"]),
        str(item.get("tenant_name", "")),
        parent_tenant_id=item.get("parent_tenant_id"),
        billed=bool(item.get("billed", True)),
    )
    window = Window(Period.parse(str(item["period"])), parse_utc(item["period_start"]), parse_utc(item["period_end"]))
    return UsageRecord(
        vendor=str(item["vendor"]),
        account_id=str(item["account_id"]),
        tenant=tenant,
        metric=str(item["metric"]),
        value=item["value"],
        unit=str(item["unit"]),
        window=window,
        quota=item.get("quota"),
        projected=item.get("projected"),
        minimum=item.get("minimum"),
        limit_exceeded=item.get("limit_exceeded"),
        projected_next_period=item.get("projected_next_period"),
    )


def stored_usage(item: Mapping[str, Any]) -> StoredUsage:
    """A usage item or snapshot as the domain reads it."""
    return StoredUsage(usage_record(item), str(item["collected_at"]), item.get("removed_at"), item.get("as_of"))


def total(item: Mapping[str, Any]) -> Total:
    return Total(**known_fields(item, _TOTAL_FIELDS))


Remembered = tuple[bytes, frozenset[str], bytes]
"""A stored tenant item as a run keeps it: its fingerprint, its metric names, the item packed by `marshal` (read
back only when the tenant changed, to extend its log: a fraction of the memory of the item as Python objects, and
quicker to pack and unpack than JSON; the bytes never leave the process)."""


def _unpack(packed: bytes) -> dict[str, Any]:
    item: dict[str, Any] = marshal.loads(packed)  # noqa: S302  # nosec B302 - only bytes this process packed
    return item


def remembered(item: Mapping[str, Any], fingerprint: bytes | None = None) -> Remembered:
    """`fingerprint` b"": not computed yet (the item's own digest, once needed)."""
    packed = marshal.dumps(item if type(item) is dict else dict(item))
    return (digest(item) if fingerprint is None else fingerprint, frozenset(item.get("metrics", {})), packed)


def snapshot_pk(vendor: str, account_id: str, tenant: str) -> str:
    """The partition of one tenant's snapshots (`tenant` already a key part)."""
    return f"SNAP#{vendor}#{account_id}#{tenant}"


def account_key(vendor: str, account_id: str, period: str) -> dict[str, Any]:
    """The item saying the account has usage in the period."""
    return {
        "pk": f"ACCOUNTS#{period}",
        "sk": f"{vendor}#{account_id}",
        "record_type": "account",
        "vendor": vendor,
        "account_id": account_id,
        "period": period,
    }


def usage_keys(vendor: str, account_id: str, period: str, tenant_id: str) -> dict[str, str]:
    """The key of one tenant's usage item."""
    tenant = key_part(tenant_id)
    return {"pk": usage_pk(vendor, account_id, period, tenant), "sk": tenant}


def with_log(keys: Mapping[str, str], stored: Mapping[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new` with the stored reading appended to the stored log, if it still fits the write units of `new`;
    else `new` itself (the caller snapshots the stored item)."""
    if stored is None or "as_of" not in stored or not same_tenant_fields(stored, new):
        return new
    logged = {**new, "log": [*stored.get("log", []), log_entry(stored, new)]}
    budget = write_budget(item_size(serialize({**keys, **new})))
    return logged if item_size(serialize({**keys, **logged})) <= budget else new


def series_of(item: Mapping[str, Any]) -> dict[str, MetricSeries]:
    """Each metric of a stored usage item as its change log has it (a value kept once per change)."""
    points: dict[str, list[tuple[str, Any]]] = {}
    for state in readings(item):
        for metric, entry in state["metrics"].items():
            series = points.setdefault(metric, [])
            if not series or series[-1][1] != entry["value"]:
                series.append((str(state["as_of"]), entry["value"]))
    current = item.get("metrics", {})
    return {
        metric: MetricSeries(
            tuple(found),
            current.get(metric, {}).get("projected"),
            current.get(metric, {}).get("projection_source")
            or ("vendor" if current.get(metric, {}).get("projected") is not None else None),
            tuple(current.get(metric, {}).get("projection_fit") or ()) or None,
        )
        for metric, found in points.items()
    }


def metric_changes(items: Iterable[Mapping[str, Any]], metric: str) -> list[StoredUsage]:
    """One metric at each change of it, oldest first, from a tenant's snapshots and usage items: every reading
    they hold, one per (as_of, period), repeats left out (a change of `removed_at` is a change)."""
    states: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        for state in readings(item):
            states[(str(state["as_of"]), str(state["period"]))] = {**state, "record_type": "snapshot"}
    history: list[StoredUsage] = []
    last: dict[str, tuple[UsageRecord, str | None]] = {}
    for key in sorted(states):
        for usage in stored_usages(states[key]):
            seen = (usage.record, usage.removed_at)
            if usage.record.metric == metric and last.get(key[1]) != seen:
                last[key[1]] = seen
                history.append(usage)
    return history


class UsageTable(Table):
    """The usage room of the store."""

    def __init__(self, table_name: str, *, change_log: bool = True, **options: Any) -> None:
        """`change_log=False`: a full snapshot at every change instead (the shape before the log; bench only)."""
        super().__init__(table_name, **options)
        self._change_log = change_log
        self.tenants_changed = 0
        self.tenants_unchanged = 0
        self._readings: dict[tuple[str, str, str], dict[str, Remembered]] = {}
        self._expiry: dict[str, int] = {}
        """What each (vendor, account, period) holds, by tenant key: read once per invocation, kept as written."""

    def _forget_reads(self) -> None:
        self._readings.clear()

    def add_usage(self, record: UsageRecord, *, as_of: datetime, collected_at: datetime) -> None:
        """A tenant with this one record (see `add_tenant`)."""
        self.add_tenant([record], as_of=as_of, collected_at=collected_at)

    def add_tenant(self, records: Sequence[UsageRecord], *, as_of: datetime, collected_at: datetime) -> None:
        """Queue one tenant's item per period, only where its reading differs from the stored one; the stored
        reading goes into the item's change log, or (log full, or the tenant's own fields changed) the stored item
        goes to a snapshot whole.

        Metrics stored but not in this reading (a past month reads fewer) are kept. `collected_at` becomes the
        item's "last changed"; an unchanged tenant writes nothing (the run record says how fresh it is).
        """
        as_of_text = utc_iso(as_of)
        for period, group in group_by_period(records).items():
            first = group[0]
            known = self._known(first.vendor, first.account_id, period)
            tenant = key_part(first.tenant_id)
            pk = usage_pk(first.vendor, first.account_id, period, tenant)
            attributes = {**tenant_attributes(group, utc_iso(collected_at)), "as_of": as_of_text}
            fingerprint, names, packed = known.get(tenant, (b"", frozenset(), b""))
            stored = _unpack(packed) if packed and not names <= attributes["metrics"].keys() else None
            if stored is not None:
                attributes["metrics"] = merge_metrics(stored, attributes)
            # A tenant not stored yet is written whatever it reads: its fingerprint waits until a reading is compared.
            fingerprint_now = digest(attributes) if packed else b""
            if packed and (fingerprint or digest(_unpack(packed))) == fingerprint_now:
                self.tenants_unchanged += 1
                continue
            self.tenants_changed += 1
            if packed and stored is None:
                stored = _unpack(packed)
            keys = {"pk": pk, "sk": tenant}
            item = with_log(keys, stored, attributes) if self._change_log else attributes
            encoded = serialize(item)
            snapshots = snapshot_pk(first.vendor, first.account_id, tenant)
            # The period's first reading is snapshotted too: it tells history the period is there.
            if stored is None or not self._change_log:
                self._queue_item({**encoded, **serialize(self._snapshot_keys(snapshots, attributes))})
            elif item is attributes and "as_of" in stored:
                self._queue({**stored, **self._snapshot_keys(snapshots, stored)})
            known[tenant] = remembered(item, fingerprint_now)
            self._queue_item({"pk": {"S": pk}, "sk": {"S": tenant}, **encoded})

    def _snapshot_keys(self, pk: str, reading: Mapping[str, Any]) -> dict[str, Any]:
        """What makes a usage item's attributes its snapshot: keys, type, TTL."""
        as_of = str(reading["as_of"])
        expires_at = self._expiry.get(as_of)
        if expires_at is None:  # a run snapshots at one or two as-of times: each parsed once
            expires_at = self._expiry[as_of] = int((parse_utc(as_of) + self.retention).timestamp())
        return {"pk": pk, "sk": f"{as_of}#{reading['period']}", "record_type": "snapshot", "expires_at": expires_at}

    def _known(self, vendor: str, account_id: str, period: str) -> dict[str, Remembered]:
        """The fingerprint and item of every stored tenant of the account's period, read once (the accounts of a
        run are collected one after the other: another account's are dropped)."""
        key = (vendor, account_id, period)
        known = self._readings.get(key)
        if known is None:
            self._readings = {k: v for k, v in self._readings.items() if k[:2] == key[:2]}
            items = self._account_items(vendor, account_id, period)
            if not items:
                self._refuse_old_shape(period)
                self._queue(account_key(vendor, account_id, period))
            known = {str(i["sk"]): remembered({k: v for k, v in i.items() if k not in ("pk", "sk")}) for i in items}
            self._readings[key] = known
        return known

    def accounts_holding(
        self, vendor: str, accounts: Sequence[str], period: str, tenant_ids: Sequence[str]
    ) -> dict[str, list[str]]:
        """Tenant id -> the accounts among `accounts` that store a reading of it in `period` (sorted): keyed
        reads (BatchGetItem), for the few tenants asked about."""
        keys = {
            (usage_pk(vendor, account, period, key_part(t)), key_part(t)): (t, account)
            for t in tenant_ids
            for account in accounts
        }
        found: dict[str, list[str]] = {}
        for key in self.get_items(list(keys)):
            tenant_id, account = keys[key]
            found.setdefault(tenant_id, []).append(account)
        return {t: sorted(a) for t, a in found.items()}

    def tenant_series(self, vendor: str, account_id: str, tenant_id: str, period: str) -> dict[str, MetricSeries]:
        """Each metric of the tenant's stored item as its change log has it (the period's items are read once per
        run, as `add_tenant` does; nothing is read per tenant). Empty for a tenant not stored yet."""
        remembered = self._known(vendor, account_id, period).get(key_part(tenant_id))
        if remembered is None:
            return {}
        return series_of(_unpack(remembered[2]))

    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]:
        """(tenant_id, metric) -> the value stored for the period (its latest: the closing one once the period is
        over), customers marked removed left out: SHARDS paged Queries (a run reads it once per account)."""
        return {
            (str(item["tenant_id"]), metric): entry["value"]
            for item in self._account_items(vendor, account_id, period)
            if not item.get("removed_at")
            for metric, entry in item.get("metrics", {}).items()
        }

    def _account_items(self, vendor: str, account_id: str, period: str) -> list[dict[str, Any]]:
        """Every tenant item of one account and period: one paged Query per shard."""
        return [
            item
            for pk in usage_pks(vendor, account_id, period)
            for item in self._query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}})
        ]

    def _refuse_old_shape(self, period: str) -> None:
        """StoreError naming `usagewatch migrate` when the period still has usage items of the old shape."""
        answer = self._call(
            "query",
            "read",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"USAGE#{period}"}},
            Limit=1,
        )
        if answer.get("Items"):
            raise OldShapeError(OLD_SHAPE.format(table=self.table_name))

    def write_totals(self, totals: Iterable[Total]) -> None:
        for total in totals:
            self._queue(
                {
                    "pk": f"TOTAL#{total.period}",
                    "sk": f"{total.vendor}#{total.account_id}#{total.metric}",
                    "record_type": "total",
                    **asdict(total),
                }
            )
        self.flush()

    def mark_removed(self, usages: Iterable[StoredUsage], *, removed_at: str) -> None:
        """Usage of customers gone from a complete listing: kept for the record (change log too), out of every
        total."""
        tenants: dict[tuple[str, str, str, str], list[StoredUsage]] = {}
        for usage in usages:
            record = usage.record
            tenants.setdefault(
                (record.vendor, record.account_id, key_part(record.tenant_id), str(record.period)), []
            ).append(usage)
        keys = {k: (usage_pk(k[0], k[1], k[3], k[2]), k[2]) for k in tenants}
        items = self.get_items(list(keys.values()))
        for (vendor, account_id, tenant, period), stored in tenants.items():
            pk, sk = keys[(vendor, account_id, tenant, period)]
            changed_at = max(u.collected_at for u in stored)
            found = items.get((pk, sk))
            if found:
                attributes = {k: v for k, v in found.items() if k not in ("pk", "sk")}
            else:
                attributes = tenant_attributes([u.record for u in stored], changed_at)
            attributes["removed_at"] = removed_at
            self._queue({"pk": pk, "sk": sk, **attributes})
            known = self._readings.get((vendor, account_id, period))
            if known is not None:
                known[tenant] = remembered(attributes)
        self.flush()

    def period_usage(
        self, period: str, *, vendor: str | None = None, account_id: str | None = None
    ) -> list[StoredUsage]:
        """All usage of one period, optionally narrowed to a vendor or one of its accounts: the accounts of the
        month (one Query), then each account's tenants (SHARDS Queries each)."""
        if vendor is not None and account_id is not None:
            pairs = [(vendor, account_id)]
        else:
            pairs = [p for p in self.period_accounts(period, vendor=vendor) if account_id in (None, p[1])]
        found = [u for v, a in pairs for item in self._account_items(v, a, period) for u in stored_usages(item)]
        if not found:
            self._refuse_old_shape(period)
        return sorted(
            found, key=lambda u: (u.record.vendor, u.record.account_id, key_part(u.record.tenant_id), u.record.metric)
        )

    def period_accounts(self, period: str, *, vendor: str | None = None) -> list[tuple[str, str]]:
        """The (vendor, account) pairs with usage stored for the period."""
        condition = "pk = :pk" + (" AND begins_with(sk, :prefix)" if vendor else "")
        values: dict[str, Any] = {":pk": {"S": f"ACCOUNTS#{period}"}}
        if vendor:
            values[":prefix"] = {"S": f"{vendor}#"}
        items = self._query(KeyConditionExpression=condition, ExpressionAttributeValues=values)
        return [(str(i["vendor"]), str(i["account_id"])) for i in items]

    def tenant_usage(self, vendor: str, account_id: str, tenant_id: str, period: str) -> list[StoredUsage]:
        tenant = key_part(tenant_id)
        item = self.get_items([(usage_pk(vendor, account_id, period, tenant), tenant)])
        if not item:
            self._refuse_old_shape(period)
        return [u for found in item.values() for u in stored_usages(found)]

    def period_totals(self, period: str) -> list[Total]:
        return [
            total(item)
            for item in self._query(
                KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": f"TOTAL#{period}"}}
            )
        ]

    def metric_history(self, vendor: str, account_id: str, tenant_id: str, metric: str) -> list[StoredUsage]:
        """One tenant's metric at each change of it, oldest first (the value at time T is the last one before T):
        the readings of its snapshots and of the change logs of its items of those periods (keyed reads)."""
        tenant = key_part(tenant_id)
        snapshots = list(
            self._query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": snapshot_pk(vendor, account_id, tenant)}},
            )
        )
        periods = {str(i["period"]) for i in snapshots}
        items = self.get_items([(usage_pk(vendor, account_id, p, tenant), tenant) for p in sorted(periods)])
        return metric_changes([*snapshots, *items.values()], metric)

    def monthly_history(
        self, vendor: str, account_id: str, tenant_id: str, metric: str, periods: Iterable[str]
    ) -> list[StoredUsage]:
        """The latest value of one tenant's metric for each period asked, oldest first (keyed reads)."""
        return [u for u in self.monthly_usage(vendor, account_id, tenant_id, periods) if u.record.metric == metric]

    def monthly_usage(self, vendor: str, account_id: str, tenant_id: str, periods: Iterable[str]) -> list[StoredUsage]:
        """Every metric of one tenant for each period asked, by period then metric: one BatchGetItem per 100 months."""
        tenant = key_part(tenant_id)
        items = self.get_items([(usage_pk(vendor, account_id, p, tenant), tenant) for p in sorted(set(periods))])
        found = [u for item in items.values() for u in stored_usages(item)]
        return sorted(found, key=lambda u: (u.record.period, u.record.metric))

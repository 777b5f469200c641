"""The usage item's shape (part of the store: only `store.py` and the migration use it; docs/data-model.md).

One item per tenant and period holds every metric of it:

usage     pk USAGE#{vendor}#{account}#{period}#{shard}   sk {tenant}
          metrics {metric: {value, unit, quota, projected, minimum, limit_exceeded, projected_next_period}}
snapshot  pk SNAP#{vendor}#{account}#{tenant}             sk {as_of}#{period}   (one per change; TTL expires_at)
account   pk ACCOUNTS#{period}                            sk {vendor}#{account}  (who has usage in a month)

`shard` (0..SHARDS-1, from a hash of the tenant id) spreads one large account's month over SHARDS partitions; an
account's month is read back with SHARDS paged Queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from usagewatch.errors import StoreError
from usagewatch.model import Period, StoredUsage, Tenant, UsageRecord, Window, parse_utc, utc_iso

SHARDS: Final = 4
METRIC_FIELDS: Final = ("quota", "projected", "minimum", "limit_exceeded", "projected_next_period")
OLD_SHAPE: Final = (
    "this table holds usage in the old shape (one item per metric); run `usagewatch migrate --table {table}` "
    "(add --dry-run to see what it would change) before reading or collecting"
)


class OldShapeError(StoreError):
    """The table still holds usage of the old shape: `usagewatch migrate` rewrites it."""


def shard(key: str) -> int:
    return hashlib.sha256(key.encode()).digest()[0] % SHARDS


def usage_pk(vendor: str, account_id: str, period: str, tenant_key: str) -> str:
    return f"USAGE#{vendor}#{account_id}#{period}#{shard(tenant_key)}"


def usage_pks(vendor: str, account_id: str, period: str) -> list[str]:
    return [f"USAGE#{vendor}#{account_id}#{period}#{n}" for n in range(SHARDS)]


def tenant_attributes(records: Sequence[UsageRecord], changed_at: str) -> dict[str, Any]:
    """The item attributes of one tenant's records of one period (every record: the same tenant and period)."""
    first = records[0]
    window = first.window
    metrics: dict[str, dict[str, object]] = {}
    for record in records:
        entry: dict[str, object] = {"value": record.value, "unit": record.unit}
        for name in METRIC_FIELDS:
            value = getattr(record, name)
            if value is not None:
                entry[name] = value
        if record.window != window:
            entry["period_start"], entry["period_end"] = utc_iso(record.window.start), utc_iso(record.window.end)
        metrics[record.metric] = entry
    return {
        "record_type": "usage",
        "vendor": first.vendor,
        "account_id": first.account_id,
        "tenant_id": first.tenant.tenant_id,
        "tenant_name": first.tenant.tenant_name,
        "parent_tenant_id": first.tenant.parent_tenant_id,
        "billed": first.tenant.billed,
        "period": str(window.period),
        "period_start": utc_iso(window.start),
        "period_end": utc_iso(window.end),
        "collected_at": changed_at,
        "metrics": metrics,
    }


def reading(attributes: Mapping[str, Any]) -> tuple[object, ...]:
    """What a change is measured on: the tenant as listed and every metric's numbers (not when it was read)."""
    return (
        attributes.get("tenant_name"),
        attributes.get("parent_tenant_id"),
        attributes.get("billed", True),
        attributes.get("period_start"),
        attributes.get("period_end"),
        bool(attributes.get("removed_at")),
        _canonical(attributes.get("metrics", {})),
    )


def digest(attributes: Mapping[str, Any]) -> bytes:
    """A short fingerprint of `reading`: what a run keeps per stored tenant to tell a change."""
    return hashlib.blake2b(repr(reading(attributes)).encode(), digest_size=16).digest()


def merge_metrics(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The stored metrics a reading did not include (a past month reads fewer), under the new ones."""
    kept: dict[str, Any] = {}
    moved = (stored.get("period_start"), stored.get("period_end")) != (new["period_start"], new["period_end"])
    for metric, entry in stored.get("metrics", {}).items():
        own = {"period_start": stored["period_start"], "period_end": stored["period_end"]}
        kept[metric] = {**entry, **own} if moved and "period_start" not in entry else entry
    return {**kept, **new["metrics"]}


def _canonical(value: object) -> object:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def stored_usages(item: Mapping[str, Any]) -> list[StoredUsage]:
    """A tenant item (usage or snapshot) back as one StoredUsage per metric, metrics in name order."""
    tenant = Tenant(
        str(item["tenant_id"]),
        str(item.get("tenant_name", "")),
        parent_tenant_id=item.get("parent_tenant_id"),
        billed=bool(item.get("billed", True)),
    )
    period = Period.parse(str(item["period"]))
    window = Window(period, parse_utc(item["period_start"]), parse_utc(item["period_end"]))
    found: list[StoredUsage] = []
    for metric, entry in sorted(item.get("metrics", {}).items()):
        own = window
        if "period_start" in entry:
            own = Window(period, parse_utc(entry["period_start"]), parse_utc(entry["period_end"]))
        record = UsageRecord(
            vendor=str(item["vendor"]),
            account_id=str(item["account_id"]),
            tenant=tenant,
            metric=metric,
            value=entry["value"],
            unit=str(entry["unit"]),
            window=own,
            **{name: entry.get(name) for name in METRIC_FIELDS},
        )
        found.append(StoredUsage(record, str(item["collected_at"]), item.get("removed_at"), item.get("as_of")))
    return found


def group_by_period(records: Iterable[UsageRecord]) -> dict[str, list[UsageRecord]]:
    groups: dict[str, list[UsageRecord]] = {}
    for record in records:
        groups.setdefault(str(record.period), []).append(record)
    return groups

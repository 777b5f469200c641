"""The usage item's shape (part of the store: only the store package and its migration use it; docs/data-model.md).

One item per tenant and period holds every metric of it:

usage     pk USAGE#{vendor}#{account}#{period}#{shard}   sk {tenant}
          metrics {metric: {value, unit, quota, projected, minimum, limit_exceeded, projected_next_period,
                            attributes {name: int | str}}}
          as_of (the run of the last change), log [{a: as_of, c: seconds to collected_at, d: delta}]
snapshot  pk SNAP#{vendor}#{account}#{tenant}             sk {as_of}#{period}   (TTL expires_at)
account   pk ACCOUNTS#{period}                            sk {vendor}#{account}  (who has usage in a month)

`shard` (0..SHARDS-1, from a hash of the tenant id) spreads one large account's month over SHARDS partitions; an
account's month is read back with SHARDS paged Queries.

History is a change log kept in the item itself: each change appends to `log` the reverse delta of the reading it
replaced (the old fields of the metrics that changed, short names), so the item replays back to every earlier
reading. When the next entry would make the item cost another write unit (or the tenant's own fields change), the
stored item, log and all, is written once as a snapshot and the new item starts an empty log: one snapshot per
~1 KB of changes instead of one per change, every reading still exact.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from usagewatch.errors import StoreError
from usagewatch.model import Period, Tenant, UsageRecord, Window, parse_utc, utc_iso
from usagewatch.stored import StoredUsage

SHARDS: Final = 4
METRIC_FIELDS: Final = (
    "quota",
    "projected",
    "minimum",
    "limit_exceeded",
    "projected_next_period",
    "attributes",
    "projection_source",
    "projection_fit",
)
TENANT_FIELDS: Final = ("tenant_name", "parent_tenant_id", "billed", "period_start", "period_end", "removed_at")
"""A change of any of these is not logged: the stored item goes to a snapshot whole."""
SHORT: Final = {
    "value": "v",
    "unit": "u",
    "quota": "q",
    "projected": "p",
    "minimum": "n",
    "limit_exceeded": "x",
    "projected_next_period": "P",
    "attributes": "A",
    "projection_source": "o",
    "projection_fit": "f",
    "period_start": "s",
    "period_end": "e",
}
LONG: Final = {v: k for k, v in SHORT.items()}
ABSENT: Final = "-"
"""In a delta: the metric (as the delta's value) or the fields (as a key, listing them) the older reading lacked."""
WRITE_UNIT: Final = 1024
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
        # METRIC_FIELDS in order, read directly (most are None for most records: a test and nothing more).
        if record.quota is not None:
            entry["quota"] = record.quota
        if record.projected is not None:
            entry["projected"] = record.projected
        if record.minimum is not None:
            entry["minimum"] = record.minimum
        if record.limit_exceeded is not None:
            entry["limit_exceeded"] = record.limit_exceeded
        if record.projected_next_period is not None:
            entry["projected_next_period"] = record.projected_next_period
        if record.attributes is not None:
            entry["attributes"] = dict(record.attributes)
        # A vendor's projection is the default (UsageRecord): only usagewatch's own is marked in the item.
        if record.projection_source is not None and record.projection_source != "vendor":
            entry["projection_source"] = record.projection_source
        if record.projection_fit is not None:
            entry["projection_fit"] = list(record.projection_fit)
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


UNLOGGED: Final = "projection_fit"
"""Kept for the current reading only (a run's working sums): an earlier reading replayed from the log keeps the
current one's."""


def metrics_delta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """What turns the `new` metrics back into the `old` ones: per metric that differs, the old fields that differ."""
    delta: dict[str, Any] = {}
    for metric in sorted(old.keys() | new.keys()):
        before, after = old.get(metric), new.get(metric, {})
        if before is not None:
            before = {f: v for f, v in before.items() if f != UNLOGGED}
            after = {f: v for f, v in after.items() if f != UNLOGGED}
        if before is None:
            delta[metric] = ABSENT
            continue
        if _canonical(before) == _canonical(after):
            continue
        entry: dict[str, Any] = {
            SHORT.get(f, f): v for f, v in before.items() if _canonical(v) != _canonical(after.get(f))
        }
        dropped = [SHORT.get(f, f) for f in after if f not in before]
        if dropped:
            entry[ABSENT] = dropped
        delta[metric] = entry
    return delta


def undo(metrics: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """The metrics before the change `delta` was logged for."""
    result = dict(metrics)
    for metric, entry in delta.items():
        if entry == ABSENT:
            result.pop(metric, None)
            continue
        fields = dict(result.get(metric, {}))
        for short in entry.get(ABSENT, ()):
            fields.pop(LONG.get(short, short), None)
        fields.update({LONG.get(k, k): v for k, v in entry.items() if k != ABSENT})
        result[metric] = fields
    return result


def log_entry(stored: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The log entry that keeps `stored` (a reading of the same tenant fields) once `new` replaces it."""
    seconds = (parse_utc(stored["collected_at"]) - parse_utc(stored["as_of"])).total_seconds()
    entry: dict[str, Any] = {"a": stored["as_of"], "d": metrics_delta(stored["metrics"], new["metrics"])}
    if seconds:
        entry["c"] = int(seconds)
    return entry


def same_tenant_fields(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(_canonical(stored.get(f)) == _canonical(new.get(f)) for f in TENANT_FIELDS)


def readings(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every reading an item (usage or snapshot) holds, oldest first, each as a snapshot's attributes. An item
    without `as_of` was written before the change log (its own snapshot holds it): none."""
    if "as_of" not in item:
        return []
    current = {k: v for k, v in item.items() if k != "log"}
    found = [current]
    for entry in reversed(item.get("log", [])):
        collected = parse_utc(entry["a"]) + timedelta(seconds=int(entry.get("c", 0)))
        current = {
            **current,
            "metrics": undo(current["metrics"], entry["d"]),
            "as_of": entry["a"],
            "collected_at": utc_iso(collected),
        }
        found.append(current)
    return found[::-1]


def write_budget(size: int) -> int:
    """The bytes an item may grow to without costing another write unit."""
    return max(1, math.ceil(size / WRITE_UNIT)) * WRITE_UNIT


def attribute_size(value: Mapping[str, Any]) -> int:
    """DynamoDB's size of one attribute value (developer guide, "Item sizes")."""
    if "S" in value:
        return len(value["S"].encode("utf-8"))
    if "N" in value:
        digits = value["N"].lstrip("-").replace(".", "").lstrip("0") or "0"
        return 1 + math.ceil(len(digits) / 2)
    if "BOOL" in value or "NULL" in value:
        return 1
    if "L" in value:
        return 3 + sum(1 + attribute_size(v) for v in value["L"])
    if "M" in value:
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in value["M"].items())
    return 0


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """DynamoDB's size of an item (names and values), which its write units are counted from."""
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


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
            **{name: entry.get(name) for name in METRIC_FIELDS if name != UNLOGGED},
            projection_fit=tuple(entry[UNLOGGED]) if entry.get(UNLOGGED) else None,
        )
        as_of = item.get("as_of") if item.get("record_type") == "snapshot" else None
        found.append(StoredUsage(record, str(item["collected_at"]), item.get("removed_at"), as_of))
    return found


def group_by_period(records: Iterable[UsageRecord]) -> dict[str, list[UsageRecord]]:
    groups: dict[str, list[UsageRecord]] = {}
    last: Period | None = None
    group: list[UsageRecord] = []
    for record in records:
        period = record.window.period
        if period is not last:  # a tenant's records share one period object, as a rule: named once
            last = period
            group = groups.setdefault(str(period), [])
        group.append(record)
    return groups

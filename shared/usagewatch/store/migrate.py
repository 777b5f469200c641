"""The table side of `usagewatch migrate` (usagewatch/migrate.py): find old-shape usage and snapshot items (one
per metric) and rewrite them as one item per tenant.

Idempotent and resumable: each old item is merged into its tenant's new item (read first, so a tenant whose
metrics were split over scan pages or over two interrupted runs ends with all of them) and deleted only after the
new item is written; a second run finds nothing to do. Batched (25 writes, 100 reads a call); progress per page.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from usagewatch.store.table import Table, deserialize, key_part
from usagewatch.store.usage import account_key, snapshot_pk, usage_record
from usagewatch.store.usage_shape import tenant_attributes, usage_pk

_OLD_USAGE: Final = re.compile(r"^USAGE#\d{4}-\d{2}$")


def is_old_usage(item: Mapping[str, Any]) -> bool:
    return item.get("record_type") == "usage" and bool(_OLD_USAGE.match(str(item.get("pk", ""))))


def is_old_snapshot(item: Mapping[str, Any]) -> bool:
    return item.get("record_type") == "snapshot" and str(item.get("pk", "")).count("#") == 4


@dataclass
class Progress:
    scanned: int = 0
    old_usage: int = 0
    old_snapshots: int = 0
    tenant_items: int = 0
    snapshot_items: int = 0

    def line(self, dry_run: bool) -> str:
        verb = "would write" if dry_run else "wrote"
        return (
            f"scanned {self.scanned} item(s): {self.old_usage} old usage and {self.old_snapshots} old snapshot "
            f"item(s); {verb} {self.tenant_items} tenant item(s) and {self.snapshot_items} snapshot(s)"
        )


def _merge(existing: Mapping[str, Any] | None, olds: Sequence[Mapping[str, Any]], extra: Mapping[str, Any]) -> Any:
    """The new item holding every metric of `olds` on top of what `existing` (a new-shape item) holds."""
    records = [usage_record(item) for item in olds]
    changed_at = max(str(item["collected_at"]) for item in olds)
    attributes: dict[str, Any] = tenant_attributes(records, changed_at)
    if existing:
        attributes["metrics"] = {**existing.get("metrics", {}), **attributes["metrics"]}
        attributes["collected_at"] = max(changed_at, str(existing.get("collected_at", "")))
    removed = [str(item["removed_at"]) for item in olds if item.get("removed_at")]
    if removed and len(removed) == len(olds):
        attributes["removed_at"] = max(removed)
    return {**attributes, **extra}


def old_item_pages(store: Table) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """One Scan of the table, page by page: (items scanned, the usage and snapshot items of the page)."""
    start: dict[str, Any] | None = None
    while True:
        kwargs: dict[str, Any] = {
            "FilterExpression": "record_type IN (:usage, :snapshot)",
            "ExpressionAttributeValues": {":usage": {"S": "usage"}, ":snapshot": {"S": "snapshot"}},
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = store.call("scan", "read", **kwargs)
        yield int(page.get("ScannedCount", 0)), [deserialize(i) for i in page.get("Items", [])]
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def migrate_page(items: list[dict[str, Any]], store: Table, progress: Progress, dry_run: bool) -> None:
    """Merge one page's old items into new ones (counted in `progress`), then delete them."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    extras: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        tenant = key_part(str(item["tenant_id"]))
        vendor, account, period = str(item["vendor"]), str(item["account_id"]), str(item["period"])
        if is_old_usage(item):
            progress.old_usage += 1
            key = (usage_pk(vendor, account, period, tenant), tenant)
            extras[key] = {}
        elif is_old_snapshot(item):
            progress.old_snapshots += 1
            as_of = str(item["as_of"])
            key = (snapshot_pk(vendor, account, tenant), f"{as_of}#{period}")
            extras[key] = {"record_type": "snapshot", "as_of": as_of, "expires_at": item.get("expires_at")}
        else:
            continue
        groups.setdefault(key, []).append(item)
    for pk, _sk in groups:
        if pk.startswith("USAGE#"):
            progress.tenant_items += 1
        else:
            progress.snapshot_items += 1
    if dry_run or not groups:
        return
    existing = store.get_items(list(groups))
    for key, olds in groups.items():
        item = _merge(existing.get(key), olds, extras[key])
        store.queue_raw({"pk": key[0], "sk": key[1], **item})
        if key[0].startswith("USAGE#"):
            first = olds[0]
            store.queue_raw(account_key(str(first["vendor"]), str(first["account_id"]), str(first["period"])))
    store.flush()
    store.delete_keys([(str(i["pk"]), str(i["sk"])) for olds in groups.values() for i in olds])

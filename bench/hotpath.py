"""Hot path: CPU per record, split by stage, for the 40,000 records of 10,000 Keepnet companies.

No HTTP here: the companies are mapped in process, so each stage is timed alone (best of 3):
- mapping: `company_records` (SearchCompanyDto -> 4 UsageRecords, validated);
- rules: `evaluate` for every record;
- store: `DynamoStore.add_tenant` (one call per company) + flush with a client that only returns (serialisation
  and batching),
  batches sent inline (`writers=1`: the CPU alone) and by the shipped 8 writer threads;
- of which `serialize`: building and encoding the record's attributes once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bench.common import Row
from tests.simulators.keepnet import make_companies

COMPANIES: Final = 10_000
REPEATS: Final = 3


class _NullClient:
    """A DynamoDB client that accepts every batch and keeps the last one (for the equality check)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.keep = False

    def batch_write_item(self, *, RequestItems: Mapping[str, list[dict[str, Any]]], **_: Any) -> dict[str, Any]:  # noqa: N803
        if self.keep:
            for requests in RequestItems.values():
                self.items.extend(r["PutRequest"]["Item"] for r in requests)
        return {"UnprocessedItems": {}}

    def query(self, **_: Any) -> dict[str, Any]:
        return {"Items": []}


def _best(action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


def _canonical(item: Mapping[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def scenario() -> tuple[list[Row], dict[str, Any]]:
    from usagewatch.model import Period, UsageRecord, Window, utc_iso
    from usagewatch.rules import DEFAULT_RULES, evaluate
    from usagewatch.sources.keepnet import company_records
    from usagewatch.store import DynamoStore, serialize

    companies = make_companies(COMPANIES)
    now = datetime.now(UTC)
    window = Window.month(Period.of(now))
    exceeded: frozenset[str] = frozenset()

    def mapping() -> list[UsageRecord]:
        out: list[UsageRecord] = []
        for company in companies:
            out.extend(company_records(company, account_id="kn", window=window, exceeded_ids=exceeded).records)
        return out

    records = mapping()
    count = len(records)
    by_tenant: dict[str, list[Any]] = {}
    for record in records:
        by_tenant.setdefault(record.tenant_id, []).append(record)
    tenants = list(by_tenant.values())

    def rules() -> None:
        for record in records:
            evaluate(record, DEFAULT_RULES, now)

    def serialise_once() -> None:
        from usagewatch.store.usage_shape import tenant_attributes

        text = utc_iso(now)
        for tenant in tenants:
            serialize(tenant_attributes(tenant, text))

    def store_with(writers: int) -> Callable[[], None]:
        def run() -> None:
            store = DynamoStore("usagewatch-bench", client=_NullClient(), writers=writers)  # type: ignore[arg-type]
            for tenant in tenants:
                store.add_tenant(tenant, as_of=now, collected_at=now)
            store.flush()

        return run

    seconds = {
        "mapping": _best(mapping),
        "rules": _best(rules),
        "store_inline": _best(store_with(1)),
        "store_threads": _best(store_with(8)),
        "of_which_serialize": _best(serialise_once),
    }
    per_record_us = {k: round(v / count * 1e6, 1) for k, v in seconds.items()}
    raw = {"records": count, "seconds": {k: round(v, 3) for k, v in seconds.items()}, "per_record_us": per_record_us}
    rows = [
        Row("hotpath", f"{label} ({count:,} records)", seconds[key], "s", details={"us_per_record": per_record_us[key]})
        for key, label in (
            ("mapping", "map companies to records"),
            ("rules", "evaluate rules"),
            ("store_inline", "add_tenant + flush, writers=1"),
            ("store_threads", "add_tenant + flush, 8 writers"),
            ("of_which_serialize", "  of which: build + serialise"),
        )
    ]
    return rows, raw

"""Hot path: CPU per record, split by stage, for the 40,000 records of 10,000 Keepnet companies.

No HTTP here: the companies are mapped in process, so each stage is timed alone (best of 3):
- mapping: `company_records` (SearchCompanyDto -> 4 UsageRecords, validated);
- rules: `evaluate` for every record;
- store: `DynamoStore.add_usage` + flush with a client that only returns (serialisation and batching);
- of which `utc_iso`: the five timestamp formats add_usage does per record, all of run-constant values;
- a leaner add_usage (the proposal in docs/performance.md, prototyped here as a subclass): the shared
  attributes serialised once per record instead of twice, the run's timestamps formatted once. It is
  checked to produce exactly the same items.
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


def _lean_store_class() -> type:
    from usagewatch.model import UsageRecord, utc_iso
    from usagewatch.store import DynamoStore, serialize, usage_attributes

    class LeanStore(DynamoStore):
        """add_usage with the shared attributes serialised once and the run's timestamps cached."""

        def _time(self, moment: datetime) -> str:
            cache: dict[datetime, str] = self.__dict__.setdefault("_iso", {})
            text = cache.get(moment)
            if text is None:
                text = cache[moment] = utc_iso(moment)
            return text

        def add_usage(self, record: UsageRecord, *, as_of: datetime, collected_at: datetime) -> None:
            shared = serialize(usage_attributes(record, self._time(collected_at)))
            identity = f"{record.vendor}#{record.account_id}#{record.tenant_id}#{record.metric}"
            period = str(record.period)
            as_of_text = self._time(as_of)
            usage = serialize({"pk": f"USAGE#{period}", "sk": identity, "gsi1pk": f"HIST#{identity}", "gsi1sk": period})
            usage["record_type"] = {"S": "usage"}
            self._queue_item({**usage, **shared})
            snapshot = serialize(
                {
                    "pk": f"SNAP#{identity}",
                    "sk": f"{as_of_text}#{period}",
                    "record_type": "snapshot",
                    "as_of": as_of_text,
                    "expires_at": int((as_of + self.retention).timestamp()),
                }
            )
            self._queue_item({**snapshot, **shared})

        def _queue_item(self, item: dict[str, Any]) -> None:
            self._buffer[(item["pk"]["S"], item["sk"]["S"])] = item
            if len(self._buffer) >= 25:
                self._send_batch(self._take(25))

    return LeanStore


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

    def rules() -> None:
        for record in records:
            evaluate(record, DEFAULT_RULES, now)

    def store_with(cls: type) -> Callable[[], None]:
        def run() -> None:
            store = cls("usagewatch-bench", client=_NullClient())
            for record in records:
                store.add_usage(record, as_of=now, collected_at=now)
            store.flush()

        return run

    def timestamps() -> None:
        for record in records:
            utc_iso(now)
            utc_iso(now)
            utc_iso(now)
            utc_iso(record.window.start)
            utc_iso(record.window.end)

    def serialise_twice() -> None:
        from usagewatch.store import usage_attributes

        text = utc_iso(now)
        for record in records:
            attributes = usage_attributes(record, text)
            serialize(attributes)
            serialize(attributes)

    lean_class = _lean_store_class()
    # The prototype must write exactly what DynamoStore writes.
    sample = records[:200]
    written: list[list[str]] = []
    for cls in (DynamoStore, lean_class):
        client = _NullClient()
        client.keep = True
        store = cls("usagewatch-bench", client=client)
        for record in sample:
            store.add_usage(record, as_of=now, collected_at=now)
        store.flush()
        written.append(sorted(_canonical(item) for item in client.items))
    assert written[0] == written[1], "the lean add_usage must produce the same items"

    seconds = {
        "mapping": _best(mapping),
        "rules": _best(rules),
        "store_add_usage": _best(store_with(DynamoStore)),
        "of_which_utc_iso": _best(timestamps),
        "of_which_serialize_2x": _best(serialise_twice),
        "store_add_usage_lean": _best(store_with(lean_class)),
    }
    per_record_us = {k: round(v / count * 1e6, 1) for k, v in seconds.items()}
    raw = {"records": count, "seconds": {k: round(v, 3) for k, v in seconds.items()}, "per_record_us": per_record_us}
    rows = [
        Row("hotpath", f"{label} ({count:,} records)", seconds[key], "s", details={"us_per_record": per_record_us[key]})
        for key, label in (
            ("mapping", "map companies to records"),
            ("rules", "evaluate rules"),
            ("store_add_usage", "DynamoStore.add_usage + flush"),
            ("of_which_utc_iso", "  of which: 5 utc_iso per record"),
            ("of_which_serialize_2x", "  of which: attributes serialised 2x"),
        )
    ]
    rows.append(
        Row(
            "hotpath",
            "add_usage, serialise once + cached times",
            seconds["store_add_usage_lean"],
            "s",
            seconds["store_add_usage"],
            "add_usage today",
            details={"us_per_record": per_record_us["store_add_usage_lean"], "same_items": True},
        )
    )
    return rows, raw

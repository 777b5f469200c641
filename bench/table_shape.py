"""The table's shape: write units per tenant and run when nothing changed and when everything did (issue 16).

The real `DynamoStore` against moto; a botocore hook sizes every item of every BatchWriteItem/PutItem/DeleteItem
(DynamoDB's size rules, `bench.common.item_size`: 1 WRU per started KB) and every page a Query or BatchGetItem
returns (0.5 RRU per started 4 KB, eventually consistent), and converts reads to write units at their price
($0.125 against $0.625 per million: 0.2). Per tenant and run it counts what the account's run adds as well: the run
record twice, the lease taken and given back, the totals (one per metric).

Tenant profiles (the records one tenant reads per run): GravityZone 26 metrics on one company; Keepnet 4; a
ThousandEyes organisation 10 records over 4 tenants (the organisation and 3 account groups). The steady-state
month uses the change rates below (docs/performance.md says why).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bench.common import Row, env_defaults, item_size

TENANTS: Final = 200
SEQUENCE_TENANTS: Final = 12
SEQUENCE_RUNS: Final = 24
"""Changed runs in a row, to measure a change's cost over whole cycles of the item's change log."""
RRU_IN_WRU: Final = 0.125 / 0.625
STORAGE_OVERHEAD_BYTES: Final = 100  # DynamoDB bills every stored item 100 bytes more ("Item sizes and formats")
BEFORE_WRU: Final = {"gravityzone": 78.0, "keepnet": 12.2, "thousandeyes": 30.1}
"""Per tenant and run before (docs/performance.md, the previous shape, every run rewriting everything)."""
DESIGNS: Final = {"change_log": True, "snapshot_per_change": False}
"""`DynamoStore(change_log=...)`: the readings a change replaces kept in the item's log (shipped), or one full
snapshot per change (the shape of issue 16's first round, kept to measure against)."""


def _profile(vendor: str, n: int, step: int, moment: datetime) -> list[list[Any]]:
    """Tenant `n`'s records at its `step`-th change. What moves at a change (docs/performance.md): GravityZone 3 of
    26 monthly-usage counters; Keepnet `monthly_users`; ThousandEyes every value and projection (the worst case)."""
    from usagewatch.model import Period, Tenant, UsageRecord, Window

    window = Window.month(Period.of(moment))
    if vendor == "gravityzone":
        company = Tenant(f"5f{n:022d}", f"Customer company {n:05d} GmbH")
        return [
            [
                UsageRecord(
                    vendor,
                    "gz",
                    company,
                    f"metric_{m:02d}",
                    10 + n + (step if m < 3 else 0),
                    "seats",
                    window,
                    quota=500,
                )
                for m in range(26)
            ]
        ]
    if vendor == "keepnet":
        company = Tenant(f"{n:08d}-aaaa-bbbb-cccc-000000000000", f"Customer company {n:05d} Ltd")
        metrics = ("target_users", "licensed_users", "monthly_users", "deleted_target_users")
        return [
            [
                UsageRecord(
                    vendor, "kn", company, m, 10 + n + (step if m == "monthly_users" else 0), "users", window, quota=500
                )
                for m in metrics
            ]
        ]
    org = Tenant(f"org-{n}", f"Organisation {n}")
    groups = [
        Tenant(f"aid-{n}-{g}", f"Account group {g}", parent_tenant_id=org.tenant_id, billed=False) for g in range(3)
    ]
    org_records = [
        UsageRecord(
            vendor, "te", org, m, 100.5 + n + 1.25 * step, "units", window, quota=5000, projected=2000.25 + 3.5 * step
        )
        for m in ("cloud_units", "enterprise_units", "endpoint_units", "total_units")
    ]
    return [org_records] + [
        [
            UsageRecord(vendor, "te", g, m, 10.5 + 0.75 * step, "units", window)
            for m in ("cloud_units", "enterprise_units")
        ]
        for g in groups
    ]


PER_TENANT: Final = frozenset({"usage", "snapshot", "account"})
"""Item types a run writes per tenant (the account entry: once per account and month, charged to its tenants);
the others (run record, lease, totals) are the account's, once per run."""


class Meter:
    """Write units (of the larger of an item's old and new size, as DynamoDB charges a put that replaces),
    read units and per-partition write counts, from botocore's events; the split per tenant / per account run."""

    def __init__(self) -> None:
        self.sizes: dict[tuple[str, str], int] = {}
        self.reset()

    def reset(self) -> None:
        self.wru = 0
        self.wru_tenant = 0
        self.rru = 0.0
        self.items = 0
        self.bytes = 0
        self.by_type: Counter[str] = Counter()
        self.bytes_by_type: Counter[str] = Counter()
        self.by_pk: Counter[str] = Counter()

    def before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        written: list[dict[str, Any]] = []
        if model.name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                written += [r["PutRequest"]["Item"] for r in requests if "PutRequest" in r]
                for r in requests:
                    if "DeleteRequest" in r:
                        key = r["DeleteRequest"]["Key"]
                        self.wru += max(1, math.ceil(self.sizes.pop((key["pk"]["S"], key["sk"]["S"]), 0) / 1024))
        elif model.name == "PutItem":
            written.append(params["Item"])
        elif model.name in ("UpdateItem", "DeleteItem"):
            self.wru += 1
        for item in written:
            size = item_size(item)
            key = (item["pk"]["S"], item["sk"]["S"])
            units = max(1, math.ceil(max(size, self.sizes.get(key, 0)) / 1024))
            self.sizes[key] = size
            kind = item.get("record_type", {}).get("S", "?")
            self.wru += units
            self.wru_tenant += units if kind in PER_TENANT else 0
            self.items += 1
            self.bytes += size
            self.by_type[kind] += 1
            self.bytes_by_type[kind] += size
            if kind == "usage":
                self.by_pk[item["pk"]["S"]] += 1

    def after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "Query":
            size = sum(item_size(i) for i in parsed.get("Items", []))
            self.rru += 0.5 * max(1, math.ceil(size / 4096))
        elif model.name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                self.rru += sum(0.5 * max(1, math.ceil(item_size(i) / 4096)) for i in items)
        elif model.name == "GetItem":
            self.rru += 0.5

    def case(self, tenants: int) -> dict[str, Any]:
        usage_writes = sum(self.by_pk.values())
        stored = {k: self.bytes_by_type[k] + STORAGE_OVERHEAD_BYTES * self.by_type[k] for k in ("usage", "snapshot")}
        return {
            "wru_per_tenant": round(self.wru / tenants, 3),
            "rru_per_tenant": round(self.rru / tenants, 3),
            "wru_equivalent_per_tenant": round((self.wru + self.rru * RRU_IN_WRU) / tenants, 3),
            "tenant_wru_equivalent_per_tenant": round((self.wru_tenant + self.rru * RRU_IN_WRU) / tenants, 4),
            "account_wru_per_run": self.wru - self.wru_tenant,
            "tenants": tenants,
            "items": self.items,
            "items_per_tenant": round(sum(self.by_type[k] for k in PER_TENANT) / tenants, 4),
            "items_by_type": dict(self.by_type),
            "bytes_per_tenant": round(sum(self.bytes_by_type[k] for k in PER_TENANT) / tenants),
            "snapshots_per_tenant": round(self.by_type["snapshot"] / tenants, 4),
            "snapshot_stored_bytes_per_tenant": round(stored["snapshot"] / tenants, 1),
            "usage_item_bytes": round(self.bytes_by_type["usage"] / self.by_type["usage"])
            if self.by_type["usage"]
            else 0,
            "largest_partition_share": round(max(self.by_pk.values()) / usage_writes, 3) if usage_writes else 0,
        }


def _run(store: Any, vendor: str, account: str, moment: datetime, step: int, tenants: int) -> None:
    """What one account's run writes to the table, less alerts: lease, run record twice, usage, totals."""
    from usagewatch.model import utc_iso
    from usagewatch.stored import RunRecord, Total

    store.acquire_lease(vendor, account, owner="bench", now=moment, seconds=900)
    as_of = utc_iso(moment)
    run = RunRecord(vendor, account, f"{vendor}:{as_of}", as_of, as_of, "", "running", ("p",), 0, 0, 0, 0, ())
    store.write_run(run)
    metrics: set[str] = set()
    for n in range(tenants):
        for records in _profile(vendor, n, step, moment):
            store.add_tenant(records, as_of=moment, collected_at=moment)
            metrics.update(r.metric for r in records)
    store.flush()
    period = str(_profile(vendor, 0, 0, moment)[0][0].period)
    store.write_totals([Total(vendor, account, period, m, "seats", 1, tenants, 0, as_of) for m in sorted(metrics)])
    store.write_run(RunRecord(vendor, account, run.run_id, as_of, as_of, as_of, "ok", (period,), tenants, 0, 0, 0, ()))
    store.release_lease(vendor, account, owner="bench")


def measure(vendor: str, *, change_log: bool = True, full: bool = True) -> dict[str, Any]:
    """One vendor in one design: a first run and a run where nothing changed (TENANTS tenants; `full` only: the
    designs differ in neither), then SEQUENCE_RUNS runs in a row where every tenant changed (SEQUENCE_TENANTS
    tenants: a change's cost averaged over whole cycles of the log)."""
    env_defaults()
    from moto import mock_aws

    from tests.local_aws import provision
    from usagewatch.store import DynamoStore

    account = {"gravityzone": "gz", "keepnet": "kn", "thousandeyes": "te"}[vendor]
    t0 = datetime(2026, 11, 2, 6, tzinfo=UTC)
    every = timedelta(hours=1 if vendor == "thousandeyes" else 6)
    result: dict[str, Any] = {}
    sizes = ((TENANTS, (("first", 0), ("unchanged", 0))),) if full else ()
    for tenants, cases in (*sizes, (SEQUENCE_TENANTS, (("first_small", 0),))):
        with mock_aws():
            aws = provision()
            ddb = aws.client("dynamodb")
            meter = Meter()
            ddb.meta.events.register("before-parameter-build.dynamodb", meter.before)
            ddb.meta.events.register("after-call.dynamodb", meter.after)

            def one(step: int, hours: int, table: str = aws.table_name, client: Any = ddb, size: int = tenants) -> None:
                store = DynamoStore(table, client=client, change_log=change_log)
                _run(store, vendor, account, t0 + every * hours, step, size)

            for hours, (case, step) in enumerate(cases):
                meter.reset()
                one(step, hours)
                result[case] = meter.case(tenants)
            if tenants == SEQUENCE_TENANTS:
                meter.reset()
                for step in range(1, SEQUENCE_RUNS + 1):
                    one(step, step)
                changed = meter.case(tenants * SEQUENCE_RUNS)
                changed["account_wru_per_run"] = round(changed["account_wru_per_run"] / SEQUENCE_RUNS, 1)
                result["changed"] = changed
    del result["first_small"]
    return result


def scenario() -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for vendor in ("gravityzone", "keepnet", "thousandeyes"):
        for design, change_log in DESIGNS.items():
            full = design == "change_log"
            found = raw.setdefault(design, {})[vendor] = measure(vendor, change_log=change_log, full=full)
            if design != "change_log":
                continue
            same = found["unchanged"]["wru_equivalent_per_tenant"]
            # A change's own units, plus the account's run (records, lease, totals) shared by TENANTS tenants.
            moved = round(
                found["changed"]["tenant_wru_equivalent_per_tenant"]
                + found["unchanged"]["account_wru_per_run"] / TENANTS,
                3,
            )
            before = BEFORE_WRU[vendor]
            rows.append(
                Row("table_shape", f"{vendor} nothing changed", same, "WRU/tenant", 1.0, "target", "≤ 1", same <= 1.0)
            )
            rows.append(
                Row(
                    "table_shape",
                    f"{vendor} every tenant changed",
                    moved,
                    "WRU/tenant",
                    before / 3,
                    f"before {before} / 3",
                    "≤ 1/3 of before",
                    moved <= before / 3,
                    details={"largest_partition_share": found["first"]["largest_partition_share"]},
                )
            )
    return rows, raw

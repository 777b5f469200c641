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
RRU_IN_WRU: Final = 0.125 / 0.625
BEFORE_WRU: Final = {"gravityzone": 78.0, "keepnet": 12.2, "thousandeyes": 30.1}
"""Per tenant and run before (docs/performance.md, the previous shape, every run rewriting everything)."""
RUNS_PER_MONTH: Final = {"gravityzone": 120, "keepnet": 120, "thousandeyes": 720}
CHANGES_PER_MONTH: Final = {"gravityzone": 30, "keepnet": 4, "thousandeyes": 720}


def _profile(vendor: str, n: int, bump: int, moment: datetime) -> list[list[Any]]:
    from usagewatch.model import Period, Tenant, UsageRecord, Window

    window = Window.month(Period.of(moment))
    if vendor == "gravityzone":
        company = Tenant(f"5f{n:022d}", f"Customer company {n:05d} GmbH")
        metrics = [(f"metric_{m:02d}", "seats") for m in range(26)]
        return [[UsageRecord(vendor, "gz", company, m, 10 + n + bump, u, window, quota=500) for m, u in metrics]]
    if vendor == "keepnet":
        company = Tenant(f"{n:08d}-aaaa-bbbb-cccc-000000000000", f"Customer company {n:05d} Ltd")
        metrics = ("target_users", "licensed_users", "monthly_users", "deleted_target_users")
        return [[UsageRecord(vendor, "kn", company, m, 10 + n + bump, "users", window, quota=500) for m in metrics]]
    org = Tenant(f"org-{n}", f"Organisation {n}")
    groups = [
        Tenant(f"aid-{n}-{g}", f"Account group {g}", parent_tenant_id=org.tenant_id, billed=False) for g in range(3)
    ]
    org_records = [
        UsageRecord(vendor, "te", org, m, 100.5 + n + bump, "units", window, quota=5000, projected=2000.25)
        for m in ("cloud_units", "enterprise_units", "endpoint_units", "total_units")
    ]
    return [org_records] + [
        [UsageRecord(vendor, "te", g, m, 10.5 + bump, "units", window) for m in ("cloud_units", "enterprise_units")]
        for g in groups
    ]


class Meter:
    """Write units, read units and per-partition write counts, from botocore's events."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.wru = 0
        self.rru = 0.0
        self.items = 0
        self.bytes = 0
        self.by_type: Counter[str] = Counter()
        self.by_pk: Counter[str] = Counter()

    def before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        written: list[dict[str, Any]] = []
        if model.name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                written += [r["PutRequest"]["Item"] for r in requests if "PutRequest" in r]
                self.wru += sum(1 for r in requests if "DeleteRequest" in r)
        elif model.name == "PutItem":
            written.append(params["Item"])
        elif model.name in ("UpdateItem", "DeleteItem"):
            self.wru += 1
        for item in written:
            size = item_size(item)
            self.wru += max(1, math.ceil(size / 1024))
            self.items += 1
            self.bytes += size
            kind = item.get("record_type", {}).get("S", "?")
            self.by_type[kind] += 1
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


def _run(store: Any, vendor: str, account: str, moment: datetime, bump: int) -> None:
    """What one account's run writes to the table, less alerts: lease, run record twice, usage, totals."""
    from usagewatch.model import RunRecord, Total, utc_iso

    store.acquire_lease(vendor, account, owner="bench", now=moment, seconds=900)
    as_of = utc_iso(moment)
    run = RunRecord(vendor, account, f"{vendor}:{as_of}", as_of, as_of, "", "running", ("p",), 0, 0, 0, 0, ())
    store.write_run(run)
    metrics: set[str] = set()
    for n in range(TENANTS):
        for records in _profile(vendor, n, bump, moment):
            store.add_tenant(records, as_of=moment, collected_at=moment)
            metrics.update(r.metric for r in records)
    store.flush()
    period = str(_profile(vendor, 0, 0, moment)[0][0].period)
    store.write_totals([Total(vendor, account, period, m, "seats", 1, TENANTS, 0, as_of) for m in sorted(metrics)])
    store.write_run(RunRecord(vendor, account, run.run_id, as_of, as_of, as_of, "ok", (period,), TENANTS, 0, 0, 0, ()))
    store.release_lease(vendor, account, owner="bench")


def measure(vendor: str) -> dict[str, Any]:
    env_defaults()
    from moto import mock_aws

    from tests.local_aws import provision
    from usagewatch.store import DynamoStore

    account = {"gravityzone": "gz", "keepnet": "kn", "thousandeyes": "te"}[vendor]
    meter = Meter()
    t0 = datetime(2026, 11, 22, 6, tzinfo=UTC)
    result: dict[str, Any] = {}
    with mock_aws():
        aws = provision()
        ddb = aws.client("dynamodb")
        ddb.meta.events.register("before-parameter-build.dynamodb", meter.before)
        ddb.meta.events.register("after-call.dynamodb", meter.after)
        for case, hours, bump in (("first", 0, 0), ("unchanged", 6, 0), ("changed", 12, 1)):
            meter.reset()
            _run(DynamoStore(aws.table_name, client=ddb), vendor, account, t0 + timedelta(hours=hours), bump)
            usage_writes = sum(meter.by_pk.values())
            result[case] = {
                "wru_per_tenant": round(meter.wru / TENANTS, 3),
                "rru_per_tenant": round(meter.rru / TENANTS, 3),
                "wru_equivalent_per_tenant": round((meter.wru + meter.rru * RRU_IN_WRU) / TENANTS, 3),
                "items": meter.items,
                "items_by_type": dict(meter.by_type),
                "bytes_per_tenant": round(meter.bytes / TENANTS),
                "largest_partition_share": round(max(meter.by_pk.values()) / usage_writes, 3) if usage_writes else 0,
            }
    changed, unchanged = result["changed"], result["unchanged"]
    runs, changes = RUNS_PER_MONTH[vendor], CHANGES_PER_MONTH[vendor]
    snapshot_items = changed["items_by_type"].get("snapshot", 0) / TENANTS
    result["month"] = {
        "wru_per_tenant": round(
            changes * changed["wru_equivalent_per_tenant"] + (runs - changes) * unchanged["wru_equivalent_per_tenant"],
            1,
        ),
        "items_per_tenant": round(changes * changed["items"] / TENANTS, 1),
        "bytes_per_tenant": round(changes * changed["bytes_per_tenant"]),
        "snapshot_items_per_tenant": round(changes * snapshot_items, 1),
    }
    return result


def scenario() -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for vendor in ("gravityzone", "keepnet", "thousandeyes"):
        found = raw[vendor] = measure(vendor)
        same = found["unchanged"]["wru_equivalent_per_tenant"]
        moved = found["changed"]["wru_equivalent_per_tenant"]
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
                details={"largest_partition_share": found["changed"]["largest_partition_share"]},
            )
        )
    return rows, raw

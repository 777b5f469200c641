"""Cost model: the monthly AWS bill for 1,000 and 10,000 tenants per vendor, from the measured runs.

Per run, from the vendor scenarios: Lambda duration (CPU seconds scaled to a 512 MB function's share of a vCPU,
plus the time spent waiting on the vendor, plus DynamoDB round trips at the assumed latency), SNS publishes, log
bytes; scaled linearly in tenants from the measured size (Keepnet is measured at both 1,000 and 10,000), times the
default schedules: Keepnet and GravityZone every 6 hours, ThousandEyes hourly.

DynamoDB from `table_shape` (the real store against moto, every item sized): per tenant, the write units (reads
converted at their price) of a period's first run, of a change and of a run where nothing changed, and the bytes
of snapshots a change leaves; per account run, the run records, lease and totals. A month is one first run, then
CHANGES_PER_MONTH - 1 changes and the rest unchanged runs; storage settles at RETENTION_DAYS of snapshots plus the
usage items (one per tenant and month) of as many months, every item billed 100 bytes more. "Before" is the shape
every run rewrote (measured 2026-11-28: BEFORE) in the same model.

Prices: on-demand list prices, us-east-1, stated in PRICES with their date; free tiers ignored.
"""

from __future__ import annotations

from typing import Any, Final

from bench.common import Row

PRICES_AS_OF: Final = "2026-11-22 (list prices unchanged since the DynamoDB on-demand cut of 2024-11-01)"
PRICES: Final = {
    "lambda_gb_second_arm64": 0.0000133334,
    "lambda_request": 0.20 / 1_000_000,
    "dynamodb_wru": 0.625 / 1_000_000,
    "dynamodb_rru": 0.125 / 1_000_000,
    "dynamodb_storage_gb_month": 0.25,
    "dynamodb_pitr_gb_month": 0.20,
    "sns_publish": 0.50 / 1_000_000,
    "sns_email_delivery": 2.00 / 100_000,
    "cloudwatch_logs_ingest_gb": 0.50,
}
MEMORY_GB: Final = 0.5  # template.yaml: MemorySize 512
VCPU_AT_MB: Final = 1769  # Lambda gives a full vCPU at 1,769 MB, proportionally less below
CPU_FACTOR: Final = VCPU_AT_MB / 512
RUNS_PER_MONTH: Final = {"keepnet": 4 * 30, "gravityzone": 4 * 30, "thousandeyes": 24 * 30}
RETENTION_DAYS: Final = 400  # SNAPSHOT_RETENTION_DAYS default: snapshots (and runs) expire after it
# Round trips assumed per call (same as bench.keepnet.RTT) and for an SNS Publish.
RTT: Final = {"BatchWriteItem": 0.010, "PutItem": 0.005, "Query": 0.005, "GetItem": 0.005, "Publish": 0.020}
LAMBDA_LOG_OVERHEAD_BYTES: Final = 1_200  # START/END/REPORT lines and the EMF metrics line of each invocation
TENANTS: Final = (1_000, 10_000)
# The scenarios whose results the model reads (dynamodb is optional: steady-state publishes, for the record).
INPUTS: Final = ("keepnet", "gravityzone", "thousandeyes", "table_shape", "dynamodb")
CHANGES_PER_MONTH: Final = {"gravityzone": 90, "keepnet": 4, "thousandeyes": 720}
"""Changes of a tenant's reading a month (docs/performance.md, "Change rates"): GravityZone's monthly usage moves
a few times a day (3 of its 4 daily runs), Keepnet's user counts a few times a month, ThousandEyes' used units at
every hourly run."""
STORAGE_OVERHEAD_BYTES: Final = 100  # per stored item (DynamoDB developer guide, "Item sizes and formats")
BEFORE: Final = {
    "keepnet": {"wru": 12.17, "snapshots": 4, "snapshot_bytes": 437, "usage_items": 4, "usage_bytes": 475},
    "gravityzone": {"wru": 78.1, "snapshots": 26, "snapshot_bytes": 450, "usage_items": 26, "usage_bytes": 475},
    "thousandeyes": {"wru": 30.1, "snapshots": 10, "snapshot_bytes": 388, "usage_items": 10, "usage_bytes": 475},
}
"""The shape before issue 16, per tenant and run (every run rewrote everything): write units (table and gsi1) and
the snapshots and usage items it left, as `make bench` measured them on 2026-11-28 (docs/performance.md)."""
TARGET_RATIO: Final = 0.2
DESIGNS: Final = ("change_log", "snapshot_per_change")


def _store_seconds(calls: dict[str, int], publishes: int) -> float:
    return sum(RTT.get(op, 0.0) * n for op, n in calls.items()) + RTT["Publish"] * publishes


def _per_run(result: dict[str, Any], tenants: int) -> dict[str, float]:
    """One measured run, per tenant."""
    dynamodb = result["dynamodb"]
    cpu = float(result["cpu_s"])
    waiting = max(0.0, float(result["wall_s"]) - cpu)
    snapshots = dynamodb["items_by_type"].get("snapshot", 0)
    snapshot_bytes = dynamodb["avg_item_bytes_by_type"].get("snapshot", 0.0)
    return {
        "cpu_s": cpu / tenants,
        "waiting_s": waiting / tenants,
        "store_s": _store_seconds(dynamodb["calls"], 0) / tenants,
        "wru": dynamodb["wru"] / tenants,
        "wru_gsi": dynamodb["wru_gsi"] / tenants,
        "items": dynamodb["items"] / tenants,
        "snapshot_bytes": snapshots * snapshot_bytes / tenants,
        "publishes_first_run": result["sns_publishes"] / tenants,
        "log_bytes": result["log_bytes"] / tenants,
    }


def _other(vendor: str, per: dict[str, float], tenants: int, *, steady_publishes: float) -> dict[str, Any]:
    """Lambda, SNS and logs of one vendor at `tenants` tenants for a month; `steady_publishes`: per tenant and run."""
    runs = RUNS_PER_MONTH[vendor]
    duration = (
        tenants * (per["cpu_s"] * CPU_FACTOR + per["waiting_s"] + per["store_s"])
        + RTT["Publish"] * tenants * steady_publishes
    )
    gb_seconds = duration * MEMORY_GB * runs
    publishes = steady_publishes * tenants * runs
    log_gb = (per["log_bytes"] * tenants + LAMBDA_LOG_OVERHEAD_BYTES) * runs / 1e9
    cost = {
        "lambda_compute": gb_seconds * PRICES["lambda_gb_second_arm64"],
        "lambda_requests": runs * PRICES["lambda_request"],
        "sns": publishes * (PRICES["sns_publish"] + PRICES["sns_email_delivery"]),
        "logs": log_gb * PRICES["cloudwatch_logs_ingest_gb"],
    }
    return {
        "lambda_seconds_per_run": round(duration, 1),
        "gb_seconds_per_month": round(gb_seconds),
        "sns_publishes_per_month": round(publishes),
        "cost_usd": cost,
        "exceeds_one_invocation": duration > 600,
    }


def _dynamodb(wru: float, stored_bytes: float) -> dict[str, float]:
    """A month's DynamoDB bill from its write units (reads included at their price) and the bytes stored."""
    gb = stored_bytes / 1e9
    return {
        "wru_per_month": round(wru),
        "stored_gb_after_retention": round(gb, 1),
        "writes_usd": wru * PRICES["dynamodb_wru"],
        "storage_usd": gb * PRICES["dynamodb_storage_gb_month"],
        "pitr_usd": gb * PRICES["dynamodb_pitr_gb_month"],
    }


def _before(vendor: str, tenants: int) -> dict[str, float]:
    runs, old = RUNS_PER_MONTH[vendor], BEFORE[vendor]
    months = RETENTION_DAYS / 30
    snapshots = old["snapshots"] * runs * months * (old["snapshot_bytes"] + STORAGE_OVERHEAD_BYTES)
    usage = old["usage_items"] * months * (old["usage_bytes"] + STORAGE_OVERHEAD_BYTES)
    return _dynamodb(old["wru"] * tenants * runs, tenants * (snapshots + usage))


def _after(vendor: str, shape: dict[str, Any], tenants: int) -> dict[str, float]:
    """`shape`: one design's `table_shape` measurements of the vendor."""
    runs, changes = RUNS_PER_MONTH[vendor], CHANGES_PER_MONTH[vendor]
    first, unchanged, changed = shape["first"], shape["unchanged"], shape["changed"]
    key = "tenant_wru_equivalent_per_tenant"
    per_tenant = first[key] + (changes - 1) * changed[key] + (runs - changes) * unchanged[key]
    wru = tenants * per_tenant + runs * unchanged["account_wru_per_run"]
    months = RETENTION_DAYS / 30
    key = "snapshot_stored_bytes_per_tenant"
    snapshots = (first[key] + (changes - 1) * changed[key]) * months
    usage_items = first["items_by_type"].get("usage", 0) / first["tenants"]
    usage = usage_items * (changed["usage_item_bytes"] + STORAGE_OVERHEAD_BYTES) * months
    return {
        **_dynamodb(wru, tenants * (snapshots + usage)),
        "items_per_tenant_month": round(first["items_per_tenant"] + (changes - 1) * changed["items_per_tenant"], 1),
        "bytes_written_per_tenant_month": round(
            first["bytes_per_tenant"] + (changes - 1) * changed["bytes_per_tenant"]
        ),
    }


def scenario(results: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    """`results`: the raw results of keepnet, gravityzone, thousandeyes, table_shape (and dynamodb), this run's
    or the last."""
    keepnet = results["keepnet"]["raw"]
    gravityzone = results["gravityzone"]["raw"]
    thousandeyes = results["thousandeyes"]["raw"]
    shapes = results["table_shape"]["raw"]
    moto = results.get("dynamodb", {}).get("raw")
    per_tenant = {
        ("keepnet", 1_000): _per_run(keepnet["usagewatch_defaults_1000"], 1_000),
        ("keepnet", 10_000): _per_run(keepnet["usagewatch_defaults"], 10_000),
        "gravityzone": _per_run(gravityzone, gravityzone["companies"]),
        "thousandeyes": _per_run(thousandeyes, thousandeyes["summary"]["tenants_collected"]),
    }
    # Publishes in steady state: a threshold alert fires once per tenant, metric and month and resolves
    # once (repeat_after_hours defaults to 0), so a month sees about two events per first-run alert.
    months: list[dict[str, Any]] = []
    for vendor in ("keepnet", "gravityzone", "thousandeyes"):
        for tenants in TENANTS:
            per = per_tenant[(vendor, tenants)] if vendor == "keepnet" else per_tenant[vendor]
            steady = 2 * per["publishes_first_run"] / RUNS_PER_MONTH[vendor]
            other = _other(vendor, per, tenants, steady_publishes=steady)
            other_usd = sum(other["cost_usd"].values())
            month: dict[str, Any] = {"vendor": vendor, "tenants": tenants, **other, "other_usd": round(other_usd, 2)}
            designs = {"before": _before(vendor, tenants)}
            for design in DESIGNS:
                shape = dict(shapes[design][vendor])
                shape.setdefault("first", shapes["change_log"][vendor]["first"])
                shape.setdefault("unchanged", shapes["change_log"][vendor]["unchanged"])
                designs[design] = _after(vendor, shape, tenants)
            for found in designs.values():
                found["total_usd"] = round(
                    other_usd + found["writes_usd"] + found["storage_usd"] + found["pitr_usd"], 2
                )
                for name in ("writes_usd", "storage_usd", "pitr_usd"):
                    found[name] = round(found[name], 2)
            for design in DESIGNS:
                designs[design]["ratio"] = round(designs[design]["total_usd"] / designs["before"]["total_usd"], 3)
            month["designs"] = designs
            month["cost_usd"] = {k: round(v, 4) for k, v in other["cost_usd"].items()}
            months.append(month)
    raw = {
        "prices": PRICES,
        "prices_as_of": PRICES_AS_OF,
        "region": "us-east-1",
        "assumptions": {
            "memory_gb": MEMORY_GB,
            "cpu_factor_512mb": round(CPU_FACTOR, 2),
            "runs_per_month": RUNS_PER_MONTH,
            "changes_per_month": CHANGES_PER_MONTH,
            "rtt_s": RTT,
            "retention_days": RETENTION_DAYS,
            "storage_overhead_bytes": STORAGE_OVERHEAD_BYTES,
            "before": BEFORE,
        },
        "per_tenant_per_run": {str(k): v for k, v in per_tenant.items()},
        "steady_state_moto_publishes": None if moto is None else moto["500"]["runs"][-1]["sns"],
        "months": months,
        "markdown": markdown(months),
    }
    rows = [
        Row(
            "cost",
            f"{m['vendor']} {m['tenants']:,} tenants, month at steady state",
            m["designs"]["change_log"]["total_usd"],
            "USD",
            m["designs"]["before"]["total_usd"],
            "before",
            f"≤ {TARGET_RATIO} of before",
            m["designs"]["change_log"]["ratio"] <= TARGET_RATIO,
            details={"designs": m["designs"], "lambda_s_per_run": m["lambda_seconds_per_run"]},
        )
        for m in months
    ]
    return rows, raw


def markdown(months: list[dict[str, Any]]) -> str:
    """The before/after table of docs/performance.md."""
    lines = [
        "| Vendor, tenants | WRU / month, before → after | stored after 400 d, before → after | Lambda, SNS, logs "
        "| **Month at steady state, before → after** | ratio | one snapshot a change (ratio) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in months:
        before, after, plain = (m["designs"][k] for k in ("before", "change_log", "snapshot_per_change"))
        lines.append(
            f"| {m['vendor']} {m['tenants']:,} "
            f"| {before['wru_per_month'] / 1e6:.2f} M → {after['wru_per_month'] / 1e6:.2f} M "
            f"| {before['stored_gb_after_retention']:,} GB → {after['stored_gb_after_retention']:,} GB "
            f"| ${m['other_usd']:.2f} | **${before['total_usd']:,.2f} → ${after['total_usd']:,.2f}** "
            f"| {after['ratio']:.2f} | ${plain['total_usd']:,.2f} ({plain['ratio']:.2f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import json

    from bench.run import RESULTS

    print(json.loads(RESULTS.read_text())["scenarios"]["cost"]["raw"]["markdown"])

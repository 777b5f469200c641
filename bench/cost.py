"""Cost model: the monthly AWS bill for 1,000 and 10,000 tenants per vendor, from the measured runs.

Per run, from the scenarios: Lambda duration (CPU seconds scaled to a 512 MB function's share of a vCPU,
plus the time spent waiting on the vendor, plus DynamoDB round trips at the assumed latency), DynamoDB
write request units (table and gsi1, from the items and their sizes), SNS publishes, log bytes. Scaled
linearly in tenants from the measured size (Keepnet is measured at both 1,000 and 10,000), times the
default schedules: Keepnet and GravityZone every 6 hours, ThousandEyes hourly.

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
INPUTS: Final = ("keepnet", "gravityzone", "thousandeyes", "dynamodb")


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


def _monthly(vendor: str, per: dict[str, float], tenants: int, *, steady_publishes: float) -> dict[str, Any]:
    """One vendor at `tenants` tenants for a month; `steady_publishes`: SNS publishes per tenant and run."""
    runs = RUNS_PER_MONTH[vendor]
    duration = (
        tenants * (per["cpu_s"] * CPU_FACTOR + per["waiting_s"] + per["store_s"])
        + RTT["Publish"] * tenants * steady_publishes
    )
    gb_seconds = duration * MEMORY_GB * runs
    wru = per["wru"] * tenants * runs
    # Snapshots live RETENTION_DAYS: the table settles at that many days of them (growing until then).
    storage_gb = per["snapshot_bytes"] * tenants * runs / 30 * RETENTION_DAYS / 1e9
    publishes = steady_publishes * tenants * runs
    log_gb = (per["log_bytes"] * tenants + LAMBDA_LOG_OVERHEAD_BYTES) * runs / 1e9
    cost = {
        "lambda_compute": gb_seconds * PRICES["lambda_gb_second_arm64"],
        "lambda_requests": runs * PRICES["lambda_request"],
        "dynamodb_writes": wru * PRICES["dynamodb_wru"],
        "sns": publishes * (PRICES["sns_publish"] + PRICES["sns_email_delivery"]),
        "logs": log_gb * PRICES["cloudwatch_logs_ingest_gb"],
    }
    steady = {
        "dynamodb_storage_after_retention": storage_gb * PRICES["dynamodb_storage_gb_month"],
        "dynamodb_pitr_after_retention": storage_gb * PRICES["dynamodb_pitr_gb_month"],
    }
    return {
        "vendor": vendor,
        "tenants": tenants,
        "runs_per_month": runs,
        "lambda_seconds_per_run": round(duration, 1),
        "gb_seconds_per_month": round(gb_seconds),
        "wru_per_run": round(per["wru"] * tenants),
        "wru_per_month": round(wru),
        "gsi_share_of_wru": round(per["wru_gsi"] / per["wru"], 3) if per["wru"] else 0,
        "sns_publishes_per_month": round(publishes),
        "snapshot_storage_gb_after_retention": round(storage_gb, 1),
        "cost_usd": {k: round(v, 4) for k, v in cost.items()},
        "usage_cost_usd": round(sum(cost.values()), 2),
        "storage_cost_usd_after_retention": {k: round(v, 2) for k, v in steady.items()},
        "total_usd_after_retention": round(sum(cost.values()) + sum(steady.values()), 2),
        "exceeds_one_invocation": duration > 600,
    }


def scenario(results: dict[str, Any]) -> tuple[list[Row], dict[str, Any]]:
    """`results`: the raw results of keepnet, gravityzone, thousandeyes and dynamodb (this run's or the last)."""
    keepnet = results["keepnet"]["raw"]
    gravityzone = results["gravityzone"]["raw"]
    thousandeyes = results["thousandeyes"]["raw"]
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
    for tenants in TENANTS:
        for vendor in ("keepnet", "gravityzone", "thousandeyes"):
            per = per_tenant[(vendor, tenants)] if vendor == "keepnet" else per_tenant[vendor]
            steady = 2 * per["publishes_first_run"] / RUNS_PER_MONTH[vendor]
            months.append(_monthly(vendor, per, tenants, steady_publishes=steady))
    raw = {
        "prices": PRICES,
        "prices_as_of": PRICES_AS_OF,
        "region": "us-east-1",
        "assumptions": {
            "memory_gb": MEMORY_GB,
            "cpu_factor_512mb": round(CPU_FACTOR, 2),
            "runs_per_month": RUNS_PER_MONTH,
            "rtt_s": RTT,
            "retention_days": RETENTION_DAYS,
        },
        "per_tenant_per_run": {str(k): v for k, v in per_tenant.items()},
        "steady_state_moto_publishes": None if moto is None else moto["500"]["runs"][-1]["sns"],
        "months": months,
    }
    rows = [
        Row(
            "cost",
            f"{m['vendor']} {m['tenants']:,} tenants / month",
            m["usage_cost_usd"],
            "USD",
            m["total_usd_after_retention"],
            "with storage + PITR after 400 d",
            details={
                "lambda_s_per_run": m["lambda_seconds_per_run"],
                "wru_per_month": m["wru_per_month"],
                "cost_usd": m["cost_usd"],
            },
        )
        for m in months
    ]
    return rows, raw

"""The demo's billing story: customers across vendors, suggestions accepted, a contracts file, the month's
reconciliation and the monthly report, all through the real `usagewatch` command and report function."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.local_aws import LocalAws

PERIOD = "2026-11"
BUCKET = "usagewatch-demo-reports"


def billing_story(
    aws: LocalAws,
    cli: Callable[[list[str]], str],
    say: Callable[[str], None],
    invoke: Callable[[str, dict[str, Any], dict[str, str]], tuple[dict[str, Any] | None, str | None]],
    workdir: Path,
    fail_tenant: Callable[[str], None] | None = None,
    show: Callable[[list[str], str], str] | None = None,
) -> dict[str, Any] | None:
    """`fail_tenant(company_id)` makes one GravityZone company's reads fail and runs that collector again late in
    the month (and prints what happened): its customer's line becomes incomplete, with the reason. `show(argv,
    note)` prints a `usagewatch` command as a user would type it (files given relative to the working directory)."""
    table = ["--table", aws.table_name]

    def run(argv: list[str], note: str = "") -> str:
        shown = [_relative(a) for a in argv]
        if show is not None:
            show(shown, note)
        else:
            say(f"usagewatch {' '.join(shown)}" + (f"   # {note}" if note else ""))
        return cli(argv)

    unmapped = run(["customers", "unmapped", "--period", PERIOD, *table], "its last line:")
    say("  " + unmapped.strip().splitlines()[-1])

    suggested = run(["customers", "suggest", "--period", PERIOD, "--csv", *table], "read below")
    proposals = list(csv.DictReader(io.StringIO(suggested)))
    by_customer: dict[str, list[dict[str, str]]] = {}
    for row in proposals:
        by_customer.setdefault(row["customer_id"], []).append(row)
    across = {cid: rows for cid, rows in by_customer.items() if len({r["vendor"] for r in rows}) > 1}
    say(f"  {len(proposals)} proposals; the same company in several vendors under slightly different names")
    say("  becomes one customer:")
    for cid, rows in sorted(across.items())[:3]:
        names = "; ".join(f"{r['vendor']} {r['tenant_name']!r} ({r['method']} {float(r['score']):.0f})" for r in rows)
        say(f"    {cid}: {names}")

    # The operator reads the file and leaves one GravityZone tenant out: nobody has decided who pays for it yet.
    left_out = next(r for r in proposals if r["vendor"] == "gravityzone" and r["customer_id"] not in across)
    accepted = [r for r in proposals if r is not left_out]
    # Each customer's company in the PSA (ConnectWise's company identifier), for the PSA link (tests/demo_psa.py).
    accepted = [{**r, "external_ref": psa_company(r["customer_id"])} for r in accepted]
    mapping = workdir / "suggestions.csv"
    _write(mapping, accepted, [*proposals[0], "external_ref"])
    say(f"The operator accepts them all but {left_out['tenant_name']!r} (nobody has decided who pays for it yet),")
    say("adding each customer's PSA company identifier as external_ref:")
    say("  " + run(["customers", "import", str(mapping), *table]).strip())

    lines = [json.loads(x) for x in cli(["reconcile", "--period", PERIOD, "--json", *table]).splitlines()]
    used = {(x["customer_id"], x["vendor"], x["metric"]): x["used"] for x in lines if x["status"] == "no_contract"}
    contracts = []
    for n, cid in enumerate(sorted(across)[:4]):
        for (customer, vendor, metric), value in sorted(used.items()):
            if customer == cid and metric in ("monthly_users", "endpoint_monthly_usage"):
                # Two customers use more than they are billed for, one far less, the rest exactly.
                quantity = {0: value - 7, 1: value - 2, 2: value + 60}.get(n, value)
                contracts.append(
                    {
                        "customer_id": cid,
                        "vendor": vendor,
                        "metric": metric,
                        "quantity": max(0, quantity),
                        "effective_from": "2026-01",
                        "agreement": f"AG-{100 + n}",
                        "unit_price": "2.50",
                    }
                )
    file = workdir / "contracts.csv"
    _write(
        file, contracts, ["customer_id", "vendor", "metric", "quantity", "effective_from", "agreement", "unit_price"]
    )
    say("  " + run(["contracts", "import", str(file), *table]).strip())

    if fail_tenant is not None:
        owners = {(r["vendor"], r["customer_id"]): r for r in accepted}
        victim = next(owners[("gravityzone", c["customer_id"])] for c in contracts if c["vendor"] == "gravityzone")
        say(f"GravityZone now fails to read {victim['tenant_name']!r} ({victim['customer_id']}) on the month's")
        say("last run (2026-11-30T06:00:00Z):")
        fail_tenant(victim["tenant_id"])
        say("")

    shown = run(["reconcile", "--period", PERIOD, *table], "first lines, the summary, why a line is not final")
    report = shown.rstrip().splitlines()
    tail = report[next(i for i in range(len(report) - 1, 1, -1) if "customer(s) under-billed." in report[i]) :]
    for line in [*report[2:10], "  ...", *tail]:
        say(f"  {line}")

    aws.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    env = {"USAGE_TABLE_NAME": aws.table_name, "ALERT_TOPIC_ARN": aws.topic_arn, "REPORT_BUCKET": BUCKET}
    ready, error = invoke("report", {"period": PERIOD}, env)
    if ready is None:
        say(f"Monthly report FAILED: {error}")
        return None
    page = aws.client("s3").get_object(Bucket=BUCKET, Key=ready["html_key"])["Body"].read()
    local = workdir / Path(ready["html_key"]).name
    local.write_bytes(page)
    events = [e for e in aws.drain_events() if e["event_type"] == "report.ready"]
    say(f'Monthly report function ({{"period": "{PERIOD}"}}): s3://{BUCKET}/{ready["html_key"]} and .csv')
    say(f"  report.ready delivered to the subscriber queue: {events[0]['summary'] if events else 'MISSING'}")
    say(f"  the page, copied here to open in a browser: {workdir.name}/{local.name}")
    return ready


def psa_company(customer_id: str) -> str:
    """The demo's ConnectWise company identifier of a customer."""
    return customer_id.upper()


def _relative(arg: str) -> str:
    """A file argument as typed in the working directory (the repository root for make demo and demo-shell)."""
    path = Path(arg)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        return str(path.relative_to(Path.cwd()))
    return arg


def _write(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

"""Read usage back from the deployed table: `python -m usagewatch.cli report --period 2026-11 [--csv]`.

Uses the operator's AWS credentials (boto3's usual chain) and USAGE_TABLE_NAME or --table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict

from usagewatch.model import Period
from usagewatch.report import customers_table, totals_table, usage_csv
from usagewatch.store import DynamoStore


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="usagewatch", description=__doc__)
    parser.add_argument("--table", default=os.environ.get("USAGE_TABLE_NAME"), help="the usage table name")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="usage and totals of one period")
    report.add_argument("--period", required=True, help="YYYY-MM")
    report.add_argument("--vendor", choices=("gravityzone", "keepnet", "thousandeyes"))
    report.add_argument("--csv", action="store_true", help="one line per customer and metric, for billing")
    alerts = commands.add_parser("alerts", help="open alerts of one vendor account")
    alerts.add_argument("--vendor", required=True, choices=("gravityzone", "keepnet", "thousandeyes"))
    alerts.add_argument("--account", required=True)
    runs = commands.add_parser("runs", help="the latest collection runs of one vendor account")
    runs.add_argument("--vendor", required=True, choices=("gravityzone", "keepnet", "thousandeyes"))
    runs.add_argument("--account", required=True)
    args = parser.parse_args(argv)
    if not args.table:
        parser.error("set USAGE_TABLE_NAME or pass --table (the stack output UsageTableName)")
    store = DynamoStore(args.table)

    if args.command == "report":
        period = str(Period.parse(args.period))
        items = store.period_usage(period, vendor=args.vendor)
        if args.csv:
            sys.stdout.write(usage_csv(items))
            return 0
        totals = [t for t in store.period_totals(period) if args.vendor in (None, t["vendor"])]
        print(f"Usage for {period}\n\n{totals_table(totals)}\n")
        for metric in sorted({i["metric"] for i in items}):
            print(f"{customers_table(items, metric, limit=20)}\n")
    elif args.command == "alerts":
        for state in store.open_alerts(args.vendor, args.account).values():
            print(json.dumps(asdict(state), default=str))
    else:
        print(json.dumps(store.runs(args.vendor, args.account), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

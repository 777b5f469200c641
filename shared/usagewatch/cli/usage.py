"""`usagewatch report`: usage and totals of one month, per vendor account and customer."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

from usagewatch import registry
from usagewatch.cli.output import CliError, flat_row, json_lines, kind_of
from usagewatch.model import Period
from usagewatch.report import customers_table, totals_table, usage_csv

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "usage and totals of one month"
EXAMPLE: Final = "usagewatch report --period 2026-11 --vendor keepnet --csv > keepnet-2026-11.csv"
DEFAULT_LIMIT: Final = 20


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", required=True, help="the month, YYYY-MM (e.g. 2026-11)")
    parser.add_argument("--vendor", choices=registry.vendor_ids())
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"customers shown per metric (default {DEFAULT_LIMIT}; 0: all)"
    )


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    period = str(Period.parse(args.period, field="--period"))
    if args.limit < 0:
        raise CliError("--limit: 0 (all) or more")
    items = [u.row() for u in store.period_usage(period, vendor=args.vendor)]
    totals = [flat_row(t) for t in store.period_totals(period) if args.vendor in (None, t.vendor)]
    kind = kind_of(args)
    if kind == "csv":
        return usage_csv(items)
    if kind == "json":
        return json_lines(
            [{"record_type": "usage", **i} for i in items] + [{"record_type": "total", **t} for t in totals]
        )
    if not items and not totals:
        return f"No usage stored for {period}{f' ({args.vendor})' if args.vendor else ''}."
    parts = [f"Usage for {period}", totals_table(totals)]
    silent: list[str] = []
    for metric in sorted({i["metric"] for i in items}):
        rows = [i for i in items if i["metric"] == metric and i.get("billed", True) and not i.get("removed_at")]
        if not any(float(i["value"]) for i in rows):
            silent.append(metric)
            continue
        shown = len(rows) if args.limit == 0 else min(args.limit, len(rows))
        parts.append(customers_table(rows, metric, limit=shown))
        if shown < len(rows):
            parts.append(f"(showing the {shown} largest of {len(rows)} customers; --limit 0 shows all)")
    if silent:
        parts.append(f"No usage this month in: {', '.join(silent)}.")
    return "\n\n".join(parts)

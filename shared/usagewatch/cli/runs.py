"""`usagewatch runs`: the latest collection runs of each account, with every error in full."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING, Final

from usagewatch import registry
from usagewatch.cli.accounts import accounts, add_filters
from usagewatch.cli.output import CliError, csv_text, flat_row, json_lines, kind_of
from usagewatch.report import table
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "the latest collection runs of each account, and why any failed"
EXAMPLE: Final = "usagewatch runs --vendor gravityzone --account msp-main --json"
WIDTH: Final = 100


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add_filters(parser)
    parser.add_argument("--limit", type=int, default=5, help="runs shown per account (default 5)")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    if args.limit < 1:
        raise CliError("--limit: 1 or more")
    pairs = accounts(store, args)
    runs = [flat_row(r) for vendor, account in pairs for r in store.runs(vendor, account, limit=args.limit)]
    if args.account and not runs:
        raise CliError(
            f"no runs of account {args.account!r} in the table{f' for {args.vendor}' if args.vendor else ''}"
        )
    kind = kind_of(args)
    if kind == "json":
        return json_lines(runs)
    columns = ("vendor", "account_id", "as_of", "status", "tenants_ok", "tenants_failed", "records_written")
    if kind == "csv":
        return csv_text(runs, (*columns, "alerts_published", "started_at", "finished_at", "errors"))
    if not runs:
        return "No runs found."
    cells = [
        (
            registry.display_name(r["vendor"]),
            r["account_id"],
            r["as_of"],
            r["status"],
            r.get("tenants_ok", 0),
            r.get("tenants_failed", 0),
            r.get("records_written", 0),
            len(r.get("errors") or []),
        )
        for r in runs
    ]
    parts = [table((*columns, "errors"), cells)]
    for r in runs:
        if r.get("errors"):
            parts.append(f"\n{registry.display_name(r['vendor'])} {clean_name(r['account_id'])}, {r['as_of']}:")
            for error in r["errors"]:
                wrapped = textwrap.wrap(clean_name(str(error)), WIDTH - 4, break_long_words=True)
                parts.append("\n".join(["  - " + wrapped[0], *("    " + w for w in wrapped[1:])]) if wrapped else "  -")
    return "\n".join(parts)

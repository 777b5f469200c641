"""`usagewatch contracts`: what each customer is billed for (import a CSV, end a contract)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from usagewatch.billing_report import UsageReader
from usagewatch.cli import changes
from usagewatch.cli.output import add_command
from usagewatch.model import Period

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "what each customer is billed for: import, end"
EXAMPLE: Final = "usagewatch contracts import contracts.csv"


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="action", required=True, metavar="{import,end}")
    imp = add_command(
        subs, "import", common, "import a contracts CSV (all or nothing)", "usagewatch contracts import contracts.csv"
    )
    imp.add_argument(
        "file", help="customer_id,vendor,metric,quantity,effective_from[,effective_to,agreement,unit_price]"
    )
    imp.add_argument("--amend", action="store_true", help="allow changing months that have already ended")
    end = add_command(
        subs,
        "end",
        common,
        "end a contract: its last billed month",
        "usagewatch contracts end acme keepnet monthly_users --last 2026-12",
    )
    end.add_argument("customer_id")
    end.add_argument("vendor")
    end.add_argument("metric")
    end.add_argument("--last", required=True, help="the last month it applies to, YYYY-MM")
    end.add_argument("--amend", action="store_true", help="allow changing a month that has already ended")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    billing = changes.billing_of(store)
    with changes.conflicts_exit():
        if args.action == "end":
            return changes.end_contract(billing, args)
        text = changes.read_file(args.file)
        return changes.import_contracts(store, billing, text, args.file, amend=args.amend, known=known_metrics(store))


def known_metrics(store: DynamoStore) -> dict[str, set[str]]:
    """The metrics each vendor has stored this month or last: a contract names one of them."""
    now = Period.of(datetime.now(UTC))
    known: dict[str, set[str]] = {}
    reader = UsageReader(store)
    for period in (now.previous(), now):
        for item in reader.items(period):
            known.setdefault(str(item["vendor"]), set()).add(str(item["metric"]))
    return known

"""`usagewatch alerts`: the firing alerts of every account, or of one vendor, account, customer or rule."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import TYPE_CHECKING, Final

from usagewatch import registry
from usagewatch.cli.accounts import accounts, add_filters
from usagewatch.cli.output import CliError, csv_text, json_lines, kind_of, one_of
from usagewatch.notify import fmt
from usagewatch.report import table
from usagewatch.rules import RULE_NAMES
from usagewatch.stored import COLLECTION_RULE
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "firing alerts (every account by default)"
EXAMPLE: Final = "usagewatch alerts --table usagewatch-usage --rule over_quota"
RULES: Final = (*RULE_NAMES, COLLECTION_RULE)


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add_filters(parser)
    parser.add_argument("--tenant", help="one customer (tenant id)")
    parser.add_argument("--rule", help=f"one rule ({', '.join(RULES)})")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    one_of("--rule", args.rule, RULES)
    states = []
    pairs = accounts(store, args)
    for vendor, account in pairs:
        states += [
            s
            for s in store.open_alerts(vendor, account).values()
            if args.tenant in (None, s.tenant_id) and args.rule in (None, s.rule)
        ]
    if args.account and not states and not any(store.runs(v, a, limit=1) for v, a in pairs):
        raise CliError(f"no account {args.account!r} in the table{f' for {args.vendor}' if args.vendor else ''}")
    states.sort(key=lambda s: (s.vendor, s.account_id, s.tenant_name, s.rule))
    rows = [asdict(s) for s in states]
    kind = kind_of(args)
    if kind == "json":
        return json_lines(rows)
    columns = ("vendor", "account_id", "tenant_name", "tenant_id", "rule", "metric", "period", "value", "quota")
    if kind == "csv":
        return csv_text(rows, (*columns, "severity", "since", "error"))
    if not rows:
        return f"No firing alerts ({len(pairs)} account(s) looked at)."
    cells = [
        (
            registry.display_name(s.vendor),
            s.account_id,
            clean_name(s.tenant_name),
            s.rule,
            s.metric or "-",
            s.period or "-",
            fmt(s.value) if not s.is_collection else clean_name(s.error or "")[:60],
            fmt(s.quota) if not s.is_collection else "",
            s.since,
        )
        for s in states
    ]
    headers = ("vendor", "account_id", "tenant_name", "rule", "metric", "period", "value", "quota", "since")
    return table(headers, cells) + f"\n\n{len(rows)} firing alert(s)."

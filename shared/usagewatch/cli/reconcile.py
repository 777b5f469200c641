"""`usagewatch reconcile`: billed versus used for one month, as a table, CSV or JSON lines (docs/billing.md).

The table shows the lines to act on (ACTION) and counts the rest; `--all` shows every line, `--status` chooses.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from usagewatch.billing_html import money_text, quantity_text
from usagewatch.billing_report import Reconciliation, gather, render_csv, rows
from usagewatch.cli import changes
from usagewatch.cli.output import CliError, default_period, json_lines, kind_of, listed
from usagewatch.completeness import FuturePeriodError, refuse_future
from usagewatch.customers import NamedTenant
from usagewatch.errors import ConfigError
from usagewatch.reconcile import DEFAULT_TOLERANCE, STATUS_ORDER, Line, Status, summary, unbilled_by_customer
from usagewatch.report import table
from usagewatch.settings import load_currency
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "billed versus used for one month: the lines to act on, with their unbilled value"
EXAMPLE: Final = "usagewatch reconcile --period 2026-11 --status under_billed,over_billed"
ACTION: Final[tuple[Status, ...]] = ("under_billed", "over_billed", "incomplete", "unmapped")
"""The statuses someone acts on: the table's default."""
COLUMNS: Final = (
    "customer_name", "vendor", "metric", "used", "contracted", "difference", "status", "unbilled_value", "change"
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--period", help="the month, YYYY-MM (default: the last month that ended, or the latest collected)"
    )
    parser.add_argument("--customer", help="one customer id")
    parser.add_argument("--status", help=f"only lines of these statuses, comma-separated ({', '.join(STATUS_ORDER)})")
    parser.add_argument("--all", action="store_true", help="every line in the table (default: the lines to act on)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"share of a contract unused before it is over-billed (default {DEFAULT_TOLERANCE})",
    )


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    billing = changes.billing_of(store)
    if not 0 <= args.tolerance < 1:
        raise CliError("--tolerance: a share from 0 to below 1 (e.g. 0.1)")
    wanted = listed("--status", args.status, STATUS_ORDER) if args.status is not None else None
    if wanted is not None and args.all:
        raise CliError("--status and --all: one or the other")
    period = default_period(args.period, lambda p: bool(store.period_totals(str(p))))
    try:
        refuse_future(period, datetime.now(UTC))
        currency = load_currency()
    except (FuturePeriodError, ConfigError) as exc:
        raise CliError(str(exc)) from exc
    if args.customer and args.customer not in {c.customer_id for c in billing.customers()}:
        raise CliError(f"no customer {args.customer!r}: `usagewatch customers import` adds customers")
    result = gather(store, period, customer_id=args.customer, tolerance=args.tolerance, currency=currency)
    kind = kind_of(args)
    if wanted is not None:
        result = replace(result, lines=[x for x in result.lines if x.status in wanted])
    if kind == "csv":
        return render_csv(result)
    if kind == "json":
        return json_lines(rows(result))
    shown = wanted if wanted is not None else STATUS_ORDER if args.all else ACTION
    return reconcile_table(result, shown=shown)


def reconcile_table(result: Reconciliation, *, shown: Sequence[str] = STATUS_ORDER) -> str:
    """The reconciliation for a terminal: a line per customer, vendor and metric of the `shown` statuses, one line
    counting the others, the unbilled value per customer and for the month, and a footer naming the accounts
    whose month is not fully read."""
    period, code = result.period, result.currency.code
    if not result.lines and not result.incomplete_accounts:
        return f"Nothing to reconcile for {period}: no usage or contracts stored."
    lines = sorted((x for x in result.lines if x.status in shown), key=_money_first)
    hidden = summary(x for x in result.lines if x.status not in shown)
    cells = [
        (clean_name(x.customer_name) + (f" [{clean_name(x.tenant_id)}]" if x.tenant_id else ""), x.vendor, x.metric,
         quantity_text(x.used, none="-"), quantity_text(x.contracted, none="-"), _signed(x.difference),
         x.status, money_text(x.unbilled_value, code, none="-"), _signed(x.change))
        for x in lines
    ]  # fmt: skip
    counts = summary(result.lines)
    said = ", ".join(f"{counts[s]} {s}" for s in STATUS_ORDER)
    title = f"Billed versus used, {period}" + (" (provisional: the month has not ended)" if result.provisional else "")
    parts = [title, ""]
    parts.append(table(COLUMNS, cells) if cells else f"No lines of status {', '.join(shown)}.")
    others = sum(hidden[s] for s in STATUS_ORDER)
    if others:
        kinds = ", ".join(f"{hidden[s]} {s}" for s in STATUS_ORDER if hidden[s])
        parts.append(f"... and {others} more line(s) ({kinds}): --all shows every line.")
    parts += ["", f"{said}; {counts['customers_under_billed']} customer(s) under-billed."]
    owed = unbilled_by_customer(result.lines)
    if owed:
        names = {x.customer_id: x.customer_name for x in result.lines}
        parts.append(
            "Unbilled: "
            + ", ".join(f"{clean_name(names[c])} {money_text(v, code)}" for c, v in sorted(owed.items()))
            + f"; {money_text(result.unbilled, code)} for the month."
        )
    else:
        parts.append(f"Unbilled: {money_text(result.unbilled, code)} for the month.")
    for x in result.lines:
        if x.amended_at:
            parts.append(
                f"Amended: {clean_name(x.customer_name)} {x.vendor} {x.metric}, contract amended {x.amended_at}"
            )
    shaky = {(x.customer_name, x.vendor, x.reason or ""): None for x in result.lines if x.status == "incomplete"}
    if result.incomplete_accounts or shaky:
        parts.append("")
        parts.append("Incomplete (not final until these are read; see `usagewatch runs`):")
        parts.extend(f"  {clean_name(why)}" for why in result.footer())
        parts.extend(f"  {clean_name(name)} {vendor}: {clean_name(why)}" for name, vendor, why in shaky)
    return "\n".join(parts)


def _money_first(line: Line) -> tuple[int, Decimal, str, str, str]:
    """Biggest unbilled value first, then by status, customer, vendor and metric."""
    rank = STATUS_ORDER.index(line.status)
    return (rank, -(line.unbilled_value or Decimal(0)), line.customer_name.lower(), line.vendor, line.metric)


def _signed(value: Decimal | None) -> str:
    return quantity_text(value, signed=True, none="-")


def overlap_note(overlap: list[tuple[NamedTenant, list[str]]], kind: str) -> str:
    """For `customers unmapped` (the table only): each tenant stored under several accounts of one vendor."""
    if kind != "table" or not overlap:
        return ""
    lines = [
        f"{t.tenant.vendor} tenant {clean_name(t.tenant.tenant_id)} ({clean_name(t.name)}) is stored under accounts "
        f"{', '.join(clean_name(a) for a in accounts)}: counted once, through {clean_name(t.tenant.account_id)}"
        for t, accounts in overlap
    ]
    return "\n\n" + "\n".join(lines)

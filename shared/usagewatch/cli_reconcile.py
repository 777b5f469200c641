"""`usagewatch reconcile`: billed versus used for one month, as a table, CSV or JSON lines (docs/billing.md)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from usagewatch.billing_html import money_text, quantity_text
from usagewatch.billing_report import Reconciliation, gather, render_csv, rows
from usagewatch.completeness import FuturePeriodError, refuse_future
from usagewatch.customers import NamedTenant
from usagewatch.errors import ConfigError
from usagewatch.model import Period
from usagewatch.reconcile import STATUS_ORDER, summary, unbilled_by_customer
from usagewatch.report import table
from usagewatch.settings import load_currency
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore
    from usagewatch.store.billing import BillingStore

Fail = Callable[[str], Exception]


def reconcile_command(
    store: DynamoStore, billing: BillingStore, args: argparse.Namespace, kind: str, fail: Fail
) -> str:
    if not 0 <= args.tolerance < 1:
        raise fail("--tolerance: a share from 0 to below 1 (e.g. 0.1)")
    period = Period.parse(args.period, field="--period")
    try:
        refuse_future(period, datetime.now(UTC))
        currency = load_currency()
    except (FuturePeriodError, ConfigError) as exc:
        raise fail(str(exc)) from exc
    customers = billing.customers()
    if args.customer and args.customer not in {c.customer_id for c in customers}:
        raise fail(f"no customer {args.customer!r}: `usagewatch customers import` adds customers")
    result = gather(store, period, customer_id=args.customer, tolerance=args.tolerance, currency=currency)
    if kind == "csv":
        return render_csv(result)
    if kind == "json":
        return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows(result))
    return reconcile_table(result)


def reconcile_table(result: Reconciliation) -> str:
    """The reconciliation for a terminal: a line per customer, vendor and metric, the unbilled value per line,
    per customer and for the month, and a footer naming the accounts whose month is not fully read."""
    period, lines, code = result.period, result.lines, result.currency.code
    if not lines and not result.incomplete_accounts:
        return f"Nothing to reconcile for {period}: no usage or contracts stored."
    owed = unbilled_by_customer(lines)
    cells = [
        (clean_name(x.customer_name) + (f" [{x.tenant_id}]" if x.tenant_id else ""), x.vendor, x.metric,
         quantity_text(x.used, none="-"), quantity_text(x.contracted, none="-"), _signed(x.difference),
         x.status.replace("_", "-"), money_text(x.unbilled_value, code, none="-"), _signed(x.change))
        for x in lines
    ]  # fmt: skip
    counts = summary(lines)
    said = ", ".join(f"{counts[s]} {s.replace('_', '-')}" for s in STATUS_ORDER)
    title = f"Billed versus used, {period}" + (" (provisional: the month has not ended)" if result.provisional else "")
    parts = [
        title,
        "",
        table(("customer", "vendor", "metric", "used", "billed", "diff", "status", "unbilled", "vs last month"), cells),
        "",
        f"{said}; {counts['customers_under_billed']} customer(s) under-billed.",
    ]
    if owed:
        names = {x.customer_id: x.customer_name for x in lines}
        parts.append(
            "Unbilled: "
            + ", ".join(f"{clean_name(names[c])} {money_text(v, code)}" for c, v in sorted(owed.items()))
            + f"; {money_text(result.unbilled, code)} for the month."
        )
    else:
        parts.append(f"Unbilled: {money_text(result.unbilled, code)} for the month.")
    for x in lines:
        if x.amended_at:
            parts.append(
                f"Amended: {clean_name(x.customer_name)} {x.vendor} {x.metric}, contract amended {x.amended_at}"
            )
    shaky = {(x.customer_name, x.vendor, x.reason or ""): None for x in lines if x.status == "incomplete"}
    if result.incomplete_accounts or shaky:
        parts.append("")
        parts.append("Incomplete (not final until these are read; see `usagewatch runs`):")
        parts.extend(f"  {clean_name(why)}" for why in result.footer())
        parts.extend(f"  {clean_name(name)} {vendor}: {clean_name(why)}" for name, vendor, why in shaky)
    return "\n".join(parts)


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

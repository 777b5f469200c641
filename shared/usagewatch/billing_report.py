"""The month's reconciliation read from the table, and rendered for people (HTML) and spreadsheets (CSV).

Both the `usagewatch reconcile` command and the monthly report function use `gather`, so the two never disagree.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from usagewatch import registry
from usagewatch.billing_html import render_html, unmapped_tenants
from usagewatch.completeness import assess, period_runs, refuse_future
from usagewatch.customers import TenantRef, canonical_tenant_id
from usagewatch.model import Period
from usagewatch.reconcile import (
    DEFAULT_TOLERANCE,
    Line,
    Reading,
    billed_once,
    dec,
    overlaps,
    reconcile,
    summary,
    unbilled_by_customer,
    unbilled_total,
)
from usagewatch.settings import DEFAULT_CURRENCY, Currency, load_currency
from usagewatch.store.billing import BillingStore
from usagewatch.stored import StoredUsage
from usagewatch.text import csv_cell

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HISTORY_MONTHS: Final = 6
CSV_COLUMNS: Final = (
    "period",
    "customer_id",
    "customer_name",
    "vendor",
    "metric",
    "used",
    "contracted",
    "quota",
    "difference",
    "status",
    "reason",
    "provisional",
    "change",
    "tenants",
    "agreement",
    "amended_at",
    "currency",
    "unit_price",
    "unbilled_value",
    "tenant_id",
)


class UsageReader:
    """What the reconciliation needs from the collectors' usage, through the usage store's domain reads."""

    def __init__(self, store: DynamoStore) -> None:
        self.store = store

    def items(self, period: Period) -> list[dict[str, Any]]:
        """The billed, current usage of one month as flat rows (a tenant gone from its vendor is not billed)."""
        return [
            u.row() for u in self.store.period_usage(str(period)) if u.record.tenant.billed and u.removed_at is None
        ]

    def readings(self, period: Period) -> list[Reading]:
        return [
            self._reading(u)
            for u in self.store.period_usage(str(period))
            if u.record.tenant.billed and u.removed_at is None
        ]

    def month(self, period: Period) -> tuple[list[Reading], set[TenantRef]]:
        """The billed, current readings of a month, and every tenant with a reading of it (current or removed
        by a complete listing)."""
        usage = [u for u in self.store.period_usage(str(period)) if u.record.tenant.billed]
        seen = {TenantRef(u.record.vendor, u.record.account_id, u.record.tenant_id) for u in usage}
        return [self._reading(u) for u in usage if u.removed_at is None], seen

    @staticmethod
    def _reading(u: StoredUsage) -> Reading:
        return Reading(
            TenantRef(u.record.vendor, u.record.account_id, u.record.tenant_id),
            u.record.tenant.tenant_name,
            u.record.metric,
            u.record.value,
            u.record.quota,
        )


@dataclass(frozen=True, slots=True)
class Reconciliation:
    period: Period
    lines: list[Line]
    history: Mapping[tuple[str, str, str], list[tuple[Period, Decimal]]]
    """Per (customer, vendor, metric): the used value of each earlier month collected, oldest first."""
    currency: Currency = field(default_factory=lambda: Currency(DEFAULT_CURRENCY, 2))
    incomplete_accounts: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(vendor, account) -> why its month is not fully read: the footer of every rendering."""
    provisional: bool = False
    overlaps: Mapping[tuple[str, str], list[str]] = field(default_factory=dict)
    """(vendor, tenant id) -> the accounts it is stored under, when more than one (counted once)."""

    @property
    def counts(self) -> dict[str, int]:
        return summary(self.lines)

    @property
    def unbilled(self) -> Decimal:
        return unbilled_total(self.lines, self.currency.minor_unit)

    def footer(self) -> list[str]:
        """One sentence per incomplete account, in account order."""
        return [why for _, why in sorted(self.incomplete_accounts.items())]


def gather(
    store: DynamoStore,
    period: Period,
    *,
    customer_id: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    history_months: int = 1,
    now: datetime | None = None,
    currency: Currency | None = None,
) -> Reconciliation:
    """The reconciliation of `period` and, for the chart, the used values of up to `history_months` before it.
    A month not begun is refused (`FuturePeriodError`)."""
    now = now or datetime.now(UTC)
    refuse_future(period, now)
    currency = currency or load_currency()
    billing = BillingStore(store)
    usage = UsageReader(store)
    customers = billing.customers()
    mappings = billing.mappings()
    contracts = [c for vendor in registry.vendor_ids() for c in billing.contracts(vendor)]
    months = [period]
    for _ in range(max(1, history_months)):
        months.append(months[-1].previous())
    current, read = usage.month(period)
    current = _without_ignored(current, billing.ignored(), {m.tenant for m in mappings})
    readings = {m: usage.readings(m) for m in months[1:]}
    accounts = set(billing.accounts()) | set(store.period_accounts(str(period)))
    runs = {(v, a): period_runs(store, v, a, period) for v, a in sorted(accounts)}
    gaps = assess(period, runs, store.period_totals(str(period)), read, mappings)
    lines = reconcile(
        period,
        current,
        previous=readings[months[1]],
        customers=customers,
        mappings=mappings,
        contracts=contracts,
        incomplete_accounts=gaps.accounts,
        incomplete_tenants=gaps.tenants,
        provisional=period == Period.of(now),
        tolerance=tolerance,
        minor_unit=currency.minor_unit,
    )
    owner = {m.tenant: m.customer_id for m in mappings}
    history: defaultdict[tuple[str, str, str], list[tuple[Period, Decimal]]] = defaultdict(list)
    for month in reversed(months[1:]):
        sums: defaultdict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
        for r in billed_once(readings[month], owner):
            if (cid := owner.get(r.tenant)) is not None:
                sums[(cid, r.tenant.vendor, r.metric)] += dec(r.value)
        for key, value in sums.items():
            history[key].append((month, value))
    if customer_id is not None:
        lines = [x for x in lines if x.customer_id == customer_id]
    return Reconciliation(
        period,
        lines,
        dict(history),
        currency,
        gaps.accounts,
        period == Period.of(now),
        overlaps(current),
    )


def _without_ignored(readings: list[Reading], ignored: set[TenantRef], mapped: set[TenantRef]) -> list[Reading]:
    """Readings less those of tenants nobody bills on purpose (`customers ignore`), unless a customer owns them."""
    if not ignored:
        return readings

    def key(t: TenantRef) -> tuple[str, str, str]:
        return (t.vendor, t.account_id, canonical_tenant_id(t.vendor, t.tenant_id))

    skip = {key(t) for t in ignored}
    return [r for r in readings if r.tenant in mapped or key(r.tenant) not in skip]


def quantity(value: Decimal | None) -> int | float | None:
    """A quantity for JSON: an int when whole (usage is mostly counts), else the exact decimal's float."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)


def line_row(period: Period, x: Line, currency: Currency | None = None) -> dict[str, Any]:
    """One line as CSV and JSON give it: quantities as numbers, money as exact text in `currency`."""
    code = (currency or load_currency()).code
    return {
        "period": str(period),
        "customer_id": x.customer_id,
        "customer_name": x.customer_name,
        "vendor": x.vendor,
        "metric": x.metric,
        "used": quantity(x.used),
        "contracted": quantity(x.contracted),
        "quota": quantity(x.quota),
        "difference": quantity(x.difference),
        "status": x.status,
        "reason": x.reason,
        "provisional": x.provisional,
        "change": quantity(x.change),
        "tenants": x.tenants,
        "agreement": x.agreement,
        "amended_at": x.amended_at,
        "currency": code,
        "unit_price": None if x.unit_price is None else str(x.unit_price),
        "unbilled_value": None if x.unbilled_value is None else str(x.unbilled_value),
        "tenant_id": x.tenant_id,
    }


def total_rows(result: Reconciliation) -> list[dict[str, Any]]:
    """After the lines: one `total` row per customer with an unbilled value, then the month's."""
    code = result.currency.code
    names = {x.customer_id: x.customer_name for x in result.lines}
    rows = [
        {"period": str(result.period), "customer_id": cid, "customer_name": names.get(cid, cid),
         "status": "total", "provisional": result.provisional, "currency": code, "unbilled_value": str(value)}
        for cid, value in sorted(unbilled_by_customer(result.lines).items())
    ]  # fmt: skip
    rows.append(
        {"period": str(result.period), "status": "total", "provisional": result.provisional, "currency": code,
         "unbilled_value": str(result.unbilled), "reason": "; ".join(result.footer()) or None}
    )  # fmt: skip
    return rows


def rows(result: Reconciliation) -> list[dict[str, Any]]:
    return [line_row(result.period, x, result.currency) for x in result.lines] + total_rows(result)


def render_csv(result: Reconciliation) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows(result):
        writer.writerow({k: csv_cell("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
    return buffer.getvalue()


__all__ = ["render_html", "unmapped_tenants"]

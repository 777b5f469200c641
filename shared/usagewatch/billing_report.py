"""The month's reconciliation read from the table, and rendered for people (HTML) and spreadsheets (CSV).

Both the `usagewatch reconcile` command and the monthly report function use `gather`, so the two never disagree.
"""

from __future__ import annotations

import csv
import html
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from usagewatch import registry
from usagewatch.billing_store import BillingStore
from usagewatch.customers import TenantRef
from usagewatch.model import Number, Period
from usagewatch.reconcile import DEFAULT_TOLERANCE, STATUS_ORDER, Line, Reading, reconcile, summary
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
    "change",
    "tenants",
    "complete",
    "agreement",
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
            Reading(
                TenantRef(u.record.vendor, u.record.account_id, u.record.tenant_id),
                u.record.tenant.tenant_name,
                u.record.metric,
                u.record.value,
                u.record.quota,
            )
            for u in self.store.period_usage(str(period))
            if u.record.tenant.billed and u.removed_at is None
        ]

    def incomplete_accounts(self, period: Period) -> set[tuple[str, str]]:
        return {
            (t.vendor, t.account_id)
            for t in self.store.period_totals(str(period))
            if not t.complete or t.carried_tenant_count
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    period: Period
    lines: list[Line]
    history: Mapping[tuple[str, str, str], list[tuple[Period, Number]]]
    """Per (customer, vendor, metric): the used value of each earlier month collected, oldest first."""

    @property
    def counts(self) -> dict[str, int]:
        return summary(self.lines)


def gather(
    store: DynamoStore,
    period: Period,
    *,
    customer_id: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    history_months: int = 1,
) -> Reconciliation:
    """The reconciliation of `period` and, for the chart, the used values of up to `history_months` before it."""
    billing = BillingStore(store)
    usage = UsageReader(store)
    customers = billing.customers()
    mappings = billing.mappings()
    contracts = [c for vendor in registry.vendor_ids() for c in billing.contracts(vendor)]
    months = [period]
    for _ in range(max(1, history_months)):
        months.append(months[-1].previous())
    readings = {m: usage.readings(m) for m in months}
    lines = reconcile(
        period,
        readings[period],
        previous=readings[months[1]],
        customers=customers,
        mappings=mappings,
        contracts=contracts,
        incomplete_accounts=usage.incomplete_accounts(period),
        tolerance=tolerance,
    )
    owner = {m.tenant: m.customer_id for m in mappings}
    history: defaultdict[tuple[str, str, str], list[tuple[Period, Number]]] = defaultdict(list)
    for month in reversed(months[1:]):
        sums: defaultdict[tuple[str, str, str], Number] = defaultdict(int)
        for r in readings[month]:
            if (cid := owner.get(r.tenant)) is not None:
                sums[(cid, r.tenant.vendor, r.metric)] += r.value
        for key, value in sums.items():
            history[key].append((month, value))
    if customer_id is not None:
        lines = [x for x in lines if x.customer_id == customer_id]
    return Reconciliation(period, lines, dict(history))


def line_row(period: Period, x: Line) -> dict[str, Any]:
    return {
        "period": str(period),
        "customer_id": x.customer_id,
        "customer_name": x.customer_name,
        "vendor": x.vendor,
        "metric": x.metric,
        "used": x.used,
        "contracted": x.contracted,
        "quota": x.quota,
        "difference": x.difference,
        "status": x.status,
        "change": x.change,
        "tenants": x.tenants,
        "complete": x.complete,
        "agreement": x.agreement,
        "unit_price": x.unit_price,
        "unbilled_value": x.unbilled_value,
        "tenant_id": x.tenant_id,
    }


def render_csv(result: Reconciliation) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for line in result.lines:
        writer.writerow({k: csv_cell("" if v is None else v) for k, v in line_row(result.period, line).items()})
    return buffer.getvalue()


def _num(value: Number | None, *, signed: bool = False) -> str:
    if value is None:
        return "&ndash;"
    text = f"{value:,.2f}" if isinstance(value, float) and not value.is_integer() else f"{int(value):,}"
    return ("+" if signed and value > 0 else "") + text


def _chart(points: Sequence[tuple[Period, Number]], now: Number, period: Period) -> str:
    """A small bar chart of the used value month by month, this month last and darker."""
    series = [*points, (period, now)]
    top = max((float(v) for _, v in series), default=0.0) or 1.0
    bars = []
    for n, (month, value) in enumerate(series):
        height = max(1.0, 22 * float(value) / top)
        fill = "#1f4e79" if month == period else "#9db7d5"
        label = html.escape(f"{month}: {_num(value)}".replace("&ndash;", "-"))
        bars.append(
            f'<rect x="{n * 9}" y="{24 - height:.1f}" width="7" height="{height:.1f}" fill="{fill}">'
            f"<title>{label}</title></rect>"
        )
    width = len(series) * 9
    return f'<svg class="chart" width="{width}" height="24" viewBox="0 0 {width} 24" role="img">{"".join(bars)}</svg>'


_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#1d1d1f}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.25em .7em;text-align:left;border-bottom:1px solid #eee}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.under_billed{color:#a40000;font-weight:600}.over_billed{color:#8a5a00}.no_contract{color:#555}
.unmapped{color:#a40000}.summary td{font-weight:600}.incomplete{color:#8a5a00;font-size:.9em}
"""


def render_html(result: Reconciliation) -> str:
    """One readable page: the month's counts, then per customer its vendors and metrics, used against billed,
    with a small month-over-month chart, then the tenants nobody bills. Every vendor-given text is escaped."""
    counts = result.counts
    esc = html.escape
    period = esc(str(result.period))
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>usagewatch billing {period}</title>'
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Billed versus used, {period}</h1>",
        '<table class="summary" id="summary"><tr>'
        + "".join(f"<th>{esc(s.replace('_', ' '))}</th>" for s in counts)
        + "</tr><tr>"
        + "".join(f'<td class="n" data-count="{esc(s)}">{n}</td>' for s, n in counts.items())
        + "</tr></table>",
    ]
    by_customer: defaultdict[str, list[Line]] = defaultdict(list)
    unmapped = []
    for line in result.lines:
        if line.status == "unmapped":
            unmapped.append(line)
        else:
            by_customer[line.customer_id].append(line)
    rank = {status: n for n, status in enumerate(STATUS_ORDER)}

    def first_worst(cid: str) -> tuple[int, str]:
        """Customers that need action first (under-billed before no contract ...), then by name."""
        lines = by_customer[cid]
        return min(rank[x.status] for x in lines), lines[0].customer_name.casefold()

    for cid in sorted(by_customer, key=first_worst):
        lines = by_customer[cid]
        parts.append(f'<h2 id="customer-{esc(cid)}">{esc(lines[0].customer_name)} <small>({esc(cid)})</small></h2>')
        parts.append(
            "<table><tr><th>vendor</th><th>metric</th><th>used</th><th>billed</th><th>difference</th>"
            "<th>status</th><th>vs last month</th><th>months</th></tr>"
        )
        for x in sorted(lines, key=lambda x: (x.vendor, x.metric)):
            points = result.history.get((x.customer_id, x.vendor, x.metric), [])
            note = "" if x.complete else ' <span class="incomplete">(incomplete)</span>'
            parts.append(
                f'<tr data-customer="{esc(cid)}" data-vendor="{esc(x.vendor)}" data-metric="{esc(x.metric)}">'
                f"<td>{esc(registry.display_name(x.vendor))}</td><td>{esc(x.metric)}</td>"
                f'<td class="n used">{_num(x.used)}</td><td class="n billed">{_num(x.contracted)}</td>'
                f'<td class="n">{_num(x.difference, signed=True)}</td>'
                f'<td class="{esc(x.status)}">{esc(x.status.replace("_", " "))}{note}</td>'
                f'<td class="n">{_num(x.change, signed=True)}</td><td>{_chart(points, x.used, result.period)}</td></tr>'
            )
        parts.append("</table>")
    parts.append('<h2 id="unmapped">Tenants no customer owns</h2>')
    if unmapped:
        parts.append("<table><tr><th>vendor</th><th>tenant</th><th>tenant id</th><th>metric</th><th>used</th></tr>")
        for x in unmapped:
            parts.append(
                f'<tr class="unmapped-row"><td>{esc(registry.display_name(x.vendor))}</td>'
                f"<td>{esc(x.customer_name)}</td><td>{esc(x.tenant_id or '')}</td><td>{esc(x.metric)}</td>"
                f'<td class="n">{_num(x.used)}</td></tr>'
            )
        parts.append("</table><p>Map them with <code>usagewatch customers suggest</code>.</p>")
    else:
        parts.append("<p>None: every tenant with usage belongs to a customer.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def unmapped_tenants(lines: Iterable[Line]) -> int:
    return len({(x.vendor, x.tenant_id) for x in lines if x.status == "unmapped"})

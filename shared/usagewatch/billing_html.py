"""The month's reconciliation as one readable HTML page (the monthly report's). Every vendor-given text is escaped."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from usagewatch import registry
from usagewatch.model import Number, Period
from usagewatch.reconcile import STATUS_ORDER, Line, dec, unbilled_by_customer

if TYPE_CHECKING:
    from usagewatch.billing_report import Reconciliation


def quantity_text(value: Number | Decimal | None, *, signed: bool = False, none: str = "&ndash;") -> str:
    """A quantity with thousands separators, as exact as stored (no rounding of a fraction)."""
    if value is None:
        return none
    number = dec(value)
    text = f"{int(number):,}" if number == number.to_integral_value() else f"{number.normalize():,f}"
    return ("+" if signed and number > 0 else "") + text


def money_text(value: Decimal | None, currency: str, *, none: str = "&ndash;") -> str:
    return none if value is None else f"{currency} {value:,f}"


def _chart(points: Sequence[tuple[Period, Decimal]], now: Number | Decimal, period: Period) -> str:
    """A small bar chart of the used value month by month, this month last and darker."""
    series = [*points, (period, now)]
    top = max((float(v) for _, v in series), default=0.0) or 1.0
    bars = []
    for n, (month, value) in enumerate(series):
        height = max(1.0, 22 * float(value) / top)
        fill = "#1f4e79" if month == period else "#9db7d5"
        label = html.escape(f"{month}: {quantity_text(value, none='-')}")
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
.unmapped{color:#a40000}.summary td{font-weight:600}.incomplete{color:#8a5a00}.reason{font-size:.9em;color:#555}
"""


def render_html(result: Reconciliation) -> str:
    """One readable page: the month's counts and unbilled value, then per customer its vendors and metrics, used
    against billed, with a small month-over-month chart, then the tenants nobody bills and the accounts whose
    month is not fully read."""
    counts = result.counts
    esc = html.escape
    code = esc(result.currency.code)
    period = esc(str(result.period))
    state = " (provisional: the month has not ended)" if result.provisional else ""
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>usagewatch billing {period}</title>'
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Billed versus used, {period}{state}</h1>",
        '<table class="summary" id="summary"><tr>'
        + "".join(f"<th>{esc(s.replace('_', ' '))}</th>" for s in counts)
        + "<th>unbilled value</th></tr><tr>"
        + "".join(f'<td class="n" data-count="{esc(s)}">{n}</td>' for s, n in counts.items())
        + f'<td class="n" id="unbilled-total">{money_text(result.unbilled, code)}</td></tr></table>',
    ]
    by_customer: defaultdict[str, list[Line]] = defaultdict(list)
    unmapped = []
    for line in result.lines:
        if line.status == "unmapped":
            unmapped.append(line)
        else:
            by_customer[line.customer_id].append(line)
    rank = {status: n for n, status in enumerate(STATUS_ORDER)}
    per_customer = unbilled_by_customer(result.lines)

    def first_worst(cid: str) -> tuple[int, str]:
        """Customers that need action first (under-billed before incomplete ...), then by name."""
        lines = by_customer[cid]
        return min(rank[x.status] for x in lines), lines[0].customer_name.casefold()

    for cid in sorted(by_customer, key=first_worst):
        lines = by_customer[cid]
        owed = per_customer.get(cid)
        tag = f' <small class="unbilled" data-unbilled="{owed}">unbilled {money_text(owed, code)}</small>'
        parts.append(
            f'<h2 id="customer-{esc(cid)}">{esc(lines[0].customer_name)} <small>({esc(cid)})</small>'
            + (tag if owed is not None else "")
            + "</h2>"
        )
        parts.append(
            "<table><tr><th>vendor</th><th>metric</th><th>used</th><th>billed</th><th>difference</th>"
            "<th>status</th><th>unbilled value</th><th>vs last month</th><th>months</th></tr>"
        )
        for x in sorted(lines, key=lambda x: (x.vendor, x.metric)):
            points = result.history.get((x.customer_id, x.vendor, x.metric), [])
            note = f'<br><span class="reason">{esc(x.reason)}</span>' if x.reason else ""
            if x.amended_at:
                note += f'<br><span class="reason">contract amended {esc(x.amended_at)}</span>'
            parts.append(
                f'<tr data-customer="{esc(cid)}" data-vendor="{esc(x.vendor)}" data-metric="{esc(x.metric)}">'
                f"<td>{esc(registry.display_name(x.vendor))}</td><td>{esc(x.metric)}</td>"
                f'<td class="n used">{quantity_text(x.used)}</td>'
                f'<td class="n billed">{quantity_text(x.contracted)}</td>'
                f'<td class="n">{quantity_text(x.difference, signed=True)}</td>'
                f'<td class="{esc(x.status)}">{esc(x.status.replace("_", " "))}{note}</td>'
                f'<td class="n unbilled">{money_text(x.unbilled_value, code)}</td>'
                f'<td class="n">{quantity_text(x.change, signed=True)}</td>'
                f"<td>{_chart(points, x.used, result.period)}</td></tr>"
            )
        parts.append("</table>")
    parts.append('<h2 id="unmapped">Tenants no customer owns</h2>')
    if unmapped:
        parts.append("<table><tr><th>vendor</th><th>tenant</th><th>tenant id</th><th>metric</th><th>used</th></tr>")
        for x in unmapped:
            parts.append(
                f'<tr class="unmapped-row"><td>{esc(registry.display_name(x.vendor))}</td>'
                f"<td>{esc(x.customer_name)}</td><td>{esc(x.tenant_id or '')}</td><td>{esc(x.metric)}</td>"
                f'<td class="n">{quantity_text(x.used)}</td></tr>'
            )
        parts.append("</table><p>Map them with <code>usagewatch customers suggest</code>.</p>")
    else:
        parts.append("<p>None: every tenant with usage belongs to a customer.</p>")
    if result.incomplete_accounts:
        parts.append('<h2 id="incomplete">Accounts not fully read this month</h2><ul>')
        parts.extend(f'<li class="incomplete">{esc(why)}</li>' for why in result.footer())
        parts.append("</ul><p>Their customers' lines are incomplete, not final: see <code>usagewatch runs</code>.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)

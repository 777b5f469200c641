"""The month's reconciliation as one HTML page to invoice from (the monthly report's). Every vendor-given text is
escaped; status words and column names are the CSV's (docs/billing.md, "The monthly report")."""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from usagewatch import registry
from usagewatch.model import Number, Period
from usagewatch.reconcile import STATUS_ORDER, Line, dec, money

if TYPE_CHECKING:
    from usagewatch.billing_report import Reconciliation

ACTION_STATUSES: Final = ("under_billed", "over_billed", "incomplete", "unmapped")
"""The lines someone has to act on: bill, credit, mend a collection, map a tenant."""
ACTION_COLUMNS: Final = (
    "status", "customer_name", "vendor", "metric", "used", "contracted", "difference", "unit_price", "value", "change",
)  # fmt: skip
LINE_COLUMNS: Final = ("vendor", "metric", "used", "contracted", "difference", "status", "unit_price", "value",
                       "change", "months")  # fmt: skip
CHART_MONTHS: Final = 6
APPLIED_COLUMNS: Final = ("customer", "product", "from", "to", "applied_by", "approved_by", "at", "psa_status")
esc = html.escape


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One quantity the month's PSA applies changed (from the PSA audit trail, joined to its proposal)."""

    customer_id: str
    product: str
    line: str
    before: Decimal | None
    after: Decimal | None
    applied_by: str
    approved_by: str | None
    at: datetime
    psa_status: str


def quantity_text(value: Number | Decimal | None, *, signed: bool = False, none: str = "\u2013") -> str:
    """A quantity with thousands separators, as exact as stored (no rounding of a fraction)."""
    if value is None:
        return none
    number = dec(value)
    text = f"{int(number):,}" if number == number.to_integral_value() else f"{number.normalize():,f}"
    return ("+" if signed and number > 0 else "") + text


def money_text(value: Decimal | None, currency: str = "", *, none: str = "\u2013") -> str:
    return none if value is None else f"{currency} {value:,f}".lstrip()


def line_value(line: Line, minor_unit: int) -> Decimal | None:
    """What the line's difference is worth at its unit price: the CSV's `unbilled_value` on an under_billed line,
    minus the money billed for nothing on an over_billed one; None on every other line."""
    if line.status == "under_billed":
        return line.unbilled_value
    if line.status == "over_billed" and line.unit_price is not None and line.difference is not None:
        return money(line.difference * line.unit_price, minor_unit)
    return None


def action_lines(lines: Iterable[Line], minor_unit: int) -> list[Line]:
    """Every line to act on, biggest money first (either way), then by status, customer, vendor and metric."""
    rank = {status: n for n, status in enumerate(STATUS_ORDER)}

    def order(x: Line) -> tuple[Decimal, int, str, str, str, str]:
        value = line_value(x, minor_unit) or Decimal(0)
        return (-abs(value), rank[x.status], x.customer_name.casefold(), x.vendor, x.metric, x.tenant_id or "")

    return sorted((x for x in lines if x.status in ACTION_STATUSES), key=order)


def unmapped_tenants(lines: Iterable[Line]) -> int:
    """Tenants nobody bills, counted as tenants (one per vendor and tenant id, whatever it used)."""
    return len({(x.vendor, x.tenant_id) for x in lines if x.status == "unmapped"})


def month_state(result: Reconciliation) -> str:
    """`incomplete` when any line is, else `provisional` for a month not ended, else `final`."""
    if result.counts["incomplete"]:
        return "incomplete"
    return "provisional" if result.provisional else "final"


def _chart(points: Mapping[Period, Decimal], period: Period) -> str:
    """The used value of the last CHART_MONTHS months as bars (this month darker); a month not collected has no
    bar. The same numbers are the chart's text alternative."""
    months = [period]
    while len(months) < CHART_MONTHS:
        months.insert(0, months[0].previous())
    top = max((v for v in points.values()), default=Decimal(0)) or Decimal(1)
    paths = {False: "", True: ""}
    for n, month in enumerate(months):
        if month in points:  # a bar is a 7 px wide stroke from the baseline up
            paths[month == period] += f"M{n * 9 + 4} 24V{24 - max(1, round(22 * points[month] / top))}"
    values = ",".join(quantity_text(points[m], none="n/a") if m in points else "n/a" for m in months)
    label = f"used {months[0]} to {period}: {values}"
    return (
        f'<svg class=chart role=img aria-label="{esc(label)}"><path d="{paths[False]}"/>'
        f'<path class=now d="{paths[True]}"/></svg>'
    )


_STYLE: Final = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fff}
main{max-width:1360px;margin:0 auto;padding:1em 1.2em}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .3em;border-bottom:1px solid #ccc}
.state{padding:.1em .5em;border-radius:.3em;font-size:.8em;vertical-align:middle;background:#e8e8e8}
.state.final{background:#dff0d8}.state.incomplete,.state.provisional{background:#fcf0cf}
.kpis{display:flex;flex-wrap:wrap;gap:.5em 1.8em;margin:.6em 0;padding:0}
.kpis div{min-width:9em}.kpis dt{font-size:.85em;color:#444}.kpis dd{margin:0;font-size:1.3em;font-weight:600}
table{border-collapse:collapse;margin:.3em 0;width:100%}
td,th{padding:.2em .45em;text-align:left;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{font-size:.85em;color:#333;background:#f4f4f4}
.n,.lines td:nth-child(n+3):nth-child(-n+9):not(:nth-child(6)){text-align:right;white-space:nowrap;
font-variant-numeric:tabular-nums}
.under_billed{color:#a40000;font-weight:600}.over_billed{color:#7a4d00;font-weight:600}
.incomplete{color:#7a4d00}.unmapped{color:#a40000}.ok{color:#1e6b1e}.no_contract{color:#555}
.reason{display:block;font-size:.85em;color:#555;font-weight:400}
.index{columns:14em;padding:0;margin:.3em 0;list-style:none;font-size:.92em}
.index li{break-inside:avoid}.act{font-weight:600}
details{margin:.2em 0 .6em;color:#444}.nc{font-size:.9em}
.counts{font-size:.9em;color:#444}
a{color:#0b4f8a}
.chart{width:54px;height:24px;stroke:#8fa9c8;stroke-width:7}.chart .now{stroke:#1f4e79}
h3{font-size:1.05em;margin:.9em 0 0}.lines th[scope=rowgroup]{background:#fff;border-bottom:2px solid #bbb}
#actions td:first-child,.lines td:nth-child(6){max-width:16em}
@media (max-width:760px){main{padding:.4em}body{font-size:12px}td,th{padding:.15em .2em}
 #actions td:first-child,.lines td:nth-child(6){max-width:9em}
 th{overflow-wrap:anywhere;font-size:.75em}
 .n,.lines td:nth-child(n+3):nth-child(-n+9):not(:nth-child(6)){white-space:normal}}
@page{size:A4;margin:12mm}
@media print{body{font-size:9pt}main{max-width:none;padding:0}.chart path{print-color-adjust:exact}
 h2{break-after:avoid}tr,details{break-inside:avoid}.index{columns:4}a{color:inherit;text-decoration:none}}
"""


def _words(text: str) -> str:
    """Escaped, with a line-break opportunity after each underscore (status words and metric ids wrap there)."""
    return esc(text).replace("_", "_<wbr>")


def _status_cell(x: Line) -> str:
    note = f'<span class="reason">{esc(x.reason)}</span>' if x.reason else ""
    if x.amended_at:
        note += f'<span class="reason">contract amended {esc(x.amended_at)}</span>'
    return f"<td class={esc(x.status)}>{_words(x.status)}{note}"


def _numbers(x: Line, value: Decimal | None, code: str, *, classes: bool = True) -> list[str]:
    """used, contracted, difference, unit_price, value, change: the cells both tables share (every amount with
    its currency)."""
    cells = (
        ("used", quantity_text(x.used)),
        ("contracted", quantity_text(x.contracted)),
        ("difference", quantity_text(x.difference, signed=True)),
        ("unit_price", money_text(x.unit_price, code)),
        ("value", money_text(value, code)),
        ("change", quantity_text(x.change, signed=True)),
    )
    if not classes:
        return [f"<td>{text}" for _, text in cells]
    data = f' data-value="{"" if value is None else value}"'
    return [f'<td class="n {column}"{data if column == "value" else ""}>{text}' for column, text in cells]


def _head(columns: Sequence[str]) -> str:
    """The column names, the CSV's."""
    return "<thead><tr>" + "".join(f'<th scope="col">{_words(c)}</th>' for c in columns) + "</tr></thead>"


def _summary(result: Reconciliation, actions: list[Line], code: str, minor: int) -> str:
    over = -sum((line_value(x, minor) or Decimal(0) for x in actions if x.status == "over_billed"), Decimal(0))
    to_act = len({x.customer_id for x in actions if x.status != "unmapped"})
    items = (
        ("under-billed-value", "under_billed value", money_text(result.unbilled, code)),
        ("over-billed-value", "over_billed value", money_text(over, code)),
        ("customers-to-act", "customers to act on", str(to_act)),
        ("unmapped-tenants", "unmapped tenants", str(unmapped_tenants(result.lines))),
    )
    kpis = "".join(f'<div><dt>{label}</dt><dd id="{key}">{text}</dd></div>' for key, label, text in items)
    counts = ", ".join(f'<span data-count="{s}">{result.counts[s]}</span> {s}' for s in STATUS_ORDER)
    return f'<dl class="kpis">{kpis}</dl><p class="counts">Lines: {counts}.</p>'


def _action_table(actions: list[Line], anchor: Mapping[str, int], code: str, minor: int) -> list[str]:
    if not actions:
        return ["<p>Nothing to act on: every line is ok or has no contract.</p>"]
    parts = [f'<table id="actions">{_head(ACTION_COLUMNS)}<tbody>']
    for x in actions:
        who = (
            f'<a href="#c{anchor[x.customer_id]}">{esc(x.customer_name)}</a>'
            if x.status != "unmapped"
            else f'{esc(x.customer_name)}<span class="reason">tenant {esc(x.tenant_id or "")}</span>'
        )
        parts.append(
            f'<tr data-status="{esc(x.status)}" data-customer="{esc(x.customer_id)}">{_status_cell(x)}'
            f'<td class="customer_name">{who}</td><td>{esc(registry.display_name(x.vendor))}</td>'
            f"<td>{_words(x.metric)}</td>" + "".join(_numbers(x, line_value(x, minor), code))
        )
    parts.append("</tbody></table>")
    return parts


def _customer(n: int, lines: list[Line], result: Reconciliation, code: str, minor: int) -> list[str]:
    """The customer's lines with a contract or to act on (one tbody of the customers' table), then its no_contract
    lines folded into a count."""
    x0 = lines[0]
    parts = [
        f'<tbody id="c{n}"><tr><th colspan=10 scope=rowgroup>'
        f"<h3>{esc(x0.customer_name)} "
        f"<small>{esc(x0.customer_id)}</small></h3>"
    ]
    shown = sorted((x for x in lines if x.status != "no_contract"), key=lambda x: (x.vendor, x.metric))
    folded = sorted((x for x in lines if x.status == "no_contract"), key=lambda x: (x.vendor, x.metric))
    for x in shown:
        earlier = result.history.get((x.customer_id, x.vendor, x.metric), [])
        chart = _chart({**dict(earlier), result.period: x.used}, result.period) if earlier else "first month"
        numbers = _numbers(x, line_value(x, minor), code, classes=False)
        parts.append(
            "<tr>"
            f"<td>{esc(registry.display_name(x.vendor))}<td>{_words(x.metric)}{''.join(numbers[:3])}"
            f"{_status_cell(x)}{''.join(numbers[3:])}<td>{chart}"
        )
    if folded:
        by_vendor: defaultdict[str, list[str]] = defaultdict(list)
        for x in folded:
            by_vendor[registry.display_name(x.vendor)].append(f"{esc(x.metric)} {quantity_text(x.used)}")
        listed = "; ".join(f"{esc(v)}: {', '.join(items)}" for v, items in by_vendor.items())
        parts.append(
            f"<tr><td colspan=10><details><summary data-no-contract={len(folded)}>{len(folded)} no_contract</summary>"
            f"{listed}</details>"
        )
    return parts


def render_html(result: Reconciliation, applied: Sequence[AppliedChange] | None = None) -> str:
    """At the top the month, its state, the money under- and over-billed and what to act on; then one action
    table, biggest money first; then an index of customers and a section per customer (no_contract lines folded
    into a count); then the tenants nobody bills and the accounts whose month is not fully read; then, when a PSA
    is linked (`applied` not None), the quantities the month's applies changed in it."""
    code, minor = esc(result.currency.code), result.currency.minor_unit
    period = esc(str(result.period))
    state = month_state(result)
    actions = action_lines(result.lines, minor)
    by_customer: defaultdict[str, list[Line]] = defaultdict(list)
    for line in result.lines:
        if line.status != "unmapped":
            by_customer[line.customer_id].append(line)
    act = {x.customer_id for x in actions}
    customers = sorted(by_customer, key=lambda c: (by_customer[c][0].customer_name.casefold(), c))
    anchor = {c: n for n, c in enumerate(customers)}
    parts = [
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>usagewatch billing {period} ({state})</title><style>{_STYLE}</style></head><body><main>",
        f'<h1>Billing report {period} <span class="state {state}" id="state">{state}</span></h1>',
        _summary(result, actions, code, minor),
        '<h2 id="actions-title">To act on, biggest money first</h2>',
        *_action_table(actions, anchor, code, minor),
        '<nav aria-labelledby="index-title"><h2 id="index-title">Customers</h2><ol class="index">',
        *(
            f'<li><a href="#c{n}"{mark}>{esc(by_customer[c][0].customer_name)}</a>'
            for n, c in enumerate(customers)
            for mark in (' class="act"' if c in act else "",)
        ),
        "</ol></nav>",
    ]
    parts.append(f'<h2 id="customers">Customers\' lines</h2><table class="lines">{_head(LINE_COLUMNS)}')
    for n, cid in enumerate(customers):
        parts.extend(_customer(n, by_customer[cid], result, code, minor))
    parts.append("</table>")
    parts.extend(_unmapped(result.lines))
    if result.incomplete_accounts:
        parts.append('<h2 id="incomplete">Accounts not fully read this month</h2><ul>')
        parts.extend(f'<li class="incomplete">{esc(why)}</li>' for why in result.footer())
        parts.append("</ul><p>Their customers' lines are incomplete, not final: see <code>usagewatch runs</code>.</p>")
    if applied is not None:
        parts.extend(_applied(applied))
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _unmapped(lines: Iterable[Line]) -> list[str]:
    """One row per tenant nobody bills, with every metric it used."""
    tenants: defaultdict[tuple[str, str], list[Line]] = defaultdict(list)
    for x in lines:
        if x.status == "unmapped":
            tenants[(x.vendor, x.tenant_id or "")].append(x)
    parts = ['<h2 id="unmapped">Tenants no customer owns</h2>']
    if not tenants:
        return [*parts, "<p>None: every tenant with usage belongs to a customer.</p>"]
    parts.append(f"<table>{_head(('vendor', 'customer_name', 'tenant_id', 'used'))}<tbody>")
    for (vendor, tid), used in sorted(tenants.items()):
        metrics = ", ".join(f"{esc(x.metric)} {quantity_text(x.used)}" for x in used)
        parts.append(
            f'<tr class="unmapped-row"><td>{esc(registry.display_name(vendor))}</td>'
            f"<td>{esc(used[0].customer_name)}</td><td>{esc(tid)}</td><td>{metrics}</td></tr>"
        )
    parts.append("</tbody></table><p>Map them with <code>usagewatch customers suggest</code>.</p>")
    return parts


def _applied(changes: Sequence[AppliedChange]) -> list[str]:
    """The PSA quantities the month's applies set, oldest first (docs/psa.md, "The trail")."""
    parts = ['<h2 id="psa-applied">Applied in the PSA</h2>']
    if not changes:
        return [*parts, "<p>None: no change was applied in the PSA for this month.</p>"]
    parts.append(f'<table class="applied">{_head(APPLIED_COLUMNS)}<tbody>')
    for c in changes:
        parts.append(
            f'<tr class="applied-row" data-line="{esc(c.line)}"><td>{esc(c.customer_id)}</td><td>{esc(c.product)}</td>'
            f'<td class="n">{quantity_text(c.before)}</td><td class="n">{quantity_text(c.after)}</td>'
            f"<td>{esc(c.applied_by)}</td><td>{esc(c.approved_by or '')}</td>"
            f"<td>{esc(c.at.isoformat(timespec='minutes'))}</td><td>{esc(c.psa_status)}</td></tr>"
        )
    parts.append("</tbody></table>")
    return parts

"""Usage read back for billing: per-customer lines and totals of one period, as text or CSV. Pure."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from usagewatch.notify import fmt, vendor_name
from usagewatch.rules import is_free_metric
from usagewatch.text import clean_name, csv_cell

CSV_COLUMNS: Final = (
    "vendor",
    "account_id",
    "tenant_id",
    "tenant_name",
    "parent_tenant_id",
    "billed",
    "metric",
    "value",
    "unit",
    "quota",
    "projected",
    "minimum",
    "limit_exceeded",
    "projected_next_period",
    "period",
    "period_start",
    "period_end",
    "collected_at",
    "removed_at",
)


FREE_MARK: Final = " (free)"
"""After a metric the vendor gives away (free and trial SKUs, docs/vendors/microsoft365.md): stored, never billed."""


def metric_label(vendor: str, metric: str) -> str:
    return metric + FREE_MARK if is_free_metric(vendor, metric) else metric


def sort_usage(items: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(
        items, key=lambda i: (i["vendor"], i["account_id"], str(i.get("tenant_name", "")).lower(), i["metric"])
    )


def usage_csv(items: Iterable[Mapping[str, Any]]) -> str:
    """One line per customer and metric, with the columns a billing spreadsheet needs."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for item in sort_usage(items):
        writer.writerow({k: csv_cell(item.get(k, "")) for k in CSV_COLUMNS})
    return buffer.getvalue()


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain fixed-width table; numbers right-aligned."""
    cells = [[clean_name(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells) and bool(cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True))

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(r) for r in cells)]).rstrip()


def _is_number(text: str) -> bool:
    digits = text.removeprefix("+").removeprefix("-").replace(",", "").replace(".", "", 1).replace("%", "")
    return digits.isdigit() or text in ("", "n/a", "-")


def totals_table(totals: Iterable[Mapping[str, Any]]) -> str:
    rows = [
        (
            vendor_name(t["vendor"]),
            t["account_id"],
            metric_label(t["vendor"], t["metric"]),
            fmt(t["value"]),
            t["unit"],
            t["tenant_count"],
            t.get("carried_tenant_count", 0),
        )
        for t in sorted(totals, key=lambda t: (t["vendor"], t["account_id"], t["metric"]))
    ]
    return table(("vendor", "account", "metric", "total", "unit", "customers", "carried"), rows)


def customers_table(items: Iterable[Mapping[str, Any]], metric: str, *, limit: int | None = None) -> str:
    """The customers of one metric, largest first, with quota and whether they are over it."""
    chosen = sorted(
        (i for i in items if i["metric"] == metric and i.get("billed", True)), key=lambda i: -float(i["value"])
    )
    rows = []
    for item in chosen[:limit]:
        quota = item.get("quota")
        over = "OVER" if (item.get("limit_exceeded") or (quota is not None and item["value"] > quota)) else ""
        rows.append((item.get("tenant_name", ""), fmt(item["value"]), fmt(quota), fmt(item.get("projected")), over))
    label = metric_label(str(chosen[0]["vendor"]), metric) if chosen else metric
    return table(("customer", label, "quota", "projected", ""), rows)

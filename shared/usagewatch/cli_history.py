"""`usagewatch history`: one customer's metrics month by month, with the change and a terminal sparkline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from usagewatch import registry
from usagewatch.model import Number, Period, StoredUsage
from usagewatch.notify import fmt
from usagewatch.report import table
from usagewatch.text import clean_name

SPARKS: Final = "▁▂▃▄▅▆▇█"
ASCII_SPARKS: Final = "_.-~=+*#"
GAP: Final = " "
DEFAULT_MONTHS: Final = 12
MAX_MONTHS: Final = 120


class HistoryReader(Protocol):
    def monthly_usage(
        self, vendor: str, account_id: str, tenant_id: str, periods: Sequence[str]
    ) -> list[StoredUsage]: ...


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    history = commands.add_parser(
        "history", parents=[common], help="one customer's usage month by month, with the change and a sparkline"
    )
    history.add_argument("--vendor", required=True, choices=registry.vendor_ids())
    history.add_argument("--account", required=True, help="the vendor account (its account_id in the vendor secret)")
    history.add_argument("--tenant", required=True, help="the customer (tenant id, as in the events)")
    history.add_argument("--metric", help="one metric (default: every metric the customer has)")
    history.add_argument(
        "--months", type=int, default=DEFAULT_MONTHS, help=f"months up to this one (default {DEFAULT_MONTHS})"
    )
    history.add_argument("--until", help="the last month shown, YYYY-MM (default: this month)")


def months(last: Period, count: int) -> list[Period]:
    found = [last]
    while len(found) < count:
        found.append(found[-1].previous())
    return found[::-1]


def changes(values: Sequence[Number | None]) -> list[tuple[Number | None, float | None]]:
    """Each month's change (absolute, %) from the month before it, where both are known."""
    result: list[tuple[Number | None, float | None]] = []
    previous: Number | None = None
    for value in values:
        if value is None or previous is None:
            result.append((None, None))
        else:
            rise = value - previous
            result.append((rise, rise / previous * 100 if previous else None))
        previous = value
    return result


def sparkline(values: Sequence[Number | None], *, ascii_only: bool = False) -> str:
    """One character per month, the lowest month lowest and the highest highest; a month without data is blank."""
    ramp = ASCII_SPARKS if ascii_only else SPARKS
    known = [v for v in values if v is not None]
    if not known:
        return GAP * len(values)
    low, high = min(known), max(known)
    top = len(ramp) - 1
    return "".join(
        GAP if v is None else ramp[top // 2 if high == low else round((v - low) / (high - low) * top)] for v in values
    )


def utf8_stdout() -> bool:
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return encoding in ("utf8", "utf8sig")


def _signed(number: Number | None) -> str:
    if number is None:
        return "-"
    return ("+" if number > 0 else "") + fmt(number)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:+.1f}%"


def run(
    store: HistoryReader,
    args: argparse.Namespace,
    kind: str,
    error: Callable[[str], Exception],
    json_lines: Callable[[Sequence[Mapping[str, Any]]], str],
    csv_text: Callable[[Sequence[Mapping[str, Any]], Sequence[str]], str],
) -> str:
    if not 1 <= args.months <= MAX_MONTHS:
        raise error(f"--months: 1 to {MAX_MONTHS}")
    last = Period.parse(args.until, field="--until") if args.until else Period.of(datetime.now(UTC))
    wanted = months(last, args.months)
    found = store.monthly_usage(args.vendor, args.account, args.tenant, [str(p) for p in wanted])
    if args.metric:
        found = [u for u in found if u.record.metric == args.metric]
    span = f"{wanted[0]} to {wanted[-1]}"
    if not found:
        what = f"metric {args.metric!r} of " if args.metric else ""
        raise error(
            f"no usage stored for {what}tenant {args.tenant!r} of {args.vendor} account {args.account!r}, {span}"
        )
    by_metric: dict[str, dict[str, StoredUsage]] = {}
    for usage in found:
        by_metric.setdefault(usage.record.metric, {})[str(usage.record.period)] = usage
    rows: list[dict[str, Any]] = []
    for metric, usages in sorted(by_metric.items()):
        values = [usages[str(p)].record.value if str(p) in usages else None for p in wanted]
        for period, value, (rise, share) in zip(wanted, values, changes(values), strict=True):
            if value is None:
                continue
            record = usages[str(period)].record
            rows.append(
                {
                    "vendor": args.vendor,
                    "account_id": args.account,
                    "tenant_id": args.tenant,
                    "tenant_name": record.tenant.tenant_name,
                    "metric": metric,
                    "period": str(period),
                    "value": value,
                    "unit": record.unit,
                    "change": rise,
                    "change_percent": None if share is None else round(share, 1),
                    "quota": record.quota,
                }
            )
    if kind == "json":
        return json_lines([{k: v for k, v in row.items() if v is not None} for row in rows])
    if kind == "csv":
        columns = ("vendor", "account_id", "tenant_id", "tenant_name", "metric", "period", "value", "unit")
        return csv_text(rows, (*columns, "change", "change_percent", "quota"))
    name = clean_name(rows[0]["tenant_name"]) or args.tenant
    parts = [f"{registry.display_name(args.vendor)} account {args.account}, {name} ({args.tenant}): {span}"]
    ascii_only = not utf8_stdout()
    for metric, usages in sorted(by_metric.items()):
        values = [usages[str(p)].record.value if str(p) in usages else None for p in wanted]
        cells = [
            (str(p), fmt(v) if v is not None else "-", _signed(rise), _percent(share))
            for p, v, (rise, share) in zip(wanted, values, changes(values), strict=True)
        ]
        known = [v for v in values if v is not None]
        trend = f"trend {sparkline(values, ascii_only=ascii_only)}  (low {fmt(min(known))}, high {fmt(max(known))})"
        unit = next(iter(usages.values())).record.unit
        parts.append(f"{metric} ({unit})\n{table(('month', 'value', 'change', 'change %'), cells)}\n{trend}")
    return "\n\n".join(parts)

"""`usagewatch history`: a tenant's (or a customer's tenants') metrics month by month, with the change and a
terminal sparkline."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from usagewatch import registry
from usagewatch.cli.output import CliError, csv_text, json_lines, kind_of
from usagewatch.customers import TenantRef
from usagewatch.model import Number, Period
from usagewatch.notify import fmt
from usagewatch.report import table
from usagewatch.store.billing import BillingStore
from usagewatch.stored import StoredUsage
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "a tenant's or a customer's usage month by month, with the change and a sparkline"
EXAMPLE: Final = (
    "usagewatch history --vendor keepnet --account kn-main --tenant c-42 --metric monthly_users --months 12"
)

SPARKS: Final = "▁▂▃▄▅▆▇█"
ASCII_SPARKS: Final = "_.-~=+*#"
GAP: Final = " "
DEFAULT_MONTHS: Final = 12
MAX_MONTHS: Final = 120


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--tenant", help="one vendor tenant (its id, as in the events): needs --vendor and --account")
    who.add_argument("--customer", help="one customer id: every tenant mapped to it (--vendor, --account narrow it)")
    parser.add_argument("--vendor", choices=registry.vendor_ids())
    parser.add_argument("--account", help="the vendor account (its account_id in the vendor secret)")
    parser.add_argument("--metric", help="one metric (default: every metric the customer has)")
    parser.add_argument(
        "--months", type=int, default=DEFAULT_MONTHS, help=f"months up to this one (default {DEFAULT_MONTHS})"
    )
    parser.add_argument("--until", help="the last month shown, YYYY-MM (default: this month)")


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


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    if not 1 <= args.months <= MAX_MONTHS:
        raise CliError(f"--months: 1 to {MAX_MONTHS}")
    last = Period.parse(args.until, field="--until") if args.until else Period.of(datetime.now(UTC))
    wanted = months(last, args.months)
    span = f"{wanted[0]} to {wanted[-1]}"
    found: list[tuple[TenantRef, dict[str, dict[str, StoredUsage]]]] = []
    for ref in _tenants(store, args):
        usages = store.monthly_usage(ref.vendor, ref.account_id, ref.tenant_id, [str(p) for p in wanted])
        by_metric: dict[str, dict[str, StoredUsage]] = {}
        for usage in usages:
            if args.metric in (None, usage.record.metric):
                by_metric.setdefault(usage.record.metric, {})[str(usage.record.period)] = usage
        if by_metric:
            found.append((ref, by_metric))
    if not found:
        what = f"metric {args.metric!r} of " if args.metric else ""
        whose = (
            f"customer {args.customer!r}'s tenants"
            if args.customer
            else f"tenant {args.tenant!r} of {args.vendor} account {args.account!r}"
        )
        raise CliError(f"no usage stored for {what}{whose}, {span}")
    rows = [row for ref, by_metric in found for row in _rows(ref, by_metric, wanted)]
    kind = kind_of(args)
    if kind == "json":
        return json_lines([{k: v for k, v in row.items() if v is not None} for row in rows])
    if kind == "csv":
        columns = ("vendor", "account_id", "tenant_id", "tenant_name", "metric", "period", "value", "unit")
        return csv_text(rows, (*columns, "change", "change_percent", "quota"))
    return "\n\n".join(_section(ref, by_metric, wanted, span) for ref, by_metric in found)


def _tenants(store: DynamoStore, args: argparse.Namespace) -> list[TenantRef]:
    if args.tenant is not None:
        if not args.vendor or not args.account:
            raise CliError("--tenant needs --vendor and --account (or ask for a --customer)")
        return [TenantRef(args.vendor, args.account, args.tenant)]
    billing = BillingStore(store)
    if args.customer not in {c.customer_id for c in billing.customers()}:
        raise CliError(f"no customer {args.customer!r}: `usagewatch customers import` adds customers")
    refs = sorted(
        (m.tenant for m in billing.mappings() if m.customer_id == args.customer),
        key=lambda t: (t.vendor, t.account_id, t.tenant_id),
    )
    refs = [t for t in refs if args.vendor in (None, t.vendor) and args.account in (None, t.account_id)]
    if not refs:
        raise CliError(f"customer {args.customer!r} has no tenant mapped{_narrowed(args)}")
    return refs


def _narrowed(args: argparse.Namespace) -> str:
    said = [f"{k} {v}" for k, v in (("vendor", args.vendor), ("account", args.account)) if v]
    return f" ({', '.join(said)})" if said else ""


def _rows(
    ref: TenantRef, by_metric: Mapping[str, Mapping[str, StoredUsage]], wanted: Sequence[Period]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for metric, usages in sorted(by_metric.items()):
        values = [usages[str(p)].record.value if str(p) in usages else None for p in wanted]
        for period, value, (rise, share) in zip(wanted, values, changes(values), strict=True):
            if value is None:
                continue
            record = usages[str(period)].record
            rows.append(
                {
                    "vendor": ref.vendor,
                    "account_id": ref.account_id,
                    "tenant_id": ref.tenant_id,
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
    return rows


def _section(
    ref: TenantRef, by_metric: Mapping[str, Mapping[str, StoredUsage]], wanted: Sequence[Period], span: str
) -> str:
    first = next(iter(next(iter(by_metric.values())).values())).record
    name = clean_name(first.tenant.tenant_name) or ref.tenant_id
    parts = [f"{registry.display_name(ref.vendor)} account {ref.account_id}, {name} ({ref.tenant_id}): {span}"]
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
        parts.append(f"{metric} ({unit})\n{table(('period', 'value', 'change', 'change_percent'), cells)}\n{trend}")
    return "\n\n".join(parts)

"""`usagewatch customers`: who owns which vendor tenant (suggest, import, unmapped, unmap, ignore, unignore)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from usagewatch import registry
from usagewatch.billing_report import UsageReader
from usagewatch.cli import changes
from usagewatch.cli.output import add_command, csv_text, default_period, json_lines, kind_of
from usagewatch.cli.reconcile import overlap_note
from usagewatch.customers import NamedTenant, TenantRef, canonical_tenant_id, unmapped
from usagewatch.imports import parse_mappings
from usagewatch.model import Period
from usagewatch.reconcile import tenants_once
from usagewatch.report import table
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore
    from usagewatch.store.billing import BillingStore

HELP: Final = "who owns which vendor tenant: suggest, import, unmapped, unmap, ignore, unignore"
EXAMPLE: Final = "usagewatch customers suggest --period 2026-11 --csv > suggestions.csv"
SUGGESTION_COLUMNS: Final = (
    "customer_id",
    "customer_name",
    "vendor",
    "account_id",
    "tenant_id",
    "tenant_name",
    "score",
    "method",
    "new_customer",
)
ACTIONS: Final = (
    ("suggest", "a proposed customer per unmapped tenant", "usagewatch customers suggest --period 2026-11 --accept"),
    ("import", "import a mapping CSV (all or nothing)", "usagewatch customers import mapping.csv"),
    ("unmapped", "tenants with usage and no customer", "usagewatch customers unmapped --period 2026-11"),
    ("unmap", "remove tenants' mappings (all or nothing)", "usagewatch customers unmap keepnet/kn-main/c-1"),
    (
        "ignore",
        "tenants nobody bills on purpose: no unmapped alert, listing or suggestion",
        "usagewatch customers ignore keepnet/kn-main/c-1",
    ),
    ("unignore", "take tenants off the ignore list", "usagewatch customers unignore keepnet/kn-main/c-1"),
)
PERIOD_HELP: Final = "the month, YYYY-MM (default: the last month that ended, or the latest collected)"


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    subs = parser.add_subparsers(dest="action", required=True, metavar="{" + ",".join(a for a, _, _ in ACTIONS) + "}")
    made = {name: add_command(subs, name, common, says, example) for name, says, example in ACTIONS}
    made["suggest"].add_argument("--min-score", type=float, default=85.0, help="fuzzy score a proposal needs (0-100)")
    made["suggest"].add_argument("--accept", action="store_true", help="store every proposal as shown")
    for name in ("suggest", "unmapped"):
        made[name].add_argument("--period", help=PERIOD_HELP)
    made["import"].add_argument("file", help="customer_id,customer_name,vendor,account_id,tenant_id[,external_ref]")
    made["import"].add_argument(
        "--allow-unseen", action="store_true", help="map tenants not collected in recent months too"
    )
    for name in ("unmap", "ignore", "unignore"):
        made[name].add_argument("tenants", nargs="+", metavar="VENDOR/ACCOUNT/TENANT", help="e.g. keepnet/kn-main/c-1")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    billing = changes.billing_of(store)
    with changes.conflicts_exit():
        if args.action == "import":
            text = changes.read_file(args.file)
            parsed = parse_mappings(text, vendors=registry.vendor_ids(), source=args.file)
            return changes.import_mappings(store, billing, parsed, source=args.file, allow_unseen=args.allow_unseen)
        if args.action == "unmap":
            return changes.unmap(billing, changes.tenant_refs(args.tenants))
        if args.action in ("ignore", "unignore"):
            refs = changes.tenant_refs(args.tenants)
            return changes.set_ignored(billing, refs, ignore=args.action == "ignore")
        reader = UsageReader(store)
        period = default_period(args.period, lambda p: bool(store.period_totals(str(p))))
        tenants, overlap = tenants_once(  # one per vendor tenant, the ignored ones left out
            _not_ignored(_tenants(reader, period), billing.ignored()), billing.mappings()
        )
        kind = kind_of(args)
        if args.action == "unmapped":
            return _unmapped(unmapped(tenants, billing.mappings()), period, kind) + overlap_note(overlap, kind)
        return _suggest(billing, tenants, period, args, kind)


def _not_ignored(tenants: Sequence[NamedTenant], ignored: set[TenantRef]) -> list[NamedTenant]:
    skip = {(t.vendor, t.account_id, canonical_tenant_id(t.vendor, t.tenant_id)) for t in ignored}
    return [
        t
        for t in tenants
        if (t.tenant.vendor, t.tenant.account_id, canonical_tenant_id(t.tenant.vendor, t.tenant.tenant_id)) not in skip
    ]


def _tenants(reader: UsageReader, period: Period) -> list[NamedTenant]:
    seen: dict[TenantRef, str] = {}
    for item in reader.items(period):
        ref = TenantRef(str(item["vendor"]), str(item["account_id"]), str(item["tenant_id"]))
        seen.setdefault(ref, str(item.get("tenant_name", "")))
    return [NamedTenant(ref, name) for ref, name in seen.items()]


def _unmapped(tenants: Sequence[NamedTenant], period: Period, kind: str) -> str:
    rows = [{"vendor": t.tenant.vendor, "account_id": t.tenant.account_id, "tenant_id": t.tenant.tenant_id,
             "tenant_name": t.name} for t in tenants]  # fmt: skip
    if kind == "csv":
        return csv_text(rows, ("vendor", "account_id", "tenant_id", "tenant_name"))
    if kind == "json":
        return json_lines(rows)
    if not rows:
        return f"Every tenant with usage in {period} belongs to a customer."
    cells = [(r["vendor"], r["account_id"], clean_name(r["tenant_name"]), r["tenant_id"]) for r in rows]
    return (
        f"Unmapped tenants, {period}\n\n"
        + table(("vendor", "account_id", "tenant_name", "tenant_id"), cells)
        + f"\n\n{len(rows)} unmapped tenant(s)."
    )


def _suggest(
    billing: BillingStore, tenants: Sequence[NamedTenant], period: Period, args: argparse.Namespace, kind: str
) -> str:
    from usagewatch.matching import suggest

    known = billing.customers()
    proposals = suggest(tenants, known, billing.mappings(), min_score=args.min_score)
    rows: list[dict[str, Any]] = [
        {
            "customer_id": s.customer_id,
            "customer_name": s.customer_name,
            "vendor": s.tenant.vendor,
            "account_id": s.tenant.account_id,
            "tenant_id": s.tenant.tenant_id,
            "tenant_name": s.tenant_name,
            "score": s.score,
            "method": s.method,
            "new_customer": s.new_customer,
        }
        for s in proposals
    ]
    if args.accept and rows:
        parsed = parse_mappings(csv_text(rows, SUGGESTION_COLUMNS), vendors=registry.vendor_ids(), source="suggestions")
        stored = {c.customer_id: c for c in known}  # a suggestion never rewrites a stored customer's external_ref
        customers = [stored.get(c.customer_id, c) for c in parsed.customers]
        result = billing.import_mappings(customers, parsed.mappings, what="customers suggest --accept")
        return changes.summary(result, f"{len(parsed.mappings)} accepted suggestion(s)")
    if kind == "csv":
        return csv_text(rows, SUGGESTION_COLUMNS)
    if kind == "json":
        return json_lines(rows)
    if not rows:
        return f"Every tenant with usage in {period} belongs to a customer: nothing to suggest."
    cells = [
        (clean_name(r["tenant_name"]), r["vendor"], r["customer_id"], clean_name(r["customer_name"]),
         f"{r['score']:.0f}", r["method"] + (" (new)" if r["new_customer"] else ""))
        for r in rows
    ]  # fmt: skip
    return (
        f"Suggestions, {period}\n\n"
        + table(("tenant_name", "vendor", "customer_id", "customer_name", "score", "method"), cells)
        + f"\n\n{len(rows)} suggestion(s), none stored: --accept stores them all, or --csv > FILE, edit it"
        " and `usagewatch customers import FILE`."
    )

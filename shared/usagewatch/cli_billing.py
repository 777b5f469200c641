"""The billing half of the `usagewatch` command: customers, contracts and the monthly reconciliation.

usagewatch customers suggest --period 2026-11 --csv > suggestions.csv   # edit, then import it
usagewatch customers suggest --period 2026-11 --accept                 # take every proposal as it is
usagewatch customers import mapping.csv [--allow-unseen]
usagewatch customers unmapped --period 2026-11
usagewatch customers unmap|ignore|unignore keepnet/kn-main/c-1 ...
usagewatch contracts import contracts.csv [--amend]
usagewatch contracts end acme keepnet monthly_users --last 2026-12 [--amend]
usagewatch reconcile --period 2026-11 [--customer acme] [--csv]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from usagewatch import cli_imports, registry
from usagewatch.billing_report import UsageReader
from usagewatch.cli_reconcile import overlap_note
from usagewatch.customers import NamedTenant, TenantRef, canonical_tenant_id, unmapped
from usagewatch.imports import parse_mappings
from usagewatch.model import Period
from usagewatch.reconcile import DEFAULT_TOLERANCE, tenants_once
from usagewatch.report import table
from usagewatch.store import DynamoStore
from usagewatch.store.billing import BillingStore, ImportResult
from usagewatch.store.billing_commit import ImportConflictError
from usagewatch.text import clean_name

MAX_FILE_BYTES: Final = 50 * 1024 * 1024
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
Fail = Callable[..., Exception]
CONFLICT: Final = 2
"""Exit code of a change that lost to another one running at the same time."""


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register `customers`, `contracts` and `reconcile` on the CLI's subparsers."""
    customers = commands.add_parser("customers", parents=[common], help="who owns which vendor tenant")
    actions = customers.add_subparsers(
        dest="action", required=True, metavar="{suggest,import,unmapped,unmap,ignore,unignore}"
    )
    suggest = actions.add_parser("suggest", parents=[common], help="a proposed customer per unmapped tenant")
    suggest.add_argument("--min-score", type=float, default=85.0, help="fuzzy score a proposal needs (0-100)")
    suggest.add_argument("--accept", action="store_true", help="store every proposal as shown")
    unmapped_ = actions.add_parser("unmapped", parents=[common], help="tenants with usage and no customer")
    for sub in (suggest, unmapped_):
        sub.add_argument("--period", help="the month, YYYY-MM (default: this month)")
    imp = actions.add_parser("import", parents=[common], help="import a mapping CSV (all or nothing)")
    imp.add_argument("file", help="customer_id,customer_name,vendor,account_id,tenant_id[,external_ref]")
    imp.add_argument("--allow-unseen", action="store_true", help="map tenants not collected in recent months too")
    contracts = commands.add_parser("contracts", parents=[common], help="what each customer is billed for")
    cactions = contracts.add_subparsers(dest="action", required=True, metavar="{import,end}")
    cimp = cactions.add_parser("import", parents=[common], help="import a contracts CSV (all or nothing)")
    cimp.add_argument(
        "file", help="customer_id,vendor,metric,quantity,effective_from[,effective_to,agreement,unit_price]"
    )
    cimp.add_argument("--amend", action="store_true", help="allow changing months that have already ended")
    cli_imports.add_change_commands(actions, cactions, common)
    rec = commands.add_parser("reconcile", parents=[common], help="billed versus used for one month")
    rec.add_argument("--period", required=True, help="the month, YYYY-MM")
    rec.add_argument("--customer", help="one customer id")
    rec.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"share of a contract unused before it is over-billed (default {DEFAULT_TOLERANCE})",
    )


def run(store: DynamoStore, args: argparse.Namespace, kind: str, fail: Fail, csv: Callable[..., str]) -> str:
    billing = BillingStore(store)
    if note := billing.interrupted():
        sys.stderr.write(f"usagewatch: warning: {note}\n")
    try:
        return _run(store, billing, args, kind, fail, csv)
    except ImportConflictError as exc:
        raise fail(str(exc), CONFLICT) from exc


def _run(
    store: DynamoStore, billing: BillingStore, args: argparse.Namespace, kind: str, fail: Fail, csv: Callable[..., str]
) -> str:
    if args.command == "reconcile":
        from usagewatch.cli_reconcile import reconcile_command

        return reconcile_command(store, billing, args, kind, fail)
    if args.command == "contracts" and args.action == "end":
        return cli_imports.end_contract(billing, args, fail)
    if args.command == "contracts":
        text = _read_file(args.file, fail)
        known = _known_metrics(store)
        return cli_imports.import_contracts(store, billing, text, args.file, amend=args.amend, known=known)
    if args.action == "import":
        parsed = parse_mappings(_read_file(args.file, fail), vendors=registry.vendor_ids(), source=args.file)
        return cli_imports.import_mappings(store, billing, parsed, source=args.file, allow_unseen=args.allow_unseen)
    if args.action == "unmap":
        return cli_imports.unmap(billing, cli_imports.tenant_refs(args.tenants, fail), fail)
    if args.action in ("ignore", "unignore"):
        refs = cli_imports.tenant_refs(args.tenants, fail)
        return cli_imports.set_ignored(billing, refs, ignore=args.action == "ignore")
    period = _period(args.period, fail)
    tenants, overlap = tenants_once(  # one per vendor tenant, the ignored ones left out
        _not_ignored(_tenants(store, period), billing.ignored()), billing.mappings()
    )
    if args.action == "unmapped":
        return _unmapped(unmapped(tenants, billing.mappings()), period, kind, csv) + overlap_note(overlap, kind)
    return _suggest(billing, tenants, args, kind, csv)


def _not_ignored(tenants: Sequence[NamedTenant], ignored: set[TenantRef]) -> list[NamedTenant]:
    skip = {(t.vendor, t.account_id, canonical_tenant_id(t.vendor, t.tenant_id)) for t in ignored}
    return [
        t
        for t in tenants
        if (t.tenant.vendor, t.tenant.account_id, canonical_tenant_id(t.tenant.vendor, t.tenant.tenant_id)) not in skip
    ]


def _read_file(path: str, fail: Fail) -> str:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise fail(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB")
        return file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise fail(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise fail(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def _period(text: str | None, fail: Fail) -> Period:
    return Period.parse(text, field="--period") if text else Period.of(datetime.now(UTC))


def _imported(result: ImportResult, what: str) -> str:
    return cli_imports.summary(result, what)


# --- reads of the usage the collectors stored --------------------------------------------------------


def _tenants(store: DynamoStore, period: Period) -> list[NamedTenant]:
    seen: dict[TenantRef, str] = {}
    for item in UsageReader(store).items(period):
        ref = TenantRef(str(item["vendor"]), str(item["account_id"]), str(item["tenant_id"]))
        seen.setdefault(ref, str(item.get("tenant_name", "")))
    return [NamedTenant(ref, name) for ref, name in seen.items()]


def _known_metrics(store: DynamoStore) -> dict[str, set[str]]:
    """The metrics each vendor has stored this month or last: a contract names one of them."""
    now = Period.of(datetime.now(UTC))
    known: dict[str, set[str]] = {}
    reader = UsageReader(store)
    for period in (now.previous(), now):
        for item in reader.items(period):
            known.setdefault(str(item["vendor"]), set()).add(str(item["metric"]))
    return known


# --- commands ----------------------------------------------------------------------------------------


def _unmapped(tenants: Sequence[NamedTenant], period: Period, kind: str, csv: Callable[..., str]) -> str:
    rows = [{"vendor": t.tenant.vendor, "account_id": t.tenant.account_id, "tenant_id": t.tenant.tenant_id,
             "tenant_name": t.name} for t in tenants]  # fmt: skip
    if kind == "csv":
        return str(csv(rows, ("vendor", "account_id", "tenant_id", "tenant_name")))
    if kind == "json":
        return "".join(_json(r) for r in rows)
    if not rows:
        return f"Every tenant with usage in {period} belongs to a customer."
    cells = [(r["vendor"], r["account_id"], clean_name(r["tenant_name"]), r["tenant_id"]) for r in rows]
    return table(("vendor", "account", "tenant", "tenant id"), cells) + f"\n\n{len(rows)} unmapped tenant(s)."


def _suggest(
    billing: BillingStore, tenants: Sequence[NamedTenant], args: argparse.Namespace, kind: str, csv: Callable[..., str]
) -> str:
    from usagewatch.matching import suggest

    proposals = suggest(tenants, billing.customers(), billing.mappings(), min_score=args.min_score)
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
        mapping_csv = csv(rows, SUGGESTION_COLUMNS)
        parsed = parse_mappings(mapping_csv, vendors=registry.vendor_ids(), source="suggestions")
        result = billing.import_mappings(parsed.customers, parsed.mappings, what="customers suggest --accept")
        return _imported(result, f"{len(parsed.mappings)} accepted suggestion(s)")
    if kind == "csv":
        return str(csv(rows, SUGGESTION_COLUMNS))
    if kind == "json":
        return "".join(_json(r) for r in rows)
    if not rows:
        return "Every tenant with usage belongs to a customer: nothing to suggest."
    cells = [
        (clean_name(r["tenant_name"]), r["vendor"], r["customer_id"], clean_name(r["customer_name"]),
         f"{r['score']:.0f}", r["method"] + (" (new)" if r["new_customer"] else ""))
        for r in rows
    ]  # fmt: skip
    return (
        table(("tenant", "vendor", "customer id", "customer", "score", "match"), cells)
        + f"\n\n{len(rows)} suggestion(s), none stored: --accept stores them all, or --csv > FILE, edit it"
        " and `usagewatch customers import FILE`."
    )


def _json(row: Mapping[str, Any]) -> str:
    import json

    return json.dumps(row, ensure_ascii=False, default=str, sort_keys=True) + "\n"

"""The `usagewatch psa` commands: the link with the PSA (ConnectWise PSA first); docs/psa.md.

usagewatch psa check --psa-secret usagewatch/connectwise
usagewatch psa products import products.csv             # product_identifier,vendor,metric (all or nothing)
usagewatch psa sync [--dry-run]                          # contract lines from what the PSA bills
usagewatch psa plan --period 2026-11 [--decreases]       # proposals: the PSA quantity -> the quantity used
usagewatch psa approve --period 2026-11 (--id ID ... | --all)
usagewatch psa apply --period 2026-11 [--dry-run] [--max-lines N] [--max-difference Q]
usagewatch psa log [--period 2026-11] [--csv]

The connection is a Secrets Manager secret named by --psa-secret or USAGEWATCH_PSA_SECRET.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from usagewatch import registry
from usagewatch.cli.contracts import known_metrics
from usagewatch.cli.output import CliError, csv_text, kind_of
from usagewatch.errors import VendorApiError, VendorDataError
from usagewatch.model import Period
from usagewatch.psa import sync as psa_sync
from usagewatch.psa.apply import ChangeBound, ChangeBoundExceededError, apply_approved
from usagewatch.psa.connectwise import PSA, ConnectWiseClient, parse_connection
from usagewatch.psa.connectwise.mapping import clip
from usagewatch.psa.planning import plan_month
from usagewatch.psa.proposals import Proposal, ProposalStatus
from usagewatch.report import table
from usagewatch.store import DynamoStore
from usagewatch.store.billing import BillingStore
from usagewatch.store.billing_commit import ImportConflictError
from usagewatch.store.psa import ProductMapping, PsaStore

CONNECTION_ENV: Final = "USAGEWATCH_PSA_SECRET"
AWS_ERROR: Final = 2
Fail = Callable[..., Exception]
LOG_COLUMNS: Final = (
    "at", "period", "proposal_id", "line", "approver", "applier", "before", "after", "outcome", "psa_status", "note"
)  # fmt: skip


HELP: Final = "the PSA link (ConnectWise): check, products import, sync, plan, approve, apply, log"
EXAMPLE: Final = "usagewatch psa plan --period 2026-11 --psa-secret usagewatch/connectwise"


def add_arguments(psa: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The `psa` command's actions."""
    actions = psa.add_subparsers(dest="action", required=True, metavar="{check,products,sync,plan,approve,apply,log}")
    conn = argparse.ArgumentParser(add_help=False)
    conn.add_argument("--psa-secret", help=f"the connection's Secrets Manager secret (or {CONNECTION_ENV})")
    actions.add_parser("check", parents=[common, conn], help="call the PSA once and print its version")
    products = actions.add_parser("products", parents=[common], help="which PSA product bills which metric")
    pimp = products.add_subparsers(dest="products_action", required=True, metavar="{import}").add_parser(
        "import", parents=[common, conn], help="import product_identifier,vendor,metric (all or nothing)"
    )
    pimp.add_argument("file")
    sync = actions.add_parser("sync", parents=[common, conn], help="contract lines from what the PSA bills")
    sync.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")
    plan_ = actions.add_parser("plan", parents=[common, conn], help="propose PSA quantities from the month's usage")
    plan_.add_argument("--decreases", action="store_true", help="propose decreases too (raises only by default)")
    approve = actions.add_parser("approve", parents=[common], help="approve proposals (who and when is recorded)")
    which = approve.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", action="append", dest="ids", metavar="ID", help="a proposal id (repeatable)")
    which.add_argument("--all", action="store_true", help="every proposed one of the period")
    apply = actions.add_parser("apply", parents=[common, conn], help="write approved proposals to the PSA")
    apply.add_argument("--dry-run", action="store_true", help="print the exact requests, write nothing")
    apply.add_argument("--max-lines", type=int, default=ChangeBound().max_lines, help="the most lines one run changes")
    apply.add_argument(
        "--max-difference", default=str(ChangeBound().max_total_difference), help="the most total |difference| per run"
    )
    apply.add_argument("--rate", type=float, help="requests per second to the PSA (default: the secret's, or 10)")
    log = actions.add_parser("log", parents=[common], help="the audit trail of applies")
    for sub in (plan_, approve, apply, log):
        sub.add_argument("--period", required=sub is not log, help="the month, YYYY-MM")
    for sub in (approve, apply):
        sub.add_argument("--by", help="who approves or applies (default: the login name)")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    fail: Fail = CliError
    try:
        return _run(store, args, kind_of(args), fail, csv_text)
    except ImportConflictError as exc:
        raise fail(str(exc), AWS_ERROR) from exc
    except ChangeBoundExceededError as exc:
        raise fail(str(exc)) from exc
    except (VendorApiError, VendorDataError) as exc:
        raise fail(f"PSA: {clip(str(exc))}", AWS_ERROR) from exc


def _run(store: DynamoStore, args: argparse.Namespace, kind: str, fail: Fail, csv: Callable[..., str]) -> str:
    psa_store = PsaStore(store)
    if args.action == "approve":
        return _approve(psa_store, args)
    if args.action == "log":
        return _log(psa_store, args, kind, csv)
    client = _client(args, fail)
    try:
        if args.action == "check":
            info = client.check()
            where = f", cloud {info.region}" if info.cloud and info.region else ""
            return f"ConnectWise PSA {info.version}{where}: connected."
        if args.action == "products":
            return _import_products(store, psa_store, client, args.file, fail)
        if args.action == "sync":
            return _sync(BillingStore(store), psa_store, client, dry_run=args.dry_run)
        if args.action == "plan":
            return _plan(store, client, Period.parse(args.period, field="--period"), args.decreases)
        return _apply(psa_store, client, args, fail)
    finally:
        client.close()


# --- the connection ----------------------------------------------------------------------------------------------
def _client(args: argparse.Namespace, fail: Fail) -> ConnectWiseClient:
    name = getattr(args, "psa_secret", None) or os.environ.get(CONNECTION_ENV)
    if not name:
        raise fail(f"no PSA connection: pass --psa-secret NAME or set {CONNECTION_ENV}")
    from usagewatch import aws

    try:
        text = aws.client("secretsmanager", region=getattr(args, "region", None)).get_secret_value(SecretId=name)
    except Exception as exc:
        raise fail(f"PSA secret {name!r} not read: {type(exc).__name__}", AWS_ERROR) from exc
    try:
        raw = json.loads(text.get("SecretString") or "")
    except ValueError:
        raise fail(f"PSA secret {name!r} is not a JSON object") from None
    connection = parse_connection(raw)
    rate = getattr(args, "rate", None)
    if rate is not None:
        connection = connection.model_copy(update={"requests_per_second": rate})
    return ConnectWiseClient(connection)


def _who(args: argparse.Namespace) -> str:
    return str(getattr(args, "by", None) or os.environ.get("USER") or getpass.getuser())


# --- products ----------------------------------------------------------------------------------------------------
def _import_products(store: DynamoStore, psa: PsaStore, client: ConnectWiseClient, path: str, fail: Fail) -> str:
    from usagewatch.cli.changes import read_file
    from usagewatch.psa.products import parse_products

    known = known_metrics(store)
    rows = parse_products(read_file(path), known=known, vendors=registry.vendor_ids(), source=path)
    products = [ProductMapping(PSA, identifier, vendor, metric) for _, identifier, vendor, metric in rows]
    in_catalog = client.catalog_identifiers(p.product_identifier for p in products)
    written, unchanged = psa.import_products(products, what=path)
    said = (
        f"Nothing changed: {len(products)} product mapping(s) already stored as in the file."
        if not written
        else f"Imported {len(products)} product mapping(s): {written} written, {unchanged} unchanged."
    )
    for line, identifier, _, _ in rows:
        if identifier not in in_catalog:
            said += f"\n  warning: line {line}: product {identifier!r} is not in the ConnectWise catalogue"
    return said


# --- sync --------------------------------------------------------------------------------------------------------
def _sync(billing: BillingStore, psa: PsaStore, client: ConnectWiseClient, *, dry_run: bool) -> str:
    result = psa_sync.run_sync(billing, psa, client, today=datetime.now(UTC).date(), dry_run=dry_run)
    out = [f"Read {result.companies} companies and {result.read} lines from ConnectWise."]
    if dry_run:
        count = len(result.contracts) + len(result.removed)
        out.append(f"Dry run: {count} contract version(s) would be written, nothing written.")
    elif result.written:
        out.append(f"Wrote {result.written} contract version(s).")
    else:
        out.append("Nothing changed: the contracts already say what ConnectWise bills.")
    for c in result.contracts:
        verb = "ends" if c in result.ended else "from"
        when = c.effective_to if c in result.ended else c.effective_from
        out.append(f"  {c.customer_id} {c.vendor} {c.metric}: {c.quantity} ({verb} {when}, line {c.psa_line})")
    for c in result.removed:
        out.append(
            f"  {c.customer_id} {c.vendor} {c.metric}: removed (from {c.effective_from}, line {c.psa_line} gone)"
        )
    if result.unused:
        out.append(f"Not used ({len(result.unused)}):")
        out += [f"  {clip(text)}" for text in result.unused]
    return "\n".join(out)


# --- plan, approve, apply, log -----------------------------------------------------------------------------------
def _plan(store: DynamoStore, client: ConnectWiseClient, period: Period, decreases: bool) -> str:
    from usagewatch.billing_report import gather

    lines = gather(store, period).lines
    month = plan_month(store, client, period, lines, decreases=decreases, today=datetime.now(UTC).date())
    made = month.plan
    out = [f"Plan for {period}: {len(made.proposals)} proposal(s), {month.new} new, raises worth {made.raise_value}."]
    if made.ended:
        out.append(
            f"{period} has ended: a quantity changed now bills the invoices to come; the {made.lost_value}"
            f" under-billed in {period} is lost, not recovered."
        )
    if made.proposals:
        out.append(_proposal_table(made.proposals))
    for s in made.skipped:
        out.append(f"  skipped {s.customer_id} {s.vendor} {s.metric}: {s.reason}")
    out += [f"  skipped {text}" for text in month.gone]
    return "\n".join(out)


def _proposal_table(proposals: list[Proposal]) -> str:
    cells = [
        (p.id, p.customer_id, p.product_identifier, str(p.ref), p.from_quantity, p.to_quantity, p.difference,
         p.unit_price if p.unit_price is not None else "", p.value if p.value is not None else "", p.status.value,
         p.reason)
        for p in proposals
    ]  # fmt: skip
    return table(("id", "customer", "product", "line", "from", "to", "diff", "price", "value", "status", "why"), cells)


def _approve(psa: PsaStore, args: argparse.Namespace) -> str:
    period = str(Period.parse(args.period, field="--period"))
    ids = None if args.all else list(args.ids)
    changed = psa.approve(period, ids, approver=_who(args), at=datetime.now(UTC))
    said = f"Approved {len(changed)} proposal(s) of {period} as {_who(args)}."
    if ids is not None and len(changed) < len(set(ids)):
        said += f"\n  {len(set(ids)) - len(changed)} id(s) not approved: unknown, or not in status proposed."
    return said


def _apply(psa: PsaStore, client: ConnectWiseClient, args: argparse.Namespace, fail: Fail) -> str:
    period = str(Period.parse(args.period, field="--period"))
    try:
        bound = ChangeBound(max_lines=args.max_lines, max_total_difference=Decimal(args.max_difference))
    except InvalidOperation:
        raise fail(f"--max-difference: not a number: {args.max_difference!r}") from None
    report = apply_approved(
        psa, client, period, applier=_who(args), bound=bound, now=lambda: datetime.now(UTC), dry_run=args.dry_run
    )
    if args.dry_run:
        lines = [f"Dry run: {len(report.requests)} request(s) would be sent, nothing written."]
        lines += [f"  {r.method} {r.path} {r.body}" for r in report.requests]
        return "\n".join(lines)
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in ProposalStatus if report.count(s))
    out = [f"Apply {period}: {counts}." if report.outcomes else f"Nothing to apply for {period}."]
    out += [f"  {p.status.value} {p.id} ({p.customer_id} {p.ref}): {p.note}" for p in report.outcomes]
    out += [f"  {pid}: taken by another apply run" for pid in report.not_taken]
    return "\n".join(out)


def _log(psa: PsaStore, args: argparse.Namespace, kind: str, csv: Callable[..., str]) -> str:
    period = str(Period.parse(args.period, field="--period")) if args.period else str(Period.of(datetime.now(UTC)))
    rows: list[Mapping[str, Any]] = [
        {
            "at": r.at.isoformat(timespec="seconds"),
            "period": r.period,
            "proposal_id": r.proposal_id,
            "line": r.line,
            "approver": r.approver or "",
            "applier": r.applier,
            "before": "" if r.before is None else str(r.before),
            "after": "" if r.after is None else str(r.after),
            "outcome": r.outcome.value,
            "psa_status": r.psa_status,
            "note": r.note,
        }
        for r in sorted(psa.audit(period), key=lambda r: r.at)
    ]
    if kind == "csv":
        return str(csv(rows, LOG_COLUMNS))
    if not rows:
        return f"No apply recorded for {period}."
    return table(LOG_COLUMNS, [[row[c] for c in LOG_COLUMNS] for row in rows])

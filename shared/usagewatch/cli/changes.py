"""What the commands that change billing items share (customers import / unmap / ignore / unignore, contracts
import / end): each is all or nothing (billing_commit); docs/billing.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from usagewatch import registry
from usagewatch.cli.output import CONFLICT, CliError
from usagewatch.contracts import Contract, check_history, in_force
from usagewatch.customers import TenantMapping, TenantRef, canonical_tenant_id
from usagewatch.imports import ImportRejectedError, MappingFile, parse_contract_lines
from usagewatch.model import Period
from usagewatch.store import DynamoStore
from usagewatch.store.billing import BillingStore, ImportResult
from usagewatch.store.billing_commit import ImportConflictError
from usagewatch.text import clean_name

SEEN_MONTHS: Final = 3
"""A tenant counts as seen when its account's usage of this month or the two before lists it."""
MAX_FILE_BYTES: Final = 50 * 1024 * 1024


def billing_of(store: DynamoStore) -> BillingStore:
    """The billing items beside the usage, warning first of a change that was interrupted."""
    billing = BillingStore(store)
    if note := billing.interrupted():
        sys.stderr.write(f"usagewatch: warning: {note}\n")
    return billing


@contextmanager
def conflicts_exit() -> Iterator[None]:
    """A change that lost to another one running at the same time ends the command (exit CONFLICT)."""
    try:
        yield
    except ImportConflictError as exc:
        raise CliError(str(exc), CONFLICT) from exc


def read_file(path: str) -> str:
    file = Path(path)
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise CliError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MB")
        return file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def this_month() -> Period:
    return Period.of(datetime.now(UTC))


def tenant_refs(texts: Sequence[str]) -> list[TenantRef]:
    refs = []
    for text in texts:
        vendor, _, rest = text.partition("/")
        account, _, tenant = rest.partition("/")
        if vendor not in registry.vendor_ids() or not account or not tenant:
            raise CliError(
                f"{text!r}: expected VENDOR/ACCOUNT/TENANT with a known vendor ({', '.join(registry.vendor_ids())})"
            )
        refs.append(TenantRef(vendor, account, tenant))
    return refs


def summary(result: ImportResult, what: str) -> str:
    if not result.written:
        return f"Nothing changed: {what} already stored as in the file."
    return f"Imported {what}: {result.written} item(s) written, {result.unchanged} unchanged."


def _seen(store: DynamoStore, accounts: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """Per account: canonical tenant id -> (tenant id as collected, tenant name), from its recent usage
    partitions (SEEN_MONTHS months, each the account's shard Queries)."""
    months = [this_month()]
    while len(months) < SEEN_MONTHS:
        months.append(months[-1].previous())
    seen: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for vendor, account in sorted(set(accounts)):
        found = seen.setdefault((vendor, account), {})
        for month in months:
            for usage in store.period_usage(str(month), vendor=vendor, account_id=account):
                tenant = usage.record.tenant
                key = canonical_tenant_id(vendor, tenant.tenant_id)
                found.setdefault(key, (tenant.tenant_id, tenant.tenant_name))
    return seen


def import_mappings(
    store: DynamoStore, billing: BillingStore, parsed: MappingFile, *, source: str, allow_unseen: bool
) -> str:
    seen = _seen(store, ((m.tenant.vendor, m.tenant.account_id) for m in parsed.mappings))
    mappings, unseen = [], []
    for m in parsed.mappings:
        t = m.tenant
        known = seen[(t.vendor, t.account_id)].get(canonical_tenant_id(t.vendor, t.tenant_id))
        if known is None:
            unseen.append(m)
            mappings.append(m)
        else:  # the spelling the collectors store, so their lookups find it
            mappings.append(TenantMapping(m.customer_id, TenantRef(t.vendor, t.account_id, known[0])))
    if unseen and not allow_unseen:
        raise ImportRejectedError(
            source,
            [
                (parsed.lines.get(m.tenant, 0),
                 f"tenant {m.tenant} has no usage in {m.tenant.vendor} account {m.tenant.account_id!r} in the last"
                 f" {SEEN_MONTHS} months (a typo, or not collected yet: --allow-unseen maps it anyway)")
                for m in unseen
            ],
        )  # fmt: skip
    names = {c.customer_id: c.name for c in billing.customers()} | {c.customer_id: c.name for c in parsed.customers}
    result = billing.import_mappings(parsed.customers, mappings, what=source)
    what = f"{len(parsed.customers)} customer(s), {len(parsed.mappings)} tenant mapping(s)"
    lines = [summary(result, what)]
    for tenant, before, after in result.moved:
        name = seen.get((tenant.vendor, tenant.account_id), {}).get(
            canonical_tenant_id(tenant.vendor, tenant.tenant_id)
        )
        shown = clean_name(name[1]) if name and name[1] else tenant.tenant_id
        was, now = clean_name(names.get(before, before)), clean_name(names.get(after, after))
        lines.append(f"  moved {shown} ({tenant}): {was} -> {now}")
    for m in unseen:
        lines.append(f"  not seen yet: {m.tenant} mapped to {clean_name(names.get(m.customer_id, m.customer_id))}")
    return "\n".join(lines)


def import_contracts(
    store: DynamoStore, billing: BillingStore, text: str, source: str, *, amend: bool, known: Mapping[str, set[str]]
) -> str:
    customers = {c.customer_id for c in billing.customers()}
    lines = parse_contract_lines(
        text,
        customers=customers,
        vendors=registry.vendor_ids(),
        metric_known=lambda vendor, metric: metric in known.get(vendor, set()),
        source=source,
    )
    contracts = [c for _, c in lines]
    line_of = {id(c): n for n, c in lines}
    stored = billing.stored_contracts(c.vendor for c in contracts)
    problems, amended = check_history(billing.contracts_in(*stored), contracts, now=this_month(), amend=amend)
    if problems:
        raise ImportRejectedError(source, sorted((line_of.get(id(c), 0), says) for c, says in problems))
    written = _amended(contracts, amended)
    at = {(*c.key, c.effective_from): n for n, c in lines}
    result = billing.import_contracts(written, what=source, stored=stored, lines=at)
    said = summary(result, f"{len(contracts)} contract line(s)")
    if amended and result.written:
        keys = ", ".join(" ".join(k) for k in sorted(amended))
        said += f"\nAmended months already ended (recorded on the versions): {keys}."
    return said


def _amended(contracts: Sequence[Contract], amended: set[tuple[str, str, str]]) -> list[Contract]:
    if not amended:
        return list(contracts)
    at = datetime.now(UTC).isoformat(timespec="seconds")
    from dataclasses import replace

    return [replace(c, amended_at=at) if c.key in amended else c for c in contracts]


def end_contract(billing: BillingStore, args: argparse.Namespace) -> str:
    last = Period.parse(args.last, field="--last")
    stored = billing.stored_contracts([args.vendor])
    versions = [c for c in billing.contracts_in(*stored) if c.key == (args.customer_id, args.vendor, args.metric)]
    current = in_force(versions, last).get((args.customer_id, args.vendor, args.metric))
    if current is None:
        raise CliError(f"no contract of {args.customer_id} for {args.vendor} {args.metric} is in force in {last}")
    later = [c for c in versions if c.effective_from > last]
    if later:
        raise CliError(f"a later version starts in {later[0].effective_from}: change that one (contracts import)")
    from dataclasses import replace

    ended = replace(current, effective_to=last)
    problems, amended = check_history(versions, [ended], now=this_month(), amend=args.amend)
    if problems:
        raise CliError("; ".join(says for _, says in problems))
    result = billing.import_contracts(_amended([ended], amended), what="contracts end", stored=stored)
    if not result.written:
        return f"Nothing changed: that contract already ends in {last}."
    return f"Ended {args.customer_id} {args.vendor} {args.metric}: last billed month {last}."


def unmap(billing: BillingStore, refs: Sequence[TenantRef]) -> str:
    result, missing = billing.unmap(refs, what="customers unmap")
    if missing:
        raise CliError("not mapped, nothing removed: " + ", ".join(str(t) for t in missing))
    return f"Unmapped {result.written} tenant(s): their usage is unmapped from now on."


def set_ignored(billing: BillingStore, refs: Sequence[TenantRef], *, ignore: bool) -> str:
    result = billing.set_ignored(refs, ignore=ignore, what="customers ignore" if ignore else "customers unignore")
    verb = "Ignored" if ignore else "No longer ignored"
    return f"{verb}: {result.written} tenant(s) changed, {result.unchanged} already so."

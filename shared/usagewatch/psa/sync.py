"""Read what the PSA bills and turn it into contract versions (docs/psa.md, "psa sync").

Every billable, not cancelled line of an active agreement whose product is mapped becomes a contract version of the
customer whose `external_ref` is the company's id or identifier, from the current month on, carrying its
`{agreement}/{line}` (`psa_line`). A product on two lines of one customer is ambiguous: never written. A synced
version whose line is gone or cancelled is ended with the month before (never amending an ended month). What could
not be used is listed. `run_sync` writes through the same all-or-nothing change as `contracts import`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from usagewatch import registry
from usagewatch.contracts import Contract, check_history, in_force
from usagewatch.customers import Customer, NamedTenant, TenantRef
from usagewatch.imports import ImportRejectedError
from usagewatch.model import Period
from usagewatch.psa.contract import LineProblem, PsaCompany, PsaLine, PsaReader
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import PsaStore


@dataclass(frozen=True, slots=True)
class Mapped:
    vendor: str
    metric: str


@dataclass
class SyncResult:
    contracts: list[Contract] = field(default_factory=list)
    """The versions to write (new, changed or ended); empty when the PSA says what is stored."""
    ended: list[Contract] = field(default_factory=list)
    removed: list[Contract] = field(default_factory=list)
    """Synced versions that began this month and whose line is gone: removed, never billed."""
    unused: list[str] = field(default_factory=list)
    """One sentence per thing read and not used (vendor text cleaned by the adapter)."""
    read: int = 0
    companies: int = 0
    written: int = 0


def read_psa(psa: PsaReader) -> tuple[list[PsaCompany], list[PsaLine], list[LineProblem]]:
    """Companies, and the lines and problems of every active agreement (each listing paged by the adapter)."""
    companies = list(psa.companies())
    lines: list[PsaLine] = []
    problems: list[LineProblem] = []
    for agreement in psa.active_agreements():
        for item in psa.lines(agreement):
            (problems if isinstance(item, LineProblem) else lines).append(item)  # type: ignore[arg-type]
    return companies, lines, problems


def run_sync(billing: BillingStore, psa_store: PsaStore, psa: PsaReader, *, today: date, dry_run: bool) -> SyncResult:
    """Read the PSA, work out the contract versions, and (unless `dry_run`) write them all or nothing."""
    products = {p.product_identifier: Mapped(p.vendor, p.metric) for p in psa_store.products(psa.psa)}
    companies, lines, problems = read_psa(psa)
    stored = billing.stored_contracts(registry.vendor_ids())
    in_store = billing.contracts_in(*stored)
    result = sync(
        companies, lines, problems, customers=billing.customers(), products=products, stored=in_store, today=today
    )
    result.companies = len(companies)
    refused, _ = check_history(in_store, result.contracts, now=Period(today.year, today.month), amend=False)
    if refused:
        raise ImportRejectedError("psa sync", [(0, f"{' '.join(c.key)}: {says}") for c, says in refused])
    if not dry_run:
        written = billing.import_contracts(
            result.contracts, what="psa sync", stored=stored, sync=True, removed=result.removed
        )
        result.written = written.written
    return result


def sync(
    companies: Sequence[PsaCompany],
    lines: Sequence[PsaLine],
    problems: Sequence[LineProblem],
    *,
    customers: Sequence[Customer],
    products: Mapping[str, Mapped],
    stored: Sequence[Contract],
    today: date,
) -> SyncResult:
    now = Period(today.year, today.month)
    result = SyncResult(read=len(lines))
    result.unused += [f"line {p.ref} ({p.product_identifier or 'no product'}): {p.reason}" for p in problems]
    owner = _owners(customers)
    by_company = {c.id: c for c in companies}
    unowned: dict[int, PsaCompany] = {}
    found: defaultdict[tuple[str, str, str], list[PsaLine]] = defaultdict(list)
    for line in lines:
        if not line.billable or line.cancelled_on(today):
            continue
        company = by_company.get(line.company_id) if line.company_id is not None else None
        customer = _owner_of(company, owner)
        if company is None or customer is None:
            if company is not None:
                unowned[company.id] = company
            else:
                result.unused.append(f"line {line.ref}: its company {line.company_id} was not read")
            continue
        mapped = products.get(line.product_identifier)
        if mapped is None:
            result.unused.append(
                f"line {line.ref} of {company.identifier}: product {line.product_identifier} is not mapped"
            )
            continue
        found[(customer, mapped.vendor, mapped.metric)].append(line)
    result.unused += _unowned(list(unowned.values()), customers)
    current = in_force(stored, now)
    ambiguous = set()
    for key, held in sorted(found.items()):
        if len(held) > 1:
            ambiguous.add(key)
            refs = ", ".join(str(x.ref) for x in held)
            result.unused.append(f"{' '.join(key)}: product on {len(held)} lines ({refs}), ambiguous: not written")
            continue
        line = held[0]
        wanted = Contract(
            *key,
            quantity=line.quantity,
            effective_from=now,
            agreement=str(line.ref.agreement_id),
            unit_price=line.unit_price,
            psa_line=str(line.ref),
        )
        before = current.get(key)
        if before is None or _terms(before) != _terms(wanted):
            result.contracts.append(wanted)
    for key, before in sorted(current.items()):
        if before.psa_line and key not in found and key not in ambiguous:
            _end(result, before, [c for c in stored if c.key == key], now)
    return result


def _end(result: SyncResult, version: Contract, versions: Sequence[Contract], now: Period) -> None:
    """No contract from `now` on: a version begun earlier ends with the month before; one begun this month is
    removed and the one before it, if it still runs, ends with the month before."""
    if version.effective_from < now:
        result.contracts.append(replace(version, effective_to=now.previous()))
        result.ended.append(result.contracts[-1])
        return
    result.removed.append(version)
    earlier = [c for c in versions if c.effective_from < now]
    if earlier:
        last = max(earlier, key=lambda c: c.effective_from)
        if last.effective_to is None or last.effective_to >= now:
            result.contracts.append(replace(last, effective_to=now.previous()))
            result.ended.append(result.contracts[-1])


def _terms(c: Contract) -> tuple[object, ...]:
    return (c.quantity, c.unit_price, c.agreement, c.psa_line, c.effective_to)


def _owners(customers: Iterable[Customer]) -> dict[str, str]:
    """external_ref -> customer id (a company is found by its id or its identifier, exactly as the PSA has it)."""
    return {c.external_ref: c.customer_id for c in customers if c.external_ref}


def _owner_of(company: PsaCompany | None, owner: Mapping[str, str]) -> str | None:
    if company is None:
        return None
    return owner.get(str(company.id)) or owner.get(company.identifier)


def _unowned(companies: list[PsaCompany], customers: Sequence[Customer]) -> list[str]:
    from usagewatch.matching import suggest

    named = [NamedTenant(TenantRef("psa", "companies", str(c.id)), c.name or c.identifier) for c in companies]
    hint = {s.tenant.tenant_id: s.customer_id for s in suggest(named, customers) if not s.new_customer}
    out = []
    for c in sorted(companies, key=lambda c: c.identifier):
        says = f"company {c.identifier} (id {c.id}, {c.name}): no customer has external_ref {c.identifier} or {c.id}"
        if str(c.id) in hint:
            says += f" (perhaps customer {hint[str(c.id)]})"
        out.append(says)
    return out

"""Billed versus used: per customer, vendor and metric for one month. Pure over what the store read.

Quantities and money are `Decimal` here whatever the store gave (int, float-free Decimal): `dec` converts.
A line is final only when every tenant of its customer and vendor has a reading of the month from a run that
finished; otherwise its status is `incomplete` with a `reason` (docs/billing.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal

from usagewatch.contracts import Contract, in_force
from usagewatch.customers import Customer, NamedTenant, TenantMapping, TenantRef
from usagewatch.model import Number, Period
from usagewatch.rules import is_free_metric

Status = Literal["under_billed", "incomplete", "over_billed", "ok", "no_contract", "unmapped"]
STATUS_ORDER: Final[tuple[Status, ...]] = ("under_billed", "incomplete", "unmapped", "no_contract", "over_billed", "ok")
# Contracted may exceed used by this share of the contract before it counts as over-billed.
DEFAULT_TOLERANCE: Final = 0.10
NOT_FULLY_READ: Final = "the month was not fully read"


def dec(value: Number | Decimal) -> Decimal:
    """A stored number as an exact Decimal (an int or float goes through its shortest text, never binary)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def money(value: Decimal, minor_unit: int) -> Decimal:
    """Rounded half-up to the currency's minor unit (2 for USD: 1.005 -> 1.01, 0.125 -> 0.13)."""
    return value.quantize(Decimal(1).scaleb(-minor_unit), rounding=ROUND_HALF_UP)


@dataclass(frozen=True, slots=True)
class Reading:
    """One billed tenant's number for one metric in one month, as stored."""

    tenant: TenantRef
    tenant_name: str
    metric: str
    value: Number | Decimal
    quota: Number | Decimal | None = None


@dataclass(frozen=True, slots=True)
class Line:
    customer_id: str
    customer_name: str
    vendor: str
    metric: str
    used: Decimal
    contracted: Decimal | None
    quota: Decimal | None
    difference: Decimal | None
    """Used minus contracted: positive is usage nobody bills."""
    status: Status
    change: Decimal | None
    """Used minus the previous month's used, when that month was read."""
    tenants: int
    reason: str | None = None
    """Why the line's numbers are not final (an `incomplete` line; a `no_contract` one may carry it too)."""
    provisional: bool = False
    """The month has not ended: the numbers are complete so far, not final."""
    agreement: str | None = None
    unit_price: Decimal | None = None
    unbilled_value: Decimal | None = None
    """What the under-billed quantity is worth at the contract's unit price, rounded to the currency."""
    amended_at: str | None = None
    """When the contract version in force was amended after the month had ended (None: never)."""
    tenant_id: str | None = None
    """Set on `unmapped` lines only: the tenant nobody owns."""

    @property
    def complete(self) -> bool:
        return self.status != "incomplete"


def _status(used: Decimal, contract: Contract | None, tolerance: float) -> Status:
    if contract is None:
        return "no_contract"
    quantity = dec(contract.quantity)
    if used > quantity:
        return "under_billed"
    if quantity - used > dec(tolerance) * quantity:
        return "over_billed"
    return "ok"


def billed_once(readings: Iterable[Reading], owned: Collection[TenantRef] = ()) -> list[Reading]:
    """One reading per (vendor, tenant, metric) however many accounts of the vendor reach the tenant: the one
    of an account that maps it (`owned`), else of the account whose id sorts first. Each account's stored
    totals are untouched; only what billing reads is deduplicated."""
    kept: dict[tuple[str, str, str], Reading] = {}
    for reading in readings:
        key = (reading.tenant.vendor, reading.tenant.tenant_id, reading.metric)
        held = kept.get(key)
        if held is None or _rank(reading, owned) < _rank(held, owned):
            kept[key] = reading
    return list(kept.values())


def _rank(reading: Reading, owned: Collection[TenantRef]) -> tuple[bool, str]:
    return (reading.tenant not in owned, reading.tenant.account_id)


def tenants_once(
    tenants: Iterable[NamedTenant], mappings: Iterable[TenantMapping]
) -> tuple[list[NamedTenant], list[tuple[NamedTenant, list[str]]]]:
    """The tenants as billing sees them, for `customers unmapped` and `suggest`: one per vendor tenant (the copy
    the reconciliation counts, dropped altogether when another account's copy is mapped), and the overlaps
    (the counted copy, every account it is stored under)."""
    owned = {m.tenant for m in mappings}
    owned_ids = {(t.vendor, t.tenant_id) for t in owned}
    groups: defaultdict[tuple[str, str], list[NamedTenant]] = defaultdict(list)
    for tenant in tenants:
        groups[(tenant.tenant.vendor, tenant.tenant.tenant_id)].append(tenant)
    kept: list[NamedTenant] = []
    overlap: list[tuple[NamedTenant, list[str]]] = []
    for key, copies in sorted(groups.items()):
        copies.sort(key=lambda t: (t.tenant not in owned, t.tenant.account_id))
        first = copies[0]
        if len(copies) > 1:
            overlap.append((first, sorted(t.tenant.account_id for t in copies)))
        if first.tenant in owned or key not in owned_ids:
            kept.append(first)
    return kept, overlap


def overlaps(readings: Iterable[Reading]) -> dict[tuple[str, str], list[str]]:
    """(vendor, tenant id) -> the accounts (sorted) of tenants stored under more than one account of a vendor."""
    seen: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    for reading in readings:
        seen[(reading.tenant.vendor, reading.tenant.tenant_id)].add(reading.tenant.account_id)
    return {key: sorted(accounts) for key, accounts in seen.items() if len(accounts) > 1}


def reconcile(
    period: Period,
    readings: Iterable[Reading],
    *,
    customers: Iterable[Customer],
    mappings: Iterable[TenantMapping],
    contracts: Iterable[Contract],
    previous: Iterable[Reading] = (),
    incomplete_accounts: Mapping[tuple[str, str], str] | Collection[tuple[str, str]] = (),
    incomplete_tenants: Mapping[TenantRef, str] | None = None,
    provisional: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    minor_unit: int = 2,
) -> list[Line]:
    """Every (customer, vendor, metric) with usage or a contract in `period`, plus a line per unmapped
    tenant and metric it used (a zero nobody bills or contracted is left out). Sorted by status (under-billed
    first), then customer, vendor and metric.

    `incomplete_accounts` are the (vendor, account) pairs whose month is not fully read, with why;
    `incomplete_tenants` the tenants whose own reading is missing or carried, with why. A contracted line with a
    mapped tenant in either is `incomplete`, never a silent zero (a `no_contract` line keeps its status and
    carries the reason). A tenant reached through two accounts of a vendor
    counts once (`billed_once`)."""
    mappings = list(mappings)
    names = {c.customer_id: c.name for c in customers}
    owner: dict[TenantRef, str] = {m.tenant: m.customer_id for m in mappings}
    by_tenant = {(t.vendor, t.tenant_id): cid for t, cid in sorted(owner.items(), key=lambda i: i[0].account_id)}
    shaky = (
        dict(incomplete_accounts)
        if isinstance(incomplete_accounts, Mapping)
        else dict.fromkeys(incomplete_accounts, NOT_FULLY_READ)
    )
    tenant_gaps = dict(incomplete_tenants or {})
    force = in_force(contracts, period)
    used: defaultdict[tuple[str, str, str], list[Reading]] = defaultdict(list)
    lines: list[Line] = []
    for reading in billed_once(readings, owner):
        cid = owner.get(reading.tenant) or by_tenant.get((reading.tenant.vendor, reading.tenant.tenant_id))
        if cid is None:
            # A zero with nobody to bill says nothing (`customers unmapped` lists the tenant), nor does a free SKU.
            if reading.value and not is_free_metric(reading.tenant.vendor, reading.metric):
                lines.append(_unmapped(reading, provisional))
            continue
        used[(cid, reading.tenant.vendor, reading.metric)].append(reading)
    before: defaultdict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    seen_before: set[tuple[str, str, str]] = set()
    for reading in billed_once(previous, owner):
        cid = owner.get(reading.tenant) or by_tenant.get((reading.tenant.vendor, reading.tenant.tenant_id))
        if cid is not None:
            key = (cid, reading.tenant.vendor, reading.metric)
            before[key] += dec(reading.value)
            seen_before.add(key)
    why: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for tenant, cid in sorted(owner.items(), key=lambda i: (i[0].account_id, i[0].tenant_id)):
        for reason in (shaky.get((tenant.vendor, tenant.account_id)), tenant_gaps.get(tenant)):
            if reason and reason not in why[(cid, tenant.vendor)]:
                why[(cid, tenant.vendor)].append(reason)
    for key in sorted(set(used) | set(force)):
        cid, vendor, metric = key
        rows = used.get(key, [])
        total = sum((dec(r.value) for r in rows), Decimal(0))
        quotas = [r.quota for r in rows]
        quota = sum((dec(q) for q in quotas if q is not None), Decimal(0)) if rows and None not in quotas else None
        contract = force.get(key)
        reasons = why.get((cid, vendor))
        if contract is None and (not total or is_free_metric(vendor, metric)):
            continue  # nothing used, nothing billed; a free SKU nobody contracted is nobody's to bill
        # Without a contract there is no verdict to withhold: the line stays no_contract, with the reason.
        status: Status = "incomplete" if reasons and contract else _status(total, contract, tolerance)
        quantity = dec(contract.quantity) if contract else None
        price = dec(contract.unit_price) if contract and contract.unit_price is not None else None
        difference = total - quantity if quantity is not None else None
        unbilled = (
            money(difference * price, minor_unit)
            if status == "under_billed" and price is not None and difference is not None
            else None
        )
        lines.append(
            Line(
                customer_id=cid,
                customer_name=names.get(cid, cid),
                vendor=vendor,
                metric=metric,
                used=total,
                contracted=quantity,
                quota=quota,
                difference=difference,
                status=status,
                change=total - before[key] if key in seen_before else None,
                tenants=len({r.tenant for r in rows}),
                reason="; ".join(reasons) if reasons else None,
                provisional=provisional,
                agreement=contract.agreement if contract else None,
                unit_price=price,
                unbilled_value=unbilled,
                amended_at=contract.amended_at if contract else None,
            )
        )
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return sorted(lines, key=lambda x: (rank[x.status], x.customer_id, x.vendor, x.metric, x.tenant_id or ""))


def _unmapped(reading: Reading, provisional: bool) -> Line:
    return Line(
        customer_id="",
        customer_name=reading.tenant_name,
        vendor=reading.tenant.vendor,
        metric=reading.metric,
        used=dec(reading.value),
        contracted=None,
        quota=dec(reading.quota) if reading.quota is not None else None,
        difference=None,
        status="unmapped",
        change=None,
        tenants=1,
        provisional=provisional,
        tenant_id=reading.tenant.tenant_id,
    )


def summary(lines: Iterable[Line]) -> dict[str, int]:
    """How many lines of each status, and how many customers are under-billed somewhere."""
    counts: dict[str, int] = dict.fromkeys(STATUS_ORDER, 0)
    under: set[str] = set()
    for line in lines:
        counts[line.status] += 1
        if line.status == "under_billed":
            under.add(line.customer_id)
    return {**counts, "customers_under_billed": len(under)}


def unbilled_by_customer(lines: Iterable[Line]) -> dict[str, Decimal]:
    """Per customer with an unbilled value, the sum of its lines' (each already rounded)."""
    sums: defaultdict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        if line.unbilled_value is not None:
            sums[line.customer_id] += line.unbilled_value
    return dict(sums)


def unbilled_total(lines: Iterable[Line], minor_unit: int = 2) -> Decimal:
    return money(sum((x.unbilled_value for x in lines if x.unbilled_value is not None), Decimal(0)), minor_unit)

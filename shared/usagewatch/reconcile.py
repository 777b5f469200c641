"""Billed versus used: per customer, vendor and metric for one month. Pure over what the store read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from usagewatch.contracts import Contract, in_force
from usagewatch.contracts import as_number as _as_number
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Number, Period

Status = Literal["under_billed", "over_billed", "ok", "no_contract", "unmapped"]
STATUS_ORDER: Final[tuple[Status, ...]] = ("under_billed", "unmapped", "no_contract", "over_billed", "ok")
# Contracted may exceed used by this share of the contract before it counts as over-billed.
DEFAULT_TOLERANCE: Final = 0.10


@dataclass(frozen=True, slots=True)
class Reading:
    """One billed tenant's number for one metric in one month, as stored."""

    tenant: TenantRef
    tenant_name: str
    metric: str
    value: Number
    quota: Number | None = None


@dataclass(frozen=True, slots=True)
class Line:
    customer_id: str
    customer_name: str
    vendor: str
    metric: str
    used: Number
    contracted: Number | None
    quota: Number | None
    difference: Number | None
    """Used minus contracted: positive is usage nobody bills."""
    status: Status
    change: Number | None
    """Used minus the previous month's used, when that month was read."""
    tenants: int
    complete: bool
    """False when a tenant of this customer had no reading this month (its collection failed)."""
    agreement: str | None = None
    unit_price: float | None = None
    tenant_id: str | None = None
    """Set on `unmapped` lines only: the tenant nobody owns."""

    @property
    def unbilled_value(self) -> float | None:
        """What the under-billed quantity is worth at the contract's unit price."""
        if self.status != "under_billed" or self.unit_price is None or self.difference is None:
            return None
        return round(self.difference * self.unit_price, 2)


def _status(used: Number, contract: Contract | None, tolerance: float) -> Status:
    if contract is None:
        return "no_contract"
    quantity = _as_number(contract.quantity)
    if used > quantity:
        return "under_billed"
    if quantity - used > tolerance * quantity:
        return "over_billed"
    return "ok"


def reconcile(
    period: Period,
    readings: Iterable[Reading],
    *,
    customers: Iterable[Customer],
    mappings: Iterable[TenantMapping],
    contracts: Iterable[Contract],
    previous: Iterable[Reading] = (),
    incomplete_accounts: Collection[tuple[str, str]] = (),
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[Line]:
    """Every (customer, vendor, metric) with usage or a contract in `period`, plus a line per unmapped
    tenant and metric it used (a zero nobody bills or contracted is left out). Sorted by status (under-billed
    first), then customer, vendor and metric.

    `incomplete_accounts` are the (vendor, account) pairs whose month is not fully read (a tenant carried from
    an earlier run, part of the listing failed): their customers' lines say `complete = False`, never a silent
    zero."""
    names = {c.customer_id: c.name for c in customers}
    owner: Mapping[TenantRef, str] = {m.tenant: m.customer_id for m in mappings}
    force = in_force(contracts, period)
    used: defaultdict[tuple[str, str, str], list[Reading]] = defaultdict(list)
    lines: list[Line] = []
    for reading in readings:
        cid = owner.get(reading.tenant)
        if cid is None:
            if reading.value:  # a zero with nobody to bill says nothing; `customers unmapped` lists the tenant
                lines.append(_unmapped(reading))
            continue
        used[(cid, reading.tenant.vendor, reading.metric)].append(reading)
    before: defaultdict[tuple[str, str, str], Number] = defaultdict(int)
    seen_before: set[tuple[str, str, str]] = set()
    for reading in previous:
        if (cid := owner.get(reading.tenant)) is not None:
            key = (cid, reading.tenant.vendor, reading.metric)
            before[key] += reading.value
            seen_before.add(key)
    shaky = set(incomplete_accounts)
    incomplete = {(cid, t.vendor) for t, cid in owner.items() if (t.vendor, t.account_id) in shaky}
    for key in sorted(set(used) | set(force)):
        cid, vendor, metric = key
        rows = used.get(key, [])
        total: Number = sum(r.value for r in rows)
        quotas = [r.quota for r in rows]
        quota = sum(q for q in quotas if q is not None) if rows and None not in quotas else None
        contract = force.get(key)
        if contract is None and not total:
            continue  # nothing used, nothing billed
        lines.append(
            Line(
                customer_id=cid,
                customer_name=names.get(cid, cid),
                vendor=vendor,
                metric=metric,
                used=total,
                contracted=_as_number(contract.quantity) if contract else None,
                quota=quota,
                difference=total - _as_number(contract.quantity) if contract else None,
                status=_status(total, contract, tolerance),
                change=total - before[key] if key in seen_before else None,
                tenants=len({r.tenant for r in rows}),
                complete=(cid, vendor) not in incomplete,
                agreement=contract.agreement if contract else None,
                unit_price=float(contract.unit_price) if contract and contract.unit_price is not None else None,
            )
        )
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return sorted(lines, key=lambda x: (rank[x.status], x.customer_id, x.vendor, x.metric, x.tenant_id or ""))


def _unmapped(reading: Reading) -> Line:
    return Line(
        customer_id="",
        customer_name=reading.tenant_name,
        vendor=reading.tenant.vendor,
        metric=reading.metric,
        used=reading.value,
        contracted=None,
        quota=reading.quota,
        difference=None,
        status="unmapped",
        change=None,
        tenants=1,
        complete=True,
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

"""Proposals: one suggested change of one PSA line's quantity for one month, and the plan that makes them.

Pure: a plan is made from reconciliation lines joined to the PSA line each is billed through (`BilledUsage`). Only
complete lines are planned; raises by default, decreases when asked; nothing for ambiguous or cancelled lines.
A quantity changed in the PSA bills the invoices to come, so in a plan for an ended month the month's under-billed
value is lost, not recovered (`Plan.lost_value`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from usagewatch.psa.contract import LineRef, PsaLine, WriteMode


class ProposalStatus(StrEnum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    APPLIED = "applied"
    STALE = "stale"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Proposal:
    id: str
    period: str
    psa: str
    ref: LineRef
    customer_id: str
    vendor: str
    metric: str
    product_identifier: str
    from_quantity: Decimal
    """The quantity the PSA billed when the plan was made."""
    to_quantity: Decimal
    """The quantity used."""
    unit_price: Decimal | None
    reason: str
    status: ProposalStatus = ProposalStatus.PROPOSED
    approved_by: str | None = None
    approved_at: datetime | None = None
    applied_by: str | None = None
    applied_at: datetime | None = None
    claimed_by: str | None = None
    """The apply run that took it (a conditional write: two runs never both take one)."""
    note: str = ""
    claimed_until: datetime | None = None
    """The claim's lease: past it, a run that died holding the proposal no longer blocks another."""

    @property
    def difference(self) -> Decimal:
        return self.to_quantity - self.from_quantity

    @property
    def value(self) -> Decimal | None:
        """The monthly value of the change (difference x unit price); None without a price."""
        return None if self.unit_price is None else self.difference * self.unit_price


def proposal_id(psa: str, ref: LineRef, period: str, target: Decimal) -> str:
    """Stable for the same change, so planning twice proposes the same thing once."""
    text = f"{psa}|{ref}|{period}|{target.normalize():f}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class BilledUsage:
    """A month's reconciliation line joined to the PSA line it is billed through."""

    customer_id: str
    vendor: str
    metric: str
    used: Decimal
    complete: bool
    line: PsaLine | None
    ambiguous: bool = False
    """The product is on more than one line of the customer's agreements: never proposed."""


@dataclass(frozen=True, slots=True)
class Skipped:
    customer_id: str
    vendor: str
    metric: str
    reason: str
    kind: str = "other"
    """One word for counting: ambiguous, no_line, incomplete, not_billable, cancelled, duplicate, decrease,
    fractional."""


@dataclass(frozen=True, slots=True)
class Plan:
    period: str
    ended: bool
    proposals: list[Proposal] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def raise_value(self) -> Decimal:
        return sum((p.value for p in self.proposals if p.value is not None and p.difference > 0), Decimal(0))

    @property
    def lost_value(self) -> Decimal:
        """Under-billed value of an ended month: changing the PSA now bills only invoices to come."""
        return self.raise_value if self.ended else Decimal(0)


def plan(
    period: str,
    usage: Iterable[BilledUsage],
    *,
    psa: str,
    write_mode: WriteMode = "absolute",
    decreases: bool = False,
    today: date,
) -> Plan:
    """Proposals for `period` ("YYYY-MM"), one per PSA line, and what was left out and why."""
    ended = today.strftime("%Y-%m") > period
    proposals: list[Proposal] = []
    skipped: list[Skipped] = []
    seen: set[LineRef] = set()
    for item in usage:
        why = _why_not(item, decreases=decreases, write_mode=write_mode, today=today, seen=seen)
        line = item.line
        if why is None and line is not None and line.quantity != item.used:
            seen.add(line.ref)
            direction = "more" if item.used > line.quantity else "fewer"
            proposals.append(
                Proposal(
                    id=proposal_id(psa, line.ref, period, item.used),
                    period=period,
                    psa=psa,
                    ref=line.ref,
                    customer_id=item.customer_id,
                    vendor=item.vendor,
                    metric=item.metric,
                    product_identifier=line.product_identifier,
                    from_quantity=line.quantity,
                    to_quantity=item.used,
                    unit_price=line.unit_price,
                    reason=f"{item.used} {item.metric} used, {direction} than the {line.quantity} billed",
                )
            )
        elif why is not None:
            skipped.append(Skipped(item.customer_id, item.vendor, item.metric, why[1], why[0]))
    return Plan(period=period, ended=ended, proposals=proposals, skipped=skipped)


def _why_not(
    item: BilledUsage, *, decreases: bool, write_mode: WriteMode, today: date, seen: set[LineRef]
) -> tuple[str, str] | None:
    """Why the line is left out, with its kind; None when it may be proposed."""
    line = item.line
    if item.ambiguous:
        return "ambiguous", "the product is on more than one line of this customer's agreements"
    if line is None:
        return "no_line", "no PSA line bills this metric"
    if not item.complete:
        return "incomplete", "usage is not complete for the month"
    if not line.billable:
        return "not_billable", f"the PSA line is not billable ({line.bill_customer})"
    if line.cancelled_on(today):
        return "cancelled", "the PSA line or its agreement is cancelled"
    if line.ref in seen:
        return "duplicate", "another metric is already proposed for this PSA line"
    if item.used < line.quantity and not decreases:
        return "decrease", "a decrease (plan with decreases to propose it)"
    if write_mode == "delta" and item.used != item.used.to_integral_value():
        return "fractional", "this PSA takes whole units only"
    return None

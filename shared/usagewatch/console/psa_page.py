"""The PSA plan page: the month's stored proposals, approving them (the code `usagewatch psa approve` runs) and
the trail of what `usagewatch psa apply` did. It reads the table only: the page never calls the PSA."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from usagewatch.console.access import Caller
from usagewatch.model import Period
from usagewatch.psa.apply import AuditRecord
from usagewatch.psa.proposals import Proposal, ProposalStatus
from usagewatch.store import DynamoStore, audit
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import PsaStore

STATUS_ORDER: Final = {s: n for n, s in enumerate(ProposalStatus)}


@dataclass(frozen=True, slots=True)
class PsaMonth:
    proposals: list[Proposal]
    names: dict[str, str]
    """customer id -> name, for the customers the proposals name."""
    trail: list[AuditRecord]

    @property
    def pending(self) -> int:
        return sum(p.status is ProposalStatus.PROPOSED for p in self.proposals)

    @property
    def proposed_value(self) -> Decimal:
        """The monthly value of the changes not yet applied (proposed or approved), where a price is known."""
        waiting = (ProposalStatus.PROPOSED, ProposalStatus.APPROVED)
        return sum((p.value for p in self.proposals if p.status in waiting and p.value is not None), Decimal(0))


def month(store: DynamoStore, period: Period) -> PsaMonth:
    psa = PsaStore(store)
    proposals = sorted(psa.proposals(str(period)), key=lambda p: (STATUS_ORDER[p.status], p.customer_id, p.id))
    wanted = {p.customer_id for p in proposals}
    names = {c.customer_id: c.name for c in BillingStore(store).customers() if c.customer_id in wanted}
    trail = sorted(psa.audit(str(period)), key=lambda r: r.at)
    return PsaMonth(proposals, names, trail)


def approve(store: DynamoStore, who: Caller, period: Period, ids: Sequence[str] | None) -> str:
    """Approve the chosen proposals (`ids`; None: every proposed one of the month), as `usagewatch psa approve
    --by <the signed-in user>` does; each approved one is also recorded in the console's change trail."""
    who.require_operator()
    if ids is not None and not ids:
        return "Nothing approved: no proposal was selected."
    changed = PsaStore(store).approve(str(period), ids, approver=who.username, at=datetime.now(UTC))
    audit.record(
        store,
        [
            audit.entry(who.username, "approve PSA proposal", f"{p.id} ({p.customer_id} {p.product_identifier})",
                        "proposed", f"approved: {p.from_quantity} -> {p.to_quantity}")
            for p in changed
        ],
    )  # fmt: skip
    said = f"Approved {len(changed)} proposal(s) of {period} as {who.username}."
    if ids is not None and len(changed) < len(set(ids)):
        said += f" {len(set(ids)) - len(changed)} not approved: unknown, or no longer proposed."
    return said

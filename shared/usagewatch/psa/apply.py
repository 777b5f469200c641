"""Approve, then apply: approved proposals written to the PSA once, each with an audit record (docs/psa.md).

For each approved proposal: take it with a conditional write (of two runs at once only one goes on), re-read the
line, and then: cancelled since, stale and nothing written; already at the target, applied without writing;
changed by someone else (neither the quantity planned from nor the target), stale and nothing written; otherwise
write the quantity and read it back. A lost answer to a write is never met by writing again: the line is re-read.
A change bound (lines and total difference per run) is checked first; past it nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Final, Protocol

from usagewatch.errors import UsagewatchError, VendorApiError, VendorDataError
from usagewatch.psa.contract import AbsoluteQuantityPsa, LineGoneError, PsaLine, WriteOutcomeUnknownError, WriteRequest
from usagewatch.psa.proposals import Proposal, ProposalStatus

CLAIM_LEASE: Final = timedelta(minutes=15)
"""How long a run holds a proposal it took. One proposal takes seconds (a re-read, a write, a read-back); a run
killed while holding one blocks it no longer than this, and the next run re-reads before it writes."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Append-only: one per proposal an apply run finished, written or not."""

    proposal_id: str
    period: str
    psa: str
    line: str
    approver: str | None
    applier: str
    before: Decimal | None
    after: Decimal | None
    outcome: ProposalStatus
    psa_status: str
    """What the PSA said: `200`, `not written`, `no answer`, or the error's status."""
    note: str
    at: datetime


class ProposalStore(Protocol):
    """Where proposals and the audit trail live (the billing store implements it; tests use an in-memory one)."""

    def proposals(self, period: str) -> list[Proposal]: ...

    def add(self, proposals: Iterable[Proposal]) -> int:
        """Store proposals whose id is not stored yet; return how many were new."""
        ...

    def approve(self, period: str, ids: Iterable[str] | None, *, approver: str, at: datetime) -> list[Proposal]:
        """Mark proposed ones approved (all of the period when `ids` is None); return those that changed."""
        ...

    def take(self, proposal_id: str, *, applier: str, now: datetime, until: datetime) -> bool:
        """Conditionally claim an approved proposal, unclaimed or whose claim's lease ended before `now`, until
        `until`; False when another run holds it."""
        ...

    def finish(self, proposal: Proposal) -> None:
        """Store the proposal's final status, note and applier (it is still held by this run's claim:
        `claimed_by` and `claimed_until` as taken)."""
        ...

    def append_audit(self, record: AuditRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class ChangeBound:
    """The most one apply run may change: a number of lines and a total absolute difference."""

    max_lines: int = 50
    max_total_difference: Decimal = Decimal(500)

    def refusal(self, proposals: list[Proposal]) -> str | None:
        total = sum((abs(p.difference) for p in proposals), Decimal(0))
        if len(proposals) > self.max_lines:
            return f"{len(proposals)} lines approved, more than the bound of {self.max_lines} per run"
        if total > self.max_total_difference:
            return f"a total difference of {total}, more than the bound of {self.max_total_difference} per run"
        return None


class ChangeBoundExceededError(UsagewatchError):
    """An apply run would change more than its bound allows: nothing was written."""


@dataclass
class ApplyReport:
    period: str
    dry_run: bool
    requests: list[WriteRequest] = field(default_factory=list)
    """The exact writes a dry run would send."""
    outcomes: list[Proposal] = field(default_factory=list)
    not_taken: list[str] = field(default_factory=list)

    def count(self, status: ProposalStatus) -> int:
        return sum(1 for p in self.outcomes if p.status is status)


def apply_approved(
    store: ProposalStore,
    psa: AbsoluteQuantityPsa,
    period: str,
    *,
    applier: str,
    bound: ChangeBound,
    now: Callable[[], datetime],
    dry_run: bool = False,
) -> ApplyReport:
    approved = [p for p in store.proposals(period) if p.status is ProposalStatus.APPROVED and p.psa == psa.psa]
    refusal = bound.refusal(approved)
    if refusal is not None:
        raise ChangeBoundExceededError(f"nothing written: {refusal} (raise the bound or approve fewer)")
    report = ApplyReport(period=period, dry_run=dry_run)
    if dry_run:
        report.requests = [psa.describe_write(p.ref, p.to_quantity) for p in approved]
        return report
    for proposal in approved:
        taken_at = now()
        until = taken_at + CLAIM_LEASE
        if not store.take(proposal.id, applier=applier, now=taken_at, until=until):
            report.not_taken.append(proposal.id)
            continue
        # Taken, perhaps from a run that died after writing: _apply_one re-reads the line before any write.
        finished, before, after, said = _apply_one(psa, proposal, now().date())
        finished = replace(finished, applied_by=applier, applied_at=now(), claimed_by=applier, claimed_until=until)
        store.finish(finished)
        store.append_audit(
            AuditRecord(
                proposal_id=proposal.id,
                period=period,
                psa=psa.psa,
                line=str(proposal.ref),
                approver=proposal.approved_by,
                applier=applier,
                before=before,
                after=after,
                outcome=finished.status,
                psa_status=said,
                note=finished.note,
                at=now(),
            )
        )
        report.outcomes.append(finished)
    return report


def _apply_one(
    psa: AbsoluteQuantityPsa, proposal: Proposal, today: date
) -> tuple[Proposal, Decimal | None, Decimal | None, str]:
    """The proposal as finished, the quantity before and after, and what the PSA said."""
    try:
        current = psa.read_line(proposal.ref)
    except LineGoneError:
        return (
            _done(proposal, ProposalStatus.STALE, "the line was removed from the PSA since the plan"),
            None,
            None,
            "404",
        )
    except (VendorApiError, VendorDataError) as exc:
        return _done(proposal, ProposalStatus.FAILED, f"re-read failed: {exc}"), None, None, _status(exc)
    verdict = _before_writing(proposal, current, today)
    if verdict is not None:
        return verdict, current.quantity, current.quantity, "not written"
    try:
        psa.set_quantity(proposal.ref, proposal.to_quantity)
        said = "200"
    except WriteOutcomeUnknownError as exc:
        said = f"no answer ({exc.status or 'timeout or reset'})"
    except (VendorApiError, VendorDataError, ValueError) as exc:
        return _done(proposal, ProposalStatus.FAILED, f"write refused: {exc}"), current.quantity, None, _status(exc)
    try:
        back = psa.read_line(proposal.ref).quantity
    except (VendorApiError, VendorDataError) as exc:
        note = f"written, but the read-back failed ({exc}); check the line before applying again"
        return _done(proposal, ProposalStatus.FAILED, note), current.quantity, None, said
    if back == proposal.to_quantity:
        note = "written and read back" if said == "200" else "the answer was lost; the re-read shows the target"
        return _done(proposal, ProposalStatus.APPLIED, note), current.quantity, back, said
    if said != "200" and back == current.quantity:
        note = "no answer and the re-read shows no change; approve and apply again to retry"
        return _done(proposal, ProposalStatus.FAILED, note), current.quantity, back, said
    note = f"read back {back} instead of {proposal.to_quantity}"
    return _done(proposal, ProposalStatus.FAILED, note), current.quantity, back, said


def _before_writing(proposal: Proposal, current: PsaLine, today: date) -> Proposal | None:
    if current.cancelled_on(today):
        return _done(proposal, ProposalStatus.STALE, "the line or its agreement was cancelled since the plan")
    if current.quantity == proposal.to_quantity:
        return _done(proposal, ProposalStatus.APPLIED, "already at the target: nothing written")
    if current.quantity != proposal.from_quantity:
        note = f"changed in the PSA since the plan ({proposal.from_quantity} then, {current.quantity} now)"
        return _done(proposal, ProposalStatus.STALE, note)
    return None


def _done(proposal: Proposal, status: ProposalStatus, note: str) -> Proposal:
    return replace(proposal, status=status, note=note)


def _status(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    return str(status) if status is not None else type(exc).__name__

"""The plan: reconciliation lines joined to PSA lines become proposals, or are left out with a reason."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from usagewatch.psa.contract import BillCustomer, LineRef, PsaLine
from usagewatch.psa.proposals import BilledUsage, ProposalStatus, plan, proposal_id

TODAY = date(2026, 11, 20)


def line(quantity: str = "40", *, ref: int = 1, price: str | None = "3.50", **fields: object) -> PsaLine:
    base = PsaLine(
        ref=LineRef(100, ref),
        company_id=7,
        product_id=3,
        product_identifier="GZ-EP",
        quantity=Decimal(quantity),
        unit_price=None if price is None else Decimal(price),
        bill_customer=BillCustomer.BILLABLE,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def usage(used: str, psa_line: PsaLine | None, **fields: object) -> BilledUsage:
    base = BilledUsage("acme", "gravityzone", "endpoints", Decimal(used), True, psa_line)
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_raise_is_proposed_with_its_value() -> None:
    result = plan("2026-11", [usage("45", line("40"))], psa="connectwise", today=TODAY)
    [proposal] = result.proposals
    assert (proposal.from_quantity, proposal.to_quantity, proposal.difference) == (40, 45, 5)
    assert proposal.value == Decimal("17.50") and proposal.status is ProposalStatus.PROPOSED
    assert proposal.ref == LineRef(100, 1) and proposal.reason == "45 endpoints used, more than the 40 billed"
    assert not result.ended and result.lost_value == 0 and result.raise_value == Decimal("17.50")


def test_decreases_only_when_asked() -> None:
    items = [usage("30", line("40"))]
    quiet = plan("2026-11", items, psa="connectwise", today=TODAY)
    assert quiet.proposals == [] and "decrease" in quiet.skipped[0].reason
    [down] = plan("2026-11", items, psa="connectwise", today=TODAY, decreases=True).proposals
    assert down.difference == -10 and down.value == Decimal("-35.00")


def test_nothing_for_lines_that_cannot_be_trusted_or_changed() -> None:
    items = [
        usage("50", line(ref=1), ambiguous=True),
        usage("50", line(ref=2), complete=False),
        usage("50", None),
        usage("50", line(ref=3, bill_customer=BillCustomer.NO_CHARGE)),
        usage("50", line(ref=4, cancelled_date=date(2026, 11, 1))),
        usage("50", line(ref=5, agreement_status="Cancelled")),
        usage("40", line("40", ref=6)),
    ]
    result = plan("2026-11", items, psa="connectwise", today=TODAY)
    assert result.proposals == []
    reasons = [s.reason for s in result.skipped]
    assert len(reasons) == 6
    assert "more than one line" in reasons[0] and "not complete" in reasons[1] and "no PSA line" in reasons[2]
    assert "not billable" in reasons[3] and "cancelled" in reasons[4] and "cancelled" in reasons[5]


def test_one_proposal_per_line() -> None:
    same = line(ref=9)
    result = plan("2026-11", [usage("45", same), usage("47", same)], psa="connectwise", today=TODAY)
    assert len(result.proposals) == 1 and "already proposed" in result.skipped[0].reason


def test_an_ended_month_counts_the_under_billing_as_lost() -> None:
    result = plan("2026-10", [usage("45", line("40"))], psa="connectwise", today=TODAY)
    assert result.ended and result.lost_value == Decimal("17.50")


def test_a_delta_psa_takes_whole_units_only() -> None:
    result = plan("2026-11", [usage("45.5", line("40"))], psa="autotask", write_mode="delta", today=TODAY)
    assert result.proposals == [] and "whole units" in result.skipped[0].reason


def test_ids_are_stable_for_the_same_change() -> None:
    first = plan("2026-11", [usage("45", line("40"))], psa="connectwise", today=TODAY).proposals[0]
    again = plan("2026-11", [usage("45.0", line("40"))], psa="connectwise", today=TODAY).proposals[0]
    assert first.id == again.id == proposal_id("connectwise", LineRef(100, 1), "2026-11", Decimal(45))
    other = plan("2026-11", [usage("46", line("40"))], psa="connectwise", today=TODAY).proposals[0]
    assert other.id != first.id

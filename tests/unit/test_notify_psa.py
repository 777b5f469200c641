"""The e-mail subjects of the monthly report's two PSA events (notify.subject_for), on events as the report makes
them (psa/monthly.py) and as the publisher checks them: a finance reader sees how many changes wait for approval
and what the plan is worth, or that the plan was not made."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from usagewatch.events import parse_event
from usagewatch.model import Period
from usagewatch.notify import SUBJECT_LIMIT, psa_plan_headline, subject_for
from usagewatch.psa.contract import LineRef
from usagewatch.psa.monthly import failed_event, ready_event
from usagewatch.psa.planning import MonthPlan
from usagewatch.psa.proposals import Plan, Proposal, ProposalStatus

NOW = datetime(2026, 12, 1, 7, tzinfo=UTC)
P = Proposal(
    id="p1", period="2026-11", psa="connectwise", ref=LineRef(7, 1), customer_id="acme", vendor="keepnet",
    metric="monthly_users", product_identifier="KN-USERS", from_quantity=Decimal(105), to_quantity=Decimal(120),
    unit_price=Decimal("2.00"), reason="more used than billed",
)  # fmt: skip


def month(*stored: Proposal) -> MonthPlan:
    return MonthPlan(Plan("2026-11", ended=True, proposals=list(stored)), new=len(stored), stored=list(stored))


def test_a_plan_waiting_for_approval_says_how_many_and_what_it_is_worth() -> None:
    waiting = replace(P, id="p2", ref=LineRef(7, 2), from_quantity=Decimal(10), to_quantity=Decimal(12))
    event = parse_event(ready_event(month(P, waiting), "connectwise", "USD", NOW)).body()
    assert event["severity"] == "warning"
    subject = subject_for(event)
    assert subject == (
        "[usagewatch] PSA PLAN: 2 change(s) waiting for approval in 2026-11, the plan worth USD 34.00 a month"
    )
    assert len(subject) <= SUBJECT_LIMIT and subject.isascii()


def test_a_plan_already_approved_waits_for_nobody() -> None:
    approved = replace(P, status=ProposalStatus.APPROVED, approved_by="alice", approved_at=NOW)
    event = parse_event(ready_event(month(approved), "connectwise", "EUR", NOW)).body()
    assert event["severity"] == "info"  # the e-mail filter lets only warnings through
    assert psa_plan_headline(event) == "nothing waiting for approval in 2026-11"
    assert subject_for(event) == "[usagewatch] PSA PLAN: nothing waiting for approval in 2026-11"


def test_a_plan_not_made_says_so_and_why_within_the_subject_limit() -> None:
    reason = "no ConnectWise site answered at https://cw.example.com (timeout) " + "x" * 200
    event = parse_event(failed_event(Period(2026, 11), reason, NOW)).body()
    subject = subject_for(event)
    assert subject.startswith("[usagewatch] PSA PLAN NOT MADE: PSA plan for 2026-11 not made")
    assert len(subject) <= SUBJECT_LIMIT and subject.endswith("...")

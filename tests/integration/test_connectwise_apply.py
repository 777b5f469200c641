"""Approve, then apply, with the real ConnectWise client against the simulator and an in-memory proposal store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from tests.simulators.base import Fault
from tests.simulators.connectwise import ConnectWiseSimulator
from usagewatch.errors import StoreError
from usagewatch.http import RetryPolicy
from usagewatch.psa.apply import (
    CLAIM_LEASE,
    AuditRecord,
    ChangeBound,
    ChangeBoundExceededError,
    ProposalStore,
    apply_approved,
)
from usagewatch.psa.connectwise import ConnectWiseClient, parse_connection
from usagewatch.psa.contract import AbsoluteQuantityPsa, LineRef, PsaLine, split_lines
from usagewatch.psa.proposals import BilledUsage, Proposal, ProposalStatus, plan
from usagewatch.redaction import redactor
from usagewatch.store.psa import PsaStore

PERIOD = "2026-12"
TODAY = date(2026, 12, 7)


class MemoryProposals:
    """An in-memory ProposalStore; `take` is a compare-and-set under a lock, as the table's conditional write is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: dict[str, Proposal] = {}
        self.audit: list[AuditRecord] = []

    def proposals(self, period: str) -> list[Proposal]:
        with self._lock:
            return [p for p in self.items.values() if p.period == period]

    def add(self, proposals: Iterable[Proposal]) -> int:
        with self._lock:
            new = [p for p in proposals if p.id not in self.items]
            self.items.update({p.id: p for p in new})
            return len(new)

    def approve(self, period: str, ids: Iterable[str] | None, *, approver: str, at: datetime) -> list[Proposal]:
        wanted = None if ids is None else set(ids)
        changed = []
        with self._lock:
            for p in list(self.items.values()):
                if p.period == period and p.status is ProposalStatus.PROPOSED and (wanted is None or p.id in wanted):
                    self.items[p.id] = replace(p, status=ProposalStatus.APPROVED, approved_by=approver, approved_at=at)
                    changed.append(self.items[p.id])
        return changed

    def take(self, proposal_id: str, *, applier: str, now: datetime, until: datetime) -> bool:
        with self._lock:
            held = self.items[proposal_id]
            if held.status is not ProposalStatus.APPROVED:
                return False
            if held.claimed_by is not None and held.claimed_until is not None and held.claimed_until >= now:
                return False
            self.items[proposal_id] = replace(held, claimed_by=applier, claimed_until=until)
            return True

    def finish(self, proposal: Proposal) -> None:
        with self._lock:
            held = self.items[proposal.id]
            if (held.claimed_by, held.claimed_until) != (proposal.claimed_by, proposal.claimed_until):
                raise StoreError(f"proposal {proposal.id} is not held by {proposal.claimed_by}")
            self.items[proposal.id] = proposal

    def append_audit(self, record: AuditRecord) -> None:
        with self._lock:
            self.audit.append(record)


@pytest.fixture
def sim() -> Iterator[ConnectWiseSimulator]:
    redactor.clear()
    with ConnectWiseSimulator() as simulator:
        yield simulator


def client_for(sim: ConnectWiseSimulator, **overrides: object) -> ConnectWiseClient:
    retry = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)
    return ConnectWiseClient(parse_connection(sim.connection(**overrides)), retry=retry)


def now() -> datetime:
    return datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def planned(
    sim: ConnectWiseSimulator, used: dict[str, int], *, psa: AbsoluteQuantityPsa | None = None
) -> MemoryProposals:
    """Sync-like read of the simulator's lines, a plan from `used` (product -> quantity), all approved."""
    client = psa or client_for(sim)
    lines: dict[str, PsaLine] = {}
    for agreement in client.active_agreements():
        for item in split_lines(client.lines(agreement))[0]:
            lines[item.product_identifier] = item
    usage = [BilledUsage("acme", "gravityzone", p, Decimal(q), True, lines.get(p)) for p, q in used.items()]
    store = MemoryProposals()
    store.add(plan(PERIOD, usage, psa="connectwise", today=TODAY, decreases=True).proposals)
    store.approve(PERIOD, None, approver="alice@msp", at=now())
    return store


def seed(sim: ConnectWiseSimulator, **quantities: int) -> dict[str, int]:
    company = sim.add_company("ACME", "Acme")
    agreement = sim.add_agreement(company, "Managed")
    return {product: sim.add_addition(agreement, product, q) for product, q in quantities.items()}


def test_apply_writes_reads_back_and_records_then_a_second_apply_writes_nothing(sim: ConnectWiseSimulator) -> None:
    ids = seed(sim, A=40, B=10)
    store = planned(sim, {"A": 45, "B": 12})
    client = client_for(sim)

    report = apply_approved(store, client, PERIOD, applier="bob@msp", bound=ChangeBound(), now=now)
    assert report.count(ProposalStatus.APPLIED) == 2
    assert sim.additions[ids["A"]]["quantity"] == 45 and sim.additions[ids["B"]]["quantity"] == 12
    assert len(sim.patches()) == 2
    [first, _] = store.audit
    assert (first.approver, first.applier, first.before, first.after, first.psa_status) == (
        "alice@msp",
        "bob@msp",
        40,
        45,
        "200",
    )

    again = apply_approved(store, client, PERIOD, applier="bob@msp", bound=ChangeBound(), now=now)
    assert again.outcomes == [] and len(sim.patches()) == 2


def test_a_dry_run_shows_the_exact_requests_and_writes_nothing(sim: ConnectWiseSimulator) -> None:
    ids = seed(sim, A=40)
    store = planned(sim, {"A": 45})
    before = sim.count()
    report = apply_approved(store, client_for(sim), PERIOD, applier="bob", bound=ChangeBound(), now=now, dry_run=True)
    [request] = report.requests
    agreement = sim.additions[ids["A"]]["agreementId"]
    assert (request.method, request.path) == ("PATCH", f"/finance/agreements/{agreement}/additions/{ids['A']}")
    assert request.body == '[{"op": "replace", "path": "quantity", "value": 45}]'
    assert sim.count() == before and store.audit == []
    assert all(p.status is ProposalStatus.APPROVED for p in store.proposals(PERIOD))


def test_two_applies_at_once_never_both_write(sim: ConnectWiseSimulator) -> None:
    seed(sim, **{f"P{n}": 10 for n in range(6)})
    store = planned(sim, {f"P{n}": 11 for n in range(6)})
    sim.latency = 0.02
    reports = []

    def run(name: str) -> None:
        reports.append(apply_approved(store, client_for(sim), PERIOD, applier=name, bound=ChangeBound(), now=now))

    threads = [threading.Thread(target=run, args=(f"run{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sim.patches()) == 6 and len(store.audit) == 6
    finished = [p.id for r in reports for p in r.outcomes]
    assert sorted(finished) == sorted(store.items) and all(
        p.status is ProposalStatus.APPLIED for p in store.items.values()
    )
    assert {r.applier for r in store.audit} <= {"run0", "run1"}


def test_a_line_changed_since_the_plan_is_stale_and_not_written(sim: ConnectWiseSimulator) -> None:
    ids = seed(sim, A=40, B=40)
    store = planned(sim, {"A": 45, "B": 45})
    sim.set_quantity(ids["A"], 42)
    sim.set_quantity(ids["B"], 45)
    report = apply_approved(store, client_for(sim), PERIOD, applier="bob", bound=ChangeBound(), now=now)
    by_product = {p.product_identifier: p for p in report.outcomes}
    assert by_product["A"].status is ProposalStatus.STALE and "42 now" in by_product["A"].note
    assert by_product["B"].status is ProposalStatus.APPLIED and "already at the target" in by_product["B"].note
    assert sim.patches() == [] and sim.additions[ids["A"]]["quantity"] == 42


def test_a_cancelled_agreement_is_skipped_and_said_so(sim: ConnectWiseSimulator) -> None:
    ids = seed(sim, A=40)
    store = planned(sim, {"A": 45})
    sim.cancel_agreement(sim.additions[ids["A"]]["agreementId"])
    [outcome] = apply_approved(store, client_for(sim), PERIOD, applier="bob", bound=ChangeBound(), now=now).outcomes
    assert outcome.status is ProposalStatus.STALE and "cancelled" in outcome.note
    assert sim.patches() == []


def test_a_throttled_run_finishes(sim: ConnectWiseSimulator) -> None:
    seed(sim, **{f"P{n}": 10 for n in range(4)})
    store = planned(sim, {f"P{n}": 12 for n in range(4)})
    sim.rate_limit = (4, 1.0)
    started = time.monotonic()
    report = apply_approved(store, client_for(sim), PERIOD, applier="bob", bound=ChangeBound(), now=now)
    assert report.count(ProposalStatus.APPLIED) == 4 and 429 in sim.statuses()
    assert len(sim.patches()) - sum(1 for r, s in sim.responses if r.method == "PATCH" and s == 429) == 4
    assert time.monotonic() - started < 30


def test_the_change_bound_stops_the_run_before_any_write(sim: ConnectWiseSimulator) -> None:
    seed(sim, A=40, B=40, C=40)
    store = planned(sim, {"A": 100, "B": 41, "C": 41})
    client = client_for(sim)
    with pytest.raises(ChangeBoundExceededError, match="more than the bound of 2 per run"):
        apply_approved(store, client, PERIOD, applier="bob", bound=ChangeBound(max_lines=2), now=now)
    with pytest.raises(ChangeBoundExceededError, match="total difference of 62"):
        apply_approved(
            store, client, PERIOD, applier="bob", bound=ChangeBound(max_total_difference=Decimal(50)), now=now
        )
    assert sim.patches() == [] and store.audit == []


def test_a_lost_answer_is_met_by_a_re_read_not_a_second_patch(sim: ConnectWiseSimulator) -> None:
    ids = seed(sim, A=40, B=40)
    store = planned(sim, {"A": 45, "B": 45})
    client = client_for(sim, timeout_seconds=0.3)
    client.codebase()
    # A: the PATCH takes but its answer is lost (the server answers after the client gave up, before the re-read).
    sim.inject(Fault("hang", seconds=0.5, match=lambda r: r.method == "PATCH" and r.path.endswith(str(ids["A"]))))
    # B: a 503 and nothing written.
    sim.inject(Fault("status", status=503, match=lambda r: r.method == "PATCH" and r.path.endswith(str(ids["B"]))))
    original = client.read_line

    def read_once_the_server_answered(ref: LineRef) -> PsaLine:
        deadline = time.monotonic() + 5
        while ref.line_id == ids["A"] and sim.patches() and time.monotonic() < deadline:
            if any(r.method == "PATCH" for r, _ in sim.responses):
                break
            time.sleep(0.02)
        return original(ref)

    client.read_line = read_once_the_server_answered  # type: ignore[method-assign]
    report = apply_approved(store, client, PERIOD, applier="bob", bound=ChangeBound(), now=now)
    by_product = {p.product_identifier: p for p in report.outcomes}
    assert by_product["A"].status is ProposalStatus.APPLIED and "answer was lost" in by_product["A"].note
    assert by_product["B"].status is ProposalStatus.FAILED and "no change" in by_product["B"].note
    assert len(sim.patches()) == 2  # one each: never a blind second PATCH
    assert [r.psa_status for r in store.audit] == ["no answer (timeout or reset)", "no answer (503)"]


class Killed(BaseException):
    """The process ends here (a Lambda timeout, a kill -9): nothing after it runs, no finally of ours matters."""


class DiesAfterWriting(ConnectWiseClient):
    def set_quantity(self, ref: LineRef, quantity: Decimal) -> PsaLine:
        super().set_quantity(ref, quantity)
        raise Killed


@pytest.mark.parametrize("kind", ["memory", "dynamo"])
def test_a_claim_left_by_a_killed_run_blocks_until_its_lease_passes_then_is_finished_without_a_second_write(
    sim: ConnectWiseSimulator, kind: str, request: pytest.FixtureRequest
) -> None:
    ids = seed(sim, A=40)
    memory = planned(sim, {"A": 45})
    store: ProposalStore = memory
    if kind == "dynamo":
        store = PsaStore(request.getfixturevalue("aws").store())
        store.add(memory.proposals(PERIOD))
        store.approve(PERIOD, None, approver="alice@msp", at=now())
    killed = DiesAfterWriting(parse_connection(sim.connection()))
    with pytest.raises(Killed):
        apply_approved(store, killed, PERIOD, applier="bob", bound=ChangeBound(), now=now)
    assert sim.additions[ids["A"]]["quantity"] == 45 and len(sim.patches()) == 1
    (held,) = store.proposals(PERIOD)
    assert (held.status, held.claimed_by, held.claimed_until) == (ProposalStatus.APPROVED, "bob", now() + CLAIM_LEASE)

    def at(minutes: float) -> Callable[[], datetime]:
        return lambda: now() + timedelta(minutes=minutes)

    blocked = apply_approved(store, client_for(sim), PERIOD, applier="carol", bound=ChangeBound(), now=at(14))
    assert blocked.outcomes == [] and blocked.not_taken == [held.id]
    later = apply_approved(store, client_for(sim), PERIOD, applier="carol", bound=ChangeBound(), now=at(16))
    [done] = later.outcomes
    assert done.status is ProposalStatus.APPLIED and "already at the target" in done.note
    assert len(sim.patches()) == 1  # the dead run's write, and no second
    assert store.proposals(PERIOD)[0].status is ProposalStatus.APPLIED

"""The DynamoDB ProposalStore (store/psa.py) on moto keeps the contract the apply engine's tests hold the in-memory
one to: new ids stored once, approval of proposed ones only, one taker per proposal, finish by the taker only, an
append-only trail, and a product map changed all or nothing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.integration.test_connectwise_apply import MemoryProposals
from tests.local_aws import LocalAws
from usagewatch.errors import StoreError
from usagewatch.psa.apply import CLAIM_LEASE as LEASE
from usagewatch.psa.apply import AuditRecord, ProposalStore
from usagewatch.psa.contract import LineRef
from usagewatch.psa.proposals import Proposal, ProposalStatus
from usagewatch.store.psa import ProductMapping, PsaStore

AT = datetime(2026, 12, 7, 9, tzinfo=UTC)


def proposal(line: int, to: str = "130") -> Proposal:
    return Proposal(
        id=f"p{line}", period="2026-12", psa="connectwise", ref=LineRef(7, line), customer_id="acme",
        vendor="keepnet", metric="monthly_users", product_identifier="KN-USERS", from_quantity=Decimal(100),
        to_quantity=Decimal(to), unit_price=Decimal("2.50"), reason="more used than billed",
    )  # fmt: skip


@pytest.fixture(params=["dynamo", "memory"])
def store(request: pytest.FixtureRequest) -> ProposalStore:
    if request.param == "memory":
        return MemoryProposals()
    aws: LocalAws = request.getfixturevalue("aws")
    return PsaStore(aws.store())


def test_the_proposal_lifecycle(store: ProposalStore) -> None:
    assert store.add([proposal(1), proposal(2, "130.25")]) == 2
    assert store.add([proposal(1), proposal(3)]) == 1
    assert sorted(p.id for p in store.proposals("2026-12")) == ["p1", "p2", "p3"]
    assert store.proposals("2026-11") == []
    assert [p.id for p in store.approve("2026-12", ["p1", "p2"], approver="alice", at=AT)] == ["p1", "p2"]
    assert store.approve("2026-12", ["p1"], approver="eve", at=AT) == []
    held = {p.id: p for p in store.proposals("2026-12")}
    assert held["p1"].approved_by == "alice" and held["p1"].approved_at == AT
    assert held["p2"].to_quantity == Decimal("130.25") and held["p3"].status is ProposalStatus.PROPOSED
    assert store.take("p1", applier="run-1", now=AT, until=AT + LEASE) is True
    assert store.take("p1", applier="run-2", now=AT, until=AT + LEASE) is False
    assert store.take("p1", applier="run-2", now=AT + LEASE, until=AT + 2 * LEASE) is False  # at its end: held
    assert store.take("p3", applier="run-1", now=AT, until=AT + LEASE) is False  # not approved
    done = replace(
        held["p1"], status=ProposalStatus.APPLIED, claimed_by="run-1", claimed_until=AT + LEASE, applied_by="run-1",
        note="ok",
    )  # fmt: skip
    store.finish(done)
    again = {p.id: p for p in store.proposals("2026-12")}["p1"]
    assert (again.status, again.applied_by, again.note) == (ProposalStatus.APPLIED, "run-1", "ok")
    record = AuditRecord("p1", "2026-12", "connectwise", "7/1", "alice", "run-1", Decimal(100), Decimal(130),
                         ProposalStatus.APPLIED, "200", "written and read back", AT)  # fmt: skip
    store.append_audit(record)
    store.append_audit(replace(record, note="a second record of the same proposal is kept too"))
    if isinstance(store, PsaStore):
        assert [r.note for r in store.audit("2026-12")] == [
            record.note,
            "a second record of the same proposal is kept too",
        ]
        assert store.audit("2026-12")[0] == record


def test_finish_by_a_run_that_does_not_hold_it_is_refused(aws: LocalAws) -> None:
    store = PsaStore(aws.store())
    store.add([proposal(1)])
    store.approve("2026-12", None, approver="alice", at=AT)
    assert store.take("p1", applier="run-1", now=AT, until=AT + LEASE)
    with pytest.raises(StoreError, match="not held by run-2"):
        store.finish(replace(store.proposals("2026-12")[0], claimed_by="run-2", status=ProposalStatus.APPLIED))


def test_a_claim_whose_lease_passed_is_taken_and_its_first_holder_can_no_longer_finish(
    store: ProposalStore,
) -> None:
    store.add([proposal(1)])
    store.approve("2026-12", None, approver="alice", at=AT)
    store.proposals("2026-12")
    assert store.take("p1", applier="bob", now=AT, until=AT + LEASE)
    later = AT + LEASE + timedelta(seconds=1)
    assert store.take("p1", applier="bob", now=later, until=later + LEASE)  # the same login, a second run
    (held,) = store.proposals("2026-12")
    assert (held.claimed_by, held.claimed_until) == ("bob", later + LEASE)
    first = replace(held, claimed_until=AT + LEASE, status=ProposalStatus.APPLIED)
    with pytest.raises(StoreError, match="not held by bob"):
        store.finish(first)
    store.finish(replace(held, status=ProposalStatus.APPLIED))
    assert store.proposals("2026-12")[0].status is ProposalStatus.APPLIED


def test_the_product_map_changes_all_or_nothing_and_once(aws: LocalAws) -> None:
    store = PsaStore(aws.store())
    products = [ProductMapping("connectwise", "KN-USERS", "keepnet", "monthly_users"),
                ProductMapping("connectwise", "gz#seats", "gravityzone", "endpoint_monthly_usage")]  # fmt: skip
    assert store.import_products(products, what="test") == (2, 0)
    assert store.import_products(products, what="test") == (0, 2)
    assert sorted(store.products("connectwise"), key=lambda p: p.product_identifier) == sorted(
        products, key=lambda p: p.product_identifier
    )
    assert store.products("autotask") == []

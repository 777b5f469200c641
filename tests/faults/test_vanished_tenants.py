"""Tenants that leave (issue 11, point 14): a customer missing from a complete, successful listing is gone;
its firing alerts resolve once with `reason = tenant_removed`, its numbers leave the totals (its items are
kept, marked `removed_at`), and a customer missing because the listing failed is not gone. Keepnet behind the
real handler, moto and the simulator."""

from __future__ import annotations

from typing import Any

from tests.faults.harness import assert_clean_rerun_publishes_nothing, at
from tests.faults.test_aws_faults import ACCOUNT, PERIOD, World, kn
from tests.simulators.base import Fault, on_path
from tests.simulators.keepnet import SEARCH_PATH, over_limit

__all__ = ["kn"]


def _items(world: World) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for usage in world.h.store().period_usage(PERIOD, vendor="keepnet", account_id=ACCOUNT):
        found.setdefault(usage.record.tenant_id, []).append(usage.row())
    return found


def test_a_customer_gone_from_a_complete_listing_is_removed_once(kn: World) -> None:
    first = kn.h.run(at("06:00"))
    assert first.error is None
    leaver = next(c for c in kn.sim.default_companies if over_limit(c))
    gone = leaver["companyResourceId"]
    assert any(e["tenant_id"] == gone for e in first.events), "the leaver had a breach to resolve"
    kn.sim.default_companies.remove(leaver)

    later = kn.h.run(at("12:00"))

    assert later.error is None and later.account(ACCOUNT)["status"] == "ok"
    resolved = [e for e in later.events if e.get("tenant_id") == gone]
    assert resolved and all(e["event_type"] == "usage.threshold.resolved" for e in resolved), resolved
    assert {e["reason"] for e in resolved} == {"tenant_removed"}
    assert all("no longer listed" in e["summary"] for e in resolved)
    items = _items(kn)
    assert items[gone] and all(i["removed_at"] == at("12:00") for i in items[gone]), "kept, marked removed"
    stored = kn.h.stored(PERIOD)
    for metric, total in stored.account_totals(ACCOUNT).items():
        present = sum(i["value"] for t, rows in items.items() if t != gone for i in rows if i["metric"] == metric)
        assert total == present, f"{metric}: the total must leave the removed customer out"
    states = [s for s in kn.h.store().tenant_alerts("keepnet", ACCOUNT, gone)]
    assert states and {s.status for s in states} == {"resolved"}

    assert_clean_rerun_publishes_nothing(kn.h, at("18:00"))


def test_a_customer_missing_because_the_listing_failed_is_not_removed(kn: World) -> None:
    assert kn.h.run(at("06:00")).error is None
    kn.sim.inject(Fault("status", on_path(SEARCH_PATH), status=503, times=-1))

    failed = kn.h.run(at("12:00"))

    assert failed.error is not None
    assert not [e for e in failed.events if e.get("reason") == "tenant_removed"]
    assert not [i for rows in _items(kn).values() for i in rows if i.get("removed_at")]

"""A sub-partner's listing fails (issue 11, point 5): its customers are not dropped from the month's totals.
After a clean run they keep their last numbers (carried, counted in `carried_tenant_count`); on a first run,
with nothing stored, the totals say `complete = false` and name the partner; the `collection.failed` event names
the partner and how many customers it hides. GravityZone behind the real handler, moto and the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Invoke
from tests.integration.test_gravityzone_source import on_params, rpc_error
from tests.local_aws import LocalAws
from tests.simulators.base import Fault
from tests.simulators.gravityzone import GravityZoneSimulator, make_tree
from tests.virtual_time import PacingClock
from usagewatch.handler import CollectionFailedError

API_KEY = "gz-gap-key-7a6b5c4d3e2f1a0b"
TREE = make_tree(customers=14, partners=2, sub_partner=True, seed=9)
SUB_PARTNER = next(p for p in TREE.partners() if TREE.nodes[p].parent is not None)
HIDDEN = set(TREE.customers_below(SUB_PARTNER))
METRIC = "endpoint_monthly_usage"


@pytest.fixture
def gz(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GravityZoneSimulator, dict[str, str]]]:
    # The source paces and backs off on the simulator's clock, whose sleeps are instant: the windows as real.
    clock = PacingClock().install(monkeypatch)
    with GravityZoneSimulator(api_key=API_KEY, tree=TREE, licensing_rps=50, clock=clock) as sim:
        assert isinstance(sim, GravityZoneSimulator)
        account = {"account_id": "gz", "access_url": sim.access_url, "api_key": API_KEY}
        aws.put_secret("usagewatch/gravityzone", [account | {"licensing_requests_per_second": 40}])
        yield sim, aws.environment("gravityzone", secret_name="usagewatch/gravityzone")


def _run(invoke: Invoke, env: dict[str, str], when: str) -> dict[str, Any]:
    try:
        return invoke("gravityzone", {"scheduled_time": when}, env)
    except CollectionFailedError as exc:
        return exc.summary.to_dict()


def _refuse_sub_partner_listing(sim: GravityZoneSimulator) -> None:
    error = rpc_error(-32000, "Server error", "Temporary failure")
    sim.inject(Fault("json", match=on_params(parentId=SUB_PARTNER), times=-1, body=error))


def _endpoint_total(aws: LocalAws) -> dict[str, Any]:
    return next(t for t in aws.totals("2026-11") if t["metric"] == METRIC)


def test_a_failed_sub_partner_listing_carries_its_customers_into_the_total(
    aws: LocalAws, gz: tuple[GravityZoneSimulator, dict[str, str]], invoke: Invoke
) -> None:
    sim, env = gz
    assert HIDDEN, "the sub-partner has customers"
    _run(invoke, env, "2026-11-22T06:00:00Z")
    clean = _endpoint_total(aws)
    aws.drain_events()

    _refuse_sub_partner_listing(sim)
    summary = _run(invoke, env, "2026-11-22T12:00:00Z")

    assert summary["account_results"][0]["status"] == "partial"
    total = _endpoint_total(aws)
    assert total["value"] == clean["value"], "the subtree's customers keep their numbers in the total"
    assert total["carried_tenant_count"] == len(HIDDEN)
    assert total["complete"] is True
    failed = [e for e in aws.drain_events() if e["event_type"] == "collection.failed"]
    assert [e["tenant_id"] for e in failed] == [SUB_PARTNER]
    assert f"{len(HIDDEN)} customer(s) beneath it" in failed[0]["error"]
    assert not [i for i in aws.usage("2026-11", vendor="gravityzone") if i.get("removed_at")]


def test_a_failed_sub_partner_listing_on_a_first_run_marks_the_totals_incomplete(
    aws: LocalAws, gz: tuple[GravityZoneSimulator, dict[str, str]], invoke: Invoke
) -> None:
    sim, env = gz
    _refuse_sub_partner_listing(sim)
    _run(invoke, env, "2026-11-22T06:00:00Z")

    total = _endpoint_total(aws)
    partner_name = next(i["tenant_name"] for i in aws.usage("2026-11", vendor="gravityzone") if not i["billed"])
    assert partner_name
    assert total["complete"] is False and len(total["missing"]) == 1
    failed = [e for e in aws.drain_events() if e["event_type"] == "collection.failed"]
    assert [e["tenant_id"] for e in failed] == [SUB_PARTNER]
    assert "totals are incomplete" in failed[0]["error"]

"""ThousandEyes through the real handler (moto, the simulator over HTTP): every billed quantity with its
quota, the MSP's own quotas of `/v7/quotas`, and a stable organisation identity (issues 12 and 11.6)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.thousandeyes import TeOrg, ThousandEyesSimulator, make_orgs

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
RUN_1 = {"scheduled_time": "2026-11-22T06:00:00Z"}
RUN_2 = {"scheduled_time": "2026-11-22T07:00:00Z"}
PERIOD = "2026-11"
TOKEN = "te-token-billing-4b1d"
SECRET = "usagewatch/thousandeyes"
ACME, GLOBEX = "org-980000", "org-981111"  # tenant ids: `org-<orgId>`


@pytest.fixture
def sim() -> Iterator[ThousandEyesSimulator]:
    with ThousandEyesSimulator(token=TOKEN, orgs=make_orgs(2, now=AS_OF)) as simulator:
        assert isinstance(simulator, ThousandEyesSimulator)
        yield simulator


@pytest.fixture
def env(aws: LocalAws, sim: ThousandEyesSimulator) -> dict[str, str]:
    aws.put_secret(SECRET, [{"account_id": "te", "base_url": sim.url, "bearer_token": TOKEN}])
    return aws.environment("thousandeyes", secret_name=SECRET)


def stored(aws: LocalAws) -> dict[tuple[str, str], dict[str, Any]]:
    return {(i["tenant_id"], i["metric"]): i for i in aws.usage(PERIOD, vendor="thousandeyes")}


def totals(aws: LocalAws) -> dict[str, dict[str, Any]]:
    return {t["metric"]: t for t in aws.totals(PERIOD) if t["vendor"] == "thousandeyes"}


def breaches(events: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(e["tenant_id"], e["metric"], e["rule"]) for e in events if e["event_type"] == "usage.threshold.breached"}


def org_sum(sim: ThousandEyesSimulator, field: str) -> int:
    return sum(org.totals[field] for org in sim.orgs)


def test_essentials_embedded_and_connected_devices_over_quota_are_stored_and_alerted(
    aws: LocalAws, sim: ThousandEyesSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    acme = sim.orgs[0]
    sim.set_group_usage("1234", "endpoint_agents_essentials", endpointAgentsEssentialsUsed=50)
    sim.set_group_usage("1251", "endpoint_agents_essentials", endpointAgentsEssentialsUsed=5)
    sim.set_usage("1234", endpointAgentsEssentialsIncluded=40, connectedDevicesUnitsUsed=25, deviceAgentsIncluded=10)
    assert acme.totals["endpointAgentsEssentialsUsed"] == 55

    summary = invoke("thousandeyes", RUN_1, env)

    assert summary["accounts_failed"] == 0 and summary["tenants_failed"] == 0
    items = stored(aws)
    essentials = items[(ACME, "endpoint_agents_essentials")]
    devices = items[(ACME, "connected_devices")]
    assert (essentials["value"], essentials["quota"], essentials["unit"]) == (55, 40, "agents")
    assert (devices["value"], devices["quota"], devices["projected"]) == (
        25,
        10,
        acme.totals["connectedDevicesUnitsProjected"],
    )
    embedded = items[(ACME, "endpoint_agents_embedded")]
    assert (embedded["value"], embedded["quota"]) == (
        acme.totals["endpointAgentsEmbeddedUsed"],
        acme.quota["endpointAgentsEmbeddedIncluded"],
    )
    # Their breakdown rows: stored, not billed, adding up to the organisation's figure.
    assert items[("ag-1234", "endpoint_agents_essentials")]["value"] == 50
    assert items[("ag-1234", "endpoint_agents_essentials")]["billed"] is False
    assert items[("ag-1234", "endpoint_agents_essentials")]["parent_tenant_id"] == ACME
    assert sum(items[(f"ag-{g.aid}", "endpoint_agents_embedded")]["value"] for g in acme.groups) == embedded["value"]
    # The next period's projections: stored, never alerted on.
    cloud = items[(ACME, "cloud_units")]
    assert cloud["projected_next_period"] == acme.totals["cloudUnitsNextBillingPeriod"]
    assert (
        items[(ACME, "connected_devices")]["projected_next_period"]
        == acme.totals["connectedDevicesUnitsNextBillingPeriod"]
    )

    found = breaches(aws.drain_events())
    assert {(ACME, "endpoint_agents_essentials", "over_quota"), (ACME, "connected_devices", "over_quota")} <= found
    sums = totals(aws)
    for metric, field in (
        ("endpoint_agents_essentials", "endpointAgentsEssentialsUsed"),
        ("endpoint_agents_embedded", "endpointAgentsEmbeddedUsed"),
        ("connected_devices", "connectedDevicesUnitsUsed"),
    ):
        assert (sums[metric]["value"], sums[metric]["tenant_count"]) == (org_sum(sim, field), 2), metric


def test_an_account_group_over_the_quota_its_msp_gave_it_is_alerted_on_its_breakdown_row(
    aws: LocalAws, sim: ThousandEyesSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    globex = sim.orgs[1]

    def used(aid: str) -> int:
        return sum(t["cloudUnitsUsed"] for t in globex.tests if t["aid"] == aid)

    for test in globex.tests:  # 2362's tests are projected to stay where they are: no projected breach
        if test["aid"] == "2362":
            test["cloudUnitsProjected"] = test["cloudUnitsUsed"]
    globex.totals["cloudUnitsProjected"] = sum(t["cloudUnitsProjected"] for t in globex.tests)
    sim.set_group_quota("2345", used("2345") - 1)  # over
    sim.set_group_quota("2362", round(used("2362") / 0.95))  # 95 % used: over the 90 % utilisation threshold
    sim.set_usage("2345", msp_quota=5_000_000)

    invoke("thousandeyes", RUN_1, env)

    items = stored(aws)
    assert items[("ag-2345", "cloud_units")]["quota"] == used("2345") - 1
    assert items[("ag-2362", "cloud_units")]["quota"] == round(used("2362") / 0.95)
    assert items[(GLOBEX, "cloud_units")]["quota"] == 5_000_000  # the MSP's, not cloudUnitsIncluded
    assert items[(ACME, "cloud_units")]["quota"] == sim.orgs[0].msp_quota
    found = breaches(aws.drain_events())
    assert ("ag-2345", "cloud_units", "over_quota") in found
    assert ("ag-2362", "cloud_units", "quota_utilization") in found
    assert not {b for b in found if b[0] == GLOBEX}
    # Breakdown rows with their quotas still never reach the totals.
    assert totals(aws)["cloud_units"]["value"] == org_sum(sim, "cloudUnitsUsed")


def test_quotas_refused_collection_goes_on_without_them_and_says_so_once(
    aws: LocalAws,
    sim: ThousandEyesSimulator,
    env: dict[str, str],
    invoke: Invoke,
    capsys: pytest.CaptureFixture[str],
    capture_logs: None,
) -> None:
    sim.tokens_without_quotas = {TOKEN}

    summary = invoke("thousandeyes", RUN_1, env)

    out = capsys.readouterr().out
    assert summary["accounts_failed"] == 0 and summary["tenants_failed"] == 0
    assert summary["account_results"][0]["status"] == "ok"
    assert sim.statuses("/v7/quotas") == [403]
    assert out.count("thousandeyes MSP quotas not read this run") == 1
    assert "Edit organization and account group quotas" in out
    items = stored(aws)
    assert items[(ACME, "cloud_units")]["quota"] == sim.orgs[0].quota["cloudUnitsIncluded"]
    assert all(i.get("quota") is None for (tenant, _m), i in items.items() if tenant.startswith("ag-"))
    assert TOKEN not in out
    (notes,) = [list(r.notes) for r in aws.store().runs("thousandeyes", "te")]
    assert len(notes) == 1 and "Edit organization and account group quotas" in notes[0], notes
    assert summary["account_results"][0]["notes"] == notes


def drop_lowest_account_group(org: TeOrg) -> str:
    """Delete the organisation's lowest account group (its tests and agents stay billed in this period)."""
    lowest = org.lowest_aid
    org.groups = [g for g in org.groups if g.aid != lowest]
    return lowest


def test_an_organisation_keeps_its_identity_when_its_lowest_account_group_is_deleted(
    aws: LocalAws, sim: ThousandEyesSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    """Issue 11.6: the id used to be the lowest aid, so deleting that account group mid-period gave the
    organisation a second id, a second projected_over_quota breach and a second billed row."""
    invoke("thousandeyes", RUN_1, env)
    first = breaches(aws.drain_events())
    assert (ACME, "cloud_units", "projected_over_quota") in first

    deleted = drop_lowest_account_group(sim.orgs[0])
    assert deleted == "1234"
    invoke("thousandeyes", RUN_2, env)

    second_run = sim.usage_requests()[-2:]
    assert sorted(r.query["aid"][0] for r in second_run) == ["1251", "2345"]  # Acme called through another group
    assert not [b for b in breaches(aws.drain_events()) if b[2] == "projected_over_quota"]
    billed = {tenant for (tenant, _m), item in stored(aws).items() if item.get("billed", True)}
    assert billed == {ACME, GLOBEX}
    cloud = totals(aws)["cloud_units"]
    assert (cloud["value"], cloud["tenant_count"]) == (org_sum(sim, "cloudUnitsUsed"), 2)


def test_without_org_id_the_table_remembers_the_identity_when_the_lowest_account_group_goes(
    aws: LocalAws, invoke: Invoke
) -> None:
    """Issue 11.6 without `orgId`: the id first given to each aid is kept in the table (`IDENT#` item), so a
    cold container, and a run after the lowest account group is deleted, keep the organisation's id."""
    with ThousandEyesSimulator(token=TOKEN, orgs=make_orgs(2, now=AS_OF), org_ids=False) as sim:
        assert isinstance(sim, ThousandEyesSimulator)
        aws.put_secret(SECRET, [{"account_id": "te", "base_url": sim.url, "bearer_token": TOKEN}])
        env = aws.environment("thousandeyes", secret_name=SECRET)
        invoke("thousandeyes", RUN_1, env)
        first = {tenant for (tenant, _m), item in stored(aws).items() if item.get("billed", True)}
        first_breaches = breaches(aws.drain_events())
        assert first_breaches

        drop_lowest_account_group(sim.orgs[0])
        invoke("thousandeyes", RUN_2, env)  # a fresh module: nothing is remembered in the process

        billed = {tenant for (tenant, _m), item in stored(aws).items() if item.get("billed", True)}
        assert billed == first, "the organisation kept the id of its first run"
        assert not [b for b in breaches(aws.drain_events()) if b[2] == "projected_over_quota"]
        identities = aws.store().recall_identities("thousandeyes", "te")
        assert set(identities.values()) == first and len(identities) > len(first)

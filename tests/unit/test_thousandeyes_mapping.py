"""ThousandEyes: payload mapping, billing window, organisation planning and account validation (no sockets)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from usagewatch.errors import ConfigError, VendorDataError
from usagewatch.http import HttpResponse
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.sources.thousandeyes import (
    InProcessIdentities,
    OrganisationQuotas,
    QuotaEntry,
    ThousandEyesSource,
    billing_window,
    map_usage,
    parse_account_groups,
    parse_quotas,
    parse_vendor_time,
    plan_organisations,
    quotas_for,
    vendor_message,
)

ORG = Tenant("1234", "Acme")

# v7 shape (the SDK's UsageDetails): string aids, ISO 8601 dates, `_links`, fields this client does not know.
V7_PAYLOAD: dict[str, Any] = {
    "usage": {
        "quota": {
            "monthStart": "2026-11-05T08:00:00Z",
            "monthEnd": "2026-12-05T08:00:00Z",
            "cloudUnitsIncluded": 4_320_000,
            "deviceAgentsIncluded": 0,
            "endpointAgentsIncluded": 200,
            "endpointAgentsEssentialsIncluded": 10,
            "enterpriseAgentsIncluded": 0,
        },
        "cloudUnitsUsed": 850_489,
        "cloudUnitsProjected": 20_993_812,
        "cloudUnitsNextBillingPeriod": 25_123_456,
        "enterpriseUnitsUsed": 79_640_902,
        "enterpriseUnitsProjected": 108_016_317,
        "enterpriseUnitsNextBillingPeriod": 0,
        "connectedDevicesUnitsUsed": 3,
        "endpointAgentsUsed": 42,
        "endpointAgentsEssentialsUsed": 1,
        "enterpriseAgentsUsed": 8,
        "tests": [
            {
                "aid": "315",
                "testId": "1158",
                "accountGroupName": "Documentation",
                "testName": "https://app.thousandeyes.com",
                "testType": "Web - Page Load",
                "cloudUnitsUsed": 140_540,
                "cloudUnitsProjected": 340_674,
            },
            {
                "aid": "315",
                "testId": "1159",
                "accountGroupName": "Documentation",
                "testName": "https://support.thousandeyes.com",
                "testType": "Web - HTTP Server",
                "cloudUnitsUsed": 64_390,
                "cloudUnitsProjected": 164_457,
            },
            {
                "aid": "7625",
                "testId": "2001",
                "accountGroupName": "Support",
                "testName": "dns",
                "testType": "DNS Server",
                "cloudUnitsUsed": 645_559,
                "cloudUnitsProjected": 1_000_000,
                "someNewField": {"nested": True},
            },
            # A new test: no units until the vendor computes them.
            {"aid": "7625", "testId": "2002", "accountGroupName": "Support", "testName": "new", "testType": "x"},
        ],
        "endpointAgents": [
            {"aid": "7625", "accountGroupName": "Support", "endpointAgentsUsed": 22},
            {"aid": "315", "accountGroupName": "Documentation", "endpointAgentsUsed": 20},
        ],
        "enterpriseAgents": [
            {"aid": "7625", "accountGroupName": "Support", "enterpriseAgentsUsed": 7},
            {"aid": "315", "accountGroupName": "Documentation", "enterpriseAgentsUsed": 1},
        ],
        "allocations": {"used": 0, "projected": 0, "allocations": []},
    },
    "_links": {"self": {"href": "https://api.thousandeyes.com/v7/usage"}},
}

# v6 shape (the v6 "Obtaining usage details" page): integer aids, "YYYY-MM-DD HH:MM:SS" UTC dates, no `_links`.
V6_PAYLOAD: dict[str, Any] = {
    "usage": {
        "quota": {
            "monthStart": "2020-01-05 08:00:00",
            "monthEnd": "2020-02-05 08:00:00",
            "cloudUnitsIncluded": 4_320_000_000,
            "enterpriseAgentsIncluded": 0,
            "endpointAgentsIncluded": 200,
        },
        "cloudUnitsUsed": 8_500_489,
        "cloudUnitsProjected": 20_993_812,
        "cloudUnitsNextBillingPeriod": 25_123_456,
        "enterpriseUnitsUsed": 79_640_902,
        "enterpriseUnitsProjected": 108_016_317,
        "enterpriseUnitsNextBillingPeriod": 0,
        "endpointAgentsUsed": 42,
        "enterpriseAgentsUsed": 58,
        "tests": [
            {"aid": 315, "testId": 1158, "accountGroupName": "Documentation", "cloudUnitsUsed": 140_540,
             "cloudUnitsProjected": 340_674},
        ],
        "endpointAgents": [{"aid": 7625, "accountGroupName": "Support", "endpointAgentsUsed": 22}],
        "enterpriseAgents": [{"aid": 7625, "accountGroupName": "Support", "enterpriseAgentsUsed": 7}],
        "enterpriseAgentUnits": [
            {"aid": 7625, "agentId": 121404, "accountGroupName": "Support", "agentName": "a",
             "enterpriseUnitsUsed": 599_878, "enterpriseUnitsProjected": 597_808, "vagentId": 123456},
        ],
    }
}  # fmt: skip


def by_metric(records: tuple[UsageRecord, ...]) -> dict[str, UsageRecord]:
    return {r.metric: r for r in records}


def test_v7_payload_maps_organisation_metrics() -> None:
    mapped = map_usage(V7_PAYLOAD, account_id="te-main", organisation=ORG)
    org = mapped.tenants[0]
    assert org.tenant == ORG
    metrics = by_metric(org.records)
    assert set(metrics) == {
        "cloud_units",
        "enterprise_units",
        "connected_devices",
        "endpoint_agents",
        "endpoint_agents_essentials",
        "enterprise_agents",
    }

    cloud = metrics["cloud_units"]
    assert (cloud.value, cloud.quota, cloud.projected, cloud.unit) == (850_489, 4_320_000, 20_993_812, "units")
    enterprise_units = metrics["enterprise_units"]
    assert (enterprise_units.value, enterprise_units.quota, enterprise_units.projected) == (
        79_640_902,
        None,
        108_016_317,
    )
    endpoint = metrics["endpoint_agents"]
    assert (endpoint.value, endpoint.quota, endpoint.projected, endpoint.unit) == (42, 200, None, "agents")
    assert all(r.vendor == "thousandeyes" and r.account_id == "te-main" for r in org.records)
    assert all(r.tenant.billed and r.tenant.parent_tenant_id is None for r in org.records)


def test_v7_window_is_the_vendors_billing_period() -> None:
    record = map_usage(V7_PAYLOAD, account_id="a", organisation=ORG).tenants[0].records[0]
    assert record.window.start == datetime(2026, 11, 5, 8, tzinfo=UTC)
    assert record.window.end == datetime(2026, 12, 5, 8, tzinfo=UTC)
    assert record.period == Period(2026, 11)


def test_v6_payload_maps_with_integer_aids_and_space_dates() -> None:
    mapped = map_usage(V6_PAYLOAD, account_id="legacy", organisation=ORG)
    assert mapped.window.period == Period(2020, 1)
    assert mapped.window.start == datetime(2020, 1, 5, 8, tzinfo=UTC)
    assert mapped.window.end == datetime(2020, 2, 5, 8, tzinfo=UTC)
    metrics = by_metric(mapped.tenants[0].records)
    assert metrics["cloud_units"].value == 8_500_489
    assert metrics["cloud_units"].quota == 4_320_000_000
    assert metrics["enterprise_agents"].value == 58
    groups = {t.tenant.tenant_id: t for t in mapped.tenants[1:]}
    assert set(groups) == {"ag-315", "ag-7625"}
    assert by_metric(groups["ag-315"].records)["cloud_units"].value == 140_540
    assert by_metric(groups["ag-7625"].records)["endpoint_agents"].value == 22


def test_period_is_the_month_the_billing_period_starts_in() -> None:
    quota = {"monthStart": "2026-10-20T08:00:00Z", "monthEnd": "2026-11-20T08:00:00Z"}
    window = billing_window(quota)
    assert window.period == Period(2026, 10)
    assert window.end == datetime(2026, 11, 20, 8, tzinfo=UTC)
    # An offset is honoured (converted to UTC), and a naive time means UTC.
    shifted = billing_window({"monthStart": "2026-11-01T01:00:00+02:00", "monthEnd": "2026-12-01 00:00:00"})
    assert shifted.start == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert shifted.period == Period(2026, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2020-01-05 08:00:00", datetime(2020, 1, 5, 8, tzinfo=UTC)),
        ("2020-01-05T08:00:00Z", datetime(2020, 1, 5, 8, tzinfo=UTC)),
        ("2020-01-05T08:00:00.123Z", datetime(2020, 1, 5, 8, 0, 0, 123000, tzinfo=UTC)),
        ("2020-01-05T09:00:00+01:00", datetime(2020, 1, 5, 8, tzinfo=UTC)),
    ],
)
def test_vendor_time_formats(text: str, expected: datetime) -> None:
    assert parse_vendor_time(text, field_name="x") == expected


@pytest.mark.parametrize("value", [None, "", "05/01/2020", 1578211200, "2020-13-05 08:00:00"])
def test_bad_vendor_time_names_the_field(value: object) -> None:
    with pytest.raises(VendorDataError, match=r"usage\.quota\.monthStart"):
        billing_window({"monthStart": value, "monthEnd": "2020-02-05 08:00:00"})


def test_window_end_must_follow_start() -> None:
    with pytest.raises(VendorDataError, match="monthEnd"):
        billing_window({"monthStart": "2020-02-05 08:00:00", "monthEnd": "2020-01-05 08:00:00"})


def test_enterprise_agents_quota_only_when_included() -> None:
    zero = by_metric(map_usage(V7_PAYLOAD, account_id="a", organisation=ORG).tenants[0].records)
    assert zero["enterprise_agents"].value == 8
    assert zero["enterprise_agents"].quota is None  # 0 means "not part of this plan"

    payload = copy.deepcopy(V7_PAYLOAD)
    payload["usage"]["quota"]["enterpriseAgentsIncluded"] = 10
    included = by_metric(map_usage(payload, account_id="a", organisation=ORG).tenants[0].records)
    assert included["enterprise_agents"].quota == 10

    # Endpoint agents keep a quota of 0: only the enterprise-agent 0 is documented as "not in the plan".
    payload["usage"]["quota"]["endpointAgentsIncluded"] = 0
    assert (
        by_metric(map_usage(payload, account_id="a", organisation=ORG).tenants[0].records)["endpoint_agents"].quota == 0
    )


def test_breakdown_rows_are_account_groups_inside_the_organisation() -> None:
    mapped = map_usage(V7_PAYLOAD, account_id="a", organisation=ORG)
    groups = mapped.tenants[1:]
    assert [g.tenant.tenant_id for g in groups] == ["ag-315", "ag-7625"]
    for group in groups:
        assert group.tenant.parent_tenant_id == "1234"
        assert group.tenant.billed is False
        assert all(r.tenant == group.tenant for r in group.records)
        assert all(r.window == mapped.window for r in group.records)
    docs, support = (by_metric(g.records) for g in groups)
    assert groups[0].tenant.tenant_name == "Documentation"
    assert docs["cloud_units"].value == 140_540 + 64_390
    assert docs["cloud_units"].projected == 340_674 + 164_457
    assert docs["cloud_units"].quota is None
    assert docs["endpoint_agents"].value == 20
    assert docs["enterprise_agents"].value == 1
    # The uncomputed test adds nothing; it does not fail the organisation.
    assert support["cloud_units"].value == 645_559
    assert support["cloud_units"].projected == 1_000_000
    # Breakdown sums equal the organisation's figures in this payload: they are the same units.
    org = by_metric(mapped.tenants[0].records)
    assert docs["cloud_units"].value + support["cloud_units"].value == org["cloud_units"].value
    assert docs["endpoint_agents"].value + support["endpoint_agents"].value == org["endpoint_agents"].value


def test_breakdown_ids_never_collide_with_organisation_ids() -> None:
    payload = copy.deepcopy(V7_PAYLOAD)
    for row in payload["usage"]["tests"]:
        row["aid"] = "1234"  # the organisation's own aid is also one of its account groups
    mapped = map_usage(payload, account_id="a", organisation=ORG)
    ids = [t.tenant.tenant_id for t in mapped.tenants]
    assert ids[0] == "1234"
    assert "ag-1234" in ids
    assert len(set(ids)) == len(ids)


def test_breakdown_name_falls_back_to_the_account_group_list() -> None:
    payload = copy.deepcopy(V7_PAYLOAD)
    payload["usage"]["endpointAgents"] = [{"aid": "99", "endpointAgentsUsed": 1}]
    payload["usage"]["enterpriseAgents"] = [{"aid": "98", "enterpriseAgentsUsed": 1}]
    mapped = map_usage(payload, account_id="a", organisation=ORG, group_names={"99": "Lab"})
    names = {t.tenant.tenant_id: t.tenant.tenant_name for t in mapped.tenants}
    assert names["ag-99"] == "Lab"
    assert names["ag-98"] == "account group 98"


def test_no_breakdown_when_arrays_are_absent() -> None:
    payload = copy.deepcopy(V7_PAYLOAD)
    for key in ("tests", "endpointAgents", "enterpriseAgents"):
        del payload["usage"][key]
    mapped = map_usage(payload, account_id="a", organisation=ORG)
    assert len(mapped.tenants) == 1


def test_missing_optional_fields_skip_the_metric() -> None:
    payload = copy.deepcopy(V7_PAYLOAD)
    usage = payload["usage"]
    del usage["enterpriseUnitsUsed"], usage["enterpriseAgentsUsed"], usage["cloudUnitsProjected"]
    usage["endpointAgentsUsed"] = None
    del usage["quota"]["cloudUnitsIncluded"]
    del usage["cloudUnitsNextBillingPeriod"], usage["enterpriseUnitsNextBillingPeriod"]
    del usage["connectedDevicesUnitsUsed"], usage["endpointAgentsEssentialsUsed"]
    metrics = by_metric(map_usage(payload, account_id="a", organisation=ORG).tenants[0].records)
    assert set(metrics) == {"cloud_units"}
    assert metrics["cloud_units"].quota is None
    assert metrics["cloud_units"].projected is None


def test_unknown_fields_are_ignored() -> None:
    payload = copy.deepcopy(V7_PAYLOAD)
    payload["usage"]["brandNewCounter"] = "text"
    payload["usage"]["quota"]["brandNewIncluded"] = [1, 2]
    payload["usage"]["tests"][0]["labels"] = ["a"]
    payload["somethingElse"] = None
    before = map_usage(V7_PAYLOAD, account_id="a", organisation=ORG)
    after = map_usage(payload, account_id="a", organisation=ORG)
    assert before == after


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda u: u.__setitem__("cloudUnitsUsed", "850489"), r"usage\.cloudUnitsUsed"),
        (lambda u: u.__setitem__("endpointAgentsUsed", True), r"usage\.endpointAgentsUsed"),
        (lambda u: u.__setitem__("enterpriseUnitsProjected", -1), r"usage\.enterpriseUnitsProjected"),
        (lambda u: u["quota"].__setitem__("cloudUnitsIncluded", "lots"), r"usage\.quota\.cloudUnitsIncluded"),
        (lambda u: u["tests"][1].__setitem__("cloudUnitsUsed", "64390"), r"usage\.tests\[1\]\.cloudUnitsUsed"),
        (lambda u: u["tests"][0].__setitem__("aid", None), r"usage\.tests\[0\]\.aid"),
        (lambda u: u["endpointAgents"][0].__setitem__("endpointAgentsUsed", []), r"usage\.endpointAgents\[0\]"),
        (lambda u: u.__setitem__("enterpriseAgents", {"aid": "1"}), r"usage\.enterpriseAgents"),
        (lambda u: u.__setitem__("quota", None), r"usage\.quota"),
    ],
)
def test_wrong_types_fail_naming_the_field(mutate: Any, field: str) -> None:
    payload = copy.deepcopy(V7_PAYLOAD)
    mutate(payload["usage"])
    with pytest.raises(VendorDataError, match=field):
        map_usage(payload, account_id="a", organisation=ORG)


@pytest.mark.parametrize("payload", [None, [], {"usage": None}, {"usage": []}, {"other": 1}])
def test_answer_without_usage_object_fails(payload: object) -> None:
    with pytest.raises(VendorDataError, match="usage"):
        map_usage(payload, account_id="a", organisation=ORG)


# --- account groups and organisations --------------------------------------------------------------


V7_GROUPS = {
    "accountGroups": [
        {"aid": "2362", "accountGroupName": "Edge", "organizationName": "Globex", "isCurrentAccountGroup": False},
        {"aid": "1251", "accountGroupName": "Branches", "organizationName": "Acme", "isCurrentAccountGroup": False},
        {"aid": "1234", "accountGroupName": "Prod", "organizationName": "Acme", "isCurrentAccountGroup": True,
         "isDefaultAccountGroup": True, "newField": 1},
        {"aid": "2345", "accountGroupName": "Main", "organizationName": "Globex", "isCurrentAccountGroup": False},
    ]
}  # fmt: skip


def test_discovery_groups_account_groups_by_organisation() -> None:
    plan = plan_organisations(parse_account_groups(V7_GROUPS), None)
    assert [(o.tenant.tenant_id, o.tenant.tenant_name, o.call_aid) for o in plan] == [
        ("1234", "Acme", "1234"),
        ("2345", "Globex", "2345"),
    ]
    assert plan[0].group_names == {"1251": "Branches", "1234": "Prod"}


def test_lowest_aid_is_numeric_not_lexical() -> None:
    groups = parse_account_groups(
        {"accountGroups": [{"aid": "900", "organizationName": "O"}, {"aid": "1000", "organizationName": "O"}]}
    )
    assert plan_organisations(groups, None)[0].tenant.tenant_id == "900"


def test_explicit_aids_one_call_per_organisation() -> None:
    groups = parse_account_groups(V7_GROUPS)
    plan = plan_organisations(groups, ["1251", "1234", "2362"])
    assert [(o.tenant.tenant_id, o.tenant.tenant_name) for o in plan] == [("1251", "Acme"), ("2362", "Globex")]


def test_explicit_aids_without_a_list_still_collect() -> None:
    plan = plan_organisations(None, ["1234", "77"])
    assert [(o.tenant.tenant_id, o.call_aid) for o in plan] == [("1234", "1234"), ("77", "77")]
    assert plan[0].tenant.tenant_name == "organisation of aid 1234"


def test_v6_groups_without_organisation_fall_back_to_the_current_one() -> None:
    v6 = {
        "accountGroups": [
            {"aid": 1251, "accountGroupName": "Branches", "current": 0, "default": 0},
            {"aid": 1234, "accountGroupName": "Prod", "current": 1, "default": 1},
        ]
    }
    groups = parse_account_groups(v6)
    assert [g.aid for g in groups] == ["1251", "1234"]
    assert groups[1].current is True
    plan = plan_organisations(groups, None)
    assert [(o.tenant.tenant_id, o.call_aid) for o in plan] == [("1234", "1234")]
    assert "Prod" in plan[0].tenant.tenant_name


def test_empty_account_group_list_is_an_error() -> None:
    with pytest.raises(VendorDataError, match="no account group"):
        plan_organisations(parse_account_groups({"accountGroups": []}), None)


@pytest.mark.parametrize("payload", [None, {}, {"accountGroups": "x"}, {"accountGroups": [1]}])
def test_bad_account_group_list(payload: object) -> None:
    with pytest.raises(VendorDataError, match="accountGroups"):
        parse_account_groups(payload)


def test_vendor_messages_from_problem_and_oauth_bodies() -> None:
    problem = HttpResponse(400, {}, b'{"type":"x","title":"Bad Request","status":400,"detail":"Invalid aid: 9"}', "u")
    assert vendor_message(problem) == "Bad Request: Invalid aid: 9"
    oauth = HttpResponse(401, {}, b'{"error":"invalid_token","error_description":"expired"}', "u")
    assert vendor_message(oauth) == "invalid_token: expired"
    assert vendor_message(HttpResponse(502, {}, b"<html>bad gateway</html>", "u")) == ""


# --- account validation -----------------------------------------------------------------------------

SOURCE = ThousandEyesSource()
BASE = {"account_id": "te-main", "base_url": "https://api.thousandeyes.com"}


def test_v7_account_defaults() -> None:
    account = SOURCE.parse_account({**BASE, "bearer_token": "secret-bearer-1", "aids": [1234, "2345", 1234]})
    assert account.api_version == "v7"
    assert account.aids == ["1234", "2345"]
    assert (account.requests_per_minute, account.concurrency, account.timeout_seconds) == (240, 4, 30)
    assert SOURCE.account_id(account) == "te-main"
    assert "secret-bearer-1" not in repr(account)


def test_v7_needs_bearer_token() -> None:
    with pytest.raises(ConfigError, match="bearer_token"):
        SOURCE.parse_account({**BASE})
    with pytest.raises(ConfigError, match="basic_auth_token"):
        SOURCE.parse_account({**BASE, "bearer_token": "b" * 10, "email": "a@b.c", "basic_auth_token": "x" * 10})


def test_v6_needs_basic_pair_or_bearer() -> None:
    ok = SOURCE.parse_account({**BASE, "api_version": "v6", "email": "ops@x.example", "basic_auth_token": "t" * 12})
    assert ok.api_version == "v6"
    assert SOURCE.parse_account({**BASE, "api_version": "v6", "bearer_token": "b" * 12}).bearer_token is not None
    with pytest.raises(ConfigError, match="email and basic_auth_token"):
        SOURCE.parse_account({**BASE, "api_version": "v6", "email": "ops@x.example"})


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"aids": []}, "aids"),
        ({"aids": [True]}, "aids"),
        ({"aids": ["12 34"]}, "aids"),
        ({"aids": "1234"}, "aids"),
        ({"api_version": "v5"}, "api_version"),
        ({"concurrency": 0}, "concurrency"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"bearer_token": ""}, "bearer_token"),
        ({"base_url": "http://api.thousandeyes.com"}, "base_url"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_bad_accounts_name_the_field_never_the_secret(extra: dict[str, Any], field: str) -> None:
    raw = {**BASE, "bearer_token": "very-secret-bearer", **extra}
    with pytest.raises(ConfigError, match=field) as caught:
        SOURCE.parse_account(raw)
    assert "very-secret-bearer" not in str(caught.value)


# --- every billed quantity of UsageDetails (issue 12, point 2) ----------------------------------------

FULL_V7: dict[str, Any] = {
    "usage": {
        "quota": {
            "monthStart": "2026-11-05T08:00:00Z",
            "monthEnd": "2026-12-05T08:00:00Z",
            "cloudUnitsIncluded": 4_000_000,
            "deviceAgentsIncluded": 10,
            "endpointAgentsIncluded": 200,
            "endpointAgentsEssentialsIncluded": 40,
            "endpointAgentsEmbeddedIncluded": 12,
            "enterpriseAgentsIncluded": 0,
        },
        "cloudUnitsUsed": 1_000_000,
        "cloudUnitsProjected": 2_500_000,
        "cloudUnitsNextBillingPeriod": 2_600_000,
        "enterpriseUnitsUsed": 300,
        "enterpriseUnitsProjected": 700,
        "enterpriseUnitsNextBillingPeriod": 750,
        "connectedDevicesUnitsUsed": 25,
        "connectedDevicesUnitsProjected": 31,
        "connectedDevicesUnitsNextBillingPeriod": 33,
        "endpointAgentsUsed": 42,
        "endpointAgentsEssentialsUsed": 55,
        "endpointAgentsEmbeddedUsed": 9,
        "enterpriseAgentsUsed": 8,
        "endpointAgentsEssentials": [
            {"aid": "315", "accountGroupName": "Docs", "endpointAgentsEssentialsUsed": 50},
            {"aid": "7625", "accountGroupName": "Support", "endpointAgentsEssentialsUsed": 5},
        ],
        "endpointAgentsEmbedded": [{"aid": "7625", "accountGroupName": "Support", "endpointAgentsEmbeddedUsed": 9}],
        "enterpriseAgentUnits": [
            {"aid": "315", "accountGroupName": "Docs", "agentId": "1", "enterpriseUnitsUsed": 100,
             "enterpriseUnitsProjected": 200},
            {"aid": "315", "accountGroupName": "Docs", "enterpriseUnitsUsed": 200, "enterpriseUnitsProjected": 500},
        ],
        "tests": [
            {"aid": "315", "accountGroupName": "Docs", "cloudUnitsUsed": 1_000_000, "cloudUnitsProjected": 2_500_000},
        ],
    }
}  # fmt: skip


def test_every_billed_quantity_is_a_metric_with_its_quota_and_projections() -> None:
    records = by_metric(map_usage(FULL_V7, account_id="a", organisation=ORG).tenants[0].records)
    got = {m: (r.value, r.quota, r.projected, r.projected_next_period, r.unit) for m, r in records.items()}
    assert got == {
        "cloud_units": (1_000_000, 4_000_000, 2_500_000, 2_600_000, "units"),
        "enterprise_units": (300, None, 700, 750, "units"),
        "connected_devices": (25, 10, 31, 33, "units"),
        "endpoint_agents": (42, 200, None, None, "agents"),
        "endpoint_agents_essentials": (55, 40, None, None, "agents"),
        "endpoint_agents_embedded": (9, 12, None, None, "agents"),
        "enterprise_agents": (8, None, None, None, "agents"),  # 0 included: not in this plan
    }


def test_essentials_embedded_and_enterprise_unit_rows_become_account_group_breakdowns() -> None:
    groups = {
        t.tenant.tenant_id: by_metric(t.records)
        for t in map_usage(FULL_V7, account_id="a", organisation=ORG).tenants[1:]
    }
    assert {g: {m: (r.value, r.projected) for m, r in ms.items()} for g, ms in groups.items()} == {
        "ag-315": {
            "cloud_units": (1_000_000, 2_500_000),
            "enterprise_units": (300, 700),
            "endpoint_agents_essentials": (50, None),
        },
        "ag-7625": {"endpoint_agents_essentials": (5, None), "endpoint_agents_embedded": (9, None)},
    }


@pytest.mark.parametrize(
    "quota_field",
    [
        "deviceAgentsIncluded",
        "endpointAgentsEssentialsIncluded",
        "endpointAgentsEmbeddedIncluded",
        "endpointAgentsIncluded",
    ],
)
def test_a_zero_quota_is_a_limit_of_zero_except_where_the_spec_says_otherwise(quota_field: str) -> None:
    payload = copy.deepcopy(FULL_V7)
    payload["usage"]["quota"][quota_field] = 0
    quotas = {r.metric: r.quota for r in map_usage(payload, account_id="a", organisation=ORG).tenants[0].records}
    zeroed = {m for m, q in quotas.items() if q == 0}
    assert len(zeroed) == 1
    assert quotas["enterprise_agents"] is None


# --- optional quota and billing dates (issue 12, point 4) ---------------------------------------------

REQUESTED = Window.month(Period(2026, 11))


@pytest.mark.parametrize("drop", ["quota", "monthStart", "monthEnd"])
def test_an_answer_without_billing_dates_takes_the_requested_period(drop: str) -> None:
    payload = copy.deepcopy(FULL_V7)
    if drop == "quota":
        del payload["usage"]["quota"]
    else:
        del payload["usage"]["quota"][drop]
    mapped = map_usage(payload, account_id="a", organisation=ORG, fallback=REQUESTED)
    assert mapped.window == REQUESTED and mapped.window_from_request is True
    assert all(r.window == REQUESTED for t in mapped.tenants for r in t.records)
    cloud = by_metric(mapped.tenants[0].records)["cloud_units"]
    assert cloud.value == 1_000_000
    assert cloud.quota == (None if drop == "quota" else 4_000_000)


def test_dates_that_are_sent_are_used_and_must_be_valid() -> None:
    mapped = map_usage(FULL_V7, account_id="a", organisation=ORG, fallback=REQUESTED)
    assert mapped.window_from_request is False
    assert mapped.window.start == datetime(2026, 11, 5, 8, tzinfo=UTC)
    payload = copy.deepcopy(FULL_V7)
    payload["usage"]["quota"]["monthStart"] = "soon"
    with pytest.raises(VendorDataError, match=r"usage\.quota\.monthStart"):
        map_usage(payload, account_id="a", organisation=ORG, fallback=REQUESTED)
    payload["usage"]["quota"] = "none"
    with pytest.raises(VendorDataError, match=r"usage\.quota: expected an object, got str"):
        map_usage(payload, account_id="a", organisation=ORG, fallback=REQUESTED)


# --- MSP quotas (/v7/quotas, issue 12 point 3) ---------------------------------------------------------

QUOTAS = {
    "quotas": [
        {
            "organizationQuota": {"value": 3_000_000, "orgId": "77"},
            "accountGroupQuotas": [{"value": 800_000, "aid": "315"}, {"value": 0, "aid": "7625"}, {"aid": "9"}],
        },
        {"accountGroupQuotas": [{"value": 5, "aid": "4444"}]},
    ],
    "_links": {"self": {"href": "https://api.thousandeyes.com/v7/quotas"}},
}


def test_quotas_are_parsed_per_organisation() -> None:
    assert parse_quotas(QUOTAS) == [
        QuotaEntry("77", 3_000_000, {"315": 800_000, "7625": 0}),
        QuotaEntry(None, None, {"4444": 5}),
    ]
    assert parse_quotas({}) == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda q: q["quotas"][0]["organizationQuota"].update(value="3M"), "quotas[0].organizationQuota.value"),
        (lambda q: q["quotas"][0]["organizationQuota"].pop("value"), "required by the spec"),
        (lambda q: q["quotas"][0]["accountGroupQuotas"][0].update(value=1.5), "whole number"),
        (lambda q: q["quotas"][0]["accountGroupQuotas"][0].pop("aid"), "accountGroupQuotas[0].aid"),
        (lambda q: q.update(quotas={"a": 1}), "quotas: expected a list"),
    ],
)
def test_a_malformed_quotas_answer_names_the_field(change: Any, fragment: str) -> None:
    payload = copy.deepcopy(QUOTAS)
    change(payload)
    with pytest.raises(VendorDataError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_quotas(payload)


def test_an_organisation_finds_its_quotas_by_org_id_or_by_one_of_its_account_groups() -> None:
    entries = parse_quotas(QUOTAS)
    by_id = plan_organisations(
        parse_account_groups({"accountGroups": [{"aid": "1", "organizationName": "A", "orgId": "77"}]}), None
    )[0]
    assert quotas_for(entries, by_id) == OrganisationQuotas(3_000_000, {"315": 800_000, "7625": 0})
    by_group = plan_organisations(
        parse_account_groups({"accountGroups": [{"aid": "4444", "organizationName": "B"}]}), None
    )[0]
    assert quotas_for(entries, by_group) == OrganisationQuotas(None, {"4444": 5})
    stranger = plan_organisations(
        parse_account_groups({"accountGroups": [{"aid": "5", "organizationName": "C"}]}), None
    )[0]
    assert quotas_for(entries, stranger) == OrganisationQuotas()


def test_msp_quotas_go_on_the_cloud_unit_rows_of_the_organisation_and_its_account_groups() -> None:
    quotas = OrganisationQuotas(3_000_000, {"315": 800_000, "7625": 0, "9999": 10})
    mapped = map_usage(FULL_V7, account_id="a", organisation=ORG, quotas=quotas)
    org = by_metric(mapped.tenants[0].records)
    assert org["cloud_units"].quota == 3_000_000  # the MSP's, in place of cloudUnitsIncluded
    assert org["endpoint_agents_essentials"].quota == 40  # the other quotas are the contract's
    groups = {t.tenant.tenant_id: by_metric(t.records) for t in mapped.tenants[1:]}
    assert groups["ag-315"]["cloud_units"].quota == 800_000
    # An account group with a quota and no test used 0 of it (the tests were listed); one the answer does
    # not name at all (9999) too: it is this organisation's, by /v7/quotas.
    assert (groups["ag-7625"]["cloud_units"].value, groups["ag-7625"]["cloud_units"].quota) == (0, 0)
    assert (groups["ag-9999"]["cloud_units"].value, groups["ag-9999"]["cloud_units"].quota) == (0, 10)
    assert all(r.quota is None for g in groups.values() for m, r in g.items() if m != "cloud_units")


# --- organisation identity (issue 11, point 6) ---------------------------------------------------------

WITH_ORG_IDS = {
    "accountGroups": [
        {"aid": "1251", "accountGroupName": "Branch", "organizationName": "Acme", "orgId": "980000"},
        {"aid": "1234", "accountGroupName": "Prod", "organizationName": "Acme", "orgId": "980000"},
        {"aid": "1300", "accountGroupName": "Lab", "organizationName": "Acme"},  # orgId left out on one row
        {"aid": "2345", "accountGroupName": "Prod", "organizationName": "Globex", "orgId": "981111"},
    ]
}


def test_org_id_is_the_organisation_identity_whichever_account_groups_exist() -> None:
    plan = plan_organisations(parse_account_groups(WITH_ORG_IDS), None)
    assert [(o.tenant.tenant_id, o.call_aid, o.org_id, sorted(o.aids)) for o in plan] == [
        ("org-980000", "1234", "980000", ["1234", "1251", "1300"]),
        ("org-981111", "2345", "981111", ["2345"]),
    ]
    # The lowest account group deleted mid-period: same identity, called with the next aid.
    remaining = copy.deepcopy(WITH_ORG_IDS)
    del remaining["accountGroups"][1]
    assert plan_organisations(parse_account_groups(remaining), None)[0].tenant.tenant_id == "org-980000"
    # Configured aids give the same identity as discovery.
    assert [o.tenant.tenant_id for o in plan_organisations(parse_account_groups(WITH_ORG_IDS), ["1251"])] == [
        "org-980000"
    ]


def test_without_org_id_a_remembered_identity_outlives_its_account_group() -> None:
    listing = {"accountGroups": [{"aid": a, "organizationName": "Acme"} for a in ("1234", "1251")]}
    memory = InProcessIdentities()
    first = plan_organisations(parse_account_groups(listing), None, memory.recall("te"))
    assert [o.tenant.tenant_id for o in first] == ["1234"]
    memory.remember("te", {aid: o.tenant.tenant_id for o in first for aid in o.aids})
    del listing["accountGroups"][0]  # account group 1234 deleted mid-period
    assert [o.tenant.tenant_id for o in plan_organisations(parse_account_groups(listing), None)] == ["1251"]
    later = plan_organisations(parse_account_groups(listing), None, memory.recall("te"))
    assert [(o.tenant.tenant_id, o.call_aid) for o in later] == [("1234", "1251")]
    memory.remember("te", {"1251": "1251"})  # the first identity given to an aid wins
    assert memory.recall("te") == {"1234": "1234", "1251": "1234"}
    assert memory.recall("other-account") == {}

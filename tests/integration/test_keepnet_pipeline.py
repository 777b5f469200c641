"""Keepnet end to end: the real handler, the template's environment, moto, the simulator over HTTP."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Invoke, event_file
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, on_path
from tests.simulators.keepnet import KeepnetSimulator, make_companies, over_limit
from usagewatch.errors import ConfigError

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-secret-9f8e7d6c5b4a"
COMPANIES = make_companies(120, seed=11, over_limit=4, unlimited=3)


@pytest.fixture
def keepnet() -> Iterator[KeepnetSimulator]:
    with KeepnetSimulator(
        companies=copy.deepcopy(COMPANIES),
        clients={"msp-reseller": (CLIENT_SECRET, "Reseller")},
        page_cap=50,
    ) as sim:
        yield sim  # type: ignore[misc]


def account(sim: KeepnetSimulator, **extra: Any) -> dict[str, Any]:
    return {
        "account_id": "keepnet-main",
        "base_url": sim.url,
        "client_id": "msp-reseller",
        "client_secret": CLIENT_SECRET,
        "page_size": 100,
        **extra,
    }


@pytest.fixture
def env(aws: LocalAws, keepnet: KeepnetSimulator) -> dict[str, str]:
    aws.put_secret(SECRET, [account(keepnet)])
    return aws.environment("keepnet", secret_name=SECRET)


def test_collects_every_company_of_a_multi_page_listing_with_exact_totals(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    summary = invoke("keepnet", event_file("keepnet-scheduled.json"), env)

    assert summary["tenants_collected"] == 120
    assert summary["tenants_failed"] == 0
    assert summary["records_written"] == 120 * 4
    usage = aws.usage("2026-11")
    assert len(usage) == 120 * 4
    by_metric: dict[str, dict[str, int]] = {}
    for item in usage:
        by_metric.setdefault(item["metric"], {})[item["tenant_id"]] = item["value"]
    assert by_metric["monthly_users"] == {c["companyResourceId"]: c["monthlyActiveUserCount"] for c in COMPANIES}
    totals = {t["metric"]: t for t in aws.totals("2026-11")}
    assert totals["monthly_users"]["value"] == sum(c["monthlyActiveUserCount"] for c in COMPANIES)
    assert totals["target_users"]["value"] == sum(c["targetUserCount"] for c in COMPANIES)
    assert totals["monthly_users"]["tenant_count"] == 120
    # The month selector was sent for the run's period on every listing page.
    bodies = keepnet.search_bodies()
    assert all("2026-11" in str(body["filter"]) for body in bodies)


def test_over_limit_companies_alerted_once_and_not_again(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    invoke("keepnet", event_file("keepnet-scheduled.json"), env)
    events = aws.drain_events()

    over = {c["companyResourceId"] for c in COMPANIES if over_limit(c)}
    breached = [e for e in events if e["event_type"] == "usage.threshold.breached"]
    vendor_flag = [e for e in breached if e["rule"] == "vendor_limit_exceeded"]
    assert {e["tenant_id"] for e in vendor_flag} == over
    assert len(vendor_flag) == len(over) == 4
    # One alert per record: the vendor flag, not also the computed over-quota check.
    assert not [e for e in breached if e["rule"] == "over_quota"]
    sample = vendor_flag[0]
    assert sample["schema_version"] == 1 and sample["severity"] == "critical"
    assert sample["metric"] == "target_users" and sample["period"] == "2026-11"
    assert sample["value"] > sample["quota"]

    second = invoke("keepnet", event_file("keepnet-scheduled.json") | {"scheduled_time": "2026-11-22T12:00:00Z"}, env)
    assert second["alerts_published"] == 0
    assert aws.drain_events() == []


def test_company_back_under_its_limit_gets_a_resolved_event(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    invoke("keepnet", event_file("keepnet-scheduled.json"), env)
    aws.drain_events()
    fixed = next(c for c in keepnet.default_companies if over_limit(c))
    fixed["targetUserCount"] = int(fixed["numberOfUsers"]) // 2

    invoke("keepnet", {"scheduled_time": "2026-11-22T12:00:00Z"}, env)
    events = aws.drain_events()

    resolved = [e for e in events if e["event_type"] == "usage.threshold.resolved"]
    assert [(e["tenant_id"], e["rule"]) for e in resolved] == [(fixed["companyResourceId"], "vendor_limit_exceeded")]
    assert not [e for e in events if e["event_type"] == "usage.threshold.breached"]


def test_token_renewed_mid_run_and_429_503_ridden_out(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    keepnet.expire_tokens_at(3)
    keepnet.inject(
        Fault("status", on_path("/api/companies/search"), times=1, status=429, headers={"Retry-After": "1"}),
        Fault("status", on_path("/api/companies/search"), times=2, status=503),
    )
    summary = invoke("keepnet", event_file("keepnet-scheduled.json"), env)

    assert summary["tenants_collected"] == 120 and summary["accounts_failed"] == 0
    assert keepnet.tokens_issued == 2
    assert 429 in keepnet.statuses() and 503 in keepnet.statuses() and 401 in keepnet.statuses()
    assert len(aws.usage("2026-11")) == 120 * 4


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"accounts": []}', "accounts: expected a non-empty list"),
        (
            '{"accounts": [{"account_id": "k", "base_url": "http://keepnet.example.com", "client_id": "a", '
            '"client_secret": "kn-secret-9f8e7d6c5b4a"}]}',
            "base_url",
        ),
        (
            '{"accounts": [{"account_id": "k", "base_url": "https://api.keepnetlabs.com", "client_id": "a"}]}',
            "client_secret",
        ),
    ],
)
def test_bad_secret_fails_fast_naming_the_field_and_writes_nothing(
    aws: LocalAws, keepnet: KeepnetSimulator, invoke: Invoke, secret: str, message: str
) -> None:
    aws.put_secret(SECRET, secret)
    env = aws.environment("keepnet", secret_name=SECRET)
    with pytest.raises(ConfigError, match=message) as raised:
        invoke("keepnet", event_file("keepnet-scheduled.json"), env)
    assert CLIENT_SECRET not in str(raised.value)
    assert aws.count() == 0
    assert keepnet.count() == 0


def test_bad_event_fails_fast_and_writes_nothing(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    with pytest.raises(ConfigError, match=r"event\.period"):
        invoke("keepnet", {"period": "2026-13"}, env)
    with pytest.raises(ConfigError, match=r"event\.scheduled_time"):
        invoke("keepnet", {"scheduled_time": "yesterday"}, env)
    assert aws.count() == 0
    assert keepnet.count() == 0


def test_every_event_shape_and_an_explicit_period(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    assert invoke("keepnet", event_file("keepnet-eventbridge.json"), env)["period"] == "2026-11"
    assert invoke("keepnet", event_file("keepnet-period.json"), env)["period"] == "2026-10"
    now = invoke("keepnet", event_file("keepnet-now.json"), env)
    assert now["tenants_collected"] == 120
    assert len(aws.usage("2026-11")) == 120 * 4
    # October collected in November: a past month, so only its monthly users.
    assert {i["metric"] for i in aws.usage("2026-10")} == {"monthly_users"}
    assert len(aws.usage("2026-10")) == 120


def test_no_secret_or_token_in_logs_events_or_items(
    aws: LocalAws,
    keepnet: KeepnetSimulator,
    env: dict[str, str],
    invoke: Invoke,
    capsys: pytest.CaptureFixture[str],
    capture_logs: None,
) -> None:
    keepnet.expire_tokens_at(2)
    keepnet.inject(Fault("status", on_path("/api/companies/search"), times=1, status=500))
    invoke("keepnet", event_file("keepnet-scheduled.json"), env)
    out = capsys.readouterr()
    tokens = keepnet.issued_tokens
    assert "collection" in out.out  # the log lines were captured, so the check below means something
    assert tokens
    haystack = out.out + out.err + repr(aws.drain_events()) + repr(aws.items())
    for secret in [CLIENT_SECRET, *tokens]:
        assert secret not in haystack


# --- month semantics: only Monthly Users belong to the month selected --------------------------------

OCTOBER_RUN = {"scheduled_time": "2026-10-28T06:00:00Z"}
NOVEMBER_RUN = {"scheduled_time": "2026-11-22T06:00:00Z"}
OCTOBER_AGAIN_IN_DECEMBER = {"scheduled_time": "2026-12-03T06:00:00Z", "period": "2026-10"}


def december_state(sim: KeepnetSimulator) -> dict[str, int]:
    """Every current value moves on by December and every limited company is over its limit; Keepnet
    now also counts a few late additions in October's Monthly Users. Returns October's new monthly users."""
    for company in sim.default_companies:
        company["targetUserCount"] += 100
        company["inactiveTargetUserCount"] += 5
        company["deletedTargetUserCount"] += 2
        if company["isNumberOfUsersLimited"]:
            company["numberOfUsers"] = str(max(0, company["targetUserCount"] - 1))
        company["monthlyActiveUserCount"] += 50  # December's, never October's
    october = {c["companyResourceId"]: c["monthlyActiveUserCount"] - 50 + 3 for c in sim.default_companies}
    sim.set_monthly_users("2026-10", october)
    return october


def test_re_collecting_a_past_month_keeps_its_current_values_and_publishes_no_verdict(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    invoke("keepnet", OCTOBER_RUN, env)
    october = {(i["tenant_id"], i["metric"]): i for i in aws.usage("2026-10")}
    october_totals = {t["metric"]: t["value"] for t in aws.totals("2026-10")}
    breached = [e for e in aws.drain_events() if e["event_type"] == "usage.threshold.breached"]
    over = {c["companyResourceId"] for c in COMPANIES if over_limit(c)}
    assert {e["tenant_id"] for e in breached if e["rule"] == "vendor_limit_exceeded"} == over
    assert len(october) == 120 * 4
    invoke("keepnet", NOVEMBER_RUN, env)  # the schedule moves on; October's alerts close with the month
    aws.drain_events()
    verdict_listings = sum(1 for b in keepnet.search_bodies() if b["isTargetUserCountExceededLimit"])

    late_monthly = december_state(keepnet)
    summary = invoke("keepnet", OCTOBER_AGAIN_IN_DECEMBER, env)

    assert summary["tenants_collected"] == 120 and summary["records_written"] == 120
    after = {(i["tenant_id"], i["metric"]): i for i in aws.usage("2026-10")}
    assert after.keys() == october.keys()
    for key, item in october.items():
        if key[1] == "monthly_users":
            assert after[key]["value"] == late_monthly[key[0]]
        else:
            # value, quota and verdict: all October's (collected_at is the tenant's "last changed": monthly_users did)
            assert {**after[key], "collected_at": None} == {**item, "collected_at": None}
    totals = {t["metric"]: t["value"] for t in aws.totals("2026-10")}
    assert totals["monthly_users"] == sum(late_monthly.values())
    assert {m: v for m, v in totals.items() if m != "monthly_users"} == {
        m: v for m, v in october_totals.items() if m != "monthly_users"
    }
    events = aws.drain_events()
    assert not [e for e in events if e.get("period") == "2026-10" and e.get("rule") == "vendor_limit_exceeded"]
    assert not [e for e in events if e.get("metric") not in (None, "monthly_users")]
    # The verdict is a current value: its listing is not even asked for a past month.
    assert sum(1 for b in keepnet.search_bodies() if b["isTargetUserCountExceededLimit"]) == verdict_listings


def test_re_collecting_a_past_month_whose_alerts_still_fire_sends_no_event_for_them(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    invoke("keepnet", OCTOBER_RUN, env)
    aws.drain_events()
    december_state(keepnet)

    invoke("keepnet", OCTOBER_AGAIN_IN_DECEMBER, env)

    assert [e for e in aws.drain_events() if e.get("metric") != "monthly_users"] == []

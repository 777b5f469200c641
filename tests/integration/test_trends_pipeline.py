"""Projection and jumps end to end: the real Keepnet handler, moto, the simulator over HTTP, runs across a month."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.keepnet import KeepnetSimulator, make_companies

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-secret-9f8e7d6c5b4a"
RULES = "/usagewatch/rules"


@pytest.fixture
def keepnet() -> Iterator[KeepnetSimulator]:
    companies = make_companies(3, seed=5, over_limit=0, unlimited=0)
    for company in companies:
        company["numberOfUsers"], company["targetUserCount"] = "1000", 100
    with KeepnetSimulator(companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def env(aws: LocalAws, keepnet: KeepnetSimulator) -> dict[str, str]:
    account = {"account_id": "kn-main", "base_url": keepnet.url, "client_id": "msp", "client_secret": CLIENT_SECRET}
    aws.put_secret(SECRET, [account])
    company = keepnet.default_companies[0]["companyResourceId"]
    aws.put_rules(
        RULES, {"quotas": [{"vendor": "keepnet", "tenant_id": company, "metric": "monthly_users", "quota": 300}]}
    )
    return aws.environment("keepnet", secret_name=SECRET)


def run_on(invoke: Invoke, env: dict[str, str], day: int, month: int = 11) -> dict[str, Any]:
    return invoke("keepnet", {"scheduled_time": f"2026-{month:02d}-{day:02d}T06:00:00Z"}, env)


def of_rule(events: list[dict[str, Any]], rule: str) -> list[tuple[str, str, Any]]:
    return [(e["event_type"], e["tenant_id"], e["value"]) for e in events if e.get("rule") == rule]


def stored_metric(aws: LocalAws, tenant_id: str, metric: str) -> dict[str, Any]:
    return next(i for i in aws.usage("2026-11") if i["tenant_id"] == tenant_id and i["metric"] == metric)


def test_growing_monthly_users_project_over_the_quota_once_and_resolve_when_growth_stops(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    company = keepnet.default_companies[0]["companyResourceId"]
    published: list[tuple[int, list[tuple[str, str, Any]]]] = []
    breaches: list[dict[str, Any]] = []
    # 20 Monthly Users a day until the 10th, then none: on track for ~600 of the 300 sold, then for ~200.
    for day in (2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 23, 24):
        keepnet.set_monthly_users("2026-11", {company: 20 * min(day, 10)})
        run_on(invoke, env, day)
        events = aws.drain_events()
        published.append((day, of_rule(events, "projected_over_quota")))
        breaches += [e for e in events if e.get("rule") == "projected_over_quota" and "firing_since" not in e]

    fired = {day: events for day, events in published if events}
    # Five days of readings before it may say anything; then once, not on every run that still holds.
    assert fired == {
        7: [("usage.threshold.breached", company, 140)],
        # The flat stretch since the 10th counts, though no run between the 16th and the 23rd recorded it.
        23: [("usage.threshold.resolved", company, 200)],
    }
    (breach,) = breaches
    assert (breach["quota"], breach["projection_source"]) == (300, "usagewatch") and breach["projected"] > 300
    item = stored_metric(aws, company, "monthly_users")
    assert item["projection_source"] == "usagewatch" and item["projected"] < 300
    others = [i for i in aws.usage("2026-11") if i["metric"] != "monthly_users"]
    assert others and all("projected" not in i for i in others)  # a level (target users) is not projected


def test_an_unchanged_reading_does_not_rewrite_its_item_for_a_projection_that_barely_moved(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    company = keepnet.default_companies[0]["companyResourceId"]
    for day in range(2, 9):
        keepnet.set_monthly_users("2026-11", {company: 20 * day})
        run_on(invoke, env, day)
    before = stored_metric(aws, company, "monthly_users")
    invoke("keepnet", {"scheduled_time": "2026-11-08T12:00:00Z"}, env)  # same reading, six hours on
    after = stored_metric(aws, company, "monthly_users")
    assert after["projected"] == before["projected"] and after["collected_at"] == before["collected_at"]


def test_usage_jump_against_last_month_and_against_a_week_ago_fires_once_and_resolves(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    first, second = (c["companyResourceId"] for c in keepnet.default_companies[:2])
    keepnet.set_monthly_users("2026-10", {second: 100})
    keepnet.default_companies[0]["targetUserCount"] = 140  # October ends at 140: November's 140 is no jump on it
    run_on(invoke, env, 31, month=10)
    aws.drain_events()

    seen: dict[int, list[tuple[str, str, Any]]] = {}
    for day, target, monthly in ((1, 100, 60), (5, 100, 100), (9, 140, 120), (12, 140, 130), (17, 140, 140)):
        keepnet.default_companies[0]["targetUserCount"] = target
        keepnet.set_monthly_users("2026-11", {second: monthly})
        run_on(invoke, env, day)
        seen[day] = of_rule(aws.drain_events(), "usage_jump")

    assert seen == {
        1: [],
        5: [],
        # target users 100 -> 140 within a week: +40 %, +40 users.
        9: [("usage.threshold.breached", first, 140)],
        # monthly users 130 against October's 100: +30 %, +30 (120 was +20 only; 140 later is the same jump).
        12: [("usage.threshold.breached", second, 130)],
        # A week later 140 is what target users were 7 days ago: no jump any more.
        17: [("usage.threshold.resolved", first, 140)],
    }

"""The alert lifecycle end to end across vendors: rules from SSM, operator quotas, silences, failures as state,
publish failures recovered next run. Real handlers, moto, simulators over HTTP."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, on_path
from tests.simulators.keepnet import KeepnetSimulator, make_companies, over_limit
from tests.simulators.thousandeyes import ThousandEyesSimulator, make_orgs
from usagewatch.errors import ConfigError

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
RUN_1 = {"scheduled_time": "2026-11-22T06:00:00Z"}
RUN_2 = {"scheduled_time": "2026-11-22T07:00:00Z"}
RUN_3 = {"scheduled_time": "2026-11-22T08:00:00Z"}
KN_SECRET = "kn-secret-0a1b2c3d4e"
TE_TOKEN = "te-token-5f6e7d8c9b"
RULES = "/usagewatch/rules"
COMPANIES = make_companies(30, seed=5, over_limit=2, unlimited=1)


@pytest.fixture
def keepnet() -> Iterator[KeepnetSimulator]:
    with KeepnetSimulator(companies=copy.deepcopy(COMPANIES), clients={"kn": (KN_SECRET, "Reseller")}) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def thousandeyes() -> Iterator[ThousandEyesSimulator]:
    with ThousandEyesSimulator(token=TE_TOKEN, orgs=make_orgs(2, now=AS_OF)) as sim:
        yield sim  # type: ignore[misc]


def setup(aws: LocalAws, keepnet: KeepnetSimulator, thousandeyes: ThousandEyesSimulator) -> dict[str, dict[str, str]]:
    aws.put_secret(
        "usagewatch/keepnet",
        [{"account_id": "kn", "base_url": keepnet.url, "client_id": "kn", "client_secret": KN_SECRET}],
    )
    aws.put_secret(
        "usagewatch/thousandeyes", [{"account_id": "te", "base_url": thousandeyes.url, "bearer_token": TE_TOKEN}]
    )
    return {
        "keepnet": aws.environment("keepnet", secret_name="usagewatch/keepnet"),
        "thousandeyes": aws.environment("thousandeyes", secret_name="usagewatch/thousandeyes"),
    }


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((e["event_type"], e.get("rule", ""), e.get("tenant_id", "")) for e in events)


def test_invalid_rules_document_is_rejected_before_any_vendor_call_or_write(
    aws: LocalAws, keepnet: KeepnetSimulator, thousandeyes: ThousandEyesSimulator, invoke: Invoke
) -> None:
    aws.put_rules(RULES, {"rules": {"quota_utilization": {"threshold": 1.5}}, "snooze": []})
    envs = setup(aws, keepnet, thousandeyes)
    for vendor in ("keepnet", "thousandeyes"):
        with pytest.raises(ConfigError, match=r"rules\.quota_utilization\.threshold") as raised:
            invoke(vendor, RUN_1, envs[vendor])
        assert "snooze" in str(raised.value)
    assert aws.count() == 0
    assert keepnet.count() == 0
    assert thousandeyes.count() == 0


def test_operator_quota_and_silence_from_ssm(
    aws: LocalAws, keepnet: KeepnetSimulator, thousandeyes: ThousandEyesSimulator, invoke: Invoke
) -> None:
    calm = next(c for c in COMPANIES if c["isNumberOfUsersLimited"] and not over_limit(c) and c["targetUserCount"] > 10)
    silenced = next(c for c in COMPANIES if over_limit(c))
    aws.put_rules(
        RULES,
        {
            "quotas": [
                {"vendor": "keepnet", "tenant_id": calm["companyResourceId"], "metric": "target_users", "quota": 5}
            ],
            "silences": [
                {
                    "vendor": "keepnet",
                    "tenant_id": silenced["companyResourceId"],
                    "until": "2026-12-31",
                    "reason": "NFP",
                }
            ],
            "rules": {"quota_utilization": {"enabled": False}},
        },
    )
    envs = setup(aws, keepnet, thousandeyes)
    invoke("keepnet", RUN_1, envs["keepnet"])
    events = aws.drain_events()

    over_quota = [e for e in events if e["rule"] == "over_quota"]
    assert [(e["tenant_id"], e["quota"]) for e in over_quota] == [(calm["companyResourceId"], 5)]
    flagged = {e["tenant_id"] for e in events if e["rule"] == "vendor_limit_exceeded"}
    assert silenced["companyResourceId"] not in flagged
    assert len(flagged) == 1
    # The silenced alert is still recorded as state.
    states = aws.store().tenant_alerts("keepnet", "kn", silenced["companyResourceId"])
    assert [(s.rule, s.status, s.published) for s in states] == [("vendor_limit_exceeded", "firing", False)]


def test_projected_over_quota_alerted_once_across_hourly_runs_and_gated_by_period_elapsed(
    aws: LocalAws, keepnet: KeepnetSimulator, thousandeyes: ThousandEyesSimulator, invoke: Invoke
) -> None:
    envs = setup(aws, keepnet, thousandeyes)
    aws.put_rules(RULES, {"rules": {"projected_over_quota": {"min_period_elapsed": 0.9}}})
    envs["thousandeyes"] = aws.environment("thousandeyes", secret_name="usagewatch/thousandeyes")
    invoke("thousandeyes", RUN_1, envs["thousandeyes"])
    assert [e for e in aws.drain_events() if e["rule"] == "projected_over_quota"] == []

    aws.put_rules(RULES, {"rules": {"projected_over_quota": {"min_period_elapsed": 0.3}}})
    from usagewatch.handler import reset_config_cache

    reset_config_cache()  # a new container: the rules cache (60 s) would otherwise hide the change
    invoke("thousandeyes", RUN_2, envs["thousandeyes"])
    projected = [e for e in aws.drain_events() if e["rule"] == "projected_over_quota"]
    assert len(projected) == 1
    event = projected[0]
    assert event["vendor"] == "thousandeyes"
    assert event["metric"] == "cloud_units"
    assert event["projected"] > event["quota"] > event["value"]
    assert event["severity"] == "warning"

    invoke("thousandeyes", RUN_3, envs["thousandeyes"])
    assert aws.drain_events() == []


def test_publish_failure_is_published_on_the_next_run_exactly_once(
    aws: LocalAws, keepnet: KeepnetSimulator, thousandeyes: ThousandEyesSimulator, invoke: Invoke
) -> None:
    envs = setup(aws, keepnet, thousandeyes)
    session = boto3._get_default_session()  # the session the publisher's client is made from

    def sns_down(**_: Any) -> None:
        raise ConnectionError("SNS unavailable")

    session.events.register("before-call.sns.Publish", sns_down, unique_id="sns-down")
    try:
        for vendor in ("keepnet", "thousandeyes"):
            summary = invoke(vendor, RUN_1, envs[vendor])
            assert summary["alerts_published"] == 0
            assert summary["publish_failures"] > 0
    finally:
        session.events.unregister("before-call.sns.Publish", unique_id="sns-down")
    assert aws.drain_events() == []

    for vendor in ("keepnet", "thousandeyes"):
        invoke(vendor, RUN_2, envs[vendor])
    delivered = aws.drain_events()
    assert {e["vendor"] for e in delivered} == {"keepnet", "thousandeyes"}
    assert len({e["alert_id"] for e in delivered}) == len(delivered)

    for vendor in ("keepnet", "thousandeyes"):
        invoke(vendor, RUN_3, envs[vendor])
    assert aws.drain_events() == []


def test_failures_are_state_never_resolve_and_recover_once(
    aws: LocalAws, keepnet: KeepnetSimulator, thousandeyes: ThousandEyesSimulator, invoke: Invoke
) -> None:
    envs = setup(aws, keepnet, thousandeyes)
    invoke("keepnet", RUN_1, envs["keepnet"])
    first = aws.drain_events()
    assert {e["rule"] for e in first if e["event_type"] == "usage.threshold.breached"} >= {"vendor_limit_exceeded"}

    # The whole account fails (the token endpoint refuses): reported once, nothing resolves.
    keepnet.inject(Fault("status", on_path("/connect/token"), times=-1, status=400, body={"error": "invalid_client"}))
    for run in (RUN_2, RUN_3):
        with pytest.raises(Exception, match="account"):
            invoke("keepnet", run, envs["keepnet"])
    failing = aws.drain_events()
    assert kinds(failing) == [("collection.failed", "", "")]
    assert failing[0]["severity"] == "critical"
    assert "client" in failing[0]["error"]

    # One company sends a bad value: that company fails alone, once; the account recovers.
    keepnet.clear_faults()
    broken = keepnet.default_companies[0]
    broken["targetUserCount"] = "lots"
    invoke("keepnet", {"scheduled_time": "2026-11-22T09:00:00Z"}, envs["keepnet"])
    invoke("keepnet", {"scheduled_time": "2026-11-22T10:00:00Z"}, envs["keepnet"])
    events = aws.drain_events()
    assert kinds(events) == [
        ("collection.failed", "", broken["companyResourceId"]),
        ("collection.recovered", "", ""),
    ]
    assert "targetUserCount" in next(e for e in events if e["event_type"] == "collection.failed")["error"]

    broken["targetUserCount"] = 3
    invoke("keepnet", {"scheduled_time": "2026-11-22T11:00:00Z"}, envs["keepnet"])
    assert kinds(aws.drain_events()) == [("collection.recovered", "", broken["companyResourceId"])]

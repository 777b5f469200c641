"""Exactly-once rows of the fault matrix (issue 11): state not stored after publishing, a closed month
collected again, a store read failing, a run killed midway, a run that reaches its deadline. One Keepnet
account (two for the deadline) behind the real handler, moto and the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import Harness, Outcome, assert_clean_rerun_publishes_nothing, at, boto_hook
from tests.faults.sims import HookedKeepnet
from tests.faults.test_aws_faults import ACCOUNT, CLIENT_SECRET, PERIOD, SECRET, World, kn, vendor_flagged
from tests.integration.conftest import FakeLambdaContext, Invoke, load_app
from tests.local_aws import LocalAws
from tests.simulators.keepnet import make_companies
from usagewatch.handler import CollectionFailedError

__all__ = ["kn"]  # the fixture, shared with the AWS rows

BREACHED = "usage.threshold.breached"


def _alert_write(params: dict[str, Any], table: str) -> bool:
    """An alert state's conditional PutItem."""
    return params.get("TableName") == table and params.get("Item", {}).get("record_type", {}).get("S") == "alert"


def breaches(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["alert_id"]: e["event_id"] for e in events if e["event_type"] == BREACHED}


def listed(digest: dict[str, Any]) -> set[str]:
    """The event ids a digest lists (every one, while its groups hold no more than it shows)."""
    assert all(g["count"] == len(g["entries"]) for g in digest["groups"]), "more changes than the digest shows"
    return {entry["event_id"] for group in digest["groups"] for entry in group["entries"]}


def assert_one_digest_of(outcome: Outcome) -> dict[str, Any]:
    """The run sent one digest, and it lists exactly the events the run published."""
    (digest,) = outcome.digests
    assert listed(digest) == {e["event_id"] for e in outcome.events}
    return digest


def several_breaches(kn: World) -> None:
    """Operator quotas of 0 on two more companies: a run then publishes at least three breaches."""
    quotas = [
        {"vendor": "keepnet", "tenant_id": c["companyResourceId"], "metric": "monthly_users", "quota": 0}
        for c in kn.sim.default_companies[:2]
    ]
    kn.aws.put_rules("/usagewatch/rules", {"quotas": quotas})
    kn.h.env = kn.aws.environment("keepnet", secret_name=SECRET)


def test_state_not_stored_after_publishing_fails_the_run_and_resends_with_the_same_event_ids(kn: World) -> None:
    def refuse_alert_states(params: dict[str, Any], **kwargs: Any) -> None:
        if _alert_write(params, kn.aws.table_name):
            raise RuntimeError("simulated: alert state batch refused")

    with boto_hook("before-parameter-build.dynamodb.PutItem", refuse_alert_states):
        first = kn.h.run(at("06:00"))

    assert first.error is not None, "a run whose alert states were not stored must fail the invocation"
    result = first.account(ACCOUNT)
    assert result["status"] == "failed" and "alert states not stored" in result["error"]
    assert kn.h.run_record(ACCOUNT, at("06:00"))["status"] == "failed"
    sent = breaches(first.events)
    assert vendor_flagged(first.events) == kn.over_limit_ids() and sent
    assert_one_digest_of(first)  # the digest goes out before the states are written

    later = kn.h.run(at("12:00"))  # the next scheduled run computes the same transitions again

    assert later.error is None
    assert breaches(later.events) == sent, "a re-sent transition must carry the event id it was first sent with"
    assert listed(assert_one_digest_of(later)) == listed(first.digests[0]), "the re-sent changes are listed again"
    assert_clean_rerun_publishes_nothing(kn.h, at("18:00"))


def test_lambda_retry_after_unstored_state_resends_the_same_event_ids(kn: World) -> None:
    def refuse_alert_states(params: dict[str, Any], **kwargs: Any) -> None:
        if _alert_write(params, kn.aws.table_name):
            raise RuntimeError("simulated: alert state batch refused")

    with boto_hook("before-parameter-build.dynamodb.PutItem", refuse_alert_states):
        first = kn.h.run(at("06:00"))
    retry = kn.h.run(at("06:00"))  # Lambda's async retry: the same event, the same as_of

    assert first.error is not None and retry.error is None
    assert breaches(retry.events) == breaches(first.events)
    # The same changes re-sent by a retry of the same run: the same digest, with the same id.
    assert assert_one_digest_of(retry) == assert_one_digest_of(first)
    assert kn.h.run_record(ACCOUNT, at("06:00"))["status"] == "ok"


def test_a_collection_failure_re_sent_after_its_state_was_not_stored_keeps_its_event_id(kn: World) -> None:
    assert kn.h.run(at("06:00")).error is None
    victim = kn.sim.default_companies[0]
    victim["monthlyActiveUserCount"] = None  # that company fails; the others are read

    def refuse_alert_states(params: dict[str, Any], **kwargs: Any) -> None:
        if _alert_write(params, kn.aws.table_name):
            raise RuntimeError("simulated: alert state write refused")

    with boto_hook("before-parameter-build.dynamodb.PutItem", refuse_alert_states):
        first = kn.h.run(at("12:00"))
    later = kn.h.run(at("18:00"))

    def failed(events: list[dict[str, Any]]) -> dict[str, str]:
        return {e["tenant_id"]: e["event_id"] for e in events if e["event_type"] == "collection.failed"}

    assert first.error is not None and later.error is None
    assert list(failed(first.events)) == [victim["companyResourceId"]]
    assert failed(later.events) == failed(first.events), "the same failure, re-sent, keeps its event id"
    assert_clean_rerun_publishes_nothing(kn.h, at("21:00"))


def test_a_run_killed_after_publishing_some_alerts_is_digested_by_its_retry(kn: World) -> None:
    several_breaches(kn)

    class Killed(BaseException):
        """Lambda's timeout: the process is gone in the middle of the publishes."""

    calls = 0

    def die_on_the_second_publish(params: dict[str, Any], **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Killed()

    with boto_hook("before-parameter-build.sns.Publish", die_on_the_second_publish), pytest.raises(Killed):
        kn.h.run(at("06:00"))
    published = {e["alert_id"]: e["event_id"] for e in kn.aws.drain_events()}
    assert published, "some alerts went out before the kill"
    assert kn.aws.drain_digests() == [], "no digest: the run died before it"
    assert kn.h.store().open_alerts("keepnet", ACCOUNT) == {}, "no state stored: the run died before the writes"

    retry = kn.h.run(at("06:00"))  # Lambda's retry: the same as_of

    assert retry.error is None
    assert len(retry.events) >= 3
    again = {e["alert_id"]: e["event_id"] for e in retry.events}
    assert {a: again[a] for a in published} == published, "what went out before the kill is re-sent with its ids"
    digest = assert_one_digest_of(retry)
    assert set(published.values()) <= listed(digest), "the retry's digest lists what the killed attempt sent"
    assert_clean_rerun_publishes_nothing(kn.h, at("12:00"))


def test_a_refused_digest_leaves_its_changes_for_the_next_run_which_digests_them(kn: World) -> None:
    several_breaches(kn)

    def refuse_digests(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("MessageAttributes", {}).get("event_type", {}).get("StringValue") == "digest":
            raise RuntimeError("simulated: SNS refused the digest")

    with boto_hook("before-parameter-build.sns.Publish", refuse_digests):
        first = kn.h.run(at("06:00"))

    result = first.account(ACCOUNT)
    assert first.error is None and result["status"] == "partial" and result["publish_failures"] == 1
    assert first.digests == [] and len(first.events) >= 3
    assert not result["digest_sent"]
    assert kn.h.store().open_alerts("keepnet", ACCOUNT) == {}, "a change no digest listed is not stored"

    later = kn.h.run(at("12:00"))

    assert later.error is None
    assert {e["event_id"] for e in later.events} == {e["event_id"] for e in first.events}
    assert_one_digest_of(later)
    assert later.account(ACCOUNT)["digest_sent"]
    assert_clean_rerun_publishes_nothing(kn.h, at("18:00"))


def test_recollecting_a_closed_month_publishes_its_breaches_once(kn: World) -> None:
    tenant = kn.sim.default_companies[0]["companyResourceId"]
    kn.aws.put_rules(
        "/usagewatch/rules",
        {"quotas": [{"vendor": "keepnet", "tenant_id": tenant, "metric": "monthly_users", "quota": 0}]},
    )
    kn.h.env = kn.aws.environment("keepnet", secret_name=SECRET)

    def over_quota(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [
            (e["period"], e["event_id"])
            for e in events
            if e["event_type"] == BREACHED and e["rule"] == "over_quota" and e["tenant_id"] == tenant
        ]

    november = kn.h.run(at("06:00"))
    assert [p for p, _ in over_quota(november.events)] == [PERIOD]
    december = kn.h.run("2026-12-01T06:00:00Z")
    assert [p for p, _ in over_quota(december.events)] == ["2026-12"]

    for when in ("2026-12-02T06:00:00Z", "2026-12-02T18:00:00Z"):
        again = kn.h.run(when, {"period": PERIOD})
        assert again.error is None
        assert over_quota(again.events) == [], f"November's breach published again at {when}"
        back = kn.h.run(when.replace("06:00", "12:00").replace("18:00", "21:00"))
        assert over_quota(back.events) == []
    states = [s for s in kn.h.store().tenant_alerts("keepnet", ACCOUNT, tenant) if s.rule == "over_quota"]
    assert {s.period: s.status for s in states} == {PERIOD: "closed", "2026-12": "firing"}


def test_a_failed_store_read_fails_the_account_not_the_process(kn: World) -> None:
    def refuse(params: dict[str, Any], **kwargs: Any) -> None:
        if params.get("IndexName") == "gsi1":
            raise RuntimeError("simulated: Query throttled past retries")

    with boto_hook("before-parameter-build.dynamodb.Query", refuse):
        outcome = kn.h.run(at("06:00"))

    assert outcome.error is not None, "a raw ClientError must not escape past the account"
    result = outcome.account(ACCOUNT)
    assert result["status"] == "failed" and "DynamoDB read failed" in result["error"]
    record = kn.h.run_record(ACCOUNT, at("06:00"))
    assert record["status"] == "failed" and "DynamoDB read failed" in record["errors"][0]


def test_a_run_killed_midway_is_visibly_unfinished_and_the_next_run_repairs_it(
    kn: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usagewatch.pipeline import Pipeline

    class Killed(BaseException):
        """Lambda's timeout or OOM: the process is gone after the usage items, before totals and run record."""

    def killed(*args: Any, **kwargs: Any) -> None:
        raise Killed()

    with monkeypatch.context() as patch:
        patch.setattr(Pipeline, "_finish", killed)
        with pytest.raises(Killed):
            kn.h.run(at("06:00"))
    assert kn.h.stored(PERIOD).usage, "the kill came after the usage items were written"

    record = kn.h.run_record(ACCOUNT, at("06:00"))
    assert record["status"] == "running" and record["finished_at"] == ""
    kn.aws.drain_events()

    retry = kn.h.run(at("06:00"))

    assert retry.error is None
    assert kn.h.run_record(ACCOUNT, at("06:00"))["status"] == "ok"
    stored = kn.h.stored(PERIOD)
    assert stored.values() == kn.expected()
    for metric, total in stored.account_totals(ACCOUNT).items():
        assert total == sum(v for (a, _t, m), v in kn.expected().items() if m == metric and a == ACCOUNT), metric


@pytest.fixture
def two_accounts(aws: LocalAws, invoke: Invoke, clock: Any) -> Iterator[tuple[Harness, HookedKeepnet]]:
    companies = make_companies(4, seed=7, over_limit=0, unlimited=0, prefix="d")
    with HookedKeepnet(
        companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=2, latency=1.0
    ) as sim:
        assert isinstance(sim, HookedKeepnet)
        account = {"base_url": sim.url, "client_id": "msp", "client_secret": CLIENT_SECRET, "requests_per_second": 200}
        aws.put_secret(SECRET, [{"account_id": "slow", **account}, {"account_id": "late", **account}])
        yield Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET)), sim


@pytest.mark.realtime  # the Lambda deadline against a vendor answering in 1 s
def test_accounts_not_started_before_the_deadline_are_skipped_and_reported(
    two_accounts: tuple[Harness, HookedKeepnet], monkeypatch: pytest.MonkeyPatch, aws: LocalAws, clock: Any
) -> None:
    h, _sim = two_accounts
    for key, value in h.env.items():
        monkeypatch.setenv(key, value)
    clock.now = clock.now.replace(hour=6, minute=3)
    # 2 s left: a reserve of 0.2 s; the first account needs at least a token and two pages at 1 s a request:
    # its requests stop at the deadline (1.8 s), so it fails and the second one is not started.
    context = FakeLambdaContext(timeout_ms=2000)
    try:
        summary = load_app("keepnet").lambda_handler({"scheduled_time": at("06:00")}, context)
    except CollectionFailedError as exc:
        summary = exc.summary.to_dict()

    statuses = {a["account_id"]: a["status"] for a in summary["account_results"]}
    assert statuses == {"slow": "failed", "late": "skipped"}, statuses
    slow = next(a for a in summary["account_results"] if a["account_id"] == "slow")
    assert slow["error"].startswith("deadline"), slow["error"]
    assert summary["accounts_skipped"] == ["late"]
    record = h.run_record("late", at("06:00"))
    assert record["status"] == "skipped" and "deadline" in record["errors"][0]
    failed = [e for e in aws.drain_events() if e["event_type"] == "collection.failed"]
    assert sorted(e["account_id"] for e in failed) == ["late", "slow"]
    assert all("deadline" in e["error"] for e in failed)

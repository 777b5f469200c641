"""Property-based tests of the alert state machine (issue 5, "done when"): for any sequence of runs made of
observations, tenant and account failures, silences that come and go, rule changes and failed publishes,
the published events are exactly the transitions subscribers must hear about, and nothing more."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_alert_lifecycle import ACCOUNT, METRIC, T0, VENDOR, Driver, RunResult
from usagewatch.alerts import BREACHED, FAILED, RECOVERED, RESOLVED, Event, alert_id
from usagewatch.model import Period, Tenant, UsageRecord, Window, parse_utc
from usagewatch.rules import LADDER, RulesDocument, parse_rules_document
from usagewatch.stored import ACCOUNT_WIDE, AlertState

TENANTS = ("t1", "t2", "u1")
METRICS = (METRIC, "enterprise_agents")
SILENCE_POOL: tuple[dict[str, str], ...] = (
    {"tenant_id": "t*"},
    {"rule": "quota_utilization"},
    {"rule": "over_quota", "metric": "cloud_*"},
    {"tenant_id": "u1", "rule": "collection"},
    {"tenant_id": "*", "rule": "collection"},
    {"vendor": "thousandeyes", "rule": "below_minimum_commitment"},
)


@dataclass(frozen=True)
class Obs:
    value: int
    quota: int | None
    projected: int | None
    limit_exceeded: bool | None
    minimum: int | None


@dataclass(frozen=True)
class Run:
    step_hours: int
    tenants: dict[str, str | tuple[Obs, ...]]  # "failed", "absent", or one observation per metric
    account_failed: bool
    document: dict[str, Any]
    publish_failures: tuple[bool, ...]
    retry_at_once: bool


observation = st.builds(
    Obs,
    value=st.integers(0, 12),
    quota=st.sampled_from([None, 0, 5, 10]),
    projected=st.sampled_from([None, 0, 8, 11, 15]),
    limit_exceeded=st.sampled_from([None, False, True]),
    minimum=st.sampled_from([None, None, 3, 9]),
)
tenant_outcome = st.one_of(
    st.tuples(*[observation] * len(METRICS)),
    st.tuples(*[observation] * len(METRICS)),
    st.sampled_from(["failed", "absent"]),
)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A rules document as an operator would write it, JSON and all."""
    rules: dict[str, Any] = {}
    for name in draw(st.sets(st.sampled_from(("vendor_limit_exceeded", *LADDER[1:], "below_minimum_commitment")))):
        rules[name] = {"enabled": draw(st.booleans())}
    rules.setdefault("quota_utilization", {})["threshold"] = draw(st.sampled_from([0.5, 0.9, 1.0]))
    rules.setdefault("projected_over_quota", {})["min_period_elapsed"] = draw(st.sampled_from([0.0, 0.3, 0.8]))
    rules.setdefault("below_minimum_commitment", {})["days_before_period_end"] = draw(st.sampled_from([3, 31]))
    silences = []
    for index in draw(st.sets(st.integers(0, len(SILENCE_POOL) - 1), max_size=3)):
        # until: relative to the start, so that time passing ends silences in the middle of a sequence
        until = T0 + timedelta(hours=draw(st.sampled_from([6, 30, 200, 2000])))
        silences.append({**SILENCE_POOL[index], "until": until.strftime("%Y-%m-%dT%H:%M:%SZ")})
    quotas = []
    if draw(st.booleans()):
        quotas.append({"vendor": VENDOR, "tenant_id": "t2", "metric": METRIC, "quota": draw(st.sampled_from([4, 20]))})
    return {
        "rules": rules,
        "silences": silences,
        "quotas": quotas,
        "repeat_after_hours": draw(st.sampled_from([0, 0, 12, 24])),
        "notify_resolved": draw(st.booleans()),
    }


runs = st.builds(
    Run,
    step_hours=st.sampled_from([1, 6, 12, 24, 24 * 7]),
    tenants=st.fixed_dictionaries({t: tenant_outcome for t in TENANTS}),
    account_failed=st.integers(0, 9).map(lambda n: n == 9),
    document=documents(),
    publish_failures=st.lists(st.integers(0, 4).map(lambda n: n == 4), min_size=1, max_size=5).map(tuple),
    retry_at_once=st.booleans(),
)


def records_for(run: Run, now: datetime) -> list[UsageRecord]:
    window = Window.month(Period.of(now))
    out = []
    for tenant, outcome in run.tenants.items():
        if isinstance(outcome, str):
            continue
        for metric, o in zip(METRICS, outcome, strict=True):
            out.append(
                UsageRecord(
                    vendor=VENDOR,
                    account_id=ACCOUNT,
                    tenant=Tenant(tenant, f"Tenant {tenant}"),
                    metric=metric,
                    value=o.value,
                    unit="units",
                    window=window,
                    quota=o.quota,
                    projected=o.projected,
                    minimum=o.minimum,
                    limit_exceeded=o.limit_exceeded,
                )
            )
    return out


def execute(driver: Driver, run: Run, now: datetime, *, with_failures: bool = True) -> RunResult:
    records = records_for(run, now)
    failures = iter(run.publish_failures * 100)
    if run.account_failed:
        return driver.run(
            now, account_error="vendor API down", publish_fails=lambda _e: with_failures and next(failures)
        )
    ok = [t for t, outcome in run.tenants.items() if not isinstance(outcome, str)]
    failed = {t: f"tenant {t}: HTTP 500" for t, outcome in run.tenants.items() if outcome == "failed"}
    return driver.run(
        now,
        records,
        failed=failed,
        ok_tenants=ok,
        periods=[str(Period.of(now))],
        publish_fails=lambda _e: with_failures and next(failures),
    )


def silenced(document: RulesDocument, state: AlertState, now: datetime) -> bool:
    return document.silenced(
        vendor=state.vendor,
        account_id=state.account_id,
        tenant_id=state.tenant_id,
        metric=state.metric or "collection",
        rule=state.rule,
        now=now,
    )


class Checker:
    """What subscribers have heard, per alert_id, across the whole sequence."""

    def __init__(self) -> None:
        self.announced: set[str] = set()  # alert_ids whose current episode subscribers were told about
        self.left_firing: set[str] = set()  # alert_ids whose stored state left `firing` since their last breach

    def check_run(self, result: RunResult) -> None:
        now = result.now
        document = result.document
        finding_ids = {
            alert_id(
                f.record.vendor, f.record.account_id, f.record.tenant_id, f.record.metric, f.rule, str(f.record.period)
            )
            for f in result.findings
        }
        unavailable = set(result.failed_tenants) | ({ACCOUNT_WIDE} if result.account_error else set())
        rung_now = {
            (f.record.tenant_id, f.record.metric, str(f.record.period)): LADDER.index(f.rule)
            for f in result.findings
            if f.rule in LADDER
        }

        def higher_rung_holds(state: AlertState) -> bool:
            rung = rung_now.get((state.tenant_id, state.metric, state.period))
            return state.rule in LADDER and rung is not None and rung < LADDER.index(state.rule)

        for applied in result.applied:
            before, state, event = applied.before, applied.transition.state, applied.transition.event
            was_firing = before is not None and before.status == "firing"

            # (3) nothing resolves for a tenant (or an account) that could not be read in this run
            if was_firing and state.status != "firing":
                if result.account_error is not None:
                    raise AssertionError(f"a state changed during an account-wide failure: {state}")
                if state.tenant_id in unavailable:
                    assert state.status == "closed" and state.reason == "period ended", state
                if state.status == "resolved" and state.tenant_id != ACCOUNT_WIDE:
                    assert state.tenant_id in result.ok_tenants, state
                # closing without a word: the period ended, or the record climbed the ladder
                if state.status == "closed":
                    assert state.reason == "period ended" or higher_rung_holds(state), state
                    if state.reason == "period ended":
                        assert state.period < str(Period.of(now)), state

            # (1) every event is one of the transitions subscribers hear about, and nothing else is
            if event is None:
                assert state.published == (before.published if was_firing and before else False) or (
                    state.status != "firing"
                ), (before, state)
                if was_firing and before is not None and before.published and state.status == "resolved":
                    assert not state.is_collection, "a published failure recovered without collection.recovered"
                    assert not document.notify_resolved, "a published alert resolved without an event"
                continue
            assert event["alert_id"] == state.alert_id
            assert event["vendor"] == state.vendor and event["account_id"] == state.account_id
            assert event.get("tenant_id", ACCOUNT_WIDE) == state.tenant_id
            assert event["observed_at"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")
            kind = event["event_type"]
            if kind in (BREACHED, FAILED):
                assert state.status == "firing" and state.published
                assert not silenced(document, state, now), "published while silenced"
                if kind == BREACHED:
                    assert state.alert_id in finding_ids, "a breach for a condition that does not hold now"
                    assert event["rule"] == state.rule and event["period"] == state.period
                if not was_firing:
                    assert "repeat" not in event and "delayed_by_silence" not in event
                    assert state.since == event["observed_at"]
                elif before is not None and not before.published:
                    assert event["delayed_by_silence"] is True and "repeat" not in event
                else:
                    assert before is not None and kind == BREACHED and event["repeat"] is True
                    hours = document.repeat_after_hours
                    last = parse_utc(before.last_published_at or before.since)
                    assert hours > 0 and now - last >= timedelta(hours=hours)
            elif kind in (RESOLVED, RECOVERED):
                assert was_firing and before is not None and before.published, (before, state)
                assert state.status == "resolved"
                assert (kind == RECOVERED) == state.is_collection
                if kind == RESOLVED:
                    assert document.notify_resolved
                    assert state.alert_id not in finding_ids, "resolved while the condition holds"
                    assert not higher_rung_holds(state), "an escalation announced as a resolve"
                    assert state.tenant_id in result.ok_tenants
            else:
                raise AssertionError(f"unknown event type {kind}")

        # (2) never two breaches for one alert_id without a resolve/close or an allowed repeat in between
        for applied in result.applied:
            state, event = applied.transition.state, applied.transition.event
            key = state.alert_id
            if applied.stored and state.status != "firing":
                self.left_firing.add(key)
                self.announced.discard(key)
            if not applied.delivered or event is None or event["event_type"] not in (BREACHED, FAILED):
                continue
            if event.get("repeat"):
                assert key in self.announced, "a repeat of an alert nobody was told about"
                continue
            assert key not in self.announced or key in self.left_firing, f"second breach for {key} without a resolve"
            self.announced.add(key)
            self.left_firing.discard(key)


def ladder_firing(driver: Driver) -> dict[tuple[str, str, str], list[str]]:
    rungs: dict[tuple[str, str, str], list[str]] = {}
    for state in driver.open_states().values():
        if state.rule in LADDER:
            rungs.setdefault((state.tenant_id, state.metric, state.period), []).append(state.rule)
    return rungs


@settings(max_examples=100, deadline=None)  # each example a sequence of runs: 100 cover every kind of step
@given(st.lists(runs, min_size=1, max_size=12))
def test_published_events_are_exactly_the_transitions(sequence: list[Run]) -> None:
    driver = Driver()
    checker = Checker()
    now = T0
    for run in sequence:
        now += timedelta(hours=run.step_hours)
        driver.document = parse_rules_document(json.dumps(run.document))
        result = execute(driver, run, now)
        checker.check_run(result)

        # (6) nothing is kept from subscribers for longer than a silence: once a run got everything out,
        # every alert it saw firing was published, unless it is silenced right now.
        if not result.lost:
            for state in driver.open_states().values():
                if state.is_collection:
                    seen = state.tenant_id in result.failed_tenants or (
                        state.tenant_id == ACCOUNT_WIDE and result.account_error is not None
                    )
                else:
                    seen = _finding_for(result, state)  # its condition holds in this run
                if seen:
                    assert state.published or silenced(driver.document, state, now), state

        # (7) a new period closes the old one: after a successful account read, nothing of an earlier period fires
        if result.account_error is None:
            current = str(Period.of(now))
            assert all(s.period >= current for s in driver.open_states().values() if not s.is_collection)

        # (4) one rung of the ladder firing per (tenant, metric, period) once a run got everything out
        if not result.lost and result.account_error is None:
            for (tenant, metric, period), rules in ladder_firing(driver).items():
                if tenant in result.ok_tenants:
                    assert len(rules) == 1, (tenant, metric, period, rules)

        # (5) a retried invocation (same inputs, same `now`) delivers exactly what failed, with the same
        # event ids, and a further retry changes nothing at all.
        retry = driver.copy()
        again = execute(retry, run, now, with_failures=False)
        assert sorted(e["event_id"] for e in again.events) == sorted(e["event_id"] for e in result.lost)
        checker_copy = Checker()
        checker_copy.announced, checker_copy.left_firing = set(checker.announced), set(checker.left_firing)
        checker_copy.check_run(again)
        third = execute(retry, run, now, with_failures=False)
        assert third.applied == []
        if run.retry_at_once:
            driver, checker = retry, checker_copy


def _finding_for(result: RunResult, state: AlertState) -> bool:
    return any(
        f.rule == state.rule
        and (f.record.tenant_id, f.record.metric, str(f.record.period)) == (state.tenant_id, state.metric, state.period)
        for f in result.findings
    )


def _lost_events_retry(first: list[Event], later: list[Event]) -> bool:
    return {(e["alert_id"], e["event_type"]) for e in first} <= {(e["alert_id"], e["event_type"]) for e in later}


@settings(max_examples=100, deadline=None)  # each example a sequence of runs: 100 cover every kind of step
@given(st.lists(runs, min_size=2, max_size=8))
def test_a_lost_event_goes_out_at_the_next_run_that_sees_the_same_thing(sequence: list[Run]) -> None:
    """At least once: whatever failed to publish is published by the next run that observes the same data
    (unless that run's rules say the change no longer happens, e.g. the alert is silenced)."""
    driver = Driver()
    now = T0
    for run in sequence:
        now += timedelta(hours=run.step_hours)
        driver.document = parse_rules_document(json.dumps(run.document))
        result = execute(driver, run, now)
        if result.lost and Period.of(now) == Period.of(now + timedelta(hours=1)):
            # same observations, same rules, an hour later, nothing failing
            again = execute(driver, run, now + timedelta(hours=1), with_failures=False)
            late_silences = [
                e
                for e in result.lost
                if driver.document.silenced(
                    vendor=e["vendor"],
                    account_id=e["account_id"],
                    tenant_id=e.get("tenant_id", ACCOUNT_WIDE),
                    metric=e.get("metric") or "collection",
                    rule=e.get("rule", "collection"),
                    now=now + timedelta(hours=1),
                )
                and e["event_type"] in (BREACHED, FAILED)
            ]
            expected = [e for e in result.lost if e not in late_silences]
            assert _lost_events_retry(expected, again.events), (expected, again.events)
            now += timedelta(hours=1)

"""The alert lifecycle run by run (docs/alerts.md section 2; issue 5), through a tiny in-memory driver that
computes transitions with `alerts.advance` and applies them with the pipeline's dispatcher."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from usagewatch.alerts import (
    BREACHED,
    FAILED,
    RECOVERED,
    RESOLVED,
    Event,
    Observed,
    TenantFailureInfo,
    Transition,
    advance,
    alert_id,
)
from usagewatch.dispatch import Dispatcher
from usagewatch.errors import PublishError
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.rules import DEFAULT_RULES, Finding, RulesDocument, evaluate, parse_rules_document
from usagewatch.stored import ACCOUNT_WIDE, COLLECTION_RULE, AlertState

VENDOR = "thousandeyes"
ACCOUNT = "te-main"
METRIC = "cloud_units"
NOV = Period(2026, 11)
T0 = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def rec(
    tenant: str = "t1",
    value: float = 50,
    quota: float | None = 100,
    *,
    projected: float | None = None,
    limit_exceeded: bool | None = None,
    minimum: float | None = None,
    metric: str = METRIC,
    period: Period = NOV,
) -> UsageRecord:
    return UsageRecord(
        vendor=VENDOR,
        account_id=ACCOUNT,
        tenant=Tenant(tenant, f"Tenant {tenant}"),
        metric=metric,
        value=value,
        unit="units",
        window=Window.month(period),
        quota=quota,
        projected=projected,
        minimum=minimum,
        limit_exceeded=limit_exceeded,
    )


def aid(rule: str, tenant: str = "t1", period: Period = NOV, metric: str = METRIC) -> str:
    return alert_id(VENDOR, ACCOUNT, tenant, metric, rule, str(period))


def failure_id(tenant: str = "t1") -> str:
    return alert_id(VENDOR, ACCOUNT, tenant, "", COLLECTION_RULE, "")


def doc(**fields: Any) -> RulesDocument:
    return parse_rules_document(json.dumps(fields))


@dataclass(frozen=True)
class Applied:
    """One transition as the driver applied it: the state before, the transition, and what became of it."""

    before: AlertState | None
    transition: Transition
    delivered: bool  # its event was published (False: no event, or the publish failed)
    stored: bool


@dataclass
class RunResult:
    now: datetime
    document: RulesDocument
    findings: list[Finding]
    ok_tenants: frozenset[str]
    failed_tenants: frozenset[str]
    account_error: str | None
    applied: list[Applied]

    @property
    def events(self) -> list[Event]:
        return [a.transition.event for a in self.applied if a.delivered and a.transition.event is not None]

    @property
    def lost(self) -> list[Event]:
        """Events whose publish failed (their state was not stored)."""
        return [a.transition.event for a in self.applied if not a.stored and a.transition.event is not None]


@dataclass
class _Publisher:
    fails: Callable[[Event], bool]

    def publish(self, event: Event) -> str:
        if self.fails(event):
            raise PublishError("refused by the test")
        return "message-id"


@dataclass
class _Alerts:
    """The alert table, in memory: every write lands."""

    states: dict[str, AlertState]

    def put_alert(self, state: AlertState) -> bool:
        self.states[state.alert_id] = state
        return True


@dataclass
class Driver:
    """The pipeline's alert half for one account, in memory."""

    document: RulesDocument = DEFAULT_RULES
    states: dict[str, AlertState] = field(default_factory=dict)
    log: list[RunResult] = field(default_factory=list)

    def open_states(self) -> dict[str, AlertState]:
        return {k: s for k, s in self.states.items() if s.status == "firing"}

    def copy(self) -> Driver:
        return Driver(self.document, dict(self.states), list(self.log))

    def compute(
        self,
        now: datetime,
        records: Iterable[UsageRecord] = (),
        *,
        failed: Mapping[str, str] | None = None,
        account_error: str | None = None,
        ok_tenants: Iterable[str] | None = None,
        periods: Iterable[str] | None = None,
    ) -> tuple[list[Finding], frozenset[str], list[Transition]]:
        records = list(records)
        failed = dict(failed or {})
        findings = [f for r in records for f in evaluate(r, self.document, now)]
        ok = frozenset(ok_tenants if ok_tenants is not None else {r.tenant_id for r in records})
        seen = set(periods if periods is not None else {str(r.period) for r in records}) or {str(Period.of(now))}
        transitions = advance(
            self.open_states(),
            vendor=VENDOR,
            account_id=ACCOUNT,
            document=self.document,
            now=now,
            observed=Observed(ok, frozenset(seen)),
            findings=findings,
            account_error=account_error,
            tenant_failures={t: TenantFailureInfo(f"Tenant {t}", e) for t, e in failed.items()},
            ok_tenants=ok,
            readings={(r.tenant_id, r.metric, str(r.period)): r for r in records},
        )
        return findings, ok, transitions

    def run(
        self,
        now: datetime,
        records: Iterable[UsageRecord] = (),
        *,
        failed: Mapping[str, str] | None = None,
        account_error: str | None = None,
        ok_tenants: Iterable[str] | None = None,
        periods: Iterable[str] | None = None,
        publish_fails: Callable[[Event], bool] = lambda _event: False,
    ) -> RunResult:
        findings, ok, transitions = self.compute(
            now, records, failed=failed, account_error=account_error, ok_tenants=ok_tenants, periods=periods
        )
        before = {t.state.alert_id: self.states.get(t.state.alert_id) for t in transitions}
        dispatched = Dispatcher(_Publisher(publish_fails), _Alerts(self.states), workers=1).apply(transitions)
        applied = [
            Applied(before[d.transition.state.alert_id], d.transition, delivered=d.published, stored=d.stored)
            for d in dispatched.items
        ]
        result = RunResult(now, self.document, findings, ok, frozenset(failed or {}), account_error, applied)
        self.log.append(result)
        return result

    @property
    def delivered(self) -> list[Event]:
        return [e for r in self.log for e in r.events]


def kinds(events: Iterable[Event]) -> list[tuple[str, str | None]]:
    return [(e["event_type"], e.get("rule")) for e in events]


def firing(driver: Driver) -> set[str]:
    return set(driver.open_states())


# --- breach, quiet while firing, repeat ------------------------------------------------------------


def test_breach_is_published_once_and_nothing_while_it_keeps_firing() -> None:
    d = Driver()
    first = d.run(T0, [rec(value=120)])
    assert kinds(first.events) == [(BREACHED, "over_quota")]
    event = first.events[0]
    assert event["alert_id"] == aid("over_quota")
    assert "repeat" not in event and "delayed_by_silence" not in event
    state = d.states[aid("over_quota")]
    assert (state.status, state.published, state.since) == ("firing", True, "2026-11-10T06:00:00Z")
    for hours in (1, 6, 24, 24 * 10):
        assert d.run(T0 + hours * HOUR, [rec(value=130)]).events == []
    assert d.states[aid("over_quota")].since == "2026-11-10T06:00:00Z"


def test_repeat_after_hours_marks_the_event_as_a_repeat() -> None:
    d = Driver(doc(repeat_after_hours=24))
    assert kinds(d.run(T0, [rec(value=120)]).events) == [(BREACHED, "over_quota")]
    assert d.run(T0 + 23 * HOUR, [rec(value=120)]).events == []
    repeat = d.run(T0 + 24 * HOUR, [rec(value=125)]).events
    assert kinds(repeat) == [(BREACHED, "over_quota")]
    assert repeat[0]["repeat"] is True
    assert repeat[0]["repeat_count"] == 1
    assert repeat[0]["firing_since"] == "2026-11-10T06:00:00Z"
    assert repeat[0]["value"] == 125
    # the interval counts from the last publication, not from the start
    assert d.run(T0 + 47 * HOUR, [rec(value=120)]).events == []
    second = d.run(T0 + 48 * HOUR, [rec(value=120)]).events
    assert [(e["repeat"], e["repeat_count"]) for e in second] == [(True, 2)]
    assert second[0]["event_id"] != repeat[0]["event_id"]


def test_no_repeat_when_repeat_after_hours_is_zero() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    assert all(d.run(T0 + n * DAY, [rec(value=120)]).events == [] for n in range(1, 20))


def test_fractional_repeat_hours() -> None:
    d = Driver(doc(repeat_after_hours=0.5))
    d.run(T0, [rec(value=120)])
    assert d.run(T0 + timedelta(minutes=29), [rec(value=120)]).events == []
    assert len(d.run(T0 + timedelta(minutes=30), [rec(value=120)]).events) == 1


def test_a_new_episode_after_a_resolve_is_a_fresh_breach() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    assert kinds(d.run(T0 + DAY, [rec(value=50)]).events) == [(RESOLVED, "over_quota")]
    again = d.run(T0 + 2 * DAY, [rec(value=120)]).events
    assert kinds(again) == [(BREACHED, "over_quota")]
    assert "repeat" not in again[0]
    assert d.states[aid("over_quota")].since == "2026-11-12T06:00:00Z"


# --- escalation and de-escalation ----------------------------------------------------------------


def test_escalation_publishes_one_breach_for_the_higher_and_closes_the_lower_silently() -> None:
    d = Driver()
    assert kinds(d.run(T0, [rec(value=95)]).events) == [(BREACHED, "quota_utilization")]
    up = d.run(T0 + DAY, [rec(value=120)])
    assert kinds(up.events) == [(BREACHED, "over_quota")]
    assert up.events[0]["escalated_from"] == "quota_utilization"
    lower = d.states[aid("quota_utilization")]
    assert lower.status == "closed"
    assert lower.reason == "escalated to over_quota"
    assert firing(d) == {aid("over_quota")}
    assert d.run(T0 + 2 * DAY, [rec(value=120)]).events == []


def test_escalation_can_skip_rungs() -> None:
    d = Driver()
    d.run(T0, [rec(value=95)])
    up = d.run(T0 + DAY, [rec(value=95, limit_exceeded=True)])
    assert kinds(up.events) == [(BREACHED, "vendor_limit_exceeded")]
    assert up.events[0]["escalated_from"] == "quota_utilization"
    assert firing(d) == {aid("vendor_limit_exceeded")}


def test_de_escalation_resolves_the_higher_and_opens_the_lower() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    down = d.run(T0 + DAY, [rec(value=95)])
    assert sorted(kinds(down.events)) == [(BREACHED, "quota_utilization"), (RESOLVED, "over_quota")]
    assert firing(d) == {aid("quota_utilization")}
    assert d.states[aid("over_quota")].status == "resolved"
    assert "escalated_from" not in next(e for e in down.events if e["event_type"] == BREACHED)
    # and all the way down
    assert kinds(d.run(T0 + 2 * DAY, [rec(value=10)]).events) == [(RESOLVED, "quota_utilization")]
    assert firing(d) == set()


def test_up_and_down_the_ladder_keeps_one_rung_firing() -> None:
    d = Driver()
    path = [95, 120, 95, 120, 10, 120]
    expected = [
        [(BREACHED, "quota_utilization")],
        [(BREACHED, "over_quota")],
        [(BREACHED, "quota_utilization"), (RESOLVED, "over_quota")],
        [(BREACHED, "over_quota")],
        [(RESOLVED, "over_quota")],
        [(BREACHED, "over_quota")],
    ]
    for n, (value, want) in enumerate(zip(path, expected, strict=True)):
        assert sorted(kinds(d.run(T0 + n * DAY, [rec(value=value)]).events)) == sorted(want)
        assert len(firing(d)) == 1 or value == 10


def test_the_ladder_walk_shown_in_docs_alerts_md() -> None:
    d = Driver(doc(quotas=[{"vendor": VENDOR, "tenant_id": "t1", "metric": METRIC, "quota": 50}]))
    walk = [
        (46, [(BREACHED, "quota_utilization")]),
        (57, [(BREACHED, "over_quota")]),
        (47, [(BREACHED, "quota_utilization"), (RESOLVED, "over_quota")]),
        (20, [(RESOLVED, "quota_utilization")]),
    ]
    for n, (value, want) in enumerate(walk):
        assert sorted(kinds(d.run(T0 + n * DAY, [rec(value=value, quota=None)]).events)) == want
    assert d.states[aid("quota_utilization")].since == utc(T0 + 2 * DAY)


def utc(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_below_minimum_is_its_own_alert_next_to_the_ladder() -> None:
    d = Driver()
    late = NOV.end - DAY
    out = d.run(late, [rec(value=120, minimum=500)])
    assert sorted(kinds(out.events)) == [(BREACHED, "below_minimum_commitment"), (BREACHED, "over_quota")]
    out = d.run(late + HOUR, [rec(value=95, minimum=500)])
    assert sorted(kinds(out.events)) == [(BREACHED, "quota_utilization"), (RESOLVED, "over_quota")]
    assert d.states[aid("below_minimum_commitment")].status == "firing"


# --- resolving only on what was observed -----------------------------------------------------------


def test_resolve_needs_the_tenant_and_the_period_observed() -> None:
    d = Driver()
    d.run(T0, [rec("t1", value=120), rec("t2", value=120)])
    # t1 not in this run at all (neither read nor failed): nothing happens to it
    out = d.run(T0 + DAY, [rec("t2", value=120)])
    assert out.events == []
    assert aid("over_quota", "t1") in firing(d)
    # t1 observed, but only in another (earlier) period: nothing resolves for November
    out = d.run(T0 + 2 * DAY, [rec("t1", value=1, period=Period(2026, 10))], periods=["2026-10"])
    assert out.events == []
    assert aid("over_quota", "t1") in firing(d)
    # t1 observed in November without the condition: resolved
    out = d.run(T0 + 3 * DAY, [rec("t1", value=1), rec("t2", value=120)])
    assert kinds(out.events) == [(RESOLVED, "over_quota")]
    assert out.events[0]["tenant_id"] == "t1"


def test_a_failed_tenant_never_resolves_and_its_failure_is_announced_once() -> None:
    d = Driver()
    d.run(T0, [rec("t1", value=120), rec("t2", value=120)])
    out = d.run(T0 + DAY, [rec("t2", value=50)], failed={"t1": "HTTP 500 from /usage"})
    assert sorted(kinds(out.events)) == [(FAILED, None), (RESOLVED, "over_quota")]
    assert {e["tenant_id"] for e in out.events} == {"t1", "t2"}
    failed = next(e for e in out.events if e["event_type"] == FAILED)
    assert failed["error"] == "HTTP 500 from /usage"
    assert failed["severity"] == "warning"
    assert aid("over_quota", "t1") in firing(d)
    # still failing: no second collection.failed, still nothing resolved
    assert d.run(T0 + 2 * DAY, [rec("t2", value=50)], failed={"t1": "HTTP 500 again"}).events == []
    assert aid("over_quota", "t1") in firing(d)
    # read again: recovered once, and now the threshold can resolve
    back = d.run(T0 + 3 * DAY, [rec("t1", value=50), rec("t2", value=50)])
    assert sorted(kinds(back.events)) == [(RECOVERED, None), (RESOLVED, "over_quota")]
    recovered = next(e for e in back.events if e["event_type"] == RECOVERED)
    assert recovered["failing_since"] == "2026-11-11T06:00:00Z"
    assert d.states[failure_id("t1")].status == "resolved"
    assert d.run(T0 + 4 * DAY, [rec("t1", value=50), rec("t2", value=50)]).events == []


def test_an_account_wide_failure_resolves_nothing_and_is_announced_once() -> None:
    d = Driver()
    d.run(T0, [rec("t1", value=120), rec("t2", value=95)])
    before = dict(d.states)
    out = d.run(T0 + DAY, account_error="credential refused (HTTP 401)")
    assert kinds(out.events) == [(FAILED, None)]
    event = out.events[0]
    assert event["severity"] == "critical"
    assert "tenant_id" not in event
    assert event["error"] == "credential refused (HTTP 401)"
    assert d.states[failure_id(ACCOUNT_WIDE)].tenant_id == ACCOUNT_WIDE
    assert {k: v for k, v in d.states.items() if k != failure_id(ACCOUNT_WIDE)} == before
    assert d.run(T0 + 2 * DAY, account_error="credential refused (HTTP 401)").events == []
    back = d.run(T0 + 3 * DAY, [rec("t1", value=120), rec("t2", value=10)])
    assert sorted(kinds(back.events)) == [(RECOVERED, None), (RESOLVED, "quota_utilization")]
    assert "tenant_id" not in next(e for e in back.events if e["event_type"] == RECOVERED)


def test_tenant_and_account_failures_are_separate_alerts() -> None:
    d = Driver()
    assert kinds(d.run(T0, [rec("t2")], failed={"t1": "boom"}).events) == [(FAILED, None)]
    # the whole account fails: one account-wide failure; t1's failure stays open, untouched
    out = d.run(T0 + DAY, account_error="listing broken")
    assert [e.get("tenant_id", "*") for e in out.events] == ["*"]
    assert firing(d) == {failure_id("t1"), failure_id(ACCOUNT_WIDE)}
    # the account reads again but t1 still fails: the account recovers, t1 is still failing (no new event)
    out = d.run(T0 + 2 * DAY, [rec("t2")], failed={"t1": "boom"})
    assert kinds(out.events) == [(RECOVERED, None)]
    assert "tenant_id" not in out.events[0]
    assert firing(d) == {failure_id("t1")}
    out = d.run(T0 + 3 * DAY, [rec("t1"), rec("t2")])
    assert [(e["event_type"], e["tenant_id"]) for e in out.events] == [(RECOVERED, "t1")]


def test_a_tenant_read_without_records_still_recovers_and_resolves() -> None:
    d = Driver()
    d.run(T0, [rec("t1", value=120)])
    d.run(T0 + DAY, [], failed={"t1": "boom"}, periods=["2026-11"])
    out = d.run(T0 + 2 * DAY, [], ok_tenants=["t1"], periods=["2026-11"])
    assert sorted(kinds(out.events)) == [(RECOVERED, None), (RESOLVED, "over_quota")]


# --- new period -----------------------------------------------------------------------------------


def test_a_new_period_closes_the_old_periods_alerts_silently() -> None:
    d = Driver()
    d.run(T0, [rec("t1", value=120), rec("t2", value=95)], failed={"t3": "boom"})
    d.states[aid("over_quota", "t3")] = AlertState(  # t3 fired in November before it started failing
        alert_id=aid("over_quota", "t3"),
        vendor=VENDOR,
        account_id=ACCOUNT,
        tenant_id="t3",
        tenant_name="Tenant t3",
        metric=METRIC,
        rule="over_quota",
        period="2026-11",
        status="firing",
        severity="critical",
        published=True,
        since="2026-11-09T06:00:00Z",
        updated_at="2026-11-09T06:00:00Z",
    )
    dec = Period(2026, 12)
    out = d.run(datetime(2026, 12, 1, 6, tzinfo=UTC), [rec("t1", value=120, period=dec), rec("t2", period=dec)])
    # December's breach for t1 is a new alert; November's alerts close without a word, t3's too
    assert kinds(out.events) == [(BREACHED, "over_quota")]
    assert out.events[0]["alert_id"] == aid("over_quota", "t1", dec) != aid("over_quota", "t1")
    for key in (aid("over_quota", "t1"), aid("quota_utilization", "t2"), aid("over_quota", "t3")):
        assert (d.states[key].status, d.states[key].reason) == ("closed", "period ended")
    assert firing(d) == {aid("over_quota", "t1", dec), failure_id("t3")}


def test_an_old_period_stays_open_until_a_later_period_is_observed() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    # a run in December that could not read anything keeps November open
    d.run(datetime(2026, 12, 1, 6, tzinfo=UTC), account_error="down")
    assert aid("over_quota") in firing(d)


# --- silences -------------------------------------------------------------------------------------


def silence(until: str = "2026-11-15", **fields: str) -> dict[str, str]:
    return {"until": until, **fields}


def test_a_silenced_alert_keeps_its_state_and_is_published_when_the_silence_ends() -> None:
    d = Driver(doc(silences=[silence("2026-11-15", tenant_id="t*", rule="*", reason="renewal pending")]))
    out = d.run(T0, [rec("t1", value=120), rec("x1", value=120)])
    assert [e["tenant_id"] for e in out.events] == ["x1"]  # t1 matches the wildcard, x1 does not
    state = d.states[aid("over_quota")]
    assert (state.status, state.published, state.last_published_at) == ("firing", False, None)
    assert d.run(T0 + 2 * DAY, [rec("t1", value=120), rec("x1", value=120)]).events == []
    # the silence covers the whole of 2026-11-15 UTC; the first run after it publishes the breach
    assert d.run(datetime(2026, 11, 15, 23, 59, tzinfo=UTC), [rec("t1", value=130)]).events == []
    late = d.run(datetime(2026, 11, 16, 0, 1, tzinfo=UTC), [rec("t1", value=140)]).events
    assert kinds(late) == [(BREACHED, "over_quota")]
    assert late[0]["delayed_by_silence"] is True
    assert late[0]["value"] == 140
    assert "repeat" not in late[0]
    assert d.states[aid("over_quota")].since == "2026-11-10T06:00:00Z"
    assert d.states[aid("over_quota")].published is True
    assert d.run(datetime(2026, 11, 17, tzinfo=UTC), [rec("t1", value=140)]).events == []


def test_resolving_an_alert_that_was_never_published_is_silent() -> None:
    d = Driver(doc(silences=[silence(tenant_id="t1")]))
    d.run(T0, [rec(value=120)])
    out = d.run(T0 + DAY, [rec(value=10)])
    assert out.events == []
    assert d.states[aid("over_quota")].status == "resolved"
    # after the silence nothing is left to announce
    assert d.run(datetime(2026, 11, 20, tzinfo=UTC), [rec(value=10)]).events == []


def test_a_silence_that_starts_while_firing_stops_repeats() -> None:
    d = Driver(doc(repeat_after_hours=1))
    d.run(T0, [rec(value=120)])
    d.document = doc(repeat_after_hours=1, silences=[silence(rule="over_quota")])
    assert d.run(T0 + 5 * HOUR, [rec(value=120)]).events == []
    assert d.run(datetime(2026, 11, 16, tzinfo=UTC), [rec(value=120)]).events[0]["repeat"] is True


def test_a_silence_on_one_rule_does_not_hide_the_escalation() -> None:
    d = Driver(doc(silences=[silence(rule="quota_utilization", metric="cloud_*")]))
    assert d.run(T0, [rec(value=95)]).events == []
    up = d.run(T0 + HOUR, [rec(value=120)]).events
    assert kinds(up) == [(BREACHED, "over_quota")]
    assert d.states[aid("quota_utilization")].status == "closed"


def test_silences_match_on_vendor_account_and_metric() -> None:
    for fields, hidden in (
        ({"vendor": "thousandeyes"}, True),
        ({"vendor": "keepnet"}, False),
        ({"account_id": "te-*"}, True),
        ({"account_id": "other"}, False),
        ({"metric": "cloud_units"}, True),
        ({"metric": "enterprise_units"}, False),
    ):
        d = Driver(doc(silences=[silence(**fields)]))
        assert (d.run(T0, [rec(value=120)]).events == []) is hidden, fields


def test_a_removed_silence_publishes_at_the_next_run() -> None:
    d = Driver(doc(silences=[silence("2027-01-01")]))
    d.run(T0, [rec(value=120)])
    d.document = DEFAULT_RULES
    late = d.run(T0 + HOUR, [rec(value=120)]).events
    assert [(e["event_type"], e.get("delayed_by_silence")) for e in late] == [(BREACHED, True)]


def test_a_silenced_collection_failure_is_published_if_it_outlasts_the_silence() -> None:
    d = Driver(doc(silences=[silence(tenant_id="t1", rule="collection")]))
    assert d.run(T0, [rec("t2")], failed={"t1": "HTTP 500"}).events == []
    assert d.states[failure_id()].published is False
    assert d.run(T0 + DAY, [rec("t2")], failed={"t1": "HTTP 500"}).events == []
    late = d.run(datetime(2026, 11, 16, tzinfo=UTC), [rec("t2")], failed={"t1": "HTTP 503"}).events
    assert [(e["event_type"], e["delayed_by_silence"], e["error"]) for e in late] == [(FAILED, True, "HTTP 503")]
    assert d.run(datetime(2026, 11, 17, tzinfo=UTC), [rec("t2")], failed={"t1": "HTTP 503"}).events == []
    assert kinds(d.run(datetime(2026, 11, 18, tzinfo=UTC), [rec("t1"), rec("t2")]).events) == [(RECOVERED, None)]


def test_a_silenced_collection_failure_that_recovers_is_never_heard_of() -> None:
    d = Driver(doc(silences=[silence(tenant_id="*", rule="collection")]))
    assert d.run(T0, account_error="down").events == []
    assert d.run(T0 + DAY, [rec("t1")]).events == []
    assert d.states[failure_id(ACCOUNT_WIDE)].status == "resolved"


def test_an_account_wide_failure_under_an_expired_silence_is_published() -> None:
    d = Driver(doc(silences=[silence("2026-11-10T12:00:00Z", rule="collection")]))
    assert d.run(T0, account_error="down").events == []
    late = d.run(T0 + DAY, account_error="still down").events
    assert [(e["event_type"], e.get("tenant_id"), e["delayed_by_silence"]) for e in late] == [(FAILED, None, True)]


# --- notify_resolved, rule changes ---------------------------------------------------------------


def test_notify_resolved_false_resolves_quietly() -> None:
    d = Driver(doc(notify_resolved=False))
    d.run(T0, [rec(value=120)])
    out = d.run(T0 + DAY, [rec(value=10)])
    assert out.events == []
    assert d.states[aid("over_quota")].status == "resolved"
    # de-escalation: the lower breach is still announced, the higher resolves quietly
    d.run(T0 + 2 * DAY, [rec(value=120)])
    down = d.run(T0 + 3 * DAY, [rec(value=95)])
    assert kinds(down.events) == [(BREACHED, "quota_utilization")]
    # collection recovery is not a threshold resolve: still announced
    d.run(T0 + 4 * DAY, [], failed={"t1": "boom"}, periods=["2026-11"])
    assert kinds(d.run(T0 + 5 * DAY, [rec(value=95)]).events) == [(RECOVERED, None)]


def test_disabling_a_firing_rule_resolves_it() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    d.document = doc(rules={"over_quota": {"enabled": False}})
    out = d.run(T0 + HOUR, [rec(value=120)])
    # over_quota off: the same record is now "only" at 120% utilization
    assert sorted(kinds(out.events)) == [(BREACHED, "quota_utilization"), (RESOLVED, "over_quota")]


def test_raising_a_threshold_resolves_the_alert() -> None:
    d = Driver()
    d.run(T0, [rec(value=92)])
    d.document = doc(rules={"quota_utilization": {"threshold": 0.95}})
    assert kinds(d.run(T0 + HOUR, [rec(value=92)]).events) == [(RESOLVED, "quota_utilization")]


def test_an_operator_quota_turns_usage_into_an_alert() -> None:
    d = Driver(doc(quotas=[{"vendor": VENDOR, "tenant_id": "t1", "metric": METRIC, "quota": 40}]))
    out = d.run(T0, [rec("t1", value=50, quota=100), rec("t2", value=50, quota=100)])
    assert [(e["tenant_id"], e["rule"], e["quota"]) for e in out.events] == [("t1", "over_quota", 40)]


# --- publish failures: at least once, never twice -------------------------------------------------


def fail_all(_event: Event) -> bool:
    return True


def test_a_failed_publish_is_retried_next_run_and_delivered_exactly_once() -> None:
    d = Driver()
    lost = d.run(T0, [rec(value=120)], publish_fails=fail_all)
    assert lost.events == [] and len(lost.lost) == 1
    assert aid("over_quota") not in d.states
    retried = d.run(T0 + HOUR, [rec(value=120)])
    assert kinds(retried.events) == [(BREACHED, "over_quota")]
    assert d.run(T0 + 2 * HOUR, [rec(value=120)]).events == []
    assert kinds(d.delivered) == [(BREACHED, "over_quota")]


def test_a_retried_invocation_computes_the_identical_event() -> None:
    d = Driver()
    lost = d.run(T0, [rec(value=120)], publish_fails=fail_all).lost
    again = d.run(T0, [rec(value=120)]).events
    assert again == lost  # same `now`, same event, same event_id: a subscriber can drop a duplicate
    assert d.run(T0, [rec(value=120)]).events == []


def test_a_failed_resolve_is_retried_and_never_duplicated() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    d.run(T0 + HOUR, [rec(value=10)], publish_fails=fail_all)
    assert aid("over_quota") in firing(d)
    assert kinds(d.run(T0 + 2 * HOUR, [rec(value=10)]).events) == [(RESOLVED, "over_quota")]
    assert d.run(T0 + 3 * HOUR, [rec(value=10)]).events == []
    assert kinds(d.delivered) == [(BREACHED, "over_quota"), (RESOLVED, "over_quota")]


def test_failed_collection_and_recovery_events_are_retried_too() -> None:
    d = Driver()
    d.run(T0, [], failed={"t1": "boom"}, periods=["2026-11"], publish_fails=fail_all)
    assert failure_id() not in d.states
    assert kinds(d.run(T0 + HOUR, [], failed={"t1": "boom"}, periods=["2026-11"]).events) == [(FAILED, None)]
    d.run(T0 + 2 * HOUR, [rec()], publish_fails=fail_all)
    assert failure_id() in firing(d)
    assert kinds(d.run(T0 + 3 * HOUR, [rec()]).events) == [(RECOVERED, None)]
    assert kinds(d.delivered) == [(FAILED, None), (RECOVERED, None)]


def test_only_the_failed_publish_is_retried() -> None:
    d = Driver()
    out = d.run(T0, [rec("t1", value=120), rec("t2", value=120)], publish_fails=lambda e: e["tenant_id"] == "t2")
    assert [e["tenant_id"] for e in out.events] == ["t1"]
    assert [e["tenant_id"] for e in d.run(T0 + HOUR, [rec("t1", value=120), rec("t2", value=120)]).events] == ["t2"]
    assert sorted(e["tenant_id"] for e in d.delivered) == ["t1", "t2"]


def test_a_failed_escalation_is_delivered_next_run_with_the_lower_rung_already_closed() -> None:
    """The closing of the lower rung carries no event, so it is stored even when the higher breach's publish
    fails; the retried breach then no longer names the rung it escalated from."""
    d = Driver()
    d.run(T0, [rec(value=95)])
    d.run(T0 + HOUR, [rec(value=120)], publish_fails=fail_all)
    assert d.states[aid("quota_utilization")].status == "closed"
    retried = d.run(T0 + 2 * HOUR, [rec(value=120)]).events
    assert kinds(retried) == [(BREACHED, "over_quota")]
    assert "escalated_from" not in retried[0]
    assert kinds(d.delivered) == [(BREACHED, "quota_utilization"), (BREACHED, "over_quota")]


def test_a_partly_failed_de_escalation_heals_on_the_next_run() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    d.run(T0 + HOUR, [rec(value=95)], publish_fails=lambda e: e["event_type"] == RESOLVED)
    # for one run both rungs are stored as firing: over_quota is waiting for its resolved to go out
    assert firing(d) == {aid("over_quota"), aid("quota_utilization")}
    assert kinds(d.run(T0 + 2 * HOUR, [rec(value=95)]).events) == [(RESOLVED, "over_quota")]
    assert firing(d) == {aid("quota_utilization")}

"""The alert lifecycle as a pure state machine (docs/alerts.md section 2). No AWS and no wording in here.

Each run hands in what it observed (findings for the tenants it read, which tenants and periods it
read, which failed) and the alerts currently open; out come transitions: the state to store and,
where the change is one subscribers hear about, the event to publish first. The dispatcher stores a
transition's state only after its event was accepted, so a failed publish is simply computed again
on the next run: at-least-once, never lost, never repeated by a retry of a run that did store it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from usagewatch.events import (
    BREACHED,
    FAILED,
    RECOVERED,
    RESOLVED,
    SCHEMA_VERSION,
    TENANT_REMOVED,
    CollectionFailed,
    CollectionRecovered,
    EventEnvelope,
    ThresholdBreached,
    ThresholdResolved,
)
from usagewatch.model import ACCOUNT_WIDE, COLLECTION_RULE, AlertState, UsageRecord, parse_utc, utc_iso
from usagewatch.notify import collection_summary, threshold_summary
from usagewatch.rules import LADDER, Finding, RulesDocument

Event = dict[str, Any]


def alert_id(vendor: str, account_id: str, tenant_id: str, metric: str, rule: str, period: str) -> str:
    """Stable across runs and deployments: the same six fields always give the same id."""
    digest = hashlib.sha256("\x1f".join((vendor, account_id, tenant_id, metric, rule, period)).encode()).hexdigest()
    return f"{vendor}-{digest[:24]}"


@dataclass(frozen=True, slots=True)
class Observed:
    """What a successful account collection saw: these tenants, in these periods.

    `pairs`, when given, says exactly which (tenant, period) were read, so a tenant read for one month
    only never resolves its alert of the other.
    """

    tenants: frozenset[str]
    periods: frozenset[str]
    pairs: frozenset[tuple[str, str]] | None = None
    metrics: frozenset[tuple[str, str, str]] | None = None
    """(tenant, metric, period) read, when given: an alert resolves only on a reading of its own metric (a
    Keepnet past month reads `monthly_users` alone). A tenant in `silent` was read whole: it answered with no
    records at all, or its vendor's reads list every metric it has (a metric missing is gone)."""
    silent: frozenset[str] = frozenset()

    def saw(self, tenant_id: str, period: str, metric: str | None = None) -> bool:
        if self.pairs is not None:
            seen = (tenant_id, period) in self.pairs
        else:
            seen = tenant_id in self.tenants and period in self.periods
        if not seen or metric is None or self.metrics is None or tenant_id in self.silent:
            return seen
        return (tenant_id, metric, period) in self.metrics


Reading = tuple[str, str, str]
"""(tenant_id, metric, period): the key of the current reading of an open alert's record."""


@dataclass(frozen=True, slots=True)
class Transition:
    state: AlertState
    event: Event | None = None


@dataclass(frozen=True, slots=True)
class TenantFailureInfo:
    tenant_name: str
    error: str


@dataclass
class _Ctx:
    document: RulesDocument
    now: datetime
    transitions: list[Transition] = field(default_factory=list)
    previous: Mapping[str, AlertState] = field(default_factory=dict)

    @property
    def now_iso(self) -> str:
        return utc_iso(self.now)


# --- one account's run ----------------------------------------------------------------------------


def advance(
    open_states: Mapping[str, AlertState],
    *,
    vendor: str,
    account_id: str,
    document: RulesDocument,
    now: datetime,
    observed: Observed,
    findings: Iterable[Finding] = (),
    account_error: str | None = None,
    tenant_failures: Mapping[str, TenantFailureInfo] | None = None,
    ok_tenants: Iterable[str] = (),
    readings: Mapping[Reading, UsageRecord] | None = None,
    previous: Mapping[str, AlertState] | None = None,
    failing_previous: Mapping[str, AlertState] | None = None,
    removed: Mapping[str, str] | None = None,
    ended: Collection[str] = (),
) -> list[Transition]:
    """Every transition of one account's run, in the order they are dispatched.

    Tenants in `removed` (gone from a complete listing) close their alerts first. An account that failed
    (`account_error`) resolves no threshold and only reports its own failure. `ended` holds alerts reopened
    for a period that already ended: their reminders are noise, so those transitions carry no event.
    """
    transitions: list[Transition] = []
    if removed:
        gone = {k: s for k, s in open_states.items() if s.tenant_id in removed}
        transitions += advance_removed(gone, removed, now)
        open_states = {k: s for k, s in open_states.items() if k not in gone}
    if account_error is None:
        transitions += advance_thresholds(open_states, findings, observed, document, now, readings, previous)
    transitions += advance_failures(
        open_states,
        vendor=vendor,
        account_id=account_id,
        account_error=account_error,
        tenant_failures=(tenant_failures or {}) if account_error is None else {},
        ok_tenants=ok_tenants if account_error is None else (),
        document=document,
        now=now,
        previous=failing_previous,
    )
    if ended:
        transitions = [
            Transition(t.state) if t.state.alert_id in ended and t.event and t.event.get("repeat") else t
            for t in transitions
        ]
    return transitions


# --- thresholds ---------------------------------------------------------------------------------


def advance_thresholds(
    open_states: Mapping[str, AlertState],
    findings: Iterable[Finding],
    observed: Observed,
    document: RulesDocument,
    now: datetime,
    readings: Mapping[Reading, UsageRecord] | None = None,
    previous: Mapping[str, AlertState] | None = None,
) -> list[Transition]:
    """Threshold transitions for one successfully collected account.

    `readings` holds this run's records of the open alerts, so a resolved event tells today's numbers;
    `previous` the stored, no longer firing states of alerts found again, so a new episode's event id is stable.
    """
    ctx = _Ctx(document, now, previous=previous or {})
    current: dict[str, Finding] = {}
    for finding in findings:
        current[_finding_id(finding)] = finding
    open_thresholds = {k: s for k, s in open_states.items() if not s.is_collection and s.status == "firing"}
    # On one record the ladder has one rung firing: which rule that is, now, per record.
    ladder_now = {
        _record_key(f.record.tenant_id, f.record.metric, str(f.record.period)): f
        for f in current.values()
        if f.rule in LADDER
    }

    for identifier, finding in current.items():
        state = open_thresholds.get(identifier)
        if state is None:
            _open(ctx, identifier, finding, open_thresholds)
        else:
            _still_firing(ctx, state, finding)

    oldest_observed = min(observed.periods) if observed.periods else None
    for identifier, state in open_thresholds.items():
        if identifier in current:
            continue
        if observed.saw(state.tenant_id, state.period, state.metric):
            higher = ladder_now.get(_record_key(state.tenant_id, state.metric, state.period))
            if higher is not None and state.rule in LADDER and LADDER.index(higher.rule) < LADDER.index(state.rule):
                ctx.transitions.append(Transition(_closed(state, ctx, f"escalated to {higher.rule}")))
            else:
                _resolve(ctx, state, (readings or {}).get((state.tenant_id, state.metric, state.period)))
        elif oldest_observed is not None and state.period < oldest_observed and state.period not in observed.periods:
            ctx.transitions.append(Transition(_closed(state, ctx, "period ended")))
    return ctx.transitions


def _finding_id(finding: Finding) -> str:
    r = finding.record
    return alert_id(r.vendor, r.account_id, r.tenant_id, r.metric, finding.rule, str(r.period))


def _record_key(tenant_id: str, metric: str, period: str) -> tuple[str, str, str]:
    return (tenant_id, metric, period)


def _silenced(ctx: _Ctx, state: AlertState) -> bool:
    return ctx.document.silenced(
        vendor=state.vendor,
        account_id=state.account_id,
        tenant_id=state.tenant_id,
        metric=state.metric or COLLECTION_RULE,
        rule=state.rule,
        now=ctx.now,
    )


def _open(ctx: _Ctx, identifier: str, finding: Finding, open_thresholds: Mapping[str, AlertState]) -> None:
    r = finding.record
    lower = None
    if finding.rule in LADDER:
        lower = next(
            (
                s
                for s in open_thresholds.values()
                if (s.tenant_id, s.metric, s.period) == (r.tenant_id, r.metric, str(r.period))
                and s.rule in LADDER
                and LADDER.index(s.rule) > LADDER.index(finding.rule)
            ),
            None,
        )
    state = AlertState(
        alert_id=identifier,
        vendor=r.vendor,
        account_id=r.account_id,
        tenant_id=r.tenant_id,
        tenant_name=r.tenant.tenant_name,
        metric=r.metric,
        rule=finding.rule,
        period=str(r.period),
        status="firing",
        severity=finding.severity,
        published=False,
        since=ctx.now_iso,
        updated_at=ctx.now_iso,
        previous_since=ctx.previous[identifier].since if identifier in ctx.previous else "",
        customer_id=finding.customer_id,
    )
    state = _with_numbers(state, finding)
    if _silenced(ctx, state):
        ctx.transitions.append(Transition(state))
        return
    state = replace(state, published=True, last_published_at=ctx.now_iso)
    extra = {"escalated_from": lower.rule} if lower is not None else {}
    ctx.transitions.append(Transition(state, threshold_event(BREACHED, state, ctx.now, extra)))


def _still_firing(ctx: _Ctx, state: AlertState, finding: Finding) -> None:
    refreshed = _with_numbers(
        replace(
            state,
            tenant_name=finding.record.tenant.tenant_name,
            updated_at=ctx.now_iso,
            customer_id=finding.customer_id or state.customer_id,
        ),
        finding,
    )
    if _silenced(ctx, state):
        return
    if not state.published:
        delivered = replace(refreshed, published=True, last_published_at=ctx.now_iso)
        late = {"delayed_by_silence": True}
        ctx.transitions.append(Transition(delivered, threshold_event(BREACHED, delivered, ctx.now, late)))
        return
    repeat_hours = ctx.document.repeat_after_hours
    last = parse_utc(state.last_published_at or state.since)
    if repeat_hours > 0 and ctx.now - last >= timedelta(hours=repeat_hours):
        repeated = replace(refreshed, last_published_at=ctx.now_iso, repeat_count=state.repeat_count + 1)
        extra = {"repeat": True, "repeat_count": repeated.repeat_count, "firing_since": state.since}
        ctx.transitions.append(Transition(repeated, threshold_event(BREACHED, repeated, ctx.now, extra)))


def _resolve(ctx: _Ctx, state: AlertState, reading: UsageRecord | None) -> None:
    resolved = replace(state, status="resolved", updated_at=ctx.now_iso, reason="condition cleared")
    if reading is not None:
        override = ctx.document.operator_quota(reading)
        quota = override if override is not None else reading.quota
        resolved = replace(
            resolved,
            value=reading.value,
            quota=quota,
            projected=reading.projected,
            projection_source=reading.projection_source if reading.projected is not None else None,
            reason="current",
        )
    if state.published and ctx.document.notify_resolved:
        resolved = replace(resolved, last_published_at=ctx.now_iso)
        ctx.transitions.append(
            Transition(
                resolved,
                threshold_event(
                    RESOLVED,
                    resolved,
                    ctx.now,
                    {"firing_since": state.since, "values_from": "this run" if reading else "last while firing"},
                ),
            )
        )
    else:
        ctx.transitions.append(Transition(resolved))


def _closed(state: AlertState, ctx: _Ctx, reason: str) -> AlertState:
    return replace(state, status="closed", updated_at=ctx.now_iso, reason=reason)


def _with_numbers(state: AlertState, finding: Finding) -> AlertState:
    return replace(
        state,
        value=finding.record.value,
        quota=finding.quota,
        projected=finding.record.projected,
        projection_source=finding.record.projection_source if finding.record.projected is not None else None,
        threshold=finding.threshold,
    )


# --- collection failures ------------------------------------------------------------------------


def advance_failures(
    open_states: Mapping[str, AlertState],
    *,
    vendor: str,
    account_id: str,
    account_error: str | None,
    tenant_failures: Mapping[str, TenantFailureInfo],
    ok_tenants: Iterable[str],
    document: RulesDocument,
    now: datetime,
    previous: Mapping[str, AlertState] | None = None,
) -> list[Transition]:
    """`collection.failed` once when a tenant or account starts failing; `collection.recovered` when it reads again.

    `previous` holds the stored, no longer firing collection states of those failing now, so a failure's event id
    names its episode by the one before it and a failure re-sent after its state was not stored keeps its id.
    """
    ctx = _Ctx(document, now, previous=previous or {})
    failing = {s.tenant_id: s for s in open_states.values() if s.is_collection and s.status == "firing"}
    if account_error is not None:
        if ACCOUNT_WIDE not in failing:
            _fail(ctx, vendor, account_id, ACCOUNT_WIDE, account_id, account_error, "critical")
        else:
            _still_failing(ctx, failing[ACCOUNT_WIDE], account_error)
        return ctx.transitions
    if ACCOUNT_WIDE in failing:
        _recover(ctx, failing[ACCOUNT_WIDE])
    for tenant_id, info in tenant_failures.items():
        if tenant_id not in failing:
            _fail(ctx, vendor, account_id, tenant_id, info.tenant_name, info.error, "warning")
        else:
            _still_failing(ctx, failing[tenant_id], info.error)
    for tenant_id in ok_tenants:
        state = failing.get(tenant_id)
        if state is not None and tenant_id != ACCOUNT_WIDE and tenant_id not in tenant_failures:
            _recover(ctx, state)
    return ctx.transitions


def _fail(ctx: _Ctx, vendor: str, account_id: str, tenant_id: str, name: str, error: str, severity: str) -> None:
    identifier = alert_id(vendor, account_id, tenant_id, "", COLLECTION_RULE, "")
    state = AlertState(
        alert_id=identifier,
        vendor=vendor,
        account_id=account_id,
        tenant_id=tenant_id,
        tenant_name=name,
        metric="",
        rule=COLLECTION_RULE,
        period="",
        status="firing",
        severity=severity,
        published=False,
        since=ctx.now_iso,
        updated_at=ctx.now_iso,
        error=error,
        previous_since=ctx.previous[identifier].since if identifier in ctx.previous else "",
    )
    if _silenced(ctx, state):
        ctx.transitions.append(Transition(state))
        return
    state = replace(state, published=True, last_published_at=ctx.now_iso)
    ctx.transitions.append(Transition(state, collection_event(FAILED, state, ctx.now)))


def _still_failing(ctx: _Ctx, state: AlertState, error: str) -> None:
    """A failure that started under a silence is published once the silence ends, if it still fails."""
    if state.published or _silenced(ctx, state):
        return
    delivered = replace(state, published=True, last_published_at=ctx.now_iso, updated_at=ctx.now_iso, error=error)
    event = collection_event(FAILED, delivered, ctx.now, {"delayed_by_silence": True})
    ctx.transitions.append(Transition(delivered, event))


def _recover(ctx: _Ctx, state: AlertState) -> None:
    recovered = replace(state, status="resolved", updated_at=ctx.now_iso, reason="collected again")
    if state.published:
        recovered = replace(recovered, last_published_at=ctx.now_iso)
        ctx.transitions.append(Transition(recovered, collection_event(RECOVERED, recovered, ctx.now)))
    else:
        ctx.transitions.append(Transition(recovered))


def advance_removed(
    open_states: Mapping[str, AlertState], removed: Mapping[str, str], now: datetime
) -> list[Transition]:
    """Tenants gone from a complete listing: each firing alert of theirs resolves once, `reason = tenant_removed`
    (`usage.threshold.resolved` or `collection.recovered`, so a ticket opened for it closes)."""
    ctx_now = utc_iso(now)
    transitions: list[Transition] = []
    for state in open_states.values():
        if state.status != "firing" or state.tenant_id not in removed:
            continue
        gone = replace(state, status="resolved", updated_at=ctx_now, reason=TENANT_REMOVED)
        if not state.published:
            transitions.append(Transition(gone))
            continue
        gone = replace(gone, last_published_at=ctx_now)
        if state.is_collection:
            event = collection_event(RECOVERED, gone, now, {"reason": TENANT_REMOVED})
        else:
            extra = {"firing_since": state.since, "values_from": "last while firing", "reason": TENANT_REMOVED}
            event = threshold_event(RESOLVED, gone, now, extra)
        transitions.append(Transition(gone, event))
    return transitions


# --- events -------------------------------------------------------------------------------------


def threshold_event(event_type: str, state: AlertState, now: datetime, extra: Mapping[str, Any] | None = None) -> Event:
    """The body of a threshold event, built through its model (events.py): a field it does not know is refused."""
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_type": event_type,
        "event_id": _event_id(state, event_type),
        "alert_id": state.alert_id,
        "rule": state.rule,
        "severity": "info" if event_type == RESOLVED else state.severity,
        "vendor": state.vendor,
        "account_id": state.account_id,
        "tenant_id": state.tenant_id,
        "tenant_name": state.tenant_name,
        "metric": state.metric,
        "period": state.period,
        "value": state.value,
        "quota": state.quota,
        "projected": state.projected,
        "threshold": state.threshold,
        "observed_at": utc_iso(now),
        "summary": threshold_summary(event_type, state),
        **({"customer_id": state.customer_id} if state.customer_id else {}),
        **(
            {"projection_source": state.projection_source}
            if state.projection_source == "usagewatch" and state.projected is not None
            else {}
        ),
        **(extra or {}),
    }
    model = ThresholdResolved if event_type == RESOLVED else ThresholdBreached
    return _body(model, fields)


def collection_event(
    event_type: str, state: AlertState, now: datetime, extra: Mapping[str, Any] | None = None
) -> Event:
    fields: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_type": event_type,
        "event_id": _event_id(state, event_type),
        "alert_id": state.alert_id,
        "severity": state.severity if event_type == FAILED else "info",
        "vendor": state.vendor,
        "account_id": state.account_id,
        "tenant_name": state.tenant_name,
        "observed_at": utc_iso(now),
        "summary": collection_summary(event_type, state),
    }
    if state.tenant_id != ACCOUNT_WIDE:
        fields["tenant_id"] = state.tenant_id
    if event_type == FAILED:
        fields["error"] = state.error
    else:
        fields["failing_since"] = state.since
    fields.update(extra or {})
    return _body(CollectionFailed if event_type == FAILED else CollectionRecovered, fields)


def _body(model: type[EventEnvelope], fields: Mapping[str, Any]) -> Event:
    """The model's JSON body, keys in the order given (the order the docs show)."""
    body = model.model_validate(fields).body()
    return {key: body[key] for key in fields}


def _event_id(state: AlertState, event_type: str) -> str:
    """A function of the transition alone (alert, change, the episode's start, which reminder), never of the run
    that sends it: a change sent again, by a retry or by a later run after its state was not stored, keeps its id."""
    if event_type in (BREACHED, FAILED) and state.previous_since is not None:
        # A breach is known before its state is stored: the episode is named by the one before it.
        text = f"{state.alert_id}|{event_type}|after:{state.previous_since}|{state.repeat_count}"
    else:
        text = f"{state.alert_id}|{event_type}|{state.since}|{state.repeat_count}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]

"""The alert lifecycle as a pure state machine (docs/alerts.md section 2). No AWS and no wording in here.

This module holds the run's step and the thresholds; collection failures and removed tenants are in
alert_failures.py, the event bodies in alert_events.py, the plain types in alert_model.py. Every public name is
importable from here.

Each run hands in what it observed (findings for the tenants it read, which tenants and periods it
read, which failed) and the alerts currently open; out come transitions: the state to store and,
where the change is one subscribers hear about, the event to publish first. The dispatcher stores a
transition's state only after its event was accepted, so a failed publish is simply computed again
on the next run: at-least-once, never lost, never repeated by a retry of a run that did store it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from usagewatch.alert_events import alert_id, collection_event, threshold_event
from usagewatch.alert_failures import advance_failures, advance_removed
from usagewatch.alert_model import AlertCtx, Event, Observed, Reading, TenantFailureInfo, Transition, silenced
from usagewatch.events import BREACHED, FAILED, RECOVERED, RESOLVED
from usagewatch.model import UsageRecord, parse_utc
from usagewatch.rules import LADDER, Finding, RulesDocument
from usagewatch.stored import AlertState

__all__ = [
    "BREACHED",
    "FAILED",
    "RECOVERED",
    "RESOLVED",
    "Event",
    "Observed",
    "Reading",
    "TenantFailureInfo",
    "Transition",
    "advance",
    "advance_failures",
    "advance_removed",
    "advance_thresholds",
    "alert_id",
    "collection_event",
    "threshold_event",
]


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
    ctx = AlertCtx(document, now, previous=previous or {})
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


def _open(ctx: AlertCtx, identifier: str, finding: Finding, open_thresholds: Mapping[str, AlertState]) -> None:
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
    if silenced(ctx, state):
        ctx.transitions.append(Transition(state))
        return
    state = replace(state, published=True, last_published_at=ctx.now_iso)
    extra = {"escalated_from": lower.rule} if lower is not None else {}
    ctx.transitions.append(Transition(state, threshold_event(BREACHED, state, ctx.now, extra)))


def _still_firing(ctx: AlertCtx, state: AlertState, finding: Finding) -> None:
    refreshed = _with_numbers(
        replace(
            state,
            tenant_name=finding.record.tenant.tenant_name,
            updated_at=ctx.now_iso,
            customer_id=finding.customer_id or state.customer_id,
        ),
        finding,
    )
    if silenced(ctx, state):
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


def _resolve(ctx: AlertCtx, state: AlertState, reading: UsageRecord | None) -> None:
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


def _closed(state: AlertState, ctx: AlertCtx, reason: str) -> AlertState:
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

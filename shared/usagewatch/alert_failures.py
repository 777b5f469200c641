"""Collection failures and removed tenants in the alert lifecycle: `collection.failed` once, `collection.recovered`
when the tenant reads again or leaves the listing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from usagewatch.alert_events import alert_id, collection_event, threshold_event
from usagewatch.alert_model import AlertCtx, TenantFailureInfo, Transition, silenced
from usagewatch.events import FAILED, RECOVERED, RESOLVED, TENANT_REMOVED
from usagewatch.model import utc_iso
from usagewatch.rules import RulesDocument
from usagewatch.stored import ACCOUNT_WIDE, COLLECTION_RULE, AlertState


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
    ctx = AlertCtx(document, now, previous=previous or {})
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


def _fail(ctx: AlertCtx, vendor: str, account_id: str, tenant_id: str, name: str, error: str, severity: str) -> None:
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
    if silenced(ctx, state):
        ctx.transitions.append(Transition(state))
        return
    state = replace(state, published=True, last_published_at=ctx.now_iso)
    ctx.transitions.append(Transition(state, collection_event(FAILED, state, ctx.now)))


def _still_failing(ctx: AlertCtx, state: AlertState, error: str) -> None:
    """A failure that started under a silence is published once the silence ends, if it still fails."""
    if state.published or silenced(ctx, state):
        return
    delivered = replace(state, published=True, last_published_at=ctx.now_iso, updated_at=ctx.now_iso, error=error)
    event = collection_event(FAILED, delivered, ctx.now, {"delayed_by_silence": True})
    ctx.transitions.append(Transition(delivered, event))


def _recover(ctx: AlertCtx, state: AlertState) -> None:
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

"""The bodies of the events the alert lifecycle publishes, built through their models (events.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from usagewatch.alert_model import Event
from usagewatch.events import (
    BREACHED,
    FAILED,
    RESOLVED,
    SCHEMA_VERSION,
    CollectionFailed,
    CollectionRecovered,
    EventEnvelope,
    ThresholdBreached,
    ThresholdResolved,
)
from usagewatch.model import utc_iso
from usagewatch.notify import collection_summary, threshold_summary
from usagewatch.stored import ACCOUNT_WIDE, AlertState


def alert_id(vendor: str, account_id: str, tenant_id: str, metric: str, rule: str, period: str) -> str:
    """Stable across runs and deployments: the same six fields always give the same id."""
    digest = hashlib.sha256("\x1f".join((vendor, account_id, tenant_id, metric, rule, period)).encode()).hexdigest()
    return f"{vendor}-{digest[:24]}"


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

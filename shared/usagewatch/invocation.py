"""The invocation event (docs/deploying.md, "Running a collection by hand") -> what to collect, as of when."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from usagewatch.errors import ConfigError
from usagewatch.model import CollectionRequest, Period, parse_utc

_PLACEHOLDER: Final = "<aws.scheduler.scheduled-time>"


def collection_request(event: Any, now: datetime) -> CollectionRequest:
    """Accepts the Scheduler input, the classic EventBridge envelope, `{}`, each with an optional `period`."""
    if event is None:
        event = {}
    if not isinstance(event, dict):
        raise ConfigError(f"event: expected a JSON object, got {type(event).__name__}")
    if "scheduled_time" in event:
        value = event["scheduled_time"]
        if value == _PLACEHOLDER:
            raise ConfigError(
                "event.scheduled_time: the Scheduler placeholder was not substituted; pass a time such as "
                "2026-11-22T06:00:00Z, or {} for now"
            )
        as_of = parse_utc(value, field="event.scheduled_time")
    elif event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events":
        as_of = parse_utc(event.get("time", ""), field="event.time")
    else:
        as_of = now
    if "period" in event and event["period"] not in (None, ""):
        return CollectionRequest(Period.parse(event["period"], field="event.period"), as_of, period_explicit=True)
    return CollectionRequest(Period.of(as_of), as_of)

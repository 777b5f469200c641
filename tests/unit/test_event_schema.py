"""The event models (events.py), the JSON Schema generated from them (docs/events.schema.json) and the events
the state machine builds agree; the publisher sends only what the models accept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from tests.unit.test_alert_events import EVENTS, contract_example, documented_examples
from tests.unit.test_alert_lifecycle import DAY, T0, Driver, doc, rec
from usagewatch.alerts import advance_removed
from usagewatch.errors import PublishError
from usagewatch.events import parse_event, schema_text
from usagewatch.publisher import SnsPublisher

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "events.schema.json"
VALIDATOR = Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))


def test_the_checked_in_schema_is_generated_from_the_models() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "docs/events.schema.json is stale: PYTHONPATH=shared python -m usagewatch.events > docs/events.schema.json"
    )
    Draft202012Validator.check_schema(json.loads(schema_text()))


def rarer_events() -> dict[str, dict[str, Any]]:
    """The optional fields the lifecycle story does not show: late after a silence, escalated, tenant removed."""
    out: dict[str, dict[str, Any]] = {}
    silenced = Driver(doc(silences=[{"until": "2026-11-10T12:00:00Z", "tenant_id": "*", "rule": "*"}]))
    silenced.run(T0, [rec("t1", value=120)], failed={"t2": "HTTP 500"})
    late = silenced.run(T0 + DAY, [rec("t1", value=120)], failed={"t2": "HTTP 503"}).events
    out |= {f"late:{e['event_type']}": e for e in late}
    d = Driver()
    d.run(T0, [rec("t1", value=95)], failed={"t2": "HTTP 500"})
    (out["escalated"],) = d.run(T0 + DAY, [rec("t1", value=120)], failed={"t2": "HTTP 500"}).events
    removed = advance_removed(d.open_states(), {"t1": "Tenant t1", "t2": "Tenant t2"}, T0 + 2 * DAY)
    out |= {f"removed:{t.event['event_type']}": t.event for t in removed if t.event is not None}
    assert len(out) == 5, sorted(out)
    return out


def every_event() -> dict[str, dict[str, Any]]:
    documented = {f"docs:{k}": json.loads(v) for k, v in documented_examples().items() if v.startswith("{")}
    documented = {k: v for k, v in documented.items() if "schema_version" in v}
    return {**EVENTS, **documented, **rarer_events(), "contract": contract_example()}


@pytest.mark.parametrize(("name", "event"), sorted(every_event().items()))
def test_every_event_built_is_valid_for_the_schema_and_its_model(name: str, event: dict[str, Any]) -> None:
    VALIDATOR.validate(event)
    assert parse_event(event).body() == event, name


def broken(name: str, **changes: Any) -> dict[str, Any]:
    event = dict(EVENTS[name])
    for key, value in changes.items():
        if value is None and key != "tenant_id":
            event.pop(key)
        else:
            event[key] = value
    return event


@pytest.mark.parametrize(
    "event",
    [
        broken("breached", summary=None),  # a required field missing
        broken("breached", colour="red"),  # a field nobody documented
        broken("failed", tenant_id=None),  # optional fields are left out, never null
        broken("resolved", severity="critical"),  # a resolve is always info
        broken("recovered", event_type="collection.restarted"),
        broken("breached", observed_at="2026-11-10 06:00"),
        broken("breached", event_id="not-an-id"),
    ],
)
def test_an_event_the_schema_does_not_describe_is_refused_by_both(event: dict[str, Any]) -> None:
    assert not VALIDATOR.is_valid(event)
    with pytest.raises(ValidationError):
        parse_event(event)


class RecordingSns:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(kwargs)
        return {"MessageId": "m-1"}


def test_the_publisher_sends_the_models_json_and_refuses_an_invalid_event() -> None:
    sns = RecordingSns()
    publisher = SnsPublisher("arn:aws:sns:eu-west-1:123456789012:alerts", client=sns)  # type: ignore[arg-type]
    assert publisher.publish(EVENTS["account_failed"]) == "m-1"
    (call,) = sns.calls
    body = json.loads(json.loads(call["Message"])["default"])
    assert body == EVENTS["account_failed"] and "tenant_id" not in body
    with pytest.raises(PublishError, match="not a valid usagewatch event"):
        publisher.publish(broken("breached", colour="red"))
    assert len(sns.calls) == 1

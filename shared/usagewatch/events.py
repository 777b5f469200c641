"""The events usagewatch publishes, as pydantic models: one envelope, one model per event type.

docs/events.schema.json is generated from these models (`python -m usagewatch.events > docs/events.schema.json`);
a test fails when the checked-in file is stale. An optional field is left out of the JSON when it does not apply
(a whole-account failure has no `tenant_id`), never sent as null; the threshold numbers are always present, null
when unknown.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

SCHEMA_VERSION: Final = 1
BREACHED: Final = "usage.threshold.breached"
RESOLVED: Final = "usage.threshold.resolved"
FAILED: Final = "collection.failed"
RECOVERED: Final = "collection.recovered"
REPORT_READY: Final = "report.ready"
PSA_PLAN_READY: Final = "psa.plan.ready"
PSA_PLAN_FAILED: Final = "psa.plan.failed"
TENANT_REMOVED: Final = "tenant_removed"
DIGEST: Final = "digest"

Severity = Literal["info", "warning", "critical"]
Number = int | float
Instant = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", description="UTC, ISO 8601")]


class Published(BaseModel):
    """What goes out on the topic: strict (no field it does not declare), immutable, and its body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        """The JSON object subscribers receive: fields that do not apply are left out."""
        return self.model_dump(mode="json", exclude_unset=True)


class EventEnvelope(Published):
    """Fields every event carries."""

    schema_version: Literal[1] = Field(description="Bumped only for an incompatible change.")
    event_type: str
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="Names the change: the same change sent again (a retry) keeps its id; drop duplicates by it.",
    )
    alert_id: str = Field(description="Stable per vendor, account, tenant, metric, rule and period.")
    severity: Severity
    vendor: str
    account_id: str
    tenant_name: str
    observed_at: Instant = Field(description="The run's as-of time.")
    summary: str = Field(description="One line for people; its wording may change, do not parse it.")

    @model_validator(mode="before")
    @classmethod
    def _absent_is_left_out(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [k for k, f in cls.model_fields.items() if not f.is_required() and k in data and data[k] is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: a field that does not apply is left out, not null")
        return data


class _Threshold(EventEnvelope):
    rule: str
    tenant_id: str
    metric: str
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    value: Number | None
    quota: Number | None
    projected: Number | None
    threshold: Number | None
    customer_id: str | None = Field(
        None, description="The customer owning the tenant (docs/billing.md), when the operator mapped it."
    )
    projection_source: Literal["usagewatch"] | None = Field(
        None,
        description="`usagewatch` when usagewatch computed `projected` from the period's readings (docs/alerts.md "
        "section 3); left out when the vendor gave the projection or there is none.",
    )


class ThresholdBreached(_Threshold):
    """A rule started firing, fires again after a silence (`delayed_by_silence`), or is repeated (`repeat`)."""

    event_type: Literal["usage.threshold.breached"]
    escalated_from: str | None = Field(None, description="The lower rung of the ladder this breach replaces.")
    delayed_by_silence: Literal[True] | None = None
    repeat: Literal[True] | None = None
    repeat_count: int | None = Field(None, ge=1)
    firing_since: Instant | None = None


class ThresholdResolved(_Threshold):
    """A firing rule no longer holds, or its tenant is gone from the vendor's listing (`reason`)."""

    event_type: Literal["usage.threshold.resolved"]
    severity: Literal["info"]
    firing_since: Instant
    values_from: Literal["this run", "last while firing"]
    reason: Literal["tenant_removed"] | None = None


class CollectionFailed(EventEnvelope):
    """A tenant (`tenant_id` given) or the whole account (no `tenant_id`) could not be read."""

    event_type: Literal["collection.failed"]
    severity: Literal["warning", "critical"]
    tenant_id: str | None = None
    error: str
    delayed_by_silence: Literal[True] | None = None


class CollectionRecovered(EventEnvelope):
    """What failed is read again, or its tenant is gone from the vendor's listing (`reason`)."""

    event_type: Literal["collection.recovered"]
    severity: Literal["info"]
    tenant_id: str | None = None
    failing_since: Instant
    reason: Literal["tenant_removed"] | None = None


class ReportReady(Published):
    """The monthly billing report is written (docs/billing.md): where, and how many customers need action."""

    schema_version: Literal[1]
    event_type: Literal["report.ready"]
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="Derived from the report's CSV bytes: the same numbers keep the id, any changed number a new one.",
    )
    severity: Literal["info", "warning"] = Field(
        description="warning when a customer is under-billed, a tenant unmapped or a line incomplete"
    )
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    provisional: bool = Field(description="The month has not ended: the numbers are complete so far, not final.")
    bucket: str
    csv_key: str
    html_key: str
    customers_under_billed: int = Field(ge=0)
    unmapped_tenants: int = Field(ge=0)
    incomplete_lines: int = Field(ge=0, description="Lines whose numbers are not final (status incomplete).")
    incomplete_accounts: list[str] = Field(
        description="One sentence per vendor account whose month is not fully read, the account named first."
    )
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code of every amount.")
    unbilled_value: str = Field(
        pattern=r"^-?\d+(\.\d+)?$", description="The month's unbilled value, exact decimal text in `currency`."
    )
    lines: dict[str, int] = Field(description="Reconciliation lines per status.")
    observed_at: Instant
    summary: str = Field(description="One line for people; its wording may change, do not parse it.")


class PsaPlanReady(Published):
    """The monthly report made the month's PSA plan (docs/psa.md): proposals by status, lines left out, value."""

    schema_version: Literal[1]
    event_type: Literal["psa.plan.ready"]
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="A hash of the plan's content: the same plan keeps the id."
    )
    severity: Literal["info", "warning"] = Field(description="warning when proposals wait for approval")
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    psa: str
    ended: bool = Field(description="The month has ended: a change now bills the invoices to come only.")
    proposals: dict[str, int] = Field(description="The plan's proposals per status (statuses with none left out).")
    skipped: dict[str, int] = Field(description="Lines left out per reason (e.g. ambiguous, incomplete).")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code of `value`.")
    value: str = Field(
        pattern=r"^-?\d+(\.\d+)?$", description="Per month, the proposals' differences at their unit prices."
    )
    observed_at: Instant
    summary: str = Field(description="One line for people; its wording may change, do not parse it.")


class PsaPlanFailed(Published):
    """The monthly report was written but its PSA plan was not made (the PSA not reached, its secret not read)."""

    schema_version: Literal[1]
    event_type: Literal["psa.plan.failed"]
    event_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="A hash of the period and the reason.")
    severity: Literal["warning"]
    period: str = Field(pattern=r"^\d{4}-\d{2}$")
    psa: str
    reason: str = Field(description="One line, secrets masked.")
    observed_at: Instant
    summary: str = Field(description="One line for people; its wording may change, do not parse it.")


class DigestEntry(BaseModel):
    """One change the run published, as listed in a digest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="The listed event's own id.")
    alert_id: str
    tenant_name: str
    summary: str


class DigestGroup(BaseModel):
    """The changes of one kind (and, for breaches, one rule and severity): the first few, and how many in all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: Literal[
        "usage.threshold.breached", "usage.threshold.resolved", "collection.failed", "collection.recovered"
    ]
    severity: Severity
    rule: str | None = Field(None, description="Breaches and resolves only.")
    count: int = Field(ge=1, description="Changes in this group; `entries` lists the first of them.")
    entries: list[DigestEntry] = Field(description="The largest first; minor changes are never listed.")
    minor: int | None = Field(None, ge=1, description="Of `count`, the low-value changes only counted.")
    minor_below: int | None = Field(None, ge=0, description="The loss under which a change is minor.")


class Digest(Published):
    """One run's changes for one account, for people (docs/alerts.md section 14): sent when the run published any.

    It lists only what this run published; every listed change was also published on its own as its event."""

    schema_version: Literal[1]
    event_type: Literal["digest"]
    event_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="A hash of the run and the ids of the events it lists: a retry that re-sends the same events "
        "sends the same digest id.",
    )
    severity: Severity = Field(description="The highest severity among the changes not minor (all if all are).")
    vendor: str
    account_id: str
    run_id: str
    observed_at: Instant = Field(description="The run's as-of time.")
    counts: dict[str, int] = Field(description="Published changes per event type (types with none left out).")
    groups: list[DigestGroup] = Field(min_length=1)
    summary: str = Field(description="One line for people; its wording may change, do not parse it.")


AnyEvent = (
    ThresholdBreached
    | ThresholdResolved
    | CollectionFailed
    | CollectionRecovered
    | ReportReady
    | PsaPlanReady
    | PsaPlanFailed
    | Digest
)
AlertEvent = Annotated[AnyEvent, Field(discriminator="event_type")]
EVENT_TYPES: Final = (BREACHED, RESOLVED, FAILED, RECOVERED, REPORT_READY, PSA_PLAN_READY, PSA_PLAN_FAILED, DIGEST)
_ADAPTER: Final[TypeAdapter[AlertEvent]] = TypeAdapter(AlertEvent)


def parse_event(data: Any) -> AnyEvent:
    """The model of one event body; pydantic.ValidationError when it is not one usagewatch publishes."""
    return _ADAPTER.validate_python(data)


def _absent_not_null(schema: dict[str, Any]) -> None:
    """An optional field is left out when it does not apply, never sent as null: say so in the schema."""
    for definition in schema.get("$defs", {}).values():
        required = set(definition.get("required", ()))
        for name, prop in definition.get("properties", {}).items():
            branches = prop.get("anyOf", [])
            if name in required or prop.get("default", ...) is not None or {"type": "null"} not in branches:
                continue
            (kept,) = [b for b in branches if b != {"type": "null"}]
            del prop["anyOf"], prop["default"]
            prop.update(kept)


def json_schema() -> dict[str, Any]:
    schema = _ADAPTER.json_schema()
    _absent_not_null(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "usagewatch alert event",
        "description": "The JSON body of every message usagewatch publishes to its alert topic (docs/alerts.md).",
        **schema,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")

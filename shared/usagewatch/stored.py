"""What the table gives back: an alert's stored state, an account's totals, a run's record, a tenant's stored usage
and its series. The vocabulary the store, the pipeline's finish and the reports share; `model.py` holds what a
source reads and a run asks for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from usagewatch.model import Number, UsageRecord, utc_iso

AlertStatus = Literal["firing", "resolved", "closed"]
COLLECTION_RULE: Final = "collection"
ACCOUNT_WIDE: Final = "*"


@dataclass(frozen=True, slots=True)
class AlertState:
    """The stored state of one alert_id: a threshold rule on one record, or a tenant's/account's collection.

    `published` says whether the event that opened this episode was delivered (a silenced alert fires
    unpublished and is delivered when the silence ends). Collection states use `rule = "collection"`,
    an empty metric and period, and `tenant_id = "*"` for a whole account.
    """

    alert_id: str
    vendor: str
    account_id: str
    tenant_id: str
    tenant_name: str
    metric: str
    rule: str
    period: str
    status: AlertStatus
    severity: str
    published: bool
    since: str
    updated_at: str
    last_published_at: str | None = None
    repeat_count: int = 0
    value: Number | None = None
    quota: Number | None = None
    projected: Number | None = None
    threshold: Number | None = None
    error: str | None = None
    reason: str | None = None
    customer_id: str | None = None
    """The customer owning the tenant (docs/billing.md), when the operator mapped it."""
    projection_source: str | None = None
    """Who computed `projected` ("vendor" or "usagewatch"), when there is one."""
    previous_since: str | None = None
    """The start of this alert's previous episode ("" for its first): what tells episodes apart in event ids."""
    version: int = 0
    """The stored version this state was read at (0: not read from the table); writes are conditional on it."""

    @property
    def is_collection(self) -> bool:
        return self.rule == COLLECTION_RULE


@dataclass(frozen=True, slots=True)
class Total:
    """Sum of one metric over an account's billed tenants in one period (a `total` item, docs/data-model.md)."""

    vendor: str
    account_id: str
    period: str
    metric: str
    unit: str
    value: Number
    tenant_count: int
    carried_tenant_count: int
    computed_at: str
    complete: bool = True
    """False when part of the listing failed and the customers beneath it were never stored (`missing` names it)."""
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One account's collection in one run: how it went, how fresh its numbers are."""

    vendor: str
    account_id: str
    run_id: str
    as_of: str
    started_at: str
    finished_at: str
    status: Literal["running", "ok", "partial", "failed", "skipped"]
    periods: tuple[str, ...]
    tenants_ok: int
    tenants_failed: int
    records_written: int
    alerts_published: int
    errors: tuple[str, ...]
    notes: tuple[str, ...] = ()
    """What the source wants said that is not a failure (a fallback it took, an optional call refused)."""


@dataclass(frozen=True, slots=True)
class StoredUsage:
    """A usage record as the table holds it: when it was collected and, for a customer gone from a complete
    listing, when it was marked removed (kept for the record, out of every total). `as_of` is set on history
    (the run that wrote the snapshot)."""

    record: UsageRecord
    collected_at: str
    removed_at: str | None = None
    as_of: str | None = None

    def row(self) -> dict[str, Any]:
        """The flat attributes a report or a machine reads (absent values left out)."""
        record, window = self.record, self.record.window
        attributes: dict[str, Any] = {
            "vendor": record.vendor,
            "account_id": record.account_id,
            "tenant_id": record.tenant.tenant_id,
            "tenant_name": record.tenant.tenant_name,
            "parent_tenant_id": record.tenant.parent_tenant_id,
            "billed": record.tenant.billed,
            "metric": record.metric,
            "value": record.value,
            "unit": record.unit,
            "period": str(window.period),
            "period_start": utc_iso(window.start),
            "period_end": utc_iso(window.end),
            "collected_at": self.collected_at,
            "quota": record.quota,
            "projected": record.projected,
            "minimum": record.minimum,
            "limit_exceeded": record.limit_exceeded,
            "projected_next_period": record.projected_next_period,
            "attributes": dict(record.attributes) if record.attributes else None,
            "projection_source": record.projection_source,
            "removed_at": self.removed_at,
            "as_of": self.as_of,
        }
        return {k: v for k, v in attributes.items() if v is not None}


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One tenant's metric in one period as its stored item knows it: the readings of the item's change log
    (`(as_of, value)`, oldest first: a step function, each value holding until the next) and the projection
    stored now."""

    points: tuple[tuple[str, Number], ...]
    projected: Number | None = None
    projection_source: str | None = None
    fit: tuple[float, ...] | None = None

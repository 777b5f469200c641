"""What one account's run has seen so far: its sums, findings, failures and readings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from usagewatch.alerts import Reading, TenantFailureInfo
from usagewatch.billing_alerts import BillingView
from usagewatch.model import Number, Period, Tenant, UsageRecord
from usagewatch.observability import logger
from usagewatch.pipeline.outcome import AccountOutcome
from usagewatch.rules import Finding
from usagewatch.stored import AlertState, Total


class Totals:
    """Running sums per (period, metric) over billed tenants."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], list[Any]] = {}

    def add(self, period: str, metric: str, unit: str, value: Number, tenant_id: str, *, carried: bool) -> None:
        entry = self.sums.get((period, metric))
        if entry is None:
            entry = self.sums[(period, metric)] = [unit, 0, set(), 0]
        entry[1] += value
        entry[2].add(tenant_id)
        entry[3] += carried

    def carry(self, record: UsageRecord) -> None:
        """A stored number not read this run, kept in its total (billed tenants only)."""
        if record.tenant.billed:
            self.add(str(record.period), record.metric, record.unit, record.value, record.tenant_id, carried=True)

    def totals(self, vendor: str, account_id: str, computed_at: str, missing: Sequence[str] = ()) -> list[Total]:
        return [
            Total(
                vendor,
                account_id,
                period,
                metric,
                unit,
                value,
                len(tenants),
                carried,
                computed_at,
                complete=not missing,
                missing=tuple(missing),
            )
            for (period, metric), (unit, value, tenants, carried) in sorted(self.sums.items())
        ]


@dataclass
class AccountRun:
    """What one account's run has seen so far."""

    vendor: str
    account_id: str
    started: datetime
    outcome: AccountOutcome = field(init=False)
    totals: Totals = field(default_factory=Totals)
    findings: list[Finding] = field(default_factory=list)
    ok_tenants: dict[str, str] = field(default_factory=dict)
    billed_tenants: set[str] = field(default_factory=set)
    failures: dict[str, TenantFailureInfo] = field(default_factory=dict)
    periods: set[str] = field(default_factory=set)
    read: set[tuple[str, str]] = field(default_factory=set)
    metrics_read: set[tuple[str, str, str]] = field(default_factory=set)
    silent_tenants: set[str] = field(default_factory=set)
    open_states: dict[str, AlertState] | None = None
    readings: dict[Reading, UsageRecord] = field(default_factory=dict)
    watched: set[Reading] = field(default_factory=set)
    error: str | None = None
    leased: bool = False
    gaps: dict[str, Tenant] = field(default_factory=dict)
    """Parts of the listing that failed (ListingGap), by tenant id: the customers beneath are unknown."""
    incomplete: list[str] = field(default_factory=list)
    billing: BillingView | None = None
    """Customers and contracts of this account (None: not configured or not readable: billing alerts kept)."""
    _period: tuple[Period | None, str] = field(default=(None, ""), init=False, repr=False)

    def __post_init__(self) -> None:
        self.outcome = AccountOutcome(self.account_id)

    def watch(self, open_states: dict[str, AlertState]) -> None:
        """Remember the firing alerts, so this run keeps the records that may resolve them."""
        self.open_states = open_states
        self.watched = {(s.tenant_id, s.metric, s.period) for s in open_states.values() if not s.is_collection}

    def observe(self, record: UsageRecord, findings: list[Finding]) -> None:
        if record.window.period is self._period[0]:  # a run's records share their source's window: named once
            period = self._period[1]
        else:
            period = str(record.window.period)
            self._period = (record.window.period, period)
        self.periods.add(period)
        tenant_id = record.tenant.tenant_id
        self.read.add((tenant_id, period))
        key = (tenant_id, record.metric, period)
        self.metrics_read.add(key)
        if key in self.watched:
            self.readings[key] = record
        if record.tenant.billed:
            self.totals.add(period, record.metric, record.unit, record.value, tenant_id, carried=False)
        self.findings.extend(findings)
        if self.billing is not None:
            self.billing.observe(record)
        self.outcome.records_written += 1

    def fail(self, error: str) -> None:
        self.error = error
        logger.error("account collection failed", extra={"account_id": self.account_id, "error": error})

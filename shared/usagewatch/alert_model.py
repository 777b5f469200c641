"""The alert lifecycle's plain types: what a run observed, a transition, and the context one step works in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from usagewatch.model import utc_iso
from usagewatch.rules import RulesDocument
from usagewatch.stored import COLLECTION_RULE, AlertState

Event = dict[str, Any]


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
class AlertCtx:
    """One step's rules, clock, transitions so far and the previous episodes' states."""

    document: RulesDocument
    now: datetime
    transitions: list[Transition] = field(default_factory=list)
    previous: Mapping[str, AlertState] = field(default_factory=dict)

    @property
    def now_iso(self) -> str:
        return utc_iso(self.now)


def silenced(ctx: AlertCtx, state: AlertState) -> bool:
    return ctx.document.silenced(
        vendor=state.vendor,
        account_id=state.account_id,
        tenant_id=state.tenant_id,
        metric=state.metric or COLLECTION_RULE,
        rule=state.rule,
        now=ctx.now,
    )

"""What a run adds to a tenant's readings from the stored ones: usagewatch's projection of cumulative metrics
(projection.py) and the `usage_jump` comparisons (rules.py). Reads only what the run reads anyway: the period's
stored items (the store keeps them from its one read per period) and, for `usage_jump`, the previous period's
closing values (one read of that period per run and account)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol

from usagewatch import registry
from usagewatch.model import Number, Period, UsageRecord, utc_iso
from usagewatch.projection import StepFit, extend, moved_materially, project_fit
from usagewatch.rules import Baselines, Finding, RulesDocument, evaluate, evaluate_jump
from usagewatch.stored import MetricSeries

JUMP_LOOKBACK: Final = timedelta(days=7)


class SeriesReader(Protocol):
    def tenant_series(self, vendor: str, account_id: str, tenant_id: str, period: str) -> dict[str, MetricSeries]: ...
    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]: ...


def value_at(points: Sequence[tuple[str, Number]], moment: str) -> Number | None:
    """The step function's value at `moment` (ISO UTC text): the last change at or before it; None before the
    first change (the log does not reach back that far)."""
    found: Number | None = None
    for as_of, value in points:
        if as_of > moment:
            break
        found = value
    return found


@dataclass
class Trends:
    """One account's run: the previous period's closing values are read once and kept here."""

    store: SeriesReader
    rules: RulesDocument
    _closing: dict[tuple[str, str, str], dict[tuple[str, str], Number]] = field(default_factory=dict)
    _previous_names: dict[Period, str] = field(default_factory=dict)
    _week_ago: tuple[datetime | None, str] = (None, "")

    def _closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]:
        key = (vendor, account_id, period)
        if key not in self._closing:
            self._closing[key] = self.store.closing_values(vendor, account_id, period)
        return self._closing[key]

    def judge(self, records: Sequence[UsageRecord], as_of: datetime) -> list[tuple[UsageRecord, list[Finding]]]:
        """One tenant's records of this run, with usagewatch's projection where it applies, and their findings
        (the rules of `evaluate` and `usage_jump`)."""
        judged: list[tuple[UsageRecord, list[Finding]]] = []
        periods: dict[Period, list[UsageRecord]] = {}
        last: Period | None = None
        group: list[UsageRecord] = []
        for record in records:
            if record.window.period is not last:  # a tenant's records share one period object, as a rule
                last = record.window.period
                group = periods.setdefault(last, [])
            group.append(record)
        jumps = self.rules.rules.usage_jump.enabled
        for period, group in periods.items():
            first = group[0]
            vendor = registry.find(first.vendor)
            cumulative = vendor.cumulative_metrics if vendor is not None else ()
            wanted = jumps or any(r.metric in cumulative for r in group)
            series = (
                self.store.tenant_series(first.vendor, first.account_id, first.tenant_id, str(period)) if wanted else {}
            )
            changed = any(
                r.metric not in series or not series[r.metric].points or series[r.metric].points[-1][1] != r.value
                for r in group
            )
            closing = self._previous_closing(first.vendor, first.account_id, period) if jumps else {}
            week_ago_at = self._week_ago_at(as_of)
            for read in group:
                record = read
                if read.metric in cumulative and read.projection_source != "vendor":
                    record = self._projected(read, series.get(read.metric), as_of, changed=changed)
                findings = evaluate(record, self.rules, as_of)
                if jumps:
                    jump = self._jump(record, series.get(record.metric), closing, week_ago_at, cumulative)
                    if jump is not None:
                        findings.append(jump)
                judged.append((record, findings))
        return judged

    def _week_ago_at(self, as_of: datetime) -> str:
        """`as_of` less JUMP_LOOKBACK as text, formatted once per run (every tenant of a run shares its as-of)."""
        if self._week_ago[0] != as_of:
            self._week_ago = (as_of, utc_iso(as_of - JUMP_LOOKBACK))
        return self._week_ago[1]

    def jump_findings(self, record: UsageRecord, as_of: datetime) -> list[Finding]:
        """`usage_jump` for a stored record (a run finished from the store: its projection is stored already)."""
        if not self.rules.rules.usage_jump.enabled:
            return []
        vendor = registry.find(record.vendor)
        series = self.store.tenant_series(record.vendor, record.account_id, record.tenant_id, str(record.period))
        closing = self._previous_closing(record.vendor, record.account_id, record.period)
        cumulative = vendor.cumulative_metrics if vendor else ()
        jump = self._jump(record, series.get(record.metric), closing, utc_iso(as_of - JUMP_LOOKBACK), cumulative)
        return [jump] if jump else []

    def _previous_closing(self, vendor: str, account_id: str, period: Period) -> dict[tuple[str, str], Number]:
        """The closing values of the period before `period` (its name formatted once per run, not per record)."""
        previous = self._previous_names.get(period)
        if previous is None:
            previous = self._previous_names[period] = str(period.previous())
        return self._closing_values(vendor, account_id, previous)

    def _projected(
        self, record: UsageRecord, series: MetricSeries | None, as_of: datetime, *, changed: bool
    ) -> UsageRecord:
        """The record with usagewatch's projection and the running sums it comes from. The fresh projection is
        stored when the tenant's reading changed or it moved materially, else the stored one is kept (so an
        unchanged tenant writes nothing); none once the period is over."""
        stored_fit = StepFit.from_list(series.fit) if series is not None else None
        if as_of >= record.window.end:
            return record.with_projection(None, None, series.fit if series else None)
        held = series.points[-1][1] if series is not None and series.points else None
        carried = extend(stored_fit, held, as_of, record.window, changed=held != record.value)
        stored = series.projected if series is not None and series.projection_source == "usagewatch" else None
        fit = project_fit(carried, record.value, record.window)
        override = self.rules.operator_quota(record)
        quota = override if override is not None else record.quota
        write = changed or stored_fit is None
        if fit is not None and (write or moved_materially(stored, fit.value, quota)):
            projected: Number | None = fit.value
            write = True
        else:
            projected = None if stored is None else max(stored, record.value)
        kept = carried if write or stored_fit is None else stored_fit
        return record.with_projection(projected, "usagewatch" if projected is not None else None, tuple(kept.as_list()))

    def _jump(
        self,
        record: UsageRecord,
        series: MetricSeries | None,
        closing: dict[tuple[str, str], Number],
        week_ago_at: str,
        cumulative: Sequence[str],
    ) -> Finding | None:
        """`usage_jump` (enabled) against the previous period's `closing` values and the reading `week_ago_at`."""
        week_ago = None
        # A cumulative metric grows every week by nature: it is compared with the previous period only.
        if series is not None and record.metric not in cumulative:
            week_ago = value_at(series.points, week_ago_at)
        previous = closing.get((record.tenant.tenant_id, record.metric))
        if previous is None and week_ago is None:  # nothing to compare with (a first run): no jump
            return None
        return evaluate_jump(record, self.rules, Baselines(previous, week_ago))

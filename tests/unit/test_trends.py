"""usagewatch's own projection (running sums of the step function) and the usage_jump rule: pure parts, then the
real Pipeline over the in-memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.memory_store import MemoryStore
from tests.unit.test_pipeline_memory import Events, ScriptedSource
from usagewatch.model import CollectionRequest, Period, Tenant, TenantUsage, UsageRecord, Window
from usagewatch.pipeline import Pipeline
from usagewatch.projection import StepFit, extend, moved_materially, project_fit
from usagewatch.rules import Baselines, evaluate_jump, jumped, parse_rules_document
from usagewatch.stored import MetricSeries
from usagewatch.trends import value_at

NOV = Window.month(Period(2026, 11))


def fitted(values: list[float], *, every_days: float = 1.0, start_day: float = 1.0) -> tuple[StepFit, float]:
    """The sums after one reading of each value, `every_days` apart, as the pipeline carries them."""
    fit: StepFit | None = None
    held: float | None = None
    for i, value in enumerate(values):
        now = NOV.start + timedelta(days=start_day + i * every_days)
        fit = extend(fit, held, now, NOV, changed=held is not None and held != value)
        held = value
    assert fit is not None
    return fit, values[-1]


def test_steady_growth_is_carried_to_the_month_end() -> None:
    # 10 a day from the 2nd (10 on day 1 after the window's start): a line through the readings reaches 300 on
    # 1 December; the step function each reading holds until the next lags it by half a step (~295).
    fit, last = fitted([10.0 * day for day in range(1, 11)])
    result = project_fit(fit, last, NOV)
    assert result is not None and 285 <= result.value <= 300
    assert (result.points, result.days) == (10, 9.0)


def test_too_few_changes_or_days_say_nothing() -> None:
    assert project_fit(*fitted([1, 2, 3]), NOV) is None  # 3 readings that changed it
    assert project_fit(*fitted([1, 2, 3, 4, 5], every_days=1.0), NOV) is None  # 4 days
    assert project_fit(*fitted([1, 2, 3, 4, 5], every_days=1.0), NOV, min_days=4) is not None


def test_a_flat_stretch_no_run_recorded_still_counts() -> None:
    growth, _ = fitted([20.0 * day for day in range(1, 11)])
    at_10 = project_fit(growth, 200, NOV)
    # The same growth, then nothing new for 12 days: one more `extend`, at the end of the flat stretch.
    later = extend(growth, 200, NOV.start + timedelta(days=22), NOV, changed=False)
    after = project_fit(later, 200, NOV)
    assert at_10 is not None and after is not None and after.value < at_10.value
    assert after.value >= 200


def test_a_falling_series_projects_its_last_value() -> None:
    result = project_fit(*fitted([100, 90, 80, 70, 60, 50]), NOV)
    assert result is not None and result.value == 50.0


def test_sums_survive_being_stored() -> None:
    fit, _ = fitted([1, 5, 9, 20, 21])
    assert StepFit.from_list(fit.as_list()) == fit
    assert StepFit.from_list(None) is None and StepFit.from_list([1.0, 2.0]) is None


@given(st.lists(st.integers(0, 10_000), min_size=5, max_size=30), st.floats(0.25, 3.0))
def test_monotone_input_projects_at_least_the_last_value(steps: list[int], every: float) -> None:
    values, total = [], 0
    for step in steps:
        total += step + 1  # strictly growing: every reading changes it
        values.append(float(total))
    fit, last = fitted(values, every_days=every, start_day=0)
    result = project_fit(fit, last, NOV, min_days=0.1)
    assert result is not None and result.value >= last


# Counts, as the cumulative metrics are: the fit's sums are kept to 3 decimals in the item, which a fraction such as
# 1/3 over a few days would move by a cent.
@given(st.integers(0, 10**9), st.integers(2, 28))
def test_a_flat_series_projects_flat(value: int, days: int) -> None:
    fit = extend(None, None, NOV.start, NOV, changed=False)
    fit = extend(fit, value, NOV.start + timedelta(days=days), NOV, changed=False)
    result = project_fit(fit, value, NOV, min_points=1, min_days=1)
    assert result is not None and abs(result.value - value) <= 1e-6 * max(1.0, value)


def test_what_moves_a_stored_projection_materially() -> None:
    assert moved_materially(None, 10, None)
    assert not moved_materially(100, 104, None)  # under 5 %
    assert moved_materially(100, 106, None)
    assert not moved_materially(10, 10.6, None)  # 6 % but under one unit
    assert moved_materially(299, 301, 300)  # it crosses the quota: the rule's answer changes
    assert not moved_materially(301, 302, 300)


# --- usage_jump --------------------------------------------------------------------------------------------


def test_a_jump_needs_both_the_share_and_the_units() -> None:
    assert jumped(125, 100, 25, 10)
    assert not jumped(124, 100, 25, 10)  # +24 %
    assert not jumped(15, 10, 25, 10)  # +50 % but 5 units
    assert jumped(10, 0, 25, 10)  # anything over nothing is a share
    assert not jumped(100, 100, 0, 0)  # no rise, no jump


@given(st.floats(0, 1e6), st.floats(0, 1e6), st.floats(0, 500), st.floats(0, 1e4))
def test_a_jump_is_a_rise_of_at_least_both_thresholds(value: float, base: float, percent: float, units: float) -> None:
    if jumped(value, base, percent, units):
        assert value - base >= units and value > base and (value - base) * 100 >= percent * base
    else:
        assert value <= base or value - base < units or (value - base) * 100 < percent * base


def keepnet_record(metric: str, value: float, quota: float | None = None) -> UsageRecord:
    return UsageRecord("keepnet", "kn", Tenant("c-1", "Acme"), metric, value, "users", NOV, quota=quota)


def test_the_previous_period_is_tried_first_then_a_week_ago_and_overrides_apply() -> None:
    doc = parse_rules_document(
        {
            "rules": {
                "usage_jump": {
                    "severity": "warning",
                    "overrides": [{"vendor": "keepnet", "metric": "target_users", "percent": 50}],
                }
            }
        }
    )
    finding = evaluate_jump(keepnet_record("monthly_users", 130), doc, Baselines(100, 10))
    assert finding is not None and (finding.rule, finding.severity, finding.threshold) == ("usage_jump", "warning", 100)
    finding = evaluate_jump(keepnet_record("monthly_users", 130), doc, Baselines(120, 100))
    assert finding is not None and finding.threshold == 100
    # target_users needs +50 % here: +40 % is not a jump.
    assert evaluate_jump(keepnet_record("target_users", 140), doc, Baselines(None, 100)) is None
    assert evaluate_jump(keepnet_record("target_users", 150), doc, Baselines(None, 100)) is not None
    off = parse_rules_document({"rules": {"usage_jump": {"enabled": False}}})
    assert evaluate_jump(keepnet_record("monthly_users", 1000), off, Baselines(1, 1)) is None


def test_value_at_reads_the_step_function() -> None:
    points = (("2026-11-02T06:00:00Z", 5), ("2026-11-05T06:00:00Z", 9))
    assert value_at(points, "2026-11-01T00:00:00Z") is None
    assert value_at(points, "2026-11-04T00:00:00Z") == 5
    assert value_at(points, "2026-11-05T06:00:00Z") == 9


def run(pipeline: Pipeline[str], source: ScriptedSource, when: datetime, *values: tuple[str, float]) -> None:
    tenant = Tenant("c-1", "Acme")
    records = tuple(
        UsageRecord("keepnet", "kn", tenant, m, v, "users", Window.month(Period.of(when))) for m, v in values
    )
    source.results = [TenantUsage(tenant, records)]
    pipeline.run(["kn"], CollectionRequest(Period.of(when), when))


def test_through_the_pipeline_a_jump_fires_once_resolves_and_an_unchanged_tenant_writes_nothing() -> None:
    store, events, source = MemoryStore(), Events(), ScriptedSource()
    pipeline = Pipeline(source, store, events, parse_rules_document({}))
    day = datetime(2026, 11, 1, 6, tzinfo=UTC)
    jumps = []
    for offset, target in ((0, 100), (3, 100), (8, 140), (9, 140), (16, 140)):
        run(pipeline, source, day + timedelta(days=offset), ("target_users", target), ("monthly_users", 10 + offset))
        jumps.append([(e["event_type"], e["value"]) for e in events.drain() if e.get("rule") == "usage_jump"])
    assert jumps == [[], [], [("usage.threshold.breached", 140)], [], [("usage.threshold.resolved", 140)]]

    stored = store.tenant_series("keepnet", "kn", "c-1", "2026-11")
    assert isinstance(stored["monthly_users"], MetricSeries) and stored["monthly_users"].fit is not None
    writes = store.writes
    run(pipeline, source, day + timedelta(days=16, hours=6), ("target_users", 140), ("monthly_users", 26))
    assert store.writes == writes  # same reading six hours on: the sums and the projection stay as stored


def test_the_jump_summary_shown_in_docs_alerts_md_is_the_code_s() -> None:
    from pathlib import Path

    from usagewatch.alerts import threshold_event
    from usagewatch.rules import Finding
    from usagewatch.stored import AlertState

    text = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text(encoding="utf-8")
    shown = text.split("A Keepnet customer at 100 monthly users in October")[1].split("```text\n")[1].split("\n")[0]
    record = UsageRecord(
        "keepnet", "kn-main", Tenant("c-42", "Acme Logistics GmbH"), "monthly_users", 130, "users", NOV
    )
    finding = Finding(record, "usage_jump", "info", 100, None)
    state = AlertState(
        alert_id="keepnet-x",
        vendor="keepnet",
        account_id="kn-main",
        tenant_id="c-42",
        tenant_name="Acme Logistics GmbH",
        metric="monthly_users",
        rule="usage_jump",
        period="2026-11",
        status="firing",
        severity=finding.severity,
        published=True,
        since="2026-11-12T06:00:00Z",
        updated_at="2026-11-12T06:00:00Z",
        value=130,
        threshold=finding.threshold,
    )
    event = threshold_event("usage.threshold.breached", state, datetime(2026, 11, 12, 6, tzinfo=UTC))
    assert event["summary"] == shown


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.closing_reads: list[str] = []

    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], float]:
        self.closing_reads.append(period)
        return super().closing_values(vendor, account_id, period)


def test_the_previous_period_is_read_once_per_account_run_not_per_tenant() -> None:
    store, source = CountingStore(), ScriptedSource()
    pipeline = Pipeline(source, store, Events(), parse_rules_document({}))
    window = Window.month(Period(2026, 11))
    tenants = [Tenant(f"c-{n}", f"Company {n}") for n in range(30)]
    source.results = [
        TenantUsage(t, (UsageRecord("keepnet", "kn", t, "target_users", 10, "users", window),)) for t in tenants
    ]
    pipeline.run(["kn"], CollectionRequest(Period(2026, 11), datetime(2026, 11, 3, tzinfo=UTC)))
    assert store.closing_reads == ["2026-10"]
    off = Pipeline(source, store, Events(), parse_rules_document({"rules": {"usage_jump": {"enabled": False}}}))
    off.run(["kn"], CollectionRequest(Period(2026, 11), datetime(2026, 11, 4, tzinfo=UTC)))
    assert store.closing_reads == ["2026-10"]

"""usagewatch's own projection as production computes it (trends.py): running sums of the metric's step function
(`StepFit`, carried by `extend`, stored as a list) and the least-squares line through them (`project_fit`), read at
the period's end and never below the last reading."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from usagewatch.model import Period, Window
from usagewatch.projection import MIN_DAYS, MIN_POINTS, StepFit, extend, project_fit

NOV = Window.month(Period(2026, 11))
START = NOV.start
DAY = 86400.0

# Readings as (hours since the previous one, value); the first comes `FIRST_HOURS` after the window's start.
# Half-day steps keep every sum exact at the 3 decimals the stored sums keep, so the checks can be tight.
FIRST_HOURS = 12
readings = st.lists(st.tuples(st.integers(1, 4).map(lambda n: 12 * n), st.integers(0, 5_000)), min_size=1, max_size=25)


def carried(steps: list[tuple[int, int]]) -> tuple[StepFit, list[tuple[float, float]]]:
    """The sums after each reading, as a run carries them (`held` is what the previous run stored), and the
    step function itself: (day it starts, value) per reading."""
    fit: StepFit | None = None
    held: int | None = None
    moment = START + timedelta(hours=FIRST_HOURS)
    segments: list[tuple[float, float]] = []
    for index, (gap, value) in enumerate(steps):
        if index:
            moment += timedelta(hours=gap)
        fit = extend(fit, held, moment, NOV, changed=held is not None and held != value)
        segments.append(((moment - START).total_seconds() / DAY, float(value)))
        held = value
    assert fit is not None
    return fit, segments


def exact_sums(segments: list[tuple[float, float]]) -> tuple[float, float, float, float, float]:
    """The integrals over the step function up to its last reading: of 1, t, t^2, y and t*y (each value holds from
    its reading to the next)."""
    span = t1 = t2 = y = ty = 0.0
    for (a, value), (b, _) in pairwise(segments):
        span += b - a
        t1 += (b**2 - a**2) / 2
        t2 += (b**3 - a**3) / 3
        y += value * (b - a)
        ty += value * (b**2 - a**2) / 2
    return span, t1, t2, y, ty


@given(readings)
def test_the_sums_are_the_integrals_of_the_step_function(steps: list[tuple[int, int]]) -> None:
    fit, segments = carried(steps)
    span, _, _, area, moment = exact_sums(segments)
    assert (fit.start, fit.upto - fit.start) == (segments[0][0], span)
    assert (fit.area, fit.moment) == (area, moment)
    values = [v for _, v in steps]
    assert fit.changes == 1 + sum(1 for a, b in pairwise(values) if a != b)


@given(readings)
def test_the_projection_is_the_least_squares_line_of_the_step_function(steps: list[tuple[int, int]]) -> None:
    fit, segments = carried(steps)
    result = project_fit(fit, steps[-1][1], NOV, min_points=1, min_days=0.5)
    span, t1, t2, area, moment = exact_sums(segments)
    if span < 0.5:
        assert result is None
        return
    assert result is not None
    # The continuous least-squares line over [start, upto], computed from its own integrals.
    mean_t, mean_y = t1 / span, area / span
    slope = (moment / span - mean_t * mean_y) / (t2 / span - mean_t**2)
    expected = max(float(steps[-1][1]), mean_y + slope * ((NOV.end - START).total_seconds() / DAY - mean_t))
    assert abs(result.value - expected) <= 0.005 + 1e-9 * max(abs(expected), mean_y, 1.0)
    assert result.value >= steps[-1][1]
    assert (result.points, result.days) == (fit.changes, round(fit.upto - fit.start, 2))


def test_the_first_reading_starts_the_sums_and_a_clock_gone_back_starts_them_again() -> None:
    first = extend(None, None, START + timedelta(days=2), NOV, changed=False)
    assert first == StepFit(2.0, 2.0, 0.0, 0.0, 1)
    later = extend(first, 10, START + timedelta(days=4), NOV, changed=True)
    assert later == StepFit(2.0, 4.0, 20.0, 60.0, 2)
    assert extend(later, 10, START + timedelta(days=3), NOV, changed=True) == StepFit(3.0, 3.0, 0.0, 0.0, 1)
    assert extend(later, None, START + timedelta(days=5), NOV, changed=True) == StepFit(5.0, 5.0, 0.0, 0.0, 1)


def test_too_few_changes_or_days_say_nothing_by_default() -> None:
    steady = [(24, 100 + 10 * day) for day in range(MIN_POINTS + 4)]
    fit, _ = carried(steady)
    assert project_fit(fit, steady[-1][1], NOV) is not None
    few, _ = carried(steady[: MIN_POINTS - 1])
    assert project_fit(few, steady[MIN_POINTS - 2][1], NOV) is None
    short, _ = carried([(6, 100 + day) for day in range(MIN_POINTS + 4)])  # changes enough, but within 2 days
    assert short.upto - short.start < MIN_DAYS
    assert project_fit(short, 107, NOV) is None


def test_the_sums_survive_the_table_s_decimals() -> None:
    fit, _ = carried([(24, 100), (24, 120), (24, 140)])
    stored = [Decimal(str(v)) for v in fit.as_list()]  # what a DynamoDB read hands back
    assert StepFit.from_list(stored) == fit  # type: ignore[arg-type]
    assert StepFit.from_list(None) is None and StepFit.from_list([]) is None
    assert StepFit.from_list([1.0, 2.0, 3.0, 4.0]) is None


@given(st.integers(0, 10**9), st.integers(MIN_POINTS, 14))
def test_a_flat_series_projects_flat(value: int, count: int) -> None:
    # One change (the first reading) then the same value for `count` days: flat at the value.
    fit, _ = carried([(24, value)] * count)
    result = project_fit(fit, value, NOV, min_points=1, min_days=1)
    assert result is not None and abs(result.value - value) <= 1e-6 * max(1, value)


def test_a_falling_series_projects_its_last_value() -> None:
    fit, _ = carried([(24, v) for v in (100, 90, 80, 70, 60, 50)])
    result = project_fit(fit, 50, NOV)
    assert result is not None and result.value == 50.0


def test_a_reading_on_the_window_s_last_day_projects_near_itself() -> None:
    moment: datetime = NOV.end - timedelta(hours=1)
    fit = extend(StepFit(1.0, 20.0, 1900.0, 19_950.0, 20), 100, moment, NOV, changed=False)
    result = project_fit(fit, 100, NOV)
    assert result is not None and 100 <= result.value < 101

"""Projection from stored readings: a line through the month so far, read at its end, never below the last."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from usagewatch.model import Period, Window
from usagewatch.projection import project

NOV = Window.month(Period(2026, 11))
START = NOV.start


def days(*values: float, every: float = 2.0) -> list[tuple[datetime, float]]:
    return [(START + timedelta(days=every * i), v) for i, v in enumerate(values)]


def test_steady_growth_is_carried_to_the_month_end() -> None:
    # 10 a day from 100 on the 1st: 100 + 10 * 30 = 400 on 1 December.
    result = project(days(100, 120, 140, 160, 180), NOV)
    assert result is not None
    assert result.value == 400.0
    assert (result.points, result.days) == (5, 8.0)


def test_too_few_points_or_days_say_nothing() -> None:
    assert project(days(100, 120, 140), NOV) is None
    assert project(days(100, 101, 102, 103, every=1.0), NOV) is None  # 3 days
    assert project(days(100, 101, 102, 103, every=1.0), NOV, min_days=3) is not None


def test_readings_outside_the_window_are_ignored() -> None:
    before = [(START - timedelta(days=3), 1000.0)]
    assert project(before + days(10, 10, 10, 10), NOV) == project(days(10, 10, 10, 10), NOV)


def test_a_falling_series_projects_its_last_value() -> None:
    result = project(days(100, 90, 80, 70, 60), NOV)
    assert result is not None and result.value == 60.0


series = st.lists(st.integers(0, 10_000), min_size=4, max_size=14)


@given(series)
def test_monotone_input_projects_at_least_the_last_value(steps: list[int]) -> None:
    values, total = [], 0
    for step in steps:
        total += step
        values.append(float(total))
    result = project(days(*values), NOV)
    assert result is not None and result.value >= values[-1]


@given(st.floats(0, 1e9, allow_nan=False), st.integers(4, 14))
def test_a_flat_series_projects_flat(value: float, count: int) -> None:
    result = project(days(*([value] * count)), NOV)
    assert result is not None and abs(result.value - round(value, 2)) <= 1e-6 * max(1.0, value)

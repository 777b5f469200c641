"""Where a metric will end its period, from the readings stored so far: for vendors that give no projection.

A least-squares line through the period's readings (time against value), read at the period's end, and never
below the last reading: usage that has been reached is billed. Pure; the rules decide whether it may alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from usagewatch.model import Number, Window

MIN_POINTS: Final = 4
MIN_DAYS: Final = 5.0


@dataclass(frozen=True, slots=True)
class Projection:
    value: float
    points: int
    days: float
    """How many days the readings span."""


def project(
    readings: Sequence[tuple[datetime, Number]],
    window: Window,
    *,
    min_points: int = MIN_POINTS,
    min_days: float = MIN_DAYS,
) -> Projection | None:
    """The projected value at `window.end`, or None with fewer than `min_points` readings inside the window or
    readings spanning less than `min_days` (too little to say where the month goes)."""
    inside = sorted((t, float(v)) for t, v in readings if window.start <= t < window.end)
    if len(inside) < max(2, min_points):
        return None
    origin = inside[0][0]
    xs = [(t - origin).total_seconds() / 86400 for t, _ in inside]
    ys = [v for _, v in inside]
    span = xs[-1] - xs[0]
    if span < min_days or span <= 0:
        return None
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    at_end = mean_y + slope * ((window.end - origin).total_seconds() / 86400 - mean_x)
    return Projection(round(max(ys[-1], at_end), 2), n, round(span, 2))

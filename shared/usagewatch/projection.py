"""Where a metric will end its period, from the readings stored so far: for vendors that give no projection.

A least-squares line through the period's step function (each reading holding until the next), kept as running
sums (`StepFit`) so no history is read, read at the period's end and never below the last reading: usage that
has been reached is billed. Pure; the rules decide whether it may alert.
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


MATERIAL_SHARE: Final = 0.05
MATERIAL_UNITS: Final = 1.0


def moved_materially(stored: Number | None, fresh: Number, quota: Number | None) -> bool:
    """Whether a fresh projection is worth a write over the stored one: it moved by at least 5 % and 1 unit, or
    it is on the other side of the quota (what `projected_over_quota` compares)."""
    if stored is None:
        return True
    if quota is not None and (stored > quota) != (fresh > quota):
        return True
    moved = abs(fresh - stored)
    return moved >= MATERIAL_UNITS and moved >= MATERIAL_SHARE * abs(stored)


@dataclass(frozen=True, slots=True)
class StepFit:
    """A change log's step function summed up as it goes, so a fit needs no history: from `start` (days since
    the window's start) to `upto`, the integrals of the value (`area`) and of time times value (`moment`), and how
    many readings changed it. Continuous least squares over it is the fit of the step function itself: every
    hour a value held weighs the same, however few runs recorded it."""

    start: float
    upto: float
    area: float
    moment: float
    changes: int

    def as_list(self) -> list[float]:
        return [self.start, self.upto, self.area, self.moment, self.changes]

    @classmethod
    def from_list(cls, values: Sequence[float] | None) -> StepFit | None:
        if not values or len(values) != 5:
            return None
        start, upto, area, moment, changes = (float(v) for v in values)
        return cls(start, upto, area, moment, int(changes))


def _days(window: Window, moment: datetime) -> float:
    return (moment - window.start).total_seconds() / 86400


def extend(fit: StepFit | None, held: Number | None, now: datetime, window: Window, *, changed: bool) -> StepFit:
    """`fit` carried to `now`, `held` (the stored value) having held since `fit.upto`; `changed`: a new value
    starts now. No fit yet: one starting now."""
    at = round(_days(window, now), 4)
    if fit is None or held is None or at < fit.upto:
        return StepFit(at, at, 0.0, 0.0, 1)
    area = fit.area + float(held) * (at - fit.upto)
    moment = fit.moment + float(held) * (at**2 - fit.upto**2) / 2
    return StepFit(fit.start, at, round(area, 3), round(moment, 3), fit.changes + changed)


def project_fit(
    fit: StepFit, last: Number, window: Window, *, min_points: int = MIN_POINTS, min_days: float = MIN_DAYS
) -> Projection | None:
    """The least-squares line through the step function `fit` sums up (to `fit.upto`), read at the window's end,
    never below `last`; None with fewer than `min_points` readings that changed it or less than `min_days`."""
    span = fit.upto - fit.start
    if fit.changes < max(1, min_points) or span < min_days or span <= 0:
        return None
    mean_t = (fit.start + fit.upto) / 2
    mean_y = fit.area / span
    covariance = fit.moment / span - mean_t * mean_y
    slope = covariance / (span**2 / 12)
    at_end = mean_y + slope * (_days(window, window.end) - mean_t)
    return Projection(round(max(float(last), at_end), 2), fit.changes, round(span, 2))

"""Contracts: what the MSP bills a customer for one vendor metric, versioned by the month it takes effect.

A new quantity is a new version (a later `effective_from`), never an overwrite, so last month's reconciliation
keeps the quantity that was in force then.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

from usagewatch.model import Number, Period


def as_number(value: Decimal) -> Number:
    """A contracted quantity as the Number usage is counted in (an int when whole, as counts are)."""
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass(frozen=True, slots=True)
class Contract:
    customer_id: str
    vendor: str
    metric: str
    quantity: Decimal
    effective_from: Period
    effective_to: Period | None = None
    """The last month it applies to (inclusive); None while it runs."""
    agreement: str | None = None
    unit_price: Decimal | None = None
    amended_at: str | None = None
    """When an import with `--amend` last changed a month this version covers that had already ended."""
    psa_line: str | None = None
    """`{agreement id}/{addition id}` of the PSA line a `psa sync` read it from: the sync owns such versions."""

    def __post_init__(self) -> None:
        # Code that builds a contract from a literal may give an int (exact) or a float (taken by its repr, the
        # digits it was written with); files and the table give Decimal (imports.parse_number).
        for name in ("quantity", "unit_price"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Decimal):
                object.__setattr__(self, name, Decimal(value if isinstance(value, int) else repr(value)))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.customer_id, self.vendor, self.metric)

    def covers(self, period: Period) -> bool:
        return self.effective_from <= period and (self.effective_to is None or period <= self.effective_to)


def in_force(contracts: Iterable[Contract], period: Period) -> dict[tuple[str, str, str], Contract]:
    """Per (customer, vendor, metric) the version in force in `period`: the latest `effective_from` not after
    it, unless that version has ended."""
    latest: dict[tuple[str, str, str], Contract] = {}
    for contract in contracts:
        if contract.effective_from > period:
            continue
        held = latest.get(contract.key)
        if held is None or contract.effective_from > held.effective_from:
            latest[contract.key] = contract
    return {key: c for key, c in latest.items() if c.covers(period)}


def _same_version(a: Contract | None, b: Contract) -> bool:
    return a is not None and replace(a, amended_at=None) == replace(b, amended_at=None)


def _terms(contract: Contract | None) -> tuple[object, ...] | None:
    """What a month is billed by: the version in force and its quantity, price and agreement."""
    if contract is None:
        return None
    return (contract.effective_from, contract.quantity, contract.unit_price, contract.agreement)


def check_history(
    stored: Sequence[Contract], incoming: Sequence[Contract], *, now: Period, amend: bool
) -> tuple[list[tuple[Contract, str]], set[tuple[str, str, str]]]:
    """What is wrong with adding `incoming` to the `stored` versions, and the keys whose ended months change.

    Versions of one (customer, vendor, metric) may not overlap, stored ones included; changing the terms in force
    in a month before `now` is refused unless `amend` (giving terms to an ended month that had none is not).
    Returns (contract of `incoming`, problem) pairs and the amended keys."""
    by_key: dict[tuple[str, str, str], dict[Period, Contract]] = {}
    for contract in stored:
        by_key.setdefault(contract.key, {})[contract.effective_from] = contract
    problems: list[tuple[Contract, str]] = []
    amended: set[tuple[str, str, str]] = set()
    for key, new in itertools.groupby(sorted(incoming, key=lambda c: c.key), key=lambda c: c.key):
        before = by_key.get(key, {})
        after = dict(before)
        changed = [c for c in new if not _same_version(before.get(c.effective_from), c)]
        if not changed:
            continue
        after.update({c.effective_from: c for c in changed})
        mine = {c.effective_from for c in changed}
        versions = sorted(after.values(), key=lambda c: c.effective_from)
        for current, following in itertools.pairwise(versions):
            if current.effective_to is not None and current.effective_to >= following.effective_from:
                culprit = following if following.effective_from in mine else current
                other = current if culprit is following else following
                problems.append(
                    (culprit, f"overlaps the stored version from {other.effective_from}"
                     + (f" (it runs to {current.effective_to})" if culprit is following else "")
                     + ": end one with effective_to before the other starts")
                )  # fmt: skip
        start = min(c.effective_from for c in changed)
        month, altered = start, False
        while month < now and not altered:
            held = _force(before.values(), month)  # a month with no contract before is filled in, not amended
            altered = held is not None and _terms(held) != _terms(_force(after.values(), month))
            month = month.next()
        if altered and not amend:
            problems.append(
                (min(changed, key=lambda c: c.effective_from),
                 f"changes {month.previous()}, a month already ended: add --amend to change billed history")
            )  # fmt: skip
        elif altered:
            amended.add(key)
    return problems, amended


def _force(versions: Iterable[Contract], period: Period) -> Contract | None:
    return next(iter(in_force(versions, period).values()), None)

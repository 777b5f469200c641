"""Contracts: what the MSP bills a customer for one vendor metric, versioned by the month it takes effect.

A new quantity is a new version (a later `effective_from`), never an overwrite, so last month's reconciliation
keeps the quantity that was in force then.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from usagewatch.model import Number, Period


@dataclass(frozen=True, slots=True)
class Contract:
    customer_id: str
    vendor: str
    metric: str
    quantity: Number
    effective_from: Period
    effective_to: Period | None = None
    """The last month it applies to (inclusive); None while it runs."""
    agreement: str | None = None
    unit_price: float | None = None

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

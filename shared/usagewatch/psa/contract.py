"""The PSA adapter contract: what usagewatch reads from and writes to a PSA, whatever the PSA (docs/psa.md).

A PSA bills a customer (a `PsaCompany`) under agreements (`PsaAgreement`) through lines (`PsaLine`: one product,
a quantity, a unit price). An adapter reads those, re-reads one line, checks the connection, and changes a line's
quantity in the one way its PSA allows: an absolute quantity (ConnectWise, HaloPSA) or a delta (Autotask).
Quantities and prices are `Decimal`, converted from the PSA's own text, never through a float.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from usagewatch.errors import VendorApiError


class BillCustomer(StrEnum):
    """Whether a line is billed: only `BILLABLE` lines become contract lines."""

    BILLABLE = "Billable"
    DO_NOT_BILL = "DoNotBill"
    NO_CHARGE = "NoCharge"


WriteMode = Literal["absolute", "delta"]


@dataclass(frozen=True, slots=True)
class PsaInfo:
    """What a connection check learned: the PSA's name and version, and where it answered."""

    psa: str
    version: str
    cloud: bool | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class PsaCompany:
    id: int
    identifier: str
    name: str


@dataclass(frozen=True, slots=True)
class PsaAgreement:
    id: int
    company_id: int
    name: str
    status: str
    """The PSA's own status word (ConnectWise: Active, Cancelled, Expired, Inactive)."""
    cancelled: bool
    billing_cycle: str | None = None
    bill_start_date: date | None = None
    next_invoice_date: date | None = None
    prorate: bool = False

    @property
    def active(self) -> bool:
        return self.status == "Active" and not self.cancelled


@dataclass(frozen=True, slots=True)
class LineRef:
    """Where a line lives: enough to re-read it or write it."""

    agreement_id: int
    line_id: int

    def __str__(self) -> str:
        return f"{self.agreement_id}/{self.line_id}"


@dataclass(frozen=True, slots=True)
class PsaLine:
    """One billed line (a ConnectWise agreement addition)."""

    ref: LineRef
    company_id: int | None
    product_id: int | None
    product_identifier: str
    quantity: Decimal
    unit_price: Decimal | None
    bill_customer: BillCustomer
    effective_date: date | None = None
    cancelled_date: date | None = None
    agreement_status: str | None = None
    """The status the PSA reports on the line itself (ConnectWise copies the agreement's)."""

    def cancelled_on(self, day: date) -> bool:
        """Cancelled on `day`: a cancelled date on or before it, or a line of a cancelled agreement."""
        if self.agreement_status == "Cancelled":
            return True
        return self.cancelled_date is not None and self.cancelled_date <= day

    @property
    def billable(self) -> bool:
        return self.bill_customer is BillCustomer.BILLABLE


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line read but not usable as it stands (a quantity that cannot be stored exactly, a missing product)."""

    ref: LineRef
    product_identifier: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """The exact request a write would send (for a dry run): method, path under the API root, body."""

    method: str
    path: str
    body: str


class WriteOutcomeUnknownError(VendorApiError):
    """A write was sent and no answer says whether it took (a timeout, a reset, a 5xx).

    Never answered by sending the write again: the caller re-reads the line first (docs/psa.md).
    """

    def __init__(self, message: str, *, ref: LineRef, status: int | None = None) -> None:
        super().__init__(message, status=status, retryable=False)
        self.ref = ref


class LineGoneError(VendorApiError):
    """The line (or its agreement) no longer exists in the PSA."""

    def __init__(self, message: str, *, ref: LineRef) -> None:
        super().__init__(message, status=404, retryable=False)
        self.ref = ref


@runtime_checkable
class PsaReader(Protocol):
    """The read side every adapter has."""

    psa: str
    write_mode: WriteMode

    def check(self) -> PsaInfo:
        """Call the PSA once; raise VendorAuthError/VendorApiError with a one-line reason if it cannot be used."""
        ...

    def companies(self) -> Iterator[PsaCompany]: ...

    def active_agreements(self) -> Iterator[PsaAgreement]:
        """Agreements that are active and not cancelled."""
        ...

    def lines(self, agreement: PsaAgreement) -> Iterator[PsaLine | LineProblem]:
        """Every line of one agreement, or a problem where a line cannot be used as read."""
        ...

    def read_line(self, ref: LineRef) -> PsaLine:
        """The line as the PSA has it now; LineGoneError if it was deleted; VendorDataError if it cannot be used."""
        ...


@runtime_checkable
class AbsoluteQuantityPsa(PsaReader, Protocol):
    """A PSA whose line quantity is set outright (ConnectWise, HaloPSA): writing the same value twice is harmless."""

    def set_quantity(self, ref: LineRef, quantity: Decimal) -> PsaLine:
        """Set the quantity; return the line as the PSA answered. WriteOutcomeUnknownError if the answer was lost."""
        ...

    def describe_write(self, ref: LineRef, quantity: Decimal) -> WriteRequest:
        """What `set_quantity` would send, without sending anything (a dry run)."""
        ...


@runtime_checkable
class DeltaQuantityPsa(PsaReader, Protocol):
    """A PSA that only takes a change to add (Autotask's create-only `unitChange`): a repeat counts twice.

    `key` identifies the change in the caller's ledger of what was sent; an adapter that can, writes it into the
    PSA too (Autotask: a contract note), so a re-read can tell whether a lost answer hid a change that took.
    """

    def add_quantity(self, ref: LineRef, delta: Decimal, *, effective: date, key: str) -> None: ...


def split_lines(items: Iterator[PsaLine | LineProblem]) -> tuple[list[PsaLine], list[LineProblem]]:
    """Lines and problems apart, in the order read."""
    lines: list[PsaLine] = []
    problems: list[LineProblem] = []
    for item in items:
        if isinstance(item, LineProblem):
            problems.append(item)
        else:
            lines.append(item)
    return lines, problems

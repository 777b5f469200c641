"""Plain, typed, vendor-neutral values that flow through the pipeline."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, runtime_checkable

from usagewatch import registry
from usagewatch.errors import ConfigError, VendorDataError
from usagewatch.text import clean_name

if TYPE_CHECKING:
    from usagewatch.pacing import Deadline

Number = int | float

# Larger than any real licence count; a value above it is a vendor bug, not usage.
MAX_PLAUSIBLE_VALUE: Final = 10**15
# Vendor-controlled names are cut to this many characters before they are stored or published.
MAX_NAME_LENGTH: Final = 256

_PERIOD_RE: Final = re.compile(r"^(\d{4})-(\d{2})$")
# A record's attributes: a few facts beside the numbers (a SKU's id and state), never part of any total.
MAX_ATTRIBUTES: Final = 16
MAX_ATTRIBUTE_TEXT: Final = 128
_ATTRIBUTE_KEY_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@functools.lru_cache(maxsize=256)  # a run formats the same few times (as-of, period bounds) per record
def utc_iso(moment: datetime) -> str:
    """ISO 8601 UTC with a `Z`, second precision: the one timestamp format of records and events."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str, *, field: str = "time") -> datetime:
    """Parse an ISO 8601 time (a `Z` or an offset; naive means UTC); ConfigError names the field."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{field}: expected an ISO 8601 time, got {text!r}")
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{field}: expected an ISO 8601 time, got {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@functools.lru_cache(maxsize=512)
def _period_text(year: int, month: int) -> str:
    """`YYYY-MM`, formatted once per month named (a run names the same one or two months for every record)."""
    return f"{year:04d}-{month:02d}"


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A calendar month, `YYYY-MM`."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str, *, field: str = "period") -> Period:
        match = _PERIOD_RE.match(text) if isinstance(text, str) else None
        if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
            raise ConfigError(f"{field}: expected YYYY-MM (e.g. 2026-11), got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, moment: datetime) -> Period:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    def __str__(self) -> str:
        return _period_text(self.year, self.month)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first instant of the next month (exclusive end)."""
        return self.next().start

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), 12 if self.month == 1 else self.month - 1)


@dataclass(frozen=True, slots=True)
class Window:
    """The span a record's numbers cover: a calendar month, or a vendor's own billing period."""

    period: Period
    start: datetime
    end: datetime

    @classmethod
    def month(cls, period: Period) -> Window:
        return cls(period, period.start, period.end)

    def elapsed_share(self, as_of: datetime) -> float:
        """Share of the window that has passed at `as_of`, clamped to 0..1."""
        total = (self.end - self.start).total_seconds()
        if total <= 0:
            return 1.0
        return min(1.0, max(0.0, (as_of - self.start).total_seconds() / total))

    def remaining(self, as_of: datetime) -> timedelta:
        return self.end - as_of


@dataclass(frozen=True, slots=True)
class Tenant:
    """A vendor's customer company, organisation or breakdown unit.

    `billed` is False for rows whose numbers already appear in another tenant's (a GravityZone
    partner company that includes its children, a ThousandEyes account group inside its
    organisation): they are stored, never added to totals.
    """

    tenant_id: str
    tenant_name: str
    parent_tenant_id: str | None = None
    billed: bool = True

    def __post_init__(self) -> None:
        name = self.tenant_name
        # Printable (no control, format or line-break character), one space at a time, trimmed and short: a name
        # clean_name leaves as it is.
        if (
            type(name) is str
            and len(name) <= MAX_NAME_LENGTH
            and name.isprintable()
            and "  " not in name
            and name == name.strip()
        ):
            return
        name = clean_name(name[: MAX_NAME_LENGTH * 4])
        if len(name) > MAX_NAME_LENGTH:
            name = name[: MAX_NAME_LENGTH - 1] + "\u2026"
        if name != self.tenant_name:
            object.__setattr__(self, "tenant_name", name)


def _plain_count(value: object) -> bool:
    """The common case, checked in one step: a plain int in range (a bool or an int subclass takes the full check)."""
    return type(value) is int and 0 <= value <= MAX_PLAUSIBLE_VALUE


def _check_number(name: str, value: object, tenant_id: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VendorDataError(f"tenant {tenant_id}: {name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or value > MAX_PLAUSIBLE_VALUE:
        raise VendorDataError(f"tenant {tenant_id}: {name} out of range: {value!r}")


def _checked_attributes(attributes: object, tenant_id: str, metric: str) -> dict[str, int | str]:
    where = f"tenant {tenant_id}: metric {metric}: attributes"
    if not isinstance(attributes, Mapping):
        raise VendorDataError(f"{where} must be a mapping, got {type(attributes).__name__}")
    if len(attributes) > MAX_ATTRIBUTES:
        raise VendorDataError(f"{where}: at most {MAX_ATTRIBUTES}, got {len(attributes)}")
    checked: dict[str, int | str] = {}
    for key, value in sorted(attributes.items()):
        if not isinstance(key, str) or not _ATTRIBUTE_KEY_RE.fullmatch(key):
            raise VendorDataError(f"{where}: invalid name {str(key)[:40]!r} (expected snake_case)")
        if isinstance(value, str):
            checked[key] = clean_name(value)[:MAX_ATTRIBUTE_TEXT]
        elif isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_PLAUSIBLE_VALUE:
            raise VendorDataError(f"{where}.{key} must be an integer or text, got {value!r:.40}")
        else:
            checked[key] = value
    return checked


ProjectionSource = Literal["vendor", "usagewatch"]


@dataclass(frozen=True, slots=True, init=False)
class UsageRecord:
    """One normalised number: a tenant's usage of one metric in one period (docs/data-model.md).

    Its `__init__` is written out rather than generated: a frozen dataclass's own sets every field through
    `object.__setattr__`, about 5 µs a record against 1.6 µs through the slots' setters, and a Keepnet run of
    10,000 companies makes 40,000 records (docs/performance.md). `tests/unit/test_record_fast_paths.py` holds it
    to the fields, their order and defaults."""

    vendor: str
    account_id: str
    tenant: Tenant
    metric: str
    value: Number
    unit: str
    window: Window
    quota: Number | None = None
    projected: Number | None = None
    minimum: Number | None = None
    limit_exceeded: bool | None = None
    projected_next_period: Number | None = None
    """The vendor's projection for the next billing period (ThousandEyes `*NextBillingPeriod`): a forecast."""
    attributes: Mapping[str, int | str] | None = field(default=None, hash=False)
    """A few facts beside the numbers (Microsoft 365: a SKU's id, state and other prepaid counts): snake_case keys,
    integer or short text values, at most MAX_ATTRIBUTES; stored with the metric, never summed or alerted on."""
    projection_source: ProjectionSource | None = None
    """Who computed `projected`: the vendor (the default when a source gives one) or usagewatch (projection.py)."""
    projection_fit: tuple[float, ...] | None = None
    """usagewatch's running sums of the metric's step function this period (projection.StepFit), stored with it."""

    def __init__(
        self,
        vendor: str,
        account_id: str,
        tenant: Tenant,
        metric: str,
        value: Number,
        unit: str,
        window: Window,
        quota: Number | None = None,
        projected: Number | None = None,
        minimum: Number | None = None,
        limit_exceeded: bool | None = None,
        projected_next_period: Number | None = None,
        attributes: Mapping[str, int | str] | None = None,
        projection_source: ProjectionSource | None = None,
        projection_fit: tuple[float, ...] | None = None,
    ) -> None:
        setters = _RECORD_SETTERS
        setters[0](self, vendor)
        setters[1](self, account_id)
        setters[2](self, tenant)
        setters[3](self, metric)
        setters[4](self, value)
        setters[5](self, unit)
        setters[6](self, window)
        setters[7](self, quota)
        setters[8](self, projected)
        setters[9](self, minimum)
        setters[10](self, limit_exceeded)
        setters[11](self, projected_next_period)
        setters[12](self, attributes)
        setters[13](self, projection_source)
        setters[14](self, projection_fit)
        self.__post_init__()

    def __post_init__(self) -> None:
        tid = self.tenant.tenant_id
        if self.projection_source is None and self.projected is not None:
            object.__setattr__(self, "projection_source", "vendor")
        elif self.projection_source not in (None, "vendor", "usagewatch"):
            raise VendorDataError(f"tenant {tid}: metric {self.metric}: unknown projection source")
        if self.attributes is not None:
            object.__setattr__(self, "attributes", _checked_attributes(self.attributes, tid, self.metric) or None)
        known = registry.find(self.vendor)
        if known is None:
            raise VendorDataError(f"unknown vendor {self.vendor!r}")
        named = (self.vendor, self.unit, self.metric)
        if _NAMES_CHECKED.get(named) is not known:  # checked against this registration of the vendor
            if self.unit not in known.units:
                raise VendorDataError(f"tenant {tid}: metric {self.metric}: unknown unit {self.unit!r}")
            if type(self.metric) is not str or not _METRIC_RE.fullmatch(self.metric):
                raise VendorDataError(f"tenant {tid}: invalid metric name {self.metric!r}")
            if len(_NAMES_CHECKED) < MAX_NAMES_CHECKED:
                _NAMES_CHECKED[named] = known
        value = self.value
        if type(value) is not int or not 0 <= value <= MAX_PLAUSIBLE_VALUE:  # else a plain count, valid
            _check_number(f"{self.metric}.value", value, tid, optional=False)
        if not (self.quota is self.projected is self.minimum is self.projected_next_period is None):
            for name, number in (
                ("quota", self.quota),
                ("projected", self.projected),
                ("minimum", self.minimum),
                ("projected_next_period", self.projected_next_period),
            ):
                if number is not None and (type(number) is not int or not 0 <= number <= MAX_PLAUSIBLE_VALUE):
                    _check_number(f"{self.metric}.{name}", number, tid, optional=True)

    def with_projection(
        self, projected: Number | None, source: ProjectionSource | None, fit: tuple[float, ...] | None
    ) -> UsageRecord:
        """This record with another projection, its source and running sums, validating only what changed (the
        rest was validated when this record was made): what `dataclasses.replace` gives, without re-checking
        every field."""
        if source is None and projected is not None:
            source = "vendor"
        elif source not in (None, "vendor", "usagewatch"):
            raise VendorDataError(f"tenant {self.tenant.tenant_id}: metric {self.metric}: unknown projection source")
        if projected is not None and not _plain_count(projected):
            _check_number(f"{self.metric}.projected", projected, self.tenant.tenant_id, optional=True)
        copy = object.__new__(UsageRecord)
        for setter, getter in _RECORD_COPY:
            setter(copy, getter(self))
        _SET_PROJECTION(copy, projected)
        _SET_PROJECTION_SOURCE(copy, source)
        _SET_PROJECTION_FIT(copy, fit)
        return copy

    @property
    def period(self) -> Period:
        return self.window.period

    @property
    def tenant_id(self) -> str:
        return self.tenant.tenant_id


_METRIC_RE: Final = re.compile(r"[a-z0-9_]+")
# (vendor, unit, metric) names already found valid, with the vendor's registration they were checked against: a run
# repeats a few of them thousands of times. Bounded, since a metric name can come from the vendor (a SKU's).
_NAMES_CHECKED: Final[dict[tuple[str, str, str], object]] = {}
MAX_NAMES_CHECKED: Final = 4096
_SLOTS: Final[dict[str, Any]] = {f.name: getattr(UsageRecord, f.name) for f in fields(UsageRecord)}
_RECORD_SETTERS: Final = tuple(slot.__set__ for slot in _SLOTS.values())
_SET_PROJECTION: Final = _SLOTS["projected"].__set__
_SET_PROJECTION_SOURCE: Final = _SLOTS["projection_source"].__set__
_SET_PROJECTION_FIT: Final = _SLOTS["projection_fit"].__set__
_RECORD_COPY: Final = tuple(
    (slot.__set__, slot.__get__)
    for name, slot in _SLOTS.items()
    if name not in ("projected", "projection_source", "projection_fit")
)


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """Every record of one tenant from one successful read."""

    tenant: Tenant
    records: tuple[UsageRecord, ...]


@dataclass(frozen=True, slots=True)
class TenantFailure:
    """One tenant could not be read; the others go on."""

    tenant: Tenant
    error: str


@dataclass(frozen=True, slots=True)
class ListingGap(TenantFailure):
    """A part of the listing could not be read (a partner's or folder's sub-listing, a page).

    `tenant` names the part that failed. The customers beneath it are unknown this run: the pipeline
    carries their last stored numbers and treats the listing as incomplete, so nobody is taken for gone.
    """


TenantResult = TenantUsage | TenantFailure


@dataclass(frozen=True, slots=True)
class CollectionRequest:
    """What one run asks a source for."""

    period: Period
    as_of: datetime
    period_explicit: bool = False
    deadline: Deadline | None = field(default=None, compare=False)
    """When the source's vendor requests must end (sources hand it to their HttpClient)."""


AccountT = TypeVar("AccountT")


class Source(Protocol[AccountT]):
    """One vendor: validates its accounts and reads them. Never touches AWS.

    `collect` yields one result per tenant (streaming, so thousands of tenants never sit in memory
    as raw pages) and raises `VendorApiError`/`VendorDataError` when the account as a whole cannot be
    read: then nothing it yielded counts as a complete listing.
    """

    vendor: str

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> AccountT: ...

    def account_id(self, account: AccountT) -> str: ...

    def collect(self, account: AccountT, request: CollectionRequest) -> Iterator[TenantResult]: ...


@runtime_checkable
class NotingSource(Protocol):
    """A source with things to say about an account's collection that are not failures."""

    def drain_notes(self, account_id: str) -> list[str]: ...


@runtime_checkable
class ChunkedSource(Protocol):
    """A source whose accounts may need more than one invocation (GravityZone at 5 requests a second).

    `plan_chunks` returns None when the account fits `budget_seconds`, else JSON-serialisable chunks of
    tenants; `collect_chunk` reads one of them.
    """

    def plan_chunks(
        self, account: Any, request: CollectionRequest, budget_seconds: float
    ) -> list[list[dict[str, Any]]] | None: ...

    def collect_chunk(
        self, account: Any, request: CollectionRequest, chunk: list[dict[str, Any]]
    ) -> Iterator[TenantResult]: ...

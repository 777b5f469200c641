"""The vendors usagewatch knows: the one list (docs/adding-a-vendor.md).

Everything else asks here: the record and rules validation (ids, units), people's wording (names), the
CLI's choices, the Lambda entry points (the source factory), the tests' local stack (the template's
resource names). A source is named by its import path and imported only when a function first needs it,
so importing the registry costs nothing at cold start.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from usagewatch.model import Source

_ID_RE: Final = re.compile(r"^[a-z][a-z0-9]{1,31}$")
_TEMPLATE_RE: Final = re.compile(r"^[A-Z][A-Za-z0-9]{1,63}$")
_TARGET_RE: Final = re.compile(r"^[a-z_][a-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Vendor:
    """One vendor: how records, rules, people and the stack name it, and where its source lives."""

    id: str
    """In records, table keys, events and the rules document: lower case, never changed once data exists."""
    name: str
    """What people read: e-mails, the CLI, the monthly report."""
    units: tuple[str, ...]
    """The units its records count in (a record in any other unit is refused)."""
    template_name: str
    """The prefix of its template resources: `{template_name}CollectorFunction`, `{template_name}SecretName`."""
    source: str
    """`module:callable`, a zero-argument callable giving the source (a class or a factory)."""
    settings: str
    """`module:Model`, the pydantic model of one account in the vendor secret (docs/vendors/<id>.md)."""
    billed_metrics: tuple[str, ...] = ()
    """The metrics an MSP bills in the usual case, most important first: each account's period total of them is
    a CloudWatch metric on the dashboard (a handful at most: each costs per account and month)."""
    utilization_alerts: bool = True
    """Whether `quota_utilization` judges it by default. False where using every seat bought is the normal, healthy
    state (Microsoft 365 seats are bought to be assigned): only over quota and unused seats are news there."""
    unused_licence_alerts: bool = False
    """Whether `unused_licences` judges it by default: True where each seat is bought and a seat nobody is assigned
    is money lost (Microsoft 365); other vendors' quotas are commitments or caps, not seats bought one by one."""
    free_metrics: tuple[str, ...] = ()
    """Metric patterns (`fnmatch`) the vendor gives away in bulk (free, viral and trial offers: thousands of
    "enabled" seats nobody buys): never worth an unused-licence alert. The rules document's
    `unused_licences.exclude` replaces them (docs/alerts.md)."""
    whole_readings: bool = False
    """A tenant's successful read lists every metric it has (Microsoft 365's subscribed SKUs): a metric missing from
    it is gone, and its open alerts resolve. False where a read may cover some metrics only (Keepnet's past months)."""
    cumulative_metrics: tuple[str, ...] = ()
    case_insensitive_ids: bool = False
    """Its tenant ids ignore case (GUIDs): a mapping of `ABC-...` is the tenant stored as `abc-...`."""
    """Metrics that only grow through their period and start again in the next (a count of who was active this
    month): usagewatch projects them to the period end where the vendor gives no projection (docs/alerts.md)."""

    def __post_init__(self) -> None:
        if not _ID_RE.fullmatch(self.id):
            raise ValueError(f"vendor id {self.id!r}: expected 2-32 lower-case letters and digits")
        if not _TEMPLATE_RE.fullmatch(self.template_name):
            raise ValueError(f"vendor {self.id}: template_name {self.template_name!r}: expected CamelCase")
        for field, target in (("source", self.source), ("settings", self.settings)):
            if not _TARGET_RE.fullmatch(target):
                raise ValueError(f"vendor {self.id}: {field} {target!r}: expected 'module:attribute'")
        if not self.units or not self.name.strip():
            raise ValueError(f"vendor {self.id}: name and at least one unit are required")
        if any(not pattern or len(pattern) > 200 for pattern in self.free_metrics):
            raise ValueError(f"vendor {self.id}: a free metric pattern is 1 to 200 characters")

    @property
    def function_name(self) -> str:
        """The collector's logical id in template.yaml."""
        return f"{self.template_name}CollectorFunction"

    @property
    def secret_parameter(self) -> str:
        """The template parameter naming the vendor secret."""
        return f"{self.template_name}SecretName"

    def make_source(self) -> Source[Any]:
        factory: Callable[[], Source[Any]] = _resolve(self.source)
        return factory()

    def settings_model(self) -> type[Any]:
        model: type[Any] = _resolve(self.settings)
        return model


def _resolve(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


# Microsoft 365 SKUs (skuPartNumber lower-cased, docs/vendors/microsoft365.md) given away by self-service sign-up,
# viral and trial offers.
_MICROSOFT365_FREE_SKUS: Final = (
    "flow_free",
    "power_bi_standard",
    "powerapps_viral",
    "powerapps_dev",
    "power_automate_free",
    "teams_exploratory",
    "teams_free",
    "windows_store",
    "stream",
    "rightsmanagement_adhoc",
    "ccibots_privprev_viral",
    "mcopstnc",
    "forms_pro",
    "*trial*",
)

_BUILT_IN: Final = (
    Vendor(
        id="gravityzone",
        name="GravityZone",
        units=("seats", "mailboxes", "hours"),
        template_name="GravityZone",
        source="usagewatch.sources.gravityzone.source:GravityZoneSource",
        settings="usagewatch.sources.gravityzone.api:GravityZoneAccount",
        billed_metrics=("endpoint_monthly_usage",),
        cumulative_metrics=("endpoint_monthly_usage", "sve_vdi_monthly_usage"),
    ),
    Vendor(
        id="keepnet",
        name="Keepnet",
        units=("users",),
        template_name="Keepnet",
        source="usagewatch.sources.keepnet.source:KeepnetSource",
        settings="usagewatch.sources.keepnet.api:KeepnetAccount",
        billed_metrics=("monthly_users", "target_users"),
        cumulative_metrics=("monthly_users",),
    ),
    Vendor(
        id="thousandeyes",
        name="ThousandEyes",
        units=("units", "agents"),
        template_name="ThousandEyes",
        source="usagewatch.sources.thousandeyes.source:make_source",
        settings="usagewatch.sources.thousandeyes.api:ThousandEyesAccount",
        billed_metrics=("cloud_units", "endpoint_agents"),
    ),
    Vendor(
        id="microsoft365",
        name="Microsoft 365",
        units=("seats",),
        # The issue names the function MicrosoftCollectorFunction: the template prefix is "Microsoft".
        template_name="Microsoft",
        source="usagewatch.sources.microsoft365.source:Microsoft365Source",
        settings="usagewatch.sources.microsoft365.api:Microsoft365Account",
        # The SKUs most MSP customers hold (skuPartNumber lower-cased): Business Premium, Business Standard,
        # Office 365 E3. Other SKUs are stored and alerted on alike; they are only not on the dashboard.
        billed_metrics=("spb", "o365_business_premium", "enterprisepack"),
        utilization_alerts=False,
        unused_licence_alerts=True,
        free_metrics=_MICROSOFT365_FREE_SKUS,
        whole_readings=True,
        case_insensitive_ids=True,
    ),
)

_vendors: dict[str, Vendor] = {v.id: v for v in _BUILT_IN}


def vendor(vendor_id: str) -> Vendor:
    try:
        return _vendors[vendor_id]
    except KeyError:
        raise KeyError(f"unknown vendor {vendor_id!r} (one of {', '.join(_vendors)})") from None


def vendor_ids() -> tuple[str, ...]:
    return tuple(_vendors)


def vendors() -> tuple[Vendor, ...]:
    return tuple(_vendors.values())


def find(vendor_id: str) -> Vendor | None:
    return _vendors.get(vendor_id)


def is_known(vendor_id: str) -> bool:
    return vendor_id in _vendors


def display_name(vendor_id: str) -> str:
    """People's name of a vendor; an id nobody registered is shown as it is (an old record, a typo)."""
    known = _vendors.get(vendor_id)
    return known.name if known else vendor_id


def all_units() -> frozenset[str]:
    return frozenset(u for v in _vendors.values() for u in v.units)


def source_factory(vendor_id: str) -> Callable[[], Source[Any]]:
    """What a collector's Lambda entry point hands to `lambda_handler_for`: the source, built on first use."""
    entry = vendor(vendor_id)
    return entry.make_source


def register(entry: Vendor) -> None:
    """Add a vendor (a plug-in, or a test's toy vendor); an id already taken is refused."""
    if entry.id in _vendors:
        raise ValueError(f"vendor {entry.id!r} is already registered")
    _vendors[entry.id] = entry


def unregister(vendor_id: str) -> None:
    if any(v.id == vendor_id for v in _BUILT_IN):
        raise ValueError(f"vendor {vendor_id!r} is built in")
    _vendors.pop(vendor_id, None)


@contextmanager
def registered(entry: Vendor) -> Iterator[Vendor]:
    """The vendor is known inside the block and forgotten after it (tests)."""
    register(entry)
    try:
        yield entry
    finally:
        unregister(entry.id)

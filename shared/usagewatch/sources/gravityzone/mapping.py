"""Pure GravityZone mapping: a getMonthlyUsage answer -> counters -> UsageRecords."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from usagewatch.errors import VendorDataError
from usagewatch.model import (
    Number,
    Period,
    Tenant,
    UsageRecord,
    Window,
)

VENDOR: Final = "gravityzone"

# The documented (sic) spelling on the partner page -> the spelling live tenants return.
MISSPELLED_COUNTERS: Final[dict[str, str]] = {"aLaCarteMonhtlyUsage": "aLaCarteMonthlyUsage"}
# The counters Bitdefender documents for getMonthlyUsage (cloud and partner pages) and
# getMonthlyUsagePerProductType: each must be a count, whatever else an answer carries.
DOCUMENTED_COUNTERS: Final = frozenset(
    {
        "endpointMonthlyUsage",
        "emailSecurityMonthlyUsage",
        "exchangeMonthlyUsage",
        "encryptionMonthlyUsage",
        "atsMonthlyUsage",
        "edrMonthlyUsage",
        "mdrFoundationsMonthlyUsage",
        "mdrResponseMonthlyUsage",
        "patchManagementMonthlyUsage",
        "containerProtectionMonthlyUsage",
        "integrityMonitoringUsage",
        "integrityMonitoring90DaysUsage",
        "integrityMonitoring180DaysUsage",
        "integrityMonitoring1YearUsage",
        "xdrIdentitySensorsMonthlyUsage",
        "xdrProductivitySensorsMonthlyUsage",
        "xdrNetworkSensorsMonthlyUsage",
        "xdrCloudSensorsMonthlyUsage",
        "sveVsMonthlyUsage",
        "sveVdiMonthlyUsage",
        "aLaCarteMonhtlyUsage",
        "aLaCarteMonthlyUsage",
        "mspSecureMonthlyUsage",
        "mspSecurePlusMonthlyUsage",
        "mspSecureExtraMonthlyUsage",
        "mobileSecurityMonthlyUsage",
    }
)
MINIMUM_KEY: Final = "minimumUsage"
_NOT_COUNTERS: Final = frozenset({MINIMUM_KEY, "productType"})

_NUMERIC_TEXT_RE: Final = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def target_month(period: Period) -> str:
    """GravityZone's `targetMonth` format: `mm/yyyy`."""
    return f"{period.month:02d}/{period.year:04d}"


def metric_name(counter: str) -> str:
    """`endpointMonthlyUsage` -> `endpoint_monthly_usage`, `integrityMonitoring90DaysUsage` ->
    `integrity_monitoring_90_days_usage`; the documented misspelling maps to the right name."""
    counter = MISSPELLED_COUNTERS.get(counter, counter)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", counter)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Za-z])([0-9])", r"\1_\2", text)
    text = re.sub(r"[^a-z0-9]+", "_", text.lower())
    return text.strip("_")


def unit_for(metric: str) -> str:
    """Units of the metric catalogue: hours for virtual desktops, mailboxes for mail, seats otherwise."""
    if metric.startswith("sve_vdi"):
        return "hours"
    if metric.startswith(("email", "exchange")):
        return "mailboxes"
    return "seats"


def _count(value: object, field: str, *, documented: bool = False) -> Number | None:
    """A counter's value; None when an undocumented field is not a counter (object, list, null, bool, text).

    A documented counter must be a count: anything else raises VendorDataError naming the field, so a
    company is never taken as collected with one of its billed numbers missing.
    """
    if isinstance(value, str) and _NUMERIC_TEXT_RE.match(value):
        raise VendorDataError(f"field {field}: expected a number, got the string {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or value < 0:
            raise VendorDataError(f"field {field}: expected a count >= 0, got {value!r}")
        return value
    if documented:
        raise VendorDataError(f"field {field}: a documented counter, expected a count >= 0, got {_describe(value)}")
    return None


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    return f"a {type(value).__name__}"


@dataclass(frozen=True, slots=True)
class Counters:
    """One company's counters for one month, by metric name; `minimums` from `minimumUsage`."""

    values: dict[str, Number]
    minimums: dict[str, Number]


def read_counters(result: Mapping[str, Any], *, where: str = "") -> Counters:
    """Every numeric counter of one `getMonthlyUsage` object, by metric.

    A documented counter (`DOCUMENTED_COUNTERS`) that is not a count, a number sent as a string or a
    negative count raises VendorDataError naming the field; other nested objects, nulls, booleans and
    text are not counters (skipped). `minimumUsage` is an object or absent/null. When a counter arrives
    under both its misspelled and its right name, the right one wins (never both added).
    """
    values: dict[str, Number] = {}
    for key in sorted(result, key=lambda k: k in MISSPELLED_COUNTERS):  # right spellings first
        if not isinstance(key, str) or key in _NOT_COUNTERS:
            continue
        number = _count(result[key], f"{where}{key}", documented=key in DOCUMENTED_COUNTERS)
        if number is None:
            continue
        metric = metric_name(key)
        if not metric or metric in values:
            continue
        values[metric] = number
    minimums: dict[str, Number] = {}
    minimum_usage = result.get(MINIMUM_KEY)
    if minimum_usage is not None and not isinstance(minimum_usage, Mapping):
        raise VendorDataError(f"field {where}{MINIMUM_KEY}: expected an object, got {_describe(minimum_usage)}")
    if isinstance(minimum_usage, Mapping):
        for key, raw in minimum_usage.items():
            field = f"{where}{MINIMUM_KEY}.{key}"
            number = _count(raw, field, documented=key in DOCUMENTED_COUNTERS)
            metric = metric_name(str(key))
            if number is not None and metric and metric not in minimums:
                minimums[metric] = number
    return Counters(values, minimums)


def is_no_licence_result(result: object) -> bool:
    """The documented answer of a company without a monthly licence: `0`; null, an empty object and an
    empty `usages` list (the per-product-type page does not say) are read the same way."""
    if result is None or (isinstance(result, int | float) and not isinstance(result, bool) and result == 0):
        return True
    return isinstance(result, Mapping) and (not result or (set(result) == {"usages"} and result["usages"] == []))


def read_result(result: object, *, per_product_type: bool = False) -> Counters:
    """Counters of one licensing answer.

    `0` or null (a company without a monthly licence, as documented) gives no counters. With
    `per_product_type`, each counter is summed over the `usages[]` entries (each entry carries the full
    set, zeros included); a committed minimum is the largest any entry states (summing a company-wide
    minimum repeated per entry would inflate it).
    """
    if is_no_licence_result(result):
        return Counters({}, {})
    if not isinstance(result, Mapping):
        raise VendorDataError(f"expected an object of counters, got {type(result).__name__}")
    if not per_product_type or "usages" not in result:
        return read_counters(result)
    usages = result["usages"]
    if not isinstance(usages, list):
        raise VendorDataError(f"field usages: expected a list, got {type(usages).__name__}")
    values: dict[str, Number] = {}
    minimums: dict[str, Number] = {}
    for index, entry in enumerate(usages):
        if not isinstance(entry, Mapping):
            raise VendorDataError(f"field usages[{index}]: expected an object, got {type(entry).__name__}")
        counters = read_counters(entry, where=f"usages[{index}].")
        for metric, number in counters.values.items():
            values[metric] = values.get(metric, 0) + number
        for metric, number in counters.minimums.items():
            minimums[metric] = max(minimums.get(metric, 0), number)
    return Counters(values, minimums)


def usage_records(counters: Counters, *, account_id: str, tenant: Tenant, period: Period) -> list[UsageRecord]:
    """One record per counter; `minimum` where the company committed to one for that counter."""
    window = Window.month(period)
    return [
        UsageRecord(
            vendor=VENDOR,
            account_id=account_id,
            tenant=tenant,
            metric=metric,
            value=value,
            unit=unit_for(metric),
            window=window,
            minimum=counters.minimums.get(metric),
        )
        for metric, value in sorted(counters.values.items())
    ]

"""Pure ThousandEyes mapping: a UsageDetails answer -> per-organisation and per-account-group records."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from usagewatch.errors import VendorDataError
from usagewatch.model import (
    MAX_PLAUSIBLE_VALUE,
    Period,
    Tenant,
    TenantUsage,
    UsageRecord,
    Window,
)
from usagewatch.text import clip

VENDOR: Final = "thousandeyes"

GROUP_PREFIX: Final = "ag-"
ORG_PREFIX: Final = "org-"

MAX_NAME: Final = 256


def parse_vendor_time(value: object, *, field_name: str) -> datetime:
    """A v6 `YYYY-MM-DD HH:MM:SS` (UTC) or v7 ISO 8601 time; VendorDataError names the field."""
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None else type(value).__name__
        raise VendorDataError(f"{field_name}: expected a date-time, got {got}")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise VendorDataError(f"{field_name}: not a date-time: {clip(text, 40)!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def billing_window(quota: object) -> Window:
    """The vendor's billing period: `quota.monthStart` .. `quota.monthEnd`, period = the start's month."""
    if not isinstance(quota, dict):
        got = "nothing" if quota is None else type(quota).__name__
        raise VendorDataError(f"usage.quota: expected an object with monthStart/monthEnd, got {got}")
    start = parse_vendor_time(quota.get("monthStart"), field_name="usage.quota.monthStart")
    end = parse_vendor_time(quota.get("monthEnd"), field_name="usage.quota.monthEnd")
    if end <= start:
        raise VendorDataError(f"usage.quota: monthEnd {end.isoformat()} is not after monthStart {start.isoformat()}")
    return Window(Period.of(start), start, end)


def usage_window(quota: object, fallback: Window | None) -> tuple[Window, bool]:
    """The billing window, and whether it came from the request because the answer has no dates.

    The spec makes `quota` and both its dates optional: without them the organisation is not failed,
    its numbers are taken as the requested period's (`fallback`). Dates that are sent must be valid.
    """
    undated = quota is None or (
        isinstance(quota, dict) and (quota.get("monthStart") is None or quota.get("monthEnd") is None)
    )
    if fallback is not None and undated:
        return fallback, True
    return billing_window(quota), False


def read_number(data: Mapping[str, Any], key: str, path: str) -> int | float | None:
    """An optional non-negative number: None when absent or null; VendorDataError names a wrong one."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VendorDataError(f"{path}.{key}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or value > MAX_PLAUSIBLE_VALUE:
        raise VendorDataError(f"{path}.{key}: out of range: {value!r}")
    return value


def read_aid(value: object, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        got = "nothing" if value is None else type(value).__name__
        raise VendorDataError(f"{path}.aid: expected an account group id, got {got}")
    return str(value).strip()


def read_name(value: object) -> str | None:
    return value.strip()[:MAX_NAME] if isinstance(value, str) and value.strip() else None


def group_tenant_id(aid: str) -> str:
    """A breakdown row's tenant id: `ag-<aid>`, never equal to an organisation's (a bare aid)."""
    return f"{GROUP_PREFIX}{aid}"


@dataclass(frozen=True, slots=True)
class OrgMetric:
    """One billed quantity of `UsageDetails`: its field, metric and unit, and where the spec has them, its
    quota (a `UsageQuota` field), its projection for this period and its projection for the next."""

    used: str
    metric: str
    unit: str
    quota: str | None = None
    projected: str | None = None
    next_period: str | None = None


ORG_METRICS: Final = (
    OrgMetric(
        "cloudUnitsUsed",
        "cloud_units",
        "units",
        "cloudUnitsIncluded",
        "cloudUnitsProjected",
        "cloudUnitsNextBillingPeriod",
    ),
    OrgMetric(
        "enterpriseUnitsUsed",
        "enterprise_units",
        "units",
        None,
        "enterpriseUnitsProjected",
        "enterpriseUnitsNextBillingPeriod",
    ),
    OrgMetric(
        "connectedDevicesUnitsUsed",
        "connected_devices",
        "units",
        "deviceAgentsIncluded",
        "connectedDevicesUnitsProjected",
        "connectedDevicesUnitsNextBillingPeriod",
    ),
    OrgMetric("endpointAgentsUsed", "endpoint_agents", "agents", "endpointAgentsIncluded"),
    OrgMetric(
        "endpointAgentsEssentialsUsed", "endpoint_agents_essentials", "agents", "endpointAgentsEssentialsIncluded"
    ),
    OrgMetric("endpointAgentsEmbeddedUsed", "endpoint_agents_embedded", "agents", "endpointAgentsEmbeddedIncluded"),
    OrgMetric("enterpriseAgentsUsed", "enterprise_agents", "agents", "enterpriseAgentsIncluded"),
)
# Quotas where 0 means "not part of this plan", not "a limit of zero": the spec says so of
# `enterpriseAgentsIncluded` only ("Returns non-zero value only for organizations with legacy billing").
ZERO_MEANS_NO_QUOTA: Final = frozenset({"enterpriseAgentsIncluded"})
# The metric whose rows carry the MSP-assigned quotas of `/v7/quotas` (they are cloud-unit quotas).
MSP_QUOTA_METRIC: Final = "cloud_units"


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A per-account-group array of `UsageDetails` (present only when its `expand` option is asked for)."""

    array: str
    expand: str
    used: str
    metric: str
    unit: str
    projected: str | None = None


BREAKDOWNS: Final = (
    Breakdown("tests", "test", "cloudUnitsUsed", "cloud_units", "units", "cloudUnitsProjected"),
    Breakdown(
        "enterpriseAgentUnits",
        "enterprise-agent-unit",
        "enterpriseUnitsUsed",
        "enterprise_units",
        "units",
        "enterpriseUnitsProjected",
    ),
    Breakdown("endpointAgents", "endpoint-agent", "endpointAgentsUsed", "endpoint_agents", "agents"),
    Breakdown(
        "endpointAgentsEssentials",
        "endpoint-agent-essential",
        "endpointAgentsEssentialsUsed",
        "endpoint_agents_essentials",
        "agents",
    ),
    Breakdown(
        "endpointAgentsEmbedded",
        "endpoint-agent-embedded",
        "endpointAgentsEmbeddedUsed",
        "endpoint_agents_embedded",
        "agents",
    ),
    Breakdown("enterpriseAgents", "enterprise-agent", "enterpriseAgentsUsed", "enterprise_agents", "agents"),
)
V7_EXPAND: Final = ",".join(b.expand for b in BREAKDOWNS)


@dataclass
class _GroupSums:
    name: str | None = None
    values: dict[str, float] = field(default_factory=dict)
    projected: dict[str, float] = field(default_factory=dict)


def _as_int_if_whole(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _breakdown(usage: Mapping[str, Any]) -> dict[str, _GroupSums]:
    groups: dict[str, _GroupSums] = {}
    for breakdown in BREAKDOWNS:
        rows = usage.get(breakdown.array)
        if rows is None:
            continue
        if not isinstance(rows, list):
            raise VendorDataError(f"usage.{breakdown.array}: expected a list, got {type(rows).__name__}")
        for index, row in enumerate(rows):
            path = f"usage.{breakdown.array}[{index}]"
            if not isinstance(row, dict):
                raise VendorDataError(f"{path}: expected an object, got {type(row).__name__}")
            value = read_number(row, breakdown.used, path)
            projected = read_number(row, breakdown.projected, path) if breakdown.projected else None
            aid = read_aid(row.get("aid"), path)
            sums = groups.setdefault(aid, _GroupSums())
            sums.name = sums.name or read_name(row.get("accountGroupName"))
            if value is None:  # a new test has no units until the vendor computes them
                continue
            metric = breakdown.metric
            sums.values[metric] = sums.values.get(metric, 0) + value
            if projected is not None:
                sums.projected[metric] = sums.projected.get(metric, 0) + projected
    return groups


@dataclass(frozen=True, slots=True)
class OrganisationQuotas:
    """The cloud-unit quotas an MSP assigned (`/v7/quotas`): to the organisation, and to account groups."""

    organisation: int | None = None
    groups: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OrganisationUsage:
    """One usage answer, mapped: the billing window (and whether it is the requested period's because the
    answer had no dates), the organisation, then its account groups."""

    window: Window
    tenants: list[TenantUsage]
    window_from_request: bool = False


def _organisation_records(
    usage: Mapping[str, Any], quota: Mapping[str, Any], *, account_id: str, tenant: Tenant, window: Window
) -> list[UsageRecord]:
    records: list[UsageRecord] = []
    for spec in ORG_METRICS:
        value = read_number(usage, spec.used, "usage")
        included = read_number(quota, spec.quota, "usage.quota") if spec.quota else None
        projected = read_number(usage, spec.projected, "usage") if spec.projected else None
        next_period = read_number(usage, spec.next_period, "usage") if spec.next_period else None
        if spec.quota in ZERO_MEANS_NO_QUOTA and not included:
            included = None
        if value is not None:
            records.append(
                UsageRecord(
                    VENDOR,
                    account_id,
                    tenant,
                    spec.metric,
                    value,
                    spec.unit,
                    window,
                    quota=included,
                    projected=projected,
                    projected_next_period=next_period,
                )
            )
    return records


def _with_msp_quota(records: list[UsageRecord], value: int | None) -> list[UsageRecord]:
    if value is None:
        return records
    return [replace(r, quota=value) if r.metric == MSP_QUOTA_METRIC else r for r in records]


def map_usage(
    payload: object,
    *,
    account_id: str,
    organisation: Tenant,
    group_names: Mapping[str, str] | None = None,
    fallback: Window | None = None,
    quotas: OrganisationQuotas | None = None,
) -> OrganisationUsage:
    """One organisation's usage answer -> its own records, then one breakdown tenant per account group.

    Missing optional numbers skip that metric; a wrong type fails the organisation with the field named.
    Without `quota` or its dates the window is `fallback` (when given). `quotas` (the MSP's) replace the
    cloud-unit quota of the organisation's row and give its account groups' rows theirs. Fields the vendor
    adds later are ignored.
    """
    if not isinstance(payload, dict):
        raise VendorDataError(f"usage answer: expected a JSON object, got {type(payload).__name__}")
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        got = "nothing" if usage is None else type(usage).__name__
        raise VendorDataError(f"usage: expected an object, got {got}")
    quota = usage.get("quota")
    if quota is not None and not isinstance(quota, dict):
        raise VendorDataError(f"usage.quota: expected an object, got {type(quota).__name__}")
    window, from_request = usage_window(quota, fallback)
    msp = quotas or OrganisationQuotas()
    records = _organisation_records(usage, quota or {}, account_id=account_id, tenant=organisation, window=window)
    results = [TenantUsage(organisation, tuple(_with_msp_quota(records, msp.organisation)))]
    names = group_names or {}
    units = {b.metric: b.unit for b in BREAKDOWNS}
    groups = _breakdown(usage)
    if usage.get("tests") is not None:  # the tests were listed: a group with a quota and no test used 0
        for aid in msp.groups:
            groups.setdefault(aid, _GroupSums()).values.setdefault(MSP_QUOTA_METRIC, 0)
    for aid, sums in sorted(groups.items(), key=lambda item: aid_order(item[0])):
        if not sums.values:
            continue
        tenant = Tenant(
            tenant_id=group_tenant_id(aid),
            tenant_name=sums.name or names.get(aid) or f"account group {aid}",
            parent_tenant_id=organisation.tenant_id,
            billed=False,
        )
        group_records = tuple(
            UsageRecord(
                vendor=VENDOR,
                account_id=account_id,
                tenant=tenant,
                metric=metric,
                value=_as_int_if_whole(value),
                unit=units[metric],
                window=window,
                quota=msp.groups.get(aid) if metric == MSP_QUOTA_METRIC else None,
                projected=_as_int_if_whole(sums.projected[metric]) if metric in sums.projected else None,
            )
            for metric, value in sums.values.items()
        )
        results.append(TenantUsage(tenant, group_records))
    return OrganisationUsage(window, results, from_request)


def aid_order(aid: str) -> tuple[int, int, str]:
    return (0, int(aid), aid) if aid.isdigit() else (1, 0, aid)

"""ThousandEyes (Cisco): organisation usage for the vendor's own, current billing period.

Protocol (vendor-apis.md section 3; field meanings from Cisco's v7 OpenAPI spec as published in
`thousandeyes-sdk-usage` / `thousandeyes-sdk-administrative`): `GET /v7/usage` with a bearer token (or the
legacy `GET /v6/usage.json` with basic auth), once per organisation: one answer already spans every account
group of that organisation. Organisations come from the secret's `aids`, or from `GET /v7/account-groups`
grouped by `orgId` (else `organizationName`). `GET /v7/quotas`, once per run, gives the cloud-unit quotas an
MSP assigned to each organisation and account group; without the permission for it collection goes on.

Tenants (docs/vendors/thousandeyes.md):
- an organisation is a billed tenant: `org-<orgId>` when the account-group list sends `orgId`, else the aid its
  usage call is made with (a configured aid, or in discovery the lowest aid, unless an identity memory
  remembers an earlier one); its name the organisation's;
- an account group is a breakdown tenant `ag-<aid>` with `parent_tenant_id` = its organisation and
  `billed=False`: its numbers are already inside the organisation's, so totals never add them.

Rate limit: 240 requests a minute per organisation. Each organisation has its own token bucket, the
`X-Organization-Rate-Limit-Remaining/-Reset` headers make the next call wait for the reset when few
requests are left, and a 429 waits for `Retry-After` or the reset before retrying.
"""

from __future__ import annotations

import base64
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from pydantic import Field, SecretStr, field_validator, model_validator

from usagewatch.errors import ConfigError, UsagewatchError, VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, HttpResponse, RateLimiter, RetryPolicy
from usagewatch.model import (
    MAX_PLAUSIBLE_VALUE,
    CollectionRequest,
    ListingGap,
    Period,
    Tenant,
    TenantFailure,
    TenantResult,
    TenantUsage,
    UsageRecord,
    Window,
)
from usagewatch.observability import logger
from usagewatch.redaction import redactor
from usagewatch.sources.base import HttpAccountConfig, parse_account

VENDOR: Final = "thousandeyes"
V7_ACCEPT: Final = "application/hal+json, application/json, application/problem+json"
GROUP_PREFIX: Final = "ag-"
ORG_PREFIX: Final = "org-"
# The tenant a ListingGap names when the account-group list itself failed.
GROUPS_GAP_ID: Final = "account-groups"
# Rate-state key of calls made without an aid (they count against the token's current organisation).
CURRENT: Final = "current"
MAX_NAME: Final = 256
RATE_LIMIT_HEADER: Final = "X-Organization-Rate-Limit"
# Wait a little past the announced reset so a server clock a fraction ahead does not bite.
RESET_MARGIN_SECONDS: Final = 0.5
# Never wait longer than this for a reset (the window is one minute; a bigger number is a bad header).
MAX_RESET_WAIT_SECONDS: Final = 65.0

NO_QUOTA_PERMISSION: Final = (
    'the token lacks the "Edit organization and account group quotas" permission, so the MSP-assigned'
    " quotas of /v7/quotas are not read"
)
NO_BILLING_PERMISSION: Final = (
    "the token lacks the View Billing (view organisation usage) permission"
    " in this organisation; give the token's user a role with it"
)
_AID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ThousandEyesAccount(HttpAccountConfig):
    """One ThousandEyes user token (v7 bearer, or v6 email + basic auth token)."""

    api_version: Literal["v7", "v6"] = "v7"
    bearer_token: SecretStr | None = None
    email: str | None = Field(default=None, min_length=3, max_length=320)
    basic_auth_token: SecretStr | None = None
    aids: list[str] | None = None
    requests_per_minute: int = Field(default=240, ge=1, le=10_000)
    concurrency: int = Field(default=4, ge=1, le=16)
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)

    @field_validator("aids", mode="before")
    @classmethod
    def _normalise_aids(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError('expected a list of account group ids (aids), e.g. ["1234"]')
        aids: list[str] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ValueError(f"an aid must be a string or an integer, got {type(item).__name__}")
            text = str(item).strip()
            if not _AID_RE.match(text):
                raise ValueError(f"invalid aid {text[:40]!r}")
            if text not in aids:
                aids.append(text)
        if not aids:
            raise ValueError("list at least one aid, or leave aids out to collect every organisation")
        return aids

    @model_validator(mode="after")
    def _check_credentials(self) -> ThousandEyesAccount:
        for name in ("bearer_token", "basic_auth_token"):
            secret = getattr(self, name)
            if secret is not None and not secret.get_secret_value():
                raise ValueError(f"{name} must not be empty")
        if self.api_version == "v7":
            if self.bearer_token is None:
                raise ValueError("bearer_token is required with api_version v7 (v7 accepts only bearer tokens)")
            if self.basic_auth_token is not None or self.email is not None:
                raise ValueError(
                    "email/basic_auth_token are v6 basic-auth credentials; remove them or set api_version to v6"
                )
        elif self.bearer_token is None and (self.email is None or self.basic_auth_token is None):
            raise ValueError("api_version v6 needs email and basic_auth_token, or bearer_token")
        return self


# --- pure pieces: times, numbers, mapping ---------------------------------------------------------


def _clip(text: str, limit: int = 300) -> str:
    text = redactor.scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_vendor_time(value: object, *, field_name: str) -> datetime:
    """A v6 `YYYY-MM-DD HH:MM:SS` (UTC) or v7 ISO 8601 time; VendorDataError names the field."""
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None else type(value).__name__
        raise VendorDataError(f"{field_name}: expected a date-time, got {got}")
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise VendorDataError(f"{field_name}: not a date-time: {_clip(text, 40)!r}") from None
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


def _number(data: Mapping[str, Any], key: str, path: str) -> int | float | None:
    """An optional non-negative number: None when absent or null; VendorDataError names a wrong one."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise VendorDataError(f"{path}.{key}: expected a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or value > MAX_PLAUSIBLE_VALUE:
        raise VendorDataError(f"{path}.{key}: out of range: {value!r}")
    return value


def _aid(value: object, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        got = "nothing" if value is None else type(value).__name__
        raise VendorDataError(f"{path}.aid: expected an account group id, got {got}")
    return str(value).strip()


def _name(value: object) -> str | None:
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
            value = _number(row, breakdown.used, path)
            projected = _number(row, breakdown.projected, path) if breakdown.projected else None
            aid = _aid(row.get("aid"), path)
            sums = groups.setdefault(aid, _GroupSums())
            sums.name = sums.name or _name(row.get("accountGroupName"))
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
        value = _number(usage, spec.used, "usage")
        included = _number(quota, spec.quota, "usage.quota") if spec.quota else None
        projected = _number(usage, spec.projected, "usage") if spec.projected else None
        next_period = _number(usage, spec.next_period, "usage") if spec.next_period else None
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
    for aid, sums in sorted(groups.items(), key=lambda item: _aid_order(item[0])):
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


def _aid_order(aid: str) -> tuple[int, int, str]:
    return (0, int(aid), aid) if aid.isdigit() else (1, 0, aid)


# --- organisations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AccountGroup:
    aid: str
    name: str | None
    organisation_key: str | None
    organisation_name: str | None
    current: bool
    org_id: str | None = None


@dataclass(frozen=True, slots=True)
class Organisation:
    """One usage call: the aid it is made with (None: the token's current context), the tenant, and the
    organisation's account groups as far as they are known (`group_names`, `aids`) and its `orgId`."""

    tenant: Tenant
    call_aid: str | None
    group_names: Mapping[str, str]
    org_id: str | None = None
    aids: frozenset[str] = frozenset()


def organisation_tenant_id(org_id: str) -> str:
    """An organisation's tenant id from its `orgId`: `org-<orgId>`, never equal to an aid-based id."""
    return f"{ORG_PREFIX}{org_id}"


def _org_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        return None
    return str(value).strip()


def parse_account_groups(payload: object) -> list[AccountGroup]:
    """`{"accountGroups": [...]}` of v7 (string aids, `isCurrentAccountGroup`, optional `orgId`) or v6
    (int aids, `current`).

    Account groups are grouped into organisations by `orgId` when sent, else by `organizationName`; a
    group without `orgId` whose organisation name is that of a group with one joins that organisation.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("accountGroups"), list):
        raise VendorDataError("account-groups answer: expected an object with an accountGroups list")
    rows: list[tuple[str, str | None, str | None, str | None, bool]] = []
    for index, row in enumerate(payload["accountGroups"]):
        path = f"accountGroups[{index}]"
        if not isinstance(row, dict):
            raise VendorDataError(f"{path}: expected an object, got {type(row).__name__}")
        current = row.get("isCurrentAccountGroup", row.get("current"))
        rows.append(
            (
                _aid(row.get("aid"), path),
                _name(row.get("accountGroupName")),
                _org_id(row.get("orgId", row.get("organizationId"))),
                _name(row.get("organizationName")),
                current is True or current == 1,
            )
        )
    id_of_name = {org_name: org_id for _a, _n, org_id, org_name, _c in rows if org_id and org_name}
    groups: list[AccountGroup] = []
    for aid, name, sent_id, org_name, current in rows:
        org_id = sent_id or (id_of_name.get(org_name) if org_name else None)
        key = f"id:{org_id}" if org_id else (f"name:{org_name}" if org_name else None)
        groups.append(AccountGroup(aid, name, key, org_name, current, org_id))
    return groups


def _group_names(groups: list[AccountGroup]) -> dict[str, str]:
    return {g.aid: g.name for g in groups if g.name}


def _organisation(members: list[AccountGroup], call_aid: str, name: str, remembered: Mapping[str, str]) -> Organisation:
    """The organisation of `members`: tenant id `org-<orgId>` when the API sent one, else the identity
    remembered for any of its aids, else the aid its usage call is made with."""
    org_id = next((g.org_id for g in members if g.org_id), None)
    aids = frozenset({call_aid, *(g.aid for g in members)})
    if org_id is not None:
        tenant_id = organisation_tenant_id(org_id)
    else:
        tenant_id = next((remembered[a] for a in sorted(aids, key=_aid_order) if a in remembered), call_aid)
    return Organisation(Tenant(tenant_id, name), call_aid, _group_names(members), org_id, aids)


def plan_organisations(
    groups: list[AccountGroup] | None, aids: list[str] | None, remembered: Mapping[str, str] | None = None
) -> list[Organisation]:
    """The usage calls to make: one per organisation.

    With `aids`: one call per configured aid, skipping an aid whose organisation (known from the
    account-groups list) is already covered. Without: account groups grouped by organisation, each called
    with its lowest aid. Tenant id: `org-<orgId>` when the list gives the organisation's `orgId`; else the
    id `remembered` (aid -> organisation tenant id, from earlier runs) for one of its aids; else the aid
    of the call. Groups without an organisation name (older v6 answers) cannot be grouped: then one call
    with the current account group's aid.
    """
    listed = groups or []
    memory = remembered or {}
    by_aid = {g.aid: g for g in listed}
    plan: list[Organisation] = []
    if aids:
        covered: set[str] = set()
        for aid in aids:
            group = by_aid.get(aid)
            key = group.organisation_key if group else None
            if key is not None:
                if key in covered:
                    logger.info("thousandeyes aid skipped: its organisation is already collected", extra={"aid": aid})
                    continue
                covered.add(key)
            members = [g for g in listed if key is not None and g.organisation_key == key] or ([group] if group else [])
            name = (group.organisation_name if group else None) or f"organisation of aid {aid}"
            plan.append(_organisation(members, aid, name, memory))
        return plan
    if not listed:
        raise VendorDataError("account-groups answer lists no account group: the token sees no organisation")
    organisations: dict[str, list[AccountGroup]] = {}
    for group in listed:
        if group.organisation_key is not None:
            organisations.setdefault(group.organisation_key, []).append(group)
    for members in organisations.values():
        members.sort(key=lambda g: _aid_order(g.aid))
        lowest = members[0]
        name = lowest.organisation_name or f"organisation of aid {lowest.aid}"
        plan.append(_organisation(members, lowest.aid, name, memory))
    unnamed = [g for g in listed if g.organisation_key is None]
    if unnamed and not plan:
        current = next((g for g in unnamed if g.current), None) or min(unnamed, key=lambda g: _aid_order(g.aid))
        label = f"organisation of account group {current.name or current.aid}"
        logger.warning(
            "thousandeyes account groups carry no organisation; collecting the current organisation only",
            extra={"aid": current.aid},
        )
        plan.append(_organisation(unnamed, current.aid, label, memory))
    elif unnamed:
        logger.warning(
            "thousandeyes account groups without an organisation name were skipped; list aids to include them",
            extra={"aids": [g.aid for g in unnamed]},
        )
    plan.sort(key=lambda org: _aid_order(org.call_aid or ""))
    return plan


# --- MSP quotas (/v7/quotas) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaEntry:
    """One organisation's entry of `/v7/quotas`: its `organizationQuota` and its `accountGroupQuotas`."""

    org_id: str | None
    value: int | None
    groups: Mapping[str, int]


def _quota_value(row: Mapping[str, Any], path: str) -> int | None:
    value = _number(row, "value", path)
    if value is not None and not float(value).is_integer():
        raise VendorDataError(f"{path}.value: expected a whole number of cloud units, got {value!r}")
    return None if value is None else int(value)


def parse_quotas(payload: object) -> list[QuotaEntry]:
    """`{"quotas": [{"organizationQuota": {value, orgId}, "accountGroupQuotas": [{value, aid}]}]}`; every
    field is optional in the spec but `organizationQuota.value`. A wrong type raises VendorDataError naming it."""
    if not isinstance(payload, dict):
        raise VendorDataError(f"quotas answer: expected a JSON object, got {type(payload).__name__}")
    entries = payload.get("quotas") or []
    if not isinstance(entries, list):
        raise VendorDataError(f"quotas: expected a list, got {type(entries).__name__}")
    parsed: list[QuotaEntry] = []
    for index, entry in enumerate(entries):
        path = f"quotas[{index}]"
        if not isinstance(entry, dict):
            raise VendorDataError(f"{path}: expected an object, got {type(entry).__name__}")
        organisation = entry.get("organizationQuota")
        if organisation is not None and not isinstance(organisation, dict):
            raise VendorDataError(f"{path}.organizationQuota: expected an object, got {type(organisation).__name__}")
        org = organisation or {}
        value = _quota_value(org, f"{path}.organizationQuota") if organisation is not None else None
        if organisation is not None and value is None:
            raise VendorDataError(f"{path}.organizationQuota.value: required by the spec, got nothing")
        groups: dict[str, int] = {}
        rows = entry.get("accountGroupQuotas") or []
        if not isinstance(rows, list):
            raise VendorDataError(f"{path}.accountGroupQuotas: expected a list, got {type(rows).__name__}")
        for row_index, row in enumerate(rows):
            row_path = f"{path}.accountGroupQuotas[{row_index}]"
            if not isinstance(row, dict):
                raise VendorDataError(f"{row_path}: expected an object, got {type(row).__name__}")
            group_value = _quota_value(row, row_path)
            if group_value is not None:  # no value: no quota assigned to that account group
                groups[_aid(row.get("aid"), row_path)] = group_value
        parsed.append(QuotaEntry(_org_id(org.get("orgId")), value, groups))
    return parsed


def quotas_for(entries: list[QuotaEntry], organisation: Organisation) -> OrganisationQuotas:
    """The entry of `organisation`: the one with its orgId, else the one naming one of its account groups."""
    entry = next((e for e in entries if organisation.org_id and e.org_id == organisation.org_id), None)
    entry = entry or next((e for e in entries if organisation.aids & e.groups.keys()), None)
    if entry is None:
        return OrganisationQuotas()
    return OrganisationQuotas(entry.value, dict(entry.groups))


# --- HTTP: errors, rate-limit headers -------------------------------------------------------------


def vendor_message(response: HttpResponse) -> str:
    """What the vendor said: RFC 7807 `{title, detail}`, OAuth `{error, error_description}`, or others."""
    try:
        payload = response.json()
    except VendorDataError:
        return ""
    if not isinstance(payload, dict):
        return ""
    parts = [
        payload[key].strip()
        for key in ("title", "detail", "error", "error_description", "errorMessage", "message")
        if isinstance(payload.get(key), str) and payload[key].strip()
    ]
    return _clip(": ".join(dict.fromkeys(parts)), 200)


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass
class _RateState:
    """What the last response of one organisation said about its rate-limit window."""

    limiter: RateLimiter
    lock: threading.Lock = field(default_factory=threading.Lock)
    remaining: float | None = None
    reset_at: float | None = None


class _GroupsUnreadableError(Exception):
    """The account-group list failed and the configured aids cannot be identified without it."""

    def __init__(self, cause: UsagewatchError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _OrganisationError(Exception):
    """One organisation failed; `cause` says how (the collector decides whether the account fails)."""

    def __init__(self, organisation: Organisation, cause: UsagewatchError) -> None:
        super().__init__(str(cause))
        self.organisation = organisation
        self.cause = cause

    @property
    def tenant_specific(self) -> bool:
        """A failure that only this organisation can have (bad aid, bad payload), not the account's."""
        cause = self.cause
        return isinstance(cause, VendorDataError) or (isinstance(cause, VendorApiError) and cause.status == 400)


# --- the source -----------------------------------------------------------------------------------


class OrganisationIdentities(Protocol):
    """Where the source remembers, per account, the tenant id each aid's organisation was first given
    (only needed when the API sends no `orgId`). The source itself never touches AWS: the pipeline is to
    pass one backed by the table. Without one, such an organisation is identified by its lowest aid."""

    def recall(self, account_id: str) -> Mapping[str, str]: ...

    def remember(self, account_id: str, identities: Mapping[str, str]) -> None: ...


class InProcessIdentities:
    """Identities kept in memory, the reference behaviour of a store-backed memory: the first identity
    given to an aid wins. Not the collector's default: kept only by a warm container, it would let a cold
    one give an organisation another id."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def recall(self, account_id: str) -> Mapping[str, str]:
        with self._lock:
            return dict(self._known.get(account_id, {}))

    def remember(self, account_id: str, identities: Mapping[str, str]) -> None:
        with self._lock:
            known = self._known.setdefault(account_id, {})
            for aid, tenant_id in identities.items():
                known.setdefault(aid, tenant_id)


class ThousandEyesSource:
    """ThousandEyes organisation usage (every billed quantity of `UsageDetails`, see ORG_METRICS) per
    organisation, plus per-account-group breakdown rows (not billed), with the MSP's quotas when readable."""

    vendor = VENDOR

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        low_remaining: int = 2,
        identities: OrganisationIdentities | None = None,
    ) -> None:
        """`clock` paces requests; `wall_clock` (epoch seconds) reads `X-Organization-Rate-Limit-Reset`;
        when a response says `low_remaining` or fewer requests are left, the next call of that
        organisation waits for the reset. `identities` keeps organisations without `orgId` under the
        tenant id they were first given."""
        self._identities = identities
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._retry = retry or RetryPolicy()
        self._low_remaining = low_remaining
        self._rates: dict[tuple[str, str], _RateState] = {}
        self._rates_lock = threading.Lock()
        self._sessions: dict[str, HttpClient] = {}
        self._notes: dict[str, list[str]] = {}
        self._notes_lock = threading.Lock()

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> ThousandEyesAccount:
        account = parse_account(ThousandEyesAccount, raw, index=index, vendor=VENDOR)
        if account.email and account.basic_auth_token is not None:
            pair = f"{account.email}:{account.basic_auth_token.get_secret_value()}"
            redactor.register(base64.b64encode(pair.encode()).decode())
        return account

    def account_id(self, account: ThousandEyesAccount) -> str:
        return account.account_id

    # --- rate limiting ----------------------------------------------------------------------------
    def _rate(self, account: ThousandEyesAccount, key: str) -> _RateState:
        """Per organisation (by the aid its calls use; `current` for calls without one), kept across runs."""
        with self._rates_lock:
            state = self._rates.get((account.base_url, key))
            if state is None:
                rate = account.requests_per_minute / 60.0
                limiter = RateLimiter(rate, burst=2, clock=self._clock, sleep=self._sleep)
                state = self._rates[(account.base_url, key)] = _RateState(limiter)
            return state

    def _share_current(self, account: ThousandEyesAccount, key: str) -> None:
        """Calls without an aid (the account-groups list) count against the token's current
        organisation: from now on they share that organisation's rate state."""
        with self._rates_lock:
            current = self._rates.get((account.base_url, CURRENT))
            target = self._rates.get((account.base_url, key))
            if current is None or target is current:
                return
            if target is None:
                self._rates[(account.base_url, key)] = current
                return
            with current.lock, target.lock:  # the list call was the latest word on the window
                if current.remaining is not None:
                    target.remaining, target.reset_at = current.remaining, current.reset_at
            self._rates[(account.base_url, CURRENT)] = target

    def _observe(self, state: _RateState, response: HttpResponse) -> None:
        remaining = _header_number(response.headers, f"{RATE_LIMIT_HEADER}-Remaining")
        reset = _header_number(response.headers, f"{RATE_LIMIT_HEADER}-Reset")
        with state.lock:
            if remaining is not None:
                state.remaining = remaining
            if reset is not None:
                state.reset_at = reset

    def _pace(self, state: _RateState) -> None:
        """Before a call: when the window is almost used up, wait for its reset."""
        with state.lock:
            remaining, reset_at = state.remaining, state.reset_at
            if remaining is None or remaining > self._low_remaining or reset_at is None:
                return
            state.remaining = None
        wait = reset_at - self._wall_clock() + RESET_MARGIN_SECONDS
        if wait > 0:
            wait = min(wait, MAX_RESET_WAIT_SECONDS)
            logger.info(
                "thousandeyes rate-limit window almost used; waiting for its reset",
                extra={"remaining": remaining, "wait_s": round(wait, 2)},
            )
            self._sleep(wait)

    def _reset_wait(self, response: HttpResponse) -> float | None:
        reset = _header_number(response.headers, f"{RATE_LIMIT_HEADER}-Reset")
        if reset is None:
            return None
        return min(max(0.0, reset - self._wall_clock()) + RESET_MARGIN_SECONDS, MAX_RESET_WAIT_SECONDS)

    def _client(self, account: ThousandEyesAccount) -> HttpClient:
        """One session (its connections kept alive) per account and collection; each organisation's calls
        are paced by that organisation's limiter."""
        return HttpClient(
            vendor=VENDOR,
            base_url=account.base_url,
            timeout=(min(3.05, account.timeout_seconds), account.timeout_seconds),
            retry=self._retry,
            pool_size=max(2, account.concurrency),
            wait_hint=self._reset_wait,
            sleep=self._sleep,
            clock=self._clock,
        )

    # --- requests ---------------------------------------------------------------------------------
    def _get(self, account: ThousandEyesAccount, rate_key: str, path: str, params: dict[str, str]) -> HttpResponse:
        state = self._rate(account, rate_key)
        headers = {"Accept": V7_ACCEPT if account.api_version == "v7" else "application/json"}
        auth: tuple[str, str] | None = None
        if account.bearer_token is not None:
            headers["Authorization"] = f"Bearer {account.bearer_token.get_secret_value()}"
        elif account.email is not None and account.basic_auth_token is not None:
            auth = (account.email, account.basic_auth_token.get_secret_value())
        self._pace(state)
        client = self._sessions.get(account.account_id)
        owned = client is None
        client = client or self._client(account)
        try:
            response = client.request(
                "GET", path, params=params, headers=headers, auth=auth, parse_json=True, limiter=state.limiter
            )
        finally:
            if owned:
                client.close()
        self._observe(state, response)
        if response.status == 401:
            said = vendor_message(response)
            kind = "bearer token" if account.bearer_token is not None else "email and basic_auth_token"
            raise VendorAuthError(
                f"ThousandEyes refused the {kind} (HTTP 401{': ' + said if said else ''})", status=401
            )
        return response

    def _account_groups(self, account: ThousandEyesAccount) -> list[AccountGroup]:
        path = "/v7/account-groups" if account.api_version == "v7" else "/v6/account-groups.json"
        response = self._get(account, CURRENT, path, {})
        if response.status == 200:
            return parse_account_groups(response.json())
        said = vendor_message(response)
        if response.status == 403:
            raise VendorAuthError(
                f"ThousandEyes answered 403 to {path}: the token may not list account groups"
                f"{' (' + said + ')' if said else ''}",
                status=403,
            )
        raise VendorApiError(
            f"ThousandEyes {path} answered HTTP {response.status}{': ' + said if said else ''}",
            status=response.status,
            retryable=response.status >= 500,
        )

    def _msp_quotas(self, account: ThousandEyesAccount) -> list[QuotaEntry] | None:
        """`GET /v7/quotas` (v7 only): the MSP-assigned quotas, or None (said once in the log) when they
        cannot be read. A refused token (401) fails the account; anything else lets collection go on."""
        if account.api_version != "v7":
            return None
        try:
            response = self._get(account, CURRENT, "/v7/quotas", {})
            if response.status == 200:
                return parse_quotas(response.json())
        except VendorAuthError:
            raise
        except UsagewatchError as exc:
            logger.warning(
                "thousandeyes MSP quotas not read this run; the contract quotas of /v7/usage apply",
                extra={"account_id": account.account_id, "error": _clip(str(exc))},
            )
            note = f"MSP quotas (/v7/quotas) not read: {_clip(str(exc))}; contract quotas apply"
            self._note(account.account_id, note)
            return None
        said = vendor_message(response)
        reason = NO_QUOTA_PERMISSION if response.status == 403 else f"HTTP {response.status}"
        logger.warning(
            "thousandeyes MSP quotas not read this run; the contract quotas of /v7/usage apply",
            extra={"account_id": account.account_id, "error": f"{reason}{': ' + said if said else ''}"},
        )
        self._note(
            account.account_id,
            f"MSP quotas (/v7/quotas) not read: {reason}{': ' + said if said else ''}; contract quotas apply",
        )
        return None

    def _note(self, account_id: str, text: str) -> None:
        with self._notes_lock:
            notes = self._notes.setdefault(account_id, [])
            if text not in notes:
                notes.append(text)

    def drain_notes(self, account_id: str) -> list[str]:
        """What the last collection of this account wants its run record to say (not errors)."""
        with self._notes_lock:
            return self._notes.pop(account_id, [])

    def _usage(self, account: ThousandEyesAccount, organisation: Organisation) -> HttpResponse:
        aid = organisation.call_aid
        if account.api_version == "v7":
            path, params = "/v7/usage", {"expand": V7_EXPAND}
        else:
            path, params = "/v6/usage.json", {}
        if aid is not None:
            params["aid"] = aid
        response = self._get(account, aid or CURRENT, path, params)
        if response.status == 200:
            return response
        said = vendor_message(response)
        suffix = f" (ThousandEyes said: {said})" if said else ""
        if response.status == 400 and aid is not None:
            raise VendorApiError(
                f"ThousandEyes refused aid {aid} (HTTP 400): not an account group this token belongs to{suffix}",
                status=400,
            )
        if response.status == 403:
            raise VendorAuthError(f"ThousandEyes answered 403: {NO_BILLING_PERMISSION}{suffix}", status=403)
        if response.status == 404:
            raise VendorApiError(
                f"ThousandEyes {path} answered 404: check base_url and api_version{suffix}", status=404
            )
        raise VendorApiError(
            f"ThousandEyes {path} answered HTTP {response.status}{suffix}",
            status=response.status,
            retryable=response.status >= 500,
        )

    def _collect_organisation(
        self,
        account: ThousandEyesAccount,
        organisation: Organisation,
        request: CollectionRequest,
        quotas: OrganisationQuotas,
    ) -> list[TenantUsage]:
        try:
            response = self._usage(account, organisation)
            mapped = map_usage(
                response.json(),
                account_id=account.account_id,
                organisation=organisation.tenant,
                group_names=organisation.group_names,
                fallback=Window.month(request.period),
                quotas=quotas,
            )
        except VendorAuthError as exc:
            if exc.status == 401:
                raise
            raise _OrganisationError(organisation, exc) from exc
        except UsagewatchError as exc:
            raise _OrganisationError(organisation, exc) from exc
        window = mapped.window
        if mapped.window_from_request:
            logger.warning(
                "thousandeyes usage answer has no billing dates (usage.quota.monthStart/monthEnd);"
                " its numbers are stored under the requested period",
                extra={"organisation": organisation.tenant.tenant_id, "period": str(request.period)},
            )
            self._note(
                account.account_id,
                f"organisation {organisation.tenant.tenant_name} ({organisation.tenant.tenant_id}): no billing dates "
                f"in the answer; stored under the requested period {request.period}",
            )
        if request.period_explicit and window.period != request.period:
            raise _OrganisationError(
                organisation,
                ConfigError(
                    f"ThousandEyes reports only the current billing period ({window.period}: "
                    f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC); asked for {request.period}"
                ),
            )
        return mapped.tenants

    # --- the run ----------------------------------------------------------------------------------
    def plan(self, account: ThousandEyesAccount) -> list[Organisation]:
        """The organisations to call: from `aids` (named through the account-groups list when it can
        be read), or discovered from that list."""
        groups: list[AccountGroup] | None
        remembered = self._identities.recall(account.account_id) if self._identities else {}
        if account.aids:
            try:
                groups = self._account_groups(account)
            except UsagewatchError as exc:
                if isinstance(exc, VendorAuthError) and exc.status == 401:
                    raise
                if not self._aids_identifiable(account, exc, remembered):
                    raise _GroupsUnreadableError(exc) from exc
                logger.warning(
                    "thousandeyes account groups unreadable; using the configured aids", extra={"error": str(exc)}
                )
                groups = None
            plan = plan_organisations(groups, account.aids, remembered)
        else:
            groups = self._account_groups(account)
            plan = plan_organisations(groups, None, remembered)
        if self._identities is not None:
            self._identities.remember(
                account.account_id,
                {aid: org.tenant.tenant_id for org in plan for aid in org.aids},
            )
        current = next((g.aid for g in groups or [] if g.current), None)
        home = next(
            (o for o in plan if current is not None and (o.call_aid == current or current in o.group_names)), None
        )
        if home is not None and home.call_aid is not None:
            self._share_current(account, home.call_aid)
        return plan

    @staticmethod
    def _aids_identifiable(account: ThousandEyesAccount, error: UsagewatchError, remembered: Mapping[str, str]) -> bool:
        """Whether the configured aids may be collected without the account-group list: under v6 (no orgId
        there), when the list is refused for good (403: this token may never read it, so the aids are
        always the ids), or when every aid's identity is remembered. Otherwise (v7, a transient failure)
        they would be stored under aid ids this run and `org-<orgId>` the next."""
        refused = isinstance(error, VendorAuthError) and error.status == 403
        known = all(aid in remembered for aid in account.aids or [])
        return account.api_version == "v6" or refused or known

    def collect(self, account: ThousandEyesAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        """Organisations concurrently (`concurrency`), results in plan order.

        One organisation failing yields a TenantFailure. When no organisation succeeds, a failure that
        is not specific to one organisation (403 permission, 5xx, rate limit exhausted, another period
        asked for) is raised for the whole account instead; a 401 is always raised at once.
        """
        self._sessions[account.account_id] = self._client(account)
        try:
            yield from self._collect(account, request)
        finally:
            self._sessions.pop(account.account_id).close()

    def _collect(self, account: ThousandEyesAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        try:
            plan = self.plan(account)
        except _GroupsUnreadableError as unreadable:
            yield ListingGap(
                Tenant(GROUPS_GAP_ID, "ThousandEyes account-group list"),
                _clip(
                    "the account-group list could not be read, so the configured aids' organisations cannot be"
                    f" identified this run (their stored numbers are carried): {unreadable.cause}"
                ),
            )
            return
        logger.info(
            "thousandeyes organisations planned",
            extra={"account_id": account.account_id, "organisations": [o.tenant.tenant_id for o in plan]},
        )
        entries = self._msp_quotas(account) or []
        pool = ThreadPoolExecutor(max_workers=min(account.concurrency, max(1, len(plan))), thread_name_prefix="te-org")
        succeeded = 0
        held: list[_OrganisationError] = []
        try:
            futures: list[Future[list[TenantUsage]]] = [
                pool.submit(
                    self._collect_organisation, account, organisation, request, quotas_for(entries, organisation)
                )
                for organisation in plan
            ]
            for future in futures:
                try:
                    results = future.result()
                except _OrganisationError as failed:
                    if succeeded:
                        yield _failure(failed)
                    else:
                        held.append(failed)
                    continue
                succeeded += 1
                yield from results
                for held_failure in held:
                    yield _failure(held_failure)
                held.clear()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if held:
            systemic = next((f for f in held if not f.tenant_specific), None)
            if systemic is not None:
                raise systemic.cause
            for held_failure in held:
                yield _failure(held_failure)
        logger.info(
            "thousandeyes account collected",
            extra={"account_id": account.account_id, "organisations": len(plan), "succeeded": succeeded},
        )


def _failure(failed: _OrganisationError) -> TenantFailure:
    organisation = failed.organisation
    tenant = organisation.tenant
    aid = organisation.call_aid or "current"
    label = f"aid {aid}" if tenant.tenant_id == aid else f"{tenant.tenant_id}, aid {aid}"
    return TenantFailure(tenant, _clip(f"organisation {tenant.tenant_name} ({label}): {failed.cause}"))

"""Pure Keepnet mapping: the search request body, the answer envelope, pages, and SearchCompanyDto -> records."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from usagewatch.errors import VendorApiError, VendorDataError
from usagewatch.model import (
    MAX_PLAUSIBLE_VALUE,
    ListingGap,
    Period,
    Tenant,
    TenantUsage,
    UsageRecord,
    Window,
)
from usagewatch.text import clip

VENDOR: Final = "keepnet"

MAX_TENANT_NAME: Final = 256
UNIT: Final = "users"

# `status` values that mean failure; the success value is not documented (docs/vendors/keepnet.md).
ERROR_STATUSES: Final = frozenset(
    {
        "INPUT_ERROR",
        "INTERNAL_SERVER_ERROR",
        "ERROR",
        "FAIL",
        "FAILED",
        "FAILURE",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_REQUEST",
        "VALIDATION_ERROR",
    }
)

# SearchCompanyDto count field -> metric. The month selector applies to `monthlyActiveUserCount` only; the
# other counts, the licence limit and the over-limit verdict are the company's values now (docs/vendors/keepnet.md).
MONTHLY_METRIC: Final = ("monthlyActiveUserCount", "monthly_users")
CURRENT_METRICS: Final = (
    ("targetUserCount", "target_users"),
    ("inactiveTargetUserCount", "inactive_target_users"),
    ("deletedTargetUserCount", "deleted_target_users"),
)
COUNT_METRICS: Final = (MONTHLY_METRIC, *CURRENT_METRICS)
# Nested `children` deeper than this are refused (a reseller under a reseller under ... is a few levels).
MAX_CHILD_DEPTH: Final = 16
_QUOTA_RE: Final = re.compile(r"\d{1,15}")


def search_body(period: Period, *, page_number: int, page_size: int, exceeded_only: bool) -> dict[str, Any]:
    """The company search request: every required field, never a null filter or search text."""
    return {
        "pageNumber": page_number,
        "pageSize": page_size,
        "orderBy": "CreateTime",
        "ascending": False,
        "filter": {
            "Condition": "AND",
            "SearchInputTextValue": "",
            "FilterGroups": [
                {
                    "Condition": "AND",
                    "FilterItems": [{"FieldName": "MonthlyActiveUser", "Operator": "=", "Value": str(period)}],
                    "FilterGroups": [],
                }
            ],
        },
        "isClustered": False,
        "isTargetUserCountExceededLimit": exceeded_only,
    }


def field_of(payload: dict[str, Any], name: str) -> Any:
    """`payload[name]` in any casing (`status`/`Status`, `message`/`Message`: Keepnet's own scripts read
    both), the exact spelling first; None when absent."""
    if name in payload:
        return payload[name]
    lowered = name.lower()
    return next((value for key, value in payload.items() if isinstance(key, str) and key.lower() == lowered), None)


def vendor_messages(payload: object) -> str:
    """The human-readable messages of a Keepnet answer (either envelope, or ASP.NET problem details)."""
    if not isinstance(payload, dict):
        return ""
    parts: list[str] = []

    def add(value: object) -> None:
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
        elif isinstance(value, list):
            for item in value:
                add(item)
        elif isinstance(value, dict):
            for key in ("message", "errorMessage", "description"):
                add(field_of(value, key))
            errors = field_of(value, "errors")
            if isinstance(errors, dict):
                for field_name, field_errors in errors.items():
                    texts = field_errors if isinstance(field_errors, list) else [field_errors]
                    parts.extend(f"{field_name}: {t}" for t in texts if isinstance(t, str))

    for key in ("message", "messages", "validationMessages", "title", "error", "error_description"):
        add(field_of(payload, key))
    errors = field_of(payload, "errors")
    if isinstance(errors, dict):
        add({"errors": errors})
    seen: dict[str, None] = dict.fromkeys(parts)
    return clip("; ".join(seen))


def parse_envelope(payload: object, *, what: str = "company search") -> dict[str, Any]:
    """`data` of a Keepnet answer; tolerates `{status, message, validationMessages, data}` and
    `{isSuccess, messages, data}`, in camelCase or PascalCase. A failure envelope raises VendorApiError
    with the vendor's words; an answer without `data` raises VendorDataError."""
    if not isinstance(payload, dict):
        raise VendorDataError(f"Keepnet {what}: expected a JSON object, got {type(payload).__name__}")
    said = vendor_messages(payload)
    suffix = f": {said}" if said else ""
    success = field_of(payload, "isSuccess")
    if success is not None and success is not True:
        raise VendorApiError(f"Keepnet {what} failed (isSuccess={success!r}){suffix}")
    status = field_of(payload, "status")
    if isinstance(status, str):
        normalised = status.strip().upper()
        if normalised in ERROR_STATUSES or "ERROR" in normalised or "FAIL" in normalised:
            raise VendorApiError(
                f"Keepnet {what} failed with status {clip(status, 60)}{suffix}",
                retryable=normalised == "INTERNAL_SERVER_ERROR",
            )
    data = field_of(payload, "data")
    if not isinstance(data, dict):
        got = "no data" if data is None else f"data of type {type(data).__name__}"
        raise VendorDataError(f"Keepnet {what} answered {got}{suffix}")
    return data


def _non_negative_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of `CustomCompanyPagedResults<SearchCompanyDto>`."""

    number: int
    page_size: int
    total_pages: int
    total_records: int | None
    limit_exceeded_count: int | None
    results: list[Any]


def parse_search_page(data: dict[str, Any], *, page_number: int, requested_size: int) -> SearchPage:
    """Read the paging fields, trusting the server's page size and counts over what was asked."""
    results = data.get("results")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise VendorDataError(f"Keepnet company search page {page_number}: results is {type(results).__name__}")
    size = _non_negative_int(data.get("pageSize")) or requested_size
    records = _non_negative_int(data.get("totalNumberOfRecords"))
    if records is None:
        records = _non_negative_int(data.get("totalCount"))
    declared = _non_negative_int(data.get("totalNumberOfPages"))
    candidates = [n for n in (declared, math.ceil(records / size) if records is not None else None) if n is not None]
    if not candidates:
        raise VendorDataError(
            f"Keepnet company search page {page_number}: neither totalNumberOfPages nor totalNumberOfRecords "
            "is a number, so the listing's end is unknown"
        )
    total_pages = max(candidates)
    if results:
        total_pages = max(total_pages, page_number)
    return SearchPage(
        number=page_number,
        page_size=size,
        total_pages=total_pages,
        total_records=records,
        limit_exceeded_count=_non_negative_int(data.get("limitExceededCompanyCount")),
        results=results,
    )


def company_id(company: object) -> str | None:
    """`companyResourceId` (the company id; some Keepnet pages wrongly call it resourceId), or None."""
    if not isinstance(company, dict):
        return None
    value = company.get("companyResourceId")
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def parse_quota(limited: object, number_of_users: object) -> int | None:
    """The licence limit: `numberOfUsers` (a string) when `isNumberOfUsersLimited` is true and it is a
    non-negative integer; empty, non-numeric ("Unlimited") or unlimited means no quota."""
    if limited is not True:
        return None
    if isinstance(number_of_users, int) and not isinstance(number_of_users, bool):
        return number_of_users if 0 <= number_of_users <= MAX_PLAUSIBLE_VALUE else None
    if isinstance(number_of_users, str):
        text = number_of_users.strip().replace(",", "")
        if _QUOTA_RE.fullmatch(text):
            return int(text)
    return None


def _count(company: dict[str, Any], field_name: str, cid: str) -> int:
    value = company.get(field_name)
    if value is None:
        raise VendorDataError(f"company {cid}: {field_name} is missing")
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise VendorDataError(f"company {cid}: {field_name} must be a number, got {type(value).__name__}")
    if value < 0 or value > MAX_PLAUSIBLE_VALUE:
        raise VendorDataError(f"company {cid}: {field_name} out of range: {value!r}")
    return value


def tenant_of(company: dict[str, Any], cid: str, parent_id: str | None = None) -> Tenant:
    name = company.get("companyName")
    text = name.strip() if isinstance(name, str) and name.strip() else cid
    return Tenant(tenant_id=cid, tenant_name=text[:MAX_TENANT_NAME], parent_tenant_id=parent_id)


def company_records(
    company: dict[str, Any],
    *,
    account_id: str,
    window: Window,
    exceeded_ids: set[str] | frozenset[str],
    current: bool = True,
    parent_id: str | None = None,
) -> TenantUsage:
    """Map one SearchCompanyDto to its records; VendorDataError names the field that is wrong.

    `current`: the window is the month being lived now, so the current values (target, inactive and
    deleted users, the licence limit, the over-limit verdict) belong to it. For a past month only
    `monthly_users` is the month's own number; the others are not read at all.
    """
    cid = company_id(company)
    if cid is None:
        raise VendorDataError("company without companyResourceId")
    tenant = tenant_of(company, cid, parent_id)
    fields = COUNT_METRICS if current else (MONTHLY_METRIC,)
    counts = {field_name: _count(company, field_name, cid) for field_name, _metric in fields}
    quota = parse_quota(company.get("isNumberOfUsersLimited"), company.get("numberOfUsers")) if current else None
    records = []
    for field_name, metric in fields:
        is_target = metric == "target_users"
        records.append(
            UsageRecord(
                vendor=VENDOR,
                account_id=account_id,
                tenant=tenant,
                metric=metric,
                value=counts[field_name],
                unit=UNIT,
                window=window,
                quota=quota if is_target else None,
                limit_exceeded=(cid in exceeded_ids) if is_target else None,
            )
        )
    return TenantUsage(tenant, tuple(records))


@dataclass(frozen=True, slots=True)
class Member:
    """One company of a listing row's family: the row itself or a company nested in its `children`."""

    row: object
    parent_id: str | None
    depth: int


@dataclass(frozen=True, slots=True)
class ChildrenUnreadable:
    """A company whose `children` is neither a list nor null: the companies beneath it are unknown."""

    parent: dict[str, Any]
    parent_id: str
    problem: str
    grandparent_id: str | None = None


def family(row: object) -> Iterator[Member | ChildrenUnreadable]:
    """The row, then every company nested in its `children` (a SearchCompanyDto array, null when there
    are none), depth first, each with the id of the company it sits under."""
    stack = [Member(row, None, 0)]
    while stack:
        member = stack.pop()
        yield member
        company = member.row
        cid = company_id(company)
        if not isinstance(company, dict) or cid is None:
            continue
        children = company.get("children")
        if children is None or children == []:
            continue
        if not isinstance(children, list):
            problem = f"children is a {type(children).__name__}, not a list"
            yield ChildrenUnreadable(company, cid, problem, member.parent_id)
            continue
        if member.depth >= MAX_CHILD_DEPTH:
            problem = f"children nested deeper than {MAX_CHILD_DEPTH} levels"
            yield ChildrenUnreadable(company, cid, problem, member.parent_id)
            continue
        stack.extend(Member(child, cid, member.depth + 1) for child in reversed(children))


def children_gap(unreadable: ChildrenUnreadable) -> ListingGap:
    """The part of the listing that failed: what is beneath one company. The gap names that company
    (whose own numbers were read and are yielded on their own); the companies beneath it are unknown."""
    parent = tenant_of(unreadable.parent, unreadable.parent_id, unreadable.grandparent_id)
    return ListingGap(
        parent,
        clip(f"Keepnet company {parent.tenant_id}: {unreadable.problem}; its child companies are unknown this run"),
    )

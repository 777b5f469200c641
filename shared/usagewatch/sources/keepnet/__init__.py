"""Keepnet Labs (Reseller REST API): every managed company's user counts (docs/vendors/keepnet.md).

Protocol (docs/vendors/keepnet.md, with its sources): an OAuth2 client-credentials token from `POST /connect/token`
(form-encoded only, `scope=api1`), then `POST /api/companies/search` page by page with the month
selected by a `MonthlyActiveUser` filter item. That selector applies to `monthlyActiveUserCount` only:
the other counts, the licence limit and the vendor's over-limit verdict (a second listing with
`isTargetUserCountExceededLimit: true`) are current values, so they are written, and the over-limit
listing is read, only when the requested month is the current one.

A row's `children` (companies nested under it, SearchCompanyDto themselves) are collected as tenants
with `parent_tenant_id` set; each company's counts are its own account's, so all are billed, and a
company seen twice (nested and at the top) is counted once.

Pages after the first are read concurrently; results are yielded as pages arrive, so raw pages never
pile up in memory. Only the set of company ids seen is kept, to drop duplicates (a listing ordered by
creation time shifts while companies are added).

Modules: `api` (token, search calls, paging), `mapping` (pure: body, envelope, page, company -> records),
`source` (KeepnetSource: the listing passes, duplicates, the summary).
"""

from usagewatch.sources.keepnet.api import (
    CREDENTIALS_REFUSED,
    DEFAULT_TOKEN_TTL_SECONDS,
    NOT_RESELLER,
    SEARCH_PATH,
    TOKEN_PATH,
    TOKEN_RENEW_MARGIN_SECONDS,
    TOKEN_SCOPE,
    KeepnetAccount,
)
from usagewatch.sources.keepnet.mapping import (
    COUNT_METRICS,
    CURRENT_METRICS,
    ERROR_STATUSES,
    MAX_CHILD_DEPTH,
    MAX_TENANT_NAME,
    MONTHLY_METRIC,
    UNIT,
    VENDOR,
    ChildrenUnreadable,
    Member,
    SearchPage,
    children_gap,
    company_id,
    company_records,
    family,
    field_of,
    parse_envelope,
    parse_quota,
    parse_search_page,
    search_body,
    tenant_of,
    vendor_messages,
)
from usagewatch.sources.keepnet.source import KeepnetSource

__all__ = [
    "COUNT_METRICS",
    "CREDENTIALS_REFUSED",
    "CURRENT_METRICS",
    "DEFAULT_TOKEN_TTL_SECONDS",
    "ERROR_STATUSES",
    "MAX_CHILD_DEPTH",
    "MAX_TENANT_NAME",
    "MONTHLY_METRIC",
    "NOT_RESELLER",
    "SEARCH_PATH",
    "TOKEN_PATH",
    "TOKEN_RENEW_MARGIN_SECONDS",
    "TOKEN_SCOPE",
    "UNIT",
    "VENDOR",
    "ChildrenUnreadable",
    "KeepnetAccount",
    "KeepnetSource",
    "Member",
    "SearchPage",
    "children_gap",
    "company_id",
    "company_records",
    "family",
    "field_of",
    "parse_envelope",
    "parse_quota",
    "parse_search_page",
    "search_body",
    "tenant_of",
    "vendor_messages",
]

"""Keepnet Labs (Reseller REST API): every managed company's user counts (docs/vendors/keepnet.md).

Protocol (vendor-apis.md section 2): an OAuth2 client-credentials token from `POST /connect/token`
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
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field, SecretStr

from usagewatch.errors import UsagewatchError, VendorApiError, VendorAuthError, VendorDataError
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

VENDOR: Final = "keepnet"
TOKEN_PATH: Final = "/connect/token"  # noqa: S105 - a path, not a password
SEARCH_PATH: Final = "/api/companies/search"
TOKEN_SCOPE: Final = "api1"  # noqa: S105 - an OAuth scope name
# Renew a token this long before the vendor says it expires.
TOKEN_RENEW_MARGIN_SECONDS: Final = 60.0
DEFAULT_TOKEN_TTL_SECONDS: Final = 3600.0
MAX_TENANT_NAME: Final = 256
UNIT: Final = "users"

CREDENTIALS_REFUSED: Final = "Keepnet refused the client credentials (check client_id/client_secret)"
NOT_RESELLER: Final = (
    "Keepnet answered 403: this credential is not a Reseller "
    "(set Client Role = Reseller in Company → Company Settings → REST API)"
)
# `status` values that mean failure; the success value is not documented (vendor-apis.md 2.2).
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


class KeepnetAccount(HttpAccountConfig):
    """One Keepnet Reseller REST API client (Company → Company Settings → REST API, Client Role = Reseller)."""

    client_id: str = Field(min_length=1, max_length=256)
    client_secret: SecretStr = Field(min_length=1)
    page_size: int = Field(default=100, ge=1, le=1000)
    concurrency: int = Field(default=4, ge=1, le=16)
    max_pages: int = Field(default=1000, ge=1, le=100_000)
    requests_per_second: float = Field(default=40.0, gt=0, le=1000)
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)


# --- pure pieces: request body, envelope, page, mapping -------------------------------------------


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


def _clip(text: str, limit: int = 500) -> str:
    text = redactor.scrub(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    return _clip("; ".join(seen))


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
                f"Keepnet {what} failed with status {_clip(status, 60)}{suffix}",
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
        _clip(f"Keepnet company {parent.tenant_id}: {unreadable.problem}; its child companies are unknown this run"),
    )


# --- the session: token, requests, listing ---------------------------------------------------------


class _TokenCache:
    """One account's bearer token, shared by the page threads; renewed once per expiry or 401."""

    def __init__(self, client: HttpClient, account: KeepnetAccount, clock: Callable[[], float]) -> None:
        self._client = client
        self._account = account
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._refused: VendorAuthError | None = None
        self.issued = 0

    def current(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                return self._fetch()
            return self._token

    def renew(self, stale: str) -> str:
        """A fresh token unless another thread already replaced `stale`."""
        with self._lock:
            if self._token is None or self._token == stale or self._clock() >= self._renew_at:
                return self._fetch()
            return self._token

    def _fetch(self) -> str:
        if self._refused is not None:
            raise self._refused
        form = {
            "grant_type": "client_credentials",
            "client_id": self._account.client_id,
            "client_secret": self._account.client_secret.get_secret_value(),
            "scope": TOKEN_SCOPE,
        }
        response = self._client.request(
            "POST",
            TOKEN_PATH,
            form=form,
            headers={"Accept": "application/json"},
            parse_json=True,
        )
        if response.status in (400, 401):
            error = _oauth_error(response)
            detail = f" (Keepnet said: {error})" if error and error != "invalid_client" else ""
            self._refused = VendorAuthError(f"{CREDENTIALS_REFUSED}{detail}", status=response.status)
            raise self._refused
        if response.status == 403:
            self._refused = VendorAuthError(
                "Keepnet answered 403 to the token request (the client may be IP-restricted or disabled)", status=403
            )
            raise self._refused
        if not 200 <= response.status < 300:
            raise VendorApiError(f"Keepnet token request answered HTTP {response.status}", status=response.status)
        payload = response.json()
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise VendorDataError("Keepnet token response has no access_token")
        token = token.strip()
        redactor.register(token)
        expires_in = payload.get("expires_in")
        ttl = float(expires_in) if _is_positive_number(expires_in) else DEFAULT_TOKEN_TTL_SECONDS
        self._token = token
        self._renew_at = self._clock() + max(ttl - TOKEN_RENEW_MARGIN_SECONDS, ttl / 2)
        self.issued += 1
        return token


def _is_positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _oauth_error(response: HttpResponse) -> str:
    try:
        payload = response.json()
    except VendorDataError:
        return ""
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return _clip(payload["error"], 60)
    return ""


class _KeepnetSession:
    """The HTTP side of one account's run."""

    def __init__(self, client: HttpClient, account: KeepnetAccount, clock: Callable[[], float]) -> None:
        self.client = client
        self.account = account
        self.tokens = _TokenCache(client, account, clock)

    def _post(self, token: str, body: dict[str, Any]) -> HttpResponse:
        return self.client.request(
            "POST",
            SEARCH_PATH,
            json_body=body,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            parse_json=True,
        )

    def search(self, body: dict[str, Any]) -> dict[str, Any]:
        """One search call: the token (renewed once on 401), HTTP status mapping, the envelope."""
        token = self.tokens.current()
        response = self._post(token, body)
        if response.status == 401:
            logger.info("keepnet token refused mid-run, requesting a fresh one")
            token = self.tokens.renew(token)
            response = self._post(token, body)
            if response.status == 401:
                raise VendorAuthError(
                    "Keepnet answered 401 to company search even with a fresh token "
                    "(the REST API client may have been disabled or lost its permissions)",
                    status=401,
                )
        if response.status == 403:
            raise VendorAuthError(NOT_RESELLER, status=403)
        if response.status == 400:
            said = _body_messages(response)
            raise VendorApiError(
                f"Keepnet rejected the company search request (HTTP 400){': ' + said if said else ''}", status=400
            )
        if not 200 <= response.status < 300:
            said = _body_messages(response)
            raise VendorApiError(
                f"Keepnet company search answered HTTP {response.status}{': ' + said if said else ''}",
                status=response.status,
            )
        return parse_envelope(response.json())

    def page(self, period: Period, number: int, size: int, *, exceeded_only: bool) -> SearchPage:
        body = search_body(period, page_number=number, page_size=size, exceeded_only=exceeded_only)
        label = f"Keepnet company search{' (over-limit listing)' if exceeded_only else ''} page {number}"
        try:
            data = self.search(body)
            return parse_search_page(data, page_number=number, requested_size=size)
        except VendorAuthError:
            raise
        except VendorApiError as exc:
            raise VendorApiError(f"{label}: {exc}", status=exc.status, retryable=exc.retryable) from exc
        except VendorDataError as exc:
            text = str(exc).removeprefix(f"Keepnet company search page {number}: ")
            raise VendorDataError(f"{label}: {text}") from exc

    def listing(self, period: Period, *, exceeded_only: bool) -> Iterator[SearchPage]:
        """Every page of one listing: page 1, then the rest concurrently, yielded as they complete.

        Follows `totalNumberOfPages` if it grows while reading; refuses to go past `max_pages`.
        """
        account = self.account
        first = self.page(period, 1, account.page_size, exceeded_only=exceeded_only)
        total = first.total_pages
        size = first.page_size
        self._guard(total)
        yield first
        if total <= 1:
            return
        window = max(1, account.concurrency * 2)
        next_number = 2
        pending: set[Future[SearchPage]] = set()
        pool = ThreadPoolExecutor(max_workers=account.concurrency, thread_name_prefix="keepnet-page")
        try:
            while next_number <= total or pending:
                while next_number <= total and len(pending) < window:
                    pending.add(pool.submit(self.page, period, next_number, size, exceeded_only=exceeded_only))
                    next_number += 1
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: f.result().number if f.exception() is None else 0):
                    page = future.result()
                    if page.total_pages > total:
                        logger.info(
                            "keepnet listing grew while reading",
                            extra={"pages_before": total, "pages_now": page.total_pages},
                        )
                        total = page.total_pages
                        self._guard(total)
                    yield page
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _guard(self, total: int) -> None:
        if total > self.account.max_pages:
            raise VendorDataError(
                f"Keepnet company listing did not end after {self.account.max_pages} pages "
                f"(it now reports {total}); raise max_pages if this account really has that many companies"
            )


def _body_messages(response: HttpResponse) -> str:
    try:
        return vendor_messages(response.json())
    except VendorDataError:
        return _clip(response.snippet(200)) if response.body.strip() else ""


# --- the source -----------------------------------------------------------------------------------


class KeepnetSource:
    """Keepnet Labs Reseller API, per managed company (child companies of a sub-reseller included):
    `monthly_users` for the requested month; `target_users` (with licence limit and over-limit verdict),
    `inactive_target_users`, `deleted_target_users` only when that month is the current one."""

    vendor = VENDOR

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._retry = retry or RetryPolicy()

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> KeepnetAccount:
        return parse_account(KeepnetAccount, raw, index=index, vendor=VENDOR)

    def account_id(self, account: KeepnetAccount) -> str:
        return account.account_id

    def client(self, account: KeepnetAccount) -> HttpClient:
        limiter = RateLimiter(
            account.requests_per_second, burst=account.concurrency, clock=self._clock, sleep=self._sleep
        )
        return HttpClient(
            vendor=VENDOR,
            base_url=account.base_url,
            timeout=(min(3.05, account.timeout_seconds), account.timeout_seconds),
            retry=self._retry,
            limiter=limiter,
            pool_size=max(4, account.concurrency),
            sleep=self._sleep,
            clock=self._clock,
        )

    def collect(self, account: KeepnetAccount, request: CollectionRequest) -> Generator[TenantResult, None, None]:
        """One result per company, as pages arrive; raises when the account as a whole cannot be read.
        Closing the generator early stops the page threads."""
        client = self.client(account)
        try:
            yield from self._collect(_KeepnetSession(client, account, self._clock), request)
        finally:
            client.close()

    def _collect(self, session: _KeepnetSession, request: CollectionRequest) -> Iterator[TenantResult]:
        account = session.account
        period = request.period
        window = Window.month(period)
        # Only the month being lived now gets the current values and the vendor's over-limit verdict.
        current = period == Period.of(request.as_of)

        exceeded_ids: set[str] = set()
        if current:
            for page in session.listing(period, exceeded_only=True):
                for row in page.results:
                    exceeded_ids.update(
                        cid for m in family(row) if isinstance(m, Member) and (cid := company_id(m.row)) is not None
                    )

        seen: set[str] = set()
        duplicates = failures = pages = nested = 0
        reported_records: int | None = None
        reported_exceeded: int | None = None
        for listing_pass in (1, 2):
            # A company created or deleted while the pages are read shifts every later page by one; read
            # concurrently, a page can then be fetched before the shift and the next one after it, and a
            # company falls between them. The page counts say the listing moved: read it once more.
            counts: set[tuple[int, int | None]] = set()
            for page in session.listing(period, exceeded_only=False):
                pages += 1
                counts.add((page.total_pages, page.total_records))
                if page.number == 1 and listing_pass == 1:
                    reported_records = page.total_records
                    reported_exceeded = page.limit_exceeded_count
                for position, row in enumerate(page.results, start=1):
                    for member in family(row):
                        if isinstance(member, ChildrenUnreadable):
                            if listing_pass == 1:
                                failures += 1
                                yield children_gap(member)
                            continue
                        cid = company_id(member.row)
                        if cid is None:
                            if listing_pass == 1:  # reported once, by the first pass
                                failures += 1
                                yield _row_failure(member, page.number, position)
                            continue
                        if cid in seen:
                            duplicates += 1 if listing_pass == 1 else 0
                            continue
                        seen.add(cid)
                        nested += member.parent_id is not None
                        company = member.row
                        if not isinstance(company, dict):  # company_id is None for anything else: not reached
                            failures += 1
                            yield _row_failure(member, page.number, position)
                            continue
                        try:
                            yield company_records(
                                company,
                                account_id=account.account_id,
                                window=window,
                                exceeded_ids=exceeded_ids,
                                current=current,
                                parent_id=member.parent_id,
                            )
                        except (UsagewatchError, ValueError, TypeError) as exc:
                            failures += 1
                            yield TenantFailure(tenant_of(company, cid, member.parent_id), _clip(str(exc)))
            if len(counts) <= 1:
                break
            logger.warning(
                "keepnet listing changed while it was read" + ("; reading it once more" if listing_pass == 1 else ""),
                extra={"account_id": account.account_id, "pass": listing_pass, "page_counts": sorted(counts, key=str)},
            )

        summary = {
            "account_id": account.account_id,
            "period": str(period),
            "current_period": current,
            "pages": pages,
            "companies": len(seen),
            "child_companies": nested,
            "duplicates_dropped": duplicates,
            "companies_failed": failures,
            "limit_exceeded": len(exceeded_ids),
            "tokens_issued": session.tokens.issued,
            "requests_sent": session.client.requests_sent,
        }
        if not current:
            logger.info(
                "keepnet past month: only monthly_users is the month's own number; current values not written",
                extra=summary,
            )
        if duplicates:
            logger.info("keepnet listing had duplicate companies", extra=summary)
        if reported_records is not None and len(seen) - nested + failures < reported_records:
            logger.warning(
                "keepnet listing shorter than the count it reported", extra={**summary, "reported": reported_records}
            )
        if current and reported_exceeded is not None and reported_exceeded != len(exceeded_ids):
            logger.warning(
                "keepnet over-limit listing differs from limitExceededCompanyCount",
                extra={**summary, "reported_limit_exceeded": reported_exceeded},
            )
        logger.info("keepnet account collected", extra=summary)


def _row_failure(member: Member, page: int, position: int) -> TenantFailure:
    row = member.row
    name = row.get("companyName") if isinstance(row, dict) else None
    label = name.strip()[:MAX_TENANT_NAME] if isinstance(name, str) and name.strip() else ""
    what = f"company {label!r}" if label else "a row"
    problem = "has no companyResourceId" if isinstance(row, dict) else f"is a {type(row).__name__}, not an object"
    where = f"position {position}" + (f", a child of company {member.parent_id}" if member.parent_id else "")
    suffix = f"-{member.parent_id}-{member.depth}" if member.parent_id else ""
    return TenantFailure(
        Tenant(
            tenant_id=f"row-{page}-{position}{suffix}",
            tenant_name=label or f"page {page} row {position}",
            parent_tenant_id=member.parent_id,
        ),
        _clip(f"Keepnet listing page {page}, {where}: {what} {problem}; it cannot be stored"),
    )

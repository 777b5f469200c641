"""Bitdefender GravityZone: every managed company's monthly licence usage (JSON-RPC 2.0).

Calls `POST {access_url}/v1.0/jsonrpc/{api}` with HTTP Basic (the API key as user, empty password):

- `network.getCompaniesList` walks the partner tree from the key's own company (or `root_company_id`):
  per container (the root, a partner company, a company folder, whose id is a documented `parentId`)
  one plain listing, one listing filtered with `companyType: 0` (partners) and the container's folders
  (`network.getCompanyFoldersList`; where a server answers -32601 for it, `getNetworkInventoryItems`
  v1.1 with `filters.type.companyFolders`). Partners and folders are walked in turn; a company the
  filter called a partner but whose own listing answers -32602 "Invalid params" is a customer after all
  (so a server that ignores the filter costs calls, never correctness), and a server that rejects the
  filter makes every child a candidate probed that way. Repeats and cycles are skipped (visited set).
  Any other error of a listing call, "method not found" included, is a failed listing: the root's fails
  the account, a partner's or folder's is a `ListingGap` naming it (never an empty list).
- `licensing.getMonthlyUsage` (or `getMonthlyUsagePerProductType`) per company, for the run's month and,
  in the first `previous_month_days` days of a month, the previous (invoiced) month too. A company
  without a monthly licence answers `0` (documented); an error saying so is recognised as a logged
  fallback.

Partner companies' counters already include their children: they are recorded with `billed=False`, so
totals sum customer companies only. Every numeric counter becomes a record named in snake_case; a
documented counter that is not a count fails that company, naming the field.

Rate limits are per key and per API class (Licensing 5 req/s, the rest 10 req/s): one limiter per
(key, API) paces requests a little under the configured rate (burst 1) so the server's rolling window
is never exceeded; a 429 (or JSON-RPC -32003) holds every request of that key and API for
`Retry-After` seconds and slows the pace.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from usagewatch.errors import ConfigError, VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, RateLimiter, RetryPolicy, validate_base_url
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    Number,
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
from usagewatch.sources.base import AccountConfig
from usagewatch.sources.base import parse_account as parse_account_model

VENDOR: Final = "gravityzone"

Api = Literal["licensing", "network"]
_API_LABEL: Final[dict[str, str]] = {"licensing": "Licensing", "network": "Network"}

# Listing methods of the Network API.
FOLDERS_METHOD: Final = "getCompanyFoldersList"
INVENTORY_METHOD: Final = "getNetworkInventoryItems"
INVENTORY_PAGE_SIZE: Final = 1000  # the documented maximum of `perPage` (v1.1)
MAX_INVENTORY_PAGES: Final = 100

# JSON-RPC error codes GravityZone uses.
RPC_INVALID_PARAMS: Final = -32602
RPC_METHOD_NOT_FOUND: Final = -32601
RPC_RATE_LIMITED: Final = -32003

# Pace at this share of the configured rate: the server counts requests over a rolling second, and
# arrival times jitter; 3% slack (30 ms a second) keeps a run at the documented limit free of 429s.
PACING_MARGIN: Final = 0.97
# Companies per continuation chunk at most: keeps one work message well under SQS's 256 KiB.
MAX_CHUNK_COMPANIES: Final = 1000
# A 429 holds every request of that key and API for its wait. A second 429 within `RECOVERY_SECONDS`
# also slows the pace down by this factor (at most once a second), down to `SLOWDOWN_FLOOR` req/s: the
# vendor's documented limits are contradictory. An isolated 429 (arrival jitter squeezing six calls into
# one second) costs only its hold. After `RECOVERY_SECONDS` without a 429, the pace climbs back by a tenth
# of the configured rate (AIMD). Each run starts at the configured rate.
SLOWDOWN_FACTOR: Final = 0.7
SLOWDOWN_FLOOR: Final = 0.5
RECOVERY_SECONDS: Final = 10.0
DEFAULT_RATE_LIMIT_WAIT: Final = 1.0
# Usage calls of this many rounds of `concurrency` companies in a row failing for want of an answer (retries
# spent on 5xx, timeouts, resets) mean the Licensing API is down, not the companies: the account fails once
# instead of every company failing on its own, each after its full retries (which, for hundreds of companies,
# outlasts the function's timeout).
API_DOWN_ROUNDS: Final = 2

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
_LOGIN_ONLY_HOSTS: Final = frozenset({"gravityzone.bitdefender.com"})

_NUMERIC_TEXT_RE: Final = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_NO_LICENCE_NEGATION_RE: Final = re.compile(r"\b(no|not|without|missing|lacks?)\b|n't\b")

AUTH_REJECTED_MESSAGE: Final = (
    "GravityZone rejected the API key: invalid key, or the key belongs to another region's host (check access_url)"
)


# --- account ------------------------------------------------------------------------------------


class GravityZoneAccount(AccountConfig):
    """One GravityZone console (Control Center) from the vendor secret.

    `access_url` is the Control Center "Access URL" (My Account > Control Center API), which differs by
    region and already ends in `/api`.
    """

    access_url: str
    api_key: SecretStr = Field(min_length=1)
    licensing_requests_per_second: float = Field(default=5.0, gt=0, le=100)
    network_requests_per_second: float = Field(default=10.0, gt=0, le=100)
    concurrency: int = Field(default=5, ge=1, le=32)
    previous_month_days: int = Field(default=3, ge=0, le=27)
    per_product_type: bool = False
    root_company_id: str | None = Field(default=None, min_length=1, max_length=128)
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)

    @field_validator("access_url")
    @classmethod
    def _check_access_url(cls, value: str) -> str:
        try:
            url = validate_base_url(value, field="access_url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("access_url: ")) from exc
        host = (urlsplit(url).hostname or "").lower()
        if host in _LOGIN_ONLY_HOSTS:
            raise ValueError(
                f"{host} is the login page, not an API host; use the Control Center Access URL "
                "(e.g. https://cloudgz.gravityzone.bitdefender.com/api)"
            )
        return url


# --- errors -------------------------------------------------------------------------------------


class GravityZoneRpcError(VendorApiError):
    """A JSON-RPC error object (GravityZone sends most of them with HTTP 200)."""

    def __init__(self, *, api: str, method: str, code: int | None, message: str, details: str | None) -> None:
        text = f"GravityZone {api}.{method}: JSON-RPC error {code} ({message})"
        if details:
            text += f": {details}"
        super().__init__(redactor.scrub(text), status=200, retryable=code == RPC_RATE_LIMITED)
        self.code = code
        self.rpc_message = message
        self.details = details


def is_no_licence_error(error: GravityZoneRpcError) -> bool:
    """An error whose text says the company has no monthly licence / subscription.

    Only a fallback: the documented answer of such a company is `0` (see `is_no_licence_result`); the
    2017 API guide said the call errors instead, without giving the error's code or text.
    """
    text = f"{error.rpc_message} {error.details or ''}".lower()
    return (
        "monthly" in text
        and ("licen" in text or "subscription" in text)
        and _NO_LICENCE_NEGATION_RE.search(text) is not None
    )


# --- mapping (pure) -----------------------------------------------------------------------------


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


# --- JSON-RPC transport -------------------------------------------------------------------------


class PacedLimiter(RateLimiter):
    """A key's limiter for one API: burst 1 at `PACING_MARGIN` of the configured rate; slower after repeated
    429s (at most once a second), back up step by step after `RECOVERY_SECONDS` without one."""

    def __init__(
        self,
        rate_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(rate_per_second * PACING_MARGIN, burst=1, clock=clock, sleep=sleep)
        # Empty at first: the key's last calls (an earlier invocation's chunk) may still be in the server's
        # rolling second, so even the first call waits one interval.
        self._tokens = 0.0
        self.configured_rate = self.rate
        self.floor = min(self.rate, SLOWDOWN_FLOOR)
        self.slowdowns = 0
        self._last_slowdown = -math.inf
        self._last_recovery = -math.inf
        self._last_429 = -math.inf

    def acquire(self) -> None:
        if self.rate < self.configured_rate:
            with self._lock:
                now = self._clock()
                if now - max(self._last_slowdown, self._last_recovery) >= RECOVERY_SECONDS:
                    self.rate = min(self.configured_rate, self.rate + self.configured_rate / 10)
                    self._last_recovery = now
        super().acquire()

    def restore(self) -> None:
        """Back to the configured pace (a new run)."""
        with self._lock:
            self.rate = self.configured_rate
            self._last_slowdown = self._last_recovery = self._last_429 = -math.inf

    def hold(self, seconds: float) -> None:
        super().hold(seconds)
        with self._lock:
            now = self._clock()
            previous, self._last_429 = self._last_429, now
            if now - previous >= RECOVERY_SECONDS:
                return
            if now - self._last_slowdown < 1.0 or self.rate <= self.floor:
                return
            self._last_slowdown = now
            self.rate = max(self.floor, self.rate * SLOWDOWN_FACTOR)
            self.slowdowns += 1
            rate = self.rate
        logger.warning("gravityzone rate limited: slowing down", extra={"rate_per_second": round(rate, 2)})


class _Rpc:
    """JSON-RPC calls of one account: one HttpClient and one limiter per API class."""

    def __init__(
        self,
        account: GravityZoneAccount,
        limiters: Mapping[str, RateLimiter],
        *,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self._auth = (account.api_key.get_secret_value(), "")
        self._host = urlsplit(account.access_url).hostname or account.access_url
        self._limiters = limiters
        self._retry = retry
        self._sleep = sleep
        # Documented methods this server answered -32601 for, not asked again in this run.
        self.missing_methods: set[str] = set()
        self._clients: dict[str, HttpClient] = {
            api: HttpClient(
                vendor=VENDOR,
                base_url=account.access_url,
                timeout=(3.05, account.timeout_seconds),
                retry=retry,
                limiter=limiters[api],
                pool_size=account.concurrency + 2,
                sleep=sleep,
                clock=clock,
            )
            for api in ("licensing", "network")
        }

    @property
    def requests_sent(self) -> int:
        return sum(client.requests_sent for client in self._clients.values())

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def call(self, api: Api, method: str, params: Mapping[str, Any], *, version: str = "1.0") -> Any:
        """One JSON-RPC call's `result`; raises GravityZoneRpcError / VendorAuthError / VendorApiError.

        `version` picks the API version in the path (`getNetworkInventoryItems` is documented at 1.1).
        """
        client = self._clients[api]
        for attempt in range(1, self._retry.max_attempts + 1):
            body = {"jsonrpc": "2.0", "method": method, "params": dict(params), "id": str(uuid.uuid4())}
            try:
                response = client.request(
                    "POST", f"/v{version}/jsonrpc/{api}", json_body=body, auth=self._auth, parse_json=True
                )
            except VendorDataError as exc:
                raise VendorDataError(f"GravityZone {api}.{method}: {exc}") from exc
            except VendorApiError as exc:
                raise VendorApiError(
                    f"GravityZone {api}.{method}: {exc}", status=exc.status, retryable=exc.retryable
                ) from exc
            if response.status == 401:
                raise VendorAuthError(f"{AUTH_REJECTED_MESSAGE}; host {self._host}", status=401)
            if response.status == 403:
                raise VendorAuthError(
                    f"GravityZone: the {_API_LABEL[api]} API is not enabled for this key "
                    f"(HTTP 403 on {api}.{method}; enable Licensing and Network when generating the key)",
                    status=403,
                )
            if response.status != 200:
                raise self._http_error(api, method, response.status, response.body)
            payload = response.json()
            if not isinstance(payload, dict):
                raise VendorDataError(f"GravityZone {api}.{method}: expected a JSON-RPC object")
            error = payload.get("error")
            if error is not None:
                rpc_error = _rpc_error(api, method, error)
                if rpc_error.code != RPC_RATE_LIMITED or attempt == self._retry.max_attempts:
                    raise rpc_error
                wait = DEFAULT_RATE_LIMIT_WAIT
                self._limiters[api].hold(wait)
                logger.warning("gravityzone rate limited (JSON-RPC -32003)", extra={"method": f"{api}.{method}"})
                self._sleep(wait)
                continue
            if "result" not in payload:
                raise VendorDataError(f"GravityZone {api}.{method}: JSON-RPC answer without result or error")
            return payload["result"]
        raise VendorApiError(f"GravityZone {api}.{method}: still rate limited", retryable=True)  # pragma: no cover

    def _http_error(self, api: str, method: str, status: int, body: bytes) -> VendorApiError:
        hint = ""
        if status in (404, 405):
            hint = " (check access_url: the Control Center Access URL, normally ending in /api)"
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            rpc = _rpc_error(api, method, payload["error"])
            return VendorApiError(f"{rpc} (HTTP {status}){hint}", status=status)
        return VendorApiError(f"GravityZone {api}.{method}: HTTP {status}{hint}", status=status)


def _rpc_error(api: str, method: str, error: object) -> GravityZoneRpcError:
    if not isinstance(error, dict):
        return GravityZoneRpcError(api=api, method=method, code=None, message=str(error)[:200], details=None)
    code = error.get("code")
    data = error.get("data")
    details = data.get("details") if isinstance(data, dict) else None
    return GravityZoneRpcError(
        api=api,
        method=method,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        message=str(error.get("message") or "no message")[:200],
        details=str(details)[:500] if details is not None else None,
    )


# --- companies ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Company:
    """A company found in the tree; `parent_id` is the enclosing company (None: directly under the root)."""

    company_id: str
    name: str
    parent_id: str | None
    is_partner: bool = False
    failed: bool = False

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.company_id, self.name, parent_tenant_id=self.parent_id, billed=not self.is_partner)


@dataclass(slots=True)
class _Container:
    """Something whose children are listed: the root, a partner company or a company folder."""

    node_id: str | None
    kind: Literal["root", "partner", "folder"]
    enclosing: str | None  # the company the children sit under (their parent_tenant_id)
    company: Company | None = None
    folder_name: str = ""


def _items(result: object, what: str) -> list[tuple[str, str]]:
    """`[{id, name}]` (or an `{items: [...]}` wrapper) as (id, name) pairs."""
    if isinstance(result, dict) and isinstance(result.get("items"), list):
        result = result["items"]
    if not isinstance(result, list):
        raise VendorDataError(f"{what}: expected a list, got {type(result).__name__}")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise VendorDataError(f"{what}: item {index} is not an object")
        raw_id = item.get("id")
        if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or not str(raw_id).strip():
            raise VendorDataError(f"{what}: item {index} has no id")
        company_id = str(raw_id).strip()
        name = item.get("name")
        pairs.append((company_id, str(name).strip() if name is not None and str(name).strip() else company_id))
    return pairs


def list_companies(rpc: _Rpc, root_company_id: str | None) -> tuple[list[Company], list[TenantFailure]]:
    """Every company under the root, partners flagged; a `ListingGap` per failed sub-listing (a partner's
    or a folder's: the companies beneath it are unknown this run).

    Raises when the root itself cannot be listed: without it there is no complete picture.
    """
    companies: list[Company] = []
    failures: list[TenantFailure] = []
    seen: set[str] = set() if root_company_id is None else {root_company_id}
    queue: deque[_Container] = deque([_Container(root_company_id, "root", None)])
    while queue:
        container = queue.popleft()
        try:
            children = _list_children(rpc, container)
        except VendorAuthError:
            raise
        except (VendorApiError, VendorDataError) as exc:
            if container.kind == "root":
                raise
            failures.append(_listing_failure(container, exc))
            continue
        if children is None:  # a "partner" whose listing says it is a customer
            continue
        child_companies, partner_ids, folders = children
        for company_id, name in child_companies:
            if company_id in seen:
                logger.info("gravityzone company listed twice; kept once", extra={"company_id": company_id})
                continue
            seen.add(company_id)
            candidate = partner_ids is None or company_id in partner_ids
            company = Company(company_id, name, container.enclosing, is_partner=candidate)
            companies.append(company)
            if candidate:
                queue.append(_Container(company_id, "partner", company_id, company=company))
        for folder_id, folder_name in folders:
            if folder_id in seen:
                continue
            seen.add(folder_id)
            queue.append(_Container(folder_id, "folder", container.enclosing, folder_name=folder_name))
    return [c for c in companies if not c.failed], failures


def _list_children(
    rpc: _Rpc, container: _Container
) -> tuple[list[tuple[str, str]], set[str] | None, list[tuple[str, str]]] | None:
    """(children, partner ids or None when unknown, folders); None when a probed partner is a customer."""
    base: dict[str, Any] = {} if container.node_id is None else {"parentId": container.node_id}
    try:
        children = _items(rpc.call("network", "getCompaniesList", base), "getCompaniesList")
    except GravityZoneRpcError as exc:
        if exc.code == RPC_INVALID_PARAMS and container.kind == "partner" and container.company is not None:
            container.company.is_partner = False  # "Invalid value for 'parentId'": a customer company
            return None
        if exc.code == RPC_INVALID_PARAMS and container.kind == "root" and container.node_id is not None:
            raise VendorApiError(
                f"root_company_id {container.node_id} cannot be listed as a partner company: {exc}"
            ) from exc
        raise
    partner_ids: set[str] | None = set()
    if children:
        try:
            partners = rpc.call("network", "getCompaniesList", {**base, "filters": {"companyType": 0}})
            partner_ids = {company_id for company_id, _ in _items(partners, "getCompaniesList(partners)")}
        except GravityZoneRpcError as exc:
            if exc.code != RPC_INVALID_PARAMS:
                raise
            partner_ids = None  # filter not supported: probe every child
    return children, partner_ids, _list_folders(rpc, base)


def _list_folders(rpc: _Rpc, base: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The company folders directly under a container (the root, a partner company, a folder).

    `network.getCompanyFoldersList` first; on a server that answers -32601 (method not found) for it,
    `network.getNetworkInventoryItems` (v1.1) filtered to company folders. Any other error, or both
    methods missing, raises: a container whose folders are unknown is a failed listing, never "no folders".
    """
    if FOLDERS_METHOD not in rpc.missing_methods:
        try:
            return _items(rpc.call("network", FOLDERS_METHOD, base), FOLDERS_METHOD)
        except GravityZoneRpcError as exc:
            if exc.code != RPC_METHOD_NOT_FOUND:
                raise
            rpc.missing_methods.add(FOLDERS_METHOD)
            logger.warning(
                "gravityzone getCompanyFoldersList not found; listing folders with getNetworkInventoryItems (v1.1)"
            )
    try:
        return _inventory_folders(rpc, base)
    except GravityZoneRpcError as exc:
        if exc.code != RPC_METHOD_NOT_FOUND:
            raise
        raise VendorApiError(
            f"company folders cannot be listed: this server answers 'method not found' for both "
            f"network.{FOLDERS_METHOD} and network.{INVENTORY_METHOD} (v1.1): {exc}"
        ) from exc


def _inventory_folders(rpc: _Rpc, base: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Company folders from `getNetworkInventoryItems` (v1.1, `filters.type.companyFolders`), page by page.

    The walk stops on `hasMoreRecords: false`, else at `pagesCount` (which may come on page 1 only),
    else on a short page; `MAX_INVENTORY_PAGES` bounds a server that never says stop.
    """
    folders: list[tuple[str, str]] = []
    pages_count: int | None = None
    for page in range(1, MAX_INVENTORY_PAGES + 1):
        params = {**base, "filters": {"type": {"companyFolders": True}}, "page": page, "perPage": INVENTORY_PAGE_SIZE}
        result = rpc.call("network", INVENTORY_METHOD, params, version="1.1")
        if not isinstance(result, Mapping) or not isinstance(result.get("items"), list):
            raise VendorDataError(f"{INVENTORY_METHOD}: expected an object with a list of items")
        items = result["items"]
        folders.extend(_items(items, f"{INVENTORY_METHOD} page {page}"))
        more = result.get("hasMoreRecords")
        count = result.get("pagesCount")
        if pages_count is None and isinstance(count, int) and not isinstance(count, bool):
            pages_count = count
        if isinstance(more, bool):
            if not more:
                return folders
        elif pages_count is not None:
            if page >= pages_count:
                return folders
        elif len(items) < INVENTORY_PAGE_SIZE:
            return folders
    raise VendorDataError(f"{INVENTORY_METHOD}: still more pages after {MAX_INVENTORY_PAGES}")


def _listing_failure(container: _Container, exc: Exception) -> ListingGap:
    """The partner or folder whose listing failed: the companies beneath it are unknown this run."""
    if container.company is not None:
        container.company.failed = True
        return ListingGap(
            container.company.tenant,
            f"listing the companies of partner {container.company.name} failed; its companies were not "
            f"collected: {exc}",
        )
    folder_id = container.node_id or "?"
    tenant = Tenant(folder_id, f"folder {container.folder_name}", parent_tenant_id=container.enclosing, billed=False)
    return ListingGap(
        tenant, f"listing company folder {container.folder_name} failed; its companies were not collected: {exc}"
    )


# --- the source ---------------------------------------------------------------------------------


class GravityZoneSource:
    """Reads every managed company's monthly usage from one GravityZone console per account."""

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
        self._limiters: dict[tuple[str, str], PacedLimiter] = {}
        self._limiters_lock = threading.Lock()
        self._listed: dict[tuple[str, datetime], tuple[list[Company], list[TenantFailure]]] = {}

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> GravityZoneAccount:
        account = parse_account_model(GravityZoneAccount, raw, index=index, vendor=VENDOR)
        # What every request carries (`Authorization: Basic base64(key:)`) is the key too: a server that
        # echoes the header in an error's details must not put it in a message.
        redactor.register(base64.b64encode(f"{account.api_key.get_secret_value()}:".encode()).decode())
        return account

    def account_id(self, account: GravityZoneAccount) -> str:
        return account.account_id

    def limiter(self, account: GravityZoneAccount, api: Api) -> PacedLimiter:
        """The one limiter of this key and API class (shared by every account using the key)."""
        key = hashlib.sha256(account.api_key.get_secret_value().encode()).hexdigest()
        rate = account.licensing_requests_per_second if api == "licensing" else account.network_requests_per_second
        with self._limiters_lock:
            limiter = self._limiters.get((key, api))
            if limiter is None:
                limiter = PacedLimiter(rate, clock=self._clock, sleep=self._sleep)
                self._limiters[(key, api)] = limiter
            return limiter

    def periods(self, account: GravityZoneAccount, request: CollectionRequest) -> list[Period]:
        """The run's month; also the previous (invoiced) one in the first days of a month."""
        periods = [request.period]
        day = request.as_of.astimezone(UTC).day
        if not request.period_explicit and account.previous_month_days and day <= account.previous_month_days:
            periods.append(request.period.previous())
        return periods

    def _rpc(self, account: GravityZoneAccount) -> _Rpc:
        limiters = {api: self.limiter(account, api) for api in ("licensing", "network")}
        for limiter in limiters.values():
            limiter.restore()
        return _Rpc(account, limiters, retry=self._retry, sleep=self._sleep, clock=self._clock)

    def plan_chunks(
        self, account: GravityZoneAccount, request: CollectionRequest, budget_seconds: float
    ) -> list[list[dict[str, Any]]] | None:
        """Split the account when its usage calls cannot finish within `budget_seconds` at the key's rate.

        Returns None when one invocation suffices (the listing is kept for `collect`), else chunks of
        companies, each small enough for one invocation and one SQS message.
        """
        periods = self.periods(account, request)
        rpc = self._rpc(account)
        try:
            companies, failures = list_companies(rpc, account.root_company_id)
        finally:
            rpc.close()
        calls_per_second = account.licensing_requests_per_second * PACING_MARGIN
        if len(companies) * len(periods) <= calls_per_second * budget_seconds:
            self._listed[(account.account_id, request.as_of)] = (companies, failures)
            return None
        per_chunk = max(1, min(MAX_CHUNK_COMPANIES, int(calls_per_second * budget_seconds / len(periods))))
        entries = [_company_entry(c) for c in companies] + [_failure_entry(f) for f in failures]
        return [entries[i : i + per_chunk] for i in range(0, len(entries), per_chunk)]

    def collect_chunk(
        self, account: GravityZoneAccount, request: CollectionRequest, chunk: list[dict[str, Any]]
    ) -> Iterator[TenantResult]:
        """Usage of the companies of one chunk (from `plan_chunks`), as `collect` would read them."""
        periods = self.periods(account, request)
        companies: list[Company] = []
        for entry in chunk:
            if "error" in entry:
                yield _failure_from_entry(entry)
            else:
                companies.append(
                    Company(str(entry["id"]), str(entry["name"]), entry.get("parent"), bool(entry.get("partner")))
                )
        rpc = self._rpc(account)
        try:
            yield from self._collect_usage(rpc, account, companies, periods)
        finally:
            rpc.close()

    def collect(self, account: GravityZoneAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        periods = self.periods(account, request)
        rpc = self._rpc(account)
        try:
            listed = self._listed.pop((account.account_id, request.as_of), None)
            companies, failures = listed if listed is not None else list_companies(rpc, account.root_company_id)
            logger.info(
                "gravityzone companies listed",
                extra={
                    "account_id": account.account_id,
                    "customers": sum(1 for c in companies if not c.is_partner),
                    "partners": sum(1 for c in companies if c.is_partner),
                    "listing_failures": len(failures),
                    "periods": [str(p) for p in periods],
                },
            )
            yield from failures
            yield from self._collect_usage(rpc, account, companies, periods)
            logger.info(
                "gravityzone usage collected",
                extra={"account_id": account.account_id, "requests": rpc.requests_sent},
            )
        finally:
            rpc.close()

    def _collect_usage(
        self, rpc: _Rpc, account: GravityZoneAccount, companies: list[Company], periods: list[Period]
    ) -> Iterator[TenantResult]:
        executor = ThreadPoolExecutor(max_workers=account.concurrency, thread_name_prefix="gravityzone")
        try:
            futures: list[Future[TenantResult]] = [
                executor.submit(self._company_usage, rpc, account, company, periods) for company in companies
            ]
            in_a_row = 0
            for future in futures:
                result = future.result()  # an account-wide error (bad key, API gone) propagates from here
                if not isinstance(result, _NoAnswer):
                    in_a_row = 0
                elif (in_a_row := in_a_row + 1) >= API_DOWN_ROUNDS * account.concurrency:
                    raise VendorApiError(
                        f"GravityZone Licensing API not answering: {in_a_row} companies in a row failed "
                        f"(last: {result.error})",
                        retryable=True,
                    )
                yield result
        finally:
            executor.shutdown(wait=True, cancel_futures=True)

    def _company_usage(
        self, rpc: _Rpc, account: GravityZoneAccount, company: Company, periods: list[Period]
    ) -> TenantResult:
        tenant = company.tenant
        method = "getMonthlyUsagePerProductType" if account.per_product_type else "getMonthlyUsage"
        records: list[UsageRecord] = []
        for period in periods:
            month = target_month(period)
            try:
                result = rpc.call("licensing", method, {"companyId": company.company_id, "targetMonth": month})
                if is_no_licence_result(result):
                    _log_no_licence(company, month, signal="documented answer 0")
                counters = read_result(result, per_product_type=account.per_product_type)
                records.extend(usage_records(counters, account_id=account.account_id, tenant=tenant, period=period))
            except VendorAuthError:
                raise
            except GravityZoneRpcError as exc:
                if exc.code == RPC_METHOD_NOT_FOUND:
                    raise  # the method is missing for everyone: the account fails, not 500 companies
                if is_no_licence_error(exc):
                    _log_no_licence(company, month, signal="error text (fallback)", error=str(exc))
                    continue
                return TenantFailure(tenant, _company_error(company, month, exc))
            except VendorApiError as exc:
                failure = _NoAnswer if exc.retryable else TenantFailure
                return failure(tenant, _company_error(company, month, exc))
            except VendorDataError as exc:
                return TenantFailure(tenant, _company_error(company, month, exc))
        return TenantUsage(tenant, tuple(records))


@dataclass(frozen=True, slots=True)
class _NoAnswer(TenantFailure):
    """A company whose usage call got no usable answer after its retries (not an error about the company)."""


def _log_no_licence(company: Company, month: str, *, signal: str, error: str | None = None) -> None:
    """A company without a monthly licence records nothing; the log says which signal said so."""
    extra: dict[str, Any] = {"company_id": company.company_id, "month": month, "signal": signal}
    if error is not None:
        extra["error"] = error
    log = logger.info if error is None else logger.warning
    log("gravityzone company without monthly licence", extra=extra)


def _company_entry(company: Company) -> dict[str, Any]:
    return {"id": company.company_id, "name": company.name, "parent": company.parent_id, "partner": company.is_partner}


def _failure_entry(failure: TenantFailure) -> dict[str, Any]:
    """A listing failure as a chunk entry; `gap` says it hides the companies beneath it."""
    tenant = failure.tenant
    return {
        "id": tenant.tenant_id,
        "name": tenant.tenant_name,
        "parent": tenant.parent_tenant_id,
        "billed": tenant.billed,
        "error": failure.error,
        "gap": isinstance(failure, ListingGap),
    }


def _failure_from_entry(entry: Mapping[str, Any]) -> TenantFailure:
    parent = entry.get("parent")
    tenant = Tenant(
        str(entry["id"]),
        str(entry["name"]),
        parent_tenant_id=str(parent) if parent is not None else None,
        billed=bool(entry.get("billed", True)),
    )
    kind = ListingGap if entry.get("gap") else TenantFailure
    return kind(tenant, str(entry["error"]))


def _company_error(company: Company, month: str, exc: Exception) -> str:
    kind = "partner company" if company.is_partner else "company"
    return redactor.scrub(f"{kind} {company.name} ({company.company_id}), month {month}: {exc}")

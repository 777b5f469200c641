"""GravityZoneSource: list the companies, read each one's monthly usage, continue in chunks."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Unpack

from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    Period,
    Tenant,
    TenantFailure,
    TenantResult,
    TenantUsage,
    UsageRecord,
)
from usagewatch.observability import logger
from usagewatch.pacing import PACING_MARGIN, Deadline, PacedLimiter
from usagewatch.redaction import redactor
from usagewatch.sources.base import SourceClocks, VendorSource
from usagewatch.sources.gravityzone.api import (
    RPC_METHOD_NOT_FOUND,
    Api,
    GravityZoneAccount,
    GravityZoneRpcError,
    RpcClient,
    is_no_licence_error,
)
from usagewatch.sources.gravityzone.companies import Company, list_companies
from usagewatch.sources.gravityzone.mapping import (
    VENDOR,
    is_no_licence_result,
    read_result,
    target_month,
    usage_records,
)

# Companies per continuation chunk at most: keeps one work message well under SQS's 256 KiB.
MAX_CHUNK_COMPANIES: Final = 1000
# Usage calls of this many rounds of `concurrency` companies in a row failing for want of an answer (retries
# spent on 5xx, timeouts, resets) mean the Licensing API is down, not the companies: the account fails once
# instead of every company failing on its own, each after its full retries (which, for hundreds of companies,
# outlasts the function's timeout).
API_DOWN_ROUNDS: Final = 2


class GravityZoneSource(VendorSource[GravityZoneAccount]):
    """Reads every managed company's monthly usage from one GravityZone console per account."""

    vendor = VENDOR
    account_model = GravityZoneAccount

    def __init__(self, **clocks: Unpack[SourceClocks]) -> None:
        super().__init__(**clocks)
        self._limiters: dict[tuple[str, str], PacedLimiter] = {}
        self._limiters_lock = threading.Lock()
        self._listed: dict[tuple[str, datetime], tuple[list[Company], list[TenantFailure]]] = {}

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> GravityZoneAccount:
        account = super().parse_account(raw, index=index)
        # What every request carries (`Authorization: Basic base64(key:)`) is the key too: a server that
        # echoes the header in an error's details must not put it in a message.
        redactor.register(base64.b64encode(f"{account.api_key.get_secret_value()}:".encode()).decode())
        return account

    def limiter(self, account: GravityZoneAccount, api: Api) -> PacedLimiter:
        """The one limiter of this key and API class (shared by every account using the key)."""
        key = hashlib.sha256(account.api_key.get_secret_value().encode()).hexdigest()
        rate = account.licensing_requests_per_second if api == "licensing" else account.network_requests_per_second
        with self._limiters_lock:
            limiter = self._limiters.get((key, api))
            if limiter is None:
                limiter = PacedLimiter(rate, clock=self._clock, sleep=self._sleep, vendor=VENDOR)
                self._limiters[(key, api)] = limiter
            return limiter

    def periods(self, account: GravityZoneAccount, request: CollectionRequest) -> list[Period]:
        """The run's month; also the previous (invoiced) one in the first days of a month."""
        periods = [request.period]
        day = request.as_of.astimezone(UTC).day
        if not request.period_explicit and account.previous_month_days and day <= account.previous_month_days:
            periods.append(request.period.previous())
        return periods

    def _rpc(self, account: GravityZoneAccount, deadline: Deadline | None = None) -> RpcClient:
        limiters = {api: self.limiter(account, api) for api in ("licensing", "network")}
        for limiter in limiters.values():
            limiter.restore()
        return RpcClient(account, limiters, retry=self._retry, sleep=self._sleep, clock=self._clock, deadline=deadline)

    def plan_chunks(
        self, account: GravityZoneAccount, request: CollectionRequest, budget_seconds: float
    ) -> list[list[dict[str, Any]]] | None:
        """Split the account when its usage calls cannot finish within `budget_seconds` at the key's rate.

        Returns None when one invocation suffices (the listing is kept for `collect`), else chunks of
        companies, each small enough for one invocation and one SQS message.
        """
        periods = self.periods(account, request)
        rpc = self._rpc(account, request.deadline)
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
        rpc = self._rpc(account, request.deadline)
        try:
            yield from self._collect_usage(rpc, account, companies, periods)
        finally:
            rpc.close()

    def collect(self, account: GravityZoneAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        periods = self.periods(account, request)
        rpc = self._rpc(account, request.deadline)
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
        self, rpc: RpcClient, account: GravityZoneAccount, companies: list[Company], periods: list[Period]
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
        self, rpc: RpcClient, account: GravityZoneAccount, company: Company, periods: list[Period]
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

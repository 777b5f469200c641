"""The toy vendor's package, in one file: `GET /v1/customers` pages, each customer with seats used and bought."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from pydantic import Field, SecretStr

from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, RetryPolicy
from usagewatch.model import CollectionRequest, Tenant, TenantFailure, TenantResult, TenantUsage, UsageRecord, Window
from usagewatch.pacing import RateLimiter
from usagewatch.sources.base import HttpAccountConfig, parse_account

VENDOR: Final = "toyvendor"


class ToyAccount(HttpAccountConfig):
    api_key: SecretStr
    requests_per_second: float = Field(default=20, gt=0, le=100)


def tenant_records(account_id: str, row: object, request: CollectionRequest) -> TenantResult:
    """Pure mapping: one customer row to its record (a row that does not parse fails that customer alone)."""
    if not isinstance(row, dict) or not isinstance(row.get("id"), str):
        raise VendorDataError(f"customer row without an id: {str(row)[:80]}")
    tenant = Tenant(row["id"], str(row.get("name") or row["id"]))
    try:
        record = UsageRecord(
            vendor=VENDOR,
            account_id=account_id,
            tenant=tenant,
            metric="seats_used",
            value=row["seatsUsed"],
            unit="seats",
            window=Window.month(request.period),
            quota=row.get("seatsBought"),
        )
    except (KeyError, VendorDataError) as exc:
        return TenantFailure(tenant, f"unreadable row: {exc}")
    return TenantUsage(tenant, (record,))


class ToySource:
    vendor = VENDOR

    def __init__(self, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> ToyAccount:
        return parse_account(ToyAccount, raw, index=index, vendor=VENDOR)

    def account_id(self, account: ToyAccount) -> str:
        return account.account_id

    def collect(self, account: ToyAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        client = HttpClient(
            VENDOR,
            account.base_url,
            retry=RetryPolicy(max_attempts=3, backoff_base=0.01),
            limiter=RateLimiter(account.requests_per_second),
            sleep=self._sleep,
        )
        headers = {"X-Api-Key": account.api_key.get_secret_value()}
        page: str | None = "1"
        try:
            while page is not None:
                response = client.request("GET", "/v1/customers", params={"page": page}, headers=headers)
                if response.status in (401, 403):
                    raise VendorAuthError(f"{VENDOR}: API key refused (HTTP {response.status})")
                if response.status != 200:
                    raise VendorApiError(f"{VENDOR}: customers listing answered HTTP {response.status}")
                body = response.json()
                for row in body.get("customers", []):
                    yield tenant_records(account.account_id, row, request)
                page = body.get("next")
        finally:
            client.close()

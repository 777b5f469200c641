"""Microsoft365Source: the customer tenants (GDAP listing or the secret's list), each one's SKUs read concurrently."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Final, Unpack

from usagewatch.errors import ConfigError, UsagewatchError, VendorAuthError
from usagewatch.http import HttpClient
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    Period,
    Tenant,
    TenantFailure,
    TenantResult,
    Window,
)
from usagewatch.observability import logger
from usagewatch.pacing import Deadline
from usagewatch.sources.base import CarriedError, SourceClocks, VendorSource
from usagewatch.sources.microsoft365.api import (
    CUSTOMERS_PATH,
    SKUS_PATH,
    GraphSession,
    Microsoft365Account,
    TenantRefusedError,
    TokenCache,
)
from usagewatch.sources.microsoft365.mapping import VENDOR, customer_tenant, tenant_records
from usagewatch.text import clip

# The tenant a ListingGap names when a page of the GDAP customer listing after the first failed.
LISTING_GAP_ID: Final = "gdap-customers"


class _AccountFailedError(CarriedError):
    """A tenant's call showed the account itself cannot be read (the app's credential refused)."""


class Microsoft365Source(VendorSource[Microsoft365Account]):
    """Microsoft 365 licences per customer tenant: one record per subscribed SKU (seats consumed against the
    enabled prepaid seats), for every GDAP customer of the partner tenant or the secret's list."""

    vendor = VENDOR
    account_model = Microsoft365Account

    def __init__(self, **clocks: Unpack[SourceClocks]) -> None:
        super().__init__(**clocks)
        self.tokens = TokenCache(self._clock)

    def client(self, account: Microsoft365Account, deadline: Deadline | None = None) -> HttpClient:
        return HttpClient(
            vendor=VENDOR,
            base_url=account.graph_url,
            timeout=(min(3.05, account.timeout_seconds), account.timeout_seconds),
            retry=self._retry,
            pool_size=max(4, account.concurrency),
            sleep=self._sleep,
            clock=self._clock,
            deadline=deadline,
        )

    def collect(self, account: Microsoft365Account, request: CollectionRequest) -> Generator[TenantResult, None, None]:
        """One result per tenant as it is read; raises when the account as a whole cannot be read (the listing,
        the app's credential). Closing the generator early stops the tenant threads."""
        current = Period.of(request.as_of)
        if request.period_explicit and request.period != current:
            raise ConfigError(
                f"Microsoft 365 reports only the licences held now (stored under {current}); asked for {request.period}"
            )
        client = self.client(account, request.deadline)
        session = GraphSession(client, account, self.tokens, clock=self._clock, sleep=self._sleep)
        try:
            yield from self._collect(session, Window.month(current))
        finally:
            client.close()

    # --- the tenants ------------------------------------------------------------------------------
    def plan(self, session: GraphSession) -> Iterator[Tenant | TenantResult]:
        """The tenants to read, and what went wrong while listing them (rows without a tenant id, a page gap,
        restricted tenants the listing lacks)."""
        account = session.account
        if account.tenants is not None and account.tenants_mode == "replace":
            yield from (Tenant(key, key) for key in account.tenants)
            return
        wanted = set(account.tenants or [])
        found: set[str] = set()
        seen: set[str] = set()
        pages = session.pages(
            account.partner_tenant_id,
            CUSTOMERS_PATH,
            {"$top": str(account.page_size)},
            what="GDAP customer listing",
            customer=False,
        )
        number = 0
        try:
            for page in pages:
                number += 1
                for position, row in enumerate(page.rows):
                    tenant = customer_tenant(row)
                    if tenant is None:
                        yield TenantFailure(
                            Tenant(f"row-{number}-{position}", f"GDAP listing page {number} row {position}"),
                            f"GDAP customer listing page {number}, row {position}: no tenantId GUID; it cannot be read",
                        )
                        continue
                    if tenant.tenant_id in seen:
                        continue
                    seen.add(tenant.tenant_id)
                    if wanted:
                        if tenant.tenant_id not in wanted:
                            continue
                        found.add(tenant.tenant_id)
                    yield tenant
        except UsagewatchError as exc:
            if number == 0 or isinstance(exc, VendorAuthError):
                raise
            yield ListingGap(
                Tenant(LISTING_GAP_ID, "GDAP customer listing"),
                clip(f"GDAP customer listing after page {number}: {exc}; the customers beyond it are unknown this run"),
            )
            return
        for missing in sorted(wanted - found):
            yield TenantFailure(
                Tenant(missing, missing),
                f"tenant {missing} is in the secret's tenants but not among the partner's GDAP customers "
                "(tenants_mode restrict): check the tenant id or the GDAP relationship",
            )

    def _read_tenant(self, session: GraphSession, tenant: Tenant, window: Window) -> TenantResult:
        rows: list[object] = []
        try:
            for page in session.pages(tenant.tenant_id, SKUS_PATH, None, what="subscribedSkus", customer=True):
                rows.extend(page.rows)
            return tenant_records(tenant, rows, account_id=session.account.account_id, window=window)
        except TenantRefusedError as exc:
            return TenantFailure(tenant, clip(f"tenant {tenant.tenant_name} ({tenant.tenant_id}): {exc}"))
        except VendorAuthError as exc:
            raise _AccountFailedError(exc) from exc
        except (UsagewatchError, ValueError, TypeError) as exc:
            return TenantFailure(tenant, clip(f"tenant {tenant.tenant_name} ({tenant.tenant_id}): {exc}"))

    def _collect(self, session: GraphSession, window: Window) -> Iterator[TenantResult]:
        account = session.account
        concurrency = account.concurrency
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="m365-tenant")
        pending: set[Future[TenantResult]] = set()
        counts = {"tenants": 0, "failed": 0, "listing_failures": 0}

        def drain(block: bool) -> Iterator[TenantResult]:
            nonlocal pending
            if not pending:
                return
            done, pending = wait(pending, timeout=None if block else 0, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except _AccountFailedError as failed:
                    raise failed.cause from None
                counts["failed"] += isinstance(result, TenantFailure)
                yield result

        try:
            for item in self.plan(session):
                if isinstance(item, Tenant):
                    counts["tenants"] += 1
                    while len(pending) >= concurrency * 2:  # a bounded queue: the listing may be long
                        yield from drain(block=True)
                    pending.add(pool.submit(self._read_tenant, session, item, window))
                else:
                    counts["listing_failures"] += 1
                    yield item
                yield from drain(block=False)
            while pending:
                yield from drain(block=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        logger.info(
            "microsoft365 account collected",
            extra={
                "account_id": account.account_id,
                "period": str(window.period),
                **counts,
                "tokens_issued": session.tokens.issued,
                "requests_sent": session.client.requests_sent,
            },
        )

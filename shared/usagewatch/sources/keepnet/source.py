"""KeepnetSource: one account's companies read page by page and mapped, duplicates dropped."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from usagewatch.errors import UsagewatchError
from usagewatch.http import HttpClient
from usagewatch.model import (
    CollectionRequest,
    Period,
    Tenant,
    TenantFailure,
    TenantResult,
    Window,
)
from usagewatch.observability import logger
from usagewatch.pacing import Deadline, RateLimiter
from usagewatch.sources.base import VendorSource
from usagewatch.sources.keepnet.api import KeepnetAccount, KeepnetSession
from usagewatch.sources.keepnet.mapping import (
    MAX_TENANT_NAME,
    VENDOR,
    ChildrenUnreadable,
    Member,
    children_gap,
    company_id,
    company_records,
    family,
    tenant_of,
)
from usagewatch.text import clip


class KeepnetSource(VendorSource[KeepnetAccount]):
    """Keepnet Labs Reseller API, per managed company (child companies of a sub-reseller included):
    `monthly_users` for the requested month; `target_users` (with licence limit and over-limit verdict),
    `inactive_target_users`, `deleted_target_users` only when that month is the current one."""

    vendor = VENDOR
    account_model = KeepnetAccount

    def client(self, account: KeepnetAccount, deadline: Deadline | None = None) -> HttpClient:
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
            deadline=deadline,
        )

    def collect(self, account: KeepnetAccount, request: CollectionRequest) -> Generator[TenantResult, None, None]:
        """One result per company, as pages arrive; raises when the account as a whole cannot be read.
        Closing the generator early stops the page threads."""
        client = self.client(account, request.deadline)
        try:
            yield from self._collect(KeepnetSession(client, account, self._clock), request)
        finally:
            client.close()

    def _collect(self, session: KeepnetSession, request: CollectionRequest) -> Iterator[TenantResult]:
        period = request.period
        window = Window.month(period)
        # Only the month being lived now gets the current values and the vendor's over-limit verdict.
        current = period == Period.of(request.as_of)

        exceeded_ids: set[str] = set()
        # The over-limit listing is read beside the main listing's first page (the token first, once): the
        # verdicts are in hand before the first company is mapped, one round trip sooner.
        over_limit: Future[set[str]] | None = None
        reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keepnet-over-limit") if current else None
        try:
            if reader is not None:
                session.tokens.current()
                over_limit = reader.submit(_over_limit_ids, session, period)
            yield from self._companies(session, request, window, current, exceeded_ids, over_limit)
        finally:
            if reader is not None:
                reader.shutdown(wait=True, cancel_futures=True)

    def _companies(
        self,
        session: KeepnetSession,
        request: CollectionRequest,
        window: Window,
        current: bool,
        exceeded_ids: set[str],
        over_limit: Future[set[str]] | None,
    ) -> Iterator[TenantResult]:
        account = session.account
        period = request.period
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
                if over_limit is not None:
                    exceeded_ids.update(over_limit.result())
                    over_limit = None
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
                            yield TenantFailure(tenant_of(company, cid, member.parent_id), clip(str(exc)))
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
        clip(f"Keepnet listing page {page}, {where}: {what} {problem}; it cannot be stored"),
    )


def _over_limit_ids(session: KeepnetSession, period: Period) -> set[str]:
    """The ids of every company (child companies included) in the vendor's over-limit listing."""
    ids: set[str] = set()
    for page in session.listing(period, exceeded_only=True):
        for row in page.results:
            ids.update(cid for m in family(row) if isinstance(m, Member) and (cid := company_id(m.row)) is not None)
    return ids

"""Keepnet transport: the account's secret fields, the OAuth2 token, company search calls and paging."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Final

from pydantic import Field, SecretStr

from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, HttpResponse
from usagewatch.model import Period
from usagewatch.observability import logger
from usagewatch.redaction import redactor
from usagewatch.sources.base import HttpAccountConfig
from usagewatch.sources.keepnet.mapping import (
    SearchPage,
    parse_envelope,
    parse_search_page,
    search_body,
    vendor_messages,
)
from usagewatch.text import clip

TOKEN_PATH: Final = "/connect/token"  # noqa: S105 - a path, not a password
SEARCH_PATH: Final = "/api/companies/search"
TOKEN_SCOPE: Final = "api1"  # noqa: S105 - an OAuth scope name
# Renew a token this long before the vendor says it expires.
TOKEN_RENEW_MARGIN_SECONDS: Final = 60.0
DEFAULT_TOKEN_TTL_SECONDS: Final = 3600.0

CREDENTIALS_REFUSED: Final = "Keepnet refused the client credentials (check client_id/client_secret)"
NOT_RESELLER: Final = (
    "Keepnet answered 403: this credential is not a Reseller "
    "(set Client Role = Reseller in Company → Company Settings → REST API)"
)


class KeepnetAccount(HttpAccountConfig):
    """One Keepnet Reseller REST API client (Company → Company Settings → REST API, Client Role = Reseller)."""

    client_id: str = Field(min_length=1, max_length=256)
    client_secret: SecretStr = Field(min_length=1)
    page_size: int = Field(default=100, ge=1, le=1000)
    concurrency: int = Field(default=4, ge=1, le=16)
    max_pages: int = Field(default=1000, ge=1, le=100_000)
    requests_per_second: float = Field(default=40.0, gt=0, le=1000)
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)


REFUSED_AFTER_RENEWAL: Final = (
    "Keepnet answered 401 to company search even with a fresh token "
    "(the REST API client may have been disabled or lost its permissions)"
)


class _TokenCache:
    """One account's bearer token, shared by the page threads; renewed once per expiry or 401.

    A token fetched because another was refused, refused in its turn, fails the account on whichever page thread
    sees it first: none of them asks for a third.
    """

    def __init__(self, client: HttpClient, account: KeepnetAccount, clock: Callable[[], float]) -> None:
        self._client = client
        self._account = account
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._refused: VendorAuthError | None = None
        self._renewed: str | None = None
        self.issued = 0

    def current(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                return self._fetch()
            return self._token

    def renew(self, stale: str) -> str:
        """After `stale` was refused (401): a fresh token, unless another thread already replaced `stale`;
        VendorAuthError when `stale` was itself the fresh token of an earlier refusal, not yet due to expire."""
        with self._lock:
            if stale == self._renewed and self._clock() < self._renew_at:
                raise VendorAuthError(REFUSED_AFTER_RENEWAL, status=401)
            if self._token is None or self._token == stale or self._clock() >= self._renew_at:
                self._renewed = self._fetch()
                return self._renewed
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
        return clip(payload["error"], 60)
    return ""


class KeepnetSession:
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
                raise VendorAuthError(REFUSED_AFTER_RENEWAL, status=401)
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

        At most `2 x concurrency` pages are requested or held unread at a time, and a page's successor is requested
        before the page is handed over: the requests go on while the caller maps a page. Follows
        `totalNumberOfPages` if it grows while reading; refuses to go past `max_pages`.
        """
        account = self.account
        first = self.page(period, 1, account.page_size, exceeded_only=exceeded_only)
        total = first.total_pages
        size = first.page_size
        self._guard(total)
        if total <= 1:
            yield first
            return
        window = max(1, account.concurrency * 2)
        next_number = 2
        pending: set[Future[SearchPage]] = set()
        ready: list[Future[SearchPage]] = []  # done, not handed over yet
        pool = ThreadPoolExecutor(max_workers=account.concurrency, thread_name_prefix="keepnet-page")

        def request_more() -> None:
            nonlocal next_number
            while next_number <= total and len(pending) + len(ready) < window:
                pending.add(pool.submit(self.page, period, next_number, size, exceeded_only=exceeded_only))
                next_number += 1

        try:
            request_more()
            yield first
            while next_number <= total or pending or ready:
                request_more()
                if not ready:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    ready = sorted(done, key=lambda f: f.result().number if f.exception() is None else 0)
                page = ready.pop(0).result()
                if page.total_pages > total:
                    logger.info(
                        "keepnet listing grew while reading",
                        extra={"pages_before": total, "pages_now": page.total_pages},
                    )
                    total = page.total_pages
                    self._guard(total)
                request_more()
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
        return clip(response.snippet(200)) if response.body.strip() else ""

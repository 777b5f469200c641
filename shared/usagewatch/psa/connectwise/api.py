"""ConnectWise PSA (Manage) transport: codebase discovery, auth headers, forward-only paging, the quantity PATCH.

Reads go through `HttpClient` with its bounded retries (429 with Retry-After, 5xx, timeouts). The PATCH does not:
a 429 is the one answer that proves nothing was written, so it alone is sent again; a timeout, a reset or a 5xx
raises `WriteOutcomeUnknownError` and the caller re-reads the line before anything else.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any, Final

from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, HttpResponse, RetryPolicy, parse_retry_after
from usagewatch.pacing import RateLimiter
from usagewatch.psa.connectwise.connection import ConnectWiseConnection
from usagewatch.psa.connectwise.mapping import (
    ACCEPT,
    ACTIVE_AGREEMENTS,
    MAX_PAGE_SIZE,
    PSA,
    any_of,
    clip,
    next_link,
    parse_addition,
    parse_agreement,
    parse_codebase,
    parse_company,
    parse_info,
    parse_json_exact,
    parse_list,
    patch_quantity,
    same_origin,
    vendor_message,
)
from usagewatch.psa.contract import (
    LineGoneError,
    LineProblem,
    LineRef,
    PsaAgreement,
    PsaCompany,
    PsaInfo,
    PsaLine,
    WriteMode,
    WriteOutcomeUnknownError,
    WriteRequest,
)

VENDOR: Final = "ConnectWise"
KEYS_REFUSED: Final = "ConnectWise refused the API keys (check company_id, public_key and private_key)"
CLIENT_ID_REFUSED: Final = "ConnectWise refused the request for its clientId (set client_id to your integration's id)"
CATALOG_BATCH: Final = 25
WRITE_429_ATTEMPTS: Final = 6


class ConnectWiseClient:
    """One connection's calls; implements `AbsoluteQuantityPsa` (usagewatch.psa.contract)."""

    psa: str = PSA
    write_mode: WriteMode = "absolute"

    def __init__(
        self,
        connection: ConnectWiseConnection,
        *,
        page_size: int = MAX_PAGE_SIZE,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        self.limiter = RateLimiter(connection.requests_per_second, clock=clock, sleep=sleep)
        timeout = (3.05, connection.timeout_seconds)
        common: dict[str, Any] = {"timeout": timeout, "limiter": self.limiter, "sleep": sleep, "clock": clock}
        self._reads = HttpClient(VENDOR, connection.site, retry=retry or RetryPolicy(), **common)
        # One attempt: this client's answers all come back here, where only a 429 is sent again.
        self._writes = HttpClient(VENDOR, connection.site, retry=RetryPolicy(max_attempts=1), **common)
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._codebase = connection.codebase

    # --- plumbing ----------------------------------------------------------------------------------------
    @property
    def requests_sent(self) -> int:
        return self._reads.requests_sent + self._writes.requests_sent

    def close(self) -> None:
        self._reads.close()
        self._writes.close()

    @property
    def api_base(self) -> str:
        return f"{self.connection.site}/{self.codebase()}apis/3.0"

    def codebase(self) -> str:
        """The codebase from the secret, else from `GET /login/companyinfo/{company_id}` (once)."""
        if self._codebase is None:
            path = f"/login/companyinfo/{self.connection.company_id}"
            try:
                response = self._reads.request("GET", path, headers={"Accept": "application/json"})
            except VendorApiError as exc:
                raise VendorApiError(
                    f"no ConnectWise site answered at {self.connection.site} (check site): {exc}", status=exc.status
                ) from None
            if response.status != 200:
                raise VendorApiError(
                    f"{self.connection.site} is not a ConnectWise site for company {self.connection.company_id} "
                    f"(companyinfo answered HTTP {response.status}; check site and company_id)",
                    status=response.status,
                )
            try:
                self._codebase = parse_codebase(parse_json_exact(response.body))
            except VendorDataError as exc:
                raise VendorDataError(f"{self.connection.site} did not answer as a ConnectWise site: {exc}") from None
        return self._codebase

    def _headers(self, *, forward_only: bool = False) -> dict[str, str]:
        headers = {"Accept": ACCEPT, "clientId": self.connection.client_id}
        if forward_only:
            headers["pagination-type"] = "forward-only"
        return headers

    def _get(self, path: str, *, params: dict[str, str] | None = None, forward_only: bool = False) -> HttpResponse:
        url = path if path.startswith(("http://", "https://")) else f"{self.api_base}{path}"
        headers = self._headers(forward_only=forward_only)
        response = self._reads.request("GET", url, params=params, headers=headers, auth=self.connection.basic_auth())
        self._raise_for(response, f"GET {path.split('?', 1)[0]}")
        return response

    def _raise_for(self, response: HttpResponse, label: str) -> None:
        if 200 <= response.status < 300:
            return
        said = _said(response)
        if response.status in (400, 401, 403) and "clientid" in said.lower().replace(" ", ""):
            raise VendorAuthError(f"{CLIENT_ID_REFUSED}: {said}", status=response.status)
        if response.status == 401:
            raise VendorAuthError(KEYS_REFUSED, status=401)
        if response.status == 403:
            raise VendorAuthError(
                f"ConnectWise answered 403 to {label}: the API member's security role does not allow it"
                + (f" ({said})" if said else ""),
                status=403,
            )
        raise VendorApiError(
            f"ConnectWise {label} answered HTTP {response.status}" + (f": {said}" if said else ""),
            status=response.status,
        )

    def _listing(self, path: str, *, conditions: str | None = None) -> Iterator[Any]:
        """Every record of a list, `pageSize` at a time, forward-only, following `Link: rel="next"`."""
        params: dict[str, str] | None = {"pageSize": str(self.page_size)}
        if conditions and params is not None:
            params["conditions"] = conditions
        target = path
        for _page in range(self.connection.max_pages):
            response = self._get(target, params=params, forward_only=True)
            records = parse_list(parse_json_exact(response.body), path)
            yield from records
            link = next_link(response.headers.get("Link"))
            if link is None or not records:
                return
            if not same_origin(link, self.api_base):
                raise VendorDataError(f"ConnectWise {path}: the next-page link leaves {self.api_base}; not followed")
            target, params = link, None
        raise VendorDataError(
            f"ConnectWise {path} did not end after {self.connection.max_pages} pages (raise max_pages if it is real)"
        )

    # --- the contract ------------------------------------------------------------------------------------
    def check(self) -> PsaInfo:
        return parse_info(parse_json_exact(self._get("/system/info").body))

    def companies(self) -> Iterator[PsaCompany]:
        for raw in self._listing("/company/companies", conditions="deletedFlag=false"):
            yield parse_company(raw)

    def active_agreements(self) -> Iterator[PsaAgreement]:
        for raw in self._listing("/finance/agreements", conditions=ACTIVE_AGREEMENTS):
            yield parse_agreement(raw)

    def lines(self, agreement: PsaAgreement) -> Iterator[PsaLine | LineProblem]:
        for raw in self._listing(f"/finance/agreements/{agreement.id}/additions"):
            yield parse_addition(raw, agreement.id, agreement.company_id)

    def read_line(self, ref: LineRef) -> PsaLine:
        try:
            response = self._get(_addition_path(ref))
        except VendorApiError as exc:
            if exc.status == 404:
                raise LineGoneError(f"ConnectWise addition {ref} no longer exists", ref=ref) from None
            raise
        return _line_or_raise(parse_addition(parse_json_exact(response.body), ref.agreement_id))

    def set_quantity(self, ref: LineRef, quantity: Decimal) -> PsaLine:
        body = patch_quantity(quantity)
        path = _addition_path(ref)
        url = f"{self.api_base}{path}"
        for attempt in range(1, WRITE_429_ATTEMPTS + 1):
            try:
                response = self._writes.request(
                    "PATCH",
                    url,
                    json_body=body,
                    headers=self._headers(),
                    auth=self.connection.basic_auth(),
                    retry_statuses=frozenset(),
                )
            except VendorApiError as exc:
                raise WriteOutcomeUnknownError(
                    f"ConnectWise PATCH {path}: no answer ({exc}); re-read before writing again", ref=ref
                ) from None
            if response.status == 429 and attempt < WRITE_429_ATTEMPTS:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                wait = min(wait if wait is not None else self._retry.backoff(attempt), self._retry.backoff_cap * 3)
                self.limiter.hold(wait)
                continue
            if response.status >= 500:
                raise WriteOutcomeUnknownError(
                    f"ConnectWise PATCH {path} answered HTTP {response.status}; re-read before writing again",
                    ref=ref,
                    status=response.status,
                )
            if response.status == 404:
                raise LineGoneError(f"ConnectWise addition {ref} no longer exists", ref=ref)
            self._raise_for(response, f"PATCH {path}")
            return _line_or_raise(parse_addition(parse_json_exact(response.body), ref.agreement_id))
        raise VendorApiError(f"ConnectWise PATCH {path}: still throttled (HTTP 429) after {attempt} tries", status=429)

    def describe_write(self, ref: LineRef, quantity: Decimal) -> WriteRequest:
        return WriteRequest("PATCH", _addition_path(ref), json.dumps(patch_quantity(quantity)))

    # --- beyond the contract -----------------------------------------------------------------------------
    def catalog_identifiers(self, identifiers: Iterable[str]) -> set[str]:
        """Which of `identifiers` the catalogue holds, compared exactly as stored (conditions may match any case)."""
        wanted = sorted(set(identifiers))
        found: set[str] = set()
        for start in range(0, len(wanted), CATALOG_BATCH):
            batch = wanted[start : start + CATALOG_BATCH]
            for raw in self._listing("/procurement/catalog", conditions=any_of("identifier", batch)):
                value = raw.get("identifier") if isinstance(raw, dict) else None
                if isinstance(value, str) and value in batch:
                    found.add(value)
        return found

    def audit_trail(self, agreement_id: int) -> list[dict[str, str]]:
        """The agreement's audit trail entries (text, enteredDate, enteredBy), as ConnectWise shows them."""
        params = {"type": "Agreement", "id": str(agreement_id), "pageSize": str(self.page_size)}
        entries = parse_list(parse_json_exact(self._get("/system/audittrail", params=params).body), "audit trail")
        keys = ("text", "enteredDate", "enteredBy")
        return [{k: clip(str(e.get(k, ""))) for k in keys} for e in entries if isinstance(e, dict)]


def _addition_path(ref: LineRef) -> str:
    return f"/finance/agreements/{int(ref.agreement_id)}/additions/{int(ref.line_id)}"


def _line_or_raise(item: PsaLine | LineProblem) -> PsaLine:
    if isinstance(item, LineProblem):
        raise VendorDataError(f"ConnectWise addition {item.ref}: {item.reason}")
    return item


def _said(response: HttpResponse) -> str:
    try:
        return vendor_message(parse_json_exact(response.body))
    except VendorDataError:
        return clip(response.snippet(120)) if response.body.strip() else ""

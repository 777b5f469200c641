"""Microsoft 365 transport: the account's secret fields, a token per tenant, Graph calls, paging and pacing."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from usagewatch.errors import ConfigError, VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, HttpResponse, is_loopback, validate_base_url
from usagewatch.pacing import RateLimiter
from usagewatch.sources.base import AccountConfig
from usagewatch.sources.microsoft365.mapping import GUID_RE, GraphPage, parse_page
from usagewatch.text import clip

DEFAULT_AUTHORITY: Final = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL: Final = "https://graph.microsoft.com"
GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
CUSTOMERS_PATH: Final = "/v1.0/tenantRelationships/delegatedAdminCustomers"
SKUS_PATH: Final = "/v1.0/subscribedSkus"
# Renew a token this long before Entra says it expires (its tokens live 60-90 minutes).
TOKEN_RENEW_MARGIN_SECONDS: Final = 300.0
DEFAULT_TOKEN_TTL_SECONDS: Final = 3599.0

SKUS_PERMISSION: Final = "LicenseAssignment.Read.All"
LISTING_PERMISSION: Final = "DelegatedAdminRelationship.Read.All"
GDAP_ROLE: Final = "Cloud Application Administrator"
READ_ROLES: Final = "Global Reader or Directory Readers"

# Entra (AADSTS) error codes of a token request, by what they mean for us.
BAD_CREDENTIAL_CODES: Final = frozenset({7000215, 7000222, 7000216, 700027, 700023, 7000112})
NO_CONSENT_CODES: Final = frozenset({700016, 65001, 650051, 650052, 500011, 50194})
NO_TENANT_CODES: Final = frozenset({90002, 90033, 900023, 50059, 500021})

NO_CONSENT: Final = (
    "the app (client_id {client_id}) has no admin consent in this tenant: grant it the application permission "
    f"{SKUS_PERMISSION} and consent in the customer tenant (a partner user with the GDAP role {GDAP_ROLE} can, "
    "for the customer). Entra said: {said}"
)
SKUS_DENIED: Final = (
    f"the app lacks the application permission {SKUS_PERMISSION} (or Organization.Read.All) with admin consent in "
    f"this customer tenant: add it and consent again (GDAP role {GDAP_ROLE}). Graph said: {{said}}"
)
LISTING_DENIED: Final = (
    f"the app lacks the application permission {LISTING_PERMISSION} with admin consent in the partner tenant, "
    "so the GDAP customers cannot be listed. Graph said: {said}"
)

_DOMAIN_RE: Final = re.compile(r"^(?=.{4,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
MAX_TENANTS: Final = 10_000


def tenant_key(value: object) -> str:
    """A tenant as Entra names it: its id (a GUID) or one of its verified domains; lower-cased."""
    if not isinstance(value, str):
        raise ValueError(f"a tenant must be a tenant id or domain name, got {type(value).__name__}")
    text = value.strip()
    if not (GUID_RE.fullmatch(text) or _DOMAIN_RE.fullmatch(text)):
        raise ValueError(f"{text[:60]!r} is neither a tenant id (GUID) nor a domain name (contoso.onmicrosoft.com)")
    return text.lower()


class Microsoft365Account(AccountConfig):
    """One partner (CSP) tenant's multi-tenant app registration, with application permissions consented in the
    partner tenant (the listing) and in each customer tenant (subscribedSkus)."""

    partner_tenant_id: str = Field(min_length=1, max_length=253)
    client_id: str = Field(min_length=1, max_length=64)
    client_secret: SecretStr = Field(min_length=1)
    authority: str = DEFAULT_AUTHORITY
    graph_url: str = DEFAULT_GRAPH_URL
    tenants: list[str] | None = Field(default=None, max_length=MAX_TENANTS)
    tenants_mode: Literal["replace", "restrict"] = "restrict"
    concurrency: int = Field(default=8, ge=1, le=16)
    requests_per_second: float = Field(default=10.0, gt=0, le=100)
    page_size: int = Field(default=100, ge=1, le=300)
    max_pages: int = Field(default=100, ge=1, le=10_000)
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)

    @field_validator("partner_tenant_id")
    @classmethod
    def _check_partner(cls, value: str) -> str:
        return tenant_key(value)

    @field_validator("client_id")
    @classmethod
    def _check_client_id(cls, value: str) -> str:
        if not GUID_RE.fullmatch(value):
            raise ValueError("expected the app's Application (client) ID, a GUID")
        return value.lower()

    @field_validator("authority", "graph_url")
    @classmethod
    def _check_url(cls, value: str, info: Any) -> str:
        try:
            return validate_base_url(value, field=info.field_name)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix(f"{info.field_name}: ")) from exc

    @field_validator("tenants", mode="before")
    @classmethod
    def _check_tenants(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError('expected a list of tenant ids or domain names, e.g. ["contoso.onmicrosoft.com"]')
        keys = list(dict.fromkeys(tenant_key(item) for item in value))
        if not keys:
            raise ValueError("list at least one tenant, or leave tenants out to collect every GDAP customer")
        return keys

    @model_validator(mode="after")
    def _check_mode(self) -> Microsoft365Account:
        if self.tenants is None and "tenants_mode" in self.model_fields_set:
            raise ValueError("tenants_mode applies only with a tenants list")
        return self

    @property
    def scope(self) -> str:
        """`{graph_url}/.default` (a national cloud's Graph), the global Graph's for a loopback simulator."""
        host = urlsplit(self.graph_url).hostname or ""
        return GRAPH_SCOPE if is_loopback(host) else f"{self.graph_url}/.default"


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _json_object(response: HttpResponse) -> dict[str, Any]:
    try:
        payload = response.json()
    except VendorDataError:
        return {}
    return payload if isinstance(payload, dict) else {}


def entra_error(response: HttpResponse) -> tuple[str, set[int]]:
    """What Entra said to a token request: its `error` and the first sentence of `error_description`
    (`AADSTS700016: Application with identifier ... was not found in the directory ...`), and `error_codes`."""
    payload = _json_object(response)
    codes = {c for c in payload.get("error_codes") or [] if isinstance(c, int) and not isinstance(c, bool)}
    error = payload.get("error") if isinstance(payload.get("error"), str) else ""
    description = payload.get("error_description")
    first = description.strip().splitlines()[0] if isinstance(description, str) and description.strip() else ""
    first = first.split(". ", 1)[0].rstrip(".")  # the first sentence: the rest is advice, trace and correlation ids
    match = re.match(r"AADSTS(\d+)", first)
    if match:
        codes.add(int(match.group(1)))
    said = ": ".join(part for part in (error, first) if part)
    return clip(said or f"HTTP {response.status}", 200), codes


def graph_error(response: HttpResponse) -> tuple[str, str]:
    """A Graph error body `{"error": {"code", "message"}}`: `code: message` and the code alone."""
    payload = _json_object(response)
    error = payload.get("error")
    if isinstance(error, dict):
        code, message = (error.get(key) for key in ("code", "message"))
        code = code if isinstance(code, str) else ""
        message = message if isinstance(message, str) else ""
        said = ": ".join(part for part in (code, message) if part)
        return clip(said or f"HTTP {response.status}", 200), code
    return f"HTTP {response.status}", ""


class TenantRefusedError(VendorAuthError):
    """This tenant refused us (no consent, no permission, unknown tenant): the other tenants go on."""


@dataclass
class _Token:
    value: str
    renew_at: float


class TokenCache:
    """A bearer token per (authority, app, tenant), kept by the source across runs of a warm container and
    renewed shortly before it expires or when Graph refuses it."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._locks: dict[tuple[str, str, str], threading.Lock] = {}
        self.issued = 0

    def token(self, client: HttpClient, account: Microsoft365Account, tenant: str, pacer: RateLimiter) -> str:
        key = (account.authority, account.client_id, tenant)
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached is not None and self._clock() < cached.renew_at:
                return cached.value
            fresh = self._fetch(client, account, tenant, pacer)
            self._tokens[key] = fresh
            return fresh.value

    def forget(self, account: Microsoft365Account, tenant: str, stale: str) -> None:
        key = (account.authority, account.client_id, tenant)
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.value == stale:
                del self._tokens[key]

    def _fetch(self, client: HttpClient, account: Microsoft365Account, tenant: str, pacer: RateLimiter) -> _Token:
        response = client.request(
            "POST",
            f"{account.authority}/{tenant}/oauth2/v2.0/token",
            form={
                "grant_type": "client_credentials",
                "client_id": account.client_id,
                "client_secret": account.client_secret.get_secret_value(),
                "scope": account.scope,
            },
            headers={"Accept": "application/json"},
            parse_json=True,
            limiter=pacer,
        )
        if response.status != 200:
            raise token_refusal(response, account, tenant)
        payload = _json_object(response)
        value = payload.get("access_token")
        if not isinstance(value, str) or not value.strip():
            raise VendorDataError(f"Entra token response for tenant {tenant} has no access_token")
        # Not registered with the redactor: one token per tenant would make it recompile its patterns for
        # every tenant (200 registrations took 97 s). A token only travels in the Authorization header, which
        # every scrub masks, and `clip` masks anything shaped like a JWT in what this source says.
        value = value.strip()
        expires_in = payload.get("expires_in")
        if isinstance(expires_in, str) and expires_in.strip().isdigit():
            expires_in = int(expires_in)  # Entra's v1 endpoint sends it as a string
        ttl = (
            float(expires_in)
            if isinstance(expires_in, int | float) and _positive(expires_in)
            else DEFAULT_TOKEN_TTL_SECONDS
        )
        with self._lock:
            self.issued += 1
        return _Token(value, self._clock() + max(ttl - TOKEN_RENEW_MARGIN_SECONDS, ttl / 2))


def token_refusal(response: HttpResponse, account: Microsoft365Account, tenant: str) -> VendorApiError:
    """The error a refused token request means: the credential (every tenant), or this tenant alone."""
    said, codes = entra_error(response)
    status = response.status
    if codes & BAD_CREDENTIAL_CODES or (status == 401 and not codes & (NO_CONSENT_CODES | NO_TENANT_CODES)):
        return VendorAuthError(
            f"Entra refused the app's client credentials ({said}): check client_id and client_secret "
            "(a secret expires: make a new one under Certificates & secrets)",
            status=status,
        )
    if codes & NO_CONSENT_CODES:
        return TenantRefusedError(NO_CONSENT.format(client_id=account.client_id, said=said), status=status)
    if codes & NO_TENANT_CODES:
        return TenantRefusedError(f"Entra does not know tenant {tenant} ({said})", status=status)
    if status in (400, 403):
        return TenantRefusedError(f"Entra refused a token for tenant {tenant} ({said})", status=status)
    return VendorApiError(f"Entra token request for tenant {tenant} answered HTTP {status} ({said})", status=status)


class GraphSession:
    """One account's run: the HTTP client, a pacer per tenant (Graph throttles per app and tenant)."""

    def __init__(
        self,
        client: HttpClient,
        account: Microsoft365Account,
        tokens: TokenCache,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.client = client
        self.account = account
        self.tokens = tokens
        self._clock = clock
        self._sleep = sleep
        self._pacers: dict[str, RateLimiter] = {}
        self._lock = threading.Lock()

    def pacer(self, tenant: str) -> RateLimiter:
        with self._lock:
            pacer = self._pacers.get(tenant)
            if pacer is None:
                pacer = self._pacers[tenant] = RateLimiter(
                    self.account.requests_per_second, burst=2, clock=self._clock, sleep=self._sleep
                )
            return pacer

    def get(self, tenant: str, url: str, params: dict[str, str] | None = None) -> HttpResponse:
        """One Graph GET as `tenant`'s app token; a 401 gets one fresh token and one more try."""
        pacer = self.pacer(tenant)
        token = self.tokens.token(self.client, self.account, tenant, pacer)
        for attempt in (1, 2):
            response = self.client.request(
                "GET",
                url,
                params=params,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                parse_json=True,
                limiter=pacer,
            )
            if response.status != 401 or attempt == 2:
                return response
            self.tokens.forget(self.account, tenant, token)
            token = self.tokens.token(self.client, self.account, tenant, pacer)
        return response  # pragma: no cover - the loop returns

    def pages(
        self, tenant: str, path: str, params: dict[str, str] | None, *, what: str, customer: bool
    ) -> Iterator[GraphPage]:
        """Every page of a Graph collection, following `@odata.nextLink` (only within graph_url), at most
        `max_pages`. Raises on the first page that fails (status mapping is the caller's, via `refused`)."""
        url: str | None = path
        number = 0
        while url is not None:
            number += 1
            if number > self.account.max_pages:
                raise VendorDataError(
                    f"{what} did not end after {self.account.max_pages} pages; raise max_pages if it is that long"
                )
            response = self.get(tenant, url, params if number == 1 else None)
            if response.status != 200:
                raise self.refused(response, what, customer=customer)
            page = parse_page(response.json(), what=f"{what} page {number}")
            if page.next_link is not None and not page.next_link.startswith(f"{self.account.graph_url}/"):
                raise VendorDataError(f"{what} page {number}: @odata.nextLink leaves graph_url; not followed")
            url = page.next_link
            yield page

    def refused(self, response: HttpResponse, what: str, *, customer: bool) -> VendorApiError:
        """A customer's 401/403 fails that tenant alone; the partner's listing refused fails the account."""
        said, _code = graph_error(response)
        status = response.status
        if status in (401, 403) and customer:
            return TenantRefusedError(SKUS_DENIED.format(said=said), status=status)
        if status in (401, 403):
            return VendorAuthError(LISTING_DENIED.format(said=said), status=status)
        return VendorApiError(f"Graph {what} answered HTTP {status} ({said})", status=status, retryable=status >= 500)

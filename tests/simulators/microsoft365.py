"""Microsoft identity platform and Microsoft Graph simulator: tokens, GDAP customers, subscribed SKUs.

Speaks what Microsoft documents, the shapes checked against Microsoft's own Graph SDK models by
tests/integration/test_microsoft365_contract.py:

- `POST /{tenant}/oauth2/v2.0/token` (client credentials, form-encoded, scope `https://graph.microsoft.com/.default`),
  the tenant by id or by one of its domains. Errors are Entra's JSON bodies (`error`, `error_description` starting
  `AADSTSnnnn:`, `error_codes`, `trace_id`, `correlation_id`, `error_uri`): AADSTS7000215 (401 invalid_client) for a
  wrong secret, AADSTS700016 (400 unauthorized_client) for a tenant where the app was never consented, AADSTS65001
  (400 invalid_grant) for consent withdrawn, AADSTS90002 (400 invalid_request) for an unknown tenant,
  AADSTS70011 (400 invalid_scope) for another scope.
- `GET /v1.0/tenantRelationships/delegatedAdminCustomers` with the partner tenant's token: `$top` (at most 300,
  default `page_cap`), `@odata.nextLink` carrying a `$skiptoken`; 403 Authorization_RequestDenied without
  DelegatedAdminRelationship.Read.All.
- `GET /v1.0/subscribedSkus`: the SKUs of the tenant the token was issued for (one page; `page_cap` splits it with
  `@odata.nextLink` when a test wants paging); 403 Authorization_RequestDenied without LicenseAssignment.Read.All.
- Bearer tokens that expire (`token_ttl`): 401 InvalidAuthenticationToken after.
- Throttling per app and tenant: more than `tenant_rps` Graph requests of one tenant within a second get 429
  TooManyRequests with `Retry-After` (`retry_after` seconds).

    with Microsoft365Simulator(partner=PARTNER, customers=make_customers(50)) as sim:
        account = {"account_id": "m365", "partner_tenant_id": PARTNER, "client_id": CLIENT_ID,
                   "client_secret": "demo-secret", "authority": sim.url, "graph_url": sim.url}
"""

from __future__ import annotations

import base64
import random
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from tests.simulators.base import SimRequest, SimResponse, Simulator

CUSTOMERS_PATH: Final = "/v1.0/tenantRelationships/delegatedAdminCustomers"
SKUS_PATH: Final = "/v1.0/subscribedSkus"
GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
PARTNER: Final = "5f1c8d2e-0a4b-4c6d-8e9f-a1b2c3d4e5f6"
CLIENT_ID: Final = "2b7e4f10-3c5d-4e6f-8a9b-0c1d2e3f4a5b"
CLIENT_SECRET: Final = "demo-secret~m365"

# Real SKUs (skuPartNumber, skuId) from Microsoft's "Product names and service plan identifiers for licensing".
CATALOGUE: Final = (
    ("SPB", "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46"),
    ("O365_BUSINESS_PREMIUM", "f245ecc8-75af-4f8e-b61f-27d8114de5f3"),
    ("O365_BUSINESS_ESSENTIALS", "3b555118-da6a-4418-894f-7df1e2096870"),
    ("ENTERPRISEPACK", "6fd2c87f-b296-42f0-b197-1e91e994b900"),
    ("SPE_E3", "05e9a617-0261-4cee-bb44-138d3ef5d965"),
    ("SPE_E5", "06ebc4ee-1bb5-47dd-8120-11324bc54e06"),
    ("EMS", "efccb6f7-5641-4e0e-bd10-b4976e1bf68e"),
    ("EXCHANGESTANDARD", "4b9405b0-7788-4568-add1-99614e613b69"),
    ("POWER_BI_STANDARD", "a403ebcc-fae0-4ca2-8c8c-7a907fd6c235"),
    ("FLOW_FREE", "f30db892-07e9-47e9-837c-80727f46fd3d"),
    ("Microsoft_365_Copilot", "639dec6b-bb19-468b-871c-c5c441c4b0cb"),
    ("TEAMS_EXPLORATORY", "710779e8-3d4a-4c88-adb9-386c958d1fdf"),
)
_PLANS: Final = (
    ("EXCHANGE_S_ENTERPRISE", "efb87545-963c-4e0d-99df-69c6916d9eb0"),
    ("SHAREPOINTENTERPRISE", "5dbe027f-2339-4123-9542-606e4d348a72"),
    ("TEAMS1", "57ff2da0-773e-42df-b2af-ffb7a2317929"),
)
_NAMES: Final = (
    "Contoso",
    "Fabrikam",
    "Northwind Traders",
    "Tailspin Toys",
    "Woodgrove Bank",
    "Adatum",
    "Litware",
    "Proseware",
    "Wingtip Toys",
    "Alpine Ski House",
    "Müller & Söhne",
    "Café Crème Holdings",
)


def sku(
    part: str,
    sku_id: str,
    *,
    tenant_id: str,
    consumed: int,
    enabled: int,
    suspended: int = 0,
    warning: int = 0,
    locked_out: int = 0,
    status: str = "Enabled",
    applies_to: str = "User",
) -> dict[str, Any]:
    """One subscribedSku as Graph v1.0 returns it."""
    return {
        "accountId": tenant_id,
        "accountName": tenant_id.split("-", maxsplit=1)[0],
        "appliesTo": applies_to,
        "capabilityStatus": status,
        "consumedUnits": consumed,
        "id": f"{tenant_id}_{sku_id}",
        "prepaidUnits": {"enabled": enabled, "suspended": suspended, "warning": warning, "lockedOut": locked_out},
        "servicePlans": [
            {"servicePlanId": plan_id, "servicePlanName": plan, "provisioningStatus": "Success", "appliesTo": "User"}
            for plan, plan_id in _PLANS
        ],
        "skuId": sku_id,
        "skuPartNumber": part,
        "subscriptionIds": [str(uuid.UUID(int=int(sku_id.replace("-", ""), 16) ^ int(tenant_id.replace("-", ""), 16)))],
    }


@dataclass
class Customer:
    """A GDAP customer tenant. `consent`: "granted", "never" (AADSTS700016) or "withdrawn" (AADSTS65001);
    `can_read_skus`: the consented permissions include LicenseAssignment.Read.All (else Graph answers 403)."""

    tenant_id: str
    display_name: str
    skus: list[dict[str, Any]]
    domain: str = ""
    consent: str = "granted"
    can_read_skus: bool = True
    listed: bool = True

    def __post_init__(self) -> None:
        if not self.domain:
            slug = "".join(c for c in self.display_name.lower() if c.isascii() and c.isalnum())[:20] or "tenant"
            self.domain = f"{slug}{self.tenant_id[:4]}.onmicrosoft.com"


def make_customers(n: int, *, seed: int = 7, unused: int = 0, over: int = 0) -> list[Customer]:
    """`n` customers with 1-4 SKUs each. The first `unused` customers hold Business Premium seats nobody uses
    (enabled 10, consumed 7); the next `over` hold more consumed than enabled (seats gone to warning)."""
    rng = random.Random(seed)
    customers = []
    for i in range(n):
        tenant_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"{_NAMES[i % len(_NAMES)]}{'' if i < len(_NAMES) else f' {i // len(_NAMES) + 1}'}"
        picks = rng.sample(CATALOGUE[1:], rng.randint(0, 3))
        skus = [sku("SPB", CATALOGUE[0][1], tenant_id=tenant_id, consumed=e, enabled=e) for e in [rng.randint(5, 60)]]
        if i < unused:
            skus[0] = sku("SPB", CATALOGUE[0][1], tenant_id=tenant_id, consumed=7, enabled=10)
        elif i < unused + over:
            skus[0] = sku(
                "SPB", CATALOGUE[0][1], tenant_id=tenant_id, consumed=12, enabled=10, warning=2, status="Warning"
            )
        for part, sku_id in picks:
            enabled = 10_000 if part in ("FLOW_FREE", "TEAMS_EXPLORATORY") else rng.randint(1, 40)
            skus.append(
                sku(
                    part,
                    sku_id,
                    tenant_id=tenant_id,
                    consumed=rng.randint(0, enabled),
                    enabled=enabled,
                    applies_to="Company" if part == "FLOW_FREE" else "User",
                )
            )
        customers.append(Customer(tenant_id, name, skus))
    return customers


def entra_error(status: int, error: str, code: int, text: str) -> SimResponse:
    """An Entra token error as the identity platform sends it."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return SimResponse(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
            f"Timestamp: {now}",
            "error_codes": [code],
            "timestamp": now,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={code}",
        },
    )


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> SimResponse:
    return SimResponse(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": str(uuid.uuid4()),
                    "client-request-id": str(uuid.uuid4()),
                },
            }
        },
        headers or {},
    )


@dataclass
class _Issued:
    tenant_id: str
    expires_at: float


@dataclass
class Microsoft365Simulator(Simulator):
    """Entra's token endpoint and Graph on one loopback port (point both `authority` and `graph_url` at `url`)."""

    partner: str = PARTNER
    customers: list[Customer] = field(default_factory=list)
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    partner_can_list: bool = True
    page_cap: int = 100
    sku_page_cap: int | None = None
    token_ttl: int = 3599
    tenant_rps: int | None = None
    retry_after: float = 1.0
    graph_latency: float = 0.0
    latency: float = 0.0
    clock: Callable[[], float] = time.monotonic  # the throttle window's and the tokens' time

    def __post_init__(self) -> None:
        super().__init__(latency=self.latency)
        self._state = threading.Lock()
        self._tokens: dict[str, _Issued] = {}
        self._recent: dict[str, deque[float]] = {}
        self.tokens_issued: dict[str, int] = {}
        self.throttled: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0

    # --- lookups ----------------------------------------------------------------------------------
    def customer(self, key: str) -> Customer | None:
        key = key.lower()
        return next((c for c in self.customers if key in (c.tenant_id, c.domain.lower())), None)

    def tenant_of(self, request: SimRequest) -> str | None:
        """The tenant whose token a Graph request carries (None: no valid token)."""
        header = request.header("Authorization") or ""
        with self._state:
            issued = self._tokens.get(header.removeprefix("Bearer ").strip())
        return issued.tenant_id if issued is not None else None

    def expire_tokens(self) -> None:
        with self._state:
            for issued in self._tokens.values():
                issued.expires_at = 0.0

    # --- the protocol -----------------------------------------------------------------------------
    def handle(self, request: SimRequest) -> SimResponse:
        if request.path.endswith("/oauth2/v2.0/token"):
            return self._token(request, request.path.split("/")[1])
        if request.path in (CUSTOMERS_PATH, SKUS_PATH):
            return self._graph(request)
        return graph_error(
            400, "BadRequest", f"Resource not found for the segment '{request.path.rsplit('/', 1)[-1]}'."
        )

    def _token(self, request: SimRequest, tenant: str) -> SimResponse:
        if request.method != "POST":
            return entra_error(400, "invalid_request", 900561, "The endpoint only accepts POST requests.")
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        partner = tenant.lower() == self.partner
        customer = None if partner else self.customer(tenant)
        if not partner and customer is None:
            return entra_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        if form.get("client_id") != self.client_id:
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory '{tenant}'.",
            )
        if form.get("client_secret") != self.client_secret:
            return entra_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the "
                "request is the client secret value, not the client secret ID, for a secret added to app "
                f"'{self.client_id}'.",
            )
        if form.get("scope") != GRAPH_SCOPE:
            return entra_error(
                400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is not valid."
            )
        if customer is not None and customer.consent == "never":
            return entra_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{self.client_id}' was not found in "
                f"the directory '{customer.display_name}'. This can happen if the application has not been installed "
                "by the administrator of the tenant or consented to by any user in the tenant. You may have sent your "
                "authentication request to the wrong tenant.",
            )
        if customer is not None and customer.consent == "withdrawn":
            return entra_error(
                400,
                "invalid_grant",
                65001,
                "The user or administrator has not consented to use the application with "
                f"ID '{self.client_id}'. Send an interactive authorization request for this user and resource.",
            )
        tenant_id = self.partner if customer is None else customer.tenant_id
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(24)
        with self._state:
            self._tokens[token] = _Issued(tenant_id, self.clock() + self.token_ttl)
            self.tokens_issued[tenant_id] = self.tokens_issued.get(tenant_id, 0) + 1
        return SimResponse(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_ttl,
                "ext_expires_in": self.token_ttl,
                "access_token": token,
            },
        )

    def _throttled(self, tenant_id: str) -> SimResponse | None:
        if self.tenant_rps is None:
            return None
        now = self.clock()
        with self._state:
            recent = self._recent.setdefault(tenant_id, deque())
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            if len(recent) >= self.tenant_rps:
                self.throttled[tenant_id] = self.throttled.get(tenant_id, 0) + 1
                throttle = True
            else:
                recent.append(now)
                throttle = False
        if not throttle:
            return None
        return graph_error(
            429,
            "TooManyRequests",
            "Too many requests. Retry after some time.",
            {"Retry-After": f"{self.retry_after:g}"},
        )

    def _graph(self, request: SimRequest) -> SimResponse:
        header = request.header("Authorization") or ""
        with self._state:
            issued = self._tokens.get(header.removeprefix("Bearer ").strip())
        if issued is None:
            return graph_error(401, "InvalidAuthenticationToken", "IDX14100: JWT is not well formed.")
        if self.clock() >= issued.expires_at:
            return graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        throttled = self._throttled(issued.tenant_id)
        if throttled is not None:
            return throttled
        if request.path == CUSTOMERS_PATH:
            return self._customers(request, issued.tenant_id)
        return self._skus(request, issued.tenant_id)

    def _offset(self, request: SimRequest) -> int:
        token = request.query.get("$skiptoken", [""])[0]
        try:
            return int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            return -1

    def _link(self, path: str, top: int, offset: int) -> str:
        skip = base64.urlsafe_b64encode(str(offset).encode()).decode()
        return f"{self.url}{path}?$top={top}&$skiptoken={skip}"

    def _customers(self, request: SimRequest, tenant_id: str) -> SimResponse:
        if tenant_id != self.partner or not self.partner_can_list:
            return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        raw_top = request.query.get("$top", [str(self.page_cap)])[0]
        if not raw_top.isdigit() or not 1 <= int(raw_top) <= 300:
            return graph_error(400, "BadRequest", "Invalid $top value: it must be between 1 and 300.")
        top = min(int(raw_top), self.page_cap)
        offset = self._offset(request)
        if offset < 0:
            return graph_error(400, "BadRequest", "The $skiptoken is invalid.")
        listed = [c for c in self.customers if c.listed]
        rows = [
            {
                "@odata.type": "#microsoft.graph.delegatedAdminCustomer",
                "@odata.etag": f'W/"{c.tenant_id[:8]}"',
                "id": c.tenant_id,
                "tenantId": c.tenant_id,
                "displayName": c.display_name,
            }
            for c in listed[offset : offset + top]
        ]
        body: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#tenantRelationships/delegatedAdminCustomers",
            "value": rows,
        }
        if offset + top < len(listed):
            body["@odata.nextLink"] = self._link(CUSTOMERS_PATH, int(raw_top), offset + top)
        return SimResponse(200, body)

    def _skus(self, request: SimRequest, tenant_id: str) -> SimResponse:
        customer = self.customer(tenant_id)
        if customer is not None and not customer.can_read_skus:
            return graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        with self._state:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.graph_latency:
                time.sleep(self.graph_latency)
            skus = customer.skus if customer is not None else []
            offset = self._offset(request)
            cap = self.sku_page_cap or max(1, len(skus))
            body: dict[str, Any] = {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
                "value": skus[offset : offset + cap],
            }
            if self.sku_page_cap is not None and offset + cap < len(skus):
                body["@odata.nextLink"] = self._link(SKUS_PATH, cap, offset + cap)
            return SimResponse(200, body)
        finally:
            with self._state:
                self.in_flight -= 1

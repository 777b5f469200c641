"""Microsoft 365 (Microsoft Graph through GDAP): each customer tenant's subscribed SKUs (docs/vendors/microsoft365.md).

Protocol: the partner's multi-tenant app gets an OAuth2 client-credentials token per tenant from
`{authority}/{tenantId}/oauth2/v2.0/token` (scope `https://graph.microsoft.com/.default`), reused until shortly
before it expires. With the partner tenant's token, `GET /v1.0/tenantRelationships/delegatedAdminCustomers`
lists the customers (`@odata.nextLink` followed, bounded pages), unless the secret's `tenants` replace it (or
restrict it to some of them). With each customer's own token, `GET /v1.0/subscribedSkus` gives that tenant's
SKUs: one record per SKU, metric from `skuPartNumber`, value `consumedUnits`, quota `prepaidUnits.enabled`, the
other prepaid states and the SKU's status as attributes. The numbers are the state now, stamped on the UTC
calendar month of the run.

Tenants are read concurrently (`concurrency` threads), each paced on its own (Graph throttles per app and
tenant), with 429 `Retry-After` honoured by the HTTP client. A customer that refuses the app (no consent, no
permission: AADSTS errors, Graph 401/403) fails alone; a refused credential or listing fails the account.

Modules: `api` (account model, tokens, Graph calls and paging, error wording), `mapping` (pure: pages, customer
rows, SKUs -> records, metric names), `source` (Microsoft365Source: the plan of tenants, the thread pool).

MSAL for Python is not used (docs/vendors/microsoft365.md, "Why not MSAL"): it refuses an `http://` authority,
so it cannot reach a loopback simulator without a TLS set-up, and it would add `cryptography` and PyJWT to the
Lambda layer for a form POST and a cached token.
"""

from usagewatch.sources.microsoft365.api import (
    CUSTOMERS_PATH,
    DEFAULT_AUTHORITY,
    DEFAULT_GRAPH_URL,
    GRAPH_SCOPE,
    LISTING_PERMISSION,
    SKUS_PATH,
    SKUS_PERMISSION,
    TOKEN_RENEW_MARGIN_SECONDS,
    Microsoft365Account,
)
from usagewatch.sources.microsoft365.mapping import UNIT, VENDOR, base_metric, metric_names, tenant_records
from usagewatch.sources.microsoft365.source import LISTING_GAP_ID, Microsoft365Source

__all__ = [
    "CUSTOMERS_PATH",
    "DEFAULT_AUTHORITY",
    "DEFAULT_GRAPH_URL",
    "GRAPH_SCOPE",
    "LISTING_GAP_ID",
    "LISTING_PERMISSION",
    "SKUS_PATH",
    "SKUS_PERMISSION",
    "TOKEN_RENEW_MARGIN_SECONDS",
    "UNIT",
    "VENDOR",
    "Microsoft365Account",
    "Microsoft365Source",
    "base_metric",
    "metric_names",
    "tenant_records",
]

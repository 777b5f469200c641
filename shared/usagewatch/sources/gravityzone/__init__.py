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

Modules: `api` (account, JSON-RPC calls, the vendor's errors), `mapping` (pure: usage answer -> records),
`companies` (the company tree), `source` (GravityZoneSource: usage per company, continuation chunks);
the pacing itself is `usagewatch.pacing.PacedLimiter`.
"""

from usagewatch.sources.gravityzone.api import (
    AUTH_REJECTED_MESSAGE,
    DEFAULT_RATE_LIMIT_WAIT,
    FOLDERS_METHOD,
    INVENTORY_METHOD,
    INVENTORY_PAGE_SIZE,
    MAX_INVENTORY_PAGES,
    RPC_INVALID_PARAMS,
    RPC_METHOD_NOT_FOUND,
    RPC_RATE_LIMITED,
    Api,
    GravityZoneAccount,
    GravityZoneRpcError,
    RpcClient,
    is_no_licence_error,
)
from usagewatch.sources.gravityzone.companies import Company, list_companies
from usagewatch.sources.gravityzone.mapping import (
    DOCUMENTED_COUNTERS,
    MINIMUM_KEY,
    MISSPELLED_COUNTERS,
    VENDOR,
    Counters,
    is_no_licence_result,
    metric_name,
    read_counters,
    read_result,
    target_month,
    unit_for,
    usage_records,
)
from usagewatch.sources.gravityzone.source import API_DOWN_ROUNDS, MAX_CHUNK_COMPANIES, GravityZoneSource

__all__ = [
    "API_DOWN_ROUNDS",
    "AUTH_REJECTED_MESSAGE",
    "DEFAULT_RATE_LIMIT_WAIT",
    "DOCUMENTED_COUNTERS",
    "FOLDERS_METHOD",
    "INVENTORY_METHOD",
    "INVENTORY_PAGE_SIZE",
    "MAX_CHUNK_COMPANIES",
    "MAX_INVENTORY_PAGES",
    "MINIMUM_KEY",
    "MISSPELLED_COUNTERS",
    "RPC_INVALID_PARAMS",
    "RPC_METHOD_NOT_FOUND",
    "RPC_RATE_LIMITED",
    "VENDOR",
    "Api",
    "Company",
    "Counters",
    "GravityZoneAccount",
    "GravityZoneRpcError",
    "GravityZoneSource",
    "RpcClient",
    "is_no_licence_error",
    "is_no_licence_result",
    "list_companies",
    "metric_name",
    "read_counters",
    "read_result",
    "target_month",
    "unit_for",
    "usage_records",
]

"""ThousandEyes (Cisco): organisation usage for the vendor's own, current billing period.

Protocol (docs/vendors/thousandeyes.md, with its sources; field meanings from Cisco's v7 OpenAPI spec as published in
`thousandeyes-sdk-usage` / `thousandeyes-sdk-administrative`): `GET /v7/usage` with a bearer token (or the
legacy `GET /v6/usage.json` with basic auth), once per organisation: one answer already spans every account
group of that organisation. Organisations come from the secret's `aids`, or from `GET /v7/account-groups`
grouped by `orgId` (else `organizationName`). `GET /v7/quotas`, once per run, gives the cloud-unit quotas an
MSP assigned to each organisation and account group; without the permission for it collection goes on.

Tenants (docs/vendors/thousandeyes.md):
- an organisation is a billed tenant: `org-<orgId>` when the account-group list sends `orgId`, else the aid its
  usage call is made with (a configured aid, or in discovery the lowest aid, unless an identity memory
  remembers an earlier one); its name the organisation's;
- an account group is a breakdown tenant `ag-<aid>` with `parent_tenant_id` = its organisation and
  `billed=False`: its numbers are already inside the organisation's, so totals never add them.

Rate limit: 240 requests a minute per organisation. Each organisation has its own token bucket, the
`X-Organization-Rate-Limit-Remaining/-Reset` headers make the next call wait for the reset when few
requests are left, and a 429 waits for `Retry-After` or the reset before retrying.

Modules: `api` (account, auth, per-organisation pacers, status mapping), `mapping` (pure: usage answer ->
records), `organisations` (pure: account groups -> organisations, MSP quotas), `source` (ThousandEyesSource);
the pacing itself is `usagewatch.pacing.HeaderLedPacer`.
"""

from usagewatch.sources.thousandeyes.api import (
    CURRENT,
    NO_BILLING_PERMISSION,
    NO_QUOTA_PERMISSION,
    RATE_LIMIT_HEADER,
    V7_ACCEPT,
    ThousandEyesAccount,
    ThousandEyesApi,
    vendor_message,
)
from usagewatch.sources.thousandeyes.mapping import (
    BREAKDOWNS,
    GROUP_PREFIX,
    MAX_NAME,
    MSP_QUOTA_METRIC,
    ORG_METRICS,
    ORG_PREFIX,
    V7_EXPAND,
    VENDOR,
    ZERO_MEANS_NO_QUOTA,
    Breakdown,
    OrganisationQuotas,
    OrganisationUsage,
    OrgMetric,
    billing_window,
    group_tenant_id,
    map_usage,
    parse_vendor_time,
    usage_window,
)
from usagewatch.sources.thousandeyes.organisations import (
    AccountGroup,
    Organisation,
    QuotaEntry,
    organisation_tenant_id,
    parse_account_groups,
    parse_quotas,
    plan_organisations,
    quotas_for,
)
from usagewatch.sources.thousandeyes.source import (
    GROUPS_GAP_ID,
    InProcessIdentities,
    OrganisationIdentities,
    ThousandEyesSource,
)

__all__ = [
    "BREAKDOWNS",
    "CURRENT",
    "GROUPS_GAP_ID",
    "GROUP_PREFIX",
    "MAX_NAME",
    "MSP_QUOTA_METRIC",
    "NO_BILLING_PERMISSION",
    "NO_QUOTA_PERMISSION",
    "ORG_METRICS",
    "ORG_PREFIX",
    "RATE_LIMIT_HEADER",
    "V7_ACCEPT",
    "V7_EXPAND",
    "VENDOR",
    "ZERO_MEANS_NO_QUOTA",
    "AccountGroup",
    "Breakdown",
    "InProcessIdentities",
    "OrgMetric",
    "Organisation",
    "OrganisationIdentities",
    "OrganisationQuotas",
    "OrganisationUsage",
    "QuotaEntry",
    "ThousandEyesAccount",
    "ThousandEyesApi",
    "ThousandEyesSource",
    "billing_window",
    "group_tenant_id",
    "map_usage",
    "organisation_tenant_id",
    "parse_account_groups",
    "parse_quotas",
    "parse_vendor_time",
    "plan_organisations",
    "quotas_for",
    "usage_window",
    "vendor_message",
]

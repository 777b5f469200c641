"""A ThousandEyes API simulator: v7 and v6 usage, account groups across organisations, rate limits.

What it reproduces (docs/vendors/thousandeyes.md and its sources; the v7 bodies are checked against the vendor's
own OpenAPI models in `thousandeyes-sdk-usage` / `thousandeyes-sdk-administrative` by
tests/integration/test_thousandeyes_contract.py):
- `GET /v7/usage?aid=..&expand=..` (bearer only; every `UsageDetails` field, each breakdown array only
  when its `expand` option is asked for; `.json` suffix -> 404), `GET /v7/account-groups` (string aids,
  `organizationName`, `orgId`, `isCurrentAccountGroup`) and `GET /v7/quotas` (the MSP-assigned cloud-unit
  quotas of every organisation and account group; 403 for tokens without "Edit organization and
  account group quotas");
- `GET /v6/usage(.json)?aid=..` and `GET /v6/account-groups(.json)` (basic auth email:token or
  bearer; int aids, `YYYY-MM-DD HH:MM:SS` dates, breakdowns always present);
- errors: 401 `UnauthorizedError` `{error, error_description}`, 400 `ValidationError` for an aid the
  token does not belong to, 403 `Error` for tokens without View Billing, 429 `Error` when an
  organisation's window is used up, 404/405 `Error`;
- `X-Organization-Rate-Limit-Limit/-Remaining/-Reset` per organisation; a window opens at the first
  request and rolls over one minute later (Reset = its end, epoch seconds).

`make_orgs()` builds a deterministic dataset (one organisation projected over its cloud-unit quota
while still under it); `set_usage()` changes an organisation between runs.
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.simulators.base import SimRequest, SimResponse, Simulator

ORG_NAMES = ("Acme Networks", "Globex", "Initech", "Umbrella Health", "Stark Logistics", "Wayne Retail")
GROUP_NAMES = ("Production", "Branch Offices", "Lab", "Customer Edge", "Datacenter", "Cloud Apps")
TEST_TYPES = ("Web - HTTP Server", "Web - Page Load", "Network - Agent to Server", "DNS Server")

# Top-level usage fields set_usage() may change (anything else goes into `quota`, or is refused).
USAGE_FIELDS = frozenset(
    {
        "cloudUnitsUsed",
        "cloudUnitsProjected",
        "cloudUnitsNextBillingPeriod",
        "enterpriseUnitsUsed",
        "enterpriseUnitsProjected",
        "enterpriseUnitsNextBillingPeriod",
        "connectedDevicesUnitsUsed",
        "connectedDevicesUnitsProjected",
        "connectedDevicesUnitsNextBillingPeriod",
        "endpointAgentsUsed",
        "endpointAgentsEssentialsUsed",
        "endpointAgentsEmbeddedUsed",
        "enterpriseAgentsUsed",
    }
)
QUOTA_FIELDS = frozenset(
    {
        "cloudUnitsIncluded",
        "deviceAgentsIncluded",
        "endpointAgentsIncluded",
        "endpointAgentsEssentialsIncluded",
        "endpointAgentsEmbeddedIncluded",
        "enterpriseAgentsIncluded",
    }
)
# v6 predates these: its answers never carry them.
V7_ONLY_FIELDS = frozenset(
    {
        "connectedDevicesUnitsUsed",
        "connectedDevicesUnitsProjected",
        "connectedDevicesUnitsNextBillingPeriod",
        "endpointAgentsEssentialsUsed",
        "endpointAgentsEmbeddedUsed",
        "deviceAgentsIncluded",
        "endpointAgentsEssentialsIncluded",
        "endpointAgentsEmbeddedIncluded",
    }
)
# `expand` option -> (usage array, TeOrg attribute); the spec's ExpandUsageOptions.
EXPAND_ARRAYS = {
    "test": ("tests", "tests"),
    "endpoint-agent": ("endpointAgents", "endpoint_agents"),
    "endpoint-agent-essential": ("endpointAgentsEssentials", "endpoint_agents_essentials"),
    "endpoint-agent-embedded": ("endpointAgentsEmbedded", "endpoint_agents_embedded"),
    "enterprise-agent": ("enterpriseAgents", "enterprise_agents"),
    "enterprise-agent-unit": ("enterpriseAgentUnits", "enterprise_agent_units"),
}
V6_ARRAYS = ("test", "endpoint-agent", "enterprise-agent", "enterprise-agent-unit")


@dataclass
class TeAccountGroup:
    aid: str
    name: str


@dataclass
class TeOrg:
    """One organisation: its account groups, per-group detail, totals and quota.

    `msp_quota` is the cloud-unit quota its MSP assigned to it (`/v7/quotas` organizationQuota), and
    `group_quotas` those of its account groups (aid -> value); `omit` lists fields its usage answer
    leaves out (`"quota"`, `"quota.monthStart"`, `"cloudUnitsUsed"`, ...).
    """

    name: str
    groups: list[TeAccountGroup]
    period_start: datetime
    period_end: datetime
    quota: dict[str, Any]
    totals: dict[str, Any]
    org_id: str = ""
    tests: list[dict[str, Any]] = field(default_factory=list)
    endpoint_agents: list[dict[str, Any]] = field(default_factory=list)
    endpoint_agents_essentials: list[dict[str, Any]] = field(default_factory=list)
    endpoint_agents_embedded: list[dict[str, Any]] = field(default_factory=list)
    enterprise_agents: list[dict[str, Any]] = field(default_factory=list)
    enterprise_agent_units: list[dict[str, Any]] = field(default_factory=list)
    allocations: dict[str, Any] = field(default_factory=dict)
    msp_quota: int | None = None
    group_quotas: dict[str, int] = field(default_factory=dict)
    omit: set[str] = field(default_factory=set)

    @property
    def aids(self) -> list[str]:
        return [g.aid for g in self.groups]

    @property
    def lowest_aid(self) -> str:
        return min(self.aids, key=int)


def billing_period_containing(now: datetime, *, day: int = 5, hour: int = 8) -> tuple[datetime, datetime]:
    """The vendor-style billing period (the `day`th of a month at `hour` UTC, one month long) around `now`."""
    start = now.astimezone(UTC).replace(day=day, hour=hour, minute=0, second=0, microsecond=0)
    if start > now:
        start = _add_month(start, -1)
    return start, _add_month(start, 1)


def _add_month(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return moment.replace(year=index // 12, month=index % 12 + 1)


def make_orgs(
    n_orgs: int = 2,
    groups_per_org: int = 2,
    seed: int = 5,
    over_projection: bool = True,
    *,
    period_start: datetime | None = None,
    now: datetime | None = None,
) -> list[TeOrg]:
    """Organisations with account groups, tests and agents; totals equal the sum of the breakdowns.

    aids: organisation i, group j -> `1234 + 1111*i + 17*j` (org 0: 1234, 1251; org 1: 2345, 2362).
    orgId of organisation i: `980000 + 1111*i`. With `over_projection`, organisation 0 has used ~60% of
    its cloud-unit quota and is projected to ~140% of it; the others stay well under. Every other quota
    (the contract's and the MSP-assigned ones of `/v7/quotas`) leaves room. Enterprise agents are "not part of the plan"
    (`enterpriseAgentsIncluded` = 0) in organisation 0 and included (a quota) in the others.
    Billing period: the 5th of a month 08:00 UTC to the 5th of the next (around `now`), or from
    `period_start`.
    """
    rng = random.Random(seed)
    extra = random.Random(seed + 1)  # the v7-only numbers: the older ones keep their values per seed
    if period_start is None:
        start, end = billing_period_containing(now or datetime.now(UTC))
    else:
        start, end = period_start.astimezone(UTC), _add_month(period_start.astimezone(UTC), 1)
    orgs: list[TeOrg] = []
    test_id = 1100
    for i in range(n_orgs):
        groups = [
            TeAccountGroup(
                str(1234 + 1111 * i + 17 * j), GROUP_NAMES[j % len(GROUP_NAMES)] + ("" if j < 6 else f" {j}")
            )
            for j in range(groups_per_org)
        ]
        tests: list[dict[str, Any]] = []
        endpoint: list[dict[str, Any]] = []
        enterprise: list[dict[str, Any]] = []
        units: list[dict[str, Any]] = []
        projection_factor = 2.35 if over_projection and i == 0 else 1.6
        for group in groups:
            for k in range(rng.randint(2, 4)):
                test_id += 1
                used = rng.randint(20_000, 400_000)
                tests.append(
                    {
                        "aid": group.aid,
                        "testId": str(test_id),
                        "accountGroupName": group.name,
                        "testName": f"https://app{k}.{group.name.lower().replace(' ', '-')}.example",
                        "testType": rng.choice(TEST_TYPES),
                        "cloudUnitsUsed": used,
                        "cloudUnitsProjected": round(used * projection_factor),
                    }
                )
            endpoint.append(
                {"aid": group.aid, "accountGroupName": group.name, "endpointAgentsUsed": rng.randint(3, 20)}
            )
            enterprise.append(
                {"aid": group.aid, "accountGroupName": group.name, "enterpriseAgentsUsed": rng.randint(1, 5)}
            )
            units.append(
                {
                    "aid": group.aid,
                    "agentId": str(rng.randint(100_000, 999_999)),
                    "accountGroupName": group.name,
                    "agentName": f"{group.name.lower().replace(' ', '-')}-agent",
                    "enterpriseUnitsUsed": rng.randint(100_000, 600_000),
                    "enterpriseUnitsProjected": rng.randint(600_000, 900_000),
                }
            )
        essentials = [
            {"aid": g.aid, "accountGroupName": g.name, "endpointAgentsEssentialsUsed": extra.randint(2, 12)}
            for g in groups
        ]
        embedded = [
            {"aid": g.aid, "accountGroupName": g.name, "endpointAgentsEmbeddedUsed": extra.randint(1, 6)}
            for g in groups
        ]
        cloud_used = sum(t["cloudUnitsUsed"] for t in tests)
        cloud_projected = sum(t["cloudUnitsProjected"] for t in tests)
        endpoint_used = sum(e["endpointAgentsUsed"] for e in endpoint)
        enterprise_used = sum(e["enterpriseAgentsUsed"] for e in enterprise)
        essentials_used = sum(e["endpointAgentsEssentialsUsed"] for e in essentials)
        embedded_used = sum(e["endpointAgentsEmbeddedUsed"] for e in embedded)
        devices_used = extra.randint(4, 30)
        enterprise_units_used = sum(u["enterpriseUnitsUsed"] for u in units)
        if over_projection and i == 0:
            cloud_included = math.ceil(cloud_used / 0.6 / 1000) * 1000  # used ~60%, projected ~140%
        else:
            cloud_included = math.ceil(cloud_projected * 2 / 1000) * 1000
        group_quotas = {
            g.aid: math.ceil(sum(t["cloudUnitsProjected"] for t in tests if t["aid"] == g.aid) * 1.5 / 1000) * 1000
            for g in groups
        }
        orgs.append(
            TeOrg(
                name=ORG_NAMES[i % len(ORG_NAMES)] + ("" if i < len(ORG_NAMES) else f" {i}"),
                groups=groups,
                period_start=start,
                period_end=end,
                org_id=str(980_000 + 1111 * i),
                quota={
                    "cloudUnitsIncluded": cloud_included,
                    "deviceAgentsIncluded": devices_used * 3,
                    "endpointAgentsIncluded": max(50, endpoint_used * 2),
                    "endpointAgentsEssentialsIncluded": essentials_used * 2 + 10,
                    "endpointAgentsEmbeddedIncluded": embedded_used * 2 + 5,
                    "enterpriseAgentsIncluded": 0 if i == 0 else enterprise_used + 10,
                },
                totals={
                    "cloudUnitsUsed": cloud_used,
                    "cloudUnitsProjected": cloud_projected,
                    "cloudUnitsNextBillingPeriod": round(cloud_projected * 1.05),
                    "enterpriseUnitsUsed": enterprise_units_used,
                    "enterpriseUnitsProjected": sum(u["enterpriseUnitsProjected"] for u in units),
                    "enterpriseUnitsNextBillingPeriod": round(enterprise_units_used * 1.8),
                    "connectedDevicesUnitsUsed": devices_used,
                    "connectedDevicesUnitsProjected": devices_used + extra.randint(0, 4),
                    "connectedDevicesUnitsNextBillingPeriod": devices_used + extra.randint(0, 6),
                    "endpointAgentsUsed": endpoint_used,
                    "endpointAgentsEssentialsUsed": essentials_used,
                    "endpointAgentsEmbeddedUsed": embedded_used,
                    "enterpriseAgentsUsed": enterprise_used,
                },
                tests=tests,
                endpoint_agents=endpoint,
                endpoint_agents_essentials=essentials,
                endpoint_agents_embedded=embedded,
                enterprise_agents=enterprise,
                enterprise_agent_units=units,
                allocations={
                    "used": cloud_used + enterprise_units_used,
                    "projected": cloud_projected + sum(u["enterpriseUnitsProjected"] for u in units),
                    "allocations": [
                        {"productName": "Cloud and Enterprise Agents", "allocatedUnits": cloud_included},
                        {"productName": "Device Agents", "allocatedUnits": devices_used * 3},
                    ],
                },
                msp_quota=cloud_included,
                group_quotas=group_quotas,
            )
        )
    return orgs


@dataclass
class _Window:
    started: float
    ends: float
    count: int = 0


class ThousandEyesSimulator(Simulator):
    """ThousandEyes v7 + v6 on loopback. Every valid token sees every organisation.

    Knobs: `tokens_without_billing` (valid tokens answered 403 on usage), `tokens_without_quotas` (valid
    tokens answered 403 on `/v7/quotas`), `retry_after_on_429` (send a `Retry-After` header with a 429),
    `v6_org_names` (v6 account groups carry `organizationName`), `org_ids` (v7 account groups carry the
    optional `orgId`), `rate_limit_per_minute` (per organisation), `clock` (epoch seconds: rate windows
    and Reset).
    """

    make_orgs = staticmethod(make_orgs)

    def __init__(
        self,
        *,
        token: str = "te-demo-token",
        email: str = "ops@msp.example",
        basic_token: str = "te-basic-token",
        orgs: list[TeOrg] | None = None,
        rate_limit_per_minute: int = 240,
        latency: float = 0.0,
        clock: Callable[[], float] = time.time,
        tokens_without_billing: Iterable[str] = (),
        tokens_without_quotas: Iterable[str] = (),
        retry_after_on_429: bool = False,
        v6_org_names: bool = True,
        org_ids: bool = True,
    ) -> None:
        super().__init__(latency=latency)
        self._rate_lock = threading.Lock()
        self.reset(
            token=token,
            email=email,
            basic_token=basic_token,
            orgs=orgs,
            rate_limit_per_minute=rate_limit_per_minute,
            clock=clock,
            tokens_without_billing=tokens_without_billing,
            tokens_without_quotas=tokens_without_quotas,
            retry_after_on_429=retry_after_on_429,
            v6_org_names=v6_org_names,
            org_ids=org_ids,
        )

    def reset(
        self,
        *,
        token: str = "te-demo-token",
        email: str = "ops@msp.example",
        basic_token: str = "te-basic-token",
        orgs: list[TeOrg] | None = None,
        rate_limit_per_minute: int = 240,
        clock: Callable[[], float] = time.time,
        tokens_without_billing: Iterable[str] = (),
        tokens_without_quotas: Iterable[str] = (),
        retry_after_on_429: bool = False,
        v6_org_names: bool = True,
        org_ids: bool = True,
    ) -> None:
        """Back to a fresh state (dataset, knobs, rate windows, request log, faults) without restarting
        the server: lets one running simulator serve many tests."""
        with self._lock:
            self.requests.clear()
            self.responses.clear()
            self.faults.clear()
        self.token = token
        self.email = email
        self.basic_token = basic_token
        self.clock = clock
        self.orgs: list[TeOrg] = orgs if orgs is not None else make_orgs(now=datetime.fromtimestamp(clock(), UTC))
        self.rate_limit_per_minute = rate_limit_per_minute
        self.tokens_without_billing = set(tokens_without_billing)
        self.tokens_without_quotas = set(tokens_without_quotas)
        self.retry_after_on_429 = retry_after_on_429
        self.v6_org_names = v6_org_names
        self.org_ids = org_ids
        with self._rate_lock:
            self.windows: dict[str, _Window] = {}
            self.rate_limited = 0

    # --- dataset helpers ------------------------------------------------------------------------
    def org_of(self, aid: str | int) -> TeOrg | None:
        return next((org for org in self.orgs if str(aid) in org.aids), None)

    def set_usage(self, org_aid: str | int, **fields: Any) -> TeOrg:
        """Change an organisation's totals (`cloudUnitsUsed=...`) or quota (`cloudUnitsIncluded=...`),
        its billing period (`period_start=datetime`, `period_end=datetime`), its MSP-assigned quota
        (`msp_quota=...`, None: none assigned) or the fields its answer leaves out (`omit={"quota"}`)."""
        org = self.org_of(org_aid)
        if org is None:
            raise KeyError(f"no organisation has aid {org_aid}")
        with self._lock:
            for key, value in fields.items():
                if key in USAGE_FIELDS:
                    org.totals[key] = value
                elif key in QUOTA_FIELDS:
                    org.quota[key] = value
                elif key == "period_start":
                    org.period_start = value
                    org.period_end = fields.get("period_end", _add_month(value, 1))
                elif key == "period_end":
                    org.period_end = value
                elif key == "msp_quota":
                    org.msp_quota = value
                elif key == "omit":
                    org.omit = set(value)
                elif key.startswith("raw_"):  # anything else, e.g. raw_cloudUnitsUsed="12" for a type error
                    org.totals[key.removeprefix("raw_")] = value
                else:
                    raise KeyError(f"unknown usage field {key}")
        return org

    def set_group_usage(self, aid: str, array: str, **fields: Any) -> None:
        """Change the breakdown row of account group `aid` in `array` (e.g. "endpoint_agents_essentials")
        and keep the organisation's total of that field equal to the sum of its rows."""
        org = self.org_of(aid)
        if org is None:
            raise KeyError(f"no organisation has aid {aid}")
        with self._lock:
            rows: list[dict[str, Any]] = getattr(org, array)
            row = next(r for r in rows if r["aid"] == str(aid))
            row.update(fields)
            for key in fields:
                if key in USAGE_FIELDS:
                    org.totals[key] = sum(r.get(key) or 0 for r in rows)

    def set_group_quota(self, aid: str, value: int | None) -> None:
        """The cloud-unit quota the MSP assigned to account group `aid` (None: none)."""
        org = self.org_of(aid)
        if org is None:
            raise KeyError(f"no organisation has aid {aid}")
        with self._lock:
            if value is None:
                org.group_quotas.pop(str(aid), None)
            else:
                org.group_quotas[str(aid)] = value

    def usage_requests(self) -> list[SimRequest]:
        return [r for r in self.requests if r.path.startswith(("/v7/usage", "/v6/usage"))]

    # --- rendering ------------------------------------------------------------------------------
    @staticmethod
    def _time(moment: datetime, version: str) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ" if version == "v7" else "%Y-%m-%d %H:%M:%S")

    @staticmethod
    def _ids(rows: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
        if version == "v7":
            return [dict(row) for row in rows]
        out = []
        for row in rows:
            copy = dict(row)
            for key in ("aid", "testId", "agentId"):
                if key in copy:
                    copy[key] = int(copy[key])
            out.append(copy)
        return out

    def usage_body(self, org: TeOrg, version: str, expand: set[str]) -> dict[str, Any]:
        quota = {
            "monthStart": self._time(org.period_start, version),
            "monthEnd": self._time(org.period_end, version),
            **org.quota,
        }
        usage: dict[str, Any] = {"quota": quota, **org.totals}
        for option, (key, attribute) in EXPAND_ARRAYS.items():
            if option in expand if version == "v7" else option in V6_ARRAYS:
                usage[key] = self._ids(getattr(org, attribute), version)
        if version == "v7":
            usage["allocations"] = dict(org.allocations)
        else:
            for name in V7_ONLY_FIELDS:
                usage.pop(name, None)
                quota.pop(name, None)
        for name in org.omit:
            parent, _, child = name.rpartition(".")
            (quota if parent == "quota" else usage).pop(child, None)
        if version == "v7":
            return {"usage": usage, "_links": {"self": {"href": f"{self.url}/v7/usage"}}}
        return {"usage": usage}

    def quotas_body(self) -> dict[str, Any]:
        """`/v7/quotas`: one entry per organisation (every organisation this token may edit quotas in)."""
        entries: list[dict[str, Any]] = []
        for org in self.orgs:
            entry: dict[str, Any] = {
                "accountGroupQuotas": [{"value": value, "aid": aid} for aid, value in sorted(org.group_quotas.items())]
            }
            if org.msp_quota is not None:
                entry["organizationQuota"] = {"value": org.msp_quota, "orgId": org.org_id}
            entries.append(entry)
        return {"quotas": entries, "_links": {"self": {"href": f"{self.url}/v7/quotas"}}}

    def account_groups_body(self, version: str, current_aid: str) -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        for org in self.orgs:
            for group in org.groups:
                if version == "v7":
                    v7_row: dict[str, Any] = {
                        "aid": group.aid,
                        "accountGroupName": group.name,
                        "isCurrentAccountGroup": group.aid == current_aid,
                        "isDefaultAccountGroup": group.aid == current_aid,
                        "organizationName": org.name,
                    }
                    if self.org_ids:
                        v7_row["orgId"] = org.org_id
                    rows.append(v7_row)
                else:
                    row: dict[str, Any] = {
                        "aid": int(group.aid),
                        "accountGroupName": group.name,
                        "current": int(group.aid == current_aid),
                        "default": int(group.aid == current_aid),
                    }
                    if self.v6_org_names:
                        row["organizationName"] = org.name
                    rows.append(row)
        if version == "v7":
            return {"accountGroups": rows, "_links": {"self": {"href": f"{self.url}/v7/account-groups"}}}
        return {"accountGroups": rows}

    # --- rate limiting --------------------------------------------------------------------------
    def _rate(self, org: TeOrg) -> tuple[bool, dict[str, str]]:
        """Count one request against `org`; (allowed, rate-limit headers)."""
        now = self.clock()
        key = org.lowest_aid
        with self._rate_lock:
            window = self.windows.get(key)
            if window is None or now >= window.ends:
                window = self.windows[key] = _Window(now, float(math.ceil(now + 60)))
            allowed = window.count < self.rate_limit_per_minute
            if allowed:
                window.count += 1
            else:
                self.rate_limited += 1
            headers = {
                "X-Organization-Rate-Limit-Limit": str(self.rate_limit_per_minute),
                "X-Organization-Rate-Limit-Remaining": str(max(0, self.rate_limit_per_minute - window.count)),
                "X-Organization-Rate-Limit-Reset": str(int(window.ends)),
            }
            if not allowed and self.retry_after_on_429:
                headers["Retry-After"] = str(max(1, math.ceil(window.ends - now)))
        return allowed, headers

    # --- protocol -------------------------------------------------------------------------------
    def _auth(self, request: SimRequest, version: str) -> str | None:
        """The token the request authenticated with, or None."""
        header = request.header("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        valid = {self.token, *self.tokens_without_billing, *self.tokens_without_quotas}
        if scheme.lower() == "bearer" and credential.strip() in valid:
            return credential.strip()
        if version == "v6" and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credential.strip()).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            email, _, secret = decoded.partition(":")
            if email == self.email and secret == self.basic_token:
                return secret
        return None

    @staticmethod
    def _problem(status: int, title: str, detail: str, path: str, **more: Any) -> SimResponse:
        """An RFC 7807 body: the spec's `Error` (and `ValidationError`, with `errors`, for a 400)."""
        return SimResponse(
            status,
            {
                "type": f"https://developer.cisco.com/docs/thousandeyes/errors/#{status}",
                "title": title,
                "status": status,
                "detail": detail,
                "instance": path,
                **more,
            },
            {"Content-Type": "application/problem+json"},
        )

    def handle(self, request: SimRequest) -> SimResponse:
        path = request.path
        if path.startswith("/v7/"):
            version, resource = "v7", path[4:]
            if resource.endswith((".json", ".xml")):
                return self._problem(404, "Not Found", f"No resource at {path}", path)
        elif path.startswith("/v6/"):
            version, resource = "v6", path[4:].removesuffix(".json")
        else:
            return self._problem(404, "Not Found", f"No resource at {path}", path)
        if resource not in ("usage", "account-groups") and (version, resource) != ("v7", "quotas"):
            return self._problem(404, "Not Found", f"No resource at {path}", path)
        if request.method != "GET":
            return self._problem(405, "Method Not Allowed", f"{request.method} is not allowed on {path}", path)
        token = self._auth(request, version)
        if token is None:
            return SimResponse(401, {"error": "invalid_token", "error_description": "Invalid or expired access token"})
        default_org = self.orgs[0]
        aids = request.query.get("aid") or []
        aid = aids[0] if aids else None
        org = self.org_of(aid) if aid is not None else default_org
        allowed, headers = self._rate(org or default_org)
        if not allowed:
            response = self._problem(
                429, "Too Many Requests", "Rate limit exceeded for the organization; retry after the reset.", path
            )
            response.headers.update(headers)
            return response
        if org is None:
            response = self._problem(
                400,
                "Bad Request",
                f"Invalid aid: {aid} is not an account group you belong to",
                path,
                errors=[{"code": "invalid_aid", "field": "aid", "message": "Not an account group you belong to"}],
            )
        elif resource == "account-groups":
            response = SimResponse(200, self.account_groups_body(version, org.lowest_aid))
        elif resource == "quotas":
            if token in self.tokens_without_quotas:
                response = self._forbidden(path)
            else:
                with self._lock:
                    response = SimResponse(200, self.quotas_body())
        elif token in self.tokens_without_billing:
            response = self._forbidden(path)
        else:
            expand = {part.strip() for value in request.query.get("expand", []) for part in value.split(",")}
            with self._lock:
                body = self.usage_body(org, version, expand)
            response = SimResponse(200, body)
        response.headers.update(headers)
        return response

    def _forbidden(self, path: str) -> SimResponse:
        return self._problem(403, "Forbidden", "Insufficient permissions to perform this operation", path)


__all__ = [
    "TeAccountGroup",
    "TeOrg",
    "ThousandEyesSimulator",
    "billing_period_containing",
    "make_orgs",
]

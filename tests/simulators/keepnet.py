"""Keepnet Labs Reseller REST API simulator: `/connect/token` and `/api/companies/search`.

Speaks the protocol of docs/vendors/keepnet.md the way the real API is documented to behave:
form-encoded token requests only (a JSON body gets a 500), `invalid_client` as 400, Bearer tokens that
expire, 403 for a credential that is not a Reseller, 400 `INPUT_ERROR` for a body with a missing
required field or a null filter, the month chosen by a `MonthlyActiveUser` filter item (it changes
`monthlyActiveUserCount` only: every other field is the company's value now), the over-limit verdict
filter, a server-side page size cap, either response envelope (camelCase or PascalCase), an optional
rate limit. Rows are SearchCompanyDto exactly as Keepnet's OpenAPI spec defines them (checked by
tests/integration/test_keepnet_contract.py), `children` included: companies nested under a row.

    with KeepnetSimulator(companies=make_companies(250), page_cap=40) as sim:
        account = {"account_id": "kn", "base_url": sim.url, "client_id": "demo-client", "client_secret": "demo-secret"}
"""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from tests.simulators.base import SimRequest, SimResponse, Simulator

TOKEN_PATH: Final = "/connect/token"
SEARCH_PATH: Final = "/api/companies/search"
DEFAULT_CLIENTS: Final = {"demo-client": ("demo-secret", "Reseller")}
_REQUIRED: Final = ("pageNumber", "pageSize", "orderBy", "ascending", "filter")
ENVELOPES: Final = ("status", "Status", "isSuccess")

_NAMES: Final = (
    "Acme Logistics",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Hooli Cloud",
    "Vandelay Industries",
    "Müller & Söhne",
    "Société Générale de Conseil",
    "Ørsted Marine Services",
    "Zürcher Kantonal Services",
    "São Paulo Tecnologia",
    "株式会社サクラ",
    "Κέντρο Υγείας Αθηνών",
    "Nordwind Energie",
    "Brightwater Dental",
    "Blue Harbor Insurance",
    "Pinecrest Schools",
    "Redwood Legal",
    "Oakridge Manufacturing",
    "Summit Credit Union",
    "Álvarez y Asociados",
    "Łódź Software",
    "İstanbul Lojistik",
    "Café Crème Holdings",
)
_SUFFIXES: Final = ("GmbH", "Ltd", "Inc.", "SAS", "AG", "BV", "S.A.", "LLC", "Oy", "")
_INDUSTRIES: Final = ("Finance", "Healthcare", "Education", "Manufacturing", "Retail", "Government", "Technology")
_LICENSES: Final = ("Enterprise", "Professional", "Standard", "Trial")
_TAGS: Final = ("vip", "eu", "us", "pilot", "renewal-q1", "partner")


def current_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def family(company: dict[str, Any]) -> list[dict[str, Any]]:
    """The company and every company nested in its `children`, depth first (a malformed `children`, which
    a test may plant, is served as it is and has no members)."""
    members = [company]
    children = company.get("children")
    for child in children if isinstance(children, list) else []:
        if isinstance(child, dict):
            members.extend(family(child))
    return members


def over_limit(company: dict[str, Any]) -> bool:
    """Keepnet UI rule: `isNumberOfUsersLimited && targetUserCount > Number(numberOfUsers)`."""
    if company.get("isNumberOfUsersLimited") is not True:
        return False
    try:
        limit = int(str(company.get("numberOfUsers", "")).strip())
    except ValueError:
        return False
    count = company.get("targetUserCount")
    return isinstance(count, int) and count > limit


def make_companies(
    n: int, *, seed: int = 7, over_limit: int = 3, unlimited: int = 2, prefix: str = "c"
) -> list[dict[str, Any]]:
    """`n` realistic SearchCompanyDto dicts: exactly `over_limit` over their licence limit, exactly
    `unlimited` without a limit (`isNumberOfUsersLimited` false, `numberOfUsers` ""), the rest within it.
    `numberOfUsers` is a string, as the vendor sends it. Deterministic for a given seed."""
    if over_limit + unlimited > n:
        raise ValueError("over_limit + unlimited must not exceed n")
    rng = random.Random(seed)
    special = rng.sample(range(n), over_limit + unlimited)
    over_set, unlimited_set = set(special[:over_limit]), set(special[over_limit:])
    base_time = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)
    companies: list[dict[str, Any]] = []
    for i in range(n):
        name = _NAMES[i % len(_NAMES)]
        suffix = _SUFFIXES[rng.randrange(len(_SUFFIXES))]
        round_ = i // len(_NAMES)
        full_name = f"{name} {suffix}".strip() + (f" {round_ + 1}" if round_ else "")
        limit = rng.choice((25, 50, 100, 250, 500, 1000, 2500))
        if i in over_set:
            target = limit + rng.randint(1, 60)
        elif i in unlimited_set:
            target = rng.randint(0, 3000)
        else:
            target = rng.randint(0, limit)
        created = base_time + timedelta(days=i, minutes=rng.randint(0, 1440))
        companies.append(
            {
                "companyName": full_name,
                "companyResourceId": f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}",
                "resellerName": "Demo MSP",
                "industryName": rng.choice(_INDUSTRIES),
                "industryResourceId": f"ind-{rng.getrandbits(32):08x}",
                "licenseTypeName": rng.choice(_LICENSES),
                "licenseTypeResourceId": f"lic-{rng.getrandbits(32):08x}",
                "isNumberOfUsersLimited": i not in unlimited_set,
                "numberOfUsers": "" if i in unlimited_set else str(limit),
                "privacyDurationId": rng.choice((1, 2, 3)),
                "licenceExpired": rng.random() < 0.05,
                "licenseEndDate": (created + timedelta(days=365 * 2)).strftime("%Y-%m-%dT%H:%M:%S"),
                "createTime": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                "targetUserCount": target,
                "inactiveTargetUserCount": rng.randint(0, max(0, target // 10)),
                "deletedTargetUserCount": rng.randint(0, 40),
                "monthlyActiveUserCount": rng.randint(0, target) if target else 0,
                "tags": rng.sample(_TAGS, rng.randint(0, 2)),
                "children": [],
            }
        )
    return companies


def nest(parent: dict[str, Any], *children: dict[str, Any]) -> dict[str, Any]:
    """`parent` with `children` nested under it (a sub-reseller and the companies it manages), each child's
    `resellerName` the parent's name, as the Reseller column shows "the parent company of each listed company"."""
    for child in children:
        child["resellerName"] = parent["companyName"]
    parent["children"] = [*(parent.get("children") or []), *children]
    return parent


def _ci_get(mapping: dict[str, Any], key: str) -> tuple[bool, Any]:
    """Case-insensitive lookup, like .NET model binding: (present, value)."""
    for name, value in mapping.items():
        if name.lower() == key.lower():
            return True, value
    return False, None


def _with_monthly_users(company: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """A copy of the company (and of the companies nested in it) with one month's Monthly Users."""
    copied = {**company, "monthlyActiveUserCount": counts.get(str(company.get("companyResourceId")), 0)}
    children = company.get("children")
    if isinstance(children, list):
        copied["children"] = [_with_monthly_users(c, counts) if isinstance(c, dict) else c for c in children]
    return copied


class KeepnetSimulator(Simulator):
    """The Keepnet Reseller API over HTTP on loopback.

    - `companies`: the companies as they are now (None means `make_companies(25)`); each one's
      `monthlyActiveUserCount` is served for any month without its own (`set_monthly_users`).
    - `clients`: client_id -> (client_secret, role); only role "Reseller" may search.
    - `page_cap`: the largest pageSize the server honours (it reports the capped size and page count).
    - `token_ttl`: seconds a token lives (`expires_in`).
    - `envelope`: "status" (`{status, message, validationMessages, data}`), "Status" (the same in
      PascalCase) or "isSuccess" (`{isSuccess, messages, data}`).
    - `current_month`: the month a search without a month selector reports (None: the clock's).
    - `requests_per_second`: over it, 429 with `Retry-After: 1`.
    """

    def __init__(
        self,
        *,
        companies: list[dict[str, Any]] | None = None,
        clients: dict[str, tuple[str, str]] | None = None,
        page_cap: int | None = None,
        token_ttl: int = 3600,
        envelope: str = "status",
        current_month: str | None = None,
        requests_per_second: float | None = None,
        latency: float = 0.0,
    ) -> None:
        super().__init__(latency=latency)
        if envelope not in ENVELOPES:
            raise ValueError(f"envelope must be one of {ENVELOPES}")
        self.default_companies: list[dict[str, Any]] = make_companies(25) if companies is None else list(companies)
        self.monthly_users: dict[str, dict[str, int]] = {}
        self.clients: dict[str, tuple[str, str]] = dict(DEFAULT_CLIENTS if clients is None else clients)
        self.page_cap = page_cap
        self.token_ttl = token_ttl
        self.envelope = envelope
        self.current_month = current_month
        self.requests_per_second = requests_per_second
        self.tokens: dict[str, tuple[str, float]] = {}  # token -> (client_id, expires at, monotonic)
        self.issued_tokens: list[str] = []
        self._expire_at_search: set[int] = set()
        self._searches = 0
        self._state = threading.Lock()
        self._bucket = float(max(1, int(requests_per_second or 1)))
        self._bucket_at = time.monotonic()

    # --- test helpers -------------------------------------------------------------------------
    def set_monthly_users(self, month: str, counts: dict[str, int]) -> None:
        """Monthly Users of `month` by company id (a company not named added no users that month). Only
        `monthlyActiveUserCount` depends on the month: the other counts are the companies' values now."""
        with self._state:
            self.monthly_users[month] = dict(counts)

    def companies_for(self, month: str | None) -> list[dict[str, Any]]:
        """The listing's rows for a month selector (None: the current month): the companies themselves, or
        copies carrying the month's Monthly Users when it has its own."""
        with self._state:
            chosen = month or self.current_month or current_month()
            counts = self.monthly_users.get(chosen)
        if counts is None:
            return self.default_companies
        return [_with_monthly_users(row, counts) for row in self.default_companies]

    @property
    def tokens_issued(self) -> int:
        return len(self.issued_tokens)

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far (the next API call with one gets 401)."""
        with self._state:
            self.tokens.clear()

    def expire_tokens_at(self, search_number: int) -> None:
        """Invalidate every token just before serving the `search_number`-th search request (1-based)."""
        with self._state:
            self._expire_at_search.add(search_number)

    def search_bodies(self) -> list[Any]:
        """The parsed JSON bodies of every search request received, in arrival order."""
        with self._lock:
            return [r.json() for r in self.requests if r.path == SEARCH_PATH]

    # --- protocol -----------------------------------------------------------------------------
    def handle(self, request: SimRequest) -> SimResponse:
        if self.requests_per_second and not self._take_token():
            return SimResponse(429, {"message": "Rate limit exceeded — back off and retry"}, {"Retry-After": "1"})
        if request.path == TOKEN_PATH:
            return self._token(request)
        if request.path == SEARCH_PATH:
            return self._search(request)
        return SimResponse(404, {"status": "NOT_FOUND", "message": f"no route {request.path}", "data": None})

    def _take_token(self) -> bool:
        rate = float(self.requests_per_second or 0)
        with self._state:
            now = time.monotonic()
            self._bucket = min(max(1.0, rate), self._bucket + (now - self._bucket_at) * rate)
            self._bucket_at = now
            if self._bucket >= 1:
                self._bucket -= 1
                return True
            return False

    def _token(self, request: SimRequest) -> SimResponse:
        if request.method != "POST":
            return SimResponse(405, {"error": "method_not_allowed"})
        content_type = (request.header("Content-Type") or "").lower()
        if not content_type.startswith("application/x-www-form-urlencoded"):
            # The real endpoint answers a JSON body with a 500 (docs/vendors/keepnet.md).
            return SimResponse(500, {"error": "server_error"})
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return SimResponse(400, {"error": "unsupported_grant_type"})
        client = self.clients.get(form.get("client_id", ""))
        if client is None or not secrets.compare_digest(client[0], form.get("client_secret", "")):
            return SimResponse(400, {"error": "invalid_client"})
        if form.get("scope", "api1") != "api1":
            return SimResponse(400, {"error": "invalid_scope"})
        token = "eyJ" + secrets.token_urlsafe(48)
        with self._state:
            self.tokens[token] = (form["client_id"], time.monotonic() + self.token_ttl)
            self.issued_tokens.append(token)
        return SimResponse(
            200,
            {
                "access_token": token,
                "expires_in": self.token_ttl,
                "token_type": "Bearer",
                "scope": "api1",
                "permissions": ["companies/search|POST", "companies/search/export|POST"],
            },
        )

    def _bearer_client(self, request: SimRequest) -> str | None:
        header = request.header("Authorization") or ""
        if not header.startswith("Bearer "):
            return None
        with self._state:
            entry = self.tokens.get(header.removeprefix("Bearer ").strip())
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def _search(self, request: SimRequest) -> SimResponse:
        with self._state:
            self._searches += 1
            if self._searches in self._expire_at_search:
                self.tokens.clear()
        if request.method != "POST":
            return SimResponse(405, None)
        client_id = self._bearer_client(request)
        if client_id is None:
            return SimResponse(401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if self.clients.get(client_id, ("", ""))[1] != "Reseller":
            return self._failure(403, "FORBIDDEN", ["This endpoint requires the Reseller client role"])
        content_type = (request.header("Content-Type") or "").lower()
        if not content_type.startswith("application/json"):
            return self._failure(400, "INPUT_ERROR", [f"Unsupported content type {content_type or 'none'}"])
        body = request.json()
        problems, month, exceeded_only = self._validate(body)
        if problems:
            return self._failure(400, "INPUT_ERROR", problems)
        assert isinstance(body, dict)
        companies = self.companies_for(month)
        over = self._over_limit_members(companies)
        # The over-limit listing names each company over its limit, nested or not, as a row of its own.
        listed = [{**c, "children": []} for c in over] if exceeded_only else companies
        listed = self._ordered(listed, _ci_get(body, "orderBy")[1], _ci_get(body, "ascending")[1])
        page_number = int(_ci_get(body, "pageNumber")[1])
        size = int(_ci_get(body, "pageSize")[1])
        if self.page_cap is not None:
            size = min(size, self.page_cap)
        total = len(listed)
        start = (page_number - 1) * size
        data = {
            "limitExceededCompanyCount": len(over),
            "pageNumber": page_number,
            "pageSize": size,
            "totalNumberOfPages": math.ceil(total / size) if total else 0,
            "totalNumberOfRecords": total,
            "results": listed[start : start + size],
        }
        return SimResponse(200, self._success(data))

    def _over_limit_members(self, companies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Every company over its limit, nested or not, in listing order."""
        return [member for row in companies for member in family(row) if over_limit(member)]

    def _validate(self, body: Any) -> tuple[list[str], str | None, bool]:
        if not isinstance(body, dict):
            return ["A non-empty request body is required."], None, False
        problems: list[str] = []
        for name in _REQUIRED:
            present, value = _ci_get(body, name)
            if not present or value is None:
                problems.append(f"The {name[0].upper() + name[1:]} field is required.")
        for name in ("pageNumber", "pageSize"):
            value = _ci_get(body, name)[1]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                problems.append(f"{name} must be a positive integer.")
        order_by = _ci_get(body, "orderBy")[1]
        if order_by is not None and not isinstance(order_by, str):
            problems.append("orderBy must be a string.")
        ascending = _ci_get(body, "ascending")[1]
        if ascending is not None and not isinstance(ascending, bool):
            problems.append("ascending must be a boolean.")
        exceeded = _ci_get(body, "isTargetUserCountExceededLimit")[1]
        if exceeded is not None and not isinstance(exceeded, bool):
            problems.append("isTargetUserCountExceededLimit must be a boolean.")
        month: str | None = None
        flt = _ci_get(body, "filter")[1]
        if flt is not None:
            if not isinstance(flt, dict):
                problems.append("filter must be an object.")
            else:
                present, text = _ci_get(flt, "SearchInputTextValue")
                if not present or not isinstance(text, str):
                    problems.append("The SearchInputTextValue field is required.")
                month, month_problems = self._month(flt)
                problems.extend(month_problems)
        return problems, month, exceeded is True

    def _month(self, flt: dict[str, Any]) -> tuple[str | None, list[str]]:
        month: str | None = None
        problems: list[str] = []
        groups = [flt]
        while groups:
            group = groups.pop()
            for item in _ci_get(group, "FilterItems")[1] or []:
                if not isinstance(item, dict):
                    continue
                if str(_ci_get(item, "FieldName")[1] or "").lower() != "monthlyactiveuser":
                    continue
                value = _ci_get(item, "Value")[1]
                if _ci_get(item, "Operator")[1] != "=":
                    problems.append("MonthlyActiveUser supports only the '=' operator.")
                elif not isinstance(value, str) or len(value) != 7 or value[4] != "-":
                    problems.append(f"MonthlyActiveUser value must be YYYY-MM, got {value!r}.")
                else:
                    month = value
            groups.extend(g for g in (_ci_get(group, "FilterGroups")[1] or []) if isinstance(g, dict))
        return month, problems

    @staticmethod
    def _ordered(companies: list[dict[str, Any]], order_by: Any, ascending: Any) -> list[dict[str, Any]]:
        keys = {
            "createtime": "createTime",
            "companyname": "companyName",
            "targetusercount": "targetUserCount",
            "licenseenddate": "licenseEndDate",
        }
        key = keys.get(str(order_by).lower())
        if key is None:
            return companies

        def sort_key(company: dict[str, Any]) -> tuple[int, str]:
            value = company.get(key)
            if isinstance(value, int):
                return (0, f"{value:020d}")
            return (1, str(value or ""))

        return sorted(companies, key=sort_key, reverse=ascending is not True)

    def _success(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.envelope == "isSuccess":
            return {"isSuccess": True, "messages": [], "data": data}
        return self._cased({"status": "SUCCESS", "message": None, "validationMessages": None, "data": data})

    def _failure(self, http_status: int, status: str, messages: list[str]) -> SimResponse:
        if self.envelope == "isSuccess":
            return SimResponse(http_status, {"isSuccess": False, "messages": messages, "data": None})
        body = {
            "status": status,
            "message": messages[0] if messages else None,
            "validationMessages": messages,
            "data": None,
        }
        return SimResponse(http_status, self._cased(body))

    def _cased(self, body: dict[str, Any]) -> dict[str, Any]:
        """The envelope's own keys in PascalCase when `envelope="Status"` (the data inside stays camelCase)."""
        if self.envelope != "Status":
            return body
        return {key[0].upper() + key[1:]: value for key, value in body.items()}

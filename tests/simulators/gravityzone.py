"""A GravityZone JSON-RPC 2.0 simulator: a partner tree, monthly usage, per-key rate limits.

Serves `POST /api/v{version}/jsonrpc/{api}` (point an account's `access_url` at `sim.access_url`) with
only the methods Bitdefender's public partner docs list, each at its documented version (`METHODS`):

- v1.0 licensing `getMonthlyUsage` (77211-127109), `getMonthlyUsagePerProductType` (77211-127110);
- v1.0 network `getCompaniesList` (77211-128478: `parentId` is a partner company's or a company folder's
  id; an array of `{id, name}`) and `getCompanyFoldersList` (77211-128479: the folders under a company
  or a folder; an array of `{id, name}`);
- v1.1 network `getNetworkInventoryItems` (77211-128494: `filters.type.companies` /
  `filters.type.companyFolders`, `depth.allItemsRecursively`, `page`, `perPage` 1-1000, default 30;
  `{page, pagesCount, perPage, total, items: [{id, name, type, parentId, companyId}]}` plus
  `hasMoreRecords`, as live v1.1 servers send (runZero's fixtures)). Item types 1 (company) and 3 (company
  folder) follow runZero's table; the docs page's own table was not readable.

Anything else, and a method named in `missing_methods` (a server without it), answers -32601 "Method not
found". Behaviour:

- HTTP Basic with the API key as user and an empty password; anything else -> 401 "Invalid API key".
- An API missing from `enabled_apis` -> 403.
- Per key and API class, a rolling one-second window (`licensing_rps`, `network_rps`; None = unlimited):
  over it -> 429 with `Retry-After: 1` and JSON-RPC error -32003. Only accepted requests count.
- Everything else answers HTTP 200, errors included (JSON-RPC error objects): a customer id as
  `parentId` -> -32602 "Invalid value for 'parentId'", a bad `targetMonth` -> -32602,
  `failing_companies` -> -32000 Server error.
- `no_licence_companies` answer `0`, the documented result of a company without a monthly licence (with
  `no_licence_as_error`, the error the 2017 guide describes, as -32000 with a "no monthly license" text).
- A partner company's counters are the sum of every customer below it (as the real API), computed on
  the fly, so `set_usage` on a customer moves its partners' numbers too.
"""

from __future__ import annotations

import base64
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tests.simulators.base import SimRequest, SimResponse, Simulator

Kind = Literal["partner", "customer", "folder"]
Counters = dict[str, Any]

ROOT_ID = "5a0000000000000000000000"
NO_LICENCE_DETAILS = "The company does not have a monthly license."
# (version, api) -> the methods the public docs list there (and the only ones this simulator answers).
METHODS: dict[tuple[str, str], frozenset[str]] = {
    ("1.0", "licensing"): frozenset({"getMonthlyUsage", "getMonthlyUsagePerProductType"}),
    ("1.0", "network"): frozenset({"getCompaniesList", "getCompanyFoldersList"}),
    ("1.1", "network"): frozenset({"getNetworkInventoryItems"}),
}
ITEM_TYPE_COMPANY = 1
ITEM_TYPE_COMPANY_FOLDER = 3
_MONTH_RE = re.compile(r"^(0[1-9]|1[0-2])/(\d{4})$")
_PATH_RE = re.compile(r"^/api/v(\d+\.\d+)/jsonrpc/([A-Za-z]+)/?$")
_PACKAGES = ("mspSecureMonthlyUsage", "mspSecurePlusMonthlyUsage", "mspSecureExtraMonthlyUsage")


@dataclass
class Node:
    node_id: str
    name: str
    kind: Kind
    parent: str | None  # None: directly under the key's own (root) company
    children: list[str] = field(default_factory=list)


@dataclass
class Tree:
    """The companies (and folders) under the key's own partner company `ROOT_ID`."""

    nodes: dict[str, Node] = field(default_factory=dict)
    top: list[str] = field(default_factory=list)

    def add(self, node_id: str, name: str, kind: Kind, parent: str | None = None) -> Node:
        node = Node(node_id, name, kind, parent)
        self.nodes[node_id] = node
        (self.nodes[parent].children if parent is not None else self.top).append(node_id)
        return node

    def children_of(self, node_id: str | None) -> list[Node]:
        ids = self.top if node_id is None else self.nodes[node_id].children
        return [self.nodes[i] for i in ids]

    def customers(self) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.kind == "customer"]

    def partners(self) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.kind == "partner"]

    def customers_below(self, node_id: str | None) -> list[str]:
        """Every customer in the subtree once (folders and sub-partners included); None = the whole tree."""
        found: list[str] = []
        seen: set[str] = set() if node_id is None else {node_id}
        stack = list(self.top if node_id is None else self.nodes[node_id].children)
        while stack:
            node = self.nodes[stack.pop()]
            if node.node_id in seen:  # repeats and cycles, as tests may build them
                continue
            seen.add(node.node_id)
            if node.kind == "customer":
                found.append(node.node_id)
            else:
                stack.extend(node.children)
        return found

    def enclosing_company(self, node_id: str) -> str | None:
        """The partner company a company sits under, through folders; None for the root."""
        parent = self.nodes[node_id].parent
        while parent is not None and self.nodes[parent].kind == "folder":
            parent = self.nodes[parent].parent
        return parent


def make_tree(
    customers: int = 40, partners: int = 2, sub_partner: bool = True, seed: int = 3, folder: bool = True
) -> Tree:
    """Root -> direct customers (some in a folder) + `partners` partner companies; the first partner has
    a sub-partner with its own customers. Ids are 24-hex like GravityZone's."""
    rng = random.Random(seed)
    tree = Tree()
    counter = iter(range(1, 10**6))

    def new_id() -> str:
        return f"5f{seed:04x}{next(counter):06x}{rng.getrandbits(48):012x}"

    root_side: list[str | None] = [None]
    if folder:
        root_side.append(tree.add(new_id(), "Healthcare (folder)", "folder").node_id)
    partner_side: list[str | None] = []
    for index in range(partners):
        partner = tree.add(new_id(), f"Reseller {chr(65 + index)} GmbH", "partner")
        partner_side.append(partner.node_id)
        if index == 0 and sub_partner:
            partner_side.append(tree.add(new_id(), "Sub-reseller A1 Ltd", "partner", partner.node_id).node_id)
    for index in range(customers):
        # The first half directly under the root (every third of them in its folder), the rest spread
        # over the partners and the sub-partner.
        if index < customers // 2 or not partner_side:
            parent = root_side[1] if len(root_side) > 1 and index % 3 == 2 else None
        else:
            parent = partner_side[index % len(partner_side)]
        suffix = rng.choice(["AG", "Ltd", "Inc", "SARL", "BV"])
        tree.add(new_id(), f"Customer {index + 1:03d} {suffix}", "customer", parent)
    return tree


def month_key(month: str) -> str:
    """Accept `mm/yyyy` or `YYYY-MM`; return `mm/yyyy`."""
    if re.fullmatch(r"\d{4}-\d{2}", month):
        return f"{month[5:7]}/{month[:4]}"
    return month


def generated_usage(company_id: str, month: str, seed: int = 3) -> Counters:
    """Realistic, deterministic counters for one customer company and month (live-tenant field names)."""
    rng = random.Random(f"{seed}:{company_id}")
    endpoints = rng.randint(5, 250)
    package = rng.choice(_PACKAGES)
    drift = random.Random(f"{seed}:{company_id}:{month}").randint(-3, 3)
    endpoints = max(0, endpoints + drift)
    mail = rng.choice([0, 0, endpoints // 2, endpoints])
    counters: Counters = {
        "endpointMonthlyUsage": endpoints,
        "emailSecurityMonthlyUsage": mail,
        "exchangeMonthlyUsage": mail // 3,
        "encryptionMonthlyUsage": endpoints // 4,
        "atsMonthlyUsage": endpoints // 5,
        "edrMonthlyUsage": endpoints // 3,
        "mdrFoundationsMonthlyUsage": 0,
        "mdrResponseMonthlyUsage": 0,
        "patchManagementMonthlyUsage": endpoints // 2,
        "containerProtectionMonthlyUsage": 0,
        "integrityMonitoringUsage": 3,
        "integrityMonitoring90DaysUsage": 1,
        "integrityMonitoring180DaysUsage": 1,
        "integrityMonitoring1YearUsage": 1,
        "xdrIdentitySensorsMonthlyUsage": 0,
        "xdrProductivitySensorsMonthlyUsage": 1,
        "xdrNetworkSensorsMonthlyUsage": 0,
        "xdrCloudSensorsMonthlyUsage": 0,
        "sveVsMonthlyUsage": rng.randint(0, 4),
        "sveVdiMonthlyUsage": rng.choice([0, 0, 120, 744]),
        "aLaCarteMonthlyUsage": 0,
        "mspSecureMonthlyUsage": 0,
        "mspSecurePlusMonthlyUsage": 0,
        "mspSecureExtraMonthlyUsage": 0,
        "mspSecureEssentialsMonthlyUsage": 0,
        "complianceMonthlyUsage": 0,
        "minimumUsage": {"endpointMonthlyUsage": max(1, endpoints // 10 * 10)},
    }
    counters[package] = endpoints  # every endpoint is also counted in its package tier (overlap)
    return counters


def sum_counters(items: Iterable[Mapping[str, Any]]) -> Counters:
    """Numeric fields summed (nested objects too), as a partner's usage sums its children's."""
    total: Counters = {}
    for item in items:
        for key, value in item.items():
            if isinstance(value, Mapping):
                total[key] = sum_counters([total.get(key, {}), value])
            elif isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most requests seen in any rolling window (for rate assertions)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class GravityZoneSimulator(Simulator):
    def __init__(
        self,
        *,
        api_key: str = "gz-demo-key",
        tree: Tree | None = None,
        usage: Mapping[str, Mapping[str, Counters]] | None = None,
        licensing_rps: float | None = 5,
        network_rps: float | None = 10,
        latency: float = 0.0,
        failing_companies: Iterable[str] = (),
        no_licence_companies: Iterable[str] = (),
        no_licence_as_error: bool = False,
        enabled_apis: Iterable[str] = ("licensing", "network"),
        company_type_filter: bool = True,
        missing_methods: Iterable[str] = (),
        inventory_max_per_page: int = 1000,
        seed: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(latency=latency)
        self.clock = clock  # the rate windows' time
        self.api_key = api_key
        self.tree = tree if tree is not None else make_tree(seed=seed)
        self.usage: dict[str, dict[str, Counters]] = {
            cid: {month_key(m): dict(c) for m, c in months.items()} for cid, months in (usage or {}).items()
        }
        self.rps: dict[str, float | None] = {"licensing": licensing_rps, "network": network_rps}
        self.failing_companies = set(failing_companies)
        self.no_licence_companies = set(no_licence_companies)
        self.no_licence_as_error = no_licence_as_error
        self.enabled_apis = set(enabled_apis)
        self.company_type_filter = company_type_filter
        self.missing_methods = set(missing_methods)
        self.inventory_max_per_page = inventory_max_per_page
        self.seed = seed
        # (monotonic arrival time, HTTP status, method, params) of every licensing request
        self.licensing_log: list[tuple[float, int, str, dict[str, Any]]] = []
        self._windows: dict[tuple[str, str], deque[float]] = {}
        self._state_lock = threading.Lock()

    # --- helpers for tests and the demo -----------------------------------------------------------
    @property
    def access_url(self) -> str:
        return f"{self.url}/api"

    def customers(self) -> list[str]:
        return self.tree.customers()

    def partners(self) -> list[str]:
        return self.tree.partners()

    def set_usage(self, company_id: str, month: str, counters: Mapping[str, Any]) -> None:
        """Replace one customer's counters for one month (`mm/yyyy` or `YYYY-MM`)."""
        with self._state_lock:
            self.usage.setdefault(company_id, {})[month_key(month)] = dict(counters)

    def customer_usage(self, company_id: str, month: str) -> Counters:
        month = month_key(month)
        with self._state_lock:
            explicit = self.usage.get(company_id, {}).get(month)
        if company_id in self.no_licence_companies:
            return {}
        return dict(explicit) if explicit is not None else generated_usage(company_id, month, self.seed)

    def company_usage(self, company_id: str | None, month: str) -> Counters:
        """What `getMonthlyUsage` answers: a customer's own counters, a partner's (or the root's, for
        None) the sum over its subtree."""
        if company_id is not None and self.tree.nodes[company_id].kind == "customer":
            return self.customer_usage(company_id, month)
        return sum_counters(self.customer_usage(c, month) for c in self.tree.customers_below(company_id))

    def usage_per_product_type(self, company_id: str | None, month: str) -> list[Counters]:
        """Entries of `getMonthlyUsagePerProductType`: the default product type (= `getMonthlyUsage`) and
        an add-on product type with 2 endpoints and 1 mobile device per customer; both carry every counter."""
        base = self.company_usage(company_id, month)
        customers = (
            [company_id]
            if company_id is not None and self.tree.nodes[company_id].kind == "customer"
            else self.tree.customers_below(company_id)
        )
        licensed = sum(1 for c in customers if c not in self.no_licence_companies)
        extra: Counters = {key: 0 for key in base if key != "minimumUsage"}
        extra["endpointMonthlyUsage"] = 2 * licensed
        extra["mobileSecurityMonthlyUsage"] = licensed
        return [{"productType": 0, "mobileSecurityMonthlyUsage": 0, **base}, {"productType": 2, **extra}]

    def licensing_times(self, status: int | None = 200) -> list[float]:
        with self._lock:
            return [t for t, s, _m, _p in self.licensing_log if status is None or s == status]

    def rate_limited(self, api: str = "licensing") -> int:
        """How many requests of that API were refused with 429."""
        with self._lock:
            return sum(1 for req, status in self.responses if status == 429 and req.path.endswith(f"/{api}"))

    # --- the vendor ---------------------------------------------------------------------------------
    def handle(self, request: SimRequest) -> SimResponse:
        arrived = self.clock()
        match = _PATH_RE.match(request.path)
        if match is None:
            return SimResponse(404, raw=b"<html><body>Not Found</body></html>")
        version, api = match.group(1), match.group(2)
        if request.method != "POST":
            return SimResponse(405, _error(None, -32600, "Invalid Request", "Only POST is allowed"))
        body = request.json()
        rpc_id = body.get("id") if isinstance(body, dict) else None
        if not self._authorised(request):
            return SimResponse(401, _error(rpc_id, -32000, "Invalid API key", "Invalid API key"))
        if api not in self.enabled_apis:
            return SimResponse(403, _error(rpc_id, -32001, "Operation not allowed", "API not enabled for this key"))
        limited = self._over_limit(api, arrived)
        method = body.get("method") if isinstance(body, dict) else None
        params = body.get("params") if isinstance(body, dict) else None
        if api == "licensing":
            with self._lock:
                self.licensing_log.append(
                    (arrived, 429 if limited else 200, str(method), params if isinstance(params, dict) else {})
                )
        if limited:
            return SimResponse(
                429, _error(rpc_id, -32003, "Too many requests", "Rate limit exceeded"), {"Retry-After": "1"}
            )
        if request.body and body is None:
            return SimResponse(200, _error(None, -32700, "Parse error", "Invalid JSON"))
        if not isinstance(body, dict) or body.get("jsonrpc") != "2.0" or not isinstance(method, str) or rpc_id is None:
            return SimResponse(200, _error(rpc_id, -32600, "Invalid Request", "Not a JSON-RPC 2.0 request"))
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return SimResponse(200, _error(rpc_id, -32602, "Invalid params", "params must be an object"))
        if method not in METHODS.get((version, api), frozenset()) or method in self.missing_methods:
            return SimResponse(200, _error(rpc_id, -32601, "Method not found", "The requested method does not exist"))
        try:
            result = getattr(self, f"_{method}")(params)
        except _RpcError as fault:
            return SimResponse(200, _error(rpc_id, fault.code, fault.message, fault.details))
        return SimResponse(200, {"id": rpc_id, "jsonrpc": "2.0", "result": result})

    def _authorised(self, request: SimRequest) -> bool:
        header = request.header("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:]).decode()
        except ValueError:
            return False
        return decoded == f"{self.api_key}:"

    def _over_limit(self, api: str, now: float) -> bool:
        limit = self.rps.get(api, 10)
        if limit is None:
            return False
        with self._state_lock:
            window = self._windows.setdefault((self.api_key, api), deque())
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                return True
            window.append(now)
            return False

    # --- methods --------------------------------------------------------------------------------------
    def _container(self, params: Mapping[str, Any], allowed: frozenset[str]) -> str | None:
        extra = set(params) - allowed
        if extra:
            raise _RpcError(-32602, "Invalid params", f"Unknown parameter '{sorted(extra)[0]}'")
        parent = params.get("parentId")
        if parent is None or parent == ROOT_ID:
            return None
        node = self.tree.nodes.get(parent) if isinstance(parent, str) else None
        if node is None or node.kind == "customer":
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'parentId'")
        return node.node_id

    def _getCompaniesList(self, params: Mapping[str, Any]) -> list[dict[str, str]]:
        allowed = frozenset({"parentId", "filters"}) if self.company_type_filter else frozenset({"parentId"})
        parent = self._container(params, allowed)
        filters = params.get("filters") or {}
        if not isinstance(filters, dict) or set(filters) - {"companyType", "licenseType"}:
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'filters'")
        wanted = filters.get("companyType")
        if wanted not in (None, 0, 1):
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'filters.companyType'")
        found = []
        for node in self.tree.children_of(parent):
            if node.kind == "folder":
                continue
            if wanted is not None and (node.kind == "partner") != (wanted == 0):
                continue
            found.append({"id": node.node_id, "name": node.name})
        return found

    def _getCompanyFoldersList(self, params: Mapping[str, Any]) -> list[dict[str, str]]:
        parent = self._container(params, frozenset({"parentId"}))
        return [{"id": n.node_id, "name": n.name} for n in self.tree.children_of(parent) if n.kind == "folder"]

    def _getNetworkInventoryItems(self, params: Mapping[str, Any]) -> dict[str, Any]:
        allowed = frozenset({"parentId", "filters", "page", "perPage", "options"})
        extra = set(params) - allowed
        if extra:
            raise _RpcError(-32602, "Invalid params", f"Unknown parameter '{sorted(extra)[0]}'")
        parent = params.get("parentId")
        if parent is not None and parent != ROOT_ID and (not isinstance(parent, str) or parent not in self.tree.nodes):
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'parentId'")
        start = None if parent in (None, ROOT_ID) else str(parent)
        wanted, recursive = _inventory_filters(params.get("filters"))
        page, per_page = params.get("page", 1), params.get("perPage", 30)
        if not isinstance(page, int) or isinstance(page, bool) or page < 1:
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'page'")
        if not isinstance(per_page, int) or isinstance(per_page, bool) or not 1 <= per_page <= 1000:
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'perPage'")
        per_page = min(per_page, self.inventory_max_per_page)
        found = [item for item in self._inventory_below(start, recursive) if item["type"] in wanted]
        pages = max(1, -(-len(found) // per_page))
        items = found[(page - 1) * per_page : page * per_page]
        return {
            "page": page,
            "pagesCount": pages,
            "perPage": per_page,
            "total": len(found),
            "hasMoreRecords": page < pages,
            "items": items,
        }

    def _inventory_below(self, start: str | None, recursive: bool) -> list[dict[str, Any]]:
        """Companies and company folders under `start` (a customer has none), once each."""
        if start is not None and self.tree.nodes[start].kind == "customer":
            return []
        items: list[dict[str, Any]] = []
        seen: set[str] = set() if start is None else {start}
        queue = [(n, start) for n in self.tree.children_of(start)]
        while queue:
            node, parent = queue.pop(0)
            if node.node_id in seen:
                continue
            seen.add(node.node_id)
            kind = ITEM_TYPE_COMPANY_FOLDER if node.kind == "folder" else ITEM_TYPE_COMPANY
            company = self.tree.enclosing_company(node.node_id) if node.kind == "folder" else node.node_id
            items.append(
                {
                    "id": node.node_id,
                    "name": node.name,
                    "type": kind,
                    "parentId": parent or ROOT_ID,
                    "companyId": company or ROOT_ID,
                }
            )
            if recursive:
                queue.extend((child, node.node_id) for child in node.children)
        return items

    def _company_and_month(self, params: Mapping[str, Any]) -> tuple[str | None, str]:
        company = params.get("companyId")
        if company is not None and (
            not isinstance(company, str) or company not in self.tree.nodes or self.tree.nodes[company].kind == "folder"
        ):
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'companyId'")
        month = params.get("targetMonth")
        if month is None:
            month = datetime.now(UTC).strftime("%m/%Y")
        if not isinstance(month, str) or not _MONTH_RE.match(month):
            raise _RpcError(-32602, "Invalid params", "Invalid value for 'targetMonth'")
        if company in self.failing_companies:
            raise _RpcError(-32000, "Server error", "An internal error occurred")
        if company in self.no_licence_companies and self.no_licence_as_error:
            raise _RpcError(-32000, "Server error", NO_LICENCE_DETAILS)
        return company, month

    def _getMonthlyUsage(self, params: Mapping[str, Any]) -> Counters | int:
        company, month = self._company_and_month(params)
        if company in self.no_licence_companies:
            return 0  # documented: "or 0 if the queried company does not have a monthly license"
        return self.company_usage(company, month)

    def _getMonthlyUsagePerProductType(self, params: Mapping[str, Any]) -> dict[str, Any] | int:
        company, month = self._company_and_month(params)
        if company in self.no_licence_companies:
            return 0  # assumed like getMonthlyUsage's documented answer
        return {"usages": self.usage_per_product_type(company, month)}


def _inventory_filters(filters: object) -> tuple[set[int], bool]:
    """(item types asked for, recursive) from `filters`; no type filter asks for companies and folders."""
    if filters is None:
        filters = {}
    if not isinstance(filters, dict) or set(filters) - {"type", "depth"}:
        raise _RpcError(-32602, "Invalid params", "Invalid value for 'filters'")
    types = filters.get("type") or {}
    depth = filters.get("depth") or {}
    known = {"companies", "companyFolders", "groups", "computers", "virtualMachines"}
    if not isinstance(types, dict) or set(types) - known or not all(isinstance(v, bool) for v in types.values()):
        raise _RpcError(-32602, "Invalid params", "Invalid value for 'filters.type'")
    if not isinstance(depth, dict) or set(depth) - {"allItemsRecursively"}:
        raise _RpcError(-32602, "Invalid params", "Invalid value for 'filters.depth'")
    wanted = {ITEM_TYPE_COMPANY} if types.get("companies") else set()
    if types.get("companyFolders"):
        wanted.add(ITEM_TYPE_COMPANY_FOLDER)
    if not any(types.values()):
        wanted = {ITEM_TYPE_COMPANY, ITEM_TYPE_COMPANY_FOLDER}
    return wanted, bool(depth.get("allItemsRecursively"))


class _RpcError(Exception):
    def __init__(self, code: int, message: str, details: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


def _error(rpc_id: Any, code: int, message: str, details: str) -> dict[str, Any]:
    return {"id": rpc_id, "jsonrpc": "2.0", "error": {"code": code, "message": message, "data": {"details": details}}}

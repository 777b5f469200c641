"""ConnectWise PSA (Manage) REST API simulator: companies, agreements, additions, catalogue, info, audit trail.

Speaks the protocol of docs/psa.md ("ConnectWise"): codebase discovery at `/login/companyinfo/{company_id}`,
Basic auth `{company_id}+{public_key}:{private_key}` and a `clientId` header on every API call (401 otherwise),
`conditions` (the subset a client sends: `=`/`!=`, `and`/`or`, parentheses, nested fields with `/`, strings in
double quotes with `\\"` and `\\\\` escapes; strings compare without regard to case, as ConnectWise's database
does), `pageSize` at most 1,000, `page` paging or, with `pagination-type: forward-only`, `pageId` paging, the next
page in a `Link` header; `PATCH` of an addition with a JSON Patch array; an audit trail of every change. Numbers
are kept as `Decimal` and written from their own text. A rate limit (`rate_limit=(requests, seconds)`) answers
429 with Retry-After; base faults inject 429s, 5xx and hangs. Every answer of `handle` is kept in `exchanges`
(the oracle test validates them against ConnectWise's OpenAPI document).

    with ConnectWiseSimulator() as sim:
        company = sim.add_company("SmithBros", 'Smith "Bros"')
        agreement = sim.add_agreement(company, "Managed services")
        sim.add_addition(agreement, "GZ-ENDPOINT", Decimal(40), unit_price=Decimal("3.50"))
        secret = sim.connection()
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final
from urllib.parse import urlencode

from tests.simulators.base import SimRequest, SimResponse, Simulator

CONTENT_TYPE: Final = "application/vnd.connectwise.com+json; version=2026.4"
DEFAULT_CLIENT_ID: Final = "3f2c7e1a-9b0d-4c55-8e21-6a7d5b9c0f14"
_DEC: Final = re.compile(r'"\\u0000DEC:([^"]*)"')
_API: Final = re.compile(r"^/(?P<codebase>[A-Za-z0-9_.-]+/)apis/3\.0(?P<rest>/.*)$")
_ADDITIONS: Final = re.compile(r"^/finance/agreements/(\d+)/additions(?:/(\d+))?$")
_TOKEN: Final = re.compile(r'\s*(\(|\)|!=|=|"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_/]*|-?\d+(?:\.\d+)?)')


class ConditionError(ValueError):
    pass


def dumps(body: Any) -> bytes:
    """JSON with every Decimal written as its own digits (never through a float)."""
    text = json.dumps(body, default=lambda d: f"\u0000DEC:{d}" if isinstance(d, Decimal) else str(d))
    return _DEC.sub(lambda m: m.group(1), text).encode()


def stamp(day: str | None) -> str | None:
    return None if day is None else f"{day}T00:00:00Z"


# --- conditions --------------------------------------------------------------------------------------------------
def parse_conditions(text: str) -> Callable[[dict[str, Any]], bool]:
    """The subset of ConnectWise's conditions grammar clients send, as a predicate over a record."""
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConditionError(f"cannot read conditions at character {position + 1}")
        tokens.append(match.group(1))
        position = match.end()
    predicate, rest = _or(tokens)
    if rest:
        raise ConditionError(f"unexpected {rest[0]!r} in conditions")
    return predicate


def _or(tokens: list[str]) -> tuple[Callable[[dict[str, Any]], bool], list[str]]:
    left, tokens = _and(tokens)
    while tokens and tokens[0].lower() == "or":
        right, tokens = _and(tokens[1:])
        left = _either(left, right)
    return left, tokens


def _and(tokens: list[str]) -> tuple[Callable[[dict[str, Any]], bool], list[str]]:
    left, tokens = _term(tokens)
    while tokens and tokens[0].lower() == "and":
        right, tokens = _term(tokens[1:])
        left = _both(left, right)
    return left, tokens


Predicate = Callable[[dict[str, Any]], bool]


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda record: a(record) or b(record)


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda record: a(record) and b(record)


def _term(tokens: list[str]) -> tuple[Callable[[dict[str, Any]], bool], list[str]]:
    if not tokens:
        raise ConditionError("conditions end too early")
    if tokens[0] == "(":
        inner, rest = _or(tokens[1:])
        if not rest or rest[0] != ")":
            raise ConditionError("missing ) in conditions")
        return inner, rest[1:]
    if len(tokens) < 3 or tokens[1] not in ("=", "!="):
        raise ConditionError(f"expected field=value at {tokens[0]!r}")
    field, op, raw = tokens[0], tokens[1], tokens[2]
    value = _literal(raw)
    negate = op == "!="

    def test(record: dict[str, Any]) -> bool:
        found = _lookup(record, field)
        if isinstance(found, str) and isinstance(value, str):
            same = found.casefold() == value.casefold()
        else:
            same = found == value
        return same != negate

    return test, tokens[3:]


def _literal(raw: str) -> Any:
    if raw.startswith('"'):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if raw.lower() == "null":
        return None
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if re.fullmatch(r"-?\d+\.\d+", raw):
        return Decimal(raw)
    raise ConditionError(f"{raw!r} is not a value (strings go in double quotes)")


def _lookup(record: dict[str, Any], field: str) -> Any:
    value: Any = record
    for part in field.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# --- the simulator -------------------------------------------------------------------------------------------------
@dataclass
class Change:
    """A quantity that changes once an addition has been served `after` times (another writer between reads)."""

    addition_id: int
    quantity: Decimal
    after: int
    served: int = 0


class ConnectWiseSimulator(Simulator):
    def __init__(
        self,
        *,
        company_id: str = "usagewatch",
        public_key: str = "pubKeyDemo01",
        private_key: str = "privKeyDemo-s3cr3t",
        client_id: str = DEFAULT_CLIENT_ID,
        codebase: str = "v4_6_release/",
        version: str = "v2026.4.102345",
        rate_limit: tuple[int, float] | None = None,
        latency: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(latency=latency)
        self.clock = clock  # the rate window's time
        self.company_id, self.public_key, self.private_key = company_id, public_key, private_key
        self.client_id, self.codebase, self.version = client_id, codebase, version
        self.rate_limit = rate_limit
        self.companies: dict[int, dict[str, Any]] = {}
        self.agreements: dict[int, dict[str, Any]] = {}
        self.additions: dict[int, dict[str, Any]] = {}
        self._of_agreement: dict[int, list[int]] = {}
        """Agreement id -> its additions' ids, so one agreement's listing does not scan every addition."""
        self.catalog: dict[int, dict[str, Any]] = {}
        self.audit: list[dict[str, Any]] = []
        self.changes: list[Change] = []
        self.exchanges: list[tuple[SimRequest, SimResponse]] = []
        self._ids = 1000
        self._data_lock = threading.RLock()
        self._window: list[float] = []

    def start(self) -> ConnectWiseSimulator:
        super().start()
        assert self._server is not None
        handler = self._server.RequestHandlerClass
        handler.do_PATCH = handler.do_GET  # type: ignore[attr-defined]  # the base serves GET/POST/PUT/DELETE
        return self

    def __enter__(self) -> ConnectWiseSimulator:
        return self.start()

    # --- building the PSA's data -----------------------------------------------------------------------------
    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def connection(self, **overrides: Any) -> dict[str, Any]:
        """The secret a client would be given for this PSA."""
        secret = {
            "site": self.url,
            "company_id": self.company_id,
            "public_key": self.public_key,
            "private_key": self.private_key,
            "client_id": self.client_id,
        }
        return {**secret, **overrides}

    def add_company(self, identifier: str, name: str | None = None, *, deleted: bool = False) -> int:
        with self._data_lock:
            cid = self._next_id()
            self.companies[cid] = {
                "id": cid,
                "identifier": identifier,
                "name": name or identifier,
                "deletedFlag": deleted,
            }
            return cid

    def add_agreement(self, company: int, name: str, *, status: str = "Active", cancelled: bool = False) -> int:
        with self._data_lock:
            aid = self._next_id()
            owner = self.companies[company]
            self.agreements[aid] = {
                "id": aid,
                "name": name,
                "type": {"id": 1, "name": "Managed Services"},
                "company": {"id": company, "identifier": owner["identifier"], "name": owner["name"]},
                "contact": {"id": 1, "name": "Billing Contact"},
                "agreementStatus": "Cancelled" if cancelled else status,
                "cancelledFlag": cancelled,
                "billingCycle": {"id": 2, "name": "Monthly"},
                "billStartDate": "2026-01-01T00:00:00Z",
                "nextInvoiceDate": "2027-01-01",
                "prorateFlag": False,
            }
            return aid

    def add_product(self, identifier: str, description: str | None = None) -> int:
        with self._data_lock:
            pid = self._next_id()
            self.catalog[pid] = {
                "id": pid,
                "identifier": identifier,
                "description": description or identifier,
                "customerDescription": description or identifier,
                "subcategory": {"id": 1, "name": "Licences"},
                "type": {"id": 1, "name": "Recurring"},
                "inactiveFlag": False,
            }
            return pid

    def add_addition(
        self,
        agreement: int,
        product: str,
        quantity: Decimal | int,
        *,
        unit_price: Decimal | int | None = Decimal("1.00"),
        bill: str = "Billable",
        effective: str | None = "2026-01-01",
        cancelled: str | None = None,
    ) -> int:
        with self._data_lock:
            product_id = next((p["id"] for p in self.catalog.values() if p["identifier"] == product), None)
            if product_id is None:
                product_id = self.add_product(product)
            xid = self._next_id()
            self._of_agreement.setdefault(agreement, []).append(xid)
            self.additions[xid] = {
                "id": xid,
                "agreementId": agreement,
                "product": {"id": product_id, "identifier": product},
                "quantity": Decimal(quantity),
                "unitPrice": None if unit_price is None else Decimal(unit_price),
                "billCustomer": bill,
                "effectiveDate": stamp(effective),
                "cancelledDate": stamp(cancelled),
                "description": product,
            }
            return xid

    def set_quantity(self, addition: int, quantity: Decimal | int, *, by: str = "someone@msp") -> None:
        """Another writer changes a line (the PSA's UI, another integration)."""
        with self._data_lock:
            self._apply_quantity(self.additions[addition], Decimal(quantity), by)

    def change_after_reads(self, addition: int, quantity: Decimal | int, *, after: int = 1) -> None:
        self.changes.append(Change(addition, Decimal(quantity), after))

    def cancel_agreement(self, agreement: int) -> None:
        with self._data_lock:
            self.agreements[agreement].update(agreementStatus="Cancelled", cancelledFlag=True)

    def patches(self) -> list[SimRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "PATCH"]

    # --- serving -------------------------------------------------------------------------------------------------
    def handle(self, request: SimRequest) -> SimResponse:
        with self._data_lock:
            response = self._route(request)
        with self._lock:
            self.exchanges.append((request, response))
        return response

    def _route(self, request: SimRequest) -> SimResponse:
        if request.path == f"/login/companyinfo/{self.company_id}" and request.method == "GET":
            return SimResponse(200, {"CompanyName": "Demo MSP", "Codebase": self.codebase, "VersionCode": "v2026.4"})
        if request.path.startswith("/login/companyinfo/"):
            return SimResponse(404, {"code": "NotFound", "message": "Company not found"})
        match = _API.match(request.path)
        if match is None or match.group("codebase") != self.codebase:
            return SimResponse(404, raw=b"<html><body>Not found</body></html>")
        refused = self._refuse(request)
        if refused is not None:
            return refused
        rest = match.group("rest")
        try:
            return self._api(request, rest)
        except ConditionError as exc:
            return _error(400, "InvalidObject", f"conditions: {exc}")

    def _refuse(self, request: SimRequest) -> SimResponse | None:
        if not request.header("clientId"):
            return _error(401, "Unauthorized", "A clientId header is required: register your integration")
        if request.header("clientId") != self.client_id:
            return _error(401, "Unauthorized", "Unknown clientId")
        expected = f"{self.company_id}+{self.public_key}:{self.private_key}".encode()
        if request.header("Authorization") != "Basic " + base64.b64encode(expected).decode():
            return _error(401, "Unauthorized", "The credentials were not valid")
        if self.rate_limit is not None:
            limit, window = self.rate_limit
            now = self.clock()
            self._window = [t for t in self._window if now - t < window]
            if len(self._window) >= limit:
                wait = max(1, round(window - (now - self._window[0]) + 0.5))
                return SimResponse(429, {"message": "Too many requests"}, {"Retry-After": str(wait)})
            self._window.append(now)
        return None

    def _api(self, request: SimRequest, rest: str) -> SimResponse:
        additions = _ADDITIONS.match(rest)
        if request.method == "PATCH" and additions and additions.group(2):
            return self._patch(request, int(additions.group(1)), int(additions.group(2)))
        if request.method != "GET":
            return _error(405, "MethodNotAllowed", f"{request.method} is not served here")
        if rest == "/system/info":
            return _ok({"version": self.version, "isCloud": True, "cloudRegion": "NA", "serverTimeZone": "UTC"})
        if rest == "/company/companies":
            return self._list(request, rest, list(self.companies.values()))
        if rest == "/finance/agreements":
            return self._list(request, rest, list(self.agreements.values()))
        if rest == "/procurement/catalog":
            return self._list(request, rest, list(self.catalog.values()))
        if rest == "/system/audittrail":
            wanted = request.query.get("id", [""])[0]
            entries = [
                {k: v for k, v in e.items() if k != "agreementId"}
                for e in self.audit
                if str(e["agreementId"]) == wanted
            ]
            return _ok(entries)
        if additions:
            agreement = int(additions.group(1))
            if agreement not in self.agreements:
                return _error(404, "NotFound", f"Agreement {agreement} not found")
            if additions.group(2):
                addition = self.additions.get(int(additions.group(2)))
                if addition is None or addition["agreementId"] != agreement:
                    return _error(404, "NotFound", "Addition not found")
                return _ok(self._served(addition))
            rows = [self.additions[x] for x in self._of_agreement.get(agreement, ()) if x in self.additions]
            return self._list(request, rest, rows, view=self._served)
        return _error(404, "NotFound", f"{rest} is not served by this simulator")

    def _list(
        self,
        request: SimRequest,
        rest: str,
        rows: list[dict[str, Any]],
        view: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> SimResponse:
        query = {k: v[0] for k, v in request.query.items()}
        size = int(query.get("pageSize", "25"))
        if not 1 <= size <= 1000:
            return _error(400, "InvalidObject", "pageSize must be between 1 and 1000")
        if "conditions" in query:
            keep = parse_conditions(query["conditions"])
            rows = [r for r in rows if keep(self._decorated(r))]
        rows.sort(key=lambda r: r["id"])
        base = {k: v for k, v in query.items() if k in ("conditions", "pageSize")}
        if (request.header("pagination-type") or "").lower() == "forward-only":
            after = int(query.get("pageId", "0"))
            rows = [r for r in rows if r["id"] > after]
            page, more = rows[:size], len(rows) > size
            link = {"pageId": str(page[-1]["id"])} if more else None
        else:
            number = int(query.get("page", "1"))
            page, more = rows[(number - 1) * size : number * size], len(rows) > number * size
            link = {"page": str(number + 1)} if more else None
        headers = {"Content-Type": CONTENT_TYPE}
        if link is not None:
            path = f"/{self.codebase}apis/3.0{rest}"
            headers["Link"] = f'<{self.url}{path}?{urlencode({**base, **link})}>; rel="next"'
        return SimResponse(200, raw=dumps([(view or _plain)(r) for r in page]), headers=headers)

    def _decorated(self, row: dict[str, Any]) -> dict[str, Any]:
        if "agreementId" in row:
            return {**row, "agreementStatus": self.agreements[row["agreementId"]]["agreementStatus"]}
        return row

    def _served(self, addition: dict[str, Any]) -> dict[str, Any]:
        """An addition as answered; a planted change takes effect once it has been served `after` times."""
        shown = _plain(self._decorated(addition))
        for change in self.changes:
            if change.addition_id == addition["id"] and change.served < change.after:
                change.served += 1
                if change.served == change.after:
                    self._apply_quantity(addition, change.quantity, "another-integration")
        return shown

    def _patch(self, request: SimRequest, agreement: int, addition_id: int) -> SimResponse:
        addition = self.additions.get(addition_id)
        if agreement not in self.agreements or addition is None or addition["agreementId"] != agreement:
            return _error(404, "NotFound", "Addition not found")
        try:
            operations = json.loads(request.body, parse_float=Decimal)
        except ValueError:
            return _error(400, "InvalidObject", "The body is not JSON")
        if not isinstance(operations, list) or not operations:
            return _error(400, "InvalidObject", "Expected a JSON Patch array")
        for op in operations:
            if not isinstance(op, dict) or op.get("op") != "replace" or op.get("path") != "quantity":
                return _error(400, "InvalidObject", "Only replace of quantity is supported by this simulator")
            value = op.get("value")
            if isinstance(value, bool) or not isinstance(value, int | Decimal) or value < 0:
                return _error(400, "InvalidObject", "quantity must be a non-negative number")
        for op in operations:
            self._apply_quantity(addition, Decimal(op["value"]), "usagewatch-api (API)")
        return _ok(_plain(self._decorated(addition)))

    def _apply_quantity(self, addition: dict[str, Any], quantity: Decimal, by: str) -> None:
        before = addition["quantity"]
        addition["quantity"] = quantity
        self.audit.append(
            {
                "agreementId": addition["agreementId"],
                "text": f"Addition {addition['product']['identifier']}: quantity changed from {before} to {quantity}",
                "enteredDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "enteredBy": by,
                "auditType": "Agreement",
                "auditSubType": "Addition",
                "auditSource": "API" if by.endswith("(API)") else "UI",
            }
        )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A record as served: None fields left out (the document types them as non-nullable)."""
    return {k: v for k, v in row.items() if v is not None}


def _ok(body: Any) -> SimResponse:
    return SimResponse(200, raw=dumps(body), headers={"Content-Type": CONTENT_TYPE})


def _error(status: int, code: str, message: str) -> SimResponse:
    return SimResponse(status, {"code": code, "message": message}, {"Content-Type": "application/json"})

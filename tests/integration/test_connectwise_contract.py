"""The oracle: every request the ConnectWise client sends and every answer the simulator gives, validated with
`openapi-core` against ConnectWise's own OpenAPI document (trimmed to the operations usagewatch uses).

The document is ConnectWise's text and stays out of this repository: it is read from `../shared/oracles/connectwise/`
beside the repository (or from `$USAGEWATCH_SHARED_DIR/oracles/connectwise/`), and the test is skipped, saying
so, where that folder is absent. The `mock` variant differs from the vendor's in one place: `PatchOperation.value`
is any type (the vendor's types it as an object, while every client sends a number for `quantity`).
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.simulators.base import SimRequest, SimResponse
from tests.simulators.connectwise import ConnectWiseSimulator
from usagewatch.psa.connectwise import ConnectWiseClient, parse_connection
from usagewatch.psa.contract import LineRef, split_lines
from usagewatch.redaction import redactor

ROOT = Path(__file__).resolve().parents[2]
ORACLE_DIR = Path(os.environ.get("USAGEWATCH_SHARED_DIR") or ROOT.parent / "shared") / "oracles" / "connectwise"
DOCUMENT = ORACLE_DIR / "connectwise-openapi.mock.json"
# The document's server is https://na.myconnectwise.net/v4_6_release/apis/3.0; the simulator serves that codebase.
HOST = "https://na.myconnectwise.net"

# openapi-core is imported by the tests that use it: every test worker collects this module, and importing it here
# cost each of them half a second.
pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("openapi_core") is None,
        reason="openapi-core is not installed (requirements-dev.txt)",
    ),
    pytest.mark.skipif(
        not DOCUMENT.is_file(),
        reason=f"ConnectWise OpenAPI oracle not found at {DOCUMENT} (it lives in shared/ beside the repository, "
        "or set USAGEWATCH_SHARED_DIR); the contract test needs it",
    ),
]


@pytest.fixture(scope="module")
def oracle() -> Any:
    from openapi_core import Config, OpenAPI

    # The document's media type is ConnectWise's own JSON type; openapi-core knows only application/json by name.
    def parse(value: bytes, **_parameters: str) -> Any:
        return json.loads(value)

    config = Config(extra_media_type_deserializers={"application/vnd.connectwise.com+json": parse})
    return OpenAPI.from_dict(json.loads(DOCUMENT.read_text()), config=config)


@pytest.fixture
def sim() -> Iterator[ConnectWiseSimulator]:
    redactor.clear()
    with ConnectWiseSimulator() as simulator:
        yield simulator


def as_openapi(request: SimRequest, response: SimResponse) -> tuple[Any, Any]:
    from openapi_core.testing import MockRequest, MockResponse

    headers = dict(request.headers)
    mock_request = MockRequest(
        HOST,
        request.method,
        request.path,
        args=request.query,
        headers=headers,
        data=request.body or None,
        content_type=request.header("Content-Type") or "application/json",
    )
    body = response.encoded()
    content_type = response.headers.get("Content-Type", "application/json")
    return mock_request, MockResponse(
        body, status_code=response.status, headers=response.headers, content_type=content_type
    )


def validate_all(oracle: Any, sim: ConnectWiseSimulator) -> set[str]:
    """Validate every API exchange; return the operations seen ("GET /finance/agreements", ...)."""
    seen: set[str] = set()
    problems: list[str] = []
    for request, response in sim.exchanges:
        if request.path.startswith("/login/"):
            continue  # codebase discovery is outside the API and its document
        mock_request, mock_response = as_openapi(request, response)
        try:
            oracle.validate_request(mock_request)
            if response.status == 200:
                oracle.validate_response(mock_request, mock_response)
        except Exception as exc:  # openapi-core raises one of many error classes; each is a finding
            problems.append(
                f"{request.method} {request.path}: {type(exc).__name__}: {exc} {getattr(exc, '__cause__', '')}"
            )
        route = request.path.split("/apis/3.0", 1)[1]
        seen.add(f"{request.method} {_template(route)}")
    assert problems == [], "\n".join(problems)
    return seen


def _template(route: str) -> str:
    parts = ["{id}" if part.isdigit() else part for part in route.split("/")]
    return "/".join(parts)


def test_every_request_and_answer_matches_connectwise_document(oracle: Any, sim: ConnectWiseSimulator) -> None:
    companies = [sim.add_company(f"C{n:03d}", f'Client "{n}" & Söhne') for n in range(5)]
    agreements = [sim.add_agreement(company, f"Managed {n}") for n, company in enumerate(companies)]
    sim.add_agreement(companies[0], "Old", cancelled=True)
    for n, agreement in enumerate(agreements):
        sim.add_addition(agreement, "GZ-ENDPOINT", Decimal(n * 10) + Decimal("0.5"), unit_price=Decimal("3.25"))
        sim.add_addition(agreement, 'M365 "E3"', n + 1, bill="DoNotBill", cancelled="2026-11-30")
    connection = parse_connection(sim.connection())
    client = ConnectWiseClient(connection, page_size=2)  # several pages: Link-followed requests are validated too

    assert client.check().version == sim.version
    assert len(list(client.companies())) == 5
    active = list(client.active_agreements())
    lines = [line for agreement in active for line in split_lines(client.lines(agreement))[0]]
    assert len(lines) == 10
    first = LineRef(agreements[0], lines[0].ref.line_id)
    assert client.set_quantity(first, Decimal(12)).quantity == 12
    assert client.set_quantity(first, Decimal("12.75")).quantity == Decimal("12.75")
    assert client.read_line(first).quantity == Decimal("12.75")
    assert client.catalog_identifiers(["GZ-ENDPOINT", 'M365 "E3"', "missing"]) == {"GZ-ENDPOINT", 'M365 "E3"'}
    assert len(client.audit_trail(agreements[0])) == 2

    seen = validate_all(oracle, sim)
    assert seen == {
        "GET /system/info",
        "GET /company/companies",
        "GET /finance/agreements",
        "GET /finance/agreements/{id}/additions",
        "GET /finance/agreements/{id}/additions/{id}",
        "PATCH /finance/agreements/{id}/additions/{id}",
        "GET /procurement/catalog",
        "GET /system/audittrail",
    }
    assert sum(1 for r, _ in sim.exchanges if "pageId" in r.query) >= 4


def test_the_oracle_catches_a_bad_request_and_a_bad_answer(oracle: Any, sim: ConnectWiseSimulator) -> None:
    """Without this the test above could pass with an oracle that accepts anything."""
    path = "/v4_6_release/apis/3.0/finance/agreements/7/additions/9"
    headers = {"clientId": "x", "Authorization": "Basic eDp5"}
    bad_op = SimRequest(1, "PATCH", path, {}, headers, b'[{"op": "bump", "path": "quantity", "value": 1}]')
    no_client_id = SimRequest(2, "GET", path, {}, {"Authorization": "Basic eDp5"}, b"")
    answer = SimResponse(200, raw=b'[{"id": 1, "name": "no identifier"}]', headers={"Content-Type": sim_type()})
    companies = SimRequest(3, "GET", "/v4_6_release/apis/3.0/company/companies", {}, headers, b"")
    for request in (bad_op, no_client_id):
        with pytest.raises(Exception):  # noqa: B017 - any validation error will do
            oracle.validate_request(as_openapi(request, answer)[0])
    with pytest.raises(Exception):  # noqa: B017
        oracle.validate_response(*as_openapi(companies, answer))
    good = SimResponse(200, raw=b'[{"id": 1, "identifier": "A", "name": "A"}]', headers={"Content-Type": sim_type()})
    oracle.validate_response(*as_openapi(companies, good))


def sim_type() -> str:
    from tests.simulators.connectwise import CONTENT_TYPE

    return CONTENT_TYPE

"""The Keepnet simulator and the collector against Keepnet's own OpenAPI spec (tests/contract/keepnet/).

Every search answer the simulator gives while the real source collects (both listings, several pages,
a current and a past month, nested `children`, error answers) must validate against the spec's
`ServiceResult<CustomCompanyPagedResults<SearchCompanyDto>>`; every request body the source sends against
the endpoint's request schema and the vendor's `CompanySearchRequest` model.

OpenAPI 3.0 is not JSON Schema: `nullable: true` becomes a `"null"` type, `format: int32` a range, and
`format: date-time` is checked as the ISO 8601 that .NET writes (no offset for an unspecified DateTime).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest
import requests
from jsonschema import Draft7Validator, FormatChecker

from tests.simulators.base import SimRequest, SimResponse
from tests.simulators.keepnet import SEARCH_PATH, TOKEN_PATH, KeepnetSimulator, family, make_companies, nest
from usagewatch.model import CollectionRequest, Period, TenantUsage
from usagewatch.sources.keepnet import KeepnetSource

SPEC_FILE: Final = Path(__file__).resolve().parents[1] / "contract" / "keepnet" / "companies-search.openapi.json"
SPEC: Final = json.loads(SPEC_FILE.read_text())
OPERATION: Final = SPEC["paths"]["/api/companies/search"]["post"]
ANSWER_REF: Final = OPERATION["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
REQUEST_MODEL: Final = (
    "#/components/schemas/KeepnetLabs.DistributedService.Rest.Models.Company.Search.CompanySearchRequest"
)
INT32: Final = (-(2**31), 2**31 - 1)


def json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema as JSON Schema (draft 7)."""
    if isinstance(node, list):
        return [json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and "type" in node:
        out["type"] = [node["type"], "null"]
    if node.get("type") == "integer" and node.get("format") == "int32":
        out["minimum"], out["maximum"] = INT32
    return out


def _dotnet_date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value)
    return True


FORMATS: Final = FormatChecker(formats=())
FORMATS.checks("date-time", raises=ValueError)(_dotnet_date_time)


COMPONENTS: Final = json_schema(SPEC["components"])


def validator(ref: str, **override: Any) -> Draft7Validator:
    return Draft7Validator({"$ref": ref, "components": override or COMPONENTS}, format_checker=FORMATS)


def answer_problems(body: Any, *, error: bool = False) -> list[str]:
    """What is wrong with a search answer. `data` is a `$ref`, which OpenAPI 3.0 cannot mark nullable;
    .NET writes a result without data as `"data": null`, so an error answer may carry that."""
    components = COMPONENTS
    if error:
        components = copy.deepcopy(COMPONENTS)
        envelope = components["schemas"][ANSWER_REF.rsplit("/", 1)[1]]
        envelope["properties"]["data"] = {"anyOf": [envelope["properties"]["data"], {"type": "null"}]}
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator(ANSWER_REF, **components).iter_errors(body)
    ]


def camel(node: Any) -> Any:
    """Keys with a lower-case first letter: ASP.NET binds JSON names case-insensitively, the spec's
    generated model spells them camelCase."""
    if isinstance(node, list):
        return [camel(item) for item in node]
    if isinstance(node, dict):
        return {key[:1].lower() + key[1:]: camel(value) for key, value in node.items()}
    return node


class RecordingKeepnet(KeepnetSimulator):
    """Keeps every search answer it gives."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers: list[SimResponse] = []

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        if request.path == SEARCH_PATH:
            with self._lock:
                self.answers.append(response)
        return response


def reseller_tree() -> list[dict[str, Any]]:
    """Companies at the top, a sub-reseller with companies of its own (one itself a reseller), over-limit
    and unlimited companies among both."""
    top = make_companies(14, seed=31, over_limit=2, unlimited=1, prefix="top")
    managed = make_companies(5, seed=32, over_limit=1, unlimited=1, prefix="sub")
    nest(top[2], managed[0], nest(managed[1], managed[2]), managed[3])
    nest(top[9], managed[4])
    return top


@pytest.fixture
def sim() -> Iterator[RecordingKeepnet]:
    companies = reseller_tree()
    running = RecordingKeepnet(companies=companies, page_cap=4, current_month="2026-12")
    everyone = [member for row in companies for member in family(row)]
    running.set_monthly_users("2026-10", {c["companyResourceId"]: i for i, c in enumerate(everyone)})
    running.start()
    try:
        yield running
    finally:
        running.stop()


def collect(sim: KeepnetSimulator, period: Period) -> list[Any]:
    source = KeepnetSource()
    account = source.parse_account(
        {"account_id": "kn", "base_url": sim.url, "client_id": "demo-client", "client_secret": "demo-secret"}
    )
    request = CollectionRequest(period=period, as_of=datetime(2026, 12, 3, 6, tzinfo=UTC), period_explicit=True)
    return list(source.collect(account, request))


def test_every_search_answer_the_simulator_gives_matches_the_spec(sim: RecordingKeepnet) -> None:
    current = collect(sim, Period(2026, 12))
    past = collect(sim, Period(2026, 10))

    assert all(isinstance(r, TenantUsage) for r in current + past)
    assert len(current) == len(past) == 19  # 14 at the top, 5 nested
    october = sim.monthly_users["2026-10"]
    assert {r.tenant.tenant_id: [(x.metric, x.value) for x in r.records] for r in past} == {
        cid: [("monthly_users", n)] for cid, n in october.items()
    }
    ok = [a for a in sim.answers if a.status == 200]
    assert len(ok) == len(sim.answers) == 1 + 4 + 4  # the verdict listing (now only), 4 pages of 4, twice
    for answer in ok:
        assert answer_problems(answer.body) == []
    nested = [member for answer in ok for row in answer.body["data"]["results"] for member in family(row)[1:]]
    assert {c["companyResourceId"].split("-")[0] for c in nested} == {"sub"}
    assert any(child["children"] for child in nested)  # two levels deep: SearchCompanyDto inside children


@pytest.mark.parametrize(
    "fault",
    [
        {"pageNumber": 0},  # 400 INPUT_ERROR with the validation messages
        {"filter": None},
    ],
)
def test_error_answers_match_the_spec_envelope(sim: RecordingKeepnet, fault: dict[str, Any]) -> None:
    token = requests.post(
        sim.url + TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"},
        timeout=5,
    ).json()["access_token"]
    body = {"pageNumber": 1, "pageSize": 10, "orderBy": "CreateTime", "ascending": False, **fault}
    answer = requests.post(sim.url + SEARCH_PATH, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5)

    assert answer.status_code == 400
    assert answer.json()["status"] == "INPUT_ERROR"
    assert answer_problems(answer.json(), error=True) == []
    assert answer_problems(answer.json()) != []  # only because of `"data": null`


def test_every_request_the_source_sends_matches_the_spec(sim: RecordingKeepnet) -> None:
    collect(sim, Period(2026, 12))
    collect(sim, Period(2026, 10))
    endpoint = Draft7Validator(json_schema(OPERATION["requestBody"]["content"]["application/json"]["schema"]))
    model = validator(REQUEST_MODEL)

    bodies = sim.search_bodies()
    assert bodies
    for body in bodies:
        assert [e.message for e in endpoint.iter_errors(body)] == []
        assert [e.message for e in model.iter_errors(camel(body))] == []
        assert body["isClustered"] is False  # the flat listing: every company is a row of its own


def test_the_schema_check_catches_what_a_real_answer_would_not_send(sim: RecordingKeepnet) -> None:
    collect(sim, Period(2026, 12))
    good = next(a.body for a in sim.answers if a.body["data"]["results"])
    assert answer_problems(good) == []

    def broken(change: Any) -> list[str]:
        body = copy.deepcopy(good)
        change(body["data"]["results"][0], body)
        return answer_problems(body)

    assert broken(lambda row, _: row.update(numberOfUsers=250))  # the spec says string
    assert broken(lambda row, _: row.update(targetUserCount="240"))
    assert broken(lambda row, _: row.update(targetUserCount=2**31))  # int32
    assert broken(lambda row, _: row.update(createTime="yesterday"))
    assert broken(lambda row, _: row.update(somethingNew=1))  # additionalProperties: false
    assert broken(lambda row, _: row.update(children=[{"companyName": "x", "licenseCount": 3}]))
    assert broken(lambda row, _: row.update(children="none"))
    assert broken(lambda _, body: body["data"].update(totalNumberOfRecords=None))
    assert broken(lambda _, body: body.update(isSuccess=True))  # that envelope is not the spec's
    assert not broken(lambda row, _: row.update(children=None, tags=None, numberOfUsers=None))  # nullable

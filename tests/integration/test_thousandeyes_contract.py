"""The ThousandEyes simulator against the vendor's own published schema (issue 12, point 1).

The oracle is Cisco's generated v7 SDK (`thousandeyes-sdk-usage`, `thousandeyes-sdk-administrative`,
test-only dependencies): every answer the simulator gives validates against the SDK's pydantic model in
strict mode, carries no field the spec does not define, carries every field it does define (with the
values a real account would have), and the SDK's own API client, pointed at the simulator, reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3
from pydantic import BaseModel
from thousandeyes_sdk.administrative import AccountGroupsApi
from thousandeyes_sdk.administrative.models import AccountGroupInfo, AccountGroups
from thousandeyes_sdk.administrative.models import Error as AdminError
from thousandeyes_sdk.administrative.models import UnauthorizedError as AdminUnauthorizedError
from thousandeyes_sdk.core import ApiClient, Configuration
from thousandeyes_sdk.core.exceptions import ApiException
from thousandeyes_sdk.usage import QuotasApi, UsageApi
from thousandeyes_sdk.usage.models import (
    Error,
    ExpandUsageOptions,
    Quotas,
    UnauthorizedError,
    Usage,
    UsageDetails,
    ValidationError,
)

from tests.simulators.thousandeyes import EXPAND_ARRAYS, ThousandEyesSimulator

TOKEN = "te-demo-token"
NO_BILLING = "te-no-billing"
NO_QUOTAS = "te-no-quotas"
OPTIONS = [option.value for option in ExpandUsageOptions if option is not ExpandUsageOptions.UNKNOWN]
ARRAY_FIELDS = {name for name, info in UsageDetails.model_fields.items() if "List" in str(info.annotation)}


@pytest.fixture(scope="module")
def server() -> Iterator[ThousandEyesSimulator]:
    with ThousandEyesSimulator() as simulator:
        assert isinstance(simulator, ThousandEyesSimulator)
        yield simulator


@pytest.fixture
def sim(server: ThousandEyesSimulator) -> ThousandEyesSimulator:
    server.reset(tokens_without_billing=[NO_BILLING], tokens_without_quotas=[NO_QUOTAS])
    return server


def client(sim: ThousandEyesSimulator, token: str = TOKEN) -> ApiClient:
    # No retries: a 429 must reach the test, not be waited out by the SDK's rate-limit retry.
    retries = urllib3.Retry(total=0, raise_on_status=False)
    return ApiClient(Configuration(host=f"{sim.url}/v7", access_token=token, retries=retries))


def get(sim: ThousandEyesSimulator, path: str, token: str = TOKEN, **params: str) -> requests.Response:
    return requests.get(f"{sim.url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def strict[M: BaseModel](model: type[M], response: requests.Response) -> M:
    """The body validated by the SDK's model in strict mode (JSON types, no coercion)."""
    return model.model_validate_json(response.content, strict=True)


def extras(instance: BaseModel, path: str = "$") -> list[str]:
    """Every field the body carries that the spec's model does not define (its models allow extras)."""
    found = [f"{path}.{key}" for key in instance.model_extra or {}]
    for name in instance.model_fields_set:
        found += _walk(getattr(instance, name), f"{path}.{name}", extras)
    return found


def unset(instance: BaseModel, path: str = "$", *, skip: frozenset[str] = frozenset()) -> list[str]:
    """Every field the spec defines that the body leaves out (or sends as null), but those in `skip`
    (field names, at any depth). A HAL `Link`'s optional
    hints (templated, type, deprecation, ...) are for links that need them; a self link needs only href."""
    if type(instance).__name__ == "Link":
        skip = skip | (type(instance).model_fields.keys() - {"href"})
    found = [
        f"{path}.{name}"
        for name in type(instance).model_fields
        if name not in skip and (name not in instance.model_fields_set or getattr(instance, name) is None)
    ]
    for name in instance.model_fields_set:
        found += _walk(getattr(instance, name), f"{path}.{name}", lambda v, p: unset(v, p, skip=skip))
    return found


def _walk(value: Any, path: str, check: Callable[[BaseModel, str], list[str]]) -> list[str]:
    if isinstance(value, BaseModel):
        return check(value, path)
    if isinstance(value, list):
        return [item for index, entry in enumerate(value) for item in _walk(entry, f"{path}[{index}]", check)]
    return []


def as_json(model: BaseModel) -> Any:
    return json.loads(model.to_json())  # type: ignore[attr-defined]  # every SDK model has to_json


# --- /v7/usage -------------------------------------------------------------------------------------


def test_usage_with_every_expand_option_sends_every_field_the_spec_defines(sim: ThousandEyesSimulator) -> None:
    response = get(sim, "/v7/usage", aid="1234", expand=",".join(OPTIONS))
    assert response.status_code == 200
    usage = strict(Usage, response)
    assert extras(usage) == []
    assert unset(usage) == []
    details = usage.usage
    assert details is not None and details.quota is not None
    # Realistic, non-zero numbers where a real account has them (enterprise agents are "not in the plan"
    # of organisation 0: its quota is the spec's 0 of a non-legacy plan).
    for name, value in details.model_dump(exclude={"quota", "allocations", *ARRAY_FIELDS}).items():
        assert isinstance(value, int) and value > 0, name
    assert details.quota.enterprise_agents_included == 0
    assert details.quota.month_start is not None and details.quota.month_end is not None
    assert details.quota.month_start < details.quota.month_end


def test_usage_totals_are_the_sums_of_their_breakdown_rows(sim: ThousandEyesSimulator) -> None:
    details = strict(Usage, get(sim, "/v7/usage", aid="2345", expand=",".join(OPTIONS))).usage
    assert details is not None
    pairs = [
        (details.cloud_units_used, [t.cloud_units_used for t in details.tests or []]),
        (details.endpoint_agents_used, [e.endpoint_agents_used for e in details.endpoint_agents or []]),
        (
            details.endpoint_agents_essentials_used,
            [e.endpoint_agents_essentials_used for e in details.endpoint_agents_essentials or []],
        ),
        (
            details.endpoint_agents_embedded_used,
            [e.endpoint_agents_embedded_used for e in details.endpoint_agents_embedded or []],
        ),
        (details.enterprise_agents_used, [e.enterprise_agents_used for e in details.enterprise_agents or []]),
        (details.enterprise_units_used, [u.enterprise_units_used for u in details.enterprise_agent_units or []]),
    ]
    for total, rows in pairs:
        assert rows and total == sum(row or 0 for row in rows)


def test_usage_without_expand_has_no_breakdown_array(sim: ThousandEyesSimulator) -> None:
    usage = strict(Usage, get(sim, "/v7/usage", aid="1234"))
    assert extras(usage) == []
    assert unset(usage, skip=frozenset(ARRAY_FIELDS)) == []
    assert usage.usage is not None
    assert {name for name in ARRAY_FIELDS if getattr(usage.usage, name) is not None} == set()


@pytest.mark.parametrize("option", OPTIONS)
def test_usage_with_one_expand_option_adds_exactly_its_array(sim: ThousandEyesSimulator, option: str) -> None:
    array, _attribute = EXPAND_ARRAYS[option]
    usage = strict(Usage, get(sim, "/v7/usage", aid="1234", expand=option))
    assert extras(usage) == []
    assert usage.usage is not None
    present = {info.alias or name for name, info in UsageDetails.model_fields.items() if name in ARRAY_FIELDS}
    sent = {alias for alias in present if getattr(usage.usage, _field(alias)) is not None}
    assert sent == {array}
    assert unset(usage, skip=frozenset(ARRAY_FIELDS - {_field(array)})) == []


def _field(alias: str) -> str:
    return next(name for name, info in UsageDetails.model_fields.items() if (info.alias or name) == alias)


@pytest.mark.parametrize("expand", [None, [ExpandUsageOptions.TEST], [ExpandUsageOptions(o) for o in OPTIONS]])
def test_the_sdk_client_reads_usage_as_sent(
    sim: ThousandEyesSimulator, expand: list[ExpandUsageOptions] | None
) -> None:
    read = UsageApi(client(sim)).get_usage(aid="2345", expand=expand)
    assert isinstance(read, Usage)
    raw = get(sim, "/v7/usage", aid="2345", **({"expand": ",".join(o.value for o in expand)} if expand else {}))
    assert as_json(read) == raw.json()
    assert sim.requests[-2].query.get("expand") == ([",".join(o.value for o in expand)] if expand else None)


# --- /v7/account-groups ------------------------------------------------------------------------------


def test_account_groups_send_every_field_of_account_group_info_including_org_id(sim: ThousandEyesSimulator) -> None:
    groups = strict(AccountGroups, get(sim, "/v7/account-groups"))
    assert extras(groups) == []
    assert unset(groups) == []
    rows = groups.account_groups or []
    assert len(rows) == sum(len(org.groups) for org in sim.orgs)
    by_org = {(row.organization_name, row.org_id) for row in rows}
    assert by_org == {(org.name, org.org_id) for org in sim.orgs}
    assert [row.aid for row in rows if row.is_current_account_group] == [sim.orgs[0].lowest_aid]


def test_org_id_is_optional_in_the_spec_and_the_simulator_can_leave_it_out(sim: ThousandEyesSimulator) -> None:
    sim.org_ids = False
    groups = strict(AccountGroups, get(sim, "/v7/account-groups"))
    assert {f"$.account_groups[{i}].org_id" for i in range(len(groups.account_groups or []))} == set(unset(groups))
    assert AccountGroupInfo.model_fields["org_id"].is_required() is False


def test_the_sdk_client_reads_account_groups_as_sent(sim: ThousandEyesSimulator) -> None:
    read = AccountGroupsApi(client(sim)).get_account_groups()
    assert isinstance(read, AccountGroups)
    assert as_json(read) == get(sim, "/v7/account-groups").json()


# --- /v7/quotas --------------------------------------------------------------------------------------


def test_quotas_send_every_field_and_name_each_organisation_and_account_group(sim: ThousandEyesSimulator) -> None:
    quotas = strict(Quotas, get(sim, "/v7/quotas"))
    assert extras(quotas) == []
    assert unset(quotas) == []
    entries = quotas.quotas or []
    assert [(e.organization_quota.org_id, e.organization_quota.value) for e in entries if e.organization_quota] == [
        (org.org_id, org.msp_quota) for org in sim.orgs
    ]
    assert [{q.aid: q.value for q in e.account_group_quotas or []} for e in entries] == [
        org.group_quotas for org in sim.orgs
    ]
    assert all(value > 0 for org in sim.orgs for value in org.group_quotas.values())


def test_the_sdk_client_reads_quotas_as_sent(sim: ThousandEyesSimulator) -> None:
    read = QuotasApi(client(sim)).get_quotas()
    assert isinstance(read, Quotas)
    assert as_json(read) == get(sim, "/v7/quotas").json()


# --- error bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "token", "params", "status", "model"),
    [
        ("/v7/usage", "wrong-token", {}, 401, UnauthorizedError),
        ("/v7/usage", TOKEN, {"aid": "999999"}, 400, ValidationError),
        ("/v7/usage", NO_BILLING, {}, 403, Error),
        ("/v7/quotas", NO_QUOTAS, {}, 403, Error),
        ("/v7/usage.json", TOKEN, {}, 404, Error),
        ("/v7/account-groups", "wrong-token", {}, 401, AdminUnauthorizedError),
        ("/v7/account-groups", TOKEN, {"aid": "999999"}, 400, ValidationError),
    ],
)
def test_error_bodies_match_the_spec_models(
    sim: ThousandEyesSimulator, path: str, token: str, params: dict[str, str], status: int, model: type[BaseModel]
) -> None:
    response = get(sim, path, token, **params)
    assert response.status_code == status
    body = strict(model, response)
    assert extras(body) == []
    assert unset(body) == []


def test_a_429_body_matches_the_spec_error_model(sim: ThousandEyesSimulator) -> None:
    sim.rate_limit_per_minute = 1
    assert get(sim, "/v7/usage", aid="1234").status_code == 200
    response = get(sim, "/v7/usage", aid="1234")
    assert response.status_code == 429
    body = strict(Error, response)
    assert (extras(body), unset(body), body.status) == ([], [], 429)
    assert int(response.headers["X-Organization-Rate-Limit-Remaining"]) == 0


@pytest.mark.parametrize(
    ("token", "call", "status", "model"),
    [
        ("wrong-token", lambda c: UsageApi(c).get_usage(), 401, UnauthorizedError),
        (TOKEN, lambda c: UsageApi(c).get_usage(aid="999999"), 400, ValidationError),
        (NO_BILLING, lambda c: UsageApi(c).get_usage(aid="1234"), 403, Error),
        (NO_QUOTAS, lambda c: QuotasApi(c).get_quotas(), 403, Error),
        ("wrong-token", lambda c: AccountGroupsApi(c).get_account_groups(), 401, AdminUnauthorizedError),
    ],
)
def test_the_sdk_client_deserialises_error_bodies(
    sim: ThousandEyesSimulator, token: str, call: Any, status: int, model: type[BaseModel]
) -> None:
    with pytest.raises(ApiException) as raised:
        call(client(sim, token))
    assert raised.value.status == status
    assert type(raised.value.data).__name__ == model.__name__
    if status == 403:
        assert isinstance(raised.value.data, AdminError | Error)
        assert raised.value.data.detail

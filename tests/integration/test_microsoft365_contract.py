"""The Microsoft 365 simulator against Microsoft's own schema (issue 18, "Oracle").

The oracle is Microsoft's Graph Python SDK (`msgraph-sdk`, test-only), generated from Graph's metadata: every
Graph answer the simulator gives is parsed with the SDK's own JSON parse node (kiota's) into its models
(`SubscribedSku`, `LicenseUnitsDetail`, `DelegatedAdminCustomer`, their collection responses, `ODataError`).
That parse keeps any field the schema lacks in `additional_data` and turns a mistyped value into None, so: no
unknown field, and every field our source reads present with its type. Our own mapping then reads the same
answer and must agree with the SDK's values. Token answers (not Graph, so not in the SDK) are checked against the
fields Microsoft's identity platform documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TypeVar
from uuid import UUID

import pytest
import requests
from kiota_abstractions.serialization import Parsable
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.delegated_admin_customer import DelegatedAdminCustomer
from msgraph.generated.models.delegated_admin_customer_collection_response import (
    DelegatedAdminCustomerCollectionResponse,
)
from msgraph.generated.models.license_units_detail import LicenseUnitsDetail
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscribed_sku import SubscribedSku
from msgraph.generated.models.subscribed_sku_collection_response import SubscribedSkuCollectionResponse

from tests.simulators.microsoft365 import (
    CLIENT_ID,
    CLIENT_SECRET,
    CUSTOMERS_PATH,
    GRAPH_SCOPE,
    PARTNER,
    SKUS_PATH,
    Customer,
    Microsoft365Simulator,
    make_customers,
    sku,
)
from usagewatch.model import Period, Tenant, Window
from usagewatch.sources.microsoft365.mapping import customer_tenant, parse_page, tenant_records

P = TypeVar("P", bound=Parsable)
CAPABILITY_STATUSES = {"Enabled", "Warning", "Suspended", "Deleted", "LockedOut"}
APPLIES_TO = {"User", "Company"}
TOKEN_FIELDS = {"token_type", "expires_in", "ext_expires_in", "access_token"}
ENTRA_ERROR_FIELDS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}
NOV = Window.month(Period(2026, 11))


def parse(model: type[P], body: bytes) -> P:
    """The SDK's own parse of one answer."""
    node = JsonParseNodeFactory().get_root_parse_node("application/json", body)
    parsed = node.get_object_value(model)
    assert isinstance(parsed, model)
    return parsed


def no_unknown_fields(model: Any, allowed: frozenset[str] = frozenset()) -> None:
    assert set(model.additional_data) <= allowed, (
        f"{type(model).__name__}: not in Graph's schema: {model.additional_data}"
    )


@pytest.fixture(scope="module")
def sim() -> Iterator[Microsoft365Simulator]:
    customers = make_customers(7, unused=2, over=1)
    customers[3].skus.append(
        sku(
            "SPE_E5",
            "06ebc4ee-1bb5-47dd-8120-11324bc54e06",
            tenant_id=customers[3].tenant_id,
            consumed=0,
            enabled=0,
            suspended=5,
            locked_out=1,
            status="Suspended",
        )
    )
    customers.append(Customer("0e9c6a1f-7d2b-4c3a-9e8f-1a2b3c4d5e6f", "Empty Tenant", []))
    customers.append(Customer("1f0d7b2a-8e3c-4d4b-af90-2b3c4d5e6f70", "No Permission", [], can_read_skus=False))
    with Microsoft365Simulator(customers=customers, page_cap=3, sku_page_cap=2) as simulator:
        assert isinstance(simulator, Microsoft365Simulator)
        yield simulator


def token(sim: Microsoft365Simulator, tenant: str, **form: str) -> requests.Response:
    body = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scope": GRAPH_SCOPE,
        **form,
    }
    return requests.post(f"{sim.url}/{tenant}/oauth2/v2.0/token", data=body, timeout=5)


def bearer(sim: Microsoft365Simulator, tenant: str) -> dict[str, str]:
    answer = token(sim, tenant)
    assert answer.status_code == 200
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def pages(sim: Microsoft365Simulator, tenant: str, path: str, params: dict[str, str] | None = None) -> list[bytes]:
    headers = bearer(sim, tenant)
    url: str | None = f"{sim.url}{path}"
    bodies = []
    while url is not None:
        answer = requests.get(url, headers=headers, params=params if not bodies else None, timeout=5)
        assert answer.status_code == 200, answer.text
        bodies.append(answer.content)
        url = json.loads(answer.content).get("@odata.nextLink")
    return bodies


def test_token_answers_carry_the_fields_microsoft_documents(sim: Microsoft365Simulator) -> None:
    ok = token(sim, PARTNER).json()
    assert set(ok) == TOKEN_FIELDS and ok["token_type"] == "Bearer"
    assert isinstance(ok["expires_in"], int) and isinstance(ok["access_token"], str)
    for tenant, form, status, code in [
        (PARTNER, {"client_secret": "wrong"}, 401, 7000215),
        ("9d9d9d9d-0000-4000-8000-000000000000", {}, 400, 90002),
        (PARTNER, {"scope": "https://graph.microsoft.com/User.Read"}, 400, 70011),
    ]:
        answer = token(sim, tenant, **form)
        body = answer.json()
        assert answer.status_code == status and set(body) == ENTRA_ERROR_FIELDS
        assert body["error_codes"] == [code] and body["error_description"].startswith(f"AADSTS{code}: ")
        assert body["error_uri"].endswith(f"code={code}")


def test_every_listing_page_parses_as_delegated_admin_customers(sim: Microsoft365Simulator) -> None:
    bodies = pages(sim, PARTNER, CUSTOMERS_PATH, {"$top": "3"})
    assert len(bodies) == 3  # nine customers, three a page
    seen: list[DelegatedAdminCustomer] = []
    for number, body in enumerate(bodies, start=1):
        page = parse(DelegatedAdminCustomerCollectionResponse, body)
        no_unknown_fields(page, frozenset({"@odata.context"}))
        assert (page.odata_next_link is not None) == (number < len(bodies))
        assert page.value is not None
        for row in page.value:
            no_unknown_fields(row, frozenset({"@odata.etag"}))
            assert isinstance(row.tenant_id, str) and UUID(row.tenant_id)
            assert isinstance(row.display_name, str) and row.display_name
            assert row.odata_type == "#microsoft.graph.delegatedAdminCustomer"
            seen.append(row)
        ours = parse_page(json.loads(body), what="listing")
        assert [customer_tenant(r) for r in ours.rows] == [
            Tenant(r.tenant_id.lower(), r.display_name) for r in page.value if r.tenant_id and r.display_name
        ]
    assert [r.tenant_id for r in seen] == [c.tenant_id for c in sim.customers]


def test_every_subscribed_skus_page_parses_and_our_mapping_reads_the_sdk_values(sim: Microsoft365Simulator) -> None:
    checked = 0
    for customer in sim.customers:
        if not customer.can_read_skus:
            continue
        rows: list[Any] = []
        models: list[SubscribedSku] = []
        for body in pages(sim, customer.tenant_id, SKUS_PATH):
            page = parse(SubscribedSkuCollectionResponse, body)
            no_unknown_fields(page, frozenset({"@odata.context"}))
            assert page.value is not None
            models.extend(page.value)
            rows.extend(parse_page(json.loads(body), what="skus").rows)
        for model in models:
            no_unknown_fields(model)
            assert isinstance(model.sku_id, UUID) and isinstance(model.sku_part_number, str)
            assert isinstance(model.consumed_units, int)
            assert model.capability_status in CAPABILITY_STATUSES and model.applies_to in APPLIES_TO
            units = model.prepaid_units
            assert isinstance(units, LicenseUnitsDetail)
            no_unknown_fields(units)
            for value in (units.enabled, units.suspended, units.warning, units.locked_out):
                assert isinstance(value, int) and value >= 0
            assert model.service_plans and all(p.service_plan_name for p in model.service_plans)
        tenant = Tenant(customer.tenant_id, customer.display_name)
        records = tenant_records(tenant, rows, account_id="m365", window=NOV).records
        by_sku = {str(m.sku_id): m for m in models}
        assert len(records) == len(by_sku)
        for record in records:
            assert record.attributes is not None
            model = by_sku[str(record.attributes["sku_id"])]
            assert (record.value, record.quota) == (model.consumed_units, model.prepaid_units.enabled)  # type: ignore[union-attr]
            assert record.attributes["capability_status"] == model.capability_status
            assert record.attributes["suspended"] == model.prepaid_units.suspended  # type: ignore[union-attr]
            assert record.attributes["locked_out"] == model.prepaid_units.locked_out  # type: ignore[union-attr]
        checked += len(records)
    assert checked >= 10


@pytest.mark.parametrize("fault", ["throttled", "denied", "expired"])
def test_graph_error_answers_parse_as_odata_errors(fault: str) -> None:
    customers = make_customers(1)
    customers[0].can_read_skus = fault != "denied"
    with Microsoft365Simulator(customers=customers, tenant_rps=1, retry_after=3, token_ttl=3600) as sim:
        assert isinstance(sim, Microsoft365Simulator)
        headers = bearer(sim, customers[0].tenant_id)
        if fault == "expired":
            sim.expire_tokens()
        if fault == "throttled":
            requests.get(f"{sim.url}{SKUS_PATH}", headers=headers, timeout=5)
        answer = requests.get(f"{sim.url}{SKUS_PATH}", headers=headers, timeout=5)
    expected = {
        "throttled": (429, "TooManyRequests"),
        "denied": (403, "Authorization_RequestDenied"),
        "expired": (401, "InvalidAuthenticationToken"),
    }[fault]
    assert answer.status_code == expected[0]
    error = parse(ODataError, answer.content).error
    assert error is not None and error.code == expected[1] and error.message
    assert error.inner_error is not None
    if fault == "throttled":
        assert answer.headers["Retry-After"] == "3"


def test_the_oracle_catches_a_mistyped_or_unknown_field() -> None:
    """The checks above can fail: a count sent as text parses to None, a field Graph lacks lands in additional_data."""
    row = sku("SPB", "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", tenant_id=PARTNER, consumed=3, enabled=5)
    mistyped = parse(SubscribedSku, json.dumps({**row, "consumedUnits": "3"}).encode())
    assert mistyped.consumed_units is None
    invented = parse(SubscribedSku, json.dumps({**row, "unusedUnits": 2}).encode())
    with pytest.raises(AssertionError, match="unusedUnits"):
        no_unknown_fields(invented)

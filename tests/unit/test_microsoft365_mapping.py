"""Microsoft 365 mapping: metric names from skuPartNumber, collisions, the records and their attributes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulators.microsoft365 import sku
from usagewatch.errors import VendorDataError
from usagewatch.model import Period, Tenant, Window
from usagewatch.redaction import MASK
from usagewatch.sources.microsoft365.mapping import base_metric, metric_names, parse_page, tenant_records
from usagewatch.text import clip

TENANT = Tenant("6513270e-269e-4d37-b2a7-4de452e6b438", "Contoso")
NOV = Window.month(Period(2026, 11))
SPB = "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46"


@pytest.mark.parametrize(
    ("part", "metric"),
    [
        ("SPB", "spb"),
        ("O365_BUSINESS_PREMIUM", "o365_business_premium"),
        ("Microsoft_365_Copilot", "microsoft_365_copilot"),
        ("Microsoft 365 E5 (no Teams)", "microsoft_365_e5_no_teams"),
        ("__POWER-BI..PRO__", "power_bi_pro"),
        ("Ünïcode—SKU", "n_code_sku"),
        ("---", "sku"),
        ("A" * 80, "a" * 64),
    ],
)
def test_the_metric_is_the_part_number_lower_cased_with_other_characters_as_underscores(part: str, metric: str) -> None:
    assert base_metric(part) == metric


def test_a_collision_keeps_the_plain_name_for_the_sku_already_written_so_and_suffixes_the_others() -> None:
    names = metric_names(
        [
            ("a403ebcc-fae0-4ca2-8c8c-7a907fd6c235", "POWER_BI_STANDARD"),
            ("11111111-2222-4333-8444-555555555555", "Power BI Standard"),
            ("22222222-3333-4444-8555-666666666666", "POWER-BI-STANDARD"),
        ]
    )
    assert names == {
        "a403ebcc-fae0-4ca2-8c8c-7a907fd6c235": "power_bi_standard",
        "11111111-2222-4333-8444-555555555555": "power_bi_standard_11111111",
        "22222222-3333-4444-8555-666666666666": "power_bi_standard_22222222",
    }
    # Stable: the same SKU keeps its name whatever else the tenant holds, and in whatever order.
    alone = metric_names([("a403ebcc-fae0-4ca2-8c8c-7a907fd6c235", "POWER_BI_STANDARD")])
    assert alone == {"a403ebcc-fae0-4ca2-8c8c-7a907fd6c235": "power_bi_standard"}
    again = metric_names(
        [
            ("22222222-3333-4444-8555-666666666666", "POWER-BI-STANDARD"),
            ("a403ebcc-fae0-4ca2-8c8c-7a907fd6c235", "POWER_BI_STANDARD"),
        ]
    )
    assert again["22222222-3333-4444-8555-666666666666"] == "power_bi_standard_22222222"


def test_two_part_numbers_differing_only_in_case_are_both_suffixed() -> None:
    names = metric_names(
        [("aaaaaaaa-0000-4000-8000-000000000000", "EMS"), ("bbbbbbbb-0000-4000-8000-000000000000", "ems")]
    )
    assert sorted(names.values()) == ["ems_aaaaaaaa", "ems_bbbbbbbb"]


def test_one_record_per_sku_with_the_quota_and_the_attributes() -> None:
    rows = [
        sku("SPB", SPB, tenant_id=TENANT.tenant_id, consumed=12, enabled=10, warning=2, status="Warning"),
        sku(
            "FLOW_FREE",
            "f30db892-07e9-47e9-837c-80727f46fd3d",
            tenant_id=TENANT.tenant_id,
            consumed=3,
            enabled=10000,
            applies_to="Company",
        ),
        sku("SPB", SPB.upper(), tenant_id=TENANT.tenant_id, consumed=99, enabled=99),  # the same SKU listed twice
    ]
    usage = tenant_records(TENANT, rows, account_id="m365", window=NOV)
    assert [(r.metric, r.value, r.quota, r.unit) for r in usage.records] == [
        ("flow_free", 3, 10000, "seats"),
        ("spb", 12, 10, "seats"),
    ]
    assert usage.records[1].attributes == {
        "sku_id": SPB,
        "sku_part_number": "SPB",
        "suspended": 0,
        "warning": 2,
        "locked_out": 0,
        "capability_status": "Warning",
        "applies_to": "User",
    }
    assert usage.records[0].attributes is not None and usage.records[0].attributes["applies_to"] == "Company"


def test_absent_optional_fields_are_left_out_of_the_attributes() -> None:
    row: dict[str, Any] = {"skuId": SPB, "skuPartNumber": "SPB", "consumedUnits": 1, "prepaidUnits": {"enabled": 2}}
    (record,) = tenant_records(TENANT, [row], account_id="m365", window=NOV).records
    assert record.attributes == {"sku_id": SPB, "sku_part_number": "SPB"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"consumedUnits": "5"}, "consumedUnits must be an integer, got str"),
        ({"consumedUnits": -1}, "consumedUnits out of range"),
        ({"prepaidUnits": None}, "prepaidUnits must be an object, got nothing"),
        ({"prepaidUnits": {"enabled": True}}, "prepaidUnits.enabled must be an integer, got bool"),
        ({"prepaidUnits": {"enabled": 1, "warning": "x"}}, "prepaidUnits.warning must be an integer"),
        ({"skuPartNumber": ""}, "skuPartNumber must be a non-empty string"),
        ({"skuId": None}, r"value\[0\]: skuId must be a non-empty string, got nothing"),
    ],
)
def test_a_malformed_sku_names_the_sku_and_field(change: dict[str, Any], message: str) -> None:
    row = {**sku("SPB", SPB, tenant_id=TENANT.tenant_id, consumed=1, enabled=1), **change}
    with pytest.raises(VendorDataError, match=message):
        tenant_records(TENANT, [row], account_id="m365", window=NOV)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "expected a JSON object, got list"),
        ({"value": None}, "`value` must be a list, got nothing"),
        ({"value": [], "@odata.nextLink": 3}, "`@odata.nextLink` must be a URL"),
    ],
)
def test_a_malformed_collection_page_is_refused(payload: object, message: str) -> None:
    with pytest.raises(VendorDataError, match=message):
        parse_page(payload, what="subscribedSkus page 1")


def test_a_quoted_access_token_is_masked_in_what_the_source_says() -> None:
    token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXBhcnQ"
    said = clip(f"Graph said: token {token} is expired")
    assert token not in said and "eyJ" not in said and MASK in said

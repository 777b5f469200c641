"""Keepnet: pure mapping of a SearchCompanyDto, quota parsing, envelopes, paging fields, request body."""

from __future__ import annotations

import json
from typing import Any

import pytest

from usagewatch.errors import ConfigError, VendorApiError, VendorDataError
from usagewatch.model import ListingGap, Period, Window
from usagewatch.sources.keepnet import (
    MAX_CHILD_DEPTH,
    ChildrenUnreadable,
    KeepnetSource,
    Member,
    children_gap,
    company_id,
    company_records,
    family,
    parse_envelope,
    parse_quota,
    parse_search_page,
    search_body,
    vendor_messages,
)

WINDOW = Window.month(Period(2026, 10))


def company(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "companyName": "Acme Logistics GmbH",
        "companyResourceId": "c-42",
        "resellerName": "Demo MSP",
        "industryName": "Finance",
        "licenseTypeName": "Enterprise",
        "isNumberOfUsersLimited": True,
        "numberOfUsers": "250",
        "licenceExpired": False,
        "licenseEndDate": "2027-01-01T00:00:00",
        "createTime": "2024-01-15T09:00:00.000",
        "targetUserCount": 240,
        "inactiveTargetUserCount": 12,
        "deletedTargetUserCount": 3,
        "monthlyActiveUserCount": 17,
        "tags": ["vip"],
        "children": [],
    }
    base.update(overrides)
    return base


def by_metric(usage: Any) -> dict[str, Any]:
    return {r.metric: r for r in usage.records}


def test_company_maps_to_four_records() -> None:
    usage = company_records(company(), account_id="kn", window=WINDOW, exceeded_ids=set())
    assert usage.tenant.tenant_id == "c-42"
    assert usage.tenant.tenant_name == "Acme Logistics GmbH"
    assert usage.tenant.billed is True
    records = by_metric(usage)
    assert {m: r.value for m, r in records.items()} == {
        "monthly_users": 17,
        "target_users": 240,
        "inactive_target_users": 12,
        "deleted_target_users": 3,
    }
    for record in records.values():
        assert record.vendor == "keepnet"
        assert record.account_id == "kn"
        assert record.unit == "users"
        assert record.window == WINDOW
    assert records["target_users"].quota == 250
    assert records["target_users"].limit_exceeded is False
    for metric in ("monthly_users", "inactive_target_users", "deleted_target_users"):
        assert records[metric].quota is None
        assert records[metric].limit_exceeded is None


def test_limit_exceeded_comes_from_the_verdict_set() -> None:
    usage = company_records(company(), account_id="kn", window=WINDOW, exceeded_ids={"c-42"})
    assert by_metric(usage)["target_users"].limit_exceeded is True


def test_past_month_maps_to_monthly_users_only() -> None:
    # A past month's current values are not the month's: not written, and not even checked.
    row = company(targetUserCount="garbage", inactiveTargetUserCount=None)
    usage = company_records(row, account_id="kn", window=WINDOW, exceeded_ids={"c-42"}, current=False)
    assert [(r.metric, r.value, r.quota, r.limit_exceeded) for r in usage.records] == [
        ("monthly_users", 17, None, None)
    ]
    with pytest.raises(VendorDataError, match="monthlyActiveUserCount is missing"):
        company_records(
            company(monthlyActiveUserCount=None), account_id="kn", window=WINDOW, exceeded_ids=set(), current=False
        )


def test_child_company_carries_its_parent() -> None:
    usage = company_records(company(), account_id="kn", window=WINDOW, exceeded_ids=set(), parent_id="reseller-1")
    assert usage.tenant.parent_tenant_id == "reseller-1"
    assert usage.tenant.billed is True  # its counts are its own account's, not inside the parent's
    assert {r.tenant.parent_tenant_id for r in usage.records} == {"reseller-1"}


@pytest.mark.parametrize(
    ("limited", "number", "quota"),
    [
        (True, "250", 250),
        (True, " 1000 ", 1000),
        (True, "0", 0),
        (True, "1,500", 1500),
        (True, 300, 300),
        (True, "", None),
        (True, "Unlimited", None),
        (True, "-5", None),
        (True, "12.5", None),
        (True, None, None),
        (True, True, None),
        (False, "250", None),
        (None, "250", None),
        ("true", "250", None),
    ],
)
def test_quota_parsing(limited: object, number: object, quota: int | None) -> None:
    assert parse_quota(limited, number) == quota
    usage = company_records(
        company(isNumberOfUsersLimited=limited, numberOfUsers=number),
        account_id="kn",
        window=WINDOW,
        exceeded_ids=set(),
    )
    assert by_metric(usage)["target_users"].quota == quota


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("targetUserCount", "240", "company c-42: targetUserCount must be a number, got str"),
        ("monthlyActiveUserCount", None, "company c-42: monthlyActiveUserCount is missing"),
        ("inactiveTargetUserCount", -1, "company c-42: inactiveTargetUserCount out of range: -1"),
        ("deletedTargetUserCount", 10**16, "company c-42: deletedTargetUserCount out of range"),
        ("targetUserCount", True, "company c-42: targetUserCount must be a number, got bool"),
        ("targetUserCount", 3.5, "company c-42: targetUserCount must be a number, got float"),
        ("monthlyActiveUserCount", [1], "company c-42: monthlyActiveUserCount must be a number, got list"),
    ],
)
def test_bad_count_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(VendorDataError) as caught:
        company_records(company(**{field: value}), account_id="kn", window=WINDOW, exceeded_ids=set())
    assert str(caught.value).startswith(message)


def test_missing_count_field_names_it() -> None:
    row = company()
    del row["deletedTargetUserCount"]
    with pytest.raises(VendorDataError, match="deletedTargetUserCount is missing"):
        company_records(row, account_id="kn", window=WINDOW, exceeded_ids=set())


def test_integral_float_count_is_accepted() -> None:
    usage = company_records(company(targetUserCount=240.0), account_id="kn", window=WINDOW, exceeded_ids=set())
    value = by_metric(usage)["target_users"].value
    assert value == 240
    assert isinstance(value, int)


def test_names_unicode_long_and_missing() -> None:
    usage = company_records(
        company(companyName="株式会社サクラ Ørsted"), account_id="kn", window=WINDOW, exceeded_ids=set()
    )
    assert usage.tenant.tenant_name == "株式会社サクラ Ørsted"
    usage = company_records(company(companyName="N" * 1000), account_id="kn", window=WINDOW, exceeded_ids=set())
    assert usage.tenant.tenant_name == "N" * 256
    usage = company_records(company(companyName=None), account_id="kn", window=WINDOW, exceeded_ids=set())
    assert usage.tenant.tenant_name == "c-42"


def test_unknown_fields_are_ignored_and_missing_id_refused() -> None:
    usage = company_records(
        company(somethingNew={"x": 1}, children=[company(companyResourceId="child")]),
        account_id="kn",
        window=WINDOW,
        exceeded_ids=set(),
    )
    assert len(usage.records) == 4
    with pytest.raises(VendorDataError, match="companyResourceId"):
        company_records(company(companyResourceId=""), account_id="kn", window=WINDOW, exceeded_ids=set())


# --- children -------------------------------------------------------------------------------------


def test_family_walks_nested_children_depth_first_with_their_parents() -> None:
    leaf = company(companyResourceId="leaf", children=None)
    sub = company(companyResourceId="sub", children=[leaf, company(companyResourceId="sub-2", children=[])])
    row = company(companyResourceId="top", children=[sub, company(companyResourceId="other")])

    members = list(family(row))

    assert all(isinstance(m, Member) for m in members)
    assert [(company_id(m.row), m.parent_id, m.depth) for m in members if isinstance(m, Member)] == [
        ("top", None, 0),
        ("sub", "top", 1),
        ("leaf", "sub", 2),
        ("sub-2", "sub", 2),
        ("other", "top", 1),
    ]


def test_children_that_cannot_be_read_are_a_listing_gap_naming_their_parent() -> None:
    row = company(companyResourceId="top", children=[company(companyResourceId="sub", children="oops")])
    members = list(family(row))
    assert [type(m) for m in members] == [Member, Member, ChildrenUnreadable]
    unreadable = members[2]
    assert isinstance(unreadable, ChildrenUnreadable)
    gap = children_gap(unreadable)
    assert isinstance(gap, ListingGap)
    # The part that failed is what lies beneath `sub`; `sub` itself was read (its own Member above).
    assert (gap.tenant.tenant_id, gap.tenant.parent_tenant_id, gap.tenant.billed) == ("sub", "top", True)
    assert gap.tenant.tenant_name == "Acme Logistics GmbH"
    assert gap.error == "Keepnet company sub: children is a str, not a list; its child companies are unknown this run"


def test_children_nested_without_end_are_cut_at_the_depth_limit() -> None:
    row = company(companyResourceId="level-0")
    node = row
    for level in range(1, MAX_CHILD_DEPTH + 5):
        child = company(companyResourceId=f"level-{level}")
        node["children"] = [child]
        node = child
    members = list(family(row))
    assert sum(isinstance(m, Member) for m in members) == MAX_CHILD_DEPTH + 1
    assert isinstance(members[-1], ChildrenUnreadable)
    assert "deeper than" in members[-1].problem


# --- envelopes ------------------------------------------------------------------------------------

DATA = {"pageNumber": 1, "pageSize": 10, "totalNumberOfPages": 1, "totalNumberOfRecords": 0, "results": []}


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "SUCCESS", "message": None, "validationMessages": None, "data": DATA},
        {"status": "Success", "data": DATA},
        {"status": "OK", "data": DATA},
        {"data": DATA},
        {"isSuccess": True, "messages": [], "data": DATA},
    ],
)
def test_success_envelopes(payload: dict[str, Any]) -> None:
    assert parse_envelope(payload) == DATA


def test_failure_envelopes_carry_the_vendor_message() -> None:
    with pytest.raises(VendorApiError, match=r"INPUT_ERROR.*PageSize must be positive"):
        parse_envelope(
            {
                "status": "INPUT_ERROR",
                "message": None,
                "validationMessages": ["PageSize must be positive"],
                "data": None,
            }
        )
    with pytest.raises(VendorApiError, match="database unavailable") as caught:
        parse_envelope({"status": "INTERNAL_SERVER_ERROR", "message": "database unavailable", "data": None})
    assert caught.value.retryable is True
    with pytest.raises(VendorApiError, match="not allowed"):
        parse_envelope({"isSuccess": False, "messages": ["not allowed"], "data": DATA})
    with pytest.raises(VendorApiError):
        parse_envelope({"status": "VALIDATION_FAILED", "data": DATA})


def test_pascal_case_envelopes_are_read() -> None:
    assert parse_envelope({"Status": "SUCCESS", "Message": None, "Data": DATA}) == DATA
    with pytest.raises(VendorApiError, match=r"INPUT_ERROR: Value is not a month"):
        parse_envelope({"Status": "INPUT_ERROR", "Message": "Value is not a month", "Data": None})
    with pytest.raises(VendorApiError, match="quota reached"):
        parse_envelope({"IsSuccess": False, "Messages": ["quota reached"], "Data": DATA})
    assert vendor_messages({"Message": "a", "ValidationMessages": ["b"]}) == "a; b"


def test_envelope_without_data_or_not_an_object() -> None:
    with pytest.raises(VendorDataError, match="no data"):
        parse_envelope({"status": "SUCCESS", "message": "hm", "data": None})
    with pytest.raises(VendorDataError, match="data of type list"):
        parse_envelope({"status": "SUCCESS", "data": []})
    with pytest.raises(VendorDataError, match="expected a JSON object, got list"):
        parse_envelope([])


def test_vendor_messages_reads_problem_details() -> None:
    said = vendor_messages({"title": "One or more validation errors occurred.", "errors": {"OrderBy": ["required"]}})
    assert "OrderBy: required" in said
    assert "validation errors" in said


# --- paging fields --------------------------------------------------------------------------------


def test_page_trusts_server_page_size_and_counts() -> None:
    page = parse_search_page(
        {"pageNumber": 1, "pageSize": 100, "totalNumberOfPages": 1, "totalNumberOfRecords": 10_000, "results": [{}]},
        page_number=1,
        requested_size=1000,
    )
    assert page.page_size == 100
    assert page.total_pages == 100  # 10,000 records at 100 a page, whatever totalNumberOfPages claimed
    page = parse_search_page(
        {"pageSize": 40, "totalNumberOfPages": 7, "results": []}, page_number=1, requested_size=100
    )
    assert (page.page_size, page.total_pages, page.total_records) == (40, 7, None)
    page = parse_search_page({"totalCount": 95, "results": []}, page_number=1, requested_size=10)
    assert page.total_pages == 10


def test_page_without_counts_or_with_bad_results_is_refused() -> None:
    with pytest.raises(VendorDataError, match="end is unknown"):
        parse_search_page({"results": [{}]}, page_number=1, requested_size=10)
    with pytest.raises(VendorDataError, match="results is dict"):
        parse_search_page({"totalNumberOfPages": 1, "results": {}}, page_number=1, requested_size=10)


# --- request body and account ---------------------------------------------------------------------


def test_search_body_has_every_required_field_and_the_month() -> None:
    body = search_body(Period(2026, 2), page_number=3, page_size=100, exceeded_only=True)
    assert body["pageNumber"] == 3
    assert body["pageSize"] == 100
    assert body["orderBy"] == "CreateTime"
    assert body["ascending"] is False
    assert body["isClustered"] is False
    assert body["isTargetUserCountExceededLimit"] is True
    assert body["filter"]["SearchInputTextValue"] == ""
    items = body["filter"]["FilterGroups"][0]["FilterItems"]
    assert items == [{"FieldName": "MonthlyActiveUser", "Operator": "=", "Value": "2026-02"}]
    assert "null" not in json.dumps(body)


def test_account_defaults_and_limits() -> None:
    source = KeepnetSource()
    raw: dict[str, object] = {
        "account_id": "kn",
        "base_url": "https://api.keepnetlabs.com",
        "client_id": "id",
        "client_secret": "s3cret-x",
    }
    account = source.parse_account(raw)
    assert (account.page_size, account.concurrency, account.max_pages) == (100, 4, 1000)
    assert account.requests_per_second == 40
    assert account.timeout_seconds == 20
    assert source.account_id(account) == "kn"
    assert "s3cret-x" not in repr(account)
    for bad in ({"page_size": 0}, {"page_size": 1001}, {"concurrency": 17}, {"base_url": "http://example.com"}):
        with pytest.raises(ConfigError) as caught:
            source.parse_account({**raw, **bad})
        assert next(iter(bad)) in str(caught.value)
        assert "s3cret-x" not in str(caught.value)
    with pytest.raises(ConfigError, match="client_secret"):
        source.parse_account({k: v for k, v in raw.items() if k != "client_secret"})

"""ConnectWise payloads, query text and the connection secret, pure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.simulators.connectwise import parse_conditions
from usagewatch.errors import ConfigError, VendorDataError
from usagewatch.psa.connectwise.connection import parse_connection
from usagewatch.psa.connectwise.mapping import (
    ACTIVE_AGREEMENTS,
    any_of,
    equals,
    exact_quantity,
    next_link,
    parse_addition,
    parse_agreement,
    parse_codebase,
    parse_company,
    parse_json_exact,
    patch_quantity,
    quoted,
    same_origin,
    wire_number,
)
from usagewatch.psa.contract import BillCustomer, LineProblem, LineRef, PsaLine
from usagewatch.redaction import redactor

SECRET = {
    "site": "na.myconnectwise.net",
    "company_id": "acme",
    "public_key": "PublicKey123",
    "private_key": "PrivateKey-very-s3cret",
    "client_id": "3f2c7e1a-9b0d-4c55-8e21-6a7d5b9c0f14",
}


def test_strings_are_quoted_with_quotes_and_backslashes_escaped() -> None:
    assert quoted('Smith "Bros"') == '"Smith \\"Bros\\""'
    assert quoted("a\\b") == '"a\\\\b"'
    assert equals("company/identifier", 'x" or 1=1 or "') == 'company/identifier="x\\" or 1=1 or \\""'
    assert equals("cancelledFlag", False) == "cancelledFlag=false"
    assert equals("company/id", 12) == "company/id=12"
    assert any_of("identifier", ["a", "b"]) == '(identifier="a" or identifier="b")'
    assert ACTIVE_AGREEMENTS == 'agreementStatus="Active" and cancelledFlag=false'
    with pytest.raises(ValueError):
        quoted("line\nbreak")
    with pytest.raises(ValueError):
        equals("name) or (id", "x")


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=40))
def test_any_escaped_string_means_itself_to_the_simulator(value: str) -> None:
    """The simulator's parser (which refuses unescaped quotes) reads back exactly the string sent."""
    keep = parse_conditions(equals("identifier", value))
    assert keep({"identifier": value})
    assert not keep({"identifier": value + "x"})


def test_next_link() -> None:
    header = '<https://h/v4_6_release/apis/3.0/x?pageId=9>; rel="next", <https://h/first>; rel="first"'
    assert next_link(header) == "https://h/v4_6_release/apis/3.0/x?pageId=9"
    assert next_link('<https://h/first>; rel="first", <https://h/n>; rel=next') == "https://h/n"
    assert next_link('<https://h/last>; rel="last"') is None
    assert next_link(None) is None and next_link("") is None


def test_a_next_link_is_followed_only_on_the_same_site() -> None:
    base = "https://na.myconnectwise.net/v4_6_release/apis/3.0"
    assert same_origin(f"{base}/company/companies?pageId=3", base)
    assert not same_origin("https://evil.example/v4_6_release/apis/3.0/company/companies", base)
    assert not same_origin("http://na.myconnectwise.net/v4_6_release/apis/3.0/x", base)
    assert not same_origin("https://na.myconnectwise.net/other/x", base)
    assert not same_origin("https://na.myconnectwise.net/v4_6_release/apis/3.0evil/x", base)


def test_numbers_come_from_their_text_never_a_float() -> None:
    payload = parse_json_exact(b'{"quantity": 0.1, "big": 12345678901234567890.123456789, "n": 3}')
    assert payload["quantity"] == Decimal("0.1") and isinstance(payload["quantity"], Decimal)
    assert payload["big"] == Decimal("12345678901234567890.123456789")
    assert payload["n"] == 3
    for bad in (b'{"q": NaN}', b'{"q": Infinity}', b"{not json"):
        with pytest.raises(VendorDataError):
            parse_json_exact(bad)


def test_exact_quantity() -> None:
    assert exact_quantity(Decimal("12.50")) == Decimal("12.5")
    assert exact_quantity(7) == 7
    assert exact_quantity(Decimal("1" + "0" * 37)) == Decimal("1E37")  # 1 significant digit
    for bad in (Decimal("1" * 39), Decimal("1E-131"), Decimal("-1"), 1.5, True, "3", None):
        with pytest.raises(ValueError):
            exact_quantity(bad)
    assert exact_quantity(Decimal("-2.5"), signed=True) == Decimal("-2.5")


def test_wire_numbers_carry_exactly_the_decimal_digits() -> None:
    assert wire_number(Decimal("42.000")) == 42 and isinstance(wire_number(Decimal("42.000")), int)
    assert repr(wire_number(Decimal("0.1"))) == "0.1"
    assert patch_quantity(Decimal("12.75")) == [{"op": "replace", "path": "quantity", "value": 12.75}]
    with pytest.raises(ValueError, match="more digits"):
        wire_number(Decimal("0.12345678901234567890"))
    with pytest.raises(ValueError):
        wire_number(Decimal("-1"))


def test_codebase() -> None:
    assert parse_codebase({"Codebase": "v4_6_release/"}) == "v4_6_release/"
    assert parse_codebase({"Codebase": "v2026_1"}) == "v2026_1/"
    for bad in ({}, {"Codebase": ""}, {"Codebase": "../../evil/"}, {"Codebase": "a/b/"}, []):
        with pytest.raises(VendorDataError):
            parse_codebase(bad)


def addition(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": 9,
        "product": {"id": 4, "identifier": "GZ-EP"},
        "quantity": Decimal("40"),
        "unitPrice": Decimal("3.50"),
        "billCustomer": "Billable",
        "effectiveDate": "2026-01-01T00:00:00Z",
        "agreementStatus": "Active",
    }
    return {**base, **fields}


def test_an_addition_becomes_a_line() -> None:
    line = parse_addition(addition(cancelledDate="2026-12-31T00:00:00Z"), 7, 3)
    assert isinstance(line, PsaLine)
    assert line.ref == LineRef(7, 9) and line.company_id == 3 and line.product_identifier == "GZ-EP"
    assert (line.quantity, line.unit_price, line.bill_customer) == (40, Decimal("3.50"), BillCustomer.BILLABLE)
    assert not line.cancelled_on(line.effective_date) and line.cancelled_on(line.cancelled_date)  # type: ignore[arg-type]
    cancelled = parse_addition(addition(agreementStatus="Cancelled"), 7)
    assert isinstance(cancelled, PsaLine) and cancelled.cancelled_on(line.effective_date)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"product": {"id": 4}}, "no product identifier"),
        ({"quantity": Decimal("1" * 40)}, "cannot be stored exactly"),
        ({"quantity": -3}, "negative"),
        ({"billCustomer": "Sometimes"}, "BillCustomer"),
    ],
)
def test_an_unusable_addition_is_a_problem_not_a_guess(fields: dict[str, object], reason: str) -> None:
    problem = parse_addition(addition(**fields), 7)
    assert isinstance(problem, LineProblem) and reason in problem.reason and problem.ref == LineRef(7, 9)


def test_records_without_ids_are_refused() -> None:
    with pytest.raises(VendorDataError):
        parse_addition(addition(id=None), 7)
    with pytest.raises(VendorDataError):
        parse_company({"identifier": "A", "name": "A"})
    with pytest.raises(VendorDataError):
        parse_agreement({"id": 3, "name": "no company"})


def test_company_and_agreement() -> None:
    company = parse_company({"id": 5, "identifier": 'Smith"Bros', "name": 'Smith "Bros"\u202e\n'})
    assert company.identifier == 'Smith"Bros' and company.name == 'Smith "Bros"'
    with pytest.raises(VendorDataError, match="control characters"):
        parse_company({"id": 5, "identifier": "A\nB", "name": "x"})
    agreement = parse_agreement(
        {"id": 3, "name": "MS", "company": {"id": 5}, "agreementStatus": "Active", "cancelledFlag": False,
         "billingCycle": {"name": "Monthly"}, "billStartDate": "2026-01-01T00:00:00Z", "nextInvoiceDate": "2027-01-01"}
    )  # fmt: skip
    assert agreement.active and agreement.billing_cycle == "Monthly" and agreement.next_invoice_date is not None
    assert not parse_agreement({"id": 4, "company": {"id": 5}, "cancelledFlag": True}).active


def test_the_connection_secret() -> None:
    connection = parse_connection(SECRET)
    assert connection.site == "https://na.myconnectwise.net"
    assert connection.basic_auth() == ("acme+PublicKey123", "PrivateKey-very-s3cret")
    assert "s3cret" not in repr(connection)
    assert redactor.scrub("key PrivateKey-very-s3cret") == "key ***"
    assert parse_connection({**SECRET, "site": "http://127.0.0.1:8123", "codebase": "v4_6_release"}).codebase == (
        "v4_6_release/"
    )


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"site": "http://na.myconnectwise.net"}, "site"),
        ({"site": "https://na.myconnectwise.net/v4_6_release"}, "site"),
        ({"client_id": ""}, "client_id"),
        ({"private_key": None}, "private_key"),
        ({"codebase": "../x"}, "codebase"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_bad_secret_names_the_field_never_the_value(change: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_connection({**SECRET, **change})
    assert names in str(caught.value)
    assert SECRET["private_key"] not in str(caught.value) and SECRET["public_key"] not in str(caught.value)

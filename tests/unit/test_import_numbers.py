"""What the contract parser accepts as a number is what the table stores: ASCII decimals within bounds, exact;
and contract history that only moves forward (contracts.check_history)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from usagewatch.contracts import Contract, check_history
from usagewatch.imports import MAX_NUMBER, ImportRejectedError, parse_contracts, parse_number
from usagewatch.model import Period
from usagewatch.store import serialize


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", Decimal(0)),
        ("12", Decimal(12)),
        ("007", Decimal(7)),
        ("1.5", Decimal("1.5")),
        ("0.1", Decimal("0.1")),
        ("0.000001", Decimal("0.000001")),
        ("1000000000000", MAX_NUMBER),
        ("999999999999.999999", Decimal("999999999999.999999")),  # 18 digits: a float would round it
    ],
)
def test_plain_decimals_are_read_exactly(text: str, value: Decimal) -> None:
    number, problem = parse_number(text, "quantity")
    assert problem is None and number == value and isinstance(number, Decimal)
    assert serialize({"q": number})["q"] == {"N": format(value, "f")}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("1e3", "not a plain decimal"),
        ("1e-200", "not a plain decimal"),  # DynamoDB's "Number underflow" before: now refused on its line
        ("1E3", "not a plain decimal"),
        ("1_000", "not a plain decimal"),
        ("1,000", "not a plain decimal"),
        ("\u0661\u0662", "not a plain decimal"),  # Arabic-Indic 12
        ("\uff11\uff12", "not a plain decimal"),  # full-width 12
        ("\u0967", "not a plain decimal"),  # Devanagari 1
        ("-1", "not a plain decimal"),
        ("+1", "not a plain decimal"),
        ("1.", "not a plain decimal"),
        (".5", "not a plain decimal"),
        ("nan", "not a plain decimal"),
        ("inf", "not a plain decimal"),
        ("0x10", "not a plain decimal"),
        ("1.0000001", "at most 6 decimal places"),
        ("1000000000000.5", "at most 1,000,000,000,000"),
        ("1" + "0" * 30, "at most 1,000,000,000,000"),
    ],
)
def test_anything_else_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    number, problem = parse_number(text, "quantity")
    assert number is None and problem is not None and says in problem and problem.startswith("quantity: ")


def test_a_refused_number_names_its_line_and_the_file_imports_nothing() -> None:
    text = (
        "customer_id,vendor,metric,quantity,effective_from,effective_to,agreement,unit_price\n"
        "acme,keepnet,monthly_users,10,2026-01,,,1.25\n"
        "acme,keepnet,monthly_users,1e-200,2026-02,,,\n"
        "acme,keepnet,monthly_users,5,2026-03,,,0.1234567\n"
    )
    with pytest.raises(ImportRejectedError) as caught:
        parse_contracts(text, customers={"acme"}, vendors=("keepnet",), metric_known=lambda v, m: True)
    assert [n for n, _ in caught.value.problems] == [3, 4]
    assert "unit_price: at most 6 decimal places" in caught.value.problems[1][1]


def test_quantities_and_prices_are_decimals() -> None:
    text = "customer_id,vendor,metric,quantity,effective_from,unit_price\nacme,keepnet,monthly_users,0.5,2026-01,0.1\n"
    [contract] = parse_contracts(text, customers={"acme"}, vendors=("keepnet",), metric_known=lambda v, m: True)
    assert contract.quantity == Decimal("0.5") and contract.unit_price == Decimal("0.1")
    assert isinstance(contract.quantity, Decimal) and isinstance(contract.unit_price, Decimal)


# --- history ----------------------------------------------------------------------------------------------

NOW = Period(2026, 12)


def version(start: str, quantity: int, end: str | None = None) -> Contract:
    return Contract("acme", "keepnet", "monthly_users", quantity, Period.parse(start),
                    Period.parse(end) if end else None)  # fmt: skip


def test_a_version_overlapping_a_stored_one_is_refused() -> None:
    stored = [version("2026-01", 10, "2026-06")]
    problems, _ = check_history(stored, [version("2026-05", 12)], now=Period(2026, 1), amend=False)
    [(culprit, says)] = problems
    assert culprit.effective_from == Period(2026, 5) and "overlaps the stored version from 2026-01" in says
    problems, _ = check_history(stored, [version("2026-07", 12)], now=Period(2026, 1), amend=False)
    assert problems == []


def test_changing_an_ended_month_needs_amend_and_is_recorded() -> None:
    stored = [version("2026-01", 10)]
    problems, _ = check_history(stored, [version("2026-01", 11)], now=NOW, amend=False)
    assert [says for _, says in problems] == [
        "changes 2026-01, a month already ended: add --amend to change billed history"
    ]
    problems, amended = check_history(stored, [version("2026-01", 11)], now=NOW, amend=True)
    assert problems == [] and amended == {("acme", "keepnet", "monthly_users")}
    # A new version from this month on changes nothing ended; nor does re-importing what is stored.
    assert check_history(stored, [version("2026-12", 11)], now=NOW, amend=False) == ([], set())
    assert check_history(stored, [version("2026-01", 10)], now=NOW, amend=False) == ([], set())
    # A back-dated version changes the months from its start.
    problems, _ = check_history(stored, [version("2026-10", 11)], now=NOW, amend=False)
    assert [says for _, says in problems] == [
        "changes 2026-10, a month already ended: add --amend to change billed history"
    ]
    # Ending a contract in a month already past changes the months after it.
    problems, _ = check_history(stored, [version("2026-01", 10, "2026-09")], now=NOW, amend=False)
    assert "changes 2026-10" in problems[0][1]


def test_contracts_for_months_that_had_none_are_filled_in_not_amended() -> None:
    assert check_history([], [version("2025-01", 10)], now=NOW, amend=False) == ([], set())

"""psa sync's pure part: which PSA lines become which contract versions, what ends, and what is listed unused."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from usagewatch.contracts import Contract
from usagewatch.customers import Customer
from usagewatch.model import Period
from usagewatch.psa.contract import BillCustomer, LineProblem, LineRef, PsaCompany, PsaLine
from usagewatch.psa.sync import Mapped, SyncResult, sync

TODAY = date(2026, 12, 7)
NOW = Period(2026, 12)
COMPANIES = [PsaCompany(11, "ACME", "Acme Ltd"), PsaCompany(12, "GLOBEX", "Globex GmbH"), PsaCompany(13, "X", "Acme")]
CUSTOMERS = [Customer("acme", "Acme Ltd", "ACME"), Customer("globex", "Globex GmbH", "12")]
PRODUCTS = {"KN-USERS": Mapped("keepnet", "monthly_users")}


def line(addition: int, company: int, quantity: str = "10", **kw: object) -> PsaLine:
    values: dict[str, object] = {
        "ref": LineRef(7, addition), "company_id": company, "product_id": 1, "product_identifier": "KN-USERS",
        "quantity": Decimal(quantity), "unit_price": Decimal("2.50"), "bill_customer": BillCustomer.BILLABLE,
    }  # fmt: skip
    values.update(kw)
    return PsaLine(**values)  # type: ignore[arg-type]


def run(lines: list[PsaLine], stored: Sequence[Contract] = (), problems: Sequence[LineProblem] = ()) -> SyncResult:
    return sync(COMPANIES, lines, problems, customers=CUSTOMERS, products=PRODUCTS, stored=stored, today=TODAY)


def test_lines_become_versions_from_this_month_by_identifier_or_id() -> None:
    result = run([line(1, 11), line(2, 12, "35.5")])
    assert [(c.customer_id, c.quantity, c.effective_from, c.psa_line, c.agreement) for c in result.contracts] == [
        ("acme", Decimal(10), NOW, "7/1", "7"),
        ("globex", Decimal("35.5"), NOW, "7/2", "7"),
    ]


def test_what_is_not_used_is_listed_and_not_written() -> None:
    problem = LineProblem(LineRef(7, 9), "KN-USERS", "quantity 1E+200 cannot be stored exactly")
    result = run(
        [
            line(1, 13),  # a company no customer points at: a name suggestion
            line(2, 11, product_identifier="OTHER"),
            line(3, 11, bill_customer=BillCustomer.NO_CHARGE),  # not billable: silently not a contract
            line(4, 11, cancelled_date=date(2026, 12, 1)),  # cancelled: not a contract
        ],
        problems=[problem],
    )
    assert result.contracts == []
    text = "\n".join(result.unused)
    assert "line 7/9 (KN-USERS): quantity 1E+200 cannot be stored exactly" in text
    assert "company X (id 13, Acme)" in text and "perhaps customer acme" in text
    assert "product OTHER is not mapped" in text
    assert len(result.unused) == 3


def test_a_product_on_two_lines_of_one_customer_is_ambiguous_and_keeps_what_is_stored() -> None:
    stored = [Contract("acme", "keepnet", "monthly_users", Decimal(10), Period(2026, 10), psa_line="7/1")]
    result = run([line(1, 11), line(5, 11)], stored)
    assert result.contracts == [] and result.ended == []
    assert "product on 2 lines (7/1, 7/5), ambiguous" in result.unused[0]


def test_nothing_changed_writes_nothing_and_a_change_is_a_new_version() -> None:
    stored = [Contract("acme", "keepnet", "monthly_users", Decimal(10), Period(2026, 10), agreement="7",
                       unit_price=Decimal("2.50"), psa_line="7/1")]  # fmt: skip
    assert run([line(1, 11)], stored).contracts == []
    (changed,) = run([line(1, 11, "12")], stored).contracts
    assert (changed.quantity, changed.effective_from) == (Decimal(12), NOW)


def test_a_gone_line_ends_its_contract_with_last_month_or_removes_this_months() -> None:
    older = Contract("acme", "keepnet", "monthly_users", Decimal(10), Period(2026, 10), psa_line="7/1")
    result = run([], [older])
    assert [(c.effective_from, c.effective_to) for c in result.ended] == [(Period(2026, 10), Period(2026, 11))]
    fresh = Contract("acme", "keepnet", "monthly_users", Decimal(10), NOW, psa_line="7/1")
    manual = Contract("acme", "keepnet", "monthly_users", Decimal(8), Period(2026, 6))
    result = run([], [manual, fresh])
    assert result.removed == [fresh]
    assert [(c.effective_from, c.effective_to) for c in result.ended] == [(Period(2026, 6), Period(2026, 11))]
    # A contract typed in by hand (no PSA line) is never ended by the sync.
    assert run([], [manual]).contracts == []

"""What makes a line final: the run records' verdict per account and tenant (completeness.assess), exact money
rounded half-up in the deployment's currency, one reading per vendor tenant, and the collectors' overlap alert."""

from __future__ import annotations

from decimal import Decimal

import pytest

from usagewatch.billing_alerts import TENANT_OVERLAP, UNDER_BILLED, UNMAPPED_TENANT, BillingView
from usagewatch.completeness import FuturePeriodError, assess, refuse_future
from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.errors import ConfigError
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.reconcile import Reading, billed_once, money, reconcile, unbilled_total
from usagewatch.rules import DEFAULT_RULES
from usagewatch.settings import load_currency
from usagewatch.stored import RunRecord, Total

NOV = Period(2026, 11)
KN = "keepnet"


def run(account: str, status: str, *errors: str, failed: int = 0, at: str = "2026-11-05T06:00:00Z") -> RunRecord:
    return RunRecord(KN, account, "r", at, at, at, status, (str(NOV),), 1, failed, 1, 0, tuple(errors))  # type: ignore[arg-type]


def ref(account: str, tenant: str) -> TenantRef:
    return TenantRef(KN, account, tenant)


@pytest.mark.parametrize(
    ("value", "minor", "rounded"),
    [("1.005", 2, "1.01"), ("0.125", 2, "0.13"), ("0.124999", 2, "0.12"), ("-1.005", 2, "-1.01"), ("2.5", 0, "3"),
     ("1.0005", 3, "1.001")],
)  # fmt: skip
def test_money_rounds_half_up_to_the_minor_unit(value: str, minor: int, rounded: str) -> None:
    assert str(money(Decimal(value), minor)) == rounded


def test_the_currency_is_an_iso_code_with_its_minor_unit() -> None:
    assert (load_currency({}).code, load_currency({}).minor_unit) == ("USD", 2)
    assert load_currency({"CURRENCY": "JPY"}).minor_unit == 0
    assert load_currency({"CURRENCY": "KWD"}).minor_unit == 3
    for bad in ("usd", "EURO", "€", "U1D"):
        with pytest.raises(ConfigError, match="ISO 4217"):
            load_currency({"CURRENCY": bad})


def test_unbilled_value_is_exact_for_int_float_and_decimal_prices() -> None:
    owner = [TenantMapping("acme", ref("kn", "c-1"))]
    for price in (1.005, Decimal("1.005")):
        contract = Contract("acme", KN, "monthly_users", 100, Period(2026, 1), unit_price=price)  # type: ignore[arg-type]
        readings = [Reading(ref("kn", "c-1"), "Acme", "monthly_users", 101)]
        (line,) = reconcile(NOV, readings, customers=[Customer("acme", "Acme")], mappings=owner, contracts=[contract])
        assert line.unbilled_value == Decimal("1.01")
        (jpy,) = reconcile(NOV, readings, customers=[], mappings=owner, contracts=[contract], minor_unit=0)
        assert jpy.unbilled_value == Decimal("1")
    assert unbilled_total([line, line]) == Decimal("2.02")


def test_an_amended_contract_is_carried_onto_the_line() -> None:
    contract = Contract("acme", KN, "monthly_users", 10, Period(2026, 1), amended_at="2026-12-03T10:00:00Z")
    (line,) = reconcile(NOV, [], customers=[], mappings=[TenantMapping("acme", ref("kn", "c"))], contracts=[contract])
    assert line.amended_at == "2026-12-03T10:00:00Z"


def test_one_reading_per_vendor_tenant_the_mapping_account_first_else_the_first_account() -> None:
    a, b = Reading(ref("kn-a", "t"), "T", "m", 1), Reading(ref("kn-b", "t"), "T", "m", 2)
    assert billed_once([b, a]) == [a]
    assert billed_once([a, b], owned={ref("kn-b", "t")}) == [b]
    other = Reading(TenantRef("gravityzone", "kn-b", "t"), "T", "m", 3)
    assert len(billed_once([a, b, other])) == 2  # another vendor's "t" is another tenant


def test_assess_names_why_each_account_or_tenant_is_not_final() -> None:
    mappings = [
        TenantMapping("acme", ref("kn-ok", "c-1")),
        TenantMapping("acme", ref("kn-ok", "gone")),  # not in a complete listing: counts 0
        TenantMapping("acme", ref("kn-fail", "c-2")),
        TenantMapping("acme", ref("kn-part", "c-3")),
        TenantMapping("acme", ref("kn-part", "c-4")),
        TenantMapping("acme", ref("kn-part", "c-5")),
        TenantMapping("acme", ref("kn-none", "c-6")),
        TenantMapping("acme", ref("kn-many", "c-7")),
    ]
    runs = {
        (KN, "kn-ok"): [run("kn-ok", "ok")],
        (KN, "kn-fail"): [run("kn-fail", "failed", "Keepnet refused the client credentials"), run("kn-fail", "ok")],
        (KN, "kn-part"): [run("kn-part", "partial", "tenant c-3 (C3): HTTP 500", "tenant c-4 (C4): timeout", failed=2)],
        (KN, "kn-none"): [],
        (KN, "kn-many"): [run("kn-many", "partial", "tenant x (X): HTTP 500", failed=40)],  # 39 not named
    }
    read = {ref("kn-ok", "c-1"), ref("kn-fail", "c-2"), ref("kn-part", "c-3"), ref("kn-part", "c-5")}
    gaps = assess(NOV, runs, [], read, mappings)
    assert gaps.accounts == {
        (KN, "kn-fail"): "kn-fail: failed on 2026-11-05 06:00, Keepnet refused the client credentials",
        (KN, "kn-none"): "kn-none: no collection of 2026-11 (its runs never ran or left no record)",
        (KN, "kn-many"): "kn-many: 40 tenant read(s) failed on 2026-11-05 06:00",
    }
    assert gaps.tenants == {
        ref("kn-part", "c-3"): "kn-part/c-3: read failed on 2026-11-05 06:00, number carried from earlier",
        ref("kn-part", "c-4"): "kn-part/c-4: read failed on 2026-11-05 06:00, no reading of 2026-11",
    }


def test_assess_without_run_records_falls_back_on_the_totals() -> None:
    mappings = [TenantMapping("acme", ref("kn", "c-1")), TenantMapping("acme", ref("kn-cut", "c-2"))]
    totals = [
        Total(KN, "kn", "2026-11", "monthly_users", "users", 5, 1, 1, "x"),
        Total(KN, "kn-cut", "2026-11", "monthly_users", "users", 5, 1, 0, "x", complete=False, missing=("Part",)),
    ]
    gaps = assess(NOV, {}, totals, {ref("kn", "c-1"), ref("kn-cut", "c-2")}, mappings)
    assert gaps.accounts == {
        (KN, "kn"): "kn: numbers carried from an earlier run",
        (KN, "kn-cut"): "kn-cut: part of its listing failed (Part)",
    }


def test_a_future_month_is_refused_naming_it() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, tzinfo=UTC)
    refuse_future(Period(2026, 12), now)
    with pytest.raises(FuturePeriodError, match="period 2027-01 has not begun"):
        refuse_future(Period(2027, 1), now)


def _view(
    account: str, owners: dict[str, str], mapped_elsewhere: dict[str, str], stored: dict[str, list[str]]
) -> BillingView:
    contract = Contract("acme", KN, "monthly_users", 1, Period(2026, 1))
    return BillingView(
        vendor=KN,
        account_id=account,
        period=NOV,
        owners=owners,
        shared=frozenset(),
        contracts={("acme", "monthly_users"): contract},
        active=True,
        mapped_elsewhere=mapped_elsewhere,
        elsewhere=lambda ids: {t: stored[t] for t in ids if t in stored},
    )


def _rec(account: str, tenant: str, value: int = 5) -> UsageRecord:
    return UsageRecord(KN, account, Tenant(tenant, tenant), "monthly_users", value, "users", Window.month(NOV))


def test_a_tenant_through_two_accounts_is_unmapped_once_and_an_overlap_once() -> None:
    first = _view("kn-a", {}, {}, {"dup": ["kn-b"]})
    second = _view("kn-b", {}, {}, {"dup": ["kn-a"]})
    for view in (first, second):
        view.observe(_rec(view.account_id, "dup"))
    rules = {v.account_id: sorted(f.rule for f in v.findings(DEFAULT_RULES, [], dict)[0]) for v in (first, second)}
    assert rules == {"kn-a": [UNMAPPED_TENANT], "kn-b": [TENANT_OVERLAP]}

    # mapped through kn-b: kn-a stores it unmapped, but it is owned: an overlap there, no unmapped alert anywhere
    here = _view("kn-a", {}, {"dup": "kn-b"}, {"dup": ["kn-b"]})
    here.observe(_rec("kn-a", "dup"))
    assert [f.rule for f in here.findings(DEFAULT_RULES, [], dict)[0]] == [TENANT_OVERLAP]


def test_under_billed_is_not_judged_for_a_customer_a_failed_listing_may_hide() -> None:
    view = _view("kn-a", {"c-1": "acme", "c-2": "acme"}, {}, {})
    view.observe(_rec("kn-a", "c-1", 9))  # c-2 not seen while another tenant failed: acme's sum is not whole
    findings, failed = view.findings(DEFAULT_RULES, ["other"], dict)
    assert not [f for f in findings if f.rule == UNDER_BILLED] and failed == {"acme"}
    findings, _ = view.findings(DEFAULT_RULES, [], dict)  # a complete listing: c-2 is gone, acme judged
    assert [f.rule for f in findings] == [UNDER_BILLED]

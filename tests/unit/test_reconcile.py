"""Billed versus used for a month: statuses, versions in force, month-over-month, incomplete months."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from usagewatch.contracts import Contract, in_force
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Period
from usagewatch.reconcile import Reading, reconcile, summary

NOV, OCT = Period(2026, 11), Period(2026, 10)
A1 = TenantRef("keepnet", "kn", "c-1")
A2 = TenantRef("gravityzone", "gz", "g-1")
B1 = TenantRef("keepnet", "kn", "c-2")
STRAY = TenantRef("keepnet", "kn", "c-9")
CUSTOMERS = [Customer("acme", "Acme"), Customer("globex", "Globex")]
MAPPINGS = [TenantMapping("acme", A1), TenantMapping("acme", A2), TenantMapping("globex", B1)]


def read(tenant: TenantRef, metric: str, value: int, quota: int | None = None) -> Reading:
    return Reading(tenant, f"name of {tenant.tenant_id}", metric, value, quota)


def contract(cid: str, vendor: str, metric: str, qty: int, start: Period, end: Period | None = None) -> Contract:
    return Contract(cid, vendor, metric, qty, start, end, agreement="AG", unit_price=2.0)


def test_statuses_and_differences() -> None:
    readings = [
        read(A1, "monthly_users", 130, 200),
        read(A2, "endpoint_monthly_usage", 30),
        read(B1, "monthly_users", 40, 50),
        read(STRAY, "monthly_users", 7),
    ]
    contracts = [
        contract("acme", "keepnet", "monthly_users", 120, Period(2026, 1)),
        contract("globex", "keepnet", "monthly_users", 60, Period(2026, 1)),
        contract("globex", "gravityzone", "endpoint_monthly_usage", 10, Period(2026, 1)),
    ]
    lines = reconcile(NOV, readings, customers=CUSTOMERS, mappings=MAPPINGS, contracts=contracts)
    got = [(x.status, x.customer_id, x.vendor, x.used, x.contracted, x.difference) for x in lines]
    assert got == [
        ("under_billed", "acme", "keepnet", 130, 120, 10),
        ("unmapped", "", "keepnet", 7, None, None),
        ("no_contract", "acme", "gravityzone", 30, None, None),
        ("over_billed", "globex", "gravityzone", 0, 10, -10),  # contracted, nothing used
        ("over_billed", "globex", "keepnet", 40, 60, -20),
    ]
    assert lines[0].unbilled_value == Decimal("20.00")
    assert lines[0].quota == 200
    assert lines[1].tenant_id == "c-9"
    assert summary(lines)["customers_under_billed"] == 1


def test_within_tolerance_is_ok() -> None:
    lines = reconcile(
        NOV,
        [read(B1, "monthly_users", 55)],
        customers=CUSTOMERS,
        mappings=MAPPINGS,
        contracts=[contract("globex", "keepnet", "monthly_users", 60, Period(2026, 1))],
    )
    assert [x.status for x in lines] == ["ok"]


def test_last_months_reconciliation_keeps_last_months_quantity() -> None:
    contracts = [
        contract("acme", "keepnet", "monthly_users", 100, Period(2026, 1)),
        contract("acme", "keepnet", "monthly_users", 150, NOV),
    ]
    oct_lines = reconcile(
        OCT, [read(A1, "monthly_users", 120)], customers=CUSTOMERS, mappings=MAPPINGS, contracts=contracts
    )
    nov_lines = reconcile(
        NOV, [read(A1, "monthly_users", 120)], customers=CUSTOMERS, mappings=MAPPINGS, contracts=contracts
    )
    assert (oct_lines[0].contracted, oct_lines[0].status) == (100, "under_billed")
    assert (nov_lines[0].contracted, nov_lines[0].status) == (150, "over_billed")


def test_an_ended_contract_is_no_contract() -> None:
    ended = [contract("acme", "keepnet", "monthly_users", 100, Period(2026, 1), Period(2026, 10))]
    lines = reconcile(NOV, [read(A1, "monthly_users", 10)], customers=CUSTOMERS, mappings=MAPPINGS, contracts=ended)
    assert [x.status for x in lines] == ["no_contract"]


def test_change_against_the_previous_month_and_sum_over_tenants() -> None:
    mappings = [*MAPPINGS, TenantMapping("acme", TenantRef("keepnet", "kn2", "c-7"))]
    now = [read(A1, "monthly_users", 30), read(TenantRef("keepnet", "kn2", "c-7"), "monthly_users", 12)]
    before = [read(A1, "monthly_users", 25)]
    [line] = reconcile(NOV, now, previous=before, customers=CUSTOMERS, mappings=mappings, contracts=[])
    assert (line.used, line.change, line.tenants) == (42, 17, 2)


def test_an_account_not_fully_read_marks_its_customers_incomplete() -> None:
    contracts = [
        contract("acme", "keepnet", "monthly_users", 30, Period(2026, 1)),
        contract("globex", "keepnet", "monthly_users", 5, Period(2026, 1)),
    ]
    lines = reconcile(
        NOV,
        [read(A1, "monthly_users", 30), read(B1, "monthly_users", 5)],
        customers=CUSTOMERS,
        mappings=MAPPINGS,
        contracts=contracts,
        incomplete_accounts={("keepnet", "kn")},
    )
    assert {x.customer_id: (x.status, x.complete) for x in lines} == {
        "acme": ("incomplete", False),
        "globex": ("incomplete", False),
    }
    assert {x.reason for x in lines} == {"the month was not fully read"}
    assert all(x.unbilled_value is None for x in lines)
    lines = reconcile(
        NOV,
        [read(A1, "monthly_users", 30), read(A2, "endpoint_monthly_usage", 5)],
        customers=CUSTOMERS,
        mappings=MAPPINGS,
        contracts=[contract("acme", "gravityzone", "endpoint_monthly_usage", 9, Period(2026, 1))],
        incomplete_accounts={("gravityzone", "gz"): "gz: failed on 2026-11-05 06:00, refused"},
    )
    assert {(x.vendor, x.status, x.reason) for x in lines} == {
        ("keepnet", "no_contract", None),
        ("gravityzone", "incomplete", "gz: failed on 2026-11-05 06:00, refused"),
    }
    # without a contract there is no verdict to withhold: no_contract, with the reason
    (line,) = reconcile(
        NOV,
        [read(A2, "endpoint_monthly_usage", 5)],
        customers=CUSTOMERS,
        mappings=MAPPINGS,
        contracts=[],
        incomplete_accounts={("gravityzone", "gz"): "gz: failed"},
    )
    assert (line.status, line.reason) == ("no_contract", "gz: failed")


months = st.builds(Period, st.integers(2024, 2027), st.integers(1, 12))


@given(st.lists(st.tuples(months, st.integers(0, 500)), min_size=1, max_size=8, unique_by=lambda t: t[0]), months)
def test_the_version_in_force_is_the_latest_start_not_after_the_month(
    versions: list[tuple[Period, int]], month: Period
) -> None:
    contracts = [contract("acme", "keepnet", "monthly_users", qty, start) for start, qty in versions]
    chosen = in_force(contracts, month).get(("acme", "keepnet", "monthly_users"))
    started = [(start, qty) for start, qty in versions if start <= month]
    if not started:
        assert chosen is None
    else:
        assert chosen is not None
        assert chosen.quantity == max(started)[1]


def test_zeros_nobody_bills_are_left_out_but_a_contracted_zero_is_not() -> None:
    readings = [read(A1, "monthly_users", 0), read(A2, "endpoint_monthly_usage", 0), read(STRAY, "monthly_users", 0)]
    contracts = [contract("acme", "keepnet", "monthly_users", 10, Period(2026, 1))]
    lines = reconcile(NOV, readings, customers=CUSTOMERS, mappings=MAPPINGS, contracts=contracts)
    assert [(x.customer_id, x.vendor, x.status) for x in lines] == [("acme", "keepnet", "over_billed")]


def test_free_skus_are_nobody_s_to_bill_unless_contracted() -> None:
    """docs/vendors/microsoft365.md: a free or trial SKU (the registry's `free_metrics`) makes no `no_contract` or
    `unmapped` line; a contract on one is reconciled like any other."""
    mine, stray = TenantRef("microsoft365", "csp", "m-1"), TenantRef("microsoft365", "csp", "m-9")
    readings = [
        read(mine, "spb", 12, 12),
        read(mine, "flow_free", 3, 10_000),
        read(mine, "dynamics_365_trial", 2, 25),
        read(stray, "teams_exploratory", 4, 100),
        read(stray, "spb", 5, 5),
    ]
    mappings = [*MAPPINGS, TenantMapping("acme", mine)]
    lines = reconcile(NOV, readings, customers=CUSTOMERS, mappings=mappings, contracts=[])
    assert [(x.status, x.metric, x.tenant_id) for x in lines] == [
        ("unmapped", "spb", "m-9"),
        ("no_contract", "spb", None),
    ]

    contracted = [contract("acme", "microsoft365", "flow_free", 2, Period(2026, 1))]
    lines = reconcile(NOV, readings, customers=CUSTOMERS, mappings=mappings, contracts=contracted)
    assert ("under_billed", "flow_free", 3) in [(x.status, x.metric, x.used) for x in lines]

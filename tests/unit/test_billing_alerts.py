"""The collectors' billing view: a fixed number of reads per account whatever the tenant count, and sums."""

from __future__ import annotations

from collections import Counter

from usagewatch.billing_alerts import UNDER_BILLED, UNMAPPED_TENANT, load_view
from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.rules import DEFAULT_RULES

NOV = Period(2026, 11)


class CountingReader:
    def __init__(self, tenants: int) -> None:
        self.calls: Counter[str] = Counter()
        self.tenants = tenants

    def accounts(self) -> list[tuple[str, str]]:
        self.calls["accounts"] += 1
        return [("keepnet", "kn-a"), ("keepnet", "kn-b"), ("gravityzone", "gz")]

    def account_mappings(self, vendor: str, account_id: str) -> list[TenantMapping]:
        self.calls["mappings"] += 1
        if account_id == "kn-b":
            return [TenantMapping("shared", TenantRef(vendor, account_id, "b-1"))]
        customers = [f"c{i % 100}" for i in range(self.tenants)] + ["shared"]
        return [TenantMapping(c, TenantRef(vendor, account_id, f"t{i}")) for i, c in enumerate(customers)]

    def contracts(self, vendor: str) -> list[Contract]:
        self.calls["contracts"] += 1
        return [Contract(f"c{i}", vendor, "monthly_users", 10, Period(2026, 1)) for i in range(100)] + [
            Contract("shared", vendor, "monthly_users", 1, Period(2026, 1))
        ]

    def customers(self) -> list[Customer]:
        self.calls["customers"] += 1
        return []

    def ignored(self) -> set[TenantRef]:
        self.calls["ignored"] += 1
        return {TenantRef("keepnet", "kn-a", "skipped"), TenantRef("keepnet", "kn-b", "stray")}


def record(tenant_id: str, value: int) -> UsageRecord:
    return UsageRecord(
        "keepnet", "kn-a", Tenant(tenant_id, tenant_id), "monthly_users", value, "users", Window.month(NOV)
    )


def test_reads_do_not_grow_with_tenants_and_sums_span_a_customers_tenants() -> None:
    reader = CountingReader(tenants=10_000)
    view = load_view(reader, "keepnet", "kn-a", NOV)
    # two Keepnet accounts, one contract read, one read of the ignore list
    assert reader.calls == {"accounts": 1, "mappings": 2, "contracts": 1, "ignored": 1}

    for i in range(10_000):
        view.observe(record(f"t{i}", 1))  # c0..c99 own 100 tenants each: 100 used of 10 contracted
    view.observe(record("t10000", 5))  # "shared" has tenants in kn-b too: judged monthly only
    view.observe(record("stray", 3))
    view.observe(record("idle", 0))
    view.observe(record("skipped", 4))  # ignored in kn-a: never alerted (kn-b's "stray" is another tenant)
    findings, failed = view.findings(DEFAULT_RULES, failed_tenants=["t0"], names=dict)
    under = [f for f in findings if f.rule == UNDER_BILLED]
    assert len(under) == 99  # c0 is not judged: one of its tenants failed
    assert {f.record.value for f in under} == {100}
    assert {f.customer_id for f in under} == {f"c{i}" for i in range(1, 100)}
    assert [f.record.tenant_id for f in findings if f.rule == UNMAPPED_TENANT] == ["stray"]
    assert failed == {"c0"}
    judged = view.judged(failed, [])
    assert ("customer:c1", "monthly_users", "2026-11") in judged
    assert not any(t in ("customer:c0", "customer:shared") for t, _, _ in judged)

"""under_billed and unmapped_tenant through the real Keepnet handler: once per incident, resolved when the
contract or the mapping is fixed, silenced like any rule, with the customer named in the event."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.keepnet import KeepnetSimulator, make_companies
from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Period
from usagewatch.store.billing import BillingStore

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-secret-1a2b3c4d5e"
ACCOUNT = "keepnet-main"
USERS = [30, 25, 40, 12, 7]  # monthly users of the five companies


def companies() -> list[dict[str, Any]]:
    rows = make_companies(5, seed=23, over_limit=0, unlimited=0, prefix="b")
    for row, users in zip(rows, USERS, strict=True):
        row["monthlyActiveUserCount"] = users
    return rows


@pytest.fixture
def keepnet() -> Iterator[KeepnetSimulator]:
    with KeepnetSimulator(companies=companies(), clients={"msp": (CLIENT_SECRET, "Reseller")}) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def env(aws: LocalAws, keepnet: KeepnetSimulator) -> dict[str, str]:
    account = {"account_id": ACCOUNT, "base_url": keepnet.url, "client_id": "msp", "client_secret": CLIENT_SECRET}
    aws.put_secret(SECRET, [account])
    return aws.environment("keepnet", secret_name=SECRET)


def ref(sim: KeepnetSimulator, index: int) -> TenantRef:
    return TenantRef("keepnet", ACCOUNT, sim.default_companies[index]["companyResourceId"])


def billing_events(aws: LocalAws) -> list[dict[str, Any]]:
    return [e for e in aws.drain_events() if e.get("rule") in ("under_billed", "unmapped_tenant")]


def at(day: int, hour: int = 6) -> dict[str, str]:
    return {"scheduled_time": f"2026-11-{day:02d}T{hour:02d}:00:00Z"}


def setup_billing(aws: LocalAws, sim: KeepnetSimulator, *, acme_quantity: int) -> BillingStore:
    """acme owns companies 0 and 1 (55 users), globex 2 and 3 (52 users); company 4 belongs to nobody."""
    billing = BillingStore(aws.store())
    customers = [Customer("acme", "Acme Logistics"), Customer("globex", "Globex Corporation")]
    owners = {0: "acme", 1: "acme", 2: "globex", 3: "globex"}
    billing.import_mappings(customers, [TenantMapping(c, ref(sim, i)) for i, c in owners.items()])
    billing.import_contracts(
        [
            Contract("acme", "keepnet", "monthly_users", acme_quantity, Period(2026, 1)),
            Contract("globex", "keepnet", "monthly_users", 60, Period(2026, 1)),
        ]
    )
    return billing


def test_under_billed_and_unmapped_fire_once_and_resolve_when_fixed(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    billing = setup_billing(aws, keepnet, acme_quantity=50)

    invoke("keepnet", at(20), env)
    events = billing_events(aws)
    by_rule = {e["rule"]: e for e in events}
    assert sorted(by_rule) == ["under_billed", "unmapped_tenant"], events
    assert len(events) == 2
    under = by_rule["under_billed"]
    assert (under["tenant_id"], under["customer_id"], under["tenant_name"]) == (
        "customer:acme",
        "acme",
        "Acme Logistics",
    )
    assert (under["value"], under["quota"], under["metric"], under["severity"]) == (55, 50, "monthly_users", "warning")
    unmapped = by_rule["unmapped_tenant"]
    assert unmapped["tenant_id"] == ref(keepnet, 4).tenant_id
    assert "customer_id" not in unmapped

    invoke("keepnet", at(21), env)
    assert billing_events(aws) == []  # once per incident

    # The operator bills acme for 60 and maps the fifth company: both resolve.
    billing.import_contracts([Contract("acme", "keepnet", "monthly_users", 60, Period(2026, 11))])
    billing.import_mappings([Customer("initech", "Initech")], [TenantMapping("initech", ref(keepnet, 4))])
    invoke("keepnet", at(22), env)
    resolved = billing_events(aws)
    assert sorted((e["event_type"], e["rule"]) for e in resolved) == [
        ("usage.threshold.resolved", "under_billed"),
        ("usage.threshold.resolved", "unmapped_tenant"),
    ]
    assert {e["customer_id"] for e in resolved if e["rule"] == "under_billed"} == {"acme"}

    invoke("keepnet", at(23), env)
    assert billing_events(aws) == []


def test_usage_growing_past_the_contract_fires_and_a_removed_contract_resolves(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    billing = setup_billing(aws, keepnet, acme_quantity=55)
    invoke("keepnet", at(20), env)
    assert [e["rule"] for e in billing_events(aws)] == ["unmapped_tenant"]

    keepnet.default_companies[2]["monthlyActiveUserCount"] = 48  # globex: 48 + 12 = 60 of 60 is fine
    keepnet.default_companies[3]["monthlyActiveUserCount"] = 13  # 61 of 60 is not
    invoke("keepnet", at(21), env)
    (event,) = billing_events(aws)
    assert (event["rule"], event["customer_id"], event["value"], event["quota"]) == ("under_billed", "globex", 61, 60)

    # globex's contract ends in October: no contract in force, nothing to be under-billed against.
    billing.import_contracts(
        [Contract("globex", "keepnet", "monthly_users", 60, Period(2026, 1), effective_to=Period(2026, 10))]
    )
    invoke("keepnet", at(22), env)
    (event,) = billing_events(aws)
    assert (event["event_type"], event["customer_id"]) == ("usage.threshold.resolved", "globex")


def test_billing_rules_are_silenced_like_any_rule_and_need_mappings_to_exist(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    invoke("keepnet", at(20), env)
    assert billing_events(aws) == []  # nobody maps Keepnet tenants yet: nothing is "unmapped"

    setup_billing(aws, keepnet, acme_quantity=50)
    aws.put_rules("/usagewatch/rules", {"silences": [{"rule": "unmapped_tenant", "until": "2027-01-01"}]})
    env = aws.environment("keepnet", secret_name=SECRET)
    invoke("keepnet", at(21), env)
    assert [e["rule"] for e in billing_events(aws)] == ["under_billed"]


def test_alerts_on_a_mapped_tenant_name_its_customer(
    aws: LocalAws, keepnet: KeepnetSimulator, env: dict[str, str], invoke: Invoke
) -> None:
    setup_billing(aws, keepnet, acme_quantity=100)
    keepnet.default_companies[0]["targetUserCount"] = 10_000  # over its licence limit
    keepnet.default_companies[0]["isTargetUserCountExceededLimit"] = True
    invoke("keepnet", at(20), env)
    over = [e for e in aws.drain_events() if e.get("tenant_id") == ref(keepnet, 0).tenant_id]
    assert over and all(e["customer_id"] == "acme" for e in over), over

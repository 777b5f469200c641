"""Keys built from vendor ids (issue 11 point 10): any id makes a valid, collision-free key, names are cut to a
documented length, and one bad company fails alone. Keepnet behind the real handler, moto and the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import Harness, at
from tests.faults.sims import HookedKeepnet
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.keepnet import make_companies
from usagewatch.model import MAX_NAME_LENGTH
from usagewatch.store import MAX_KEY_PART, key_part

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-hostile-keys-secret-1"
ACCOUNT = "kn-keys"
PERIOD = "2026-11"
LONG_ID = "k" * 1100
HUGE_NAME = "Huge Name Ltd " * 32_000  # ~450 kB


@pytest.fixture
def world(aws: LocalAws, invoke: Invoke, clock: Any) -> Iterator[tuple[Harness, HookedKeepnet]]:
    companies = make_companies(4, seed=11, over_limit=0, unlimited=0, prefix="h")
    for company, resource_id in zip(companies, ("kn-dup", "kn-dup#x", LONG_ID, "kn-plain"), strict=True):
        company["companyResourceId"] = resource_id
    companies[3]["companyName"] = HUGE_NAME
    with HookedKeepnet(companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=10) as sim:
        assert isinstance(sim, HookedKeepnet)
        aws.put_secret(
            SECRET,
            [{"account_id": ACCOUNT, "base_url": sim.url, "client_id": "msp", "client_secret": CLIENT_SECRET}],
        )
        yield Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET)), sim


def test_key_part_escapes_the_separator_and_bounds_the_length() -> None:
    assert key_part("kn-dup") == "kn-dup"
    assert key_part("kn-dup#x") == "kn-dup%23x" and not key_part("kn-dup#x").startswith("kn-dup#")
    assert key_part("a%23b") != key_part("a#b")
    long = key_part(LONG_ID)
    assert len(long.encode()) <= MAX_KEY_PART and long != key_part(LONG_ID[:-1] + "j")


def test_any_vendor_id_and_name_is_stored_and_a_failed_company_carries_exactly(
    world: tuple[Harness, HookedKeepnet],
) -> None:
    h, sim = world
    first = h.run(at("06:00"))
    assert first.error is None, first.summary
    stored = h.stored(PERIOD)
    tenants = {tenant for (_a, tenant, _m) in stored.usage}
    assert tenants == {"kn-dup", "kn-dup#x", LONG_ID, "kn-plain"}
    names = {item["tenant_name"] for key, item in stored.usage.items() if key[1] == "kn-plain"}
    assert all(len(name) <= MAX_NAME_LENGTH for name in names)

    # "kn-dup" now fails (a null count): its last numbers are carried, and only its own.
    for company in sim.default_companies:
        if company["companyResourceId"] == "kn-dup":
            company["monthlyActiveUserCount"] = None
    second = h.run(at("12:00"))
    assert second.account(ACCOUNT)["status"] == "partial"
    after = h.stored(PERIOD)
    for metric, total in after.account_totals(ACCOUNT).items():
        items = sum(v for (_a, _t, m), v in after.values(ACCOUNT, billed_only=True).items() if m == metric)
        assert total == items, f"{metric}: total {total} against items summing to {items}"

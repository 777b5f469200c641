"""Microsoft 365 end to end: the real handler, the template's environment, moto, the simulator over HTTP.

Needs the template's `Microsoft365CollectorFunction` (issue 18, the lead's part): until then these fail at
`aws.environment("microsoft365")` with "template has no resource".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Invoke, event_file
from tests.local_aws import LocalAws
from tests.simulators.microsoft365 import (
    CATALOGUE,
    CLIENT_ID,
    CLIENT_SECRET,
    PARTNER,
    Microsoft365Simulator,
    make_customers,
    sku,
)

SECRET = "usagewatch/microsoft365"
TENANTS = 50
UNUSED, OVER = 10, 5
NO_CONSENT = 7  # the tenant whose admin never consented to the app


@pytest.fixture
def sim() -> Iterator[Microsoft365Simulator]:
    customers = make_customers(TENANTS, seed=18, unused=UNUSED, over=OVER)
    for customer in customers[20:30]:  # a few tenants with many SKUs, read in pages of one: throttled
        customer.skus = [sku(p, s, tenant_id=customer.tenant_id, consumed=1, enabled=3) for p, s in CATALOGUE[1:5]]
    customers[NO_CONSENT].consent = "never"
    with Microsoft365Simulator(customers=customers, page_cap=20, tenant_rps=2, retry_after=0.3) as simulator:
        assert isinstance(simulator, Microsoft365Simulator)
        yield simulator


def account(sim: Microsoft365Simulator, **extra: Any) -> dict[str, Any]:
    return {
        "account_id": "m365-main",
        "partner_tenant_id": PARTNER,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority": sim.url,
        "graph_url": sim.url,
        "page_size": 20,
        **extra,
    }


@pytest.fixture
def env(aws: LocalAws, sim: Microsoft365Simulator) -> dict[str, str]:
    aws.put_secret(SECRET, [account(sim)])
    return aws.environment("microsoft365", secret_name=SECRET)


def test_fifty_tenants_stored_with_throttling_and_only_the_unconsented_tenant_fails(
    aws: LocalAws, sim: Microsoft365Simulator, env: dict[str, str], invoke: Invoke
) -> None:
    sim.sku_page_cap = 1  # tenants 20-29 hold four SKUs: four pages against 2 requests a second each
    summary = invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)

    assert summary["tenants_collected"] == TENANTS - 1 and summary["tenants_failed"] == 1
    assert sum(sim.throttled.values()) > 0, "the throttle never bit: the test would not show it is honoured"
    usage = aws.usage("2026-11", vendor="microsoft365")
    expected = {
        (c.tenant_id, s["skuId"]): (s["consumedUnits"], s["prepaidUnits"]["enabled"])
        for n, c in enumerate(sim.customers)
        if n != NO_CONSENT
        for s in c.skus
    }
    assert {(u["tenant_id"], u["attributes"]["sku_id"]): (u["value"], u["quota"]) for u in usage} == expected
    assert all(u["unit"] == "seats" for u in usage)
    failed = next(r for r in summary["account_results"] if r["account_id"] == "m365-main")
    assert failed["status"] == "partial"


def test_over_quota_seats_alerted_once_and_not_again(
    aws: LocalAws, sim: Microsoft365Simulator, env: dict[str, str], invoke: Invoke
) -> None:
    invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)
    events = aws.drain_events()

    over = {c.tenant_id for c in sim.customers[UNUSED : UNUSED + OVER]}
    breached = [e for e in events if e["event_type"] == "usage.threshold.breached"]
    over_quota = {e["tenant_id"] for e in breached if e["metric"] == "spb" and e["value"] > e["quota"]}
    assert over_quota == over
    keys = [(e["tenant_id"], e["metric"], e["rule"]) for e in breached]
    assert len(keys) == len(set(keys)), "one event per record and rule"
    failures = [e for e in events if e["event_type"] == "collection.failed"]
    assert [e["tenant_id"] for e in failures] == [sim.customers[NO_CONSENT].tenant_id]
    assert "LicenseAssignment.Read.All" in failures[0]["error"]

    second = invoke("microsoft365", {"scheduled_time": "2026-11-22T12:00:00Z"}, env)
    assert second["alerts_published"] == 0
    assert [e for e in aws.drain_events() if e["event_type"] == "usage.threshold.breached"] == []

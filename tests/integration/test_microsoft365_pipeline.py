"""Microsoft 365 end to end: the real handler, the template's environment, moto, the Graph simulator over HTTP.

50 customer tenants behind GDAP, Graph throttling on, one tenant that withdrew its consent: every other tenant's
SKUs stored exactly, `unused_licences` and `over_quota` published once, only the tenant without consent failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Invoke, event_file
from tests.local_aws import LocalAws
from tests.simulators.microsoft365 import (
    CLIENT_ID,
    CLIENT_SECRET,
    PARTNER,
    Customer,
    Microsoft365Simulator,
    make_customers,
)
from tests.virtual_time import PacingClock

SECRET = "usagewatch/microsoft365"
PERIOD = "2026-11"
WITHDRAWN = 20
FREE = {"flow_free", "teams_exploratory", "power_bi_standard"}


def metric(part: str) -> str:
    """docs/vendors/microsoft365.md: skuPartNumber lower-cased, every other character `_`."""
    return re.sub(r"[^a-z0-9]", "_", part.lower())


@pytest.fixture
def customers(request: pytest.FixtureRequest) -> list[Customer]:
    """50 tenants; a test may ask for fewer (indirect parameter): the first ones are the same tenants, and any
    count from WITHDRAWN + 1 keeps the one without consent."""
    found = make_customers(getattr(request, "param", 50), seed=18, unused=6, over=3)
    found[WITHDRAWN].consent = "withdrawn"
    return found


@pytest.fixture
def graph(customers: list[Customer], monkeypatch: pytest.MonkeyPatch) -> Iterator[Microsoft365Simulator]:
    # Three listing pages, one SKU per subscribedSkus page, two Graph requests per tenant and second: every
    # tenant with more than two SKUs is throttled at least once. The simulator's throttle window and the source's
    # waits share one PacingClock: the throttling is as real, the waiting for its Retry-After instant.
    clock = PacingClock().install(monkeypatch)
    with Microsoft365Simulator(
        customers=customers, page_cap=20, sku_page_cap=1, tenant_rps=2, retry_after=0.2, clock=clock
    ) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def env(aws: LocalAws, graph: Microsoft365Simulator) -> dict[str, str]:
    account = {
        "account_id": "csp-main",
        "partner_tenant_id": PARTNER,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority": graph.url,
        "graph_url": graph.url,
    }
    aws.put_secret(SECRET, [account])
    return aws.environment("microsoft365", secret_name=SECRET)


def breaches(events: list[dict[str, Any]], rule: str) -> set[tuple[str, str]]:
    return {
        (e["tenant_id"], e["metric"])
        for e in events
        if e["event_type"] == "usage.threshold.breached" and e["rule"] == rule
    }


def expected_unused(customers: list[Customer]) -> set[tuple[str, str]]:
    return {
        (c.tenant_id, metric(s["skuPartNumber"]))
        for i, c in enumerate(customers)
        if i != WITHDRAWN
        for s in c.skus
        if metric(s["skuPartNumber"]) not in FREE and s["prepaidUnits"]["enabled"] - s["consumedUnits"] >= 1
    }


def test_fifty_tenants_throttled_one_without_consent(
    aws: LocalAws, graph: Microsoft365Simulator, customers: list[Customer], env: dict[str, str], invoke: Invoke
) -> None:
    summary = invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)

    assert (summary["tenants_collected"], summary["tenants_failed"]) == (49, 1)
    assert sum(graph.throttled.values()) > 0, "the run was never throttled: the test would prove nothing"
    stored = {(u["tenant_id"], u["metric"]): u for u in aws.usage(PERIOD, vendor="microsoft365")}
    want = {
        (c.tenant_id, metric(s["skuPartNumber"])): (s["consumedUnits"], s["prepaidUnits"]["enabled"])
        for i, c in enumerate(customers)
        if i != WITHDRAWN
        for s in c.skus
    }
    assert {k: (u["value"], u["quota"]) for k, u in stored.items()} == want
    assert all(u["unit"] == "seats" for u in stored.values())
    sku_ids = {(c.tenant_id, metric(s["skuPartNumber"])): s["skuId"] for c in customers for s in c.skus}
    assert all(u["attributes"]["sku_id"] == sku_ids[k] for k, u in stored.items())
    assert not any(k[0] == customers[WITHDRAWN].tenant_id for k in stored)

    events = aws.drain_events()
    unused = breaches(events, "unused_licences")
    assert unused == expected_unused(customers)
    assert {c.tenant_id for c in customers[:6]} <= {t for t, m in unused if m == "spb"}
    assert breaches(events, "over_quota") == {(c.tenant_id, "spb") for c in customers[6:9]}
    assert all(e["severity"] == "info" for e in events if e.get("rule") == "unused_licences")
    failed = [e for e in events if e["event_type"] == "collection.failed"]
    assert [e["tenant_id"] for e in failed] == [customers[WITHDRAWN].tenant_id]
    assert "consent" in failed[0]["error"] and "LicenseAssignment.Read.All" in failed[0]["error"]
    assert CLIENT_SECRET not in str(events)

    again = invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)
    assert again["tenants_collected"] == 49
    assert aws.drain_events() == [], "a second run over the same numbers announces nothing again"


@pytest.mark.parametrize("customers", [WITHDRAWN + 1], indirect=True)  # what it proves needs no 50
def test_unused_seats_resolve_when_assigned_or_when_the_sku_is_removed(
    aws: LocalAws, customers: list[Customer], env: dict[str, str], invoke: Invoke
) -> None:
    invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)
    aws.drain_events()
    assigned, removed = customers[0], customers[1]
    assigned.skus[0]["consumedUnits"] = assigned.skus[0]["prepaidUnits"]["enabled"]
    gone = removed.skus.pop(0)

    invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)
    events = aws.drain_events()
    resolved = {
        (e["tenant_id"], e["metric"], e["rule"]) for e in events if e["event_type"] == "usage.threshold.resolved"
    }
    assert resolved == {
        (assigned.tenant_id, "spb", "unused_licences"),
        (removed.tenant_id, metric(gone["skuPartNumber"]), "unused_licences"),
    }
    assert [e for e in events if e["event_type"] != "usage.threshold.resolved"] == []

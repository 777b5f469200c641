"""Microsoft365Source against the Entra + Graph simulator over HTTP on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.simulators.base import Fault, SimRequest
from tests.simulators.microsoft365 import (
    CATALOGUE,
    CLIENT_ID,
    CLIENT_SECRET,
    CUSTOMERS_PATH,
    PARTNER,
    SKUS_PATH,
    Customer,
    Microsoft365Simulator,
    make_customers,
    sku,
)
from usagewatch.errors import ConfigError, VendorAuthError
from usagewatch.http import RetryPolicy
from usagewatch.model import CollectionRequest, ListingGap, Period, TenantFailure, TenantResult, TenantUsage
from usagewatch.sources.microsoft365 import LISTING_GAP_ID, TOKEN_RENEW_MARGIN_SECONDS, Microsoft365Source

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
FAST = RetryPolicy(backoff_base=0.01, backoff_cap=0.05)


class Clock:
    """Monotonic time that a test can move forward (token expiry) while real sleeps still pass."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def account(sim: Microsoft365Simulator, **fields: Any) -> dict[str, Any]:
    return {
        "account_id": "m365-main",
        "partner_tenant_id": PARTNER,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "authority": sim.url,
        "graph_url": sim.url,
        **fields,
    }


def collect(source: Microsoft365Source, raw: dict[str, Any], when: datetime = NOW) -> list[TenantResult]:
    return list(source.collect(source.parse_account(raw), CollectionRequest(Period.of(when), when)))


def usage(results: list[TenantResult]) -> dict[str, TenantUsage]:
    return {r.tenant.tenant_id: r for r in results if isinstance(r, TenantUsage)}


def failures(results: list[TenantResult]) -> dict[str, str]:
    return {r.tenant.tenant_id: r.error for r in results if isinstance(r, TenantFailure)}


def skus_of(sim: Microsoft365Simulator, tenant_id: str) -> Any:
    return lambda r: r.path == SKUS_PATH and sim.tenant_of(r) == tenant_id


@pytest.fixture
def sim() -> Iterator[Microsoft365Simulator]:
    with Microsoft365Simulator(customers=make_customers(12, unused=2, over=1), page_cap=5) as simulator:
        assert isinstance(simulator, Microsoft365Simulator)
        yield simulator


def test_every_gdap_customer_is_read_through_the_paged_listing(sim: Microsoft365Simulator) -> None:
    results = collect(Microsoft365Source(retry=FAST), account(sim, page_size=5))

    got = usage(results)
    assert set(got) == {c.tenant_id for c in sim.customers} and not failures(results)
    assert sim.count(CUSTOMERS_PATH) == 3  # 12 customers, 5 a page: nextLink followed twice
    for customer in sim.customers:
        tenant = got[customer.tenant_id]
        assert tenant.tenant.tenant_name == customer.display_name
        expected = {s["skuId"]: (s["consumedUnits"], s["prepaidUnits"]["enabled"]) for s in customer.skus}
        assert {str(r.attributes["sku_id"]): (r.value, r.quota) for r in tenant.records if r.attributes} == expected
        assert all(r.unit == "seats" and r.period == Period(2026, 11) for r in tenant.records)
    over = got[sim.customers[2].tenant_id].records
    spb = next(r for r in over if r.metric == "spb")
    assert (spb.value, spb.quota, spb.attributes) == (
        12,
        10,
        {
            "applies_to": "User",
            "capability_status": "Warning",
            "locked_out": 0,
            "sku_id": "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46",
            "sku_part_number": "SPB",
            "suspended": 0,
            "warning": 2,
        },
    )


def test_tokens_are_reused_until_shortly_before_expiry_and_renewed_when_graph_refuses_them() -> None:
    customers = make_customers(3)
    clock = Clock()
    with Microsoft365Simulator(customers=customers, token_ttl=3600) as sim:
        assert isinstance(sim, Microsoft365Simulator)
        source = Microsoft365Source(retry=FAST, clock=clock)
        collect(source, account(sim))
        assert sim.tokens_issued == {PARTNER: 1, **{c.tenant_id: 1 for c in customers}}

        clock.offset = 3600 - TOKEN_RENEW_MARGIN_SECONDS - 60  # still valid for a while: reused
        collect(source, account(sim))
        assert set(sim.tokens_issued.values()) == {1}

        clock.offset = 3600 - TOKEN_RENEW_MARGIN_SECONDS + 1  # inside the margin: renewed before it expires
        collect(source, account(sim))
        assert set(sim.tokens_issued.values()) == {2}

        sim.expire_tokens()  # Entra revoked or shortened them: Graph says 401, one fresh token each, then read
        results = collect(source, account(sim))
        assert len(usage(results)) == 3 and set(sim.tokens_issued.values()) == {3}
        assert sim.statuses(SKUS_PATH).count(401) == 3


def four_skus(customers: list[Customer]) -> None:
    for customer in customers:
        customer.skus = [
            sku(part, sku_id, tenant_id=customer.tenant_id, consumed=1, enabled=2) for part, sku_id in CATALOGUE[:4]
        ]


@pytest.mark.realtime  # the simulator's per-tenant rate window runs on the real clock
def test_throttling_is_honoured_per_tenant_with_retry_after() -> None:
    customers = make_customers(4)
    four_skus(customers)
    with Microsoft365Simulator(customers=customers, sku_page_cap=1, tenant_rps=2, retry_after=0.4) as sim:
        assert isinstance(sim, Microsoft365Simulator)
        started = time.monotonic()
        # The retry policy caps a server's wait at 3 x backoff_cap: leave room for the 0.4 s asked.
        retry = RetryPolicy(backoff_base=0.01, backoff_cap=1.0)
        results = collect(Microsoft365Source(retry=retry), account(sim, requests_per_second=50))
        elapsed = time.monotonic() - started

    assert len(usage(results)) == 4 and not failures(results)
    assert all(len(r.records) == 4 for r in usage(results).values())
    assert sum(sim.throttled.values()) >= 4, sim.throttled  # every tenant throttled at least once
    assert elapsed >= 0.4, "the Retry-After wait was not honoured"


@pytest.mark.realtime  # the simulator's per-tenant rate window runs on the real clock
def test_the_pacer_keeps_each_tenant_under_its_rate() -> None:
    customers = make_customers(2)
    four_skus(customers)
    with Microsoft365Simulator(customers=customers, sku_page_cap=1, tenant_rps=3, retry_after=5) as sim:
        assert isinstance(sim, Microsoft365Simulator)
        started = time.monotonic()
        results = collect(Microsoft365Source(retry=FAST), account(sim, requests_per_second=2))
        elapsed = time.monotonic() - started
    assert len(usage(results)) == 2 and not sim.throttled, "paced at 2/s per tenant, none should be throttled"
    assert elapsed >= 1.0, "5 requests a tenant (token, 4 pages) at 2/s, burst 2: at least 1.5 s of pacing"


@pytest.mark.realtime  # concurrency is seen through a really slow server
def test_tenants_are_read_concurrently_within_the_bound() -> None:
    with Microsoft365Simulator(customers=make_customers(16), graph_latency=0.15) as sim:
        assert isinstance(sim, Microsoft365Simulator)
        results = collect(Microsoft365Source(retry=FAST), account(sim, concurrency=4))
    assert len(usage(results)) == 16
    assert 1 < sim.max_in_flight <= 4, "concurrent, never past the bound (token calls take some workers' turns)"


def test_a_tenant_refusing_consent_or_permission_fails_alone_naming_what_is_missing(
    sim: Microsoft365Simulator,
) -> None:
    never, withdrawn, no_permission = sim.customers[3], sim.customers[5], sim.customers[8]
    never.consent, withdrawn.consent, no_permission.can_read_skus = "never", "withdrawn", False

    results = collect(Microsoft365Source(retry=FAST), account(sim))

    assert len(usage(results)) == 9
    errors = failures(results)
    assert set(errors) == {never.tenant_id, withdrawn.tenant_id, no_permission.tenant_id}
    assert "AADSTS700016" in errors[never.tenant_id] and "AADSTS65001" in errors[withdrawn.tenant_id]
    for message in errors.values():
        assert "LicenseAssignment.Read.All" in message and "Cloud Application Administrator" in message
    assert "Authorization_RequestDenied" in errors[no_permission.tenant_id]
    assert never.display_name in errors[never.tenant_id]


def test_a_malformed_page_fails_that_tenant_alone_naming_the_field(sim: Microsoft365Simulator) -> None:
    victim = sim.customers[4]
    broken = dict(victim.skus[0])
    broken.pop("consumedUnits")
    sim.inject(Fault("json", skus_of(sim, victim.tenant_id), times=-1, body={"value": [broken]}))
    other = sim.customers[6]
    sim.inject(Fault("garble", skus_of(sim, other.tenant_id), times=-1))

    results = collect(Microsoft365Source(retry=FAST), account(sim))

    errors = failures(results)
    assert set(errors) == {victim.tenant_id, other.tenant_id} and len(usage(results)) == 10
    assert "consumedUnits must be an integer, got nothing" in errors[victim.tenant_id]
    assert "invalid or truncated JSON" in errors[other.tenant_id]


def test_tenants_replace_collects_exactly_the_list_without_the_listing(sim: Microsoft365Simulator) -> None:
    chosen = [sim.customers[1].domain.upper(), sim.customers[7].tenant_id]
    results = collect(Microsoft365Source(retry=FAST), account(sim, tenants=chosen, tenants_mode="replace"))
    assert sim.count(CUSTOMERS_PATH) == 0
    assert set(usage(results)) == {sim.customers[1].domain.lower(), sim.customers[7].tenant_id}
    assert PARTNER not in sim.tokens_issued


def test_tenants_restrict_filters_the_listing_and_names_the_ones_it_lacks(sim: Microsoft365Simulator) -> None:
    stranger = "7e7e7e7e-1111-4222-8333-944444444444"
    chosen = [sim.customers[0].tenant_id.upper(), sim.customers[11].tenant_id, stranger]
    results = collect(Microsoft365Source(retry=FAST), account(sim, tenants=chosen))
    assert set(usage(results)) == {sim.customers[0].tenant_id, sim.customers[11].tenant_id}
    assert "not among the partner's GDAP customers" in failures(results)[stranger]
    assert stranger not in sim.tokens_issued


def test_a_refused_listing_or_credential_fails_the_account(sim: Microsoft365Simulator) -> None:
    sim.partner_can_list = False
    with pytest.raises(VendorAuthError, match=r"DelegatedAdminRelationship\.Read\.All.*partner tenant"):
        collect(Microsoft365Source(retry=FAST), account(sim))
    sim.partner_can_list = True
    with pytest.raises(VendorAuthError, match=r"AADSTS7000215.*check client_id and client_secret"):
        collect(Microsoft365Source(retry=FAST), account(sim, client_secret="wrong"))
    # Without the listing (tenants replace), the first customer's token refused so fails the account too.
    replace = {"tenants": [c.tenant_id for c in sim.customers], "tenants_mode": "replace"}
    with pytest.raises(VendorAuthError, match="AADSTS7000215"):
        collect(Microsoft365Source(retry=FAST), account(sim, client_secret="wrong", **replace))


def test_a_listing_page_that_fails_after_the_first_is_a_gap(sim: Microsoft365Simulator) -> None:
    def second_page(request: SimRequest) -> bool:
        return request.path == CUSTOMERS_PATH and "$skiptoken" in request.query

    sim.inject(Fault("status", second_page, times=-1, status=503))
    results = collect(Microsoft365Source(retry=FAST), account(sim, page_size=5))
    assert set(usage(results)) == {c.tenant_id for c in sim.customers[:5]}
    gaps = [r for r in results if isinstance(r, ListingGap)]
    assert [g.tenant.tenant_id for g in gaps] == [LISTING_GAP_ID] and "HTTP 503" in gaps[0].error


def test_a_next_link_to_another_host_is_not_followed(sim: Microsoft365Simulator) -> None:
    page = {
        "value": [{"tenantId": sim.customers[0].tenant_id, "displayName": "X"}],
        "@odata.nextLink": "https://attacker.example/v1.0/tenantRelationships/delegatedAdminCustomers",
    }
    sim.inject(Fault("json", lambda r: r.path == CUSTOMERS_PATH, body=page))
    with pytest.raises(Exception, match="leaves graph_url"):
        collect(Microsoft365Source(retry=FAST), account(sim))


def test_another_month_than_the_current_is_refused(sim: Microsoft365Simulator) -> None:
    source = Microsoft365Source(retry=FAST)
    with pytest.raises(ConfigError, match="only the licences held now"):
        list(source.collect(source.parse_account(account(sim)), CollectionRequest(Period(2026, 10), NOW, True)))
    assert sim.count() == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"authority": "http://login.example.com"}, r"accounts\[0\]\.authority.*http:// is allowed only for loopback"),
        ({"graph_url": "http://10.0.0.5"}, r"accounts\[0\]\.graph_url.*loopback"),
        ({"client_id": "my-app"}, r"accounts\[0\]\.client_id.*GUID"),
        ({"tenants_mode": "replace"}, "tenants_mode applies only with a tenants list"),
        ({"tenants": ["not a tenant"]}, r"accounts\[0\]\.tenants.*neither a tenant id"),
        ({"concurrency": 17}, r"accounts\[0\]\.concurrency"),
        ({"partner_tenant_id": "x"}, r"accounts\[0\]\.partner_tenant_id"),
    ],
)
def test_a_bad_account_names_the_field(sim: Microsoft365Simulator, fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Microsoft365Source().parse_account(account(sim, **fields))


def test_the_secret_example_of_the_docs_parses() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "vendors" / "microsoft365.md").read_text()
    example = json.loads(page.split("```json", 1)[1].split("```", 1)[0])
    source = Microsoft365Source()
    accounts = [source.parse_account(raw, index=n) for n, raw in enumerate(example["accounts"])]
    assert [a.tenants_mode for a in accounts] == ["restrict", "replace"]
    assert accounts[1].tenants == ["8a1f0c3e-4b5d-4e6f-9a0b-1c2d3e4f5a6b", "fabrikam.onmicrosoft.com"]
    assert accounts[0].scope == "https://graph.microsoft.com/.default"

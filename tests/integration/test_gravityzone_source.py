"""GravityZoneSource against the JSON-RPC simulator over real HTTP on loopback (no AWS).

Most runs use an unlimited simulator and a fast client; the two rate tests run in real time with few
companies (a couple of seconds each).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.simulators.base import Fault, SimRequest
from tests.simulators.gravityzone import (
    GravityZoneSimulator,
    Tree,
    make_tree,
    max_in_window,
)
from tests.virtual_time import PacingClock
from usagewatch.errors import VendorApiError, VendorAuthError
from usagewatch.http import RetryPolicy
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    Period,
    TenantFailure,
    TenantResult,
    TenantUsage,
    UsageRecord,
)
from usagewatch.sources.gravityzone import (
    AUTH_REJECTED_MESSAGE,
    GravityZoneAccount,
    GravityZoneRpcError,
    GravityZoneSource,
)

API_KEY = "gz-test-key-4f1c9a7be2d84c0f"
NOVEMBER = Period(2026, 11)
MID_MONTH = CollectionRequest(NOVEMBER, datetime(2026, 11, 10, 6, tzinfo=UTC))
FAST = {"licensing_requests_per_second": 100, "network_requests_per_second": 100, "concurrency": 8}
QUICK_RETRY = RetryPolicy(max_attempts=3, max_total_seconds=5, backoff_base=0.01, backoff_cap=0.05)


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., GravityZoneSimulator]]:
    started: list[GravityZoneSimulator] = []

    def make(**kwargs: Any) -> GravityZoneSimulator:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("licensing_rps", None)
        kwargs.setdefault("network_rps", None)
        sim = GravityZoneSimulator(**kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def account(source: GravityZoneSource, sim: GravityZoneSimulator, **knobs: Any) -> GravityZoneAccount:
    raw = {"account_id": "gz-eu", "access_url": sim.access_url, "api_key": API_KEY, **knobs}
    return source.parse_account(raw)


def run(
    sim: GravityZoneSimulator,
    request: CollectionRequest = MID_MONTH,
    *,
    source: GravityZoneSource | None = None,
    **knobs: Any,
) -> list[TenantResult]:
    source = source or GravityZoneSource(retry=QUICK_RETRY)
    knobs = {**FAST, **knobs}
    return list(source.collect(account(source, sim, **knobs), request))


def usages(results: list[TenantResult]) -> dict[str, TenantUsage]:
    return {r.tenant.tenant_id: r for r in results if isinstance(r, TenantUsage)}


def failures(results: list[TenantResult]) -> dict[str, TenantFailure]:
    return {r.tenant.tenant_id: r for r in results if isinstance(r, TenantFailure)}


def records(results: list[TenantResult]) -> list[UsageRecord]:
    return [record for r in results if isinstance(r, TenantUsage) for record in r.records]


def metric(result: TenantUsage, name: str, period: Period = NOVEMBER) -> UsageRecord:
    return next(r for r in result.records if r.metric == name and r.period == period)


def months_asked(sim: GravityZoneSimulator) -> set[Any]:
    return {params.get("targetMonth") for _t, status, _m, params in sim.licensing_log if status == 200}


def billed_total(results: list[TenantResult], period: Period = NOVEMBER) -> int:
    return sum(
        int(r.value)
        for r in records(results)
        if r.tenant.billed and r.metric == "endpoint_monthly_usage" and r.period == period
    )


def on_params(**wanted: Any) -> Callable[[SimRequest], bool]:
    def match(req: SimRequest) -> bool:
        body = req.json()
        params = body.get("params") if isinstance(body, dict) else None
        return isinstance(params, dict) and all(params.get(k) == v for k, v in wanted.items())

    return match


def rpc_error(code: int, message: str, details: str) -> dict[str, Any]:
    return {"id": "x", "jsonrpc": "2.0", "error": {"code": code, "message": message, "data": {"details": details}}}


# --- the partner tree ----------------------------------------------------------------------------


def test_every_customer_across_the_partner_tree_for_the_right_month(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()
    tree = sim.tree

    results = run(sim)

    got = usages(results)
    assert not failures(results)
    customers = {t for t, r in got.items() if r.tenant.billed}
    partners = {t for t, r in got.items() if not r.tenant.billed}
    assert customers == set(sim.customers())
    assert len(customers) == 40
    assert partners == set(sim.partners())
    assert len(partners) == 3  # two partners and a sub-partner
    for company_id in customers:
        assert got[company_id].tenant.parent_tenant_id == tree.enclosing_company(company_id)
        assert got[company_id].tenant.tenant_name == tree.nodes[company_id].name
        expected = sim.customer_usage(company_id, "11/2026")
        assert metric(got[company_id], "endpoint_monthly_usage").value == expected["endpointMonthlyUsage"]
        assert (
            metric(got[company_id], "endpoint_monthly_usage").minimum
            == expected["minimumUsage"]["endpointMonthlyUsage"]
        )
        assert metric(got[company_id], "sve_vdi_monthly_usage").unit == "hours"
    sub_partner = next(p for p in partners if tree.nodes[p].parent is not None)
    assert got[sub_partner].tenant.parent_tenant_id == tree.nodes[sub_partner].parent
    assert {r.period for r in records(results)} == {NOVEMBER}
    assert months_asked(sim) == {"11/2026"}


def test_totals_sum_customers_only_so_nothing_is_counted_twice(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()

    results = run(sim)

    root_total = sim.company_usage(None, "11/2026")["endpointMonthlyUsage"]
    assert billed_total(results) == root_total
    everything = sum(int(r.value) for r in records(results) if r.metric == "endpoint_monthly_usage")
    assert everything > root_total  # the partner rows hold their subtrees again: never billed
    for partner in sim.partners():
        row = metric(usages(results)[partner], "endpoint_monthly_usage")
        below = sim.tree.customers_below(partner)
        assert row.value == sum(sim.customer_usage(c, "11/2026")["endpointMonthlyUsage"] for c in below)


def test_failing_company_is_reported_alone(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree()
    sub_partner = next(p for p in tree.partners() if tree.nodes[p].parent is not None)
    broken = tree.nodes[sub_partner].children[0]
    sim: GravityZoneSimulator = sim_factory(tree=tree, failing_companies=[broken])

    results = run(sim)

    assert list(failures(results)) == [broken]
    error = failures(results)[broken].error
    assert tree.nodes[broken].name in error
    assert "-32000" in error
    assert "11/2026" in error
    assert failures(results)[broken].tenant.billed
    assert len(usages(results)) == 40 + 3 - 1


def test_company_without_monthly_licence_records_nothing_and_is_no_failure(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=6, partners=1, sub_partner=False, folder=False)
    unlicensed = tree.customers()[0]
    sim: GravityZoneSimulator = sim_factory(tree=tree, no_licence_companies=[unlicensed])

    results = run(sim)

    assert not failures(results)
    assert usages(results)[unlicensed].records == ()
    assert len(usages(results)) == 7
    assert billed_total(results) == sim.company_usage(None, "11/2026")["endpointMonthlyUsage"]
    assert any(params.get("companyId") == unlicensed for _t, _s, _m, params in sim.licensing_log)


def test_a_company_with_zero_usage_records_zeros(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=3, partners=0, folder=False)
    idle = tree.customers()[1]
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    sim.set_usage(idle, "11/2026", {"endpointMonthlyUsage": 0, "edrMonthlyUsage": 0})

    got = usages(run(sim))[idle]

    assert {(r.metric, r.value) for r in got.records} == {("endpoint_monthly_usage", 0), ("edr_monthly_usage", 0)}


def test_previous_month_is_collected_in_the_first_days_only(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=6, partners=1, sub_partner=False, folder=False)
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    customer = tree.customers()[0]
    sim.set_usage(customer, "10/2026", {"endpointMonthlyUsage": 77, "minimumUsage": {"endpointMonthlyUsage": 80}})

    early = run(sim, CollectionRequest(NOVEMBER, datetime(2026, 11, 2, 6, tzinfo=UTC)))

    assert months_asked(sim) == {"11/2026", "10/2026"}
    assert {r.period for r in records(early)} == {NOVEMBER, Period(2026, 10)}
    october = metric(usages(early)[customer], "endpoint_monthly_usage", Period(2026, 10))
    assert (october.value, october.minimum) == (77, 80)
    assert len(usages(early)) == 7  # one result per company, both months inside

    sim.licensing_log.clear()
    later = run(sim, CollectionRequest(NOVEMBER, datetime(2026, 11, 10, 6, tzinfo=UTC)))

    assert months_asked(sim) == {"11/2026"}
    assert {r.period for r in records(later)} == {NOVEMBER}


def test_an_explicit_period_is_collected_alone(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory(tree=make_tree(customers=3, partners=0, folder=False))

    results = run(sim, CollectionRequest(Period(2026, 3), datetime(2026, 11, 2, tzinfo=UTC), period_explicit=True))

    assert months_asked(sim) == {"03/2026"}
    assert {r.period for r in records(results)} == {Period(2026, 3)}


def test_usage_changes_between_runs_are_picked_up(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=3, partners=0, folder=False)
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    customer = tree.customers()[2]
    source = GravityZoneSource(retry=QUICK_RETRY)

    sim.set_usage(customer, "2026-11", {"endpointMonthlyUsage": 10})
    first = metric(usages(run(sim, source=source))[customer], "endpoint_monthly_usage")
    sim.set_usage(customer, "11/2026", {"endpointMonthlyUsage": 12})
    second = metric(usages(run(sim, source=source))[customer], "endpoint_monthly_usage")

    assert (first.value, second.value) == (10, 12)


def test_per_product_type_sums_the_product_types(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=4, partners=1, sub_partner=False, folder=False)
    sim: GravityZoneSimulator = sim_factory(tree=tree)

    results = run(sim, per_product_type=True)

    methods = {method for _t, _s, method, _p in sim.licensing_log}
    assert methods == {"getMonthlyUsagePerProductType"}
    for company_id in tree.customers():
        got = usages(results)[company_id]
        base = sim.customer_usage(company_id, "11/2026")
        assert metric(got, "endpoint_monthly_usage").value == base["endpointMonthlyUsage"] + 2
        assert metric(got, "mobile_security_monthly_usage").value == 1
        assert metric(got, "endpoint_monthly_usage").minimum == base["minimumUsage"]["endpointMonthlyUsage"]
    assert billed_total(results) == sim.company_usage(None, "11/2026")["endpointMonthlyUsage"] + 2 * 4


def test_a_bad_counter_fails_that_company_naming_the_field(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=3, partners=0, folder=False)
    bad = tree.customers()[1]
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    sim.set_usage(bad, "11/2026", {"endpointMonthlyUsage": 5, "edrMonthlyUsage": "3"})

    results = run(sim)

    assert list(failures(results)) == [bad]
    assert "edrMonthlyUsage" in failures(results)[bad].error
    assert len(usages(results)) == 2


# --- walking the tree: filters, folders, repeats, cycles, broken listings -------------------------


def test_tree_walk_without_the_company_type_filter_probes_children(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory(company_type_filter=False)

    results = run(sim)

    assert not failures(results)
    assert {t for t, r in usages(results).items() if r.tenant.billed} == set(sim.customers())
    assert {t for t, r in usages(results).items() if not r.tenant.billed} == set(sim.partners())
    assert billed_total(results) == sim.company_usage(None, "11/2026")["endpointMonthlyUsage"]


def test_companies_inside_folders_are_found_under_their_company(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()
    in_folder = [c for c in sim.customers() if sim.tree.nodes[sim.tree.nodes[c].parent or c].kind == "folder"]
    assert in_folder

    got = usages(run(sim))

    assert all(got[c].tenant.parent_tenant_id is None for c in in_folder)  # the folder sits under the root


def test_repeats_and_cycles_are_walked_once(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=8, partners=2, sub_partner=True, folder=False)
    partner_a, sub_partner, partner_b = tree.partners()
    tree.nodes[sub_partner].children.append(partner_a)  # a cycle: A -> A1 -> A
    repeated = tree.nodes[partner_b].children[0]
    tree.nodes[partner_a].children.append(repeated)  # a company listed under two partners
    sim: GravityZoneSimulator = sim_factory(tree=tree)

    results = run(sim)

    ids = [r.tenant.tenant_id for r in results]
    assert len(ids) == len(set(ids)) == 8 + 3
    assert not failures(results)


def test_a_sub_partner_listing_failure_fails_that_partner_only(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree()
    sub_partner = next(p for p in tree.partners() if tree.nodes[p].parent is not None)
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    sim.inject(
        Fault(
            "json",
            match=on_params(parentId=sub_partner),
            times=-1,
            body=rpc_error(-32000, "Server error", "Temporary failure"),
        )
    )

    results = run(sim)

    assert list(failures(results)) == [sub_partner]
    assert isinstance(failures(results)[sub_partner], ListingGap)  # its customers are unknown, not gone
    assert "Temporary failure" in failures(results)[sub_partner].error
    lost = set(tree.customers_below(sub_partner))
    assert set(usages(results)) == set(tree.customers()) - lost | set(tree.partners()) - {sub_partner}


def test_a_root_listing_failure_fails_the_account(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()
    sim.inject(Fault("status", match=lambda req: req.path.endswith("/network"), times=-1, status=503))

    with pytest.raises(VendorApiError, match=r"network\.getCompaniesList.*HTTP 503"):
        run(sim)


def test_root_company_id_starts_the_walk_there(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()
    partner_a = sim.partners()[0]

    results = run(sim, root_company_id=partner_a)

    below = set(sim.tree.customers_below(partner_a))
    assert {t for t, r in usages(results).items() if r.tenant.billed} == below
    assert billed_total(results) == sim.company_usage(partner_a, "11/2026")["endpointMonthlyUsage"]


def test_a_customer_as_root_company_id_is_a_clear_error(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()

    with pytest.raises(VendorApiError, match="root_company_id"):
        run(sim, root_company_id=sim.customers()[0])


# --- rate limits -----------------------------------------------------------------------------------


def test_429s_are_ridden_out_with_nothing_lost(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=6, partners=0, folder=False)
    sim: GravityZoneSimulator = sim_factory(tree=tree, licensing_rps=3, network_rps=10)

    results = run(sim, source=GravityZoneSource(), licensing_requests_per_second=10, network_requests_per_second=10)

    assert sim.rate_limited("licensing") > 0
    assert not failures(results)
    assert set(usages(results)) == set(tree.customers())
    assert billed_total(results) == sim.company_usage(None, "11/2026")["endpointMonthlyUsage"]


def test_a_json_rpc_rate_limit_answer_is_retried(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=3, partners=0, folder=False)
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    target = tree.customers()[0]
    sim.inject(Fault("json", match=on_params(companyId=target), body=rpc_error(-32003, "Too many requests", "")))
    fast = PacingClock()

    results = run(sim, source=GravityZoneSource(retry=QUICK_RETRY, sleep=fast.sleep, clock=fast))

    assert not failures(results)
    assert set(usages(results)) == set(tree.customers())
    assert 1.0 in fast.slept
    assert sum(1 for req in sim.requests if on_params(companyId=target)(req)) == 2


def test_the_client_paces_itself_under_the_documented_limits(sim_factory: Callable[..., Any]) -> None:
    tree = make_tree(customers=15, partners=0, folder=False)
    sim: GravityZoneSimulator = sim_factory(tree=tree, licensing_rps=5, network_rps=10)
    source = GravityZoneSource()

    started = time.monotonic()
    results = list(source.collect(account(source, sim), MID_MONTH))  # default knobs: 5 and 10 req/s
    elapsed = time.monotonic() - started

    # The accepted target is an isolated 429 at most: the client paces at 97 % of the limit, but on a loaded
    # machine two requests it sent 0.2 s apart can reach the server closer together (seen on fresh clones).
    assert sim.statuses().count(429) <= 1
    assert len(usages(results)) == 15
    assert max_in_window(sim.licensing_times()) <= 5
    assert elapsed >= 14 / 5  # paced, not a burst


# --- credentials -----------------------------------------------------------------------------------


def test_a_wrong_key_fails_the_account_with_the_region_hint(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory(api_key="another-key-entirely")

    with pytest.raises(VendorAuthError) as caught:
        run(sim)

    assert AUTH_REJECTED_MESSAGE in str(caught.value)
    assert caught.value.status == 401
    assert sim.statuses() == [401]  # not retried


def test_a_key_sent_to_another_regions_host_fails_the_same_way(sim_factory: Callable[..., Any]) -> None:
    home: GravityZoneSimulator = sim_factory()
    other_region: GravityZoneSimulator = sim_factory(api_key="the-other-regions-keys")
    source = GravityZoneSource(retry=QUICK_RETRY)
    raw: dict[str, object] = {"account_id": "gz-us", "access_url": other_region.access_url, "api_key": API_KEY}

    with pytest.raises(VendorAuthError, match="another region's host"):
        list(source.collect(source.parse_account(raw), MID_MONTH))
    assert home.count() == 0


@pytest.mark.parametrize(("enabled", "api"), [(("network",), "Licensing"), (("licensing",), "Network")])
def test_an_api_not_enabled_for_the_key_is_named(
    sim_factory: Callable[..., Any], enabled: tuple[str, ...], api: str
) -> None:
    sim: GravityZoneSimulator = sim_factory(tree=make_tree(customers=3, partners=0, folder=False), enabled_apis=enabled)

    with pytest.raises(VendorAuthError, match=f"the {api} API is not enabled"):
        run(sim)


def test_an_access_url_without_api_suffix_gets_a_hint(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory()
    source = GravityZoneSource(retry=QUICK_RETRY)
    raw: dict[str, object] = {"account_id": "gz", "access_url": sim.url, "api_key": API_KEY}

    with pytest.raises(VendorApiError, match="ending in /api"):
        list(source.collect(source.parse_account(raw), MID_MONTH))


def test_the_api_key_never_appears_in_errors_or_logs(
    sim_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"{API_KEY}:".encode()).decode()
    tree = make_tree(customers=5, partners=1, sub_partner=False, folder=False)
    broken, unlicensed, bad = tree.customers()[:3]
    sim: GravityZoneSimulator = sim_factory(
        tree=tree, failing_companies=[broken], no_licence_companies=[unlicensed], licensing_rps=3
    )
    sim.set_usage(bad, "11/2026", {"endpointMonthlyUsage": -4})
    texts: list[str] = []

    results = run(sim, source=GravityZoneSource(), licensing_requests_per_second=6)
    texts += [f.error for f in failures(results).values()]
    for wrong in (sim_factory(api_key="nope-nope-nope"), sim_factory(enabled_apis=("network",))):
        with pytest.raises(VendorAuthError) as caught:
            run(wrong)
        texts.append(str(caught.value))

    assert len(failures(results)) == 2
    texts += [caplog.text] + [str(vars(record)) for record in caplog.records]
    assert any("rate limited" in t or "retried" in t for t in texts)  # the logs did see the 429s
    for text in texts:
        assert API_KEY not in text
        assert basic not in text


def test_simulator_tree_helper_shape() -> None:
    tree: Tree = make_tree(customers=40, partners=2, sub_partner=True)
    assert len(tree.customers()) == 40
    assert len(tree.partners()) == 3
    assert any(node.kind == "folder" for node in tree.nodes.values())


# --- folders the documented way; "method not found" is a failure, never an empty list -------------


def folder_tree() -> Tree:
    """Root -> customer; root -> folder -> customer; root -> partner -> folder -> folder -> customer
    (and a customer directly under the partner)."""
    tree = Tree()
    tree.add("5f00000000000000000000c1", "Direct Customer AG", "customer")
    tree.add("5f00000000000000000000f1", "Healthcare", "folder")
    tree.add("5f00000000000000000000c2", "Clinic in a Folder Ltd", "customer", "5f00000000000000000000f1")
    tree.add("5f00000000000000000000p1", "Reseller A GmbH", "partner")
    tree.add("5f00000000000000000000c3", "Reseller's Own Customer BV", "customer", "5f00000000000000000000p1")
    tree.add("5f00000000000000000000f2", "Region North", "folder", "5f00000000000000000000p1")
    tree.add("5f00000000000000000000f3", "Schools", "folder", "5f00000000000000000000f2")
    tree.add("5f00000000000000000000c4", "School in Nested Folders SARL", "customer", "5f00000000000000000000f3")
    return tree


IN_FOLDERS = {"5f00000000000000000000c2": None, "5f00000000000000000000c4": "5f00000000000000000000p1"}


def network_calls(sim: GravityZoneSimulator, method: str) -> list[str]:
    """The paths of the network requests that called `method`."""
    with sim._lock:
        requests = [req for req, _status in sim.responses]
    return [req.path for req in requests if isinstance(req.json(), dict) and req.json().get("method") == method]


def assert_every_customer_collected_with_its_numbers(sim: GravityZoneSimulator, results: list[TenantResult]) -> None:
    got = usages(results)
    assert not failures(results)
    assert {t for t, r in got.items() if r.tenant.billed} == set(sim.customers())
    for company, parent in IN_FOLDERS.items():
        assert got[company].tenant.parent_tenant_id == parent  # the company holding the folder
        expected = sim.customer_usage(company, "11/2026")["endpointMonthlyUsage"]
        assert metric(got[company], "endpoint_monthly_usage").value == expected
    assert billed_total(results) == sim.company_usage(None, "11/2026")["endpointMonthlyUsage"]


def test_customers_inside_folders_and_nested_folders_are_collected(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory(tree=folder_tree())

    results = run(sim)

    assert_every_customer_collected_with_its_numbers(sim, results)
    assert not network_calls(sim, "getNetworkInventoryItems")


def test_folders_come_from_inventory_items_v1_1_where_getCompanyFoldersList_is_missing(
    sim_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    sim: GravityZoneSimulator = sim_factory(tree=folder_tree(), missing_methods=["getCompanyFoldersList"])

    with caplog.at_level(logging.WARNING):
        results = run(sim)

    assert_every_customer_collected_with_its_numbers(sim, results)
    assert len(network_calls(sim, "getCompanyFoldersList")) == 1  # found missing once, not asked again
    inventory = network_calls(sim, "getNetworkInventoryItems")
    assert inventory and set(inventory) == {"/api/v1.1/jsonrpc/network"}
    assert "getCompanyFoldersList not found" in caplog.text


def test_inventory_folders_are_read_page_by_page(sim_factory: Callable[..., Any]) -> None:
    tree = Tree()
    for index in range(7):
        folder = tree.add(f"5f0000000000000000000{index:03d}", f"Folder {index}", "folder")
        tree.add(f"5f0000000000000000001{index:03d}", f"Customer {index}", "customer", folder.node_id)
    sim: GravityZoneSimulator = sim_factory(
        tree=tree, missing_methods=["getCompanyFoldersList"], inventory_max_per_page=3
    )

    results = run(sim)

    assert {t for t, r in usages(results).items() if r.tenant.billed} == set(tree.customers())
    pages = [
        req.json()["params"].get("page")
        for req, _s in sim.responses
        if isinstance(req.json(), dict) and req.json().get("method") == "getNetworkInventoryItems"
        and req.json()["params"].get("parentId") is None
    ]  # fmt: skip
    assert pages == [1, 2, 3]


def test_no_documented_way_to_list_folders_fails_the_account_visibly(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory(
        tree=folder_tree(), missing_methods=["getCompanyFoldersList", "getNetworkInventoryItems"]
    )

    with pytest.raises(VendorApiError, match=r"company folders cannot be listed.*method not found"):
        run(sim)


@pytest.mark.parametrize(
    ("method", "code", "message"),
    [
        ("getCompaniesList", -32601, "Method not found"),
        ("getCompaniesList", -32000, "Server error"),
        ("getCompanyFoldersList", -32602, "Invalid params"),  # once swallowed as "no folders"
        ("getCompanyFoldersList", -32000, "Server error"),
    ],
)
def test_a_partner_whose_listing_fails_is_a_listing_gap_naming_it(
    sim_factory: Callable[..., Any], method: str, code: int, message: str
) -> None:
    tree = folder_tree()
    partner = "5f00000000000000000000p1"
    sim: GravityZoneSimulator = sim_factory(tree=tree)

    def under_partner(req: SimRequest) -> bool:
        body = req.json()
        return isinstance(body, dict) and body.get("method") == method and on_params(parentId=partner)(req)

    sim.inject(Fault("json", match=under_partner, times=-1, body=rpc_error(code, message, "details here")))

    results = run(sim)

    gaps = [r for r in results if isinstance(r, ListingGap)]
    assert [g.tenant.tenant_id for g in gaps] == [partner]
    assert "Reseller A GmbH" in gaps[0].error and str(code) in gaps[0].error
    assert set(usages(results)) == set(tree.customers()) - set(tree.customers_below(partner))


def test_a_folder_whose_listing_fails_is_a_listing_gap_naming_it(sim_factory: Callable[..., Any]) -> None:
    tree = folder_tree()
    folder = "5f00000000000000000000f2"
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    sim.inject(Fault("status", match=on_params(parentId=folder), times=-1, status=503))

    results = run(sim)

    gaps = [r for r in results if isinstance(r, ListingGap)]
    assert [g.tenant.tenant_id for g in gaps] == [folder]
    assert gaps[0].tenant.parent_tenant_id == "5f00000000000000000000p1" and not gaps[0].tenant.billed
    assert "Region North" in gaps[0].error
    assert "5f00000000000000000000c4" not in usages(results)


def test_chunks_carry_listing_gaps_as_gaps(sim_factory: Callable[..., Any]) -> None:
    tree = folder_tree()
    partner = "5f00000000000000000000p1"
    sim: GravityZoneSimulator = sim_factory(tree=tree, failing_companies=["5f00000000000000000000c1"])
    sim.inject(
        Fault("json", match=on_params(parentId=partner), times=-1, body=rpc_error(-32601, "Method not found", ""))
    )
    source = GravityZoneSource(retry=QUICK_RETRY)
    gz = account(source, sim, **FAST)

    chunks = source.plan_chunks(gz, MID_MONTH, budget_seconds=0.01)

    assert chunks is not None and len(chunks) > 1
    results = [result for chunk in chunks for result in source.collect_chunk(gz, MID_MONTH, chunk)]
    gaps = [r for r in results if isinstance(r, ListingGap)]
    assert [(g.tenant.tenant_id, g.tenant.tenant_name) for g in gaps] == [(partner, "Reseller A GmbH")]
    plain = [r for r in results if isinstance(r, TenantFailure) and not isinstance(r, ListingGap)]
    assert [r.tenant.tenant_id for r in plain] == ["5f00000000000000000000c1"]  # a company's failure stays plain


def test_an_undocumented_method_answers_method_not_found(sim_factory: Callable[..., Any]) -> None:
    sim: GravityZoneSimulator = sim_factory(tree=folder_tree())
    rpc = GravityZoneSource(retry=QUICK_RETRY)._rpc(account(GravityZoneSource(), sim, **FAST))
    try:
        for version, api, method in [
            ("1.0", "network", "getCompanyFoldersTree"),
            ("1.0", "network", "getNetworkInventoryItems"),  # documented at 1.1 only
            ("1.1", "network", "getCompaniesList"),
            ("1.0", "licensing", "getCompaniesList"),
        ]:
            with pytest.raises(GravityZoneRpcError) as caught:
                rpc.call(api, method, {}, version=version)  # type: ignore[arg-type]
            assert caught.value.code == -32601
    finally:
        rpc.close()


# --- companies without a monthly licence; typed counters over HTTP ---------------------------------


def test_no_monthly_licence_by_the_documented_zero_and_by_the_legacy_error(
    sim_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    tree = make_tree(customers=4, partners=0, folder=False)
    unlicensed = tree.customers()[2]
    for as_error, signal in [(False, "documented answer 0"), (True, "error text (fallback)")]:
        sim: GravityZoneSimulator = sim_factory(
            tree=tree, no_licence_companies=[unlicensed], no_licence_as_error=as_error
        )
        caplog.clear()
        with caplog.at_level(logging.INFO):
            results = run(sim)

        assert not failures(results)
        assert usages(results)[unlicensed].records == ()
        logged = [r for r in caplog.records if r.getMessage() == "gravityzone company without monthly licence"]
        assert [getattr(r, "signal", None) for r in logged] == [signal]
        assert logged[0].levelno == (logging.WARNING if as_error else logging.INFO)


@pytest.mark.parametrize("value", ["lots", True, None, -4])
def test_a_documented_counter_of_the_wrong_type_fails_that_company_naming_company_and_field(
    sim_factory: Callable[..., Any], value: object
) -> None:
    tree = make_tree(customers=3, partners=0, folder=False)
    bad = tree.customers()[0]
    sim: GravityZoneSimulator = sim_factory(tree=tree)
    sim.set_usage(bad, "11/2026", {"endpointMonthlyUsage": value, "edrMonthlyUsage": 2, "someNewFlag": "yes"})

    results = run(sim)

    assert list(failures(results)) == [bad]
    error = failures(results)[bad].error
    assert "endpointMonthlyUsage" in error and bad in error and tree.nodes[bad].name in error
    assert set(usages(results)) == set(tree.customers()) - {bad}

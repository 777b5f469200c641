"""GravityZone rows of the fault matrix: the real handler, moto, two consoles on two JSON-RPC simulators.

Each console has 5 customer companies, one partner company and a company folder (empty unless a test moves a
customer into it); every customer reports two counters, so a partner's numbers (stored, not billed) are the sums
of its customers'. Console `gz-a` stays healthy; faults go to `gz-b`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.faults.harness import (
    Harness,
    Outcome,
    Stored,
    UsageKey,
    assert_account_contained,
    assert_clean_rerun_publishes_nothing,
    assert_no_duplicate_events,
    assert_ridden_out,
    assert_tenant_contained,
    assert_totals_untouched,
    assert_untouched,
    at,
    collected_at,
)
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, SimRequest
from tests.simulators.gravityzone import GravityZoneSimulator, make_tree
from usagewatch.handler import reset_config_cache
from usagewatch.sources.gravityzone import AUTH_REJECTED_MESSAGE

SECRET = "usagewatch/gravityzone"
KEYS = {"gz-a": "gz-fault-key-a-5e6f7a8b", "gz-b": "gz-fault-key-b-1c2d3e4f"}
PERIOD = "2026-11"
MONTH = "11/2026"
COUNTERS = {
    "endpointMonthlyUsage": "endpoint_monthly_usage",
    "emailSecurityMonthlyUsage": "email_security_monthly_usage",
}
LICENSING = "/api/v1.0/jsonrpc/licensing"
NETWORK = "/api/v1.0/jsonrpc/network"
RATE_LIMITED = {
    "jsonrpc": "2.0",
    "id": "x",
    "error": {"code": -32003, "message": "Too many requests", "data": {"details": "Rate limit exceeded"}},
}


def on_licensing(req: SimRequest) -> bool:
    return req.path == LICENSING


def on_network(req: SimRequest) -> bool:
    return req.path == NETWORK


def on_company(company_id: str) -> Any:
    def match(req: SimRequest) -> bool:
        body = req.json()
        params = body.get("params") if isinstance(body, dict) else None
        return req.path == LICENSING and isinstance(params, dict) and params.get("companyId") == company_id

    return match


@dataclass
class GravityZone:
    h: Harness
    a: GravityZoneSimulator
    b: GravityZoneSimulator
    aws: LocalAws
    accounts: tuple[str, ...] = ("gz-a", "gz-b")

    def sim(self, account_id: str) -> GravityZoneSimulator:
        return self.a if account_id == "gz-a" else self.b

    def configure(self, **b_knobs: Any) -> None:
        accounts = [account(x, self.sim(x), **(b_knobs if x == "gz-b" else {})) for x in self.accounts]
        self.aws.put_secret(SECRET, accounts)
        reset_config_cache()  # a new container, or the 5-minute secret cache expired

    def expected(self, *accounts: str) -> dict[UsageKey, Any]:
        values: dict[UsageKey, Any] = {}
        for account_id in accounts or self.accounts:
            sim = self.sim(account_id)
            for company in sim.customers():
                usage = sim.customer_usage(company, MONTH)
                for counter, metric in COUNTERS.items():
                    if isinstance(usage.get(counter), int):
                        values[(account_id, company, metric)] = usage[counter]
        return values

    def bump_all(self) -> None:
        for sim in (self.a, self.b):
            for company in sim.customers():
                usage = sim.customer_usage(company, MONTH)
                sim.set_usage(company, MONTH, {k: v + 1 for k, v in usage.items()})

    def victim(self) -> str:
        """A customer directly under the console's own company (no partner above it sums its numbers)."""
        return self.b.customers()[1]


def account(account_id: str, sim: GravityZoneSimulator, **knobs: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "access_url": sim.access_url,
        "api_key": KEYS[account_id],
        "licensing_requests_per_second": 100,
        "network_requests_per_second": 100,
        "timeout_seconds": 1,
        **knobs,
    }


def simulator(account_id: str) -> GravityZoneSimulator:
    seed = 41 if account_id == "gz-a" else 42
    tree = make_tree(customers=5, partners=1, sub_partner=False, seed=seed, folder=True)
    usage = {
        company: {MONTH: {"endpointMonthlyUsage": 10 * (i + 1) + seed, "emailSecurityMonthlyUsage": i + seed}}
        for i, company in enumerate(tree.customers())
    }
    return GravityZoneSimulator(
        api_key=KEYS[account_id], tree=tree, usage=usage, licensing_rps=None, network_rps=None, seed=seed
    )


@pytest.fixture
def gz(aws: LocalAws, invoke: Invoke, clock: Any, request: pytest.FixtureRequest) -> Iterator[GravityZone]:
    """Two accounts; `@pytest.mark.solo` tests (ridden-out rows, where no neighbour needs protecting) only gz-b."""
    with simulator("gz-a") as a, simulator("gz-b") as b:
        assert isinstance(a, GravityZoneSimulator) and isinstance(b, GravityZoneSimulator)
        solo = request.node.get_closest_marker("solo") is not None
        world = GravityZone(
            Harness(aws, invoke, clock, "gravityzone", {}), a, b, aws, ("gz-b",) if solo else ("gz-a", "gz-b")
        )
        world.configure()
        world.h.env = aws.environment("gravityzone", secret_name=SECRET)
        yield world


def ridden_out(gz: GravityZone, outcome: Outcome) -> Stored:
    stored = assert_ridden_out(
        gz.h,
        outcome,
        PERIOD,
        gz.expected(),
        billed_only=True,
        breakdown_tenants={a: set(gz.sim(a).partners()) for a in gz.accounts},
    )
    for account_id in gz.accounts:  # a partner's stored numbers are its customers' sums
        sim = gz.sim(account_id)
        for partner in sim.partners():
            usage = sim.company_usage(partner, MONTH)
            item = stored.usage[(account_id, partner, "endpoint_monthly_usage")]
            assert item["value"] == usage["endpointMonthlyUsage"] and item["billed"] is False
    assert_clean_rerun_publishes_nothing(gz.h, at("18:00"))
    return stored


def fired(*faults: Fault) -> None:
    for fault in faults:
        assert fault.fired == fault.times, f"fault {fault.action} fired {fault.fired} of {fault.times} times"


def contained_run(gz: GravityZone, *faults: Fault) -> tuple[Stored, Outcome, Stored]:
    gz.h.run(at("06:00"))
    before = gz.h.stored(PERIOD)
    gz.bump_all()
    gz.b.inject(*faults)
    outcome = gz.h.run(at("12:00"))
    return before, outcome, gz.h.stored(PERIOD)


def assert_company_contained(gz: GravityZone, company: str, before: Stored, outcome: Outcome, after: Stored) -> None:
    assert_untouched(before, after, [k for k in before.usage if k[:2] == ("gz-b", company)])
    fresh = {k: v for k, v in gz.expected().items() if k[1] != company}
    assert {k: v for k, v in after.values(billed_only=True).items() if k[1] != company} == fresh
    for metric in COUNTERS.values():
        total = after.totals[("gz-b", metric)]
        others = sum(v for k, v in fresh.items() if k[0] == "gz-b" and k[2] == metric)
        assert total["value"] == others + before.usage[("gz-b", company, metric)]["value"]
        assert total["carried_tenant_count"] == 1 and total["computed_at"] == collected_at(at("12:00"))
    assert outcome.account("gz-a")["status"] == "ok"
    assert_no_duplicate_events(outcome.events)


def assert_account_b_untouched(gz: GravityZone, before: Stored, outcome: Outcome, after: Stored) -> None:
    assert_untouched(before, after, [k for k in before.usage if k[0] == "gz-b"])
    assert_totals_untouched(before, after, "gz-b")
    assert after.values("gz-a", billed_only=True) == gz.expected("gz-a")
    assert outcome.account("gz-a")["status"] == "ok"
    assert_no_duplicate_events(outcome.events)


# --- HTTP and JSON-RPC faults, transient: ridden out ----------------------------------------------------

TRANSIENT: dict[str, list[Fault]] = {
    "429-with-32003-and-retry-after": [
        Fault(
            "status",
            on_licensing,
            status=429,
            headers={"Retry-After": "1"},
            body=RATE_LIMITED,
        )
    ],
    "200-with-32003": [Fault("json", on_licensing, body=RATE_LIMITED)],
    "5xx-burst": [
        Fault("status", on_licensing, status=500),
        Fault("status", on_licensing, status=502),
        Fault("status", on_licensing, status=503),
    ],
    "hang-past-timeout": [Fault("hang", on_licensing, seconds=2.5)],
    "connection-reset": [Fault("reset", on_network)],
    "truncated-body": [Fault("truncate", on_licensing)],
    "html-instead-of-json": [Fault("html", on_network)],
    "empty-200": [Fault("empty", on_licensing)],
}


@pytest.mark.solo
@pytest.mark.parametrize("name", list(TRANSIENT))
def test_transient_fault_is_ridden_out(gz: GravityZone, name: str) -> None:
    faults = copy.deepcopy(TRANSIENT[name])
    gz.b.inject(*faults)

    outcome = gz.h.run(at("06:00"))

    fired(*faults)
    ridden_out(gz, outcome)


@pytest.mark.solo
def test_server_rate_limit_is_ridden_out(gz: GravityZone) -> None:
    """The simulator's own rolling one-second window (429, JSON-RPC -32003, Retry-After: 1) at 2 licensing
    requests a second, while the account is configured for 100: the source holds, slows down and finishes."""
    gz.b.rps["licensing"] = 2

    outcome = gz.h.run(at("06:00"))

    assert gz.b.rate_limited("licensing") >= 1
    gz.b.rps["licensing"] = None
    ridden_out(gz, outcome)


# --- contained ------------------------------------------------------------------------------------------


def test_key_on_the_wrong_regional_host_fails_fast_naming_the_region(gz: GravityZone) -> None:
    gz.h.run(at("06:00"))
    before = gz.h.stored(PERIOD)
    with simulator("gz-a") as other_region:  # a console of another region: gz-b's key is unknown there
        assert isinstance(other_region, GravityZoneSimulator)
        gz.configure(access_url=other_region.access_url)

        outcome = gz.h.run(at("12:00"))

        assert other_region.count() <= 2, "retry storm on a refused key"
    message = assert_account_contained(outcome, gz.h, "gz-b", AUTH_REJECTED_MESSAGE, "region", "access_url")
    assert message.count("rejected") == 1
    assert_account_b_untouched(gz, before, outcome, gz.h.stored(PERIOD))


def test_company_that_errors_is_contained_to_it(gz: GravityZone) -> None:
    company = gz.victim()
    gz.h.run(at("06:00"))
    before = gz.h.stored(PERIOD)
    gz.bump_all()
    gz.b.failing_companies = {company}

    outcome = gz.h.run(at("12:00"))

    assert_tenant_contained(outcome, gz.h, "gz-b", company, company, "-32000")
    assert_company_contained(gz, company, before, outcome, gz.h.stored(PERIOD))


def test_company_whose_calls_keep_failing_is_contained_to_it(gz: GravityZone) -> None:
    company = gz.victim()
    before, outcome, after = contained_run(gz, Fault("status", on_company(company), times=-1, status=503))

    assert_tenant_contained(outcome, gz.h, "gz-b", company, company, "5 attempt(s)", "HTTP 503")
    assert_company_contained(gz, company, before, outcome, after)


def test_licensing_api_down_fails_the_account_once_not_every_company(gz: GravityZone) -> None:
    """Every usage call answering 503: after two rounds of `concurrency` companies failing in a row the source
    stops (the API is down, not the companies): one account failure and one event, not one per company, and
    no waiting out every company's retries (at production scale, 500 companies x 5 attempts outlast the
    Lambda timeout)."""
    gz.configure(concurrency=2)
    before, outcome, after = contained_run(gz, Fault("status", on_licensing, times=-1, status=503))

    assert_account_contained(outcome, gz.h, "gz-b", "licensing", "in a row", "HTTP 503")
    assert [e.get("tenant_id") for e in outcome.of_type("collection.failed")] == [None]
    assert_account_b_untouched(gz, before, outcome, after)


def test_network_api_down_fails_the_account(gz: GravityZone) -> None:
    before, outcome, after = contained_run(gz, Fault("status", on_network, times=-1, status=503))

    assert_account_contained(outcome, gz.h, "gz-b", "getCompaniesList", "HTTP 503")
    assert_account_b_untouched(gz, before, outcome, after)
    assert gz.b.count(LICENSING) == len(gz.b.customers()) + len(gz.b.partners())  # only the 06:00 run's


BAD_VALUES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "string-count": ("17", ("endpointMonthlyUsage", "expected a number", "string '17'")),
    "negative": (-5, ("endpointMonthlyUsage", "expected a count >= 0")),
    "absurd": (10**16, ("endpoint_monthly_usage", "out of range")),
    "text-count": ("lots", ("endpointMonthlyUsage", "documented counter", "the text 'lots'")),
    "boolean-count": (True, ("endpointMonthlyUsage", "documented counter", "the boolean true")),
    "null-count": (None, ("endpointMonthlyUsage", "documented counter", "null")),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_bad_value_fails_that_company_naming_the_field(gz: GravityZone, name: str) -> None:
    bad, fragments = BAD_VALUES[name]
    company = gz.victim()
    gz.h.run(at("06:00"))
    before = gz.h.stored(PERIOD)
    gz.bump_all()
    gz.b.set_usage(company, MONTH, {**gz.b.customer_usage(company, MONTH), "endpointMonthlyUsage": bad})

    outcome = gz.h.run(at("12:00"))

    assert_tenant_contained(outcome, gz.h, "gz-b", company, company, *fragments)
    after = gz.h.stored(PERIOD)
    assert_untouched(before, after, [k for k in before.usage if k[:2] == ("gz-b", company)])
    fresh = {k: v for k, v in gz.expected().items() if k[1] != company}
    assert {k: v for k, v in after.values(billed_only=True).items() if k[1] != company} == fresh


@pytest.mark.solo
def test_unknown_extra_fields_are_ignored(gz: GravityZone) -> None:
    for company in gz.b.customers():
        usage = gz.b.customer_usage(company, MONTH)
        gz.b.set_usage(company, MONTH, {**usage, "quantumMonthlyUsage": None, "details": {"x": 1}, "note": "new"})

    ridden_out(gz, gz.h.run(at("06:00")))


@pytest.mark.solo
def test_unicode_and_300_character_names_are_stored(gz: GravityZone) -> None:
    company = gz.victim()
    name = ("Ünïcødé Δοκιμή 株式会社 😀 " * 20)[:300]
    gz.b.tree.nodes[company].name = name

    stored = ridden_out(gz, gz.h.run(at("06:00")))

    assert stored.usage[("gz-b", company, "endpoint_monthly_usage")]["tenant_name"].startswith(name[:100])
    assert len(stored.usage[("gz-b", company, "endpoint_monthly_usage")]["tenant_name"]) <= 300


@pytest.mark.solo
def test_company_listed_twice_is_collected_once(gz: GravityZone) -> None:
    company = gz.victim()
    folder = next(n for n in gz.b.tree.nodes.values() if n.kind == "folder")
    folder.children.append(company)  # the same company under the root and in the folder

    outcome = gz.h.run(at("06:00"))

    asked = [r.json()["params"]["companyId"] for r in gz.b.requests if r.path == LICENSING]
    assert asked.count(company) == 1
    ridden_out(gz, outcome)


# --- listings: a refused folder or company listing is reported, never taken for an empty one ------------


def on_method(method: str, **wanted: Any) -> Any:
    def match(req: SimRequest) -> bool:
        body = req.json()
        params = body.get("params") if isinstance(body, dict) else None
        return (
            req.path == NETWORK
            and isinstance(body, dict)
            and body.get("method") == method
            and isinstance(params, dict)
            and all(params.get(k) == v for k, v in wanted.items())
        )

    return match


def rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": "x", "error": {"code": code, "message": message, "data": {"details": "no"}}}


def test_root_folder_listing_refused_fails_the_account_never_drops_its_folders(gz: GravityZone) -> None:
    """-32602 from the root's `getCompanyFoldersList` was once read as "no folders": the companies in folders
    vanished from a run reported ok. Now the account fails and its stored numbers stay."""
    fault = Fault("json", on_method("getCompanyFoldersList"), times=-1, body=rpc_error(-32602, "Invalid params"))
    before, outcome, after = contained_run(gz, fault)

    assert_account_contained(outcome, gz.h, "gz-b", "getCompanyFoldersList", "-32602")
    assert_account_b_untouched(gz, before, outcome, after)


def test_a_folder_whose_listing_answers_method_not_found_is_reported_by_name(gz: GravityZone) -> None:
    folder = next(n for n in gz.b.tree.nodes.values() if n.kind == "folder")
    moved = next(n for n in gz.b.tree.children_of(None) if n.kind == "customer" and n.node_id != gz.victim())
    gz.b.tree.top.remove(moved.node_id)  # into the folder, before the first run
    folder.children.append(moved.node_id)
    moved.parent = folder.node_id
    hidden = set(gz.b.tree.customers_below(folder.node_id))
    assert hidden == {moved.node_id}
    fault = Fault(
        "json",
        on_method("getCompaniesList", parentId=folder.node_id),
        times=-1,
        body=rpc_error(-32601, "Method not found"),
    )
    before, outcome, after = contained_run(gz, fault)

    assert_tenant_contained(outcome, gz.h, "gz-b", folder.node_id, folder.name, "-32601", "not collected")
    fresh = {k: v for k, v in gz.expected().items() if k[1] not in hidden}
    assert {k: v for k, v in after.values(billed_only=True).items() if k[1] not in hidden} == fresh
    assert_untouched(before, after, [k for k in before.usage if k[0] == "gz-b" and k[1] in hidden])
    assert outcome.account("gz-a")["status"] == "ok"

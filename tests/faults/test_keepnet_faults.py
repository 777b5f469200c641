"""Keepnet rows of the fault matrix: the real handler, moto, two Keepnet accounts on two simulators.

Account `kn-a` stays healthy in every test; faults go to `kn-b`. A *contained* row first runs clean (06:00),
then changes every company's numbers and runs with the fault (12:00): what failed must keep its 06:00 items
and totals, everything else must carry the 12:00 numbers.
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
    bump,
    collected_at,
)
from tests.faults.sims import HookedKeepnet, main_listing, on_main_page, page_of
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, SimRequest, on_path
from tests.simulators.keepnet import SEARCH_PATH, TOKEN_PATH, make_companies, nest, over_limit
from usagewatch.handler import reset_config_cache
from usagewatch.sources.keepnet import COUNT_METRICS, CREDENTIALS_REFUSED
from usagewatch.text import clean_name

SECRET = "usagewatch/keepnet"
CLIENT_ID = "msp-reseller"
CLIENT_SECRET = "kn-fault-secret-5b1e9c"
PERIOD = "2026-11"
METRICS = dict(COUNT_METRICS)
COUNT_FIELDS = tuple(METRICS)
COMPANIES = 6  # 3 pages of 2 at the server's page cap of 2


@dataclass
class Keepnet:
    h: Harness
    a: HookedKeepnet
    b: HookedKeepnet
    aws: LocalAws
    accounts: tuple[str, ...] = ("kn-a", "kn-b")

    def sim(self, account_id: str) -> HookedKeepnet:
        return self.a if account_id == "kn-a" else self.b

    def configure(self, **b_knobs: Any) -> None:
        """Rewrite the secret with extra knobs for account kn-b."""
        accounts = [account(x, self.sim(x), **(b_knobs if x == "kn-b" else {})) for x in self.accounts]
        self.aws.put_secret(SECRET, accounts)
        reset_config_cache()  # a new container, or the 5-minute secret cache expired

    def expected(self, *accounts: str) -> dict[UsageKey, Any]:
        values: dict[UsageKey, Any] = {}
        for account_id in accounts or self.accounts:
            for company in self.sim(account_id).default_companies:
                for field_name, metric in METRICS.items():
                    if field_name in company:
                        values[(account_id, company["companyResourceId"], metric)] = company[field_name]
        return values

    def bump_all(self) -> None:
        for sim in (self.a, self.b):
            for company in sim.default_companies:
                bump(company, COUNT_FIELDS)


def account(account_id: str, sim: HookedKeepnet, **knobs: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "base_url": sim.url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "page_size": 100,
        "timeout_seconds": 1,
        "requests_per_second": 200,
        **knobs,
    }


def simulator(prefix: str) -> HookedKeepnet:
    companies = make_companies(COMPANIES, seed=21 if prefix == "a" else 22, over_limit=1, unlimited=1, prefix=prefix)
    return HookedKeepnet(companies=companies, clients={CLIENT_ID: (CLIENT_SECRET, "Reseller")}, page_cap=2)


@pytest.fixture
def kn(aws: LocalAws, invoke: Invoke, clock: Any, request: pytest.FixtureRequest) -> Iterator[Keepnet]:
    """Two accounts; `@pytest.mark.solo` tests (ridden-out rows, where no neighbour needs protecting) only kn-b."""
    with simulator("a") as a, simulator("b") as b:
        solo = request.node.get_closest_marker("solo") is not None
        world = Keepnet(Harness(aws, invoke, clock, "keepnet", {}), a, b, aws, ("kn-b",) if solo else ("kn-a", "kn-b"))
        world.configure()
        world.h.env = aws.environment("keepnet", secret_name=SECRET)
        yield world


def ridden_out(kn: Keepnet, outcome: Outcome) -> Stored:
    stored = assert_ridden_out(kn.h, outcome, PERIOD, kn.expected())
    over = {
        (account_id, c["companyResourceId"])
        for account_id in kn.accounts
        for c in kn.sim(account_id).default_companies
        if over_limit(c)
    }
    flagged = {
        (e["account_id"], e["tenant_id"])
        for e in outcome.of_type("usage.threshold.breached")
        if e["rule"] == "vendor_limit_exceeded"
    }
    assert flagged == over
    assert_clean_rerun_publishes_nothing(kn.h, at("18:00"))
    return stored


def fired(*faults: Fault) -> None:
    for fault in faults:
        assert fault.fired == fault.times, f"fault {fault.action} fired {fault.fired} of {fault.times} times"


# --- HTTP faults, transient: ridden out -----------------------------------------------------------------

TRANSIENT: dict[str, list[Fault]] = {
    "429-retry-after": [Fault("status", on_path(SEARCH_PATH), status=429, headers={"Retry-After": "1"})],
    "429-no-retry-after": [Fault("status", on_path(SEARCH_PATH), times=2, status=429)],
    "5xx-burst": [
        Fault("status", on_main_page(2), status=500),
        Fault("status", on_main_page(2), status=502),
        Fault("status", on_main_page(2), status=503),
    ],
    "hang-past-timeout": [Fault("hang", on_main_page(2), seconds=2.5)],
    "connection-reset": [Fault("reset", on_main_page(1)), Fault("reset", on_path(TOKEN_PATH))],
    "truncated-body": [Fault("truncate", on_main_page(3)), Fault("truncate", on_path(TOKEN_PATH))],
    "html-instead-of-json": [Fault("html", on_main_page(1))],
    "empty-200": [Fault("empty", on_main_page(2)), Fault("empty", on_path(TOKEN_PATH))],
}


@pytest.mark.solo
@pytest.mark.parametrize("name", list(TRANSIENT))
def test_transient_http_fault_is_ridden_out(kn: Keepnet, name: str) -> None:
    faults = copy.deepcopy(TRANSIENT[name])
    kn.b.inject(*faults)

    outcome = kn.h.run(at("06:00"))

    fired(*faults)
    ridden_out(kn, outcome)


# --- HTTP faults that do not go away: the account is contained ----------------------------------------

PERSISTENT: dict[str, tuple[Fault, tuple[str, ...]]] = {
    "429-forever": (Fault("status", on_path(SEARCH_PATH), times=-1, status=429), ("5 attempt(s)", "HTTP 429")),
    "503-forever": (Fault("status", on_path(SEARCH_PATH), times=-1, status=503), ("5 attempt(s)", "HTTP 503")),
    "hang-forever": (Fault("hang", on_path(SEARCH_PATH), times=-1, seconds=1.0), ("timed out",)),
    "reset-forever": (Fault("reset", on_path(SEARCH_PATH), times=-1), ("connection failed",)),
    "truncated-forever": (Fault("truncate", on_path(SEARCH_PATH), times=-1), ("truncated",)),
    "html-forever": (Fault("html", on_path(SEARCH_PATH), times=-1), ("HTML instead of JSON",)),
    "empty-forever": (Fault("empty", on_path(SEARCH_PATH), times=-1), ("empty response body",)),
}


@pytest.mark.parametrize("name", list(PERSISTENT))
def test_persistent_http_fault_is_contained_to_its_account(kn: Keepnet, name: str) -> None:
    fault, fragments = copy.deepcopy(PERSISTENT[name])
    if fault.action == "hang":
        kn.configure(timeout_seconds=0.3)
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.bump_all()
    kn.b.inject(fault)

    outcome = kn.h.run(at("12:00"))

    assert_account_contained(outcome, kn.h, "kn-b", "Keepnet company search", *fragments)
    after = kn.h.stored(PERIOD)
    assert_untouched(before, after, [k for k in before.usage if k[0] == "kn-b"])
    assert_totals_untouched(before, after, "kn-b")
    assert after.values("kn-a") == kn.expected("kn-a")
    assert outcome.account("kn-a")["status"] == "ok"
    assert_no_duplicate_events(outcome.events)


# --- paging --------------------------------------------------------------------------------------------


@pytest.mark.solo
def test_server_caps_page_size_below_what_was_asked(kn: Keepnet) -> None:
    outcome = kn.h.run(at("06:00"))

    ridden_out(kn, outcome)
    main = [b for b in kn.b.search_bodies() if b["isTargetUserCountExceededLimit"] is False]
    assert main[0]["pageSize"] == 100
    # Pages after the first ask for the size the server said it uses, so no company falls between pages.
    assert sorted((b["pageNumber"], b["pageSize"]) for b in main[1:3]) == [(2, 2), (3, 2)]


def newcomer(sim: HookedKeepnet, n: int, *, create_time: str) -> dict[str, Any]:
    company = copy.deepcopy(sim.default_companies[0])
    company.update(companyResourceId=f"new-{n}", companyName=f"Newcomer {n}", createTime=create_time)
    return company


@pytest.mark.solo
def test_company_created_while_pages_are_read_loses_no_company(kn: Keepnet) -> None:
    """A company created mid-run (the newest, so first in CreateTime order) shifts every later page by one
    while page 2 is slower than page 3: totalNumberOfPages and totalNumberOfRecords change between pages."""
    original = kn.expected()
    added: list[dict[str, Any]] = []

    def create_company(sim: HookedKeepnet, request: SimRequest, body: dict[str, Any]) -> None:
        if not added and main_listing(request) and page_of(request) == 2:
            added.append(newcomer(sim, 1, create_time="2099-01-01T00:00:00.000"))
            sim.default_companies.insert(0, added[0])

    kn.b.before_search = create_company
    delay = Fault("hang", on_main_page(2), seconds=0.4)  # page 3 is answered first, before the shift
    kn.b.inject(delay)

    outcome = kn.h.run(at("06:00"))

    fired(delay)
    assert added
    stored = kn.h.stored(PERIOD)
    assert original.items() <= stored.values().items(), "a company that existed all along was not collected"
    ridden_out(kn, outcome)  # with the newcomer, which the run also found
    assert stored.account_totals("kn-b")["target_users"] == sum(c["targetUserCount"] for c in kn.b.default_companies)


@pytest.mark.solo
def test_company_deleted_while_pages_are_read_loses_no_other_company(kn: Keepnet) -> None:
    """A company deleted after page 1 was read shifts every later page up by one: totalNumberOfPages and
    totalNumberOfRecords shrink between pages, and the company that moved onto page 1 must still be read."""
    removed: list[dict[str, Any]] = []

    def delete_company(sim: HookedKeepnet, request: SimRequest, body: dict[str, Any]) -> None:
        if not removed and main_listing(request) and page_of(request) == 2:
            listed = sim._ordered(list(sim.default_companies), "CreateTime", False)
            removed.append(listed[1])  # on page 1, already read
            sim.default_companies.remove(listed[1])

    kn.b.before_search = delete_company
    survivors = kn.expected()

    outcome = kn.h.run(at("06:00"))

    assert removed
    gone = removed[0]["companyResourceId"]
    stored = kn.h.stored(PERIOD)
    assert {k: v for k, v in survivors.items() if k[1] != gone}.items() <= stored.values().items()
    assert outcome.error is None and outcome.summary["tenants_failed"] == 0
    assert_no_duplicate_events(outcome.events)


@pytest.mark.solo
def test_page_count_that_changes_between_pages_is_followed(kn: Keepnet) -> None:
    """Page 2 claims the listing has 1 page, page 3 claims 5 (a server counting differently per page)."""

    def miscount(sim: HookedKeepnet, request: SimRequest, body: dict[str, Any], data: dict[str, Any]) -> None:
        if main_listing(request) and data["pageNumber"] == 2:
            data["totalNumberOfPages"] = 1
        if main_listing(request) and data["pageNumber"] == 3:
            data["totalNumberOfPages"] = 5

    kn.b.after_search = miscount

    outcome = kn.h.run(at("06:00"))

    ridden_out(kn, outcome)
    pages = {b["pageNumber"] for b in kn.b.search_bodies() if b["isTargetUserCountExceededLimit"] is False}
    assert pages >= {1, 2, 3, 4, 5}


@pytest.mark.solo
def test_same_company_on_two_pages_is_counted_once(kn: Keepnet) -> None:
    first_page: list[dict[str, Any]] = []

    def repeat(sim: HookedKeepnet, request: SimRequest, body: dict[str, Any], data: dict[str, Any]) -> None:
        if main_listing(request) and data["pageNumber"] == 1:
            first_page.extend(copy.deepcopy(data["results"]))
        if main_listing(request) and data["pageNumber"] == 3:
            twin = copy.deepcopy(first_page[-1])
            twin["targetUserCount"] += 1000  # the first copy read wins; never added twice
            data["results"].append(twin)

    kn.b.after_search = repeat

    outcome = kn.h.run(at("06:00"))

    ridden_out(kn, outcome)


def test_pages_that_never_end_fail_the_account_without_a_total(kn: Keepnet) -> None:
    kn.configure(max_pages=6)
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.bump_all()

    def endless(sim: HookedKeepnet, request: SimRequest, body: dict[str, Any], data: dict[str, Any]) -> None:
        if main_listing(request):
            data["totalNumberOfPages"] = data["pageNumber"] + 1
            data["totalNumberOfRecords"] = None

    kn.b.after_search = endless

    outcome = kn.h.run(at("12:00"))

    assert_account_contained(outcome, kn.h, "kn-b", "did not end after 6 pages")
    after = kn.h.stored(PERIOD)
    assert_totals_untouched(before, after, "kn-b")
    assert after.values("kn-a") == kn.expected("kn-a")
    asked = [b["pageNumber"] for b in kn.b.search_bodies() if b["isTargetUserCountExceededLimit"] is False]
    assert max(asked) <= 7


def test_page_that_stays_garbled_fails_the_account_and_writes_no_partial_total(kn: Keepnet) -> None:
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.bump_all()
    garbled = Fault("garble", on_main_page(2), times=-1)
    kn.b.inject(garbled)

    outcome = kn.h.run(at("12:00"))

    assert garbled.fired == 5
    assert_account_contained(outcome, kn.h, "kn-b", "page 2", "invalid or truncated JSON")
    after = kn.h.stored(PERIOD)
    # No total from the partial listing: kn-b keeps the 06:00 totals, computed at 06:00.
    assert_totals_untouched(before, after, "kn-b")
    # Companies not read at 12:00 keep their 06:00 items; those read (page 1 and 3) carry fresh numbers.
    fresh = kn.expected("kn-b")
    for key, item in after.usage.items():
        if key[0] != "kn-b":
            continue
        if item["collected_at"] == collected_at(at("12:00")):
            assert item["value"] == fresh[key]
        else:
            assert (item["value"], item["collected_at"]) == (
                before.usage[key]["value"],
                before.usage[key]["collected_at"],
            )
    assert (
        sum(1 for k, i in after.usage.items() if k[0] == "kn-b" and i["collected_at"] == collected_at(at("06:00"))) >= 4
    )
    assert after.values("kn-a") == kn.expected("kn-a")


# --- auth ----------------------------------------------------------------------------------------------


@pytest.mark.solo
def test_token_expiring_mid_run_is_renewed_once(kn: Keepnet) -> None:
    kn.b.expire_tokens_at(3)

    outcome = kn.h.run(at("06:00"))

    assert kn.b.tokens_issued == 2
    assert kn.b.statuses(SEARCH_PATH).count(401) >= 1
    ridden_out(kn, outcome)


@pytest.mark.solo
def test_token_endpoint_down_then_back_is_ridden_out(kn: Keepnet) -> None:
    faults = [Fault("status", on_path(TOKEN_PATH), status=503), Fault("status", on_path(TOKEN_PATH), status=502)]
    kn.b.inject(*faults)

    outcome = kn.h.run(at("06:00"))

    fired(*faults)
    ridden_out(kn, outcome)


def test_token_endpoint_that_stays_down_is_contained(kn: Keepnet) -> None:
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.bump_all()
    kn.b.inject(Fault("status", on_path(TOKEN_PATH), times=-1, status=503))

    outcome = kn.h.run(at("12:00"))

    assert_account_contained(outcome, kn.h, "kn-b", "/connect/token", "HTTP 503")
    assert kn.b.count(SEARCH_PATH) == 1 + 3  # only the 06:00 run's: 1 over-limit page, 3 main pages
    after = kn.h.stored(PERIOD)
    assert_untouched(before, after, [k for k in before.usage if k[0] == "kn-b"])
    assert_totals_untouched(before, after, "kn-b")


def test_wrong_credentials_fail_fast_with_one_clear_message(kn: Keepnet) -> None:
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.b.clients = {CLIENT_ID: ("rotated-elsewhere-0000", "Reseller")}
    tokens_before = kn.b.count(TOKEN_PATH)

    outcome = kn.h.run(at("12:00"))

    message = assert_account_contained(outcome, kn.h, "kn-b", CREDENTIALS_REFUSED)
    assert kn.b.count(TOKEN_PATH) - tokens_before <= 2, "retry storm on a refused credential"
    assert kn.b.count(SEARCH_PATH) == 4  # none after 06:00
    assert message.count("refused") == 1
    assert_totals_untouched(before, kn.h.stored(PERIOD), "kn-b")


# --- data ----------------------------------------------------------------------------------------------

BAD_VALUES: dict[str, tuple[str, Any, tuple[str, ...]]] = {
    "string-count": ("monthlyActiveUserCount", "42", ("monthlyActiveUserCount", "must be a number")),
    "negative": ("targetUserCount", -3, ("targetUserCount", "out of range")),
    "absurd": ("deletedTargetUserCount", 10**16, ("deletedTargetUserCount", "out of range")),
    "missing": ("inactiveTargetUserCount", None, ("inactiveTargetUserCount", "missing")),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_bad_value_fails_that_company_naming_the_field(kn: Keepnet, name: str) -> None:
    field_name, bad, fragments = BAD_VALUES[name]
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.bump_all()
    victim = kn.b.default_companies[4]
    if bad is None:
        del victim[field_name]
    else:
        victim[field_name] = bad
    vid = victim["companyResourceId"]

    outcome = kn.h.run(at("12:00"))

    assert_tenant_contained(outcome, kn.h, "kn-b", vid, *fragments)
    after = kn.h.stored(PERIOD)
    victim_keys = [k for k in before.usage if k[:2] == ("kn-b", vid)]
    assert len(victim_keys) == 4
    assert_untouched(before, after, victim_keys)
    fresh = {k: v for k, v in kn.expected().items() if k[1] != vid}
    assert {k: v for k, v in after.values().items() if k[1] != vid} == fresh
    # The total still counts the failed company, with its last good numbers (carried), never a partial sum.
    for metric in METRICS.values():
        total = after.totals[("kn-b", metric)]
        others = sum(v for k, v in fresh.items() if k[0] == "kn-b" and k[2] == metric)
        assert total["value"] == others + before.usage[("kn-b", vid, metric)]["value"]
        assert total["carried_tenant_count"] == 1 and total["computed_at"] == collected_at(at("12:00"))


@pytest.mark.solo
def test_unknown_extra_fields_are_ignored(kn: Keepnet) -> None:
    for company in kn.b.default_companies:
        company["brandNewField"] = {"nested": [1, 2, 3]}
        company["monthlyActiveUserCountV2"] = "not ours"
        company["riskScore"] = -17.5

    def extend_page(sim: HookedKeepnet, request: SimRequest, body: dict[str, Any], data: dict[str, Any]) -> None:
        data["cursor"] = "abc"
        data["nextPageToken"] = None

    kn.b.after_search = extend_page

    ridden_out(kn, kn.h.run(at("06:00")))


@pytest.mark.solo
def test_unicode_and_300_character_names_are_stored(kn: Keepnet) -> None:
    names = ["Ünïcødé Δοκιμή 株式会社 😀 " * 12, "x" * 300, "Zürich \u202eevil\u202c GmbH", "\u200b"]
    for company, name in zip(kn.b.default_companies, names, strict=False):
        company["companyName"] = name

    outcome = kn.h.run(at("06:00"))

    stored = ridden_out(kn, outcome)
    for company, name in zip(kn.b.default_companies, names, strict=False):
        item = stored.usage[("kn-b", company["companyResourceId"], "target_users")]
        assert item["tenant_name"] == clean_name((name.strip() or company["companyResourceId"])[:256])


@pytest.mark.solo
def test_duplicate_company_ids_are_collected_once(kn: Keepnet) -> None:
    twin = copy.deepcopy(kn.b.default_companies[2])
    twin["createTime"] = "2000-01-01T00:00:00.000"  # the oldest: listed last, after the original
    twin["monthlyActiveUserCount"] += 500
    kn.b.default_companies.append(twin)

    outcome = kn.h.run(at("06:00"))

    kn.b.default_companies.remove(twin)
    ridden_out(kn, outcome)


# --- child companies nested in `children` ------------------------------------------------------------


def nest_children(kn: Keepnet) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Two companies nested under kn-b's second company (a sub-reseller that manages them)."""
    parent = kn.b.default_companies[1]
    kids = make_companies(2, seed=23, over_limit=0, unlimited=0, prefix="bkid")
    nest(parent, *kids)
    return parent, kids


def values_of(account_id: str, companies: list[dict[str, Any]]) -> dict[UsageKey, Any]:
    return {
        (account_id, c["companyResourceId"], metric): c[field_name]
        for c in companies
        for field_name, metric in METRICS.items()
    }


def test_child_company_with_a_bad_value_fails_alone_and_keeps_its_numbers_in_the_total(kn: Keepnet) -> None:
    parent, kids = nest_children(kn)
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    assert {i["parent_tenant_id"] for i in kn.aws.usage(PERIOD) if i["tenant_id"].startswith("bkid")} == {
        parent["companyResourceId"]
    }
    kn.bump_all()
    for kid in kids:
        bump(kid, COUNT_FIELDS)
    victim, healthy = kids
    victim["targetUserCount"] = "many"
    vid = victim["companyResourceId"]

    outcome = kn.h.run(at("12:00"))

    assert_tenant_contained(outcome, kn.h, "kn-b", vid, "targetUserCount", "must be a number")
    after = kn.h.stored(PERIOD)
    assert_untouched(before, after, [k for k in before.usage if k[:2] == ("kn-b", vid)])
    fresh = {**kn.expected(), **values_of("kn-b", [healthy])}
    assert {k: v for k, v in after.values().items() if k[1] != vid} == fresh
    for metric in METRICS.values():
        total = after.totals[("kn-b", metric)]
        others = sum(v for k, v in fresh.items() if k[0] == "kn-b" and k[2] == metric)
        assert total["value"] == others + before.usage[("kn-b", vid, metric)]["value"]
        assert total["tenant_count"] == COMPANIES + 2 and total["carried_tenant_count"] == 1


def test_children_that_cannot_be_read_keep_their_stored_numbers_and_the_parent_counts_once(kn: Keepnet) -> None:
    parent, _kids = nest_children(kn)
    kn.h.run(at("06:00"))
    before = kn.h.stored(PERIOD)
    kn.bump_all()
    parent["children"] = {"unexpected": "shape"}

    outcome = kn.h.run(at("12:00"))

    assert outcome.error is None and outcome.account("kn-b")["status"] == "partial"
    after = kn.h.stored(PERIOD)
    kid_keys = [k for k in before.usage if k[1].startswith("bkid")]
    assert len(kid_keys) == 2 * len(METRICS)
    assert_untouched(before, after, kid_keys)
    assert {k: v for k, v in after.values().items() if k not in kid_keys} == kn.expected()  # parent: fresh
    for metric in METRICS.values():
        total = after.totals[("kn-b", metric)]
        fresh = sum(v for k, v in kn.expected("kn-b").items() if k[2] == metric)
        assert total["value"] == fresh + sum(before.usage[k]["value"] for k in kid_keys if k[2] == metric)
        assert total["carried_tenant_count"] == 2

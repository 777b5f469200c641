"""KeepnetSource against the Keepnet simulator over real HTTP on loopback (no AWS)."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from tests.simulators.base import Fault, SimRequest, SimResponse, on_path
from tests.simulators.keepnet import (
    SEARCH_PATH,
    TOKEN_PATH,
    KeepnetSimulator,
    make_companies,
    nest,
    over_limit,
)
from tests.virtual_time import PacingClock
from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.model import CollectionRequest, ListingGap, Period, TenantFailure, TenantResult, TenantUsage
from usagewatch.sources.keepnet import CREDENTIALS_REFUSED, NOT_RESELLER, KeepnetAccount, KeepnetSource
from usagewatch.sources.keepnet.api import KeepnetSession

PERIOD = Period(2026, 10)
REQUEST = CollectionRequest(period=PERIOD, as_of=datetime(2026, 10, 20, 6, tzinfo=UTC), period_explicit=True)


@pytest.fixture
def fast() -> PacingClock:
    return PacingClock()


@pytest.fixture
def source(fast: PacingClock) -> KeepnetSource:
    return KeepnetSource(sleep=fast.sleep, clock=fast)


@pytest.fixture(scope="module")
def _simulators() -> Iterator[list[KeepnetSimulator]]:
    """Every simulator of this module, stopped together at the end: a server's shutdown waits for its
    0.5 s poll, so stopping them one by one would cost half a second per test."""
    started: list[KeepnetSimulator] = []
    yield started
    stoppers = [threading.Thread(target=sim.stop) for sim in started]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


@pytest.fixture
def sim_factory(_simulators: list[KeepnetSimulator]) -> Callable[..., KeepnetSimulator]:
    def make(cls: type[KeepnetSimulator] = KeepnetSimulator, **kwargs: Any) -> KeepnetSimulator:
        sim = cls(**kwargs)
        sim.start()
        _simulators.append(sim)
        return sim

    return make


def account(source: KeepnetSource, sim: KeepnetSimulator, **knobs: Any) -> KeepnetAccount:
    raw = {"account_id": "kn", "base_url": sim.url, "client_id": "demo-client", "client_secret": "demo-secret"}
    return source.parse_account({**raw, **knobs})


def run(
    source: KeepnetSource, sim: KeepnetSimulator, request: CollectionRequest = REQUEST, **knobs: Any
) -> tuple[dict[str, TenantUsage], list[TenantFailure]]:
    results: list[TenantResult] = list(source.collect(account(source, sim, **knobs), request))
    usages = [r for r in results if isinstance(r, TenantUsage)]
    by_id = {u.tenant.tenant_id: u for u in usages}
    assert len(by_id) == len(usages), "a company was yielded twice"
    return by_id, [r for r in results if isinstance(r, TenantFailure)]


def on_page(number: int, *, exceeded: bool = False) -> Callable[[SimRequest], bool]:
    def match(req: SimRequest) -> bool:
        body = req.json()
        return (
            req.path == SEARCH_PATH
            and isinstance(body, dict)
            and body.get("pageNumber") == number
            and body.get("isTargetUserCountExceededLimit") is exceeded
        )

    return match


def values(usage: TenantUsage) -> dict[str, Any]:
    return {r.metric: r.value for r in usage.records}


def target(usage: TenantUsage) -> Any:
    return next(r for r in usage.records if r.metric == "target_users")


# --- the happy path -------------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", ["status", "Status", "isSuccess"])
def test_multi_page_listing_collects_every_company_once_for_the_month(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator], envelope: str
) -> None:
    october = make_companies(250, seed=11)
    sim = sim_factory(companies=october, page_cap=40, envelope=envelope)

    usages, failures = run(source, sim, page_size=100)

    assert failures == []
    assert set(usages) == {c["companyResourceId"] for c in october}
    for company in october:
        assert values(usages[company["companyResourceId"]]) == {
            "monthly_users": company["monthlyActiveUserCount"],
            "target_users": company["targetUserCount"],
            "inactive_target_users": company["inactiveTargetUserCount"],
            "deleted_target_users": company["deletedTargetUserCount"],
        }
        assert usages[company["companyResourceId"]].tenant.tenant_name == company["companyName"][:256]
        record = target(usages[company["companyResourceId"]])
        assert record.quota == (int(company["numberOfUsers"]) if company["isNumberOfUsersLimited"] else None)
        assert record.window.period == PERIOD
    over = {cid for cid, u in usages.items() if target(u).limit_exceeded is True}
    assert over == {c["companyResourceId"] for c in october if over_limit(c)}
    assert len(over) == 3
    assert all(target(u).limit_exceeded is False for cid, u in usages.items() if cid not in over)

    bodies = sim.search_bodies()
    assert len(bodies) == 1 + 7  # the over-limit listing (1 page) + 250 companies at 40 a page
    for body in bodies:
        items = body["filter"]["FilterGroups"][0]["FilterItems"]
        assert {"FieldName": "MonthlyActiveUser", "Operator": "=", "Value": "2026-10"} in items
        assert body["filter"]["SearchInputTextValue"] == ""
    main = sorted(b["pageNumber"] for b in bodies if b["isTargetUserCountExceededLimit"] is False)
    assert main == [1, 2, 3, 4, 5, 6, 7]
    # One over-limit page, sent beside main page 1 (either may reach the vendor first).
    assert [b["pageNumber"] for b in bodies if b["isTargetUserCountExceededLimit"] is True] == [1]
    first_main = next(b for b in bodies if b["isTargetUserCountExceededLimit"] is False and b["pageNumber"] == 1)
    assert first_main["pageSize"] == 100
    assert sim.tokens_issued == 1
    assert sim.count(TOKEN_PATH) == 1
    assert set(sim.statuses()) == {200}


def test_past_month_is_its_monthly_users_only_and_asks_no_verdict(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    companies = make_companies(90, seed=4)
    sim = sim_factory(companies=companies, page_cap=40, current_month="2026-12")
    sim.set_monthly_users("2026-10", {c["companyResourceId"]: i for i, c in enumerate(companies)})
    december = CollectionRequest(period=PERIOD, as_of=datetime(2026, 12, 3, 6, tzinfo=UTC), period_explicit=True)

    usages, failures = run(source, sim, december)

    assert failures == []
    assert {cid: values(u) for cid, u in usages.items()} == {
        c["companyResourceId"]: {"monthly_users": i} for i, c in enumerate(companies)
    }
    assert all(r.quota is None and r.limit_exceeded is None for u in usages.values() for r in u.records)
    bodies = sim.search_bodies()
    assert [b["isTargetUserCountExceededLimit"] for b in bodies] == [False] * 3
    assert all("2026-10" in str(b["filter"]) for b in bodies)


def test_child_companies_are_collected_once_under_their_parent(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    top = make_companies(30, seed=8, over_limit=0, unlimited=0, prefix="top")
    managed = make_companies(6, seed=9, over_limit=2, unlimited=1, prefix="sub")
    sub_reseller = nest(top[3], managed[0], nest(managed[1], managed[2], managed[3]))
    nest(top[20], managed[4], managed[5])
    rows = [*top, copy.deepcopy(managed[2])]  # one company both nested and at the top of the listing
    sim = sim_factory(companies=rows, page_cap=7)

    usages, failures = run(source, sim)

    assert failures == []
    everyone = top + managed
    assert set(usages) == {c["companyResourceId"] for c in everyone}  # 36, each once
    parents = {cid: u.tenant.parent_tenant_id for cid, u in usages.items()}
    assert parents[managed[0]["companyResourceId"]] == sub_reseller["companyResourceId"]
    assert parents[managed[2]["companyResourceId"]] == managed[1]["companyResourceId"]
    assert parents[managed[5]["companyResourceId"]] == top[20]["companyResourceId"]
    assert all(parents[c["companyResourceId"]] is None for c in top)
    assert all(u.tenant.billed for u in usages.values())
    # Every company's numbers are its own: the sum over tenants is the sum over companies, once each.
    assert sum(values(u)["target_users"] for u in usages.values()) == sum(c["targetUserCount"] for c in everyone)
    flagged = {cid for cid, u in usages.items() if target(u).limit_exceeded}
    assert flagged == {c["companyResourceId"] for c in managed if over_limit(c)}
    assert len(flagged) == 2


def test_children_that_cannot_be_read_are_a_listing_gap_and_the_rest_is_collected(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    companies = make_companies(12, seed=2)
    broken = companies[4]
    broken["children"] = {"unexpected": "shape"}
    nest(
        companies[7],
        {
            **make_companies(1, seed=3, over_limit=0, unlimited=0, prefix="kid")[0],
            "children": [{"companyName": "No Id"}],
        },
    )
    sim = sim_factory(companies=companies, page_cap=5)

    usages, failures = run(source, sim)

    assert len(usages) == 13  # the broken company's own numbers are read; so is the healthy child
    gaps = [f for f in failures if isinstance(f, ListingGap)]
    assert [(g.tenant.tenant_id, g.tenant.parent_tenant_id) for g in gaps] == [(broken["companyResourceId"], None)]
    assert broken["companyResourceId"] in usages  # its own numbers: only what is beneath it is unknown
    assert "children is a dict, not a list" in gaps[0].error
    rows = [f for f in failures if not isinstance(f, ListingGap)]
    assert len(rows) == 1
    assert "a child of company kid-" in rows[0].error and "has no companyResourceId" in rows[0].error


def test_results_stream_while_pages_are_still_being_read(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(1000, seed=5), page_cap=10)
    results = source.collect(account(source, sim, concurrency=2, page_size=10), REQUEST)
    first = [next(results) for _ in range(11)]  # page 1, then one row of a page read by the threads
    assert all(isinstance(r, TenantUsage) for r in first)
    time.sleep(0.3)  # a slow consumer: the threads must not run ahead and pile pages up
    # 100 pages exist; read so far: the over-limit page, main page 1, at most 2 x concurrency pages
    # waiting to be consumed and the 2 in flight.
    assert sim.count(SEARCH_PATH) <= 2 + 4 + 2
    results.close()  # stops the page threads; nothing is fetched after this
    seen = sim.count(SEARCH_PATH)
    time.sleep(0.1)
    assert sim.count(SEARCH_PATH) == seen


# --- tokens ---------------------------------------------------------------------------------------


def test_token_expired_mid_run_is_renewed_once(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)
    sim.expire_tokens_at(4)  # the over-limit page, main page 1, 2 more, then every token dies

    usages, failures = run(source, sim, concurrency=4)

    assert len(usages) == 250
    assert failures == []
    assert 401 in sim.statuses(SEARCH_PATH)
    assert sim.tokens_issued == 2


def test_second_401_fails_the_account(source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)
    sim.inject(Fault("status", status=401, match=on_path(SEARCH_PATH), times=-1))

    with pytest.raises(VendorAuthError, match="even with a fresh token"):
        run(source, sim)
    assert sim.tokens_issued == 2


def test_a_fresh_token_refused_on_another_page_is_not_renewed_again(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator], fast: PacingClock
) -> None:
    """Page threads share the token: one renews it after a 401, and the fresh token is refused on another page
    before the first thread sees its own answer. That page fails the account at once, with no third token."""
    sim = sim_factory(companies=make_companies(5))
    knobs = account(source, sim)
    client = source.client(knobs)
    try:
        tokens = KeepnetSession(client, knobs, fast).tokens
        first = tokens.current()
        fresh = tokens.renew(first)  # the first thread, after its 401
        assert tokens.renew(first) == fresh  # a second thread refused with the old token takes the fresh one
        with pytest.raises(VendorAuthError, match="even with a fresh token"):
            tokens.renew(fresh)  # another thread, refused with the fresh token
        assert sim.tokens_issued == 2
        fast.sleep(3600)  # once the fresh token is due to expire, a 401 is its expiry: renewed
        assert tokens.renew(fresh) not in (first, fresh)
    finally:
        client.close()


def test_wrong_secret_fails_fast_without_a_retry_storm(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(250))
    started = time.monotonic()
    with pytest.raises(VendorAuthError) as caught:
        run(source, sim, client_secret="not-the-secret")
    assert time.monotonic() - started < 2
    assert str(caught.value) == CREDENTIALS_REFUSED
    assert sim.count(TOKEN_PATH) <= 2
    assert sim.count(SEARCH_PATH) == 0


def test_token_request_is_form_encoded_with_scope(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(5))
    run(source, sim)
    token_request = next(r for r in sim.requests if r.path == TOKEN_PATH)
    assert (token_request.header("Content-Type") or "").startswith("application/x-www-form-urlencoded")
    assert token_request.form() == {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "scope": "api1",
    }
    search_request = next(r for r in sim.requests if r.path == SEARCH_PATH)
    assert search_request.header("Authorization") == f"Bearer {sim.issued_tokens[0]}"
    assert (search_request.header("Content-Type") or "").startswith("application/json")


def test_not_a_reseller_gets_a_clear_message(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(5), clients={"demo-client": ("demo-secret", "Company Admin")})
    with pytest.raises(VendorAuthError) as caught:
        run(source, sim)
    assert str(caught.value) == NOT_RESELLER
    assert caught.value.status == 403
    # The over-limit listing and the main listing's first page go out together; neither is retried.
    assert sim.count(SEARCH_PATH) == 2


# --- transient faults -----------------------------------------------------------------------------


def test_429_and_503_are_ridden_out_honouring_retry_after(
    fast: PacingClock, source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)
    sim.inject(
        Fault("status", status=429, headers={"Retry-After": "1"}, match=on_path(SEARCH_PATH), times=2),
        Fault("status", status=503, match=on_page(3), times=2),
        Fault("status", status=503, match=on_path(TOKEN_PATH), times=1),
    )

    usages, failures = run(source, sim)

    assert len(usages) == 250
    assert failures == []
    statuses = sim.statuses(SEARCH_PATH)
    assert statuses.count(429) == 2
    assert statuses.count(503) == 2
    assert 1.0 in fast.slept  # Retry-After honoured
    assert sim.tokens_issued == 1


def test_source_rate_limit_keeps_under_the_vendor_limit(sim_factory: Callable[..., KeepnetSimulator]) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40, requests_per_second=5)
    source = KeepnetSource()  # real time: the source's own limiter must keep it under 5 req/s
    usages, _ = run(source, sim, requests_per_second=4, concurrency=4)
    assert len(usages) == 250
    assert 429 not in sim.statuses()


def test_garbled_page_is_retried(source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)
    fault = Fault("garble", match=on_page(3), times=1)
    sim.inject(fault)

    usages, failures = run(source, sim)

    assert fault.fired == 1
    assert len(usages) == 250
    assert failures == []
    assert sim.count(SEARCH_PATH) == 1 + 7 + 1


@pytest.mark.parametrize("action", ["garble", "html", "empty", "truncate"])
def test_page_that_stays_broken_fails_the_account(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator], action: Any
) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)
    sim.inject(Fault(action, match=on_page(3), times=-1))
    with pytest.raises((VendorDataError, VendorApiError)) as caught:
        run(source, sim)
    assert "page 3" in str(caught.value)


def test_failure_envelope_on_200_fails_the_account_with_the_vendor_message(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)
    body = {"status": "INTERNAL_SERVER_ERROR", "message": "database unavailable", "validationMessages": None}
    sim.inject(Fault("json", body={**body, "data": None}, match=on_page(2), times=-1))
    with pytest.raises(VendorApiError, match=r"page 2.*INTERNAL_SERVER_ERROR.*database unavailable"):
        run(source, sim)


def test_400_carries_the_validation_messages(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(10))
    body = {
        "status": "INPUT_ERROR",
        "message": None,
        "validationMessages": ["PageSize exceeds the maximum"],
        "data": None,
    }
    sim.inject(Fault("status", status=400, body=body, match=on_path(SEARCH_PATH)))
    with pytest.raises(VendorApiError, match=r"HTTP 400.*PageSize exceeds the maximum") as caught:
        run(source, sim)
    assert caught.value.status == 400
    assert not isinstance(caught.value, VendorAuthError)


def test_pascal_case_failure_envelope_fails_the_account_with_the_vendor_message(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(10), envelope="Status")
    body = {"Status": "INPUT_ERROR", "Message": "Value must be YYYY-MM", "ValidationMessages": None, "Data": None}
    sim.inject(Fault("json", body=body, match=on_page(1), times=-1))
    with pytest.raises(VendorApiError, match=r"INPUT_ERROR: Value must be YYYY-MM"):
        run(source, sim)


# --- listing shape --------------------------------------------------------------------------------


def test_duplicate_company_across_pages_is_kept_once(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    companies = make_companies(100)
    duplicate = copy.deepcopy(companies[5])
    duplicate["targetUserCount"] = 999_999  # the first copy wins
    companies.insert(70, duplicate)
    sim = sim_factory(companies=companies, page_cap=40)

    usages, failures = run(source, sim)

    assert len(usages) == 100
    assert failures == []
    assert values(usages[companies[5]["companyResourceId"]])["target_users"] == companies[5]["targetUserCount"]


class EndlessSimulator(KeepnetSimulator):
    """Every page claims there is one more."""

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        if request.path == SEARCH_PATH and response.status == 200:
            data = response.body["data"]
            data["totalNumberOfPages"] = data["pageNumber"] + 1
            data["totalNumberOfRecords"] = None
        return response


def test_never_ending_listing_is_guarded(source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]) -> None:
    sim = sim_factory(EndlessSimulator, companies=make_companies(20))
    with pytest.raises(VendorDataError, match="did not end after 5 pages"):
        run(source, sim, max_pages=5, page_size=10)
    assert sim.count(SEARCH_PATH) <= 2 * 5  # each of the two listings (over-limit, main) stops at its fifth page


class GrowingSimulator(KeepnetSimulator):
    """40 new companies (newest first in CreateTime order) appear right after main page 1 is served."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.grown = False

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        body = request.json()
        if (
            not self.grown
            and request.path == SEARCH_PATH
            and isinstance(body, dict)
            and body.get("isTargetUserCountExceededLimit") is False
        ):
            self.grown = True
            newcomers = make_companies(40, seed=99, over_limit=0, unlimited=0, prefix="new")
            for company in newcomers:
                company["createTime"] = "2099-01-01T00:00:00.000"
            self.default_companies = newcomers + self.default_companies
        return response


def test_listing_that_grows_while_read_is_followed(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    original = make_companies(250)
    sim = sim_factory(GrowingSimulator, companies=original, page_cap=40)

    usages, failures = run(source, sim, concurrency=1)

    assert failures == []
    # Every company that was there before the run is read (the shift pushed the last ones to page 8).
    assert {c["companyResourceId"] for c in original} <= set(usages)
    assert max(b["pageNumber"] for b in sim.search_bodies()) == 8


def test_pages_are_requested_while_the_caller_maps_the_first_and_no_more_than_the_window(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    sim = sim_factory(companies=make_companies(250), page_cap=40)  # 7 pages of the main listing
    results = source.collect(account(source, sim, concurrency=2), REQUEST)

    def main_pages() -> set[int]:
        return {b["pageNumber"] for b in sim.search_bodies() if b["isTargetUserCountExceededLimit"] is False}

    try:
        next(results)  # the first company of page 1, held: the caller is still mapping page 1
        deadline = time.monotonic() + 10
        while main_pages() != {1, 2, 3, 4, 5} and time.monotonic() < deadline:
            time.sleep(0.01)
        # Pages 2-5 asked for before page 1 is mapped: 2 x concurrency pages in flight or unread, not more.
        assert main_pages() == {1, 2, 3, 4, 5}
        time.sleep(0.2)
        assert main_pages() == {1, 2, 3, 4, 5}
    finally:
        results.close()


class OverLimitWaitsForPageOne(KeepnetSimulator):
    """Holds the over-limit listing's answer until the main listing's page 1 has been asked for (at most 5 s)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.page_one_asked = threading.Event()
        self.overlapped: bool | None = None

    def handle(self, request: SimRequest) -> SimResponse:
        body = request.json() if request.path == SEARCH_PATH else None
        if isinstance(body, dict) and body.get("isTargetUserCountExceededLimit") is False and body["pageNumber"] == 1:
            self.page_one_asked.set()
        if isinstance(body, dict) and body.get("isTargetUserCountExceededLimit") is True:
            self.overlapped = self.page_one_asked.wait(5)
        return super().handle(request)


def test_the_over_limit_listing_is_read_beside_the_first_page_and_known_before_any_company(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    companies = make_companies(60)  # 3 of them over their licence limit
    sim = sim_factory(OverLimitWaitsForPageOne, companies=companies, page_cap=40)
    usages, failures = run(source, sim)
    assert sim.overlapped is True, "the over-limit listing waited for nothing: it was read before page 1 was asked for"
    assert not failures and len(usages) == 60
    flagged = {cid for cid, u in usages.items() if any(r.limit_exceeded for r in u.records)}
    assert flagged == {c["companyResourceId"] for c in companies if over_limit(c)} and len(flagged) == 3


# --- per-company failures -------------------------------------------------------------------------


def test_company_with_a_string_count_fails_alone(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    companies = make_companies(100)
    companies[7]["targetUserCount"] = "240"
    bad_id = companies[7]["companyResourceId"]
    sim = sim_factory(companies=companies, page_cap=40)

    usages, failures = run(source, sim)

    assert len(usages) == 99
    assert bad_id not in usages
    assert len(failures) == 1
    assert failures[0].tenant.tenant_id == bad_id
    assert failures[0].tenant.tenant_name == companies[7]["companyName"]
    assert failures[0].error == f"company {bad_id}: targetUserCount must be a number, got str"


def test_row_without_company_id_fails_naming_page_and_position(
    source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]
) -> None:
    companies = make_companies(60)
    # CreateTime descending: the oldest company is last, i.e. page 2, position 20 at 40 a page.
    oldest = min(companies, key=lambda c: c["createTime"])
    del oldest["companyResourceId"]
    sim = sim_factory(companies=companies, page_cap=40)

    usages, failures = run(source, sim)

    assert len(usages) == 59
    assert len(failures) == 1
    assert failures[0].tenant.tenant_id == "row-2-20"
    assert "page 2, position 20" in failures[0].error
    assert "companyResourceId" in failures[0].error


def test_unicode_and_long_names_are_kept(source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]) -> None:
    companies = make_companies(3, over_limit=0, unlimited=0)
    companies[0]["companyName"] = "株式会社サクラ — Ørsted Ελλάδα"
    companies[1]["companyName"] = "Z" * 5000
    companies[2]["somethingNew"] = {"nested": [1, 2]}
    sim = sim_factory(companies=companies)

    usages, _ = run(source, sim)

    assert usages[companies[0]["companyResourceId"]].tenant.tenant_name == "株式会社サクラ — Ørsted Ελλάδα"
    assert usages[companies[1]["companyResourceId"]].tenant.tenant_name == "Z" * 256
    assert companies[2]["companyResourceId"] in usages


# --- secrets never leak ---------------------------------------------------------------------------


class EchoingSimulator(KeepnetSimulator):
    """A vendor that quotes the caller's bearer token back in its error messages."""

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        auth = request.header("Authorization") or ""
        if request.path == SEARCH_PATH and response.status == 200 and request.json()["pageNumber"] == 2:
            message = f"invalid request for {auth} (token {auth.removeprefix('Bearer ')})"
            return SimResponse(400, {"status": "INPUT_ERROR", "message": message, "validationMessages": [message]})
        return response


def test_token_never_appears_in_errors(source: KeepnetSource, sim_factory: Callable[..., KeepnetSimulator]) -> None:
    messages: list[str] = []
    tokens: list[str] = []

    companies = make_companies(100)
    companies[3]["monthlyActiveUserCount"] = "lots"
    del companies[4]["companyResourceId"]
    sim = sim_factory(companies=companies, page_cap=40)
    _, failures = run(source, sim)
    messages += [f.error for f in failures]
    tokens += sim.issued_tokens
    assert len(failures) == 2

    scenarios: list[tuple[KeepnetSimulator, dict[str, Any]]] = []
    echo = sim_factory(EchoingSimulator, companies=make_companies(100), page_cap=40)
    scenarios.append((echo, {}))
    twice = sim_factory(companies=make_companies(100), page_cap=40)
    twice.inject(Fault("status", status=401, match=on_path(SEARCH_PATH), times=-1))
    scenarios.append((twice, {}))
    admin = sim_factory(companies=make_companies(5), clients={"demo-client": ("demo-secret", "Company Admin")})
    scenarios.append((admin, {}))
    garbled = sim_factory(companies=make_companies(100), page_cap=40)
    garbled.inject(Fault("garble", match=on_page(2), times=-1))
    scenarios.append((garbled, {}))
    for scenario_sim, knobs in scenarios:
        with pytest.raises((VendorApiError, VendorDataError)) as caught:
            run(source, scenario_sim, **knobs)
        messages.append(str(caught.value))
        messages.append(repr(caught.value))
        tokens += scenario_sim.issued_tokens

    assert tokens
    assert any("invalid request for" in m for m in messages)  # the echoing vendor's message is kept...
    for message in messages:
        assert "demo-secret" not in message
        for token in tokens:
            assert token not in message  # ...but the token in it is not


# --- the simulator speaks the documented protocol -------------------------------------------------


def _token(sim: KeepnetSimulator) -> str:
    response = requests.post(
        sim.url + TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"},
        timeout=5,
    )
    assert response.status_code == 200
    return str(response.json()["access_token"])


def _search(sim: KeepnetSimulator, body: Any, token: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(sim.url + SEARCH_PATH, json=body, headers=headers, timeout=5)


def test_simulator_validates_like_the_real_api(sim_factory: Callable[..., KeepnetSimulator]) -> None:
    sim = sim_factory(companies=make_companies(12), page_cap=5)
    json_token = requests.post(
        sim.url + TOKEN_PATH,
        json={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "demo-secret"},
        timeout=5,
    )
    assert json_token.status_code == 500
    wrong = requests.post(
        sim.url + TOKEN_PATH,
        data={"grant_type": "client_credentials", "client_id": "demo-client", "client_secret": "nope"},
        timeout=5,
    )
    assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_client"})
    token = _token(sim)

    good = {
        "pageNumber": 1,
        "pageSize": 100,
        "orderBy": "CreateTime",
        "ascending": False,
        "filter": {"Condition": "AND", "SearchInputTextValue": ""},
    }
    assert _search(sim, good, None).status_code == 401
    answer = _search(sim, good, token)
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert (data["pageSize"], data["totalNumberOfPages"], data["totalNumberOfRecords"]) == (5, 3, 12)
    assert len(data["results"]) == 5
    assert data["limitExceededCompanyCount"] == 3
    assert answer.json()["status"] == "SUCCESS"

    for broken in (
        {**good, "filter": None},
        {**good, "filter": {"Condition": "AND", "SearchInputTextValue": None}},
        {k: v for k, v in good.items() if k != "orderBy"},
        {**good, "orderBy": None},
        None,
    ):
        refused = _search(sim, broken, token)
        assert refused.status_code == 400, broken
        assert refused.json()["status"] == "INPUT_ERROR"
        assert refused.json()["validationMessages"]

    sim.expire_tokens()
    assert _search(sim, good, token).status_code == 401


def test_simulator_month_filter_changes_only_monthly_users(sim_factory: Callable[..., KeepnetSimulator]) -> None:
    companies = make_companies(4, over_limit=1, unlimited=0)
    sim = sim_factory(companies=companies, current_month="2026-12")
    first = companies[0]["companyResourceId"]
    sim.set_monthly_users("2026-10", {first: 7})
    token = _token(sim)
    base = {"pageNumber": 1, "pageSize": 10, "orderBy": "CreateTime", "ascending": True}

    def rows(month: str | None) -> dict[str, dict[str, Any]]:
        items = [{"FieldName": "MonthlyActiveUser", "Operator": "=", "Value": month}] if month else []
        flt = {"Condition": "AND", "SearchInputTextValue": "", "FilterGroups": [{"FilterItems": items}]}
        answer = _search(sim, {**base, "filter": flt}, token)
        assert answer.status_code == 200
        return {c["companyResourceId"]: c for c in answer.json()["data"]["results"]}

    october, now, unset = rows("2026-10"), rows(None), rows("2025-07")
    assert set(october) == set(now) == set(unset) == {c["companyResourceId"] for c in companies}
    assert october[first]["monthlyActiveUserCount"] == 7
    assert all(october[c]["monthlyActiveUserCount"] == 0 for c in october if c != first)  # no users added
    for cid, row in october.items():
        assert {k: v for k, v in row.items() if k != "monthlyActiveUserCount"} == {
            k: v for k, v in now[cid].items() if k != "monthlyActiveUserCount"
        }
    assert now == unset  # a month without its own data: the companies' own monthly count
    assert [now[c["companyResourceId"]]["monthlyActiveUserCount"] for c in companies] == [
        c["monthlyActiveUserCount"] for c in companies
    ]


def test_simulator_rate_limit_and_envelopes(sim_factory: Callable[..., KeepnetSimulator]) -> None:
    sim = sim_factory(companies=make_companies(5), requests_per_second=1)
    codes = [requests.post(sim.url + TOKEN_PATH, data={}, timeout=5) for _ in range(3)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited
    assert limited[0].headers["Retry-After"] == "1"

    other = sim_factory(companies=make_companies(5), envelope="isSuccess")
    token = _token(other)
    ok = _search(other, {"pageNumber": 1}, token)
    assert ok.status_code == 400
    assert ok.json()["isSuccess"] is False
    assert ok.json()["messages"]
    good = {
        "pageNumber": 1,
        "pageSize": 10,
        "orderBy": "CreateTime",
        "ascending": False,
        "filter": {"Condition": "AND", "SearchInputTextValue": ""},
        "isTargetUserCountExceededLimit": True,
    }
    answer = _search(other, good, token).json()
    assert answer["isSuccess"] is True
    assert len(answer["data"]["results"]) == 3
    assert all(over_limit(c) for c in answer["data"]["results"])


def test_make_companies_shape() -> None:
    companies = make_companies(50, over_limit=4, unlimited=3)
    assert len({c["companyResourceId"] for c in companies}) == 50
    assert sum(1 for c in companies if over_limit(c)) == 4
    unlimited = [c for c in companies if not c["isNumberOfUsersLimited"]]
    assert len(unlimited) == 3
    assert all(c["numberOfUsers"] == "" for c in unlimited)
    assert all(isinstance(c["numberOfUsers"], str) for c in companies)
    assert any(not c["companyName"].isascii() for c in companies)
    assert make_companies(50, over_limit=4, unlimited=3) == companies  # deterministic
    with pytest.raises(ValueError):
        make_companies(2, over_limit=2, unlimited=1)

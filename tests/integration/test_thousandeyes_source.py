"""ThousandEyesSource against its simulator over HTTP on loopback (no AWS).

Here the account groups carry no `orgId` (the spec makes it optional): organisations are identified by
an aid, as when ThousandEyes leaves it out. The `orgId` identity, the newer billed quantities and the
MSP quotas of `/v7/quotas` are in test_thousandeyes_billing.py.

Time is simulated: the source's sleeps advance a shared fake clock that the simulator's rate-limit
windows also read, so waiting for a rate-limit reset costs no real time.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.simulators.base import Fault, SimRequest
from tests.simulators.thousandeyes import ThousandEyesSimulator, make_orgs
from usagewatch.errors import ConfigError, VendorApiError, VendorAuthError
from usagewatch.http import HttpClient
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    Period,
    TenantFailure,
    TenantResult,
    TenantUsage,
    UsageRecord,
)
from usagewatch.observability import logger
from usagewatch.sources.thousandeyes import InProcessIdentities, ThousandEyesAccount, ThousandEyesSource

AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
TOKEN = "te-demo-token"
BASIC = "te-basic-token"
EMAIL = "ops@msp.example"
PROBLEM_429 = {"type": "about:blank", "title": "Too Many Requests", "status": 429, "detail": "Rate limit exceeded"}


class FakeTime:
    """Epoch seconds that only move when someone sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime(AS_OF)


@pytest.fixture(scope="module")
def server() -> Iterator[ThousandEyesSimulator]:
    # One server for the module (each stop costs half a second); every test resets it.
    with ThousandEyesSimulator() as simulator:
        assert isinstance(simulator, ThousandEyesSimulator)
        yield simulator


@pytest.fixture
def sim(server: ThousandEyesSimulator, fake: FakeTime) -> ThousandEyesSimulator:
    server.reset(clock=fake.time, org_ids=False)
    return server


@pytest.fixture
def source(fake: FakeTime) -> ThousandEyesSource:
    return ThousandEyesSource(sleep=fake.sleep, clock=fake.time, wall_clock=fake.time)


def account(source: ThousandEyesSource, sim: ThousandEyesSimulator, **extra: Any) -> ThousandEyesAccount:
    raw: dict[str, Any] = {"account_id": "te-main", "base_url": sim.url}
    if extra.get("api_version") == "v6" and "bearer_token" not in extra:
        raw.update(email=EMAIL, basic_auth_token=BASIC)
    else:
        raw.setdefault("bearer_token", TOKEN)
    raw.update(extra)
    return source.parse_account(raw)


def run(source: ThousandEyesSource, acct: ThousandEyesAccount, *, period: Period | None = None) -> list[TenantResult]:
    request = CollectionRequest(period or Period.of(AS_OF), AS_OF, period_explicit=period is not None)
    return list(source.collect(acct, request))


def usages(results: list[TenantResult]) -> dict[str, TenantUsage]:
    return {r.tenant.tenant_id: r for r in results if isinstance(r, TenantUsage)}


def metrics(usage: TenantUsage) -> dict[str, UsageRecord]:
    return {r.metric: r for r in usage.records}


def failures(results: list[TenantResult]) -> list[TenantFailure]:
    return [r for r in results if isinstance(r, TenantFailure)]


def on_aid(aid: str) -> Any:
    return lambda req: req.path.endswith("/usage") and req.query.get("aid") == [aid]


# --- the normal run --------------------------------------------------------------------------------


def test_v7_collects_both_organisations_with_quota_used_projected(
    sim: ThousandEyesSimulator, source: ThousandEyesSource
) -> None:
    results = run(source, account(source, sim))
    got = usages(results)
    assert not failures(results)
    acme, globex = sim.orgs
    assert {t: got[t].tenant.tenant_name for t in ("1234", "2345")} == {"1234": acme.name, "2345": globex.name}

    for org, tenant_id in ((acme, "1234"), (globex, "2345")):
        m = metrics(got[tenant_id])
        assert set(m) == {
            "cloud_units",
            "enterprise_units",
            "connected_devices",
            "endpoint_agents",
            "endpoint_agents_essentials",
            "endpoint_agents_embedded",
            "enterprise_agents",
        }
        cloud = m["cloud_units"]
        assert cloud.value == org.totals["cloudUnitsUsed"]
        assert cloud.quota == org.quota["cloudUnitsIncluded"]
        assert cloud.projected == org.totals["cloudUnitsProjected"]
        assert m["endpoint_agents"].quota == org.quota["endpointAgentsIncluded"]
        assert m["enterprise_units"].projected == org.totals["enterpriseUnitsProjected"]
        # The vendor's billing period, not the calendar month.
        assert cloud.window.start == datetime(2026, 11, 5, 8, tzinfo=UTC)
        assert cloud.window.end == datetime(2026, 12, 5, 8, tzinfo=UTC)
        assert cloud.period == Period(2026, 11)

    acme_cloud = metrics(got["1234"])["cloud_units"]
    assert acme_cloud.projected is not None
    assert acme_cloud.quota is not None
    assert acme_cloud.value < acme_cloud.quota < acme_cloud.projected  # projected over, currently under
    assert metrics(got["1234"])["enterprise_agents"].quota is None  # 0 included: not in the plan
    assert metrics(got["2345"])["enterprise_agents"].quota == globex.quota["enterpriseAgentsIncluded"]

    # One list call, one usage call per organisation, bearer auth, expanded, HAL/problem Accept.
    assert sim.count("/v7/account-groups") == 1
    usage_calls = sim.usage_requests()
    assert sorted(r.query["aid"][0] for r in usage_calls) == ["1234", "2345"]
    for req in usage_calls:
        assert req.header("Authorization") == f"Bearer {TOKEN}"
        assert set(req.query["expand"][0].split(",")) == {
            "test",
            "endpoint-agent",
            "endpoint-agent-essential",
            "endpoint-agent-embedded",
            "enterprise-agent",
            "enterprise-agent-unit",
        }
        assert "application/problem+json" in (req.header("Accept") or "")
    assert 429 not in sim.statuses()


def test_breakdown_stored_and_never_double_counted(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    results = run(source, account(source, sim))
    got = usages(results)
    orgs = {t: u for t, u in got.items() if u.tenant.billed}
    groups = {t: u for t, u in got.items() if not u.tenant.billed}
    assert set(orgs) == {"1234", "2345"}
    expected_groups = {f"ag-{aid}": org for org in sim.orgs for aid in org.aids}
    assert set(groups) == set(expected_groups)
    for tenant_id, usage in groups.items():
        org = expected_groups[tenant_id]
        assert usage.tenant.parent_tenant_id == org.lowest_aid
        assert usage.tenant.tenant_name == next(g.name for g in org.groups if f"ag-{g.aid}" == tenant_id)
        assert all(r.tenant.billed is False and r.tenant.parent_tenant_id for r in usage.records)

    # Each organisation's breakdown adds up to its own figure (same units, seen twice) ...
    for org_id, org_usage in orgs.items():
        children = [u for u in groups.values() if u.tenant.parent_tenant_id == org_id]
        for metric in ("cloud_units", "endpoint_agents", "enterprise_agents"):
            assert sum(metrics(c)[metric].value for c in children) == metrics(org_usage)[metric].value

    # ... so a total over billed rows (what the store writes) equals the organisations' sum exactly.
    totals: dict[str, float] = defaultdict(float)
    everything: dict[str, float] = defaultdict(float)
    for result in got.values():
        for record in result.records:
            everything[record.metric] += record.value
            if record.tenant.billed:
                totals[record.metric] += record.value
    assert totals["cloud_units"] == sum(o.totals["cloudUnitsUsed"] for o in sim.orgs)
    assert totals["endpoint_agents"] == sum(o.totals["endpointAgentsUsed"] for o in sim.orgs)
    assert everything["cloud_units"] == 2 * totals["cloud_units"]  # what a naive sum would have said


def test_v6_basic_auth_gives_the_same_numbers(
    sim: ThousandEyesSimulator, fake: FakeTime, source: ThousandEyesSource
) -> None:
    """v6 answers what it knows (no connected devices, Essentials, Embedded, MSP quotas): the same numbers
    as v7 for those."""
    sim.reset(clock=fake.time, org_ids=False, tokens_without_quotas={TOKEN})
    v7 = run(source, account(source, sim))
    sim.requests.clear()
    v6_account = account(source, sim, api_version="v6")
    v6 = run(source, v6_account)
    assert not failures(v6)

    def flat(results: list[TenantResult]) -> set[tuple[Any, ...]]:
        return {
            (r.tenant, r.metric, r.value, r.quota, r.projected, r.window)
            for u in results
            if isinstance(u, TenantUsage)
            for r in u.records
        }

    v6_metrics = {metric for _tenant, metric, *_rest in flat(v6)}
    assert v6_metrics == {
        "cloud_units",
        "enterprise_units",
        "endpoint_agents",
        "enterprise_agents",
    }
    assert flat(v6) == {row for row in flat(v7) if row[1] in v6_metrics}
    assert sim.count("/v6/account-groups.json") == 1
    calls = sim.usage_requests()
    assert {r.path for r in calls} == {"/v6/usage.json"}
    assert all((r.header("Authorization") or "").startswith("Basic ") for r in calls)
    assert all("expand" not in r.query for r in calls)


def test_v6_with_a_bearer_token(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    results = run(source, account(source, sim, api_version="v6", bearer_token=TOKEN))
    assert set(usages(results)) >= {"1234", "2345"}
    assert all(r.header("Authorization") == f"Bearer {TOKEN}" for r in sim.usage_requests())


def test_v6_without_organisation_names_collects_the_current_organisation(
    sim: ThousandEyesSimulator, fake: FakeTime, source: ThousandEyesSource
) -> None:
    sim.reset(clock=fake.time, org_ids=False, v6_org_names=False)
    results = run(source, account(source, sim, api_version="v6"))
    assert {u.tenant.tenant_id for u in usages(results).values() if u.tenant.billed} == {"1234"}
    assert len(sim.usage_requests()) == 1


def test_explicit_aids_select_organisations(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    results = run(source, account(source, sim, aids=[2362]))
    got = usages(results)
    billed = [u for u in got.values() if u.tenant.billed]
    assert [(u.tenant.tenant_id, u.tenant.tenant_name) for u in billed] == [("2362", "Globex")]
    assert {u.tenant.parent_tenant_id for u in got.values() if not u.tenant.billed} == {"2362"}
    assert [r.query["aid"] for r in sim.usage_requests()] == [["2362"]]


def test_two_aids_of_one_organisation_make_one_call(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    results = run(source, account(source, sim, aids=["1251", "1234"]))
    assert [u.tenant.tenant_id for u in usages(results).values() if u.tenant.billed] == ["1251"]
    assert len(sim.usage_requests()) == 1


@pytest.mark.parametrize(("status", "version"), [(403, "v7"), (500, "v6")])
def test_explicit_aids_survive_an_account_group_list_that_cannot_identify_them_anyway(
    sim: ThousandEyesSimulator, source: ThousandEyesSource, status: int, version: str
) -> None:
    """A list refused for good (403), or v6 (no orgId): the aids are the ids every run, so they are collected."""
    sim.inject(Fault(action="status", status=status, match=lambda r: "/account-groups" in r.path, times=-1))
    results = run(source, account(source, sim, aids=["1234", "2345"], api_version=version))
    assert {u.tenant.tenant_id for u in usages(results).values() if u.tenant.billed} == {"1234", "2345"}


def test_explicit_aids_with_a_v7_list_down_are_a_listing_gap_not_new_identities(
    server: ThousandEyesSimulator, fake: FakeTime
) -> None:
    """v7 sends orgId: collecting under aid ids while the list is down would give the organisation another id
    for one run. The run reports a gap (the pipeline carries the stored numbers), unless the ids are remembered."""
    server.reset(clock=fake.time)  # orgId sent
    memory = InProcessIdentities()
    source = ThousandEyesSource(sleep=fake.sleep, clock=fake.time, wall_clock=fake.time, identities=memory)
    acct = account(source, server, aids=["1234", "2345"])
    plain = ThousandEyesSource(sleep=fake.sleep, clock=fake.time, wall_clock=fake.time)
    server.inject(Fault(action="status", status=500, match=lambda r: r.path == "/v7/account-groups", times=-1))

    [gap] = run(plain, account(plain, server, aids=["1234", "2345"]))
    assert isinstance(gap, ListingGap) and gap.tenant.tenant_id == "account-groups"
    assert "cannot be identified" in gap.error and "HTTP 500" in gap.error
    assert not server.usage_requests()

    server.clear_faults()
    assert {t for t, u in usages(run(source, acct)).items() if u.tenant.billed} == {"org-980000", "org-981111"}
    server.inject(Fault(action="status", status=500, match=lambda r: r.path == "/v7/account-groups", times=-1))
    remembered = usages(run(source, acct))
    assert {t for t, u in remembered.items() if u.tenant.billed} == {"org-980000", "org-981111"}


def test_discovery_fails_the_account_when_the_list_fails(
    sim: ThousandEyesSimulator, source: ThousandEyesSource
) -> None:
    sim.inject(Fault(action="status", status=503, match=lambda r: r.path == "/v7/account-groups", times=-1))
    with pytest.raises(VendorApiError, match="account-groups"):
        run(source, account(source, sim))
    assert not sim.usage_requests()


def test_changed_usage_is_read_on_the_next_run(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    acct = account(source, sim)
    run(source, acct)
    sim.set_usage(
        "1234", cloudUnitsUsed=3_999_999, cloudUnitsProjected=4_100_000, cloudUnitsIncluded=4_000_000, msp_quota=None
    )
    cloud = metrics(usages(run(source, acct))["1234"])["cloud_units"]
    assert (cloud.value, cloud.projected, cloud.quota) == (3_999_999, 4_100_000, 4_000_000)


# --- the billing period ----------------------------------------------------------------------------


def test_period_comes_from_the_vendor(sim: ThousandEyesSimulator, fake: FakeTime, source: ThousandEyesSource) -> None:
    sim.reset(clock=fake.time, org_ids=False, orgs=make_orgs(period_start=datetime(2026, 10, 20, 8, tzinfo=UTC)))
    results = run(source, account(source, sim))  # a scheduled run on 2026-11-22
    record = metrics(usages(results)["1234"])["cloud_units"]
    assert record.period == Period(2026, 10)
    assert (record.window.start, record.window.end) == (
        datetime(2026, 10, 20, 8, tzinfo=UTC),
        datetime(2026, 11, 20, 8, tzinfo=UTC),
    )


def test_asking_for_another_period_is_a_clear_error(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    acct = account(source, sim)
    with pytest.raises(ConfigError, match=r"only the current billing period \(2026-11.*asked for 2026-10"):
        run(source, acct, period=Period(2026, 10))
    assert usages(run(source, acct, period=Period(2026, 11)))  # asking for the current one is fine


def test_another_period_in_one_organisation_only_fails_that_one(
    sim: ThousandEyesSimulator, source: ThousandEyesSource
) -> None:
    sim.set_usage("2345", period_start=datetime(2026, 10, 25, 8, tzinfo=UTC))
    results = run(source, account(source, sim), period=Period(2026, 11))
    assert "1234" in usages(results)
    [failure] = failures(results)
    assert failure.tenant.tenant_id == "2345"
    assert "asked for 2026-11" in failure.error


# --- errors ----------------------------------------------------------------------------------------


def test_missing_view_billing_permission(
    sim: ThousandEyesSimulator, fake: FakeTime, source: ThousandEyesSource
) -> None:
    sim.reset(clock=fake.time, org_ids=False, tokens_without_billing={"te-viewer-token"})
    with pytest.raises(VendorAuthError, match=r"View Billing \(view organisation usage\) permission") as caught:
        run(source, account(source, sim, bearer_token="te-viewer-token"))
    assert caught.value.status == 403
    assert "te-viewer-token" not in str(caught.value)


def test_refused_token(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    with pytest.raises(VendorAuthError, match="401") as caught:
        run(source, account(source, sim, bearer_token="te-wrong-token-123"))
    assert "te-wrong-token-123" not in str(caught.value)
    assert not sim.usage_requests()


def test_bad_aid_fails_that_organisation_alone(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    results = run(source, account(source, sim, aids=["9999", "1234"]))
    assert "1234" in usages(results)
    [failure] = failures(results)
    assert failure.tenant.tenant_id == "9999"
    assert "aid 9999" in failure.error
    assert "400" in failure.error
    assert sim.statuses("/v7/usage").count(400) == 1


def test_a_bad_payload_fails_that_organisation_naming_the_field(
    sim: ThousandEyesSimulator, source: ThousandEyesSource
) -> None:
    sim.set_usage("2345", raw_endpointAgentsUsed="twenty")
    results = run(source, account(source, sim))
    assert "1234" in usages(results)
    [failure] = failures(results)
    assert failure.tenant.tenant_id == "2345"
    assert "usage.endpointAgentsUsed" in failure.error


def test_garbled_answer_is_retried(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    sim.inject(Fault(action="garble", match=on_aid("1234")), Fault(action="status", status=502, match=on_aid("2345")))
    results = run(source, account(source, sim))
    assert not failures(results)
    assert {"1234", "2345"} <= set(usages(results))


# --- rate limits -----------------------------------------------------------------------------------


def test_low_rate_limit_is_respected_without_a_429(
    sim: ThousandEyesSimulator, fake: FakeTime, source: ThousandEyesSource
) -> None:
    sim.reset(clock=fake.time, org_ids=False, rate_limit_per_minute=10)
    acct = account(source, sim)
    for _ in range(8):  # 4 calls a run (groups, quotas, 2 usage), 3 against the current organisation: 24 > 10
        results = run(source, acct)
        assert {"1234", "2345"} <= set(usages(results))
        assert not failures(results)
    assert 429 not in sim.statuses()
    assert sim.rate_limited == 0
    assert len(sim.requests) == 32
    # It waited for a window reset (up to a minute), not just the token bucket's quarter seconds.
    assert max(fake.sleeps) > 10


def test_forced_429_with_reset_header_is_ridden_out(
    sim: ThousandEyesSimulator, source: ThousandEyesSource, fake: FakeTime
) -> None:
    reset = int(fake.time()) + 7
    sim.inject(
        Fault(
            action="status",
            status=429,
            match=on_aid("2345"),
            body=PROBLEM_429,
            headers={"X-Organization-Rate-Limit-Remaining": "0", "X-Organization-Rate-Limit-Reset": str(reset)},
        )
    )
    results = run(source, account(source, sim))
    assert not failures(results)
    assert sorted(sim.statuses("/v7/usage")) == [200, 200, 429]
    assert any(7.0 <= s <= 8.0 for s in fake.sleeps), fake.sleeps  # until the reset (plus a small margin)


def test_forced_429_with_retry_after_is_ridden_out(
    sim: ThousandEyesSimulator, source: ThousandEyesSource, fake: FakeTime
) -> None:
    sim.inject(Fault(action="status", status=429, match=on_aid("1234"), body=PROBLEM_429, headers={"Retry-After": "3"}))
    results = run(source, account(source, sim))
    assert not failures(results)
    assert 3.0 in fake.sleeps
    assert sim.statuses("/v7/usage").count(429) == 1


def test_forced_429_without_any_hint_backs_off_and_retries(
    sim: ThousandEyesSimulator, source: ThousandEyesSource
) -> None:
    sim.inject(Fault(action="status", status=429, match=on_aid("1234"), body=PROBLEM_429, times=2))
    results = run(source, account(source, sim))
    assert not failures(results)
    assert sim.statuses("/v7/usage").count(429) == 2


def test_simulators_own_429_is_ridden_out(sim: ThousandEyesSimulator, fake: FakeTime) -> None:
    # Pacing off (low_remaining=-1): the simulator's window really runs out and answers 429.
    source = ThousandEyesSource(sleep=fake.sleep, clock=fake.time, wall_clock=fake.time, low_remaining=-1)
    sim.reset(clock=fake.time, org_ids=False, rate_limit_per_minute=2, retry_after_on_429=True)
    acct = account(source, sim)
    run(source, acct)
    results = run(source, acct)  # the list call hits the used-up window of organisation 1234
    assert not failures(results)
    assert {"1234", "2345"} <= set(usages(results))
    assert sim.rate_limited >= 1
    assert 429 in sim.statuses()


def test_rate_limit_exhausted_fails_that_organisation(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    sim.inject(Fault(action="status", status=429, match=on_aid("2345"), body=PROBLEM_429, times=-1))
    results = run(source, account(source, sim))
    assert "1234" in usages(results)
    [failure] = failures(results)
    assert failure.tenant.tenant_id == "2345"
    assert "429" in failure.error


def test_everything_failing_fails_the_account(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    sim.inject(Fault(action="status", status=500, match=lambda r: r.path == "/v7/usage", times=-1))
    with pytest.raises(VendorApiError, match="500"):
        run(source, account(source, sim))


# --- secrets ---------------------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the real log handlers (with their redacting filter) write during the test."""
    buffer = io.StringIO()
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers
    previous = [h.setStream(buffer) for h in handlers]
    try:
        yield buffer
    finally:
        for handler, stream in zip(handlers, previous, strict=True):
            handler.setStream(stream)


def test_tokens_never_in_errors_or_logs(
    sim: ThousandEyesSimulator, fake: FakeTime, source: ThousandEyesSource, log_output: io.StringIO
) -> None:
    bearer = "te-bearer-SECRET-8c1f"
    basic = "te-basic-SECRET-77aa"
    sim.reset(clock=fake.time, org_ids=False, token=bearer, basic_token=basic)
    sim.inject(
        Fault(action="status", status=500, match=lambda r: r.path.endswith("account-groups"), times=1),
        Fault(action="status", status=429, match=on_aid("1234"), body=PROBLEM_429),
    )
    texts: list[str] = []
    for extra in ({"bearer_token": bearer}, {"api_version": "v6", "email": EMAIL, "basic_auth_token": basic}):
        acct = account(source, sim, **extra, aids=["1234", "4242"])
        texts += [f.error for f in failures(run(source, acct))]
    with pytest.raises(VendorAuthError) as caught:
        run(source, account(source, sim, bearer_token=bearer + "-wrong"))
    texts.append(str(caught.value))
    sent: list[SimRequest] = list(sim.requests)
    logged = log_output.getvalue()
    texts.append(logged)
    assert "thousandeyes organisations planned" in logged  # the logs were captured ...
    assert "vendor request retried" in logged
    assert any("4242" in t for t in texts)  # ... the failures are there ...
    assert sent  # ... and credentials were sent
    assert all(r.header("Authorization") for r in sent)
    for text in texts:
        assert bearer not in text
        assert basic not in text


# --- the simulator itself -------------------------------------------------------------------------


def test_simulator_speaks_like_the_vendor(sim: ThousandEyesSimulator) -> None:
    client = HttpClient(vendor="thousandeyes", base_url=sim.url)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert client.request("GET", "/v7/usage.json", headers=bearer).status == 404
        plain = client.request("GET", "/v7/usage", params={"aid": "1234"}, headers=bearer).json()["usage"]
        assert "tests" not in plain  # no expansion unless asked
        assert plain["quota"]["monthStart"] == "2026-11-05T08:00:00Z"
        expanded = client.request("GET", "/v7/usage", params={"aid": "1234", "expand": "test"}, headers=bearer).json()[
            "usage"
        ]
        assert isinstance(expanded["tests"][0]["aid"], str)
        assert "endpointAgents" not in expanded
        v6 = client.request("GET", "/v6/usage.json", auth=(EMAIL, BASIC))
        assert v6.json()["usage"]["quota"]["monthStart"] == "2026-11-05 08:00:00"
        assert isinstance(v6.json()["usage"]["tests"][0]["aid"], int)
        assert v6.headers["X-Organization-Rate-Limit-Limit"] == "240"
        assert client.request("GET", "/v7/usage", auth=(EMAIL, BASIC)).status == 401  # v7: bearer only
        bad = client.request("GET", "/v7/usage", params={"aid": "1"}, headers=bearer)
        assert bad.status == 400
        assert bad.json()["status"] == 400
    finally:
        client.close()


def test_one_run_reuses_its_connections_across_organisations(
    source: ThousandEyesSource, sim: ThousandEyesSimulator, fake: FakeTime
) -> None:
    """Each new connection costs a TCP and TLS handshake in production: a run keeps at most `concurrency` open."""
    sim.reset(clock=fake.time, org_ids=False, orgs=make_orgs(n_orgs=12, groups_per_org=1))
    acct = account(source, sim, concurrency=2)
    results = run(source, acct)
    assert sum(1 for u in usages(results).values() if u.tenant.parent_tenant_id is None) == 12
    assert len(sim.requests) == 14  # the account groups, the MSP quotas, 12 usage calls
    assert len({r.client for r in sim.requests}) <= 2


# --- MSP quotas and identity without orgId -----------------------------------------------------------


def test_quotas_are_read_once_per_run_and_only_with_v7(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    run(source, account(source, sim))
    assert sim.count("/v7/quotas") == 1
    quota_call = next(r for r in sim.requests if r.path == "/v7/quotas")
    assert quota_call.header("Authorization") == f"Bearer {TOKEN}" and "aid" not in quota_call.query
    sim.requests.clear()
    run(source, account(source, sim, api_version="v6"))
    assert not [r for r in sim.requests if "quotas" in r.path]


def test_quotas_failing_or_malformed_leave_the_contract_quotas(
    sim: ThousandEyesSimulator, source: ThousandEyesSource
) -> None:
    acct = account(source, sim)
    for fault in (
        Fault(action="status", status=503, match=lambda r: r.path == "/v7/quotas", times=-1),
        Fault(
            action="json",
            body={"quotas": [{"organizationQuota": {"value": "lots"}}]},
            match=lambda r: r.path == "/v7/quotas",
        ),
    ):
        sim.clear_faults()
        sim.inject(fault)
        results = run(source, acct)
        assert not failures(results)
        cloud = metrics(usages(results)["1234"])["cloud_units"]
        assert cloud.quota == sim.orgs[0].quota["cloudUnitsIncluded"]
        assert metrics(usages(results)["ag-1251"])["cloud_units"].quota is None


def test_a_refused_token_on_quotas_fails_the_account(sim: ThousandEyesSimulator, source: ThousandEyesSource) -> None:
    sim.inject(
        Fault(action="status", status=401, match=lambda r: r.path == "/v7/quotas", body={"error": "invalid_token"})
    )
    with pytest.raises(VendorAuthError, match="401"):
        run(source, account(source, sim))
    assert not sim.usage_requests()


def test_without_org_id_a_remembered_identity_keeps_the_organisation_when_its_lowest_group_goes(
    sim: ThousandEyesSimulator, fake: FakeTime
) -> None:
    source = ThousandEyesSource(
        sleep=fake.sleep, clock=fake.time, wall_clock=fake.time, identities=InProcessIdentities()
    )
    acct = account(source, sim)
    assert {"1234", "2345"} <= set(usages(run(source, acct)))
    sim.orgs[0].groups = sim.orgs[0].groups[1:]  # account group 1234 deleted

    got = usages(run(source, acct))

    assert {t for t, u in got.items() if u.tenant.billed} == {"1234", "2345"}
    assert got["ag-1251"].tenant.parent_tenant_id == "1234"
    assert sorted(r.query["aid"][0] for r in sim.usage_requests()[-2:]) == ["1251", "2345"]
    # Without a memory, the lowest remaining aid names it (what the pipeline's table-backed memory prevents).
    plain = ThousandEyesSource(sleep=fake.sleep, clock=fake.time, wall_clock=fake.time)
    assert {t for t, u in usages(run(plain, account(plain, sim))).items() if u.tenant.billed} == {"1251", "2345"}

"""ThousandEyes rows of the fault matrix: the real handler, moto, two v7 accounts on two simulators.

Account `te-a` stays healthy; faults go to `te-b`, whose organisation Globex (orgId 981111, tenant `org-981111`,
one account group 2345) is the one made to fail in the per-organisation rows. Organisations are billed tenants;
account groups (`ag-<aid>`) are breakdown rows that are stored but never added to totals.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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
from tests.faults.sims import HookedThousandEyes
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, on_path
from tests.simulators.thousandeyes import TeOrg, make_orgs
from usagewatch.handler import reset_config_cache
from usagewatch.model import utc_iso

SECRET = "usagewatch/thousandeyes"
VENDOR = "thousandeyes"
TOKENS = {"te-a": "te-fault-token-a-71c2", "te-b": "te-fault-token-b-93d4"}
PERIOD = "2026-11"
BILLING_START = datetime(2026, 11, 5, 8, tzinfo=UTC)
USAGE = "/v7/usage"
GROUPS = "/v7/account-groups"
VICTIM = "org-981111"  # organisation 1 (Globex, orgId 981111), with its one account group 2345
VICTIM_AID = "2345"
ORG_METRICS = {
    "cloudUnitsUsed": "cloud_units",
    "enterpriseUnitsUsed": "enterprise_units",
    "connectedDevicesUnitsUsed": "connected_devices",
    "endpointAgentsUsed": "endpoint_agents",
    "endpointAgentsEssentialsUsed": "endpoint_agents_essentials",
    "endpointAgentsEmbeddedUsed": "endpoint_agents_embedded",
    "enterpriseAgentsUsed": "enterprise_agents",
}


def tenant(org: TeOrg) -> str:
    """An organisation's tenant id: `org-<orgId>` (the simulator sends orgId)."""
    return f"org-{org.org_id}"


def on_aid(aid: str) -> Any:
    return lambda req: req.path == USAGE and req.query.get("aid") == [aid]


@dataclass
class ThousandEyes:
    h: Harness
    a: HookedThousandEyes
    b: HookedThousandEyes
    aws: LocalAws
    accounts: tuple[str, ...] = ("te-a", "te-b")

    def sim(self, account_id: str) -> HookedThousandEyes:
        return self.a if account_id == "te-a" else self.b

    def configure(self, **b_knobs: Any) -> None:
        accounts = [account(x, self.sim(x), **(b_knobs if x == "te-b" else {})) for x in self.accounts]
        self.aws.put_secret(SECRET, accounts)
        reset_config_cache()  # a new container, or the 5-minute secret cache expired

    def expected(self, *accounts: str) -> dict[UsageKey, Any]:
        values: dict[UsageKey, Any] = {}
        for account_id in accounts or self.accounts:
            for org in self.sim(account_id).orgs:
                for field_name, metric in ORG_METRICS.items():
                    values[(account_id, tenant(org), metric)] = org.totals[field_name]
        return values

    def groups(self, account_id: str) -> set[str]:
        return {f"ag-{aid}" for org in self.sim(account_id).orgs for aid in org.aids}

    def bump_all(self) -> None:
        for sim in (self.a, self.b):
            for org in sim.orgs:
                sim.set_usage(org.lowest_aid, **{f: org.totals[f] + 1 for f in ORG_METRICS})


def account(account_id: str, sim: HookedThousandEyes, **knobs: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "base_url": sim.url,
        "bearer_token": TOKENS[account_id],
        "timeout_seconds": 1,
        "requests_per_minute": 6000,
        **knobs,
    }


def simulator(account_id: str) -> HookedThousandEyes:
    return HookedThousandEyes(token=TOKENS[account_id], orgs=make_orgs(2, 1, period_start=BILLING_START))


@pytest.fixture
def te(aws: LocalAws, invoke: Invoke, clock: Any, request: pytest.FixtureRequest) -> Iterator[ThousandEyes]:
    """Two accounts; `@pytest.mark.solo` tests (ridden-out rows, where no neighbour needs protecting) only te-b."""
    with simulator("te-a") as a, simulator("te-b") as b:
        assert isinstance(a, HookedThousandEyes) and isinstance(b, HookedThousandEyes)
        solo = request.node.get_closest_marker("solo") is not None
        world = ThousandEyes(
            Harness(aws, invoke, clock, "thousandeyes", {}), a, b, aws, ("te-b",) if solo else ("te-a", "te-b")
        )
        world.configure()
        world.h.env = aws.environment("thousandeyes", secret_name=SECRET)
        yield world


def ridden_out(te: ThousandEyes, outcome: Outcome) -> Stored:
    stored = assert_ridden_out(
        te.h,
        outcome,
        PERIOD,
        te.expected(),
        billed_only=True,
        breakdown_tenants={a: te.groups(a) for a in te.accounts},
    )
    projected = {
        (e["account_id"], e["tenant_id"])
        for e in outcome.of_type("usage.threshold.breached")
        if e["rule"] == "projected_over_quota"
    }
    assert projected == {(a, tenant(te.sim(a).orgs[0])) for a in te.accounts}  # org 0 projected over its quota
    assert_clean_rerun_publishes_nothing(te.h, at("18:00"))
    return stored


def fired(*faults: Fault) -> None:
    for fault in faults:
        assert fault.fired == fault.times, f"fault {fault.action} fired {fault.fired} of {fault.times} times"


def victim_keys(stored: Stored) -> list[UsageKey]:
    tenants = {VICTIM, "ag-2345"}
    return [k for k in stored.usage if k[0] == "te-b" and k[1] in tenants]


def contained_run(te: ThousandEyes, *faults: Fault) -> tuple[Stored, Outcome, Stored]:
    """A clean run at 06:00, new numbers, the faults, a run at 12:00: (before, outcome, after)."""
    te.h.run(at("06:00"))
    before = te.h.stored(PERIOD)
    te.bump_all()
    te.b.inject(*faults)
    outcome = te.h.run(at("12:00"))
    return before, outcome, te.h.stored(PERIOD)


def assert_organisation_contained(te: ThousandEyes, before: Stored, outcome: Outcome, after: Stored) -> None:
    """Globex keeps its 06:00 items; the total carries them; everything else has the 12:00 numbers."""
    assert_untouched(before, after, victim_keys(before))
    fresh = {k: v for k, v in te.expected().items() if k[1] != VICTIM}
    assert {k: v for k, v in after.values(billed_only=True).items() if k[1] != VICTIM} == fresh
    for metric in ORG_METRICS.values():
        total = after.totals[("te-b", metric)]
        others = sum(v for k, v in fresh.items() if k[0] == "te-b" and k[2] == metric)
        assert total["value"] == others + before.usage[("te-b", VICTIM, metric)]["value"]
        assert total["carried_tenant_count"] == 1 and total["computed_at"] == collected_at(at("12:00"))
    assert outcome.account("te-a")["status"] == "ok"
    assert_no_duplicate_events(outcome.events)


def assert_account_b_untouched(te: ThousandEyes, before: Stored, outcome: Outcome, after: Stored) -> None:
    assert_untouched(before, after, [k for k in before.usage if k[0] == "te-b"])
    assert_totals_untouched(before, after, "te-b")
    assert after.values("te-a", billed_only=True) == te.expected("te-a")
    assert outcome.account("te-a")["status"] == "ok"
    assert_no_duplicate_events(outcome.events)


# --- HTTP faults, transient: ridden out -----------------------------------------------------------------


def transient_faults() -> dict[str, list[Fault]]:
    reset_soon = str(int(time.time()) + 1)
    return {
        "429-retry-after": [Fault("status", on_aid(VICTIM_AID), status=429, headers={"Retry-After": "1"})],
        "429-no-retry-after": [Fault("status", on_path(USAGE), times=2, status=429)],
        "429-rate-limit-reset-header": [
            Fault("status", on_aid(VICTIM_AID), status=429, headers={"X-Organization-Rate-Limit-Reset": reset_soon})
        ],
        "5xx-burst": [
            Fault("status", on_path(GROUPS), status=500),
            Fault("status", on_path(GROUPS), status=502),
            Fault("status", on_path(GROUPS), status=503),
        ],
        "hang-past-timeout": [Fault("hang", on_aid(VICTIM_AID), seconds=2.5)],
        "connection-reset": [Fault("reset", on_path(GROUPS)), Fault("reset", on_aid("1234"))],
        "truncated-body": [Fault("truncate", on_aid(VICTIM_AID))],
        "html-instead-of-json": [Fault("html", on_path(GROUPS))],
        "empty-200": [Fault("empty", on_aid("1234"))],
    }


@pytest.mark.solo
@pytest.mark.parametrize("name", list(transient_faults()))
def test_transient_http_fault_is_ridden_out(te: ThousandEyes, name: str) -> None:
    faults = transient_faults()[name]
    te.b.inject(*faults)

    outcome = te.h.run(at("06:00"))

    fired(*faults)
    ridden_out(te, outcome)


# --- faults that stay: contained -------------------------------------------------------------------------


def test_one_organisation_answering_503_forever_is_contained_to_it(te: ThousandEyes) -> None:
    before, outcome, after = contained_run(te, Fault("status", on_aid(VICTIM_AID), times=-1, status=503))

    assert_tenant_contained(outcome, te.h, "te-b", VICTIM, "organisation Globex", "5 attempt(s)", "HTTP 503")
    assert_organisation_contained(te, before, outcome, after)


def test_every_usage_call_rate_limited_forever_fails_the_account(te: ThousandEyes) -> None:
    before, outcome, after = contained_run(te, Fault("status", on_path(USAGE), times=-1, status=429))

    assert_account_contained(outcome, te.h, "te-b", "/v7/usage", "HTTP 429")
    assert_account_b_untouched(te, before, outcome, after)


def test_account_groups_answering_html_forever_fails_the_account(te: ThousandEyes) -> None:
    before, outcome, after = contained_run(te, Fault("html", on_path(GROUPS), times=-1))

    assert_account_contained(outcome, te.h, "te-b", "account-groups", "HTML instead of JSON")
    assert_account_b_untouched(te, before, outcome, after)
    assert te.b.count(USAGE) == 2  # only the 06:00 run's: no usage read without the organisation list


@pytest.mark.realtime  # real read timeouts against a server that never answers, bounded in seconds
def test_usage_that_hangs_forever_fails_within_the_retry_budget(te: ThousandEyes) -> None:
    te.configure(timeout_seconds=0.3)
    started = time.monotonic()
    before, outcome, after = contained_run(te, Fault("hang", on_path(USAGE), times=-1, seconds=1.0))

    assert time.monotonic() - started < 15
    assert_account_contained(outcome, te.h, "te-b", "timed out")
    assert_account_b_untouched(te, before, outcome, after)


# --- auth ------------------------------------------------------------------------------------------------


def test_wrong_bearer_token_fails_fast_with_one_clear_message(te: ThousandEyes) -> None:
    te.h.run(at("06:00"))
    before = te.h.stored(PERIOD)
    te.b.token = "someone-else-s-token"
    requests_before = te.b.count()

    outcome = te.h.run(at("12:00"))

    message = assert_account_contained(outcome, te.h, "te-b", "ThousandEyes refused the bearer token", "HTTP 401")
    assert te.b.count() - requests_before <= 2, "retry storm on a refused token"
    assert message.count("refused") == 1
    after = te.h.stored(PERIOD)
    assert_account_b_untouched(te, before, outcome, after)


def test_token_revoked_mid_run_fails_the_account_clearly(te: ThousandEyes) -> None:
    """ThousandEyes bearer tokens do not expire on their own; one revoked between the account-groups call and
    the usage calls cannot be renewed by the collector: the account fails, saying so."""
    revoke = Fault("status", on_path(USAGE), times=-1, status=401, body={"error": "invalid_token"})
    before, outcome, after = contained_run(te, revoke)

    assert_account_contained(outcome, te.h, "te-b", "refused the bearer token", "401")
    assert_account_b_untouched(te, before, outcome, after)
    assert revoke.fired <= 2


def test_token_without_billing_permission_fails_the_account_naming_it(te: ThousandEyes) -> None:
    te.h.run(at("06:00"))
    before = te.h.stored(PERIOD)
    te.b.tokens_without_billing = {TOKENS["te-b"]}
    te.b.token = "unused"

    outcome = te.h.run(at("12:00"))

    assert_account_contained(outcome, te.h, "te-b", "View Billing")
    assert_account_b_untouched(te, before, outcome, te.h.stored(PERIOD))


# --- data ------------------------------------------------------------------------------------------------

BAD_VALUES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "string-count": ({"raw_cloudUnitsUsed": "12"}, ("usage.cloudUnitsUsed", "expected a number, got str")),
    "negative": ({"endpointAgentsUsed": -4}, ("usage.endpointAgentsUsed", "out of range")),
    "absurd": ({"enterpriseUnitsUsed": 10**16}, ("usage.enterpriseUnitsUsed", "out of range")),
    "absurd-quota": ({"cloudUnitsIncluded": 1e300}, ("usage.quota.cloudUnitsIncluded", "out of range")),
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_bad_value_fails_that_organisation_naming_the_field(te: ThousandEyes, name: str) -> None:
    change, fragments = BAD_VALUES[name]
    te.h.run(at("06:00"))
    before = te.h.stored(PERIOD)
    te.bump_all()
    te.b.set_usage(VICTIM_AID, **change)

    outcome = te.h.run(at("12:00"))
    after = te.h.stored(PERIOD)

    assert_tenant_contained(outcome, te.h, "te-b", VICTIM, "organisation Globex", *fragments)
    assert_organisation_contained(te, before, outcome, after)


def test_missing_billing_dates_store_the_organisation_under_the_requested_period(te: ThousandEyes) -> None:
    """The spec makes `quota.monthStart` optional: an answer without it does not fail the organisation; its
    numbers are stored under the requested calendar month and every other organisation is untouched."""
    te.h.run(at("06:00"))
    te.bump_all()

    def drop_month_start(org: TeOrg, body: dict[str, Any]) -> None:
        if VICTIM_AID in org.aids:
            del body["usage"]["quota"]["monthStart"]

    te.b.usage_hook = drop_month_start

    outcome = te.h.run(at("12:00"))
    after = te.h.stored(PERIOD)

    assert outcome.error is None and outcome.account("te-b")["status"] == "ok"
    assert after.values(billed_only=True) == te.expected()
    windows = {
        tenant_id: {
            (utc_iso(u.record.window.start), utc_iso(u.record.window.end))
            for u in te.h.store().tenant_usage(VENDOR, "te-b", tenant_id, PERIOD)
        }
        for tenant_id in (VICTIM, tenant(te.b.orgs[0]))
    }
    assert windows[VICTIM] == {("2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z")}
    assert windows[tenant(te.b.orgs[0])] == {("2026-11-05T08:00:00Z", "2026-12-05T08:00:00Z")}
    assert_no_duplicate_events(outcome.events)
    notes = te.h.run_record("te-b", at("12:00"))["notes"]
    assert len(notes) == 1 and VICTIM in notes[0] and "stored under the requested period 2026-11" in notes[0], notes


@pytest.mark.solo
def test_unknown_extra_fields_are_ignored(te: ThousandEyes) -> None:
    def extend(org: TeOrg, body: dict[str, Any]) -> None:
        body["usage"]["quantumUnitsUsed"] = 12
        body["usage"]["quota"]["quantumUnitsIncluded"] = {"tier": "gold"}
        body["usage"]["tests"][0]["newTestField"] = [1, 2]
        body["meta"] = {"apiVersion": "7.9"}

    def extend_groups(body: dict[str, Any]) -> None:
        for row in body["accountGroups"]:
            row["organizationRegion"] = "EU"

    te.b.usage_hook = extend
    te.b.groups_hook = extend_groups

    ridden_out(te, te.h.run(at("06:00")))


@pytest.mark.solo
def test_unicode_and_300_character_names_are_stored(te: ThousandEyes) -> None:
    long_name = ("Ünïcødé Δοκιμή 株式会社 😀 " * 20)[:300]
    te.b.orgs[1].name = long_name
    te.b.orgs[1].groups[0].name = "x" * 300
    for row in te.b.orgs[1].tests + te.b.orgs[1].endpoint_agents + te.b.orgs[1].enterprise_agents:
        if row["aid"] == te.b.orgs[1].groups[0].aid:
            row["accountGroupName"] = "x" * 300

    stored = ridden_out(te, te.h.run(at("06:00")))

    assert stored.usage[("te-b", VICTIM, "cloud_units")]["tenant_name"] == long_name.strip()[:256]
    assert stored.usage[("te-b", "ag-2345", "cloud_units")]["tenant_name"] == "x" * 256


@pytest.mark.solo
def test_duplicate_ids_are_collected_once(te: ThousandEyes) -> None:
    """Every account group listed twice, and one test row repeated: each organisation is still called and
    stored once, and totals count it once."""

    def twice(body: dict[str, Any]) -> None:
        body["accountGroups"] = body["accountGroups"] + copy.deepcopy(body["accountGroups"])

    te.b.groups_hook = twice

    outcome = te.h.run(at("06:00"))

    assert sorted(r.query["aid"][0] for r in te.b.usage_requests()) == ["1234", VICTIM_AID]
    ridden_out(te, outcome)


# --- identity and the MSP's quotas ------------------------------------------------------------------------


@pytest.mark.solo
def test_lowest_account_group_deleted_mid_period_keeps_one_identity(te: ThousandEyes) -> None:
    """Issue 11.6: with the lowest aid as id, deleting that account group gave the organisation a second id,
    a second projected_over_quota breach and a second billed row. orgId keeps one."""
    te.b.orgs = make_orgs(2, 2, period_start=BILLING_START)
    ridden_out(te, te.h.run(at("06:00")))
    acme = te.b.orgs[0]
    acme.groups = acme.groups[1:]  # account group 1234 deleted; its tests stay billed this period

    outcome = te.h.run(at("12:00"))
    after = te.h.stored(PERIOD)

    assert outcome.error is None and outcome.account("te-b")["status"] == "ok"
    assert sorted(r.query["aid"][0] for r in te.b.usage_requests()[-2:]) == ["1251", VICTIM_AID]
    assert not [e for e in outcome.of_type("usage.threshold.breached") if e["rule"] == "projected_over_quota"]
    assert after.values(billed_only=True) == te.expected()
    for metric in ORG_METRICS.values():
        assert after.totals[("te-b", metric)]["value"] == sum(v for k, v in te.expected().items() if k[2] == metric)
        assert after.totals[("te-b", metric)]["tenant_count"] == 2
    assert_no_duplicate_events(outcome.events)


@pytest.mark.solo
@pytest.mark.parametrize("status", [403, 503])
def test_msp_quotas_unreadable_collection_goes_on_with_the_contract_quotas(te: ThousandEyes, status: int) -> None:
    quotas = Fault("status", on_path("/v7/quotas"), times=-1, status=status, body={"title": "no", "status": status})
    te.b.inject(quotas)
    for org in te.b.orgs:  # what /v7/quotas would have said, had it answered
        org.msp_quota = org.quota["cloudUnitsIncluded"] + 1

    ridden_out(te, te.h.run(at("06:00")))

    assert quotas.fired >= 1
    for org in te.b.orgs:
        [cloud] = [
            u.record
            for u in te.h.store().tenant_usage(VENDOR, "te-b", tenant(org), PERIOD)
            if u.record.metric == "cloud_units"
        ]
        assert cloud.quota == org.quota["cloudUnitsIncluded"]

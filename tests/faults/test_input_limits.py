"""Input limits, for every vendor through the real handler: the response size cap, `http://` only on loopback,
connect and read timeouts with TLS verification on every request, and retries bounded in count and in time."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.faults.harness import FrozenClock, Harness, Outcome, at
from tests.faults.vendors import VENDORS, Case, case
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault
from tests.virtual_time import PacingClock
from usagewatch import registry
from usagewatch.errors import ConfigError
from usagewatch.http import DEFAULT_MAX_RESPONSE_BYTES, HttpClient, RetryPolicy
from usagewatch.sources.base import VendorSource


def harness(aws: LocalAws, invoke: Invoke, clock: FrozenClock, c: Case) -> Harness:
    aws.put_secret(c.secret_name, c.accounts)
    return Harness(aws, invoke, clock, c.vendor, aws.environment(c.vendor, secret_name=c.secret_name))


def test_every_registered_vendor_has_a_case_here() -> None:
    assert sorted(VENDORS) == sorted(registry.vendor_ids()), "add the vendor's case to tests/faults/vendors.py"


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def failed_accounts(outcome: Outcome) -> dict[str, str]:
    return {a["account_id"]: a["error"] for a in outcome.summary["account_results"] if a["status"] == "failed"}


def test_response_larger_than_the_cap_is_refused_without_retrying(
    aws: LocalAws, invoke: Invoke, clock: FrozenClock, vendor: str
) -> None:
    with case(vendor) as c:
        h = harness(aws, invoke, clock, c)
        oversize = Fault("json", c.first, times=-1, body={"pad": "x" * (DEFAULT_MAX_RESPONSE_BYTES + 1024)})
        c.sim.inject(oversize)

        outcome = h.run(at("06:00"))

    assert oversize.fired == len(c.accounts), "an oversize answer must not be asked for again"
    errors = failed_accounts(outcome)
    assert set(errors) == {a["account_id"] for a in c.accounts}
    for message in errors.values():
        assert "bytes refused" in message and f"cap {DEFAULT_MAX_RESPONSE_BYTES}" in message
    assert h.stored("2026-11").usage == {}


REMOTE = {
    "keepnet": "api.keepnetlabs.com",
    "thousandeyes": "10.0.0.7",
    "gravityzone": "[2001:db8::1]",
    "microsoft365": "graph.microsoft.com",
}
"""A remote host of each kind (name, IPv4, IPv6); a vendor not named here gets api.example.com."""


def test_plain_http_to_a_remote_host_is_refused_at_secret_validation(
    aws: LocalAws, invoke: Invoke, clock: FrozenClock, vendor: str
) -> None:
    host = REMOTE.get(vendor, "api.example.com")
    with case(vendor) as c:
        c.accounts = [{**c.accounts[0], c.url_field: f"http://{host}/api"}]
        h = harness(aws, invoke, clock, c)

        with pytest.raises(ConfigError) as raised:
            h.run(at("06:00"))

        assert f"accounts[0].{c.url_field}" in str(raised.value)
        assert "http:// is allowed only for loopback hosts" in str(raised.value)
        assert c.sim.count() == 0
    assert aws.count() == 0


def test_every_request_has_connect_and_read_timeouts_and_verifies_tls(
    aws: LocalAws, invoke: Invoke, clock: FrozenClock, vendor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[dict[str, Any]] = []
    clients: list[HttpClient] = []
    real_request = requests.Session.request
    real_post_init = HttpClient.__post_init__

    def spy_request(self: requests.Session, method: str, url: str, **kwargs: Any) -> Any:
        sent.append({"verify": self.verify, "trust_env": self.trust_env, "url": url, **kwargs})
        return real_request(self, method, url, **kwargs)

    def spy_post_init(self: HttpClient) -> None:
        real_post_init(self)
        clients.append(self)

    monkeypatch.setattr(requests.Session, "request", spy_request)
    monkeypatch.setattr(HttpClient, "__post_init__", spy_post_init)

    with case(vendor, timeout_seconds=7) as c:
        h = harness(aws, invoke, clock, c)
        c.sim.inject(Fault("status", c.main, status=503))  # one retry too

        outcome = h.run(at("06:00"))
        received = c.sim.count()

    assert outcome.error is None and outcome.summary["tenants_failed"] == 0
    assert len(sent) == received > 0, "a request went out some other way than the HttpClient's session"
    for call in sent:
        assert call["timeout"] == (3.05, 7.0), call["url"]
        assert call["verify"] is True and call["trust_env"] is False
        assert call["allow_redirects"] is False
    assert clients
    for client in clients:
        assert client.timeout == (3.05, 7.0)
        assert client.session.verify is True
        assert client.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
        assert client.retry.max_attempts == RetryPolicy().max_attempts == 5
        assert client.retry.max_total_seconds == RetryPolicy().max_total_seconds == 90.0


def test_retries_are_bounded_in_count(aws: LocalAws, invoke: Invoke, clock: FrozenClock, vendor: str) -> None:
    with case(vendor) as c:
        h = harness(aws, invoke, clock, c)
        outage = Fault("status", c.first, times=-1, status=503)
        c.sim.inject(outage)

        outcome = h.run(at("06:00"))

    assert outage.fired == 5 * len(c.accounts)  # five attempts of the first request, then the account gives up
    errors = failed_accounts(outcome)
    assert set(errors) == {a["account_id"] for a in c.accounts}
    assert all("5 attempt(s)" in e and "HTTP 503" in e for e in errors.values()), errors


@pytest.fixture
def production_sources() -> None:
    """The sources' own default RetryPolicy (0.5 s backoff base), not the fault suite's fast one."""
    assert VendorSource.__init__.__kwdefaults__["retry"] is None


def test_production_retry_policy_ends_a_dead_vendor_in_bounded_time(
    aws: LocalAws,
    invoke: Invoke,
    clock: FrozenClock,
    production_retry: None,
    production_sources: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A vendor answering 503 to everything, with the real backoff (0.5 s doubling, jittered to half..full):
    4 waits of at least 0.25 + 0.5 + 1 + 2 s and at most 0.5 + 1 + 2 + 4 s, 5 requests, then the account fails.
    The waits are the policy's own, slept on a PacingClock: counted in the elapsed time, not waited for."""
    pacing = PacingClock().install(monkeypatch)
    with case("keepnet") as c:
        h = harness(aws, invoke, clock, c)
        c.sim.inject(Fault("status", c.first, times=-1, status=503))

        started = pacing()
        outcome = h.run(at("06:00"))
        elapsed = pacing() - started

        assert c.sim.count() == 5
    assert 3.75 <= elapsed < 7.5 + 3, f"{elapsed:.1f}s"
    backoffs = [wait for wait in pacing.slept if wait >= 0.1]  # pacing at 200 requests a second waits less
    ceilings = (0.5, 1, 2, 4)  # each doubling, jittered to half..full
    assert len(backoffs) == 4 and all(c / 2 <= w <= c for w, c in zip(backoffs, ceilings, strict=True)), backoffs
    assert "failed after 5 attempt(s): HTTP 503" in failed_accounts(outcome)["kn-main"]


def test_total_time_budget_stops_retrying_before_the_attempts_run_out(
    aws: LocalAws, invoke: Invoke, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server asking to wait 1.5 s each time, with a 2 s budget: one wait fits, a second would not, so the
    request gives up after 2 of its 5 attempts, at about 1.5 s (production: the same rule with 90 s)."""
    monkeypatch.setitem(VendorSource.__init__.__kwdefaults__, "retry", RetryPolicy(max_total_seconds=2.0))
    pacing = PacingClock().install(monkeypatch)  # the 1.5 s is slept on it: counted, not waited for
    with case("keepnet") as c:
        h = harness(aws, invoke, clock, c)
        c.sim.inject(Fault("status", c.first, times=-1, status=429, headers={"Retry-After": "1.5"}))

        started = pacing()
        outcome = h.run(at("06:00"))
        elapsed = pacing() - started

        assert c.sim.count() == 2
    assert 1.5 <= elapsed < 3.5, f"{elapsed:.1f}s"
    assert "failed after 2 attempt(s): HTTP 429" in failed_accounts(outcome)["kn-main"]

"""Canary secrets: distinctive values planted in every vendor secret (Keepnet client secret and the access
tokens its simulator issues; ThousandEyes v7 bearer token and v6 basic-auth token, and the base64 header made of
it; GravityZone API key and its basic-auth header) while a representative set of the fault scenarios runs,
including vendors that echo the credential back in their error bodies. None may appear in the logs (Powertools
JSON on stdout, anything else through `logging`), the published SNS messages (JSON and e-mail text, subject),
the alert events delivered, the table's items (usage, totals, run records, alert states), the summaries, or the
exceptions raised (with their whole chain)."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import pytest

from tests.faults.harness import FrozenClock, Harness, boto_hook
from tests.faults.sims import HookedKeepnet, HookedThousandEyes, on_main_page
from tests.faults.vendors import Case, Secrets, case
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, SimRequest, SimResponse, on_path
from tests.simulators.gravityzone import GravityZoneSimulator
from tests.simulators.keepnet import SEARCH_PATH, TOKEN_PATH
from tests.virtual_time import PacingClock
from usagewatch.observability import logger
from usagewatch.redaction import MASK

CANARIES = Secrets(
    keepnet_client_secret='CANARY-kn/client+secret="7f3e9a1c"&q=1',  # characters URL and JSON encode
    te_bearer="CANARY-te-bearer-token-2b8d4e6f",
    te_basic="CANARY-te-basic-token-5a9c3e7b",
    gz_api_key="CANARY-gz-api-key-1d5f9b3a",
)
Scenario = tuple[str, Callable[[Case], None]]

pytestmark = pytest.mark.realtime  # each set of scenarios has a hang: one real 1 s read timeout


@pytest.fixture(autouse=True)
def pacing(monkeypatch: pytest.MonkeyPatch) -> PacingClock:
    """Pacing, back-offs and Retry-After waits on a clock whose sleeps are instant (these simulators keep no rate
    window of their own here); a hang still costs its real read timeout."""
    return PacingClock().install(monkeypatch)


class Witness:
    """Collects everything that leaves the code while the scenarios run."""

    def __init__(self, aws: LocalAws) -> None:
        self.aws = aws
        self.texts: list[str] = []
        self.published: list[str] = []
        self.errors: list[str] = []

    def record_publish(self, params: dict[str, Any], **kwargs: Any) -> None:
        body = params.get("body", {})
        self.published.append(json.dumps(body, default=str))

    def run(self, h: Harness, when: str) -> None:
        try:
            outcome = h.run(when)
        except Exception as exc:  # ConfigError and anything else the handler lets out
            self.texts.append("".join(traceback.format_exception(exc)))
            return
        if outcome.error is not None:
            self.errors.append(str(outcome.error))
            self.texts.append("".join(traceback.format_exception(outcome.error)))
        self.texts.append(json.dumps(outcome.summary, default=str))
        self.texts.append(json.dumps(outcome.events, default=str))


def run_scenarios(
    aws: LocalAws,
    invoke: Invoke,
    clock: FrozenClock,
    vendor: str,
    scenarios: list[Scenario],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    **knobs: Any,
) -> tuple[str, Witness, Case]:
    witness = Witness(aws)
    # Powertools' handler holds the stdout of import time; point it at the stdout capsys now captures.
    for handler in logger.handlers:
        monkeypatch.setattr(handler, "stream", sys.stdout)
    with case(vendor, CANARIES, **knobs) as c, boto_hook("before-call.sns.Publish", witness.record_publish):
        aws.put_secret(c.secret_name, c.accounts)
        h = Harness(aws, invoke, clock, vendor, aws.environment(vendor, secret_name=c.secret_name))
        for hour, (_name, prepare) in enumerate(scenarios):
            c.sim.clear_faults()
            prepare(c)
            witness.run(h, f"2026-11-22T{hour:02d}:00:00Z")
    out = capsys.readouterr()
    items = json.dumps(aws.items(), default=str)
    haystack = "\n".join([out.out, out.err, caplog.text, *witness.texts, *witness.published, items])
    # The capture works: the run's own log lines, events and records are all in it.
    assert '"message":"collection finished"' in out.out
    assert witness.published and '"collection.failed"' in haystack and '"record_type": "run"' in items
    return haystack, witness, c


def assert_no_canary(haystack: str, canaries: list[str]) -> None:
    for canary in canaries:
        assert canary not in haystack, f"secret {canary[:12]}... leaked"
    assert "CANARY" not in haystack


# --- Keepnet -------------------------------------------------------------------------------------------


def keepnet_scenarios() -> list[Scenario]:
    secret = CANARIES.keepnet_client_secret

    def clean(c: Case) -> None:
        pass

    def expiry_and_5xx(c: Case) -> None:
        assert isinstance(c.sim, HookedKeepnet)
        c.sim.expire_tokens_at(c.sim._searches + 2)  # the second search of this run
        c.sim.inject(
            Fault("status", on_path(SEARCH_PATH), status=503), Fault("status", on_path(SEARCH_PATH), status=429)
        )

    def token_endpoint_echoes_the_secret(c: Case) -> None:
        body = {"error": f"invalid_client:{secret}", "error_description": f"client_secret {secret} is wrong"}
        c.sim.inject(Fault("status", on_path(TOKEN_PATH), status=400, body=body))

    def token_endpoint_quotes_the_encoded_form(c: Case) -> None:
        form = f"grant_type=client_credentials&client_id=msp&client_secret={quote_plus(secret)}"
        said = {"error": "invalid_request", "error_description": f"cannot parse {form}", "echo": secret}
        c.sim.inject(Fault("status", on_path(TOKEN_PATH), status=400, body=said))

    def search_echoes_the_token(c: Case) -> None:
        assert isinstance(c.sim, HookedKeepnet)

        def echo(request: SimRequest) -> SimResponse:
            said = f"header {request.header('Authorization')} not accepted"
            return SimResponse(400, {"status": "INPUT_ERROR", "message": said, "validationMessages": [said]})

        c.sim.respond = echo

    def garbled_page_and_bad_company(c: Case) -> None:
        assert isinstance(c.sim, HookedKeepnet)
        c.sim.respond = None
        c.sim.default_companies[0]["targetUserCount"] = "lots"
        c.sim.inject(Fault("garble", on_main_page(2), times=-1))

    def hang_then_wrong_credentials(c: Case) -> None:
        assert isinstance(c.sim, HookedKeepnet)
        c.sim.inject(Fault("hang", on_path(TOKEN_PATH), seconds=2.5))
        c.sim.clients = {"msp": ("another-secret-entirely", "Reseller")}

    return [
        ("clean", clean),
        ("token expiry, 503, 429", expiry_and_5xx),
        ("token endpoint echoes the client secret", token_endpoint_echoes_the_secret),
        ("token endpoint quotes the URL-encoded and JSON-escaped secret", token_endpoint_quotes_the_encoded_form),
        ("search echoes the bearer token", search_echoes_the_token),
        ("garbled page, bad company", garbled_page_and_bad_company),
        ("hang, then wrong credentials", hang_then_wrong_credentials),
    ]


def test_keepnet_secrets_and_tokens_never_leave(
    aws: LocalAws,
    invoke: Invoke,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    haystack, witness, c = run_scenarios(
        aws, invoke, clock, "keepnet", keepnet_scenarios(), capsys, caplog, monkeypatch, timeout_seconds=1
    )

    assert isinstance(c.sim, HookedKeepnet)
    tokens = c.sim.issued_tokens
    assert len(tokens) == 5  # clean 1, expiry 2 (one renewal), search echo 1, garbled page 1
    assert_no_canary(haystack, [CANARIES.keepnet_client_secret, *tokens])
    # The echoes reached the messages, masked.
    assert any(f"Keepnet said: invalid_client:{MASK}" in e for e in witness.errors), witness.errors
    assert any(f"header Bearer {MASK} not accepted" in e for e in witness.errors), witness.errors


# --- ThousandEyes --------------------------------------------------------------------------------------


def thousandeyes_scenarios() -> list[Scenario]:
    both = f"{CANARIES.te_bearer} / Basic {CANARIES.te_basic_header()}"

    def clean(c: Case) -> None:
        pass

    def unauthorised_with_echo(c: Case) -> None:
        body = {"error": "invalid_token", "error_description": f"token {both} expired"}
        c.sim.inject(Fault("status", c.first, times=-1, status=401, body=body))

    def organisation_refused_with_echo(c: Case) -> None:
        body = {"title": "Bad Request", "status": 400, "detail": f"aid 2345 is not yours ({both})"}
        c.sim.inject(
            Fault("status", lambda r: c.main(r) and r.query.get("aid") == ["2345"], times=-1, status=400, body=body)
        )

    def faults_ridden_out(c: Case) -> None:
        c.sim.inject(
            Fault("status", c.main, status=503),
            Fault("hang", c.main, seconds=2.5),
            Fault("html", c.first),
            Fault("status", c.main, status=429, headers={"Retry-After": "1"}),
        )

    def bad_value_and_server_error_with_echo(c: Case) -> None:
        assert isinstance(c.sim, HookedThousandEyes)
        c.sim.set_usage("2345", raw_cloudUnitsUsed="12")
        body = {"title": "Internal Server Error", "detail": f"backend said {both}"}
        c.sim.inject(
            Fault("status", lambda r: c.main(r) and r.query.get("aid") == ["1234"], times=-1, status=500, body=body)
        )

    return [
        ("clean", clean),
        ("401 echoing the credentials", unauthorised_with_echo),
        ("400 on one organisation echoing the credentials", organisation_refused_with_echo),
        ("503, hang, html, 429", faults_ridden_out),
        ("bad value, 500 echoing the credentials", bad_value_and_server_error_with_echo),
    ]


def test_thousandeyes_tokens_never_leave(
    aws: LocalAws,
    invoke: Invoke,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    haystack, witness, _c = run_scenarios(
        aws, invoke, clock, "thousandeyes", thousandeyes_scenarios(), capsys, caplog, monkeypatch, timeout_seconds=1
    )

    assert_no_canary(haystack, [CANARIES.te_bearer, CANARIES.te_basic, CANARIES.te_basic_header()])
    assert any(f"token {MASK} / Basic {MASK} expired" in e for e in witness.errors), witness.errors
    assert haystack.count(f"not yours ({MASK} / Basic {MASK})") >= 1


# --- GravityZone ---------------------------------------------------------------------------------------


def gravityzone_scenarios() -> list[Scenario]:
    both = f"{CANARIES.gz_api_key} (Basic {CANARIES.gz_basic_header()})"

    def clean(c: Case) -> None:
        pass

    def company_error_with_echo(c: Case) -> None:
        assert isinstance(c.sim, GravityZoneSimulator)
        victim = c.sim.customers()[0]
        error = {
            "code": -32000,
            "message": f"Server error for key {both}",
            "data": {"details": f"key {both} over quota"},
        }

        def on_victim(r: SimRequest) -> bool:
            params = (r.json() or {}).get("params") or {}
            return c.main(r) and params.get("companyId") == victim

        c.sim.inject(Fault("json", on_victim, times=-1, body={"jsonrpc": "2.0", "id": "x", "error": error}))

    def key_quoted_where_the_message_is_cut(c: Case) -> None:
        assert isinstance(c.sim, GravityZoneSimulator)
        victim = c.sim.customers()[1]
        message = "Server error: " + "x" * 170 + f" key {CANARIES.gz_api_key} rejected"  # cut at 200 characters
        error = {"code": -32000, "message": message}

        def on_victim(r: SimRequest) -> bool:
            params = (r.json() or {}).get("params") or {}
            return c.main(r) and params.get("companyId") == victim

        c.sim.inject(Fault("json", on_victim, times=-1, body={"jsonrpc": "2.0", "id": "x", "error": error}))

    def faults_ridden_out(c: Case) -> None:
        limited = {"jsonrpc": "2.0", "id": "x", "error": {"code": -32003, "message": "Too many requests"}}
        c.sim.inject(
            Fault("status", c.main, status=429, headers={"Retry-After": "1"}, body=limited),
            Fault("status", c.main, status=503),
            Fault("reset", c.first),
            Fault("hang", c.main, seconds=2.5),
        )

    def server_error_with_echo(c: Case) -> None:
        error = {"code": -32000, "message": "Server error", "data": {"details": f"could not check {both}"}}
        c.sim.inject(
            Fault("status", c.first, times=-1, status=400, body={"jsonrpc": "2.0", "id": None, "error": error})
        )

    def wrong_key(c: Case) -> None:
        assert isinstance(c.sim, GravityZoneSimulator)
        c.sim.api_key = "a-key-from-another-region"

    return [
        ("clean", clean),
        ("one company's error echoing the key", company_error_with_echo),
        ("the key quoted where the message is cut", key_quoted_where_the_message_is_cut),
        ("429 -32003, 503, reset, hang", faults_ridden_out),
        ("HTTP 400 echoing the key", server_error_with_echo),
        ("key refused", wrong_key),
    ]


def test_gravityzone_api_key_never_leaves(
    aws: LocalAws,
    invoke: Invoke,
    clock: FrozenClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    haystack, witness, _c = run_scenarios(
        aws, invoke, clock, "gravityzone", gravityzone_scenarios(), capsys, caplog, monkeypatch, timeout_seconds=1
    )

    assert_no_canary(haystack, [CANARIES.gz_api_key, CANARIES.gz_basic_header()])
    assert f"key {MASK} (Basic {MASK}) over quota" in haystack
    assert any(f"could not check {MASK} (Basic {MASK})" in e for e in witness.errors), witness.errors

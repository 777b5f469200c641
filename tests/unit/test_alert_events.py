"""Alert events as subscribers receive them (docs/alerts.md section 11): the JSON body, alert ids, the SNS
message attributes, the subject and the email rendering."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_alert_lifecycle import ACCOUNT, DAY, HOUR, METRIC, NOV, T0, VENDOR, Driver, doc, rec
from tests.unit.test_digest import documented_digest
from usagewatch.alerts import (
    BREACHED,
    FAILED,
    RECOVERED,
    RESOLVED,
    Event,
    TenantFailureInfo,
    advance_failures,
    alert_id,
    collection_event,
    threshold_event,
)
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.notify import SUBJECT_LIMIT, chat_message, render_email, subject_for
from usagewatch.publisher import ATTRIBUTES, message_attributes, scrub_event
from usagewatch.redaction import redactor
from usagewatch.rules import DEFAULT_RULES
from usagewatch.stored import ACCOUNT_WIDE, AlertState
from usagewatch.text import one_line

THRESHOLD_KEYS = {
    "schema_version",
    "event_type",
    "event_id",
    "alert_id",
    "rule",
    "severity",
    "vendor",
    "account_id",
    "tenant_id",
    "tenant_name",
    "metric",
    "period",
    "value",
    "quota",
    "projected",
    "threshold",
    "observed_at",
    "summary",
}
OPTIONAL_KEYS = {"repeat", "repeat_count", "firing_since", "escalated_from", "delayed_by_silence", "values_from"}
COLLECTION_KEYS = {
    "schema_version",
    "event_type",
    "event_id",
    "alert_id",
    "severity",
    "vendor",
    "account_id",
    "tenant_name",
    "observed_at",
    "summary",
}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def contract_example() -> Event:
    """The breach of docs/alerts.md section 11, produced by the real evaluation and state machine.

    Its value (8,500,489) is already over its quota (4,320,000), so under the default ladder that record fires
    `over_quota`; the contract's `projected_over_quota` example is what it gives with `over_quota` disabled."""
    record = UsageRecord(
        vendor="thousandeyes",
        account_id="te-main",
        tenant=Tenant("1234", "Acme"),
        metric="cloud_units",
        value=8500489,
        unit="units",
        window=Window.month(NOV),
        quota=4320000,
        projected=20993812,
    )
    driver = Driver(doc(rules={"over_quota": {"enabled": False}}))
    (event,) = driver.run(datetime(2026, 11, 22, 6, 0, 5, tzinfo=UTC), [record]).events
    return event


def lifecycle_events() -> dict[str, Event]:
    """One event of every kind, from one sequence of runs."""
    d = Driver(doc(repeat_after_hours=24))
    out: dict[str, Event] = {}
    (out["breached"],) = d.run(T0, [rec("t1", value=120)]).events
    (out["repeat"],) = d.run(T0 + DAY, [rec("t1", value=125)]).events
    (out["resolved"],) = d.run(T0 + 2 * DAY, [rec("t1", value=40)]).events
    (out["failed"],) = d.run(T0 + 3 * DAY, [], failed={"t1": "HTTP 500 from /usage"}, periods=["2026-11"]).events
    (out["recovered"],) = d.run(T0 + 4 * DAY, [rec("t1", value=40)]).events
    (out["account_failed"],) = d.run(T0 + 5 * DAY, account_error="credential refused (HTTP 401)").events
    (out["account_recovered"],) = d.run(T0 + 6 * DAY, [rec("t1", value=40)]).events
    return out


EVENTS = lifecycle_events()


# --- the body -------------------------------------------------------------------------------------


def test_the_contract_example_is_reproduced() -> None:
    event = contract_example()
    assert set(event) == THRESHOLD_KEYS
    expected = {
        "schema_version": 1,
        "event_type": "usage.threshold.breached",
        "rule": "projected_over_quota",
        "severity": "warning",
        "vendor": "thousandeyes",
        "account_id": "te-main",
        "tenant_id": "1234",
        "tenant_name": "Acme",
        "metric": "cloud_units",
        "period": "2026-11",
        "value": 8500489,
        "quota": 4320000,
        "projected": 20993812,
        "threshold": 4320000,
        "observed_at": "2026-11-22T06:00:05Z",
        "summary": "ThousandEyes Acme: cloud_units projected 20,993,812 for 2026-11, over the 4,320,000 included",
    }
    assert {k: event[k] for k in expected} == expected
    assert event["alert_id"] == alert_id(
        "thousandeyes", "te-main", "1234", "cloud_units", "projected_over_quota", "2026-11"
    )
    (default,) = Driver().run(datetime(2026, 11, 22, 6, 0, 5, tzinfo=UTC), [record_of(event)]).events
    assert (default["rule"], default["severity"]) == ("over_quota", "critical")


def record_of(event: Event) -> UsageRecord:
    return UsageRecord(
        vendor=event["vendor"],
        account_id=event["account_id"],
        tenant=Tenant(event["tenant_id"], event["tenant_name"]),
        metric=event["metric"],
        value=event["value"],
        unit="units",
        window=Window.month(Period.parse(event["period"])),
        quota=event["quota"],
        projected=event["projected"],
    )


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_every_event_is_plain_json_with_the_common_fields(name: str) -> None:
    event = EVENTS[name]
    assert json.loads(json.dumps(event, allow_nan=False)) == event
    assert event["schema_version"] == 1
    assert event["event_type"] in (BREACHED, RESOLVED, FAILED, RECOVERED)
    assert event["severity"] in ("info", "warning", "critical")
    assert ISO_Z.match(event["observed_at"])
    assert re.fullmatch(r"[0-9a-f]{32}", event["event_id"])
    assert event["alert_id"].startswith(f"{VENDOR}-")
    assert event["vendor"] == VENDOR and event["account_id"] == ACCOUNT
    assert event["summary"] and "\n" not in event["summary"]


def test_threshold_events_carry_the_contract_fields() -> None:
    for name in ("breached", "repeat", "resolved"):
        event = EVENTS[name]
        assert THRESHOLD_KEYS <= set(event) <= THRESHOLD_KEYS | OPTIONAL_KEYS, name
        assert (event["rule"], event["metric"], event["period"], event["tenant_id"]) == (
            "over_quota",
            METRIC,
            "2026-11",
            "t1",
        )
    assert EVENTS["breached"]["severity"] == "critical"
    assert (EVENTS["breached"]["value"], EVENTS["breached"]["quota"], EVENTS["breached"]["threshold"]) == (
        120,
        100,
        100,
    )
    repeat = EVENTS["repeat"]
    assert (repeat["repeat"], repeat["repeat_count"], repeat["firing_since"]) == (True, 1, "2026-11-10T06:00:00Z")
    resolved = EVENTS["resolved"]
    assert resolved["severity"] == "info"
    assert resolved["firing_since"] == "2026-11-10T06:00:00Z"
    assert resolved["alert_id"] == EVENTS["breached"]["alert_id"] == repeat["alert_id"]
    assert len({EVENTS[n]["event_id"] for n in ("breached", "repeat", "resolved")}) == 3


def test_collection_events_have_no_rule_and_carry_the_error() -> None:
    failed, recovered = EVENTS["failed"], EVENTS["recovered"]
    assert set(failed) == COLLECTION_KEYS | {"tenant_id", "error"}
    assert (failed["tenant_id"], failed["error"], failed["severity"]) == ("t1", "HTTP 500 from /usage", "warning")
    assert set(recovered) == COLLECTION_KEYS | {"tenant_id", "failing_since"}
    assert (recovered["severity"], recovered["failing_since"]) == ("info", failed["observed_at"])
    assert recovered["alert_id"] == failed["alert_id"]
    account_failed, account_recovered = EVENTS["account_failed"], EVENTS["account_recovered"]
    assert set(account_failed) == COLLECTION_KEYS | {"error"}  # no tenant_id: the whole account
    assert account_failed["severity"] == "critical"
    assert account_failed["tenant_name"] == ACCOUNT
    assert set(account_recovered) == COLLECTION_KEYS | {"failing_since"}
    assert "rule" not in failed and "rule" not in account_failed


def test_alert_ids_are_stable_and_distinct_per_field() -> None:
    fields = ("keepnet", "kn-main", "c-42", "target_users", "over_quota", "2026-11")
    base = alert_id(*fields)
    assert base == alert_id(*fields)
    assert re.fullmatch(r"keepnet-[0-9a-f]{24}", base)
    variants = set()
    for index in range(len(fields)):
        changed = list(fields)
        changed[index] = changed[index] + "x"
        variants.add(alert_id(*changed))
    assert base not in variants and len(variants) == len(fields)
    # no ambiguity from joining: ("ab", "c") is not ("a", "bc")
    assert alert_id("keepnet", "ab", "c", "m", "r", "p") != alert_id("keepnet", "a", "bc", "m", "r", "p")
    # a collection failure never shares an id with a threshold alert of the same tenant
    assert alert_id("keepnet", "kn-main", "c-42", "", "collection", "") != base


def test_the_same_transition_at_the_same_time_has_the_same_event_id() -> None:
    first = Driver().run(T0, [rec(value=120)]).events
    second = Driver().run(T0, [rec(value=120)]).events
    assert first == second
    # The same change computed again by a later run (its state was never stored) is the same event.
    later = Driver().run(T0 + HOUR, [rec(value=120)]).events
    assert later[0]["event_id"] == first[0]["event_id"]
    assert later[0]["observed_at"] != first[0]["observed_at"]


# --- summaries ------------------------------------------------------------------------------------


def summary_of(record: UsageRecord, as_of: datetime = T0) -> str:
    (event,) = Driver().run(as_of, [record]).events
    return str(event["summary"])


def test_summaries_of_each_rule() -> None:
    assert summary_of(rec("c9", value=120, limit_exceeded=True)) == (
        "ThousandEyes Tenant c9: cloud_units 120 over the licence limit 100 for 2026-11 (vendor flag)"
    )
    assert summary_of(rec("c9", value=1234567, quota=1000000)) == (
        "ThousandEyes Tenant c9: cloud_units 1,234,567 for 2026-11, over the 1,000,000 included"
    )
    assert summary_of(rec("c9", value=10, projected=150)) == (
        "ThousandEyes Tenant c9: cloud_units projected 150 for 2026-11, over the 100 included"
    )
    assert summary_of(rec("c9", value=95)) == (
        "ThousandEyes Tenant c9: cloud_units at 95% of the 100 included for 2026-11 (95)"
    )
    assert summary_of(rec("c9", value=5, quota=None, minimum=10.5), NOV.end - HOUR) == (
        "ThousandEyes Tenant c9: cloud_units 5 for 2026-11, below the committed minimum 10.50"
    )


def test_a_resolved_summary_tells_the_current_reading() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    (resolved,) = d.run(T0 + DAY, [rec(value=40)]).events
    assert resolved["summary"] == (
        "ThousandEyes Tenant t1: cloud_units back within limits for 2026-11: 40 (limit 100); over_quota cleared"
    )
    assert resolved["value"] == 40
    assert resolved["values_from"] == "this run"
    assert "Usage: 40" in render_email(resolved)


def test_a_resolved_summary_does_not_present_the_old_number_as_current() -> None:
    d = Driver()
    d.run(T0, [rec(value=120)])
    # The tenant was read, but the vendor no longer reports this metric: no current reading.
    (resolved,) = d.run(T0 + DAY, [], ok_tenants=["t1"], periods=["2026-11"]).events
    assert (
        resolved["summary"]
        == "ThousandEyes Tenant t1: cloud_units for 2026-11: over_quota cleared (was 120 against 100)"
    )
    assert resolved["values_from"] == "last while firing"
    assert "Usage while firing: 120" in render_email(resolved)


# --- message attributes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "breached",
            {"event_type": BREACHED, "vendor": VENDOR, "severity": "critical", "rule": "over_quota", "tenant_id": "t1"},
        ),
        (
            "repeat",
            {"event_type": BREACHED, "vendor": VENDOR, "severity": "critical", "rule": "over_quota", "tenant_id": "t1"},
        ),
        (
            "resolved",
            {"event_type": RESOLVED, "vendor": VENDOR, "severity": "info", "rule": "over_quota", "tenant_id": "t1"},
        ),
        ("failed", {"event_type": FAILED, "vendor": VENDOR, "severity": "warning", "tenant_id": "t1"}),
        ("recovered", {"event_type": RECOVERED, "vendor": VENDOR, "severity": "info", "tenant_id": "t1"}),
        ("account_failed", {"event_type": FAILED, "vendor": VENDOR, "severity": "critical"}),
        ("account_recovered", {"event_type": RECOVERED, "vendor": VENDOR, "severity": "info"}),
    ],
)
def test_message_attributes(name: str, expected: dict[str, str]) -> None:
    attributes = message_attributes(EVENTS[name])
    assert set(attributes) <= set(ATTRIBUTES)
    assert {k: v["StringValue"] for k, v in attributes.items()} == expected
    assert all(v["DataType"] == "String" and v["StringValue"] for v in attributes.values())


# --- subject --------------------------------------------------------------------------------------


def valid_subject(subject: str) -> bool:
    return 0 < len(subject) <= SUBJECT_LIMIT and all(32 <= ord(ch) < 127 for ch in subject)


def test_subjects_say_what_happened() -> None:
    prefixes = {
        "breached": "[usagewatch] ALERT: ",
        "repeat": "[usagewatch] REPEAT: ",
        "resolved": "[usagewatch] RESOLVED: ",
        "failed": "[usagewatch] COLLECTION FAILED: ",
        "recovered": "[usagewatch] RECOVERED: ",
        "account_failed": "[usagewatch] COLLECTION FAILED: ",
        "account_recovered": "[usagewatch] RECOVERED: ",
    }
    for name, prefix in prefixes.items():
        subject = subject_for(EVENTS[name])
        assert subject.startswith(prefix), subject
        assert valid_subject(subject)


def test_long_and_non_ascii_subjects_are_made_safe() -> None:
    event = dict(EVENTS["breached"])
    event["summary"] = "Keepnet Zürich Gesundheitsdienste AG \u2014 Ärzte\nund Pflege: " + "x" * 200
    subject = subject_for(event)
    assert valid_subject(subject)
    assert len(subject) <= SUBJECT_LIMIT and subject.endswith("...")
    assert subject.endswith("Pflege...")  # cut at a word boundary, not inside a number or name
    assert "Z?rich" in subject and "\n" not in subject


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(min_size=1, max_size=300),
    value=st.integers(0, 10**15) | st.floats(0, 10**15, allow_nan=False),
    quota=st.none() | st.integers(0, 10**15),
)
def test_any_tenant_name_gives_a_valid_subject_and_email(name: str, value: float, quota: int | None) -> None:
    record = UsageRecord(
        vendor="keepnet",
        account_id="kn",
        tenant=Tenant("c-1", name),
        metric="target_users",
        value=value,
        unit="users",
        window=Window.month(NOV),
        quota=quota,
        limit_exceeded=True,
    )
    (event,) = Driver().run(T0, [record]).events
    assert valid_subject(subject_for(event))
    assert one_line(name) in render_email(event)  # names are one line without control characters
    json.dumps(event, allow_nan=False)


# --- email ----------------------------------------------------------------------------------------


def test_the_email_tells_what_who_how_much_against_what_when_and_what_to_do() -> None:
    text = render_email(contract_example())
    lines = text.splitlines()
    assert lines[0] == contract_example()["summary"]
    for expected in (
        "Event: usage.threshold.breached",
        "Severity: warning",
        "Vendor: ThousandEyes",
        "Account: te-main",
        "Customer: Acme (1234)",
        "Metric: cloud_units",
        "Period: 2026-11",
        "Usage: 8,500,489",
        "Quota: 4,320,000",
        "Projected: 20,993,812",
        "Threshold: 4,320,000",
        "Rule: projected_over_quota",
        "Observed at: 2026-11-22T06:00:05Z",
    ):
        assert expected in lines, expected
    assert "At the current rate the customer will end the period over quota" in text


@pytest.mark.parametrize(
    ("record", "advice"),
    [
        (rec(value=120, limit_exceeded=True), "The vendor reports this customer over its licence limit"),
        (rec(value=120), "bill the overage or raise the quota"),
        (rec(value=10, projected=150), "review before the period ends"),
        (rec(value=95), "plan an upgrade conversation"),
        (rec(value=1, quota=None, minimum=10), "the minimum will be invoiced"),
    ],
)
def test_every_rule_has_its_advice(record: UsageRecord, advice: str) -> None:
    (event,) = Driver().run(NOV.end - HOUR, [record]).events
    assert advice in render_email(event)


def test_email_of_the_other_event_types() -> None:
    repeat = render_email(EVENTS["repeat"])
    assert "Reminder: still firing since 2026-11-10T06:00:00Z." in repeat
    resolved = render_email(EVENTS["resolved"])
    assert "No action needed" in resolved and "Event: usage.threshold.resolved" in resolved
    failed = render_email(EVENTS["failed"])
    assert "Error: HTTP 500 from /usage" in failed
    assert "Customer: Tenant t1 (t1)" in failed
    assert "you will be told when it recovers" in failed
    assert "Metric:" not in failed
    account = render_email(EVENTS["account_failed"])
    assert f"Customer: {ACCOUNT} (whole account)" in account
    assert "Check the credential" in account
    assert "Collection works again" in render_email(EVENTS["recovered"])


def test_email_and_subject_never_say_none() -> None:
    for event in EVENTS.values():
        assert "None" not in render_email(event)
        assert "None" not in subject_for(event)


def test_a_registered_secret_is_scrubbed_from_an_event() -> None:
    token = "tok-9f8e7d6c5b4a3210"
    redactor.register(token)
    state = AlertState(
        alert_id=alert_id(VENDOR, ACCOUNT, ACCOUNT_WIDE, "", "collection", ""),
        vendor=VENDOR,
        account_id=ACCOUNT,
        tenant_id=ACCOUNT_WIDE,
        tenant_name=ACCOUNT,
        metric="",
        rule="collection",
        period="",
        status="firing",
        severity="critical",
        published=True,
        since="2026-11-10T06:00:00Z",
        updated_at="2026-11-10T06:00:00Z",
        error=f"401 for Bearer {token}",
    )
    event = scrub_event(collection_event(FAILED, state, T0))
    assert token not in json.dumps(event)
    assert token not in render_email(event) and token not in subject_for(event)


def test_threshold_event_extra_fields_are_added_not_replacing() -> None:
    state = AlertState(
        alert_id="x",
        vendor="keepnet",
        account_id="kn",
        tenant_id="c-1",
        tenant_name="C",
        metric="target_users",
        rule="over_quota",
        period=str(Period(2026, 11)),
        status="firing",
        severity="critical",
        published=True,
        since="2026-11-10T06:00:00Z",
        updated_at="2026-11-10T06:00:00Z",
        value=5,
        quota=4,
        threshold=4,
    )
    extra: dict[str, Any] = {"escalated_from": "quota_utilization"}
    event = threshold_event(BREACHED, state, T0 + timedelta(seconds=1), extra)
    assert event["escalated_from"] == "quota_utilization"
    assert event["observed_at"] == "2026-11-10T06:00:01Z"


# --- the examples in docs/alerts.md come from the real builders ------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"
EXAMPLE_MARK = re.compile(r"<!-- example: ([a-z_.]+) -->\s*```(?:json|text)\n(.*?)```", re.DOTALL)


def documented_examples() -> dict[str, str]:
    """Every example docs/alerts.md shows, produced by the state machine and the publisher's pure parts."""

    def gz(value: int) -> UsageRecord:
        return UsageRecord(
            vendor="gravityzone",
            account_id="gz-main",
            tenant=Tenant("5f3a9c1e", "Contoso Dental"),
            metric="endpoint_monthly_usage",
            value=value,
            unit="seats",
            window=Window.month(NOV),
        )

    quota = {"vendor": "gravityzone", "tenant_id": "5f3a9c1e", "metric": "endpoint_monthly_usage", "quota": 50}
    d = Driver(doc(quotas=[quota], repeat_after_hours=24))
    t0 = datetime(2026, 11, 18, 6, 0, 4, tzinfo=UTC)
    events: dict[str, Event] = {}
    (events["breached"],) = d.run(t0 - DAY, [gz(46)]).events
    (events["escalated"],) = d.run(t0, [gz(57)]).events
    (events["repeat"],) = d.run(t0 + DAY, [gz(58)]).events
    (events["resolved"],) = d.run(t0 + 2 * DAY, [gz(44)]).events

    states: dict[str, AlertState] = {}

    def collect(now: datetime, **kwargs: Any) -> Event:
        kwargs.setdefault("account_error", None)
        kwargs.setdefault("tenant_failures", {})
        kwargs.setdefault("ok_tenants", ())
        open_states = {k: s for k, s in states.items() if s.status == "firing"}
        (transition,) = advance_failures(
            open_states, vendor="keepnet", account_id="kn-main", document=DEFAULT_RULES, now=now, **kwargs
        )
        states[transition.state.alert_id] = transition.state
        assert transition.event is not None
        return transition.event

    t1 = datetime(2026, 11, 19, 6, 0, 2, tzinfo=UTC)
    error = "tenant c-42: HTTP 502 from /api/companies/c-42/usage after 4 attempts"
    events["failed"] = collect(t1, tenant_failures={"c-42": TenantFailureInfo("Acme Logistics GmbH", error)})
    events["recovered"] = collect(t1 + 6 * HOUR, ok_tenants=["c-42"])
    events["account_failed"] = collect(t1 + DAY, account_error="token request refused (HTTP 401): check client_id")

    # One example per event type; the JSON Schema (docs/events.schema.json) carries every field.
    out = {name: json.dumps(events[name], indent=2) for name in ("escalated", "resolved", "failed", "recovered")}
    names = ("breached", "escalated", "repeat", "resolved", "failed", "recovered", "account_failed")
    out["subjects"] = "\n".join(subject_for(events[name]) for name in names)
    out["escalated.attributes"] = json.dumps(message_attributes(events["escalated"]), indent=2)
    out["escalated.email"] = render_email(events["escalated"])
    out["failed.email"] = render_email(events["failed"])
    digest = documented_digest()
    out["digest"] = json.dumps(digest, indent=2)
    out["digest.subject"] = subject_for(digest)
    out["digest.email"] = render_email(digest)
    out["digest.chat"] = json.dumps(chat_message(digest), indent=2, ensure_ascii=False)
    return out


def test_the_examples_in_the_operator_docs_match_the_code() -> None:
    shown = {name: body.rstrip("\n") for name, body in EXAMPLE_MARK.findall(DOCS.read_text(encoding="utf-8"))}
    expected = documented_examples()
    assert set(shown) == set(expected), "regenerate with: .venv/bin/python -m tests.unit.test_alert_events"
    for name, text in expected.items():
        assert shown[name] == text, f"docs/alerts.md example {name!r} is stale: regenerate it"


if __name__ == "__main__":  # prints the examples for docs/alerts.md
    for example_name, example in documented_examples().items():
        fence = "json" if example.startswith("{") else "text"
        print(f"<!-- example: {example_name} -->\n```{fence}\n{example}\n```\n")

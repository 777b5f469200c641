"""The digest (one per run and account, for people) and the chat messages: built from what the run really
published, applied by the real dispatcher, checked against the event schema and AWS Chatbot's documented
custom-notification format."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from jsonschema import Draft202012Validator

from usagewatch.alerts import Event, Observed, TenantFailureInfo, advance
from usagewatch.digest import SHOWN_PER_GROUP, build_digest, loss
from usagewatch.dispatch import Dispatcher, DispatchResult
from usagewatch.errors import PublishError
from usagewatch.events import parse_event
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.notify import (
    CHAT_DESCRIPTION_LIMIT,
    CHAT_TITLE_LIMIT,
    chat_message,
    render_digest_email,
    subject_for,
)
from usagewatch.publisher import for_chat
from usagewatch.rules import DEFAULT_RULES, evaluate, parse_rules_document
from usagewatch.stored import AlertState

VENDOR, ACCOUNT = "gravityzone", "gz-main"
NOV = Period(2026, 11)
T0 = datetime(2026, 11, 18, 6, 0, 4, tzinfo=UTC)
DAY = timedelta(days=1)
T0_TEXT = "2026-11-18T06:00:04Z"

# AWS Chatbot (Amazon Q Developer in chat applications) custom notifications, written from the event schema and
# parameter table of https://docs.aws.amazon.com/chatbot/latest/adminguide/custom-notifs.html: `version` must be
# "1.0", `source` must be "custom", `content.description` is required, only `client-markdown` is a textType; the
# other fields are optional strings or lists of strings, `additionalContext` a map of strings.
STRINGS = {"type": "array", "items": {"type": "string"}}
CHATBOT_CUSTOM_NOTIFICATION = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "source", "content"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": "1.0"},
        "source": {"const": "custom"},
        "id": {"type": "string"},
        "content": {
            "type": "object",
            "required": ["description"],
            "additionalProperties": False,
            "properties": {
                "textType": {"enum": ["client-markdown"]},
                "title": {"type": "string"},
                "description": {"type": "string"},
                "nextSteps": STRINGS,
                "keywords": STRINGS,
            },
        },
        "metadata": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "threadId": {"type": "string"},
                "summary": {"type": "string"},
                "eventType": {"type": "string"},
                "relatedResources": STRINGS,
                "additionalContext": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}
CHAT_VALIDATOR = Draft202012Validator(CHATBOT_CUSTOM_NOTIFICATION)

NAMES = {
    "5f3a9c1e": "Contoso Dental",
    "6a01b2c3": "Northwind Traders",
    "6a01b2c4": "Fabrikam Legal",
    "6a01b2c5": "Tailspin Toys",
    "6a01b2c6": "Adventure Works",
    "6a01b2c7": "Woodgrove Clinic",
    "6a01b2c8": "Litware Inc",
    "6a01b2c9": "Proseware",
    "7b11c2d1": "Wingtip Toys",
    "7b11c2d2": "Coho Winery",
    "8c21d3e1": "Alpine Ski House",
}


def gz(tenant_id: str, value: int, quota: int = 50) -> UsageRecord:
    return UsageRecord(
        vendor=VENDOR,
        account_id=ACCOUNT,
        tenant=Tenant(tenant_id, NAMES[tenant_id]),
        metric="endpoint_monthly_usage",
        value=value,
        unit="seats",
        window=Window.month(NOV),
        quota=quota,
    )


@dataclass
class Publisher:
    """Records what SNS accepted; refuses what `refuse` says."""

    refuse: Any = lambda event: False
    accepted: list[Event] = field(default_factory=list)

    def publish(self, event: Event) -> str:
        if self.refuse(event):
            raise PublishError("refused by the test")
        self.accepted.append(event)
        return "message-id"

    def digests(self) -> list[Event]:
        return [e for e in self.accepted if e["event_type"] == "digest"]


@dataclass
class Account:
    """One GravityZone account's alert half, run by run, through `alerts.advance` and dispatcher."""

    states: dict[str, AlertState] = field(default_factory=dict)

    def put_alert(self, state: AlertState) -> bool:
        self.states[state.alert_id] = state
        return True

    def run(
        self, now: datetime, records: list[UsageRecord], publisher: Publisher, failed: dict[str, str] | None = None
    ) -> DispatchResult:
        failures = {t: TenantFailureInfo(NAMES[t], error) for t, error in (failed or {}).items()}
        ok = frozenset(r.tenant_id for r in records)
        transitions = advance(
            {k: s for k, s in self.states.items() if s.status == "firing"},
            vendor=VENDOR,
            account_id=ACCOUNT,
            document=DEFAULT_RULES,
            now=now,
            observed=Observed(ok, frozenset({str(NOV)})),
            findings=[f for r in records for f in evaluate(r, DEFAULT_RULES, now)],
            tenant_failures=failures,
            ok_tenants=ok,
            readings={(r.tenant_id, r.metric, str(r.period)): r for r in records},
        )
        observed_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")

        def digest(events: list[Event]) -> Event | None:
            run_id = f"{VENDOR}:{observed_at}"
            return build_digest(events, vendor=VENDOR, account_id=ACCOUNT, run_id=run_id, observed_at=observed_at)

        return Dispatcher(publisher, self, workers=1).apply(transitions, digest)


def story() -> tuple[Account, Publisher]:
    """The day before: Contoso Dental over its 50 seats. The run shown: it is back at 44 (resolved), seven others
    are over quota, two near it, one cannot be read."""
    account = Account()
    account.run(T0 - DAY, [gz("5f3a9c1e", 57)], Publisher())
    over = {"6a01b2c3": 51, "6a01b2c4": 64, "6a01b2c5": 55, "6a01b2c6": 90, "6a01b2c7": 52, "6a01b2c8": 70}
    records = [gz("5f3a9c1e", 44)] + [gz(t, v) for t, v in over.items()]
    records += [gz("6a01b2c9", 260, quota=200), gz("7b11c2d1", 46), gz("7b11c2d2", 47)]
    publisher = Publisher()
    error = "HTTP 502 from the GravityZone API after 4 attempts"
    account.run(T0, records, publisher, failed={"8c21d3e1": error})
    return account, publisher


def documented_digest() -> Event:
    _, publisher = story()
    (digest,) = publisher.digests()
    return digest


def test_the_digest_groups_by_kind_rule_and_severity_with_the_top_entries_and_a_count_of_the_rest() -> None:
    digest = documented_digest()

    assert digest["counts"] == {
        "usage.threshold.breached": 9,
        "usage.threshold.resolved": 1,
        "collection.failed": 1,
    }
    assert digest["severity"] == "critical"
    heads = [(g["event_type"], g["severity"], g.get("rule"), g["count"]) for g in digest["groups"]]
    assert heads == [
        ("usage.threshold.breached", "critical", "over_quota", 7),
        ("usage.threshold.breached", "warning", "quota_utilization", 2),
        ("usage.threshold.resolved", "info", "over_quota", 1),
        ("collection.failed", "warning", None, 1),
    ]
    over = digest["groups"][0]
    assert len(over["entries"]) == SHOWN_PER_GROUP
    # The most units over their quota first: 260 of 200, 90 of 50, 70 of 50, 64 of 50, 55 of 50.
    assert [e["tenant_name"] for e in over["entries"]] == [
        "Proseware",
        "Adventure Works",
        "Litware Inc",
        "Fabrikam Legal",
        "Tailspin Toys",
    ]
    text = render_digest_email(digest)
    assert "... and 2 more" in text
    assert text.splitlines()[0] == "GravityZone account gz-main: 9 new alerts, 1 resolved, 1 collection failure"
    assert parse_event(digest).body() == digest


def test_the_digest_lists_exactly_what_the_run_published() -> None:
    account = Account()
    refused = "6a01b2c4"
    publisher = Publisher(refuse=lambda e: e.get("tenant_id") == refused)
    result = account.run(T0, [gz("6a01b2c3", 60), gz(refused, 61), gz("6a01b2c5", 62)], publisher)

    (digest,) = publisher.digests()
    listed = {e["event_id"] for g in digest["groups"] for e in g["entries"]}
    published = {e["event_id"] for e in publisher.accepted if e["event_type"] != "digest"}
    assert listed == published and len(listed) == 2
    assert result.publish_failures == 1
    assert all(e["tenant_name"] != NAMES[refused] for g in digest["groups"] for e in g["entries"])


def test_a_run_with_nothing_new_sends_no_digest() -> None:
    account, _ = story()
    again = Publisher()
    account.run(T0 + timedelta(hours=6), [gz("5f3a9c1e", 44), gz("6a01b2c3", 51)], again)
    assert again.accepted == []
    assert build_digest([], vendor=VENDOR, account_id=ACCOUNT, run_id="r", observed_at="2026-11-18T06:00:04Z") is None


def test_a_refused_digest_keeps_its_changes_unstored_and_the_next_run_sends_them_again_with_a_digest() -> None:
    account = Account()
    first = Publisher(refuse=lambda e: e["event_type"] == "digest")
    result = account.run(T0, [gz("6a01b2c3", 60), gz("6a01b2c4", 61)], first)

    assert result.digest is None and result.digest_failed and result.publish_failures == 1
    assert not [s for s in account.states.values() if s.status == "firing"], "nothing stored without its digest"
    sent = {e["event_id"] for e in first.accepted}

    later = Publisher()
    account.run(T0 + timedelta(hours=6), [gz("6a01b2c3", 60), gz("6a01b2c4", 61)], later)
    (digest,) = later.digests()
    assert {e["event_id"] for e in later.accepted if e["event_type"] != "digest"} == sent
    assert {e["event_id"] for g in digest["groups"] for e in g["entries"]} == sent


def test_a_retry_that_sends_the_same_events_sends_the_same_digest_id() -> None:
    _, publisher = story()
    events = [e for e in publisher.accepted if e["event_type"] != "digest"]
    (digest,) = publisher.digests()
    shuffled = random.Random(3).sample(events, len(events))
    again = build_digest(shuffled, vendor=VENDOR, account_id=ACCOUNT, run_id=digest["run_id"], observed_at=T0_TEXT)
    assert again == digest
    fewer = build_digest(events[1:], vendor=VENDOR, account_id=ACCOUNT, run_id=digest["run_id"], observed_at=T0_TEXT)
    assert fewer is not None and fewer["event_id"] != digest["event_id"]


def test_chat_messages_follow_the_documented_custom_notification_format() -> None:
    _, publisher = story()
    chat = [e for e in publisher.accepted if for_chat(e)]
    kinds = sorted({(e["event_type"], e["severity"]) for e in chat})
    assert kinds == [("digest", "critical"), ("usage.threshold.breached", "critical")]
    assert not [
        e for e in publisher.accepted if e["severity"] != "critical" and for_chat(e) and e["event_type"] != "digest"
    ]
    for event in chat:
        message = chat_message(event)
        CHAT_VALIDATOR.validate(message)
        assert message["id"] == event["event_id"]
        assert len(message["content"]["title"]) <= CHAT_TITLE_LIMIT
        assert len(message["content"]["description"]) <= CHAT_DESCRIPTION_LIMIT
    digest_message = chat_message(publisher.digests()[0])
    assert "Adventure Works" in digest_message["content"]["description"]
    assert "... and 2 more" in digest_message["content"]["description"]


def test_a_huge_digest_stays_within_the_chat_limits() -> None:
    account = Account()
    publisher = Publisher()
    many = {f"t{n:05d}": f"Customer {n:05d} {'x' * 200}" for n in range(400)}
    NAMES.update(many)
    try:
        account.run(T0, [gz(t, 100) for t in many], publisher)
    finally:
        for tenant in many:
            del NAMES[tenant]
    (digest,) = publisher.digests()
    assert digest["counts"] == {"usage.threshold.breached": 400}
    assert sum(len(g["entries"]) for g in digest["groups"]) == SHOWN_PER_GROUP
    message = chat_message(digest)
    CHAT_VALIDATOR.validate(message)
    assert len(message["content"]["title"]) <= CHAT_TITLE_LIMIT
    assert len(json.dumps(digest)) < 8_000, "a digest stays small whatever the number of changes"


# --- the Microsoft 365 demo's shape: 38 customers with 1-3 spare seats, two with many ----------------------------

M365 = "microsoft365"


def m365(tenant: str, metric: str, assigned: int, paid: int) -> UsageRecord:
    return UsageRecord(
        vendor=M365,
        account_id="m365-main",
        tenant=Tenant(tenant, tenant.replace("-", " ").title()),
        metric=metric,
        value=assigned,
        unit="seats",
        window=Window.month(NOV),
        quota=paid,
    )


def m365_digest(records: list[UsageRecord], document: Any = DEFAULT_RULES) -> Event:
    """The real rules and state machine on the records, then the digest of everything they published."""
    ok = frozenset(r.tenant_id for r in records)
    transitions = advance(
        {},
        vendor=M365,
        account_id="m365-main",
        document=document,
        now=T0,
        observed=Observed(ok, frozenset({str(NOV)})),
        findings=[f for r in records for f in evaluate(r, document, T0)],
        tenant_failures={},
        ok_tenants=ok,
        readings={(r.tenant_id, r.metric, str(r.period)): r for r in records},
    )
    events = [t.event for t in transitions if t.event is not None]
    digest = build_digest(
        events, vendor=M365, account_id="m365-main", run_id="r", observed_at=T0_TEXT, document=document
    )
    assert digest is not None
    return digest


def demo_records() -> list[UsageRecord]:
    small = [m365(f"customer-{n:02d}", "o365_business_premium", 36 + n % 3, 38 + n % 3) for n in range(37)]
    small.append(m365("customer-37", "spe_e5", 36, 38))  # 2 of 38 unused: first by utilisation, small in seats
    large = [m365("big-waste", "spe_e5", 3, 35), m365("some-waste", "enterprisepack", 28, 40)]
    free = [m365("customer-00", "flow_free", 0, 10_000), m365("customer-01", "teams_exploratory", 1, 100)]
    return small + large + free


def test_unused_licences_lead_with_the_most_seats_lost_and_the_small_ones_are_one_count_line() -> None:
    digest = m365_digest(demo_records())

    assert digest["counts"] == {"usage.threshold.breached": 40}, "free SKUs are never judged"
    (group,) = digest["groups"]
    assert (group["rule"], group["count"], group["minor"], group["minor_below"]) == ("unused_licences", 40, 38, 5)
    assert [e["tenant_name"] for e in group["entries"]] == ["Big Waste", "Some Waste"]
    assert group["entries"][0]["summary"] == "Big Waste: spe_e5 32 of 35 paid seats unused for 2026-11 (3 assigned)"
    assert digest["severity"] == "info"
    assert digest["summary"] == "Microsoft 365 account m365-main: 2 new alerts, 38 minor"

    text = render_digest_email(digest)
    assert text.splitlines()[0] == "Microsoft 365 account m365-main: 2 new alerts, 38 minor"
    assert "NEW ALERTS: 2 (and 38 minor)" in text
    assert "  info, unused_licences: 40 (38 minor)" in text
    assert "... and" not in text, "nothing large is hidden behind a count"
    listed = text.split("NEW ALERTS")[1].split("What to do")[0]
    assert listed.index("Big Waste: spe_e5 32 of 35") < listed.index("Some Waste: enterprisepack 12 of 40")
    assert "    + 38 minor: customers/SKUs with fewer than 5 unused seats;" in text
    assert "Customer 37" not in text and "spe e5" not in text
    assert parse_event(digest).body() == digest


def test_the_subject_and_severity_come_from_what_matters() -> None:
    critical = m365("lapsed", "spb", 12, 10)  # assigned above paid: over_quota, critical
    digest = m365_digest([*demo_records()[:38], critical])
    assert digest["severity"] == "critical"
    assert subject_for(digest) == "[usagewatch] DIGEST: Microsoft 365 account m365-main: 1 new alert, 38 minor"

    only_minor = m365_digest(demo_records()[:38])
    assert only_minor["severity"] == "info"
    assert only_minor["summary"] == "Microsoft 365 account m365-main: 38 minor alerts"
    (group,) = only_minor["groups"]
    assert group["entries"] == [] and group["minor"] == 38
    text = render_digest_email(only_minor)
    assert "NEW ALERTS: 38 minor" in text and "- " not in text.split("What to do")[0]


def test_the_fold_is_set_in_the_rules_document_next_to_the_rule() -> None:
    none_folded = parse_rules_document({"rules": {"unused_licences": {"digest_fold_below": 0}}})
    digest = m365_digest(demo_records(), none_folded)
    (group,) = digest["groups"]
    assert "minor" not in group and len(group["entries"]) == SHOWN_PER_GROUP
    assert [e["tenant_name"] for e in group["entries"][:2]] == ["Big Waste", "Some Waste"]
    assert digest["summary"] == "Microsoft 365 account m365-main: 40 new alerts"

    wider = parse_rules_document({"rules": {"unused_licences": {"digest_fold_below": 20}}})
    (group,) = m365_digest(demo_records(), wider)["groups"]
    assert group["minor"] == 39 and [e["tenant_name"] for e in group["entries"]] == ["Big Waste"]


def test_the_chat_text_of_the_demo_digest_leads_with_the_largest_and_counts_the_minor() -> None:
    digest = m365_digest(demo_records())
    message = chat_message(digest)
    CHAT_VALIDATOR.validate(message)
    description = message["content"]["description"]
    lines = description.splitlines()
    assert lines[0] == "NEW ALERTS: 2 (and 38 minor)"
    assert lines[2] == "    • Big Waste: spe_e5 32 of 35 paid seats unused for 2026-11 (3 assigned)"
    assert "38 minor" in lines[-1]
    assert message["content"]["title"].endswith("usagewatch: Microsoft 365 account m365-main: 2 new alerts, 38 minor")


def test_the_loss_of_each_rule_is_what_the_operator_loses_or_risks_in_its_units() -> None:
    def breach(rule: str, **numbers: Any) -> dict[str, Any]:
        return {"event_type": "usage.threshold.breached", "rule": rule, **numbers}

    cases = {
        "unused_licences": (breach("unused_licences", value=3, quota=35), Decimal(32)),
        "over_quota": (breach("over_quota", value=260, quota=200), Decimal(60)),
        "under_billed": (breach("under_billed", value=130, quota=120, threshold=120), Decimal(10)),
        "projected": (breach("projected_over_quota", value=80, quota=100, projected=150), Decimal(50)),
        "minimum": (breach("below_minimum_commitment", value=4, threshold=10.5), Decimal("6.5")),
        "jump": (breach("usage_jump", value=130, threshold=100), Decimal(30)),
        "utilisation": (breach("quota_utilization", value=47, quota=50), Decimal("0.94")),
        "no numbers": (breach("vendor_limit_exceeded", value=120, quota=None), Decimal(0)),
        "resolved": ({"event_type": "usage.threshold.resolved", "rule": "over_quota", "value": 9}, Decimal(0)),
    }
    assert {name: loss(event) for name, (event, _) in cases.items()} == {n: want for n, (_, want) in cases.items()}

"""People get one digest per run and account, machines every event, chat the digests and critical events: the
real Keepnet handler with two accounts, moto (the template's e-mail filter policy on a stand-in subscriber) and
the simulator over HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator

import pytest

from tests import template_loader
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.keepnet import KeepnetSimulator, make_companies
from tests.unit.test_digest import CHAT_VALIDATOR
from usagewatch.notify import render_digest_email

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-digest-secret-3c4d5e"
COMPANIES = make_companies(12, seed=11, over_limit=4, unlimited=1)
RUN_1 = {"scheduled_time": "2026-11-22T06:00:00Z"}
RUN_2 = {"scheduled_time": "2026-11-22T12:00:00Z"}
ACCOUNTS = ("kn-east", "kn-west")


@pytest.fixture
def keepnet() -> Iterator[KeepnetSimulator]:
    with KeepnetSimulator(companies=copy.deepcopy(COMPANIES), clients={"kn": (CLIENT_SECRET, "Reseller")}) as sim:
        yield sim  # type: ignore[misc]


def email_stand_in(aws: LocalAws, parameters: dict[str, str] | None = None) -> str:
    """A queue subscribed to the alert topic with the stack's e-mail filter policy (what `AlertEmail` receives)."""
    subscription = template_loader.load_template()["Resources"]["AlertEmailSubscription"]["Properties"]
    policy = template_loader.resolve_value(subscription["FilterPolicy"], parameters=parameters or {})
    sqs, sns = aws.client("sqs"), aws.client("sns")
    url: str = sqs.create_queue(QueueName=f"email-stand-in-{len(parameters or {})}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "RawMessageDelivery": "true",
        "FilterPolicy": json.dumps(policy),
        "FilterPolicyScope": "MessageAttributes",
    }
    sns.subscribe(TopicArn=aws.topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes)
    return url


def test_one_digest_per_account_for_people_every_event_for_machines_and_chat(
    aws: LocalAws, keepnet: KeepnetSimulator, invoke: Invoke
) -> None:
    account = {"base_url": keepnet.url, "client_id": "kn", "client_secret": CLIENT_SECRET}
    aws.put_secret(SECRET, [{"account_id": a, **account} for a in ACCOUNTS])
    env = aws.environment("keepnet", secret_name=SECRET, chat=True)
    assert env["CHAT_TOPIC_ARN"] == aws.chat_topic_arn
    email = email_stand_in(aws)
    digest_only = email_stand_in(aws, {"AlertEmailCriticalImmediately": "false"})

    summary = invoke("keepnet", RUN_1, env)

    events = aws.drain_events()
    digests = aws.drain_digests()
    assert summary["digests_sent"] == 2 and summary["alerts_published"] == len(events)
    assert sorted(d["account_id"] for d in digests) == sorted(ACCOUNTS), "one digest per account"
    for digest in digests:
        own = [e for e in events if e["account_id"] == digest["account_id"]]
        assert sum(digest["counts"].values()) == len(own) > 1
        listed = {x["event_id"] for g in digest["groups"] for x in g["entries"]}
        assert listed <= {e["event_id"] for e in own}
        assert render_digest_email(digest).startswith(f"Keepnet account {digest['account_id']}: ")

    critical = [e for e in events if e["severity"] == "critical"]
    assert critical, "the simulator's over-limit companies give critical breaches"
    assert sorted(e["event_id"] for e in aws.drain_queue(email)) == sorted(
        [d["event_id"] for d in digests] + [e["event_id"] for e in critical]
    ), "e-mail: the digests and the critical events, nothing else"
    assert sorted(e["event_id"] for e in aws.drain_queue(digest_only)) == sorted(d["event_id"] for d in digests)

    chat = aws.drain_chat()
    for message in chat:
        CHAT_VALIDATOR.validate(message)
    assert sorted(m["id"] for m in chat) == sorted([d["event_id"] for d in digests] + [e["event_id"] for e in critical])
    assert {m["metadata"]["eventType"] for m in chat} == {"digest", "usage.threshold.breached"}

    invoke("keepnet", RUN_2, env)  # nothing changed: nothing for anyone
    assert aws.drain_events() == [] and aws.drain_digests() == []
    assert aws.drain_queue(email) == [] and aws.drain_chat() == []

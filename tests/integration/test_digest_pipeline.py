"""People get one digest per run and account, machines every event, chat the digests and critical events: the
real Keepnet handler with two accounts, moto (the template's e-mail filter policy on a stand-in subscriber) and
the simulator over HTTP."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator

import pytest

from tests import template_loader
from tests.integration.conftest import Invoke, event_file
from tests.local_aws import LocalAws
from tests.simulators.keepnet import KeepnetSimulator, make_companies
from tests.simulators.microsoft365 import CATALOGUE, CLIENT_ID, PARTNER, Customer, Microsoft365Simulator, sku
from tests.simulators.microsoft365 import CLIENT_SECRET as M365_SECRET_VALUE
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


def demo_shaped_tenants() -> list[Customer]:
    """The demo's first Microsoft 365 digest: 38 customers with 1-3 spare Business Premium seats, two wasting
    many Office 365 E3 / Microsoft 365 E5 seats, and free SKUs with thousands of "enabled" seats everywhere."""
    tenants = []
    for n in range(40):
        tenant_id = str(uuid.UUID(int=n + 1, version=4))
        enabled = 20 + n
        skus = [sku("SPB", CATALOGUE[0][1], tenant_id=tenant_id, consumed=enabled - 1 - n % 3, enabled=enabled)]
        skus.append(sku("FLOW_FREE", CATALOGUE[9][1], tenant_id=tenant_id, consumed=3, enabled=10_000))
        if n == 38:
            skus[0] = sku("SPE_E5", CATALOGUE[5][1], tenant_id=tenant_id, consumed=3, enabled=35)
        if n == 39:
            skus[0] = sku("ENTERPRISEPACK", CATALOGUE[3][1], tenant_id=tenant_id, consumed=28, enabled=40)
        tenants.append(Customer(tenant_id, f"Customer {n:02d}", skus))
    return tenants


def test_the_microsoft365_digest_leads_with_the_biggest_waste_and_counts_the_spare_seats(
    aws: LocalAws, invoke: Invoke
) -> None:
    tenants = demo_shaped_tenants()
    with Microsoft365Simulator(customers=tenants) as graph:
        account = {
            "account_id": "csp-main",
            "partner_tenant_id": PARTNER,
            "client_id": CLIENT_ID,
            "client_secret": M365_SECRET_VALUE,
            "authority": graph.url,
            "graph_url": graph.url,
        }
        aws.put_secret("usagewatch/microsoft365", [account])
        env = aws.environment("microsoft365", secret_name="usagewatch/microsoft365", chat=True)
        email = email_stand_in(aws)
        summary = invoke("microsoft365", event_file("microsoft365-scheduled.json"), env)

    assert summary["tenants_collected"] == 40
    events = aws.drain_events()
    assert {e["metric"] for e in events} == {"spb", "spe_e5", "enterprisepack"}, "free SKUs are never judged"
    (digest,) = aws.drain_digests()
    assert digest["severity"] == "info"
    assert digest["summary"] == "Microsoft 365 account csp-main: 2 new alerts, 38 minor"
    (group,) = digest["groups"]
    assert (group["count"], group["minor"]) == (40, 38)
    assert [e["tenant_name"] for e in group["entries"]] == ["Customer 38", "Customer 39"]

    (mailed,) = aws.drain_queue(email)
    assert mailed["event_id"] == digest["event_id"]
    text = render_digest_email(digest)
    assert "- Customer 38: spe_e5 32 of 35 paid seats unused" in text
    assert "+ 38 minor: customers/SKUs with fewer than 5 unused seats" in text

    chat = [m for m in aws.drain_chat() if m["metadata"]["eventType"] == "digest"]
    assert chat[0]["content"]["title"].endswith("Microsoft 365 account csp-main: 2 new alerts, 38 minor")

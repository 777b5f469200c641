"""An account too large for one invocation: chunks on the FIFO work queue, the last one finishes the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import FakeLambdaContext, event_file, load_app
from tests.local_aws import LocalAws, sqs_record
from tests.simulators.gravityzone import GravityZoneSimulator, make_tree
from tests.virtual_time import PacingClock

API_KEY = "gz-key-9a8b7c6d5e4f3a2b"
TREE = make_tree(customers=30, partners=2, sub_partner=True, seed=21)
FAILING = TREE.customers()[5]


@pytest.fixture(autouse=True)
def pacing_clock(monkeypatch: pytest.MonkeyPatch) -> PacingClock:
    """The source paces on the simulator's clock, whose sleeps are instant: the 33 companies at the account's 5
    requests/s spent 15 s asleep. The chunk plan reads the invocation's remaining time, which stays real."""
    return PacingClock().install(monkeypatch)


@pytest.fixture
def gravityzone(pacing_clock: PacingClock) -> Iterator[GravityZoneSimulator]:
    with GravityZoneSimulator(
        api_key=API_KEY, tree=TREE, failing_companies=[FAILING], licensing_rps=50, clock=pacing_clock
    ) as sim:
        yield sim  # type: ignore[misc]


def lambda_invoke(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], event: dict[str, Any], remaining_ms: int
) -> dict[str, Any]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result: dict[str, Any] = load_app("gravityzone").lambda_handler(event, FakeLambdaContext(timeout_ms=remaining_ms))
    return result


def test_large_account_continues_in_chunks_and_the_last_chunk_finishes_it(
    aws: LocalAws, gravityzone: GravityZoneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.put_secret(
        "usagewatch/gravityzone",
        [
            {
                "account_id": "gz",
                "access_url": gravityzone.access_url,
                "api_key": API_KEY,
                "licensing_requests_per_second": 5,
            }
        ],
    )
    env = aws.environment("gravityzone", secret_name="usagewatch/gravityzone")
    assert env["WORK_QUEUE_URL"] == aws.work_queue_url

    # 4 s left: a budget of 2.8 s at 5 requests/s allows 13 companies per invocation; the tree has 33.
    summary = lambda_invoke(monkeypatch, env, event_file("gravityzone-scheduled.json"), remaining_ms=4000)
    account = summary["account_results"][0]
    assert account["status"] == "continued"
    assert account["chunks"] == 3
    # The run's progress item, its `running` run record and the account's lease (kept while the chunks run):
    # nothing collected yet.
    assert aws.count() == 3
    messages = aws.work_messages()
    assert len(messages) == 3
    chunks = [json.loads(m["body"]) for m in messages]
    assert sorted(c["index"] for c in chunks) == [0, 1, 2]
    assert sum(len(c["tenants"]) for c in chunks) == 33

    # Workers: the first two only collect; the last finishes (totals, alerts, run record).
    for message in messages[:2]:
        assert lambda_invoke(monkeypatch, env, {"Records": [message]}, 600_000) == {"batchItemFailures": []}
        assert aws.totals("2026-11") == []
    assert lambda_invoke(monkeypatch, env, {"Records": [messages[2]]}, 600_000) == {"batchItemFailures": []}

    total = next(t for t in aws.totals("2026-11") if t["metric"] == "endpoint_monthly_usage")
    root = gravityzone.company_usage(None, "11/2026")["endpointMonthlyUsage"]
    failing = gravityzone.customer_usage(FAILING, "11/2026")["endpointMonthlyUsage"]
    assert total["value"] == root - failing
    assert total["tenant_count"] == 29
    run = aws.store().runs("gravityzone", "gz")[0]
    assert run.status == "partial"
    assert run.tenants_ok == 29
    assert run.tenants_failed == 1
    events = aws.drain_events()
    assert [(e["event_type"], e.get("tenant_id")) for e in events] == [("collection.failed", FAILING)]

    # A redelivered chunk (SQS at-least-once) neither finishes the run again nor publishes again.
    assert lambda_invoke(monkeypatch, env, {"Records": [messages[1]]}, 600_000) == {"batchItemFailures": []}
    assert aws.drain_events() == []

    # One batch of three: only the records that cannot be collected are named for SQS to retry.
    other_body = messages[0]["body"].replace('"account_id":"gz"', '"account_id":"gz-other"')
    assert other_body != messages[0]["body"]
    broken = dict(messages[0], messageId="m-broken", body="{not json")
    unknown = dict(messages[0], messageId="m-unknown", body=other_body)
    answer = lambda_invoke(monkeypatch, env, {"Records": [broken, messages[0], unknown]}, 600_000)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-broken"}, {"itemIdentifier": "m-unknown"}]}
    assert aws.drain_events() == []


def test_a_malformed_work_message_is_reported_as_a_batch_item_failure(
    aws: LocalAws, gravityzone: GravityZoneSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.put_secret(
        "usagewatch/gravityzone", [{"account_id": "gz", "access_url": gravityzone.access_url, "api_key": API_KEY}]
    )
    env = aws.environment("gravityzone", secret_name="usagewatch/gravityzone")
    event = {"Records": [sqs_record({"MessageId": "m-1", "Body": "{not json"}, queue_arn=aws.work_queue_arn())]}
    assert lambda_invoke(monkeypatch, env, event, 600_000) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    assert gravityzone.count() == 0

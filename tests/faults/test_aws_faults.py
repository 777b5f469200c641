"""AWS rows of the fault matrix (DynamoDB, SNS, Secrets Manager, SSM) and re-invocation, with one Keepnet
account behind the real handler.

DynamoDB and SNS faults are botocore event handlers on boto3's default session, which the product's clients
are created from: `before-send` answers instead of moto (so botocore's own retry logic runs), and
`before-parameter-build` / `after-call` hold items back from a BatchWriteItem and report them as
UnprocessedItems, as DynamoDB does under load. Secrets Manager and SSM "unavailable" point their endpoints
at a closed loopback port (`AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM`).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from tests.faults.harness import (
    Harness,
    UsageKey,
    assert_clean_rerun_publishes_nothing,
    assert_ridden_out,
    at,
    boto_hook,
)
from tests.faults.sims import HookedKeepnet
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, on_path
from tests.simulators.keepnet import SEARCH_PATH, make_companies, over_limit
from tests.virtual_time import PacingClock, botocore_sleeps
from usagewatch.errors import ConfigError
from usagewatch.sources.keepnet import COUNT_METRICS

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-aws-fault-secret-77aa"
PERIOD = "2026-11"
ACCOUNT = "kn-main"
METRICS = dict(COUNT_METRICS)


@dataclass
class World:
    h: Harness
    sim: HookedKeepnet
    aws: LocalAws

    def expected(self) -> dict[UsageKey, Any]:
        return {
            (ACCOUNT, c["companyResourceId"], metric): c[field_name]
            for c in self.sim.default_companies
            for field_name, metric in METRICS.items()
        }

    def over_limit_ids(self) -> set[str]:
        return {c["companyResourceId"] for c in self.sim.default_companies if over_limit(c)}


@pytest.fixture
def kn(aws: LocalAws, invoke: Invoke, clock: Any) -> Iterator[World]:
    companies = make_companies(5, seed=31, over_limit=1, unlimited=1, prefix="m")
    with HookedKeepnet(companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=2) as sim:
        assert isinstance(sim, HookedKeepnet)
        aws.put_secret(
            SECRET,
            [
                {
                    "account_id": ACCOUNT,
                    "base_url": sim.url,
                    "client_id": "msp",
                    "client_secret": CLIENT_SECRET,
                    "requests_per_second": 200,
                }
            ],
        )
        yield World(Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET)), sim, aws)


def error_response(request: Any, status: int, code: str, message: str) -> AWSResponse:
    """A DynamoDB-style JSON error answer for `request`. botocore still hands the request to every other
    `before-send` handler (moto's too) and keeps the first answer: the request is pointed at a table that does
    not exist, so that moto changes nothing, as DynamoDB would not have."""
    nowhere = {"pk": {"S": "fault"}, "sk": {"S": "fault"}}
    target = request.headers.get("X-Amz-Target", b"")
    if b"BatchWriteItem" in (target if isinstance(target, bytes) else target.encode()):
        request.body = json.dumps({"RequestItems": {"fault-nowhere": [{"PutRequest": {"Item": nowhere}}]}}).encode()
    else:
        request.body = json.dumps({"TableName": "fault-nowhere", "Item": nowhere}).encode()
    response = AWSResponse(
        request.url, status, {"x-amzn-RequestId": "fault", "Content-Type": "application/x-amz-json-1.0"}, None
    )
    response._content = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()
    return response


def vendor_flagged(events: list[dict[str, Any]]) -> set[str]:
    return {
        e["tenant_id"]
        for e in events
        if e["event_type"] == "usage.threshold.breached" and e["rule"] == "vendor_limit_exceeded"
    }


# --- DynamoDB ------------------------------------------------------------------------------------------


def test_dynamodb_throttling_is_retried(kn: World, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"BatchWriteItem": 0, "PutItem": 0}
    clock = botocore_sleeps(monkeypatch, PacingClock())

    def throttle(request: Any, **kwargs: Any) -> AWSResponse | None:
        operation = request.headers.get("X-Amz-Target", b"")
        name = (operation.decode() if isinstance(operation, bytes) else operation).rsplit(".", 1)[-1]
        if name not in calls:
            return None
        calls[name] += 1
        if calls[name] <= 2:  # the first two calls of each are throttled
            return error_response(request, 400, "ProvisionedThroughputExceededException", "Rate of requests exceeds")
        return None

    with boto_hook("before-send.dynamodb", throttle, first=True):
        outcome = kn.h.run(at("06:00"))

    assert calls["BatchWriteItem"] > 2 and calls["PutItem"] > 2
    assert len(clock.slept) >= 4  # botocore backed off before each throttled call was sent again
    assert_ridden_out(kn.h, outcome, PERIOD, kn.expected())
    assert vendor_flagged(outcome.events) == kn.over_limit_ids()
    assert_clean_rerun_publishes_nothing(kn.h, at("12:00"))


def test_unprocessed_batch_items_are_sent_again(kn: World) -> None:
    held: list[list[dict[str, Any]]] = []
    reported: list[int] = []

    def hold_back(params: dict[str, Any], **kwargs: Any) -> None:
        items = params["RequestItems"][kn.aws.table_name]
        # DynamoDB writes all but the last two, in the first two batches (a run of one item per company has few)
        if len(held) < 2 and len(items) > 2:
            held.append(items[-2:])
            params["RequestItems"][kn.aws.table_name] = items[:-2]

    def report(parsed: dict[str, Any], **kwargs: Any) -> None:
        if len(reported) < len(held):
            parsed["UnprocessedItems"] = {kn.aws.table_name: held[len(reported)]}
            reported.append(len(held[len(reported)]))

    with (
        boto_hook("before-parameter-build.dynamodb.BatchWriteItem", hold_back),
        boto_hook("after-call.dynamodb.BatchWriteItem", report),
    ):
        outcome = kn.h.run(at("06:00"))

    assert reported == [2, 2]
    assert_ridden_out(kn.h, outcome, PERIOD, kn.expected())
    for (_account, tenant, metric), _value in kn.expected().items():
        assert len(kn.h.snapshots(ACCOUNT, tenant, metric)) == 1  # held-back snapshots were written too


def test_dynamodb_refusing_writes_fails_the_account_and_says_why(kn: World) -> None:
    def deny(request: Any, **kwargs: Any) -> AWSResponse:
        return error_response(request, 400, "AccessDeniedException", "not authorized to perform BatchWriteItem")

    with boto_hook("before-send.dynamodb.BatchWriteItem", deny, first=True):
        outcome = kn.h.run(at("06:00"))

    assert outcome.error is not None
    result = outcome.account(ACCOUNT)
    assert result["status"] == "failed" and "AccessDeniedException" in result["error"]
    assert "DynamoDB batch write failed" in result["error"]
    record = kn.h.run_record(ACCOUNT, at("06:00"))  # PutItem still works: the run is on record
    assert record["status"] == "failed" and "AccessDeniedException" in record["errors"][0]
    failed = outcome.of_type("collection.failed")
    assert len(failed) == 1 and "AccessDeniedException" in failed[0]["error"]
    assert kn.h.stored(PERIOD).usage == {}


# --- SNS -----------------------------------------------------------------------------------------------


def test_sns_publish_failure_keeps_the_alert_for_the_next_run(kn: World) -> None:
    refused: list[dict[str, Any]] = []

    def unreachable(params: dict[str, Any], **kwargs: Any) -> None:
        message = json.loads(params["body"]["Message"])
        refused.append(json.loads(message["default"]))
        raise EndpointConnectionError(endpoint_url="https://sns.eu-west-1.amazonaws.com/")

    with boto_hook("before-call.sns.Publish", unreachable):
        first = kn.h.run(at("06:00"))

    alerts = {(e["tenant_id"], e["rule"]) for e in refused}
    assert first.error is None and first.events == []
    assert first.summary["publish_failures"] == len(refused) == len(alerts) >= 1
    assert vendor_flagged(refused) == kn.over_limit_ids()
    assert kn.h.run_record(ACCOUNT, at("06:00"))["status"] == "partial"
    for tenant, _rule in alerts:
        assert kn.h.store().tenant_alerts("keepnet", ACCOUNT, tenant) == [], "alert state advanced without its event"
    assert len(kn.h.stored(PERIOD).usage) == len(kn.expected())  # the data itself is all there

    second = kn.h.run(at("12:00"))

    assert second.summary["publish_failures"] == 0
    assert sorted((e["tenant_id"], e["rule"]) for e in second.events) == sorted(alerts)
    assert all(e["event_type"] == "usage.threshold.breached" for e in second.events)
    for tenant, _rule in alerts:
        states = kn.h.store().tenant_alerts("keepnet", ACCOUNT, tenant)
        assert {(s.status, s.published) for s in states} == {("firing", True)}
    assert_clean_rerun_publishes_nothing(kn.h, at("18:00"))


# --- Secrets Manager, SSM ------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("service", ["secretsmanager", "ssm"])
def test_config_store_unavailable_fails_fast_and_writes_nothing(
    kn: World, monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    kn.aws.put_rules("/usagewatch/rules", {"rules": {}})
    kn.h.env = kn.aws.environment("keepnet", secret_name=SECRET)
    variable = "AWS_ENDPOINT_URL_SECRETS_MANAGER" if service == "secretsmanager" else "AWS_ENDPOINT_URL_SSM"
    monkeypatch.setenv(variable, f"http://127.0.0.1:{closed_port()}")
    clock = botocore_sleeps(monkeypatch, PacingClock())  # botocore's own back-offs, counted but not waited

    started = clock()
    with pytest.raises(ConfigError) as raised:
        kn.h.run(at("06:00"))
    elapsed = clock() - started

    what = f"cannot read secret {SECRET!r}" if service == "secretsmanager" else "cannot read rules parameter"
    assert what in str(raised.value)
    assert "EndpointConnectionError" in str(raised.value), "the message should say why"
    assert CLIENT_SECRET not in str(raised.value)
    assert clock.slept and elapsed < 15, f"took {elapsed:.1f}s, of which {clock.slept} retry back-offs"
    assert kn.sim.count() == 0, "no vendor call before the configuration is read"
    assert kn.aws.count() == 0
    assert kn.aws.drain_events() == []


def test_missing_secret_fails_fast_naming_it(kn: World) -> None:
    kn.aws.client("secretsmanager").delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)

    with pytest.raises(ConfigError, match=r"cannot read secret 'usagewatch/keepnet' \(ResourceNotFoundException\)"):
        kn.h.run(at("06:00"))

    assert kn.sim.count() == 0 and kn.aws.count() == 0


# --- re-invocation ------------------------------------------------------------------------------------


def test_same_scheduled_time_twice_writes_and_publishes_nothing_twice(kn: World) -> None:
    first = kn.h.run(at("06:00"))
    second = kn.h.run(at("06:00"))  # a Lambda or Scheduler retry of the same event

    assert first.error is None and second.error is None
    assert vendor_flagged(first.events) == kn.over_limit_ids()
    assert second.events == []
    for (_account, tenant, metric), value in kn.expected().items():
        snapshots = kn.h.snapshots(ACCOUNT, tenant, metric)
        assert [(s["as_of"], s["value"]) for s in snapshots] == [(at("06:00"), value)]
    runs = [r for r in kn.h.store().runs("keepnet", ACCOUNT) if r.as_of == at("06:00")]
    assert len(runs) == 1
    assert_ridden_out(kn.h, second, PERIOD, kn.expected())


def test_retry_of_a_failed_attempt_completes_it_without_duplicates(kn: World) -> None:
    outage = Fault("status", on_path(SEARCH_PATH), times=-1, status=503)
    kn.sim.inject(outage)
    first = kn.h.run(at("06:00"))
    assert first.error is not None and len(first.of_type("collection.failed")) == 1
    kn.sim.clear_faults()

    retry = kn.h.run(at("06:00"))

    assert retry.error is None
    assert [e["event_type"] for e in retry.events if e["event_type"].startswith("collection.")] == [
        "collection.recovered"
    ]
    assert vendor_flagged(retry.events) == kn.over_limit_ids()
    record = kn.h.run_record(ACCOUNT, at("06:00"))
    assert record["status"] == "ok" and list(record["errors"]) == []
    for (_account, tenant, metric), _value in kn.expected().items():
        assert len(kn.h.snapshots(ACCOUNT, tenant, metric)) == 1
    assert_clean_rerun_publishes_nothing(kn.h, at("12:00"))

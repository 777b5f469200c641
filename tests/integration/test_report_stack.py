"""The monthly report function's key-scoped writes (template.yaml `PsaProposalWrites`, only under HasPsa) against
what its real handler writes: every DynamoDB request of a report run with a ConnectWise connection (the simulator
on loopback) is recorded, and each write must be a PutItem on a key the role's LeadingKeys admit; without a
connection the report writes nothing to the table at all (its role then has no write statement).
The technique is test_console_stack.py's; moto does not enforce IAM, so this is what stands in for AccessDenied."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from tests.integration.conftest import FakeLambdaContext, load_app
from tests.integration.test_console_stack import (
    Recorder,
    allowed,
    assert_within,
    install_recorder,
    leading_keys,
    read_actions,
    recorded_store,
    statements,
)
from tests.integration.test_digest_pipeline import email_stand_in
from tests.local_aws import LocalAws
from tests.simulators.connectwise import ConnectWiseSimulator
from tests.virtual_time import PacingClock
from usagewatch import registry
from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.psa.apply import AuditRecord
from usagewatch.psa.connectwise import ConnectWiseClient
from usagewatch.psa.contract import LineRef
from usagewatch.psa.proposals import Proposal, ProposalStatus
from usagewatch.redaction import redactor
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import PsaStore

REPORT = "MonthlyReportFunction"
BUCKET = "usagewatch-reports"
NOV = Period(2026, 11)
AT = datetime(2026, 11, 20, 6, tzinfo=UTC)


@pytest.fixture
def linked(aws: LocalAws) -> Iterator[tuple[LocalAws, ConnectWiseSimulator]]:
    """Two customers' November usage, their contracts synced from ConnectWise lines (one under-billed, one
    over-billed), a secret for the simulator, and one applied change in the month's PSA trail."""
    redactor.clear()
    store = aws.store()
    for vendor, tid, metric, used in (
        ("keepnet", "c-1", "monthly_users", 120),
        ("keepnet", "c-2", "monthly_users", 40),
    ):
        record = UsageRecord(vendor, "kn-msp", Tenant(tid, tid), metric, used, "users", Window.month(NOV))
        store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    billing = BillingStore(store)
    billing.import_mappings(
        [Customer("acme", "Acme", "PSA-1"), Customer("bolt", "Bolt", "PSA-2")],
        [
            TenantMapping("acme", TenantRef("keepnet", "kn-msp", "c-1")),
            TenantMapping("bolt", TenantRef("keepnet", "kn-msp", "c-2")),
        ],
    )
    with ConnectWiseSimulator() as sim:
        contracts = []
        for customer, identifier, billed in (("acme", "PSA-1", 105), ("bolt", "PSA-2", 50)):
            agreement = sim.add_agreement(sim.add_company(identifier, customer), "Managed services")
            addition = sim.add_addition(agreement, "KN-USERS", billed, unit_price=Decimal("2.00"))
            contracts.append(
                Contract(customer, "keepnet", "monthly_users", billed, Period(2026, 1), unit_price=2.0,
                         psa_line=f"{agreement}/{addition}")
            )  # fmt: skip
        billing.import_contracts(contracts)
        psa = PsaStore(store)
        done = Proposal("p0", str(NOV), "connectwise", LineRef(1, 1), "acme", "keepnet", "monthly_users", "KN-USERS",
                        Decimal(100), Decimal(105), Decimal(2), "more used")  # fmt: skip
        psa.add([done])
        psa.append_audit(AuditRecord("p0", str(NOV), "connectwise", "1/1", "alice", "bob", Decimal(100), Decimal(105),
                                     ProposalStatus.APPLIED, "200", "", AT))  # fmt: skip
        boto3.client("secretsmanager").create_secret(Name="cw", SecretString=json.dumps(sim.connection()))
        boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield aws, sim


@pytest.fixture
def recorder(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install_recorder(aws, monkeypatch)


def invoke(aws: LocalAws, monkeypatch: pytest.MonkeyPatch, *, psa: bool) -> dict[str, Any]:
    monkeypatch.setenv("ALERT_TOPIC_ARN", aws.topic_arn)
    monkeypatch.setenv("REPORT_BUCKET", BUCKET)
    if psa:
        monkeypatch.setenv("PSA_SECRET_ID", "cw")
    else:
        monkeypatch.delenv("PSA_SECRET_ID", raising=False)
    result: dict[str, Any] = load_app("report").lambda_handler({"period": str(NOV)}, FakeLambdaContext())
    return result


def test_the_reports_plan_writes_only_proposals(
    linked: tuple[LocalAws, ConnectWiseSimulator], recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, sim = linked
    result = invoke(aws, monkeypatch, psa=True)
    assert result["psa_plan"]["event_type"] == "psa.plan.ready", result["psa_plan"]
    assert result["psa_plan"]["proposals"] == {"proposed": 1}  # acme's 105 -> 120; bolt's decrease is not proposed
    assert sim.patches() == []
    used = assert_within(REPORT, recorder)
    assert used == {"PSA#PROPOSALS#*"}
    assert {a for a, _ in recorder.writes} == {"PutItem"}
    assert {pk for _, pk in recorder.writes} == {"PSA#PROPOSALS#2026-11"}
    # The same month again: the same proposal, refused by its condition (still a PutItem), nothing else written.
    recorder.clear()
    again = invoke(aws, monkeypatch, psa=True)
    assert again["psa_plan"]["event_id"] == result["psa_plan"]["event_id"]
    assert assert_within(REPORT, recorder) == {"PSA#PROPOSALS#*"}
    stored = PsaStore(aws.store()).proposals(str(NOV))
    assert sorted(p.status.value for p in stored) == ["proposed", "proposed"]  # p0 and acme's, each once


def test_without_a_psa_the_report_writes_nothing_to_the_table(
    linked: tuple[LocalAws, ConnectWiseSimulator], recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, _ = linked
    result = invoke(aws, monkeypatch, psa=False)
    assert "psa_plan" not in result and result["period"] == str(NOV)
    assert recorder.writes == []
    assert recorder.reads <= read_actions(REPORT), recorder.reads - read_actions(REPORT)


def test_the_report_may_write_no_other_key(aws: LocalAws, recorder: Recorder) -> None:
    patterns = leading_keys(REPORT)
    assert patterns == ["PSA#PROPOSALS#*"]
    others = ["PSA#AUDIT#2026-11", "PSA#PRODUCTS", "CUSTOMERS", "BILLING", "BILLING#CHANGE#x", "AUDIT#CONSOLE",
              "BILLING#IGNORED", "BILLING#keepnet#kn-msp", "RUN#keepnet#kn-msp", "USAGE#x"]  # fmt: skip
    others += [f"BILLING#{v}" for v in registry.vendor_ids()]
    assert not [pk for pk in others if allowed(patterns, pk)]
    # What the collectors write is refused too.
    store = recorded_store(aws)
    record = UsageRecord("keepnet", "kn-msp", Tenant("c-1", "x"), "monthly_users", 1, "users", Window.month(NOV))
    store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    assert recorder.writes and not [pk for _, pk in recorder.writes if allowed(patterns, pk)]
    # Only the proposal put: an approval (UpdateItem) or an apply's outcome is never the report's.
    (write,) = [s for s in statements(REPORT) if "dynamodb:PutItem" in json.dumps(s["Action"])]
    assert write["Action"] == "dynamodb:PutItem"


def received(aws: LocalAws, url: str) -> list[tuple[str, str]]:
    messages = aws.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return sorted((json.loads(m["Body"])["event_type"], json.loads(m["Body"])["severity"]) for m in messages)


def test_people_get_the_plan_waiting_for_approval_and_the_plan_not_made(
    linked: tuple[LocalAws, ConnectWiseSimulator], recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's e-mail filter policy (AlertEmailSubscription), on a queue standing in for the address."""
    aws, sim = linked
    email, digest_only = email_stand_in(aws), email_stand_in(aws, {"AlertEmailCriticalImmediately": "false"})
    invoke(aws, monkeypatch, psa=True)
    expected = [("psa.plan.ready", "warning"), ("report.ready", "warning")]  # a change waits; acme is under-billed
    assert received(aws, email) == received(aws, digest_only) == expected
    sim.stop()
    pacing = PacingClock().install_on(monkeypatch, ConnectWiseClient.__init__)  # its back-offs, not waited for
    invoke(aws, monkeypatch, psa=True)
    assert received(aws, email) == [("psa.plan.failed", "warning"), ("report.ready", "warning")]
    assert len(pacing.slept) >= 4  # the PSA was retried with the real policy before the plan failed

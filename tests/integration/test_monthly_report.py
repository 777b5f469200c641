"""The monthly billing report through its real Lambda handler on moto: CSV and HTML in the bucket, the numbers
of the reconciliation in both, one `report.ready` event; vendor text escaped; the same month again, the same id."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import boto3
import pytest

from tests.integration.conftest import FakeLambdaContext, load_app
from tests.local_aws import LocalAws
from tests.simulators.connectwise import ConnectWiseSimulator
from tests.virtual_time import PacingClock
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

OCT, NOV = Period(2026, 10), Period(2026, 11)
BUCKET = "usagewatch-reports"
AT = datetime(2026, 11, 20, 6, tzinfo=UTC)
HOSTILE = "<script>alert(1)</script> & Co"


@pytest.fixture
def billed(aws: LocalAws) -> LocalAws:
    store = aws.store()
    for period, scale in ((Period(2026, 9), 0), (OCT, 1), (NOV, 2)):
        for vendor, tid, name, metric, value, unit in (
            ("keepnet", "c-1", "Acme Ltd", "monthly_users", 100 + 10 * scale, "users"),
            ("gravityzone", "g-1", "ACME Limited", "endpoint_monthly_usage", 20 + scale, "seats"),
            ("keepnet", "c-9", HOSTILE, "monthly_users", 5, "users"),
        ):
            record = UsageRecord(vendor, f"{vendor}-msp", Tenant(tid, name), metric, value, unit, Window.month(period))
            store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    billing = BillingStore(store)
    billing.import_mappings(
        [Customer("acme", "Acme", "PSA-1")],
        [
            TenantMapping("acme", TenantRef("keepnet", "keepnet-msp", "c-1")),
            TenantMapping("acme", TenantRef("gravityzone", "gravityzone-msp", "g-1")),
        ],
    )
    billing.import_contracts([Contract("acme", "keepnet", "monthly_users", 105, Period(2026, 1), unit_price=2.0)])
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return aws


def invoke(aws: LocalAws, monkeypatch: pytest.MonkeyPatch, event: dict[str, Any]) -> dict[str, Any]:
    monkeypatch.setenv("USAGE_TABLE_NAME", aws.table_name)
    monkeypatch.setenv("ALERT_TOPIC_ARN", aws.topic_arn)
    monkeypatch.setenv("REPORT_BUCKET", BUCKET)
    result: dict[str, Any] = load_app("report").lambda_handler(event, FakeLambdaContext())
    return result


class Cells(HTMLParser):
    """The customers' table rows as (vendor, metric) -> their cells' text in column order, the status counts, the
    charts' text alternatives and every text node."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], list[str]] = {}
        self.counts: dict[str, str] = {}
        self.charts: list[str] = []
        self.text: list[str] = []
        self._lines = False
        self._row: list[str] | None = None
        self._count: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._lines = a.get("class") == "lines"
        if self._lines and tag == "tr":
            self._row = []
        if self._lines and tag == "td" and self._row is not None:
            self._row.append("")
        if tag == "span" and a.get("data-count"):
            self._count = str(a["data-count"])
        if tag == "svg":
            self.charts.append(str(a.get("aria-label")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._lines = False
        if tag == "span":
            self._count = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row:
            self._row[-1] += data
            if len(self._row) >= 2:
                self.rows[(self._row[0], self._row[1])] = self._row
        if self._count:
            self.counts[self._count] = data


def test_the_first_of_the_month_reports_the_month_before(billed: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    billed.drain_events()
    ready = invoke(billed, monkeypatch, {"scheduled_time": "2026-12-01T07:00:00Z"})
    assert ready["period"] == "2026-11"
    assert (ready["customers_under_billed"], ready["unmapped_tenants"]) == (1, 1)
    assert ready["severity"] == "warning"

    s3 = boto3.client("s3")
    assert ready["html_key"] == "reports/2026-11/billing-2026-11.html"
    head = s3.head_object(Bucket=BUCKET, Key=ready["html_key"])
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentType"].startswith("text/html")

    rows = list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key=ready["csv_key"])["Body"].read().decode())))
    got = {(r["vendor"], r["status"], r["used"], r["contracted"], r["change"]) for r in rows if r["status"] != "total"}
    assert rows[-1]["status"] == "total" and (rows[-1]["currency"], rows[-1]["unbilled_value"]) == ("USD", "30.00")
    assert got == {
        ("keepnet", "under_billed", "120", "105", "10"),
        ("gravityzone", "no_contract", "22", "", "1"),
        ("keepnet", "unmapped", "5", "", ""),
    }

    page = s3.get_object(Bucket=BUCKET, Key=ready["html_key"])["Body"].read().decode()
    cells = Cells()
    cells.feed(page)
    # vendor, metric, used, contracted, difference, status, unit_price, value, change, months
    assert cells.rows[("Keepnet", "monthly_users")][2:9] == [
        "120",
        "105",
        "+15",
        "under_billed",
        "USD 2.0",
        "USD 30.00",
        "+10",
    ]
    assert "GravityZone" in "".join(cells.text) and ("GravityZone", "endpoint_monthly_usage") not in cells.rows
    assert "data-no-contract=1>" in page  # the no_contract line is folded into its customer's count
    assert cells.counts["under_billed"] == "1" and cells.counts["unmapped"] == "1"
    assert "<script>" not in page and HOSTILE in "".join(cells.text)
    # The chart and the change read the months before November from the table.
    assert cells.charts == ["used 2026-06 to 2026-11: n/a,n/a,n/a,100,110,120"]

    (event,) = billed.drain_events()
    assert event["event_type"] == "report.ready" and event["event_id"] == ready["event_id"]
    assert event["summary"].startswith(
        "Billing report for 2026-11: 1 customer(s) under-billed (USD 30.00 unbilled), 0 incomplete line(s), "
        "1 unmapped tenant(s)"
    )
    assert (event["incomplete_lines"], event["incomplete_accounts"], event["provisional"]) == (0, [], False)


def test_a_month_asked_for_is_written_again_with_the_same_event_id(
    billed: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = invoke(billed, monkeypatch, {"period": "2026-10"})
    again = invoke(billed, monkeypatch, {"period": "2026-10"})
    assert first["period"] == "2026-10" and first["event_id"] == again["event_id"]
    events = billed.drain_events()
    assert [e["event_id"] for e in events] == [first["event_id"]] * 2


def test_missing_environment_names_the_variable(billed: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USAGE_TABLE_NAME", billed.table_name)
    monkeypatch.setenv("ALERT_TOPIC_ARN", billed.topic_arn)
    monkeypatch.delenv("REPORT_BUCKET", raising=False)
    from usagewatch.errors import ConfigError

    with pytest.raises(ConfigError, match="REPORT_BUCKET not set"):
        load_app("report").lambda_handler({}, FakeLambdaContext())


def test_the_cli_writes_the_report_now_and_prints_where(billed: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    from usagewatch.cli import main

    argv = ["monthly-report", "--period", "2026-11", "--table", billed.table_name, "--bucket", BUCKET]
    assert main([*argv, "--topic", billed.topic_arn]) == 0
    out = capsys.readouterr().out
    assert f"csv:  s3://{BUCKET}/" in out and f"html: s3://{BUCKET}/" in out
    (ready,) = [e for e in billed.drain_events() if e["event_type"] == "report.ready"]
    assert ready["period"] == "2026-11"
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert {ready["csv_key"], ready["html_key"]} <= keys

    assert main(argv) == 1  # no topic and no stack to read it from
    assert "pass --stack STACK, or --bucket and --topic" in capsys.readouterr().err


@pytest.fixture
def linked(billed: LocalAws) -> Iterator[tuple[LocalAws, ConnectWiseSimulator, int]]:
    """The billed table with acme's Keepnet contract read from a ConnectWise line (105 at 2.00), a secret for the
    simulator, and the month's PSA trail: one change applied (a hostile product name), one found stale."""
    redactor.clear()
    with ConnectWiseSimulator() as sim:
        agreement = sim.add_agreement(sim.add_company("PSA-1", "Acme"), "Managed services")
        addition = sim.add_addition(agreement, "KN-USERS", 105, unit_price=Decimal("2.00"))
        line = f"{agreement}/{addition}"
        contract = Contract("acme", "keepnet", "monthly_users", 105, Period(2026, 1), unit_price=2.0, psa_line=line)
        BillingStore(billed.store()).import_contracts([contract])
        boto3.client("secretsmanager").create_secret(Name="cw", SecretString=json.dumps(sim.connection()))
        psa = PsaStore(billed.store())
        done = [
            Proposal(f"p{n}", "2026-11", "connectwise", LineRef(agreement, 90 + n), "acme", "gravityzone",
                     "endpoint_monthly_usage", product, Decimal(20), Decimal(22), Decimal(4), "more used")
            for n, product in ((1, HOSTILE), (2, "GZ-OTHER"))
        ]  # fmt: skip
        psa.add(done)
        for p, outcome in zip(done, (ProposalStatus.APPLIED, ProposalStatus.STALE), strict=True):
            psa.append_audit(
                AuditRecord(p.id, "2026-11", "connectwise", str(p.ref), "alice", "bob", Decimal(20), Decimal(22),
                            outcome, "200" if outcome is ProposalStatus.APPLIED else "not written", "", AT)
            )  # fmt: skip
        yield billed, sim, addition


def test_with_a_psa_the_report_lists_the_applied_changes_and_publishes_the_months_plan(
    linked: tuple[LocalAws, ConnectWiseSimulator, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, sim, addition = linked
    aws.drain_events()
    monkeypatch.setenv("PSA_SECRET_ID", "cw")
    result = invoke(aws, monkeypatch, {"period": "2026-11"})
    s3 = boto3.client("s3")
    page = s3.get_object(Bucket=BUCKET, Key=result["html_key"])["Body"].read().decode()
    section = page[page.index('<h2 id="psa-applied">') :]
    assert section.count('class="applied-row"') == 1  # the stale one is not an applied change
    assert "<script>" not in page and html.escape(HOSTILE) in section
    assert "<td>bob</td><td>alice</td>" in section and "<td>200</td>" in section
    applied = s3.get_object(Bucket=BUCKET, Key="reports/2026-11/psa-applied-2026-11.csv")["Body"].read().decode()
    (row,) = csv.DictReader(io.StringIO(applied))
    assert (row["customer_id"], row["from"], row["to"], row["applied_by"], row["approved_by"]) == (
        "acme", "20", "22", "bob", "alice",
    )  # fmt: skip

    ready, planned = aws.drain_events()
    assert ready["event_type"] == "report.ready" and ready["event_id"] == result["event_id"]
    assert planned == result["psa_plan"]
    assert planned["event_type"] == "psa.plan.ready" and planned["severity"] == "warning"
    assert (planned["proposals"], planned["value"], planned["currency"], planned["ended"]) == (
        {"proposed": 1}, "30.00", "USD", True,
    )  # fmt: skip
    assert sim.patches() == [] and sim.additions[addition]["quantity"] == 105  # a plan writes nothing to the PSA
    (proposal,) = [p for p in PsaStore(aws.store()).proposals("2026-11") if p.ref.line_id == addition]
    assert (proposal.from_quantity, proposal.to_quantity) == (105, 120)

    again = invoke(aws, monkeypatch, {"period": "2026-11"})
    assert again["psa_plan"]["event_id"] == planned["event_id"]  # the same plan, the same id
    assert len(PsaStore(aws.store()).proposals("2026-11")) == 3  # stored once


def test_a_psa_that_cannot_be_reached_leaves_the_report_written_and_one_warning(
    linked: tuple[LocalAws, ConnectWiseSimulator, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws, sim, _ = linked
    aws.drain_events()
    sim.stop()  # nothing answers at the site any more
    pacing = PacingClock().install_on(monkeypatch, ConnectWiseClient.__init__)  # its back-offs, not waited for
    monkeypatch.setenv("PSA_SECRET_ID", "cw")
    result = invoke(aws, monkeypatch, {"period": "2026-11"})
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=result["html_key"])
    ready, failed = aws.drain_events()
    assert ready["event_type"] == "report.ready"
    assert failed == result["psa_plan"] and failed["event_type"] == "psa.plan.failed"
    assert failed["severity"] == "warning" and "no ConnectWise site answered" in failed["reason"]
    assert "after 5 attempt(s)" in failed["reason"] and len(pacing.slept) >= 4  # retried with the real policy
    assert sim.private_key not in json.dumps(failed) and sim.public_key not in json.dumps(failed)

    monkeypatch.setenv("PSA_SECRET_ID", "no-such-secret")
    result = invoke(aws, monkeypatch, {"period": "2026-11"})
    assert "no-such-secret" in result["psa_plan"]["reason"] and "not read" in result["psa_plan"]["reason"]


def test_without_a_psa_nothing_of_it_is_made(billed: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    billed.drain_events()
    monkeypatch.delenv("PSA_SECRET_ID", raising=False)
    result = invoke(billed, monkeypatch, {"period": "2026-11"})
    assert "psa_plan" not in result and [e["event_type"] for e in billed.drain_events()] == ["report.ready"]
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {result["csv_key"], result["html_key"]}
    page = boto3.client("s3").get_object(Bucket=BUCKET, Key=result["html_key"])["Body"].read().decode()
    assert "psa-applied" not in page

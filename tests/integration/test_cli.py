"""The `usagewatch` command against moto's DynamoDB (and CloudFormation for --stack): every mistake is one line
on stderr with exit code 1 (bad input) or 2 (AWS), never a traceback; options go anywhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest

from tests.cli_run import run
from tests.local_aws import LocalAws
from usagewatch import cli
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.stored import AlertState, RunRecord, Total

NOW = Period.of(datetime.now(UTC))
PERIOD = str(NOW)
AT = datetime(NOW.year, NOW.month, 1, 6, tzinfo=UTC)


@pytest.fixture
def filled(aws: LocalAws) -> LocalAws:
    store = aws.store()
    window = Window.month(NOW)
    for n in range(25):
        tenant = Tenant(f"c-{n}", f"Caf\u00e9 {n:02d} GmbH")
        records = [
            UsageRecord("keepnet", "kn-main", tenant, metric, value, "users", window, quota=30)
            for metric, value in (("target_users", 10 + n), ("deleted_target_users", 0))
        ]
        store.add_tenant(records, as_of=AT, collected_at=AT)
    store.flush()
    store.write_totals(
        [Total("keepnet", "kn-main", PERIOD, "target_users", "users", sum(range(10, 35)), 25, 0, "2026-12-01T06:00Z")]
    )
    store.write_run(
        RunRecord("keepnet", "kn-main", "r", "2026-12-01T06:00:00Z", "x", "y", "ok", (PERIOD,), 25, 0, 50, 1, ())
    )
    store.put_alert(
        AlertState(
            alert_id="keepnet-1",
            vendor="keepnet",
            account_id="kn-main",
            tenant_id="c-24",
            tenant_name="Caf\u00e9 24 GmbH",
            metric="target_users",
            rule="over_quota",
            period=PERIOD,
            status="firing",
            severity="critical",
            published=True,
            since="2026-12-01T06:00:00Z",
            updated_at="2026-12-01T06:00:00Z",
            value=34,
            quota=30,
        )
    )
    return aws


def test_bad_input_is_one_line_and_exit_code_1(filled: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    table = filled.table_name
    for argv, words in (
        (("report", "--period", "11/2026", "--table", table), "--period: expected YYYY-MM"),
        (("report", "--period", PERIOD), "no table"),
        (("report", "--period", PERIOD, "--vendor", "keepnett", "--table", table), "invalid choice"),
        (("alerts", "--vendor", "keepnet", "--account", "kn-mian", "--table", table), "no account 'kn-mian'"),
        (("runs", "--account", "nope", "--table", table), "no runs of account 'nope'"),
    ):
        code, _out, err = run(capsys, *argv)
        assert code == 1, (argv, code, err)
        assert words in err and "Traceback" not in err, (argv, err)
        assert err.strip().splitlines()[-1].startswith("usagewatch: error:"), err


def test_aws_errors_are_one_line_and_exit_code_2(
    filled: LocalAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _out, err = run(capsys, "report", "--period", PERIOD, "--table", "no-such-table")
    assert code == 2 and "ResourceNotFoundException" in err and "Traceback" not in err
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code, _out, err = run(capsys, "runs", "--table", filled.table_name)
    assert code == 2 and "NoRegionError" in err and len(err.strip().splitlines()) == 1


def test_options_go_anywhere_and_the_table_comes_from_the_environment_or_the_stack(
    filled: LocalAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = run(capsys, "--table", filled.table_name, "report", "--period", PERIOD, "--csv")
    after = run(capsys, "report", "--csv", "--period", PERIOD, "--table", filled.table_name)
    assert before == after and before[0] == 0 and before[1].count("\n") == 51

    monkeypatch.setenv("USAGEWATCH_TABLE", filled.table_name)
    assert run(capsys, "report", "--period", PERIOD, "--csv") == before
    monkeypatch.delenv("USAGEWATCH_TABLE")

    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"UsageTableName": {"Value": filled.table_name}},
    }
    boto3.client("cloudformation").create_stack(StackName="usagewatch", TemplateBody=json.dumps(template))
    assert run(capsys, "report", "--period", PERIOD, "--csv", "--stack", "usagewatch") == before
    code, _out, err = run(capsys, "report", "--period", PERIOD, "--stack", "other")
    assert code == 2 and "stack 'other' not read" in err


def test_report_says_what_it_leaves_out(filled: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "report", "--period", PERIOD, "--table", filled.table_name)
    assert code == 0
    assert "(showing the 20 largest of 25 customers; --limit 0 shows all)" in out
    assert "No usage this month in: deleted_target_users." in out
    assert "Caf\u00e9 24 GmbH" in out and "Caf\u00e9 00 GmbH" not in out

    code, out, _err = run(capsys, "report", "--period", PERIOD, "--limit", "0", "--table", filled.table_name)
    assert "Caf\u00e9 00 GmbH" in out and "showing" not in out


def test_alerts_across_every_account_and_runs_without_internal_keys(
    filled: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _err = run(capsys, "alerts", "--table", filled.table_name)
    assert code == 0 and "Caf\u00e9 24 GmbH" in out and "1 firing alert(s)." in out and "\\u" not in out
    code, out, _err = run(capsys, "alerts", "--rule", "collection", "--table", filled.table_name)
    assert code == 0 and "No firing alerts" in out
    code, out, _err = run(capsys, "alerts", "--json", "--table", filled.table_name)
    (line,) = out.splitlines()
    assert json.loads(line)["tenant_name"] == "Caf\u00e9 24 GmbH" and "\u00e9" in line

    code, out, _err = run(capsys, "runs", "--table", filled.table_name)
    assert code == 0 and "kn-main" in out and "ok" in out and "RUN#" not in out
    code, out, _err = run(capsys, "runs", "--json", "--table", filled.table_name)
    assert "pk" not in json.loads(out.splitlines()[0])


def test_help_lists_every_command_and_each_has_a_description_and_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _err = run(capsys, "--help")
    assert code == 0 and "monthly-report" in out
    for name, module in cli.COMMANDS.items():
        assert f"    {name} " in out and module.EXAMPLE in out, name
        code, own, _err = run(capsys, name, "--help")
        described = module.HELP[0].upper() + module.HELP[1:] + "."
        assert code == 0 and described in " ".join(own.split()) and f"example:\n  {module.EXAMPLE}" in own, name
    for name, action in (("customers", "unmapped"), ("customers", "suggest"), ("contracts", "end")):
        code, own, _err = run(capsys, name, action, "--help")
        assert code == 0 and f"example:\n  usagewatch {name} {action}" in own


def test_unknown_listed_values_exit_1_naming_the_valid_ones(
    filled: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    table = filled.table_name
    code, out, err = run(capsys, "alerts", "--rule", "nonsense", "--table", table)
    assert code == 1 and out == "" and "--rule: unknown value 'nonsense'" in err
    assert "over_quota" in err and "collection" in err and len(err.strip().splitlines()) == 1
    code, _out, err = run(capsys, "runs", "--vendor", "nonsense", "--table", table)
    assert code == 1 and "invalid choice: 'nonsense'" in err and "keepnet" in err
    code, _out, err = run(capsys, "reconcile", "--period", PERIOD, "--status", "under-billed", "--table", table)
    assert code == 1 and "--status: unknown value 'under-billed'" in err and "under_billed, " in err


def test_runs_show_every_error_whole(filled: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    cause = "GravityZone answered 503 for company c-9 after 4 tries: " + "the service is unavailable " * 6 + "END"
    filled.store().write_run(
        RunRecord(
            "keepnet", "kn-main", "r2", "2026-12-02T06:00:00Z", "x", "y", "partial", (PERIOD,), 24, 1, 48, 0, (cause,)
        )
    )
    code, out, _err = run(capsys, "runs", "--account", "kn-main", "--vendor", "keepnet", "--table", filled.table_name)
    assert code == 0 and "partial" in out
    assert " ".join(out.split()).endswith(" ".join(cause.split())), out
    assert max(len(line) for line in out.splitlines() if line.startswith("  ")) <= 100
    code, out, _err = run(capsys, "runs", "--json", "--vendor", "keepnet", "--table", filled.table_name)
    assert cause in [e for line in out.splitlines() for e in json.loads(line)["errors"]]


def test_monthly_report_aws_failures_are_one_line_and_exit_code_2(
    filled: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = "usagewatch-reports"
    boto3.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    gone = filled.topic_arn.rsplit(":", 1)[0] + ":no-such-topic"
    argv = ("monthly-report", "--period", PERIOD, "--table", filled.table_name, "--bucket", bucket, "--topic", gone)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"the report of {PERIOD} is written to s3://{bucket}/ but report.ready was not published" in err
    assert "NotFound" in err
    code, _out, err = run(capsys, *argv[:-3], "no-such-bucket", "--topic", filled.topic_arn)
    assert code == 2 and "no-such-bucket" in err and len(err.strip().splitlines()) == 1
    assert run(capsys, *argv[:-1], filled.topic_arn)[0] == 0

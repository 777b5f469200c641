"""Customers, contracts and reconciliation through the `usagewatch` command against moto's DynamoDB: the
monthly workflow end to end, imports all or nothing and idempotent, bad input one message with line numbers."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from tests.local_aws import LocalAws
from usagewatch import cli
from usagewatch.model import Period, Tenant, Total, UsageRecord, Window

NOW = Period.of(datetime.now(UTC))
PERIOD = str(NOW)
AT = datetime(NOW.year, NOW.month, 1, 6, tzinfo=UTC)
USAGE = (
    ("keepnet", "kn-main", "c-1", "Acme Ltd", "monthly_users", 130, "users"),
    ("keepnet", "kn-main", "c-2", "Globex GmbH", "monthly_users", 40, "users"),
    ("keepnet", "kn-main", "c-3", "Initech", "monthly_users", 9, "users"),
    ("gravityzone", "gz-main", "g-1", "ACME Limited", "endpoint_monthly_usage", 30, "seats"),
    ("gravityzone", "gz-main", "g-2", "Globex", "endpoint_monthly_usage", 12, "seats"),
)


@pytest.fixture
def filled(aws: LocalAws) -> LocalAws:
    store = aws.store()
    for vendor, account, tid, name, metric, value, unit in USAGE:
        for period in (NOW.previous(), NOW):
            record = UsageRecord(
                vendor, account, Tenant(tid, name), metric, value - (period != NOW), unit, Window.month(period)
            )
            store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    store.write_totals([Total("keepnet", "kn-main", PERIOD, "monthly_users", "users", 179, 3, 0, "2026-12-01T06:00Z")])
    return aws


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def item_count(aws: LocalAws) -> int:
    return int(boto3.client("dynamodb").scan(TableName=aws.table_name, Select="COUNT")["Count"])


def test_the_monthly_workflow(filled: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table = ("--table", filled.table_name)
    code, out, _ = run(capsys, "customers", "unmapped", "--period", PERIOD, *table)
    assert code == 0 and "5 unmapped tenant(s)." in out

    code, out, _ = run(capsys, "customers", "suggest", "--period", PERIOD, "--csv", *table)
    assert code == 0
    proposals = {(r["vendor"], r["tenant_id"]): r["customer_id"] for r in csv.DictReader(io.StringIO(out))}
    assert proposals[("keepnet", "c-1")] == proposals[("gravityzone", "g-1")] == "acme"
    assert proposals[("keepnet", "c-2")] == proposals[("gravityzone", "g-2")] == "globex"
    # The operator leaves Initech out of the file: it stays unmapped.
    kept = [line for line in out.splitlines() if "Initech" not in line]
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("\n".join(kept) + "\n")

    code, out, _ = run(capsys, "customers", "import", str(mapping), *table)
    assert code == 0 and "Imported 2 customer(s), 4 tenant mapping(s)" in out
    items = item_count(filled)
    code, out, _ = run(capsys, "customers", "import", str(mapping), *table)
    assert code == 0 and out.startswith("Nothing changed")
    assert item_count(filled) == items

    code, out, _ = run(capsys, "customers", "unmapped", "--period", PERIOD, *table)
    assert "Initech" in out and "1 unmapped tenant(s)." in out

    contracts = tmp_path / "contracts.csv"
    contracts.write_text(
        "customer_id,vendor,metric,quantity,effective_from,effective_to,agreement,unit_price\n"
        f"acme,keepnet,monthly_users,120,{NOW.previous()},,AG-7,1.50\n"
        f"acme,gravityzone,endpoint_monthly_usage,30,{NOW.previous()},,AG-7,\n"
        f"globex,keepnet,monthly_users,60,{NOW.previous()},,,\n"
    )
    code, out, _ = run(capsys, "contracts", "import", str(contracts), *table)
    assert code == 0 and "Imported 3 contract line(s)" in out

    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, *table)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Billed versus used, {PERIOD} (provisional: the month has not ended)"
    first = next(line for line in lines if "ACME" in line and "keepnet" in line)
    assert first.split() == [
        "ACME", "Limited", "keepnet", "monthly_users", "130", "120", "+10", "under-billed", "USD", "15.00", "+1"
    ]  # fmt: skip
    assert "1 under-billed, 0 incomplete, 1 unmapped, 1 no-contract, 1 over-billed, 1 ok;" in out
    assert "Unbilled: ACME Limited USD 15.00; USD 15.00 for the month." in out

    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--csv", "--customer", "acme", *table)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["vendor"], r["status"], r["unbilled_value"]) for r in rows] == [
        ("keepnet", "under_billed", "15.00"),
        ("gravityzone", "ok", ""),
        ("", "total", "15.00"),  # the customer's
        ("", "total", "15.00"),  # the month's
    ]


def test_bad_files_stop_with_every_line_named_and_nothing_written(
    filled: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = ("--table", filled.table_name)
    before = item_count(filled)
    mapping = tmp_path / "bad.csv"
    mapping.write_text(
        "customer_id,customer_name,vendor,account_id,tenant_id\n"
        "acme,Acme,keepnet,kn-main,c-1\n"
        "acme,Acme,sophos,x,1\n"
        "globex,Globex,keepnet,kn-main,c-1\n"
    )
    code, _, err = run(capsys, "customers", "import", str(mapping), *table)
    assert code == 1 and "Traceback" not in err
    assert "2 bad line(s), nothing imported" in err and "line 3:" in err and "line 4:" in err
    assert item_count(filled) == before

    contracts = tmp_path / "contracts.csv"
    contracts.write_text(f"customer_id,vendor,metric,quantity,effective_from\nnobody,keepnet,seats,-1,{PERIOD}\n")
    code, _, err = run(capsys, "contracts", "import", str(contracts), *table)
    assert code == 1 and "unknown customer 'nobody'" in err and "keepnet has no metric 'seats'" in err
    assert item_count(filled) == before

    code, _, err = run(capsys, "customers", "import", str(tmp_path / "missing.csv"), *table)
    assert code == 1 and "cannot read" in err
    code, _, err = run(capsys, "reconcile", "--period", PERIOD, "--customer", "nobody", *table)
    assert code == 1 and "no customer 'nobody'" in err


def test_suggestions_accepted_as_shown(filled: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    table = ("--table", filled.table_name)
    code, out, _ = run(capsys, "customers", "suggest", "--period", PERIOD, *table)
    assert code == 0 and "none stored" in out and "acme" in out
    code, out, err = run(capsys, "customers", "suggest", "--period", PERIOD, "--accept", *table)
    assert code == 0 and "5 accepted suggestion(s)" in out, err
    code, out, _ = run(capsys, "customers", "unmapped", "--period", PERIOD, *table)
    assert "Every tenant with usage" in out

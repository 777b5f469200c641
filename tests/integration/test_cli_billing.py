"""Customers, contracts and reconciliation through the `usagewatch` command against moto's DynamoDB: the
monthly workflow end to end, imports all or nothing and idempotent, bad input one message with line numbers."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.cli_run import item_count, run
from tests.local_aws import LocalAws
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.reconcile import STATUS_ORDER
from usagewatch.store.billing import BillingStore
from usagewatch.stored import Total

STATUSES = set(STATUS_ORDER)

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
        "ACME", "Limited", "keepnet", "monthly_users", "130", "120", "+10", "under_billed", "USD", "15.00", "+1"
    ]  # fmt: skip
    header = lines[2].split()
    assert header == ["customer_name", "vendor", "metric", "used", "contracted", "difference", "status",
                      "unbilled_value", "change"]  # fmt: skip
    assert set(header) <= set(
        next(csv.reader(io.StringIO(run(capsys, "reconcile", "--period", PERIOD, "--csv", *table)[1])))
    )
    # The lines to act on, then one line counting the rest.
    table_lines = [line for line in lines[4:] if line.startswith(("ACME", "Globex", "Initech"))]
    assert [next(w for w in line.split() if w in STATUSES) for line in table_lines] == [
        "under_billed",
        "unmapped",
        "over_billed",
    ], out
    assert "... and 2 more line(s) (1 no_contract, 1 ok): --all shows every line." in out
    assert "Globex" in out and "Acme Ltd" not in out  # customers by name; the tenant of an unmapped line by name too
    assert "1 under_billed, 0 incomplete, 1 unmapped, 1 no_contract, 1 over_billed, 1 ok;" in out
    assert "Unbilled: ACME Limited USD 15.00; USD 15.00 for the month." in out

    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--all", *table)
    assert code == 0 and " no_contract " in out and " ok " in out and "more line(s)" not in out
    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--status", "over_billed,ok", *table)
    shown = [
        w
        for line in out.splitlines()[4:]
        if line.startswith(("ACME", "Globex", "Initech"))
        for w in line.split()
        if w in STATUSES
    ]
    assert code == 0 and sorted(shown) == ["ok", "over_billed"], out
    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--status", "over_billed", "--json", *table)
    assert code == 0 and {json.loads(line)["status"] for line in out.splitlines()} <= {"over_billed", "total"}

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


def test_accepting_suggestions_keeps_what_a_stored_customer_already_has(
    filled: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = ("--table", filled.table_name)
    first = tmp_path / "first.csv"
    first.write_text(
        "customer_id,customer_name,vendor,account_id,tenant_id,external_ref\nacme,Acme,keepnet,kn-main,c-1,CW-19\n"
    )
    assert run(capsys, "customers", "import", str(first), *table)[0] == 0
    code, out, err = run(capsys, "customers", "suggest", "--period", PERIOD, "--accept", *table)
    assert code == 0 and "accepted suggestion(s)" in out, err
    (acme,) = [c for c in BillingStore(filled.store()).customers() if c.customer_id == "acme"]
    assert acme.external_ref == "CW-19" and acme.name == "Acme"


def test_a_mapping_says_what_it_did_and_can_be_undone(
    filled: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = ("--table", filled.table_name)
    header = "customer_id,customer_name,vendor,account_id,tenant_id\n"
    first = tmp_path / "first.csv"
    first.write_text(header + "acme,Acme,keepnet,kn-main,c-1\nglobex,Globex,keepnet,kn-main,c-2\n")
    assert run(capsys, "customers", "import", str(first), *table)[0] == 0

    # A tenant never collected under that account, and an account that does not exist: refused by line.
    unseen = tmp_path / "unseen.csv"
    unseen.write_text(header + "acme,Acme,keepnet,kn-main,c-1\nacme,Acme,keepnet,no-such-account,c-9\n")
    code, _, err = run(capsys, "customers", "import", str(unseen), *table)
    assert code == 1 and "line 3: tenant keepnet/no-such-account/c-9 has no usage" in err and "--allow-unseen" in err
    code, out, _ = run(capsys, "customers", "import", str(unseen), "--allow-unseen", *table)
    assert code == 0 and "not seen yet: keepnet/no-such-account/c-9 mapped to Acme" in out

    # Moving a tenant between customers is named, with the tenant's name.
    moved = tmp_path / "moved.csv"
    moved.write_text(header + "globex,Globex,keepnet,kn-main,c-1\n")
    code, out, _ = run(capsys, "customers", "import", str(moved), *table)
    assert code == 0 and "moved Acme Ltd (keepnet/kn-main/c-1): Acme -> Globex" in out

    code, out, err = run(capsys, "customers", "unmap", "keepnet/kn-main/c-1", "keepnet/kn-main/c-3", *table)
    assert code == 1 and "not mapped, nothing removed: keepnet/kn-main/c-3" in err
    code, out, _ = run(capsys, "customers", "unmap", "keepnet/kn-main/c-1", *table)
    assert code == 0 and "Unmapped 1 tenant(s)" in out
    code, out, _ = run(capsys, "customers", "unmapped", "--period", PERIOD, "--csv", *table)
    assert {r["tenant_id"] for r in csv.DictReader(io.StringIO(out))} == {"c-1", "c-3", "g-1", "g-2"}

    # Ignored tenants leave the unmapped list and the suggestions, until unignored.
    code, out, _ = run(capsys, "customers", "ignore", "keepnet/kn-main/c-3", "gravityzone/gz-main/g-2", *table)
    assert code == 0 and "2 tenant(s) changed" in out
    code, out, _ = run(capsys, "customers", "unmapped", "--period", PERIOD, "--csv", *table)
    assert {r["tenant_id"] for r in csv.DictReader(io.StringIO(out))} == {"c-1", "g-1"}
    code, out, _ = run(capsys, "customers", "suggest", "--period", PERIOD, "--csv", *table)
    assert {r["tenant_id"] for r in csv.DictReader(io.StringIO(out))} == {"c-1", "g-1"}
    # ... and the reconciliation's unmapped lines, which the monthly report counts.
    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--status", "unmapped", "--json", *table)
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and {r["tenant_id"] for r in rows if r["status"] == "unmapped"} == {"c-1", "g-1"}
    code, out, _ = run(capsys, "customers", "unignore", "gravityzone/gz-main/g-2", *table)
    assert code == 0 and "1 tenant(s) changed" in out
    code, out, _ = run(capsys, "customers", "unmapped", "--period", PERIOD, "--csv", *table)
    assert {r["tenant_id"] for r in csv.DictReader(io.StringIO(out))} == {"c-1", "g-1", "g-2"}


def test_microsoft_tenant_ids_compare_without_case(
    aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = aws.store()
    guid = "6f1d3c9e-0b7a-4c55-9a51-0f2d7e1b8c44"
    record = UsageRecord("microsoft365", "partner", Tenant(guid, "Contoso"), "spb", 33, "seats", Window.month(NOW))
    store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    mapping = tmp_path / "m.csv"
    mapping.write_text(
        f"customer_id,customer_name,vendor,account_id,tenant_id\ncontoso,Contoso,microsoft365,partner,{guid.upper()}\n"
    )
    code, out, err = run(capsys, "customers", "import", str(mapping), "--table", aws.table_name)
    assert code == 0 and "not seen" not in out, err
    from usagewatch.store.billing import BillingStore

    assert [m.tenant.tenant_id for m in BillingStore(store).mappings()] == [guid]  # as the collector stores it
    code, out, _ = run(capsys, "customers", "unmap", f"microsoft365/partner/{guid.upper()}", "--table", aws.table_name)
    assert code == 0 and BillingStore(store).mappings() == []


def test_contract_history_only_moves_forward(
    filled: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from decimal import Decimal

    from usagewatch.store.billing import BillingStore

    table = ("--table", filled.table_name)
    mapping = tmp_path / "m.csv"
    mapping.write_text("customer_id,customer_name,vendor,account_id,tenant_id\nacme,Acme,keepnet,kn-main,c-1\n")
    assert run(capsys, "customers", "import", str(mapping), *table)[0] == 0
    header = "customer_id,vendor,metric,quantity,effective_from,effective_to,agreement,unit_price\n"
    last = NOW.previous()
    first = tmp_path / "first.csv"
    first.write_text(header + f"acme,keepnet,monthly_users,100,{last.previous()},{last},,0.10\n")
    assert run(capsys, "contracts", "import", str(first), *table)[0] == 0

    overlap = tmp_path / "overlap.csv"
    overlap.write_text(header + f"acme,keepnet,monthly_users,120,{last},,,\n")
    code, _, err = run(capsys, "contracts", "import", str(overlap), *table)
    assert code == 1 and "line 2: overlaps the stored version" in err

    change = tmp_path / "change.csv"
    change.write_text(header + f"acme,keepnet,monthly_users,110,{last.previous()},{last},,0.10\n")
    code, _, err = run(capsys, "contracts", "import", str(change), *table)
    assert code == 1 and "a month already ended: add --amend" in err
    code, out, _ = run(capsys, "contracts", "import", str(change), "--amend", *table)
    assert code == 0 and "Amended months already ended" in out
    [contract] = BillingStore(filled.store()).contracts("keepnet")
    assert contract.quantity == Decimal(110) and contract.unit_price == Decimal("0.10") and contract.amended_at

    following = tmp_path / "following.csv"
    following.write_text(header + f"acme,keepnet,monthly_users,130,{NOW},,,\n")
    assert run(capsys, "contracts", "import", str(following), *table)[0] == 0
    code, _, err = run(capsys, "contracts", "end", "acme", "keepnet", "monthly_users", "--last", str(last), *table)
    assert code == 1 and "a later version starts" in err
    code, out, _ = run(capsys, "contracts", "end", "acme", "keepnet", "monthly_users", "--last", str(NOW), *table)
    assert code == 0 and f"last billed month {NOW}" in out
    ended = [c for c in BillingStore(filled.store()).contracts("keepnet") if c.effective_from == NOW]
    assert ended[0].effective_to == NOW and ended[0].amended_at is None


def test_without_a_period_the_last_month_that_ended_is_used_and_said(
    filled: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    table = ("--table", filled.table_name)
    code, out, err = run(capsys, "customers", "unmapped", *table)  # only this month has been collected (totals)
    assert code == 0 and f"--period not given: using {PERIOD} (the latest month collected" in err
    assert out.startswith(f"Unmapped tenants, {PERIOD}")

    last = str(NOW.previous())
    filled.store().write_totals([Total("keepnet", "kn-main", last, "monthly_users", "users", 176, 3, 0, f"{last}-28")])
    for argv, first in (
        (("customers", "unmapped"), f"Unmapped tenants, {last}"),
        (("customers", "suggest"), f"Suggestions, {last}"),
        (("reconcile",), f"Billed versus used, {last}"),
    ):
        code, out, err = run(capsys, *argv, *table)
        assert code == 0 and f"--period not given: using {last} (the last month that ended)" in err, (argv, err)
        assert out.startswith(first), (argv, out)
    code, out, err = run(capsys, "customers", "unmapped", "--csv", *table)
    assert out.startswith("vendor,account_id,tenant_id,tenant_name\n") and last in err

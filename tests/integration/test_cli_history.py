"""`usagewatch history` against moto's DynamoDB: month-by-month values from the stored items, the change, a
sparkline (ASCII when stdout cannot take UTF-8), machine formats, and one-line errors."""

from __future__ import annotations

import io
import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.integration.test_cli import run
from tests.local_aws import LocalAws
from usagewatch import cli
from usagewatch.cli.history import changes, sparkline
from usagewatch.model import Period, Tenant, UsageRecord, Window

# 2026-01 .. 2026-11, with 2026-07 missing (the customer was not collected that month).
MONTHLY = {"2026-01": 100, "2026-02": 130, "2026-03": 130, "2026-04": 120, "2026-05": 160, "2026-06": 150}
MONTHLY |= {"2026-08": 200, "2026-09": 210, "2026-10": 260, "2026-11": 240}


@pytest.fixture
def stored(aws: LocalAws) -> LocalAws:
    store = aws.store()
    tenant = Tenant("c-42", "Acme Logistik GmbH")
    for period, value in MONTHLY.items():
        month = Period.parse(period)
        window = Window.month(month)
        records = [
            UsageRecord("keepnet", "kn-main", tenant, "monthly_users", value, "users", window),
            UsageRecord("keepnet", "kn-main", tenant, "target_users", 300, "users", window, quota=500),
        ]
        at = month.start + timedelta(days=27)
        store.add_tenant(records, as_of=at, collected_at=at)
    store.flush()
    return aws


ARGS = ("history", "--vendor", "keepnet", "--account", "kn-main", "--tenant", "c-42", "--until", "2026-11")


def test_month_by_month_with_the_change_and_a_sparkline(stored: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *ARGS, "--metric", "monthly_users", "--table", stored.table_name)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Keepnet account kn-main, Acme Logistik GmbH (c-42): 2025-12 to 2026-11"
    assert "monthly_users (users)" in lines
    rows = {line.split()[0]: line.split()[1:] for line in lines if line[:4] in ("2025", "2026")}
    assert rows["2025-12"] == ["-", "-", "-"]
    assert rows["2026-02"] == ["130", "+30", "+30.0%"]
    assert rows["2026-04"] == ["120", "-10", "-7.7%"]
    assert rows["2026-07"] == ["-", "-", "-"] and rows["2026-08"] == ["200", "-", "-"]  # no month before it known
    assert rows["2026-11"] == ["240", "-20", "-7.7%"]
    trend = next(line for line in lines if line.startswith("trend "))
    # Dec (none), 100 lowest, ..., Jul (none), ..., 260 highest.
    assert trend == "trend  ▁▂▂▂▄▃ ▅▆█▇  (low 100, high 260)"
    assert "target_users" not in out


def test_every_metric_without_metric_and_ascii_when_stdout_is_not_utf8(
    stored: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(buffer, encoding="ascii"))
    code = cli.main([*ARGS, "--months", "3", "--table", stored.table_name])
    sys.stdout.flush()
    out = buffer.getvalue().decode("ascii")
    assert code == 0
    assert "monthly_users (users)" in out and "target_users (users)" in out
    assert "trend _#=  (low 210, high 260)" in out
    assert "trend ~~~  (low 300, high 300)" in out  # flat: the middle of the ramp


def test_json_and_csv_for_machines(stored: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, *ARGS, "--metric", "monthly_users", "--months", "2", "--json", "--table", stored.table_name
    )
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [
        {
            "vendor": "keepnet",
            "account_id": "kn-main",
            "tenant_id": "c-42",
            "tenant_name": "Acme Logistik GmbH",
            "metric": "monthly_users",
            "period": "2026-10",
            "value": 260,
            "unit": "users",
        },
        {
            "vendor": "keepnet",
            "account_id": "kn-main",
            "tenant_id": "c-42",
            "tenant_name": "Acme Logistik GmbH",
            "metric": "monthly_users",
            "period": "2026-11",
            "value": 240,
            "unit": "users",
            "change": -20,
            "change_percent": -7.7,
        },
    ]
    code, out, _ = run(capsys, *ARGS, "--months", "1", "--csv", "--table", stored.table_name)
    assert code == 0
    assert (
        out.splitlines()[0]
        == "vendor,account_id,tenant_id,tenant_name,metric,period,value,unit,change,change_percent,quota"
    )
    assert out.splitlines()[2].endswith("target_users,2026-11,300,users,,,500")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--months", "0"), "--months: 1 to 120"),
        (("--until", "11/2026"), "--until: expected YYYY-MM"),
        (("--metric", "target_user"), "no usage stored for metric 'target_user' of tenant 'c-42'"),
        (("--until", "2025-06"), "no usage stored for tenant 'c-42' of keepnet account 'kn-main', 2024-07 to 2025-06"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_1(
    stored: LocalAws, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], words: str
) -> None:
    argv = [a for a in ARGS if a not in ("--until", "2026-11")] if "--until" in extra else list(ARGS)
    code, out, err = run(capsys, *argv, *extra, "--table", stored.table_name)
    assert (code, out) == (1, "")
    assert words in err and len(err.strip().splitlines()) == 1


def test_the_pure_parts() -> None:
    assert changes([None, 10, 15, None, 5, 0, 4]) == [
        (None, None),
        (None, None),
        (5, 50.0),
        (None, None),
        (None, None),
        (-5, -100.0),
        (4, None),  # from 0: a rise, no share
    ]
    assert sparkline([]) == "" and sparkline([None, None]) == "  "
    assert sparkline([0, 7, 3.5]) == "▁█▅" and sparkline([0, 7, 3.5], ascii_only=True) == "_#="


def test_a_customer_shows_every_tenant_mapped_to_it(
    stored: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = stored.store()
    for period, value in (("2026-10", 30), ("2026-11", 33)):
        month = Period.parse(period)
        record = UsageRecord(
            "gravityzone", "gz-main", Tenant("g-7", "ACME Logistik"), "endpoint_monthly_usage", value, "seats",
            Window.month(month),
        )  # fmt: skip
        at = month.start + timedelta(days=27)
        store.add_usage(record, as_of=at, collected_at=at)
    store.flush()
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(
        "customer_id,customer_name,vendor,account_id,tenant_id\n"
        "acme,Acme Logistik,keepnet,kn-main,c-42\nacme,Acme Logistik,gravityzone,gz-main,g-7\n"
    )
    table = ("--table", stored.table_name)
    assert run(capsys, "customers", "import", str(mapping), "--allow-unseen", *table)[0] == 0

    base = ("history", "--customer", "acme", "--until", "2026-11", "--months", "2", *table)
    code, out, err = run(capsys, *base)
    assert (code, err) == (0, "")
    heads = [line for line in out.splitlines() if " account " in line]
    assert heads == [
        "GravityZone account gz-main, ACME Logistik (g-7): 2026-10 to 2026-11",
        "Keepnet account kn-main, Acme Logistik GmbH (c-42): 2026-10 to 2026-11",
    ]
    assert "endpoint_monthly_usage (seats)" in out and "monthly_users (users)" in out
    code, out, _ = run(capsys, *base, "--vendor", "gravityzone", "--json")
    assert code == 0 and [(r["tenant_id"], r["value"]) for r in map(json.loads, out.splitlines())] == [
        ("g-7", 30),
        ("g-7", 33),
    ]
    code, out, err = run(capsys, "history", "--customer", "nobody", *table)
    assert (code, out) == (1, "") and "no customer 'nobody'" in err
    code, out, err = run(capsys, "history", "--tenant", "c-42", *table)
    assert (code, out) == (1, "") and "--tenant needs --vendor and --account" in err
    code, out, err = run(capsys, "history", "--customer", "acme", "--tenant", "c-42", *table)
    assert code == 1 and "not allowed with argument" in err

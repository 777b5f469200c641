"""`usagewatch migrate` on a table filled by the store before the one-item-per-tenant shape (moto).

tests/fixtures/old_shape_items.json was dumped from a table the previous store wrote (two runs of two accounts,
one customer marked removed, a ThousandEyes organisation with its own billing window).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.local_aws import LocalAws
from usagewatch import cli
from usagewatch.store import OldShapeError

FIXTURE = Path(__file__).parent.parent / "fixtures" / "old_shape_items.json"
PERIOD = "2026-11"


@pytest.fixture
def old_table(aws: LocalAws) -> LocalAws:
    ddb = aws.client("dynamodb")
    for item in json.loads(FIXTURE.read_text())["items"]:
        ddb.put_item(TableName=aws.table_name, Item=item)
    return aws


def _cli(aws: LocalAws, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--table", aws.table_name])
    out, err = capsys.readouterr()
    return code, out, err


def test_readers_meeting_the_old_shape_name_the_command(old_table: LocalAws, capsys: Any) -> None:
    with pytest.raises(OldShapeError, match=f"usagewatch migrate --table {old_table.table_name}"):
        old_table.store().period_usage(PERIOD)
    with pytest.raises(OldShapeError, match="usagewatch migrate"):
        old_table.store().tenant_usage("keepnet", "kn-main", "c-1", PERIOD)
    code, _out, err = _cli(old_table, capsys, "report", "--period", PERIOD)
    assert code == 2 and "usagewatch migrate --table" in err and "Traceback" not in err


def test_a_dry_run_counts_and_writes_nothing(old_table: LocalAws, capsys: Any) -> None:
    before = sorted(json.dumps(i, sort_keys=True, default=str) for i in old_table.items())

    code, out, err = _cli(old_table, capsys, "migrate", "--dry-run")

    assert code == 0, err
    assert "Dry run" in out and "7 old usage and 14 old snapshot item(s)" in out
    assert "would write 4 tenant item(s) and 8 snapshot(s)" in out
    assert "scanned" in err, "progress on stderr"
    assert sorted(json.dumps(i, sort_keys=True, default=str) for i in old_table.items()) == before


def test_migrate_rewrites_every_tenant_keeps_every_number_and_is_idempotent(old_table: LocalAws, capsys: Any) -> None:
    code, out, err = _cli(old_table, capsys, "migrate")
    assert code == 0, err
    assert "wrote 4 tenant item(s) and 8 snapshot(s)" in out

    store = old_table.store()
    usage = {(u.record.account_id, u.record.tenant_id, u.record.metric): u for u in store.period_usage(PERIOD)}
    assert {k: u.record.value for k, u in usage.items()} == {
        ("kn-main", "c-1", "licensed_users"): 43,
        ("kn-main", "c-1", "monthly_users"): 21,
        ("kn-main", "c#2", "licensed_users"): 120,
        ("kn-main", "c#2", "monthly_users"): 60,
        ("kn-main", "leaver", "licensed_users"): 7,
        ("kn-main", "leaver", "monthly_users"): 3,
        ("te", "org-9", "cloud_units"): 1237.5,
    }
    cloud = usage[("te", "org-9", "cloud_units")].record
    assert (cloud.quota, cloud.projected, cloud.limit_exceeded, cloud.projected_next_period) == (
        5000,
        2400.25,
        False,
        2500,
    )
    assert str(cloud.window.start) == "2026-11-05 08:00:00+00:00", "its own billing window"
    assert usage[("kn-main", "c#2", "licensed_users")].record.tenant.parent_tenant_id == "c-1"
    assert {k[1] for k, u in usage.items() if u.removed_at} == {"leaver"}
    assert usage[("kn-main", "c-1", "licensed_users")].collected_at == "2026-11-22T12:00:05Z"
    history = store.metric_history("keepnet", "kn-main", "c-1", "licensed_users")
    assert [(h.as_of, h.record.value) for h in history] == [("2026-11-22T06:00:00Z", 40), ("2026-11-22T12:00:00Z", 43)]
    assert not [i for i in old_table.items() if i["pk"] == f"USAGE#{PERIOD}"], "old items deleted"
    assert [t.value for t in store.period_totals(PERIOD)] == [170], "totals untouched"

    again_code, again, _err = _cli(old_table, capsys, "migrate")
    assert again_code == 0 and again.startswith("Nothing to migrate")
    code, report, err = _cli(old_table, capsys, "report", "--period", PERIOD, "--json")
    assert code == 0, err
    assert len([line for line in report.splitlines() if '"record_type": "usage"' in line]) == 7

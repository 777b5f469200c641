"""`make demo-shell`: a saved demo (small, made here) restored into an embedded AWS on a loopback port, and the
`usagewatch` commands the demo printed run as printed, through the real CLI, in the shell it opens."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests import demo_aws
from tests.demo_aws import shell_command
from tests.local_aws import LocalAws, provision
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.stored import Total

ROOT = Path(__file__).resolve().parents[2]
TABLE = "usagewatch-demo-usage"
BUCKET = "usagewatch-demo-reports"
PERIOD = Period(2026, 11)
AT = datetime(2026, 11, 22, 6, tzinfo=UTC)
USAGE = (
    ("c-1", "Acme Logistics Oy", 130),
    ("c-2", "Globex GmbH", 40),
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def saved(aws: LocalAws, tmp_path: Path) -> tuple[Path, list[str]]:
    """A demo state saved the way the demo saves it: its table, its report bucket and the commands it printed."""
    demo = provision(table_name=TABLE, topic_name="usagewatch-demo-alerts")
    store = demo.store()
    for tid, name, value in USAGE:
        record = UsageRecord(
            "keepnet", "keepnet-msp", Tenant(tid, name), "monthly_users", value, "users", Window.month(PERIOD)
        )
        store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    store.write_totals(
        [Total("keepnet", "keepnet-msp", str(PERIOD), "monthly_users", "users", 170, 2, 0, "2026-11-22T06:00Z")]
    )
    demo.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    demo.client("s3").put_object(Bucket=BUCKET, Key="reports/2026-11/billing.html", Body=b"<html>report</html>")
    mapping = tmp_path / "suggestions.csv"
    mapping.write_text(
        "customer_id,customer_name,vendor,account_id,tenant_id\nacme,Acme Logistics,keepnet,keepnet-msp,c-1\n",
        encoding="utf-8",
    )
    table = ["--table", TABLE]
    commands = [
        shell_command(["report", "--period", "2026-11", "--vendor", "keepnet", "--csv", *table]),
        shell_command(["customers", "unmapped", "--period", "2026-11", *table]),
        shell_command(["customers", "import", str(mapping), *table]),
        shell_command(["reconcile", "--period", "2026-11", "--json", *table]),
    ]
    state = demo_aws.save(tmp_path / "aws", tables=[TABLE], buckets=[BUCKET], commands=commands)
    return state, commands


def shell(state: Path, port: int, stdin: str) -> subprocess.CompletedProcess[str]:
    """scripts/demo-shell's program, its shell fed on stdin; nothing of this process's AWS or PATH is passed on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "USAGEWATCH_TABLE"}
    env |= {"PATH": "/usr/bin:/bin", "SHELL": "/bin/bash", "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}"}
    return subprocess.run(
        [sys.executable, "-m", "tests.demo_aws", "--port", str(port), "--state", str(state)],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_printed_commands_run_as_printed_on_the_restored_demo(saved: tuple[Path, list[str]]) -> None:
    state, commands = saved
    port = free_port()
    checks = (
        'echo "ENDPOINT=$AWS_ENDPOINT_URL"; command -v usagewatch; '
        'echo "CSV-LINES=$(usagewatch report --period 2026-11 --vendor keepnet --csv | wc -l)"'
    )
    result = shell(state, port, "\n".join([*commands, checks, "exit 7"]) + "\n")
    out = result.stdout
    assert result.returncode == 7, result.stderr  # the shell's own exit status is demo-shell's
    assert f"Embedded AWS (moto server) on http://127.0.0.1:{port}" in out
    assert f"table {TABLE}: " in out and f"bucket {BUCKET}: 1 objects" in out
    assert all(f"  {command}" in out for command in commands)  # the banner lists the demo's commands
    csv_lines = [line for line in out.splitlines() if line.startswith("keepnet,keepnet-msp,")]
    assert [(line.split(",")[3], line.split(",")[7]) for line in csv_lines] == [
        ("Acme Logistics Oy", "130"),
        ("Globex GmbH", "40"),
    ]
    assert "2 unmapped tenant(s)" in out
    assert "Imported " in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    acme = [line for line in lines if line.get("customer_id") == "acme"]
    assert acme and acme[0]["used"] == 130, lines
    assert f"ENDPOINT=http://127.0.0.1:{port}" in out
    assert f"{ROOT}/.venv/bin/usagewatch" in out
    assert "CSV-LINES=3" in out  # USAGEWATCH_TABLE: the demo's table without --table too
    assert f"Embedded AWS on http://127.0.0.1:{port} stopped" in out
    assert "Traceback" not in result.stderr, result.stderr


def test_without_a_saved_demo_it_says_to_run_the_demo(tmp_path: Path) -> None:
    result = shell(tmp_path / "nothing", free_port(), "")
    assert result.returncode == 1
    assert f"no saved demo in {tmp_path / 'nothing'}: run `make demo` first" in result.stderr


def test_a_busy_port_is_named(saved: tuple[Path, list[str]]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = shell(saved[0], port, "")
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr

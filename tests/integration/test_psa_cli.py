"""The ConnectWise link through the real `usagewatch psa` commands: moto's DynamoDB and Secrets Manager, the
ConnectWise simulator over HTTP on loopback. Sync, plan, approve, apply (again, dry, twice at once), a stale line, a
cancelled agreement, a throttled run, the change bound, and contract lines owned by the sync."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.cli_run import item_count, run
from tests.local_aws import LocalAws
from tests.simulators.base import Fault
from tests.simulators.connectwise import ConnectWiseSimulator
from tests.virtual_time import PacingClock
from usagewatch import cli
from usagewatch.contracts import Contract
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.psa.connectwise import ConnectWiseClient
from usagewatch.redaction import redactor
from usagewatch.store.billing import BillingStore
from usagewatch.store.table import Table
from usagewatch.stored import Total

NOW = Period.of(datetime.now(UTC))
PERIOD = str(NOW)
AT = datetime(NOW.year, NOW.month, 1, 6, tzinfo=UTC)
USAGE = (
    ("keepnet", "kn-main", "c-1", "Acme Ltd", "monthly_users", 130, "users"),
    ("keepnet", "kn-main", "c-2", "Globex GmbH", "monthly_users", 40, "users"),
    ("gravityzone", "gz-main", "g-1", "ACME Limited", "endpoint_monthly_usage", 30, "seats"),
)
MAPPING = (
    "customer_id,customer_name,vendor,account_id,tenant_id,external_ref\n"
    "acme,Acme Ltd,keepnet,kn-main,c-1,ACME\n"
    "acme,Acme Ltd,gravityzone,gz-main,g-1,ACME\n"
    "globex,Globex GmbH,keepnet,kn-main,c-2,GLOBEX\n"
)
PRODUCTS = (
    "product_identifier,vendor,metric\nKN-USERS,keepnet,monthly_users\nGZ-SEATS,gravityzone,endpoint_monthly_usage\n"
)


@pytest.fixture
def pacing(monkeypatch: pytest.MonkeyPatch) -> PacingClock:
    """The client's pacing (10 requests a second), its back-offs and the simulator's rate window on one clock
    whose sleeps return at once: the throttling is as real, the waiting instant."""
    return PacingClock().install_on(monkeypatch, ConnectWiseClient.__init__)


@pytest.fixture
def sim(pacing: PacingClock) -> Iterator[ConnectWiseSimulator]:
    redactor.clear()
    with ConnectWiseSimulator(clock=pacing) as simulator:
        yield simulator


@pytest.fixture
def world(aws: LocalAws, sim: ConnectWiseSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    store = aws.store()
    for vendor, account, tid, name, metric, value, unit in USAGE:
        for period in (NOW.previous(), NOW):
            record = UsageRecord(vendor, account, Tenant(tid, name), metric, value, unit, Window.month(period))
            store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    stamp = AT.isoformat()
    store.write_totals(
        [
            Total("keepnet", "kn-main", PERIOD, "monthly_users", "users", 170, 2, 0, stamp),
            Total("gravityzone", "gz-main", PERIOD, "endpoint_monthly_usage", "seats", 30, 1, 0, stamp),
        ]
    )
    boto3.client("secretsmanager").create_secret(Name="cw", SecretString=json.dumps(sim.connection()))
    monkeypatch.setenv("USAGEWATCH_PSA_SECRET", "cw")
    monkeypatch.setenv("USAGEWATCH_TABLE", aws.table_name)
    acme = sim.add_company("ACME", "Acme Ltd")
    globex = sim.add_company("GLOBEX", 'Globex "Bros"')
    stray = sim.add_company("INITECH", "Initech")
    a1 = sim.add_agreement(acme, "Managed services")
    a2 = sim.add_agreement(globex, "Managed services")
    a3 = sim.add_agreement(stray, "Managed services")
    ids = {
        "acme_agreement": a1,
        "globex_agreement": a2,
        "acme_kn": sim.add_addition(a1, "KN-USERS", 100, unit_price=Decimal("2.50")),
        "acme_gz": sim.add_addition(a1, "GZ-SEATS", 30, unit_price=Decimal("4.00")),
        "acme_other": sim.add_addition(a1, "BACKUP-TB", 3),
        "globex_kn": sim.add_addition(a2, "KN-USERS", Decimal("35"), unit_price=Decimal("2.50")),
        "stray": sim.add_addition(a3, "KN-USERS", 9),
    }
    (tmp_path / "mapping.csv").write_text(MAPPING)
    (tmp_path / "products.csv").write_text(PRODUCTS)
    return ids


def ready(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Customers and products imported, then one sync."""
    assert run(capsys, "customers", "import", str(tmp_path / "mapping.csv"))[0] == 0
    code, _, err = run(capsys, "psa", "products", "import", str(tmp_path / "products.csv"))
    assert code == 0, err
    code, _, err = run(capsys, "psa", "sync")
    assert code == 0, err


def planned(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    code, out, err = run(capsys, "psa", "plan", "--period", PERIOD, *extra)
    assert code == 0, err
    code, out, err = run(capsys, "psa", "approve", "--period", PERIOD, "--all", "--by", "alice")
    assert code == 0, err
    return out


def test_check_reports_the_version_and_bad_keys_in_one_line(
    world: dict[str, int], sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "psa", "check")
    assert code == 0 and sim.version in out
    bad = json.dumps(sim.connection(private_key="wrong-key-value"))
    boto3.client("secretsmanager").create_secret(Name="cw-bad", SecretString=bad)
    code, out, err = run(capsys, "psa", "check", "--psa-secret", "cw-bad")
    assert code == 2 and "refused the API keys" in err and len(err.strip().splitlines()) == 1
    assert "wrong-key-value" not in err


def test_products_import_is_all_or_nothing_and_warns_of_unknown_products(
    world: dict[str, int], aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("product_identifier,vendor,metric\nKN-USERS,keepnet,monthly_users\nX,nosuch,m\n")
    before = item_count(aws)
    code, _, err = run(capsys, "psa", "products", "import", str(bad))
    assert code == 1 and "line 3: vendor: unknown 'nosuch'" in err and "nothing imported" in err
    assert item_count(aws) == before
    extra = tmp_path / "extra.csv"
    extra.write_text(PRODUCTS + "NOT-IN-CATALOG,keepnet,monthly_users\n")
    code, out, err = run(capsys, "psa", "products", "import", str(extra))
    assert code == 0, err
    assert "3 written" in out and "line 4: product 'NOT-IN-CATALOG' is not in the ConnectWise catalogue" in out
    code, out, _ = run(capsys, "psa", "products", "import", str(extra))
    assert code == 0 and out.startswith("Nothing changed")


def test_sync_writes_contract_lines_once_and_lists_what_it_could_not_use(
    world: dict[str, int], aws: LocalAws, sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert run(capsys, "customers", "import", str(tmp_path / "mapping.csv"))[0] == 0
    assert run(capsys, "psa", "products", "import", str(tmp_path / "products.csv"))[0] == 0
    before = item_count(aws)
    code, out, err = run(capsys, "psa", "sync", "--dry-run")
    assert code == 0, err
    assert "3 contract version(s) would be written" in out and item_count(aws) == before
    code, out, err = run(capsys, "psa", "sync")
    assert code == 0, err
    assert "Wrote 3 contract version(s)" in out
    assert f"acme keepnet monthly_users: 100 (from {PERIOD}, line {world['acme_agreement']}/{world['acme_kn']})" in out
    assert "product BACKUP-TB is not mapped" in out
    assert "company INITECH" in out and "no customer has external_ref" in out
    after = item_count(aws)
    code, out, _ = run(capsys, "psa", "sync")
    assert code == 0 and "Nothing changed" in out and item_count(aws) == after
    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--csv")
    rows = {(r["customer_id"], r["metric"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("acme", "monthly_users")]["contracted"] == "100"

    # A CSV import may not change a line the sync owns: refused with its line number, nothing written.
    contracts = tmp_path / "contracts.csv"
    contracts.write_text(
        "customer_id,vendor,metric,quantity,effective_from\n"
        f"globex,gravityzone,endpoint_monthly_usage,5,{PERIOD}\n"
        f"acme,keepnet,monthly_users,120,{PERIOD}\n"
    )
    code, _, err = run(capsys, "contracts", "import", str(contracts))
    assert code == 1 and "line 3: acme keepnet monthly_users is read from the PSA" in err
    assert item_count(aws) == after
    # Months before the sync took the line over stay the file's.
    contracts.write_text(
        f"customer_id,vendor,metric,quantity,effective_from,effective_to\nacme,keepnet,monthly_users,90,{NOW.previous()},{NOW.previous()}\n"
    )
    code, out, err = run(capsys, "contracts", "import", str(contracts), "--amend")
    assert code == 0, err
    after = item_count(aws)

    # The agreement is cancelled: its contracts end, from this month on, and nothing else changes.
    sim.cancel_agreement(world["acme_agreement"])
    code, out, err = run(capsys, "psa", "sync")
    assert code == 0, err
    assert "Wrote 2 contract version(s)" in out and "acme keepnet monthly_users: removed" in out
    code, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--csv")
    rows = {(r["customer_id"], r["metric"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("acme", "monthly_users")]["status"] == "no_contract"
    assert rows[("globex", "monthly_users")]["contracted"] == "35"


def test_sync_leaves_a_product_on_two_lines_of_one_customer_unwritten(
    world: dict[str, int], sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim.add_addition(world["globex_agreement"], "KN-USERS", 5)
    ready(capsys, tmp_path)
    code, out, _ = run(capsys, "psa", "sync", "--dry-run")
    assert code == 0 and "globex keepnet monthly_users: product on 2 lines" in out and "ambiguous" in out
    _, out, _ = run(capsys, "reconcile", "--period", PERIOD, "--csv")
    rows = {(r["customer_id"], r["metric"]): r for r in csv.DictReader(io.StringIO(out))}
    assert rows[("globex", "monthly_users")]["status"] == "no_contract"


def test_plan_approve_apply_then_apply_again_writes_nothing(
    world: dict[str, int], aws: LocalAws, sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(capsys, tmp_path)
    code, out, err = run(capsys, "psa", "plan", "--period", PERIOD)
    assert code == 0, err
    # acme: 130 used, 100 billed; globex: 40 used, 35 billed; gravityzone: 30 = 30, nothing.
    assert "2 proposal(s), 2 new, raises worth 87.50" in out
    code, out, _ = run(capsys, "psa", "plan", "--period", PERIOD)
    assert "2 proposal(s), 0 new" in out
    code, out, _ = run(capsys, "psa", "approve", "--period", PERIOD, "--all", "--by", "alice")
    assert code == 0 and "Approved 2 proposal(s)" in out

    code, out, err = run(capsys, "psa", "apply", "--period", PERIOD, "--dry-run")
    assert code == 0, err
    path = f"/finance/agreements/{world['acme_agreement']}/additions/{world['acme_kn']}"
    assert f'PATCH {path} [{{"op": "replace", "path": "quantity", "value": 130}}]' in out
    assert sim.patches() == []

    code, out, err = run(capsys, "psa", "apply", "--period", PERIOD, "--by", "bob")
    assert code == 0, err
    assert "2 applied" in out and len(sim.patches()) == 2
    assert sim.additions[world["acme_kn"]]["quantity"] == 130
    assert sim.additions[world["globex_kn"]]["quantity"] == 40
    code, out, _ = run(capsys, "psa", "apply", "--period", PERIOD, "--by", "bob")
    assert code == 0 and "Nothing to apply" in out and len(sim.patches()) == 2

    code, out, _ = run(capsys, "psa", "log", "--period", PERIOD, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 2
    assert {(r["approver"], r["applier"], r["outcome"], r["psa_status"]) for r in rows} == {
        ("alice", "bob", "applied", "200")
    }
    assert {(r["before"], r["after"]) for r in rows} == {("100", "130"), ("35", "40")}


def test_a_line_changed_in_the_psa_since_the_plan_is_stale_and_a_cancelled_one_skipped(
    world: dict[str, int], sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(capsys, tmp_path)
    planned(capsys)
    sim.set_quantity(world["acme_kn"], 110)
    sim.cancel_agreement(world["globex_agreement"])
    code, out, err = run(capsys, "psa", "apply", "--period", PERIOD)
    assert code == 0, err
    assert "2 stale" in out and "changed in the PSA since the plan (100 then, 110 now)" in out
    assert "cancelled since the plan" in out
    assert sim.patches() == []
    assert sim.additions[world["acme_kn"]]["quantity"] == 110


def test_two_applies_at_once_write_each_line_once(
    world: dict[str, int],
    sim: ConnectWiseSimulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ready(capsys, tmp_path)
    planned(capsys)
    # Each DynamoDB call is atomic in AWS; moto in-process is not across threads: one call at a time, as AWS does.
    lock = threading.Lock()
    call = Table.call

    def atomic(self: Table, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return call(self, *args, **kwargs)

    monkeypatch.setattr(Table, "call", atomic)
    sim.latency = 0.05
    codes: list[int] = []
    threads = [
        threading.Thread(
            target=lambda who=who: codes.append(cli.main(["psa", "apply", "--period", PERIOD, "--by", who]))
        )
        for who in ("run-1", "run-2")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, err = capsys.readouterr()
    assert codes == [0, 0], err
    assert len(sim.patches()) == 2  # two lines, each written once
    _, out, _ = run(capsys, "psa", "log", "--period", PERIOD, "--csv")
    assert [r["outcome"] for r in csv.DictReader(io.StringIO(out))] == ["applied", "applied"]


def test_a_throttled_apply_waits_and_writes(
    world: dict[str, int],
    sim: ConnectWiseSimulator,
    pacing: PacingClock,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    ready(capsys, tmp_path)
    planned(capsys)
    sim.rate_limit = (2, 1.0)
    code, out, err = run(capsys, "psa", "apply", "--period", PERIOD)
    assert code == 0, err
    assert "2 applied" in out
    assert any(response.status == 429 for _, response in sim.exchanges)
    assert any(wait >= 1 for wait in pacing.slept)  # it waited for the Retry-After (on the pacing clock)
    assert sim.additions[world["acme_kn"]]["quantity"] == 130


def test_past_the_change_bound_nothing_is_written(
    world: dict[str, int], sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(capsys, tmp_path)
    planned(capsys)
    code, _, err = run(capsys, "psa", "apply", "--period", PERIOD, "--max-lines", "1")
    assert code == 1 and "nothing written: 2 lines approved, more than the bound of 1" in err
    code, _, err = run(capsys, "psa", "apply", "--period", PERIOD, "--max-difference", "10")
    assert code == 1 and "a total difference of 35" in err
    assert sim.patches() == []
    code, out, _ = run(capsys, "psa", "apply", "--period", PERIOD, "--max-difference", "35")
    assert code == 0 and "2 applied" in out


def test_a_lost_answer_is_re_read_never_written_twice(
    world: dict[str, int], sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(capsys, tmp_path)
    planned(capsys)
    sim.inject(Fault("status", status=503, match=lambda r: r.method == "PATCH"))
    code, out, err = run(capsys, "psa", "apply", "--period", PERIOD)
    assert code == 0, err
    # The first line's PATCH was answered 503 and not done: re-read, marked failed, not sent again.
    assert "1 applied, 1 failed" in out and "re-read shows no change" in out
    assert len(sim.patches()) == 2
    _, out, _ = run(capsys, "psa", "log", "--period", PERIOD, "--csv")
    said = sorted(r["psa_status"] for r in csv.DictReader(io.StringIO(out)))
    assert said[0] == "200" and said[1].startswith("no answer")


def test_the_plan_of_an_ended_month_shows_its_under_billed_value_as_lost(
    world: dict[str, int], aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ready(capsys, tmp_path)
    # As a sync of last month left it: acme's Keepnet line from last month, billed 100.
    billing = BillingStore(aws.store())
    last = NOW.previous()
    line = f"{world['acme_agreement']}/{world['acme_kn']}"
    contract = Contract("acme", "keepnet", "monthly_users", Decimal(100), last, last, str(world["acme_agreement"]),
                        Decimal("2.50"), psa_line=line)  # fmt: skip
    billing.import_contracts([contract], what="test", sync=True)
    stamp = AT.isoformat()
    aws.store().write_totals([Total("keepnet", "kn-main", str(last), "monthly_users", "users", 170, 2, 0, stamp)])
    code, out, err = run(capsys, "psa", "plan", "--period", str(last))
    assert code == 0, err
    # globex's line of last month was not synced (the link began this month): the line billing it now is used.
    assert "2 proposal(s), 2 new, raises worth 87.50" in out
    assert f"{last} has ended" in out and "the 87.50 under-billed" in out and "lost, not recovered" in out


def test_check_names_a_wrong_client_id_and_a_missing_secret(
    world: dict[str, int], sim: ConnectWiseSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("secretsmanager").create_secret(
        Name="cw-client", SecretString=json.dumps(sim.connection(client_id="not-ours"))
    )
    code, _, err = run(capsys, "psa", "check", "--psa-secret", "cw-client")
    assert code == 2 and "clientId" in err
    code, _, err = run(capsys, "psa", "check", "--psa-secret", "no-such-secret")
    assert code == 2 and "PSA secret 'no-such-secret' not read" in err

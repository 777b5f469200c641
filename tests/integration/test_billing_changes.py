"""Billing changes all or nothing under crashes and concurrency, through the real `usagewatch` command:
a CLI process killed between its writes (against a moto server on loopback), two imports at once (threads,
one paused at a chosen write), and tables written before the commit protocol adopted as they are.

A change writes its marks and rolls forward in transactions of `TRANSACTION_SIZE` items (100, DynamoDB's limit);
the tests that need two of each set it to `BATCH` and import `CUSTOMERS` items, in process and in the killed CLI
alike, and `after_first_marks` keeps the production size with 110 items (moto refuses a transaction over 100)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.local_aws import REGION, LocalAws, provision
from usagewatch import cli
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.store import DynamoStore, billing_commit
from usagewatch.store.billing import BillingStore
from usagewatch.store.billing_commit import STALL_ENV, BillingCommits, Head

NOW = Period.of(datetime.now(UTC))
AT = datetime(NOW.year, NOW.month, 1, 6, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]
BATCH = 4  # items a transaction, for the tests that set it
CUSTOMERS = 6  # contracts: two transactions of marks, two of roll-forward, at BATCH


def seed_usage(store: DynamoStore, tenants: int) -> None:
    for i in range(tenants):
        record = UsageRecord(
            "keepnet", "kn-main", Tenant(f"t{i:03d}", f"Tenant {i:03d}"), "monthly_users", 5, "users", Window.month(NOW)
        )
        store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()


def mapping_csv(path: Path, tenants: int, owner: str | None = None) -> Path:
    rows = ["customer_id,customer_name,vendor,account_id,tenant_id"]
    for i in range(tenants):
        cid = owner or f"c{i:03d}"
        rows.append(f"{cid},Customer {cid},keepnet,kn-main,t{i:03d}")
    path.write_text("\n".join(rows) + "\n")
    return path


def contracts_csv(path: Path, quantity: int) -> Path:
    rows = ["customer_id,vendor,metric,quantity,effective_from"]
    rows += [f"c{i:03d},keepnet,monthly_users,{quantity},{NOW}" for i in range(CUSTOMERS)]
    path.write_text("\n".join(rows) + "\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def quantities(store: DynamoStore) -> set[Decimal]:
    return {c.quantity for c in BillingStore(store).contracts("keepnet")}


# --- a process killed between its writes ------------------------------------------------------------


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(billing_commit, "TRANSACTION_SIZE", BATCH)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield provision()
    finally:
        moto.stop()


def marked(aws: LocalAws) -> int:
    """Items carrying an import's mark."""
    raw = boto3.client("dynamodb").scan(TableName=aws.table_name, FilterExpression="attribute_exists(pending_import)")
    return int(raw["Count"])


def killed_after(writes: int, *argv: str) -> None:
    """`usagewatch argv` in its own process (transactions of BATCH items), SIGKILLed once it has made `writes`
    write calls."""
    env = {**os.environ, STALL_ENV: str(writes), "PYTHONPATH": f"{ROOT / 'shared'}{os.pathsep}{ROOT}"}
    code = (
        f"import sys; from usagewatch.store import billing_commit; billing_commit.TRANSACTION_SIZE = {BATCH}; "
        "from usagewatch.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        assert line.strip() == "stalled", line + child.stderr.read()
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(30)
    assert child.returncode == -signal.SIGKILL


def test_an_import_killed_between_writes_leaves_the_previous_set_whole(
    server: LocalAws, small_batches: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = ("--table", server.table_name)
    store = server.store()
    seed_usage(store, CUSTOMERS)
    assert run(capsys, "customers", "import", str(mapping_csv(tmp_path / "m.csv", CUSTOMERS)), *table)[0] == 0
    code, out, err = run(capsys, "contracts", "import", str(contracts_csv(tmp_path / "v1.csv", 10)), *table)
    assert code == 0 and f"{CUSTOMERS} item(s) written" in out, err

    # Writes: 1 the ticket, 2 the manifest, 3 and 4 the marks, 5 the commit, 6 and 7 the roll-forward.
    killed_after(3, "contracts", "import", str(contracts_csv(tmp_path / "v2.csv", 20)), *table)
    assert quantities(store) == {Decimal(10)}  # half the marks written, none of them in force
    assert marked(server) == BATCH  # the first of the two transactions of marks, and only it

    code, out, err = run(capsys, "customers", "unmapped", "--period", str(NOW), *table)
    assert code == 0 and "did not finish" in err and "v2.csv" in err and "none of it is in force" in err
    code, out, err = run(capsys, "contracts", "import", str(tmp_path / "v2.csv"), *table)
    assert code == 0 and f"{CUSTOMERS} item(s) written" in out and "did not finish" in err
    assert quantities(store) == {Decimal(20)}
    code, out, err = run(capsys, "contracts", "import", str(tmp_path / "v2.csv"), *table)
    assert code == 0 and out.startswith("Nothing changed") and err == ""

    # Killed after its commit, before rolling forward: the change is in force whole, and the next one finishes it.
    killed_after(5, "contracts", "import", str(contracts_csv(tmp_path / "v3.csv", 30)), *table)
    assert quantities(store) == {Decimal(30)}
    assert not BillingCommits(store).head().applied
    code, out, err = run(capsys, "contracts", "import", str(contracts_csv(tmp_path / "v4.csv", 40)), *table)
    assert code == 0 and f"{CUSTOMERS} item(s) written" in out and err == ""
    assert quantities(store) == {Decimal(40)}
    assert marked(server) == 0  # every mark rolled forward


# --- two at once --------------------------------------------------------------------------------------


@pytest.mark.parametrize("pause", ["after_read", "after_ticket", "after_first_marks"])
def test_two_imports_at_once_one_wins_whole_the_other_exits_2(
    aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pause: str
) -> None:
    if pause == "after_first_marks":
        tenants = 110  # two transactions of marks at the production size
    else:
        tenants = CUSTOMERS
        monkeypatch.setattr(billing_commit, "TRANSACTION_SIZE", BATCH)
    table = ("--table", aws.table_name)
    store = aws.store()
    seed_usage(store, tenants)
    assert run(capsys, "customers", "import", str(mapping_csv(tmp_path / "m.csv", tenants, "gamma")), *table)[0] == 0
    a_file = mapping_csv(tmp_path / "a.csv", tenants, "alpha")
    b_file = mapping_csv(tmp_path / "b.csv", tenants, "beta")

    paused, resume = threading.Event(), threading.Event()

    def hold() -> None:
        if threading.current_thread().name == "A" and not paused.is_set():
            paused.set()
            assert resume.wait(60)

    settled, wrote = BillingCommits.settled_head, BillingCommits._wrote

    def settled_head(self: BillingCommits) -> Head:
        head = settled(self)
        if pause == "after_read":
            hold()
        return head

    def counted(self: BillingCommits) -> None:
        wrote(self)
        if (pause, self._writes) in (("after_ticket", 1), ("after_first_marks", 3)):
            hold()

    monkeypatch.setattr(BillingCommits, "settled_head", settled_head)
    monkeypatch.setattr(BillingCommits, "_wrote", counted)
    codes: dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: codes.update(a=cli.main(["customers", "import", str(a_file), *table])), name="A"
    )
    capsys.readouterr()
    first.start()
    assert paused.wait(60)
    codes["b"] = cli.main(["customers", "import", str(b_file), *table])
    resume.set()
    first.join(60)
    out, err = capsys.readouterr()

    assert codes == {"a": 2, "b": 0}
    assert out.count("Imported 1 customer(s)") == 1
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "conflict" in errors[0] and "a.csv" in errors[0], err
    owners = {m.customer_id for m in BillingStore(store).mappings()}
    assert owners == {"beta"}  # every tenant with the winner's owner
    code, _, err = run(capsys, "customers", "unmapped", "--period", str(NOW), *table)
    assert code == 0 and "did not finish" not in err


# --- tables written before ------------------------------------------------------------------------------


def test_items_written_before_the_commit_protocol_are_adopted_as_they_are(
    aws: LocalAws, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Items as the previous version wrote them (no head, no marks, numbers as the old float form) are read as
    the committed set and changed by the next import like any other."""
    table = ("--table", aws.table_name)
    store = aws.store()
    seed_usage(store, 2)
    old: list[dict[str, Any]] = [
        {"pk": "CUSTOMERS", "sk": "C#c000", "record_type": "customer", "customer_id": "c000", "name": "Customer c000"},
        {"pk": "CUSTOMERS", "sk": "A#keepnet#kn-main", "record_type": "billing_account", "vendor": "keepnet",
         "account_id": "kn-main"},
        {"pk": "BILLING#keepnet#kn-main", "sk": "MAP#t000", "record_type": "mapping", "vendor": "keepnet",
         "account_id": "kn-main", "tenant_id": "t000", "customer_id": "c000"},
        {"pk": "BILLING#keepnet", "sk": f"CONTRACT#c000#monthly_users#{NOW}", "record_type": "contract",
         "customer_id": "c000", "vendor": "keepnet", "metric": "monthly_users", "quantity": 12,
         "effective_from": str(NOW), "unit_price": 1.5},
    ]  # fmt: skip
    for item in old:
        store.queue_raw(item)
    store.flush()
    billing = BillingStore(store)
    assert [(m.customer_id, m.tenant.tenant_id) for m in billing.mappings()] == [("c000", "t000")]
    [contract] = billing.contracts("keepnet")
    assert (contract.quantity, contract.unit_price) == (Decimal(12), Decimal("1.5"))

    same = tmp_path / "same.csv"
    same.write_text(
        f"customer_id,vendor,metric,quantity,effective_from,effective_to,agreement,unit_price\n"
        f"c000,keepnet,monthly_users,12,{NOW},,,1.50\n"
    )
    code, out, _ = run(capsys, "contracts", "import", str(same), *table)
    assert code == 0 and out.startswith("Nothing changed")
    code, out, _ = run(capsys, "customers", "import", str(mapping_csv(tmp_path / "m.csv", 2)), *table)
    assert code == 0 and "2 item(s) written" in out  # customer c001 and its mapping; c000 as stored
    assert sorted(m.customer_id for m in BillingStore(store).mappings()) == ["c000", "c001"]

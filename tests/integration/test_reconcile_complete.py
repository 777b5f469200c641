"""The reconciliation of a month whose collection went wrong in every way at once, through the real `usagewatch
reconcile` command and the real report handler on moto, checked against a computation written here from the
scenario alone: one account failed, one tenant failed with no reading, one account never collected, one tenant
reached through two accounts, a tenant gone from a complete listing. Also: future months refused, the current
month provisional, exact money, and report.ready's id following the numbers."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from tests.cli_run import run
from tests.integration.conftest import FakeLambdaContext, load_app
from tests.local_aws import LocalAws
from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.errors import ConfigError
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.store.billing import BillingStore
from usagewatch.stored import RunRecord, Total

MONTH = Period.of(datetime.now(UTC)).previous()  # ended: nothing provisional
BUCKET = "usagewatch-reports"
EARLY = MONTH.start + timedelta(days=1, hours=6)  # the month's first good runs
LATE = MONTH.start + timedelta(days=4, hours=6)  # the runs that went wrong
KEEPNET_REFUSED = "Keepnet refused the client credentials"

# (vendor, account, tenant, name, value) stored for the month; every metric is the vendor's billed one.
METRIC = {"keepnet": "monthly_users", "gravityzone": "endpoint_monthly_usage"}
UNIT = {"keepnet": "users", "gravityzone": "seats"}
STORED = [
    ("keepnet", "kn-a", "c-1", "Acme Ltd", 40),
    ("keepnet", "kn-a", "c-2", "Globex GmbH", 25),
    ("keepnet", "kn-a", "c-3", "Stray Co", 5),
    ("keepnet", "kn-a", "dup-1", "Initech (via a)", 11),  # also under kn-c, which maps it
    ("keepnet", "kn-c", "dup-1", "Initech", 12),
    ("keepnet", "kn-b", "c-10", "Acme Branch", 30),  # carried: kn-b's later run failed
    ("gravityzone", "gz-a", "g-1", "ACME Limited", 20),
    ("gravityzone", "gz-a", "g-5", "Globex old", 9),  # removed by a complete listing: counts 0
]
REMOVED = {("gz-a", "g-5")}
MAPPED = {
    ("keepnet", "kn-a", "c-1"): "acme",
    ("keepnet", "kn-a", "c-2"): "globex",
    ("keepnet", "kn-b", "c-10"): "acme",
    ("keepnet", "kn-c", "dup-1"): "initech",
    ("gravityzone", "gz-a", "g-1"): "acme",
    ("gravityzone", "gz-a", "g-2"): "globex",  # its read failed on LATE and it has no reading
    ("gravityzone", "gz-a", "g-5"): "globex",
    ("gravityzone", "gz-b", "g-9"): "initech",  # gz-b never collected this month
}
CONTRACTS = {  # (customer, vendor) -> (quantity, unit price)
    ("acme", "keepnet"): (60, "1.005"),
    ("globex", "keepnet"): (20, "0.125"),
    ("initech", "keepnet"): (10, "3.333"),
    ("acme", "gravityzone"): (20, None),
    ("globex", "gravityzone"): (5, None),
    ("initech", "gravityzone"): (4, None),
}
# The runs as the collectors record them: (account, as_of, status, failed tenants, account error).
RUNS = [
    ("kn-a", EARLY, "ok", (), None),
    ("kn-b", EARLY, "ok", (), None),
    ("kn-b", LATE, "failed", (), KEEPNET_REFUSED),
    ("kn-c", EARLY, "ok", (), None),
    ("gz-a", EARLY, "ok", (), None),
    ("gz-a", LATE, "partial", ("g-2",), None),
]


def vendor_of(account: str) -> str:
    return "keepnet" if account.startswith("kn") else "gravityzone"


def expected() -> dict[tuple[str, str], dict[str, Any]]:
    """What the reconciliation must say, from the scenario above only (no usagewatch code)."""
    newest: dict[str, tuple[datetime, str, tuple[str, ...], str | None]] = {}
    for account, at, status, failed, error in RUNS:
        if account not in newest or at > newest[account][0]:
            newest[account] = (at, status, failed, error)
    # billing counts a tenant once: through the account that maps it, else the first account by id
    readings: dict[tuple[str, str], tuple[str, int]] = {}
    for vendor, account, tenant, _, value in STORED:
        if (account, tenant) in REMOVED:
            continue
        held = readings.get((vendor, tenant))
        mine = (vendor, account, tenant) in MAPPED
        if held is None or (mine and (vendor, held[0], tenant) not in MAPPED) or (not mine and account < held[0]):
            readings[(vendor, tenant)] = (account, value)
    used: defaultdict[tuple[str, str], int] = defaultdict(int)
    for (vendor, tenant), (_, value) in readings.items():
        owners = {c for (v, _, t), c in MAPPED.items() if (v, t) == (vendor, tenant)}
        if owners:
            used[(owners.pop(), vendor)] += value
    incomplete: dict[tuple[str, str], bool] = {}
    for (vendor, account, tenant), customer in MAPPED.items():
        run = newest.get(account)
        shaky = run is None or run[1] == "failed" or tenant in run[2]
        incomplete[(customer, vendor)] = incomplete.get((customer, vendor), False) or shaky
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for (customer, vendor), (quantity, price) in CONTRACTS.items():
        total = used[(customer, vendor)]
        if incomplete[(customer, vendor)]:
            status = "incomplete"
        elif total > quantity:
            status = "under_billed"
        elif quantity - total > quantity / 10:
            status = "over_billed"
        else:
            status = "ok"
        value = None
        if status == "under_billed" and price is not None:
            cents = Decimal(total - quantity) * Decimal(price) * 100
            whole = int(cents)
            value = Decimal(whole + (1 if cents - whole >= Decimal("0.5") else 0)) / 100  # half-up, by hand
        out[(customer, vendor)] = {"used": total, "status": status, "unbilled": value}
    return out


def fill(aws: LocalAws) -> None:
    store = aws.store()
    for vendor, account, tenant, name, value in STORED:
        window = Window.month(MONTH)
        record = UsageRecord(vendor, account, Tenant(tenant, name), METRIC[vendor], value, UNIT[vendor], window)
        store.add_usage(record, as_of=EARLY, collected_at=EARLY)
    store.flush()
    store.mark_removed(
        [u for u in store.period_usage(str(MONTH), vendor="gravityzone") if u.record.tenant_id == "g-5"],
        removed_at=LATE.isoformat(),
    )
    for account, at, status, failed, error in RUNS:
        errors = ([error] if error else []) + [f"tenant {t} (name of {t}): HTTP 500" for t in failed]
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        store.write_run(
            RunRecord(vendor_of(account), account, f"run-{account}-{stamp}", stamp, stamp, stamp, status,  # type: ignore[arg-type]
                      (str(MONTH),), 3, len(failed), 3, 0, tuple(errors))
        )  # fmt: skip
    store.write_totals([Total("gravityzone", "gz-a", str(MONTH), "endpoint_monthly_usage", "seats", 20, 1, 0, "x")])
    store.flush()
    billing = BillingStore(store)
    names = {"acme": "Acme", "globex": "Globex", "initech": "Initech"}
    billing.import_mappings(
        [Customer(c, n) for c, n in names.items()],
        [TenantMapping(c, TenantRef(v, a, t)) for (v, a, t), c in MAPPED.items()],
    )
    billing.import_contracts(
        [
            Contract(c, v, METRIC[v], q, Period(2020, 1), unit_price=float(p) if p else None)
            for (c, v), (q, p) in CONTRACTS.items()
        ]
    )


def test_the_reconciliation_matches_a_computation_of_its_own(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    fill(aws)
    table = ("--table", aws.table_name)
    code, out, err = run(capsys, "reconcile", "--period", str(MONTH), "--json", *table)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    lines = {(r["customer_id"], r["vendor"]): r for r in rows if r["status"] not in ("unmapped", "total")}
    want = expected()
    got = {
        key: {
            "used": r["used"],
            "status": r["status"],
            "unbilled": r["unbilled_value"] and Decimal(r["unbilled_value"]),
        }
        for key, r in lines.items()
    }
    assert got == want
    assert all(r["provisional"] is False and r["currency"] == "USD" for r in rows)
    # the cases, named, so a wrong computation above cannot hide them
    assert lines[("initech", "keepnet")]["used"] == 12  # dup-1 once, through kn-c which maps it
    assert lines[("globex", "keepnet")]["unbilled_value"] == "0.63"  # 5 x 0.125 = 0.625, half-up
    when = LATE.strftime("%Y-%m-%d %H:%M")
    assert lines[("acme", "keepnet")]["reason"] == f"kn-b: failed on {when}, {KEEPNET_REFUSED}"
    assert lines[("globex", "gravityzone")]["reason"] == f"gz-a/g-2: read failed on {when}, no reading of {MONTH}"
    assert "gz-b: no collection of" in lines[("initech", "gravityzone")]["reason"]
    unmapped = [(r["vendor"], r["tenant_id"]) for r in rows if r["status"] == "unmapped"]
    assert unmapped == [("keepnet", "c-3")]  # dup-1 is owned through kn-c; its kn-a copy is not "unmapped"
    (month_total,) = [r for r in rows if r["status"] == "total" and not r.get("customer_id")]
    assert month_total["unbilled_value"] == str(sum(v["unbilled"] or 0 for v in want.values()))

    code, out, _ = run(capsys, "reconcile", "--period", str(MONTH), *table)
    assert code == 0
    footer = out.split("Incomplete (not final until these are read", 1)[1]
    assert f"kn-b: failed on {when}, {KEEPNET_REFUSED}" in footer and "gz-b: no collection of" in footer
    assert "incomplete" in out and "over_billed" in out

    # each account's stored numbers stay as its vendor reports them
    stored = {(u.record.account_id, u.record.tenant_id): u.record.value for u in aws.store().period_usage(str(MONTH))}
    assert (stored[("kn-a", "dup-1")], stored[("kn-c", "dup-1")]) == (11, 12)


def test_a_month_never_collected_is_incomplete_not_used_zero(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    fill(aws)
    earlier = MONTH.previous()
    code, out, _ = run(capsys, "reconcile", "--period", str(earlier), "--json", "--table", aws.table_name)
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    contracted = [r for r in lines if r["status"] != "total"]
    assert len(contracted) == len(CONTRACTS)
    assert {r["status"] for r in contracted} == {"incomplete"}
    assert all("no collection of" in r["reason"] for r in contracted)


def test_a_future_month_is_refused_by_the_cli_and_the_report(
    aws: LocalAws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(aws)
    future = str(Period.of(datetime.now(UTC)).next())
    code, out, err = run(capsys, "reconcile", "--period", future, "--table", aws.table_name)
    assert (code, out) == (1, "") and f"period {future} has not begun" in err
    code, _, err = run(capsys, "monthly-report", "--period", "2099-01", "--table", aws.table_name, "--bucket", BUCKET,
                       "--topic", aws.topic_arn)  # fmt: skip
    assert code == 1 and "period 2099-01 has not begun" in err
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for key, value in (("USAGE_TABLE_NAME", aws.table_name), ("ALERT_TOPIC_ARN", aws.topic_arn)):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPORT_BUCKET", BUCKET)
    with pytest.raises(ConfigError, match=f"period {future} has not begun"):
        load_app("report").lambda_handler({"period": future}, FakeLambdaContext())
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET)
    assert aws.drain_events() == []


def test_report_ready_counts_incomplete_lines_and_its_id_follows_the_numbers(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(aws)
    boto3.client("s3").create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for key, value in (("USAGE_TABLE_NAME", aws.table_name), ("ALERT_TOPIC_ARN", aws.topic_arn)):
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REPORT_BUCKET", BUCKET)
    monkeypatch.setenv("CURRENCY", "EUR")
    handler = load_app("report").lambda_handler
    first = handler({"period": str(MONTH)}, FakeLambdaContext())
    again = handler({"period": str(MONTH)}, FakeLambdaContext())
    incomplete = sum(1 for v in expected().values() if v["status"] == "incomplete")
    assert (first["incomplete_lines"], first["severity"], first["currency"]) == (incomplete, "warning", "EUR")
    assert first["event_id"] == again["event_id"]
    assert any(KEEPNET_REFUSED in why for why in first["incomplete_accounts"])
    page = boto3.client("s3").get_object(Bucket=BUCKET, Key=first["html_key"])["Body"].read().decode()
    assert "Accounts not fully read this month" in page and KEEPNET_REFUSED in page and "EUR 0.63" in page
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=first["csv_key"])["Body"].read().decode()
    assert {r["currency"] for r in csv.DictReader(io.StringIO(body))} == {"EUR"}

    # one number changes, no status does: a new id
    store = aws.store()
    record = UsageRecord("keepnet", "kn-a", Tenant("c-3", "Stray Co"), "monthly_users", 6, "users", Window.month(MONTH))
    store.add_usage(record, as_of=LATE, collected_at=LATE)
    store.flush()
    changed = handler({"period": str(MONTH)}, FakeLambdaContext())
    assert changed["lines"] == first["lines"] and changed["event_id"] != first["event_id"]
    assert [e["event_id"] for e in aws.drain_events()] == [first["event_id"]] * 2 + [changed["event_id"]]


def test_the_current_month_is_provisional(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    now = Period.of(datetime.now(UTC))
    store = aws.store()
    at = max(now.start, datetime.now(UTC) - timedelta(minutes=5))
    record = UsageRecord("keepnet", "kn-a", Tenant("c-1", "Acme"), "monthly_users", 70, "users", Window.month(now))
    store.add_usage(record, as_of=at, collected_at=at)
    store.flush()
    billing = BillingStore(store)
    billing.import_mappings([Customer("acme", "Acme")], [TenantMapping("acme", TenantRef("keepnet", "kn-a", "c-1"))])
    billing.import_contracts([Contract("acme", "keepnet", "monthly_users", 60, Period(2020, 1), unit_price=2.0)])
    code, out, _ = run(capsys, "reconcile", "--period", str(now), "--json", "--table", aws.table_name)
    (line, *_) = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and (line["status"], line["provisional"], line["unbilled_value"]) == (
        "under_billed",
        True,
        "20.00",
    )


def test_a_tenant_through_two_accounts_is_listed_and_suggested_once(
    aws: LocalAws, capsys: pytest.CaptureFixture[str]
) -> None:
    now = Period.of(datetime.now(UTC))
    store = aws.store()
    at = max(now.start, datetime.now(UTC) - timedelta(minutes=5))
    for account in ("kn-b", "kn-a"):
        for tenant, name in (("t-shared", "Contoso Ltd"), (f"t-{account}", f"Own {account}")):
            window = Window.month(now)
            store.add_usage(
                UsageRecord("keepnet", account, Tenant(tenant, name), "monthly_users", 7, "users", window),
                as_of=at,
                collected_at=at,
            )
    store.flush()
    BillingStore(store).import_mappings([Customer("acme", "Acme")], [TenantMapping("acme", ref_("kn-b", "t-kn-b"))])
    table = ("--table", aws.table_name)
    code, out, _ = run(capsys, "customers", "unmapped", "--period", str(now), *table)
    assert code == 0 and "2 unmapped tenant(s)." in out and out.count("Contoso") == 2  # the row, the overlap line
    assert (
        "keepnet tenant t-shared (Contoso Ltd) is stored under accounts kn-a, kn-b: counted once, through kn-a" in out
    )
    code, out, _ = run(capsys, "customers", "suggest", "--period", str(now), "--csv", *table)
    proposals = [(r["account_id"], r["tenant_id"]) for r in csv.DictReader(io.StringIO(out))]
    assert sorted(proposals) == [("kn-a", "t-kn-a"), ("kn-a", "t-shared")]

    # mapped through kn-b: no longer unmapped anywhere, still reported as an overlap
    BillingStore(store).import_mappings([Customer("acme", "Acme")], [TenantMapping("acme", ref_("kn-b", "t-shared"))])
    code, out, _ = run(capsys, "customers", "unmapped", "--period", str(now), *table)
    assert "1 unmapped tenant(s)." in out and "counted once, through kn-b" in out
    code, out, _ = run(capsys, "reconcile", "--period", str(now), "--json", *table)
    (acme,) = [json.loads(x) for x in out.splitlines() if '"acme"' in x and '"total"' not in x]
    assert (acme["used"], acme["tenants"]) == (14, 2)  # t-kn-b and t-shared once, not 21


def ref_(account: str, tenant: str) -> TenantRef:
    return TenantRef("keepnet", account, tenant)

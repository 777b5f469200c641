"""A record's attributes (a few facts beside its numbers): checked on the record, stored with its metric, read back
through the store and its history, and shown in the flat rows of reports (moto's DynamoDB)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.local_aws import in_process_aws, provision
from usagewatch.errors import VendorDataError
from usagewatch.model import MAX_ATTRIBUTES, Period, Tenant, UsageRecord, Window
from usagewatch.store import DynamoStore
from usagewatch.stored import StoredUsage

NOV = Window.month(Period(2026, 11))
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
TENANT = Tenant("c-1", "Contoso")


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    credentials = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "eu-west-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    with in_process_aws():
        yield provision().table_name


def record(value: int = 14, **attributes: int | str) -> UsageRecord:
    return UsageRecord("keepnet", "kn", TENANT, "spb", value, "users", NOV, quota=25, attributes=attributes or None)


def write(table: str, when: datetime, *records: UsageRecord) -> DynamoStore:
    store = DynamoStore(table, writers=1)
    store.add_tenant(list(records), as_of=when, collected_at=when)
    store.flush()
    return store


def test_attributes_round_trip_through_the_store_and_its_history(table: str) -> None:
    first = record(14, sku_id="cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", suspended=0, warning=2)
    plain = UsageRecord("keepnet", "kn", TENANT, "monthly_users", 3, "users", NOV)
    write(table, T0, first, plain)
    # A later run: the number stays, one attribute changes, one goes: the change is logged and replays back.
    second = record(14, sku_id="cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", suspended=5)
    assert write(table, T0 + timedelta(hours=6), second, plain).tenants_changed == 1

    store = DynamoStore(table)
    latest = {u.record.metric: u.record for u in store.tenant_usage("keepnet", "kn", "c-1", "2026-11")}
    assert latest["spb"].attributes == {"sku_id": "cbdc14ab-d96c-4c30-b9f4-6ada7cdc1d46", "suspended": 5}
    assert latest["spb"] == second
    assert latest["monthly_users"].attributes is None
    history = store.metric_history("keepnet", "kn", "c-1", "spb")
    assert [h.record.attributes for h in history] == [first.attributes, second.attributes]

    # Unchanged attributes are no change: the next run writes nothing.
    assert write(table, T0 + timedelta(hours=12), second, plain).items_written == 0


def test_the_flat_row_carries_the_attributes_and_leaves_them_out_when_there_are_none() -> None:
    row = StoredUsage(record(suspended=1, capability_status="Warning"), "2026-11-22T06:00:00Z").row()
    assert row["attributes"] == {"capability_status": "Warning", "suspended": 1}
    assert "attributes" not in StoredUsage(record(), "2026-11-22T06:00:00Z").row()


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"Bad-Key": 1}, "invalid name 'Bad-Key'"),
        ({"flag": True}, r"attributes.flag must be an integer or text"),
        ({"ratio": 0.5}, r"attributes.ratio must be an integer or text"),
        ({f"k{n}": n for n in range(MAX_ATTRIBUTES + 1)}, f"at most {MAX_ATTRIBUTES}"),
    ],
)
def test_malformed_attributes_are_refused_naming_the_metric(attributes: dict[str, object], message: str) -> None:
    with pytest.raises(VendorDataError, match=rf"tenant c-1: metric spb: .*{message}"):
        UsageRecord("keepnet", "kn", TENANT, "spb", 1, "users", NOV, attributes=attributes)  # type: ignore[arg-type]


def test_text_attributes_are_made_one_line_and_bounded() -> None:
    made = record(status="Enabled\nrm -rf", long="x" * 500)
    assert made.attributes is not None
    assert "\n" not in str(made.attributes["status"]) and len(str(made.attributes["long"])) == 128
    assert hash(made) == hash(record(status="other"))  # attributes stay out of the hash (records go in sets)

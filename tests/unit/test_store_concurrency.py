"""Two runs of one account: the run lease and the conditional alert-state writes, against moto's DynamoDB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.local_aws import in_process_aws, provision
from usagewatch.store import DynamoStore
from usagewatch.stored import AlertState

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoStore]:
    credentials = {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "eu-west-1"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    with in_process_aws():
        yield provision().store()


def _state(**changes: object) -> AlertState:
    base = AlertState(
        alert_id="a1",
        vendor="keepnet",
        account_id="acct",
        tenant_id="t1",
        tenant_name="Tenant 1",
        metric="target_users",
        rule="over_quota",
        period="2026-11",
        status="firing",
        severity="critical",
        published=True,
        since="2026-11-22T06:00:00Z",
        updated_at="2026-11-22T06:00:00Z",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_lease_is_held_by_one_run_until_released_or_expired(store: DynamoStore) -> None:
    assert store.acquire_lease("keepnet", "acct", owner="A", now=NOW, seconds=600)
    assert not store.acquire_lease("keepnet", "acct", owner="B", now=NOW + timedelta(seconds=240), seconds=600)
    assert store.acquire_lease("keepnet", "acct", owner="A", now=NOW, seconds=600), "the holder may take it again"
    assert store.acquire_lease("keepnet", "other", owner="B", now=NOW, seconds=600), "leases are per account"
    assert store.holds_lease("keepnet", "acct", owner="A", now=NOW + timedelta(seconds=300))
    assert not store.holds_lease("keepnet", "acct", owner="B", now=NOW + timedelta(seconds=300))

    late = NOW + timedelta(seconds=601)
    assert not store.holds_lease("keepnet", "acct", owner="A", now=late), "an expired lease is nobody's"
    assert store.acquire_lease("keepnet", "acct", owner="B", now=late, seconds=600)
    store.release_lease("keepnet", "acct", owner="A")  # not A's any more: B keeps it
    assert store.holds_lease("keepnet", "acct", owner="B", now=late)
    store.release_lease("keepnet", "acct", owner="B")
    assert store.acquire_lease("keepnet", "acct", owner="C", now=late, seconds=600)


def test_alert_writes_are_conditional_on_the_version_read(store: DynamoStore) -> None:
    assert store.put_alert(_state())
    (read,) = store.open_alerts("keepnet", "acct").values()
    assert read.version == 1

    assert not store.put_alert(_state()), "a second run opening the same firing alert loses the race"
    assert store.put_alert(replace(read, repeat_count=1))
    assert not store.put_alert(replace(read, status="resolved")), "a state read before another run's write is stale"
    (now,) = store.open_alerts("keepnet", "acct").values()
    assert (now.version, now.repeat_count, now.status) == (2, 1, "firing")

    assert store.put_alert(replace(now, status="resolved"))
    assert store.put_alert(_state(since="2026-11-25T06:00:00Z")), "a new episode may replace a resolved alert"

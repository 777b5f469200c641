"""DynamoStore's write path: batches of 25 sent by writer threads, every failure surfaced, order per key kept."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from usagewatch.errors import StoreError
from usagewatch.store import DynamoStore, deserialize


class FakeDynamoDB:
    """Records every item by key; can be slow (once per slow key), fail a call, or leave items unprocessed."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, int]] = []
        self.fail_calls: set[int] = set()
        self.unprocessed_once = 0
        self.slow_keys: dict[tuple[str, str], float] = {}
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:  # noqa: N803
        ((table, requests),) = RequestItems.items()
        with self._lock:
            self.calls.append(("batch", len(requests)))
            number = len(self.calls)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            items = [r["PutRequest"]["Item"] for r in requests]
            with self._lock:
                pause = max([self.delay] + [self.slow_keys.pop(_key(i), 0.0) for i in items])
            time.sleep(pause)
            if number in self.fail_calls:
                raise RuntimeError(f"throttled on call {number}")
            with self._lock:
                left = requests[: self.unprocessed_once]
                self.unprocessed_once = 0
                for item in items[len(left) :]:
                    self.items[_key(item)] = item
            return {"UnprocessedItems": {table: left} if left else {}}
        finally:
            with self._lock:
                self.active -= 1

    def put_item(self, TableName: str, Item: dict[str, Any], **_: Any) -> dict[str, Any]:  # noqa: N803
        with self._lock:
            self.calls.append(("put", 1))
            self.items[_key(Item)] = Item
        return {}


def _key(item: dict[str, Any]) -> tuple[str, str]:
    return item["pk"]["S"], item["sk"]["S"]


def _row(n: int, value: int = 1) -> dict[str, object]:
    return {"pk": "P", "sk": f"{n:05d}", "value": value}


def test_batches_go_out_in_parallel_and_flush_waits_for_all() -> None:
    client = FakeDynamoDB(delay=0.05)
    store = DynamoStore("t", client=client, sleep=lambda _: None)  # type: ignore[arg-type]
    for n in range(250):
        store._queue(_row(n))
    store.flush()
    assert len(client.items) == 250
    assert client.calls == [("batch", 25)] * 10
    assert (store.write_calls, store.items_written) == (10, 250)
    assert client.max_active > 1


def test_a_failed_batch_is_raised_by_flush_and_the_others_still_land() -> None:
    client = FakeDynamoDB()
    client.fail_calls = {2}
    store = DynamoStore("t", client=client, sleep=lambda _: None)  # type: ignore[arg-type]

    def write_all() -> None:
        for n in range(100):
            store._queue(_row(n))
        store.flush()

    with pytest.raises(StoreError, match="throttled on call 2"):
        write_all()
    store.flush()
    assert len(client.items) == 75


def test_unprocessed_items_are_retried_until_written() -> None:
    client = FakeDynamoDB()
    client.unprocessed_once = 5
    store = DynamoStore("t", client=client, sleep=lambda _: None)  # type: ignore[arg-type]
    for n in range(25):
        store._queue(_row(n))
    store.flush()
    assert len(client.items) == 25
    assert client.calls == [("batch", 25), ("batch", 5)]
    assert store.items_written == 25


def test_a_key_written_twice_lands_with_its_last_value() -> None:
    client = FakeDynamoDB()
    client.slow_keys[("P", "00000")] = 0.2
    store = DynamoStore("t", client=client, sleep=lambda _: None)  # type: ignore[arg-type]
    for n in range(25):
        store._queue(_row(n, value=1))
    store._queue(_row(0, value=2))
    for n in range(25, 49):
        store._queue(_row(n, value=1))
    store.flush()
    assert deserialize(client.items[("P", "00000")])["value"] == 2


def test_one_writer_sends_inline() -> None:
    client = FakeDynamoDB()
    store = DynamoStore("t", client=client, writers=1)  # type: ignore[arg-type]
    for n in range(30):
        store._queue(_row(n))
    assert len(client.items) == 25
    store.flush()
    assert len(client.items) == 30


class RefusingDynamoDB:
    """Answers every call with the ClientError botocore raises for `code`."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.operations: list[str] = []

    def __getattr__(self, operation: str) -> Any:
        from botocore.exceptions import ClientError

        def refuse(**_: Any) -> dict[str, Any]:
            self.operations.append(operation)
            raise ClientError({"Error": {"Code": self.code, "Message": "simulated"}}, operation)

        return refuse


def test_every_refused_call_is_a_store_error_chained_to_the_client_error() -> None:
    from botocore.exceptions import ClientError

    store = DynamoStore("t", client=RefusingDynamoDB("AccessDeniedException"))  # type: ignore[arg-type]
    reads = [
        lambda: store.period_usage("2026-11"),
        lambda: store.runs("keepnet", "kn"),
        lambda: store.open_alerts("keepnet", "kn"),
        lambda: store.recall_identities("thousandeyes", "te"),
        lambda: store.alert_states("keepnet", "kn", [("t", "2026-11", "m", "over_quota")]),
    ]
    for read in reads:
        with pytest.raises(StoreError, match=r"DynamoDB read failed: ClientError.*AccessDeniedException") as raised:
            read()
        assert isinstance(raised.value.__cause__, ClientError)
    with pytest.raises(StoreError, match="DynamoDB write failed"):
        store.release_lease("keepnet", "kn", owner="me")


def test_a_failed_condition_is_an_answer_not_an_error() -> None:
    from datetime import UTC, datetime

    store = DynamoStore("t", client=RefusingDynamoDB("ConditionalCheckFailedException"))  # type: ignore[arg-type]
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert store.acquire_lease("keepnet", "kn", owner="me", now=now, seconds=60) is False
    assert store.holds_lease("keepnet", "kn", owner="me", now=now) is False
    store.release_lease("keepnet", "kn", owner="me")  # someone else's lease: nothing to give back
    with pytest.raises(StoreError, match="ConditionalCheckFailed"):
        store.period_usage("2026-11")  # a condition only answers calls that asked for one

"""The table: the DynamoDB client, the one error-translating call, paged and batched reads and writes, and the
(de)serialisation of items. Every room of the store (usage, alerts, runs, migration) builds on `Table`.

Writes are buffered and sent in BatchWriteItem calls of 25 from a few writer threads (botocore clients are
thread-safe); unprocessed items are retried; `flush` waits for every batch and raises the first failure.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from usagewatch import aws
from usagewatch.errors import StoreError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

BATCH_SIZE: Final = 25
BATCH_GET_SIZE: Final = 100
MAX_BATCH_ATTEMPTS: Final = 8
WRITERS: Final = 8
MAX_BATCHES_IN_FLIGHT: Final = 16
Item = dict[str, dict[str, Any]]
Key = tuple[str, str]


# A DynamoDB sort key holds 1,024 bytes and its partition key 2,048; a vendor id is kept well under both.
MAX_KEY_PART: Final = 256


def key_part(vendor_id: str) -> str:
    """A vendor-controlled id as one component of a key: `#` (the separator) and `%` escaped, so `a` and `a#x`
    never share a prefix; past MAX_KEY_PART characters, a head and a hash of the whole id, so any id fits."""
    escaped = vendor_id.replace("%", "%25").replace("#", "%23")
    if len(escaped.encode()) <= MAX_KEY_PART:
        return escaped
    digest = hashlib.sha256(vendor_id.encode()).hexdigest()[:32]
    return escaped.encode()[:180].decode(errors="ignore") + "~" + digest


def _value(value: object) -> dict[str, Any] | None:
    kind = type(value)  # exact types first: the common cases of every record, without an isinstance chain
    if kind is str:
        return {"S": value}
    if kind is int:
        return {"N": str(value)}
    if kind is dict:
        return {"M": serialize(value)}  # type: ignore[arg-type]
    if value is None:
        return None
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": format(value, "f") if isinstance(value, Decimal) else repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list | tuple):
        return {"L": _list(value)}
    if isinstance(value, Mapping):
        return {"M": serialize(value)}
    raise TypeError(f"cannot store {type(value).__name__}")


def _list(values: Sequence[object]) -> list[dict[str, Any]]:
    encoded: list[dict[str, Any]] = []
    for value in values:
        kind = type(value)  # a projection's running sums: floats and an int, one call per list
        if kind is float:
            encoded.append({"N": repr(value)})
        elif kind is int:
            encoded.append({"N": str(value)})
        else:
            element = _value(value)
            if element is not None:
                encoded.append(element)
    return encoded


def serialize(attributes: Mapping[str, object]) -> Item:
    """A plain dict as a DynamoDB item; None attributes are left out."""
    item: Item = {}
    for key, value in attributes.items():
        kind = type(value)  # the common cases inline: one call per item and map, not one per value
        if kind is str:
            item[key] = {"S": value}
        elif kind is int:
            item[key] = {"N": str(value)}
        elif kind is dict:
            item[key] = {"M": serialize(value)}  # type: ignore[arg-type]
        elif kind is list:
            item[key] = {"L": _list(value)}  # type: ignore[arg-type]
        elif value is not None:
            encoded = _value(value)
            if encoded is not None:
                item[key] = encoded
    return item


def _plain(value: Mapping[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        number = Decimal(value["N"])
        return int(number) if number == number.to_integral_value() else float(number)
    if "BOOL" in value:
        return value["BOOL"]
    if "L" in value:
        return [_plain(v) for v in value["L"]]
    if "NULL" in value:
        return None
    if "M" in value:
        return {k: _plain(v) for k, v in value["M"].items()}
    raise TypeError(f"unsupported attribute {value!r}")


def deserialize(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in item.items()}


_SEQUENCES: Final = frozenset({"missing", "periods", "errors", "notes"})


def known_fields(item: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """The attributes of `item` a record class has, its sequences as tuples."""
    return {k: tuple(v) if k in _SEQUENCES else v for k, v in item.items() if k in names}


class Table:
    """One DynamoDB table: what every room of the store shares."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        snapshot_retention_days: int = 400,
        sleep: Any = time.sleep,
        writers: int = WRITERS,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self.retention = timedelta(days=snapshot_retention_days)
        self._sleep = sleep
        self._writers = writers
        self._buffer: dict[Key, Item] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future[None], list[Key]] = {}
        self._key_in_flight: dict[Key, Future[None]] = {}
        self._counts = threading.Lock()
        self.items_written = 0
        self.write_calls = 0

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            self._client = aws.client("dynamodb")
        return self._client

    def _forget_reads(self) -> None:
        """Called when a flush failed: a room that keeps what it read drops it (what failed to land must be
        compared again, not taken as written)."""

    def _queue(self, attributes: Mapping[str, object]) -> None:
        self._queue_item(serialize(attributes))

    def _queue_item(self, item: Item) -> None:
        key = (item["pk"]["S"], item["sk"]["S"])
        earlier = self._key_in_flight.get(key)
        if earlier is not None:
            # The same key written twice in one run: the older version must land first.
            wait([earlier])
            self._reap()
        self._buffer[key] = item
        if len(self._buffer) >= BATCH_SIZE:
            self._submit(self._take(BATCH_SIZE))

    def flush(self) -> None:
        """Send what is buffered and wait for every batch; StoreError for the first that failed."""
        while self._buffer:
            self._submit(self._take(BATCH_SIZE))
        first: StoreError | None = None
        while self._in_flight:
            wait(list(self._in_flight))
            try:
                self._reap()
            except StoreError as exc:
                first = first or exc
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if first is not None:
            self._forget_reads()
            raise first

    def _take(self, count: int) -> list[Item]:
        keys = list(self._buffer)[:count]
        return [self._buffer.pop(key) for key in keys]

    def _submit(self, items: list[Item]) -> None:
        if self._writers <= 1:
            self._send_batch(items)
            return
        while len(self._in_flight) >= MAX_BATCHES_IN_FLIGHT:
            wait(list(self._in_flight), return_when=FIRST_COMPLETED)
            self._reap()
        if self._pool is None:
            self.client  # noqa: B018  created here: boto3's default session is not thread-safe to build from
            self._pool = ThreadPoolExecutor(max_workers=self._writers, thread_name_prefix="dynamodb-writer")
        future = self._pool.submit(self._send_batch, items)
        keys = [(item["pk"]["S"], item["sk"]["S"]) for item in items]
        self._in_flight[future] = keys
        for key in keys:
            self._key_in_flight[key] = future

    def _reap(self) -> None:
        """Forget finished batches; StoreError for the first of them that failed (the others still count)."""
        first: StoreError | None = None
        for future in [f for f in self._in_flight if f.done()]:
            for key in self._in_flight.pop(future):
                if self._key_in_flight.get(key) is future:
                    del self._key_in_flight[key]
            error = future.exception()
            if error is not None and first is None:
                first = error if isinstance(error, StoreError) else StoreError(f"DynamoDB batch write failed: {error}")
        if first is not None:
            raise first

    def _count(self, calls: int, items: int) -> None:
        with self._counts:
            self.write_calls += calls
            self.items_written += items

    def _send_batch(self, items: list[Item]) -> None:
        self._send_requests([{"PutRequest": {"Item": item}} for item in items])

    def _send_requests(self, pending: list[dict[str, Any]]) -> None:
        for attempt in range(1, MAX_BATCH_ATTEMPTS + 1):
            self._count(1, 0)
            answer = self._call("batch_write_item", "batch write", RequestItems={self.table_name: pending})
            unprocessed = answer.get("UnprocessedItems", {}).get(self.table_name, [])
            self._count(0, len(pending) - len(unprocessed))
            if not unprocessed:
                return
            pending = list(unprocessed)
            self._sleep(min(5.0, 0.05 * 2**attempt))
        raise StoreError(f"DynamoDB left {len(pending)} item(s) unprocessed after {MAX_BATCH_ATTEMPTS} attempts")

    def put(self, attributes: Mapping[str, object]) -> None:
        """Write one item now (PutItem), not through the batch buffer."""
        self._count(1, 0)
        self._call("put_item", "write", Item=serialize(attributes))
        self._count(0, 1)

    def call(self, operation: str, action: str, *, conditional: bool = False, **kwargs: Any) -> Any:
        """Every DynamoDB call of the store: any failure is a `StoreError` (chained), never a raw ClientError.

        With `conditional`, a failed condition is an answer, not an error: None. Batch calls name their table
        themselves; every other call gets the store's.
        """
        if "RequestItems" not in kwargs:
            kwargs["TableName"] = self.table_name
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if conditional and code == "ConditionalCheckFailedException":
                return None
            raise StoreError(f"DynamoDB {action} failed: {type(exc).__name__}: {exc}") from exc

    _call = call
    """Inside the store every call goes through `_call` (tests/infrastructure reads the operations it names)."""

    def query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paged Query (the table's name is added)."""
        while True:
            page = self._call("query", "read", **kwargs)
            for item in page.get("Items", []):
                yield deserialize(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    _query = query

    def get_items(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by (pk, sk), BatchGetItem of 100 keys a call; absent keys are left out."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET_SIZE):
            pending: list[dict[str, Any]] = [
                {"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys[start : start + BATCH_GET_SIZE]
            ]
            for attempt in range(MAX_BATCH_ATTEMPTS):
                answer = self._call("batch_get_item", "read", RequestItems={self.table_name: {"Keys": pending}})
                for raw in answer.get("Responses", {}).get(self.table_name, []):
                    item = deserialize(raw)
                    found[(str(item["pk"]), str(item["sk"]))] = item
                pending = list(dict(answer.get("UnprocessedKeys", {})).get(self.table_name, {}).get("Keys", []))
                if not pending:
                    break
                self._sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise StoreError(f"DynamoDB left {len(pending)} key(s) unread after {MAX_BATCH_ATTEMPTS} attempts")
        return found

    def queue_raw(self, attributes: Mapping[str, object]) -> None:
        """Queue one item as given (the migration's writes); `flush` sends it."""
        self._queue(attributes)

    def delete_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete items by (pk, sk), 25 a call."""
        for start in range(0, len(keys), BATCH_SIZE):
            self._send_requests(
                [
                    {"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}
                    for pk, sk in keys[start : start + BATCH_SIZE]
                ]
            )

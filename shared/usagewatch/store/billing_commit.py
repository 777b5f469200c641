"""All-or-nothing changes to the billing items (customers, mappings, contracts, the ignore list): docs/billing.md,
"Concurrent and interrupted imports", and docs/data-model.md.

A change never overwrites what is in force. It takes a ticket on the one head item (`BILLING`/`HEAD`, a
conditional write on the version it read), lists the keys it will touch in a manifest, writes each changed item's
new content beside the old as a *pending* mark, then commits with one conditional write of the head. Readers take
a pending mark only when its change is the head's committed one, so until that write nothing of the change is
seen, and after it all of it is. The committer then rolls its marks forward (the new content becomes the item);
if it dies first, the next change finishes that roll-forward. A change whose ticket a later one took, or that
finds a later change's mark, stops with `ImportConflictError` (the CLI's exit 2) having changed nothing in force.

Items written before this protocol have no marks: they are simply the committed content (adopted as they are).
An item that exists only as a mark (a new one) carries `expires_at`, so a mark whose change never committed
expires by the table's TTL; the roll-forward writes the item without it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from usagewatch.errors import StoreError, UsagewatchError
from usagewatch.store.dynamo import DynamoStore
from usagewatch.store.table import serialize

HEAD_PK: Final = "BILLING"
HEAD_SK: Final = "HEAD"
MANIFEST_KEYS_PER_ITEM: Final = 2_000
TRANSACTION_SIZE: Final = 100
ORPHAN_TTL: Final = timedelta(days=7)
MANIFEST_TTL: Final = timedelta(days=30)
_MARK: Final = ("pending_import", "pending_version", "pending_item", "pending_remove")
STALL_ENV: Final = "USAGEWATCH_TEST_STALL_AFTER_WRITES"
"""Tests only: after this many write calls a change prints `stalled` on stderr and waits to be killed."""

Key = tuple[str, str]


class ImportConflictError(UsagewatchError):
    """Another change of the billing items ran at the same time and won; nothing of this one is in force."""


@dataclass(frozen=True, slots=True)
class Head:
    version: int = 0
    running: str | None = None
    running_what: str | None = None
    running_started: str | None = None
    committed: str | None = None
    applied: bool = True

    def interrupted(self) -> str | None:
        """What to tell the operator when the last change that took a ticket never committed."""
        if self.running is None or self.running == self.committed:
            return None
        return (
            f"an earlier change ({self.running_what}, started {self.running_started}) did not finish (interrupted,"
            " or still running): none of it is in force"
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One item's new content (`new`), or its removal (`new` None); `stored` is the raw item as read."""

    key: Key
    new: Mapping[str, object] | None
    stored: Mapping[str, Any] | None


def plain(value: Mapping[str, Any]) -> Any:
    """A DynamoDB attribute value as Python, numbers as `Decimal` (exact, unlike store.deserialize's floats)."""
    if "S" in value:
        return value["S"]
    if "N" in value:
        return Decimal(value["N"])
    if "BOOL" in value:
        return value["BOOL"]
    if "NULL" in value:
        return None
    if "L" in value:
        return [plain(v) for v in value["L"]]
    if "M" in value:
        return {k: plain(v) for k, v in value["M"].items()}
    raise TypeError(f"unsupported attribute {value!r}")


def content(item: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The committed content of a raw item (its marks left out); None for an item that is only a mark."""
    if item is None or "record_type" not in item:
        return None
    return {k: v for k, v in item.items() if k not in _MARK and k != "expires_at"}


def in_force(item: Mapping[str, Any], head: Head | None) -> dict[str, Any] | None:
    """What a reader sees of one raw item: its mark's content when the mark's change is committed."""
    if "pending_import" in item and head is not None and item["pending_import"] == head.committed:
        if item.get("pending_remove"):
            return None
        return dict(item["pending_item"])
    return content(item)


class BillingCommits:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store
        self._writes = 0

    # --- reads --------------------------------------------------------------------------------

    def raw_query(self, pk: str, prefix: str = "") -> Iterator[dict[str, Any]]:
        condition = "pk = :pk" + (" AND begins_with(sk, :p)" if prefix else "")
        values: dict[str, Any] = {":pk": {"S": pk}}
        if prefix:
            values[":p"] = {"S": prefix}
        kwargs: dict[str, Any] = {"KeyConditionExpression": condition, "ExpressionAttributeValues": values}
        while True:
            page = self.store.call("query", "read", **kwargs)
            for raw in page.get("Items", []):
                yield {k: plain(v) for k, v in raw.items()}
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def raw_get(self, keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
        found: dict[Key, dict[str, Any]] = {}
        for start in range(0, len(keys), 100):
            wanted = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys[start : start + 100]]
            for attempt in range(10):
                if not wanted:
                    break
                if attempt:
                    time.sleep(min(0.05 * 2**attempt, 1.0))
                answer = self.store.call(
                    "batch_get_item",
                    "read",
                    RequestItems={self.store.table_name: {"Keys": wanted, "ConsistentRead": True}},
                )
                for raw in answer.get("Responses", {}).get(self.store.table_name, []):
                    item = {k: plain(v) for k, v in raw.items()}
                    found[(str(item["pk"]), str(item["sk"]))] = item
                wanted = list(answer.get("UnprocessedKeys", {}).get(self.store.table_name, {}).get("Keys", []))
            if wanted:
                raise StoreError(f"DynamoDB left {len(wanted)} key(s) unread after 10 attempts")
        return found

    def head(self) -> Head:
        answer = self.store.call(
            "get_item", "read", Key={"pk": {"S": HEAD_PK}, "sk": {"S": HEAD_SK}}, ConsistentRead=True
        )
        raw = answer.get("Item")
        if not raw:
            return Head()
        item = {k: plain(v) for k, v in raw.items()}
        return Head(
            version=int(item.get("version", 0)),
            running=item.get("running"),
            running_what=item.get("running_what"),
            running_started=item.get("running_started"),
            committed=item.get("committed"),
            applied=bool(item.get("applied", True)),
        )

    def resolve(self, items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Items as readers see them; reads the head only when some item carries a mark."""
        items = list(items)
        head = self.head() if any("pending_import" in i for i in items) else None
        return [seen for seen in (in_force(i, head) for i in items) if seen is not None]

    def settled_head(self) -> Head:
        """The head after finishing the roll-forward of a committed change that died before finishing it."""
        head = self.head()
        if head.committed and not head.applied:
            self.roll_forward(head.committed)
            head = self.head()
        return head

    # --- the change ---------------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], *, what: str, base: Head) -> None:
        """Commit `changes` as one, or raise ImportConflictError; `base` is the head read before `changes`
        were computed from the stored items."""
        if not changes:
            return
        change_id = uuid.uuid4().hex[:16]
        version = base.version + 1
        now = datetime.now(UTC)
        self._take_ticket(change_id, what, base, now)
        self._write_manifest(change_id, [c.key for c in changes], now)
        self._mark(change_id, version, changes, now, what)
        committed = self.store.call(
            "update_item",
            "write",
            conditional=True,
            Key={"pk": {"S": HEAD_PK}, "sk": {"S": HEAD_SK}},
            UpdateExpression="SET version = :next, committed = :id, applied = :no, committed_at = :at",
            ConditionExpression="running = :id AND version = :v",
            ExpressionAttributeValues={
                ":id": {"S": change_id},
                ":v": {"N": str(version)},
                ":next": {"N": str(version + 1)},
                ":no": {"BOOL": False},
                ":at": {"S": now.isoformat(timespec="seconds")},
            },
        )
        self._wrote()
        if committed is None:
            raise self._conflict(what)
        self.roll_forward(change_id)

    def _take_ticket(self, change_id: str, what: str, base: Head, now: datetime) -> None:
        condition = "version = :v" if base.version else "attribute_not_exists(version)"
        taken = self.store.call(
            "update_item",
            "write",
            conditional=True,
            Key={"pk": {"S": HEAD_PK}, "sk": {"S": HEAD_SK}},
            UpdateExpression="SET version = :next, running = :id, running_what = :what, running_started = :at",
            ConditionExpression=condition,
            ExpressionAttributeValues={
                **({":v": {"N": str(base.version)}} if base.version else {}),
                ":next": {"N": str(base.version + 1)},
                ":id": {"S": change_id},
                ":what": {"S": what[:200]},
                ":at": {"S": now.isoformat(timespec="seconds")},
            },
        )
        self._wrote()
        if taken is None:
            raise self._conflict(what)

    def _conflict(self, what: str) -> ImportConflictError:
        other = self.head()
        by = other.running_what if other.running_what else "another change"
        return ImportConflictError(
            f"conflict: {by} (started {other.running_started}) changed the billing data while {what} was being"
            f" imported; nothing of {what} is in force: run it again"
        )

    def _write_manifest(self, change_id: str, keys: Sequence[Key], now: datetime) -> None:
        expires = int((now + MANIFEST_TTL).timestamp())
        for page, start in enumerate(range(0, len(keys), MANIFEST_KEYS_PER_ITEM)):
            self.store.queue_raw(
                {
                    "pk": f"BILLING#CHANGE#{change_id}",
                    "sk": f"{page:05d}",
                    "record_type": "billing_change",
                    "keys": [list(k) for k in keys[start : start + MANIFEST_KEYS_PER_ITEM]],
                    "expires_at": expires,
                }
            )
        self.store.flush()
        self._wrote()

    def _mark(self, change_id: str, version: int, changes: Sequence[Change], now: datetime, what: str) -> None:
        """Each item's mark beside its content, never over it: a mark is an update of the mark's attributes, so
        content another change committed meanwhile is kept (and this change then fails to commit)."""
        expires = int((now + ORPHAN_TTL).timestamp())
        for start in range(0, len(changes), TRANSACTION_SIZE):
            actions = []
            for change in changes[start : start + TRANSACTION_SIZE]:
                pk, sk = change.key
                values = serialize(
                    {
                        ":id": change_id,
                        ":v": version,
                        ":item": dict(change.new) if change.new is not None else {},
                        ":remove": change.new is None,
                        ":exp": expires,
                    }
                )
                update = (
                    "SET pending_import = :id, pending_version = :v, pending_item = :item, pending_remove = :remove"
                )
                condition = "(attribute_not_exists(pending_version) OR pending_version < :v)"
                if content(change.stored) is None:  # new: it expires unless committed, and nobody else made it
                    update += ", expires_at = :exp"
                    condition += " AND attribute_not_exists(record_type)"
                else:
                    del values[":exp"]
                actions.append(
                    {
                        "Update": {
                            "TableName": self.store.table_name,
                            "Key": {"pk": {"S": pk}, "sk": {"S": sk}},
                            "UpdateExpression": update,
                            "ConditionExpression": condition,
                            "ExpressionAttributeValues": values,
                        }
                    }
                )
            if not self._transact(actions):
                raise self._conflict(what)

    def _transact(self, actions: list[dict[str, Any]]) -> bool:
        """One TransactWriteItems; False when a condition failed (the whole call then changed nothing)."""
        try:
            self.store.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except Exception as exc:
            response = getattr(exc, "response", None) or {}  # a timeout or a lost connection has none
            code = response.get("Error", {}).get("Code")
            if code != "TransactionCanceledException":
                raise StoreError(f"DynamoDB transactional write failed: {type(exc).__name__}: {exc}") from exc
            reasons = response.get("CancellationReasons", [])
            if any(r.get("Code") not in (None, "None", "ConditionalCheckFailed") for r in reasons):
                raise StoreError(f"DynamoDB transactional write cancelled: {exc}") from exc
            return False
        finally:
            self._wrote()
        return True

    def roll_forward(self, change_id: str) -> None:
        """Make a committed change's marks the items' content; safe to run twice or beside another roller."""
        keys = [
            (str(k[0]), str(k[1]))
            for page in self.raw_query(f"BILLING#CHANGE#{change_id}")
            for k in page.get("keys", [])
        ]
        found = self.raw_get(keys)
        mine = [found[k] for k in keys if k in found and found[k].get("pending_import") == change_id]
        for start in range(0, len(mine), TRANSACTION_SIZE):
            actions = [self._settle(item, change_id) for item in mine[start : start + TRANSACTION_SIZE]]
            if not self._transact(actions):
                for action in actions:  # some were settled by another roller: settle the rest one by one
                    self._transact([action])
        self.store.call(
            "update_item",
            "write",
            conditional=True,
            Key={"pk": {"S": HEAD_PK}, "sk": {"S": HEAD_SK}},
            UpdateExpression="SET applied = :yes",
            ConditionExpression="committed = :id",
            ExpressionAttributeValues={":id": {"S": change_id}, ":yes": {"BOOL": True}},
        )

    def _settle(self, item: Mapping[str, Any], change_id: str) -> dict[str, Any]:
        key = {"pk": {"S": str(item["pk"])}, "sk": {"S": str(item["sk"])}}
        condition = {
            "ConditionExpression": "pending_import = :id",
            "ExpressionAttributeValues": {":id": {"S": change_id}},
        }
        if item.get("pending_remove"):
            return {"Delete": {"TableName": self.store.table_name, "Key": key, **condition}}
        new = {**dict(item["pending_item"]), "pk": item["pk"], "sk": item["sk"]}
        return {"Put": {"TableName": self.store.table_name, "Item": serialize(new), **condition}}

    def _wrote(self) -> None:
        """Counts write calls; the test hook (STALL_ENV) stops here so a test can kill the process mid-change."""
        self._writes += 1
        limit = os.environ.get(STALL_ENV)
        if limit and self._writes >= int(limit):
            sys.stderr.write("stalled\n")
            sys.stderr.flush()
            while True:
                time.sleep(60)

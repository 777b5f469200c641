"""Fixtures and patches every suite shares.

moto's `TransactWriteItems` backs up a whole table (`copy.deepcopy`) once per action of every transaction, for its
rollback: 100 copies of the table for a transaction of 100 actions. The billing commit protocol writes in
transactions, so on a table of a few thousand items one import spent most of its time copying. The patch below keeps
moto's transaction code as it is (conditions, unicity, errors, `TransactionCanceledException` with its reasons) and
replaces only its backup: the items the transaction names are copied before it runs and put back if it fails, so a
failed transaction still changes nothing (tests/integration/test_moto_transactions.py proves it), and transactions
run one at a time, as DynamoDB isolates them.

moto answers through a generic serializer that looks every member of every response shape up under six possible
aliases; a DynamoDB item is a map of `AttributeValue` structures with ten members each, so reading a few hundred
items spent seconds in that search. The second patch takes the one alias an item's dict can have (the member's own
name: `S`, `N`, `M`, ...) and hands each value to moto's own member serializer, so the body is what moto's generic
walk gives (tests/integration/test_moto_transactions.py compares the two).

The third keeps, per response class, the list of its method names that moto makes on every request (52 µs each
time for DynamoDB's) to find the action's method.
"""

from __future__ import annotations

import copy
import functools
import threading
import types
from typing import Any

import pytest

Saved = list[tuple[Any, Any, Any, Any]]  # (table, hash key, range key or None, the item as it was or None)


def _touched_items(backend: Any, transact_items: list[dict[str, Any]]) -> tuple[Saved, list[tuple[Any, int]]]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    saved: Saved = []
    streams: list[tuple[Any, int]] = []
    for action in transact_items:
        try:
            op_type, op = next(iter(action.items()))
            table = backend.tables[op["TableName"]]
            key = op["Item"] if op_type == "Put" else op["Key"]
            hash_key = DynamoType(key[table.hash_key_attr])
            range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        except (StopIteration, KeyError, TypeError, AttributeError):
            continue  # moto refuses this action itself, before it writes it
        current = table.get_item(hash_key, range_key)
        saved.append((table, hash_key, range_key, copy.deepcopy(current)))
        if table.stream_shard is not None and all(t is not table for t, _ in streams):
            streams.append((table, len(table.stream_shard.items)))
    return saved, streams


def _put_back(saved: Saved, streams: list[tuple[Any, int]]) -> None:
    for table, hash_key, range_key, item in reversed(saved):
        if range_key is None:
            if item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item
        elif item is None:
            table.items[hash_key].pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    for table, length in streams:
        del table.stream_shard.items[length:]


def install_item_level_transaction_rollback() -> None:
    """Idempotent: moto's transactions back up the items they touch instead of whole tables."""
    import moto.dynamodb.models as models

    if getattr(models.DynamoDBBackend.transact_write_items, "item_level_rollback", False):
        return
    real = models.DynamoDBBackend.transact_write_items
    lock = threading.Lock()

    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        # moto's own whole-table backup becomes the table itself (its rollback a no-op); every other copy is real.
        return value if isinstance(value, models.Table) else copy.deepcopy(value, memo)

    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[assignment]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            saved, streams = _touched_items(self, transact_items)
            try:
                real(self, transact_items)
            except BaseException:
                _put_back(saved, streams)
                raise

    transact_write_items.item_level_rollback = True  # type: ignore[attr-defined]
    models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def install_direct_attribute_value_serializer() -> None:
    """Idempotent: moto's JSON serializer writes a DynamoDB `AttributeValue` dict by its keys, without the alias
    search (everything else, and any value that is not a plain dict, goes through moto's own code)."""
    from moto.core.serialize import JSONSerializer

    real = JSONSerializer._serialize_type_structure
    if getattr(real, "direct_attribute_values", False):
        return

    def serialize_structure(self: Any, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if (
            shape.name != "AttributeValue"
            or type(value) is not dict
            or self.operation_model.service_model.service_name not in ("dynamodb", "dynamodbstreams")
            or getattr(self._value_picker, "response_transformers", None)
        ):
            real(self, serialized, value, shape, key)
            return
        wrapper = self.MAP_TYPE() if key else serialized
        members = shape.members
        for member_key, member_value in value.items():
            member_shape = members.get(member_key)
            if member_shape is not None and member_value is not None:
                member_shape.parent = shape
                self._serialize(wrapper, member_value, member_shape, member_key)
        if key:
            self._default_serialize(serialized, wrapper, shape, key)

    serialize_structure.direct_attribute_values = True  # type: ignore[attr-defined]
    serialize_structure.moto_serialize_structure = real  # type: ignore[attr-defined]
    JSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]


def install_action_name_cache() -> None:
    """Idempotent: moto lists a response class's methods (`inspect.getmembers`) on every request, to see whether
    the action is one of them; the list depends only on the class, so it is made once per class (1.7% of the
    whole suite's CPU, in a profile, went to making it again)."""
    from moto.core import responses

    if hasattr(responses.method_names_from_class, "cache_info"):
        return
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)


def pytest_configure(config: pytest.Config) -> None:
    install_item_level_transaction_rollback()
    install_direct_attribute_value_serializer()
    install_action_name_cache()

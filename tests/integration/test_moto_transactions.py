"""The suite's moto patch (tests/conftest.py) backs up only the items a transaction touches: a transaction that
fails still changes nothing, one that succeeds writes every action, and the reasons moto gives stay the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.local_aws import in_process_aws

TABLE = "transactions"


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with in_process_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        for i in range(5):
            client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "sk": {"S": f"{i}"}, "n": {"N": str(i)}})
        yield client


def everything(client: Any) -> list[dict[str, Any]]:
    items = client.scan(TableName=TABLE)["Items"]
    return sorted(items, key=lambda item: (item["pk"]["S"], item["sk"]["S"]))


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def writes() -> list[dict[str, Any]]:
    """A new item, an item changed, an item deleted, an item replaced: each kind of write moto undoes."""
    return [
        {"Put": {"TableName": TABLE, "Item": {**key("b", "new"), "n": {"N": "9"}}}},
        {
            "Update": {
                "TableName": TABLE,
                "Key": key("a", "1"),
                "UpdateExpression": "SET n = n + :one, extra = :x",
                "ExpressionAttributeValues": {":one": {"N": "1"}, ":x": {"S": "x"}},
            }
        },
        {"Delete": {"TableName": TABLE, "Key": key("a", "2")}},
        {"Put": {"TableName": TABLE, "Item": {**key("a", "3"), "n": {"N": "30"}}}},
    ]


def failing_check(sk: str) -> dict[str, Any]:
    return {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": key("a", sk),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def test_the_patch_is_the_one_in_use() -> None:
    import moto.dynamodb.models as models

    assert getattr(models.DynamoDBBackend.transact_write_items, "item_level_rollback", False)


@pytest.mark.parametrize("at", [0, 2, 4])
def test_a_cancelled_transaction_changes_no_item(ddb: Any, at: int) -> None:
    before = everything(ddb)
    actions = writes()
    actions.insert(at, failing_check("4"))
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(TransactItems=actions)
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = raised.value.response["CancellationReasons"]
    assert [reason["Code"] for reason in reasons][at] == "ConditionalCheckFailed"
    assert everything(ddb) == before


def test_two_actions_on_one_item_are_refused_after_a_write_and_change_nothing(ddb: Any) -> None:
    before = everything(ddb)
    actions = [*writes(), {"Delete": {"TableName": TABLE, "Key": key("b", "new")}}]
    with pytest.raises(ClientError) as raised:
        ddb.transact_write_items(TransactItems=actions)
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert everything(ddb) == before


def test_a_successful_transaction_writes_every_action(ddb: Any) -> None:
    ddb.transact_write_items(TransactItems=writes())
    after = {(item["pk"]["S"], item["sk"]["S"]): item for item in everything(ddb)}
    assert after[("b", "new")]["n"] == {"N": "9"}
    assert after[("a", "1")]["n"] == {"N": "2"} and after[("a", "1")]["extra"] == {"S": "x"}
    assert ("a", "2") not in after
    assert after[("a", "3")]["n"] == {"N": "30"}
    assert len(after) == 5


def test_a_cancelled_transaction_leaves_no_stream_record(ddb: Any) -> None:
    import moto.dynamodb.models as models

    table = models.dynamodb_backends["123456789012"]["eu-west-1"].tables[TABLE]
    records = len(table.stream_shard.items)
    with pytest.raises(ClientError):
        ddb.transact_write_items(TransactItems=[*writes(), failing_check("0")])
    assert len(table.stream_shard.items) == records


def test_items_are_answered_as_moto_s_own_serializer_answers(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second patch of tests/conftest.py writes an item's attribute values by their keys: every kind of value
    comes back the same as through moto's generic walk."""
    from moto.core.serialize import JSONSerializer

    item = {
        **key("c", "kinds"),
        "n": {"N": "12.50"},
        "b": {"B": b"\x00\xffbytes"},
        "ss": {"SS": ["x", "y"]},
        "ns": {"NS": ["1", "2.5"]},
        "bs": {"BS": [b"\x01", b"\x02"]},
        "m": {
            "M": {"inner": {"M": {"deep": {"L": [{"S": "a"}, {"N": "1"}, {"NULL": True}]}}}, "flag": {"BOOL": False}}
        },
        "l": {"L": [{"M": {"k": {"S": "v"}}}, {"BOOL": True}, {"B": b"\x03"}]},
        "empty_l": {"L": []},
        "empty_m": {"M": {}},
        "text": {"S": 'ünïcode "quoted" </script>'},
    }
    ddb.put_item(TableName=TABLE, Item=item)

    def reads() -> list[Any]:
        return [
            ddb.get_item(TableName=TABLE, Key=key("c", "kinds"))["Item"],
            ddb.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": "c"}},
            )["Items"],
            everything(ddb),
        ]

    patched = JSONSerializer._serialize_type_structure
    assert getattr(patched, "direct_attribute_values", False)
    fast = reads()
    assert fast[0] == item
    monkeypatch.setattr(JSONSerializer, "_serialize_type_structure", patched.moto_serialize_structure)
    assert reads() == fast

"""A transactional write that got no answer is a StoreError naming what happened, never an AttributeError."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from usagewatch.errors import StoreError
from usagewatch.store import DynamoStore
from usagewatch.store.billing_commit import BillingCommits


class RaisingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def transact_write_items(self, **_: Any) -> None:
        raise self.error


def commits(error: Exception) -> BillingCommits:
    return BillingCommits(DynamoStore("t", client=RaisingClient(error)))  # type: ignore[arg-type]


def test_a_timeout_without_a_response_is_a_store_error() -> None:
    timeout = ReadTimeoutError(endpoint_url="http://127.0.0.1:1/")
    timeout.response = None  # type: ignore[attr-defined]
    with pytest.raises(StoreError, match="ReadTimeoutError"):
        commits(timeout)._transact([])


def test_a_failed_condition_is_false_and_another_cancellation_an_error() -> None:
    def cancelled(*codes: str) -> ClientError:
        error = ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "x"}}, "TransactWriteItems")
        error.response["CancellationReasons"] = [{"Code": c} for c in codes]  # type: ignore[typeddict-unknown-key]
        return error

    assert commits(cancelled("None", "ConditionalCheckFailed"))._transact([]) is False
    with pytest.raises(StoreError, match="cancelled"):
        commits(cancelled("ThrottlingError"))._transact([])

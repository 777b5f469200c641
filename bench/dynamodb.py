"""DynamoDB: the real `DynamoStore` and `SnsPublisher` against moto (`mock_aws`), calls counted by botocore.

Keepnet companies go through the real source and pipeline into the table `template.yaml` defines (built
by tests/local_aws.py). A botocore `before-parameter-build` hook counts every API call the product makes
and the items in each BatchWriteItem. Two sizes show how reads grow (they must not grow with records),
and a second run of the larger size shows the steady state (nothing changed, alerts already open): write calls
are held to what the changed items need (`write_call_bound`).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bench.common import Row, counting_connections, env_defaults, in_child, meter_logs
from tests.simulators.keepnet import KeepnetSimulator, make_companies

SIZES: Final = (100, 500)
WRITE_OPERATIONS: Final = frozenset({"BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"})
READ_OPERATIONS: Final = frozenset({"GetItem", "BatchGetItem", "Query", "Scan"})
BATCH: Final = 25  # BatchWriteItem's maximum
METRICS: Final = 4  # a Keepnet company's metrics: one total item each, written by every run
FIXED_WRITES: Final = 5
"""The single-item writes every run makes whatever changed: the lease taken, checked before events go out (only
when there are events) and released, the run record written as `running` and as finished."""


def write_call_bound(changed_items: int, *, alert_states: int, totals: int = METRICS) -> int:
    """Write calls a run needs at most: its changed tenant items in batches of 25, the totals in their own
    batches (written after every tenant), one conditional PutItem per alert state (a conditional write cannot
    be batched), and the fixed records of a run."""
    return math.ceil(changed_items / BATCH) + math.ceil(totals / BATCH) + alert_states + FIXED_WRITES


def reads_flat(small_reads: int, big_reads: int) -> bool:
    """O(accounts): the larger account may read no more than the smaller one (equal counts pass)."""
    return big_reads <= small_reads


class CallCounter:
    """Counts API calls by operation, and items per BatchWriteItem, from botocore's event system."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.batch_sizes: list[int] = []
        self.items_by_type: dict[str, int] = {}

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == "BatchWriteItem":
            requests = [r for v in params.get("RequestItems", {}).values() for r in v]
            self.batch_sizes.append(len(requests))
            for request in requests:
                kind = request.get("PutRequest", {}).get("Item", {}).get("record_type", {}).get("S", "?")
                self.items_by_type[kind] = self.items_by_type.get(kind, 0) + 1

    def reset(self) -> None:
        self.calls.clear()
        self.batch_sizes.clear()
        self.items_by_type.clear()

    def summary(self) -> dict[str, Any]:
        writes = sum(n for op, n in self.calls.items() if op in WRITE_OPERATIONS)
        reads = sum(n for op, n in self.calls.items() if op in READ_OPERATIONS)
        items = sum(self.batch_sizes) + self.calls.get("PutItem", 0)
        return {
            "calls": dict(sorted(self.calls.items())),
            "write_calls": writes,
            "read_calls": reads,
            "items_written": items,
            "batched_items": sum(self.batch_sizes),
            "batched_items_by_type": dict(sorted(self.items_by_type.items())),
            "single_item_writes": writes - len(self.batch_sizes),
            "items_per_write_call": round(items / writes, 2) if writes else None,
            "items_per_batch_call": round(sum(self.batch_sizes) / len(self.batch_sizes), 2)
            if self.batch_sizes
            else None,
        }


def collect(url: str, runs: int) -> dict[str, Any]:
    """`runs` Keepnet collections (six hours apart) into moto's DynamoDB and SNS; calls counted per run."""
    env_defaults()
    from moto import mock_aws

    from tests.local_aws import provision
    from usagewatch.model import CollectionRequest, Period
    from usagewatch.pipeline import Pipeline
    from usagewatch.publisher import SnsPublisher
    from usagewatch.rules import DEFAULT_RULES
    from usagewatch.sources.keepnet import KeepnetSource
    from usagewatch.store import DynamoStore

    meter_logs()
    results: list[dict[str, Any]] = []
    with mock_aws():
        aws = provision()
        ddb = aws.client("dynamodb")
        sns = aws.client("sns")
        counter = CallCounter()
        ddb.meta.events.register("before-parameter-build.dynamodb", counter)
        sns_counter = CallCounter()
        sns.meta.events.register("before-parameter-build.sns", sns_counter)
        source = KeepnetSource()
        account = source.parse_account(
            {
                "account_id": "kn-bench",
                "base_url": url,
                "client_id": "demo-client",
                "client_secret": "demo-secret",
                "requests_per_second": 1000,
            }
        )
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        for index in range(runs):
            counter.reset()
            sns_counter.reset()
            store = DynamoStore(aws.table_name, client=ddb)
            publisher = SnsPublisher(aws.topic_arn, client=sns)
            as_of = start + timedelta(hours=6 * index)
            if Period.of(as_of) != Period.of(start):  # stay inside one month: the second run sees the first
                as_of = start - timedelta(hours=6 * index)
            started = time.perf_counter()
            summary = Pipeline(source, store, publisher, DEFAULT_RULES).run(
                [account], CollectionRequest(Period.of(as_of), as_of)
            )
            wall = time.perf_counter() - started
            data = summary.to_dict()
            results.append(
                {
                    "wall_s_under_moto": round(wall, 2),
                    "records": data["records_written"],
                    "tenants": data["tenants_collected"],
                    "alerts_published": data["alerts_published"],
                    "dynamodb": counter.summary(),
                    "sns": sns_counter.summary()["calls"],
                    "store_counters": {"write_calls": store.write_calls, "items_written": store.items_written},
                }
            )
    return {"runs": results}


def scenario() -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {}
    for size in SIZES:
        cls = counting_connections(KeepnetSimulator)
        with cls(companies=make_companies(size), page_cap=100) as sim:
            raw[str(size)] = in_child(collect, sim.url, 2 if size == max(SIZES) else 1)
    big = raw[str(max(SIZES))]["runs"]
    small = raw[str(min(SIZES))]["runs"]
    first, steady = big[0], big[1]
    companies = max(SIZES)
    # First run: every company is new (its usage item and its first snapshot) plus the account's index item.
    first_bound = write_call_bound(2 * companies + 1, alert_states=first["alerts_published"])
    # Next run: the simulator's numbers have not moved, so no tenant item changes and no alert is sent.
    steady_bound = write_call_bound(0, alert_states=steady["alerts_published"])
    small_reads, big_reads = small[0]["dynamodb"]["read_calls"], big[0]["dynamodb"]["read_calls"]
    rows = [
        Row(
            "dynamodb",
            f"write calls, first run ({companies} co.)",
            first["dynamodb"]["write_calls"],
            "",
            first_bound,
            "changed/25 + alerts + fixed",
            target="<= bound",
            ok=first["dynamodb"]["write_calls"] <= first_bound,
            details=first,
        ),
        Row(
            "dynamodb",
            f"write calls, unchanged next run ({companies} co.)",
            steady["dynamodb"]["write_calls"],
            "",
            steady_bound,
            "totals/25 + fixed",
            target="<= bound",
            ok=steady["dynamodb"]["write_calls"] <= steady_bound,
            details=steady,
        ),
        Row(
            "dynamodb",
            f"items per BatchWriteItem ({companies} co.)",
            first["dynamodb"]["items_per_batch_call"],
            "",
            25,
            "BatchWriteItem max",
            details={"batch_calls": first["dynamodb"]["calls"].get("BatchWriteItem", 0)},
        ),
        Row(
            "dynamodb",
            f"reads per run: {min(SIZES)} vs {companies} companies",
            big_reads,
            "",
            small_reads,
            f"reads at {min(SIZES)} co.",
            target="O(accounts): no growth",
            ok=reads_flat(small_reads, big_reads),
            details={
                "reads_small": small[0]["dynamodb"]["calls"],
                "reads_big": big[0]["dynamodb"]["calls"],
                "get_item_calls": big[0]["dynamodb"]["calls"].get("GetItem", 0),
            },
        ),
    ]
    return rows, raw

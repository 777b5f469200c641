"""One collection run in a child process: the real source and pipeline, DynamoDB and SNS counted.

`collect(vendor, account, config)` is what `bench.common.in_child` runs. config keys:
- `naive`: a store that sends one PutItem per item instead of batches;
- `ddb_latency`: seconds slept per DynamoDB call, by operation (a stand-in for the network round trip);
- `sns_latency`: seconds slept per SNS publish;
- `writers`: the store's writer threads (8 by default; 1 sends every batch from the run's own thread);
- `tracemalloc`: trace Python allocations and report the heap peak (slows the run down);
- `profile`: cProfile the run and return the top functions (`profile_dump`: also write the stats to that file);
- `period_explicit`: ask for the current month explicitly.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from datetime import UTC, datetime
from typing import Any

from bench.common import (
    CountingPublisher,
    FakeDynamoDB,
    env_defaults,
    maxrss_mb,
    meter_logs,
    naive_store_class,
    peak_rss_mb,
)


def _source(vendor: str) -> Any:
    if vendor == "keepnet":
        from usagewatch.sources.keepnet import KeepnetSource

        return KeepnetSource()
    if vendor == "gravityzone":
        from usagewatch.sources.gravityzone import GravityZoneSource

        return GravityZoneSource()
    if vendor == "thousandeyes":
        from usagewatch.sources.thousandeyes import ThousandEyesSource

        return ThousandEyesSource()
    if vendor == "microsoft365":
        from usagewatch.sources.microsoft365 import Microsoft365Source

        return Microsoft365Source()
    raise ValueError(f"unknown vendor {vendor}")


def collect(vendor: str, account: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    env_defaults()
    import tracemalloc

    from usagewatch.model import CollectionRequest, Period
    from usagewatch.pipeline import Pipeline
    from usagewatch.rules import DEFAULT_RULES
    from usagewatch.store import DynamoStore

    logs = meter_logs()
    source = _source(vendor)
    parsed = source.parse_account(account)
    fake = FakeDynamoDB(latency=config.get("ddb_latency"))
    store_class = naive_store_class() if config.get("naive") else DynamoStore
    options = {"writers": int(config["writers"])} if "writers" in config else {}
    store = store_class("usagewatch-bench", client=fake, **options)
    publisher = CountingPublisher(latency=float(config.get("sns_latency", 0.0)))
    pipeline = Pipeline(source, store, publisher, DEFAULT_RULES)
    now = datetime.now(UTC)
    request = CollectionRequest(Period.of(now), now, period_explicit=bool(config.get("period_explicit")))
    rss_before = peak_rss_mb()
    profiler = cProfile.Profile() if config.get("profile") else None
    if config.get("tracemalloc"):
        tracemalloc.start()
    cpu_started = time.process_time()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    summary = pipeline.run([parsed], request)
    if profiler is not None:
        profiler.disable()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    heap_peak = None
    if config.get("tracemalloc"):
        heap_peak = tracemalloc.get_traced_memory()[1] / (1024 * 1024)
        tracemalloc.stop()
    data = summary.to_dict()
    result: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "rss_after_imports_mb": round(rss_before, 1),
        "rss_peak_mb": round(peak_rss_mb(), 1),
        "ru_maxrss_mb": round(maxrss_mb(), 1),
        "heap_peak_mb": None if heap_peak is None else round(heap_peak, 2),
        "summary": {k: v for k, v in data.items() if k != "account_results"},
        "account": data["account_results"][0],
        "dynamodb": fake.ledger.summary(),
        "sns_publishes": publisher.published,
        "sns_by_type": publisher.by_type,
        "log_bytes": logs.bytes,
        "log_lines": logs.lines,
    }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        result["profile"] = text.getvalue()
        if config.get("profile_dump"):
            profiler.dump_stats(str(config["profile_dump"]))
    return result

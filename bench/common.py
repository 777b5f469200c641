"""What every scenario shares: the machine, child processes, counting twins of DynamoDB and SNS, meters."""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import platform
import queue as queue_module
import resource
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from usagewatch.store import usage_shape

# --- results ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: what was measured, against what, and whether it meets the target."""

    scenario: str
    case: str
    measured: float
    unit: str
    bound: float | None = None
    bound_label: str = ""
    target: str = ""
    ok: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # A ratio computed otherwise than measured / bound (e.g. the median of paired ratios).
    paired_ratio: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.bound is None or self.bound == 0 or self.unit == "USD":
            return None
        return self.measured / self.bound

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        return data


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "USD":
        return f"${value:,.2f}"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}{(' ' + unit) if unit else ''}"
    return f"{int(value):,}{(' ' + unit) if unit else ''}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "FAIL")


def table_line(row: Row) -> str:
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
    bound = fmt(row.bound, row.unit) + (f" ({row.bound_label})" if row.bound_label else "")
    return (
        f"{row.scenario:<12} {row.case:<54} {fmt(row.measured, row.unit):>10}  {bound:<46} {ratio:>6}  "
        f"{row.target:<22} {verdict(row.ok)}"
    )


TABLE_HEADER = (
    f"{'scenario':<12} {'case':<54} {'measured':>10}  {'bound / baseline':<46} {'ratio':>6}  {'target':<22} verdict"
)


# --- the machine --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_mb: int | None = None
    with contextlib.suppress(ValueError, OSError):
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    return {
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "memory_mb": memory_mb,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


# --- child processes ----------------------------------------------------------------------------


def _child_main(target: Callable[..., dict[str, Any]], args: tuple[Any, ...], queue: Any) -> None:
    try:
        result = target(*args)
    except BaseException:  # report anything to the parent rather than dying silently
        queue.put(("error", traceback.format_exc()))
    else:
        queue.put(("ok", result))


def in_child(target: Callable[..., dict[str, Any]], *args: Any, timeout: float = 1800.0) -> dict[str, Any]:
    """Run `target(*args)` in a fresh interpreter (spawn) and return its dict: a run measured there sees
    neither the simulator's threads nor the parent's memory."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child_main, args=(target, args, queue), daemon=True)
    process.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                status, payload = queue.get(timeout=1.0)
                break
            except queue_module.Empty:
                if not process.is_alive() and queue.empty():
                    raise RuntimeError(f"benchmark child died (exit code {process.exitcode})") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"benchmark child still running after {timeout:.0f} s") from None
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.terminate()
    if status != "ok":
        raise RuntimeError(f"benchmark child failed:\n{payload}")
    result: dict[str, Any] = payload
    return result


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    Linux: `VmHWM` from /proc/self/status, the high-water mark of this address space. Not `ru_maxrss`:
    Linux keeps that across fork and execve, so a child spawned by a parent holding the simulator's
    10,000 companies would report the parent's size. Elsewhere `ru_maxrss` (macOS reports bytes).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def maxrss_mb() -> float:
    """`ru_maxrss` as the issue words it, for comparison (inherited across fork/exec on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


# --- DynamoDB: a counting in-memory twin of the client DynamoStore uses -------------------------


# DynamoDB's item size rules: the store sizes its change log with the same function.
attribute_size = usage_shape.attribute_size
item_size = usage_shape.item_size


SIZE_SAMPLE = 25


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


@dataclass
class WriteLedger:
    """What reached DynamoDB: calls by operation, items, their write units (table + gsi1), a size sample."""

    calls: dict[str, int] = field(default_factory=dict)
    items: int = 0
    items_by_type: dict[str, int] = field(default_factory=dict)
    items_per_batch: list[int] = field(default_factory=list)
    _sizes: dict[str, list[Any]] = field(default_factory=dict)

    def call(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1

    def item(self, item: Mapping[str, Mapping[str, Any]]) -> None:
        """Count one item; measure the size of one in `SIZE_SAMPLE` of each kind (sizing every item would
        cost the run more CPU than the store itself) and charge the others the kind's average."""
        self.items += 1
        kind = item.get("record_type", {}).get("S", "?")
        seen = self.items_by_type.get(kind, 0)
        self.items_by_type[kind] = seen + 1
        if seen % SIZE_SAMPLE == 0:
            size = item_size(item)
            sample = self._sizes.setdefault(kind, [0, 0, 0, False])
            sample[0] += 1
            sample[1] += size
            sample[2] += write_units(size)
            sample[3] = "gsi1pk" in item and "gsi1sk" in item  # projected ALL into gsi1: a second write

    def _estimate(self) -> tuple[float, float, float]:
        """(table WRU, gsi1 WRU, bytes) over every item, from the sampled averages of each kind."""
        table = gsi = size = 0.0
        for kind, count in self.items_by_type.items():
            sampled, total_bytes, units, indexed = self._sizes.get(kind, [1, 0, 1, False])
            table += count * units / sampled
            gsi += count * units / sampled if indexed else 0.0
            size += count * total_bytes / sampled
        return table, gsi, size

    def summary(self) -> dict[str, Any]:
        batches = self.items_per_batch
        wru_table, wru_gsi, size = self._estimate()
        return {
            "calls": dict(sorted(self.calls.items())),
            "write_calls": self.calls.get("BatchWriteItem", 0) + self.calls.get("PutItem", 0),
            "read_calls": sum(self.calls.get(op, 0) for op in ("GetItem", "Query", "Scan", "BatchGetItem")),
            "items": self.items,
            "items_by_type": dict(sorted(self.items_by_type.items())),
            "wru_table": round(wru_table),
            "wru_gsi": round(wru_gsi),
            "wru": round(wru_table + wru_gsi),
            "avg_item_bytes": round(size / self.items, 1) if self.items else 0,
            "avg_item_bytes_by_type": {
                kind: round(total / sampled, 1) for kind, (sampled, total, _u, _i) in sorted(self._sizes.items())
            },
            "items_per_batch_avg": round(sum(batches) / len(batches), 2) if batches else None,
            "items_per_batch_min": min(batches) if batches else None,
        }


class _Paginator:
    def __init__(self, client: FakeDynamoDB, operation: str) -> None:
        self._client = client
        self._operation = operation

    def paginate(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        yield self._client.query(**kwargs)


class FakeDynamoDB:
    """Enough of the DynamoDB client for `DynamoStore`: every call counted, items measured, nothing kept
    except alert items (so a second run could read them back). `latency` sleeps per call: a stand-in
    for the network round trip when a scenario wants real time spent per call."""

    def __init__(self, *, latency: Mapping[str, float] | None = None) -> None:
        self.ledger = WriteLedger()
        self.latency = dict(latency or {})
        self._lock = threading.Lock()

    def _enter(self, operation: str) -> None:
        with self._lock:
            self.ledger.call(operation)
        delay = self.latency.get(operation, 0.0)
        if delay:
            time.sleep(delay)

    def batch_write_item(self, *, RequestItems: Mapping[str, list[dict[str, Any]]], **_: Any) -> dict[str, Any]:  # noqa: N803
        self._enter("BatchWriteItem")
        count = 0
        with self._lock:
            for requests in RequestItems.values():
                for request in requests:
                    self.ledger.item(request["PutRequest"]["Item"])
                    count += 1
            self.ledger.items_per_batch.append(count)
        return {"UnprocessedItems": {}}

    def put_item(self, *, TableName: str, Item: Mapping[str, Any], **_: Any) -> dict[str, Any]:  # noqa: N803
        self._enter("PutItem")
        with self._lock:
            self.ledger.item(Item)
        return {}

    def query(self, **_: Any) -> dict[str, Any]:
        self._enter("Query")
        return {"Items": [], "Count": 0}

    def get_item(self, **_: Any) -> dict[str, Any]:
        self._enter("GetItem")
        return {}

    def batch_get_item(self, **_: Any) -> dict[str, Any]:
        self._enter("BatchGetItem")
        return {"Responses": {}}

    def get_paginator(self, operation: str) -> _Paginator:
        return _Paginator(self, operation)


def naive_store_class() -> type:
    """A store that writes every item with its own PutItem the moment it is added (no buffer, no batch)."""
    from usagewatch.store import DynamoStore

    class NaiveStore(DynamoStore):
        def _queue_item(self, item: dict[str, Any]) -> None:
            self._count(1, 0)
            self.client.put_item(TableName=self.table_name, Item=item)
            self._count(0, 1)

    return NaiveStore


class CountingPublisher:
    """The pipeline's Publisher: counts events (and their kinds) instead of calling SNS; `latency` sleeps
    per publish (a stand-in for SNS's round trip)."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.published = 0
        self.by_type: dict[str, int] = {}
        self.latency = latency
        self._lock = threading.Lock()

    def publish(self, event: Mapping[str, Any]) -> str:
        if self.latency:
            time.sleep(self.latency)
        kind = str(event.get("event_type"))
        with self._lock:
            self.published += 1
            self.by_type[kind] = self.by_type.get(kind, 0) + 1
            return f"msg-{self.published}"


# --- logs -----------------------------------------------------------------------------------------


class _CountingStream(io.TextIOBase):
    def __init__(self) -> None:
        self.bytes = 0
        self.lines = 0
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.bytes += len(text.encode("utf-8"))
            self.lines += text.count("\n")
        return len(text)


def meter_logs() -> _CountingStream:
    """Send usagewatch's Powertools log lines to a byte counter (CloudWatch Logs ingests what stdout gets)."""
    import logging

    from usagewatch.observability import logger

    stream = _CountingStream()
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    return stream


# --- simulators: count TCP connections ------------------------------------------------------------


def counting_connections(simulator_class: type) -> type:
    """A subclass of a vendor simulator that also records the client address of every request, so a
    scenario can tell how many TCP (TLS, in production) connections a run opened."""

    class Counting(simulator_class):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.peers: set[tuple[str, int]] = set()

        def _dispatch(self, handler: Any) -> None:
            with self._lock:
                self.peers.add(tuple(handler.client_address[:2]))
            super()._dispatch(handler)

    Counting.__name__ = f"Counting{simulator_class.__name__}"
    return Counting


def env_defaults() -> None:
    """Credentials and region for moto and boto3 in any process that may build a client."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"  # noqa: S105 - moto's fake credential

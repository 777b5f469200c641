"""What every fault-matrix test shares: running the real handler, reading back what it stored and
published, and the two verdicts of the matrix.

- *ridden out*: every tenant collected with the vendor's exact numbers, totals exact, no failure reported,
  no alert published twice (a clean run afterwards publishes nothing: the faulty run left the same state a
  clean one would have);
- *contained*: the failing tenant or account is reported (run record, summary, `collection.failed`) with a
  clear message, and nothing it had stored before is deleted or overwritten with worse data (values,
  `collected_at`, totals and their `computed_at` compared with what a clean run stored just before).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from usagewatch.handler import CollectionFailedError
from usagewatch.model import utc_iso
from usagewatch.store import DynamoStore, deserialize
from usagewatch.stored import ACCOUNT_WIDE

# The run's clock (collected_at, computed_at, run start/end) reads this many minutes after the scheduled
# time, so every run stamps its own, distinct times and "collected_at unchanged" means something.
CLOCK_OFFSET = timedelta(minutes=3)

TOTAL_ATTRIBUTES = ("account_id", "metric", "value", "computed_at", "tenant_count", "carried_tenant_count")

UsageKey = tuple[str, str, str]  # account, tenant, metric
TotalKey = tuple[str, str]  # account, metric


class FrozenClock:
    """The handler's wall clock, set by `Harness.run` to each run's scheduled time (plus CLOCK_OFFSET)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Outcome:
    """One invocation: the summary (returned, or carried by CollectionFailedError), the error raised
    (None when the run succeeded), and the events the topic delivered during it (its digests apart)."""

    when: str
    summary: dict[str, Any]
    error: CollectionFailedError | None
    events: list[dict[str, Any]]
    digests: list[dict[str, Any]] = field(default_factory=list)

    def account(self, account_id: str) -> dict[str, Any]:
        found = [a for a in self.summary["account_results"] if a["account_id"] == account_id]
        assert len(found) == 1, f"account {account_id} not in the summary: {self.summary}"
        return found[0]

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event_type"] == event_type]


@dataclass
class Stored:
    """What the table holds for one vendor and period: latest usage values and totals."""

    usage: dict[UsageKey, dict[str, Any]] = field(default_factory=dict)
    totals: dict[TotalKey, dict[str, Any]] = field(default_factory=dict)

    def values(self, account_id: str | None = None, *, billed_only: bool = False) -> dict[UsageKey, Any]:
        return {
            key: item["value"]
            for key, item in self.usage.items()
            if (account_id is None or key[0] == account_id)
            and (not billed_only or (item.get("billed", True) and not item.get("removed_at")))
        }

    def account_totals(self, account_id: str) -> dict[str, Any]:
        return {metric: item["value"] for (account, metric), item in self.totals.items() if account == account_id}

    def tenants(self, account_id: str) -> set[str]:
        return {tenant for account, tenant, _metric in self.usage if account == account_id}


@dataclass
class Harness:
    aws: LocalAws
    invoke: Invoke
    clock: FrozenClock
    vendor: str
    env: dict[str, str]

    def run(self, when: str, event: dict[str, Any] | None = None) -> Outcome:
        """Invoke the vendor's real lambda_handler for `scheduled_time = when`; never raises
        CollectionFailedError (it is returned in the outcome), anything else propagates."""
        self.clock.now = datetime.fromisoformat(when.replace("Z", "+00:00")) + CLOCK_OFFSET
        self.aws.digests.clear()  # set aside by an earlier drain_events: they go with the events drained then
        error: CollectionFailedError | None = None
        try:
            summary = self.invoke(self.vendor, {"scheduled_time": when, **(event or {})}, self.env)
        except CollectionFailedError as exc:
            error = exc
            summary = exc.summary.to_dict()
        events = self.aws.drain_events()
        return Outcome(when, summary, error, events, self.aws.drain_digests())

    def stored(self, period: str) -> Stored:
        """The vendor's usage (read the way the product reads it) and total items of one period (only the
        attributes the verdicts compare: moto's response serialiser costs about a millisecond per attribute)."""
        stored = Stored()
        for usage in self.store().period_usage(period, vendor=self.vendor):
            item = usage.row()
            stored.usage[(item["account_id"], item["tenant_id"], item["metric"])] = item
        for item in self._query(f"TOTAL#{period}", TOTAL_ATTRIBUTES):
            stored.totals[(item["account_id"], item["metric"])] = item
        return stored

    def _query(self, pk: str, attributes: tuple[str, ...]) -> list[dict[str, Any]]:
        ddb = self.aws.client("dynamodb")
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        found: list[dict[str, Any]] = []
        for page in ddb.get_paginator("query").paginate(
            TableName=self.aws.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": f"{self.vendor}#"}},
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
        ):
            found += [deserialize(item) for item in page["Items"]]
        return found

    def store(self) -> DynamoStore:
        return self.aws.store()

    def run_record(self, account_id: str, when: str) -> dict[str, Any]:
        runs = [asdict(r) for r in self.store().runs(self.vendor, account_id, limit=50) if r.as_of == when]
        assert len(runs) == 1, f"expected one run record of {account_id} at {when}, found {len(runs)}"
        return runs[0]

    def snapshots(self, account_id: str, tenant_id: str, metric: str) -> list[dict[str, Any]]:
        return [usage.row() for usage in self.store().metric_history(self.vendor, account_id, tenant_id, metric)]


def at(clock_time: str) -> str:
    """A scheduled time on the test's day: `at("06:00")` -> `2026-11-22T06:00:00Z`."""
    return f"2026-11-22T{clock_time}:00Z"


def collected_at(when: str) -> str:
    """The `collected_at` a run scheduled at `when` stamps (see CLOCK_OFFSET)."""
    return utc_iso(datetime.fromisoformat(when.replace("Z", "+00:00")) + CLOCK_OFFSET)


# --- verdicts ---------------------------------------------------------------------------------------


def assert_no_duplicate_events(events: Iterable[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], int] = {}
    for event in events:
        key = (event["alert_id"], event["event_type"])
        seen[key] = seen.get(key, 0) + 1
    repeated = {k: n for k, n in seen.items() if n > 1}
    assert not repeated, f"events published more than once: {repeated}"


def assert_ridden_out(
    harness: Harness,
    outcome: Outcome,
    period: str,
    expected: dict[UsageKey, Any],
    *,
    billed_only: bool = False,
    breakdown_tenants: dict[str, set[str]] | None = None,
) -> Stored:
    """Nothing failed, every expected value stored exactly, totals = the exact sums, one event per alert."""
    assert outcome.error is None, f"the run failed: {outcome.error}"
    assert outcome.summary["accounts_failed"] == 0
    assert outcome.summary["tenants_failed"] == 0, outcome.summary
    assert outcome.summary["publish_failures"] == 0
    assert not outcome.of_type("collection.failed"), outcome.of_type("collection.failed")
    assert_no_duplicate_events(outcome.events)
    stored = harness.stored(period)
    accounts = {key[0] for key in expected}
    for account in accounts:
        record = harness.run_record(account, outcome.when)
        assert record["status"] == "ok" and list(record["errors"]) == [], record
        # Freshness is the run record's: an unchanged customer keeps the time its numbers last changed.
        assert all(
            item["collected_at"] <= collected_at(outcome.when) for k, item in stored.usage.items() if k[0] == account
        )
    got = {k: v for k, v in stored.values(billed_only=billed_only).items() if k[0] in accounts}
    assert got == expected
    assert stored.totals.keys() >= {(a, m) for a, _t, m in expected}
    for account in accounts:
        sums: dict[str, Any] = {}
        for (a, _tenant, metric), value in expected.items():
            if a == account:
                sums[metric] = sums.get(metric, 0) + value
        assert stored.account_totals(account) == sums, f"totals of {account}"
        for (a, _m), item in stored.totals.items():
            if a == account:
                assert item["computed_at"] == collected_at(outcome.when)
                assert item["carried_tenant_count"] == 0
    for account, tenants in (breakdown_tenants or {}).items():
        assert tenants <= stored.tenants(account), f"breakdown rows of {account}"
    return stored


def assert_clean_rerun_publishes_nothing(harness: Harness, when: str) -> None:
    """The faulty run left the alert state a clean run would have: the next clean run has nothing to say."""
    again = harness.run(when)
    assert again.error is None, again.error
    assert again.events == [], [(e["event_type"], e.get("tenant_id"), e.get("rule")) for e in again.events]
    assert again.digests == [], "a run with nothing new sends no digest"


def assert_account_contained(outcome: Outcome, harness: Harness, account_id: str, *fragments: str) -> str:
    """The whole account is reported failed, with a message containing every fragment (case-insensitive)."""
    assert outcome.error is not None, "the invocation should fail so Lambda retries and dead-letters it"
    assert account_id in str(outcome.error)
    result = outcome.account(account_id)
    assert result["status"] == "failed", result
    message = result["error"]
    _contains(message, fragments)
    record = harness.run_record(account_id, outcome.when)
    assert record["status"] == "failed"
    _contains(record["errors"][0], fragments)
    failed = [e for e in outcome.of_type("collection.failed") if e["account_id"] == account_id]
    assert len(failed) == 1, failed
    assert "tenant_id" not in failed[0] and failed[0]["severity"] == "critical"
    _contains(failed[0]["error"], fragments)
    assert message == failed[0]["error"]
    return str(message)


def assert_tenant_contained(
    outcome: Outcome, harness: Harness, account_id: str, tenant_id: str, *fragments: str
) -> str:
    """Only that tenant failed (the account is `partial`), with a message containing every fragment."""
    assert outcome.error is None, f"a tenant failure must not fail the run: {outcome.error}"
    result = outcome.account(account_id)
    assert result["status"] == "partial" and result["tenants_failed"] == 1, result
    record = harness.run_record(account_id, outcome.when)
    assert record["status"] == "partial"
    lines = [e for e in record["errors"] if e.startswith(f"tenant {tenant_id} ")]
    assert len(lines) == 1, record["errors"]
    _contains(lines[0], fragments)
    failed = [e for e in outcome.of_type("collection.failed") if e.get("tenant_id") == tenant_id]
    assert len(failed) == 1, outcome.events
    assert failed[0]["severity"] == "warning" and failed[0]["account_id"] == account_id
    _contains(failed[0]["error"], fragments)
    assert tenant_id != ACCOUNT_WIDE
    return str(failed[0]["error"])


def assert_untouched(before: Stored, after: Stored, keys: Iterable[UsageKey]) -> None:
    """These usage items are exactly as the earlier run left them (value and collected_at)."""
    keys = list(keys)
    assert keys, "nothing to compare"
    for key in keys:
        assert key in after.usage, f"{key} was deleted"
        old, new = before.usage[key], after.usage[key]
        assert (new["value"], new["collected_at"]) == (old["value"], old["collected_at"]), key


def assert_totals_untouched(before: Stored, after: Stored, account_id: str) -> None:
    old = {k: (v["value"], v["computed_at"]) for k, v in before.totals.items() if k[0] == account_id}
    new = {k: (v["value"], v["computed_at"]) for k, v in after.totals.items() if k[0] == account_id}
    assert old, f"no totals of {account_id} to compare"
    assert new == old, f"totals of {account_id} were rewritten"


def _contains(text: str, fragments: Iterable[str]) -> None:
    for fragment in fragments:
        assert fragment.lower() in text.lower(), f"{fragment!r} not in {text!r}"


@contextmanager
def boto_hook(event_name: str, handler: Any, *, first: bool = False) -> Iterator[None]:
    """Register a botocore event handler on boto3's default session (what the product's clients are made
    from) for the duration of the block; clients created inside the block carry it."""
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    events = boto3.DEFAULT_SESSION.events
    unique = f"faults-{id(handler)}"
    if first:
        events.register_first(event_name, handler, unique_id=unique)
    else:
        events.register(event_name, handler, unique_id=unique)
    try:
        yield
    finally:
        events.unregister(event_name, unique_id=unique)


def bump(mapping: dict[str, Any], fields: Iterable[str], by: int = 1) -> None:
    """Change a vendor row's numbers between runs, so a stale value cannot pass for a fresh one."""
    for name in fields:
        mapping[name] = mapping[name] + by


def fast_retry_policy() -> Any:
    """The retry policy the fault tests inject into every source: production bounds (attempts, total
    time, backoff cap, hence the cap on a server's Retry-After) with a 10 ms backoff base instead of 0.5 s,
    so a retried fault costs milliseconds, not seconds."""
    from usagewatch.http import RetryPolicy

    return RetryPolicy(backoff_base=0.01)

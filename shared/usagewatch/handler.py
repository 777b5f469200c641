"""What every vendor's Lambda handler does: settings, wiring, the pipeline, the summary, metrics.

The pipeline, the rules (pydantic) and the vendor source are imported at the first invocation, not when
the function's module is loaded (cold start: docs/performance.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools.utilities.typing import LambdaContext

from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.invocation import collection_request
from usagewatch.observability import emit_account, emit_run, logger, metrics

if TYPE_CHECKING:
    from usagewatch.dispatch import Publisher
    from usagewatch.model import Source
    from usagewatch.pipeline import AccountOutcome, Pipeline, RunSummary
    from usagewatch.settings import ConfigLoader, Environment
    from usagewatch.store import BillingReader, UsageStore

AccountT = TypeVar("AccountT")
_loader: ConfigLoader | None = None


class CollectionFailedError(UsagewatchError):
    """At least one whole account failed; raised after every account was tried, so Lambda retries."""

    def __init__(self, summary: RunSummary) -> None:
        failed = ", ".join(f"{a.account_id}: {a.error}" for a in summary.failed_accounts)
        super().__init__(f"{summary.vendor}: {len(summary.failed_accounts)} account(s) failed ({failed})")
        self.summary = summary


def reset_config_cache() -> None:
    """Forget cached secrets and rules (tests; a new container starts empty anyway)."""
    global _loader
    _loader = None


def _config() -> ConfigLoader:
    """The container's loader: secrets and rules cached across invocations."""
    global _loader
    if _loader is None:
        from usagewatch.settings import ConfigLoader

        _loader = ConfigLoader()
    return _loader


def handle(
    source: Source[AccountT],
    event: Any,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    store: UsageStore | None = None,
    billing: BillingReader | None = None,
    publisher: Publisher | None = None,
    remaining_seconds: float | None = None,
    remaining: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """Validate everything before the first vendor call or write, then run the pipeline.

    Without `store`, the usage table's store is built, with its billing reader and (for a source that keeps
    one: `use_identities`) its identity memory; a `store` passed in comes with the `billing` passed in.
    A scheduled event collects every account; an SQS batch from the work queue collects the chunks of
    accounts too large for one invocation and answers with the failed messages (partial batch response).
    `remaining` gives the invocation's seconds left (Lambda's context); `remaining_seconds`, a fixed start.
    """
    remaining = remaining or (None if remaining_seconds is None else _countdown(remaining_seconds))
    left = None if remaining is None else remaining()  # at the start: the budget and reserve are shares of it
    from usagewatch.pipeline import DEFAULT_BUDGET_SECONDS, Pipeline, run_id_for
    from usagewatch.settings import load_environment

    env = load_environment(environ)
    work = _is_work_batch(event)
    request = collection_request({} if work else event, clock())
    logger.set_correlation_id(run_id_for(source.vendor, request))
    loader = _config()
    raw_accounts = loader.secret_accounts(env.vendor_secret_id, vendor=source.vendor)
    accounts = [source.parse_account(raw, index=i) for i, raw in enumerate(raw_accounts)]
    rules = loader.rules(env.alert_rules_parameter)

    if store is None:
        store, billing = _usage_table(env, source)
    if publisher is None:
        from usagewatch.publisher import SnsPublisher

        publisher = SnsPublisher(env.alert_topic_arn, chat_topic_arn=env.chat_topic_arn)
    work_queue = None
    if env.work_queue_url:
        from usagewatch.publisher import SqsWorkQueue

        work_queue = SqsWorkQueue(env.work_queue_url)
    from usagewatch.pipeline import DEADLINE_RESERVE_SECONDS

    budget, reserve = DEFAULT_BUDGET_SECONDS, DEADLINE_RESERVE_SECONDS
    if left is not None:
        budget, reserve = min(DEFAULT_BUDGET_SECONDS, left * 0.7), min(DEADLINE_RESERVE_SECONDS, left / 10)

    pipeline = Pipeline(
        source,
        store,
        publisher,
        rules,
        clock,
        billing=billing,
        work_queue=work_queue,
        budget_seconds=budget,
        remaining=remaining,
        deadline_reserve=reserve,
    )

    if work:
        return _run_chunks(pipeline, source, accounts, event, clock)

    summary = pipeline.run(accounts, request)
    result = summary.to_dict()
    emit_run(result)
    for outcome in summary.accounts:
        _emit_account(source.vendor, outcome, clock())
    logger.info("collection finished", extra={"summary": result})
    if summary.failed_accounts:
        raise CollectionFailedError(summary)
    return result


def _usage_table(env: Environment, source: Source[Any]) -> tuple[UsageStore, BillingReader]:
    """The usage table's store and billing reader; a source that keeps an identity memory (`use_identities`)
    is handed the table's."""
    from usagewatch.store import DynamoStore, TableIdentities
    from usagewatch.store.billing import BillingStore

    table = DynamoStore(env.usage_table_name, snapshot_retention_days=env.snapshot_retention_days)
    use_identities = getattr(source, "use_identities", None)
    if use_identities is not None:
        use_identities(TableIdentities(table, source.vendor))
    return table, BillingStore(table)


def _countdown(seconds: float) -> Callable[[], float]:
    started = time.monotonic()
    return lambda: seconds - (time.monotonic() - started)


def _is_work_batch(event: Any) -> bool:
    """Whether the event is an SQS batch from the work queue (any other `Records` is refused)."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        return False
    if not all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in event["Records"]):
        raise ConfigError("event.Records: only SQS work-queue records are accepted")
    return True


def _run_chunks(
    pipeline: Pipeline[AccountT],
    source: Source[AccountT],
    accounts: list[AccountT],
    event: dict[str, Any],
    clock: Callable[[], datetime],
) -> dict[str, Any]:
    """Each record is parsed (Powertools parser model) and collected on its own; the answer names the records
    that failed (partial batch response), so SQS retries those alone."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from usagewatch.continuation import WorkRecord

    by_id = {source.account_id(a): a for a in accounts}
    finished: list[dict[str, Any]] = []

    def collect(record: WorkRecord) -> None:
        item = record.body.work_item()
        account = by_id.get(item.key.account_id)
        if account is None or item.key.vendor != source.vendor:
            raise ConfigError(f"work item for unknown account {item.key.vendor}/{item.key.account_id}")
        logger.set_correlation_id(f"{item.key.vendor}:{item.key.as_of}")
        outcome = pipeline.run_chunk(account, item)
        if outcome is not None:
            finished.append(asdict(outcome))
            _emit_account(source.vendor, outcome, clock())

    # A whole batch failing is answered like a part failing: every record named, none raised (the same retry).
    processor = BatchProcessor(event_type=EventType.SQS, model=WorkRecord, raise_on_entire_batch_failure=False)
    answer = process_partial_response(event=event, record_handler=collect, processor=processor)
    failed = [{"itemIdentifier": str(f["itemIdentifier"])} for f in answer["batchItemFailures"]]
    # Failures and their exceptions are recorded in the same order.
    for failure, info in zip(failed, processor.exceptions, strict=False):
        error = info[1]
        logger.error(
            "work item failed; SQS will retry it",
            extra={"message_id": failure.get("itemIdentifier"), "error": f"{type(error).__name__}: {error}"[:500]},
        )
    logger.info(
        "work items processed", extra={"messages": len(event["Records"]), "failed": len(failed), "finished": finished}
    )
    return {"batchItemFailures": failed}


LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def lambda_handler_for(source_factory: Callable[[], Source[Any]]) -> LambdaHandler:
    """The decorated Lambda entry point for one vendor: structured logs with the run as correlation id, EMF
    metrics flushed at the end."""

    @metrics.log_metrics
    @logger.inject_lambda_context(clear_state=True)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return handle(source_factory(), event, remaining=lambda: context.get_remaining_time_in_millis() / 1000)

    return lambda_handler


def _emit_account(vendor: str, outcome: AccountOutcome, now: datetime) -> None:
    """The account's age of its last successful run and its period totals, for the dashboard."""
    from usagewatch.model import parse_utc

    age = None if outcome.last_success_at is None else (now - parse_utc(outcome.last_success_at)).total_seconds()
    emit_account(vendor, outcome.account_id, last_success_age=age, totals=outcome.totals)

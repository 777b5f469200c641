"""What every vendor's Lambda handler does: settings, wiring, the pipeline, the summary, metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from usagewatch.errors import UsagewatchError
from usagewatch.invocation import parse_event
from usagewatch.model import Source
from usagewatch.observability import logger, metrics
from usagewatch.pipeline import Pipeline, Publisher, RunSummary, UsageStore, run_id_for
from usagewatch.settings import ConfigLoader, load_environment

AccountT = TypeVar("AccountT")
_loader = ConfigLoader()


class CollectionFailedError(UsagewatchError):
    """At least one whole account failed; raised after every account was tried, so Lambda retries."""

    def __init__(self, summary: RunSummary) -> None:
        failed = ", ".join(f"{a.account_id}: {a.error}" for a in summary.failed_accounts)
        super().__init__(f"{summary.vendor}: {len(summary.failed_accounts)} account(s) failed ({failed})")
        self.summary = summary


def reset_config_cache() -> None:
    """Forget cached secrets and rules (tests; a new container starts empty anyway)."""
    global _loader
    _loader = ConfigLoader()


def handle(
    source: Source[AccountT],
    event: Any,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    store: UsageStore | None = None,
    publisher: Publisher | None = None,
) -> dict[str, Any]:
    """Validate everything before the first vendor call or write, then run the pipeline."""
    env = load_environment(environ)
    request = parse_event(event, clock())
    logger.set_correlation_id(run_id_for(source.vendor, request))
    raw_accounts = _loader.secret_accounts(env.vendor_secret_id, vendor=source.vendor)
    accounts = [source.parse_account(raw, index=i) for i, raw in enumerate(raw_accounts)]
    rules = _loader.rules(env.alert_rules_parameter)

    if store is None:
        from usagewatch.store import DynamoStore

        store = DynamoStore(env.usage_table_name, snapshot_retention_days=env.snapshot_retention_days)
    if publisher is None:
        from usagewatch.publisher import SnsPublisher

        publisher = SnsPublisher(env.alert_topic_arn)

    pipeline = Pipeline(source, store, publisher, rules, clock)
    summary = pipeline.run(accounts, request)
    result = summary.to_dict()
    _emit_metrics(result)
    logger.info("collection finished", extra={"summary": result})
    if summary.failed_accounts:
        raise CollectionFailedError(summary)
    return result


LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def lambda_handler_for(source_factory: Callable[[], Source[Any]]) -> LambdaHandler:
    """The decorated Lambda entry point for one vendor: structured logs with the run as correlation id, EMF
    metrics flushed at the end."""

    @metrics.log_metrics
    @logger.inject_lambda_context(clear_state=True)
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return handle(source_factory(), event)

    return lambda_handler


def _emit_metrics(result: Mapping[str, Any]) -> None:
    metrics.add_dimension(name="vendor", value=str(result["vendor"]))
    metrics.add_metric(name="TenantsCollected", unit=MetricUnit.Count, value=result["tenants_collected"])
    metrics.add_metric(name="TenantsFailed", unit=MetricUnit.Count, value=result["tenants_failed"])
    metrics.add_metric(name="RecordsWritten", unit=MetricUnit.Count, value=result["records_written"])
    metrics.add_metric(name="AlertsPublished", unit=MetricUnit.Count, value=result["alerts_published"])
    metrics.add_metric(name="AccountsFailed", unit=MetricUnit.Count, value=result["accounts_failed"])
    metrics.add_metric(name="PublishFailures", unit=MetricUnit.Count, value=result["publish_failures"])

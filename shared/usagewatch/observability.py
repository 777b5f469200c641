"""One Logger and one Metrics for everything (Powertools), with secrets scrubbed from every log line.

The CloudWatch metrics the collectors emit are declared here once (`CATALOGUE`) and emitted only through
`emit_run` and `emit_account`; the stack's dashboard and alarms plot nothing else (tests/infrastructure checks
the template against this catalogue, tests/integration the handler's real EMF output against it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from usagewatch import registry
from usagewatch.redaction import RedactingFilter

# The template names each function's service (usagewatch-keepnet, ...); anywhere else it is plain "usagewatch".
logger: Final = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "usagewatch", use_rfc3339=True)
NAMESPACE: Final = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "usagewatch"
metrics: Final = Metrics(namespace=NAMESPACE)

for _handler in logger.handlers:
    _handler.addFilter(RedactingFilter())


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One CloudWatch metric: its name, unit and dimension names (in this order), and what it counts."""

    name: str
    unit: MetricUnit
    dimensions: tuple[str, ...]
    meaning: str


# Powertools adds `service` (POWERTOOLS_SERVICE_NAME) to every metric in Lambda; it is declared, and set, here too.
VENDOR_DIMENSIONS: Final = ("service", "vendor")
ACCOUNT_DIMENSIONS: Final = ("service", "vendor", "account")
USAGE_DIMENSIONS: Final = ("service", "vendor", "account", "usage_metric")

# Once per scheduled invocation, per vendor.
RUN_SUCCEEDED: Final = MetricSpec(
    "RunSucceeded", MetricUnit.Count, VENDOR_DIMENSIONS, "1 when no account failed, else 0 (the stale-run alarm)"
)
RUN_METRICS: Final = (
    RUN_SUCCEEDED,
    MetricSpec("AccountsFailed", MetricUnit.Count, VENDOR_DIMENSIONS, "accounts that failed as a whole"),
    MetricSpec("TenantsCollected", MetricUnit.Count, VENDOR_DIMENSIONS, "billed tenants read this run"),
    MetricSpec("TenantsFailed", MetricUnit.Count, VENDOR_DIMENSIONS, "tenants whose reading failed"),
    MetricSpec("RecordsWritten", MetricUnit.Count, VENDOR_DIMENSIONS, "usage items written (changed readings)"),
    MetricSpec("AlertsPublished", MetricUnit.Count, VENDOR_DIMENSIONS, "alert events published"),
    MetricSpec("PublishFailures", MetricUnit.Count, VENDOR_DIMENSIONS, "alert events that could not be published"),
)
# Per account, when its run finished (also a GravityZone account finished by its last work-queue chunk).
LAST_SUCCESS_AGE: Final = MetricSpec(
    "LastSuccessAgeSeconds",
    MetricUnit.Seconds,
    ACCOUNT_DIMENSIONS,
    "seconds since the account's last ok or partial run: 0 after one, growing while it fails",
)
USAGE_TOTAL: Final = MetricSpec(
    "UsageTotal",
    MetricUnit.Count,
    USAGE_DIMENSIONS,
    "the period total of one billed metric (registry)",
)
CATALOGUE: Final = (*RUN_METRICS, LAST_SUCCESS_AGE, USAGE_TOTAL)


_SUMMARY_KEYS: Final = {
    "AccountsFailed": "accounts_failed",
    "TenantsCollected": "tenants_collected",
    "TenantsFailed": "tenants_failed",
    "RecordsWritten": "records_written",
    "AlertsPublished": "alerts_published",
    "PublishFailures": "publish_failures",
}


def _service() -> str:
    return os.environ.get("POWERTOOLS_SERVICE_NAME") or "usagewatch"


def emit_run(summary: Mapping[str, Any]) -> None:
    """The run's metrics (RUN_METRICS), flushed with the invocation's other metrics by `log_metrics`."""
    values = {"service": _service(), "vendor": str(summary["vendor"])}
    for dimension in VENDOR_DIMENSIONS:
        metrics.add_dimension(name=dimension, value=values[dimension])
    for spec in RUN_METRICS:
        value = int(summary["accounts_failed"] == 0) if spec is RUN_SUCCEEDED else summary[_SUMMARY_KEYS[spec.name]]
        metrics.add_metric(name=spec.name, unit=spec.unit, value=float(value))


def emit_account(vendor: str, account_id: str, *, last_success_age: float | None, totals: Mapping[str, float]) -> None:
    """One account's metrics, each dimension set its own EMF document: the age of its last successful run (when
    known) and the period totals found in `totals` of the vendor's `billed_metrics` (registry.py; each costs per
    account and month, docs/performance.md)."""
    values = {"service": _service(), "vendor": vendor, "account": account_id}
    if last_success_age is not None:
        _emit_one(LAST_SUCCESS_AGE, max(0.0, last_success_age), values)
    known = registry.find(vendor)
    for metric in known.billed_metrics if known else ():
        if metric in totals:
            _emit_one(USAGE_TOTAL, float(totals[metric]), {**values, "usage_metric": metric})


def _emit_one(spec: MetricSpec, value: float, values: Mapping[str, str]) -> None:
    document = EphemeralMetrics(namespace=NAMESPACE)
    for dimension in spec.dimensions:
        document.add_dimension(name=dimension, value=values[dimension])
    document.add_metric(name=spec.name, unit=spec.unit, value=value)
    document.flush_metrics()

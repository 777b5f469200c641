"""The monthly billing report: the month's reconciliation as CSV and HTML in the stack's private bucket, and one
`report.ready` event on the alert topic saying where it is and how many customers are under-billed.

Scheduled on the first day of a month it reports the month before; `{"period": "YYYY-MM"}` reports that month.
Writing the same month again replaces its two objects (the bucket keeps earlier versions) and publishes an event
whose `event_id` is the hash of the CSV's bytes: the same numbers give the same id, any changed number a new one.
A month not begun is refused (the invocation fails naming the period).

With a PSA linked (PSA_SECRET_ID, the daily sync's secret), the HTML also lists the month's applied PSA changes (and
a third object, `psa-applied-{period}.csv`, lists them for spreadsheets), and after `report.ready` the month's plan
is made as `usagewatch psa plan` makes it and announced by one `psa.plan.ready` event, or `psa.plan.failed` when
the PSA could not be reached: the report stands either way, and the result says which (`psa_plan`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from usagewatch.billing_report import Reconciliation, gather, render_csv, render_html, unmapped_tenants
from usagewatch.events import REPORT_READY
from usagewatch.invocation import collection_request
from usagewatch.model import Period, utc_iso
from usagewatch.settings import Currency, load_report_environment

if TYPE_CHECKING:
    from usagewatch.publisher import SnsPublisher
    from usagewatch.reports import S3ReportWriter
    from usagewatch.store import DynamoStore

PREFIX: Final = "reports"


def report_period(event: Any, now: datetime) -> Period:
    """The month to report: the event's `period`, else the month before the scheduled (or current) time."""
    request = collection_request(event, now)
    return request.period if request.period_explicit else Period.of(request.as_of).previous()


def keys_for(period: Period) -> tuple[str, str]:
    return f"{PREFIX}/{period}/billing-{period}.csv", f"{PREFIX}/{period}/billing-{period}.html"


def applied_key(period: Period) -> str:
    return f"{PREFIX}/{period}/psa-applied-{period}.csv"


def ready_event(
    result: Reconciliation, bucket: str, csv_key: str, html_key: str, csv_body: str, now: datetime
) -> dict[str, Any]:
    counts = result.counts
    under = counts["customers_under_billed"]
    incomplete = counts["incomplete"]
    unmapped = unmapped_tenants(result.lines)
    period = result.period
    code = result.currency.code
    return {
        "schema_version": 1,
        "event_type": REPORT_READY,
        "event_id": hashlib.sha256(csv_body.encode()).hexdigest()[:32],
        # Someone has to act (bill a customer, map a tenant, mend a collection): e-mail subscribers get it.
        "severity": "warning" if under or unmapped or incomplete else "info",
        "period": str(period),
        "provisional": result.provisional,
        "bucket": bucket,
        "csv_key": csv_key,
        "html_key": html_key,
        "customers_under_billed": under,
        "unmapped_tenants": unmapped,
        "incomplete_lines": incomplete,
        "incomplete_accounts": result.footer(),
        "currency": code,
        "unbilled_value": str(result.unbilled),
        "lines": dict(counts),
        "observed_at": utc_iso(now),
        "summary": (
            f"Billing report for {period}{' (provisional)' if result.provisional else ''}: {under} customer(s) "
            f"under-billed ({code} {result.unbilled} unbilled), {incomplete} incomplete line(s), "
            f"{unmapped} unmapped tenant(s); s3://{bucket}/{html_key}"
        ),
    }


def ready_email(event: Mapping[str, Any]) -> str:
    counts = event["lines"]
    return "\n".join(
        [
            str(event["summary"]),
            "",
            f"Period: {event['period']}",
            f"Under-billed customers: {event['customers_under_billed']}",
            f"Unmapped tenants: {event['unmapped_tenants']}",
            f"Unbilled value: {event['currency']} {event['unbilled_value']}",
            f"Incomplete lines: {event['incomplete_lines']}",
            *(f"  not fully read: {why}" for why in event["incomplete_accounts"]),
            "Lines: "
            + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if s != "customers_under_billed"),
            f"Report (HTML): s3://{event['bucket']}/{event['html_key']}",
            f"Report (CSV): s3://{event['bucket']}/{event['csv_key']}",
            "",
            "Map unmapped tenants with `usagewatch customers suggest`; see docs/billing.md.",
        ]
    )


def run_report(
    event: Any,
    *,
    store: DynamoStore,
    reports: S3ReportWriter,
    publisher: SnsPublisher,
    currency: Currency | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    psa_secret: str = "",
) -> dict[str, Any]:
    """Write the month's CSV and HTML, then publish `report.ready`; returns the event. An S3 failure raises
    `ReportWriteError` before anything is published. With `psa_secret`, the applied changes and the plan too (the
    result's `psa_plan` is the plan's event)."""
    from usagewatch.psa import monthly as psa_monthly

    now = clock()
    period = report_period(event, now)
    result = gather(store, period, history_months=6, now=now, currency=currency)  # a future month: ConfigError
    csv_key, html_key = keys_for(period)
    csv_body = render_csv(result)
    applied = psa_monthly.applied_changes(store, period)
    shown = applied if psa_secret or applied else None
    objects = [
        (csv_key, csv_body, "text/csv; charset=utf-8"),
        (html_key, render_html(result, shown), "text/html; charset=utf-8"),
    ]
    if shown is not None:
        objects.append((applied_key(period), psa_monthly.applied_csv(period, shown), "text/csv; charset=utf-8"))
    reports.write_all(objects)
    ready = ready_event(result, reports.bucket, csv_key, html_key, csv_body, now)
    publisher.publish(ready, email=ready_email(ready))
    if not psa_secret:
        return ready
    planned = psa_monthly.make_plan(
        store, period, result.lines, secret_id=psa_secret, currency=result.currency.code, now=now
    )
    publisher.publish(planned, email=psa_monthly.plan_email(planned))
    return {**ready, "psa_plan": planned}


def handle(event: Any, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    from usagewatch.publisher import SnsPublisher
    from usagewatch.reports import S3ReportWriter
    from usagewatch.store import DynamoStore

    env = load_report_environment(environ)
    return run_report(
        event,
        store=DynamoStore(env.usage_table_name),
        reports=S3ReportWriter(env.report_bucket),
        publisher=SnsPublisher(env.alert_topic_arn),
        currency=env.currency,
        psa_secret=env.psa_secret_id,
    )

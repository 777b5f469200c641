"""`usagewatch monthly-report`: write the month's billing report to the report bucket now, publish report.ready."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from usagewatch.cli.output import AWS_ERROR, CliError, kind_of
from usagewatch.cli.stack import client, stack_outputs
from usagewatch.errors import PublishError
from usagewatch.model import Period

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "write the month's billing report (CSV, HTML) to the report bucket now and publish report.ready"
EXAMPLE: Final = "usagewatch monthly-report --period 2026-11 --stack usagewatch"


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", required=True, help="the month, YYYY-MM")
    parser.add_argument("--bucket", help="the report bucket (default: the stack's ReportBucketName output)")
    parser.add_argument("--topic", help="the alert topic ARN (default: the stack's AlertTopicArn output)")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    from usagewatch.completeness import refuse_future
    from usagewatch.monthly_report import run_report
    from usagewatch.publisher import SnsPublisher
    from usagewatch.reports import S3ReportWriter

    period = Period.parse(args.period, field="--period")
    refuse_future(period, datetime.now(UTC))  # before the stack is looked up; exit 1 naming the period
    outputs = stack_outputs(args) if not (args.bucket and args.topic) else {}
    bucket = args.bucket or outputs.get("ReportBucketName")
    topic = args.topic or outputs.get("AlertTopicArn")
    if not bucket or not topic:
        raise CliError("monthly-report: pass --stack STACK, or --bucket and --topic")
    try:
        ready = run_report(
            {"period": str(period)},
            store=store,
            reports=S3ReportWriter(bucket, client=client("s3", args)),
            publisher=SnsPublisher(topic, client=client("sns", args)),
        )
    except PublishError as exc:
        raise CliError(
            f"the report of {period} is written to s3://{bucket}/ but report.ready was not published: {exc}",
            AWS_ERROR,
        ) from exc
    if kind_of(args) == "json":
        return json.dumps(ready, sort_keys=True)
    return "\n".join(
        [
            str(ready["summary"]),
            f"csv:  s3://{bucket}/{ready['csv_key']}",
            f"html: s3://{bucket}/{ready['html_key']}",
        ]
    )

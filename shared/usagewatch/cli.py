"""`usagewatch`: read usage, totals, open alerts and runs back from the deployed table.

Examples:
  usagewatch report --period 2026-11 --stack usagewatch
  usagewatch report --period 2026-11 --vendor keepnet --csv > keepnet-2026-11.csv
  usagewatch alerts --table usagewatch-usage --rule over_quota
  usagewatch runs --vendor gravityzone --account msp-main --json
  usagewatch history --vendor keepnet --account kn-main --tenant c-42 --metric monthly_users --months 12
  usagewatch customers suggest --period 2026-11 --csv > suggestions.csv
  usagewatch customers import suggestions.csv
  usagewatch contracts import contracts.csv
  usagewatch reconcile --period 2026-11
  usagewatch migrate --table usagewatch-usage --dry-run
  usagewatch monthly-report --period 2026-11 --stack usagewatch

The table comes from --table, the USAGEWATCH_TABLE environment variable, or --stack NAME (the stack's
UsageTableName output). AWS credentials and region come from boto3's usual chain (or --region).
Exit codes: 0 done, 1 bad input (the message says which), 2 AWS or table error.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final

from usagewatch import cli_billing, cli_history, cli_psa, registry
from usagewatch.errors import ConfigError, StoreError
from usagewatch.migrate import migrate
from usagewatch.model import Period, RunRecord, Total
from usagewatch.notify import fmt
from usagewatch.report import customers_table, table, totals_table, usage_csv
from usagewatch.store import DynamoStore, OldShapeError
from usagewatch.text import clean_name, csv_cell

BAD_INPUT: Final = 1
AWS_ERROR: Final = 2
DEFAULT_LIMIT: Final = 20


class _Parser(argparse.ArgumentParser):
    """Usage mistakes exit 1 (bad input) with argparse's one-line message, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(BAD_INPUT, f"usagewatch: error: {message}\n")


class CliError(Exception):
    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _common() -> _Parser:
    """Options every subcommand accepts, before or after its name."""
    common = _Parser(add_help=False)
    common.add_argument("--table", default=argparse.SUPPRESS, help="the usage table (or USAGEWATCH_TABLE)")
    common.add_argument("--stack", default=argparse.SUPPRESS, help="read the table name from this stack's outputs")
    common.add_argument("--region", default=argparse.SUPPRESS, help="AWS region (default: boto3's chain)")
    output = common.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON lines for machines")
    output.add_argument("--csv", action="store_true", default=argparse.SUPPRESS, help="CSV for spreadsheets")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="usagewatch",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{report,alerts,runs,history,customers,contracts,reconcile,migrate}"
    )
    report = commands.add_parser("report", parents=[common], help="usage and totals of one month")
    report.add_argument("--period", required=True, help="the month, YYYY-MM (e.g. 2026-11)")
    report.add_argument("--vendor", choices=registry.vendor_ids())
    report.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, help=f"customers shown per metric (default {DEFAULT_LIMIT}; 0: all)"
    )
    alerts = commands.add_parser("alerts", parents=[common], help="firing alerts (every account by default)")
    runs = commands.add_parser("runs", parents=[common], help="the latest collection runs of each account")
    for sub in (alerts, runs):
        sub.add_argument("--vendor", choices=registry.vendor_ids())
        sub.add_argument("--account", help="one vendor account (its account_id in the vendor secret)")
    alerts.add_argument("--tenant", help="one customer (tenant id)")
    alerts.add_argument("--rule", help="one rule (over_quota, collection, ...)")
    runs.add_argument("--limit", type=int, default=5, help="runs shown per account (default 5)")
    cli_history.add_command(commands, common)
    cli_billing.add_commands(commands, common)
    cli_psa.add_commands(commands, common)
    migrate = commands.add_parser(
        "migrate", parents=[common], help="rewrite usage of the old shape (one item per metric) as one item per tenant"
    )
    migrate.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
    monthly = commands.add_parser(
        "monthly-report",
        parents=[common],
        help="write the month's billing report (CSV, HTML) to the report bucket now and publish report.ready",
    )
    monthly.add_argument("--period", required=True, help="YYYY-MM")
    monthly.add_argument("--bucket", help="the report bucket (default: the stack's ReportBucketName output)")
    monthly.add_argument("--topic", help="the alert topic ARN (default: the stack's AlertTopicArn output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = DynamoStore(_table_name(args), client=_client("dynamodb", args))
        if args.command == "report":
            text = _report(store, args)
        elif args.command == "alerts":
            text = _alerts(store, args)
        elif args.command == "migrate":
            text = _migrate(store, args)
        elif args.command == "runs":
            text = _runs(store, args)
        elif args.command == "history":
            text = cli_history.run(store, args, _format(args), CliError, _json_lines, _csv)
        elif args.command == "monthly-report":
            text = _monthly_report(store, args)
        elif args.command == "psa":
            text = cli_psa.run(store, args, _format(args), CliError, _csv)
        else:
            text = cli_billing.run(store, args, _format(args), CliError, _csv)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except ConfigError as exc:
        return _fail(str(exc), BAD_INPUT)
    except OldShapeError as exc:
        return _fail(str(exc), AWS_ERROR)
    except StoreError as exc:
        return _fail(f"{exc} (check the table name, region and credentials)", AWS_ERROR)
    except Exception as exc:  # botocore's NoRegionError, NoCredentialsError, EndpointConnectionError, ...
        if type(exc).__module__.startswith(("botocore", "boto3")):
            return _fail(f"AWS: {type(exc).__name__}: {exc}", AWS_ERROR)
        raise
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"usagewatch: error: {message}\n")
    return code


def _client(service: str, args: argparse.Namespace) -> Any:
    from usagewatch import aws

    return aws.client(service, region=getattr(args, "region", None))


def _stack_outputs(args: argparse.Namespace) -> dict[str, str]:
    stack = getattr(args, "stack", None)
    if not stack:
        return {}
    try:
        answer = _client("cloudformation", args).describe_stacks(StackName=stack)
    except Exception as exc:
        raise CliError(f"stack {stack!r} not read: {type(exc).__name__}: {exc}", AWS_ERROR) from exc
    return {o["OutputKey"]: str(o["OutputValue"]) for s in answer.get("Stacks", []) for o in s.get("Outputs", [])}


def _table_name(args: argparse.Namespace) -> str:
    table = getattr(args, "table", None) or os.environ.get("USAGEWATCH_TABLE") or os.environ.get("USAGE_TABLE_NAME")
    if table:
        return str(table)
    stack = getattr(args, "stack", None)
    if not stack:
        raise CliError("no table: pass --table NAME, --stack STACK or set USAGEWATCH_TABLE")
    outputs = _stack_outputs(args)
    if "UsageTableName" not in outputs:
        raise CliError(f"stack {stack!r} has no UsageTableName output: is it a usagewatch stack?")
    return str(outputs["UsageTableName"])


def _format(args: argparse.Namespace) -> str:
    return "json" if getattr(args, "json", False) else "csv" if getattr(args, "csv", False) else "table"


def _json_lines(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, default=str, sort_keys=True) + "\n" for row in rows)


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k, "")) for k in columns})
    return buffer.getvalue()


def _row(value: Total | RunRecord) -> dict[str, Any]:
    """A model object as the flat row machines read (sequences as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items()}


# --- monthly report -------------------------------------------------------------------------------


def _monthly_report(store: DynamoStore, args: argparse.Namespace) -> str:
    from usagewatch.completeness import refuse_future
    from usagewatch.monthly_report import run_report
    from usagewatch.publisher import SnsPublisher

    period = Period.parse(args.period, field="--period")
    refuse_future(period, datetime.now(UTC))  # before the stack is looked up; exit 1 naming the period
    outputs = _stack_outputs(args) if not (args.bucket and args.topic) else {}
    bucket = args.bucket or outputs.get("ReportBucketName")
    topic = args.topic or outputs.get("AlertTopicArn")
    if not bucket or not topic:
        raise CliError("monthly-report: pass --stack STACK, or --bucket and --topic")
    ready = run_report(
        {"period": str(period)},
        store=store,
        s3=_client("s3", args),
        publisher=SnsPublisher(topic, client=_client("sns", args)),
        bucket=bucket,
    )
    if _format(args) == "json":
        return json.dumps(ready, sort_keys=True)
    return "\n".join(
        [
            str(ready["summary"]),
            f"csv:  s3://{bucket}/{ready['csv_key']}",
            f"html: s3://{bucket}/{ready['html_key']}",
        ]
    )


# --- report ---------------------------------------------------------------------------------------


def _report(store: DynamoStore, args: argparse.Namespace) -> str:
    period = str(Period.parse(args.period, field="--period"))
    if args.limit < 0:
        raise CliError("--limit: 0 (all) or more")
    items = [u.row() for u in store.period_usage(period, vendor=args.vendor)]
    totals = [_row(t) for t in store.period_totals(period) if args.vendor in (None, t.vendor)]
    kind = _format(args)
    if kind == "csv":
        return usage_csv(items)
    if kind == "json":
        return _json_lines(
            [{"record_type": "usage", **i} for i in items] + [{"record_type": "total", **t} for t in totals]
        )
    if not items and not totals:
        return f"No usage stored for {period}{f' ({args.vendor})' if args.vendor else ''}."
    parts = [f"Usage for {period}", totals_table(totals)]
    silent: list[str] = []
    for metric in sorted({i["metric"] for i in items}):
        rows = [i for i in items if i["metric"] == metric and i.get("billed", True) and not i.get("removed_at")]
        if not any(float(i["value"]) for i in rows):
            silent.append(metric)
            continue
        shown = len(rows) if args.limit == 0 else min(args.limit, len(rows))
        parts.append(customers_table(rows, metric, limit=shown))
        if shown < len(rows):
            parts.append(f"(showing the {shown} largest of {len(rows)} customers; --limit 0 shows all)")
    if silent:
        parts.append(f"No usage this month in: {', '.join(silent)}.")
    return "\n\n".join(parts)


# --- alerts and runs --------------------------------------------------------------------------------


def _accounts(store: DynamoStore, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (vendor, account) pairs asked for; without --account, those with totals this month or last."""
    vendors = [args.vendor] if args.vendor else list(registry.vendor_ids())
    if args.account:
        return [(vendor, args.account) for vendor in vendors]
    now = Period.of(datetime.now(UTC))
    found = {(t.vendor, t.account_id) for p in (now, now.previous()) for t in store.period_totals(str(p))}
    return sorted(pair for pair in found if pair[0] in vendors)


def _alerts(store: DynamoStore, args: argparse.Namespace) -> str:
    states = []
    pairs = _accounts(store, args)
    for vendor, account in pairs:
        states += [
            s
            for s in store.open_alerts(vendor, account).values()
            if args.tenant in (None, s.tenant_id) and args.rule in (None, s.rule)
        ]
    if args.account and not states and not any(store.runs(v, a, limit=1) for v, a in pairs):
        raise CliError(f"no account {args.account!r} in the table{f' for {args.vendor}' if args.vendor else ''}")
    rows = [asdict(s) for s in sorted(states, key=lambda s: (s.vendor, s.account_id, s.tenant_name, s.rule))]
    kind = _format(args)
    if kind == "json":
        return _json_lines(rows)
    columns = ("vendor", "account_id", "tenant_name", "tenant_id", "rule", "metric", "period", "value", "quota")
    if kind == "csv":
        return _csv(rows, (*columns, "severity", "since", "error"))
    if not rows:
        return f"No firing alerts ({len(pairs)} account(s) looked at)."
    cells = [
        (
            registry.display_name(s.vendor),
            s.account_id,
            clean_name(s.tenant_name),
            s.rule,
            s.metric or "-",
            s.period or "-",
            fmt(s.value) if not s.is_collection else clean_name(s.error or "")[:60],
            fmt(s.quota) if not s.is_collection else "",
            s.since,
        )
        for s in sorted(states, key=lambda s: (s.vendor, s.account_id, s.tenant_name, s.rule))
    ]
    headers = ("vendor", "account", "customer", "rule", "metric", "period", "value", "quota", "since")
    return table(headers, cells) + f"\n\n{len(rows)} firing alert(s)."


def _runs(store: DynamoStore, args: argparse.Namespace) -> str:
    if args.limit < 1:
        raise CliError("--limit: 1 or more")
    pairs = _accounts(store, args)
    runs = [_row(r) for vendor, account in pairs for r in store.runs(vendor, account, limit=args.limit)]
    if args.account and not runs:
        raise CliError(
            f"no runs of account {args.account!r} in the table{f' for {args.vendor}' if args.vendor else ''}"
        )
    kind = _format(args)
    if kind == "json":
        return _json_lines(runs)
    columns = ("vendor", "account_id", "as_of", "status", "tenants_ok", "tenants_failed", "records_written")
    if kind == "csv":
        return _csv(runs, (*columns, "alerts_published", "started_at", "finished_at", "errors"))
    if not runs:
        return "No runs found."
    cells = [
        (
            registry.display_name(r["vendor"]),
            r["account_id"],
            r["as_of"],
            r["status"],
            r.get("tenants_ok", 0),
            r.get("tenants_failed", 0),
            r.get("records_written", 0),
            clean_name(str((r.get("errors") or [""])[0]))[:70],
        )
        for r in runs
    ]
    return table(("vendor", "account", "as of", "status", "ok", "failed", "records", "first error"), cells)


def _migrate(store: DynamoStore, args: argparse.Namespace) -> str:
    def progress(line: str) -> None:
        sys.stderr.write(f"usagewatch migrate: {line}\n")

    done = migrate(store, dry_run=args.dry_run, report=progress)
    if not done.old_usage and not done.old_snapshots:
        return f"Nothing to migrate in {store.table_name}: every usage item has the current shape."
    head = "Dry run, nothing written" if args.dry_run else f"Migrated {store.table_name}"
    return f"{head}: {done.line(args.dry_run)}."


if __name__ == "__main__":
    raise SystemExit(main())

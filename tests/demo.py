"""`make demo`: the whole pipeline on this machine, no AWS account and no internet needed.

An embedded AWS (moto server on loopback) gets what template.yaml deploys (the table with its keys,
indexes and TTL, the alert topic, a queue subscribed to it as a PSA integration would be); the four
vendor simulators speak their documented protocols over HTTP on loopback; the real Lambda handlers
run with the template's environment and the events/ files. Logs go to .demo/logs.jsonl.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG_FILE = ROOT / ".demo" / "logs.jsonl"
SCHEDULED = "2026-11-22T06:00:00Z"
SIX_HOURS_LATER = "2026-11-22T12:00:00Z"
TWELVE_HOURS_LATER = "2026-11-22T18:00:00Z"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def local_aws() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION="eu-west-1",
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        server.stop()


def say(text: str = "") -> None:
    print(text, flush=True)


def section(title: str) -> None:
    say()
    say(title)
    say("=" * len(title))


def redirect_logs() -> None:
    """Powertools writes JSON logs to stdout; the demo keeps them in a file and shows the story instead."""
    from usagewatch.observability import logger

    LOG_FILE.parent.mkdir(exist_ok=True)
    stream = LOG_FILE.open("w", encoding="utf-8")
    for handler in logger.handlers:
        if hasattr(handler, "setStream"):
            handler.setStream(stream)


def invoke(vendor: str, event: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    from tests.integration.conftest import FakeLambdaContext, load_app

    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # EMF metrics blobs; the logs are in the file
            return load_app(vendor).lambda_handler(event, FakeLambdaContext()), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"


def run_cycle(
    title: str, when: str, envs: dict[str, dict[str, str]], aws: Any, *, show_digest: bool = False
) -> list[dict[str, Any]]:
    from tests.integration.conftest import event_file
    from usagewatch.notify import fmt, render_digest_email, vendor_name
    from usagewatch.report import table

    section(title)
    rows = []
    for vendor, env in envs.items():
        event = event_file(f"{vendor}-scheduled.json") | {"scheduled_time": when}
        started = time.monotonic()
        summary, error = invoke(vendor, event, env)
        elapsed = f"{time.monotonic() - started:.1f}s"
        if summary is None:
            rows.append((vendor, "-", "-", "-", "-", "-", "-", elapsed, f"FAILED: {error}"))
            continue
        rows.append(
            (
                vendor,
                ", ".join(summary["periods"]),
                fmt(summary["tenants_collected"]),
                fmt(summary["tenants_failed"]),
                fmt(summary["records_written"]),
                fmt(summary["alerts_published"]),
                fmt(summary["digests_sent"]),
                elapsed,
                "",
            )
        )
    say(table(("vendor", "period", "tenants", "failed", "records", "alerts", "digests", "time", ""), rows))
    events: list[dict[str, Any]] = aws.drain_events()
    digests = aws.drain_digests()
    say()
    if not events:
        say("Nothing new since the last run: no event, no digest.")
        return events
    say(f"Machines (the subscriber queue, SNS -> SQS, raw JSON) got every event: {len(events)}")
    say(f"People (the e-mail subscription) get one digest per account: {len(digests)}")
    for digest in digests:
        say(f"  {digest['severity'].upper():8} {digest['summary']}")
    if show_digest and digests:
        largest = max(digests, key=lambda d: sum(d["counts"].values()))
        say()
        say(f"The digest e-mail of {vendor_name(largest['vendor'])} account {largest['account_id']}:")
        say()
        for line in render_digest_email(largest).splitlines():
            say(f"  | {line}")
    return events


def main() -> int:
    sys.path.insert(0, str(ROOT / "shared"))
    from tests.demo_data import DemoVendors

    started = time.monotonic()
    say("usagewatch demo: the pipeline end to end, on this machine")
    with local_aws() as endpoint, DemoVendors() as vendors:
        from tests.local_aws import provision
        from tests.template_loader import dashboard

        redirect_logs()
        section("Deploy")
        aws = provision(table_name="usagewatch-demo-usage", topic_name="usagewatch-demo-alerts")
        say(f"Embedded AWS (moto server): {endpoint}")
        say(f"  table {aws.table_name} (keys, index and TTL from template.yaml)")
        say(f"  topic {aws.topic_arn.split(':')[-1]} -> queue subscribed with raw delivery (a PSA integration)")
        say(f"  dashboard {dashboard()[0]} (CloudWatch; in AWS the stack creates it under the stack's name)")
        envs = vendors.configure(aws)
        for vendor, sim_url in vendors.urls().items():
            say(f"  {vendor:13} simulator on {sim_url}; secret {envs[vendor]['VENDOR_SECRET_ID']}")

        run_cycle(f"Cycle 1: scheduled run at {SCHEDULED}", SCHEDULED, envs, aws, show_digest=True)
        vendors.show_usage(aws)
        run_cycle(f"Cycle 2: six hours later ({SIX_HOURS_LATER}), nothing changed", SIX_HOURS_LATER, envs, aws)
        change = vendors.fix_one_customer()
        events = run_cycle(f"Cycle 3: {change}", TWELVE_HOURS_LATER, envs, aws)
        resolved = [e for e in events if e["event_type"] == "usage.threshold.resolved"]

        section("Read back for billing")
        for command, lines in (
            (["report", "--period", "2026-11", "--vendor", "keepnet", "--csv"], 4),
            (["alerts", "--vendor", "keepnet", "--account", "keepnet-msp"], 8),
        ):
            say(f"usagewatch {' '.join(command)} --table {aws.table_name}   (first lines)")
            for line in run_cli([*command, "--table", aws.table_name]).splitlines()[:lines]:
                say(f"  {line}")

        section("Billing: who to bill for what (docs/billing.md)")
        from tests.demo_billing import billing_story

        report = billing_story(
            aws, run_cli, say, invoke, LOG_FILE.parent, lambda company: fail_late(vendors, envs, company)
        )
    say()
    say(f"Logs of every run (JSON, secrets masked): {LOG_FILE.relative_to(ROOT)}")
    say(f"Demo finished in {time.monotonic() - started:.0f}s: {len(resolved)} alert(s) resolved in cycle 3.")
    return 0 if report is not None else 1


def fail_late(vendors: Any, envs: dict[str, dict[str, str]], company: str) -> str:
    """One GravityZone company's reads fail on the month's last run: its numbers are carried, not final."""
    from tests.integration.conftest import event_file

    vendors.gravityzone.failing_companies.add(company)
    try:
        event = event_file("gravityzone-scheduled.json") | {"scheduled_time": "2026-11-30T06:00:00Z"}
        summary, error = invoke("gravityzone", event, envs["gravityzone"])
    finally:
        vendors.gravityzone.failing_companies.discard(company)
    if summary is None:
        return f"the run failed: {error}"
    return f"{summary['tenants_collected']} tenant(s) read, {summary['tenants_failed']} failed (run partial)"


def run_cli(argv: list[str]) -> str:
    """The real `usagewatch` command against the embedded AWS, its output captured."""
    import contextlib
    import io

    from usagewatch import cli

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    if code != 0:
        raise SystemExit(f"usagewatch {' '.join(argv)} failed with exit code {code}")
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())

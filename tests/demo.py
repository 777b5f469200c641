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
import re
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
TABLE = "usagewatch-demo-usage"


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
    from tests.demo_aws import quick_transactions

    quick_transactions()
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


COMMANDS: list[str] = []
"""Every `usagewatch` command the demo printed, as printed (saved for `make demo-shell`)."""


def show_command(argv: list[str], note: str = "") -> str:
    """Print a `usagewatch` command a user can run as printed after the demo (make demo-shell) and remember it."""
    from tests.demo_aws import shell_command

    line = shell_command(argv)
    if line not in COMMANDS:
        COMMANDS.append(line)
    say(f"$ {line}" + (f"   # {note}" if note else ""))
    return line


def run_cycle(
    title: str, when: str, envs: dict[str, dict[str, str]], aws: Any, *, show_digests: bool = False
) -> list[dict[str, Any]]:
    from tests.integration.conftest import event_file
    from usagewatch.notify import fmt
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
                "ok" if not summary["tenants_failed"] else "partial",
            )
        )
    say(table(("vendor", "period", "tenants", "failed", "records", "alerts", "digests", "time", "run"), rows))
    show_failures(aws, [row[0] for row in rows if row[-1] != "ok"])
    events: list[dict[str, Any]] = aws.drain_events()
    digests = aws.drain_digests()
    chat = aws.drain_chat()
    say()
    if not events:
        say("Nothing new since the last run: no event, no digest, no chat message.")
        return events
    say(f"Machines (the subscriber queue, SNS -> SQS, raw JSON) got every event: {len(events)}")
    say(f"People (the e-mail subscription) get one digest per account: {len(digests)}")
    for digest in digests:
        say(f"  {digest['severity'].upper():8} {digest['summary']}")
    if show_digests:
        show_digest_emails(digests)
    show_chat(chat, full=show_digests)
    return events


REPORTED: set[str] = set()
"""The failures already shown with their reason (a failure that goes on is named again, its reason not)."""


def show_failures(aws: Any, vendors: list[str]) -> None:
    """Each failed collection of the cycle, by customer, with the reason (the account's latest run record)."""
    from tests.demo_aws import shell_command
    from tests.demo_data import ACCOUNTS
    from usagewatch.notify import vendor_name

    new, still = [], []
    for vendor in vendors:
        for run in aws.store().runs(vendor, ACCOUNTS[vendor], limit=1):
            for error in run.errors:
                where = f"{vendor_name(vendor)} account {run.account_id}"
                if error in REPORTED:
                    named = re.match(r"tenant \S+ \((.*?)\): ", error)
                    still.append(f"{where}: {named.group(1) if named else error}")
                else:
                    REPORTED.add(error)
                    new.append(f"{where}: {error}")
    if new:
        say()
        say("Failed collections (each customer and why, from the run records):")
        for line in new:
            say(wrap(line, "  - ", "    "))
    if still:
        say()
        say("Still failing, as above (no new event or digest: a failure is reported once, then on recovery):")
        for line in still:
            say(f"  - {line}")
    for vendor in vendors:
        argv = ["runs", "--vendor", vendor, "--table", TABLE]
        if shell_command(argv) not in COMMANDS:
            show_command(argv, "the runs and their errors, later")


def show_digest_emails(digests: list[dict[str, Any]]) -> None:
    from usagewatch.notify import render_digest_email, vendor_name

    for digest in digests:
        say()
        say(f"The digest e-mail of {vendor_name(digest['vendor'])} account {digest['account_id']}:")
        say()
        for line in render_digest_email(digest).splitlines():
            say(quoted(line, "  | "))


def show_chat(messages: list[dict[str, Any]], *, full: bool) -> None:
    """The chat topic's messages (ChatNotifications on), AWS Chatbot custom notifications: every title, and with
    `full` the whole text of the first message of each kind (event or digest)."""
    if not messages:
        return
    say()
    say(f"Chat (ChatNotifications=true: the chat topic, AWS Chatbot custom notifications): {len(messages)} message(s)")
    shown: set[str] = set()
    for message in messages:
        content, kind = message["content"], message["metadata"]["eventType"]
        say(f"  > {content['title']}")
        if full and kind not in shown:
            shown.add(kind)
            for line in content["description"].splitlines():
                say(quoted(line, "  >   "))
    if full and len(messages) > len(shown):
        say("  (the text of each further message: its event's fields, or its digest's sections, as above)")


def quoted(line: str, prefix: str) -> str:
    """A line of a message, wrapped under its own indentation."""
    if not line.strip():
        return prefix.rstrip()
    indent = len(line) - len(line.lstrip())
    return wrap(line, prefix, prefix + " " * (indent + 2))


def wrap(text: str, first: str, rest: str, width: int = 116) -> str:
    import textwrap

    return (
        "\n".join(textwrap.wrap(text, width, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False))
        or first.rstrip()
    )


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
        aws = provision(table_name=TABLE, topic_name="usagewatch-demo-alerts")
        say(f"Embedded AWS (moto server): {endpoint}")
        say(f"  table {aws.table_name} (keys, index and TTL from template.yaml)")
        say(f"  topic {aws.topic_arn.split(':')[-1]} -> queue subscribed with raw delivery (a PSA integration)")
        say(f"  topic {aws.chat_topic_arn.split(':')[-1]} (ChatNotifications=true) -> a queue standing in for Chatbot")
        say(f"  dashboard {dashboard()[0]} (CloudWatch; in AWS the stack creates it under the stack's name)")
        envs = vendors.configure(aws, chat=True)
        for vendor, sim_url in vendors.urls().items():
            say(f"  {vendor:13} simulator on {sim_url}; secret {envs[vendor]['VENDOR_SECRET_ID']}")

        run_cycle(f"Cycle 1: scheduled run at {SCHEDULED}", SCHEDULED, envs, aws, show_digests=True)
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
            show_command([*command, "--table", aws.table_name], "first lines")
            for line in run_cli([*command, "--table", aws.table_name]).splitlines()[:lines]:
                say(f"  {line}")

        section("Billing: who to bill for what (docs/billing.md)")
        from tests.demo_billing import billing_story

        report = billing_story(
            aws,
            run_cli,
            say,
            invoke,
            LOG_FILE.parent,
            lambda company: fail_late(vendors, envs, aws, company),
            show=show_command,
        )
        psa = None
        if report is not None:
            section("The PSA link: ConnectWise (docs/psa.md)")
            from tests.demo_psa import psa_story

            psa_started = time.monotonic()
            psa = psa_story(aws, run_cli, say, LOG_FILE.parent, show=show_command)
            say(f"(the PSA section took {time.monotonic() - psa_started:.0f}s)")
        from tests.demo_aws import STATE_DIR, save
        from tests.demo_billing import BUCKET

        save(STATE_DIR, tables=[aws.table_name], buckets=[BUCKET], commands=COMMANDS)
    say()
    say(f"Logs of every run (JSON, secrets masked): {LOG_FILE.relative_to(ROOT)}")
    say("The web console on this data: `make console` (docs/console.md) prints its URL and two users' passwords.")
    say(f"Demo finished in {time.monotonic() - started:.0f}s: {len(resolved)} alert(s) resolved in cycle 3.")
    return 0 if report is not None and psa is not None and psa.written_first and not psa.written_again else 1


def fail_late(vendors: Any, envs: dict[str, dict[str, str]], aws: Any, company: str) -> None:
    """One GravityZone company's reads fail on the month's last run: its numbers are carried, not final. Prints
    the run, each failed collection and why, the digest it sent and its chat messages."""
    from tests.integration.conftest import event_file

    vendors.gravityzone.failing_companies.add(company)
    try:
        event = event_file("gravityzone-scheduled.json") | {"scheduled_time": "2026-11-30T06:00:00Z"}
        summary, error = invoke("gravityzone", event, envs["gravityzone"])
    finally:
        vendors.gravityzone.failing_companies.discard(company)
    if summary is None:
        say(f"  the run failed: {error}")
        return
    say(f"  {summary['tenants_collected']} tenant(s) read, {summary['tenants_failed']} failed (run partial)")
    show_failures(aws, ["gravityzone"])
    aws.drain_events()
    show_digest_emails(aws.drain_digests())
    show_chat(aws.drain_chat(), full=False)


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

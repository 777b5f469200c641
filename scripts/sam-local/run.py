"""`make sam-local`: the real SAM CLI runs every collector in a Lambda container, against an embedded AWS.

Starts moto (a server on loopback) and the vendor simulators as `make demo` does, provisions what the stack
would (table, topic, subscriber queue, work queue, secrets), writes the env-vars file a user writes from their
stack's outputs, runs `sam build` for this machine's architecture, then `sam local invoke` of each collector with
its events/ file, and one call through `sam local start-lambda` with boto3's Lambda client (as an IDE would).
Exits non-zero if an invocation reports an error or stores nothing.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from usagewatch import registry

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / ".aws-sam" / "sam-local"
BUILD = WORK / "build"
ENV_VARS = WORK / "env-vars.json"
SAM = [sys.executable, str(ROOT / "scripts" / "sam-local" / "sam-hostnet")]
ARCHITECTURE = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
WHEEL_PLATFORM = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}[ARCHITECTURE]
PARAMETERS = ["--parameter-overrides", f"Architecture={ARCHITECTURE}"]
FUNCTIONS = {v.id: v.function_name for v in registry.vendors()}


def say(text: str = "") -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def embedded_aws() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    # SAM's own shell too: its first STS call then goes to moto instead of waiting on real AWS.
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="sam-local",
        AWS_SECRET_ACCESS_KEY="sam-local",
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_REGION="eu-west-1",
        SAM_CLI_TELEMETRY="0",
    )
    os.environ.pop("AWS_PROFILE", None)
    try:
        yield endpoint
    finally:
        server.stop()


def timed(argv: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, **kwargs)
    return result, time.monotonic() - started


def sam_build() -> None:
    argv = [*SAM, "build", "--template-file", "template.yaml", "--build-dir", str(BUILD), *PARAMETERS]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the layer's make runs python3.12
    result, elapsed = timed(argv, env=os.environ | {"WHEEL_PLATFORM": WHEEL_PLATFORM, "PATH": path}, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"sam build failed:\n{result.stdout}\n{result.stderr}")
    say(f"sam build ({ARCHITECTURE}, layer wheels {WHEEL_PLATFORM}): {elapsed:.1f}s")


def handler_answer(stdout: str) -> dict[str, Any]:
    """`sam local invoke` prints the handler's answer as the last line of its standard output."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            answer: dict[str, Any] = json.loads(line)
            return answer
    return {}


def handler_duration(stderr: str) -> str:
    """The emulator's REPORT line: "REPORT RequestId: ... Init Duration: ... ms Duration: 1234.5 ms ..."."""
    found = re.search(r"^REPORT .*?(?<!Init )Duration: ([0-9.]+) ms", stderr, re.MULTILINE)
    return f"{float(found.group(1)) / 1000:.1f}s" if found else "?"


def invoke(vendor: str, event_file: str) -> tuple[dict[str, Any], list[str]]:
    argv = [
        *SAM,
        "local",
        "invoke",
        FUNCTIONS[vendor],
        "--template-file",
        str(BUILD / "template.yaml"),
        "--event",
        event_file,
        "--env-vars",
        str(ENV_VARS),
        "--skip-pull-image",
        *PARAMETERS,
    ]
    result, elapsed = timed(argv, timeout=900)
    log = WORK / f"{vendor}-invoke.log"
    log.write_text(result.stderr + "\n--- stdout ---\n" + result.stdout, encoding="utf-8")
    answer = handler_answer(result.stdout)
    problems = []
    if result.returncode != 0:
        problems.append(f"sam local invoke exited {result.returncode}")
    if "errorType" in result.stdout or "errorType" in answer or not answer:
        problems.append(f"the handler reported an error: {result.stdout.strip()[-400:] or '(no answer)'}")
    say(
        f"  {vendor:13} sam local invoke {elapsed:5.1f}s (handler {handler_duration(result.stderr)}); "
        f"log {log.relative_to(ROOT)}"
    )
    return answer, problems


def describe(vendor: str, answer: dict[str, Any], aws: Any) -> list[str]:
    summary = {key: answer.get(key) for key in ("periods", "tenants_collected", "tenants_failed")}
    summary |= {key: answer.get(key) for key in ("records_written", "alerts_published")}
    stored = Counter(item.get("record_type", "?") for item in aws.items() if item.get("vendor") == vendor)
    events = aws.drain_events()
    kinds = Counter(event["event_type"] for event in events)
    say(f"    handler summary: {json.dumps(summary)}")
    say(f"    items stored for {vendor}: {sum(stored.values())} {dict(sorted(stored.items()))}")
    say(f"    events delivered (SNS -> SQS): {len(events)} {dict(sorted(kinds.items()))}")
    return [] if stored and answer.get("records_written") else [f"{vendor}: nothing stored"]


@contextmanager
def start_lambda() -> Iterator[str]:
    port = free_port()
    argv = [
        *SAM,
        "local",
        "start-lambda",
        "--template-file",
        str(BUILD / "template.yaml"),
        "--env-vars",
        str(ENV_VARS),
        "--skip-pull-image",
        "--warm-containers",
        "LAZY",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *PARAMETERS,
    ]
    log = (WORK / "start-lambda.log").open("w", encoding="utf-8")
    process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"sam local start-lambda stopped: see {log.name}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise SystemExit("sam local start-lambda did not listen within 120 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGINT)  # SAM stops its warm containers on Ctrl-C
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def lambda_client_invokes(endpoint: str, aws: Any) -> list[str]:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="eu-west-1",
        config=Config(read_timeout=900, retries={"total_max_attempts": 1}),
    )
    problems = []
    for attempt, when in (("cold", "2026-11-22T12:00:00Z"), ("warm", "2026-11-22T18:00:00Z")):
        started = time.monotonic()
        answer = client.invoke(FunctionName=FUNCTIONS["keepnet"], Payload=json.dumps({"scheduled_time": when}).encode())
        elapsed = time.monotonic() - started
        payload = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError") or "errorType" in payload:
            problems.append(f"start-lambda invoke ({attempt}): {payload}")
        say(
            f"  boto3 lambda.invoke KeepnetCollectorFunction ({attempt} container, scheduled {when}): "
            f"{elapsed:.1f}s, status {answer['StatusCode']}, records_written {payload.get('records_written')}"
        )
    say(f"    events delivered (SNS -> SQS): {len(aws.drain_events())}")
    return problems


def env_vars_file(aws: Any, envs: dict[str, dict[str, str]], endpoint: str) -> dict[str, dict[str, str]]:
    """What `make sam-env-vars` writes from a deployed stack, here from what was provisioned, plus the endpoint."""
    from env_vars_from_stack import SECRET_PARAMETERS, env_vars

    outputs = {"UsageTableName": aws.table_name, "AlertTopicArn": aws.topic_arn}
    outputs["GravityZoneWorkQueueUrl"] = aws.work_queue_url
    parameters = {SECRET_PARAMETERS[FUNCTIONS[v]]: env["VENDOR_SECRET_ID"] for v, env in envs.items()}
    stack = {
        "StackName": "sam-local",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    }
    written = env_vars(stack)
    for vendor, function in FUNCTIONS.items():
        wrong = {k: v for k, v in written[function].items() if envs[vendor].get(k) != v}
        if wrong:
            raise SystemExit(f"{function}: env-vars {wrong} differ from the template's environment {envs[vendor]}")
    return {function: variables | {"AWS_ENDPOINT_URL": endpoint} for function, variables in written.items()}


def main() -> int:
    from tests.demo_data import DemoVendors
    from tests.local_aws import provision

    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    say("usagewatch sam-local: the collectors in Lambda containers (SAM CLI), embedded AWS and vendor simulators")
    problems: list[str] = []
    with embedded_aws() as endpoint, DemoVendors() as vendors:
        aws = provision(table_name="usagewatch-sam-local-usage", topic_name="usagewatch-sam-local-alerts")
        envs = vendors.configure(aws)
        ENV_VARS.write_text(json.dumps(env_vars_file(aws, envs, endpoint), indent=2), encoding="utf-8")
        say(f"embedded AWS (moto) {endpoint}; simulators {', '.join(vendors.urls().values())}")
        say(f"env-vars file: {ENV_VARS.relative_to(ROOT)}")
        sam_build()
        say("sam local invoke, each collector with its events/ file:")
        for vendor in FUNCTIONS:
            answer, failed = invoke(vendor, f"events/{vendor}-scheduled.json")
            problems += failed
            problems += describe(vendor, answer, aws)
        say("sam local start-lambda (warm containers, LAZY):")
        with start_lambda() as lambda_endpoint:
            problems += lambda_client_invokes(lambda_endpoint, aws)
    say(f"sam-local finished in {time.monotonic() - started:.0f}s")
    for problem in problems:
        say(f"FAILED: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())

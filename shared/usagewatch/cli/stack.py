"""Where a command finds AWS: its clients, the stack's outputs and the usage table's name."""

from __future__ import annotations

import argparse
import os
from typing import Any

from usagewatch.cli.output import AWS_ERROR, CliError


def client(service: str, args: argparse.Namespace) -> Any:
    from usagewatch import aws

    return aws.client(service, region=getattr(args, "region", None))


def stack_outputs(args: argparse.Namespace) -> dict[str, str]:
    stack = getattr(args, "stack", None)
    if not stack:
        return {}
    try:
        answer = client("cloudformation", args).describe_stacks(StackName=stack)
    except Exception as exc:
        raise CliError(f"stack {stack!r} not read: {type(exc).__name__}: {exc}", AWS_ERROR) from exc
    return {o["OutputKey"]: str(o["OutputValue"]) for s in answer.get("Stacks", []) for o in s.get("Outputs", [])}


def table_name(args: argparse.Namespace) -> str:
    table = getattr(args, "table", None) or os.environ.get("USAGEWATCH_TABLE") or os.environ.get("USAGE_TABLE_NAME")
    if table:
        return str(table)
    stack = getattr(args, "stack", None)
    if not stack:
        raise CliError("no table: pass --table NAME, --stack STACK or set USAGEWATCH_TABLE")
    outputs = stack_outputs(args)
    if "UsageTableName" not in outputs:
        raise CliError(f"stack {stack!r} has no UsageTableName output: is it a usagewatch stack?")
    return str(outputs["UsageTableName"])

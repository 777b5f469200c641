"""The `usagewatch` command run in this process, as the CLI tests drive it."""

from __future__ import annotations

import boto3
import pytest

from tests.local_aws import LocalAws
from usagewatch import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of one command (argparse's own exits included)."""
    capsys.readouterr()
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own exits (usage errors, --help)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def item_count(aws: LocalAws) -> int:
    """Every item of the demo-shaped table, counted by a scan."""
    return int(boto3.client("dynamodb").scan(TableName=aws.table_name, Select="COUNT")["Count"])

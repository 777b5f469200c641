"""AWS at one edge: every boto3 client is built by usagewatch.aws, with its one configuration."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from tests.local_aws import in_process_aws
from usagewatch import __version__, aws
from usagewatch.cli import _client
from usagewatch.errors import ConfigError
from usagewatch.publisher import SnsPublisher, SqsWorkQueue
from usagewatch.reports import S3ReportWriter
from usagewatch.settings import ConfigLoader
from usagewatch.store import DynamoStore

SHARED = Path(__file__).resolve().parents[2] / "shared" / "usagewatch"


def test_one_configuration_with_timeouts_retries_and_a_user_agent() -> None:
    config = aws.config()
    assert (config.connect_timeout, config.read_timeout) == (aws.CONNECT_TIMEOUT, aws.READ_TIMEOUT)
    assert config.retries == {"mode": "standard", "max_attempts": aws.MAX_RETRIES}
    assert config.user_agent_extra == f"usagewatch/{__version__}"


@pytest.fixture
def region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _provider_clients() -> list[object]:
    """The clients ConfigLoader handed Powertools' secret and parameter providers (both reads are refused: moto
    holds neither; the clients are what is checked)."""
    loader = ConfigLoader()
    with in_process_aws():
        for read in (lambda: loader.secret_accounts("s", vendor="keepnet"), lambda: loader.rules("p")):
            with pytest.raises(ConfigError):
                read()
    return [loader._secrets.client, loader._ssm.client]  # type: ignore[union-attr]


@pytest.mark.usefixtures("region")
def test_every_client_of_the_layer_carries_it() -> None:
    clients = [
        *_provider_clients(),
        DynamoStore("t").client,
        SnsPublisher("arn:aws:sns:eu-west-1:123456789012:t").client,
        SqsWorkQueue("https://sqs.eu-west-1.amazonaws.com/123456789012/q.fifo").client,
        S3ReportWriter("b").client,
        _client("cloudformation", argparse.Namespace(region="us-east-2")),
    ]
    for client in clients:
        config = client.meta.config
        assert f"usagewatch/{__version__}" in config.user_agent_extra
        assert (config.connect_timeout, config.read_timeout) == (aws.CONNECT_TIMEOUT, aws.READ_TIMEOUT)
        # botocore counts the first attempt too: max_attempts retries are max_attempts + 1 attempts in all.
        assert config.retries == {"mode": "standard", "total_max_attempts": aws.MAX_RETRIES + 1}
    assert clients[-1].meta.region_name == "us-east-2"


def test_no_other_module_imports_boto3() -> None:
    found = []
    for path in SHARED.rglob("*.py"):
        if path.name == "aws.py" and path.parent == SHARED:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.relative_to(SHARED)}: {n}" for n in names if n.split(".")[0] in ("boto3", "botocore")]
    assert found == []

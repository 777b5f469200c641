"""Integration fixtures: moto for AWS, the real handlers loaded from functions/, the template's environment."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.local_aws import REGION, LocalAws, in_process_aws, provision
from usagewatch.handler import reset_config_cache
from usagewatch.redaction import redactor

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeLambdaContext:
    function_name: str = "usagewatch-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:usagewatch-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"
    timeout_ms: int = 600_000
    created: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Counts down from `timeout_ms` as Lambda's does."""
        return self.timeout_ms - int((time.monotonic() - self.created) * 1000)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalAws]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    reset_config_cache()
    redactor.clear()
    with in_process_aws():
        yield provision()
    reset_config_cache()


def load_app(vendor: str) -> ModuleType:
    """functions/<vendor>/app.py as Lambda loads it (a fresh module each time)."""
    path = ROOT / "functions" / vendor / "app.py"
    spec = importlib.util.spec_from_file_location(f"app_{vendor}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_file(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "events" / name).read_text())
    return loaded


class _CurrentStdout:
    """Writes to whatever sys.stdout is when written to (capsys swaps it between test phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def capture_logs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Point the Powertools handler (which keeps the stdout of import time) at the stdout capsys reads."""
    from usagewatch.observability import logger

    for handler in logger.handlers:
        if hasattr(handler, "stream"):
            monkeypatch.setattr(handler, "stream", _CurrentStdout())


Invoke = Callable[..., dict[str, Any]]


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Call a vendor's real lambda_handler with the given environment, as Lambda would."""

    def _invoke(vendor: str, event: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result: dict[str, Any] = load_app(vendor).lambda_handler(event, FakeLambdaContext())
        return result

    return _invoke

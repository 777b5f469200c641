"""Shared fixtures for the template checks: paths, tool runner, the template translated to CloudFormation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tests import template_loader
from usagewatch import registry

REPO = template_loader.REPO_ROOT
TEMPLATE = template_loader.DEFAULT_TEMPLATE
VENV_BIN = Path(sys.executable).parent

# The vendors' default schedules where they are not every six hours (ThousandEyes bills by the hour).
SCHEDULES: dict[str, str] = {"thousandeyes": "rate(1 hour)"}
# Every registered vendor's collector: logical id -> (vendor, secret-name parameter, schedule parameter,
# default schedule). A vendor in the registry without its template resources fails these checks.
COLLECTORS: dict[str, tuple[str, str, str, str]] = {
    v.function_name: (v.id, v.secret_parameter, f"{v.template_name}Schedule", SCHEDULES.get(v.id, "rate(6 hours)"))
    for v in registry.vendors()
}

# Every optional feature switched on: the translated template then holds every conditional resource.
ALL_FEATURES_ON: dict[str, str] = {
    "AlertEmail": "alerts@example.com",
    "AlertQueueEnabled": "true",
    "OpsEmail": "ops@example.com",
    "AlertRulesParameterName": "/usagewatch/rules",
    "ChatNotifications": "true",
    "AlertEmailCriticalImmediately": "false",
    "ConnectWiseSecretName": "usagewatch/connectwise",
    "ConsoleEnabled": "true",
    "ConsoleOperatorEmail": "operator@example.com",
}


def tool_env() -> dict[str, str]:
    """The environment the CLI tools run in: this venv first on PATH (sam build needs python3.12), no telemetry."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    env["SAM_CLI_TELEMETRY"] = "0"
    env["PYTHONPATH"] = f"{REPO / 'shared'}{os.pathsep}{REPO}"
    return env


def tool(name: str) -> str:
    """Path of a console script of this venv (or on PATH)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make venv` (it installs requirements-dev.txt)")
    return found


def run(args: Sequence[str | Path], *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"


@pytest.fixture(scope="session")
def cfn_default() -> dict[str, Any]:
    """template.yaml translated to CloudFormation with the parameters' defaults."""
    return template_loader.translate_template()


@pytest.fixture(scope="session")
def cfn_all_on() -> dict[str, Any]:
    """template.yaml translated with every optional feature switched on (ALL_FEATURES_ON)."""
    return template_loader.translate_template(parameters=ALL_FEATURES_ON)

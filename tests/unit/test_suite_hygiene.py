"""The habits that keep the suite fast as it grows (docs/performance.md: Test time)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_moto_is_started_through_in_process_aws() -> None:
    """A bare `mock_aws()` replaces boto3's default session at every start, and the new session reads botocore's
    service models from disk again (with the parameter providers' own sessions, a third of the suite's CPU)."""
    found = []
    for path in TESTS.rglob("*.py"):
        if path == TESTS / "local_aws.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "mock_aws":
                found.append(f"{path.relative_to(TESTS)}:{node.lineno}")
    assert found == [], "start moto with tests.local_aws.in_process_aws(), not mock_aws(): " + ", ".join(found)

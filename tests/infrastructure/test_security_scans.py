"""Security scanners, each clean or suppressed in the template with a written reason.

- cfn-lint with the serverless rules (cfn-lint-serverless) on template.yaml (cfn-lint's own rules are what
  `sam validate --lint` runs);
- checkov on the template translated to CloudFormation offline, once with the defaults and once with every
  optional feature on (checkov evaluates Conditions with the parameters' defaults, so conditional resources are
  only scanned in the second file);
- bandit on shared/ and functions/.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests import template_loader
from tests.infrastructure.conftest import ALL_FEATURES_ON, REPO, TEMPLATE, describe, run, tool

CHECKOV_HINT = "checkov is installed into .venv/checkov by `make infra` (it cannot share the main venv)"


def _checkov() -> str:
    path = Path(os.environ.get("CHECKOV", REPO / ".venv" / "checkov" / "bin" / "checkov"))
    if not path.exists():
        pytest.fail(f"{path} not found: {CHECKOV_HINT}")
    return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# cfn-lint + serverless rules
# ---------------------------------------------------------------------------------------------------------------------


# What `sam validate --lint` runs is cfn-lint's own rules (the same library, with the region as its one setting), so one
# cfn-lint run covers both: its rules and the serverless ones, for cfn-lint's default region and the Makefile's.
LINT_REGIONS = ("us-east-1", "eu-west-1")
BROKEN = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Queue:\n    Type: AWS::SQS::Queue\n"


@pytest.fixture(scope="module")
def cfn_lint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """One cfn-lint process over template.yaml and a template that breaks a serverless rule; its findings by file."""
    broken = tmp_path_factory.mktemp("cfn-lint") / "broken.yaml"
    broken.write_text(BROKEN)
    options = ("--format", "parseable", "--regions", *LINT_REGIONS, "--append-rules", "cfn_lint_serverless.rules")
    result = run([tool("cfn-lint"), *options, "--template", TEMPLATE, broken])
    # The exit code's bits are the levels found (2 error, 4 warning, 8 informational); 1 is cfn-lint itself failing.
    assert result.returncode % 2 == 0, describe(result)
    findings: dict[str, list[str]] = {str(TEMPLATE): [], str(broken): []}
    for line in result.stdout.splitlines():
        path, _, finding = line.partition(":")
        assert path in findings, describe(result)
        findings[path].append(finding)
    return {"template": findings[str(TEMPLATE)], "broken": findings[str(broken)]}


def test_cfn_lint_with_serverless_rules_is_clean(cfn_lint: dict[str, list[str]]) -> None:
    assert not cfn_lint["template"], "cfn-lint findings in template.yaml:\n" + "\n".join(cfn_lint["template"])


def test_serverless_rules_are_really_loaded(cfn_lint: dict[str, list[str]]) -> None:
    """A template that breaks a serverless rule must be reported: proves the rules module is on the path."""
    assert any(":ES6000:" in finding for finding in cfn_lint["broken"]), cfn_lint["broken"]


def _cfn_lint_suppressions() -> list[tuple[str, str]]:
    doc = template_loader.load_template()
    found: list[tuple[str, str]] = []
    for logical_id, resource in doc["Resources"].items():
        config = resource.get("Metadata", {}).get("cfn-lint", {}).get("config", {})
        found.extend((logical_id, rule) for rule in config.get("ignore_checks", []))
    return found


def test_every_cfn_lint_suppression_has_a_reason() -> None:
    """ignore_checks entries carry their reason as a comment (YAML drops comments, so read the text)."""
    text = TEMPLATE.read_text()
    for logical_id, rule in _cfn_lint_suppressions():
        inline = re.search(rf"^\s*- {rule} # \S.{{20,}}$", text, re.MULTILINE)
        block = re.search(rf"(?:^\s*# .{{20,}}\n)+^\s*- {rule}\s*$", text, re.MULTILINE)
        assert inline or block, f"{logical_id}: cfn-lint {rule} suppressed without a reason next to it"
    # Only the serverless-rule warnings we can explain are suppressed, never a base cfn-lint rule. ES1001 (an event
    # source mapping without an on-failure destination) only on the SQS work-queue mapping: SQS mappings take no
    # destination, the queue's redrive policy is their failure path. WS1000 (X-Ray tracing): no code traces.
    assert {rule for _, rule in _cfn_lint_suppressions()} <= {"WS1004", "WS1000", "ES6000", "ES7000", "ES1001"}
    es1001 = {logical_id for logical_id, rule in _cfn_lint_suppressions() if rule == "ES1001"}
    assert es1001 <= {"GravityZoneWorkQueueMapping"}, es1001


# ---------------------------------------------------------------------------------------------------------------------
# checkov
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory, cfn_default: Any, cfn_all_on: Any) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("checkov")
    files = []
    for name, translated, parameters in (
        ("defaults", cfn_default, {}),
        ("all-features-on", cfn_all_on, ALL_FEATURES_ON),
    ):
        doc = json.loads(json.dumps(translated))
        for key, value in parameters.items():
            doc["Parameters"][key]["Default"] = value  # checkov decides Conditions from the defaults
        path = folder / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1))
        files.append(path)
    args: list[str | Path] = [_checkov()]
    for path in files:
        args += ["-f", path]
    args += ["--framework", "cloudformation", "--skip-download", "--output", "json"]
    result = run(args, timeout=300)
    assert result.returncode in (0, 1), describe(result)  # 1 = failed checks, reported below
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov printed no JSON report\n{describe(result)}")
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, reports
    assert reports[0]["check_type"] == "cloudformation", reports
    return dict(reports[0])


def test_checkov_has_no_failed_check(checkov_report: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).name})"
        for c in checkov_report["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks (fix, or suppress in the template with a reason):\n" + "\n".join(failed)
    assert checkov_report["summary"]["parsing_errors"] == 0


def test_checkov_scanned_every_resource_kind(checkov_report: dict[str, Any]) -> None:
    """Guards against a scan that silently saw nothing (a translation or parsing problem)."""
    results = checkov_report["results"]
    scanned = {c["resource"].split(".")[0] for c in results["passed_checks"] + results["skipped_checks"]}
    expected = {
        "AWS::Lambda::Function",
        "AWS::IAM::Role",
        "AWS::DynamoDB::Table",
        "AWS::SNS::Topic",
        "AWS::SQS::Queue",
        "AWS::Logs::LogGroup",
        "AWS::KMS::Key",
    }
    assert expected <= scanned, f"not scanned: {sorted(expected - scanned)}"
    assert len(results["passed_checks"]) >= 100


def test_checkov_skips_are_suppressions_with_reasons(checkov_report: dict[str, Any]) -> None:
    for check in checkov_report["results"]["skipped_checks"]:
        comment = check["check_result"].get("suppress_comment", "")
        assert len(comment) >= 40, f"{check['check_id']} on {check['resource']} skipped without a real reason"


def test_every_checkov_suppression_in_the_template_has_a_reason() -> None:
    doc = template_loader.load_template()
    for logical_id, resource in doc["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip.get("id", "")), (logical_id, skip)
            assert len(skip.get("comment", "")) >= 40, f"{logical_id}: {skip['id']} suppressed without a reason"


# ---------------------------------------------------------------------------------------------------------------------
# bandit
# ---------------------------------------------------------------------------------------------------------------------


def test_bandit_finds_nothing_in_shared_and_functions() -> None:
    result = run([tool("bandit"), "-r", "shared", "functions", "-c", "pyproject.toml", "-f", "json", "-q"])
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"bandit printed no JSON report\n{describe(result)}")
    findings = [
        f"{r['test_id']} {r['issue_severity']} {r['filename']}:{r['line_number']}: {r['issue_text']}"
        for r in report["results"]
    ]
    assert not findings, "bandit findings:\n" + "\n".join(findings)
    assert not report["errors"], report["errors"]
    assert report["metrics"]["_totals"]["loc"] > 500, "bandit scanned (almost) nothing"


def test_bandit_suppressions_name_the_test_they_silence() -> None:
    """A bare `# nosec` hides every present and future finding on the line; require `# nosec BXXX`."""
    bare = []
    for folder in ("shared", "functions"):
        for path in (REPO / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if re.search(r"#\s*nosec\b(?!\s*:?\s*B\d{3})", line):
                    bare.append(f"{path.relative_to(REPO)}:{number}")
    assert not bare, f"bare `# nosec` (name the bandit test, e.g. `# nosec B311`): {bare}"

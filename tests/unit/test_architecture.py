"""Imports flow one way (docs/architecture.md): an AST walk over shared/usagewatch and functions/ fails when a
module imports what its room may not. Every import counts, including those under TYPE_CHECKING or inside a
function. Rooms are matched by module-name prefix, so a module moving into a package keeps its rule."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "shared" / "usagewatch"
FUNCTIONS = ROOT / "functions"

AWS_SDK = ("boto3", "botocore")
HTTP_CLIENT = ("requests", "urllib3")
STORE = ("store", "billing_store", "billing_commit")
AWS_EDGE = ("aws", *STORE, "publisher", "reports", "settings")
ENTRY = ("handler", "cli*", "migrate", "report", "console")
PURE = (
    "errors",
    "text",
    "redaction",
    "validation",
    "events",
    "registry",
    "model",
    "stored",
    "invocation",
    "projection",
)
VOCABULARY = (*PURE, "continuation", "observability")
ALERTS = ("alerts", "alert_model", "alert_events", "alert_failures")
DECISIONS = ("rules", *ALERTS, "trends", "dispatch", "notify", "digest")
PSA_ADAPTER = ("psa.contract", "psa.connectwise")
PSA_MODEL = ("psa.proposals", "psa.apply", "psa.products")
PSA_RUNS = ("psa.sync", "psa.scheduled", "psa.planning", "psa.monthly")


@dataclass(frozen=True)
class Rule:
    """Modules matching `rooms` never import a module matching `never` (usagewatch names, or a top-level
    package such as boto3 when written `pkg:boto3`)."""

    rooms: tuple[str, ...]
    never: tuple[str, ...]
    why: str


def _pkgs(*names: str) -> tuple[str, ...]:
    return tuple(f"pkg:{name}" for name in names)


RULES: tuple[Rule, ...] = (
    Rule(("*",), _pkgs(*AWS_SDK), "only usagewatch.aws builds AWS clients"),
    Rule(("*",), _pkgs(*HTTP_CLIENT), "only usagewatch.http speaks HTTP"),
    Rule(("*",), ("cli*",), "nothing in the layer depends on the CLI"),
    Rule(("*",), ("pipeline",), "only the handler (and the CLI, if it must) drives a run"),
    Rule(("*",), ("handler",), "the handler is an entry point; only functions/ import it"),
    Rule(
        ("sources",),
        (*AWS_EDGE, "pipeline", "rules", *ALERTS, "dispatch", "notify", "digest", "psa", *ENTRY, *_pkgs(*AWS_SDK)),
        "a source reads one vendor and never touches AWS or the run",
    ),
    Rule(
        (*VOCABULARY, *DECISIONS),
        (*AWS_EDGE, "pipeline", "http", "sources", "psa", *ENTRY),
        "the vocabulary and the decisions are pure: no I/O",
    ),
    Rule(
        ("http", "pacing"),
        (*AWS_EDGE, "pipeline", "sources", "psa", *DECISIONS, *ENTRY),
        "the transport serves sources and PSAs and knows nothing above it",
    ),
    Rule(
        ("billing_report", "completeness", "billing_alerts", "monthly_report"),
        ("pipeline", "http", "sources", *ENTRY),
        "billing reads the table, never a vendor or a run",
    ),
    Rule(
        (*STORE, "publisher", "reports"),
        ("http", "sources", "psa.connectwise", *PSA_RUNS, "pipeline", "dispatch", *ENTRY),
        "an AWS edge stores or publishes; it never calls a vendor, drives a run or serves the CLI",
    ),
    Rule(
        (*PSA_ADAPTER, *PSA_MODEL),
        (*AWS_EDGE, "pipeline", "sources", *PSA_RUNS, *ENTRY),
        "a PSA adapter talks to its PSA only; the proposals and the apply engine are pure over their protocols",
    ),
    Rule(
        PSA_RUNS,
        ("pipeline", "sources", "http", *ENTRY),
        "the PSA sync runs between the adapter and the billing store, like billing never a vendor's source",
    ),
    Rule(
        ("customers", "matching", "contracts", "imports", "reconcile", "billing_html"),
        (*AWS_EDGE, "pipeline", "http", "sources", "psa", *ENTRY),
        "billing's parsing and arithmetic are pure",
    ),
    Rule(("functions/",), ("sources", *STORE, "publisher", *_pkgs(*AWS_SDK)), "a function's app.py stays thin"),
)
EXEMPT: dict[str, set[str]] = {
    # room -> the imports it alone may make against a rule of "*"
    "aws": {"pkg:boto3", "pkg:botocore"},
    "http": {"pkg:requests", "pkg:urllib3"},
    "cli*": {"cli*", "pipeline"},
    "pipeline": {"pipeline"},
    "handler": {"pipeline"},
    "functions/": {"handler", "pipeline"},
}
KNOWN_WRONG: dict[tuple[str, str], str] = {
    ("console.auth", "pkg:requests"): "fetches the pool's JWKS for the local front (make console); in AWS the HTTP "
    "API's JWT authorizer does it",
}


def _matches(module: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):  # `cli*`: cli.py, cli_billing.py, a cli/ package; not clients.py
        base = pattern[:-1]
        return module == base or module.startswith((base + ".", base + "_"))
    if pattern.endswith("/"):
        return module.startswith(pattern)
    return module == pattern or module.startswith(pattern + ".")


@dataclass(frozen=True)
class Import:
    target: str  # a layer module without the `usagewatch.` prefix, or `pkg:<top-level package>`
    line: int


def module_name(path: Path) -> str:
    if path.is_relative_to(FUNCTIONS):
        return f"functions/{path.relative_to(FUNCTIONS).as_posix()}"
    parts = list(path.relative_to(LAYER).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = ["usagewatch", *module.split(".")] if module else ["usagewatch"]
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _target(name: str) -> str | None:
    if name == "usagewatch":
        return None
    if name.startswith("usagewatch."):
        return name.removeprefix("usagewatch.")
    return f"pkg:{name.split('.', maxsplit=1)[0]}"


def imports_of(source: str, module: str = "", is_package: bool = False) -> list[Import]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            origin = _absolute(node, module, is_package)
            names = [origin] + ([f"{origin}.{alias.name}" for alias in node.names] if origin == "usagewatch" else [])
        else:
            continue
        found += [Import(target, node.lineno) for name in names if (target := _target(name))]
    return found


def _exempt(module: str, target: str) -> bool:
    return any(_matches(module, room) and any(_matches_target(target, t) for t in ok) for room, ok in EXEMPT.items())


def _matches_target(target: str, pattern: str) -> bool:
    if pattern.startswith("pkg:") or target.startswith("pkg:"):
        return target == pattern
    return _matches(target, pattern)


def violations(module: str, imports: list[Import]) -> list[str]:
    found = []
    for rule in RULES:
        if not any(_matches(module, room) for room in rule.rooms):
            continue
        for imp in imports:
            if _matches_target(imp.target, module) or module.startswith(imp.target.split(".")[0] + "."):
                continue  # a module's own package
            banned = [p for p in rule.never if _matches_target(imp.target, p)]
            if not banned or (rule.rooms == ("*",) and _exempt(module, imp.target)):
                continue
            if any(_matches(module, m) and imp.target == t for (m, t) in KNOWN_WRONG):
                continue
            found.append(f"{module}:{imp.line} imports {imp.target}: {rule.why}")
    return sorted(set(found))


def code_files() -> list[Path]:
    return sorted([*LAYER.rglob("*.py"), *FUNCTIONS.rglob("*.py")])


@pytest.mark.parametrize("path", code_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_one_way(path: Path) -> None:
    module = module_name(path)
    found = violations(module, imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"))
    assert not found, "\n".join(["imports against docs/architecture.md:", *found])


def _check(module: str, source: str) -> list[str]:
    return violations(module, imports_of(source, module))


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("sources.keepnet.api", "from usagewatch.store import DynamoStore"),
        ("sources.keepnet.api", "from usagewatch.store.billing import BillingStore"),
        ("sources.thousandeyes.source", "import boto3"),
        ("sources.gravityzone.source", "from usagewatch import pipeline"),
        ("rules", "import requests"),
        ("alerts", "from usagewatch.store.usage import UsageItems"),
        ("model", "from usagewatch.pipeline.run import Pipeline"),
        ("registry", "from .store import DynamoStore"),
        ("store.usage", "import requests"),
        ("store.billing", "from usagewatch.http import HttpClient"),
        ("publisher", "from requests import Session"),
        ("notify", "import botocore.config"),
        ("billing_report", "from usagewatch.cli.common import CliError"),
        ("dispatch", "from usagewatch.cli_billing import run"),
        ("digest", "from usagewatch.publisher import SnsPublisher"),
        ("pacing", "from usagewatch.store import DynamoStore"),
        ("completeness", "from usagewatch.pipeline.run import Pipeline"),
        ("observability", "import boto3"),
        ("customers", "from usagewatch.pipeline import Pipeline"),
        ("psa.connectwise.api", "from usagewatch.store import DynamoStore"),
        ("functions/keepnet/app.py", "import boto3"),
    ],
)
def test_a_bad_import_is_caught(module: str, source: str) -> None:
    assert _check(module, source)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("aws", "import boto3\nfrom botocore.config import Config"),
        ("http", "import requests"),
        ("handler", "from usagewatch.pipeline import Pipeline"),
        ("cli.commands", "from usagewatch.pipeline import Pipeline\nfrom usagewatch.cli.common import CliError"),
        ("pipeline.run", "from .account import AccountRun"),
        ("store.billing", "from usagewatch.store.table import Table"),
        ("sources.keepnet.api", "from usagewatch.http import HttpClient\nfrom ..base import SourceBase"),
        ("functions/keepnet/app.py", "from usagewatch.handler import lambda_handler_for"),
        ("store.table", "from mypy_boto3_dynamodb.client import DynamoDBClient"),
        ("clients", "from usagewatch.model import Period"),
        ("billing_report", "from usagewatch.store import DynamoStore\nfrom usagewatch.clients import x"),
    ],
)
def test_an_allowed_import_passes(module: str, source: str) -> None:
    assert _check(module, source) == []


def test_relative_imports_resolve() -> None:
    assert [i.target for i in imports_of("from ..store import x", "sources.keepnet")] == ["store"]
    assert [i.target for i in imports_of("from . import api", "sources.keepnet", is_package=True)] == [
        "sources.keepnet"
    ]


def _package_names() -> set[str]:
    """Names `usagewatch/__init__.py` itself defines (`from usagewatch import __version__`)."""
    tree = ast.parse((LAYER / "__init__.py").read_text(encoding="utf-8"))
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }


def _exists(target: str) -> bool:
    path = LAYER.joinpath(*target.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file() or target in _package_names()


@pytest.mark.parametrize("path", code_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_layer_import_names_a_module_that_exists(path: Path) -> None:
    """A function-local import of a module that moved fails only when that path runs: caught here instead."""
    module = module_name(path)
    imports = imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
    missing = [
        f"{module}:{i.line} imports usagewatch.{i.target}"
        for i in imports
        if not i.target.startswith("pkg:") and not _exists(i.target)
    ]
    assert missing == []


def test_a_moved_module_is_caught() -> None:
    imports = imports_of("def f():\n    from usagewatch.usage_shape import usage_pk\n", "billing_alerts")
    assert [i.target for i in imports if not _exists(i.target)] == ["usage_shape"]

"""`sam build`: the template builds into deployable artifacts. (What `sam validate --lint` checks, cfn-lint's rules, is
in test_security_scans.py, with the serverless rules.)

`sam build` runs once (module fixture) into a temporary build directory, for arm64 with the python3.12 of this
venv; the checks then look inside the artifacts Lambda would get.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import template_loader
from tests.infrastructure.conftest import COLLECTORS, REPO, TEMPLATE, describe, run, tool, tool_env


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [
        f"{Path(template_loader.function_code_dir(f)).relative_to(REPO)}/app.py"
        for f in template_loader.function_ids()
        if not (Path(template_loader.function_code_dir(f)) / "app.py").is_file()
    ]
    if missing:
        pytest.fail(f"handler module(s) missing, nothing to build: {', '.join(missing)}")
    root = tmp_path_factory.mktemp("sam")
    build = root / "build"
    result = run(
        [tool("sam"), "build", "--template-file", TEMPLATE, "--build-dir", build, "--cache-dir", root / "cache"],
        timeout=420,
    )
    assert result.returncode == 0, describe(result)
    return build


def test_build_writes_a_template_naming_every_function(build_dir: Path) -> None:
    built = yaml.load((build_dir / "template.yaml").read_text(), Loader=template_loader._CfnLoader)
    resources = built["Resources"]
    for function_id in template_loader.function_ids():
        assert resources[function_id]["Properties"]["CodeUri"] == function_id
    assert resources["SharedLayer"]["Properties"]["ContentUri"] == "SharedLayer"


def test_layer_contains_the_usagewatch_package(build_dir: Path) -> None:
    package = build_dir / "SharedLayer" / "python" / "usagewatch"
    assert (package / "__init__.py").is_file(), "the layer must hold python/usagewatch so `import usagewatch` works"
    source = REPO / "shared" / "usagewatch"
    expected = {p.relative_to(source) for p in source.rglob("*.py")}
    built = {p.relative_to(package) for p in package.rglob("*.py")}
    assert expected <= built, f"modules missing from the layer: {sorted(map(str, expected - built))}"


def test_layer_contains_the_runtime_requirements(build_dir: Path) -> None:
    python_dir = build_dir / "SharedLayer" / "python"
    for package in ("aws_lambda_powertools", "requests", "pydantic", "pydantic_core"):
        assert (python_dir / package).is_dir(), f"{package} missing from the layer"


def test_layer_ships_every_module_compiled_for_the_runtime(build_dir: Path) -> None:
    """/opt is read-only in Lambda: a module without its .pyc is compiled again at every cold start. Hash-based,
    unchecked .pyc, because zip keeps file times at 2 s resolution (a timestamp .pyc could be judged stale)."""
    python_dir = build_dir / "SharedLayer" / "python"
    sources = list(python_dir.rglob("*.py"))
    assert len(sources) > 100
    missing, wrong = [], []
    for source in sources:
        compiled = Path(importlib.util.cache_from_source(str(source)))
        if not compiled.is_file():
            missing.append(str(source.relative_to(python_dir)))
            continue
        header = compiled.read_bytes()[:8]
        if header[:4] != importlib.util.MAGIC_NUMBER or int.from_bytes(header[4:8], "little") != 0b01:
            wrong.append(str(compiled.relative_to(python_dir)))
    assert not missing, f"modules shipped without .pyc: {missing[:10]}"
    assert not wrong, f".pyc not unchecked-hash for CPython 3.12: {wrong[:10]}"


def test_layer_native_code_is_built_for_arm64(build_dir: Path) -> None:
    python_dir = build_dir / "SharedLayer" / "python"
    extensions = list(python_dir.rglob("*.so"))
    assert any("pydantic_core" in str(p) for p in extensions), "pydantic_core's compiled module is missing"
    wrong = [str(p.relative_to(python_dir)) for p in extensions if "aarch64" not in p.name]
    assert not wrong, f"native modules not built for aarch64 (the functions run on arm64): {wrong}"
    wheel_tags = [
        line
        for wheel in python_dir.glob("pydantic_core-*.dist-info/WHEEL")
        for line in wheel.read_text().splitlines()
        if line.startswith("Tag:")
    ]
    assert wheel_tags, "pydantic_core wheel metadata missing"
    assert all("aarch64" in tag for tag in wheel_tags), wheel_tags


@pytest.mark.parametrize("function_id", template_loader.function_ids())
def test_each_function_artifact_holds_its_handler(build_dir: Path, function_id: str) -> None:
    module, attribute = template_loader.function_handler(function_id)
    handler_file = build_dir / function_id / f"{module}.py"
    assert handler_file.is_file(), f"{function_id}: {module}.py missing from the build"
    tree = ast.parse(handler_file.read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)} | {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert attribute in defined, f"{function_id}: {module}.py defines no top-level {attribute}"


def test_the_console_artifact_carries_its_own_dependencies(build_dir: Path) -> None:
    """jinja2 (the pages) and rapidfuzz (the suggestions) are the console's alone (functions/console/requirements.txt),
    built for arm64 like the layer's native code."""
    artifact = build_dir / "ConsoleFunction"
    assert (artifact / "jinja2" / "__init__.py").is_file()
    native = [p.name for p in (artifact / "rapidfuzz").rglob("*.so")]
    assert native and all("aarch64" in name for name in native), native


# The console's artifact holds rapidfuzz built for arm64, which this machine may not run: its handler's import is
# checked by the console's integration tests instead.
@pytest.mark.parametrize("function_id", [*COLLECTORS, "MonthlyReportFunction", "PsaSyncFunction"])
def test_each_built_handler_imports_with_the_layer_package(build_dir: Path, function_id: str, tmp_path: Path) -> None:
    """What Lambda does at cold start: import the handler from the function's artifact with the layer's usagewatch
    package. The layer's third-party wheels are aarch64 (this machine may not be), so this venv's stand in for them;
    the repository is not on the path, so a handler importing tests.* or another function's code fails here."""
    layer_package = tmp_path / "layer"
    layer_package.mkdir()
    (layer_package / "usagewatch").symlink_to(build_dir / "SharedLayer" / "python" / "usagewatch")
    module, attribute = template_loader.function_handler(function_id)
    paths = [str(build_dir / function_id), str(layer_package)]
    code = f"import sys; sys.path[:0] = {paths!r}; import {module}; assert callable({module}.{attribute})"
    result = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env={k: v for k, v in tool_env().items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

"""Cold start: the import time of each handler (functions/<vendor>/app.py) in a fresh interpreter.

Each figure is the median of 5 fresh processes (taken round robin after one warm-up round) timing
`import app` (or `import boto3`): the CPU time of the import (`time.process_time`), the wall time
alongside; interpreter start-up is excluded. Imports from a warm page cache are CPU-bound, as Lambda's
init is. The processes run with `-S` (no site-packages) and a sys.path laid out like Lambda's: the
function directory, the layer, the runtime's packages.

- runtime: boto3, botocore, s3transfer, dateutil, six, linked from the venv with their `.pyc` (the Lambda
  runtime ships them compiled). `import boto3` is measured from here alone.
- layer: usagewatch and every other package the handler imports (pydantic, Powertools, requests...),
  with their dist-info (pydantic scans entry points at the first model).
  - "no .pyc" is what SAM's python3.12 builder produces (the layer's build before shared/Makefile):
    aws-lambda-builders leaves out `*.pyc`/`__pycache__` and installs dependencies by unpacking wheels,
    and /opt is read-only at run time, so every cold start compiles the whole layer from source
    (PYTHONDONTWRITEBYTECODE=1 here).
  - "compiled" is the same layer after `compileall --invalidation-mode unchecked-hash`: what shared/Makefile
    builds now (with this machine's wheels: the built layer's are aarch64).
- "deferred": `app` plus what the handler imports at its first invocation (pipeline, rules, settings, the
  vendor source), compiled: the whole import cost, whether paid at init or at the first call.

The ratio to boto3 is the median of the 5 paired ratios (each round times boto3 and every handler back
to back), which a change of the machine's speed between rounds disturbs least. One `-X importtime` run
per handler names the heaviest imports.
"""

from __future__ import annotations

import compileall
import importlib.metadata
import json
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any, Final

from bench import ROOT, SHARED
from bench.common import Row, median

VENDORS: Final = ("keepnet", "gravityzone", "thousandeyes")
REPEATS: Final = 5
TARGET_RATIO: Final = 1.5
# In the Lambda Python runtime (compiled in every layout) and not in the layer. The runtime also has
# urllib3 and jmespath, but the layer brings its own (requests and Powertools depend on them).
RUNTIME_PACKAGES: Final = ("boto3", "botocore", "s3transfer", "dateutil", "six", "jmespath", "urllib3")
NOT_IN_LAYER: Final = frozenset({"boto3", "botocore", "s3transfer", "dateutil", "six"})
SITE: Final = Path(sysconfig.get_paths()["purelib"])

_TIMER = (
    "import sys, time\n"
    "cpu, started = time.process_time(), time.perf_counter()\n"
    "import {module}\n"
    "print(time.process_time() - cpu, time.perf_counter() - started, len(sys.modules))\n"
)
_IMPORTED = (
    "import json, sys, sysconfig\n"
    "import {modules}\n"
    "site = sysconfig.get_paths()['purelib']\n"
    "print(json.dumps(sorted({m.split('.')[0] for m, mod in list(sys.modules.items())\n"
    "    if (getattr(mod, '__file__', None) or '').startswith(site)})))\n"
)
_CLIENTS = (
    "import time\n"
    "import boto3\n"
    "started = time.perf_counter()\n"
    "for service in ('secretsmanager', 'ssm', 'dynamodb', 'sns'):\n"
    "    boto3.client(service, region_name='eu-west-1')\n"
    "print(time.perf_counter() - started, 0)\n"
)


def _python(
    code: str,
    path: list[Path],
    *,
    isolated: bool = True,
    no_bytecode: bool = False,
    importtime: bool = False,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYDANTIC"))}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    env.update(extra_env or {})
    if no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    flags = (["-S"] if isolated else []) + (["-X", "importtime"] if importtime else [])
    command = [sys.executable, *flags, "-c", code]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603
    if result.returncode != 0:
        raise RuntimeError(f"{code!r} failed:\n{result.stderr[-3000:]}")
    return result


def _sample(module: str, path: list[Path], **kwargs: Any) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, modules loaded) of one fresh `import module`."""
    out = _python(_TIMER.format(module=module), path, **kwargs).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def _stats(samples: list[tuple[float, float, int]]) -> dict[str, Any]:
    return {
        "median_ms": round(median(cpu for cpu, _, _ in samples) * 1000, 1),
        "samples_ms": [round(cpu * 1000, 1) for cpu, _, _ in samples],
        "wall_median_ms": round(median(wall for _, wall, _ in samples) * 1000, 1),
        "wall_samples_ms": [round(wall * 1000, 1) for _, wall, _ in samples],
        "modules": samples[-1][2],
    }


def _heaviest(path: list[Path], module: str = "app", *, top: int = 10) -> list[dict[str, Any]]:
    """The imports (three levels below `app` at most) with the largest cumulative time."""
    stderr = _python(f"import {module}", path, importtime=True).stderr
    found: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.removeprefix("import time:").split("|")
        try:
            own, cumulative = int(parts[0]), int(parts[1])
        except ValueError:
            continue
        depth = (len(parts[2]) - len(parts[2].lstrip()) - 1) // 2
        name = parts[2].strip()
        if name != "app" and depth <= 3:
            found.append(
                {"module": name, "cumulative_ms": round(cumulative / 1000, 1), "self_ms": round(own / 1000, 1)}
            )
    found.sort(key=lambda entry: entry["cumulative_ms"], reverse=True)
    return found[:top]


def _copy_package(name: str, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    source = SITE / name
    if source.is_dir():
        shutil.copytree(source, target / name, ignore=ignore, dirs_exist_ok=True)
        return
    for candidate in SITE.glob(f"{name}.*"):
        if candidate.is_file() and candidate.suffix in (".py", ".so"):
            shutil.copy2(candidate, target / candidate.name)


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _build_layouts(work: Path) -> dict[str, Path]:
    """runtime/ (links to compiled boto3 & co.), layer-src/ (no .pyc), layer-pyc/ (compiled), functions."""
    runtime = work / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        for candidate in [SITE / name, *SITE.glob(f"{name}.py")]:
            if candidate.exists():
                (runtime / candidate.name).symlink_to(candidate)
    imported: set[str] = set()
    for vendor in VENDORS:
        code = _IMPORTED.replace("{modules}", _deferred(vendor))
        out = _python(code, [ROOT / "functions" / vendor, SHARED], isolated=False, no_bytecode=True).stdout
        imported |= set(json.loads(out))
    packages = sorted(p for p in imported if p not in NOT_IN_LAYER and not p.startswith("_distutils"))
    layer_src = work / "layer-src"
    layer_src.mkdir()
    distributions = importlib.metadata.packages_distributions()
    for name in packages:
        _copy_package(name, layer_src)
        wanted = {_normal(d) for d in distributions.get(name, [])}
        for info in SITE.glob("*.dist-info"):
            if _normal(info.name.split("-")[0]) in wanted:
                shutil.copytree(info, layer_src / info.name, dirs_exist_ok=True)
    shutil.copytree(SHARED / "usagewatch", layer_src / "usagewatch", ignore=shutil.ignore_patterns("__pycache__"))
    layer_pyc = work / "layer-pyc"
    shutil.copytree(layer_src, layer_pyc)
    compileall.compile_dir(
        layer_pyc, quiet=1, workers=0, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    layouts = {"runtime": runtime, "layer-src": layer_src, "layer-pyc": layer_pyc}
    for vendor in VENDORS:
        for kind in ("src", "pyc"):
            function_dir = work / f"function-{kind}" / vendor
            function_dir.mkdir(parents=True)
            shutil.copy2(ROOT / "functions" / vendor / "app.py", function_dir / "app.py")
            if kind == "pyc":
                compileall.compile_dir(
                    function_dir, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
                )
            layouts[f"function-{kind}-{vendor}"] = function_dir
    return layouts


def scenario() -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {"repeats": REPEATS}
    samples: dict[str, list[tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="uw-coldstart-") as tmp:
        layouts = _build_layouts(Path(tmp))
        runtime = layouts["runtime"]
        raw["layer_packages"] = sorted(p.name for p in layouts["layer-src"].iterdir())
        raw["layer_mb"] = {kind: round(_size(layouts[kind]) / 1e6, 1) for kind in ("layer-src", "layer-pyc")}
        subjects: list[tuple[str, str, list[Path], bool]] = [("boto3", "boto3", [runtime], False)]
        for vendor in VENDORS:
            compiled = [layouts[f"function-pyc-{vendor}"], layouts["layer-pyc"], runtime]
            as_built = [layouts[f"function-src-{vendor}"], layouts["layer-src"], runtime]
            subjects += [
                (f"{vendor}/compiled", "app", compiled, False),
                (f"{vendor}/as_built", "app", as_built, True),
                (f"{vendor}/deferred", _deferred(vendor), compiled, False),
            ]
        # One untimed round warms the page cache; then round robin, so a change in the machine's speed
        # hits every subject alike.
        for round_ in range(REPEATS + 1):
            for key, module, path, no_bytecode in subjects:
                sample = _sample(module, path, no_bytecode=no_bytecode)
                if round_:
                    samples.setdefault(key, []).append(sample)
        raw["boto3"] = _stats(samples["boto3"])
        raw["boto3_clients"] = _time_clients(runtime)
        handlers: dict[str, Any] = {}
        for vendor in VENDORS:
            compiled = [layouts[f"function-pyc-{vendor}"], layouts["layer-pyc"], runtime]
            handlers[vendor] = {
                "compiled": _stats(samples[f"{vendor}/compiled"]),
                "as_built": _stats(samples[f"{vendor}/as_built"]),
                "deferred": _stats(samples[f"{vendor}/deferred"]),
                "heaviest": _heaviest(compiled, _deferred(vendor)),
            }
        raw["handlers"] = handlers
    boto3_ms = raw["boto3"]["median_ms"]
    rows: list[Row] = [
        Row(
            "coldstart",
            "import boto3 (runtime, compiled), CPU",
            boto3_ms,
            "ms",
            details={**raw["boto3"], "layer_mb": raw["layer_mb"]},
        ),
    ]
    layouts_shown = (
        ("as_built", "layer without .pyc (python3.12 builder)"),
        ("compiled", "layer with .pyc (shared/Makefile)"),
    )
    for vendor, entry in handlers.items():
        for key, label in layouts_shown:
            measured = entry[key]["median_ms"]
            # Each round measured boto3 and this handler back to back: the median of those paired ratios
            # is what a change of the shared machine's speed between rounds disturbs least.
            paired = [h / b for h, b in zip(entry[key]["samples_ms"], raw["boto3"]["samples_ms"], strict=True)]
            ratio = round(median(paired), 2)
            rows.append(
                Row(
                    "coldstart",
                    f"{vendor}: {label}, CPU",
                    measured,
                    "ms",
                    boto3_ms,
                    "import boto3",
                    target=f"<= {TARGET_RATIO}x boto3",
                    ok=ratio <= TARGET_RATIO,
                    paired_ratio=ratio,
                    details={
                        "modules": entry[key]["modules"],
                        "cpu_samples_ms": entry[key]["samples_ms"],
                        "paired_ratios": [round(r, 2) for r in paired],
                        "ratio_of_medians": round(measured / boto3_ms, 2),
                        "wall_median_ms": entry[key]["wall_median_ms"],
                    },
                )
            )
    for vendor, entry in handlers.items():
        rows.append(
            Row(
                "coldstart",
                f"{vendor}: + imports deferred to the first call",
                entry["deferred"]["median_ms"],
                "ms",
                boto3_ms,
                "import boto3",
                paired_ratio=round(
                    median(
                        h / b for h, b in zip(entry["deferred"]["samples_ms"], raw["boto3"]["samples_ms"], strict=True)
                    ),
                    2,
                ),
                details={"modules": entry["deferred"]["modules"], "cpu_samples_ms": entry["deferred"]["samples_ms"]},
            )
        )
    rows.append(
        Row(
            "coldstart",
            "first invocation: 4 boto3 clients",
            raw["boto3_clients"]["median_ms"],
            "ms",
            details=raw["boto3_clients"],
        )
    )
    return rows, raw


def _deferred(vendor: str) -> str:
    """What the handler imports at its first invocation, on top of `app`."""
    return f"app, usagewatch.pipeline, usagewatch.settings, usagewatch.sources.{vendor}"


def _time_clients(runtime: Path) -> dict[str, Any]:
    """What the first invocation pays after the imports: a client per service it calls (models loaded)."""
    samples = [float(_python(_CLIENTS, [runtime]).stdout.split()[0]) for _ in range(REPEATS)]
    return {"median_ms": round(median(samples) * 1000, 1), "samples_ms": [round(s * 1000, 1) for s in samples]}

"""`python -m bench.run [scenario ...]`: run benchmark scenarios, print their rows, write bench/results.json.

Scenarios (default: all, in this order): coldstart, hotpath, keepnet, memory, dynamodb, thousandeyes,
microsoft365 (200 tenants at concurrency 8 and 16), gravityzone (about 110 s: the rate limit is the point),
continuation (about 100 s), billing (customers, contracts and reconciliation at 10,000 customers), table_shape,
redaction (200 secrets and a 100 KB text), projection_writes (a Keepnet company's month of item writes with and
without usagewatch's projection, about 15 s of CPU), cost (from this run's results, or the last results.json for the
scenarios not run). results.json keeps the last result of every scenario, each with the machine and the time it
ran on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ROOT
from bench.common import TABLE_HEADER, Row, fmt, machine, table_line, verdict

RESULTS = ROOT / "bench" / "results.json"
ORDER = (
    "coldstart",
    "hotpath",
    "keepnet",
    "memory",
    "dynamodb",
    "thousandeyes",
    "microsoft365",
    "gravityzone",
    "continuation",
    "billing",
    "table_shape",
    "redaction",
    "projection_writes",
    "psa",
    "cost",
)


def _scenario(name: str, args: argparse.Namespace) -> Callable[[], tuple[list[Row], dict[str, Any]]]:
    if name == "coldstart":
        from bench import coldstart

        return coldstart.scenario
    if name == "hotpath":
        from bench import hotpath

        return hotpath.scenario
    if name == "keepnet":
        from bench import keepnet

        return lambda: keepnet.scenario(profile=args.profile)
    if name == "memory":
        from bench import memory

        return memory.scenario
    if name == "dynamodb":
        from bench import dynamodb

        return dynamodb.scenario
    if name == "thousandeyes":
        from bench import thousandeyes

        return thousandeyes.scenario
    if name == "microsoft365":
        from bench import microsoft365

        return microsoft365.scenario
    if name == "gravityzone":
        from bench import gravityzone

        return gravityzone.scenario
    if name == "continuation":
        from bench import continuation

        return continuation.scenario
    if name == "billing":
        from bench import billing

        return billing.scenario
    if name == "table_shape":
        from bench import table_shape

        return table_shape.scenario
    if name == "redaction":
        from bench import redaction

        return redaction.scenario
    if name == "projection_writes":
        from bench import projection_writes

        return projection_writes.scenario
    if name == "psa":
        from bench import psa

        return psa.scenario
    raise ValueError(name)


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"scenarios": {}}
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return {"scenarios": {}}
    data.setdefault("scenarios", {})
    return data


def markdown(rows: list[Row]) -> str:
    lines = [
        "| Scenario | Case | Measured | Bound / baseline | Ratio | Target | Verdict |",
        "|---|---|---:|---|---:|---|---|",
    ]
    for row in rows:
        bound = fmt(row.bound, row.unit) + (f" ({row.bound_label})" if row.bound_label else "")
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.scenario} | {row.case.strip()} | {fmt(row.measured, row.unit)} | {bound} | {ratio} | "
            f"{row.target or '-'} | {verdict(row.ok)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(ORDER)} (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file (default bench/results.json)")
    parser.add_argument("--profile", action="store_true", help="cProfile the uncapped Keepnet run")
    parser.add_argument("--markdown", action="store_true", help="also print the rows as a Markdown table")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(ORDER))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    chosen = [name for name in ORDER if not args.scenarios or name in args.scenarios]

    data = _load(args.output)
    data["machine"] = machine()
    print(f"machine: {json.dumps(data['machine'])}", flush=True)
    print(TABLE_HEADER, flush=True)
    all_rows: list[Row] = []
    failed: list[str] = []
    for name in chosen:
        started = time.perf_counter()
        ran_at = machine()
        if name == "cost":
            from bench import cost

            inputs = {k: v for k, v in data["scenarios"].items() if k in cost.INPUTS}
            missing = [k for k in cost.INPUTS if k not in inputs and k != "dynamodb"]
            if missing:
                print(f"cost: skipped, run {', '.join(missing)} first (no results for them yet)", flush=True)
                continue
            rows, raw = cost.scenario(inputs)
        else:
            rows, raw = _scenario(name, args)()
        elapsed = time.perf_counter() - started
        for row in rows:
            print(table_line(row), flush=True)
        profile = raw.get("usagewatch_uncapped", {}).pop("profile", None) if isinstance(raw, dict) else None
        if profile:
            print(profile, flush=True)
        data["scenarios"][name] = {
            "ran_at": ran_at["date"],
            "machine": {k: v for k, v in ran_at.items() if k not in ("date", "load_average")},
            "load_average_before": ran_at["load_average"],
            "load_average_after": machine()["load_average"],
            "seconds": round(elapsed, 1),
            "rows": [row.to_dict() for row in rows],
            "raw": raw,
        }
        all_rows += rows
        failed += [f"{row.scenario}: {row.case}" for row in rows if row.ok is False]
        args.output.write_text(json.dumps(data, indent=1, default=str) + "\n")
    print(f"\nresults: {args.output}", flush=True)
    if args.markdown:
        print("\n" + markdown(all_rows))
    if failed:
        print("\nnot met:\n  " + "\n  ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What every `usagewatch` command shares: the error that ends a command, its exit codes, the output formats
(table, CSV, JSON lines), the checks of listed values and the default month."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final, Literal

from usagewatch.model import Period
from usagewatch.report import table
from usagewatch.stored import RunRecord, Total
from usagewatch.text import csv_cell

__all__ = ["AWS_ERROR", "BAD_INPUT", "CONFLICT", "CliError", "csv_text", "json_lines", "kind_of", "table"]

BAD_INPUT: Final = 1
AWS_ERROR: Final = 2
CONFLICT: Final = 2
"""Exit code of a change that lost to another one running at the same time."""

Kind = Literal["table", "csv", "json"]


class CliError(Exception):
    """Ends a command: its message is the one line on stderr, `code` the exit code."""

    def __init__(self, message: str, code: int = BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """Usage mistakes exit 1 (bad input) with argparse's one-line message, like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(BAD_INPUT, f"usagewatch: error: {message}\n")


def kind_of(args: argparse.Namespace) -> Kind:
    return "json" if getattr(args, "json", False) else "csv" if getattr(args, "csv", False) else "table"


def json_lines(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False, default=str, sort_keys=True) + "\n" for row in rows)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(row.get(k, "")) for k in columns})
    return buffer.getvalue()


def flat_row(value: Total | RunRecord) -> dict[str, Any]:
    """A model object as the flat row machines read (sequences as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(value).items()}


def one_of(option: str, value: str | None, valid: Sequence[str]) -> None:
    """An unknown value of a listed option is bad input naming the valid ones."""
    if value is not None and value not in valid:
        raise CliError(f"{option}: unknown value {value!r} (one of {', '.join(valid)})")


def listed(option: str, text: str, valid: Sequence[str]) -> list[str]:
    """A comma-separated option (`--status a,b`), each value checked."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise CliError(f"{option}: one or more of {', '.join(valid)}, separated by commas")
    for value in values:
        one_of(option, value, valid)
    return values


def note(text: str) -> None:
    sys.stderr.write(f"usagewatch: {text}\n")


def default_period(
    given: str | None, has_usage: Callable[[Period], bool] | None = None, *, now: datetime | None = None
) -> Period:
    """--period, or the last month that ended; when that month has no usage stored and this month has, this month
    (the latest collected). A defaulted month is said on stderr, so the output itself stays clean."""
    if given:
        return Period.parse(given, field="--period")
    this = Period.of(now or datetime.now(UTC))
    chosen, why = this.previous(), "the last month that ended"
    if has_usage is not None and not has_usage(chosen) and has_usage(this):
        chosen, why = this, "the latest month collected: the last one that ended has no usage stored"
    note(f"--period not given: using {chosen} ({why})")
    return chosen


def add_command(commands: Any, name: str, common: argparse.ArgumentParser, says: str, example: str) -> Parser:
    """One (sub)command with its one-line description and its example, in `--help` and in its parent's list."""
    parser: Parser = commands.add_parser(
        name,
        parents=[common],
        help=says,
        description=says[0].upper() + says[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser

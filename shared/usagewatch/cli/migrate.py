"""`usagewatch migrate`: rewrite usage of the old shape (one item per metric) as one item per tenant."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Final

from usagewatch.migrate import migrate

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

HELP: Final = "rewrite usage of the old shape (one item per metric) as one item per tenant"
EXAMPLE: Final = "usagewatch migrate --table usagewatch-usage --dry-run"


def add_arguments(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")


def run(store: DynamoStore, args: argparse.Namespace) -> str:
    def progress(line: str) -> None:
        sys.stderr.write(f"usagewatch migrate: {line}\n")

    done = migrate(store, dry_run=args.dry_run, report=progress)
    if not done.old_usage and not done.old_snapshots:
        return f"Nothing to migrate in {store.table_name}: every usage item has the current shape."
    head = "Dry run, nothing written" if args.dry_run else f"Migrated {store.table_name}"
    return f"{head}: {done.line(args.dry_run)}."

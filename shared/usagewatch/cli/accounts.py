"""The (vendor, account) pairs `alerts` and `runs` look at."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from usagewatch import registry
from usagewatch.model import Period

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore


def add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vendor", choices=registry.vendor_ids())
    parser.add_argument("--account", help="one vendor account (its account_id in the vendor secret)")


def accounts(store: DynamoStore, args: argparse.Namespace) -> list[tuple[str, str]]:
    """The pairs asked for; without --account, those with totals this month or last."""
    vendors = [args.vendor] if args.vendor else list(registry.vendor_ids())
    if args.account:
        return [(vendor, args.account) for vendor in vendors]
    now = Period.of(datetime.now(UTC))
    found = {(t.vendor, t.account_id) for p in (now, now.previous()) for t in store.period_totals(str(p))}
    return sorted(pair for pair in found if pair[0] in vendors)

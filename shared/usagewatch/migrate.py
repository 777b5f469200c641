"""`usagewatch migrate`: rewrite old-shape usage and snapshot items (one per metric) as one item per tenant.

Idempotent and resumable: each old item is merged into its tenant's new item (read first, so a tenant whose
metrics were split over scan pages or over two interrupted runs ends with all of them) and deleted only after the
new item is written; a second run finds nothing to do. Batched (25 writes, 100 reads a call); progress per page.
The table side is `usagewatch.store.migrate`.
"""

from __future__ import annotations

from collections.abc import Callable

from usagewatch.store import DynamoStore
from usagewatch.store.migrate import Progress, is_old_snapshot, is_old_usage, migrate_page, old_item_pages

__all__ = ["Progress", "is_old_snapshot", "is_old_usage", "migrate"]


def migrate(store: DynamoStore, *, dry_run: bool = False, report: Callable[[str], None] = print) -> Progress:
    """Scan the table once; per page, merge its old items into new ones, then delete them."""
    progress = Progress()
    for scanned, items in old_item_pages(store):
        progress.scanned += scanned
        migrate_page(items, store, progress, dry_run)
        report(progress.line(dry_run))
    return progress

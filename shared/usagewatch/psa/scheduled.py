"""The scheduled PSA sync (functions/psa_sync): `psa sync` once a day when a connection is configured.

Environment: USAGE_TABLE_NAME, and PSA_SECRET_ID (the ConnectWise connection's secret; empty: no PSA, nothing done).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from usagewatch.settings import psa_secret_id, usage_table_name


def handle(event: Any, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    secret_id = psa_secret_id(environ)
    if not secret_id:
        return {"synced": False, "reason": "no PSA connection configured"}
    table = usage_table_name(environ)
    from usagewatch.psa.planning import open_client
    from usagewatch.psa.sync import run_sync
    from usagewatch.store import DynamoStore
    from usagewatch.store.billing import BillingStore
    from usagewatch.store.psa import PsaStore

    client = open_client(secret_id)
    store = DynamoStore(table)
    try:
        result = run_sync(BillingStore(store), PsaStore(store), client, today=datetime.now(UTC).date(), dry_run=False)
    finally:
        client.close()
    return {
        "synced": True,
        "companies": result.companies,
        "lines": result.read,
        "written": result.written,
        "ended": len(result.ended) + len(result.removed),
        "unused": len(result.unused),
    }

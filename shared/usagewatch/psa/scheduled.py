"""The scheduled PSA sync (functions/psa_sync): `psa sync` once a day when a connection is configured.

Environment: USAGE_TABLE_NAME, and PSA_SECRET_ID (the ConnectWise connection's secret; empty: no PSA, nothing done).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from usagewatch.errors import ConfigError
from usagewatch.settings import psa_secret_id


def handle(event: Any, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    secret_id = psa_secret_id(env)
    if not secret_id:
        return {"synced": False, "reason": "no PSA connection configured"}
    if not env.get("USAGE_TABLE_NAME"):
        raise ConfigError("environment: USAGE_TABLE_NAME not set")
    from usagewatch.psa.planning import open_client
    from usagewatch.psa.sync import run_sync
    from usagewatch.store import DynamoStore
    from usagewatch.store.billing import BillingStore
    from usagewatch.store.psa import PsaStore

    client = open_client(secret_id)
    store = DynamoStore(env["USAGE_TABLE_NAME"])
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

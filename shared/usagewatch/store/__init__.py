"""The DynamoDB repository: the only package that knows the key design (docs/data-model.md).

usage     pk USAGE#{vendor}#{account}#{period}#{shard}   sk {tenant}   (every metric of the tenant and the change
                                                                   log of its recent readings; usage_shape.py)
snapshot  pk SNAP#{vendor}#{account}#{tenant}   sk {as_of}#{period}   (a usage item whose log was full; TTL expires_at)
account   pk ACCOUNTS#{period}       sk {vendor}#{account}   (the accounts with usage in a month)
total     pk TOTAL#{period}          sk {vendor}#{account}#{metric}
run       pk RUN#{vendor}#{account}  sk {as_of}
alert     pk ALERT#{vendor}#{account}  sk {tenant}#{period}#{metric}#{rule}
          gsi1 OPEN#{vendor}#{account} / {alert_id}, only while firing (a sparse index)
lease     pk LEASE#{vendor}#{account}  sk lease   (one run per account at a time; TTL expires_at)
ident     pk IDENT#{vendor}#{account}  sk identities   (key_{aid} -> the tenant id it was first given)

Rooms: `table` (client, the one error-translating call, paged and batched helpers, (de)serialisation), `usage`
(+ `usage_shape`), `alerts`, `runs` (runs, leases, chunked runs, identities), `migrate` (old shape -> new),
`interface` (the storage protocols), `billing` + `billing_commit` (customers, mappings, contracts, the ignore
list: all-or-nothing changes). `DynamoStore` (`dynamo`) is the one class composed of the usage rooms.
"""

from __future__ import annotations

from usagewatch.store.alerts import AlertKey, alert_state
from usagewatch.store.billing import BillingStore, ImportResult
from usagewatch.store.dynamo import DynamoStore
from usagewatch.store.interface import BillingReader, IdentityStore, TableIdentities, UsageReader, UsageStore
from usagewatch.store.runs import IDENTITIES_PER_UPDATE, run_record
from usagewatch.store.table import (
    BATCH_GET_SIZE,
    BATCH_SIZE,
    MAX_BATCH_ATTEMPTS,
    MAX_BATCHES_IN_FLIGHT,
    MAX_KEY_PART,
    WRITERS,
    Item,
    Key,
    deserialize,
    key_part,
    serialize,
)
from usagewatch.store.usage import (
    Remembered,
    remembered,
    stored_usage,
    total,
    usage_record,
)
from usagewatch.store.usage_shape import OldShapeError

__all__ = [
    "BATCH_GET_SIZE",
    "BATCH_SIZE",
    "IDENTITIES_PER_UPDATE",
    "MAX_BATCHES_IN_FLIGHT",
    "MAX_BATCH_ATTEMPTS",
    "MAX_KEY_PART",
    "WRITERS",
    "AlertKey",
    "BillingReader",
    "BillingStore",
    "DynamoStore",
    "IdentityStore",
    "ImportResult",
    "Item",
    "Key",
    "OldShapeError",
    "Remembered",
    "TableIdentities",
    "UsageReader",
    "UsageStore",
    "alert_state",
    "deserialize",
    "key_part",
    "remembered",
    "run_record",
    "serialize",
    "stored_usage",
    "total",
    "usage_record",
]

"""The DynamoDB repository: the only module that knows the key design (docs/data-model.md).

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

A run reads its account's stored tenants once per period (SHARDS paged Queries) and writes a tenant's item only
when its reading changed (the reading it replaces goes into the item's log, or with the log into a snapshot when
the log is full); freshness is the run record's. Snapshots and runs are keyed by the run's
as-of time, so a retried invocation overwrites instead of duplicating. A run reads only the alerts that are firing,
from the sparse index.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from usagewatch.continuation import ChunkedRunState, ChunkKey
from usagewatch.errors import StoreError
from usagewatch.model import (
    AlertState,
    MetricSeries,
    Number,
    Period,
    RunRecord,
    StoredUsage,
    Tenant,
    Total,
    UsageRecord,
    Window,
    parse_utc,
    utc_iso,
)
from usagewatch.usage_shape import (
    OLD_SHAPE,
    OldShapeError,
    digest,
    group_by_period,
    item_size,
    log_entry,
    merge_metrics,
    readings,
    same_tenant_fields,
    stored_usages,
    tenant_attributes,
    usage_pk,
    usage_pks,
    write_budget,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

BATCH_SIZE: Final = 25
BATCH_GET_SIZE: Final = 100
IDENTITIES_PER_UPDATE: Final = 50
MAX_BATCH_ATTEMPTS: Final = 8
WRITERS: Final = 8
MAX_BATCHES_IN_FLIGHT: Final = 16
Item = dict[str, dict[str, Any]]
Key = tuple[str, str]
AlertKey = tuple[str, str, str, str]
"""(tenant_id, period, metric, rule): an alert item's sort key, in order."""


# A DynamoDB sort key holds 1,024 bytes and its partition key 2,048; a vendor id is kept well under both.
MAX_KEY_PART: Final = 256


def key_part(vendor_id: str) -> str:
    """A vendor-controlled id as one component of a key: `#` (the separator) and `%` escaped, so `a` and `a#x`
    never share a prefix; past MAX_KEY_PART characters, a head and a hash of the whole id, so any id fits."""
    escaped = vendor_id.replace("%", "%25").replace("#", "%23")
    if len(escaped.encode()) <= MAX_KEY_PART:
        return escaped
    digest = hashlib.sha256(vendor_id.encode()).hexdigest()[:32]
    return escaped.encode()[:180].decode(errors="ignore") + "~" + digest


def _value(value: object) -> dict[str, Any] | None:
    kind = type(value)  # exact types first: the common cases of every record, without an isinstance chain
    if kind is str:
        return {"S": value}
    if kind is int:
        return {"N": str(value)}
    if kind is dict:
        return {"M": serialize(value)}  # type: ignore[arg-type]
    if value is None:
        return None
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float | Decimal):
        return {"N": format(value, "f") if isinstance(value, Decimal) else repr(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, list | tuple):
        return {"L": [v for v in (_value(x) for x in value) if v is not None]}
    if isinstance(value, Mapping):
        return {"M": serialize(value)}
    raise TypeError(f"cannot store {type(value).__name__}")


def serialize(attributes: Mapping[str, object]) -> Item:
    """A plain dict as a DynamoDB item; None attributes are left out."""
    item: Item = {}
    for key, value in attributes.items():
        encoded = _value(value)
        if encoded is not None:
            item[key] = encoded
    return item


def _plain(value: Mapping[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        number = Decimal(value["N"])
        return int(number) if number == number.to_integral_value() else float(number)
    if "BOOL" in value:
        return value["BOOL"]
    if "L" in value:
        return [_plain(v) for v in value["L"]]
    if "NULL" in value:
        return None
    if "M" in value:
        return {k: _plain(v) for k, v in value["M"].items()}
    raise TypeError(f"unsupported attribute {value!r}")


def deserialize(item: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in item.items()}


def usage_record(item: Mapping[str, Any]) -> UsageRecord:
    """A stored usage item back as the record it was written from."""
    tenant = Tenant(
        str(item["tenant_id"]),
        str(item.get("tenant_name", "")),
        parent_tenant_id=item.get("parent_tenant_id"),
        billed=bool(item.get("billed", True)),
    )
    window = Window(Period.parse(str(item["period"])), parse_utc(item["period_start"]), parse_utc(item["period_end"]))
    return UsageRecord(
        vendor=str(item["vendor"]),
        account_id=str(item["account_id"]),
        tenant=tenant,
        metric=str(item["metric"]),
        value=item["value"],
        unit=str(item["unit"]),
        window=window,
        quota=item.get("quota"),
        projected=item.get("projected"),
        minimum=item.get("minimum"),
        limit_exceeded=item.get("limit_exceeded"),
        projected_next_period=item.get("projected_next_period"),
    )


def stored_usage(item: Mapping[str, Any]) -> StoredUsage:
    """A usage item or snapshot as the domain reads it."""
    return StoredUsage(usage_record(item), str(item["collected_at"]), item.get("removed_at"), item.get("as_of"))


_ALERT_FIELDS: Final = frozenset(f.name for f in fields(AlertState))
_TOTAL_FIELDS: Final = frozenset(f.name for f in fields(Total))
_RUN_FIELDS: Final = frozenset(f.name for f in fields(RunRecord))
_SEQUENCES: Final = frozenset({"missing", "periods", "errors", "notes"})


def _known(item: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    return {k: tuple(v) if k in _SEQUENCES else v for k, v in item.items() if k in names}


def alert_state(item: Mapping[str, Any]) -> AlertState:
    return AlertState(**_known(item, _ALERT_FIELDS))


def total(item: Mapping[str, Any]) -> Total:
    return Total(**_known(item, _TOTAL_FIELDS))


def run_record(item: Mapping[str, Any]) -> RunRecord:
    return RunRecord(**_known(item, _RUN_FIELDS))


Remembered = tuple[bytes, frozenset[str], bytes]
"""A stored tenant item as a run keeps it: its fingerprint, its metric names, the item as compact JSON (read back
only when the tenant changed, to extend its log: a third of the memory of the item as Python objects)."""


def _remembered(item: Mapping[str, Any], fingerprint: bytes | None = None) -> Remembered:
    """`fingerprint` b"": not computed yet (the item's own digest, once needed)."""
    packed = json.dumps(item, separators=(",", ":")).encode()
    return (digest(item) if fingerprint is None else fingerprint, frozenset(item.get("metrics", {})), packed)


class TableIdentities:
    """A source's identity memory kept in the table (ThousandEyes organisations without `orgId`)."""

    def __init__(self, store: DynamoStore, vendor: str) -> None:
        self._store, self._vendor = store, vendor

    def recall(self, account_id: str) -> Mapping[str, str]:
        return self._store.recall_identities(self._vendor, account_id)

    def remember(self, account_id: str, identities: Mapping[str, str]) -> None:
        self._store.remember_identities(self._vendor, account_id, identities)


class DynamoStore:
    """Writes are buffered and sent in BatchWriteItem calls of 25 from a few writer threads (botocore clients
    are thread-safe); unprocessed items are retried; `flush` waits for every batch and raises the first failure."""

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        snapshot_retention_days: int = 400,
        sleep: Any = time.sleep,
        writers: int = WRITERS,
        change_log: bool = True,
    ) -> None:
        """`change_log=False`: a full snapshot at every change instead (the shape before the log; bench only)."""
        self.table_name = table_name
        self._change_log = change_log
        self._client = client
        self.retention = timedelta(days=snapshot_retention_days)
        self._sleep = sleep
        self._writers = writers
        self._buffer: dict[Key, Item] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future[None], list[Key]] = {}
        self._key_in_flight: dict[Key, Future[None]] = {}
        self._counts = threading.Lock()
        self.items_written = 0
        self.write_calls = 0
        self.tenants_changed = 0
        self.tenants_unchanged = 0
        self._readings: dict[tuple[str, str, str], dict[str, Remembered]] = {}
        """What each (vendor, account, period) holds, by tenant key: read once per invocation, kept as written."""

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 6}, connect_timeout=3, read_timeout=10)
            self._client = boto3.client("dynamodb", config=config)
        return self._client

    # --- writes -------------------------------------------------------------------------------

    def add_usage(self, record: UsageRecord, *, as_of: datetime, collected_at: datetime) -> None:
        """A tenant with this one record (see `add_tenant`)."""
        self.add_tenant([record], as_of=as_of, collected_at=collected_at)

    def add_tenant(self, records: Sequence[UsageRecord], *, as_of: datetime, collected_at: datetime) -> None:
        """Queue one tenant's item per period, only where its reading differs from the stored one; the stored
        reading goes into the item's change log, or (log full, or the tenant's own fields changed) the stored item
        goes to a snapshot whole.

        Metrics stored but not in this reading (a past month reads fewer) are kept. `collected_at` becomes the
        item's "last changed"; an unchanged tenant writes nothing (the run record says how fresh it is).
        """
        as_of_text = utc_iso(as_of)
        for period, group in group_by_period(records).items():
            first = group[0]
            known = self._known(first.vendor, first.account_id, period)
            tenant = key_part(first.tenant_id)
            pk = usage_pk(first.vendor, first.account_id, period, tenant)
            attributes = {**tenant_attributes(group, utc_iso(collected_at)), "as_of": as_of_text}
            fingerprint, names, packed = known.get(tenant, (b"", frozenset(), b""))
            stored = json.loads(packed) if packed and not names <= attributes["metrics"].keys() else None
            if stored is not None:
                attributes["metrics"] = merge_metrics(stored, attributes)
            # A tenant not stored yet is written whatever it reads: its fingerprint waits until a reading is compared.
            fingerprint_now = digest(attributes) if packed else b""
            if packed and (fingerprint or digest(json.loads(packed))) == fingerprint_now:
                self.tenants_unchanged += 1
                continue
            self.tenants_changed += 1
            if packed and stored is None:
                stored = json.loads(packed)
            keys = {"pk": pk, "sk": tenant}
            item = self._logged(keys, stored, attributes) if self._change_log else attributes
            encoded = serialize(item)
            snapshot_pk = f"SNAP#{first.vendor}#{first.account_id}#{tenant}"
            # The period's first reading is snapshotted too: it tells history the period is there.
            if stored is None or not self._change_log:
                self._queue_item({**encoded, **serialize(self._snapshot_keys(snapshot_pk, attributes))})
            elif item is attributes and "as_of" in stored:
                self._queue({**stored, **self._snapshot_keys(snapshot_pk, stored)})
            known[tenant] = _remembered(item, fingerprint_now)
            self._queue_item({"pk": {"S": pk}, "sk": {"S": tenant}, **encoded})

    @staticmethod
    def _logged(keys: Mapping[str, str], stored: Mapping[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
        """`new` with the stored reading appended to the stored log, if it still fits the write units of `new`;
        else `new` itself (the caller snapshots the stored item)."""
        if stored is None or "as_of" not in stored or not same_tenant_fields(stored, new):
            return new
        logged = {**new, "log": [*stored.get("log", []), log_entry(stored, new)]}
        budget = write_budget(item_size(serialize({**keys, **new})))
        return logged if item_size(serialize({**keys, **logged})) <= budget else new

    def _snapshot_keys(self, pk: str, reading: Mapping[str, Any]) -> dict[str, Any]:
        """What makes a usage item's attributes its snapshot: keys, type, TTL."""
        as_of = str(reading["as_of"])
        return {
            "pk": pk,
            "sk": f"{as_of}#{reading['period']}",
            "record_type": "snapshot",
            "expires_at": int((parse_utc(as_of) + self.retention).timestamp()),
        }

    def _known(self, vendor: str, account_id: str, period: str) -> dict[str, Remembered]:
        """The fingerprint and item of every stored tenant of the account's period, read once (the accounts of a
        run are collected one after the other: another account's are dropped)."""
        key = (vendor, account_id, period)
        known = self._readings.get(key)
        if known is None:
            self._readings = {k: v for k, v in self._readings.items() if k[:2] == key[:2]}
            items = self._account_items(vendor, account_id, period)
            if not items:
                self._refuse_old_shape(period)
                self._queue(
                    {
                        "pk": f"ACCOUNTS#{period}",
                        "sk": f"{vendor}#{account_id}",
                        "record_type": "account",
                        "vendor": vendor,
                        "account_id": account_id,
                        "period": period,
                    }
                )
            known = {str(i["sk"]): _remembered({k: v for k, v in i.items() if k not in ("pk", "sk")}) for i in items}
            self._readings[key] = known
        return known

    def tenant_series(self, vendor: str, account_id: str, tenant_id: str, period: str) -> dict[str, MetricSeries]:
        """Each metric of the tenant's stored item as its change log has it (the period's items are read once per
        run, as `add_tenant` does; nothing is read per tenant). Empty for a tenant not stored yet."""
        remembered = self._known(vendor, account_id, period).get(key_part(tenant_id))
        if remembered is None:
            return {}
        item = json.loads(remembered[2])
        points: dict[str, list[tuple[str, Any]]] = {}
        for state in readings(item):
            for metric, entry in state["metrics"].items():
                series = points.setdefault(metric, [])
                if not series or series[-1][1] != entry["value"]:
                    series.append((str(state["as_of"]), entry["value"]))
        current = item.get("metrics", {})
        return {
            metric: MetricSeries(
                tuple(found),
                current.get(metric, {}).get("projected"),
                current.get(metric, {}).get("projection_source")
                or ("vendor" if current.get(metric, {}).get("projected") is not None else None),
                tuple(current.get(metric, {}).get("projection_fit") or ()) or None,
            )
            for metric, found in points.items()
        }

    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]:
        """(tenant_id, metric) -> the value stored for the period (its latest: the closing one once the period is
        over), customers marked removed left out: SHARDS paged Queries (a run reads it once per account)."""
        return {
            (str(item["tenant_id"]), metric): entry["value"]
            for item in self._account_items(vendor, account_id, period)
            if not item.get("removed_at")
            for metric, entry in item.get("metrics", {}).items()
        }

    def _account_items(self, vendor: str, account_id: str, period: str) -> list[dict[str, Any]]:
        """Every tenant item of one account and period: one paged Query per shard."""
        return [
            item
            for pk in usage_pks(vendor, account_id, period)
            for item in self._query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}})
        ]

    def _refuse_old_shape(self, period: str) -> None:
        """StoreError naming `usagewatch migrate` when the period still has usage items of the old shape."""
        answer = self._call(
            "query",
            "read",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"USAGE#{period}"}},
            Limit=1,
        )
        if answer.get("Items"):
            raise OldShapeError(OLD_SHAPE.format(table=self.table_name))

    def write_totals(self, totals: Iterable[Total]) -> None:
        for total in totals:
            self._queue(
                {
                    "pk": f"TOTAL#{total.period}",
                    "sk": f"{total.vendor}#{total.account_id}#{total.metric}",
                    "record_type": "total",
                    **asdict(total),
                }
            )
        self.flush()

    def mark_removed(self, usages: Iterable[StoredUsage], *, removed_at: str) -> None:
        """Usage of customers gone from a complete listing: kept for the record (change log too), out of every
        total."""
        tenants: dict[tuple[str, str, str, str], list[StoredUsage]] = {}
        for usage in usages:
            record = usage.record
            tenants.setdefault(
                (record.vendor, record.account_id, key_part(record.tenant_id), str(record.period)), []
            ).append(usage)
        keys = {k: (usage_pk(k[0], k[1], k[3], k[2]), k[2]) for k in tenants}
        items = self.get_items(list(keys.values()))
        for (vendor, account_id, tenant, period), stored in tenants.items():
            pk, sk = keys[(vendor, account_id, tenant, period)]
            changed_at = max(u.collected_at for u in stored)
            found = items.get((pk, sk))
            if found:
                attributes = {k: v for k, v in found.items() if k not in ("pk", "sk")}
            else:
                attributes = tenant_attributes([u.record for u in stored], changed_at)
            attributes["removed_at"] = removed_at
            self._queue({"pk": pk, "sk": sk, **attributes})
            known = self._readings.get((vendor, account_id, period))
            if known is not None:
                known[tenant] = _remembered(attributes)
        self.flush()

    def write_run(self, run: RunRecord) -> None:
        attributes = asdict(run)
        attributes["periods"] = list(run.periods)
        attributes["errors"] = list(run.errors)
        moment = datetime.fromisoformat(run.as_of.replace("Z", "+00:00"))
        self._put(
            {
                "pk": f"RUN#{run.vendor}#{run.account_id}",
                "sk": run.as_of,
                "record_type": "run",
                "expires_at": int((moment + self.retention).timestamp()),
                **attributes,
            }
        )

    def put_alert(self, state: AlertState) -> bool:
        """Store one alert state if nobody changed it since it was read (optimistic concurrency).

        `state.version` is the stored version it replaces (0: a state not read, which may only replace
        one that is not firing, or an item written before versions existed); the item gets version + 1.
        False when another run got there first: its state is kept.
        """
        attributes: dict[str, object] = {
            "pk": f"ALERT#{state.vendor}#{state.account_id}",
            "sk": f"{key_part(state.tenant_id)}#{state.period}#{state.metric}#{state.rule}",
            "record_type": "alert",
            **asdict(state),
            "version": state.version + 1,
        }
        if state.status == "firing":
            attributes["gsi1pk"] = f"OPEN#{state.vendor}#{state.account_id}"
            attributes["gsi1sk"] = state.alert_id
        if state.version:
            condition = "#version = :expected"
            values: dict[str, Any] = {":expected": {"N": str(state.version)}}
        else:
            condition = "attribute_not_exists(pk) OR attribute_not_exists(#version) OR #status <> :firing"
            values = {":firing": {"S": "firing"}}
        names = {"#version": "version"} | ({} if state.version else {"#status": "status"})
        self._count(1, 0)
        written = self._call(
            "put_item",
            "write",
            conditional=True,
            Item=serialize(attributes),
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ExpressionAttributeNames=names,
        )
        if written is None:
            return False
        self._count(0, 1)
        return True

    # --- identities a vendor does not send ---------------------------------------------------------

    def recall_identities(self, vendor: str, account_id: str) -> dict[str, str]:
        """The tenant id each vendor key (a ThousandEyes aid) was first given, for this account."""
        self._count(1, 0)
        answer = self._call(
            "get_item",
            "read",
            Key={"pk": {"S": f"IDENT#{vendor}#{account_id}"}, "sk": {"S": "identities"}},
            ConsistentRead=True,
        )
        item = deserialize(answer.get("Item", {}))
        return {k.removeprefix("key_"): str(v) for k, v in item.items() if k.startswith("key_")}

    def remember_identities(self, vendor: str, account_id: str, identities: Mapping[str, str]) -> None:
        """Record identities; one already recorded for a key is kept (the first id given wins)."""
        pairs = sorted(identities.items())
        for start in range(0, len(pairs), IDENTITIES_PER_UPDATE):
            chunk = pairs[start : start + IDENTITIES_PER_UPDATE]
            names = {f"#k{i}": f"key_{key}" for i, (key, _v) in enumerate(chunk)}
            values = {f":v{i}": {"S": value} for i, (_k, value) in enumerate(chunk)}
            sets = ", ".join(f"#k{i} = if_not_exists(#k{i}, :v{i})" for i in range(len(chunk)))
            self._count(1, 0)
            self._call(
                "update_item",
                "write",
                Key={"pk": {"S": f"IDENT#{vendor}#{account_id}"}, "sk": {"S": "identities"}},
                UpdateExpression=f"SET record_type = :type, {sets}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":type": {"S": "identities"}, **values},
            )

    # --- one run per account at a time --------------------------------------------------------

    @staticmethod
    def _lease_key(vendor: str, account_id: str) -> Item:
        return {"pk": {"S": f"LEASE#{vendor}#{account_id}"}, "sk": {"S": "lease"}}

    def acquire_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime, seconds: float) -> bool:
        """Take the account's run lease (free, expired, or already ours); False while another run holds it."""
        until = now + timedelta(seconds=seconds)
        item = {
            **self._lease_key(vendor, account_id),
            "record_type": {"S": "lease"},
            "lease_owner": {"S": owner},
            "lease_until": {"S": utc_iso(until)},
            "expires_at": {"N": str(int(until.timestamp()) + 86400)},
        }
        self._count(1, 0)
        written = self._call(
            "put_item",
            "write",
            conditional=True,
            Item=item,
            ConditionExpression="attribute_not_exists(pk) OR lease_until < :now OR lease_owner = :owner",
            ExpressionAttributeValues={":now": {"S": utc_iso(now)}, ":owner": {"S": owner}},
        )
        return written is not None

    def holds_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime) -> bool:
        """True while `owner` still holds an unexpired lease (checked with a conditional write)."""
        self._count(1, 0)
        written = self._call(
            "update_item",
            "write",
            conditional=True,
            Key=self._lease_key(vendor, account_id),
            UpdateExpression="SET checked_at = :now",
            ConditionExpression="lease_owner = :owner AND lease_until > :now",
            ExpressionAttributeValues={":now": {"S": utc_iso(now)}, ":owner": {"S": owner}},
        )
        return written is not None

    def release_lease(self, vendor: str, account_id: str, *, owner: str) -> None:
        """Give the lease back (only ours); a lease left behind by a crash simply expires."""
        self._count(1, 0)
        self._call(
            "delete_item",
            "write",
            conditional=True,
            Key=self._lease_key(vendor, account_id),
            ConditionExpression="lease_owner = :owner",
            ExpressionAttributeValues={":owner": {"S": owner}},
        )

    def _queue(self, attributes: Mapping[str, object]) -> None:
        self._queue_item(serialize(attributes))

    def _queue_item(self, item: Item) -> None:
        key = (item["pk"]["S"], item["sk"]["S"])
        earlier = self._key_in_flight.get(key)
        if earlier is not None:
            # The same key written twice in one run: the older version must land first.
            wait([earlier])
            self._reap()
        self._buffer[key] = item
        if len(self._buffer) >= BATCH_SIZE:
            self._submit(self._take(BATCH_SIZE))

    def flush(self) -> None:
        """Send what is buffered and wait for every batch; StoreError for the first that failed."""
        while self._buffer:
            self._submit(self._take(BATCH_SIZE))
        first: StoreError | None = None
        while self._in_flight:
            wait(list(self._in_flight))
            try:
                self._reap()
            except StoreError as exc:
                first = first or exc
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        if first is not None:
            self._readings.clear()  # what failed to land must be compared again, not taken as written
            raise first

    def _take(self, count: int) -> list[Item]:
        keys = list(self._buffer)[:count]
        return [self._buffer.pop(key) for key in keys]

    def _submit(self, items: list[Item]) -> None:
        if self._writers <= 1:
            self._send_batch(items)
            return
        while len(self._in_flight) >= MAX_BATCHES_IN_FLIGHT:
            wait(list(self._in_flight), return_when=FIRST_COMPLETED)
            self._reap()
        if self._pool is None:
            self.client  # noqa: B018  created here: boto3's default session is not thread-safe to build from
            self._pool = ThreadPoolExecutor(max_workers=self._writers, thread_name_prefix="dynamodb-writer")
        future = self._pool.submit(self._send_batch, items)
        keys = [(item["pk"]["S"], item["sk"]["S"]) for item in items]
        self._in_flight[future] = keys
        for key in keys:
            self._key_in_flight[key] = future

    def _reap(self) -> None:
        """Forget finished batches; StoreError for the first of them that failed (the others still count)."""
        first: StoreError | None = None
        for future in [f for f in self._in_flight if f.done()]:
            for key in self._in_flight.pop(future):
                if self._key_in_flight.get(key) is future:
                    del self._key_in_flight[key]
            error = future.exception()
            if error is not None and first is None:
                first = error if isinstance(error, StoreError) else StoreError(f"DynamoDB batch write failed: {error}")
        if first is not None:
            raise first

    def _count(self, calls: int, items: int) -> None:
        with self._counts:
            self.write_calls += calls
            self.items_written += items

    def _send_batch(self, items: list[Item]) -> None:
        self._send_requests([{"PutRequest": {"Item": item}} for item in items])

    def _send_requests(self, pending: list[dict[str, Any]]) -> None:
        for attempt in range(1, MAX_BATCH_ATTEMPTS + 1):
            self._count(1, 0)
            answer = self._call("batch_write_item", "batch write", RequestItems={self.table_name: pending})
            unprocessed = answer.get("UnprocessedItems", {}).get(self.table_name, [])
            self._count(0, len(pending) - len(unprocessed))
            if not unprocessed:
                return
            pending = list(unprocessed)
            self._sleep(min(5.0, 0.05 * 2**attempt))
        raise StoreError(f"DynamoDB left {len(pending)} item(s) unprocessed after {MAX_BATCH_ATTEMPTS} attempts")

    def _put(self, attributes: Mapping[str, object]) -> None:
        self._count(1, 0)
        self._call("put_item", "write", Item=serialize(attributes))
        self._count(0, 1)

    # --- runs split over several invocations ------------------------------------------------

    @staticmethod
    def _chunk_pk(key: ChunkKey) -> str:
        return f"RUNSTATE#{key.vendor}#{key.account_id}"

    def start_chunked_run(self, key: ChunkKey, *, started_at: str, chunk_count: int) -> None:
        """Record a split run; a retried start keeps the progress already made."""
        expires = int(parse_utc(key.as_of).timestamp()) + 14 * 86400
        item = serialize(
            {
                "pk": self._chunk_pk(key),
                "sk": key.as_of,
                "record_type": "chunked_run",
                "chunk_count": chunk_count,
                "started_at": started_at,
                "expires_at": expires,
            }
        )
        self._count(1, 0)
        self._call("put_item", "write", conditional=True, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def complete_chunk(
        self,
        key: ChunkKey,
        index: int,
        *,
        failures: Mapping[str, tuple[str, str]],
        error: str | None,
        read: Iterable[str] = (),
    ) -> ChunkedRunState:
        """Mark one chunk done (idempotent: a set of chunk numbers); when all are, gather their failures and the
        tenants they read (what the finish counts as fresh: an unchanged tenant's item keeps its old time)."""
        pk = self._chunk_pk(key)
        expires = int(parse_utc(key.as_of).timestamp()) + 14 * 86400
        for tenant_id, (name, message) in failures.items():
            attributes = {"tenant_name": name, "error": message, "expires_at": expires}
            self._queue(
                {"pk": pk, "sk": f"{key.as_of}#failure#{key_part(tenant_id)}", "tenant_id": tenant_id, **attributes}
            )
        if error is not None:
            self._queue({"pk": pk, "sk": f"{key.as_of}#error#{index}", "error": error, "expires_at": expires})
        tenants = sorted(read)
        if tenants:
            self._queue({"pk": pk, "sk": f"{key.as_of}#read#{index}", "tenants": tenants, "expires_at": expires})
        self.flush()
        self._count(1, 0)
        answer = self._call(
            "update_item",
            "write",
            Key={"pk": {"S": pk}, "sk": {"S": key.as_of}},
            UpdateExpression="ADD chunks_done :index",
            ExpressionAttributeValues={":index": {"SS": [str(index)]}},
            ReturnValues="ALL_NEW",
        )
        state = answer["Attributes"]
        count = int(state["chunk_count"]["N"])
        done = len(state["chunks_done"]["SS"])
        if done < count:
            return ChunkedRunState(count, done, state["started_at"]["S"])
        found: dict[str, tuple[str, str]] = {}
        errors: list[str] = []
        seen: set[str] = set()
        for item in self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": f"{key.as_of}#"}},
        ):
            if "#failure#" in item["sk"]:
                found[item["tenant_id"]] = (item.get("tenant_name", ""), item["error"])
            elif "#read#" in item["sk"]:
                seen.update(item["tenants"])
            else:
                errors.append(item["error"])
        return ChunkedRunState(count, done, state["started_at"]["S"], found, tuple(errors), frozenset(seen))

    def claim_finish(self, key: ChunkKey) -> bool:
        """True for exactly one caller: the one that finishes the split run."""
        self._count(1, 0)
        written = self._call(
            "update_item",
            "write",
            conditional=True,
            Key={"pk": {"S": self._chunk_pk(key)}, "sk": {"S": key.as_of}},
            UpdateExpression="SET finished = :yes",
            ConditionExpression="attribute_not_exists(finished)",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )
        return written is not None

    # --- reads --------------------------------------------------------------------------------

    def _call(self, operation: str, action: str, *, conditional: bool = False, **kwargs: Any) -> Any:
        """Every DynamoDB call of the store: any failure is a `StoreError` (chained), never a raw ClientError.

        With `conditional`, a failed condition is an answer, not an error: None. Batch calls name their table
        themselves; every other call gets the store's.
        """
        if "RequestItems" not in kwargs:
            kwargs["TableName"] = self.table_name
        try:
            return getattr(self.client, operation)(**kwargs)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if conditional and code == "ConditionalCheckFailedException":
                return None
            raise StoreError(f"DynamoDB {action} failed: {type(exc).__name__}: {exc}") from exc

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paged Query."""
        while True:
            page = self._call("query", "read", **kwargs)
            for item in page.get("Items", []):
                yield deserialize(item)
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def alert_states(self, vendor: str, account_id: str, keys: Iterable[AlertKey]) -> dict[str, AlertState]:
        """The stored state (any status) of the given alerts, by BatchGetItem: one call per 100 keys."""
        wanted = sorted(set(keys))
        states: dict[str, AlertState] = {}
        pk = f"ALERT#{vendor}#{account_id}"
        for start in range(0, len(wanted), BATCH_GET_SIZE):
            pending: list[dict[str, Any]] = [
                {"pk": {"S": pk}, "sk": {"S": "#".join((key_part(key[0]), *key[1:]))}}
                for key in wanted[start : start + BATCH_GET_SIZE]
            ]
            for attempt in range(MAX_BATCH_ATTEMPTS):
                answer = self._call("batch_get_item", "read", RequestItems={self.table_name: {"Keys": pending}})
                for raw in answer.get("Responses", {}).get(self.table_name, []):
                    state = alert_state(deserialize(raw))
                    states[state.alert_id] = state
                unprocessed: dict[str, Any] = dict(answer.get("UnprocessedKeys", {}))
                pending = list(unprocessed.get(self.table_name, {}).get("Keys", []))
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise StoreError(
                    f"DynamoDB left {len(pending)} alert key(s) unread after {MAX_BATCH_ATTEMPTS} attempts"
                )
        return states

    def open_alerts(self, vendor: str, account_id: str) -> dict[str, AlertState]:
        """Every firing alert (thresholds and collection failures) of one account, from the sparse index."""
        states: dict[str, AlertState] = {}
        for item in self._query(
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"OPEN#{vendor}#{account_id}"}},
        ):
            state = alert_state(item)
            states[state.alert_id] = state
        return states

    def tenant_alerts(self, vendor: str, account_id: str, tenant_id: str) -> list[AlertState]:
        """The alert state of one tenant (every rule, metric and period; firing or not)."""
        return [
            alert_state(item)
            for item in self._query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": f"ALERT#{vendor}#{account_id}"},
                    ":prefix": {"S": f"{key_part(tenant_id)}#"},
                },
            )
        ]

    def period_usage(
        self, period: str, *, vendor: str | None = None, account_id: str | None = None
    ) -> list[StoredUsage]:
        """All usage of one period, optionally narrowed to a vendor or one of its accounts: the accounts of the
        month (one Query), then each account's tenants (SHARDS Queries each)."""
        if vendor is not None and account_id is not None:
            pairs = [(vendor, account_id)]
        else:
            pairs = [p for p in self.period_accounts(period, vendor=vendor) if account_id in (None, p[1])]
        found = [u for v, a in pairs for item in self._account_items(v, a, period) for u in stored_usages(item)]
        if not found:
            self._refuse_old_shape(period)
        return sorted(
            found, key=lambda u: (u.record.vendor, u.record.account_id, key_part(u.record.tenant_id), u.record.metric)
        )

    def period_accounts(self, period: str, *, vendor: str | None = None) -> list[tuple[str, str]]:
        """The (vendor, account) pairs with usage stored for the period."""
        condition = "pk = :pk" + (" AND begins_with(sk, :prefix)" if vendor else "")
        values: dict[str, Any] = {":pk": {"S": f"ACCOUNTS#{period}"}}
        if vendor:
            values[":prefix"] = {"S": f"{vendor}#"}
        items = self._query(KeyConditionExpression=condition, ExpressionAttributeValues=values)
        return [(str(i["vendor"]), str(i["account_id"])) for i in items]

    def tenant_usage(self, vendor: str, account_id: str, tenant_id: str, period: str) -> list[StoredUsage]:
        tenant = key_part(tenant_id)
        item = self.get_items([(usage_pk(vendor, account_id, period, tenant), tenant)])
        if not item:
            self._refuse_old_shape(period)
        return [u for found in item.values() for u in stored_usages(found)]

    def period_totals(self, period: str) -> list[Total]:
        return [
            total(item)
            for item in self._query(
                KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": f"TOTAL#{period}"}}
            )
        ]

    def metric_history(self, vendor: str, account_id: str, tenant_id: str, metric: str) -> list[StoredUsage]:
        """One tenant's metric at each change of it, oldest first (the value at time T is the last one before T):
        the readings of its snapshots and of the change logs of its items of those periods (keyed reads)."""
        tenant = key_part(tenant_id)
        snapshots = list(
            self._query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"SNAP#{vendor}#{account_id}#{tenant}"}},
            )
        )
        periods = {str(i["period"]) for i in snapshots}
        items = self.get_items([(usage_pk(vendor, account_id, p, tenant), tenant) for p in sorted(periods)])
        states: dict[tuple[str, str], dict[str, Any]] = {}
        for item in [*snapshots, *items.values()]:
            for state in readings(item):
                states[(str(state["as_of"]), str(state["period"]))] = {**state, "record_type": "snapshot"}
        history: list[StoredUsage] = []
        last: dict[str, tuple[UsageRecord, str | None]] = {}
        for key in sorted(states):
            for usage in stored_usages(states[key]):
                seen = (usage.record, usage.removed_at)
                if usage.record.metric == metric and last.get(key[1]) != seen:
                    last[key[1]] = seen
                    history.append(usage)
        return history

    def monthly_history(
        self, vendor: str, account_id: str, tenant_id: str, metric: str, periods: Iterable[str]
    ) -> list[StoredUsage]:
        """The latest value of one tenant's metric for each period asked, oldest first (keyed reads)."""
        return [u for u in self.monthly_usage(vendor, account_id, tenant_id, periods) if u.record.metric == metric]

    def monthly_usage(self, vendor: str, account_id: str, tenant_id: str, periods: Iterable[str]) -> list[StoredUsage]:
        """Every metric of one tenant for each period asked, by period then metric: one BatchGetItem per 100 months."""
        tenant = key_part(tenant_id)
        items = self.get_items([(usage_pk(vendor, account_id, p, tenant), tenant) for p in sorted(set(periods))])
        found = [u for item in items.values() for u in stored_usages(item)]
        return sorted(found, key=lambda u: (u.record.period, u.record.metric))

    def get_items(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """Items by (pk, sk), BatchGetItem of 100 keys a call; absent keys are left out."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET_SIZE):
            pending: list[dict[str, Any]] = [
                {"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys[start : start + BATCH_GET_SIZE]
            ]
            for attempt in range(MAX_BATCH_ATTEMPTS):
                answer = self._call("batch_get_item", "read", RequestItems={self.table_name: {"Keys": pending}})
                for raw in answer.get("Responses", {}).get(self.table_name, []):
                    item = deserialize(raw)
                    found[(str(item["pk"]), str(item["sk"]))] = item
                pending = list(dict(answer.get("UnprocessedKeys", {})).get(self.table_name, {}).get("Keys", []))
                if not pending:
                    break
                self._sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise StoreError(f"DynamoDB left {len(pending)} key(s) unread after {MAX_BATCH_ATTEMPTS} attempts")
        return found

    def queue_raw(self, attributes: Mapping[str, object]) -> None:
        """Queue one item as given (the migration's writes); `flush` sends it."""
        self._queue(attributes)

    def delete_keys(self, keys: Sequence[tuple[str, str]]) -> None:
        """Delete items by (pk, sk), 25 a call."""
        for start in range(0, len(keys), BATCH_SIZE):
            self._send_requests(
                [
                    {"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}
                    for pk, sk in keys[start : start + BATCH_SIZE]
                ]
            )

    def runs(self, vendor: str, account_id: str, *, limit: int = 10) -> list[RunRecord]:
        """The latest runs of one account, newest first."""
        answer = self._call(
            "query",
            "read",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"RUN#{vendor}#{account_id}"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [run_record(deserialize(item)) for item in answer.get("Items", [])]

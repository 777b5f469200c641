"""Runs and their coordination: run records, the one-run-per-account lease, runs split over several invocations
(chunks), and the identities a vendor does not send (keys: docs/data-model.md). Runs are keyed by the run's as-of
time, so a retried invocation overwrites instead of duplicating."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any, Final

from usagewatch.continuation import ChunkedRunState, ChunkKey
from usagewatch.model import parse_utc, utc_iso
from usagewatch.store.table import Item, Table, deserialize, key_part, known_fields, serialize
from usagewatch.stored import RunRecord

IDENTITIES_PER_UPDATE: Final = 50
_RUN_FIELDS: Final = frozenset(f.name for f in fields(RunRecord))


def run_record(item: Mapping[str, Any]) -> RunRecord:
    return RunRecord(**known_fields(item, _RUN_FIELDS))


class RunTable(Table):
    """The run room of the store."""

    def write_run(self, run: RunRecord) -> None:
        attributes = asdict(run)
        attributes["periods"] = list(run.periods)
        attributes["errors"] = list(run.errors)
        moment = datetime.fromisoformat(run.as_of.replace("Z", "+00:00"))
        self.put(
            {
                "pk": f"RUN#{run.vendor}#{run.account_id}",
                "sk": run.as_of,
                "record_type": "run",
                "expires_at": int((moment + self.retention).timestamp()),
                **attributes,
            }
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

    def runs_between(self, vendor: str, account_id: str, start: str, end: str, *, limit: int = 10) -> list[RunRecord]:
        """The runs of one account started from `start` to `end` (UTC ISO times, inclusive), newest first."""
        answer = self._call(
            "query",
            "read",
            KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
            ExpressionAttributeValues={
                ":pk": {"S": f"RUN#{vendor}#{account_id}"},
                ":a": {"S": start},
                ":b": {"S": end},
            },
            ScanIndexForward=False,
            Limit=limit,
        )
        return [run_record(deserialize(item)) for item in answer.get("Items", [])]

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

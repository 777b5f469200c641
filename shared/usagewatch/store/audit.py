"""The console's change trail: who changed what, when, from what to what (one item per change; the key prefix
its role may write).

audit  pk AUDIT#CONSOLE  sk {changed_at}#{change id}
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from usagewatch.store.dynamo import DynamoStore
from usagewatch.store.table import deserialize, serialize

AUDIT_PK: Final = "AUDIT#CONSOLE"
SHOWN: Final = 100


@dataclass(frozen=True, slots=True)
class Entry:
    changed_at: str
    who: str
    what: str
    subject: str
    before: str
    after: str


def record(store: DynamoStore, entries: list[Entry]) -> None:
    for e in entries:
        store.call(
            "put_item",
            "write",
            Item=serialize(
                {
                    "pk": AUDIT_PK,
                    "sk": f"{e.changed_at}#{uuid.uuid4().hex}",
                    "record_type": "audit",
                    "changed_at": e.changed_at,
                    "who": e.who,
                    "what": e.what,
                    "subject": e.subject,
                    "before": e.before,
                    "after": e.after,
                }
            ),
        )


def entry(who: str, what: str, subject: str, before: str, after: str) -> Entry:
    return Entry(datetime.now(UTC).isoformat(timespec="seconds"), who, what, subject, before, after)


def recent(store: DynamoStore, limit: int = SHOWN) -> list[Entry]:
    answer = store.call(
        "query",
        "read",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": AUDIT_PK}},
        ScanIndexForward=False,
        Limit=limit,
    )
    out = []
    for raw in answer.get("Items", []):
        i = deserialize(raw)
        out.append(Entry(*(str(i.get(k, "")) for k in ("changed_at", "who", "what", "subject", "before", "after"))))
    return out

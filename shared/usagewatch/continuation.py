"""Work that does not fit one invocation: the chunk messages and the shared progress of a chunked run. Pure.

A chunk travels as JSON (`ChunkMessage`, a pydantic model); the work queue's SQS records are read with
Powertools' parser model (`WorkRecord`), whose body is that JSON parsed and validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Json, ValidationError

from usagewatch.errors import ConfigError
from usagewatch.model import CollectionRequest, Period, parse_utc

MESSAGE_KIND: Final = "usagewatch.chunk"


@dataclass(frozen=True, slots=True)
class ChunkKey:
    """One account's run, split: identified by the run's as-of time, so a retried run finds its progress."""

    vendor: str
    account_id: str
    as_of: str


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One SQS message: a chunk of an account's tenants (their shape is the vendor module's own)."""

    key: ChunkKey
    period: str
    period_explicit: bool
    index: int
    count: int
    tenants: list[dict[str, Any]]

    def request(self) -> CollectionRequest:
        return CollectionRequest(Period.parse(self.period), parse_utc(self.key.as_of), self.period_explicit)

    @property
    def group_id(self) -> str:
        """FIFO message group: one account's chunks are handled one at a time, so its key's rate limit holds."""
        return f"{self.key.vendor}:{self.key.account_id}"

    @property
    def deduplication_id(self) -> str:
        return f"{self.key.vendor}:{self.key.account_id}:{self.key.as_of}:{self.index}"

    def to_json(self) -> str:
        return ChunkMessage(
            kind=MESSAGE_KIND,
            vendor=self.key.vendor,
            account_id=self.key.account_id,
            as_of=self.key.as_of,
            period=self.period,
            period_explicit=self.period_explicit,
            index=self.index,
            count=self.count,
            tenants=self.tenants,
        ).model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> WorkItem:
        try:
            return ChunkMessage.model_validate_json(text).work_item()
        except ValidationError as exc:
            raise ConfigError(f"work item: not a usagewatch chunk message ({exc.error_count()} error(s))") from None


class ChunkMessage(BaseModel):
    """The JSON body of one work-queue message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["usagewatch.chunk"]
    vendor: str
    account_id: str
    as_of: str
    period: str
    period_explicit: bool
    index: int
    count: int
    tenants: list[dict[str, Any]]

    def work_item(self) -> WorkItem:
        key = ChunkKey(self.vendor, self.account_id, self.as_of)
        return WorkItem(key, self.period, self.period_explicit, self.index, self.count, self.tenants)


class WorkRecord(SqsRecordModel):
    """One SQS record of the work queue, as Lambda delivers it (Powertools parser model)."""

    body: Json[ChunkMessage]


@dataclass(frozen=True, slots=True)
class ChunkedRunState:
    """How far a split run has come, as stored after a chunk completed."""

    count: int
    done: int
    started_at: str
    failures: dict[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    read: frozenset[str] = frozenset()
    """The tenants the chunks read with records (their items are this run's, changed or not)."""

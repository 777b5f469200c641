"""PSA proposals, their audit trail and the product map in the usage table (docs/psa.md, "Where it is stored").

proposal  pk PSA#PROPOSALS#{period}   sk P#{proposal_id}         (status changes by conditional writes)
audit     pk PSA#AUDIT#{period}       sk {at}#{ns}#{proposal_id}  (append-only: written once, never changed)
product   pk PSA#PRODUCTS             sk {psa}#{product_identifier} -> vendor, metric

The product map changes through billing_commit like the contracts (all or nothing, nothing written twice).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from usagewatch.errors import StoreError
from usagewatch.psa.apply import AuditRecord
from usagewatch.psa.contract import LineRef
from usagewatch.psa.proposals import Proposal, ProposalStatus
from usagewatch.store.billing_commit import BillingCommits, Change, content
from usagewatch.store.dynamo import DynamoStore
from usagewatch.store.table import key_part, serialize

PRODUCTS_PK: Final = "PSA#PRODUCTS"


@dataclass(frozen=True, slots=True)
class ProductMapping:
    """Which PSA catalogue product bills which vendor metric; the identifier kept exactly as the PSA stores it."""

    psa: str
    product_identifier: str
    vendor: str
    metric: str


def _proposals_pk(period: str) -> str:
    return f"PSA#PROPOSALS#{period}"


def _audit_pk(period: str) -> str:
    return f"PSA#AUDIT#{period}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")


def _lease(value: datetime) -> str:
    """A lease time as stored: UTC, to the microsecond, so that two of them compare as strings do."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _proposal_item(p: Proposal) -> dict[str, object]:
    return {
        "pk": _proposals_pk(p.period),
        "sk": f"P#{p.id}",
        "record_type": "psa_proposal",
        "proposal_id": p.id,
        "period": p.period,
        "psa": p.psa,
        "agreement_id": p.ref.agreement_id,
        "line_id": p.ref.line_id,
        "customer_id": p.customer_id,
        "vendor": p.vendor,
        "metric": p.metric,
        "product_identifier": p.product_identifier,
        "from_quantity": p.from_quantity,
        "to_quantity": p.to_quantity,
        "unit_price": p.unit_price,
        "reason": p.reason,
        "status": p.status.value,
        "approved_by": p.approved_by,
        "approved_at": _iso(p.approved_at),
        "applied_by": p.applied_by,
        "applied_at": _iso(p.applied_at),
        "claimed_by": p.claimed_by,
        "claimed_until": None if p.claimed_until is None else _lease(p.claimed_until),
        "note": p.note or None,
    }


def _proposal(i: Mapping[str, Any]) -> Proposal:
    return Proposal(
        id=str(i["proposal_id"]),
        period=str(i["period"]),
        psa=str(i["psa"]),
        ref=LineRef(int(i["agreement_id"]), int(i["line_id"])),
        customer_id=str(i["customer_id"]),
        vendor=str(i["vendor"]),
        metric=str(i["metric"]),
        product_identifier=str(i["product_identifier"]),
        from_quantity=Decimal(i["from_quantity"]),
        to_quantity=Decimal(i["to_quantity"]),
        unit_price=_dec(i.get("unit_price")),
        reason=str(i.get("reason", "")),
        status=ProposalStatus(str(i["status"])),
        approved_by=i.get("approved_by"),
        approved_at=_when(i.get("approved_at")),
        applied_by=i.get("applied_by"),
        applied_at=_when(i.get("applied_at")),
        claimed_by=i.get("claimed_by"),
        note=str(i.get("note", "")),
        claimed_until=_when(i.get("claimed_until")),
    )


def _audit(i: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        proposal_id=str(i["proposal_id"]),
        period=str(i["period"]),
        psa=str(i["psa"]),
        line=str(i["line"]),
        approver=i.get("approver"),
        applier=str(i["applier"]),
        before=_dec(i.get("before")),
        after=_dec(i.get("after")),
        outcome=ProposalStatus(str(i["outcome"])),
        psa_status=str(i["psa_status"]),
        note=str(i.get("note", "")),
        at=datetime.fromisoformat(str(i["at"])),
    )


class PsaStore:
    """The DynamoDB `ProposalStore` (usagewatch.psa.apply) and the product map."""

    def __init__(self, store: DynamoStore) -> None:
        self.store = store
        self.commits = BillingCommits(store)
        self._period_of: dict[str, str] = {}
        """Proposal id -> period, of the proposals read: `take` and `finish` name a proposal by id only."""

    # --- proposals ----------------------------------------------------------------------------

    def proposals(self, period: str) -> list[Proposal]:
        found = [_proposal(i) for i in self.commits.raw_query(_proposals_pk(period), "P#")]
        self._period_of.update({p.id: p.period for p in found})
        return found

    def add(self, proposals: Iterable[Proposal]) -> int:
        new = 0
        for p in proposals:
            answer = self.store.call(
                "put_item",
                "write",
                conditional=True,
                Item=serialize(_proposal_item(p)),
                ConditionExpression="attribute_not_exists(sk)",
            )
            new += answer is not None
        return new

    def approve(self, period: str, ids: Iterable[str] | None, *, approver: str, at: datetime) -> list[Proposal]:
        wanted = None if ids is None else set(ids)
        changed = []
        for p in self.proposals(period):
            if p.status is not ProposalStatus.PROPOSED or (wanted is not None and p.id not in wanted):
                continue
            answer = self.store.call(
                "update_item",
                "write",
                conditional=True,
                Key={"pk": {"S": _proposals_pk(period)}, "sk": {"S": f"P#{p.id}"}},
                UpdateExpression="SET #s = :approved, approved_by = :by, approved_at = :at",
                ConditionExpression="#s = :proposed",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":approved": {"S": ProposalStatus.APPROVED.value},
                    ":proposed": {"S": ProposalStatus.PROPOSED.value},
                    ":by": {"S": approver},
                    ":at": {"S": _iso(at) or ""},
                },
            )
            if answer is not None:
                changed.append(p)
        return changed

    def take(self, proposal_id: str, *, applier: str, now: datetime, until: datetime) -> bool:
        period = self._period_of.get(proposal_id)
        if period is None:
            return False  # never read by this store: not this run's to take
        # Unclaimed, or the claim's lease has passed (a claim stored before leases had none: it has passed too).
        answer = self.store.call(
            "update_item",
            "write",
            conditional=True,
            Key={"pk": {"S": _proposals_pk(period)}, "sk": {"S": f"P#{proposal_id}"}},
            UpdateExpression="SET claimed_by = :me, claimed_until = :until",
            ConditionExpression="#s = :approved AND (attribute_not_exists(claimed_by) "
            "OR attribute_not_exists(claimed_until) OR claimed_until < :now)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":me": {"S": applier},
                ":until": {"S": _lease(until)},
                ":now": {"S": _lease(now)},
                ":approved": {"S": ProposalStatus.APPROVED.value},
            },
        )
        return answer is not None

    def finish(self, proposal: Proposal) -> None:
        until = "" if proposal.claimed_until is None else _lease(proposal.claimed_until)
        answer = self.store.call(
            "put_item",
            "write",
            conditional=True,
            Item=serialize(_proposal_item(proposal)),
            ConditionExpression="claimed_by = :me AND claimed_until = :until",
            ExpressionAttributeValues={":me": {"S": proposal.claimed_by or ""}, ":until": {"S": until}},
        )
        if answer is None:
            raise StoreError(f"proposal {proposal.id} is not held by {proposal.claimed_by}: its outcome not stored")

    # --- the audit trail ----------------------------------------------------------------------

    def append_audit(self, record: AuditRecord) -> None:
        item = {
            "pk": _audit_pk(record.period),
            # Written in order within one second too (the clock's nanoseconds), and never over another record.
            "sk": f"{_iso(record.at)}#{time.time_ns():020d}#{record.proposal_id}",
            "record_type": "psa_audit",
            "proposal_id": record.proposal_id,
            "period": record.period,
            "psa": record.psa,
            "line": record.line,
            "approver": record.approver,
            "applier": record.applier,
            "before": record.before,
            "after": record.after,
            "outcome": record.outcome.value,
            "psa_status": record.psa_status,
            "note": record.note or None,
            "at": _iso(record.at),
        }
        self.store.call("put_item", "write", Item=serialize(item), ConditionExpression="attribute_not_exists(sk)")

    def audit(self, period: str) -> list[AuditRecord]:
        return [_audit(i) for i in self.commits.raw_query(_audit_pk(period))]

    # --- the product map ----------------------------------------------------------------------

    def products(self, psa: str) -> list[ProductMapping]:
        items = self.commits.resolve(self.commits.raw_query(PRODUCTS_PK, f"{psa}#"))
        return [
            ProductMapping(str(i["psa"]), str(i["product_identifier"]), str(i["vendor"]), str(i["metric"]))
            for i in items
        ]

    def import_products(self, products: Iterable[ProductMapping], *, what: str) -> tuple[int, int]:
        """Product mappings added or changed, all or nothing; (written, unchanged)."""
        head = self.commits.settled_head()
        raw = {(str(i["pk"]), str(i["sk"])): i for i in self.commits.raw_query(PRODUCTS_PK)}
        changes: list[Change] = []
        unchanged = 0
        for p in products:
            key = (PRODUCTS_PK, f"{p.psa}#{key_part(p.product_identifier)}")
            wanted: dict[str, object] = {
                "pk": key[0],
                "sk": key[1],
                "record_type": "psa_product",
                "psa": p.psa,
                "product_identifier": p.product_identifier,
                "vendor": p.vendor,
                "metric": p.metric,
            }
            if content(raw.get(key)) == wanted:
                unchanged += 1
                continue
            changes.append(Change(key, wanted, raw.get(key)))
        self.commits.apply(changes, what=what, base=head)
        return len(changes), unchanged

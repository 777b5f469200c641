"""The month's plan as `usagewatch psa plan` and the monthly report both make it: each reconciliation line joined
to the PSA line its synced contract names (re-read now), proposals stored once (docs/psa.md, "Plan").

Also the connection from its Secrets Manager secret, for the scheduled runs (the CLI says its own errors).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from usagewatch import registry
from usagewatch.contracts import in_force
from usagewatch.errors import ConfigError
from usagewatch.model import Period
from usagewatch.psa.contract import LineGoneError, LineRef, PsaReader
from usagewatch.psa.proposals import BilledUsage, Plan, Proposal, plan
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import PsaStore

if TYPE_CHECKING:
    from usagewatch.psa.connectwise import ConnectWiseClient
    from usagewatch.reconcile import Line
    from usagewatch.store import DynamoStore


@dataclass(frozen=True, slots=True)
class MonthPlan:
    """A plan as made and stored: how many proposals were new, and the synced lines gone from the PSA."""

    plan: Plan
    new: int
    gone: list[str] = field(default_factory=list)
    stored: list[Proposal] = field(default_factory=list)
    """The plan's proposals as stored now (an earlier plan's may be approved or applied already)."""

    def by_status(self) -> dict[str, int]:
        return dict(sorted(Counter(p.status.value for p in self.stored).items()))

    def skipped_by_kind(self) -> dict[str, int]:
        kinds = Counter(s.kind for s in self.plan.skipped)
        kinds.update({"gone": len(self.gone)} if self.gone else {})
        return dict(sorted(kinds.items()))

    @property
    def value(self) -> Decimal:
        """Per month, every proposal's difference at its unit price (a decrease counts negative)."""
        return sum((p.value for p in self.plan.proposals if p.value is not None), Decimal(0))


def plan_month(
    store: DynamoStore,
    psa: PsaReader,
    period: Period,
    lines: Iterable[Line],
    *,
    decreases: bool = False,
    today: date,
) -> MonthPlan:
    """Plan `period` from its reconciliation `lines` (billing_report.gather) and store the proposals.

    A line is joined to the PSA line its contract of `period` was synced from; when that month's contract was not
    synced (the link began later), to the PSA line that bills the same metric now, where a change would go."""
    billing = BillingStore(store)
    contracts = [c for vendor in registry.vendor_ids() for c in billing.contracts(vendor)]
    this_month = Period(today.year, today.month)
    synced = {key: c for key, c in in_force(contracts, this_month).items() if c.psa_line}
    synced |= {key: c for key, c in in_force(contracts, period).items() if c.psa_line}
    usage: list[BilledUsage] = []
    gone: list[str] = []
    for x in lines:
        if x.status == "unmapped":
            continue
        contract = synced.get((x.customer_id, x.vendor, x.metric))
        line = None
        if contract is not None and contract.psa_line:
            agreement, _, addition = contract.psa_line.partition("/")
            try:
                line = psa.read_line(LineRef(int(agreement), int(addition)))
            except LineGoneError:
                gone.append(f"{x.customer_id} {x.vendor} {x.metric}: line {contract.psa_line} is gone (psa sync)")
        usage.append(BilledUsage(x.customer_id, x.vendor, x.metric, x.used, x.complete, line))
    made = plan(str(period), usage, psa=psa.psa, write_mode=psa.write_mode, decreases=decreases, today=today)
    proposals = PsaStore(store)
    new = proposals.add(made.proposals)
    ids = {p.id for p in made.proposals}
    stored = [p for p in proposals.proposals(str(period)) if p.id in ids] if ids else []
    return MonthPlan(made, new, gone, stored)


def open_client(secret_id: str) -> ConnectWiseClient:
    """The ConnectWise client of the connection in secret `secret_id`; ConfigError naming what is wrong (never a
    value of the secret)."""
    from usagewatch import aws
    from usagewatch.psa.connectwise import ConnectWiseClient, parse_connection

    try:
        answer = aws.client("secretsmanager").get_secret_value(SecretId=secret_id)
    except Exception as exc:
        raise ConfigError(f"PSA secret {secret_id!r} not read: {type(exc).__name__}") from None
    try:
        raw = json.loads(answer.get("SecretString") or "")
    except ValueError:
        raise ConfigError(f"PSA secret {secret_id!r} is not a JSON object") from None
    return ConnectWiseClient(parse_connection(raw))

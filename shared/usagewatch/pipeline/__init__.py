"""One collection run: for each account, read -> store -> evaluate -> advance alerts -> publish.

A tenant that fails is recorded and the others go on. An account that fails writes no totals and
resolves nothing (missing data is not good news); the run goes on with the other accounts and the
caller fails the invocation at the end, so Lambda's retry and on-failure destination see it.

Rooms: `run` (the accounts, leases and the deadline), `base` (the per-tenant stream), `finish` (totals, alert
transitions, the run record), `listing` (customers not seen this run), `chunks` (the work queue), `account`
(what one account's run has seen), `outcome` (what a run reports), `ports` (what it needs from the table).
"""

from usagewatch.pipeline.outcome import (
    DEADLINE_REACHED,
    LEASE_LOST,
    LEASE_TAKEN,
    PERIOD_ENDED,
    SUCCEEDED,
    AccountOutcome,
    RunSummary,
    run_id_for,
)
from usagewatch.pipeline.ports import UsageStore, WorkQueue
from usagewatch.pipeline.run import (
    DEADLINE_RESERVE_SECONDS,
    DEFAULT_BUDGET_SECONDS,
    LEASE_MARGIN_SECONDS,
    LEASE_SECONDS,
    Pipeline,
)

__all__ = [
    "DEADLINE_REACHED",
    "DEADLINE_RESERVE_SECONDS",
    "DEFAULT_BUDGET_SECONDS",
    "LEASE_LOST",
    "LEASE_MARGIN_SECONDS",
    "LEASE_SECONDS",
    "LEASE_TAKEN",
    "PERIOD_ENDED",
    "SUCCEEDED",
    "AccountOutcome",
    "Pipeline",
    "RunSummary",
    "UsageStore",
    "WorkQueue",
    "run_id_for",
]

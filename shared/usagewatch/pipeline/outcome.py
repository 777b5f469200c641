"""What a run reports: one outcome per account, the run summary, the statuses and their words."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Final

from usagewatch.model import (
    CollectionRequest,
    Number,
    utc_iso,
)

PERIOD_ENDED: Final = "period ended"
DEADLINE_REACHED: Final = "deadline reached while this account was collected"
LEASE_TAKEN: Final = "skipped: another run of this account holds its lease (it is collecting now)"
LEASE_LOST: Final = "skipped: this run's lease on the account was taken over before it published; nothing published"
# An account's run that refreshed its numbers (partial: some tenants failed, the others were read).
SUCCEEDED: Final = frozenset({"ok", "partial"})


@dataclass
class AccountOutcome:
    account_id: str
    status: str = "ok"
    periods: list[str] = field(default_factory=list)
    tenants_collected: int = 0
    tenants_failed: int = 0
    records_written: int = 0
    alerts_published: int = 0
    publish_failures: int = 0
    digest_sent: bool = False
    chunks: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    totals: dict[str, Number] = field(default_factory=dict)
    """The run's period totals by metric (none when the account failed)."""
    last_success_at: str | None = None
    """When the account's latest ok or partial run finished: this one, or an earlier one found among its last
    runs while it fails (None when none is found or the account was not finished by this run)."""


@dataclass
class RunSummary:
    vendor: str
    period: str
    as_of: str
    run_id: str
    accounts: list[AccountOutcome] = field(default_factory=list)

    @property
    def failed_accounts(self) -> list[AccountOutcome]:
        return [a for a in self.accounts if a.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "period": self.period,
            "periods": sorted({p for a in self.accounts for p in a.periods}),
            "as_of": self.as_of,
            "run_id": self.run_id,
            "accounts": len(self.accounts),
            "accounts_failed": len(self.failed_accounts),
            "accounts_skipped": [a.account_id for a in self.accounts if a.status == "skipped"],
            "tenants_collected": sum(a.tenants_collected for a in self.accounts),
            "tenants_failed": sum(a.tenants_failed for a in self.accounts),
            "records_written": sum(a.records_written for a in self.accounts),
            "alerts_published": sum(a.alerts_published for a in self.accounts),
            "publish_failures": sum(a.publish_failures for a in self.accounts),
            "digests_sent": sum(a.digest_sent for a in self.accounts),
            "account_results": [asdict(a) for a in self.accounts],
        }


def run_id_for(vendor: str, request: CollectionRequest) -> str:
    return f"{vendor}:{utc_iso(request.as_of)}"

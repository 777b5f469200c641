"""The PSA link against the ConnectWise simulator: a sync's reads at scale, and an apply under a rate limit.

(a) Sync: 2,000 companies, 5,000 active agreements, 30,000 additions. The client reads in pages of 1,000
(ConnectWise's maximum), forward-only. ConnectWise lists additions only under their agreement
(`GET /finance/agreements/{id}/additions`; the API has no listing of additions across agreements), so the fewest
requests are ceil(companies / 1,000) + ceil(agreements / 1,000) + the sum over agreements of
max(1, ceil(its additions / 1,000)): here 2 + 5 + 5,000 = 5,007. Measured: the API requests the sync's reads sent
and its wall time (reads, then the pure sync over them; the contract writes to the table are not in it).

(b) Apply: 1,000 approved changes with the PSA answering 429 past 100 requests a second. Each change costs three
requests (re-read, PATCH, read-back), so no run can finish in less than 1,000 x 3 / 100 = 30 s.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from bench.common import Row
from tests.simulators.connectwise import ConnectWiseSimulator
from usagewatch.customers import Customer
from usagewatch.psa.apply import AuditRecord, ChangeBound, apply_approved
from usagewatch.psa.connectwise import ConnectWiseClient, parse_connection
from usagewatch.psa.contract import LineRef
from usagewatch.psa.proposals import Proposal, ProposalStatus, proposal_id
from usagewatch.psa.sync import Mapped, read_psa, sync

COMPANIES: Final = 2_000
AGREEMENTS: Final = 5_000
ADDITIONS: Final = 30_000
CHANGES: Final = 1_000
RATE: Final = 100
"""The simulator's limit for the apply: requests per second (a rolling 1-second window)."""
REQUESTS_PER_CHANGE: Final = 3
PER_AGREEMENT: Final = ADDITIONS // AGREEMENTS
PRODUCTS: Final = tuple(f"P{a}-{k}" for a in range(math.ceil(AGREEMENTS / COMPANIES)) for k in range(PER_AGREEMENT))
"""Every line of a company a product of its own (a company's agreement a, its k-th addition): none ambiguous."""
PERIOD: Final = "2026-12"
TODAY: Final = date(2026, 12, 7)


class Proposals:
    """An in-memory ProposalStore: the apply's cost here is the PSA's, not the table's."""

    def __init__(self, proposals: Iterable[Proposal]) -> None:
        self._lock = threading.Lock()
        self.items = {p.id: p for p in proposals}
        self.audit: list[AuditRecord] = []

    def proposals(self, period: str) -> list[Proposal]:
        return [p for p in self.items.values() if p.period == period]

    def add(self, proposals: Iterable[Proposal]) -> int:
        raise NotImplementedError

    def approve(self, period: str, ids: Iterable[str] | None, *, approver: str, at: datetime) -> list[Proposal]:
        raise NotImplementedError

    def take(self, proposal_id: str, *, applier: str, now: datetime, until: datetime) -> bool:
        with self._lock:
            held = self.items[proposal_id]
            if held.claimed_by is not None:
                return False
            self.items[proposal_id] = replace(held, claimed_by=applier, claimed_until=until)
            return True

    def finish(self, proposal: Proposal) -> None:
        self.items[proposal.id] = proposal

    def append_audit(self, record: AuditRecord) -> None:
        self.audit.append(record)


def fewest_sync_requests(companies: int, additions_per_agreement: list[int], page: int = 1000) -> int:
    """The requests a forward-only reader cannot do without: each listing at least one page, a full page only
    when more follow (the `Link` header says so), additions listed per agreement."""

    def pages(n: int) -> int:
        return max(1, math.ceil(n / page))

    return pages(companies) + pages(len(additions_per_agreement)) + sum(pages(n) for n in additions_per_agreement)


def _api_requests(sim: ConnectWiseSimulator) -> int:
    return sum(1 for request, _ in sim.exchanges if "/apis/3.0/" in request.path)


def _sync_rows() -> tuple[list[Row], dict[str, Any]]:
    with ConnectWiseSimulator() as sim:
        companies = [sim.add_company(f"C{n:05d}", f"Company {n}") for n in range(COMPANIES)]
        agreements = [sim.add_agreement(companies[n % COMPANIES], f"Managed {n}") for n in range(AGREEMENTS)]
        per_agreement: dict[int, int] = {}
        for n in range(ADDITIONS):
            agreement = agreements[n % AGREEMENTS]
            product = f"P{(n % AGREEMENTS) // COMPANIES}-{n // AGREEMENTS}"
            sim.add_addition(agreement, product, 10 + n % 90, unit_price=Decimal("2.50"))
            per_agreement[agreement] = per_agreement.get(agreement, 0) + 1
        # Unpaced (the secret allows at most 100 a second): the client's own cost; pacing adds requests / rate.
        connection = parse_connection(sim.connection()).model_copy(update={"requests_per_second": 100_000.0})
        client = ConnectWiseClient(connection)
        customers = [Customer(f"c{n}", f"Company {n}", f"C{n:05d}") for n in range(COMPANIES)]
        products = {p: Mapped("keepnet", f"metric_{i}") for i, p in enumerate(PRODUCTS)}
        before = _api_requests(sim)
        started = time.perf_counter()
        try:
            found, lines, problems = read_psa(client)
            result = sync(found, lines, problems, customers=customers, products=products, stored=[], today=TODAY)
        finally:
            client.close()
        wall = time.perf_counter() - started
        requests = _api_requests(sim) - before
    fewest = fewest_sync_requests(COMPANIES, [per_agreement.get(a, 0) for a in agreements])
    details = {
        "companies": len(found),
        "lines": len(lines),
        "contract_versions": len(result.contracts),
        "api_requests": requests,
        "fewest_requests": fewest,
        "requests_per_s": round(requests / wall, 1),
        "paced_floor_s_at_10_per_s": round(fewest / 10, 1),
        "paced_floor_s_at_100_per_s": round(fewest / 100, 1),
    }
    assert (len(found), len(lines), len(result.contracts)) == (COMPANIES, ADDITIONS, ADDITIONS), details
    scale = f"{COMPANIES:,} companies, {AGREEMENTS:,} agreements, {ADDITIONS:,} additions"
    rows = [
        Row(
            "psa",
            f"sync reads: {scale}",
            float(requests),
            "requests",
            float(fewest),
            "pageSize 1,000; additions per agreement",
            target="= the fewest",
            ok=requests == fewest,
            details=details,
        ),
        Row("psa", "sync wall time (reads + the pure sync)", wall, "s", target="recorded", details=details),
    ]
    return rows, details


def _apply_rows() -> tuple[list[Row], dict[str, Any]]:
    with ConnectWiseSimulator() as sim:
        agreement = sim.add_agreement(sim.add_company("BIG", "Big customer"), "Managed")
        proposals = []
        for n in range(CHANGES):
            addition = sim.add_addition(agreement, f"P-{n:04d}", 10, unit_price=Decimal(1))
            ref = LineRef(agreement, addition)
            proposals.append(
                Proposal(
                    proposal_id("connectwise", ref, PERIOD, Decimal(11)),
                    PERIOD,
                    "connectwise",
                    ref,
                    "big",
                    "keepnet",
                    "monthly_users",
                    f"P-{n:04d}",
                    Decimal(10),
                    Decimal(11),
                    Decimal(1),
                    "bench",
                    status=ProposalStatus.APPROVED,
                    approved_by="bench",
                )
            )
        store = Proposals(proposals)
        sim.rate_limit = (RATE, 1.0)
        client = ConnectWiseClient(parse_connection(sim.connection(requests_per_second=RATE)))
        bound = ChangeBound(max_lines=CHANGES, max_total_difference=Decimal(CHANGES))
        started = time.perf_counter()
        try:
            report = apply_approved(store, client, PERIOD, applier="bench", bound=bound, now=lambda: datetime.now(UTC))
        finally:
            client.close()
        wall = time.perf_counter() - started
        throttled = sum(1 for _, response in sim.exchanges if response.status == 429)
        patches = len(sim.patches())
    floor = CHANGES * REQUESTS_PER_CHANGE / RATE
    details = {
        "applied": report.count(ProposalStatus.APPLIED),
        "failed": report.count(ProposalStatus.FAILED),
        "patches": patches,
        "answered_429": throttled,
        "bound_s": floor,
    }
    assert details["applied"] == CHANGES, details
    assert patches == CHANGES, details
    rows = [
        Row(
            "psa",
            f"apply {CHANGES:,} changes under a 429 limit of {RATE} req/s",
            wall,
            "s",
            floor,
            f"{CHANGES:,} x {REQUESTS_PER_CHANGE} requests / {RATE} req/s",
            target="within 25% of bound, each written once",
            ok=wall <= floor * 1.25 and patches == CHANGES,
            details=details,
        )
    ]
    return rows, details


def scenario() -> tuple[list[Row], dict[str, Any]]:
    sync_rows, sync_raw = _sync_rows()
    apply_rows, apply_raw = _apply_rows()
    return [*sync_rows, *apply_rows], {"sync": sync_raw, "apply": apply_raw}

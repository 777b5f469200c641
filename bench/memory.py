"""Memory: peak RSS of the 10,000-company Keepnet run, and its Python-heap peak.

Two runs in fresh child processes against the same simulator (which stays in this process, so its
10,000 companies do not count): one plain, reading the peak RSS at the end (VmHWM, what Lambda's 512 MB
is measured against; `ru_maxrss` is reported alongside, see bench.common.peak_rss_mb), one under
`tracemalloc` for the peak of Python allocations during the run. The source streams pages and the store
sends items in batches of 25, so no raw page or record should pile up; what grows with the number of
companies is the per-tenant bookkeeping of the run (ids for totals and alerts), which the 1,000-company
run shows.
"""

from __future__ import annotations

from typing import Any, Final

from bench.common import Row
from bench.keepnet import COMPANIES, _run, simulator

LIMIT_MB: Final = 256


def scenario() -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {}
    sim = simulator(COMPANIES)
    with sim:
        raw["plain"] = _run(sim, {})
        raw["tracemalloc"] = _run(sim, {"tracemalloc": True})
    small = simulator(1_000)
    with small:
        raw["tracemalloc_1000"] = _run(small, {"tracemalloc": True})
    plain, traced = raw["plain"], raw["tracemalloc"]
    rows = [
        Row(
            "memory",
            "RSS after imports, before the run",
            plain["rss_after_imports_mb"],
            "MB",
        ),
        Row(
            "memory",
            f"peak RSS, {COMPANIES:,} companies",
            plain["rss_peak_mb"],
            "MB",
            LIMIT_MB,
            "limit",
            target=f"< {LIMIT_MB} MB",
            ok=plain["rss_peak_mb"] < LIMIT_MB,
            details={
                "rss_after_imports_mb": plain["rss_after_imports_mb"],
                "ru_maxrss_mb": plain["ru_maxrss_mb"],
                "records": 4 * COMPANIES,
            },
        ),
        Row(
            "memory",
            f"Python heap peak during the run, {COMPANIES:,} co.",
            traced["heap_peak_mb"],
            "MB",
            raw["tracemalloc_1000"]["heap_peak_mb"],
            "same at 1,000 co.",
            details={"rss_peak_mb_under_tracemalloc": traced["rss_peak_mb"]},
        ),
    ]
    return rows, raw

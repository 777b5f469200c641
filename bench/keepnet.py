"""Keepnet: 10,000 companies behind a server that caps pages at 100 and answers in 100 ms.

The real `KeepnetSource` runs through the real `Pipeline` into the real `DynamoStore`, whose DynamoDB
client is a counting in-memory twin (moto would take minutes for 80,000 items; `bench.dynamodb`
measures the same store against moto at a smaller size). The naive way runs in the same scenario:
pages one after the other (concurrency 1) into a store that sends one PutItem per item.

Each run happens in a fresh child process, the simulator staying in this one, so the run's wall time,
CPU and peak RSS are its own.
"""

from __future__ import annotations

import math
from typing import Any, Final

from bench.child import collect
from bench.common import Row, counting_connections, in_child
from tests.simulators import keepnet as keepnet_sim
from tests.simulators.keepnet import KeepnetSimulator, make_companies

COMPANIES: Final = 10_000
PAGE_CAP: Final = 100
LATENCY: Final = 0.1
# Round trips assumed for DynamoDB and SNS from a Lambda in the same region (p50, order of magnitude):
# the in-memory twins answer at once; the "round trips" cases sleep this long per call.
RTT: Final = {"BatchWriteItem": 0.010, "PutItem": 0.005, "Query": 0.005, "GetItem": 0.005}
SNS_RTT: Final = 0.020
CONCURRENCY: Final = 4  # KeepnetAccount.concurrency default
RATE: Final = 40.0  # KeepnetAccount.requests_per_second default
METRICS_PER_COMPANY: Final = 4
BOUND_TARGET: Final = 1.3  # the shipped defaults within 1.3x the latency bound (issue 29; 1.1x the moonshot)
BOUND_LABEL: Final = "(3 + ceil((pages-1)/c)) x latency"


def latency_bound(companies: int, *, concurrency: int = CONCURRENCY, latency: float = LATENCY) -> float:
    """The round trips that cannot overlap: the token, the first page of the over-limit listing (one page: the
    simulator's over-limit companies fit one), the listing's first page (it says how many follow), then the other
    pages `concurrency` at a time."""
    pages = max(1, math.ceil(companies / PAGE_CAP))
    return (3 + math.ceil((pages - 1) / concurrency)) * latency


class FastKeepnetSimulator(KeepnetSimulator):
    """The same answers with less simulator CPU per page: the listing is sorted and walked for its over-limit
    companies once, not per request.

    Sorting 10,000 companies for every page cost the simulator 26 ms a request, enough to make the
    simulator (not the collector) the bottleneck at 4 concurrent 100 ms requests.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._order_cache: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        self._over_cache: dict[tuple[int, int, int], list[dict[str, Any]]] = {}

    def _ordered(  # type: ignore[override]
        self, companies: list[dict[str, Any]], order_by: Any, ascending: Any
    ) -> list[dict[str, Any]]:
        key = (
            len(companies),
            id(companies[0]) if companies else 0,
            id(companies[-1]) if companies else 0,
            str(order_by).lower(),
            ascending is True,
        )
        cached = self._order_cache.get(key)
        if cached is None:
            cached = KeepnetSimulator._ordered(companies, order_by, ascending)
            self._order_cache[key] = cached
        return cached

    def _over_limit_members(self, companies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Walked once per listing, not per page: at 10,000 companies the walk cost the simulator 6 ms a page, four
        pages at once on its one GIL, tens of ms added to every round trip that were the simulator's, not the
        collector's (the collector runs in another process)."""
        key = (len(companies), id(companies[0]) if companies else 0, id(companies[-1]) if companies else 0)
        cached = self._over_cache.get(key)
        if cached is None:
            cached = self._over_cache[key] = KeepnetSimulator._over_limit_members(self, companies)
        return cached


_over_limit_original = keepnet_sim.over_limit
_over_limit_cache: dict[int, bool] = {}


def _over_limit_cached(company: dict[str, Any]) -> bool:
    key = id(company)
    if key not in _over_limit_cache:
        _over_limit_cache[key] = _over_limit_original(company)
    return _over_limit_cache[key]


def simulator(companies: int, *, latency: float = LATENCY) -> KeepnetSimulator:
    # The simulator counts over-limit companies on every page; in the bench process, remember the answer.
    keepnet_sim.over_limit = _over_limit_cached
    _over_limit_cache.clear()
    cls = counting_connections(FastKeepnetSimulator)
    sim: KeepnetSimulator = cls(companies=make_companies(companies), page_cap=PAGE_CAP, latency=latency)
    return sim


def account(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "account_id": "kn-bench",
        "base_url": url,
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "page_size": 100,
        **extra,
    }


# --- the scenario -------------------------------------------------------------------------------


def _run(sim: KeepnetSimulator, config: dict[str, Any]) -> dict[str, Any]:
    requests_before = len(sim.requests)
    peers_before = set(sim.peers)  # type: ignore[attr-defined]
    options = {k: v for k, v in config.items() if k != "account"}
    result = in_child(collect, "keepnet", account(sim.url, **config.get("account", {})), options)
    result["http_requests"] = len(sim.requests) - requests_before
    result["tcp_connections"] = len(sim.peers - peers_before)  # type: ignore[attr-defined]
    return result


def modelled_store_seconds(result: dict[str, Any]) -> float:
    """Seconds a run would spend waiting on DynamoDB and SNS at the assumed round trips (calls are serial)."""
    calls = result["dynamodb"]["calls"]
    return float(sum(RTT.get(op, 0.0) * count for op, count in calls.items()) + SNS_RTT * result["sns_publishes"])


def scenario(*, profile: bool = False) -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {}
    uncapped = {"requests_per_second": 1000}
    round_trips = {"ddb_latency": RTT, "sns_latency": SNS_RTT}
    sim = simulator(COMPANIES)
    with sim:
        raw["usagewatch_defaults"] = _run(sim, {})
        raw["usagewatch_uncapped"] = _run(sim, {"account": uncapped, "profile": profile})
        raw["naive"] = _run(sim, {"account": {"concurrency": 1, **uncapped}, "naive": True})
        raw["usagewatch_defaults_rtt"] = _run(sim, round_trips)
        raw["usagewatch_defaults_rtt_serial"] = _run(sim, {**round_trips, "writers": 1})
    small = simulator(1_000)
    with small:
        raw["usagewatch_defaults_1000"] = _run(small, {})

    for name, result in raw.items():
        expected_records = (1_000 if name.endswith("_1000") else COMPANIES) * METRICS_PER_COMPANY
        assert result["summary"]["records_written"] == expected_records, (name, result["summary"])
        assert result["summary"]["tenants_failed"] == 0, (name, result["summary"])

    pages = math.ceil(COMPANIES / PAGE_CAP)
    bound, bound_1000 = latency_bound(COMPANIES), latency_bound(1_000)
    small_run = raw["usagewatch_defaults_1000"]
    defaults, free, naive = raw["usagewatch_defaults"], raw["usagewatch_uncapped"], raw["naive"]
    rtt, serial = raw["usagewatch_defaults_rtt"], raw["usagewatch_defaults_rtt_serial"]
    # The shipped limiter: RATE req/s with a burst of `concurrency` tokens.
    rate_bound = (defaults["http_requests"] - CONCURRENCY) / RATE
    naive_real = naive["wall_s"] + modelled_store_seconds(naive)

    def facts(result: dict[str, Any]) -> dict[str, Any]:
        return {
            "cpu_s": result["cpu_s"],
            "http_requests": result["http_requests"],
            "tcp_connections": result["tcp_connections"],
            "records": result["summary"]["records_written"],
            "dynamodb_calls": result["dynamodb"]["calls"],
            "items": result["dynamodb"]["items"],
            "sns_publishes": result["sns_publishes"],
            "rss_peak_mb": result["rss_peak_mb"],
            "store_and_sns_seconds_at_assumed_rtt": round(modelled_store_seconds(result), 1),
        }

    rows = [
        Row(
            "keepnet",
            f"usagewatch, shipped defaults (c={CONCURRENCY}, {RATE:g} req/s)",
            defaults["wall_s"],
            "s",
            bound,
            BOUND_LABEL,
            target=f"<= {BOUND_TARGET:g}x bound",
            ok=defaults["wall_s"] <= BOUND_TARGET * bound,
            details={**facts(defaults), "rate_bound_s": rate_bound},
        ),
        Row(
            "keepnet",
            "usagewatch, c=4, no client rate cap",
            free["wall_s"],
            "s",
            bound,
            BOUND_LABEL,
            details=facts(free),
        ),
        Row(
            "keepnet",
            "naive: c=1, one PutItem per item",
            naive["wall_s"],
            "s",
            pages * LATENCY,
            "pages x latency",
            details=facts(naive),
        ),
        Row(
            "keepnet",
            "usagewatch defaults vs naive (in-memory DB)",
            defaults["wall_s"],
            "s",
            naive["wall_s"],
            "naive",
            target="<= 1/3 of naive",
            ok=defaults["wall_s"] <= naive["wall_s"] / 3,
        ),
        Row(
            "keepnet",
            "usagewatch no-cap vs naive (in-memory DB)",
            free["wall_s"],
            "s",
            naive["wall_s"],
            "naive",
        ),
        Row(
            "keepnet",
            "defaults + DynamoDB/SNS round trips",
            rtt["wall_s"],
            "s",
            naive_real,
            "naive + same round trips",
            target="<= 1/3 of naive",
            ok=rtt["wall_s"] <= naive_real / 3,
            details={"rtt_s": RTT, "sns_rtt_s": SNS_RTT, "naive": facts(naive), **facts(rtt)},
        ),
        Row(
            "keepnet",
            "same, batches sent by one thread (writers=1)",
            serial["wall_s"],
            "s",
            rtt["wall_s"],
            "8 writer threads (shipped)",
            details=facts(serial),
        ),
        Row(
            "keepnet",
            "1,000 companies, shipped defaults",
            small_run["wall_s"],
            "s",
            bound_1000,
            BOUND_LABEL,
            target=f"<= {BOUND_TARGET:g}x bound",
            ok=small_run["wall_s"] <= BOUND_TARGET * bound_1000,
            details=facts(small_run),
        ),
    ]
    return rows, raw


# --- profiling the per-company path -------------------------------------------------------------


def per_company(companies: int, *, profile_dump: str | None = None) -> dict[str, Any]:
    """CPU of what a run does per company, without HTTP: `company_records` -> `Trends.judge` ->
    `DynamoStore.add_tenant` -> `AccountRun.observe` over `companies` simulator companies, in this process.
    With `profile_dump`, cProfile it (one writer thread, so the profile has no thread switches) and write the stats
    there. `python -m bench.keepnet [companies] [--profile FILE]`."""
    import cProfile
    import time
    from datetime import UTC, datetime

    from bench.common import FakeDynamoDB, env_defaults

    env_defaults()
    from usagewatch.model import Period, Window
    from usagewatch.pipeline.account import AccountRun
    from usagewatch.rules import DEFAULT_RULES
    from usagewatch.sources.keepnet.mapping import company_records
    from usagewatch.store import DynamoStore
    from usagewatch.store.table import WRITERS
    from usagewatch.trends import Trends

    rows = make_companies(companies)
    now = datetime.now(UTC)
    window = Window.month(Period.of(now))
    exceeded = {str(c.get("companyResourceId")) for c in rows[::10]}
    store = DynamoStore("usagewatch-bench", client=FakeDynamoDB(), writers=1 if profile_dump else WRITERS)
    run = AccountRun("keepnet", "kn-bench", now)
    trends = Trends(store, DEFAULT_RULES)
    profiler = cProfile.Profile() if profile_dump else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for company in rows:
        usage = company_records(company, account_id="kn-bench", window=window, exceeded_ids=exceeded)
        judged = trends.judge(usage.records, now)
        store.add_tenant([r for r, _ in judged], as_of=now, collected_at=now)
        for record, findings in judged:
            run.observe(record, findings)
    if profiler is not None and profile_dump:
        profiler.disable()
        profiler.dump_stats(profile_dump)
    cpu = time.process_time() - started
    store.flush()
    return {"companies": companies, "cpu_s": round(cpu, 3), "findings": len(run.findings)}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=per_company.__doc__)
    parser.add_argument("companies", nargs="?", type=int, default=COMPANIES)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the loop and write its stats to FILE")
    arguments = parser.parse_args()
    print(json.dumps(per_company(arguments.companies, profile_dump=arguments.profile)))

"""GravityZone: 500 customer companies, Licensing API limited to 5 requests a second per key.

`getMonthlyUsage` is one call per company (partners included), so the run cannot take less than
calls / 5 seconds; the source paces at 97% of the configured rate so the server's rolling window is
never exceeded. The simulator enforces the limit (429 beyond it) and logs every licensing call's
arrival, so the scenario checks both the wall time and that no second held more than 5 calls.
"""

from __future__ import annotations

from typing import Any, Final

from bench.child import collect
from bench.common import Row, counting_connections, in_child
from tests.simulators.gravityzone import GravityZoneSimulator, make_tree, max_in_window

CUSTOMERS: Final = 500
LICENSING_RPS: Final = 5
LATENCY: Final = 0.1


def scenario(*, customers: int = CUSTOMERS) -> tuple[list[Row], dict[str, Any]]:
    cls = counting_connections(GravityZoneSimulator)
    sim: GravityZoneSimulator = cls(tree=make_tree(customers=customers), licensing_rps=LICENSING_RPS, latency=LATENCY)
    with sim:
        account = {
            "account_id": "gz-bench",
            "access_url": sim.access_url,
            "api_key": "gz-demo-key",
            # One month per run: in the first 3 days of a month the default also reads the previous one (2x).
            "previous_month_days": 0,
        }
        result = in_child(collect, "gravityzone", account, {})
        licensing_ok = sim.licensing_times(200)
        result["licensing_calls"] = len(sim.licensing_times(None))
        result["licensing_429"] = sim.rate_limited("licensing")
        result["network_429"] = sim.rate_limited("network")
        result["max_licensing_per_rolling_second"] = max_in_window(licensing_ok)
        result["http_requests"] = len(sim.requests)
        result["tcp_connections"] = len(sim.peers)  # type: ignore[attr-defined]
        result["companies"] = len(sim.customers()) + len(sim.partners())
    issue_bound = customers / LICENSING_RPS
    calls_bound = result["licensing_calls"] / LICENSING_RPS
    wall = result["wall_s"]
    assert result["summary"]["tenants_failed"] == 0, result["summary"]
    details = {
        "licensing_calls": result["licensing_calls"],
        "calls_bound_s": calls_bound,
        # The source paces at 97% of the configured rate (PACING_MARGIN): the floor it can reach.
        "pace_bound_s": round(result["companies"] / (LICENSING_RPS * 0.97), 1),
        "licensing_429": result["licensing_429"],
        "network_429": result["network_429"],
        "max_licensing_per_rolling_second": result["max_licensing_per_rolling_second"],
        "http_requests": result["http_requests"],
        "tcp_connections": result["tcp_connections"],
        "records": result["summary"]["records_written"],
        "cpu_s": result["cpu_s"],
        "dynamodb_calls": result["dynamodb"]["calls"],
        "sns_publishes": result["sns_publishes"],
    }
    rows = [
        Row(
            "gravityzone",
            f"{customers} companies at {LICENSING_RPS} req/s",
            wall,
            "s",
            issue_bound,
            f"{customers} / {LICENSING_RPS} req/s",
            target="within 10% of bound",
            ok=wall <= issue_bound * 1.10,
            details=details,
        ),
        Row(
            "gravityzone",
            "licensing 429s / max calls in any 1 s",
            float(result["licensing_429"]),
            "",
            float(result["max_licensing_per_rolling_second"]),
            "max calls in 1 s",
            target="0 and <= 5",
            ok=result["licensing_429"] == 0 and result["max_licensing_per_rolling_second"] <= LICENSING_RPS,
        ),
    ]
    return rows, result

"""ThousandEyes: 50 organisations, 240 requests a minute per organisation, 100 ms per request.

A run lists the account groups once (counted against the token's current organisation), reads the MSP
quotas once (`/v7/quotas`) and calls `/v7/usage` once per organisation, `concurrency` (4) organisations at a
time. The limit is per organisation, so 50 organisations never come near it: the bound is latency,
ceil(50 / 4) rounds of one request plus the listing and the quotas. The bound of a single 240/min bucket
(51 calls at 4/s) is reported too.
"""

from __future__ import annotations

import math
from typing import Any, Final

from bench.child import collect
from bench.common import Row, counting_connections, in_child
from tests.simulators.thousandeyes import ThousandEyesSimulator, make_orgs

ORGANISATIONS: Final = 50
RATE_PER_MINUTE: Final = 240
LATENCY: Final = 0.1
CONCURRENCY: Final = 4


def scenario() -> tuple[list[Row], dict[str, Any]]:
    cls = counting_connections(ThousandEyesSimulator)
    sim: ThousandEyesSimulator = cls(
        orgs=make_orgs(ORGANISATIONS, groups_per_org=2), rate_limit_per_minute=RATE_PER_MINUTE, latency=LATENCY
    )
    with sim:
        account = {"account_id": "te-bench", "base_url": sim.url, "bearer_token": "te-demo-token"}
        result = in_child(collect, "thousandeyes", account, {})
        result["http_requests"] = len(sim.requests)
        result["rate_limited"] = sim.rate_limited
        result["statuses"] = sorted(set(sim.statuses()))
        result["tcp_connections"] = len(sim.peers)  # type: ignore[attr-defined]
    assert result["summary"]["tenants_failed"] == 0, result["summary"]
    calls = result["http_requests"]
    latency_bound = (2 + math.ceil(ORGANISATIONS / CONCURRENCY)) * LATENCY  # account groups, /v7/quotas, usage
    single_bucket_bound = calls / (RATE_PER_MINUTE / 60)
    wall = result["wall_s"]
    details = {
        "http_requests": calls,
        "single_bucket_bound_s": single_bucket_bound,
        "tcp_connections": result["tcp_connections"],
        "records": result["summary"]["records_written"],
        "tenants": result["summary"]["tenants_collected"],
        "cpu_s": result["cpu_s"],
        "dynamodb_calls": result["dynamodb"]["calls"],
        "sns_publishes": result["sns_publishes"],
    }
    rows = [
        Row(
            "thousandeyes",
            f"{ORGANISATIONS} organisations, {RATE_PER_MINUTE}/min each",
            wall,
            "s",
            latency_bound,
            "(2 + ceil(50/4)) x latency",
            target="<= 1.5x bound",
            ok=wall <= latency_bound * 1.5,
            details=details,
        ),
        Row(
            "thousandeyes",
            "HTTP 429 answers",
            float(result["rate_limited"]),
            "",
            0.0,
            "",
            target="0",
            ok=result["rate_limited"] == 0,
        ),
        Row(
            "thousandeyes",
            "TCP connections opened / requests",
            float(result["tcp_connections"]),
            "",
            float(calls),
            "requests",
            details={"note": "one connection per request: no keep-alive reuse"}
            if result["tcp_connections"] >= calls
            else {},
        ),
    ]
    return rows, result

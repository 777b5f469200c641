"""Microsoft 365: 200 customer tenants, 100 ms per request, Graph throttling at 10 requests a second per tenant.

A run gets the partner tenant's token and lists the GDAP customers (one page of up to 300), then, `concurrency`
tenants at a time, each tenant's own token and its `subscribedSkus`: two requests in a row per tenant. Graph
throttles per app and tenant, and a run sends each tenant two requests, so the limit is never near: the bound is
latency, (2 + 2 x ceil(tenants / concurrency)) round trips. Measured at the default concurrency (8) and the
maximum (16); a 429 in either fails the row.
"""

from __future__ import annotations

import math
from typing import Any, Final

from bench.child import collect
from bench.common import Row, counting_connections, in_child
from tests.simulators.microsoft365 import CLIENT_ID, CLIENT_SECRET, PARTNER, Microsoft365Simulator, make_customers

TENANTS: Final = 200
LATENCY: Final = 0.1
TENANT_RPS: Final = 10  # the simulator's throttle per tenant (Graph's is per app and tenant)
CONCURRENCIES: Final = (8, 16)  # Microsoft365Account.concurrency default and maximum


def run(concurrency: int) -> dict[str, Any]:
    cls = counting_connections(Microsoft365Simulator)
    sim: Microsoft365Simulator = cls(
        customers=make_customers(TENANTS, unused=20, over=5), latency=LATENCY, tenant_rps=TENANT_RPS, page_cap=300
    )
    with sim:
        account = {
            "account_id": "m365-bench",
            "partner_tenant_id": PARTNER,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authority": sim.url,
            "graph_url": sim.url,
            "page_size": 300,
            "concurrency": concurrency,
        }
        result = in_child(collect, "microsoft365", account, {})
        result["http_requests"] = len(sim.requests)
        result["throttled"] = sum(sim.throttled.values())
        result["tcp_connections"] = len(sim.peers)  # type: ignore[attr-defined]
    assert result["summary"]["tenants_failed"] == 0, result["summary"]
    return result


def scenario() -> tuple[list[Row], dict[str, Any]]:
    rows: list[Row] = []
    raw: dict[str, Any] = {}
    for concurrency in CONCURRENCIES:
        result = raw[f"concurrency_{concurrency}"] = run(concurrency)
        rounds = math.ceil(TENANTS / concurrency)
        bound = (2 + 2 * rounds) * LATENCY
        wall = result["wall_s"]
        rows.append(
            Row(
                "microsoft365",
                f"{TENANTS} tenants, concurrency {concurrency}",
                wall,
                "s",
                bound,
                f"(2 + 2 x ceil({TENANTS}/{concurrency})) x latency",
                target="<= 1.5x bound",
                ok=wall <= bound * 1.5,
                details={
                    "http_requests": result["http_requests"],
                    "tcp_connections": result["tcp_connections"],
                    "records": result["summary"]["records_written"],
                    "tenants": result["summary"]["tenants_collected"],
                    "cpu_s": result["cpu_s"],
                    "sns_publishes": result["sns_publishes"],
                },
            )
        )
        rows.append(
            Row(
                "microsoft365",
                f"HTTP 429 answers (concurrency {concurrency}, {TENANT_RPS}/s per tenant)",
                float(result["throttled"]),
                "",
                0.0,
                "",
                target="0",
                ok=result["throttled"] == 0,
            )
        )
    return rows, raw

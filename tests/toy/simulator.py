"""The toy vendor's simulator over loopback HTTP: an API key, paged customers, a 429 now and then."""

from __future__ import annotations

from typing import Any

from tests.simulators.base import SimRequest, SimResponse, Simulator


class ToySimulator(Simulator):
    def __init__(self, *, api_key: str, customers: list[dict[str, Any]], page_size: int = 3) -> None:
        super().__init__()
        self.api_key, self.customers, self.page_size = api_key, customers, page_size
        self.throttle_next = 0

    def handle(self, request: SimRequest) -> SimResponse:
        if request.header("X-Api-Key") != self.api_key:
            return SimResponse(401, {"error": "bad key"})
        if request.path != "/v1/customers":
            return SimResponse(404, {"error": "no such path"})
        if self.throttle_next:
            self.throttle_next -= 1
            return SimResponse(429, {"error": "slow down"}, headers={"Retry-After": "0"})
        page = int(request.query.get("page", ["1"])[0])
        start = (page - 1) * self.page_size
        rows = self.customers[start : start + self.page_size]
        more = start + self.page_size < len(self.customers)
        return SimResponse(200, {"customers": rows, "next": str(page + 1) if more else None})


def make_customers(count: int, *, over: int) -> list[dict[str, Any]]:
    """`count` customers with 10 seats bought; the first `over` use 12."""
    return [
        {
            "id": f"toy-{i:03d}",
            "name": f"Toy Customer {i}",
            "seatsUsed": 12 if i < over else 3 + i % 4,
            "seatsBought": 10,
        }
        for i in range(count)
    ]

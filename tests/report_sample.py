"""A reconciliation the size of the demo's month (355 customers, about 1,900 lines, 1,561 of them no_contract,
six months of history) built from `Line`s, for the report page's tests: order, numbers, size and accessibility."""

from __future__ import annotations

import random
from decimal import Decimal

from usagewatch.billing_report import Reconciliation
from usagewatch.model import Period
from usagewatch.reconcile import Line, Status, money
from usagewatch.settings import Currency

PERIOD = Period(2026, 11)
HOSTILE = "<script>alert(1)</script> & Co"
VENDORS = (
    ("keepnet", "monthly_users"),
    ("gravityzone", "endpoint_monthly_usage"),
    ("microsoft365", "o365_business_premium"),
    ("thousandeyes", "cloud_units"),
    ("microsoft365", "spe_e5"),
)


def _contracted(rng: random.Random, cid: str, name: str, vendor: str, metric: str, status: Status) -> Line:
    quantity = Decimal(rng.randrange(10, 400))
    price = Decimal(rng.randrange(100, 4000)) / 100
    used = {
        "under_billed": quantity + rng.randrange(1, 60),
        "over_billed": quantity - rng.randrange(max(2, int(quantity) // 5), int(quantity)),
        "ok": quantity,
        "incomplete": quantity - 3,
    }[status]
    difference = used - quantity
    return Line(
        cid, name, vendor, metric, used, quantity, None, difference, status,
        change=Decimal(rng.randrange(-5, 6)), tenants=1,
        reason="gz-msp: failed on 2026-11-30 06:00, the company's read failed" if status == "incomplete" else None,
        unit_price=price,
        unbilled_value=money(difference * price, 2) if status == "under_billed" else None,
    )  # fmt: skip


def demo_sized(seed: int = 7, customers: int = 355) -> Reconciliation:
    """The demo's report: `customers` contracted customers (the demo has 355), each kind of line among them."""
    rng = random.Random(seed)
    lines: list[Line] = []
    history: dict[tuple[str, str, str], list[tuple[Period, Decimal]]] = {}
    no_contract = 1561 * customers // 355
    for n in range(customers):
        cid = f"customer-{n:03d}"
        name = HOSTILE if n == 7 else f"Customer {n:03d} {'GmbH' if n % 3 else 'Ltd'}"
        status: Status = "under_billed" if n % 9 == 0 else "over_billed" if n % 71 == 5 else "ok"
        if n in (12, 200, 301):
            status = "incomplete"
        vendor, metric = VENDORS[n % len(VENDORS)]
        line = _contracted(rng, cid, name, vendor, metric, status)
        lines.append(line)
        months = [PERIOD]
        for _ in range(5):
            months.insert(0, months[0].previous())
        first = rng.randrange(0, 4)  # some customers are newer than six months
        history[(cid, vendor, metric)] = [(m, line.used - rng.randrange(0, 8)) for m in months[first:-1]]
        for k in range(5 if n < no_contract - 4 * customers else 4):
            if no_contract == 0:
                break
            lines.append(
                Line(cid, name, "keepnet" if k % 2 else "microsoft365", f"sku_{k}", Decimal(rng.randrange(0, 90)),
                     None, None, None, "no_contract", change=None, tenants=1)
            )  # fmt: skip
            no_contract -= 1
    for metric in ("monthly_users", "phishing_users", "awareness_users"):
        lines.append(
            Line("", "Orphan Tenant AG", "keepnet", metric, Decimal(12), None, None, None, "unmapped",
                 change=None, tenants=1, tenant_id="kn-orphan")
        )  # fmt: skip
    lines.append(
        Line("", "Loose Ends Ltd", "gravityzone", "endpoint_monthly_usage", Decimal(4), None, None, None, "unmapped",
             change=None, tenants=1, tenant_id="gz-loose")
    )  # fmt: skip
    return Reconciliation(
        PERIOD,
        lines,
        history,
        Currency("USD", 2),
        {("gravityzone", "gz-msp"): "gz-msp: failed on 2026-11-30 06:00, the company's read failed"},
    )

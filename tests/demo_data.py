"""The demo's four vendors: simulators with realistic data, their secrets, and what the demo shows of them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.local_aws import LocalAws
from tests.simulators.gravityzone import GravityZoneSimulator, make_tree
from tests.simulators.keepnet import KeepnetSimulator, make_companies, over_limit
from tests.simulators.microsoft365 import CLIENT_ID, CLIENT_SECRET, PARTNER, Microsoft365Simulator, make_customers
from tests.simulators.thousandeyes import ThousandEyesSimulator, make_orgs
from usagewatch.notify import fmt
from usagewatch.report import table

ACCOUNTS = {"keepnet": "keepnet-msp", "gravityzone": "gz-eu", "thousandeyes": "te-main", "microsoft365": "csp-main"}
KEEPNET_SECRET = ("msp-reseller", "kn-demo-secret-5c1f0e")
GRAVITYZONE_KEY = "gz-demo-key-7a41c9d2"
THOUSANDEYES_TOKEN = "te-demo-token-3b8e61"
PERIOD = "2026-11"
# The events/ files run at this time; the ThousandEyes billing period is the one around it.
AS_OF = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


class DemoVendors:
    def __init__(self) -> None:
        self.keepnet = KeepnetSimulator(
            companies=make_companies(300, seed=2026, over_limit=4, unlimited=5),
            clients={KEEPNET_SECRET[0]: (KEEPNET_SECRET[1], "Reseller")},
            page_cap=100,
        )
        tree = make_tree(customers=30, partners=2, sub_partner=True, seed=3)
        customers = tree.customers()
        # Two companies the MSP also sells Keepnet to, named a little differently in each console.
        tree.nodes[customers[0]].name = "ACME LOGISTICS Inc."
        tree.nodes[customers[1]].name = "Globex Corporation"
        self.gravityzone = GravityZoneSimulator(
            api_key=GRAVITYZONE_KEY,
            tree=tree,
            failing_companies=[customers[6]],
            no_licence_companies=[customers[9]],
        )
        self.thousandeyes = ThousandEyesSimulator(
            token=THOUSANDEYES_TOKEN, orgs=make_orgs(2, groups_per_org=2, now=AS_OF)
        )
        m365 = make_customers(36, seed=2026, unused=8, over=2)
        m365[30].consent = "withdrawn"  # a customer who revoked the app: that tenant fails, the others go on
        self.microsoft365 = Microsoft365Simulator(customers=m365, page_cap=20, tenant_rps=5, retry_after=0.2)

    def __enter__(self) -> DemoVendors:
        for sim in self._sims():
            sim.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for sim in self._sims():
            sim.stop()

    def _sims(self) -> tuple[Any, ...]:
        return (self.keepnet, self.gravityzone, self.thousandeyes, self.microsoft365)

    def urls(self) -> dict[str, str]:
        return {
            "keepnet": self.keepnet.url,
            "gravityzone": self.gravityzone.url,
            "thousandeyes": self.thousandeyes.url,
            "microsoft365": self.microsoft365.url,
        }

    def configure(self, aws: LocalAws, *, chat: bool = False) -> dict[str, dict[str, str]]:
        """Create each vendor's secret as an operator would, and return each function's environment (with
        `chat`, the stack's ChatNotifications turned on)."""
        secrets: dict[str, list[dict[str, Any]]] = {
            "keepnet": [
                {
                    "account_id": ACCOUNTS["keepnet"],
                    "base_url": self.keepnet.url,
                    "client_id": KEEPNET_SECRET[0],
                    "client_secret": KEEPNET_SECRET[1],
                }
            ],
            "gravityzone": [
                {
                    "account_id": ACCOUNTS["gravityzone"],
                    "access_url": self.gravityzone.access_url,
                    "api_key": GRAVITYZONE_KEY,
                }
            ],
            "thousandeyes": [
                {
                    "account_id": ACCOUNTS["thousandeyes"],
                    "base_url": self.thousandeyes.url,
                    "bearer_token": THOUSANDEYES_TOKEN,
                }
            ],
            "microsoft365": [
                {
                    "account_id": ACCOUNTS["microsoft365"],
                    "partner_tenant_id": PARTNER,
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "authority": self.microsoft365.url,
                    "graph_url": self.microsoft365.url,
                }
            ],
        }
        envs = {}
        for vendor, accounts in secrets.items():
            name = f"usagewatch/{vendor}"
            aws.put_secret(name, accounts)
            envs[vendor] = aws.environment(vendor, secret_name=name, chat=chat)
        return envs

    def show_usage(self, aws: LocalAws) -> None:
        """What a billing person asks first, per vendor, read back from the table."""
        from tests.demo import say, section

        totals = {(t["vendor"], t["metric"]): t for t in aws.totals(PERIOD)}
        keepnet = aws.usage(PERIOD, vendor="keepnet")
        monthly = totals[("keepnet", "monthly_users")]
        over = [i for i in keepnet if i["metric"] == "target_users" and i.get("limit_exceeded")]
        section(f"Keepnet, {PERIOD}")
        say(f"Companies collected: {fmt(monthly['tenant_count'])}")
        say(f"Total monthly users (to bill): {fmt(monthly['value'])}")
        say(f"Companies over their licence limit (Keepnet's own verdict): {len(over)}")
        over_rows = [
            (i["tenant_name"], fmt(i["value"]), fmt(i.get("quota")), fmt(i["value"] - (i.get("quota") or 0)))
            for i in sorted(over, key=lambda i: (-i["value"], i["tenant_name"]))
        ]
        say(table(("company", "target users", "licence limit", "over by"), over_rows))

        gz = aws.usage(PERIOD, vendor="gravityzone")
        section(f"GravityZone, {PERIOD}")
        customers = {i["tenant_id"] for i in gz if i.get("billed", True)}
        partners = {i["tenant_id"] for i in gz if not i.get("billed", True)}
        say(
            f"Customer companies collected: {len(customers)}; partner companies stored as parents "
            f"(their counters include their customers', never added again): {len(partners)}"
        )
        rows = [
            (t["metric"], fmt(t["value"]), t["unit"], t["tenant_count"])
            for (vendor, _), t in sorted(totals.items())
            if vendor == "gravityzone" and t["value"]
        ]
        say(table(("metric", "total", "unit", "customers"), rows))

        te = aws.usage(PERIOD, vendor="thousandeyes")
        section("ThousandEyes, current billing period")
        rows = [
            (
                i["tenant_name"],
                i["metric"],
                fmt(i["value"]),
                fmt(i.get("quota")),
                fmt(i.get("projected")),
                f"{i['period_start'][:10]} to {i['period_end'][:10]}",
            )
            for i in sorted(te, key=lambda i: (i["tenant_name"], i["metric"]))
            if i.get("billed", True) and i["metric"] in ("cloud_units", "endpoint_agents")
        ]
        say(table(("organisation", "metric", "used", "included", "projected", "billing period"), rows))
        breakdown = sum(1 for i in te if not i.get("billed", True))
        say(f"Per account group breakdown rows stored (not added to totals again): {breakdown}")

        self._show_microsoft365(aws)

    def _show_microsoft365(self, aws: LocalAws) -> None:
        from tests.demo import say, section
        from usagewatch.rules import DEFAULT_RULES

        rule = DEFAULT_RULES.rules.unused_licences
        m365 = aws.usage(PERIOD, vendor="microsoft365")
        section(f"Microsoft 365, {PERIOD} (subscribed SKUs of every GDAP customer tenant)")
        tenants = {u["tenant_id"] for u in m365}
        say(f"Customer tenants collected: {len(tenants)}; SKU records: {len(m365)}")
        paid = [u for u in m365 if not rule.excludes("microsoft365", u["metric"])]
        say(
            f"Paid seats: {fmt(sum(u.get('quota') or 0 for u in paid))}, assigned: {fmt(sum(u['value'] for u in paid))}"
            f" (free and trial SKUs such as flow_free left out)"
        )
        unused = sorted(
            (u for u in paid if (u.get("quota") or 0) - u["value"] >= rule.threshold),
            key=lambda u: (u["value"] - (u.get("quota") or 0), u["tenant_name"]),
        )
        say(f"SKUs with paid seats nobody uses (unused_licences, info): {len(unused)}; the largest:")
        rows = [
            (
                u["tenant_name"],
                u["metric"],
                fmt(u["value"]),
                fmt(u.get("quota")),
                fmt((u.get("quota") or 0) - u["value"]),
            )
            for u in unused[:6]
        ]
        say(table(("customer", "sku", "assigned", "paid", "unused"), rows))

    def fix_one_customer(self) -> str:
        """A customer brings its users back under the licence limit; the next run resolves its alert."""
        company = next(c for c in self.keepnet.default_companies if over_limit(c))
        limit = int(company["numberOfUsers"])
        company["targetUserCount"] = limit - 5
        return f"{company['companyName']} (Keepnet) is back to {limit - 5} of {limit} users"

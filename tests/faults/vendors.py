"""One small account per vendor behind its simulator, for the rows that run across every vendor (input limits,
canary secrets). `case(vendor, secrets)` starts the simulator and gives the secret's accounts."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.faults.sims import HookedKeepnet, HookedThousandEyes
from tests.simulators.base import SimRequest, Simulator
from tests.simulators.gravityzone import GravityZoneSimulator, make_tree
from tests.simulators.keepnet import SEARCH_PATH, TOKEN_PATH, make_companies
from tests.simulators.microsoft365 import CLIENT_ID, PARTNER, SKUS_PATH, Microsoft365Simulator, make_customers
from tests.simulators.thousandeyes import make_orgs

VENDORS = ("keepnet", "thousandeyes", "gravityzone", "microsoft365")
TE_EMAIL = "ops@msp.example"


@dataclass
class Secrets:
    """The credentials planted in a vendor secret (canaries, or ordinary test values)."""

    keepnet_client_secret: str = "kn-client-secret-0a1b2c"
    te_bearer: str = "te-bearer-token-3d4e5f"
    te_basic: str = "te-basic-token-6a7b8c"
    gz_api_key: str = "gz-api-key-9d0e1f"
    m365_client_secret: str = "m365-client-secret~4a5b6c"

    def te_basic_header(self) -> str:
        """What a v6 basic-auth request carries: base64(email:token)."""
        return base64.b64encode(f"{TE_EMAIL}:{self.te_basic}".encode()).decode()

    def gz_basic_header(self) -> str:
        return base64.b64encode(f"{self.gz_api_key}:".encode()).decode()


@dataclass
class Case:
    vendor: str
    sim: Simulator
    accounts: list[dict[str, Any]]
    # Requests every run makes, for faults: the main API call, and the first call of a run.
    main: Callable[[SimRequest], bool]
    first: Callable[[SimRequest], bool]
    url_field: str = "base_url"

    @property
    def secret_name(self) -> str:
        return f"usagewatch/{self.vendor}"


@contextmanager
def case(vendor: str, secrets: Secrets | None = None, **knobs: Any) -> Iterator[Case]:
    """The vendor's simulator, started, and one account (two for ThousandEyes: v7 bearer and v6 basic auth)."""
    s = secrets or Secrets()
    if vendor == "keepnet":
        companies = make_companies(4, seed=51, over_limit=1, unlimited=1, prefix="k")
        with HookedKeepnet(
            companies=companies, clients={"msp": (s.keepnet_client_secret, "Reseller")}, page_cap=2
        ) as sim:
            account = {
                "account_id": "kn-main",
                "base_url": sim.url,
                "client_id": "msp",
                "client_secret": s.keepnet_client_secret,
                "requests_per_second": 200,
                **knobs,
            }
            yield Case(vendor, sim, [account], lambda r: r.path == SEARCH_PATH, lambda r: r.path == TOKEN_PATH)
    elif vendor == "thousandeyes":
        orgs = make_orgs(2, 1, period_start=datetime(2026, 11, 5, 8, tzinfo=UTC))
        with HookedThousandEyes(token=s.te_bearer, email=TE_EMAIL, basic_token=s.te_basic, orgs=orgs) as sim:
            common = {"base_url": sim.url, "requests_per_minute": 6000, **knobs}
            accounts = [
                {"account_id": "te-v7", "bearer_token": s.te_bearer, **common},
                {
                    "account_id": "te-v6",
                    "api_version": "v6",
                    "email": TE_EMAIL,
                    "basic_auth_token": s.te_basic,
                    **common,
                },
            ]
            yield Case(
                vendor,
                sim,
                accounts,
                lambda r: r.path.startswith(("/v7/usage", "/v6/usage")),
                lambda r: "account-groups" in r.path,
            )
    elif vendor == "gravityzone":
        tree = make_tree(customers=3, partners=1, sub_partner=False, seed=53, folder=False)
        usage = {c: {"11/2026": {"endpointMonthlyUsage": 5 + i}} for i, c in enumerate(tree.customers())}
        with GravityZoneSimulator(
            api_key=s.gz_api_key, tree=tree, usage=usage, licensing_rps=None, network_rps=None
        ) as sim:
            assert isinstance(sim, GravityZoneSimulator)
            account = {
                "account_id": "gz-main",
                "access_url": sim.access_url,
                "api_key": s.gz_api_key,
                "licensing_requests_per_second": 100,
                "network_requests_per_second": 100,
                **knobs,
            }
            yield Case(
                vendor,
                sim,
                [account],
                lambda r: r.path.endswith("/licensing"),
                lambda r: r.path.endswith("/network"),
                url_field="access_url",
            )
    elif vendor == "microsoft365":
        customers = make_customers(3, seed=57, unused=1, over=1)
        with Microsoft365Simulator(customers=customers, client_secret=s.m365_client_secret, page_cap=2) as sim:
            assert isinstance(sim, Microsoft365Simulator)
            account = {
                "account_id": "m365-main",
                "partner_tenant_id": PARTNER,
                "client_id": CLIENT_ID,
                "client_secret": s.m365_client_secret,
                "authority": sim.url,
                "graph_url": sim.url,
                "requests_per_second": 100,
                **knobs,
            }
            partner_token = f"/{PARTNER}/oauth2/v2.0/token"
            yield Case(
                vendor,
                sim,
                [account],
                lambda r: r.path == SKUS_PATH,
                lambda r: r.path == partner_token,
                url_field="graph_url",
            )
    else:  # pragma: no cover
        raise ValueError(vendor)

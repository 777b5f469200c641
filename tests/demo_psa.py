"""The demo's PSA story (docs/psa.md): a ConnectWise simulator on loopback billing the demo's customers what their
contracts say (so the under-billed ones are under-billed there too), its secret in the embedded AWS, then the
`usagewatch psa` commands as a user runs them: check, products import, sync, plan, approve, apply (dry, for real,
again), log."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tests.demo_aws import shell_command
from tests.demo_billing import PERIOD, psa_company
from tests.local_aws import LocalAws
from tests.simulators.connectwise import ConnectWiseSimulator

SECRET = "usagewatch-demo/connectwise"
PRODUCTS = {("keepnet", "monthly_users"): "KN-USERS", ("gravityzone", "endpoint_monthly_usage"): "GZ-SEATS"}


@dataclass(frozen=True)
class PsaStory:
    proposed: int
    written_first: int
    written_again: int


def psa_story(
    aws: LocalAws,
    cli: Callable[[list[str]], str],
    say: Callable[[str], None],
    workdir: Path,
    show: Callable[[list[str], str], str] | None = None,
) -> PsaStory:
    """Runs against a table the billing story filled; returns what the applies wrote (the demo test checks it)."""
    table = ["--table", aws.table_name]
    # The contracts the billing story imported (its contracts.csv): what the PSA bills in this story.
    with (workdir / "contracts.csv").open(encoding="utf-8") as file:
        contracts = list(csv.DictReader(file))
    with ConnectWiseSimulator(company_id="demo-msp") as sim:
        mapped = {k: p for k, p in PRODUCTS.items() if any((c["vendor"], c["metric"]) == k for c in contracts)}
        for product in mapped.values():
            sim.add_product(product)
        companies: dict[str, int] = {}
        agreements: dict[str, int] = {}
        for c in contracts:
            product = mapped.get((c["vendor"], c["metric"]))
            if product is None:
                continue
            cid = c["customer_id"]
            if cid not in companies:
                companies[cid] = sim.add_company(psa_company(cid), cid)
                agreements[cid] = sim.add_agreement(companies[cid], "Managed security")
            price = Decimal(c["unit_price"]) if c.get("unit_price") else Decimal("2.50")
            sim.add_addition(agreements[cid], product, Decimal(c["quantity"]), unit_price=price)
        aws.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(sim.connection()))
        say(f"ConnectWise simulator on {sim.url}: {len(companies)} companies, one agreement each, an addition per")
        say(f"contracted line at the contract's quantity; its API keys in the secret {SECRET}.")
        conn = ["--psa-secret", SECRET, *table]

        def run(argv: list[str], note: str = "", *, shell: bool = False) -> list[str]:
            """`shell`: the command also runs in `make demo-shell` (it needs no PSA), so it is remembered."""
            if shell and show is not None:
                show(argv, note)
            else:
                say(f"$ {shell_command(argv)}" + (f"   # {note}" if note else ""))
            return cli(argv).rstrip().splitlines()

        def indent(out: list[str], limit: int = 6) -> None:
            for line in out[:limit]:
                say(f"  {line}")
            if len(out) > limit:
                say(f"  ... ({len(out) - limit} more lines)")

        indent(run(["psa", "check", *conn]))
        products = workdir / "psa-products.csv"
        rows = "".join(f"{p},{vendor},{metric}\n" for (vendor, metric), p in mapped.items())
        products.write_text("product_identifier,vendor,metric\n" + rows, encoding="utf-8")
        indent(run(["psa", "products", "import", _relative(products), *conn]))
        indent(run(["psa", "sync", *conn], "contract lines from what ConnectWise bills"), 3)
        plan = run(["psa", "plan", "--period", PERIOD, *conn], "the under-billed customers' lines")
        shown = [line for line in plan if not line.startswith("  skipped ")]
        indent(shown, len(shown))
        reasons = Counter(line.rsplit(": ", 1)[-1] for line in plan if line.startswith("  skipped "))
        for reason, n in reasons.most_common():
            say(f"  skipped {n} line(s): {reason}")
        by = ["--by", "demo-operator"]
        indent(run(["psa", "approve", "--period", PERIOD, "--all", *by, *table], shell=True))
        before = len(sim.patches())
        indent(run(["psa", "apply", "--period", PERIOD, "--dry-run", *conn], "the exact requests, nothing sent"))
        indent(run(["psa", "apply", "--period", PERIOD, *by, *conn]), 4)
        first = len(sim.patches()) - before
        indent(run(["psa", "apply", "--period", PERIOD, *by, *conn], "again: nothing written"))
        again = len(sim.patches()) - before - first
        indent(run(["psa", "log", "--period", PERIOD, *table], "the audit trail", shell=True))
    say(f"ConnectWise received {first} PATCH(es) in all; the second apply sent {again}.")
    return PsaStory(_proposals(plan[0]), first, again)


def _proposals(headline: str) -> int:
    """The count in `Plan for P: N proposal(s), ...`."""
    return int(headline.split(": ", 1)[1].split(" ", 1)[0])


def _relative(path: Path) -> str:
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)

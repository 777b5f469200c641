"""The daily PSA sync's handler (functions/psa_sync -> usagewatch.psa.scheduled) on moto against the simulator:
nothing without a connection, the contracts written on the first run, nothing on the second."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import boto3
import pytest

from tests.local_aws import LocalAws
from tests.simulators.connectwise import ConnectWiseSimulator
from usagewatch.customers import Customer
from usagewatch.psa.scheduled import handle
from usagewatch.redaction import redactor
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import ProductMapping, PsaStore


@pytest.fixture
def sim() -> Iterator[ConnectWiseSimulator]:
    redactor.clear()
    with ConnectWiseSimulator() as simulator:
        yield simulator


def test_the_daily_sync_writes_once_and_does_nothing_without_a_connection(
    aws: LocalAws, sim: ConnectWiseSimulator
) -> None:
    environ = {"USAGE_TABLE_NAME": aws.table_name, "PSA_SECRET_ID": ""}
    assert handle({}, environ=environ) == {"synced": False, "reason": "no PSA connection configured"}
    store = aws.store()
    BillingStore(store).import_mappings([Customer("acme", "Acme Ltd", "ACME")], [])
    PsaStore(store).import_products([ProductMapping("connectwise", "KN-USERS", "keepnet", "monthly_users")], what="t")
    company = sim.add_company("ACME", "Acme Ltd")
    agreement = sim.add_agreement(company, "Managed services")
    sim.add_addition(agreement, "KN-USERS", Decimal(12))
    sim.add_addition(agreement, "UNMAPPED", 1)
    boto3.client("secretsmanager").create_secret(Name="cw", SecretString=json.dumps(sim.connection()))
    environ["PSA_SECRET_ID"] = "cw"
    said = handle({}, environ=environ)
    assert said == {"synced": True, "companies": 1, "lines": 2, "written": 1, "ended": 0, "unused": 1}
    (contract,) = BillingStore(store).contracts("keepnet")
    assert (contract.customer_id, contract.quantity) == ("acme", Decimal(12))
    assert contract.psa_line is not None and contract.psa_line.startswith(f"{agreement}/")
    assert handle({}, environ=environ)["written"] == 0

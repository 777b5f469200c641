"""The ConnectWise client against the simulator over HTTP on loopback: paging, conditions, throttling, the PATCH."""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.simulators.base import Fault
from tests.simulators.connectwise import ConnectWiseSimulator
from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import RetryPolicy
from usagewatch.psa.connectwise import CLIENT_ID_REFUSED, KEYS_REFUSED, ConnectWiseClient, parse_connection
from usagewatch.psa.contract import LineGoneError, LineProblem, LineRef, PsaLine, WriteOutcomeUnknownError, split_lines
from usagewatch.redaction import redactor

API = "/v4_6_release/apis/3.0"


class FakeTime:
    """A clock that moves only when slept on: waits are recorded, tests never sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += max(seconds, 0.0)


@pytest.fixture
def sim() -> Iterator[ConnectWiseSimulator]:
    redactor.clear()
    with ConnectWiseSimulator() as simulator:
        yield simulator
    redactor.clear()


def client_for(sim: ConnectWiseSimulator, clock: FakeTime | None = None, **overrides: object) -> ConnectWiseClient:
    connection = parse_connection(sim.connection(**overrides))
    if clock is None:
        return ConnectWiseClient(connection, retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.05))
    return ConnectWiseClient(connection, sleep=clock.sleep, clock=clock.clock)


def one_line_agreement(sim: ConnectWiseSimulator, quantity: Decimal | int = 40) -> tuple[int, int]:
    company = sim.add_company("ACME", "Acme Ltd")
    agreement = sim.add_agreement(company, "Managed services")
    return agreement, sim.add_addition(agreement, "GZ-ENDPOINT", quantity, unit_price=Decimal("3.50"))


def test_2500_additions_take_three_forward_only_pages(sim: ConnectWiseSimulator) -> None:
    company = sim.add_company("BIG", "Big Co")
    agreement = sim.add_agreement(company, "Everything")
    for n in range(2500):
        sim.add_addition(agreement, f"SKU-{n:04d}", Decimal(n) / 4)
    client = client_for(sim)
    [read] = list(client.active_agreements())
    lines, problems = split_lines(client.lines(read))

    assert problems == []
    assert len(lines) == 2500 and len({line.ref for line in lines}) == 2500
    assert lines[7].quantity == Decimal("1.75") and isinstance(lines[7].quantity, Decimal)
    pages = [r for r in sim.requests if r.path == f"{API}/finance/agreements/{agreement}/additions"]
    assert len(pages) == 3
    assert all(r.header("pagination-type") == "forward-only" and "page" not in r.query for r in pages)
    assert [r.query.get("pageId") for r in pages] == [
        None,
        [str(lines[999].ref.line_id)],
        [str(lines[1999].ref.line_id)],
    ]
    assert all(r.query["pageSize"] == ["1000"] for r in pages)


def test_a_next_link_to_another_host_is_not_followed(sim: ConnectWiseSimulator) -> None:
    sim.add_company("A", "A")
    sim.inject(
        Fault(
            "json",
            match=lambda r: r.path.endswith("/company/companies"),
            body=[{"id": 5, "identifier": "A", "name": "A"}],
            headers={"Link": '<http://127.0.0.2:9/v4_6_release/apis/3.0/company/companies?pageId=5>; rel="next"'},
        )
    )
    with pytest.raises(VendorDataError, match="next-page link leaves"):
        list(client_for(sim).companies())
    assert sim.count() == 2  # discovery and the one page


def test_conditions_escape_hostile_quotes(sim: ConnectWiseSimulator) -> None:
    hostile = ['Smith "Bros"', "back\\slash", 'x" or identifier!="y', "plain"]
    for identifier in hostile:
        sim.add_product(identifier)
    sim.add_product("other")
    client = client_for(sim)

    assert client.catalog_identifiers(hostile) == set(hostile)
    assert client.catalog_identifiers(['smith "bros"']) == set()  # compared exactly, though CW matches any case
    sent = [r.query["conditions"][0] for r in sim.requests if r.path.endswith("/procurement/catalog")]
    assert 'identifier="Smith \\"Bros\\""' in sent[0]


def test_the_simulator_refuses_unescaped_quotes(sim: ConnectWiseSimulator) -> None:
    """The simulator is strict enough to catch a client that forgets to escape."""
    client = client_for(sim)
    with pytest.raises(VendorApiError, match="HTTP 400"):
        client._get("/procurement/catalog", params={"conditions": 'identifier="Smith "Bros""'})


def test_cancelled_and_inactive_agreements_are_not_read(sim: ConnectWiseSimulator) -> None:
    company = sim.add_company("ACME")
    live = sim.add_agreement(company, "live")
    sim.add_agreement(company, "cancelled", cancelled=True)
    sim.add_agreement(company, "expired", status="Expired")
    gone = sim.add_agreement(company, "cancelled later")
    sim.cancel_agreement(gone)
    assert [a.id for a in client_for(sim).active_agreements()] == [live]


def test_429_retry_after_is_honoured_and_paces_everyone(sim: ConnectWiseSimulator) -> None:
    sim.add_company("ACME")
    fake = FakeTime()
    client = client_for(sim, fake)
    client.codebase()
    sim.inject(Fault("status", status=429, headers={"Retry-After": "7"}, match=lambda r: "companies" in r.path))
    assert [c.identifier for c in client.companies()] == ["ACME"]
    assert sim.statuses(f"{API}/company/companies") == [429, 200]
    assert sum(fake.waits) >= 7


def test_a_server_rate_limit_is_met_by_waiting_not_by_failing(sim: ConnectWiseSimulator) -> None:
    """The simulator's own window (3 requests a second): a real-time run still reads everything."""
    sim.rate_limit = (3, 1.0)
    agreement, addition = one_line_agreement(sim)
    client = client_for(sim)
    for _ in range(5):
        assert client.read_line(LineRef(agreement, addition)).quantity == 40
    assert 429 in sim.statuses()


def test_the_request_rate_is_settable(sim: ConnectWiseSimulator) -> None:
    agreement, addition = one_line_agreement(sim)
    fake = FakeTime()
    client = client_for(sim, fake, requests_per_second=2)
    for _ in range(9):
        client.read_line(LineRef(agreement, addition))
    assert fake.now - 1000.0 >= (10 - 1) / 2 - 0.01  # discovery + 9 reads at 2 a second


def test_5xx_is_retried_a_bounded_number_of_times(sim: ConnectWiseSimulator) -> None:
    sim.add_company("ACME")
    client = client_for(sim)
    client.codebase()
    sim.inject(Fault("status", status=503, times=-1, match=lambda r: "companies" in r.path))
    with pytest.raises(VendorApiError, match="HTTP 503") as caught:
        list(client.companies())
    assert caught.value.retryable
    assert sim.count(f"{API}/company/companies") == RetryPolicy().max_attempts


def test_patch_sets_the_absolute_quantity_and_reads_back(sim: ConnectWiseSimulator) -> None:
    agreement, addition = one_line_agreement(sim)
    client = client_for(sim)
    ref = LineRef(agreement, addition)

    written = client.set_quantity(ref, Decimal(42))
    again = client.set_quantity(ref, Decimal(42))
    fractional = client.set_quantity(ref, Decimal("12.5"))

    assert written.quantity == again.quantity == 42
    assert fractional.quantity == Decimal("12.5") == client.read_line(ref).quantity
    bodies = [r.body for r in sim.patches()]
    assert bodies[0] == b'[{"op": "replace", "path": "quantity", "value": 42}]'
    assert bodies[2] == b'[{"op": "replace", "path": "quantity", "value": 12.5}]'
    trail = client.audit_trail(agreement)
    assert [e["text"].rsplit(" ", 3)[-3:] for e in trail] == [
        ["40", "to", "42"],
        ["42", "to", "42"],
        ["42", "to", "12.5"],
    ]


def test_a_quantity_with_more_digits_than_the_wire_keeps_is_refused_before_sending(sim: ConnectWiseSimulator) -> None:
    agreement, addition = one_line_agreement(sim)
    with pytest.raises(ValueError, match="more digits"):
        client_for(sim).set_quantity(LineRef(agreement, addition), Decimal("0.12345678901234567890"))
    assert sim.patches() == []


def test_a_patch_timeout_is_surfaced_without_a_second_patch(sim: ConnectWiseSimulator) -> None:
    agreement, addition = one_line_agreement(sim)
    client = client_for(sim, timeout_seconds=0.3)
    ref = LineRef(agreement, addition)
    client.codebase()
    sim.inject(Fault("hang", seconds=0.8, match=lambda r: r.method == "PATCH"))

    with pytest.raises(WriteOutcomeUnknownError, match="re-read before writing again") as caught:
        client.set_quantity(ref, Decimal(50))
    assert caught.value.ref == ref
    assert len(sim.patches()) == 1
    # The write took although its answer was lost: only a re-read can tell.
    deadline = time.monotonic() + 5
    while not any(r.method == "PATCH" for r, _ in sim.responses) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.read_line(ref).quantity == 50


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_patch_5xx_is_surfaced_without_a_second_patch(sim: ConnectWiseSimulator, status: int) -> None:
    agreement, addition = one_line_agreement(sim)
    client = client_for(sim)
    sim.inject(Fault("status", status=status, times=-1, match=lambda r: r.method == "PATCH"))
    with pytest.raises(WriteOutcomeUnknownError) as caught:
        client.set_quantity(LineRef(agreement, addition), Decimal(50))
    assert caught.value.status == status
    assert len(sim.patches()) == 1


def test_a_throttled_patch_is_sent_again_after_retry_after(sim: ConnectWiseSimulator) -> None:
    agreement, addition = one_line_agreement(sim)
    fake = FakeTime()
    client = client_for(sim, fake)
    sim.inject(Fault("status", status=429, headers={"Retry-After": "3"}, match=lambda r: r.method == "PATCH"))
    assert client.set_quantity(LineRef(agreement, addition), Decimal(44)).quantity == 44
    assert [s for r, s in sim.responses if r.method == "PATCH"] == [429, 200]
    assert sum(fake.waits) >= 3


def test_a_removed_addition_is_gone(sim: ConnectWiseSimulator) -> None:
    agreement, addition = one_line_agreement(sim)
    client = client_for(sim)
    del sim.additions[addition]
    with pytest.raises(LineGoneError):
        client.read_line(LineRef(agreement, addition))
    with pytest.raises(LineGoneError):
        client.set_quantity(LineRef(agreement, addition), Decimal(1))


def test_an_addition_changed_between_two_reads(sim: ConnectWiseSimulator) -> None:
    _agreement, addition = one_line_agreement(sim)
    sim.change_after_reads(addition, 33, after=1)
    client = client_for(sim)
    [read] = list(client.active_agreements())
    [first] = client.lines(read)
    assert isinstance(first, PsaLine) and first.quantity == 40
    assert client.read_line(first.ref).quantity == 33


def test_cancelled_lines_and_unstorable_quantities(sim: ConnectWiseSimulator) -> None:
    company = sim.add_company("ACME")
    agreement = sim.add_agreement(company, "ms")
    sim.add_addition(agreement, "OLD", 5, cancelled="2026-06-01")
    sim.add_addition(agreement, "HUGE", Decimal("1" + "0" * 40 + ".5"))
    sim.add_addition(agreement, "FREE", 3, bill="NoCharge")
    [read] = list(client_for(sim).active_agreements())
    lines, problems = split_lines(client_for(sim).lines(read))
    old, free = lines
    assert old.cancelled_date is not None and old.cancelled_on(old.cancelled_date)
    assert not free.billable
    [huge] = problems
    assert isinstance(huge, LineProblem) and huge.product_identifier == "HUGE" and "stored exactly" in huge.reason


def test_check_reports_the_version(sim: ConnectWiseSimulator) -> None:
    info = client_for(sim).check()
    assert (info.psa, info.version, info.cloud) == ("connectwise", sim.version, True)
    [discovery, call] = sim.requests
    assert discovery.path == "/login/companyinfo/usagewatch" and discovery.header("Authorization") is None
    assert call.header("Accept") == "application/vnd.connectwise.com+json; version=2026.4"
    assert call.header("clientId") == sim.client_id
    token = base64.b64encode(f"{sim.company_id}+{sim.public_key}:{sim.private_key}".encode()).decode()
    assert call.header("Authorization") == f"Basic {token}"


def test_a_codebase_in_the_secret_skips_discovery(sim: ConnectWiseSimulator) -> None:
    client_for(sim, codebase="v4_6_release").check()
    assert [r.path for r in sim.requests] == [f"{API}/system/info"]


def test_check_says_what_is_wrong_in_one_line(sim: ConnectWiseSimulator) -> None:
    with pytest.raises(VendorAuthError) as keys:
        client_for(sim, private_key="wrong-private-key-123").check()
    assert str(keys.value) == KEYS_REFUSED
    with pytest.raises(VendorAuthError) as client_id:
        client_for(sim, client_id="not-registered").check()
    assert str(client_id.value).startswith(CLIENT_ID_REFUSED)
    with pytest.raises(VendorApiError, match="not a ConnectWise site for company nobody") as company:
        client_for(sim, company_id="nobody").check()
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{spare.getsockname()[1]}"
    with pytest.raises(VendorApiError, match="no ConnectWise site answered") as site:
        client_for(sim, site=closed).check()
    sim.inject(Fault("html", match=lambda r: r.path.startswith("/login/")))
    with pytest.raises(VendorDataError, match="did not answer as a ConnectWise site"):
        client_for(sim).check()
    for error in (keys, client_id, company, site):
        assert "\n" not in str(error.value)


def test_secrets_are_masked_in_every_error(sim: ConnectWiseSimulator, caplog: pytest.LogCaptureFixture) -> None:
    agreement, addition = one_line_agreement(sim)
    client = client_for(sim)
    token = base64.b64encode(f"{sim.company_id}+{sim.public_key}:{sim.private_key}".encode()).decode()
    echo = f"bad request from {sim.public_key}:{sim.private_key} Authorization: Basic {token}"
    sim.inject(Fault("status", status=400, body={"message": echo}, match=lambda r: r.method == "PATCH"))
    with pytest.raises(VendorApiError) as caught:
        client.set_quantity(LineRef(agreement, addition), Decimal(2))
    sim.inject(Fault("status", status=503, times=2, body={"message": echo}))
    client.read_line(LineRef(agreement, addition))
    shown = str(caught.value) + caplog.text
    assert "HTTP 400" in str(caught.value)
    for secret in (sim.private_key, sim.public_key, token):
        assert secret not in shown

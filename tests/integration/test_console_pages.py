"""The console's assign, new-customer and PSA plan pages through the function against moto's DynamoDB: each
change by an operator only (a viewer's is refused with 403 and writes nothing), bad input shown with the import's
own words, every change recorded in the trail; the PSA page reads stored proposals and approves them as
`usagewatch psa approve` does."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.console.local import HOSTILE, fill
from tests.integration.test_console_app import NOW, OPERATOR, VIEWER, call
from tests.local_aws import LocalAws
from usagewatch.customers import Customer
from usagewatch.psa.apply import AuditRecord
from usagewatch.psa.contract import LineRef
from usagewatch.psa.proposals import Proposal, ProposalStatus
from usagewatch.store import DynamoStore
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import PsaStore

CUSTOMERS = (
    Customer("initech", "Initech Corp", "CW-17"),
    Customer("acme-group", "Acme Group"),
    Customer("evil", HOSTILE),
)


def seed_customers(store: DynamoStore) -> None:
    BillingStore(store).import_mappings(CUSTOMERS, [], what="test customers")


def seed_proposals(store: DynamoStore, period: str) -> list[Proposal]:
    """Three proposals of `period` (two proposed, one approved) and one apply in the trail."""

    def made(n: int, customer: str, product: str, was: str, now: str, price: str | None) -> Proposal:
        return Proposal(f"p{n}-{period}", period, "connectwise", LineRef(700 + n, 9000 + n), customer, "keepnet",
                        "monthly_users", product, Decimal(was), Decimal(now), Decimal(price) if price else None,
                        f"{now} monthly_users used, more than the {was} billed")  # fmt: skip

    proposals = [
        made(1, "initech", "KN-USERS", "120", "130", "4.50"),
        made(2, "evil", HOSTILE, "30", "40", "2"),
        made(3, "acme-group", "KN-USERS", "10", "12", None),
    ]
    approved = Proposal(**{**_fields(proposals[2]), "status": ProposalStatus.APPROVED, "approved_by": "cli-user",
                           "approved_at": datetime(2026, 1, 5, 9, tzinfo=UTC)})  # fmt: skip
    psa = PsaStore(store)
    psa.add([*proposals[:2], approved])
    psa.append_audit(
        AuditRecord("p0-old", period, "connectwise", "700/9000", "cli-user", "ops-bot", Decimal(5), Decimal(6),
                    ProposalStatus.APPLIED, "200", "written and read back", datetime(2026, 1, 6, 10, tzinfo=UTC))
    )  # fmt: skip
    return proposals


def _fields(p: Proposal) -> dict[str, Any]:
    return {name: getattr(p, name) for name in Proposal.__dataclass_fields__}


@pytest.fixture
def filled(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    monkeypatch.setenv("USAGE_TABLE_NAME", aws.table_name)
    monkeypatch.setenv("PSA_SECRET_ID", "usagewatch/connectwise")
    fill(aws.store())
    seed_customers(aws.store())
    return aws


def _billing(aws: LocalAws) -> BillingStore:
    return BillingStore(aws.store())


def test_search_finds_customers_by_name_as_suggest_compares_them(filled: LocalAws) -> None:
    found = call("GET", "/p/customers/search", OPERATOR, query={"q": "initech", "tenant": "keepnet/kn-main/c-1"})
    assert found["statusCode"] == 200 and "Initech Corp" in found["body"] and "Assign to Initech Corp" in found["body"]
    fuzzy = call("GET", "/p/customers/search", VIEWER, query={"q": "Inietch Corp."})["body"]  # typo, legal form
    assert "Initech Corp" in fuzzy and "Assign" not in fuzzy  # no tenant and a viewer: no button
    hostile = call("GET", "/p/customers/search", OPERATOR, query={"q": "img src", "tenant": "keepnet/kn-main/c-1"})
    assert HOSTILE not in hostile["body"] and html.escape(HOSTILE, quote=False) in hostile["body"]
    assert call("GET", "/p/customers/search", None, query={"q": "initech"})["statusCode"] == 401
    none = call("GET", "/p/customers/search", OPERATOR, query={"q": "zzzz"})["body"]
    assert "No customer" in none and "zzzz" in none


def test_search_answers_at_most_ten(filled: LocalAws) -> None:
    many = [Customer(f"globex-{n}", f"Globex Division {n}") for n in range(25)]
    BillingStore(filled.store()).import_mappings(many, [], what="many")
    body = call("GET", "/p/customers/search", OPERATOR, query={"q": "globex"})["body"]
    assert body.count("<li>") == 10


def test_assign_to_another_customer_goes_through_the_import_and_the_trail(filled: LocalAws) -> None:
    panel = call("GET", "/p/unmapped/panel", OPERATOR, query={"tenant": "keepnet/kn-main/c-1"})
    assert panel["statusCode"] == 200 and 'id="customer-search"' in panel["body"]
    assert 'value="acme"' in panel["body"] and 'value="Acme Ltd"' in panel["body"]  # the form prefilled
    form = [("tenant", "keepnet/kn-main/c-1"), ("customer", "initech")]
    answer = call("POST", "/p/unmapped/assign", OPERATOR, form=form)
    assert answer["statusCode"] == 200 and "Assigned Acme Ltd to Initech Corp" in answer["body"]
    assert '<td class="tenant">Acme Ltd' not in answer["body"]  # no longer listed
    billing = _billing(filled)
    assert [(m.customer_id, str(m.tenant)) for m in billing.mappings()] == [("initech", "keepnet/kn-main/c-1")]
    assert Customer("initech", "Initech Corp", "CW-17") in billing.customers()  # its external_ref kept
    # one customer may own many tenants; a tenant mapped already is not assigned again
    call("POST", "/p/unmapped/assign", OPERATOR, form=[("tenant", "keepnet/kn-main/c-2"), ("customer", "initech")])
    again = call("POST", "/p/unmapped/assign", OPERATOR, form=[("tenant", "keepnet/kn-main/c-1"), ("customer", "evil")])
    assert "no longer unmapped" in again["body"]
    assert sorted(m.customer_id for m in _billing(filled).mappings()) == ["initech", "initech"]
    trail = call("GET", "/p/changes", VIEWER)["body"]
    assert trail.count("assign tenant") == 2 and "initech (Initech Corp)" in trail


def test_assign_refuses_an_unknown_customer_and_a_bad_tenant(filled: LocalAws) -> None:
    unknown = call("POST", "/p/unmapped/assign", OPERATOR, form=[("tenant", "keepnet/kn-main/c-1"), ("customer", "x")])
    assert unknown["statusCode"] == 400 and "no customer &#39;x&#39;: create it first" in unknown["body"]
    bad = call("POST", "/p/unmapped/assign", OPERATOR, form=[("tenant", "nosuch/a/b"), ("customer", "initech")])
    assert bad["statusCode"] == 400 and "not a tenant of a known vendor" in bad["body"]
    assert _billing(filled).mappings() == []


def test_create_a_customer_from_a_tenant_in_one_change(filled: LocalAws) -> None:
    form = [("customer_id", "acme"), ("customer_name", "Acme Ltd"), ("external_ref", "CW-3"),
            ("tenant", "keepnet/kn-main/c-1"), ("tenant_name", "Acme Ltd"), ("map", "1")]  # fmt: skip
    answer = call("POST", "/p/customers/create", OPERATOR, form=form)
    assert answer["statusCode"] == 200
    assert "Created customer Acme Ltd (acme) and mapped Acme Ltd to it" in answer["body"]
    billing = _billing(filled)
    assert Customer("acme", "Acme Ltd", "CW-3") in billing.customers()
    assert [(m.customer_id, m.tenant.tenant_id) for m in billing.mappings()] == [("acme", "c-1")]
    trail = call("GET", "/p/changes", VIEWER)["body"]
    assert "create customer" in trail and "Acme Ltd (external_ref CW-3)" in trail and "map tenant" in trail


def test_create_a_customer_on_its_own(filled: LocalAws) -> None:
    form = [("customer_id", "umbrella"), ("customer_name", "Umbrella plc")]
    answer = call("POST", "/p/customers/create", OPERATOR, form=form)
    assert "Created customer Umbrella plc (umbrella)." in answer["body"]
    assert Customer("umbrella", "Umbrella plc") in _billing(filled).customers() and _billing(filled).mappings() == []
    unticked = [("customer_id", "acme"), ("customer_name", "Acme Ltd"), ("tenant", "keepnet/kn-main/c-1")]
    answer = call("POST", "/p/customers/create", OPERATOR, form=unticked)  # the map box left unticked
    assert "Created customer Acme Ltd (acme)." in answer["body"] and _billing(filled).mappings() == []
    refused = call("POST", "/p/customers/create", OPERATOR, form=[("customer_id", "acme"), *unticked[1:]])
    assert refused["statusCode"] == 400 and "customer_id: &#39;acme&#39; already exists" in refused["body"]
    assert 'name="tenant" value="keepnet/kn-main/c-1"' in refused["body"]  # the form as it was sent:
    assert 'name="map" value="1">' in refused["body"]  # its tenant kept, the box still unticked


def test_create_refuses_bad_fields_and_an_existing_id_with_the_import_words(filled: LocalAws) -> None:
    before = _billing(filled).customers()
    bad = [("customer_id", "-bad id"), ("customer_name", "  "), ("external_ref", "r<1>")]
    answer = call("POST", "/p/customers/create", OPERATOR, form=bad)
    assert answer["statusCode"] == 400
    assert "customer_id: expected 1-64 letters, digits, &#39;.&#39;, &#39;_&#39; or &#39;-&#39;" in answer["body"]
    assert "customer_name: empty" in answer["body"]
    assert 'value="-bad id"' in answer["body"] and 'value="r&lt;1&gt;"' in answer["body"]  # the form kept as typed
    taken = [("customer_id", "initech"), ("customer_name", "Initech again"), ("tenant", "keepnet/kn-main/c-1"),
             ("map", "1")]  # fmt: skip
    answer = call("POST", "/p/customers/create", OPERATOR, form=taken)
    assert answer["statusCode"] == 400 and "customer_id: &#39;initech&#39; already exists" in answer["body"]
    assert _billing(filled).customers() == before and _billing(filled).mappings() == []
    assert "No change yet" in call("GET", "/p/changes", VIEWER)["body"]


def test_the_store_refuses_a_new_customer_created_meanwhile(filled: LocalAws) -> None:
    from usagewatch.imports import ImportRejectedError

    with pytest.raises(ImportRejectedError, match="'initech' already exists"):
        _billing(filled).import_mappings([Customer("initech", "Other")], [], what="race", new_customers=True)
    assert Customer("initech", "Initech Corp", "CW-17") in _billing(filled).customers()


def test_a_viewer_is_refused_every_new_change_and_nothing_is_written(filled: LocalAws) -> None:
    seed_proposals(filled.store(), str(NOW))
    posts = {
        "/p/unmapped/assign": [("tenant", "keepnet/kn-main/c-1"), ("customer", "initech")],
        "/p/customers/create": [("customer_id", "new"), ("customer_name", "New")],
        "/p/psa/approve": [("all", "1")],
    }
    for path, form in posts.items():
        answer = call("POST", path, VIEWER, query={"period": str(NOW)}, form=form)
        assert answer["statusCode"] == 403 and "not in the operators group" in answer["body"], path
        assert call("POST", path, None, form=form)["statusCode"] == 401
    assert call("GET", "/p/unmapped/panel", VIEWER)["statusCode"] == 403
    assert _billing(filled).mappings() == [] and len(_billing(filled).customers()) == len(CUSTOMERS)
    statuses = {p.status for p in PsaStore(filled.store()).proposals(str(NOW))}
    assert statuses == {ProposalStatus.PROPOSED, ProposalStatus.APPROVED}
    assert "No change yet" in call("GET", "/p/changes", VIEWER)["body"]


def test_the_psa_page_shows_the_month_and_its_trail(filled: LocalAws) -> None:
    assert 'hx-get="p/psa"' in call("GET", "/")["body"]  # the navigation names it: a PSA is configured
    seed_proposals(filled.store(), str(NOW))
    page = call("GET", "/p/psa", VIEWER, query={"period": str(NOW)})
    assert page["statusCode"] == 200
    body = page["body"]
    assert "Initech Corp" in body and "KN-USERS" in body and "701/9001" in body and "+10" in body
    assert "45.00" in body and "20" in body  # value: 10 x 4.50, 10 x 2
    assert HOSTILE not in body and html.escape(HOSTILE, quote=False) in body
    assert "3 proposal(s), 2 waiting for approval" in body
    assert 'by cli-user, <span class="nowrap">2026-01-05 09:00 UTC' in body and "2026-01-06 10:00 UTC" in body
    assert "usagewatch psa apply --period" in body and "Apply" not in body.replace("apply", "")  # no apply button
    assert "written and read back" in body and "ops-bot" in body  # the trail
    assert 'name="proposal"' not in body and "Approve selected" not in body  # a viewer reads only


def test_approve_selected_and_all_as_psa_approve_does(filled: LocalAws) -> None:
    seed_proposals(filled.store(), str(NOW))
    period = {"period": str(NOW)}
    page = call("GET", "/p/psa", OPERATOR, query=period)["body"]
    assert page.count('name="proposal"') == 2 and "Approve selected" in page and "Approve all 2" in page
    one = call("POST", "/p/psa/approve", OPERATOR, query=period, form=[("proposal", f"p1-{NOW}")])
    assert one["statusCode"] == 200 and f"Approved 1 proposal(s) of {NOW} as olivia." in one["body"]
    stored = {p.id: p for p in PsaStore(filled.store()).proposals(str(NOW))}
    assert stored[f"p1-{NOW}"].status is ProposalStatus.APPROVED and stored[f"p1-{NOW}"].approved_by == "olivia"
    assert stored[f"p1-{NOW}"].approved_at is not None and stored[f"p2-{NOW}"].status is ProposalStatus.PROPOSED
    stale = call("POST", "/p/psa/approve", OPERATOR, query=period, form=[("proposal", f"p1-{NOW}")])
    assert "Approved 0 proposal(s)" in stale["body"] and "1 not approved" in stale["body"]
    none = call("POST", "/p/psa/approve", OPERATOR, query=period, form=[])
    assert "no proposal was selected" in none["body"]
    every = call("POST", "/p/psa/approve", OPERATOR, query=period, form=[("all", "1")])
    assert "Approved 1 proposal(s)" in every["body"] and "Approve all" not in every["body"]
    assert {p.status for p in PsaStore(filled.store()).proposals(str(NOW))} == {ProposalStatus.APPROVED}
    trail = call("GET", "/p/changes", VIEWER)["body"]
    assert trail.count("approve PSA proposal") == 2 and "approved: 120 -&gt; 130" in trail


def test_the_psa_page_empty_and_without_a_connection(filled: LocalAws, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = call("GET", "/p/psa", VIEWER, query={"period": "2020-01"})["body"]
    assert "Nothing proposed for 2020-01." in empty and "No apply recorded for 2020-01." in empty
    monkeypatch.setenv("PSA_SECRET_ID", "")
    assert 'hx-get="p/psa"' not in call("GET", "/")["body"]
    gone = call("GET", "/p/psa", OPERATOR)
    assert gone["statusCode"] == 404 and "No PSA connection is configured" in gone["body"]
    assert call("POST", "/p/psa/approve", OPERATOR, form=[("all", "1")])["statusCode"] == 404


def test_accepting_a_suggested_existing_customer_keeps_its_external_ref(filled: LocalAws) -> None:
    BillingStore(filled.store()).import_mappings([Customer("acme", "Acme Ltd", "CW-3")], [], what="test")
    answer = call("POST", "/p/unmapped/accept", OPERATOR, form=[("tenant", "keepnet/kn-main/c-1")])
    assert "Mapped 1 tenant(s)" in answer["body"]
    billing = _billing(filled)
    assert Customer("acme", "Acme Ltd", "CW-3") in billing.customers()  # not rewritten without its reference
    assert [(m.customer_id, m.tenant.tenant_id) for m in billing.mappings()] == [("acme", "c-1")]

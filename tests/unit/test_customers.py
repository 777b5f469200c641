"""Customer name matching: normalisation, exact before fuzzy, new customers grouping vendors, never all pairs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagewatch import customers, matching
from usagewatch.customers import Customer, NamedTenant, TenantMapping, TenantRef, normalise_name
from usagewatch.matching import suggest


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Müller & Söhne GmbH", "muller and sohne"),
        ("MULLER AND SOHNE", "muller and sohne"),
        ("ACME, Inc.", "acme"),
        ("Acme Incorporated", "acme"),
        ("Van Dijk B.V.", "van dijk"),
        ("Banco Nación S.A.", "banco nacion"),
        ("O'Brien-Smith Ltd.", "o brien smith"),
        ("Contoso LLC", "contoso"),
        ("Ltd", "ltd"),  # only a legal form: kept, never empty
        ("Ørsted A/S", "orsted"),
        ("Straße & Co. KG", "strasse and"),
        ("  Fabrikam\tHoldings\n", "fabrikam holdings"),
    ],
)
def test_normalise_name(raw: str, normal: str) -> None:
    assert normalise_name(raw) == normal


@given(st.text(max_size=60))
def test_normalising_twice_changes_nothing(name: str) -> None:
    once = normalise_name(name)
    assert normalise_name(once) == once


def kn(tid: str, name: str) -> NamedTenant:
    return NamedTenant(TenantRef("keepnet", "kn", tid), name)


def gz(tid: str, name: str) -> NamedTenant:
    return NamedTenant(TenantRef("gravityzone", "gz", tid), name)


def test_exact_match_beats_fuzzy_and_scores_100() -> None:
    known = [Customer("acme", "Acme Ltd"), Customer("acmes", "Acme Systems")]
    [s] = suggest([kn("1", "ACME Inc.")], known)
    assert (s.customer_id, s.score, s.method, s.new_customer) == ("acme", 100.0, "exact", False)


def test_fuzzy_match_has_a_score_below_100() -> None:
    [s] = suggest(
        [kn("1", "Northwind Traders Intl")], [Customer("nw", "Northwind Traders International")], min_score=70
    )
    assert s.customer_id == "nw"
    assert s.method == "fuzzy"
    assert 70 <= s.score < 100


def test_a_different_company_is_not_proposed() -> None:
    [s] = suggest([kn("1", "Globex Corporation")], [Customer("nw", "Northwind Traders")])
    assert s.new_customer
    assert s.customer_id == "globex"


def test_unknown_company_in_two_vendors_becomes_one_new_customer() -> None:
    out = suggest([kn("1", "Tailspin Toys GmbH"), gz("a", "Tailspin Toys"), gz("b", "Wingtip Toys")], [])
    by_tenant = {str(s.tenant): s for s in out}
    assert by_tenant["keepnet/kn/1"].customer_id == by_tenant["gravityzone/gz/a"].customer_id == "tailspin-toys"
    assert by_tenant["gravityzone/gz/b"].customer_id == "wingtip-toys"
    assert all(s.new_customer for s in out)


def test_mapped_tenants_get_no_suggestion() -> None:
    tenant = kn("1", "Acme")
    assert suggest([tenant], [Customer("acme", "Acme")], [TenantMapping("acme", tenant.tenant)]) == []


def test_new_customer_id_never_collides() -> None:
    out = suggest([kn("1", "Acme")], [Customer("acme", "Totally Different Name")])
    assert out[0].customer_id == "acme-2"


def test_same_input_gives_same_suggestions() -> None:
    tenants = [kn(str(i), f"Company {i} Ltd") for i in range(50)]
    assert suggest(tenants, []) == suggest(list(reversed(tenants)), [])


def test_fuzzy_search_stays_inside_the_token_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """30,000 tenants must not compare all pairs: each fuzzy lookup sees only customers sharing a token."""
    compared: list[int] = []
    real = matching.process.extractOne

    def counting(query: str, choices: list[str], **kwargs: object) -> object:
        compared.append(len(choices))
        return real(query, choices, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(matching.process, "extractOne", counting)
    known = [Customer(f"c{i}", f"Customer{i} Widgets") for i in range(1000)]
    [s] = suggest([kn("x", "Customer17 Widgetz")], known)
    # "widgets" is shared by 1,000 customers: too common to block on; "customer17" narrows it to one.
    assert compared == [1]
    assert (s.customer_id, s.method) == ("c17", "fuzzy")


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("Ørsted Marine Services A/S", "orsted-marine-services"),
        ("Łódź Software", "lodz-software"),
        ("Müller & Söhne GmbH", "muller-and-sohne"),
    ],
)
def test_new_customer_ids_are_ascii_and_valid(name: str, wanted: str) -> None:
    assert customers.customer_id_for(name) == wanted
    assert customers.check_customer_id(customers.customer_id_for(name)) is None


@pytest.mark.parametrize("name", ["株式会社サクラ", "Κέντρο Υγείας Αθηνών", "株式会社サクラ 10"])
def test_names_without_ascii_letters_get_a_hashed_id(name: str) -> None:
    made = customers.customer_id_for(name)
    assert made.startswith("customer-") and customers.check_customer_id(made) is None
    assert made == customers.customer_id_for(name)


def test_different_numbers_are_different_companies() -> None:
    [s] = suggest([kn("1", "Acme Logistics Ltd 2")], [Customer("acme", "Acme Logistics Ltd")], min_score=50)
    assert s.new_customer and s.customer_id == "acme-logistics-2"

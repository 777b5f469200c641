"""The operator's CSV imports: all or nothing, every bad line by number, a valid file twice is the same."""

from __future__ import annotations

import pytest

from usagewatch.imports import ImportRejectedError, parse_contracts, parse_mappings
from usagewatch.model import Period

VENDORS = ("gravityzone", "keepnet", "thousandeyes")
METRICS = {"keepnet": {"monthly_users"}, "gravityzone": {"endpoint_monthly_usage"}}


def known(vendor: str, metric: str) -> bool:
    return metric in METRICS.get(vendor, set())


MAPPING = """customer_id,customer_name,vendor,account_id,tenant_id,external_ref
acme,Acme Ltd,keepnet,kn-msp,c-1,PSA-17
acme,Acme Ltd,gravityzone,gz-msp,5f1,PSA-17
globex,Globex,keepnet,kn-msp,c-2,
"""


def test_mapping_file_reads_customers_and_tenants() -> None:
    parsed = parse_mappings(MAPPING, vendors=VENDORS)
    assert [(c.customer_id, c.name, c.external_ref) for c in parsed.customers] == [
        ("acme", "Acme Ltd", "PSA-17"),
        ("globex", "Globex", None),
    ]
    assert [str(m.tenant) for m in parsed.mappings] == [
        "keepnet/kn-msp/c-1",
        "gravityzone/gz-msp/5f1",
        "keepnet/kn-msp/c-2",
    ]
    assert parse_mappings(MAPPING, vendors=VENDORS) == parsed


def test_every_bad_mapping_line_is_named_and_nothing_is_taken() -> None:
    text = MAPPING + "\n".join(
        [
            "bad id!,Name,keepnet,kn-msp,c-3",  # line 5
            "x,,keepnet,kn-msp,c-4",  # 6: empty name
            "y,Y,sophos,s,1",  # 7: unknown vendor
            "z,Z,keepnet,kn-msp,c-1",  # 8: tenant already mapped on line 2
            "acme,ACME Other,keepnet,kn-msp,c-9",  # 9: customer name disagrees
            "w,W,keepnet,,c-5",  # 10: empty account
        ]
    )
    with pytest.raises(ImportRejectedError) as caught:
        parse_mappings(text, vendors=VENDORS)
    lines = [n for n, _ in caught.value.problems]
    assert lines == [5, 6, 7, 8, 9, 10]
    said = str(caught.value)
    assert "6 bad line(s), nothing imported" in said
    assert "line 8: tenant keepnet/kn-msp/c-1: already mapped on line 2 (to acme)" in said
    assert "unknown 'sophos'" in said


def test_a_wrong_header_is_refused_with_the_expected_columns() -> None:
    with pytest.raises(ImportRejectedError, match=r"missing column\(s\) tenant_id.*expected customer_id"):
        parse_mappings("customer_id,customer_name,vendor,account_id\nacme,Acme,keepnet,kn\n", vendors=VENDORS)


CONTRACTS = """customer_id,vendor,metric,quantity,effective_from,effective_to,agreement,unit_price
acme,keepnet,monthly_users,100,2026-01,,AG-1,1.25
acme,keepnet,monthly_users,150,2026-11,,AG-2,1.25
globex,gravityzone,endpoint_monthly_usage,40,2026-06,2026-12,,
"""


def test_contract_versions_by_effective_month() -> None:
    parsed = parse_contracts(CONTRACTS, customers={"acme", "globex"}, vendors=VENDORS, metric_known=known)
    assert [(c.customer_id, c.quantity, str(c.effective_from)) for c in parsed] == [
        ("acme", 100, "2026-01"),
        ("acme", 150, "2026-11"),
        ("globex", 40, "2026-06"),
    ]
    assert parsed[0].unit_price == 1.25
    assert parsed[2].effective_to == Period(2026, 12)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nobody,keepnet,monthly_users,1,2026-01", "unknown customer 'nobody'"),
        ("acme,sophos,monthly_users,1,2026-01", "vendor: unknown 'sophos'"),
        ("acme,keepnet,seats,1,2026-01", "keepnet has no metric 'seats'"),
        ("acme,keepnet,monthly_users,-3,2026-01", "quantity: not a plain decimal number"),
        ("acme,keepnet,monthly_users,ten,2026-01", "quantity: not a plain decimal number"),
        ("acme,keepnet,monthly_users,1,11/2026", "effective_from: expected YYYY-MM"),
        ("acme,keepnet,monthly_users,1,2026-05,2026-02", "effective_to 2026-02 is before effective_from 2026-05"),
        ("acme,keepnet,monthly_users,1,2026-01", "duplicate of line 2"),
        ("acme,keepnet,monthly_users,nan,2026-03", "quantity: not a plain decimal number"),
    ],
)
def test_each_bad_contract_line_stops_the_import(line: str, message: str) -> None:
    with pytest.raises(ImportRejectedError) as caught:
        parse_contracts(CONTRACTS + line + "\n", customers={"acme", "globex"}, vendors=VENDORS, metric_known=known)
    [(number, said)] = caught.value.problems
    assert number == 5
    assert message in said


def test_overlapping_versions_are_refused() -> None:
    text = CONTRACTS.replace("100,2026-01,,", "100,2026-01,2026-11,")
    with pytest.raises(ImportRejectedError, match="line 3: overlaps line 2: it runs to 2026-11"):
        parse_contracts(text, customers={"acme", "globex"}, vendors=VENDORS, metric_known=known)


def test_malformed_csv_is_a_line_numbered_refusal() -> None:
    with pytest.raises(ImportRejectedError, match="line"):
        parse_contracts(
            'customer_id,vendor,metric,quantity,effective_from\n"acme,keepnet',
            customers={"acme"},
            vendors=VENDORS,
            metric_known=known,
        )

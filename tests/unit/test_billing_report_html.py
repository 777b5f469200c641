"""The monthly report's page read back with the stdlib HTML parser: the action table's order and numbers against
the reconciliation's lines, the figures at the top, the landmarks, escaping, and the size of a demo-sized month."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from html.parser import HTMLParser

from tests.report_sample import HOSTILE, demo_sized
from usagewatch.billing_html import ACTION_COLUMNS, ACTION_STATUSES, line_value, unmapped_tenants
from usagewatch.billing_report import CSV_COLUMNS, render_html


class Page(HTMLParser):
    """The action table's rows (cells as text), the figures by id, the tags seen and every text node."""

    def __init__(self) -> None:
        super().__init__()
        self.actions: list[dict[str, str]] = []
        self.heads: list[str] = []
        self.figures: dict[str, str] = {}
        self.tags: list[str] = []
        self.text: list[str] = []
        self.charts: list[str] = []
        self._table: str | None = None
        self._cell: str | None = None
        self._figure: str | None = None
        self._n = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "table":
            self._table = a.get("id")
        if self._table == "actions" and tag == "tr" and a.get("data-status"):
            self.actions.append({"status_attr": str(a["data-status"])})
            self._n = 0
        if self._table == "actions" and tag == "td" and self.actions:
            self._cell = ACTION_COLUMNS[self._n]
            self._n += 1
            if a.get("data-value") is not None:
                self.actions[-1]["data-value"] = str(a["data-value"])
        if tag == "dd" and a.get("id"):
            self._figure = str(a["id"])
        if tag == "th" and self._table == "actions":
            self.heads.append("")
        if tag == "svg":
            self.charts.append(str(a.get("aria-label") or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if tag == "dd":
            self._figure = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._table == "actions" and self.heads and len(self.actions) == 0:
            self.heads[-1] += data
        if self._cell and self.actions:
            row = self.actions[-1]
            row[self._cell] = row.get(self._cell, "") + data
        if self._figure:
            self.figures[self._figure] = self.figures.get(self._figure, "") + data


def parsed(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    return parser


def test_the_action_table_lists_every_line_to_act_on_biggest_money_first() -> None:
    result = demo_sized()
    page = parsed(render_html(result))
    expected = [x for x in result.lines if x.status in ACTION_STATUSES]
    assert len(page.actions) == len(expected) == 40 + 5 + 3 + 4
    values = [abs(Decimal(r["data-value"])) if r["data-value"] else Decimal(0) for r in page.actions]
    assert values == sorted(values, reverse=True) and values[0] > 0
    # The same lines as the reconciliation's, with the same numbers and status words as the CSV.
    got = sorted((r["status"].split("gz-msp")[0], r["metric"], r["used"], r["data-value"]) for r in page.actions)
    want = sorted(
        (x.status, x.metric, f"{int(x.used):,}", str(line_value(x, 2) or "")) for x in expected
    )  # fmt: skip
    assert got == want
    assert {r["status_attr"] for r in page.actions} == set(ACTION_STATUSES)
    # The money at the top is the sum of the table's values.
    under = sum(Decimal(r["data-value"]) for r in page.actions if r["status_attr"] == "under_billed")
    over = -sum(Decimal(r["data-value"]) for r in page.actions if r["status_attr"] == "over_billed")
    assert under == result.unbilled > 0 and over > 0
    assert page.figures["under-billed-value"] == f"USD {under:,f}"
    assert page.figures["over-billed-value"] == f"USD {over:,f}"
    acting = {x.customer_id for x in expected if x.status != "unmapped"}
    assert page.figures["customers-to-act"] == str(len(acting)) == "48"
    assert page.figures["unmapped-tenants"] == str(unmapped_tenants(result.lines)) == "2"  # tenants, not lines


def test_column_names_and_status_words_are_the_csvs() -> None:
    page = parsed(render_html(demo_sized()))
    names = [h.split(" (")[0].strip() for h in page.heads]
    assert names == list(ACTION_COLUMNS)
    assert set(names) - {"customer_name", "value"} <= set(CSV_COLUMNS)
    text = "".join(page.text)
    assert "under billed" not in text and "under_billed" in text


def test_the_page_has_a_main_landmark_an_index_and_charts_with_the_months_values() -> None:
    result = demo_sized()
    html = render_html(result)
    page = parsed(html)
    assert page.tags.count("main") == 1 and "nav" in page.tags and "details" in page.tags
    assert html.count('<li><a href="#c') == 355
    assert all(label.startswith("used 2026-06 to 2026-11: ") for label in page.charts)
    line = next(x for x in result.lines if x.customer_id == "customer-000")
    earlier = [quantity for _, quantity in result.history[("customer-000", line.vendor, line.metric)]]
    values = ",".join([*(f"{int(v):,}" for v in earlier), f"{int(line.used):,}"])
    assert f"used 2026-06 to 2026-11: {values}" in page.charts  # customer-000 has all six months
    assert "<script>" not in html and HOSTILE in "".join(page.text)


def test_no_contract_lines_are_folded_into_a_count_per_customer() -> None:
    result = demo_sized()
    html = render_html(result)
    folded = sum(int(part.split(">")[0]) for part in html.split("data-no-contract=")[1:])
    assert folded == sum(x.status == "no_contract" for x in result.lines) > 1400


def test_a_demo_sized_month_is_under_200_kb() -> None:
    """The demo collects one month: no earlier months, so no charts (`first month`)."""
    result = dataclasses.replace(demo_sized(), history={})
    size = len(render_html(result).encode())
    assert size < 200_000, size

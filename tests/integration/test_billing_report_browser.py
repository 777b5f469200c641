"""The monthly report's page in real headless Chromium: axe-core finds no serious or critical violation, and at
700 px and 1,400 px wide the action table starts on the first screen and fits the width."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import axe_violations, browser, open_page
from tests.report_sample import demo_sized
from usagewatch.billing_html import AppliedChange
from usagewatch.billing_report import render_html

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

__all__ = ["browser"]


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "billing-2026-11.html"
    path.write_text(render_html(demo_sized()), encoding="utf-8")
    return path


AXE_CUSTOMERS = 40  # every kind of line of the demo's 355 customers; axe's time grows with the page's nodes


def test_axe_finds_no_serious_or_critical_violation(browser: BrowserContext, tmp_path: Path) -> None:
    """axe on the demo's page takes half a minute; the same kinds of rows, fewer of each, meet the same rules."""
    report = demo_sized(customers=AXE_CUSTOMERS)
    assert {line.status for line in report.lines} == {line.status for line in demo_sized().lines}
    path = tmp_path / "billing-2026-11.html"
    path.write_text(render_html(report), encoding="utf-8")
    page = open_page(browser, str(path), 1400)
    found = axe_violations(page)
    assert not found, [(v["id"], v["impact"], len(v["nodes"])) for v in found]


@pytest.mark.parametrize("width", [700, 1400])
def test_the_action_table_is_on_the_first_screen(browser: BrowserContext, page_file: Path, width: int) -> None:
    page = open_page(browser, str(page_file), width, 900)
    box = page.locator("#actions").bounding_box()
    assert box is not None and box["y"] < 900 * 0.6, box
    assert box["x"] + box["width"] <= width, (box, width)  # every column, the status included, in the width
    assert page.evaluate("document.documentElement.scrollWidth") <= width


HOSTILE_PRODUCT = '<img src=x onerror="window.pwned=1">KN-USERS'


@pytest.fixture(scope="module")
def with_applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    changes = [
        AppliedChange("acme", HOSTILE_PRODUCT, "7/11", Decimal(100), Decimal(130), "bob", "alice", at, "200"),
        AppliedChange("globex", "GZ-SEATS", "8/12", Decimal("35.5"), Decimal(40), "bob", None, at, "no answer (503)"),
    ]
    path = tmp_path_factory.mktemp("report") / "billing-2026-11-psa.html"
    # The applied section on the report axe already checks whole (every kind of line, fewer customers).
    path.write_text(render_html(demo_sized(customers=AXE_CUSTOMERS), changes), encoding="utf-8")
    return path


def test_the_applied_psa_changes_render_as_text_in_the_width_and_pass_axe(
    browser: BrowserContext, with_applied: Path
) -> None:
    page = open_page(browser, str(with_applied), 700, 900)
    rows = page.locator("table.applied tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator("td").all_inner_texts() == [
        "acme", HOSTILE_PRODUCT, "100", "130", "bob", "alice", "2026-11-20T09:30+00:00", "200",
    ]  # fmt: skip
    assert page.evaluate("window.pwned") is None  # the product's markup stayed text
    assert page.locator("#psa-applied").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 700
    found = axe_violations(page)
    assert not found, [(v["id"], v["impact"], len(v["nodes"])) for v in found]

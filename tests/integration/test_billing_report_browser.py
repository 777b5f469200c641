"""The monthly report's page in real headless Chromium: axe-core finds no serious or critical violation, and at
700 px and 1,400 px wide the action table starts on the first screen and fits the width."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser import axe_violations, browser, open_page
from tests.report_sample import demo_sized
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

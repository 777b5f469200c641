"""Headless Chromium for tests that look at a page (the billing report, the web console): Debian's `chromium`
driven by Playwright, with no browser download and a fresh profile per browser.

Use the `browser` fixture (`from tests.browser import browser`) or `launch()` in a script. Where chromium is
missing the tests fail, naming the fix: `make browser` installs it (root on Debian, as CI runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page

CHROMIUM: Final = os.environ.get("USAGEWATCH_CHROMIUM", "/usr/bin/chromium")
ARGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MISSING: Final = f"chromium not found at {CHROMIUM}: run `make browser` (as root: apt-get install -y chromium)"


@contextmanager
def launch() -> Iterator[BrowserContext]:
    """A persistent context on a fresh, throw-away user-data-dir; closed and removed on exit."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(MISSING)
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="usagewatch-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=[a for a in ARGS if a != "--headless"]
            )  # Playwright gives --headless itself (headless=True)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    """One headless Chromium per test module; a test fails (not skips) where chromium is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(MISSING, pytrace=False)
    with launch() as context:
        yield context


def open_page(context: BrowserContext, path: str, width: int, height: int = 900) -> Page:
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"file://{os.path.abspath(path)}")
    return page


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict[str, Any]]:
    """axe-core's violations of the page at these impacts (axe-playwright-python injects its bundled axe)."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations: list[dict[str, Any]] = results.response["violations"]
    return [v for v in violations if v.get("impact") in impacts]

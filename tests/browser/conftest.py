"""Playwright for Python driving Debian's Chromium, headless, against pytest-django's live server.

Chromium comes from Debian (`apt-get install chromium`, done by .ci/run), never from
`playwright install`. Screenshots go to artifacts/screenshots/ (git-ignored).
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 320, "height": 740}  # the width WCAG 1.4.10 asks pages to fit


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Start Chromium for one test module; the guard below is lifted only meanwhile."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`.")
    # Playwright's sync API runs an event loop in this thread, which makes Django refuse ORM
    # calls from the test itself; the test is not async code, so lift that guard here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def open_page(browser: Browser, live_server) -> Iterator:
    """Return a function that opens a fresh browser context and page on the live server."""
    contexts = []

    def open_page(
        *, viewport: dict[str, int] = DESKTOP, javascript: bool = True, **options: object
    ) -> Page:
        context = browser.new_context(
            base_url=live_server.url,
            viewport=viewport,  # type: ignore[arg-type]
            java_script_enabled=javascript,
            accept_downloads=True,
            **options,  # type: ignore[arg-type]
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def sign_in(page: Page, email: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def assert_accessible(page: Page) -> None:
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()
    # Reflow (WCAG 1.4.10): the page itself never scrolls sideways; a wide table may, in its box.
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} is {width[0]} px wide in a {width[1]} px window"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

"""The API's docs page, for a pipeline owner finding their way: it renders under the app's CSP."""

import pytest
from playwright.sync_api import ConsoleMessage

pytestmark = pytest.mark.django_db


def test_the_api_docs_page_shows_every_operation_under_the_csp(open_page):
    page = open_page()
    complaints: list[str] = []

    def complain(message: ConsoleMessage) -> None:
        if message.type == "error":  # a script or style the CSP refused, among others
            complaints.append(message.text)

    page.on("console", complain)
    page.on("pageerror", lambda error: complaints.append(str(error)))

    page.goto("/api/v1/docs")

    page.locator(".opblock").first.wait_for()
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/api/v1/eligibility", "/api/v1/runs", "/api/v1/runs/{run_id}"} <= set(paths)
    assert complaints == []

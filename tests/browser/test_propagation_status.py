"""In a real browser, with real workers: a change on the settings page is seen reaching sinks."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import sign_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]


def test_the_settings_page_shows_a_change_reaching_every_system(policy, stack, open_page):
    stack.start_worker(beat=True)
    user = UserFactory(email="flip@example.com")
    page = open_page()
    sign_in(page, user.email, PASSWORD)
    page.goto("/settings/privacy/")
    status = page.locator("#propagation")

    # The first choice, asked as the pop-up asks it: the page is sent again after it.
    page.get_by_role("button", name="Decline").click()
    expect(status).to_contain_text(re.compile(r"Applied to \d of 3 systems"))
    expect(status).to_contain_text("Applied to 3 of 3 systems", timeout=20_000)
    # A flip of the switch then: only the facts under it are sent again.
    page.get_by_role("switch").check()
    expect(page.locator("#training-status")).to_contain_text("Saved: new and resumed chats")
    expect(status).to_contain_text(re.compile(r"Applied to \d of 3 systems"))
    expect(status).to_contain_text("Applied to 3 of 3 systems", timeout=20_000)
    stack.wait_converged()

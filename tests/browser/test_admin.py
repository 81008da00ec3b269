"""In a real browser, with a real worker: an admin queues a comparison of a sink and reads it."""

import time

import pytest
from playwright.sync_api import expect

from consent.models import EligibilityRecord
from tests.browser.conftest import screenshot
from tests.factories import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]


def test_an_admin_queues_a_repair_and_reads_what_it_found(
    lost_from_the_warehouse, admin_user, open_page
):
    page = open_page()
    page.goto("/admin/login/")
    page.get_by_label("Email address").fill(admin_user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    page.goto("/admin/consent/delivery/")
    page.get_by_label("Sink").select_option("warehouse")
    page.get_by_label("Repair the drift found").check()
    page.get_by_role("button", name="Queue a comparison with the audit log").click()

    expect(page.locator(".messagelist")).to_contain_text(
        "A comparison of warehouse with the audit log is queued."
    )
    warehouse = page.locator(
        "#sink-overview tr", has=page.get_by_role("rowheader", name="warehouse")
    )
    # The worker's comparison, seen as an admin sees it: by reloading the page.
    deadline = time.monotonic() + 60
    while "(repaired)" not in warehouse.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        page.reload()
    expect(warehouse).to_contain_text("1 missing, 0 stale, 0 extra (repaired)")
    screenshot(page, "admin-deliveries-reconciled")

    warehouse.get_by_role("link").click()

    expect(page).to_have_url("/admin/consent/reconciliation/?sink__exact=warehouse")
    expect(page.locator("#result_list")).to_contain_text("asked for in the admin")
    expect(page.locator("#result_list")).to_contain_text(admin_user.email)
    assert EligibilityRecord.objects.filter(subject_id=lost_from_the_warehouse).exists()

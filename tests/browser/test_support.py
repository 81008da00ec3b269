"""A support agent in a real browser: find a demo user, read their history, record an opt-out."""

import io
from importlib import import_module

import pytest
from django.apps import apps
from django.core.management import call_command
from playwright.sync_api import expect

from accounts.models import User
from consent import services
from consent.models import ConsentEvent, ConsentState, Delivery
from consent.outbox import outbox_drain
from consent.selectors import consent_for
from consent.services import Channel
from support.models import AccessRecord
from tests.browser.conftest import DESKTOP, PHONE, assert_accessible, screenshot, sign_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]

DEMO_PASSWORD = "demo-password-123"
SIZES = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture
def demo(settings):
    # A transactional test before this one flushed the tables, the Support group with them.
    import_module("consent.migrations.0002_support_group").create_support_group(apps, None)
    call_command("seed_demo", stdout=io.StringIO())
    for sink in settings.CONSENT_SINKS:
        outbox_drain(sink)


def agent_page(open_page, **options):
    page = open_page(**options)
    sign_in(page, "support@example.com", DEMO_PASSWORD)
    return page


def test_an_agent_finds_a_demo_user_as_they_type(demo, open_page):
    page = agent_page(open_page)
    page.get_by_role("link", name="Support").click()
    page.evaluate("window.stillTheSamePage = true")

    page.get_by_role("searchbox", name="Email, user id or subject id").press_sequentially("max@")

    result = page.get_by_role("link", name="max@example.com")
    expect(result).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("1 user shown.")
    assert page.evaluate("window.stillTheSamePage") is True
    assert page.url.endswith("/support/?q=max%40")
    result.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("max@example.com")


def test_an_agent_finds_a_user_by_subject_id_without_javascript(demo, open_page):
    subject_id = User.objects.get(email="pro@example.com").subject_id
    page = agent_page(open_page, javascript=False)
    page.goto("/support/")

    page.get_by_role("searchbox").fill(str(subject_id))
    page.get_by_role("button", name="Search").click()

    page.get_by_role("link", name="pro@example.com").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("pro@example.com")


def test_an_agent_reads_a_deleted_accounts_history_by_its_subject_id(demo, open_page):
    user = User.objects.get(email="pro@example.com")
    services.account_delete(user=user, channel=Channel.SETTINGS)
    page = agent_page(open_page)
    page.goto("/support/")

    page.get_by_role("searchbox").fill(str(user.subject_id))
    page.get_by_role("link", name="Read the deleted account's history").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("A deleted account")
    expect(page.get_by_text("Deleted on")).to_contain_text("by: The user.")
    expect(page.locator("#audit")).to_contain_text("This user's chain is intact.")
    expect(page.locator(".event").first).to_contain_text("Account deleted")
    assert_accessible(page)


def test_an_agent_reads_the_history_with_propagation_status(demo, open_page, settings):
    max_user = User.objects.get(email="max@example.com")
    page = agent_page(open_page)
    page.goto(f"/support/users/{max_user.pk}/")

    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("Declines training")
    expect(facts).to_contain_text("Version 1 is in force")
    expect(page.locator("#audit")).to_contain_text("chain is intact.")
    events = page.locator(".event")
    expect(events).to_have_count(6)
    newest = events.first
    expect(newest).to_contain_text("#6")
    expect(newest).to_contain_text("Declined training")
    for sink in settings.CONSENT_SINKS:
        expect(newest.get_by_role("list", name="Where event 6 has reached")).to_contain_text(
            f"{sink} applied"
        )
    expect(events.filter(has_text="#3")).to_contain_text("skipped: a newer change")

    page.get_by_label("Channel").select_option(label="Pop-up")
    page.get_by_role("button", name="Filter").click()
    expect(events).to_have_count(3)
    assert "channel=popup" in page.url
    assert AccessRecord.objects.filter(subject_id=max_user.subject_id).count() == 2


def test_an_agent_records_an_opt_out_with_a_reason(demo, open_page):
    pro = User.objects.get(email="pro@example.com")
    page = agent_page(open_page)
    page.goto(f"/support/users/{pro.pk}/")

    page.get_by_label("Decline training on their chats and coding sessions (opt out)").check()
    page.get_by_label("Reason").fill("Wrote to support asking to opt out of training.")
    page.get_by_label("Reference").fill("TICKET-5521")
    page.get_by_role("button", name="Record the change").click()

    expect(page.get_by_role("status")).to_contain_text("Recorded: the user declines training")
    newest = page.locator(".event").first
    expect(newest).to_contain_text("Declined training")
    expect(newest).to_contain_text("By: Support agent (support@example.com)")
    expect(newest).to_contain_text("Reason: Wrote to support asking to opt out of training.")
    expect(newest).to_contain_text("Reference: TICKET-5521")
    expect(newest.locator(".sink").first).to_contain_text("pending")
    assert consent_for(pro).state == ConsentState.DECLINED
    event = ConsentEvent.objects.filter(subject_id=pro.subject_id).latest("number")
    assert (event.channel, event.reference) == ("support", "TICKET-5521")
    assert Delivery.objects.filter(event=event).exists()


def test_an_opt_out_without_a_reason_is_refused_in_the_page(demo, open_page):
    pro = User.objects.get(email="pro@example.com")
    page = agent_page(open_page)
    page.goto(f"/support/users/{pro.pk}/")
    events_before = ConsentEvent.objects.count()

    page.get_by_label("Decline training on their chats and coding sessions (opt out)").check()
    page.get_by_label("Reference").fill("TICKET-1")
    page.get_by_role("button", name="Record the change").click()

    # The browser asks for the reason first; nothing is sent.
    assert page.get_by_label("Reason").evaluate("field => field.validity.valueMissing")
    assert ConsentEvent.objects.count() == events_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_support_pages_are_accessible(demo, open_page, size, scheme):
    max_user = User.objects.get(email="max@example.com")
    event = ConsentEvent.objects.filter(subject_id=max_user.subject_id).latest("number")
    sinks = list(Delivery.objects.filter(event=event))
    Delivery.objects.filter(pk=sinks[0].pk).update(state="dead", attempts=12, last_error="HTTP 400")
    if len(sinks) > 1:
        Delivery.objects.filter(pk=sinks[1].pk).update(
            state="pending", attempts=2, last_error="ConnectionRefusedError"
        )
    page = agent_page(open_page, viewport=SIZES[size], color_scheme=scheme)

    for name, url in [
        ("support-search", "/support/?q=m"),
        ("support-user", f"/support/users/{max_user.pk}/"),
        ("support-audit", f"/support/users/{max_user.pk}/audit/"),
        ("support-commercial", f"/support/users/{User.objects.get(email='team@example.com').pk}/"),
    ]:
        page.goto(url)
        if name == "support-user":
            expect(page.locator("#audit")).to_contain_text("chain is intact.")
        assert_accessible(page)
        screenshot(page, f"{name}-{size}-{scheme}")


def test_the_change_error_page_is_accessible(demo, open_page):
    pro = User.objects.get(email="pro@example.com")
    page = agent_page(open_page)
    page.goto(f"/support/users/{pro.pk}/")
    page.get_by_label("Decline training on their chats and coding sessions (opt out)").check()
    # As an old browser would: send the form without checking it first.
    page.locator("form.change").evaluate("form => form.setAttribute('novalidate', '')")
    page.get_by_label("Reference").fill("TICKET-1")
    page.get_by_role("button", name="Record the change").click()

    expect(page.get_by_role("alert")).to_contain_text("Reason: This field is required.")
    assert_accessible(page)
    screenshot(page, "support-change-error-desktop-light")


def test_a_user_without_the_role_gets_an_accessible_403(demo, open_page):
    page = open_page()
    sign_in(page, "pro@example.com", DEMO_PASSWORD)

    response = page.goto("/support/")

    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This page is not for your account")
    assert_accessible(page)


def test_a_date_range_ending_before_it_starts_marks_its_end(demo, open_page):
    max_user = User.objects.get(email="max@example.com")
    page = agent_page(open_page)
    page.goto(f"/support/users/{max_user.pk}/")

    page.get_by_label("From (UTC)").fill("2025-03-02")
    page.get_by_label("To (UTC)").fill("2025-03-01")
    page.get_by_role("button", name="Filter").click()

    expect(page.get_by_role("alert")).to_contain_text("before its start")
    until = page.get_by_label("To (UTC)")
    expect(until).to_have_attribute("aria-invalid", "true")
    expect(until).to_have_accessible_description("The end of the date range is before its start.")
    page.get_by_label("To (UTC)").fill("2025-03-03")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(page.get_by_label("To (UTC)")).not_to_have_attribute("aria-invalid", "true")

"""axe-core finds no violations on any page, at desktop and phone widths, light and dark.

Each page is also saved as a screenshot under artifacts/screenshots/ to show what users see.
"""

import re

import pytest
from playwright.sync_api import expect

from accounts.models import User
from consent import services
from consent.services import Channel
from tests.browser.conftest import DESKTOP, PHONE, assert_accessible, screenshot, sign_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture
def decided(policy):
    user = UserFactory.create(plan=User.Plan.MAX)
    services.notice_record_served(user=user)
    services.consent_change(user=user, allowed=True, channel="popup", shown_default=True)
    services.consent_change(user=user, allowed=False, channel="settings")
    return user


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_pop_up_open(policy, consumer, open_page, size, scheme):
    page = open_page(viewport=SIZES[size], color_scheme=scheme)
    sign_in(page, consumer.email, PASSWORD)

    assert page.get_by_role("dialog").is_visible()
    assert_accessible(page)
    screenshot(page, f"popup-{size}-{scheme}")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_signed_in_pages(decided, open_page, size, scheme):
    page = open_page(viewport=SIZES[size], color_scheme=scheme)
    sign_in(page, decided.email, PASSWORD)

    for name, url in [
        ("home", "/"),
        ("settings", "/settings/privacy/"),
        ("history", "/settings/privacy/history/"),
        ("help", "/help/privacy/"),
        ("terms", "/help/privacy/terms/1/"),
    ]:
        page.goto(url)
        assert_accessible(page)
        screenshot(page, f"{name}-{size}-{scheme}")


def test_the_settings_of_an_undecided_and_a_commercial_user(policy, consumer, open_page):
    commercial = UserFactory.create(plan=User.Plan.TEAM)
    for user, name in ((consumer, "settings-undecided"), (commercial, "settings-commercial")):
        page = open_page()
        sign_in(page, user.email, PASSWORD)
        page.goto("/settings/privacy/")
        assert_accessible(page)
        screenshot(page, f"{name}-desktop-light")


def test_the_settings_after_an_error(policy, consumer, open_page, settings):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    settings.CONSENT_TOGGLE_RATE = (1, 60)
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    page.goto("/settings/privacy/")
    switch = page.get_by_role("switch")

    switch.click()
    page.get_by_text("Saved:").wait_for()
    switch.click()
    page.get_by_role("alert").wait_for()

    assert "Try again in " in page.get_by_role("alert").inner_text()
    assert_accessible(page)
    screenshot(page, "settings-too-many-desktop-light")


@pytest.mark.parametrize(
    "url",
    [
        "/accounts/login/",
        "/accounts/signup/",
        "/accounts/signup/confirm/MQ/x/",
        "/accounts/password_reset/",
        "/help/privacy/",
    ],
)
def test_the_pages_before_signing_in(policy, open_page, url):
    page = open_page()
    page.goto(url)

    assert_accessible(page)


def test_a_wrong_password_is_said_at_the_fields(consumer, open_page):
    page = open_page()
    page.goto("/accounts/login/")
    page.get_by_label("Email address").fill(consumer.email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("do not match a confirmed account")
    for field in (page.get_by_label("Email address"), page.get_by_label("Password")):
        expect(field).to_have_attribute("aria-invalid", "true")
        expect(field).to_have_accessible_description(re.compile("do not match a confirmed account"))
    assert_accessible(page)


def test_the_switch_shows_its_state_in_forced_colours(policy, consumer, open_page):
    # Without motion the knob is where it ends at once: its .15 s slide read half-way was flaky.
    page = open_page(forced_colors="active", reduced_motion="reduce")
    sign_in(page, consumer.email, PASSWORD)
    switch = page.get_by_role("switch")
    knob = "s => [getComputedStyle(s).backgroundImage, getComputedStyle(s).backgroundPosition]"

    on = switch.evaluate(knob)
    switch.press("Space")
    expect(switch).not_to_be_checked()
    off = switch.evaluate(knob)
    # Forced colours drop background images: the knob is drawn, and moves, all the same.
    assert "none" not in (on[0], off[0]) and on[1] != off[1]

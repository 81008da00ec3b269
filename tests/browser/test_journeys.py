"""What a user does in a real browser: sign up, decide, change their mind, read the history,
choose a new password."""

import csv
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User
from consent import policies, services
from consent.models import ConsentEvent, ConsentState
from consent.selectors import consent_for
from consent.services import Channel
from tests.browser.conftest import PHONE, assert_accessible, screenshot, sign_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def decisions(user: User):
    return ConsentEvent.objects.filter(subject_id=user.subject_id, kind="decision")


def test_a_new_user_signs_up_sees_the_pop_up_and_declines(policy, open_page, mailoutbox):
    page = open_page()
    page.goto("/accounts/signup/")
    page.get_by_label("Email address").fill("new@example.com")
    page.locator("#id_password1").fill(PASSWORD)
    page.locator("#id_password2").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    (message,) = mailoutbox
    link = re.search(r"https?://\S+/confirm/\S+/", message.body)
    assert link is not None
    page.goto(link[0])
    page.get_by_label("The password you chose when signing up").fill(PASSWORD)
    page.get_by_role("button", name="Confirm and sign in").click()

    dialog = page.get_by_role("dialog", name=policy.title)
    expect(dialog).to_be_visible()
    expect(
        dialog.get_by_role("switch", name="Use my chats and coding sessions to train models")
    ).to_be_checked()
    expect(dialog.get_by_role("button", name="Not now")).to_be_visible()
    dialog.get_by_role("button", name="Decline").click()

    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("heading", name="How can I help you today?")).to_be_visible()
    user = User.objects.get(email="new@example.com")
    decision = decisions(user).get()
    assert decision.after == ConsentState.DECLINED
    assert decision.channel == "popup" and decision.shown_default is True


def test_an_undecided_user_declines_on_the_settings_page_with_javascript(
    policy, consumer, open_page
):
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    page.goto("/settings/privacy/")
    switch = page.get_by_role("switch", name="Use my chats and coding sessions to train models")

    expect(page.get_by_text("Starts On, as the terms propose.")).to_be_visible()
    switch.uncheck()
    switch.check()  # a flip records nothing until a button is pressed
    assert not decisions(consumer).exists()
    screenshot(page, "settings-asked-desktop")
    page.get_by_role("button", name="Decline").click()

    expect(page.locator(".messages")).to_contain_text("no training run that selects data")
    expect(switch).not_to_be_checked()
    expect(page.get_by_role("button", name="Decline")).to_have_count(0)
    decision = decisions(consumer).get()  # and never an "allowed" on the way
    assert decision.after == ConsentState.DECLINED
    assert decision.channel == "settings" and decision.shown_default is True
    assert_accessible(page)


def test_a_user_deletes_their_account_from_the_settings(policy, consumer, open_page):
    services.consent_change(user=consumer, allowed=True, channel=Channel.SETTINGS)
    page = open_page(viewport=PHONE)
    sign_in(page, consumer.email, PASSWORD)
    page.goto("/settings/privacy/")

    page.get_by_role("link", name="Delete your account").click()
    expect(page.get_by_role("heading", name="Delete your account")).to_be_visible()
    assert_accessible(page)
    page.get_by_label("Your password").fill("not it")
    page.get_by_role("button", name="Delete my account").click()
    expect(page.get_by_text("That is not your password.")).to_be_visible()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()

    expect(page.get_by_role("heading", name="Your account is deleted")).to_be_visible()
    assert not User.objects.filter(pk=consumer.pk).exists()
    page.goto("/settings/privacy/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_user_who_forgot_the_password_chooses_a_new_one_and_signs_in(
    policy, consumer, open_page, mail_worker
):
    mail_worker.start()  # which looks the address up and sends the mail, as in production
    page = open_page()
    page.goto("/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email address").fill(consumer.email.upper())
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your email")).to_be_visible()
    (mail,) = mail_worker.wait_for(1)
    link = re.search(r"https?://\S+/reset/\S+/", mail.get_content())
    assert link is not None

    page.goto(link[0])
    assert "/reset/" in page.url and link[0] not in page.url  # the token left the address
    assert_accessible(page)
    page.locator("#id_new_password1").fill("another-long-password-456")
    page.locator("#id_new_password2").fill("another-long-password-456")
    page.get_by_role("button", name="Save and sign in").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, consumer.email, "another-long-password-456")
    expect(page.get_by_role("dialog", name=policy.title)).to_be_visible()


def test_the_toggle_saves_with_javascript_without_a_reload(policy, consumer, open_page):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    page.goto("/settings/privacy/")
    page.evaluate("window.stillTheSamePage = true")

    switch = page.get_by_role("switch", name="Use my chats and coding sessions to train models")
    # The live region is there, empty, before the first save: one added with its text is often
    # not announced.
    expect(page.get_by_role("status")).to_have_count(1)
    switch.click()

    expect(page.get_by_role("status")).to_contain_text("Saved: new and resumed chats")
    expect(page.get_by_text("chosen on")).to_be_visible()
    expect(switch).to_be_checked()
    assert page.evaluate("window.stillTheSamePage") is True
    assert consent_for(consumer).state == ConsentState.ALLOWED

    expect(switch).to_be_focused()  # the swap keeps the focus on the switch
    page.keyboard.press("Space")
    expect(page.get_by_role("status")).to_contain_text(
        "no training run that selects data from now on will use"
    )
    expect(switch).not_to_be_checked()
    assert consent_for(consumer).state == ConsentState.DECLINED
    assert decisions(consumer).count() == 3
    page.keyboard.press("Enter")  # as Space does
    expect(page.get_by_role("status")).to_contain_text("Saved: new and resumed chats")
    expect(switch).to_be_checked()
    assert decisions(consumer).count() == 4


def test_the_toggle_saves_without_javascript(policy, consumer, open_page):
    services.consent_change(user=consumer, allowed=False, channel=Channel.SETTINGS)
    page = open_page(javascript=False)
    sign_in(page, consumer.email, PASSWORD)
    page.goto("/settings/privacy/")

    page.get_by_role("switch").check()
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".messages")).to_contain_text("Saved: new and resumed chats")
    expect(page.get_by_role("switch")).to_be_checked()
    assert consent_for(consumer).state == ConsentState.ALLOWED
    screenshot(page, "settings-saved-without-javascript-desktop")

    page.get_by_role("switch").uncheck()
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text(
        "no training run that selects data from now on will use"
    )
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_the_pop_up_works_without_javascript(policy, consumer, open_page):
    page = open_page(javascript=False)
    sign_in(page, consumer.email, PASSWORD)

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("switch").uncheck()
    dialog.get_by_role("button", name="Save my choice").click()

    expect(page.get_by_role("dialog")).to_have_count(0)
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_the_pop_up_says_why_it_is_shown_again(policy, consumer, open_page):
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    dialog = page.get_by_role("dialog", name=policy.title)
    # The terms change while the pop-up is open: the choice is refused, and the pop-up says why.
    page.evaluate(
        "document.querySelectorAll('#consent-dialog [name=policy_version]')"
        ".forEach((input) => { input.value = '99'; })"
    )
    dialog.get_by_role("button", name="Decline").click()

    expect(dialog.get_by_role("alert")).to_contain_text("The terms changed")
    assert not decisions(consumer).exists()


def test_enter_on_the_switch_saves_nothing_without_javascript(policy, consumer, open_page):
    page = open_page(javascript=False)
    sign_in(page, consumer.email, PASSWORD)
    switch = page.get_by_role("switch", name="Use my chats and coding sessions to train models")

    switch.focus()
    page.keyboard.press("Enter")  # the browser submits the form, as the switch starts On

    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("alert")).to_contain_text("Nothing was saved")
    assert not decisions(consumer).exists()
    dialog.get_by_role("button", name="Decline").click()  # the buttons still work
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_the_pop_up_by_keyboard_alone(policy, consumer, open_page):
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    switch = page.get_by_role("switch", name="Use my chats and coding sessions to train models")

    expect(page.get_by_role("heading", name=policy.title)).to_be_focused()
    page.keyboard.press("Tab")
    expect(switch).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_visible()
    # Enter toggles the switch as Space does: left to the browser, it would submit "allowed".
    page.keyboard.press("Enter")
    expect(switch).not_to_be_checked()
    page.keyboard.press("Enter")
    expect(switch).to_be_checked()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert not decisions(consumer).exists()
    page.keyboard.press("Space")
    expect(switch).not_to_be_checked()
    page.keyboard.press("Space")
    expect(switch).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Save my choice")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Decline")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Not now")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")

    expect(page.get_by_role("dialog")).to_have_count(0)
    assert consent_for(consumer).state == ConsentState.ALLOWED
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()


def test_on_a_phone_the_pop_up_opens_at_its_title_and_terms(consumer, open_page):
    now = timezone.now()
    policy = policies.policy_publish(
        title="Terms as long as real ones",
        text="\n\n".join(f"Paragraph {n} of what the terms say, at length." for n in range(12)),
        effective_at=now,
        decision_deadline=now + timedelta(days=30),
    )
    page = open_page(viewport=PHONE)
    sign_in(page, consumer.email, PASSWORD)
    dialog = page.get_by_role("dialog", name=policy.title)

    expect(dialog).to_be_visible()
    page.wait_for_function("document.activeElement.closest('dialog') !== null")
    assert dialog.evaluate("dialog => dialog.scrollTop") == 0
    expect(page.get_by_role("heading", name=policy.title)).to_be_in_viewport()
    expect(page.get_by_role("heading", name=policy.title)).to_be_focused()


def test_not_now_by_keyboard_defers_the_pop_up(policy, consumer, open_page):
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)

    for _ in range(4):  # from the title: the switch, the two choices, "Not now"
        page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Not now")).to_be_focused()
    page.keyboard.press("Enter")

    expect(page.get_by_role("dialog")).to_have_count(0)
    page.reload()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert consent_for(consumer).deferred_until is not None


def test_after_the_deadline_the_app_waits_until_the_user_chooses(consumer, open_page):
    now = timezone.now()
    policies.policy_publish(
        title="Terms with a past deadline",
        text="Choose to continue.",
        effective_at=now - timedelta(days=40),
        decision_deadline=now - timedelta(days=1),
        now=now - timedelta(days=40),
    )
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    dialog = page.get_by_role("dialog", name="Terms with a past deadline")

    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("button", name="Not now")).to_have_count(0)
    expect(page.get_by_role("textbox", name="Message")).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_visible()
    assert_accessible(page)
    screenshot(page, "popup-after-deadline-desktop-light")

    dialog.get_by_role("link", name="Privacy settings").click()
    expect(page.get_by_role("heading", name="Privacy settings")).to_be_visible()
    page.get_by_role("link", name="Help").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Help")

    page.goto("/")
    page.get_by_role("dialog").get_by_role("button", name="Decline").click()
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    assert consent_for(consumer).state == ConsentState.DECLINED


def test_a_gpc_browser_sees_the_default_off_and_why(policy, consumer, open_page):
    page = open_page(extra_http_headers={"Sec-GPC": "1"})
    sign_in(page, consumer.email, PASSWORD)
    dialog = page.get_by_role("dialog")

    expect(dialog).to_contain_text("Your browser's opt-out signal was honoured")
    expect(dialog.get_by_role("switch")).not_to_be_checked()
    assert_accessible(page)
    screenshot(page, "popup-gpc-desktop")
    dialog.get_by_role("button", name="Save my choice").click()

    decision = decisions(consumer).get()
    assert decision.after == ConsentState.DECLINED and decision.gpc is True


def test_reading_the_history_and_downloading_the_csv(policy, consumer, open_page):
    for allowed in (True, False, True):
        services.consent_change(user=consumer, allowed=allowed, channel="settings")
    page = open_page()
    sign_in(page, consumer.email, PASSWORD)
    page.goto("/settings/privacy/history/")

    expect(page.locator(".event")).to_have_count(3)
    expect(page.locator(".event").first).to_contain_text("Allowed training")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").click()
    rows = list(csv.DictReader(download.value.path().read_text(encoding="utf-8").splitlines()))
    assert [row["after"] for row in rows] == ["allowed", "declined", "allowed"]

    with page.expect_download() as download:
        page.get_by_role("link", name="Download receipt of event 3").click()
    assert '"type": "given"' in download.value.path().read_text(encoding="utf-8")


def test_older_history_loads_in_place_and_without_javascript(policy, open_page):
    user = UserFactory.create(plan=User.Plan.MAX)
    for n in range(25):
        services.consent_change(user=user, allowed=n % 2 == 0, channel="settings")

    for javascript in (True, False):
        page = open_page(javascript=javascript, viewport=PHONE)
        sign_in(page, user.email, PASSWORD)
        page.goto("/settings/privacy/history/")
        expect(page.locator(".event")).to_have_count(20)
        page.get_by_role("link", name="Show older events").focus()
        page.keyboard.press("Enter")
        expect(page.locator(".event")).to_have_count(25 if javascript else 5)
        if javascript:  # the focus goes to the first event loaded, not back to the page's start
            expect(page.locator(".event").nth(20)).to_be_focused()

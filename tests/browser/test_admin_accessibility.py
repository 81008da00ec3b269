"""axe-core finds no violations in the admin's pages of our models, as on every other page."""

import io
from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.auth.models import Group
from django.core.management import call_command

from accounts.models import User
from consent.models import ConsentEvent, ConsentPolicy, Delivery
from tests.browser.conftest import assert_accessible

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "warehouse"]),
]


def test_the_admin_pages_are_accessible(open_page):
    import_module("consent.migrations.0002_support_group").create_support_group(apps, None)
    call_command("seed_demo", stdout=io.StringIO())
    page = open_page()
    page.goto("/admin/login/")
    failures = []
    try:
        assert_accessible(page)
    except AssertionError as error:
        failures.append(f"login: {error}")
    page.get_by_label("Email address").fill("admin@example.com")
    page.get_by_label("Password").fill("demo-password-123")
    page.get_by_role("button", name="Log in").click()

    for url in [
        "/admin/",
        "/admin/consent/consentpolicy/",
        f"/admin/consent/consentpolicy/{ConsentPolicy.objects.get().pk}/change/",
        "/admin/consent/consentpolicy/add/",
        "/admin/consent/consentevent/",
        f"/admin/consent/consentevent/{ConsentEvent.objects.earliest('pk').pk}/change/",
        "/admin/consent/delivery/",
        f"/admin/consent/delivery/{Delivery.objects.earliest('pk').pk}/change/",
        "/admin/consent/reconciliation/",
        "/admin/consent/trainingrun/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{User.objects.get(email='max@example.com').pk}/change/",
        "/admin/accounts/apitoken/",
        "/admin/accounts/apitoken/add/",
        "/admin/support/accessrecord/",
        "/admin/auth/group/",
        "/admin/auth/group/add/",
        f"/admin/auth/group/{Group.objects.get(name='Support').pk}/change/",
    ]:
        page.goto(url)
        try:
            assert_accessible(page)
        except AssertionError as error:
            failures.append(f"{url}: {error}")
    assert not failures, "\n".join(failures)

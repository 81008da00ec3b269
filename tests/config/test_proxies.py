"""Behind a proxy every request comes from the proxy: the client's address is the one it names,
for the proxies the deployment trusts and no others."""

import ipaddress
import uuid

import pytest
from django.test import Client

from config.proxies import client_address
from consent.models import ConsentEvent
from tests.factories import PASSWORD, UserFactory

PROXY = "10.0.0.5"


@pytest.fixture
def behind_a_proxy(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/24")]


@pytest.mark.parametrize(
    ("remote", "forwarded", "client"),
    [
        (PROXY, "203.0.113.9", "203.0.113.9"),
        (PROXY, "198.51.100.1, 10.0.0.7", "198.51.100.1"),  # two proxies of ours
        (PROXY, "127.0.0.1, 203.0.113.9", "203.0.113.9"),  # what a client wrote comes first
        (PROXY, "", PROXY),  # the proxy's own request
        (PROXY, "10.0.0.7", "10.0.0.7"),  # nothing but proxies: the farthest
        ("203.0.113.9", "127.0.0.1", "203.0.113.9"),  # not through a proxy of ours
        (PROXY, "unknown", PROXY),  # not an address: the proxy's word ends there
        (PROXY, "198.51.100.1, 203.0.113.9:443", PROXY),
        ("::ffff:203.0.113.9", "", "203.0.113.9"),  # IPv4 on a dual-stack socket
        (PROXY, "::ffff:198.51.100.1", "198.51.100.1"),
    ],
)
def test_the_client_is_the_nearest_address_no_trusted_proxy_holds(
    rf, behind_a_proxy, remote, forwarded, client
):
    request = rf.get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == client


def test_without_trusted_proxies_the_header_is_never_read(rf):
    request = rf.get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_address(request) == PROXY


def through_the_proxy(client_ip: str) -> Client:
    return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=client_ip)


def sign_in(browser: Client, email: str, password: str) -> int:
    response = browser.post("/accounts/login/", {"username": email, "password": password})
    return response.status_code


@pytest.mark.django_db
def test_one_client_behind_the_proxy_locked_out_locks_out_nobody_else(behind_a_proxy):
    attacker, user = through_the_proxy("203.0.113.9"), through_the_proxy("198.51.100.20")
    account = UserFactory()
    for n in range(5):
        sign_in(attacker, f"made-up-{n}@example.com", "wrong-password")

    assert sign_in(attacker, account.email, PASSWORD) == 429  # that address is locked out
    assert sign_in(user, account.email, PASSWORD) == 302  # the proxy's other clients are not


@pytest.mark.django_db
def test_addresses_of_one_ipv6_64_are_one_client_to_the_sign_in_lock(behind_a_proxy):
    accounts = [UserFactory() for _ in range(2)]
    for n in range(5):  # one password tried on many accounts, from ever new addresses of one /64
        sign_in(through_the_proxy(f"2001:db8:0:1::{n + 1}"), f"made-up-{n}@example.com", "guess")

    assert sign_in(through_the_proxy("2001:db8:0:1::99"), accounts[0].email, PASSWORD) == 429
    assert sign_in(through_the_proxy("2001:db8:0:2::1"), accounts[1].email, PASSWORD) == 302


@pytest.mark.django_db
def test_every_ipv4_client_of_a_dual_stack_socket_is_its_own(settings):
    settings.ACCOUNT_REQUEST_RATE = (1, 3600)
    first, second = (
        Client(REMOTE_ADDR=f"::ffff:{ipaddress.IPv4Address(uuid.uuid4().int >> 96)}")
        for _ in range(2)
    )  # new to the cache

    assert first.post("/accounts/password_reset/", {"email": "a@example.com"}).status_code == 302
    assert second.post("/accounts/password_reset/", {"email": "b@example.com"}).status_code == 302


@pytest.mark.django_db
def test_metrics_through_a_proxy_on_this_machine_are_not_for_its_clients(settings):
    # /metrics lets in the loopback network: a proxy on loopback must not let in the world.
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]
    outside = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")

    assert outside.get("/metrics").status_code == 403
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200  # a local scraper


@pytest.mark.django_db
def test_a_proxy_that_passes_on_what_is_not_an_address_breaks_no_sign_in(behind_a_proxy):
    browser = through_the_proxy("unknown")

    assert sign_in(browser, "nobody@example.com", "wrong-password") == 200


@pytest.mark.django_db
def test_the_audit_log_keeps_the_clients_network_not_the_proxys(policy, behind_a_proxy):
    browser = through_the_proxy("203.0.113.9")
    browser.force_login(UserFactory(plan="pro"))

    form = {"policy_version": policy.version, "allowed": ["off", "on"]}
    assert browser.post("/settings/privacy/", form).status_code == 302

    assert ConsentEvent.objects.get().ip_prefix == "203.0.113.0/24"

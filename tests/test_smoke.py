"""The try-out path: the app on its embedded default (SQLite, a file-system broker), no env."""

import http.cookiejar
import json
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG_VARIABLES = (
    "DATABASE_URL",
    "WAREHOUSE_DATABASE_URL",
    "CELERY_BROKER_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
)

pytestmark = pytest.mark.slow


@pytest.fixture
def embedded_app(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    env["DATA_DIR"] = str(tmp_path)

    def manage(*args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)

    manage("migrate", "--no-input", "-v", "0")
    manage("seed_demo")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env=env,
    )
    try:
        wait_for_port(port, timeout=30)
        yield f"http://127.0.0.1:{port}", tmp_path
    finally:
        server.terminate()
        server.wait(timeout=10)


class Browser:
    """A cookie-keeping client that posts forms with their CSRF token, as a browser would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def open(self, path: str):
        return self.opener.open(f"{self.base}{path}")

    def post(self, path: str, fields: dict[str, str]):
        csrf = next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": csrf}).encode()
        return self.opener.open(urllib.request.Request(f"{self.base}{path}", data=data))

    def sign_in(self, email: str):
        self.open("/accounts/login/")
        return self.post("/accounts/login/", {"username": email, "password": "demo-password-123"})


def test_the_embedded_default_serves_a_demo_user(embedded_app):
    base, data_dir = embedded_app
    browser = Browser(base)

    home = browser.sign_in("free@example.com")
    health = browser.open("/healthz")

    assert home.geturl() == f"{base}/"
    assert "How can I help you today?" in home.read().decode()
    assert json.loads(health.read()) == {"status": "ok", "database": "ok", "broker": "ok"}
    assert (data_dir / "db.sqlite3").exists()


def test_the_embedded_default_saves_a_change_of_the_setting(embedded_app):
    base, _ = embedded_app
    browser = Browser(base)

    browser.sign_in("pro@example.com")
    page = browser.open("/settings/privacy/").read().decode()
    version = re.search(r'name="policy_version" value="(\d+)"', page)
    assert version is not None
    saved = browser.post("/settings/privacy/", {"policy_version": version[1], "allowed": "off"})

    assert "no training run that selects data from now on will use" in saved.read().decode()
    history = browser.open("/settings/privacy/history/?format=json").read()
    assert json.loads(history)["events"][-1]["after"] == "declined"
    page = browser.open("/settings/privacy/history/").read().decode()
    assert page.index("Declined training") < page.index("Allowed training")


def test_the_embedded_default_shows_support_a_users_history(embedded_app):
    base, _ = embedded_app
    browser = Browser(base)
    browser.sign_in("support@example.com")

    found = browser.open("/support/?q=max%40example.com").read().decode()
    user_id = re.search(r'href="/support/users/(\d+)/"', found)
    assert user_id is not None
    page = browser.open(f"/support/users/{user_id[1]}/").read().decode()

    assert "Declined training on chats and coding sessions" in page
    assert 'name="reason"' in page and 'name="kind"' in page

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


def test_the_embedded_default_serves_a_demo_user(embedded_app):
    base, data_dir = embedded_app
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))

    browser.open(f"{base}/accounts/login/")
    csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")
    form = urllib.parse.urlencode(
        {
            "username": "free@example.com",
            "password": "demo-password-123",
            "csrfmiddlewaretoken": csrf,
        }
    ).encode()
    home = browser.open(urllib.request.Request(f"{base}/accounts/login/", data=form))
    health = browser.open(f"{base}/healthz")

    assert home.geturl() == f"{base}/"
    assert "How can I help you today?" in home.read().decode()
    assert json.loads(health.read()) == {"status": "ok", "database": "ok", "broker": "ok"}
    assert (data_dir / "db.sqlite3").exists()


def test_the_embedded_default_saves_a_change_of_the_setting(embedded_app):
    base, _ = embedded_app
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))

    def post(path: str, fields: dict[str, str]):
        csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": csrf}).encode()
        return browser.open(urllib.request.Request(f"{base}{path}", data=data))

    browser.open(f"{base}/accounts/login/")
    post("/accounts/login/", {"username": "pro@example.com", "password": "demo-password-123"})
    page = browser.open(f"{base}/settings/privacy/").read().decode()
    version = re.search(r'name="policy_version" value="(\d+)"', page)
    assert version is not None
    saved = post("/settings/privacy/", {"policy_version": version[1], "allowed": "off"})

    assert "will not be used for training" in saved.read().decode()
    history = browser.open(f"{base}/settings/privacy/history/?format=json").read()
    assert json.loads(history)["events"][-1]["after"] == "declined"
    # The history page reads its events and deliveries with consent/sql.py's plain SQL.
    page = browser.open(f"{base}/settings/privacy/history/").read().decode()
    assert page.index("Declined training") < page.index("Allowed training")


def test_the_embedded_default_shows_support_a_users_history(embedded_app):
    base, _ = embedded_app
    cookies = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))
    browser.open(f"{base}/accounts/login/")
    csrf = next(cookie.value for cookie in cookies if cookie.name == "csrftoken")
    form = {"username": "support@example.com", "password": "demo-password-123"}
    data = urllib.parse.urlencode({**form, "csrfmiddlewaretoken": csrf}).encode()
    browser.open(urllib.request.Request(f"{base}/accounts/login/", data=data))

    found = browser.open(f"{base}/support/?q=max%40example.com").read().decode()
    user_id = re.search(r'href="/support/users/(\d+)/"', found)
    assert user_id is not None
    # The page reads through consent/sql.py and renders its forms with Jinja2, on SQLite too.
    page = browser.open(f"{base}/support/users/{user_id[1]}/").read().decode()

    assert "Declined training on chats and coding sessions" in page
    assert 'name="reason"' in page and 'name="kind"' in page

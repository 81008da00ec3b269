"""Settings read from the environment: production's are clean under check --deploy."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import RequestFactory

from consent.notes import Signer

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "SECRET_KEY": "a-production-secret-of-fifty-characters-or-more-0123456789",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "consent.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/consent",
    "WAREHOUSE_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/consent_warehouse",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
    "AUDIT_SIGNING_KEY": str(Signer.generate("consent.example.com/audit")),
    "EMAIL_HOST": "smtp.example.com",
}


def settings_with(env: dict[str, str], expression: str) -> str:
    """Return what an expression over the settings gives under this environment."""
    code = f"import django; django.setup(); from django.conf import settings; print({expression})"
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean | {"DJANGO_SETTINGS_MODULE": "config.settings"} | env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.slow
def test_production_settings_pass_check_deploy():
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean | PRODUCTION,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_no_proxy_is_trusted_to_say_https_unless_told_to_be():
    assert settings_with({}, "settings.SECURE_PROXY_SSL_HEADER") == "None"
    told = {"SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https"}
    assert settings_with(told, "settings.SECURE_PROXY_SSL_HEADER") == (
        "('HTTP_X_FORWARDED_PROTO', 'https')"
    )


def test_redis_never_hands_a_task_still_within_its_time_limit_to_another_worker():
    # A reconcile given a longer budget runs longer than verify_audit, the longest by default.
    app = "__import__('config.celery', fromlist=['app']).app"
    every_task = f"({app}.loader.import_default_modules(), {app}.tasks.values())[1]"
    limits = f"max(task.time_limit or 0 for task in {every_task})"
    visibility = 'settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]'
    for budget in ("2700", "5000"):
        env = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/9", "CONSENT_RECONCILE_BUDGET": budget}
        assert settings_with(env, f"{visibility} > {limits}") == "True"


def test_the_database_urls_options_are_kept_beside_the_timeouts():
    env = {
        "DATABASE_URL": "postgres://postgres@db.example.com:5432/consent?sslmode=require",
        "WAREHOUSE_DATABASE_URL": "postgres://postgres@db.example.com/w?connect_timeout=30",
    }
    options = (
        "sorted(settings.DATABASES[name]['OPTIONS'].items()) for name in ('default', 'warehouse')"
    )

    assert settings_with(env, f"[{options}]") == (
        "[[('connect_timeout', 5), ('sslmode', 'require')], [('connect_timeout', 30)]]"
    )


def test_a_client_cannot_claim_https_with_a_header():
    request = RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https")

    assert not request.is_secure()


def test_mail_is_queued_for_workers_that_send_it_by_smtp_once_a_host_is_set():
    backend = 'settings.MAILERS["{}"]["BACKEND"]'
    assert settings_with({}, backend.format("default")) == "accounts.mail.QueuedEmailBackend"
    assert settings_with({}, backend.format("delivery")).endswith("console.EmailBackend")
    smtp = {"EMAIL_HOST": "smtp.example.com"}
    assert settings_with(smtp, backend.format("delivery")).endswith("smtp.EmailBackend")
    files = {"EMAIL_FILE_PATH": "var/mail"}
    assert settings_with(files, backend.format("delivery")).endswith("filebased.EmailBackend")


@pytest.mark.slow
def test_check_deploy_fails_while_mail_is_only_printed():
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    without_smtp = {k: v for k, v in PRODUCTION.items() if k != "EMAIL_HOST"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=clean | without_smtp,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "accounts.E001" in result.stderr and "console.EmailBackend" in result.stderr


@pytest.mark.django_db
def test_a_403_is_logged_in_one_line(client, consumer, caplog):
    client.force_login(consumer)

    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert client.get("/support/").status_code == 403

    (record,) = [r for r in caplog.records if r.name == "django.request"]
    handler = logging.getLogger("django").handlers[0]
    assert "\n" not in handler.format(record)


@pytest.mark.slow
def test_check_deploy_asks_for_a_signing_key_kept_outside_the_data_directory():
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION}
    without_key = {k: v for k, v in PRODUCTION.items() if k != "AUDIT_SIGNING_KEY"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean | without_key,
        capture_output=True,
        text=True,
    )

    assert result.returncode == 1
    assert "AUDIT_SIGNING_KEY" in result.stderr

import subprocess

import pytest

from config.celery import app as celery_app


@pytest.fixture
def broker(private_redis, monkeypatch):
    # Celery reads CELERY_BROKER_URL from the environment before its own configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", private_redis)
    monkeypatch.setitem(celery_app.conf, "broker_url", private_redis)
    return private_redis


@pytest.mark.django_db
def test_healthz_reports_database_and_broker_up(client, broker):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_healthz_reports_a_stopped_broker_as_503(client, broker):
    port = broker.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["broker"] == "down"
    assert response.json()["database"] == "ok"


def test_healthz_refuses_other_methods(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_healthz_logs_why_the_broker_is_down(client, broker, caplog):
    port = broker.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False)

    client.get("/healthz")

    (line,) = [r.getMessage() for r in caplog.records if r.name == "config.health"]
    assert line.startswith("The broker does not answer: OperationalError:")
    assert "Connection refused" in line


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/healthz", "/metrics"])
def test_health_checks_and_scrapers_may_reach_the_app_over_plain_http(client, settings, url):
    settings.SECURE_SSL_REDIRECT = True  # as in production: every page goes to HTTPS

    assert client.get("/accounts/login/").status_code == 301
    assert client.get(url).status_code in (200, 503)  # an answer, not a redirect

"""What both benchmarks stand on: their own databases, the app's settings, sessions, gunicorn.

Call `configure()` before importing anything from Django or the app: it sets the environment
the settings read and runs django.setup().
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
BACKEND = "django.contrib.auth.backends.ModelBackend"


def configure(db_name: str, *, cache_db: int, broker_db: int) -> None:
    """Point the app's settings at the benchmark's databases and files, DEBUG off, and set
    Django up."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": f"{PG_URL}/{db_name}",
            "WAREHOUSE_DATABASE_URL": f"{PG_URL}/{db_name}_warehouse",
            "REDIS_URL": f"redis://127.0.0.1:6379/{cache_db}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
            "SECRET_KEY": "bench-only-not-a-secret",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_COOKIES": "false",
            "LOG_LEVEL": "WARNING",
            # Files of its own (the audit's key and checkpoint copies among them): another
            # benchmark's database is another log.
            "DATA_DIR": str(ROOT / "var" / db_name),
        }
    )
    import django

    django.setup()


def databases_create(db_name: str) -> None:
    """Create the benchmark's two databases if they are missing, and migrate them."""
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as admin:
        for name in (db_name, f"{db_name}_warehouse"):
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                admin.execute(f'CREATE DATABASE "{name}"')
    for database in ("default", "warehouse"):
        migrate = ["manage.py", "migrate", "--no-input", "-v", "0", "--database", database]
        subprocess.run([sys.executable, *migrate], cwd=ROOT, check=True)


def policy_ensure(*, in_force_for: timedelta):
    """Return the current policy, publishing one in force for that long if there is none."""
    from django.utils import timezone

    from consent import policies
    from consent.selectors import policy_current

    now = timezone.now()
    return policy_current() or policies.policy_publish(
        title="Benchmark terms",
        text="May we train on your chats and coding sessions?",
        effective_at=now - in_force_for,
        decision_deadline=now + timedelta(days=3650),
        now=now - in_force_for,
    )


def session_for(user):
    """Return an unsaved session signing the user in, as a login would write it."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    data = {
        "_auth_user_id": str(user.pk),
        "_auth_user_backend": BACKEND,
        "_auth_user_hash": user.get_session_auth_hash(),
    }
    return Session(
        session_key=get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789"),
        session_data=SessionStore().encode(data),
        expire_date=timezone.now() + timedelta(days=1),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_for(checkout: Path) -> str:
    """Return the checkout's own Python (its .venv), or this one's if it has none."""
    venv = checkout / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def gunicorn_start(
    port: int, options: list[str], *, checkout: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start the app (this checkout's, or another's) under gunicorn; return once it answers."""
    server = subprocess.Popen(
        [
            python_for(checkout), "-m", "gunicorn", "config.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--log-level", "warning", *options,
        ],
        cwd=checkout,
        env=os.environ | (env or {}),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("gunicorn did not answer within 60 s")

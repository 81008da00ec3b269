"""Settings, read from the environment; with none, an embedded default for a local try-out."""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.brokers import broker_for

BASE_DIR = Path(__file__).resolve().parent.parent
# The try-out keeps its SQLite files and file-system broker here. Production sets SECRET_KEY,
# DATABASE_URL, WAREHOUSE_DATABASE_URL, CELERY_BROKER_URL, REDIS_URL and ALLOWED_HOSTS.
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


def env_rate(name: str, default: str) -> tuple[int, int]:
    """Read "times/seconds" (at least 1 in at least 1 second) from the environment."""
    times, _, seconds = os.environ.get(name, default).partition("/")
    try:
        rate = (int(times), int(seconds))
    except ValueError:
        rate = (0, 0)
    if min(rate) < 1:
        raise ImproperlyConfigured(f"{name} is times/seconds, at least 1 in at least 1 second.")
    return rate


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", default=not SECRET_KEY)
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "django-insecure-local-try-out-only"  # noqa: S105
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

INSTALLED_APPS = [
    "config.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ninja",  # the API docs page's own scripts, served from here (CSP: self only)
    "django_htmx",
    "pgtrigger",
    "axes",
    "accounts",
    "consent",
    "support",
]

MIDDLEWARE = [
    "config.log.RequestIdMiddleware",
    "config.metrics.RequestLatencyMiddleware",
    # Early, to cover what the middleware below answers by itself too.
    "config.middleware.PrivateResponsesMiddleware",
    "config.middleware.ApiAnswersInJsonMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "config.middleware.NullCharactersRefusedMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it answers a locked-out sign-in.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
# The API takes up to 100,000 pairs in a request, about 8 MB of JSON.
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024 * 1024
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "consent.context_processors.product",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
    ),
    "warehouse": dj_database_url.parse(
        os.environ.get("WAREHOUSE_DATABASE_URL", f"sqlite:///{DATA_DIR / 'warehouse.sqlite3'}"),
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
    ),
}
for _database in DATABASES.values():
    # Defaults under what the URL asks for (`?sslmode=require`, say), never in place of it.
    if _database["ENGINE"].endswith("postgresql"):
        # An unreachable database must fail fast (and be retried), never hang a worker.
        _database["OPTIONS"] = {"connect_timeout": 5, **_database.get("OPTIONS", {})}
    if _database["ENGINE"].endswith("sqlite3"):
        # Workers and the web process share the files: wait for locks, take them up front.
        _database["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            **_database.get("OPTIONS", {}),
        }
DATABASE_ROUTERS = ["config.routers.WarehouseRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A stalled cache must not hold a request (it only spares the broker some drains):
            # half a second, and no retry (redis-py retries a timeout thrice by default).
            "OPTIONS": {
                "socket_timeout": 0.5,
                "socket_connect_timeout": 0.5,
                "retry": Retry(NoBackoff(), 0),
            },
        }
        if REDIS_URL
        # Files, not each process's memory: a mark the web process sets (a comparison queued,
        # a drain on its way) is one a worker clears. Good enough for the embedded default.
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    )
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses sign-ins while locked out
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "accounts.validators.NotOnlySpacesValidator"},
]
# Sign-in throttling (django-axes): after 5 failures for one email address, or from one IP
# address, sign-in is refused for 15 minutes, with the same answer whether the account exists.
AXES_FAILURE_LIMIT = int(os.environ.get("SIGN_IN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("SIGN_IN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "accounts.models.sign_in_username"
# Not axes' reset on success, which forgets every failure from the client's address too: one
# sign-in to an account of one's own would reset the count of guesses at someone else's.
# accounts.services.sign_in_failures_forget forgets the signed-in account's only.
AXES_RESET_ON_SUCCESS = False
AXES_LOCKOUT_TEMPLATE = "accounts/locked.html"
AXES_HTTP_RESPONSE_CODE = 429

# The client's address is the connection's, or behind a proxy named in TRUSTED_PROXIES the one
# that proxy was reached from (a header a client sets is not trusted for it); an IPv6 client is
# its /64, which one host may hold whole.
AXES_CLIENT_IP_CALLABLE = "config.proxies.client_network"
AXES_VERBOSE = False
# No row a sign-in with its address: only failures are kept, and only until they expire.
AXES_DISABLE_ACCESS_LOG = True
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
FORMAT_MODULE_PATH = ["config.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", default=not DEBUG)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# A load balancer's health check and Prometheus may reach the app itself, over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = not DEBUG
# Trust a proxy's word that a request came over HTTPS only where one sets it: "HEADER,value",
# for example "HTTP_X_FORWARDED_PROTO,https". Left unset, a client could claim HTTPS itself.
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    _header, _value = os.environ["SECURE_PROXY_SSL_HEADER"].split(",", 1)
    SECURE_PROXY_SSL_HEADER = (_header.strip(), _value.strip())

# Seconds the hourly reconcile spends on the sinks (its time limit is 5 minutes more, 10 hard):
# each sink's sweep of its subjects goes on, part by part, where the last part stopped.
CONSENT_RECONCILE_BUDGET = int(os.environ.get("CONSENT_RECONCILE_BUDGET", "2700"))
# The hard time limits of the longest tasks, in seconds (consent/tasks.py; each one's soft limit
# is 5 minutes less): verification and the prune, and reconcile, whose limit follows its budget.
CONSENT_HOURLY_TIME_LIMIT = 3300
CONSENT_RECONCILE_TIME_LIMIT = CONSENT_RECONCILE_BUDGET + 600
CONSENT_LONGEST_TIME_LIMIT = max(CONSENT_HOURLY_TIME_LIMIT, CONSENT_RECONCILE_TIME_LIMIT)
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost/")
BROKER = broker_for(CELERY_BROKER_URL, DATA_DIR, longest_task=CONSENT_LONGEST_TIME_LIMIT)
CELERY_BROKER_TRANSPORT = BROKER.transport
CELERY_BROKER_TRANSPORT_OPTIONS = BROKER.transport_options
CELERY_TASK_DEFAULT_QUEUE_TYPE = BROKER.queue_type
CELERY_TASK_DEFAULT_EXCHANGE_TYPE = BROKER.exchange_type
# The hourly checks read everything and may run for most of an hour, and expiring choices once
# new terms are in force goes through every user: they have a queue and workers of their own,
# so that they never hold every process that applies users' changes.
CELERY_TASK_ROUTES = {
    task: {"queue": "maintenance"}
    for task in (
        "consent.tasks.expire_choices",
        "consent.tasks.reconcile_sinks",
        "consent.tasks.reconcile_requested",
        "consent.tasks.verify_audit",
        "consent.tasks.prune_outbox",
        "accounts.tasks.clear_sessions",
    )
} | {
    # Mail waits on a mail server, for up to 10 s a try: never in the way of users' changes.
    task: {"queue": "mail"}
    for task in ("accounts.tasks.mail_deliver", "accounts.tasks.password_reset_mail")
}
CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = BROKER.queue_type
CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = BROKER.exchange_type
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 30
CELERY_TASK_TIME_LIMIT = 60
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # the workers log as LOGGING says, in JSON
CELERY_WORKER_REDIRECT_STDOUTS = False  # and print as written: the mail, on the embedded default
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "sweep-outbox": {
        "task": "consent.tasks.sweep",
        "schedule": float(os.environ.get("CONSENT_SWEEP_SECONDS", "5")),
    },
    "reconcile-sinks": {"task": "consent.tasks.reconcile_sinks", "schedule": 3600.0},
    "expire-choices": {"task": "consent.tasks.expire_choices", "schedule": 60.0},
    "audit-checkpoint": {"task": "consent.tasks.audit_checkpoint", "schedule": 60.0},
    "verify-audit": {"task": "consent.tasks.verify_audit", "schedule": 3600.0},
    "prune-outbox": {"task": "consent.tasks.prune_outbox", "schedule": 3600.0},
    "clear-sessions": {"task": "accounts.tasks.clear_sessions", "schedule": 86400.0},
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}

# Downstream stores, like DATABASES: name -> backend and options. The eligibility table is always
# on; Redis when REDIS_URL is set; a webhook when CONSENT_WEBHOOK_URL is (with whsec_ secrets,
# comma-separated, the newest first: two during a rotation).
CONSENT_SINKS: dict[str, dict[str, object]] = {
    "warehouse": {
        "BACKEND": "consent.sinks.warehouse.WarehouseSink",
        "OPTIONS": {"database": "warehouse"},
    },
}
if REDIS_URL:
    CONSENT_SINKS["redis"] = {
        "BACKEND": "consent.sinks.redis.RedisSink",
        "OPTIONS": {"url": REDIS_URL},
    }
if os.environ.get("CONSENT_WEBHOOK_URL"):
    CONSENT_SINKS["webhook"] = {
        "BACKEND": "consent.sinks.webhook.WebhookSink",
        "OPTIONS": {
            "url": os.environ["CONSENT_WEBHOOK_URL"],
            "secrets": env_list("CONSENT_WEBHOOK_SECRETS", ""),
        },
        "QUEUE": os.environ.get("CONSENT_WEBHOOK_QUEUE", ""),  # empty: the workers' default
    }
# Applied deliveries are kept this long; then only each user's newest per sink (consent.outbox).
CONSENT_DELIVERY_RETENTION_DAYS = int(os.environ.get("CONSENT_DELIVERY_RETENTION_DAYS", "7"))
CONSENT_DELIVERY_BATCH_SIZE = int(os.environ.get("CONSENT_DELIVERY_BATCH_SIZE", "200"))
CONSENT_RETRY_MAX_ATTEMPTS = int(os.environ.get("CONSENT_RETRY_MAX_ATTEMPTS", "12"))
CONSENT_RETRY_BASE_SECONDS = float(os.environ.get("CONSENT_RETRY_BASE_SECONDS", "1"))
CONSENT_RETRY_MAX_SECONDS = float(os.environ.get("CONSENT_RETRY_MAX_SECONDS", "600"))
# Seconds a drain starts batches for: with a webhook batch's own 5 s and a send's 5 s timeout
# on top, well below CELERY_TASK_SOFT_TIME_LIMIT, which would lose what a batch did.
CONSENT_DRAIN_TIME_BUDGET = 15.0
# Seconds a drain queued on commit waits, carrying the commits made meanwhile.
CONSENT_DRAIN_DELAY = float(os.environ.get("CONSENT_DRAIN_DELAY", BROKER.drain_delay))
CONSENT_DRAIN_DEBOUNCE = 10  # at most, seconds a queued drain stands for every later commit
# The audit log's checkpoints (consent.audit): signed with an Ed25519 signer key
# (PRIVATE+KEY+name+id+key; the embedded default makes one into DATA_DIR), trusted with that
# key's verifier and the earlier ones in AUDIT_VERIFY_KEYS (name+id+key, comma-separated), and
# copied to the warehouse database and to AUDIT_CHECKPOINT_DIR.
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY", "")
AUDIT_VERIFY_KEYS = env_list("AUDIT_VERIFY_KEYS", "")
AUDIT_LOG_ORIGIN = os.environ.get("AUDIT_LOG_ORIGIN", "consent-audit")
AUDIT_CHECKPOINT_DIR = Path(os.environ.get("AUDIT_CHECKPOINT_DIR", DATA_DIR / "checkpoints"))
# A checkpoint takes events this old at least: none can still be in an open transaction.
AUDIT_CHECKPOINT_SETTLE_SECONDS = int(os.environ.get("AUDIT_CHECKPOINT_SETTLE_SECONDS", "60"))

# The sink whose database keeps every subject's intervals, which the API and snapshots read.
CONSENT_ELIGIBILITY_SINK = "warehouse"
TRAINING_RUNS_DIR = Path(os.environ.get("TRAINING_RUNS_DIR", DATA_DIR / "runs"))
CONSENT_PRODUCT_NAME = os.environ.get("CONSENT_PRODUCT_NAME", "Help improve the model")
CONSENT_CONTROLLER_NAME = os.environ.get("CONSENT_CONTROLLER_NAME", "Assistant")
# A user may change the setting this many times at once, then once every seconds / times ("10/60":
# a burst of 10, then one every 6 s).
CONSENT_TOGGLE_RATE = env_rate("CONSENT_TOGGLE_RATE", "10/60")

# Email: queued for a worker, which sends it with the "delivery" mailer: by SMTP once EMAIL_HOST is
# set, else to files in EMAIL_FILE_PATH if that is set, else printed to the console.
if os.environ.get("EMAIL_HOST"):
    _delivery: dict[str, Any] = {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": os.environ["EMAIL_HOST"],
            "port": int(os.environ.get("EMAIL_PORT", "587")),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", default=True),
            "timeout": 10,
        },
    }
elif os.environ.get("EMAIL_FILE_PATH"):
    _delivery = {
        "BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "OPTIONS": {"file_path": os.environ["EMAIL_FILE_PATH"]},
    }
else:
    _delivery = {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
MAILERS = {
    "default": {
        "BACKEND": "accounts.mail.QueuedEmailBackend",
        "OPTIONS": {"deliver_with": "delivery"},
    },
    "delivery": _delivery,
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "privacy@localhost")
# At most this many account mails of a kind to one address in so many seconds; the rest are
# dropped. And at most this many sign-ups, and as many asks for a new password, from one client
# (an IPv6 /64); the rest get a 429.
ACCOUNT_MAIL_RATE = env_rate("ACCOUNT_MAIL_RATE", "5/3600")
ACCOUNT_REQUEST_RATE = env_rate("ACCOUNT_REQUEST_RATE", "10/3600")

# /metrics answers a scraper with the METRICS_TOKEN bearer token or on METRICS_ALLOWED_NETWORKS.
# prometheus-client reads PROMETHEUS_MULTIPROC_DIR when first imported, after these settings:
# there the web and worker processes of a machine add up their counters. Empty it at boot.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
try:
    METRICS_ALLOWED_NETWORKS = [
        ipaddress.ip_network(n)
        for n in env_list("METRICS_ALLOWED_NETWORKS", "127.0.0.1/32,::1/128")
    ]
except ValueError as error:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {error}") from error
# The proxies in front of the app (comma-separated networks, none by default): a request from
# one of them comes from the address it says in X-Forwarded-For. Sign-in throttling, /metrics'
# networks and the audit log's network of a change read the client's address this way.
try:
    TRUSTED_PROXIES = [ipaddress.ip_network(n) for n in env_list("TRUSTED_PROXIES", "")]
except ValueError as error:
    raise ImproperlyConfigured(f"TRUSTED_PROXIES: {error}") from error
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# One JSON object per line (LOG_FORMAT=text for a person reading a terminal), each with the id
# of the request behind it; Celery's workers log through the same handler.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "client_errors_in_one_line": {"()": "config.log.ClientErrorsInOneLine"},
        "request_id": {"()": "config.log.RequestIdFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["asctime", "levelname", "name", "message", "request_id"],
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id", "client_errors_in_one_line"],
            "formatter": "text" if LOG_FORMAT == "text" else "json",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # Django's own loggers write through the same handler, not Django's defaults beside it.
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "axes": {"level": "WARNING"},  # not a line per sign-in
        # Nor three lines per task (queued, received, succeeded), the sweep's every 5 s among
        # them; a task that fails is still logged (the one that retries, mail_deliver, says why).
        "celery.beat": {"level": "WARNING"},
        "celery.worker.strategy": {"level": "WARNING"},
        "celery.app.trace": {"level": "WARNING"},
    },
}

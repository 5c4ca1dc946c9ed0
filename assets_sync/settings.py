"""Settings for assets-sync.

Every value comes from the environment (or a `.env` file next to manage.py) through
django-environ; application code reads `django.conf.settings` only. See the settings table
in README.md.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


class Env(environ.Env):
    """django-environ, strict where it would guess: a setting it cannot read stops the start
    naming the setting, and a number or a switch written wrong ("5m", "ture") is refused
    rather than read as something else."""

    SWITCH_WORDS = {*environ.Env.BOOLEAN_TRUE_STRINGS, "false", "off", "no", "n", "0"}

    def get_value(self, var, cast=None, default=environ.Env.NOTSET, parse_default=False):
        raw = self.ENVIRON.get(var)
        if raw is not None and cast in (bool, int, float):
            self._check_written_as(var, raw.strip(), cast)
        try:
            return super().get_value(var, cast=cast, default=default, parse_default=parse_default)
        except (ValueError, TypeError) as error:  # a JSONDecodeError is a ValueError
            raise ImproperlyConfigured(f"The setting {var}={raw!r} cannot be read: {error}")

    # Addresses that may hold a password: one that cannot be read stops the start naming the
    # setting, never quoting it (a '/' in the password ends the host, and the URL reader's
    # error quotes the password as the port it could not read).
    def db_url(self, var="DATABASE_URL", default=environ.Env.NOTSET, **options):
        return self._read_address(var, lambda: super(Env, self).db_url(var, default, **options))

    db = db_url

    def email_url(self, var="EMAIL_URL", default=environ.Env.NOTSET, **options):
        return self._read_address(var, lambda: super(Env, self).email_url(var, default, **options))

    @staticmethod
    def _read_address(var: str, read):
        try:
            return read()
        except ValueError:
            raise ImproperlyConfigured(
                f"The setting {var} cannot be read (not quoted here: it may hold a password): "
                "a '/', '#' or '?' in its password is written %2F, %23, %3F."
            ) from None

    def _check_written_as(self, var: str, raw: str, cast) -> None:
        if cast is bool:
            if raw.lower() not in self.SWITCH_WORDS:
                raise ImproperlyConfigured(
                    f"The setting {var}={raw!r} is no switch: write true or false."
                )
            return
        try:
            cast(raw)
        except ValueError:
            kind = "a whole number" if cast is int else "a number (a dot before decimals)"
            raise ImproperlyConfigured(f"The setting {var}={raw!r} is not {kind}.") from None


env = Env()
Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("Set SECRET_KEY (or DEBUG=true for local development).")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

# Keys that encrypt stored secrets (tokens, passwords). The first encrypts, all decrypt.
# Defaults to one derived from SECRET_KEY; set your own in production (see README).
# Comma-separated; a space after a comma is no part of a key.
FIELD_ENCRYPTION_KEYS = [
    key.strip() for key in env.list("FIELD_ENCRYPTION_KEYS", default=[SECRET_KEY]) if key.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# The public address Assets uses to call our webtrigger (scheduled imports).
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

# Production hardening (see "Running in production" in README.md).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# How long an admin sign-in lasts: seconds, and whether closing the browser ends it sooner.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=1_209_600)  # Django's two weeks
if SESSION_COOKIE_AGE < 60:  # a session that ends before a page is read signs nobody in
    raise ImproperlyConfigured("SESSION_COOKIE_AGE must be at least 60 (seconds).")
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", default=False)
# A load balancer's health probe over plain HTTP gets the answer, not a redirect.
SECURE_REDIRECT_EXEMPT = [r"^health/?$"]
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The webtrigger answers at most this many calls per client address and minute.
WEBTRIGGER_RATE_PER_MINUTE = env.int("WEBTRIGGER_RATE_PER_MINUTE", default=30)
# Behind proxies: how many trusted proxies append the caller's address to CLIENT_IP_HEADER.
# The client is the address that many places from the right; the left-most is whatever the
# client sent, and may be forged. 0: the connection's own address (REMOTE_ADDR).
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="HTTP_X_FORWARDED_FOR")
# Set CLIENT_IP_HEADER alone (as before this setting existed): one proxy.
TRUSTED_PROXY_COUNT = env.int(
    "TRUSTED_PROXY_COUNT",
    default=1 if env.str("CLIENT_IP_HEADER", default="REMOTE_ADDR") != "REMOTE_ADDR" else 0,
)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more.")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Before django_q: its `qcluster` command wins, which waits for `migrate` before taking tasks.
    "importer",
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ from STATIC_ROOT in production (after collectstatic), no web server needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "importer.middleware.UserTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "assets_sync.urls"
WSGI_APPLICATION = "assets_sync.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # The project's own admin/base_site.html (the user's time zone on every page).
        "DIRS": [BASE_DIR / "assets_sync" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# A database address that takes no connection (a host down behind a firewall that drops
# packets, a hung server) fails a new connection after this, rather than holding a worker
# until its task is killed. A `connect_timeout` in DATABASE_URL wins.
DATABASE_CONNECT_TIMEOUT = env.int("DATABASE_CONNECT_TIMEOUT", default=5)
if not DATABASES["default"].get("ENGINE"):  # not echoed: it may hold a password
    raise ImproperlyConfigured(
        "The setting DATABASE_URL cannot be read: give postgres://user:password@host:5432/name "
        "or sqlite:////absolute/path/db.sqlite3"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # runserver and a qcluster with several workers write to one file side by side:
    # WAL lets readers go on while one process writes, IMMEDIATE takes the write lock when a
    # transaction starts (so a read-then-write never fails to upgrade its lock), and the busy
    # timeout makes a second writer wait instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=30),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test_db.sqlite3")}
else:
    # Opening a PostgreSQL connection per task costs more than the task itself.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", DATABASE_CONNECT_TIMEOUT
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
FORMAT_MODULE_PATH = ["assets_sync.formats"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # collectstatic writes compressed copies and names with a content hash, so browsers may
    # keep each file for a year and still get a new one after an upgrade.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Uploaded source files (CSV, JSON, JSON Lines).
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")

# Where `import_sources` may read a secret a sources file names as {"$file": ...} (Docker
# and Kubernetes mount secrets here).
SECRET_FILES_DIR = env.path("SECRET_FILES_DIR", default="/run/secrets")

# Plug-in sources a site adds: {"name": "dotted.path.ToClass"} (JSON in the environment).
IMPORT_SOURCE_PLUGINS = env.json(
    "IMPORT_SOURCE_PLUGINS", default={"static-list": "importer.sources.examples.StaticListSource"}
)

# --- The import flow -------------------------------------------------------------------
ASSETS_API_BASE_URL = env.str("ASSETS_API_BASE_URL", default="https://api.atlassian.com")
# Seconds for every outgoing HTTP call (Assets and sources): connect and read.
HTTP_TIMEOUT = env.float("HTTP_TIMEOUT", default=30.0)
# A page whose data is larger is sent to Assets in parts of at most this many bytes (Assets
# documents no limit; a few MB is what it is known to take).
ASSETS_MAX_SUBMIT_BYTES = env.int("ASSETS_MAX_SUBMIT_BYTES", default=5_000_000)
# A source redirecting to another scheme, host or port: "drop_credentials" follows the redirect
# without the source's credentials (auth and extra headers, API key in the query); "refuse"
# fails the request with a clear error.
CROSS_ORIGIN_REDIRECTS = env.str("CROSS_ORIGIN_REDIRECTS", default="drop_credentials")
if CROSS_ORIGIN_REDIRECTS not in ("drop_credentials", "refuse"):
    raise ImproperlyConfigured("CROSS_ORIGIN_REDIRECTS must be drop_credentials or refuse.")
# A source that keeps saying "there is more" is stopped after this many pages.
IMPORT_MAX_PAGES = env.int("IMPORT_MAX_PAGES", default=10_000)
# Empty pages in a row that still lead on, before a source is taken for one that never ends.
SOURCE_MAX_EMPTY_PAGES_IN_A_ROW = env.int("SOURCE_MAX_EMPTY_PAGES_IN_A_ROW", default=100)
# Records one page of a source may hold (files: per chunk). A JSON answer with more than 50
# values per such record is refused before it is parsed.
SOURCE_MAX_RECORDS_PER_PAGE = env.int("SOURCE_MAX_RECORDS_PER_PAGE", default=100_000)
# Seconds one page of a source may take in all, however slowly its bytes come (at least twice
# the source's own request timeout) ...
SOURCE_REQUEST_BUDGET_SECONDS = env.float("SOURCE_REQUEST_BUDGET_SECONDS", default=60.0)
# ... and the download of a source file.
SOURCE_DOWNLOAD_BUDGET_SECONDS = env.float("SOURCE_DOWNLOAD_BUDGET_SECONDS", default=180.0)
# A chunk is held by its worker under a lease of this many seconds, which the worker renews
# every sixth of it while it works; a chunk whose lease lapsed (its worker vanished) is taken
# up again by housekeeping.
CHUNK_LEASE_SECONDS = env.int("CHUNK_LEASE_SECONDS", default=30)
# A chunk task keeps taking the next page of its lane (fetched while the current page is
# submitted) for up to this many seconds, then hands the lane back to the queue so other
# imports get their turn. 0: one page per task.
CHUNK_LANE_SECONDS = env.float("CHUNK_LANE_SECONDS", default=20.0)
# A chunk queued this long without being taken is queued again (its task may be lost).
QUEUED_CHUNK_REQUEUE_SECONDS = env.int("QUEUED_CHUNK_REQUEUE_SECONDS", default=30)
# How often the workers of the task cluster look for lost work (lapsed leases, lost tasks,
# imports whose next step did not come); one worker across all clusters does it each time.
HOUSEKEEPING_SECONDS = env.float("HOUSEKEEPING_SECONDS", default=10.0)
# Whether a plain 500 from a source or Assets is retried like 502/503/504.
RETRY_HTTP_500 = env.bool("RETRY_HTTP_500", default=True)
# How long a transient failure (timeout, 429, 5xx) is retried before a chunk fails for good.
CHUNK_MAX_ATTEMPTS = env.int("CHUNK_MAX_ATTEMPTS", default=5)
# A page refused with 429 (Assets or the source rate limiting) waits as asked, and is tried this
# many times: a long spell of rate limiting must not fail an import that would go through.
RATE_LIMITED_MAX_ATTEMPTS = env.int("RATE_LIMITED_MAX_ATTEMPTS", default=20)
# A retry due within this many seconds waits in the worker; a later one is rescheduled, and
# the cluster's ticker sends it within a second of its time, so a longer wait here would only
# keep the worker from other imports (importer/ticker.py).
CHUNK_RETRY_INLINE_MAX_SECONDS = env.float("CHUNK_RETRY_INLINE_MAX_SECONDS", default=1.0)
# A chunk that failed for good fails its execution after this many seconds; within them an
# operator may retry it ("Retry failed chunks"). 0: fail at once.
FAILED_CHUNK_GRACE_SECONDS = env.int("FAILED_CHUNK_GRACE_SECONDS", default=0)
# An ingesting execution without progress for this long is flagged as stalled ...
STALLED_AFTER_SECONDS = env.int("STALLED_AFTER_SECONDS", default=1800)
# ... and, when this is true, failed and reported to Assets' import history.
FAIL_STALLED_EXECUTIONS = env.bool("FAIL_STALLED_EXECUTIONS", default=False)
# The last page of an import sets its completion going, and a processing import is followed
# with reads of its status spaced 0.25 s, 0.5 s, 1 s, ... up to STATUS_POLL_MAX_SECONDS.
# Safety net: an import with every page in, or a processing one, that did not move for
# COMPLETION_RECHECK_SECONDS (plus, processing, STATUS_POLL_MAX_SECONDS) is looked at again.
COMPLETION_RECHECK_SECONDS = env.int("COMPLETION_RECHECK_SECONDS", default=30)
STATUS_POLL_MAX_SECONDS = env.float("STATUS_POLL_MAX_SECONDS", default=30.0)
# "completed" that Assets cannot take (down, busy) is posted again, later and later; after this
# many posts (about half an hour) the import ends FAILED, and its alert goes out.
COMPLETION_MAX_ATTEMPTS = env.int("COMPLETION_MAX_ATTEMPTS", default=10)
# An import Assets has not reported DONE or FAILED this long after "completed" (its status
# unreadable, or a word this app does not know) ends FAILED, so its source may import again.
PROCESSING_TIMEOUT_SECONDS = env.int("PROCESSING_TIMEOUT_SECONDS", default=24 * 3600)

# --- django-q2 ---------------------------------------------------------------------------
Q_TASK_TIMEOUT = env.int("Q_TASK_TIMEOUT", default=300)
Q_WORKERS = env.int("Q_WORKERS", default=2)
Q_CLUSTER = {
    "name": "assets-sync",
    "workers": Q_WORKERS,
    # The ORM broker hands out `bulk` tasks per poll: one per poll would cap a whole cluster
    # at 1/poll chunks a second, whatever its number of workers.
    "bulk": env.int("Q_BULK", default=Q_WORKERS),
    # Tasks a cluster takes from the broker ahead of its free workers (django-q2's default is
    # workers squared). A chunk task runs a lane for up to CHUNK_LANE_SECONDS: tasks taken
    # ahead wait that long in one cluster while the workers of the others sit idle.
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=Q_WORKERS),
    # A chunk makes two HTTP calls, each bounded by HTTP_TIMEOUT, so it ends well within this.
    "timeout": Q_TASK_TIMEOUT,
    # The ORM broker hands a task out again when it is not acknowledged within `retry`
    # seconds. It must exceed `timeout`, or a slow but healthy chunk would be delivered a
    # second time while it still runs (the chunk's lease makes that harmless, but wasteful).
    "retry": Q_TASK_TIMEOUT + 60,
    "max_attempts": 3,
    # Each chunk enqueues the next one: with the ORM broker every link of that chain waits
    # for one poll, so poll often.
    "poll": env.float("Q_POLL", default=0.05),
    "save_limit": 1000,
    "ack_failures": True,
    "catch_up": False,
    "label": "Task queue",
}
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
    # Shared by every web process, so limits such as the webtrigger's hold across them.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    Q_CLUSTER["orm"] = "default"

# Monitoring: callers presenting this token (X-Health-Token) see per-source details.
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")
# Finished executions older than this are deleted by the daily retention task.
HISTORY_RETENTION_DAYS = env.int("HISTORY_RETENTION_DAYS", default=180)
if not 1 <= HISTORY_RETENTION_DAYS <= 36_500:  # a date further back cannot be written
    raise ImproperlyConfigured("HISTORY_RETENTION_DAYS must be from 1 to 36500 (100 years).")

# --- Alerts and metrics ------------------------------------------------------------------
# How alerts are e-mailed: smtp://user:password@host:587 with STARTTLS is smtp+tls://...,
# smtps:// for TLS from the start; consolemail:// prints them (development).
_EMAIL = env.email_url("EMAIL_URL", default="consolemail://")
if env.str("EMAIL_URL", default="").lower().startswith("smtps://"):
    # TLS from the start (port 465), as the scheme says: django-environ reads it as STARTTLS,
    # which waits for a greeting such a server never sends in the clear.
    _EMAIL.update(EMAIL_USE_SSL=True, EMAIL_USE_TLS=False)
vars().update(_EMAIL)
# Seconds for each alert sent (a webhook's whole answer, a mail server's): shorter than
# HTTP_TIMEOUT, for a receiver that hangs holds a worker the imports share.
ALERT_TIMEOUT = env.float("ALERT_TIMEOUT", default=10.0)
EMAIL_TIMEOUT = ALERT_TIMEOUT
DEFAULT_FROM_EMAIL = SERVER_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="assets-sync@localhost")
# E-mail channels that name no recipients of their own send to these addresses.
ALERT_EMAILS = env.list("ALERT_EMAILS", default=[])
# A scheduled source is stale when its last successful import is older than its schedule's
# interval plus this many seconds (DAILY with the default: 26 hours).
STALE_GRACE_SECONDS = env.int("STALE_GRACE_SECONDS", default=2 * 3600)
# A source failing run after run is told at its first failure, then again (with the count)
# only once this many hours have passed since its failures were last told; 0: every failure.
ALERT_REPEAT_HOURS = max(env.float("ALERT_REPEAT_HOURS", default=4.0), 0.0)
# A channel is sent at most this many alerts one by one in 10 minutes; the others of those
# minutes reach it in one summary (many sources failing at once); 0: every alert on its own.
ALERT_BURST_LIMIT = max(env.int("ALERT_BURST_LIMIT", default=5), 0)
# Prometheus scrapes /metrics with this bearer token; empty: /metrics does not exist (404).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"The setting LOG_FORMAT={LOG_FORMAT!r} is neither plain nor json.")
# WARN and FATAL are Python's older names (earlier releases took them as they came).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOG_LEVEL = {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(LOG_LEVEL, LOG_LEVEL)
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"The setting LOG_LEVEL={LOG_LEVEL!r} is no level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
# Django's error page (DEBUG) and error mails, without credentials.
DEFAULT_EXCEPTION_REPORTER = "importer.logs.SecretsHiddenReporter"
DEFAULT_EXCEPTION_REPORTER_FILTER = "importer.logs.SecretsHiddenFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "importer.logs.JsonFormatter"},
    },
    # Credentials and webtrigger tokens are removed from every line (see importer/redaction.py).
    "filters": {
        "redact_secrets": {"()": "importer.logs.RedactSecrets"},
        "brief_client_errors": {"()": "importer.logs.BriefClientErrors"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # LOG_FORMAT=json: one JSON object per line, for log collectors.
            "formatter": LOG_FORMAT,
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "urllib3": {"level": "WARNING"},
        # Django's request lines carry the path, and so a webtrigger's token: redacted where
        # they start, before Django's own handlers (e.g. mail_admins) see them.
        "django.request": {"filters": ["redact_secrets", "brief_client_errors"]},
        # Once, through our handler (Django's own console handler would write it again).
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.server": {
            "handlers": ["console"],
            "filters": ["redact_secrets"],
            "level": "INFO",
            "propagate": False,
        },
    },
}

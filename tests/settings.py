"""Settings for the test suite: the project's settings with a fixed key and sync tasks."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")

from assets_sync.settings import *  # noqa: E402,F403

# The address the tests expect in links and callbacks, whatever the `.env` that `./dev demo
# --port N` wrote says.
PUBLIC_BASE_URL = "http://127.0.0.1:8000"

# Most flow tests run tasks inline; the `Cluster` helper in tests/conftest.py starts a real
# qcluster where the behaviour depends on one (it unsets this through Q_SYNC=false).
Q_CLUSTER["sync"] = os.environ.get("Q_SYNC", "true") == "true"  # noqa: F405

# One name per test run, inherited by the clusters it starts: two runs on one machine never
# take each other's tasks from a shared Redis, nor share its cache keys.
TEST_RUN_ID = os.environ.setdefault("TEST_RUN_ID", str(os.getpid()))
Q_CLUSTER["name"] = f"assets-sync-test-{TEST_RUN_ID}"  # noqa: F405
if REDIS_URL:  # noqa: F405
    CACHES["default"]["KEY_PREFIX"] = f"test-{TEST_RUN_ID}"  # noqa: F405
# Tests render pages without running collectstatic first (the browser test of the production
# path runs it, with the project's own settings).
MIDDLEWARE = [name for name in MIDDLEWARE if not name.startswith("whitenoise.")]  # noqa: F405
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Retries are rescheduled, never slept on, so tests can hold a chunk in its retry state.
CHUNK_RETRY_INLINE_MAX_SECONDS = float(os.environ.get("CHUNK_RETRY_INLINE_MAX_SECONDS", "0"))

# A test database of this run's own, so two runs on one machine never share one.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f"test_db_{TEST_RUN_ID}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_assets_sync_{TEST_RUN_ID}"}  # noqa: F405

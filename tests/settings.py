"""Settings for the test suite: the project's settings with a fixed key and sync tasks."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key")

from assets_sync.settings import *  # noqa: E402,F403

# Most flow tests run tasks inline; tests/cluster.py starts a real qcluster where the
# behaviour depends on one (it unsets this through Q_SYNC=false).
Q_CLUSTER["sync"] = os.environ.get("Q_SYNC", "true") == "true"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Retries are rescheduled, never slept on, so tests can hold a chunk in its retry state.
CHUNK_RETRY_INLINE_MAX_SECONDS = 0

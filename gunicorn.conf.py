"""gunicorn's settings for the app, read when gunicorn starts in this directory (a `-c` of
your own replaces them: keep `logger_class` in it)."""

# The access log's request lines without the webtrigger's token (see assets_sync/gunicorn_logs.py).
logger_class = "assets_sync.gunicorn_logs.RedactedLogger"

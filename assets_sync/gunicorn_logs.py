"""gunicorn's own logs without secrets: its access log writes each request line, and the
webtrigger's holds the source's token in its path (Assets calls the address it was given,
so the token cannot move to a header). Used by `gunicorn.conf.py`, which gunicorn reads when
started in the project's directory; elsewhere pass `--logger-class` with this class."""

from gunicorn.glogging import Logger

from importer.logs import RedactSecrets

# One filter for every setup: gunicorn runs `setup` again on each reload (SIGHUP).
_REDACT = RedactSecrets()


class RedactedLogger(Logger):
    """gunicorn's logger whose access and error lines (request lines, the path of a request
    that failed) lose webtrigger tokens and credentials before any handler writes them."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.access_log, self.error_log):
            log.addFilter(_REDACT)

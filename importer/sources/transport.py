"""The one seam for outgoing HTTP to a source: auth, trust, timeouts, bounded reads, typed errors.

REST pages and downloaded files both go through `SourceHttp`, so every `requests` exception and
every non-2xx answer becomes one SourceError whose message names the source and holds no secret.
Reads are bounded in bytes, in JSON values and in time (see `importer/sources/limits.py`).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import html
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests
import urllib3
from django.conf import settings
from urllib3.response import GzipDecoderState

from importer.deadline import discard, mount_deadline_adapter, request_deadline, until
from importer.redaction import (
    declared_secret_params,
    hidden_from_messages,
    is_secret_name,
    redact_for,
    remember_secrets,
    secrets_of,
)
from importer.remote import (
    RemoteSession,
    causes,
    page_title,
    refused_by_rate_limit,
    retry_after_of,
    why_unreachable,
    worth_retrying,
)
from importer.sources import limits, oauth
from importer.sources.base import SourceError, config_error
from importer.sources.rules import ca_bundle_problem, url_credentials_problem
from importer.sources.urls import origin, public_url, with_query

# A single REST page (or JSON file) larger than this is refused rather than held in memory.
MAX_PAGE_BYTES = 50 * 1024 * 1024
# Where a stored next link repeated the OAuth2 access token (sources.rest): the token current
# when the link is followed is sent in its place, and again after a refresh.
ACCESS_TOKEN_MARK = "__oauth-access-token__"
_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
READ_CHUNK_BYTES = 64 * 1024
# An answer that does not parse (cut off mid-way, a proxy's HTML page) is usually a passing
# fault: the chunk tries this many times in all, then fails with what the source sent.
UNPARSABLE_ANSWER_ATTEMPTS = 3

STATUS_HINTS = {
    400: "check the source's query parameters",
    401: "check the source's credentials",
    403: "the source's credentials lack access to it",
    404: "check the source URL",
}
STATUS_KINDS = {401: "auth", 403: "auth", 404: "not_found", 429: "rate_limited"}

# PEM text digest -> path of a private temp file holding it, per process.
_ca_files: dict[str, str] = {}
_ca_lock = threading.Lock()


def ca_bundle_path(pem: str) -> str:
    """A file holding `pem`, for requests' `verify=`; written once per process, private (0600)."""
    digest = hashlib.sha256(pem.encode()).hexdigest()
    with _ca_lock:
        path = _ca_files.get(digest)
        if path is None or not os.path.exists(path):
            fd, path = tempfile.mkstemp(prefix="assets-sync-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as file:
                file.write(pem)
            _ca_files[digest] = path
        return path


class _SourceSession(RemoteSession):
    """A session that never carries the source's credentials to another origin.

    requests itself drops only the Authorization header when a redirect changes the host;
    an API key in a custom header, the extra headers and an API key in the query would follow.
    """

    def __init__(self, http: SourceHttp) -> None:
        super().__init__()
        self._http = http
        mount_deadline_adapter(self)

    def rebuild_method(self, prepared_request, response) -> None:
        """A POST that a 301 or 302 would send on as a GET, without its body, is refused: the
        query in the body would be lost, and whatever the address answers a bare GET (every
        record, a default page) taken for the source's answer. (A 303 is followed: it points
        to where the answer to the POST is read with GET.)"""
        posted = prepared_request.method == "POST"
        super().rebuild_method(prepared_request, response)
        if posted and response.status_code in (301, 302) and prepared_request.method != "POST":
            raise self._http.error(
                f"answered its POST with a redirect ({response.status_code}) to "
                f"{public_url(prepared_request.url or '')}, which would be asked with GET, "
                "without the request body: set the source URL to that address",
                kind="bad_redirect",
            )

    def rebuild_auth(self, prepared_request, response) -> None:
        if origin(prepared_request.url) == origin(response.request.url):
            super().rebuild_auth(prepared_request, response)
            return
        self._http.leave_origin(prepared_request, came_from=response.request.url or "")


def basic_credentials(username: str, password: str) -> str:
    """The Basic Authorization value: Latin-1, as servers have always had it from us, when
    the credentials fit; else UTF-8 (RFC 7617's charset, what curl and browsers send), as
    requests would refuse them and no request could leave."""
    pair = f"{username}:{password}"
    try:
        raw = pair.encode("latin-1")
    except UnicodeEncodeError:
        raw = pair.encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


class BasicAuth(requests.auth.AuthBase):
    """Basic authentication whose credentials may hold any character (see `basic_credentials`)."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BasicAuth) and (self.username, self.password) == (
            other.username,
            other.password,
        )

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = basic_credentials(self.username, self.password)
        return request


class SourceHttp:
    """Outgoing HTTP for one ImportSource: its auth, headers, CA bundle and timeout."""

    def __init__(self, source, *, accept: str = "application/json") -> None:
        self.source = source
        remember_secrets(hidden_from_messages(source))  # for log lines of urllib3's own
        self.name = source.name
        self.auth = source.source_auth
        self.timeout = (
            source.request_timeout if source.request_timeout is not None else settings.HTTP_TIMEOUT
        )
        if ca_bundle_problem(source.ca_bundle):
            raise config_error(source, ca_bundle_problem(source.ca_bundle))
        # Verification always stays on: a private CA is trusted instead of the public ones.
        self.verify: str | bool = ca_bundle_path(source.ca_bundle) if source.ca_bundle else True
        if url_credentials_problem(source.source_url, self.auth):
            raise config_error(source, url_credentials_problem(source.source_url, self.auth))
        if not isinstance(source.extra_headers or {}, dict):
            raise config_error(source, "extra headers must be a JSON object")
        self.session = _SourceSession(self)
        self.session.headers["Accept"] = accept
        self.session.headers.update(
            {str(k): str(v) for k, v in (source.extra_headers or {}).items()}
        )
        self._access_token = ""
        # When the page being read must have arrived (time.monotonic()); see `begin`.
        self.deadline: float | None = None
        self.budget = limits.page_budget(source)
        self.budget_setting = "SOURCE_REQUEST_BUDGET_SECONDS"
        token = source.source_token
        if self.auth == "bearer":
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif self.auth == "basic":
            self.session.auth = BasicAuth(source.auth_username or "", token or "")
        elif self.auth == "api_key_header":
            self.session.headers[source.auth_key_name or "X-API-Key"] = token
        elif self.auth == "oauth2_client_credentials" and not source.oauth_token_url:
            raise config_error(source, "OAuth2 needs a token URL")
        elif self.auth not in ("none", "api_key_query", "oauth2_client_credentials"):
            raise config_error(source, f"unknown authentication '{self.auth}'")

    # --- redirects -------------------------------------------------------------------------

    @property
    def credential_headers(self) -> list[str]:
        """Headers that may carry a credential: the auth header and every extra header."""
        names = ["Authorization", *(str(name) for name in (self.source.extra_headers or {}))]
        if self.auth == "api_key_header":
            names.append(self.source.auth_key_name or "X-API-Key")
        return names

    def leave_origin(self, request: requests.PreparedRequest, came_from: str = "") -> None:
        """A redirect goes to another scheme, host or port: strip the credentials, or refuse.

        A parameter named like a credential is dropped only when the request redirected
        (`came_from`) sent it: one the new address brought itself is its own, as a signed
        download link's signature (`sig`, `X-Amz-Signature`) is, and is kept."""
        if settings.CROSS_ORIGIN_REDIRECTS == "refuse":
            raise self.error(
                f"redirected to another origin, {public_url(request.url or '')}: refused "
                "(CROSS_ORIGIN_REDIRECTS=refuse); if the source moved, set its URL there",
                kind="redirect",
            )
        if request.body is not None:
            # A 307 or 308 keeps the body, and a body may hold a credential (a JSON-RPC
            # session token, a key written into a GraphQL query) that no name tells.
            raise self.error(
                f"redirected its POST to another origin, {public_url(request.url or '')}: "
                "the request body is sent to the source URL's origin only, as it may hold "
                "credentials; if the source moved, set its URL there",
                kind="redirect",
            )
        for name in self.credential_headers:
            request.headers.pop(name, None)
        # The query too: the key, and a credential written into the source URL or its extra
        # parameters (a server that moved answers 301 to the new host with the same query).
        secrets = {*secrets_of(self.source), self._access_token} - {""}
        declared = declared_secret_params(self.source)

        sent = set(parse_qsl(urlsplit(came_from).query)) if came_from else None

        def credential(name: str, value: str) -> bool:
            if value in secrets:
                return True
            named = name == self.key_param or is_secret_name(name, declared)
            return named and (sent is None or (name, value) in sent)

        url = request.url or ""
        if any(credential(*pair) for pair in parse_qsl(urlsplit(url).query)):
            request.url = with_query(url, drop=credential)

    # --- errors ----------------------------------------------------------------------------

    def error(self, message: str, **kwargs: Any) -> SourceError:
        """A SourceError that names the source, with every secret we know scrubbed out."""
        return SourceError(self.scrub(f"source '{self.name}' {message}"), **kwargs)

    def scrub(self, text: str) -> str:
        """`text` without the source's secrets, its current access token or any credential."""
        return redact_for(self.source, text, self._access_token)

    @property
    def _timeout_setting(self) -> str:
        if self.source.request_timeout is not None:
            return "the source's request timeout"
        return "HTTP_TIMEOUT, as the source sets no request timeout of its own"

    @property
    def access_token(self) -> str:
        """The OAuth2 access token the last request was sent with ("" for other auths)."""
        return self._access_token

    @property
    def key_param(self) -> str:
        """The query parameter that carries the API key, "" when the key is not in the URL."""
        return (self.source.auth_key_name or "api_key") if self.auth == "api_key_query" else ""

    def without_key(self, url: str) -> str:
        """The URL as it may be stored (cursors) or shown: the API key removed from its query."""
        return with_query(url, drop=self.key_param) if self.key_param else url

    # --- requests --------------------------------------------------------------------------

    def begin(self, *, download: bool = False) -> None:
        """Start the clock of one page (or file download): its requests and bytes must all
        have arrived within the page budget (the download budget)."""
        if download:
            self.budget = limits.download_budget()
            self.budget_setting = "SOURCE_DOWNLOAD_BUDGET_SECONDS"
        else:
            self.budget = limits.page_budget(self.source)
            self.budget_setting = "SOURCE_REQUEST_BUDGET_SECONDS"
        self.deadline = time.monotonic() + self.budget

    def get(self, url: str, *, what: str = "a page") -> requests.Response:
        """GET `url` (streamed), refreshing an OAuth2 token once on a 401; 2xx or SourceError."""
        return self._request(url, what=what)

    def post(self, url: str, body: bytes, *, what: str = "a page") -> requests.Response:
        """POST the JSON `body` to `url` (a GraphQL query, a search), as `get` does a GET."""
        return self._request(url, what=what, body=body)

    def _request(self, url: str, *, what: str, body: bytes | None = None) -> requests.Response:
        if self.deadline is None:
            self.begin()
        self._check_budget(url, what)
        response = self._send(url, what, body)
        if response.status_code == 401 and self.auth == "oauth2_client_credentials":
            # The token may have been revoked or expired early: one fresh token, one more try.
            discard(response, self.deadline)
            oauth.drop_token(self.source, self._access_token)
            response = self._send(url, what, body)
        if not response.ok:
            raise self._status_error(response, url, posted=body is not None)
        if response.status_code in (202, 304):
            raise self._no_answer_yet(response, url)
        return response

    def _no_answer_yet(self, response: requests.Response, url: str) -> SourceError:
        """A 2xx or 3xx that holds no records however it reads: taken as a page, a 202's
        `{"status": "queued"}` or a 304's empty body would end the import short of them."""
        discard(response, self.deadline)
        where = public_url(url)
        if response.status_code == 304:
            return self.error(
                f"answered 304 Not Modified at {where}, which answers a conditional request "
                "and holds no records: remove If-None-Match and If-Modified-Since from the "
                "source's extra headers",
                status=304,
                kind="bad_request",
            )
        # GitHub's statistics, report and export endpoints answer 202 while they prepare it.
        return self.error(
            f"answered 202 Accepted at {where}: it is still preparing its answer, and is "
            "asked again later; if it answers so every time, check with the source whether "
            "this address needs a job started first",
            permanent=False,
            status=202,
            retry_after=retry_after_of(response),
            kind="unavailable",
        )

    def _send(self, url: str, what: str, body: bytes | None = None) -> requests.Response:
        headers = {}
        if self.auth == "oauth2_client_credentials":
            self._access_token = oauth.access_token(self)
            headers["Authorization"] = f"Bearer {self._access_token}"
            url = url.replace(ACCESS_TOKEN_MARK, quote(self._access_token, safe=""))
        if self.key_param:
            url = with_query(url, {self.key_param: self.source.source_token})
        if body is None:
            return self._call(
                "GET", url, what=what, headers=headers, verify=self.verify, stream=True
            )
        headers["Content-Type"] = "application/json"
        return self._call(
            "POST", url, what=what, headers=headers, data=body, verify=self.verify, stream=True
        )

    def _call(
        self, method: str, url: str, *, what: str, client: Any = None, **kwargs: Any
    ) -> requests.Response:
        """One request through `client` (the source's session by default), errors typed.

        The answer's status line and headers must arrive by the page's deadline (see
        `importer/deadline.py`), and so must the connection: its timeout is cut to
        what is left of the budget.
        """
        where = public_url(url)
        connect_timeout = self.timeout
        if self.deadline is not None:
            connect_timeout = min(self.timeout, max(self.deadline - time.monotonic(), 0.001))
        reset = request_deadline.set(self.deadline)
        try:
            return (client or self.session).request(
                method, url, timeout=(connect_timeout, self.timeout), **kwargs
            )
        except requests.exceptions.SSLError:
            raise self.error(
                f"failed TLS verification at {where}: if it uses a private CA, add that CA's "
                "certificate to the source's trusted CA certificates",
                kind="tls",
            ) from None
        except requests.Timeout:
            self._check_budget(url, what, slack=0.01)
            raise self.error(
                f"did not answer within {self.timeout:g} s at {where} ({self._timeout_setting}"
                "; if the source is slow, give it a longer request timeout)",
                permanent=False,
                kind="timeout",
            ) from None
        except requests.TooManyRedirects:
            raise self.error(
                f"redirected in a loop from {where} (more than {self.session.max_redirects} "
                "redirects): check the source URL",
                kind="bad_redirect",
            ) from None
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ):
            raise self.error(
                f"has an address that cannot be requested, {where}: check its scheme, host "
                "and port (a port is a number up to 65535)",
                kind="config",
            ) from None
        except requests.RequestException as exc:
            self._check_budget(url, what)
            raise self.error(
                f"could not be reached at {where} ({why_unreachable(exc)})",
                permanent=False,
                kind="unavailable",
            ) from None
        except UnicodeEncodeError as exc:
            if exc.encoding != "latin-1":  # http.client writes headers in Latin-1
                raise self._unreadable_redirect(where, exc) from None
            raise self.error(
                "could not be sent: a header it is sent with holds a character HTTP headers "
                "cannot carry (one beyond Latin-1, such as '…' left from an example). Check "
                "the source's token or key and extra headers",
                kind="config",
            ) from None
        except (ValueError, UnicodeError) as exc:  # a Location requests cannot parse
            raise self._unreadable_redirect(where, exc) from None
        finally:
            request_deadline.reset(reset)

    def _unreadable_redirect(self, where: str, exc: Exception) -> SourceError:
        return self.error(
            f"answered at {where} with a redirect to an address that cannot be read "
            f"({type(exc).__name__}): check the source URL",
            kind="bad_redirect",
        )

    def _status_error(
        self, response: requests.Response, url: str, *, posted: bool = False
    ) -> SourceError:
        status = response.status_code
        content_type = response.headers.get("Content-Type", "")
        detail = ""
        if "html" in content_type:
            head = self._head(response, WEB_PAGE_HEAD_BYTES)
            title = page_title(self.scrub(_readable(head, response)))
            title = title if len(title) <= 80 else f"{title[:79]}…"
            detail = f' (an HTML error page: "{title}")' if title else " (an HTML error page)"
        elif "json" in content_type or content_type.startswith("text/"):
            excerpt = self._excerpt(response)
            detail = f": {excerpt}" if excerpt else ""
        discard(response, self.deadline)
        limited = refused_by_rate_limit(response)
        hint = None if limited else STATUS_HINTS.get(status)
        if status == 400 and posted:
            hint = "check the source's request body and query parameters"
        if status in (400, 422) and self._names_the_page_size(detail):
            hint = (
                f"{hint or 'check the request'}; if it refuses the page size asked "
                f"({self.source.limit_param}={self.source.page_size}), set the source's Page "
                "size to what it allows"
            )
        if response.history and origin(response.url) != origin(url):
            hint = (
                f"it was redirected to another origin, {public_url(response.url)}, where the "
                "source's credentials are not sent: if the source moved, set its URL there"
            )
        return self.error(
            f"answered {status} {response.reason} at {public_url(url)}{detail}"
            + (f"; {hint}" if hint else ""),
            permanent=not (limited or worth_retrying(status)),
            status=status,
            retry_after=retry_after_of(response),
            kind="rate_limited"
            if limited
            else STATUS_KINDS.get(status, "server_error" if status >= 500 else "bad_request"),
        )

    def _names_the_page_size(self, detail: str) -> bool:
        """Whether an error answer speaks of the page size parameter (Google's `maxResults`
        out of range, Zendesk's `page[size]`), the setting the user has to change."""
        name = getattr(self.source, "limit_param", "")
        whole = rf"(?<![\w$\[\]]){re.escape(name)}(?![\w$\[\]])"
        return bool(name) and re.search(whole, detail, re.IGNORECASE) is not None

    def _excerpt(self, response: requests.Response, limit: int = 200) -> str:
        """The start of an error body, on one line: what the source says went wrong.

        Scrubbed before it is cut, so a secret the source echoes is recognised whole; a
        word cut off by the read limit is dropped, as it could be the start of one.
        """
        size = limit * 4
        head = self._head(response, size)
        text = _readable(head, response)
        if len(head) >= size:
            # ("=" is no cut: base64 and signed values hold it, and their start would stay.)
            text = text[: max(map(text.rfind, " \n,;\"'{}[]<>&"), default=0) + 1]
        text = " ".join(self.scrub(text).split())
        return text[:limit] + ("..." if len(text) > limit else "")

    def _head(self, response: requests.Response, size: int) -> bytes:
        """The first `size` bytes of an error body (none when it cannot be read)."""
        try:
            with until(self.deadline, response):
                return response.raw.read(size, decode_content=True) or b""
        except Exception:  # an unreadable error body must not hide the status
            return b""

    # --- bodies ----------------------------------------------------------------------------

    def _check_budget(self, url: str, what: str, *, slack: float = 0.0) -> None:
        """SourceError once the deadline has passed (`slack`: a timeout cut to the deadline
        may fire a hair before the clock says so)."""
        if self.deadline is not None and time.monotonic() > self.deadline - slack:
            raise self.error(
                f"took more than {self.budget:g} s to send {what} at {public_url(url)} "
                f"({self.budget_setting}): it answers too slowly",
                permanent=False,
                kind="timeout",
            )

    def iter_body(
        self, response: requests.Response, *, limit: int, what: str, hint: str = ""
    ) -> Iterator[bytes]:
        """The body in pieces as they arrive; stops with a SourceError once more than `limit`
        bytes arrived, or when the time budget has run out (see `begin`): a read still waiting
        for a source dripping bytes is cut off at the deadline."""
        where = public_url(response.url)

        def too_large() -> SourceError:
            return self.error(
                f"sent {what} larger than {limit // 2**20} MB at {where}"
                + (f": {hint}" if hint else ""),
                kind="too_large",
            )

        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            response.close()
            raise too_large()
        received = 0
        try:
            with until(self.deadline, response):
                while True:
                    self._check_budget(response.url, what)
                    # read1 returns what one read of the socket brings, so the budget is
                    # looked at after every piece, however small (read() would wait for 64 KB).
                    piece = response.raw.read1(READ_CHUNK_BYTES, decode_content=True)
                    if not piece:
                        # Cut off at the deadline, a body without a declared length looks
                        # complete here.
                        self._check_budget(response.url, what)
                        if not _decoded_to_its_end(response.raw):
                            raise self.error(
                                f"broke off while sending {what} at {where}: its compressed "
                                "body ended before the end of its stream",
                                permanent=False,
                                kind="unavailable",
                            )
                        return
                    received += len(piece)
                    if received > limit:
                        raise too_large()
                    yield piece
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            self._check_budget(response.url, what)
            raise self._broke_off(exc, response, what=what, received=received) from None
        finally:
            response.close()

    def _broke_off(
        self, exc: BaseException, response: requests.Response, *, what: str, received: int
    ) -> SourceError:
        """Why a body stopped short, in the words of what happened to it: it stalled, the
        connection closed before its declared end, or its compression is corrupt. Each is
        asked again; what arrived is never read as a page."""
        where = public_url(response.url)
        chain = list(causes(exc))
        timeouts = (TimeoutError, urllib3.exceptions.TimeoutError)
        if any(isinstance(cause, timeouts) for cause in chain):
            return self.error(
                f"stopped sending {what} mid-way at {where}: nothing more came for "
                f"{self.timeout:g} s ({self._timeout_setting}); it is asked again",
                permanent=False,
                kind="timeout",
            )
        if any(isinstance(cause, urllib3.exceptions.DecodeError) for cause in chain):
            encoding = response.headers.get("Content-Encoding", "").strip()
            return self.error(
                f"sent {what} at {where} whose compression (Content-Encoding {encoding}) is "
                "corrupt: it could not be decompressed",
                permanent=False,
                kind="unavailable",
                max_attempts=UNPARSABLE_ANSWER_ATTEMPTS,
            )
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and not response.headers.get("Content-Encoding"):
            return self.error(
                f"broke off while sending {what} at {where}: the connection closed after "
                f"{received} of the {declared} bytes its Content-Length announced",
                permanent=False,
                kind="unavailable",
            )
        return self.error(
            f"broke off while sending {what} at {where} ({type(exc).__name__})",
            permanent=False,
            kind="unavailable",
        )

    def read_json(self, response: requests.Response, *, what: str = "a page") -> Any:
        """The JSON document in a response, read with at most MAX_PAGE_BYTES in memory, and
        refused before parsing when it would take far more memory than that. An empty body
        is no end of the source: a proxy throttling may answer so, page after page."""
        body = bytearray()
        for piece in self.iter_body(
            response, limit=MAX_PAGE_BYTES, what=what, hint="lower the page size"
        ):
            body += piece
        if not body.strip():
            raise self.error(
                f"answered {response.status_code} with an empty body, no JSON, at "
                f"{public_url(response.url)}: check the source URL and its parameters",
                permanent=False,
                kind="not_json",
                max_attempts=UNPARSABLE_ANSWER_ATTEMPTS,
            )
        guard = _XSSI_GUARD.match(body)
        skipped = guard.end() if guard else 0
        text = _as_utf8(body[skipped:] if guard else body, response)
        try:
            return limits.loads(text, refuse=self.error, what=what)
        except ValueError:
            wrapped = _not_one_document(text, response.url, skipped=skipped)
            if wrapped:  # the source's way of answering: asked again, it answers so again
                raise self.error(wrapped, kind="not_json") from None
            raise self.error(
                self._not_json(response, body),
                permanent=False,
                kind="not_json",
                max_attempts=UNPARSABLE_ANSWER_ATTEMPTS,
            ) from None

    def _not_json(self, response: requests.Response, body: bytearray) -> str:
        """Why an answer is not JSON, in what the user can act on: a web page's title, and the
        redirect that led there (a login page a session or a token expired sends to)."""
        content_type = response.headers.get("Content-Type") or "none"
        said = f"did not answer JSON at {public_url(response.url)} (Content-Type {content_type}"
        title = _HTML_TITLE.search(bytes(body[:WEB_PAGE_HEAD_BYTES]))
        if title:
            title = _CONTROL_CHARACTERS.sub("", html.unescape(_decoded(title.group(1), response)))
            text = " ".join(self.scrub(title).split())
            text = text[:80]
            said += f', a web page titled "{text}"' if text else ", a web page"
        if not response.history:
            return said + "): check the source URL"
        return (
            f"{said}), where it was redirected from {public_url(response.history[0].url)}: a "
            "source that sends its API's requests to a web page most often wants other "
            "credentials (a login page), or the URL names the web app rather than its API. "
            "Check the source's authentication and URL"
        )


# Gerrit (and some of Google's APIs) start every JSON answer with this line, so that another
# site cannot run it as a script: it is no part of the JSON.
_XSSI_GUARD = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*\)\]\}',?[ \t]*\r?\n")

# A JSONP answer: the JSON as the argument of a call to the page's script function, as APIs
# answer when the URL names a callback (`cb({...});`; Express writes
# `/**/ typeof cb === 'function' && cb({...});`).
_JSONP = re.compile(
    rb"\A\s*(?:/\*\*/\s*)?(?:typeof\s+[\w$.]+\s*===?\s*['\"]function['\"]\s*&&\s*)?"
    rb"([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*)\s*\(\s*[\[{]"
)


def _not_one_document(body: bytes | bytearray, url: str, *, skipped: int = 0) -> str:
    """Why a body that holds JSON is not one JSON document: it is a JSONP call, or one
    document followed by another or by other text ("" when it is none of these). `skipped`:
    the bytes before `body` (Gerrit's guard line), counted in where the JSON ends."""
    call = _JSONP.match(body)
    if call:
        callback = call.group(1).decode()
        named = [name for name, value in parse_qsl(urlsplit(url).query) if value == callback]
        parameter = f"the '{named[0]}' parameter" if named else "the callback (or jsonp) parameter"
        return (
            f"answered JSONP at {public_url(url)}, not JSON: its JSON is wrapped in a call to "
            f"the script function '{callback}'. Remove {parameter}, which names that function, "
            "from the source URL or its extra parameters, and it answers plain JSON"
        )
    try:
        text = bytes(body).decode("utf-8")
        start = len(text) - len(text.lstrip(" \t\r\n\ufeff"))
        document, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):  # not even its start is JSON (or not UTF-8)
        return ""
    rest = text[end:].lstrip(" \t\r\n")
    if not rest or not isinstance(document, dict | list):
        return ""
    ended = skipped + len(text[:end].encode())
    if rest[0] in "{[":
        return (
            f"answered more than one JSON document at {public_url(url)}: the first ends at "
            f"byte {ended}, and another follows. A page is one JSON document; a source that "
            "answers one a line (JSON Lines) is read as a JSON Lines file from its URL"
        )
    return (
        f"answered JSON followed by other text at {public_url(url)}: its JSON ends at byte "
        f"{ended}, and what follows is no JSON (a warning or debugging output written after "
        "it, most often). Have the source answer its JSON alone: check its settings, and the "
        "source URL's parameters for one that turns debugging on"
    )


# A web page answered for JSON is named by its title, looked for at the start of its body.
WEB_PAGE_HEAD_BYTES = 4096
_HTML_TITLE = re.compile(rb"<title[^>]*>([^<]{1,300})</title>", re.IGNORECASE)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _decoded(body: bytes, response: requests.Response) -> str:
    """The start of a text body as text: UTF-8 when it reads as such (its last character may
    be cut by the read), else in its declared charset."""
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(body, final=False)
    except UnicodeDecodeError:
        pass
    declared = _CHARSET.search(response.headers.get("Content-Type") or "")
    try:
        return body.decode(declared.group(1) if declared else "utf-8", "replace")
    except LookupError:
        return body.decode("utf-8", "replace")


def _readable(head: bytes, response: requests.Response) -> str:
    """The start of an error body in its declared charset, and without control characters
    (UTF-16 read as bytes), so that a secret it echoes reads as the secret, and is scrubbed."""
    return _CONTROL_CHARACTERS.sub("", _decoded(head, response))


def _as_utf8(body: bytearray, response: requests.Response) -> bytes | bytearray:
    """JSON that is not UTF-8, in the charset its Content-Type declares (an older API's
    ISO-8859-1), as UTF-8. JSON is UTF-8 (RFC 8259), and many servers label it wrongly: a
    body that reads as UTF-8 is taken as it is, whatever the label says."""
    declared = _CHARSET.search(response.headers.get("Content-Type") or "")
    if not declared or declared.group(1).lower() in _UTF8_NAMES:
        return body
    try:
        bytes(body).decode("utf-8")
        return body
    except UnicodeDecodeError:
        pass
    try:
        return bytes(body).decode(declared.group(1)).encode()
    except (LookupError, UnicodeDecodeError):
        return body


def declared_its_end(response: requests.Response) -> bool:
    """Whether the body's end is told apart from the connection closing: by a Content-Length
    (a shorter body is an error), chunked transfer (it ends with an end chunk), or a gzip or
    deflate stream (whose own end is checked as it is read). A body with none of them ends
    when the server closes the connection, and one cut off early reads as whole."""
    headers = response.headers
    if headers.get("Content-Length", "").strip().isdigit():
        return True
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return True
    return headers.get("Content-Encoding", "").strip().lower() in ("gzip", "x-gzip", "deflate")


def _decoded_to_its_end(raw: urllib3.HTTPResponse) -> bool:
    """Whether a compressed body reached the end of its gzip or deflate stream. urllib3 does
    not check: a body whose framing is right but whose stream breaks off (a proxy or an
    export job that gave up) reads as complete, a CSV file with its last part missing."""
    decoder = getattr(raw, "_decoder", None)
    stream = getattr(decoder, "_obj", None)
    if stream is None or getattr(decoder, "_state", None) in _GZIP_PAST_ITS_FIRST_MEMBER:
        return True  # not compressed, or a whole gzip member followed by more bytes
    return getattr(stream, "eof", True)


_GZIP_PAST_ITS_FIRST_MEMBER = (GzipDecoderState.OTHER_MEMBERS, GzipDecoderState.SWALLOW_DATA)

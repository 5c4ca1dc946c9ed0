"""REST/JSON sources: a GET per page, in any of the paging styles real APIs use, or a POST
with a JSON body (a GraphQL query, a search API's query) paged by offset, page, cursor or keyset.

The cursor stored with a chunk is what fetches that page again: the offset (offset paging), the
page number (page paging), the source's cursor (cursor paging; read with POST, stored so that it
goes back as the JSON value the answer gave: `request_body.stored_cursor`), the last record's
value before the page (keyset paging, `keyset.py`) or the full URL of the page (next-URL and
Link-header paging). Full URLs carry their own query; `extra_params` and the
page size that a next URL leaves out are added to it (HubSpot's links drop `properties` and
`limit`, which left every later page with empty attributes, ten records at a time), never
replacing what the link asks for. A parameter written into the source URL itself goes with the
first request only, for a source whose links must be followed as they are.
An API key sent as a query parameter is removed from stored URLs and added to each request.
With POST the paging values go into the body instead of the query (`request_body.py`), a
GraphQL answer's `errors` fail the page (or, when they say it is throttled, make it wait as a
429 does: `graphql.py`), and a cursor whose `pageInfo` says there is no next page is the end.

Offset and page-number pages, and where such a source ends, are read by `numbered_pages.py`;
`paging_checks.py` checks that a source's paging neither skips nor repeats records.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

from django.utils.crypto import salted_hmac

from importer.redaction import secret_forms, secrets_of
from importer.sources import graphql, limits, next_page, request_body
from importer.sources.answers import link_to_next, select_records
from importer.sources.base import Page, SourceError, config_error, number_cursor
from importer.sources.keyset import KeysetPages
from importer.sources.numbered_pages import (
    DEPTH_LIMIT_STATUSES,
    PAST_THE_END_STATUSES,
    NumberedPages,
    OffsetPages,
)
from importer.sources.paging_checks import PagingChecks
from importer.sources.rules import (
    AFTER_FIRST_PAGINATIONS,
    KEYSET_VALUE,
    after_first_page_problem,
    cursor_path_problem,
    paging_params,
    post_paging_problem,
    request_body_problem,
    total_path_problem,
)
from importer.sources.totals import NotATotal, told_in, told_total
from importer.sources.transport import ACCESS_TOKEN_MARK, SourceHttp
from importer.sources.urls import (
    DEFAULT_PORTS,
    origin,
    params_left_out,
    public_url,
    with_missing_params,
    with_query,
)

PAGINATIONS = ("offset", "page", "cursor", "keyset", "next_url", "link_header", "none")
# How a credential of the source found in a next URL is stored: a keyed digest of it, so the
# stored cursor names the credential without holding it (an OAuth2 access token is stored as
# transport.ACCESS_TOKEN_MARK).
_SECRET_MARK = re.compile(r"__secret-[0-9a-f]{20}__")


def cursor_for(config, index: int) -> str | None:
    """Where page `index` starts, when the paging style says so without reading the pages.

    Offset and page-number paging do; the other styles learn it only from the page before.
    """
    if config.pagination == "offset":
        return str(index * config.page_size) if index else ""
    if config.pagination == "page":
        return str(config.first_page + index) if index else ""
    return None


class RestJsonSource:
    """A JSON API read page by page; one page becomes one chunk."""

    def __init__(self, import_source) -> None:
        source = import_source
        self.name = source.name
        self.config = source
        # The credentials sent to the source (never the Assets token or the webtrigger's).
        sent = set(secrets_of(source)) - {source.assets_token, source.webtrigger_token}
        self._secret_forms = secret_forms(sorted(sent))
        if not source.source_url:
            raise config_error(source, "it has no source URL")
        if source.pagination not in PAGINATIONS:
            raise config_error(source, f"unknown pagination '{source.pagination}'")
        if cursor_path_problem(source.pagination, source.cursor_path):
            raise config_error(source, cursor_path_problem(source.pagination, source.cursor_path))
        if total_path_problem(source.total_path):
            raise config_error(source, total_path_problem(source.total_path))
        if not isinstance(source.extra_params or {}, dict):
            raise config_error(source, "extra parameters must be a JSON object")
        settings = {name: getattr(source, name) for name in _POST_SETTINGS}
        if after_first_page_problem(settings):
            raise config_error(source, after_first_page_problem(settings))
        # Sent with every request after the first, when the paging has any (cursor paging).
        self._after_first = (
            dict(source.after_first_page or {})
            if source.pagination in AFTER_FIRST_PAGINATIONS
            else {}
        )
        self.posts = source.request_method == "POST"
        if self.posts:
            problem = post_paging_problem("POST", source.pagination)
            problem = problem or request_body_problem(settings)
            if problem:
                raise config_error(source, problem)
            # Where each paging value goes in the body, and what it becomes there.
            self._body_paths = {
                path: _BODY_VALUES.get(what, request_body.NUMBER)
                for what, path in paging_params(settings).items()
            }
            # Where every request goes: the paging leaves the query as written.
            self._post_url = with_query(source.source_url, dict(source.extra_params or {}))
        self.page_size = max(1, source.page_size)
        self.http = SourceHttp(source)
        # What this reader learns of the source's paging, kept from one of its pages to the
        # next (a lane reads many pages with one reader).
        checks = PagingChecks(self)
        self._checks = checks
        self._offsets = OffsetPages(self, checks)
        self._numbers = NumberedPages(self, checks)
        self._keysets = KeysetPages(self)
        # The latest total an answer of this reader told (None: none yet), which settles
        # where an offset or page-number source ends (`numbered_pages.known_total`).
        self.total_told: int | None = None

    def fetch_page(self, cursor: str) -> Page:
        self.http.begin()  # every request of this page shares one time budget
        if self.config.pagination == "offset":
            return self._offsets.page(cursor)
        if self.config.pagination == "page":
            return self._numbers.page(cursor)
        if self.config.pagination == "keyset":
            return self._keysets.page(cursor)
        url = self._url(cursor)
        try:
            response, document, records = self._read(url, after_first=bool(cursor))
        except SourceError as error:
            raise self._explained_refusal(error, cursor) from None
        next_cursor = self._next_cursor(cursor, url, response, document, records)
        if next_cursor:
            self._checks.links_moved_as_served(url, next_cursor, records)
        elif not cursor:
            self._checks.first_page_holds_all(response, document, records)
        return Page(records=records, next_cursor=next_cursor, total=self._total(response, document))

    def _explained_refusal(self, error: SourceError, cursor: str) -> SourceError:
        """A next page the source pointed to itself, refused as a bad request or as not
        there: the usual hint ("check the query parameters") would mislead. Either we added
        parameters its link left out (a link that carries its own state), or the cursor or
        link expired (Salesforce's query locator, a scroll id) while its pages were read."""
        if error.status not in (400, 404, 410, 422) or not cursor:
            return error
        added = {}
        if self.config.pagination in ("next_url", "link_header"):
            added = params_left_out(self._on_the_source(cursor), self._params_for_next_links)
        if added and error.status in (400, 422):
            why = (
                f"The request added {', '.join(added)}, which the source's next link left "
                "out: if the source refuses them there, write them into the source URL "
                "instead (sent with the first request only)"
            )
        else:
            why = (
                "The source refused a next page it pointed to itself: such a cursor or link "
                "may expire while the pages are read (a query locator, a scroll id). Run "
                "the import again; if it fails here again, check the paging settings"
            )
        return error.explained(why)

    @property
    def _params_for_next_links(self) -> dict[str, Any]:
        return {**(self.config.extra_params or {}), **self._limit}

    def _read(self, url: str, *, after_first: bool = False) -> tuple[Any, Any, list[dict]]:
        """One answer: the response, its JSON document and its records (`after_first`: to
        a request for a page after the first, which a POST's body says so in)."""
        response = self._send(url, after_first=after_first)
        if response.status_code == 204:  # No Content: nothing here
            return response, None, []
        document = self.http.read_json(response)
        if self.posts:
            self._refuse_graphql_errors(document, response)
        records = select_records(
            document, self.config.records_path, self.name, scrub=self.http.scrub
        )
        limits.check_record_count(len(records), refuse=self.http.error)
        return response, document, records

    def _send(self, url: str, *, after_first: bool = False) -> Any:
        """The request for `url`: a GET, or a POST of the body with the paging values that
        `url`'s query holds moved into it (and, after the first page, the values that say
        so), to the source URL and its extra parameters."""
        if not self.posts:
            return self.http.get(url)
        body = request_body.paging_moved_into_body(
            url,
            self.config.request_body,
            self._body_paths,
            self._after_first if after_first else None,
        )
        return self.http.post(self._post_url, body)

    def _refuse_graphql_errors(self, document: Any, response: Any) -> None:
        graphql.check_errors(
            document, response.headers, refuse=self.http.error, scrub=self.http.scrub
        )

    def _read_past_first(self, url: str) -> tuple[Any, Any, list[dict]]:
        """An answer past the source's first page. A 404 there is taken for the end only
        when asked twice: a load balancer's passing 404 would end the import early, DONE
        without the records of that page and those after it."""
        try:
            return self._read(url)
        except SourceError as error:
            if error.status not in PAST_THE_END_STATUSES - DEPTH_LIMIT_STATUSES:
                raise
        return self._read(url)

    def _read_after_short(
        self, url: str, *, after_first: bool = False
    ) -> tuple[Any, Any, list[dict]] | None:
        """The answer to a request that follows a short page; None when the source answers it
        with an error that means there is nothing there."""
        try:
            return self._read(url, after_first=after_first)
        except SourceError as error:
            if error.status in PAST_THE_END_STATUSES:
                return None
            raise

    # --- the requests of offset and page-number paging (`numbered_pages.py`) ---------------

    @property
    def _limit(self) -> dict[str, int]:
        return {self.config.limit_param: self.page_size} if self.config.limit_param else {}

    def _numbered_url(self, param: str, number: int) -> str:
        extra = dict(self.config.extra_params or {})
        return with_query(self.config.source_url, {**extra, param: number, **self._limit})

    # --- other paging styles ---------------------------------------------------------------

    def _url(self, cursor: str) -> str:
        config = self.config
        base = config.source_url
        extra = dict(config.extra_params or {})
        if config.pagination == "cursor":
            # A GET's values after the first page are query parameters; a POST's go into
            # its body (`_send`).
            later = {} if self.posts else self._after_first
            position = {**later, config.cursor_param: cursor} if cursor else {}
            return with_query(base, {**extra, **self._limit, **position})
        if config.pagination in ("next_url", "link_header"):
            if cursor:
                return with_missing_params(
                    self._usable(self._on_the_source(cursor)), self._params_for_next_links
                )
            return with_query(base, {**extra, **self._limit})
        return with_query(base, extra)

    def _number(self, cursor: str, default: int) -> int:
        meaning = f"a number, as {self.config.pagination} paging needs"
        return number_cursor(cursor, default=default, source_name=self.name, meaning=meaning)

    def _on_the_source(self, url: str, answered_at: str = "") -> str:
        """A next URL from the source, if it points to the source's own origin (host and
        port, whatever their case or a default port written out): never send the source's
        credentials elsewhere. A link to plain http from a source read over https (a service
        behind a TLS proxy builds its links from its own side of it) is followed over https,
        on the same host: the credentials never travel unencrypted. `answered_at`: the URL
        that gave the link, which a redirect may have taken elsewhere."""
        first, other = origin(self.config.source_url), origin(url)
        if other[0] == "http" and first[0] == "https" and other[1] == first[1]:
            parts = urlsplit(url)
            host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
            port = "" if other[2] == DEFAULT_PORTS["http"] else f":{other[2]}"
            url = urlunsplit(parts._replace(scheme="https", netloc=f"{host}{port}"))
            other = origin(url)
        upgrade = first[0] == "http" and other[0] == "https" and other[1] == first[1]
        if other == first or (upgrade and other[2] in (first[2], DEFAULT_PORTS["https"])):
            return url
        if answered_at and origin(answered_at) == other != first:
            raise SourceError(
                f"source '{self.name}' redirected to {public_url(answered_at)}, and its next "
                "links point there, another host than the source URL "
                f"({public_url(self.config.source_url)}): set the source URL to the address "
                "it redirects to (its next pages are not read elsewhere, where the source's "
                "credentials would not go)",
                kind="bad_cursor",
            )
        raise SourceError(
            f"source '{self.name}' pointed to its next page at {public_url(url)}, another "
            f"host than the source URL ({public_url(self.config.source_url)}): refusing to "
            "send the source's credentials there. If that is another name of the same "
            "service (its canonical host name), set the source URL to that host",
            kind="bad_cursor",
        )

    # --- where the next page starts --------------------------------------------------------

    def _next_cursor(
        self, cursor: str, url: str, response: Any, document: Any, records: list[dict]
    ) -> str | None:
        """Where the next page starts; None at the source's end.

        For these styles the end is a missing next, not an empty page: a filtered scan may
        answer an empty page that leads on to more. An empty page that points to itself is
        the end too; a page with records that does would never end."""
        config = self.config
        if config.pagination == "none":
            return None
        if config.pagination == "cursor":
            value = self._at_next_page_path(document, records, cursor)
            if value is None or value == "" or value is False:
                next_page.refuse_more_without_a_cursor(
                    document, value, path=config.cursor_path, refuse=self.http.error
                )
                return None
            if self.posts and next_page.says_last_beside(document, config.cursor_path):
                return None  # GraphQL's last page: an endCursor, and hasNextPage false
            if str(value) == self._cursor_text(cursor):
                if not records:
                    return None
                raise self._endless(f"'{config.cursor_path}'")
            # A POST sends the cursor back in its body as the JSON value it was (an `Int`
            # variable refuses "25"); a query parameter is text whatever it was.
            return request_body.stored_cursor(value) if self.posts else str(value)
        if config.pagination == "next_url":
            value = self._at_next_page_path(document, records, cursor)
            where = f"'{config.cursor_path}'"
        else:
            value = link_to_next(response)
            where = 'its Link header (rel="next")'
        if not value:
            return None
        next_url = self._on_the_source(
            self._storable(urljoin(response.url, str(value))), answered_at=response.url
        )
        if next_url in (self._storable(url), cursor):
            if not records:
                return None
            raise self._endless(where)
        return next_url

    def _storable(self, url: str) -> str:
        """A URL fit to store as a cursor, and to show: no API key in its query, no
        user:password@, and a credential of the source that its path or a query value repeats
        (a next link signed with the key under a name of its own) replaced by a mark."""
        parts = urlsplit(self.http.without_key(url))
        pairs = parts.query.split("&") if parts.query else []
        for at, pair in enumerate(pairs):
            name, equals, value = pair.partition("=")
            pairs[at] = f"{name}{equals}{self._marked(value)}"
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(
            parts._replace(netloc=netloc, path=self._marked(parts.path), query="&".join(pairs))
        )

    def _marked(self, text: str) -> str:
        """`text` with each credential of the source replaced by a mark naming it, and the
        OAuth2 access token by a mark that stands for whichever token is current when the
        link is followed (the one issued now has expired by then, or another process reads
        the page)."""
        for form in self._secret_forms:
            text = text.replace(form, _secret_mark(form))
        if self.http.access_token:
            for form in secret_forms([self.http.access_token]):
                text = text.replace(form, ACCESS_TOKEN_MARK)
        return text

    def _usable(self, url: str) -> str:
        """A stored URL with the source's credentials and user:password@ put back. A mark
        whose credential the source no longer holds (changed during the import) stops the
        page: another secret is never put in its place."""
        forms = {_secret_mark(form): form for form in self._secret_forms}
        try:
            url = _SECRET_MARK.sub(lambda mark: forms[mark.group(0)], url)
        except KeyError:
            raise self.http.error(
                "its credentials changed during the import (a next link named one that is "
                "no longer set): start the import again",
                kind="credentials_changed",
            ) from None
        userinfo, at, _ = urlsplit(self.config.source_url).netloc.rpartition("@")
        if not at:
            return url
        parts = urlsplit(url)
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))

    def _total(self, response: Any, document: Any) -> int | None:
        """The total an answer tells at the source's total path (its body, or a header:
        `totals.py`); None when it tells none."""
        if not self.config.total_path:
            return None
        try:
            told = told_total(response, document, self.config.total_path)
        except NotATotal as error:
            raise SourceError(
                f"source '{self.name}': the total {told_in(self.config.total_path)} "
                f"{error.what} ({self.http.scrub(str(error.value))[:50]!r})",
                kind="bad_records",
            ) from None
        if told is not None:
            self.total_told = told
        return told

    def _at_next_page_path(self, document: Any, records: list[dict], cursor: str) -> Any:
        return next_page.value_at(
            document,
            records,
            config=self.config,
            cursor_sent=self._cursor_text(cursor),
            source_name=self.name,
        )

    def _cursor_text(self, cursor: str) -> str:
        """The cursor that `cursor` stores, as text: what an answer that echoes it back
        writes, whichever JSON type (`request_body.stored_cursor`)."""
        if self.posts and self.config.pagination == "cursor":
            return str(request_body.cursor_value(cursor))
        return cursor

    def _endless(self, where: str) -> SourceError:
        return SourceError(
            f"source '{self.name}' gave the page it answered as the next one ({where}): it "
            "would never end, so the import stopped",
            kind="endless_source",
        )


# What the paging values other than numbers become in a POST's body: a cursor the JSON value
# the answer gave (`request_body.stored_cursor`), keyset paging's value the JSON it is stored as.
_BODY_VALUES = {"the cursor": request_body.CURSOR, KEYSET_VALUE: request_body.JSON_VALUE}
# The settings that say what a POST's body holds: the template, the paging values, and
# those sent after the first page.
_POST_SETTINGS = (
    "request_method",
    "request_body",
    "pagination",
    "limit_param",
    "offset_param",
    "page_param",
    "cursor_param",
    "after_first_page",
)


def _secret_mark(form: str) -> str:
    digest = salted_hmac("assets-sync.cursor-credential", form, algorithm="sha256").hexdigest()
    return f"__secret-{digest[:20]}__"

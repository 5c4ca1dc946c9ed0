"""A programmable fake third-party source, for the tests of importer/sources/.

One loopback server speaks every paging style the REST connector supports, checks every kind of
auth, issues (and revokes) OAuth2 tokens, serves files, streams answers too big to hold, and can
serve HTTPS with a self-signed certificate. Records are a pure function of their index, so a
test knows exactly what must arrive. Faults come from the DevServer's fault injection.

It also has the habits of real APIs that make paging go wrong: it may cut the page size it is
asked for to a maximum of its own without saying so (`max_limit`), ignore it (`ignore_limit`),
ignore the offset (or page number) and serve its first records for every page
(`ignore_offset`), number its pages by the size asked for while it serves at most `max_limit`
records (`numbers_by_asked_size`, an offset computed before the cap: the records between are
never served), report a total that disagrees with what it serves (`reported_total`), answer
past its end with an error, a 204 No Content or a 200 with no body (`past_end_status`) or its
last page again (`clamp_pages`, as Django's `Paginator.get_page` does, and APIs that clamp an
offset), answer an empty list as `null` (`null_when_empty`, as Go writes a nil slice) or leave
it out (`omit_when_empty`, as protobuf's JSON does), number its pages from 0 (`first_page`, as
Spring Data does; a page before the first is served as the first, as Laravel does) and say
where a page stands (`page_meta`: Spring's `"first"`, JSON:API's links), give empty pages that
still lead on to more (`empty_hops`, as a filtered DynamoDB scan does), read its records in
another order after a few answers (`order_moves_after`, as a query without a stable sort does),
and misbehave on chosen answers (`misbehave`): cut an answer off mid-way, drip it one byte at a
time (its body, or its status line and headers before it), nest it absurdly deep, flood it with
empty objects, or answer a page it has as if it had none (an empty list, or 404: a replica that
lags, a cache that hiccups), or write it in ISO-8859-1 and say so in its Content-Type, as older
APIs do (or label UTF-8 so, as misconfigured ones do), or send a header line without a colon
(`broken_header`, as a hand-written proxy may), stop sending half-way and leave the
connection open (`stall`), close it half-way short of its Content-Length (`cut_short`), or
send a corrupt gzip body (`bad_gzip`). It may also refuse to be paged deeper than
`depth_limit` records, answering 400 or 422 as a search index's result window does (and cap the
total it tells at that depth, as one does), tell its total on its first page alone
(`total_on_first_page_only`), refuse pages smaller than `min_limit`, or lead from
its last cursor page back to its first (or the one holding record `wraps_to`) under a new
cursor (`wraps_around`). With `numbers_by_asked_size`, its next links move their start by
the size asked for too.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hmac
import ipaddress
import json
import os
import re
import secrets
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from importer.devtools import faults
from importer.devtools.faults import DevServer, Reply, Request, error_reply, json_reply

ONE_MB = 1024 * 1024


def fake_record(i: int) -> dict[str, Any]:
    """Record number i (from 1)."""
    return {"id": i, "name": f"asset-{i:03d}", "site": ("Berlin", "Lyon", "Porto")[i % 3]}


@dataclass
class StreamReply(Reply):
    """An answer sent piece by piece: chunked, with a declared Content-Length, or ended by
    closing the connection (`close_delimited`, as HTTP/1.0 servers and some exports do)."""

    chunks: Iterable[bytes] = ()
    declared_length: int | None = None
    close_delimited: bool = False
    # Seconds between the bytes of the status line and headers (0: sent at once).
    head_drip_interval: float = 0.0
    # Header lines sent as they are, after the others (a line without a colon).
    raw_header_lines: tuple[bytes, ...] = ()


class _StreamingHandler(faults._Handler):
    """The dev servers' handler, able to stream a StreamReply instead of one bytes body."""

    def _send(self, reply: Reply, *, drip: float = 0.0) -> None:
        if not isinstance(reply, StreamReply) or drip:
            super()._send(reply, drip=drip)
            return
        if reply.head_drip_interval:
            self._send_head_dripping(reply)
            return
        chunked = reply.declared_length is None and not reply.close_delimited
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif reply.close_delimited:
            self.send_header("Connection", "close")  # the body ends when the connection does
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(reply.declared_length))
        for line in reply.raw_header_lines:
            self._headers_buffer.append(line + b"\r\n")
        self.end_headers()
        sent = 0
        try:
            for piece in reply.chunks:
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client stopped reading, as it should
        finally:
            self.app.streamed.append(sent)
            if reply.declared_length is not None and sent < reply.declared_length:
                self.close_connection = True  # the rest never comes: the connection says so

    def _send_head_dripping(self, reply: StreamReply) -> None:
        """The status line and headers a byte at a time, then the body at once."""
        body = b"".join(reply.chunks)
        head = (
            f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sent = 0
        try:
            for position in range(len(head)):
                self.wfile.write(head[position : position + 1])
                sent += 1
                time.sleep(reply.head_drip_interval)
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client hung up, as it should
        finally:
            self.app.streamed.append(sent)


def self_signed_certificate(host: str = "127.0.0.1") -> tuple[str, str]:
    """(certificate PEM, private key PEM) for `host`, valid for a day: a private CA of one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@dataclass
class FakeFile:
    content: bytes | Callable[[], bytes]  # a function: the file is generated for each download
    content_type: str = "text/csv"
    headers: dict[str, str] = field(default_factory=dict)  # e.g. a Content-Encoding
    status: int = 200
    close_delimited: bool = False  # no length told: the body ends when the connection closes


@dataclass
class Misbehaviour:
    """How the next `times` answers whose URL contains `path_contains` go wrong (-1: all)."""

    how: str  # "cut_off", "drip", "drip_head", "deep" or "flood"
    times: int = 1
    path_contains: str = ""


MISBEHAVIOURS = (
    "cut_off",
    "drip",
    "drip_head",
    "deep",
    "flood",
    "empty",
    "not_found",
    "latin1",
    "mislabelled",
    "broken_header",
    "stall",
    "cut_short",
    "bad_gzip",
)


@dataclass
class TokenGrant:
    """An issued OAuth2 token and how many more requests it is good for (None: unlimited)."""

    uses_left: int | None
    form: dict[str, str] = field(default_factory=dict)


class FakeSource(DevServer):
    """A third-party API with `records` records, guarded by `auth` (see `_authorized`).

    Routes (records at the path a test configures as `records_path`):
      GET /api/offset?offset&limit    {"data": {"items": [...]}, "meta": {"total": n}}
      GET /api/page?page&per_page     {"items": [...]}  (pages start at `first_page`)
      GET /api/cursor?cursor&limit    {"items": [...], "meta": {"next_cursor": "..." | null}}
      GET /api/next?start&limit       {"results": [...], "links": {"next": relative URL | null}}
      GET /api/link?start&limit       [...] with a Link: <...>; rel="next" header
      GET /api/odata?$top&$skiptoken  {"value": [...], "@odata.count": n,
                                      "@odata.nextLink": absolute URL}  (as Microsoft Graph)
      GET /api/since?since&limit      [...] the records whose `keyset_field` is past `since`,
                                      in its order (as GitHub's /users?since=<id>)
      GET /api/all                    [...] every record
      GET /api/stuck                  a page whose next cursor is the one just asked for
      GET /api/maintenance            200 with an HTML page
      GET /api/huge, /api/huge-declared   `huge_bytes` of JSON, chunked or with Content-Length
      GET /files/<name>               a file added with `add_file`
      POST /oauth/token               client-credentials grant
      GET /api/echo-error             400 whose JSON body repeats the request's URL and headers
      any path in `redirects`         a redirect there (status, target), the query passed on
    Without a limit in the query, pages hold `default_limit` records (the server's choice).
    Page answers also carry {"total": n} (`reported_total` when set).
    """

    def __init__(
        self,
        records: int = 23,
        *,
        record: Callable[[int], dict[str, Any]] = fake_record,
        max_limit: int | None = None,
        numbers_by_asked_size: bool = False,
        ignore_limit: bool = False,
        ignore_offset: bool = False,
        reported_total: int | None = None,
        past_end_status: int | None = None,
        depth_limit: int | None = None,
        depth_limit_status: int = 400,
        min_limit: int = 1,
        clamp_pages: bool = False,
        wraps_around: bool = False,
        wraps_to: int = 0,
        empty_hops: frozenset[int] = frozenset(),
        null_when_empty: bool = False,
        omit_when_empty: bool = False,
        order_moves_after: int | None = None,
        grows_after: tuple[int, int] | None = None,
        auth: str = "none",
        username: str = "",
        secret: str = "",
        key_name: str = "X-API-Key",
        basic_charset: str = "utf-8",
        token_max_uses: int | None = None,
        token_lifetime: int = 3600,
        first_page: int = 1,
        default_limit: int = 10,
        tls: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self._httpd.RequestHandlerClass = _StreamingHandler
        self._httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self.auth = auth
        self.username = username
        self.secret = secret
        self.key_name = key_name
        # The bytes Basic credentials must arrive as (base64 of `username:secret` in it).
        self.basic_charset = basic_charset
        self.token_max_uses = token_max_uses
        self.token_lifetime = token_lifetime
        self.first_page = first_page
        self.default_limit = default_limit
        self.huge_bytes = 60 * ONE_MB
        # Next URLs repeat the request's query, as many APIs do (True); only its limit
        # (False); or nothing but where the next page starts ("nothing", as HubSpot's links).
        self.echo_query: bool | str = True
        # The Link header's relation for the next page: servers write it in any case, and
        # some give a link several relations (RFC 8288).
        self.next_rel = "next"
        # How /api/link writes its Link header: {next} and {first} are absolute URLs, {path}
        # the next page's path and query alone (a relative link), {rel} the relation above.
        # Any path parameter after ";" (`/api/link;jsessionid=…`, as Java servers write
        # them) is served as /api/link.
        self.link_template = '<{next}>; rel="{rel}", <{first}>; rel="first"'
        # Parameters every next link carries besides (a link signed with the caller's key);
        # "{token}" in a value stands for the OAuth2 access token the request was sent with,
        # "{start}" for the next page's start and "{limit}" for the page size asked for
        # (names the source writes in its links but does not read: an older name of the
        # start, its own name of the page size).
        self.next_link_params: dict[str, str] = {}
        # Where /api/next's next links point: some APIs put a session or key in the path
        # (any path under /api/next/ is served as /api/next).
        self.next_link_path = "/api/next"
        self.max_limit = max_limit
        self.numbers_by_asked_size = numbers_by_asked_size
        self.ignore_limit = ignore_limit
        self.ignore_offset = ignore_offset
        self.reported_total = reported_total
        # Tells its total on its first page alone, as some APIs do.
        self.total_on_first_page_only = False
        self.past_end_status = past_end_status
        self.depth_limit = depth_limit
        self.depth_limit_status = depth_limit_status
        self.min_limit = min_limit
        self.clamp_pages = clamp_pages
        self.wraps_around = wraps_around
        self.wraps_to = wraps_to
        self.empty_hops = empty_hops
        self.null_when_empty = null_when_empty
        self.omit_when_empty = omit_when_empty
        # Next links that go on past the last record, to empty pages without end (an API
        # that always links offset + limit).
        self.endless_links = False
        # What a page-number answer says of its place: "spring" (`"first"`, `"number"`, as
        # Spring's Page does), "links" (`links.first` and `links.prev`, null on the first
        # page, as JSON:API has them), "naive_prev" (links too, with a previous link on the
        # first page as well, to a page before it: a link made without checking).
        self.page_meta = ""
        # What a page number before the first gets: the first page (as Laravel serves it),
        # or the last ("last", as Django's Paginator.get_page does).
        self.before_first_page = "first"
        self.order_moves_after = order_moves_after
        # /api/since: the field its records are read after, whether it ignores `since` (and
        # answers its first records to every request), and whether it keeps its records in
        # another order than that field's (a query without `ORDER BY`: each page is the first
        # records past `since` as stored, and the ones stored after them are skipped).
        self.keyset_field = "id"
        self.ignores_since = False
        self.unsorted = False
        # `since` counts the record it names in (>=), as some APIs' `since` does: each page
        # starts with the last record of the page before.
        self.inclusive_since = False
        # Its records from the highest value down, `since` still asking for the values above
        # it (a `since` that does not follow a descending sort); and a field of numbers
        # written as text ("id": "10"), sorted and compared as the numbers they are.
        self.descending = False
        self.numbers_as_text = False
        # Each answer stamps its records with when it was made (a device's last check-in, a
        # signed link): a record read twice differs, though it is the same record.
        self.stamps_each_answer = False
        # (answers, records): once that many pages are answered, that many records are added
        # at the end, as a busy fleet enrols devices while it is read (a negative number:
        # removed after the first, as devices retired: every later record moves up).
        self.grows_after = grows_after
        self.pages_answered = 0
        self.answers_read = 0
        self.misbehaviours: list[Misbehaviour] = []
        self.drip_interval = 0.5
        # Bytes before every JSON answer: Gerrit's `)]}'` line, that keeps a page from
        # running the answer as a script.
        self.answer_prefix = b""
        # How long a stalled answer keeps its connection open without sending more.
        self.stall_seconds = 3.0
        self.deep_levels = 100_000
        self.flood_bytes = 49 * ONE_MB
        self._record = record
        self.records = [record(i) for i in range(1, records + 1)]
        self.files: dict[str, FakeFile] = {}
        self.requests: list[Request] = []
        self.streamed: list[int] = []
        self.tokens: dict[str, TokenGrant] = {}
        self.redirects: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()
        self.tls = tls is not None
        if tls is not None:
            self._serve_tls(*tls)

    def _serve_tls(self, certificate_pem: str, key_pem: str) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as directory:
            cert_path = os.path.join(directory, "cert.pem")
            key_path = os.path.join(directory, "key.pem")
            with open(cert_path, "w") as cert_file, open(key_path, "w") as key_file:
                cert_file.write(certificate_pem)
                key_file.write(key_pem)
            context.load_cert_chain(cert_path, key_path)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)

    def _handle_error(self, request: Any, client_address: Any) -> None:
        # Tests make the client give up (timeouts, oversized pages): not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        ThreadingHTTPServer.handle_error(self._httpd, request, client_address)

    @property
    def base_url(self) -> str:
        url = super().base_url
        return url.replace("http://", "https://", 1) if self.tls else url

    # --- what a test sets up and looks at --------------------------------------------------

    def add_file(
        self,
        name: str,
        content: bytes | Callable[[], bytes],
        content_type: str = "text/csv",
        headers: dict[str, str] | None = None,
        status: int = 200,
        close_delimited: bool = False,
    ) -> str:
        """Serve `content` at /files/<name> (a function's answer, made anew for each download,
        as an export endpoint stamps its time), with `headers` and `status` (`close_delimited`:
        without a length, ended by closing the connection); returns its URL."""
        self.files[name] = FakeFile(content, content_type, headers or {}, status, close_delimited)
        return f"{self.base_url}/files/{name}"

    def revoke_tokens(self) -> None:
        with self._lock:
            self.tokens.clear()

    def token_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/oauth/token"]

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def on_request(self, request: Request) -> None:
        self.requests.append(request)

    def misbehave(self, how: str, *, times: int = 1, path_contains: str = "") -> None:
        """Make the next `times` answers to the record routes (and token grants) go wrong
        (see the module doc)."""
        if how not in MISBEHAVIOURS:
            raise ValueError(f"how must be one of {', '.join(MISBEHAVIOURS)}")
        with self._lock:
            self.misbehaviours.append(Misbehaviour(how, times, path_contains))

    def _misbehaviour_for(self, request: Request) -> str | None:
        with self._lock:
            for rule in self.misbehaviours:
                if rule.path_contains in request.raw_path:
                    if rule.times > 0:
                        rule.times -= 1
                        if rule.times == 0:
                            self.misbehaviours.remove(rule)
                    return rule.how
        return None

    def _misbehaving(self, how: str, reply: Reply) -> Reply:
        if how == "cut_off":  # as a proxy that gave up half-way and said so in Content-Length
            return Reply(200, reply.body[: len(reply.body) // 2], reply.content_type)
        if how == "drip":
            return StreamReply(200, content_type=reply.content_type, chunks=self._drip(reply.body))
        if how == "drip_head":
            return StreamReply(
                reply.status,
                content_type=reply.content_type,
                chunks=[reply.body],
                head_drip_interval=self.drip_interval,
            )
        if how == "empty":
            return json_reply(200, {"data": {"items": []}, "items": [], "meta": {}})
        if how == "not_found":
            return error_reply(404, "No such page")
        if how == "mislabelled":  # UTF-8, as JSON is, but labelled ISO-8859-1
            return Reply(reply.status, reply.body, "application/json; charset=ISO-8859-1")
        if how == "latin1":
            body = reply.body.decode().encode("iso-8859-1")
            return Reply(reply.status, body, "application/json; charset=ISO-8859-1")
        if how == "broken_header":
            return StreamReply(
                reply.status,
                content_type=reply.content_type,
                chunks=[reply.body],
                declared_length=len(reply.body),
                raw_header_lines=(b"this line has no colon",),
            )
        if how == "stall":  # half the body, then nothing, the connection left open
            half = reply.body[: len(reply.body) // 2]
            return StreamReply(
                200,
                content_type=reply.content_type,
                chunks=self._stalling(half),
                declared_length=len(reply.body),
            )
        if how == "cut_short":  # half the body, then the connection closes
            return StreamReply(
                200,
                content_type=reply.content_type,
                chunks=[reply.body[: len(reply.body) // 2]],
                declared_length=len(reply.body),
            )
        if how == "bad_gzip":  # a gzip header, then bytes that are no deflate stream
            body = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64
            return Reply(200, body, reply.content_type, headers={"Content-Encoding": "gzip"})
        if how == "deep":
            levels = self.deep_levels
            body = b'{"items": [' + b"[" * levels + b"]" * levels + b"]}"
            return Reply(200, body, "application/json")
        return self._flood()

    def _stalling(self, first: bytes) -> Iterator[bytes]:
        yield first
        time.sleep(self.stall_seconds)

    def _drip(self, body: bytes) -> Iterator[bytes]:
        for position in range(len(body)):
            yield body[position : position + 1]
            time.sleep(self.drip_interval)

    def _flood(self) -> StreamReply:
        """`flood_bytes` of `{},` in a records list: tiny on the wire, huge once parsed."""
        piece = b"{}," * (ONE_MB // 3)
        count = max(1, self.flood_bytes // len(piece))
        chunks = [b'{"items": [', *([piece] * count), b"{}]}"]
        return StreamReply(200, content_type="application/json", chunks=chunks)

    # --- routes ----------------------------------------------------------------------------

    def route(self, request: Request) -> Reply:
        if request.path in self.redirects:
            status, target = self.redirects[request.path]
            # "{token}" stands for the access token the request was sent with, as a gateway
            # that hands it on in the address would write it.
            target = target.replace("{token}", request.bearer_token() or "")
            query = request.raw_path.partition("?")[2]
            location = f"{target}{'&' if '?' in target else '?'}{query}" if query else target
            return Reply(status, b"", "text/plain", headers={"Location": location})
        if request.path == "/api/echo-error":
            # Some APIs answer a bad request with what they received, headers included.
            plumbing = {"host", "user-agent", "accept-encoding", "accept", "connection"}
            headers = {k: v for k, v in request.headers.items() if k not in plumbing}
            return json_reply(400, {"url": request.raw_path, "headers": headers})
        if request.path == "/oauth/token" and request.method == "POST":
            token = self._issue_token(request)
            how = self._misbehaviour_for(request) if token.status == 200 else None
            return self._misbehaving(how, token) if how else token
        if not self._authorized(request):
            return error_reply(401, "Missing or wrong credentials")
        if request.path.startswith("/files/"):
            file = self.files.get(request.path.removeprefix("/files/"))
            if file is None:
                return error_reply(404, f"No file {request.path}")
            content = file.content() if callable(file.content) else file.content
            if file.close_delimited:
                return StreamReply(
                    file.status,
                    content_type=file.content_type,
                    chunks=[content],
                    close_delimited=True,
                )
            return Reply(file.status, content, file.content_type, headers=file.headers)
        handler: Callable[[Request], Reply] | None = {
            "/api/offset": self._offset,
            "/api/page": self._page,
            "/api/cursor": self._cursor,
            "/api/next": self._next,
            "/api/link": self._link,
            "/api/odata": self._odata,
            "/api/since": self._since,
            "/api/all": lambda request: json_reply(200, self.records),
            "/api/stuck": self._stuck,
            "/api/maintenance": lambda request: Reply(
                200, b"<html><body>Down for maintenance</body></html>", "text/html"
            ),
            "/api/huge": lambda request: self._huge(declare=False),
            "/api/huge-declared": lambda request: self._huge(declare=True),
        }.get("/api/next" if request.path.startswith("/api/next/") else request.path.split(";")[0])
        if handler is None:
            return error_reply(404, f"No route for {request.path}")
        reply = handler(request)
        if self.answer_prefix and reply.status == 200:
            reply = dataclasses.replace(reply, body=self.answer_prefix + reply.body)
        how = self._misbehaviour_for(request) if reply.status == 200 else None
        return self._misbehaving(how, reply) if how else reply

    def _authorized(self, request: Request) -> bool:
        if self.auth == "none":
            return True
        if self.auth == "bearer":
            given = request.bearer_token() or ""
        elif self.auth == "basic":
            pair = f"{self.username}:{self.secret}".encode(self.basic_charset)
            expected = base64.b64encode(pair).decode()
            return _same(request.headers.get("authorization", ""), f"Basic {expected}")
        elif self.auth == "api_key_header":
            given = request.headers.get(self.key_name.lower(), "")
        elif self.auth == "api_key_query":
            given = request.query.get(self.key_name, [""])[0]
        elif self.auth == "oauth2":
            in_query = request.query.get("access_token", [""])[0]  # a link that repeats it
            if in_query and in_query not in self.tokens:
                return False
            return self._use_token(request.bearer_token() or "")
        else:
            raise ValueError(f"unknown auth {self.auth}")
        return _same(given, self.secret)

    def _use_token(self, token: str) -> bool:
        with self._lock:
            grant = self.tokens.get(token)
            if grant is None:
                return False
            if grant.uses_left is not None:
                grant.uses_left -= 1
                if grant.uses_left <= 0:
                    del self.tokens[token]  # expires after this request
            return True

    def _issue_token(self, request: Request) -> Reply:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return json_reply(400, {"error": "unsupported_grant_type"})
        if not (
            _same(form.get("client_id", ""), self.username)
            and _same(form.get("client_secret", ""), self.secret)
        ):
            return json_reply(401, {"error": "invalid_client"})
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens[token] = TokenGrant(self.token_max_uses, form)
        return json_reply(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime},
        )

    # --- paging ----------------------------------------------------------------------------

    def _window(self, start: int, limit: int) -> list[dict[str, Any]]:
        if self.grows_after is not None:
            with self._lock:
                self.pages_answered += 1
                answers, change = self.grows_after
                if self.pages_answered == answers and change < 0:
                    self.records = self.records[:1] + self.records[1 - change :]
                elif self.pages_answered == answers:
                    first = len(self.records) + 1
                    added = range(first, first + change)
                    self.records = self.records + [self._record(i) for i in added]
        records = self.records
        if self.order_moves_after is not None:
            with self._lock:
                self.answers_read += 1
                moved = self.answers_read > self.order_moves_after
            if moved and start < len(records):
                # The order has moved on by ten records: each page overlaps the next one's
                # first records, and skips as many of its own.
                records = records[10:] + records[:10]
        window = records[start : start + limit]
        if self.stamps_each_answer:
            stamp = time.monotonic_ns()
            window = [{**record, "last_seen": stamp} for record in window]
        return window

    def _limit(self, request: Request, name: str = "limit") -> int:
        """The page size the server serves: the one asked for, unless it ignores that or cuts
        it to its own maximum (without saying so, as many APIs do)."""
        limit = (
            self.default_limit if self.ignore_limit else _number(request, name, self.default_limit)
        )
        return min(limit, self.max_limit) if self.max_limit is not None else limit

    @property
    def total(self) -> int:
        return len(self.records) if self.reported_total is None else self.reported_total

    def _items(self, start: int, limit: int) -> list[dict[str, Any]] | None:
        items = self._window(start, limit)
        return None if not items and self.null_when_empty else items

    def _hop(self, request: Request, start: int) -> bool:
        """Whether this answer is an empty page on the way to the records at `start`."""
        return start in self.empty_hops and "hop" not in request.query

    def _past_the_end(self, start: int, limit: int) -> Reply | None:
        if limit < self.min_limit:
            return error_reply(400, f"limit must be at least {self.min_limit}")
        if self.depth_limit is not None and start + limit > self.depth_limit:
            return error_reply(
                self.depth_limit_status,
                "Result window is too large, from + size must be less than or equal to: "
                f"[{self.depth_limit}]",
            )
        if self.past_end_status is not None and start >= len(self.records):
            if self.past_end_status in (200, 204):  # 200: with an empty body
                return Reply(self.past_end_status, b"")
            return error_reply(self.past_end_status, "No such page")
        return None

    def _offset(self, request: Request) -> Reply:
        start = 0 if self.ignore_offset else _number(request, "offset", 0)
        limit = self._limit(request)
        if self.clamp_pages and start >= len(self.records):  # the last records, for any offset
            start = max(0, len(self.records) - limit)
        items = self._items(start, limit)
        past = self._past_the_end(start, limit)
        data = {} if self.omit_when_empty and not items else {"items": items}
        meta = {} if start and self.total_on_first_page_only else {"total": self.total}
        return past or json_reply(200, {"data": data, "meta": meta})

    def _page(self, request: Request) -> Reply:
        limit = self._limit(request, "per_page")
        number = (
            self.first_page if self.ignore_offset else _number(request, "page", self.first_page)
        )
        # A page before the first is served as the first, as Laravel's paginator does.
        size = _number(request, "per_page", limit) if self.numbers_by_asked_size else limit
        start = max(number - self.first_page, 0) * size
        last = max(0, (len(self.records) - 1) // limit * limit)
        if number < self.first_page and self.before_first_page == "last":
            start = last  # as Django's Paginator.get_page does
        if self.clamp_pages and start >= len(self.records):  # the last page, for any page after
            start = last
        past = self._past_the_end(start, limit)
        items = self._items(start, limit)
        body = {"total": self.total} if self.omit_when_empty and not items else {"items": items}
        if self.page_meta == "spring":
            body |= {"first": number <= self.first_page, "number": number}
        elif self.page_meta in ("links", "naive_prev"):
            linked = number > self.first_page or self.page_meta == "naive_prev"
            page_link = f"{self.base_url}/api/page?page="
            body |= {
                "links": {
                    "first": f"{page_link}{self.first_page}",
                    "prev": f"{page_link}{number - 1}" if linked else None,
                }
            }
        if number <= self.first_page or not self.total_on_first_page_only:
            body["total"] = self.total
        return past or json_reply(200, body)

    def _cursor(self, request: Request) -> Reply:
        cursor = request.query.get("cursor", ["c0"])[0]
        position, _, lap = cursor.removeprefix("c").partition("~")
        start = int(position.removesuffix("h"))
        if start in self.empty_hops and not cursor.endswith("h"):
            hop = {"meta": {"next_cursor": f"{cursor}h"}}
            return json_reply(200, hop if self.omit_when_empty else {"items": [], **hop})
        limit = self._limit(request)
        following = f"c{start + limit}" if start + limit < len(self.records) else None
        if following and lap:
            following += f"~{lap}"  # every cursor of a new round is new
        if following is None and self.wraps_around:  # back to the start, under a new cursor
            following = f"c{self.wraps_to}~{time.monotonic_ns()}"
        items = self._window(start, limit)
        body = {"items": items, "meta": {"next_cursor": following}, "total": self.total}
        return json_reply(200, body)

    def _following_query(self, request: Request, start: int) -> str | None:
        """The query of the next page: the request's own (API key included), start moved on
        by the records served (or by the size asked for, `numbers_by_asked_size`)."""
        limit = self._limit(request)
        if self.numbers_by_asked_size:
            limit = _number(request, "limit", limit)
        if start + limit >= len(self.records) and not self.endless_links:
            return None
        query = {name: values[0] for name, values in request.query.items() if name != "hop"}
        if self.echo_query is False:
            query = {"limit": str(limit)}
        elif self.echo_query == "nothing":
            query = {}
        token = request.bearer_token() or ""
        asked = str(_number(request, "limit", self._limit(request)))
        extra = {
            name: value.replace("{token}", token)
            .replace("{start}", str(start + limit))
            .replace("{limit}", asked)
            for name, value in self.next_link_params.items()
        }
        return urlencode({**query, **extra, "start": start + limit})

    def _next(self, request: Request) -> Reply:
        start = _number(request, "start", 0)
        if self._hop(request, start):
            query = urlencode({**{k: v[0] for k, v in request.query.items()}, "hop": 1})
            return json_reply(200, {"results": [], "links": {"next": f"/api/next?{query}"}})
        items = self._window(start, self._limit(request))
        following = self._following_query(request, start)
        links = {"next": f"{self.next_link_path}?{following}" if following else None}
        return json_reply(200, {"results": items, "links": links})

    def _odata(self, request: Request) -> Reply:
        """Microsoft Graph's shape: keys with dots in them, an opaque skip token, the page
        size asked for in `$top` (capped at `max_limit`, as Graph caps it at 999)."""
        token = request.query.get("$skiptoken", [""])[0]
        start = int(token.removeprefix("s")) if token.startswith("s") else 0
        limit = self._limit(request, "$top")
        body: dict[str, Any] = {"@odata.count": self.total, "value": self._window(start, limit)}
        if start + limit < len(self.records):
            query = urlencode(
                {"$top": request.query.get("$top", [limit])[0], "$skiptoken": f"s{start + limit}"}
            )
            body["@odata.nextLink"] = f"{self.base_url}/api/odata?{query}"
        return json_reply(200, body)

    def _link(self, request: Request) -> Reply:
        start = _number(request, "start", 0)
        if self._hop(request, start):
            query = urlencode({**{k: v[0] for k, v in request.query.items()}, "hop": 1})
            return json_reply(200, [], {"Link": f'<{self.base_url}/api/link?{query}>; rel="next"'})
        items = self._window(start, self._limit(request))
        following = self._following_query(request, start)
        headers = {}
        if following:
            headers["Link"] = self.link_template.format(
                next=f"{self.base_url}/api/link?{following}",
                path=f"/api/link?{following}",
                first=f"{self.base_url}/api/link?start=0",
                rel=self.next_rel,
                base=self.base_url,
                query=following,
            )
        return json_reply(200, items, headers)

    def _since(self, request: Request) -> Reply:
        """Keyset paging: the records after the `since` value (compared as the field's values
        are: numbers as numbers), at most `limit` (cut to `max_limit`)."""
        name = self.keyset_field
        value_of = (lambda value: int(value)) if self.numbers_as_text else (lambda value: value)
        stored = sorted(
            self.records, key=lambda record: value_of(record[name]), reverse=self.descending
        )
        if self.unsorted:  # every seventh record, then every seventh from the second, ...
            stored = [record for start in range(7) for record in stored[start::7]]
        since = request.query.get("since", [None])[0]
        if since is not None and not self.ignores_since:
            first = stored[0][name] if stored else None
            numeric = isinstance(first, int | float) or self.numbers_as_text
            if numeric and not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", since):
                # As a database's or Go's parser reads a number: no exponent ("1e+16").
                return error_reply(400, f"since: not a number: {since}")
            after = Decimal(since) if numeric else since
            stored = [
                record
                for record in stored
                if value_of(record[name]) > after
                or (self.inclusive_since and value_of(record[name]) == after)
            ]
        return json_reply(200, stored[: self._limit(request)])

    def _stuck(self, request: Request) -> Reply:
        cursor = request.query.get("cursor", ["again"])[0]
        return json_reply(200, {"items": self.records[:2], "meta": {"next_cursor": cursor}})

    def _huge(self, *, declare: bool) -> StreamReply:
        """`huge_bytes` of valid-looking JSON, generated as it is sent."""
        piece = (b'{"id": 1, "pad": "' + b"x" * (ONE_MB - 32) + b'"},').ljust(ONE_MB, b" ")
        count = self.huge_bytes // ONE_MB
        chunks = [b'{"items": [', *([piece] * count), b"{}]}"]
        length = sum(len(c) for c in chunks) if declare else None
        return StreamReply(
            200, content_type="application/json", chunks=chunks, declared_length=length
        )


def _number(request: Request, name: str, default: int) -> int:
    values = request.query.get(name)
    return int(values[0]) if values else default


def _same(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def jsonl(records: Iterable[dict[str, Any]]) -> bytes:
    """Records as JSON Lines."""
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)

"""Fault injection and the small HTTP plumbing both development servers share.

The Assets sandbox and the demo source are real HTTP servers (stdlib only, so they start in
milliseconds and can run in a thread inside a test). A test or an operator makes them misbehave
on purpose, `server.faults.add(path_contains="/data", status=429, retry_after="2")` or
`POST /_faults` with the same keys as JSON, to show how the importer copes with rate limits,
server errors, slow answers and dropped connections.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from importer import json_codec

DEFAULT_FAULT_BODY = json.dumps({"errorMessages": ["injected fault"]})


@dataclass
class FaultRule:
    """One way to misbehave, applied to the next `times` matching requests (-1: forever).

    status 0 only delays the request (`delay` seconds) and then answers it normally;
    `drop` closes the connection without any answer, like a crashed proxy; `lose_answer`
    does the request's work and then closes the connection without its answer, like a proxy
    that gave up waiting; `drip` sends the answer (the rule's, or the real one with status 0)
    a byte every `drip` seconds, like a sick proxy. `body_contains` narrows the rule to
    requests whose body holds it.
    """

    method: str | None = None
    path_contains: str = ""
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    delay: float = 0.0
    drop: bool = False
    lose_answer: bool = False
    body: str | None = None
    body_contains: str = ""
    drip: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)  # more headers of the answer

    def __post_init__(self) -> None:
        if self.method is not None:
            self.method = self.method.upper()
        if self.times == 0 or self.times < -1:
            raise ValueError("times must be a positive number of requests, or -1 for forever")
        if self.status != 0 and not 200 <= self.status <= 599:
            raise ValueError("status must be 0 (delay only) or an HTTP status code")
        if self.delay < 0 or self.drip < 0:
            raise ValueError("delay and drip must not be negative")
        if self.retry_after is not None:
            self.retry_after = str(self.retry_after)

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        return (
            (self.method is None or self.method == method)
            and self.path_contains in path
            and self.body_contains.encode() in body
        )


class Faults:
    """A thread-safe list of fault rules; the first matching rule wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(self, **rule: Any) -> FaultRule:
        """Add a rule built from `FaultRule` keyword arguments (TypeError on unknown keys)."""
        new_rule = FaultRule(**rule)
        with self._lock:
            self._rules.append(new_rule)
        return new_rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def take(self, method: str, path: str, body: bytes = b"") -> FaultRule | None:
        """The rule to apply to this request, if any, using up one of its `times`."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method.upper(), path, body):
                    continue
                if rule.times > 0:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                return rule
        return None


@dataclass
class Reply:
    """What a route answers; the handler turns it into bytes on the wire."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json_codec.encode(payload), headers=headers or {})


def error_reply(status: int, *messages: str) -> Reply:
    """The error shape Atlassian uses most: {"errorMessages": [...]}."""
    return json_reply(status, {"errorMessages": list(messages)})


def html_reply(status: int, html: str) -> Reply:
    return Reply(status, html.encode(), "text/html; charset=utf-8")


def _content_type_of(text: str) -> str:
    """Label an injected body the way a real server would: HTML error pages, JSON, or text."""
    if text.lstrip().startswith("<"):
        return "text/html; charset=utf-8"
    try:
        json.loads(text)
    except RecursionError:  # JSON nested too deeply to parse here: still JSON to the client
        return "application/json"
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


class BadJson(ValueError):
    """The request body is not JSON; routes answer 400."""


@dataclass
class Request:
    method: str
    path: str  # without the query string
    raw_path: str  # as received, with the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        """The parsed body, None when empty; raises BadJson when it does not parse."""
        if not self.body.strip():
            return None
        try:
            return json_codec.decode(self.body)
        except ValueError as exc:
            raise BadJson(f"Request body is not valid JSON: {exc}") from exc

    def bearer_token(self) -> str | None:
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client goes away mid-request (a worker killed on purpose, a
    timeout cut short): that is the client's story, not a fault of the server."""

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class DevServer:
    """A ThreadingHTTPServer bound at construction, with fault injection and `/_faults`.

    Subclasses implement `route(request) -> Reply`. Paths starting with `/_` are control routes
    and never get faults, so a test can always clear what it injected.
    """

    log_requests = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.faults = Faults()
        self._httpd = _QuietServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        cast(Any, self._httpd).dev_server = self
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DevServer:
        """Serve in a daemon thread; returns self so `server = Server().start()` reads well."""
        # A short poll interval lets stop() return at once, which keeps test teardown fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the management commands use this)."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def on_request(self, request: Request) -> None:
        """Called for every request before faults apply; subclasses log them."""

    def route(self, request: Request) -> Reply:
        raise NotImplementedError

    def handle_faults_route(self, request: Request) -> Reply:
        if request.method == "DELETE":
            self.faults.clear()
            return Reply(204)
        if request.method == "GET":
            return json_reply(200, {"rules": self.faults.rules()})
        if request.method != "POST":
            return error_reply(405, "Use POST, GET or DELETE on /_faults")
        try:
            rule = request.json()
            if not isinstance(rule, dict):
                return error_reply(400, "Send the FaultRule fields as a JSON object")
            added = self.faults.add(**rule)
        except (BadJson, TypeError, ValueError) as exc:
            return error_reply(400, str(exc))
        return json_reply(201, asdict(added))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services behind a proxy
    timeout = 60  # idle keep-alive connections do not pin a thread forever
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stall

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    @property
    def app(self) -> DevServer:
        return cast(Any, self.server).dev_server

    def _handle(self) -> None:
        # Read the whole body first: closing with unread bytes makes the kernel reset the
        # connection, and the client would see that instead of the answer we meant.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            raw_path=self.path,
            query=parse_qs(parts.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        self.app.on_request(request)
        rule = None
        if not request.path.startswith("/_"):
            rule = self.app.faults.take(request.method, request.raw_path, request.body)
            if rule is not None and self._apply_fault(rule):
                return
        try:
            if request.path == "/_faults":
                reply = self.app.handle_faults_route(request)
            else:
                reply = self.app.route(request)
        except Exception as exc:  # a bug in a dev server must answer, not hang the client
            traceback.print_exc(file=sys.stderr)
            reply = error_reply(500, f"{type(exc).__name__}: {exc}")
        if rule is not None and rule.lose_answer:
            self._hang_up()
            return
        self._send(reply, drip=rule.drip if rule is not None else 0.0)

    def _apply_fault(self, rule: FaultRule) -> bool:
        """Sleep, then drop or answer as the rule says; False means carry on normally."""
        if rule.delay:
            time.sleep(rule.delay)
        if rule.drop:
            self._hang_up()
            return True
        if rule.status == 0 or rule.lose_answer:
            return False
        body = rule.body if rule.body is not None else DEFAULT_FAULT_BODY
        reply = Reply(rule.status, body.encode(), _content_type_of(body))
        if rule.retry_after is not None:
            reply.headers["Retry-After"] = rule.retry_after
        reply.headers.update(rule.headers)
        self._send(reply, drip=rule.drip)
        return True

    def _hang_up(self) -> None:
        """Close the connection with no answer."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, reply: Reply, *, drip: float = 0.0) -> None:
        if drip:
            self._send_dripping(reply, drip)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status != 204:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.status != 204:
            self.wfile.write(reply.body)

    def _send_dripping(self, reply: Reply, interval: float) -> None:
        """The whole answer a byte at a time, until it is sent or the client hangs up."""
        lines = [f"HTTP/1.1 {reply.status} {self.responses.get(reply.status, ('',))[0]}"]
        lines += [f"{name}: {value}" for name, value in reply.headers.items()]
        lines += [f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}"]
        answer = ("\r\n".join(lines) + "\r\n\r\n").encode() + reply.body
        self.close_connection = True
        try:
            for position in range(len(answer)):
                self.wfile.write(answer[position : position + 1])
                self.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass  # the client gave up waiting, as it should

    def log_message(self, format: str, *args: Any) -> None:
        if self.app.log_requests:
            super().log_message(format, *args)

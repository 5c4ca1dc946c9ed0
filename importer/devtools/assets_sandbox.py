"""An in-memory Assets Imports API, for development and end-to-end tests.

It follows `shared/reference/assets-imports-api.md` and is stricter than the real service where
the contract is vague (a chunk whose records lack an externalIdPart value is rejected whole), so a
client that works here has no slack to lose in production. Like Assets, it answers a mapping
with its own form of what was pushed (ids added, empty fields left out, keys reordered), not
the document itself. Inspection routes under `/_sandbox` and the HTML page at `/` need no
token; every API route does.

It also stands in for a chat webhook: alerts posted to `/_sandbox/alerts` are listed on the
page, so the demo shows an alert arriving.
"""

from __future__ import annotations

import copy
import hmac
import html
import json
import re
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from importer.devtools.faults import (
    BadJson,
    DevServer,
    Reply,
    Request,
    error_reply,
    html_reply,
    json_reply,
)
from importer.json_codec import as_cell

API_PATH = re.compile(
    r"^/jsm/assets/workspace/(?P<ws>[^/]+)/v1/importsource/(?P<isid>[^/]+)(?P<rest>/.*)?$"
)
OPEN_STATES = frozenset({"INGESTING", "PROCESSING"})
FREQUENCIES = frozenset({"ONCE", "DAILY", "WEEKLY", "MONTHLY"})
FAILURE_REASON_LIMIT = 1024
MAX_ERRORS = 20  # enough to fix a chunk without drowning the client's log

SourceKey = tuple[str, str]
ObjectKey = tuple[str, tuple[str, ...]]


@dataclass
class _Execution:
    id: str
    source: SourceKey
    scheduled: bool
    state: str = "INGESTING"
    chunks_received: int = 0
    records_received: int = 0
    completed_posts: int = 0
    failure_reasons: list[str] = field(default_factory=list)
    objects: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def as_dict(self, *, with_objects: bool) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "id": self.id,
            "workspace_id": self.source[0],
            "import_source_id": self.source[1],
            "scheduled": self.scheduled,
            "state": self.state,
            "created_at": self.created_at,
            "chunks_received": self.chunks_received,
            "records_received": self.records_received,
            "completed_posts": self.completed_posts,
            "failure_reasons": list(self.failure_reasons),
            "object_count": len(self.objects),
            "duplicate_objects": sum(1 for entry in self.objects.values() if entry["times"] > 1),
        }
        if with_objects:
            summary["objects"] = {
                object_key_string(key): entry["times"] for key, entry in self.objects.items()
            }
        return summary


@dataclass
class _Source:
    mapping: dict[str, Any] | None = None  # as pushed
    answer: dict[str, Any] | None = None  # as GET /schema-and-mapping gives it back
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    execution_ids: list[str] = field(default_factory=list)


@dataclass
class _Call:
    request: Request
    ws: str
    isid: str
    params: dict[str, str]

    @property
    def source(self) -> SourceKey:
        return (self.ws, self.isid)


def object_key_string(key: ObjectKey) -> str:
    """How objects are named in snapshots: "objectTypeExternalId:part1|part2"."""
    object_type, parts = key
    return f"{object_type}:{'|'.join(parts)}"


def validate_mapping(doc: Any) -> list[str]:
    """Problems with a schema-and-mapping document, empty when Assets would take it."""
    if not isinstance(doc, dict):
        return ["The body must be a JSON object with schema and mapping"]
    errors: list[str] = []
    object_schema = (doc.get("schema") or {}).get("objectSchema")
    attributes_by_type: dict[str, set[str]] = {}
    if not isinstance(object_schema, dict):
        errors.append("schema.objectSchema must be an object")
    elif not isinstance(object_schema.get("objectTypes"), list) or not object_schema["objectTypes"]:
        errors.append("schema.objectSchema.objectTypes must be a non-empty list")
    else:
        where = "schema.objectSchema.objectTypes"
        _collect_types(object_schema["objectTypes"], where, attributes_by_type, errors)
    mappings = (doc.get("mapping") or {}).get("objectTypeMappings")
    if not isinstance(mappings, list):
        errors.append("mapping.objectTypeMappings must be a list")
        return errors
    for index, mapping in enumerate(mappings):
        where = f"mapping.objectTypeMappings[{index}]"
        if not isinstance(mapping, dict):
            errors.append(f"{where} must be an object")
            continue
        type_id = mapping.get("objectTypeExternalId")
        known_type = isinstance(type_id, str) and type_id in attributes_by_type
        if not known_type:
            errors.append(f"{where}.objectTypeExternalId {type_id!r} is not an object type")
        if not _is_text(mapping.get("selector")):
            errors.append(f"{where}.selector must be a non-empty string")
        attribute_mappings = mapping.get("attributesMapping")
        if not isinstance(attribute_mappings, list):
            errors.append(f"{where}.attributesMapping must be a list")
            continue
        for position, attribute in enumerate(attribute_mappings):
            here = f"{where}.attributesMapping[{position}]"
            if not isinstance(attribute, dict):
                errors.append(f"{here} must be an object")
                continue
            attribute_id = attribute.get("attributeExternalId")
            if known_type and attribute_id not in attributes_by_type[type_id]:
                errors.append(f"{here}.attributeExternalId {attribute_id!r} is not in {type_id!r}")
            locators = attribute.get("attributeLocators")
            if not isinstance(locators, list) or not locators or not all(map(_is_text, locators)):
                errors.append(f"{here}.attributeLocators must be a non-empty list of strings")
    return errors


def as_assets_answers(doc: dict[str, Any], id_for: Callable[[str], int]) -> dict[str, Any]:
    """A pushed document as Assets gives it back: each object type and attribute with an id
    of its own (`id_for` its externalId), empty fields left out, keys in Assets' order (here:
    sorted). A client comparing it with what it pushed, as it is, would see a change every
    time."""

    def with_ids(object_type: dict[str, Any]) -> dict[str, Any]:
        object_type = {**object_type, "id": id_for(f"type:{object_type['externalId']}")}
        object_type["attributes"] = [
            {**attribute, "id": id_for(f"attribute:{attribute['externalId']}")}
            for attribute in object_type.get("attributes") or []
        ]
        if isinstance(object_type.get("children"), list):
            object_type["children"] = [with_ids(child) for child in object_type["children"]]
        return object_type

    answer = copy.deepcopy(doc)
    object_schema = answer["schema"]["objectSchema"]
    object_schema["objectTypes"] = [with_ids(t) for t in object_schema["objectTypes"]]
    return _without_empty_fields(answer)


def _without_empty_fields(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {key: _without_empty_fields(value[key]) for key in sorted(value)}
        return {key: item for key, item in kept.items() if item not in (None, "", [], {})}
    if isinstance(value, list):
        return [_without_empty_fields(item) for item in value]
    return value


def _collect_types(
    types: list[Any], where: str, attributes_by_type: dict[str, set[str]], errors: list[str]
) -> None:
    for index, object_type in enumerate(types):
        here = f"{where}[{index}]"
        if not isinstance(object_type, dict):
            errors.append(f"{here} must be an object")
            continue
        type_id = object_type.get("externalId")
        if not _is_text(type_id) or not _is_text(object_type.get("name")):
            errors.append(f"{here} needs a non-empty externalId and name")
            continue
        if type_id in attributes_by_type:
            errors.append(f"{here}.externalId {type_id!r} is used twice")
        attribute_ids = attributes_by_type.setdefault(type_id, set())
        attributes = object_type.get("attributes")
        if not isinstance(attributes, list):
            errors.append(f"{here}.attributes must be a list")
            attributes = []
        for position, attribute in enumerate(attributes):
            if not isinstance(attribute, dict) or not all(
                _is_text(attribute.get(key)) for key in ("externalId", "name", "type")
            ):
                errors.append(f"{here}.attributes[{position}] needs externalId, name and type")
                continue
            attribute_ids.add(attribute["externalId"])
        children = object_type.get("children")
        if isinstance(children, list):
            _collect_types(children, f"{here}.children", attributes_by_type, errors)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or value == [] or value == {}


def _id_locators(mapping: dict[str, Any]) -> list[str]:
    """The first locator of each externalIdPart attribute: together they name the object."""
    return [
        attribute["attributeLocators"][0]
        for attribute in mapping["attributesMapping"]
        if attribute.get("externalIdPart")
    ]


def check_chunk(doc: dict[str, Any], data: Any) -> list[str]:
    """Problems with one `data` chunk against a stored (valid) mapping document."""
    if not isinstance(data, dict):
        return ["data must be an object keyed by selector"]
    mappings = doc["mapping"]["objectTypeMappings"]
    top_level = {mapping["selector"].split(".")[0] for mapping in mappings}
    errors: list[str] = []
    for key, records in data.items():
        if key not in top_level:
            errors.append(f"data.{key}: no objectTypeMapping has a selector starting with {key!r}")
            continue
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            errors.append(f"data.{key} must be a list of objects")
            continue
        for mapping in mappings:
            if mapping["selector"] != key:
                continue
            for locator in _id_locators(mapping):
                errors.extend(
                    f"data.{key}[{index}]: no value for externalIdPart locator {locator!r}"
                    for index, record in enumerate(records)
                    if _is_blank(record.get(locator))
                )
    if len(errors) > MAX_ERRORS:
        errors = errors[:MAX_ERRORS] + [f"... and {len(errors) - MAX_ERRORS} more"]
    return errors


def check_schedule(body: Any) -> tuple[dict[str, Any], list[str]]:
    """The schedule to store and the problems with it; accepts runFrequency or runInterval."""
    if not isinstance(body, dict):
        return {}, ["The body must be a JSON object"]
    errors: list[str] = []
    given = {body[name] for name in ("runFrequency", "runInterval") if body.get(name) is not None}
    frequency = next(iter(given), None)
    if not given:
        errors.append("runFrequency (or runInterval) is required")
    elif len(given) > 1:
        errors.append("runFrequency and runInterval disagree")
    elif frequency not in FREQUENCIES:
        errors.append(f"runFrequency must be one of {', '.join(sorted(FREQUENCIES))}")
    start_time = body.get("startTime")
    try:
        start = datetime.fromisoformat(start_time) if isinstance(start_time, str) else None
    except ValueError:
        start = None
    if start is None:
        errors.append("startTime must be an ISO-8601 date and time")
    elif start.tzinfo is None:
        errors.append("startTime needs a UTC offset or Z")
    elif start <= datetime.now(UTC):
        errors.append("startTime must be in the future")
    zone = body.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            errors.append(f"timezone {zone!r} is not an IANA time zone")
    callback_url = body.get("callbackUrl")
    if callback_url is not None and not (
        isinstance(callback_url, str) and callback_url.startswith(("http://", "https://"))
    ):
        errors.append("callbackUrl must be an http(s) URL")
    schedule = {
        "runFrequency": frequency,
        "runInterval": frequency,
        "startTime": start_time,
        "timezone": zone,
        "callbackUrl": callback_url,
    }
    return schedule, errors


class AssetsSandbox(DevServer):
    """The Assets Imports API in memory; see the module docstring and `/_sandbox/state`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sandbox-token",
        processing_seconds: float = 0.0,
        keep_copies: bool = True,
    ) -> None:
        super().__init__(host, port)
        self.token = token
        self.processing_seconds = processing_seconds
        # Words its status endpoint uses for its states, where they differ (another version
        # of Assets may say RUNNING for INGESTING).
        self.status_words: dict[str, str] = {}
        # Copies of every chunk and record, for tests and this page; a benchmark of 10^6
        # records only counts each object (the copies would cost more than the app measured).
        self.keep_copies = keep_copies
        # The largest data submission it takes (bytes); larger ones get 413, as a gateway in
        # front of Assets answers. None: any.
        self.max_submit_bytes: int | None = None
        self._lock = threading.Lock()
        self._sources: dict[SourceKey, _Source] = {}
        self._executions: dict[str, _Execution] = {}  # insertion order: newest last
        self._log: list[tuple[str, str]] = []
        self._timers: list[threading.Timer] = []
        self._alerts: list[dict[str, Any]] = []  # newest last
        self._ids: dict[tuple[SourceKey, str], int] = {}  # Assets' ids of types and attributes

    # -- Python API for tests: plain-dict snapshots taken under the lock -----------------------

    @property
    def requests_log(self) -> list[tuple[str, str]]:
        """(method, path) of every request received, faulted ones included."""
        with self._lock:
            return list(self._log)

    def executions(self, import_source_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                execution.as_dict(with_objects=True)
                for execution in self._executions.values()
                if import_source_id is None or execution.source[1] == import_source_id
            ]

    def execution(self, execution_id: str) -> dict[str, Any]:
        """One execution's counters and objects ("type:idparts" → times received); KeyError."""
        with self._lock:
            return self._executions[execution_id].as_dict(with_objects=True)

    def chunks(self, execution_id: str) -> list[dict[str, Any]]:
        """The `data` payloads an execution accepted, in order."""
        with self._lock:
            return copy.deepcopy(self._executions[execution_id].chunks)

    def mapping(self, workspace_id: str, import_source_id: str) -> dict[str, Any] | None:
        with self._lock:
            source = self._sources.get((workspace_id, import_source_id))
            return copy.deepcopy(source.mapping) if source else None

    def mapping_answer(self, workspace_id: str, import_source_id: str) -> dict[str, Any] | None:
        """The mapping as GET /schema-and-mapping answers it (ids added, empty fields left out)."""
        with self._lock:
            source = self._sources.get((workspace_id, import_source_id))
            return copy.deepcopy(source.answer) if source else None

    def schedules(self, import_source_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {**copy.deepcopy(schedule), "workspaceId": ws, "importSourceId": isid}
                for (ws, isid), source in self._sources.items()
                if import_source_id is None or isid == import_source_id
                for schedule in source.schedules.values()
            ]

    def edit_schedule(self, schedule_id: str, **changes: Any) -> None:
        """Change a schedule as Assets holds it, past its checks (Assets' own answers may
        leave optional fields out: a field set to None is left out)."""
        with self._lock:
            for source in self._sources.values():
                if schedule_id in source.schedules:
                    schedule = {**source.schedules[schedule_id], **changes}
                    source.schedules[schedule_id] = {
                        name: value for name, value in schedule.items() if value is not None
                    }

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts posted to /_sandbox/alerts, oldest first."""
        with self._lock:
            return copy.deepcopy(self._alerts)

    def reset(self) -> None:
        """Forget every mapping, execution, schedule, logged request and fault rule."""
        self.faults.clear()
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._sources.clear()
            self._ids.clear()
            self._executions.clear()
            self._log.clear()
            self._alerts.clear()

    def stop(self) -> None:
        with self._lock:
            for timer in self._timers:
                timer.cancel()
        super().stop()

    # -- HTTP -----------------------------------------------------------------------------------

    def on_request(self, request: Request) -> None:
        with self._lock:
            self._log.append((request.method, request.path))

    def route(self, request: Request) -> Reply:
        if request.path == "/" and request.method == "GET":
            number = (request.query.get("objects_page") or ["1"])[0]
            return html_reply(200, self._page(int(number) if number.isdigit() else 1))
        if request.path.startswith("/_sandbox/"):
            return self._inspection_route(request)
        match = API_PATH.match(request.path)
        if match is None:
            return error_reply(404, f"No route for {request.path}")
        token = request.bearer_token()
        if token is None or not hmac.compare_digest(token.encode(), self.token.encode()):
            return error_reply(401, "Missing or wrong bearer token for this import source")
        rest = match["rest"] or "/"
        methods_seen = False
        for method, pattern, handler in self._routes:
            params = pattern.fullmatch(rest)
            if params is None:
                continue
            methods_seen = True
            if method == request.method:
                call = _Call(request, match["ws"], match["isid"], params.groupdict())
                try:
                    return handler(self, call)
                except BadJson as exc:
                    return error_reply(400, str(exc))
        if methods_seen:
            return error_reply(405, f"{request.method} is not allowed on {rest}")
        return error_reply(404, f"No route for {rest}")

    def _source(self, call: _Call) -> _Source:
        """The state of the call's import source, created on first use (lock held)."""
        return self._sources.setdefault(call.source, _Source())

    def _execution_of(self, call: _Call) -> _Execution | None:
        """The execution named in the path, if it belongs to this import source (lock held)."""
        execution = self._executions.get(call.params["eid"])
        return execution if execution is not None and execution.source == call.source else None

    def _put_mapping(self, call: _Call) -> Reply:
        doc = call.request.json()
        errors = validate_mapping(doc)
        if errors:
            return error_reply(400, *errors)
        with self._lock:
            source = self._source(call)
            source.mapping = doc
            # Ids are Assets' own: the same type or attribute keeps its id when pushed again.
            source.answer = as_assets_answers(
                doc, lambda key: self._ids.setdefault((call.source, key), len(self._ids) + 1)
            )
        return Reply(204)

    def _get_mapping(self, call: _Call) -> Reply:
        with self._lock:
            answer = self._source(call).answer
            if answer is None:
                return error_reply(404, "This import source has no mapping yet")
            return json_reply(200, answer)

    def _config_status(self, call: _Call) -> Reply:
        with self._lock:
            source = self._source(call)
            if source.mapping is None:
                status = "MISSING_MAPPING"
            elif any(self._executions[eid].state in OPEN_STATES for eid in source.execution_ids):
                status = "RUNNING"
            else:
                status = "IDLE"
        return json_reply(200, {"status": status})

    def _start_execution(self, call: _Call) -> Reply:
        body = call.request.json()
        if body is not None and not isinstance(body, dict):
            return error_reply(400, "The body must be empty or a JSON object")
        scheduled = bool((body or {}).get("scheduled"))
        with self._lock:
            source = self._source(call)
            if source.mapping is None:
                return error_reply(400, "This import source has no mapping; PUT /mapping first")
            if any(self._executions[eid].state in OPEN_STATES for eid in source.execution_ids):
                return error_reply(409, "An import is already running")
            execution = _Execution(id=str(uuid.uuid4()), source=call.source, scheduled=scheduled)
            self._executions[execution.id] = execution
            source.execution_ids.append(execution.id)
        host = call.request.headers.get("host")
        base = f"http://{host}" if host else self.base_url
        prefix = (
            f"{base}/jsm/assets/workspace/{call.ws}/v1/importsource/{call.isid}"
            f"/executions/{execution.id}"
        )
        links = {
            "submitResults": f"{prefix}/data",
            "getExecutionStatus": f"{prefix}/status",
            "cancel": prefix,
        }
        return json_reply(200, {"links": links})

    def _submit(self, call: _Call) -> Reply:
        if self.max_submit_bytes is not None and len(call.request.body) > self.max_submit_bytes:
            return error_reply(413, "Request entity too large")
        body = call.request.json()
        with self._lock:
            execution = self._execution_of(call)
            if execution is None:
                return error_reply(404, "No such execution for this import source")
            if not isinstance(body, dict) or ("data" in body) == ("completed" in body):
                return error_reply(400, 'Send either {"data": {...}} or {"completed": true}')
            if "completed" in body:
                return self._complete(execution, body["completed"])
            if execution.state != "INGESTING":
                return error_reply(400, f"Execution is {execution.state}, not INGESTING")
            doc = self._sources[call.source].mapping
            assert doc is not None  # an execution only starts once a mapping exists
            errors = check_chunk(doc, body["data"])
            if errors:
                return error_reply(400, *errors)
            self._store_chunk(execution, doc, body["data"])
        return json_reply(200, {})

    def _complete(self, execution: _Execution, completed: Any) -> Reply:
        """Lock held. Counts every completion post, so tests can catch a client sending two."""
        execution.completed_posts += 1
        if completed is not True:
            return error_reply(400, "completed must be true")
        if execution.state != "INGESTING":
            return error_reply(400, f"Execution is {execution.state}, not INGESTING")
        if self.processing_seconds <= 0:
            execution.state = "DONE"
            return json_reply(200, {})
        execution.state = "PROCESSING"
        timer = threading.Timer(self.processing_seconds, self._finish_processing, [execution.id])
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return json_reply(200, {})

    def _finish_processing(self, execution_id: str) -> None:
        with self._lock:
            execution = self._executions.get(execution_id)
            if execution is not None and execution.state == "PROCESSING":
                execution.state = "DONE"

    def _store_chunk(self, execution: _Execution, doc: dict[str, Any], data: dict) -> None:
        """Lock held; the chunk has been checked, so every identity value is present."""
        execution.chunks_received += 1
        if self.keep_copies:
            execution.chunks.append(copy.deepcopy(data))
        for key, records in data.items():
            execution.records_received += len(records)
            for mapping in doc["mapping"]["objectTypeMappings"]:
                locators = _id_locators(mapping)
                if mapping["selector"] != key or not locators:
                    continue
                for record in records:
                    object_key = (
                        mapping["objectTypeExternalId"],
                        tuple(str(record[locator]) for locator in locators),
                    )
                    entry = execution.objects.setdefault(object_key, {"times": 0})
                    entry["times"] += 1
                    if self.keep_copies:
                        entry["record"] = copy.deepcopy(record)

    def _status(self, call: _Call) -> Reply:
        with self._lock:
            execution = self._execution_of(call)
            if execution is None:
                return error_reply(404, "No such execution for this import source")
            return json_reply(
                200,
                {
                    "status": self.status_words.get(execution.state, execution.state),
                    "chunksReceived": execution.chunks_received,
                    "recordsReceived": execution.records_received,
                },
            )

    def _cancel(self, call: _Call) -> Reply:
        with self._lock:
            execution = self._execution_of(call)
            if execution is None:
                return error_reply(404, "No such execution for this import source")
            # A finished execution keeps its outcome; cancelling it again is harmless.
            if execution.state in OPEN_STATES:
                execution.state = "CANCELLED"
        return Reply(204)

    def _fail(self, call: _Call) -> Reply:
        body = call.request.json()
        reason = body.get("failureReason") if isinstance(body, dict) else None
        if not isinstance(reason, str) or not reason:
            return error_reply(400, "failureReason is required")
        # Counted as Java counts a String's length (UTF-16 units: an emoji is two).
        if len(reason.encode("utf-16-le")) // 2 > FAILURE_REASON_LIMIT:
            return error_reply(400, f"failureReason is over {FAILURE_REASON_LIMIT} characters")
        with self._lock:
            execution = self._execution_of(call)
            if execution is None:
                return error_reply(404, "No such execution for this import source")
            if execution.state != "INGESTING":
                return error_reply(400, "Execution is not in INGESTING state")
            execution.failure_reasons.append(reason)
            execution.state = "FAILED"
        return Reply(204)

    def _create_schedule(self, call: _Call) -> Reply:
        schedule, errors = check_schedule(call.request.json())
        with self._lock:
            source = self._source(call)
            if source.mapping is None:
                errors.insert(0, "This import source has no mapping; PUT /mapping first")
            if errors:
                return error_reply(400, *errors)
            schedule = {"id": str(uuid.uuid4()), **schedule}
            source.schedules[schedule["id"]] = schedule
            return json_reply(200, schedule)

    def _schedule(self, call: _Call) -> Reply:
        """GET, PUT and DELETE of one schedule."""
        schedule_id = call.params["sid"]
        body = call.request.json() if call.request.method == "PUT" else None
        with self._lock:
            schedules = self._source(call).schedules
            if schedule_id not in schedules:
                return error_reply(404, "No such schedule for this import source")
            if call.request.method == "DELETE":
                del schedules[schedule_id]
                return Reply(204)
            if call.request.method == "PUT":
                replacement, errors = check_schedule(body)
                if errors:
                    return error_reply(400, *errors)
                schedules[schedule_id] = {"id": schedule_id, **replacement}
            return json_reply(200, schedules[schedule_id])

    _routes: list[tuple[str, re.Pattern[str], Callable[[AssetsSandbox, _Call], Reply]]] = [
        ("PUT", re.compile(r"/mapping"), _put_mapping),
        ("GET", re.compile(r"/schema-and-mapping"), _get_mapping),
        ("GET", re.compile(r"/configstatus"), _config_status),
        ("POST", re.compile(r"/executions"), _start_execution),
        ("POST", re.compile(r"/executions/(?P<eid>[^/]+)/data"), _submit),
        ("GET", re.compile(r"/executions/(?P<eid>[^/]+)/status"), _status),
        ("DELETE", re.compile(r"/executions/(?P<eid>[^/]+)"), _cancel),
        ("POST", re.compile(r"/executions/(?P<eid>[^/]+)/history/failed"), _fail),
        ("POST", re.compile(r"/importschedule"), _create_schedule),
        ("GET", re.compile(r"/importschedule/(?P<sid>[^/]+)"), _schedule),
        ("PUT", re.compile(r"/importschedule/(?P<sid>[^/]+)"), _schedule),
        ("DELETE", re.compile(r"/importschedule/(?P<sid>[^/]+)"), _schedule),
    ]

    # -- Inspection (no token) -------------------------------------------------------------------

    def _inspection_route(self, request: Request) -> Reply:
        from_page = "from" in request.query  # the HTML page's buttons want to come back to it
        if request.path == "/_sandbox/state" and request.method == "GET":
            return json_reply(200, self._state())
        if request.path == "/_sandbox/reset" and request.method == "POST":
            self.reset()
            return _back_to_page() if from_page else Reply(204)
        if request.path == "/_sandbox/alerts" and request.method == "POST":
            return self._receive_alert(request)
        if request.path == "/_sandbox/alerts" and request.method == "GET":
            return json_reply(200, {"alerts": self.alerts()})
        fire = re.fullmatch(r"/_sandbox/schedules/([^/]+)/fire", request.path)
        if fire and request.method == "POST":
            reply = self._fire(fire[1])
            return _back_to_page() if from_page else reply
        return error_reply(404, f"No route for {request.path}")

    def _receive_alert(self, request: Request) -> Reply:
        """A webhook receiver, like a chat's incoming webhook: keeps the alert for the page."""
        try:
            body = request.json()
        except BadJson as exc:
            return error_reply(400, str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return error_reply(400, 'An alert is a JSON object with a "text"')
        alert = {
            "received_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "text": body["text"],
            "event": body.get("event", ""),
        }
        with self._lock:
            self._alerts.append(alert)
            del self._alerts[:-100]
        return json_reply(200, {"ok": True})

    def _state(self) -> dict[str, Any]:
        with self._lock:
            sources = [
                {
                    "workspaceId": ws,
                    "importSourceId": isid,
                    "hasMapping": source.mapping is not None,
                    "schedules": copy.deepcopy(list(source.schedules.values())),
                    "executions": [
                        self._executions[eid].as_dict(with_objects=False)
                        for eid in source.execution_ids
                    ],
                }
                for (ws, isid), source in self._sources.items()
            ]
        return {"importSources": sources}

    def _fire(self, schedule_id: str) -> Reply:
        """Call the schedule's callbackUrl the way the Assets scheduler does."""
        with self._lock:
            found = [
                (key, source.schedules[schedule_id])
                for key, source in self._sources.items()
                if schedule_id in source.schedules
            ]
        if not found:
            return error_reply(404, "No such schedule")
        (ws, isid), schedule = found[0]
        if not schedule.get("callbackUrl"):
            return error_reply(400, "This schedule has no callbackUrl")
        # No lock held here: the callback usually calls back into this sandbox.
        payload = json.dumps({"workspaceId": ws, "importsourceId": isid}).encode()
        outgoing = urllib.request.Request(
            schedule["callbackUrl"],
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(outgoing, timeout=30) as answer:
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError as exc:  # refused, reset, DNS, timeout
            with self._lock:
                schedule["lastFire"] = {"callbackStatus": None, "error": str(exc)}
            return error_reply(502, f"The callback could not be reached: {exc}")
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        result = {"callbackStatus": status, "callbackBody": parsed}
        with self._lock:
            schedule["lastFire"] = result
        return json_reply(200, result)

    def _page(self, objects_page: int = 1) -> str:
        state = self._state()
        with self._lock:
            newest = next(reversed(self._executions.values()), None)
            # In key order: pages arrive in parallel, and arrival order reads as gaps.
            held = sorted(newest.objects.items(), key=lambda item: str(item[0])) if newest else []
            pages = max(1, -(-len(held) // OBJECTS_PER_PAGE))
            objects_page = min(max(objects_page, 1), pages)
            start = (objects_page - 1) * OBJECTS_PER_PAGE
            objects = copy.deepcopy(held[start : start + OBJECTS_PER_PAGE])
            newest_id = newest.id if newest else None
        return _render_page(
            state,
            newest_id,
            objects,
            total=len(held),
            number=objects_page,
            pages=pages,
            alerts=self.alerts(),
        )


OBJECTS_PER_PAGE = 50


def _back_to_page() -> Reply:
    return Reply(303, headers={"Location": "/"})


_PAGE_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #172b4d; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border: 1px solid #dfe1e6; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f4f5f7; } code { font-size: 12px; } .muted { color: #6b778c; }
.DONE { color: #006644; } .FAILED, .CANCELLED { color: #bf2600; } .INGESTING { color: #0747a6; }
"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are already-escaped HTML."""
    if not rows:
        return '<p class="muted">None.</p>'
    head = "".join(f"<th>{html.escape(name)}</th>" for name in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _render_page(
    state: dict[str, Any],
    newest_id: str | None,
    objects: list[tuple[ObjectKey, dict[str, Any]]],
    *,
    total: int = 0,
    number: int = 1,
    pages: int = 1,
    alerts: list[dict[str, Any]] | None = None,
) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Assets sandbox</title>"
        # No icon to ask for: a browser's request for /favicon.ico would be a 404 in its console.
        "<link rel='icon' href='data:,'>",
        f"<style>{_PAGE_STYLE}</style></head><body><h1>Assets sandbox</h1>",
        "<div><a href='/'>Refresh</a> · <a href='/_sandbox/state'>JSON state</a> · "
        "<form method='post' action='/_sandbox/reset?from=page' style='display:inline'>"
        "<button>Reset everything</button></form></div>",
    ]
    parts.append("<h2 id='alerts'>Alerts received</h2>")
    rows = [
        [
            esc(alert["received_at"]),
            esc(alert["event"]),
            f"<pre style='margin:0;white-space:pre-wrap'>{esc(alert['text'])}</pre>",
        ]
        for alert in reversed((alerts or [])[-20:])
    ]
    parts.append(_table(["Received", "Event", "Text"], rows))
    if not state["importSources"]:
        parts.append("<p class='muted'>No import source has been used yet.</p>")
    for source in state["importSources"]:
        parts.append(
            f"<h2>Import source <code>{esc(source['importSourceId'])}</code> "
            f"<span class='muted'>workspace <code>{esc(source['workspaceId'])}</code> · "
            f"mapping: {'yes' if source['hasMapping'] else 'missing'}</span></h2>"
            "<h3>Executions</h3>"
        )
        rows = [
            [
                f"<code>{esc(e['id'])}</code>",
                "scheduled" if e["scheduled"] else "manual",
                f"<b class='{esc(e['state'])}'>{esc(e['state'])}</b>",
                str(e["chunks_received"]),
                str(e["records_received"]),
                str(e["completed_posts"]),
                f"{e['object_count']} ({e['duplicate_objects']} repeated)",
                "<br>".join(esc(reason) for reason in e["failure_reasons"]),
            ]
            for e in reversed(source["executions"])
        ]
        headers = ["Id", "Kind", "State", "Chunks", "Records", "Completed posts", "Objects"]
        parts.append(_table([*headers, "Failure reasons"], rows))
        parts.append("<h3>Schedules</h3>")
        rows = [
            [
                f"<code>{esc(s['id'])}</code>",
                esc(str(s["runFrequency"])),
                esc(str(s["startTime"])),
                esc(str(s["timezone"] or "")),
                esc(str(s["callbackUrl"] or "")),
                esc(json.dumps(s.get("lastFire"))[:300]) if s.get("lastFire") else "",
                f"<form method='post' action='/_sandbox/schedules/{esc(s['id'])}/fire?from=page'>"
                "<button>Fire now</button></form>",
            ]
            for s in source["schedules"]
        ]
        parts.append(
            _table(["Id", "Frequency", "Start", "Time zone", "Callback", "Last fire", ""], rows)
        )
    if newest_id is not None:
        parts.append(
            f"<h2>Objects of the newest execution <code>{esc(newest_id)}</code></h2>"
            f"<p class='objects-count'>It holds {total} object{'s' if total != 1 else ''}"
            + (
                f"; shown {(number - 1) * OBJECTS_PER_PAGE + 1}–"
                f"{(number - 1) * OBJECTS_PER_PAGE + len(objects)}, page {number} of {pages}"
                if total
                else ""
            )
            + ".</p>"
        )
        pager = " · ".join(
            f"<b>{page}</b>" if page == number else f"<a href='/?objects_page={page}'>{page}</a>"
            for page in range(1, pages + 1)
        )
        if pages > 1:
            parts.append(f"<p class='objects-pages'>Pages: {pager}</p>")
        fields = list(
            dict.fromkeys(name for _, entry in objects for name in entry.get("record", {}))
        )
        rows = [
            [f"<code>{esc(object_key_string(key))}</code>", str(entry["times"])]
            + [esc(as_cell(entry.get("record", {}).get(name, ""))) for name in fields]
            for key, entry in objects
        ]
        parts.append(_table(["Object", "Times received", *fields], rows))
    parts.append("</body></html>")
    return "".join(parts)

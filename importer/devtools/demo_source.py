"""A paginated fake inventory API, the third-party source for demos and end-to-end tests.

Records are a pure function of their index, so a test knows every serial the importer must
deliver, and `importer/devtools/demo_mapping.json` maps them into Assets. Errors come from fault
injection (`faults.add(status=500, body="<html>...")`), not from special routes.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from importer.devtools.faults import BadJson, DevServer, Reply, Request, error_reply, json_reply

LAPTOP_MODELS = ("Dell Latitude 7440", "Lenovo ThinkPad T14 Gen 4", "HP EliteBook 840 G10")
MAC_MODELS = ("Apple MacBook Air 13 M3", "Apple MacBook Pro 14 M3")
SERVER_MODELS = ("Dell PowerEdge R660", "HPE ProLiant DL360 Gen11", "Lenovo ThinkSystem SR630 V3")
OPERATING_SYSTEMS = ("Windows 11", "macOS 15", "Ubuntu 24.04")
RAM_SIZES = (8, 16, 32, 64)
FIRST_PURCHASE = date(2020, 1, 6)


def demo_computer(i: int) -> dict[str, Any]:
    """Computer number i (from 1): about 80% laptops, servers run Ubuntu with lots of RAM."""
    laptop = i % 5 != 0
    if laptop:
        os_name = OPERATING_SYSTEMS[i % 3]
        models = MAC_MODELS if os_name.startswith("macOS") else LAPTOP_MODELS
        ram_gb = RAM_SIZES[i % 3]
    else:
        os_name, models, ram_gb = "Ubuntu 24.04", SERVER_MODELS, 64
    return {
        "serial": f"SN-{i:05d}",
        "hostname": f"{'lt' if laptop else 'srv'}-{i:05d}",
        "kind": "laptop" if laptop else "server",
        "model": models[i % len(models)],
        "ram_gb": ram_gb,
        "os": os_name,
        "owner": f"user{i % 37}@example.com",
        "purchased": (FIRST_PURCHASE + timedelta(days=(i * 7) % 1800)).isoformat(),
    }


@dataclass
class Throttling:
    """GraphQL queries to answer throttled: how (`DemoInventory.throttle_graphql`), asking
    to wait how long, how many more (-1: every one), and which (those for the page from
    record `at`; None: any)."""

    like: str
    wait: float
    times: int
    at: int | None = None


class DemoInventory(DevServer):
    """`GET /api/computers` with offset/limit or page/limit (pages start at 1), its total as
    `"total"` in the body, or with `total_header=NAME` in the query, in that response header
    alone (`?total_header=X-Total-Count`), and with `total_first_page=1` on the answer from
    the first record alone, as some APIs tell it; and the same computers read with POST, as
    inventories with a query language serve them:

    * `POST /api/graphql`, GraphQL-like: `{"query": "... assets ...", "variables": {"first":
      n, "after": cursor}}` answers `{"data": {"assets": {"items": [...], "pageInfo":
      {"endCursor": ..., "hasNextPage": ...}}}}` (Lansweeper's and GitHub's shape), and a
      query that asks for another field `{"data": null, "errors": [{"message": ...}]}`, with
      200 as GraphQL does, and so are its rate limits once it is told to throttle
      (`throttle_graphql`). Its cursors are opaque strings, or, as some APIs type them
      (`graphql_cursors`), whole numbers (`$after: Int`) or text of digits that may start
      with 0 (`"025"`), and a cursor of another JSON type is refused as GraphQL refuses a
      variable of the wrong type; and a query of `site(id: ...) { assetResources(...) }`, as
      Lansweeper's Data API is asked, paged by `"pagination": {"limit": n, "page": "FIRST"}`
      and then `{"limit": n, "page": "NEXT", "cursor": <pagination.next>}` (`_site_assets`);
    * `POST /api/search`, Elasticsearch-like: `{"from": offset, "size": n}` answers
      `{"items": [...], "total": n}`. With a `"sort"` (`["serial"]`, `[{"ram_gb": "desc"},
      {"serial": "asc"}]`) the items come in that order, each with its sort values as
      `"sort": [...]`, and `"search_after": [...]` (the last item's sort values) answers the
      items after it, as Elasticsearch's `search_after` does past its result window. Its
      pages hold at most `search_max_size` items, whatever size is asked.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        records: int = 300,
        token: str | None = None,
        latency: float = 0.0,
        unlisted_records: int = 0,
    ) -> None:
        super().__init__(host, port)
        # Records its total counts that it never lists, as an API counts records the caller
        # may not read: /api/computers tells a total this much larger than it serves.
        self.unlisted_records = unlisted_records
        self.token = token
        self.latency = latency
        self._computers = [demo_computer(i) for i in range(1, records + 1)]
        # The bodies of the POST queries answered, in order (what a test checks was sent).
        self.queries: list[dict] = []
        # How the next GraphQL queries are throttled (`throttle_graphql`).
        self._throttling: list[Throttling] = []
        self._lock = threading.Lock()
        # The most items a search page holds (Elasticsearch answers as asked; many search
        # APIs in front of it cap the size).
        self.search_max_size: int | None = None
        # What the GraphQL `assets` cursors are: "opaque" strings, "int" (a whole number,
        # `$after: Int`) or "digits" (text of three digits or more, `"025"`); a cursor
        # sent of another type is refused, naming the variable.
        self.graphql_cursors = "opaque"
        # The most items a GraphQL `assets` page holds, whatever `first` asks (None: as
        # asked); with `graphql_counts_asked`, its next cursor is then counted by the size
        # asked, as an offset computed before the cap is: the items between are skipped.
        self.graphql_max_first: int | None = None
        self.graphql_counts_asked = False

    def computers(self) -> list[dict[str, Any]]:
        """Every record the source serves, in order (a copy)."""
        return [dict(computer) for computer in self._computers]

    def throttle_graphql(
        self, times: int = 1, *, like: str = "shopify", wait: float = 10, at: int | None = None
    ) -> None:
        """Answer the next `times` GraphQL queries (-1: every one; `at`: only those for the
        page from record `at`, 0 the first) throttled, with 200 as GraphQL APIs do, asking to
        wait `wait` seconds: `like` "shopify" (`extensions.code` THROTTLED, and the query's
        cost beyond the points available, restored at 50 a second, in `extensions.cost`),
        "github" (`"type": "RATE_LIMITED"`, and the headers x-ratelimit-remaining 0 and
        x-ratelimit-reset, a Unix time), or "code" (only `extensions.code` RATE_LIMITED: no
        word on how long)."""
        if like not in ("shopify", "github", "code"):
            raise ValueError("like must be shopify, github or code")
        with self._lock:
            self._throttling.append(Throttling(like, wait, times, at))

    def _throttled(self, start: int) -> Reply | None:
        """The throttled answer the query for the page from record `start` gets, if it is to
        get one (`throttle_graphql`)."""
        with self._lock:
            rule = next((r for r in self._throttling if r.at in (None, start)), None)
            if rule is None:
                return None
            like, wait = rule.like, rule.wait
            rule.times -= 1
            if rule.times == 0:
                self._throttling.remove(rule)
        if like == "github":
            message = "API rate limit exceeded for user ID 583231."
            headers = {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(time.time() + wait)),
            }
            answer = {"errors": [{"type": "RATE_LIMITED", "message": message}]}
            return json_reply(200, answer, headers)
        if like == "code":
            error = {"message": "Too many requests", "extensions": {"code": "RATE_LIMITED"}}
            return json_reply(200, {"data": None, "errors": [error]})
        restore_rate, available = 50.0, 50
        requested = available + round(wait * restore_rate)
        cost = {
            "requestedQueryCost": requested,
            "actualQueryCost": None,
            "throttleStatus": {
                "maximumAvailable": max(1000.0, requested),
                "currentlyAvailable": available,
                "restoreRate": restore_rate,
            },
        }
        error = {"message": "Throttled", "extensions": {"code": "THROTTLED"}}
        return json_reply(200, {"errors": [error], "extensions": {"cost": cost}})

    def resize(self, records: int) -> None:
        """Hold `records` records from now on: the first ones kept, new ones added after."""
        self._computers = [
            *self._computers[:records],
            *(demo_computer(i) for i in range(len(self._computers) + 1, records + 1)),
        ]

    def route(self, request: Request) -> Reply:
        queried = self.QUERIED_WITH_POST.get(request.path)
        if request.path != "/api/computers" and queried is None:
            return error_reply(404, f"No route for {request.path}")
        wanted = "POST" if queried else "GET"
        if request.method != wanted:
            return error_reply(405, f"Only {wanted} is allowed")
        if self.token is not None:
            given = request.bearer_token() or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return error_reply(401, "Missing or wrong bearer token")
        if queried:
            try:
                body = request.json()
            except BadJson as exc:
                return error_reply(400, str(exc))
            if not isinstance(body, dict):
                return error_reply(400, "The body must be a JSON object")
            self.queries.append(body)
            return getattr(self, queried)(body)
        try:
            window = self._window(request.query)
        except ValueError as exc:
            return error_reply(400, str(exc))
        if self.latency:
            time.sleep(self.latency)
        total = len(self._computers) + self.unlisted_records
        start, stop = window if window else (0, len(self._computers))
        items = self._computers[start:stop]
        if start and request.query.get("total_first_page", [""])[0]:
            return json_reply(200, {"items": items})  # as some APIs: on the first page alone
        header = request.query.get("total_header", [""])[0]
        if header:  # told as json-server, ServiceNow or GitLab tell it: in a header alone
            return json_reply(200, {"items": items}, {header: str(total)})
        return json_reply(200, {"items": items, "total": total})

    QUERIED_WITH_POST = {"/api/graphql": "_graphql", "/api/search": "_search"}

    def _graphql(self, body: dict) -> Reply:
        query = body.get("query")
        variables = body.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            return error_reply(400, "Give a query string and a variables object")
        field = re.search(r"\{\s*(\w+)", query)
        if field is not None and field.group(1) == "site":
            return self._site_assets(variables)
        if field is None or field.group(1) != "assets":
            asked = field.group(1) if field else ""
            message = f'Cannot query field "{asked}" on type "Query".'
            return json_reply(200, {"data": None, "errors": [{"message": message}]})
        first, after = variables.get("first", 100), variables.get("after")
        if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= 500:
            message = "Variable $first must be a whole number from 1 to 500."
            return json_reply(200, {"data": None, "errors": [{"message": message}]})
        refused = self._cursor_type_refused(after)
        if refused:
            return _graphql_error(refused)
        start = 0 if after in (None, "") else self._cursor_position(after)
        if start is None:
            message = f"Invalid cursor: {after!r}"
            return json_reply(200, {"data": None, "errors": [{"message": message}]})
        throttled = self._throttled(start)
        if throttled is not None:
            return throttled
        served = min(first, self.graphql_max_first or first)
        items = self._computers[start : start + served]
        stop = start + (first if self.graphql_counts_asked else len(items))
        page_info = {
            "endCursor": self._cursor_for(stop) if items else None,
            "hasNextPage": stop < len(self._computers),
        }
        return json_reply(200, {"data": {"assets": {"items": items, "pageInfo": page_info}}})

    def _cursor_type_refused(self, after: Any) -> str:
        """What a GraphQL server says of a cursor variable of the wrong JSON type ("" when
        its type is the one the cursors have)."""
        if after is None:
            return ""
        if self.graphql_cursors == "int":
            if isinstance(after, int) and not isinstance(after, bool):
                return ""
            wanted = f"Int cannot represent non-integer value: {json.dumps(after)}"
        elif isinstance(after, str):
            return ""
        else:
            wanted = f"String cannot represent a non string value: {json.dumps(after)}"
        return f'Variable "$after" got invalid value {json.dumps(after)}; {wanted}'

    def _cursor_for(self, position: int) -> Any:
        if self.graphql_cursors == "int":
            return position
        if self.graphql_cursors == "digits":
            return f"{position:03d}"
        return _cursor_at(position)

    def _cursor_position(self, cursor: Any) -> int | None:
        if self.graphql_cursors == "int":
            return cursor
        if self.graphql_cursors == "digits":
            return int(cursor) if cursor.isascii() and cursor.isdigit() else None
        return _position_in(cursor)

    def _site_assets(self, variables: dict) -> Reply:
        """Lansweeper's `site.assetResources`: the page is named by `pagination.page`, FIRST
        or NEXT, and a NEXT also by the cursor the page before answered as `pagination.next`
        (null on the last page). A FIRST with a cursor, or a NEXT without one, is refused."""
        paging = variables.get("pagination")
        if not isinstance(paging, dict):
            return _graphql_error("Variable $pagination must be an object.")
        limit, page, cursor = paging.get("limit"), paging.get("page"), paging.get("cursor")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 500:
            return _graphql_error("pagination.limit must be a whole number from 1 to 500.")
        if page == "FIRST" and cursor is None:
            start = 0
        elif page == "NEXT" and cursor is not None:
            start = _position_in(cursor)
            if start is None:
                return _graphql_error(f"Invalid cursor: {cursor!r}")
        else:
            return _graphql_error(f"pagination.page {page!r} does not go with cursor {cursor!r}.")
        items = self._computers[start : start + limit]
        stop = start + len(items)
        pagination = {
            "limit": limit,
            "current": cursor,
            "next": _cursor_at(stop) if stop < len(self._computers) else None,
            "page": page,
        }
        resources = {"total": len(self._computers), "pagination": pagination, "items": items}
        return json_reply(200, {"data": {"site": {"assetResources": resources}}})

    def _search(self, body: dict) -> Reply:
        start, size = body.get("from", 0), body.get("size", 10)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (start, size)):
            return error_reply(400, "from and size must be whole numbers")
        if start < 0 or size < 1:
            return error_reply(400, "from must be at least 0 and size at least 1")
        if self.search_max_size is not None:
            size = min(size, self.search_max_size)
        total = len(self._computers)
        if "sort" not in body:
            return json_reply(200, {"items": self._computers[start : start + size], "total": total})
        try:
            order = _sort_order(body["sort"])
        except ValueError as exc:
            return error_reply(400, str(exc))
        key = functools.cmp_to_key(lambda a, b: _compare(a, b, order))
        hits = [
            {**computer, "sort": [computer[name] for name, _ in order]}
            for computer in self._computers
        ]
        hits.sort(key=lambda hit: key(hit["sort"]))
        after = body.get("search_after")
        if after is not None:
            if not isinstance(after, list) or len(after) != len(order):
                return error_reply(400, "search_after must be a list of one value per sort field")
            try:
                hits = [hit for hit in hits if _compare(hit["sort"], after, order) > 0]
            except TypeError:
                return error_reply(400, f"search_after {after!r} does not match the sort")
        return json_reply(200, {"items": hits[start : start + size], "total": total})

    @staticmethod
    def _window(query: dict[str, list[str]]) -> tuple[int, int | None] | None:
        """(start, stop) from offset+limit or page+limit; None means everything."""
        numbers: dict[str, int] = {}
        for name in ("offset", "page", "limit"):
            if name in query:
                value = query[name][0]
                if not value.isdigit():
                    raise ValueError(f"{name} must be a whole number, got {value!r}")
                numbers[name] = int(value)
        if not numbers:
            return None
        if "offset" in numbers and "page" in numbers:
            raise ValueError("Use offset or page, not both")
        limit = numbers.get("limit")
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        if "page" in numbers:
            if numbers["page"] < 1:
                raise ValueError("page starts at 1")
            if limit is None:
                raise ValueError("page needs a limit")
            start = (numbers["page"] - 1) * limit
        else:
            start = numbers.get("offset", 0)
        return start, (start + limit if limit is not None else None)


def _graphql_error(message: str) -> Reply:
    return json_reply(200, {"data": None, "errors": [{"message": message}]})


def _sort_order(sort: Any) -> list[tuple[str, bool]]:
    """(field, descending) for each entry of an Elasticsearch-like sort."""
    entries = sort if isinstance(sort, list) else [sort]
    order = []
    for entry in entries:
        if isinstance(entry, str):
            name, direction = entry, "asc"
        elif isinstance(entry, dict) and len(entry) == 1:
            name, direction = next(iter(entry.items()))
            if isinstance(direction, dict):
                direction = direction.get("order", "asc")
        else:
            raise ValueError(f"Cannot sort by {entry!r}")
        if name not in demo_computer(1) or direction not in ("asc", "desc"):
            raise ValueError(f"Cannot sort by {name!r} {direction!r}")
        order.append((name, direction == "desc"))
    return order


def _compare(values: list, others: list, order: list[tuple[str, bool]]) -> int:
    """-1, 0 or 1: where sort values `values` stand before or after `others`."""
    for value, other, (_, descending) in zip(values, others, order, strict=True):
        if value != other:
            ahead = value < other
            return -1 if ahead != descending else 1
    return 0


def _cursor_at(position: int) -> str:
    """An opaque cursor, as GraphQL servers write them (Relay's `arrayconnection:N`)."""
    return base64.b64encode(f"arrayconnection:{position}".encode()).decode()


def _position_in(cursor: Any) -> int | None:
    """Where a cursor of `_cursor_at` points; None when it is none of them."""
    try:
        text = base64.b64decode(str(cursor), validate=True).decode()
    except ValueError:
        return None
    kind, _, number = text.partition(":")
    return int(number) if kind == "arrayconnection" and number.isdigit() else None

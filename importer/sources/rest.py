"""REST/JSON sources: one GET per page, offset or page-number paging."""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings

from importer.assets import parse_retry_after
from importer.sources.base import Page, SourceError

# A single page larger than this is refused rather than held in memory.
MAX_PAGE_BYTES = 50 * 1024 * 1024
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


def select_records(document: Any, path: str) -> list:
    """Walk a dotted path into a JSON document; the document itself when the path is empty."""
    value = document
    walked = []
    for key in [part for part in path.split(".") if part]:
        walked.append(key)
        if not isinstance(value, dict) or key not in value:
            raise SourceError(f"the answer has no '{'.'.join(walked)}' (records selector '{path}')")
        value = value[key]
    if not isinstance(value, list):
        where = f"'{path}'" if path else "the answer"
        raise SourceError(f"{where} is not a list of records but {type(value).__name__}")
    return value


class RestJsonSource:
    def __init__(
        self,
        *,
        name: str,
        url: str,
        records_path: str = "",
        pagination: str = "offset",
        page_size: int = 100,
        offset_param: str = "offset",
        limit_param: str = "limit",
        page_param: str = "page",
        first_page: int = 1,
        bearer_token: str = "",
        timeout: float | None = None,
    ):
        self.name = name
        self.url = url
        self.records_path = records_path
        self.pagination = pagination
        self.page_size = page_size
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.page_param = page_param
        self.first_page = first_page
        self.timeout = timeout if timeout is not None else settings.HTTP_TIMEOUT
        self.session = requests.Session()
        self.session.headers["Accept"] = "application/json"
        if bearer_token:
            self.session.headers["Authorization"] = f"Bearer {bearer_token}"

    @classmethod
    def from_import_source(cls, source) -> RestJsonSource:
        return cls(
            name=source.name,
            url=source.source_url,
            records_path=source.records_path,
            pagination=source.pagination,
            page_size=source.page_size,
            offset_param=source.offset_param,
            limit_param=source.limit_param,
            page_param=source.page_param,
            first_page=source.first_page,
            bearer_token=source.source_token if source.source_auth == "bearer" else "",
        )

    def _params(self, cursor: str) -> dict[str, Any]:
        if self.pagination == "offset":
            return {self.offset_param: int(cursor or 0), self.limit_param: self.page_size}
        if self.pagination == "page":
            return {
                self.page_param: int(cursor or self.first_page),
                self.limit_param: self.page_size,
            }
        return {}

    def _next_cursor(self, cursor: str, records: list) -> str | None:
        # A short page is the last one; so is an empty one (some APIs always fill pages).
        if self.pagination == "none" or len(records) < self.page_size or not records:
            return None
        if self.pagination == "offset":
            return str(int(cursor or 0) + len(records))
        return str(int(cursor or self.first_page) + 1)

    def _get(self, params: dict) -> requests.Response:
        where = f"source '{self.name}'"
        try:
            response = self.session.get(self.url, params=params, timeout=self.timeout, stream=True)
        except requests.Timeout:
            raise SourceError(
                f"{where} did not answer within {self.timeout:g} s", permanent=False, kind="timeout"
            )
        except requests.RequestException as exc:
            raise SourceError(
                f"could not reach {where} ({type(exc).__name__})",
                permanent=False,
                kind="unavailable",
            )
        if not response.ok:
            status = response.status_code
            hint = {
                401: ": check the source's credentials",
                403: ": the credentials lack access",
                404: ": check the source URL",
            }.get(status, "")
            raise SourceError(
                f"{where} answered {status} {response.reason}{hint}",
                permanent=status not in TRANSIENT_STATUSES,
                status=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
                kind="rate_limited" if status == 429 else "source_http_error",
            )
        return response

    def fetch_page(self, cursor: str) -> Page:
        response = self._get(self._params(cursor))
        body = response.raw.read(MAX_PAGE_BYTES + 1, decode_content=True)
        response.close()
        if len(body) > MAX_PAGE_BYTES:
            raise SourceError(
                f"source '{self.name}' sent a page larger than {MAX_PAGE_BYTES // 2**20} MB: "
                "lower the page size"
            )
        try:
            document = requests.models.complexjson.loads(body)
        except ValueError:
            content_type = response.headers.get("Content-Type", "unknown")
            raise SourceError(
                f"source '{self.name}' did not answer JSON (Content-Type {content_type}): "
                "check the source URL"
            )
        records = select_records(document, self.records_path)
        if any(not isinstance(record, dict) for record in records):
            raise SourceError(f"source '{self.name}' returned records that are not JSON objects")
        return Page(records=records, next_cursor=self._next_cursor(cursor, records))

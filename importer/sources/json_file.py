"""JSON files: one JSON document, its records at `records_path`, `page_size` records per chunk.

Unlike CSV and JSON Lines, a JSON document cannot be cut at a byte offset without a streaming
parser, so the whole file is loaded; that is why a JSON file is limited to MAX_PAGE_BYTES
(50 MB). Bigger exports should use JSON Lines. A reader keeps the records of the file it
parsed last: a lane reads page after page of one file, which would otherwise be parsed whole
for every page (0.1-0.2 s of CPU for 20 MB). The cursor is the index of the chunk's first
record.
"""

from __future__ import annotations

import json
from typing import IO, Any

from importer.sources import limits
from importer.sources.answers import select_records
from importer.sources.base import Page, SourceError, number_cursor
from importer.sources.files import FileSource, decoding_errors, file_version
from importer.sources.transport import MAX_PAGE_BYTES


class JsonFileSource(FileSource):
    def __init__(self, import_source, execution_id: int | None = None) -> None:
        super().__init__(import_source, execution_id)
        # (the file's version, its records): the last file this reader parsed.
        self._parsed: tuple[str, list] | None = None

    def refuse(self, message: str, **fields: Any) -> SourceError:
        return SourceError(f"source '{self.name}' {message}", **fields)

    def read_chunk(self, file: IO[bytes], cursor: str) -> Page:
        start = number_cursor(cursor, default=0, source_name=self.name, meaning="a record index")
        records = self._records(file)
        end = start + self.page_size
        return Page(
            records=records[start:end], next_cursor=str(end) if end < len(records) else None
        )

    def _records(self, file: IO[bytes]) -> list:
        version = file_version(file)
        parsed = self._parsed
        if parsed is not None and parsed[0] == version:
            return parsed[1]
        if file.seek(0, 2) > MAX_PAGE_BYTES:
            raise SourceError(
                f"source '{self.name}': the JSON file is larger than {MAX_PAGE_BYTES // 2**20} "
                "MB, and a JSON file is read whole: export it as JSON Lines instead",
                kind="too_large",
            )
        file.seek(0)
        raw = file.read()
        if self.bom and raw.startswith(self.bom):
            raw = raw[len(self.bom) :]
        # Commas and brackets are single ASCII bytes in every encoding read here.
        limits.check_json_values(
            raw, refuse=self.refuse, what="a JSON file", hint="export it as JSON Lines instead"
        )
        try:
            text = raw.decode(self.codec, decoding_errors(self.codec))
            document = limits.loads(text, refuse=self.refuse, what="a JSON file")
        except UnicodeDecodeError:
            raise SourceError(
                f"source '{self.name}': the file is not valid {self.codec}: check the file "
                "encoding",
                kind="bad_file",
            ) from None
        except json.JSONDecodeError as exc:
            raise SourceError(
                f"source '{self.name}': the file is not valid JSON ({exc.msg} at line "
                f"{exc.lineno} column {exc.colno})",
                kind="bad_file",
            ) from None
        records = select_records(document, self.config.records_path, self.name)
        self._parsed = (version, records)
        return records

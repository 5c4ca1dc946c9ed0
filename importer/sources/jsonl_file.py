"""JSON Lines files: one JSON object per line, `page_size` lines per chunk, blank lines skipped."""

from __future__ import annotations

import json
from typing import IO

from importer.json_codec import kind_of
from importer.sources.base import Page
from importer.sources.files import MAX_LINE_BYTES, FileSource, LineReader, decoding_errors


class JsonLinesSource(FileSource):
    """The cursor is the byte offset of the chunk's first line."""

    def read_chunk(self, file: IO[bytes], cursor: str) -> Page:
        lines = LineReader(file, self.start_of(file, cursor), self.bom)
        records: list[dict] = []
        for line in lines:
            if not line.strip():
                continue
            if len(records) == self.page_size:
                return Page(records=records, next_cursor=str(lines.line_start))
            text = self.decode(line, file, lines.line_start)
            try:
                record = json.loads(text)
            except ValueError as exc:
                problem = f"is not valid JSON ({getattr(exc, 'msg', exc)})"
                raise self.line_error(file, lines.line_start, problem) from None
            if not isinstance(record, dict):
                problem = f"is {kind_of(record)}, not a JSON object"
                raise self.line_error(file, lines.line_start, problem)
            records.append(record)
        return Page(records=records, next_cursor=None)

    def ends_whole(self, file: IO[bytes], last_line_at: int) -> bool:
        """The last line, without a line break after it, is whole when it parses as JSON
        (a record cut off does not: it misses at least its closing brace)."""
        file.seek(last_line_at)
        line = file.read(MAX_LINE_BYTES + 1)
        if len(line) > MAX_LINE_BYTES:
            return True  # reading the file says it is too long
        if last_line_at == 0:
            line = line.removeprefix(self.bom)
        try:
            json.loads(line.decode(self.codec, decoding_errors(self.codec)))
        except ValueError:  # not JSON, or a character cut in two
            return False
        return True

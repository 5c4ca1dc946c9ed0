"""CSV files: `page_size` rows per chunk, with the header (if any) read afresh for each chunk.
Columns whose header is empty (the trailing ones a spreadsheet exports) are left out.

Rows may span lines (a quoted field with a line break), so the csv module is fed one line at a
time and the byte offset after the last line it took is where the next row starts.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from importer.mapping import fields_in_no_record
from importer.sources.base import Page, SourceError, config_error
from importer.sources.files import (
    MAX_LINE_BYTES,
    FileSource,
    LineReader,
    LineTooLong,
    line_number,
)
from importer.sources.rules import csv_delimiter, csv_delimiter_problem, csv_fieldnames_problem

# A field may be as long as a line (the csv module's own limit is 128 KB).
csv.field_size_limit(MAX_LINE_BYTES)
# Delimiters a file may use instead of the one set (a header of one field holding one).
OTHER_DELIMITERS = (",", ";", "\t", "|")

# A row cut in two, as the refusal and the notice both tell it.
BROKEN_BY_A_LINE_BREAK = "broken by a line break outside quotes (in a notes or address field?)"
QUOTE_OR_FIX = "quote the fields that hold line breaks, or fix the export"


# A value written `1, "Smith"`: the csv module (as a spreadsheet) reads the space and the
# quotes as characters of the value.
QUOTED_AFTER_A_SPACE = (
    "has a value with a space before its opening quote, whose quotes would be read as "
    "characters of the value: remove the spaces after the delimiters"
)


def _first_row(rows: Iterator[list[str]]) -> list[str] | None:
    """The next row that is not blank; None at the file's end, or a row that cannot be read
    (reading the file says what is wrong with it)."""
    try:
        return next((row for row in rows if not _blank(row)), None)
    except (SourceError, LineTooLong):
        return None


def _each_holds(row: list[str] | None, delimiter: str) -> bool:
    """Whether every value of `row` holds `delimiter` (True when there is no row to tell)."""
    values = [value for value in row or [] if value.strip()]
    return all(delimiter in value for value in values)


def _spoken(delimiter: str) -> str:
    return {"\t": "tabs", ",": "commas", ";": "semicolons", "|": "'|'"}.get(
        delimiter, repr(delimiter)
    )


def _leaves_fields_out(short_rows: int, rows: int) -> bool:
    """Whether a file leaves trailing empty fields out as a habit (then a short last row is
    one more of them, not a row cut off): two of its rows before, or a tenth, are short."""
    return short_rows >= 2 or short_rows * 10 >= rows


def _blank(row: list[str]) -> bool:
    return not row or (len(row) == 1 and not row[0].strip())


def _pattern(value: str) -> str:
    """A value's pattern: runs of letters as 'a', runs of digits as '9' ('SN-00017' and
    'SN-00402' are both 'a-9', 'Weiß' is 'a')."""
    return re.sub(r"\d+", "9", re.sub(r"[^\W\d_]+", "a", value.strip()))


@dataclass(frozen=True)
class _Shape:
    """A row read: where it starts, how many fields it has, and its first field."""

    at: int
    fields: int
    first: str

    def starts_as(self, identity: str | None) -> bool:
        return identity is not None and _pattern(self.first) == identity


def _identity_pattern(full: list[_Shape]) -> str | None:
    """The pattern every full row's first field has (an id such as 'S001', 'SN-00042');
    None when they differ (names, free text) or there are too few rows to say."""
    patterns = {_pattern(shape.first) for shape in full}
    if len(full) < 3 or len(patterns) != 1 or patterns == {""}:
        return None
    return patterns.pop()


class CsvSource(FileSource):
    """The cursor is the byte offset of the chunk's first row."""

    def __init__(self, import_source, execution_id: int | None = None) -> None:
        super().__init__(import_source, execution_id)
        self.delimiter = csv_delimiter(import_source.csv_delimiter)
        self.quotechar = import_source.csv_quotechar or '"'
        self.space_quote = " " + self.quotechar
        if problem := csv_delimiter_problem(import_source.csv_delimiter):
            raise config_error(import_source, problem)
        self.fieldnames: list[str] = []
        if not import_source.csv_has_header:
            problem = csv_fieldnames_problem(False, import_source.csv_fieldnames)
            if problem:
                raise config_error(import_source, problem)
            self.fieldnames = [n.strip() for n in import_source.csv_fieldnames.split(",")]

    def read_chunk(self, file: IO[bytes], cursor: str) -> Page:
        fieldnames, body_start = self._header(file)
        if not fieldnames:
            raise self._without_header()
        if not cursor and self.execution_id:  # a preview or a draft shows what is missing
            self._check_columns_mapped(fieldnames)
        unnamed = "" in fieldnames
        start = self.start_of(file, cursor) if cursor else body_start
        lines = LineReader(file, start, self.bom)
        rows = self._rows(file, lines)
        records: list[dict] = []
        # The last row, if it had fewer fields than names and no line break after it, and
        # the short rows before it (a file may leave trailing empty fields out: then a short
        # last row is one more of them).
        cut_row_at, short_rows = None, 0
        # Where each row read starts, how many fields it has and its first: the row after
        # the page too, as a row broken in two may end a page with its first half.
        shapes: list[_Shape] = []
        while True:
            row_start = lines.position
            row = next(rows, None)
            if row is None:
                notes = self._rows_maybe_broken(file, shapes, len(fieldnames), cut_row_at)
                if cut_row_at is not None and not _leaves_fields_out(short_rows, len(records)):
                    raise self._cut_off(file, cut_row_at, len(fieldnames))
                return Page(records=records, next_cursor=None, notes=notes)
            if _blank(row):
                continue
            shapes.append(_Shape(row_start, len(row), row[0]))
            if len(records) == self.page_size:
                cut_at = None if lines.line_ended else row_start
                notes = self._rows_maybe_broken(file, shapes, len(fieldnames), cut_at)
                return Page(records=records, next_cursor=str(row_start), notes=notes)
            if len(row) > len(fieldnames):
                first_row = not cursor and not records
                spaced = self._quoted_after_a_space(file, row_start, lines.position, row)
                problem = self._too_many(row, fieldnames, first_row, spaced)
                raise self.line_error(file, lines.line_start, problem)
            if self._quoted_after_a_space(file, row_start, lines.position, row, closed=True):
                raise self.line_error(file, lines.line_start, QUOTED_AFTER_A_SPACE)
            if len(fieldnames) > 1 and [field.strip() for field in row] == fieldnames:
                raise self.line_error(file, lines.line_start, self._header_again())
            if len(row) < len(fieldnames) and lines.line_ended:
                short_rows += 1
            elif len(row) < len(fieldnames):  # no line break after it: the file's last row
                cut_row_at = lines.line_start
            row += [""] * (len(fieldnames) - len(row))
            record = dict(zip(fieldnames, row, strict=True))
            if unnamed:
                del record[""]  # columns without a name (a spreadsheet's empty ones)
            records.append(record)

    def ends_whole(self, file: IO[bytes], last_line_at: int) -> bool:
        """The file's last row, without a line break after it, is whole when it closes its
        quotes and has a field for each name (one cut off has fewer, a character cut in two,
        or a quote left open). Read from its last line alone first; a row that may end a
        quoted field spanning lines is read from the file's first row. A cut inside the
        last value, or right after its delimiter, cannot be told from a whole row."""
        self._follow_byte_order_mark(file)
        try:
            names, body_start = self._header(file)
        except (SourceError, LineTooLong):
            return True  # reading the file says what is wrong with it
        starts = dict.fromkeys((max(last_line_at, body_start), body_start))
        return any(self._ends_with_whole_row(file, start, len(names)) for start in starts)

    def _ends_with_whole_row(self, file: IO[bytes], start: int, names: int) -> bool:
        lines = LineReader(file, start, self.bom)
        last: list[str] = []
        try:
            for row in self._rows(file, lines):
                if not _blank(row):
                    last = row
        except SourceError:  # a quote left open, a character cut in two
            return False
        except LineTooLong:
            return True  # reading the file says so
        return not last or len(last) >= names

    def _header(self, file: IO[bytes]) -> tuple[list[str], int]:
        """The field names, and the byte offset where the rows after the header start."""
        start = self._past_delimiter_line(file)
        if self.fieldnames:
            return self.fieldnames, start
        lines = LineReader(file, start, self.bom)
        rows = self._rows(file, lines)
        for row in rows:
            if _blank(row):
                continue
            names = [name.strip() for name in row]
            header_at, body_start = lines.line_start, lines.position
            self._check_delimiter(file, header_at, names, rows)
            repeated = sorted(name for name, times in Counter(names).items() if times > 1 and name)
            if repeated:
                problem = f"(the header) names {', '.join(repr(n) for n in repeated)} twice"
                raise self.line_error(file, header_at, problem)
            return names, body_start
        return [], lines.position

    def _past_delimiter_line(self, file: IO[bytes]) -> int:
        """Where the file starts after the "sep=;" line a spreadsheet may write first; the
        delimiter it names wins over the one set. 0 when there is none."""
        lines = LineReader(file, 0, self.bom)
        said = re.fullmatch(rb"sep=([^\r\n])\r?\n?", next(iter(lines), b""))
        if said is None:
            return 0
        self.delimiter = said.group(1).decode("latin-1")
        return lines.position

    def _check_columns_mapped(self, fieldnames: list[str]) -> None:
        """A column the mapping reads and the file does not have (an export whose column was
        renamed, a misspelt name) would leave its attribute empty in every object: the header
        names every column the file has, so the import stops before a page goes."""
        if not fieldnames or not isinstance(self.config.mapping, dict):
            return
        missing = fields_in_no_record([dict.fromkeys(fieldnames, "x")], self.config.mapping)
        if missing:
            raise SourceError(
                f"source '{self.name}': the file has no column {', '.join(missing)}, which "
                "the mapping reads: every object would go without it. Rename the column in "
                "the file (its columns: "
                f"{', '.join(repr(name) for name in fieldnames[:20] if name)}), or change the "
                "mapping",
                kind="bad_file",
            )

    def _check_delimiter(
        self, file: IO[bytes], position: int, names: list[str], rows: Iterator[list[str]]
    ) -> None:
        """A header whose every field holds another delimiter, splitting into more names by
        it: the file is separated by that one ('serial;hostname' read with commas, or
        'Serial;Name, Vorname;Ort', whose one comma makes two fields that both hold ';').
        Names that each hold one are also a file's own ('Name, Vorname;Ort, PLZ' with
        semicolons): of a header of several fields, the first row (read on from `rows`)
        tells, its values then not each holding that delimiter."""
        named = [name for name in names if name]
        for other in OTHER_DELIMITERS:
            if other == self.delimiter or not named or not all(other in n for n in named):
                continue
            parts = [part for name in named for part in name.split(other) if part.strip()]
            if len(parts) <= len(named):
                continue
            if len(names) > 1 and not _each_holds(_first_row(rows), other):
                return
            read_as = (
                f"is one field, {named[0][:80]!r}"
                if len(names) == 1
                else f"reads as {len(names)} fields, "
                + ", ".join(repr(name[:40]) for name in names[:4])
                + (", ..." if len(names) > 4 else "")
                + f", each holding {other!r}"
            )
            problem = (
                f"(the header) {read_as}: its fields seem separated by {_spoken(other)}, not "
                f"{_spoken(self.delimiter)}; set the source's CSV delimiter to "
                f"{'tab' if other == chr(9) else repr(other)}"
            )
            raise self.line_error(file, position, problem)

    def _quoted_after_a_space(
        self, file: IO[bytes], start: int, end: int, row: list[str], *, closed: bool = False
    ) -> bool:
        """Whether `row` (the file's bytes from `start` to `end`) has a value written with a
        space before its opening quote (`closed`: and its closing quote last, as one that
        shifted no column). A value quoted in the file may itself start with a space and a
        quote (a spreadsheet's cell ` "TBD"`, written with its quotes doubled): read again
        with the spaces before quotes skipped, only a value whose quotes were characters
        changes."""
        suspects = [
            index
            for index, field in enumerate(row)
            if field.startswith(self.space_quote)
            and (not closed or (len(field) > 3 and field[-1] == self.quotechar))
        ]
        if not suspects:
            return False
        file.seek(start)
        raw = file.read(end - start)
        file.seek(end)  # where the rows read on
        again = csv.reader(
            (self.decode(line, file, start) for line in io.BytesIO(raw)),
            delimiter=self.delimiter,
            quotechar=self.quotechar,
            skipinitialspace=True,
        )
        try:
            fields = next(again, [])
        except csv.Error:
            return True
        return any(index >= len(fields) or fields[index] != row[index] for index in suspects)

    def _too_many(
        self, row: list[str], fieldnames: list[str], first_row: bool, spaced: bool
    ) -> str:
        """A row with more fields than names: its values would go under the wrong names.
        The file's first row with more is most likely a row under a report's title line,
        read as the header."""
        said = f"has {len(row)} fields, but there are {len(fieldnames)} field names"
        if self.fieldnames:
            return f"{said}: give the source's CSV field names one name for each column"
        if spaced:
            return f"{said}: {QUOTED_AFTER_A_SPACE.removeprefix('has ')}"
        if first_row:
            return (
                f"{said} in the line read as the header: if a title line comes before the "
                "header, remove it"
            )
        return (
            f"{said}: quote the values that hold the delimiter ({_spoken(self.delimiter)}), "
            "or fix the row"
        )

    def _without_header(self) -> SourceError:
        """A file set to have a header, with not even that (an upload of an empty file, an
        export that failed before its first line): read as no records, an import of it would
        tell Assets that every object is gone."""
        return SourceError(
            f"source '{self.name}': the file is empty (not even a header row): check the "
            "export that writes it, or upload the file again, then run the import again",
            kind="empty_file",
        )

    def _header_again(self) -> str:
        if self.fieldnames:  # set as having no header, with these names
            return (
                "holds the field names: the file has a header row; set the source's CSV "
                "options to 'has a header' (its names are then read from the file)"
            )
        return (
            "repeats the header: the file looks like several files joined; remove the header "
            "lines after the first"
        )

    def _rows_maybe_broken(
        self, file: IO[bytes], shapes: list[_Shape], names: int, cut_at: int | None
    ) -> tuple[str, ...]:
        """A line break outside quotes (a notes field of an HR or SCCM export) splits a row
        in two: padded with empty fields, its first half arrives without its last values
        and its second half as an object of its own. Rows of a file may as well leave
        fields out, hold only their id, or end the file with a line of one value: refusing
        such a file stops every record, so a page is refused only on proof (two halves
        that add up to one row, the second not starting as the file's rows start). What
        only may be a broken row is noted on the import, naming its lines.

        Looked for in pages whose other rows are full (a file that leaves trailing fields
        out as a habit has other short rows): two short rows one after the other whose
        fields add up to one more than the names, or a row of one field under four names
        or more (a break after a row's last delimiter, or in its last field)."""
        short = [i for i, shape in enumerate(shapes) if shape.fields < names]
        full = [shape for shape in shapes if shape.fields >= names]
        if len(full) < 2:
            return ()
        identity = _identity_pattern(full)
        if len(short) == 2 and short[1] == short[0] + 1:
            first, second = shapes[short[0]], shapes[short[1]]
            if first.fields + second.fields != names + 1 or second.starts_as(identity):
                return ()
            where = (
                f"lines {line_number(file, first.at)} and {line_number(file, second.at)} of "
                f"the file hold {first.fields} and {second.fields} fields, one more than the "
                f"{names} field names together"
            )
            if first.starts_as(identity):  # a record's start, then no record's
                raise self._broken_row(f"{where}: they seem to be one row")
            return (self._maybe_broken(f"{where}: if they are one row", "its first line"),)
        # A last row without a line break after it is one cut off: that is said of it.
        if len(short) != 1 or names < 4 or shapes[short[0]].fields != 1:
            return ()
        lone = shapes[short[0]]
        if lone.at == cut_at or lone.starts_as(identity):  # a row holding its id alone
            return ()
        where = (
            f"line {line_number(file, lone.at)} of the file holds 1 field of the {names} "
            "field names: if it is the end of the row before it"
        )
        return (self._maybe_broken(where, "that row"),)

    def _maybe_broken(self, where: str, first_part: str) -> str:
        return (
            f"CSV: {where}, {BROKEN_BY_A_LINE_BREAK}, {first_part} arrived without its last "
            f"values and the rest as an object of its own. Check those lines of the file; "
            f"{QUOTE_OR_FIX}."
        )

    def _broken_row(self, where: str) -> SourceError:
        return SourceError(
            f"source '{self.name}': {where}, {BROKEN_BY_A_LINE_BREAK}; {QUOTE_OR_FIX}, then "
            "run the import again",
            kind="bad_file",
        )

    def _cut_off(self, file: IO[bytes], position: int, names: int) -> SourceError:
        """The file's last row has fewer fields than there are names and no line break
        after it: the download ended mid-row (a connection closed early, with no length
        to check it against), and the rows after it are missing."""
        return self.line_error(
            file,
            position,
            f"(its last) has fewer fields than the {names} field names and no line break "
            "after it: the file looks cut off; check the source, then run the import again",
        )

    def _rows(self, file: IO[bytes], lines: LineReader) -> Iterator[list[str]]:
        decoded = (self.decode(line, file, lines.line_start) for line in lines)
        reader = csv.reader(
            decoded, delimiter=self.delimiter, quotechar=self.quotechar, strict=True
        )
        try:
            yield from reader
        except csv.Error as exc:
            problem = f"is not valid CSV ({exc})"
            if "new-line character seen in unquoted field" in str(exc):
                problem = (
                    "holds a carriage return outside quotes: a file whose lines end with one "
                    "alone (an old Mac format) must be saved with LF or CRLF line endings, and "
                    "a field holding one must be quoted"
                )
            raise self.line_error(file, lines.line_start, problem) from None

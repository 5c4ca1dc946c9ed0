"""What the file kinds (CSV, JSON, JSON Lines) share: getting the bytes, and reading lines.

A file is an upload (`source_file`) or a URL. A URL is downloaded once per process and import
into a private temp directory, streamed to disk with the source's auth, headers, extra
parameters and CA bundle, and downloaded again when the copy is older than
DOWNLOAD_MAX_AGE_SECONDS; a new import always downloads it anew (the file may have changed). The
first page of an import of a file with more pages also puts its copy in the site's file
storage (where uploads are kept, shared by every worker: `SHARED_COPIES`, one folder per
import), and the import's later pages read that copy, not the URL: an import reads one file
from start to end, whichever workers take its pages, even from a URL that generates the file
anew for each download, and the file is downloaded once per import, not once per worker.
Housekeeping deletes an import's copy once it is over (`drop_unused_copies`).

Line-based files are chunked by byte offset: the cursor is where the next chunk starts, so a
chunk is a seek, never a re-read of the chunks before it. Every cursor also names the version
of the file it was read from (a hash of its bytes, worked out once per copy): a chunk that
finds another version, because the file changed during the import (a new upload, or a
download that got other bytes), fails the import rather than skip or repeat records. A cursor
that does not fall at the start of a line means the same. Only encodings that write "\\n" as
the single byte 0x0A can be read this way (UTF-8, Latin-1, Windows code pages, ...): a gzip
download, and one in UTF-16 with a byte-order mark, are converted to UTF-8 as they arrive
(`conversions`; an upload, when its source is saved), and the pages read that copy.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import IO

import requests
from django.core.files import File
from django.core.files.storage import default_storage

from importer.sources import conversions, limits
from importer.sources.base import Page, SourceError, config_error, number_cursor
from importer.sources.conversions import TextEnd
from importer.sources.rules import encoding_problem
from importer.sources.transport import UNPARSABLE_ANSWER_ATTEMPTS, SourceHttp, declared_its_end
from importer.sources.urls import public_url, with_query

DOWNLOAD_MAX_AGE_SECONDS = 300.0
# A downloaded file larger than this is refused: it would only fill the disk.
MAX_DOWNLOAD_BYTES = conversions.MAX_FILE_BYTES
# One line (one CSV row or JSON Lines record) is held in memory whole, so it is bounded too.
MAX_LINE_BYTES = 16 * 1024 * 1024
UTF_8_NAMES = ("utf-8", "utf-8-sig")

# Whether a file (open, at the start of its last line) that has no line break at its end
# ends with a whole row or record.
EndsWhole = Callable[[IO[bytes], int], bool]

# Between a page's place in the file and the file's version, in a cursor ("4096@3f2a...").
VERSION_MARK = "@"

logger = logging.getLogger(__name__)

# Where the copies an import's pages share are kept in the file storage:
# <SHARED_COPIES>/execution-<id>/<version>
SHARED_COPIES = "import-copies"

# Downloaded copies, per process: cache key -> (path, time.monotonic() of the download, the
# import it was downloaded for).
_downloads: dict[str, tuple[str, float, int | None]] = {}
_downloads_lock = threading.Lock()
_cache_dir: tuple[int, str] | None = None


def _download_dir() -> str:
    """This process's private directory for downloads (a forked worker gets its own)."""
    global _cache_dir
    with _downloads_lock:
        if _cache_dir is None or _cache_dir[0] != os.getpid() or not os.path.isdir(_cache_dir[1]):
            _cache_dir = (os.getpid(), tempfile.mkdtemp(prefix="assets-sync-files-"))
            _downloads.clear()
        return _cache_dir[1]


def clear_download_cache() -> None:
    """Forget (and delete) every downloaded copy, so the next chunk downloads afresh."""
    with _downloads_lock:
        for path, *_ in _downloads.values():
            _unlink_quietly(path)
        _downloads.clear()
        if _cache_dir is not None and os.path.isdir(_cache_dir[1]):
            for name in os.listdir(_cache_dir[1]):
                if name.startswith("shared-"):
                    _unlink_quietly(os.path.join(_cache_dir[1], name))


def downloaded_copy(
    import_source, execution_id: int | None = None, ends_whole: EndsWhole | None = None
) -> str:
    """The path of a fresh enough local copy of the source's file URL, downloaded for this
    import (`execution_id`; None: a preview). `ends_whole` judges a file that ends mid-line
    from a server that told no length (`FileSource.ends_whole`)."""
    source = import_source
    # Keyed by URL and by who asks: two sources with other credentials never share a copy.
    url = with_query(source.source_url, dict(source.extra_params or {}))
    identity = "\0".join((url, source.source_auth, source.auth_username, source.auth_key_name))
    secret = hashlib.sha256(source.source_token.encode()).hexdigest()
    key = hashlib.sha256(f"{identity}\0{secret}".encode()).hexdigest()
    directory = _download_dir()
    with _downloads_lock:
        cached = _downloads.get(key)
    if cached and cached[2] == execution_id and os.path.exists(cached[0]):
        if time.monotonic() - cached[1] < DOWNLOAD_MAX_AGE_SECONDS:
            return cached[0]
    http = SourceHttp(source, accept="*/*")
    http.begin(download=True)
    response = http.get(url, what="a file")
    fd, partial = tempfile.mkstemp(dir=directory, suffix=".part")
    try:
        end = conversions.TextEnd()
        with os.fdopen(fd, "wb") as out:
            for piece in http.iter_body(response, limit=MAX_DOWNLOAD_BYTES, what="a file"):
                out.write(piece)
                end.add(piece)
        end = _converted(http, response, partial) or end
        whole = end.proven_whole or declared_its_end(response)
        if end.last_byte not in (b"", b"\n", b"\r") and ends_whole and not whole:
            with open(partial, "rb") as written:
                if not ends_whole(written, end.last_line_at):
                    raise _cut_off_mid_line(http, response)
        if not os.path.getsize(partial) and _never_empty(source):
            # A failed export job, or a proxy, answering 200 with nothing: not a file of no
            # records (an import of none would tell Assets every object is gone).
            raise http.error(
                f"answered {response.status_code} with an empty file (0 bytes): check the "
                "export that writes it, then run the import again",
                permanent=False,
                kind="empty_file",
                max_attempts=UNPARSABLE_ANSWER_ATTEMPTS,
            )
        path = os.path.join(directory, key)
        # A chunk still reading the previous copy keeps its open file; new chunks get this one.
        os.replace(partial, path)
    except BaseException:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise
    with _downloads_lock:
        _downloads[key] = (path, time.monotonic(), execution_id)
    return path


def _converted(http: SourceHttp, response: requests.Response, path: str) -> TextEnd | None:
    """A download that is gzip or UTF-16 with a byte-order mark, replaced by its UTF-8 text
    (see `conversions`): the end of that text; None when the download is text already."""
    with open(path, "rb") as raw:
        if not conversions.needs_conversion(raw.read(4)):
            return None
        fd, text = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".text")
        try:
            with os.fdopen(fd, "wb") as out:
                end = conversions.convert(raw, out)
        except conversions.ConversionError as error:
            _unlink_quietly(text)
            said = f"sent a file at {public_url(response.url)} that {error.problem}"
            if error.cut_off:  # as a download that broke off: tried again
                raise http.error(
                    said,
                    permanent=False,
                    kind="unavailable",
                    max_attempts=UNPARSABLE_ANSWER_ATTEMPTS,
                ) from None
            raise http.error(said, kind=error.kind) from None
        except BaseException:
            _unlink_quietly(text)
            raise
    os.replace(text, path)
    return end


def _cut_off_mid_line(http: SourceHttp, response: requests.Response) -> SourceError:
    """A file of lines that ends mid-line, its last row or record not whole, from a server
    that told neither its length nor its end (no Content-Length, not chunked): the connection
    closed before the file's end, and the rows after it are missing. A file cut exactly at a
    line's end, or inside a CSV row's last value, cannot be told from a whole one."""
    return http.error(
        f"broke off while sending a file at {public_url(response.url)}: the server did not "
        "declare the file's length (no Content-Length, not chunked) and the file ended "
        "mid-line, its last row or record not whole, so it looks cut off when the connection "
        "closed. If the file is whole, end it with a line break, or serve it with its length",
        permanent=False,
        kind="unavailable",
        max_attempts=UNPARSABLE_ANSWER_ATTEMPTS,
    )


def _never_empty(import_source) -> bool:
    """Whether the file holds something even when it lists no records: a JSON document, or a
    CSV file with its header row (JSON Lines, or CSV without a header, of no records are
    empty)."""
    return import_source.source_kind == "json" or (
        import_source.source_kind == "csv" and import_source.csv_has_header
    )


@contextmanager
def open_source_file(
    import_source,
    version: str = "",
    execution_id: int | None = None,
    ends_whole: EndsWhole | None = None,
) -> Iterator[IO[bytes]]:
    """The source's file, opened for binary reading: the upload if there is one, else the
    import's shared copy of the file's `version` (named by the cursor), else the URL."""
    source = import_source
    if source.source_file:
        try:
            try:
                file = open(source.source_file.path, "rb")
            except NotImplementedError:  # storage without local paths (e.g. object storage)
                file = source.source_file.open("rb")
        except OSError:
            raise SourceError(
                f"source '{source.name}': the uploaded file '{source.source_file.name}' cannot "
                "be read: upload it again",
                kind="bad_file",
            ) from None
        with file:
            yield file
    elif source.source_url:
        shared = _shared_copy(execution_id, version) if version and execution_id else None
        path = shared or downloaded_copy(source, execution_id, ends_whole)
        with open(path, "rb") as file:
            yield file
    else:
        raise config_error(source, "it has neither an uploaded file nor a source URL")


def share_copy(execution_id: int, file: IO[bytes], version: str) -> None:
    """Put this copy of a URL's file where the import's later pages find it, whichever worker
    takes them. A copy that cannot be stored only costs that: a later page that downloads
    other bytes then fails the import as a changed file."""
    name = _shared_name(execution_id, version)
    try:
        if default_storage.exists(name):
            return  # the first page, delivered twice
        file.seek(0)
        saved = default_storage.save(name, File(file))
    except OSError:
        _delete_quietly(name)  # a copy cut short must not be read (its version tells, too)
        logger.warning("execution %s: the source's file could not be kept", execution_id)
        return
    if saved != name:  # stored under another name: another worker's copy came first
        _delete_quietly(saved)


def drop_unused_copies(running_executions: Callable[[], set[int]]) -> int:
    """Delete the shared copies of imports that are over; how many were deleted.

    The copies are listed before `running_executions` is asked: a copy written after that,
    by an import starting meanwhile, is not in the list."""
    try:
        folders, _ = default_storage.listdir(SHARED_COPIES)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    listed = {
        folder: default_storage.listdir(f"{SHARED_COPIES}/{folder}")[1]
        for folder in folders
        if folder.removeprefix("execution-").isdigit()
    }
    running = running_executions()
    dropped = 0
    for folder, names in listed.items():
        if int(folder.removeprefix("execution-")) in running:
            continue
        for name in names:
            _delete_quietly(f"{SHARED_COPIES}/{folder}/{name}")
            dropped += 1
        _remove_empty_folder(f"{SHARED_COPIES}/{folder}")
    return dropped


def _remove_empty_folder(name: str) -> None:
    """A storage with local paths keeps empty folders: one per import would pile up."""
    try:
        os.rmdir(default_storage.path(name))
    except (NotImplementedError, OSError):
        pass  # not empty (a copy written meanwhile), or a storage without folders


def _shared_name(execution_id: int, version: str) -> str:
    return f"{SHARED_COPIES}/execution-{execution_id}/{version}"


def _shared_copy(execution_id: int, version: str) -> str | None:
    """The local path of the import's shared copy of `version`; None when there is none
    (or not whole yet: its bytes must be that version)."""
    name = _shared_name(execution_id, version)
    if not default_storage.exists(name):
        return None
    try:
        path = default_storage.path(name)
    except NotImplementedError:  # a storage without local paths: fetched once per process
        path = _local_copy(name, f"shared-{execution_id}-{version}")
    with open(path, "rb") as file:
        return path if file_version(file) == version else None


def _local_copy(name: str, local_name: str) -> str:
    """A stored copy fetched into this process's directory, which keeps one import's copy:
    those of earlier imports are deleted then."""
    directory = _download_dir()
    local = os.path.join(directory, local_name)
    if os.path.exists(local):
        return local
    import_prefix = local_name.rsplit("-", 1)[0] + "-"
    for other in os.listdir(directory):
        if other.startswith("shared-") and not other.startswith(import_prefix):
            _unlink_quietly(os.path.join(directory, other))
    fd, partial = tempfile.mkstemp(dir=directory, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, default_storage.open(name, "rb") as stored:
            while block := stored.read(1024 * 1024):
                out.write(block)
        os.replace(partial, local)
    except BaseException:
        _unlink_quietly(partial)
        raise
    return local


def _delete_quietly(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:
        pass


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@dataclass(frozen=True)
class _FileFacts:
    """What one pass over a file's bytes tells: its version, and whether it is UTF-8."""

    version: str
    # Valid UTF-8 holding characters beyond ASCII: a file in a single-byte code page (where
    # an accented letter is one byte above 0x7F) is next to never that.
    utf_8_beyond_ascii: bool


_facts: dict[tuple, _FileFacts] = {}


def _facts_of(file: IO[bytes]) -> _FileFacts:
    """The file's facts, worked out once per copy of it in this process (a copy is known by
    its path, size and modification time)."""
    try:
        stat = os.fstat(file.fileno())
        key: tuple | None = (getattr(file, "name", ""), stat.st_size, stat.st_mtime_ns)
    except (OSError, AttributeError, ValueError):  # a storage without local files
        key = None
    with _downloads_lock:
        known = _facts.get(key) if key else None
    if known:
        return known
    digest = hashlib.sha256()
    utf_8 = codecs.getincrementaldecoder("utf-8")()
    is_utf_8, beyond_ascii = True, False
    file.seek(0)
    while block := file.read(1024 * 1024):
        digest.update(block)
        if is_utf_8 and (not block.isascii() or utf_8.getstate()[0]):
            beyond_ascii = True
            try:
                utf_8.decode(block)
            except UnicodeDecodeError:
                is_utf_8 = False
    file.seek(0)
    # A character cut in two at the very end (a download cut off) leaves it UTF-8: reading
    # that line says what is wrong with it.
    facts = _FileFacts(digest.hexdigest()[:16], is_utf_8 and beyond_ascii)
    if key:
        with _downloads_lock:
            if len(_facts) > 256:
                _facts.clear()
            _facts[key] = facts
    return facts


def file_version(file: IO[bytes]) -> str:
    """A short hash of the file's bytes."""
    return _facts_of(file).version


def _single_byte(codec: str) -> bool:
    """Whether the codec writes each character as one byte (Windows-1252, ISO 8859-x, ...)."""
    return len(bytes(range(0x80, 0x100)).decode(codec, "replace")) == 0x80


def _undefined_as_latin_1(error: UnicodeError) -> tuple[str, int]:
    """The five bytes Windows-1252 leaves undefined stand for themselves, as browsers read
    them (WHATWG's windows-1252)."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("assets-sync-windows-1252", _undefined_as_latin_1)


def decoding_errors(codec: str) -> str:
    """How bytes the codec cannot decode are handled."""
    return "assets-sync-windows-1252" if codec == "cp1252" else "strict"


def codec_of(import_source) -> tuple[str, bytes]:
    """The codec that decodes the file's lines, and the byte-order mark to skip at its start."""
    name = import_source.file_encoding or "utf-8"
    problem = encoding_problem(name)
    if problem:
        raise config_error(import_source, problem)
    codec = codecs.lookup(name).name
    if codec in UTF_8_NAMES:
        return "utf-8", codecs.BOM_UTF8
    if codec == "iso8859-1":
        # Files said to be Latin-1 are nearly always Windows-1252 (browsers read them so):
        # read strictly as Latin-1, ’ € – … would reach Assets as invisible control codes.
        return "cp1252", b""
    return codec, b""


# The first bytes of files that are no text to read, and what to say of them.
NOT_TEXT_FILES = (
    # A gzip file, or UTF-16 with its mark, is converted as it arrives: one found here was
    # uploaded before that, or compressed twice.
    (
        b"\x1f\x8b",
        "is compressed (gzip): upload it again (an upload is decompressed when its source is "
        "saved), or give the uncompressed file",
    ),
    (
        b"pk\x03\x04",
        "is a ZIP archive (an Excel workbook is one): save it as CSV UTF-8, or as JSON",
    ),
    (b"%pdf", "is a PDF document: export the data as CSV or JSON"),
    *(
        (
            mark,
            'is UTF-16 (a spreadsheet\'s "Unicode text"): upload it again (an upload is '
            "converted to UTF-8 when its source is saved), or save it as CSV UTF-8",
        )
        for mark in (b"\xff\xfe", b"\xfe\xff")
    ),
    (b"\xd0\xcf\x11\xe0", "is an Office document (an Excel 97 workbook?): save it as CSV UTF-8"),
    *(
        (
            signature + end,
            "is a web page (HTML), not the data: the URL may lead to a login or error page; "
            "check it, and the source's authentication",
        )
        for signature in (b"<!doctype html", b"<html", b"<head", b"<body")
        for end in (b" ", b">", b"\n", b"\r", b"\t")
    ),
)


class LineReader:
    """The lines of a binary file from a byte offset, knowing where the current one started."""

    def __init__(self, file: IO[bytes], start: int, bom: bytes = b"") -> None:
        self.file = file
        file.seek(start)
        if start == 0 and bom and file.read(len(bom)) == bom:
            start = len(bom)
        file.seek(start)
        self.position = start  # where the next line starts
        self.line_start = start  # where the line last handed out starts
        self.line_ended = True  # whether the line last handed out ends with a line break

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.file.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            self.line_start, self.position = self.position, self.position + len(line)
            self.line_ended = line.endswith((b"\n", b"\r"))
            if len(line) > MAX_LINE_BYTES:
                raise LineTooLong(self.line_start)
            yield line


class LineTooLong(Exception):
    def __init__(self, position: int) -> None:
        self.position = position


def line_number(file: IO[bytes], position: int) -> int:
    """The 1-based number of the line that starts at or spans `position` (counted on demand)."""
    file.seek(0)
    newlines, read = 0, 0
    while read < position:
        block = file.read(min(1024 * 1024, position - read))
        if not block:
            break
        newlines += block.count(b"\n")
        read += len(block)
    return newlines + 1


class FileSource:
    """A file read chunk by chunk: `page_size` records per chunk (at most
    SOURCE_MAX_RECORDS_PER_PAGE), subclasses parse them."""

    def __init__(self, import_source, execution_id: int | None = None) -> None:
        self.config = import_source
        # The import this reader reads for: its first page shares the file with the others.
        self.execution_id = execution_id
        self.name = import_source.name
        self.page_size = min(max(1, import_source.page_size), limits.max_records_per_page())
        self.codec, self.bom = codec_of(import_source)

    def fetch_page(self, cursor: str) -> Page:
        place, _, read_from = (cursor or "").partition(VERSION_MARK)
        with open_source_file(
            self.config, read_from, self.execution_id, ends_whole=self.ends_whole
        ) as file:
            if not place:
                self._check_is_text(file)
            self._follow_byte_order_mark(file)
            version = file_version(file)
            if read_from and read_from != version:
                raise SourceError(
                    f"source '{self.name}': the file changed during the import (it is not the "
                    "file the import's earlier pages came from): start the import again",
                    kind="file_changed",
                )
            try:
                page = self.read_chunk(file, place)
            except LineTooLong as long_line:
                raise self.line_error(
                    file, long_line.position, f"is longer than {MAX_LINE_BYTES // 2**20} MB"
                ) from None
            if page.next_cursor is None:
                return page
            if self.execution_id and not read_from and not self.config.source_file:
                # The import's first page: the file it read is the one read to the end.
                share_copy(self.execution_id, file, version)
        return replace(page, next_cursor=f"{page.next_cursor}{VERSION_MARK}{version}")

    def read_chunk(self, file: IO[bytes], cursor: str) -> Page:
        raise NotImplementedError

    def ends_whole(self, file: IO[bytes], last_line_at: int) -> bool:
        """Whether a download that told neither its length nor its end, and ends without a
        line break, ends with a whole record: if not, the connection closed before the
        file's end, and the file is downloaded again. A file of lines says from its last
        line (`last_line_at`); a JSON document is checked whole by its parser."""
        return True

    def _check_is_text(self, file: IO[bytes]) -> None:
        """A file of another kind than text (compressed, a workbook, UTF-16, a web page
        answered in its place) is named as such: read as text, it would fail with an advice
        to change the encoding or the delimiter, which cannot help."""
        file.seek(0)
        start = file.read(512).removeprefix(codecs.BOM_UTF8)
        file.seek(0)
        problem = next(
            (
                problem
                for signature, problem in NOT_TEXT_FILES
                if start.lstrip().lower().startswith(signature)
            ),
            "",
        )
        if problem:
            raise SourceError(f"source '{self.name}': the file {problem}", kind="bad_file")

    def _follow_byte_order_mark(self, file: IO[bytes]) -> None:
        """A UTF-8 byte-order mark says what the file is, whatever encoding the source names
        (a spreadsheet's "CSV UTF-8" export given as Windows-1252). So does a file that is
        valid UTF-8 with characters beyond ASCII, when the source names a single-byte code
        page (an export that moved to UTF-8 without a mark): read as Windows-1252 every
        accented letter would arrive as two ('Müller' as 'MÃ¼ller')."""
        if self.codec == "utf-8":
            return
        file.seek(0)
        if file.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
            self.codec, self.bom = "utf-8", codecs.BOM_UTF8
        elif _single_byte(self.codec) and _facts_of(file).utf_8_beyond_ascii:
            self.codec, self.bom = "utf-8", b""

    def start_of(self, file: IO[bytes], cursor: str) -> int:
        """The byte offset a cursor names, checked to be the start of a line of this file."""
        offset = number_cursor(cursor, default=0, source_name=self.name, meaning="a byte offset")
        if offset > 0:
            file.seek(offset - 1)
            if file.read(1) != b"\n":
                raise SourceError(
                    f"source '{self.name}': the file changed during the import (chunk start "
                    f"{offset} is not the start of a line): start the import again",
                    kind="file_changed",
                )
        return offset

    def decode(self, line: bytes, file: IO[bytes], position: int) -> str:
        try:
            return line.decode(self.codec, decoding_errors(self.codec))
        except UnicodeDecodeError as exc:
            byte = line[exc.start : exc.start + 1].hex()
            problem = (
                f"is not valid {self.codec} (its byte 0x{byte}): set the source's file "
                "encoding to the one the file is written in "
                "(a spreadsheet's plain CSV export is cp1252 in Western Europe), or save the "
                "file as UTF-8"
            )
            raise self.line_error(file, position, problem) from None

    def line_error(self, file: IO[bytes], position: int, problem: str) -> SourceError:
        number = line_number(file, position)
        return SourceError(
            f"source '{self.name}': line {number} of the file {problem}", kind="bad_file"
        )

"""Files that are text once converted: compressed with gzip (a `.csv.gz` export, served
without Content-Encoding), or written in UTF-16 with a byte-order mark (a spreadsheet's
"Unicode text" export, the usual way to export letters beyond ASCII from Excel).

Pages are cut at byte offsets of a file whose line break is the byte 0x0A, so such a file is
converted once, where it enters the app (a download as it arrives, an upload as its source is
saved), and every page reads the UTF-8 copy: one way of reading, and a file's version is the
hash of the bytes the pages read. UTF-16 without a byte-order mark cannot be told from other
bytes, and stays refused.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from typing import IO

from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile

# A source file larger than this, as downloaded or once decompressed, is refused: it would
# only fill the disk (a gzip file of a few megabytes may decompress to terabytes).
MAX_FILE_BYTES = 4 * 1024**3

GZIP_MAGIC = b"\x1f\x8b"
UTF_16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_BLOCK_BYTES = 1024 * 1024


class ConversionError(Exception):
    """A file that cannot be converted. `problem` completes "the file ...", saying what to
    do; `cut_off`: the file ends early (a download is tried again)."""

    def __init__(self, problem: str, *, kind: str, cut_off: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.kind = kind
        self.cut_off = cut_off


@dataclass
class TextEnd:
    """The end of the bytes written so far: their size, their last byte and where their last
    line starts (what tells a download cut off mid-line)."""

    size: int = 0
    last_byte: bytes = b""
    last_line_at: int = 0
    # A gzip stream ends with its own end marker and checksum: once decompressed, it was whole.
    proven_whole: bool = False

    def add(self, piece: bytes) -> None:
        if (newline := piece.rfind(b"\n")) >= 0:
            self.last_line_at = self.size + newline + 1
        self.size += len(piece)
        self.last_byte = piece[-1:] or self.last_byte


def needs_conversion(head: bytes) -> bool:
    """Whether a file that starts with `head` (its first bytes) is converted before it is read."""
    return head.startswith(GZIP_MAGIC) or _is_utf_16(head)


def _is_utf_16(head: bytes) -> bool:
    # FF FE 00 00 is UTF-32's mark: left to be refused as no text.
    return head.startswith(UTF_16_MARKS) and not head.startswith(codecs.BOM_UTF32_LE)


def _size_text(limit: int) -> str:
    return f"{limit // 2**30} GB" if limit % 2**30 == 0 else f"{limit // 2**20} MB"


def convert(raw: IO[bytes], out: IO[bytes]) -> TextEnd:
    """Write the text `raw` holds to `out`: decompressed, then in UTF-8 when it is UTF-16
    with a byte-order mark (written with UTF-8's mark, so it is read as UTF-8 whatever
    encoding the source names). At most MAX_FILE_BYTES are written."""
    limit = MAX_FILE_BYTES
    raw.seek(0)
    compressed = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
    raw.seek(0)
    stream: IO[bytes] = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
    end = TextEnd(proven_whole=compressed)
    try:
        blocks = iter(lambda: stream.read(_BLOCK_BYTES), b"")
        first = next(blocks, b"")
        pieces: Iterator[bytes] = chain([first], blocks)
        if _is_utf_16(first):
            pieces = _utf_16_as_utf_8(pieces)
        for piece in pieces:
            if end.size + len(piece) > limit:
                grows = "decompresses" if compressed else "converted to UTF-8 grows"
                raise ConversionError(
                    f"{grows} to more than {_size_text(limit)}, the most a source file may "
                    "hold: give a smaller export (a compressed file that grows this much "
                    "may be a gzip bomb)",
                    kind="too_large",
                )
            out.write(piece)
            end.add(piece)
    except EOFError:
        raise ConversionError(
            "is compressed (gzip) and ends before the end of its compressed data: it looks "
            "cut off; check the export, then give the whole file",
            kind="bad_file",
            cut_off=True,
        ) from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise ConversionError(
            f"is compressed (gzip) but its compressed data is broken ({error}): check the "
            "export, then give the file again",
            kind="bad_file",
        ) from None
    return end


def _utf_16_as_utf_8(pieces: Iterator[bytes]) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder("utf-16")()  # reads the mark, and its byte order
    yield codecs.BOM_UTF8
    line = 1
    try:
        for piece in pieces:
            text = decoder.decode(piece)
            yield text.encode("utf-8")
            line += text.count("\n")
    except UnicodeDecodeError as error:
        valid = error.object[: error.start].decode(error.encoding, "replace")
        line += valid.count("\n")
        raise ConversionError(
            f'is UTF-16 (a spreadsheet\'s "Unicode text") but line {line} is not valid '
            "UTF-16: export it again, or save it as CSV UTF-8",
            kind="bad_file",
        ) from None
    try:
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError:
        raise ConversionError(
            'is UTF-16 (a spreadsheet\'s "Unicode text") and ends inside a character: it '
            "looks cut off; check the export, then give the whole file",
            kind="bad_file",
            cut_off=True,
        ) from None


def converted_upload(upload: UploadedFile) -> UploadedFile:
    """The upload as it is kept: the file itself, or its text when it needs converting (under
    its name without `.gz`)."""
    upload.seek(0)
    head = upload.read(4)
    upload.seek(0)
    if not needs_conversion(head):
        return upload
    name = upload.name or "file"
    if name.lower().endswith(".gz") and len(name) > 3:
        name = name[:-3]
    text = _ConvertedUpload(name, "text/plain", 0, "utf-8")
    try:
        text.size = convert(upload, text).size
    except BaseException:
        text.close()
        raise
    text.seek(0)
    return text


class _ConvertedUpload(TemporaryUploadedFile):
    """A converted upload, in a temporary file the storage moves into place when it saves it.
    Closed when dropped: the request closes the files it received, not this one, and the
    temporary file would complain, when collected, that it is no longer there."""

    def __del__(self) -> None:
        self.close()  # Django's: a file moved away is no error

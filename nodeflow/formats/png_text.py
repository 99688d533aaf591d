"""The text chunks of a PNG file (tEXt, zTXt, iTXt), read without decoding a single pixel.

A workflow PNG is read for its text only, so its pixels are skipped: a 65535 x 65535 header (or a
decompression bomb) costs nothing. Text is bounded: all chunks together decode to at most
``MAX_TEXT_BYTES`` (compressed ones are inflated with that limit), enough for any workflow that
SaveImage embeds (see ``formats.png.workflow_text_chunks``) and refused cleanly above it.
"""

from __future__ import annotations

import os
import struct
import zlib

from nodeflow.errors import WorkflowFormatError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_BYTES = 64 * 2**20
TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """Keyword -> text of every text chunk (a later chunk with the same keyword wins)."""
    chunks: dict[str, str] = {}
    budget = MAX_TEXT_BYTES
    try:
        with open(path, "rb") as file:
            if file.read(8) != SIGNATURE:
                raise WorkflowFormatError(f"{path}: cannot read this image (not a PNG file)")
            size = os.fstat(file.fileno()).st_size
            while True:
                header = file.read(8)
                if len(header) < 8:
                    break  # cut short after its last whole chunk: keep what was read
                length, kind = struct.unpack(">I4s", header)
                if file.tell() + length + 4 > size:
                    raise WorkflowFormatError(f"{path}: cannot read this image (a chunk runs past the end of the file)")
                if kind == b"IEND":
                    break
                if kind not in TEXT_TYPES:
                    file.seek(length + 4, os.SEEK_CUR)  # data and CRC, unread
                    continue
                if length > budget:
                    raise _too_much(path)
                keyword, text = _decode(kind, file.read(length), budget, path)
                file.seek(4, os.SEEK_CUR)  # CRC
                budget -= len(text)
                chunks[keyword] = text
    except OSError as error:
        raise WorkflowFormatError(f"{path}: cannot read this image ({error})") from None
    return chunks


def _decode(kind: bytes, data: bytes, budget: int, path) -> tuple[str, str]:
    keyword, sep, rest = data.partition(b"\0")
    if not sep:
        raise WorkflowFormatError(f"{path}: cannot read this image (a {kind.decode()} chunk has no keyword)")
    try:
        if kind == b"tEXt":
            return keyword.decode("latin-1"), rest.decode("latin-1")
        if kind == b"zTXt":
            return keyword.decode("latin-1"), _inflate(rest[1:], budget, path).decode("latin-1")
        compressed, rest = rest[:1] == b"\x01", rest[2:]  # iTXt: flag, method, language, translated keyword
        _language, _, rest = rest.partition(b"\0")
        _translated, _, text = rest.partition(b"\0")
        return keyword.decode("latin-1"), (_inflate(text, budget, path) if compressed else text).decode("utf-8")
    except (UnicodeDecodeError, zlib.error) as error:
        raise WorkflowFormatError(f"{path}: cannot read its {keyword.decode('latin-1')!r} text ({error})") from None


def _inflate(data: bytes, budget: int, path) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, budget + 1)  # max_length 0 would mean no limit at all
    if len(text) > budget or inflater.unconsumed_tail:
        raise _too_much(path)
    return text


def _too_much(path) -> WorkflowFormatError:
    return WorkflowFormatError(f"{path}: its text chunks hold more than {MAX_TEXT_BYTES // 2**20} MiB")

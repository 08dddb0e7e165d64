"""Small byte-level helpers shared by the extractors: charsets, text-or-binary, percent-decoding, RFC 2047 words.

All of them run in C (translate, find, split, codecs) rather than looping over bytes in Python.
"""

from __future__ import annotations

import codecs
import email.errors
import email.header
import re
from urllib.parse import unquote_to_bytes

# Bytes that plain text does not contain (C0 controls other than \t \n \r \f, and DEL).
CONTROL = bytes([*range(0, 9), 11, *range(14, 32), 127])
NOT_CONTROL = bytes(b for b in range(256) if b not in CONTROL)

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_WIDE = ("utf-16", "utf-32", "ucs-2", "ucs2", "utf16", "utf32", "unicode")
_PCT = re.compile(rb"%[0-9A-Fa-f]{2}")
MAX_PCT_LEVELS = 3


def wide_charset(data: bytes, charset: str = "") -> str | None:
    """The codec for a UTF-16/32 body (by BOM, declared charset, or NUL pattern), else None.

    A declared UTF-16/32 label (or byte order mark) on bytes that are NUL-free UTF-8 text is a lie (frameworks
    ignore the charset of JSON; a UTF-16 BOM before ASCII decodes to nonsense): the bytes are read as UTF-8, as a
    receiver that stores or logs them does."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            if codec == "utf-8":
                return None
            head = data[len(bom):len(bom) + 4096]  # a UTF-16/32 BOM before NUL-free UTF-8 text lies, as a label can
            return None if head and b"\x00" not in head and is_textual(head) else codec
    cs = charset.lower()
    if cs.startswith(_WIDE):
        head = data[:4096]
        return None if b"\x00" not in head and is_textual(head) else cs
    head = data[:64]
    if len(head) >= 4 and b"\x00" in head:  # BOM-less UTF-16 text: ASCII with a NUL in every other byte
        half = len(head) // 2
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd >= 0.8 * half and not even:
            return "utf-16-le"
        if even >= 0.8 * half and not odd:
            return "utf-16-be"
    return None


# Declared charsets that are not ASCII-compatible (a token's bytes differ): decoded when declared.
_NARROW_DECODED = ("utf-7", "cp037", "cp273", "cp424", "cp500", "cp875", "cp1026", "cp1140")
_NUL_TEXT = bytes(0x61 if 0x20 <= b < 0x7F else 0x7A if b == 0 else 0x20 for b in range(256))
_WIDE_RUNS = ((b"azzz" * 8, "utf-32-le", 4), (b"zzza" * 8, "utf-32-be", 4), (b"az" * 16, "utf-16-le", 2),
              (b"za" * 16, "utf-16-be", 2))


def declared_codec(charset: str) -> str | None:
    """The Python codec of a declared charset that is not ASCII-compatible (utf-7, EBCDIC), else None."""
    if not charset:
        return None
    try:
        name = codecs.lookup(charset.strip().strip('"')).name
    except LookupError:
        return None
    return name if name in _NARROW_DECODED else None


def hidden_wide_text(data: bytes) -> tuple[str, int] | None:
    """(codec, offset) when BOM-less UTF-16/32 text sits somewhere in `data` (a run of NUL-interleaved ASCII,
    e.g. after CJK text or inside a binary file) that the head did not reveal; else None."""
    if b"\x00" not in data:
        return None
    marks = data.translate(_NUL_TEXT)
    for run, codec, width in _WIDE_RUNS:
        pos = marks.find(run)
        if pos != -1:
            return codec, pos % width
    return None


def to_utf8(data: bytes, charset: str = "") -> bytes:
    """Text as UTF-8 bytes. ASCII-compatible charsets pass through unchanged (tokens are ASCII)."""
    codec = wide_charset(data, charset)
    if codec is None:
        return data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    try:
        return data.decode(codec, "replace").encode("utf-8", "surrogatepass")
    except LookupError:
        return data


def is_textual(data: bytes) -> bool:
    """Mostly printable: at most 5 % control bytes, and valid UTF-8 if it has high bytes."""
    n = len(data)
    if not n:
        return True
    if len(data.translate(None, NOT_CONTROL)) * 20 > n:
        return False
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= n - 3  # a UTF-8 sequence cut at the end still counts as text
    return True


def percent_decode(data: bytes, plus: bool = False) -> bytes:
    """Percent-decode (and '+' -> ' ' for query strings), repeated for double-encoded text."""
    if plus and b"+" in data:
        data = data.replace(b"+", b" ")
    for _ in range(MAX_PCT_LEVELS):
        if b"%" not in data or not _PCT.search(data):
            break
        data = unquote_to_bytes(data)
    return data


def decode_words(text: str) -> str:
    """RFC 2047 encoded-words (`=?UTF-8?B?…?=`, `=?UTF-8?Q?ghp=5F…?=`) decoded, as mail clients and some multipart
    encoders write header values and file names; `text` unchanged when it holds none or they do not decode."""
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return text

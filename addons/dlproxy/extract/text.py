"""Small byte-level helpers shared by the extractors: charsets, text-or-binary, percent-decoding.

All of them run in C (translate, find, split, codecs) rather than looping over bytes in Python.
"""

from __future__ import annotations

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
    """The codec for a UTF-16/32 body (by BOM, declared charset, or NUL pattern), else None."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return None if codec == "utf-8" else codec
    cs = charset.lower()
    if cs.startswith(_WIDE):
        return cs
    head = data[:64]
    if len(head) >= 4 and b"\x00" in head:  # BOM-less UTF-16 text: ASCII with a NUL in every other byte
        half = len(head) // 2
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if odd >= 0.8 * half and not even:
            return "utf-16-le"
        if even >= 0.8 * half and not odd:
            return "utf-16-be"
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

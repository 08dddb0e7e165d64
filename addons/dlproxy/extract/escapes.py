"""Escapes a receiver decodes: JSON string escapes (repeated for JSON inside a string), and the escape view of
text no parser unescaped (percent, JavaScript and JSON escapes, character references, line continuations),
decoded near the escapes only so that long text pays for what it holds.

Pure: imports nothing from the rest of the extractor, so `core` (every text segment) and `jsonx` (JSON bodies)
can both use it.
"""

from __future__ import annotations

import codecs
import re
import warnings
from urllib.parse import unquote_to_bytes

MAX_ESCAPE_LEVELS = 3
_SIMPLE = {b'"': b'"', b"\\": b"\\", b"/": b"/", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}
_ESCAPE = re.compile(rb'\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})'
                     rb'|(["\\/bfnrt]))')
_FFFD = "\ufffd".encode()
_UNICODE_OR_SLASH = re.compile(rb"\\[u/]")


def _unescape_one(m: re.Match) -> bytes:
    simple = m.group(4)
    if simple is not None:
        return _SIMPLE[simple]
    if m.group(3) is not None:
        cp = int(m.group(3), 16)
        return _FFFD if 0xD800 <= cp <= 0xDFFF else chr(cp).encode()
    cp = 0x10000 + ((int(m.group(1), 16) - 0xD800) << 10) + (int(m.group(2), 16) - 0xDC00)
    return chr(cp).encode()


# Escapes that can hide a token's characters. Two patterns, each led by one literal byte: the regex engine finds
# those fast, an alternation of them byte by byte (about ten times slower on a megabyte).
_HIDING_PCT = re.compile(rb"%[0-9A-Fa-f]{2}")
_HIDING_BS = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|[0-3][0-7]{2})")
_HIDING_REF = re.compile(rb"&#(?:[0-9]{1,7}|[xX][0-9a-fA-F]{1,6});")
# The escapes of ASCII characters: the only ones that can stand for a token's characters (tokens are ASCII; `%C3%A9`
# or `\\u00e9` is an accented letter, never part of one). A deeper level starts from one of them (`%2567`).
_ASCII_PCT = re.compile(rb"%[0-7][0-9A-Fa-f]")
# (also C, Python and shell octal escapes of printable ASCII, `\\147`: `printf`, `echo -e`, byte literals)
_ASCII_BS = re.compile(rb"\\(?:u00[0-7][0-9a-fA-F]|x[0-7][0-9a-fA-F]|u\{0*[0-7]?[0-9a-fA-F]\}|\r?\n|0[4-7][0-7]|1[0-7]{2})")
# A backslash-newline continuation inside a quoted string (YAML double quotes and TOML drop the next line's
# indentation too; C, Python and shell strings have none there): undone before the JSON escapes
_CONTINUATION = re.compile(rb"\\\r?\n[ \t]*")
# HTML character references of ASCII characters (`&#103;`, `&#x67;`) in text no markup parser read (HTML in JSON)
_ASCII_REF = re.compile(rb"&#(?:0*(?:[0-9]{1,2}|1[01][0-9]|12[0-7])|[xX]0*[0-7]?[0-9a-fA-F]);")
# ES2015 `\u{67}` (JavaScript source) and character references: decoded after the percent and JSON escapes
_BRACE_OR_REF = re.compile(rb"\\u\{([0-9a-fA-F]{1,6})\}|&#([0-9]{1,7});|&#[xX]([0-9a-fA-F]{1,6});")
_LONGEST_ESCAPE = 12  # \uXXXX\uXXXX (a surrogate pair), &#x0000067;
_EDGE = 16  # beyond the widest token: the byte before it (its boundary)


def escaped_view(data: bytes, window: int | None = None) -> bytes | None:
    """Text with the percent, JSON and JavaScript escapes and HTML character references that can hide a token's
    characters (`%67`, `\\u0067`, `\\x67`, `\\u{67}`, `&#103;`) decoded, repeatedly up to MAX_ESCAPE_LEVELS; None when there are none. For text no parser unescaped: JSON in
    a header, a form field or a query, a URL inside a JSON string.

    `window` (the widest token the detector can find): only the text within that distance of such an escape is
    decoded, each stretch on a line of its own. A token hidden by escapes holds one, and its escape-free parts are
    as long in the view as in the text, so it lies whole in one stretch; the rest of the text is scanned as it is
    anyway. Without a window (or when the stretches would cover most of the text) the whole text is decoded."""
    escapes = _Escapes(data)
    first = escapes.next(0)
    if first is None:
        return None
    spans = _stretches(data, first, escapes, window) if window is not None else None
    if spans is None:
        return _decoded(data)
    return b"\n".join(_decoded(data[s:e]) or data[s:e] for s, e in spans)


class _Escapes:
    """The ASCII escapes of `data` in order, each kind searched once per match (not again from every position)."""

    __slots__ = ("data", "found")

    def __init__(self, data: bytes):
        self.data = data
        self.found: dict[re.Pattern, re.Match | None] = {}
        for kind, lead in ((_ASCII_PCT, b"%"), (_ASCII_BS, b"\\"), (_ASCII_REF, b"&")):
            if lead in data:  # one byte each: memchr (`b"&#" in data` walks a megabyte ~70x slower)
                self.found[kind] = kind.search(data)

    def next(self, pos: int) -> re.Match | None:
        best = None
        for kind, m in self.found.items():
            if m is not None and m.start() < pos:
                m = self.found[kind] = kind.search(self.data, pos)
            if m is not None and (best is None or m.start() < best.start()):
                best = m
        return best


def _stretches(data: bytes, first: re.Match, escapes: _Escapes, window: int) -> list[tuple[int, int]] | None:
    """The merged stretches of text within `window` of an ASCII escape, or None when they would cover most of it
    (then one decode of the whole is cheaper). A stretch grows to `window` past the last `%` or backslash in it
    (any: a wider stretch is only more text decoded), so dense escapes cost a few finds per window, not a step
    each."""
    n = len(data)
    reach = window + _EDGE
    if 4 * reach >= n:
        return None
    spans: list[tuple[int, int]] = []
    covered = 0
    m: re.Match | None = first
    start = end = -1
    while m is not None:
        if end < 0 or m.start() - reach > end:  # a new stretch; else this escape extends the current one
            if end >= 0:
                spans.append((start, end))
                covered += end - start
            start = max(0, m.start() - reach)
        seen, end = m.end(), min(n, m.end() + reach)
        while seen < end:
            last = max(data.rfind(b"%", seen, end), data.rfind(b"\\", seen, end), data.rfind(b"&", seen, end))
            seen = end
            if last != -1:
                end = min(n, last + _LONGEST_ESCAPE + reach)
        if 4 * (covered + end - start) >= 3 * n:
            return None
        m = escapes.next(end)
    spans.append((start, end))
    return spans


def _hiding(data: bytes) -> bool:
    return bool((b"%" in data and _HIDING_PCT.search(data)) or (b"\\" in data and _HIDING_BS.search(data))
                or (b"&" in data and _HIDING_REF.search(data)))


def _brace_or_ref(m: re.Match) -> bytes:
    digits = m.group(1) or m.group(3)
    cp = int(digits, 16) if digits else int(m.group(2))
    if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
        return m.group()
    return chr(cp).encode()


def _decoded(data: bytes) -> bytes | None:
    out = data
    for _ in range(MAX_ESCAPE_LEVELS):
        before = out
        if b"%" in out:
            out = unquote_to_bytes(out)
        if b"\\" in out:
            out = unescape(out)
        if b"\\u{" in out or b"&#" in out:
            out = _BRACE_OR_REF.sub(_brace_or_ref, out)
        if out == before or not _hiding(out):
            break
    return out if out != data else None


def unescape(data: bytes) -> bytes:
    """Decode JSON string escapes wherever they are (invalid ones stay as they are), at C speed.

    \\uXXXX (after an odd number of backslashes, as JSON means) goes through the raw_unicode_escape codec,
    \\/ through a replace, then `codecs.escape_decode` does \\n \\r \\t \\b \\f \\" \\\\ in one pass, keeping
    every other byte. Per-escape Python callbacks (a regex) only for text that is not JSON.
    """
    if b"\\" not in data:
        return data
    if b"\\\n" in data or b"\\\r\n" in data:  # not JSON: a continuation line of YAML, TOML, a shell or C string
        data = _CONTINUATION.sub(b"", data)
    out = _escape_decode(data)
    if b"\\" in out and _UNICODE_OR_SLASH.search(data):  # \\u or \\/ left: redo in the exact order
        data = _unicode_escapes(data)
        out = _escape_decode(data) if b"\\" in data else data
    return out


def _escape_decode(data: bytes) -> bytes:
    try:
        with warnings.catch_warnings():  # it warns about the escapes it leaves alone (\\u, \\/, \\d ...)
            warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
            return codecs.escape_decode(data)[0]
    except (ValueError, Warning):  # a trailing backslash, `\\xZZ` (not JSON), or warnings made errors
        return _ESCAPE.sub(_unescape_one, data)


def _unicode_escapes(data: bytes) -> bytes:
    if b"\\/" in data:
        data = data.replace(b"\\/", b"/")
    text = data.decode("raw_unicode_escape", "dlproxy.keep")
    if data.isascii():  # every non-ASCII character came from an escape: pair surrogates, then UTF-8
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode("utf-8")
    return text.encode("latin-1", "dlproxy.utf8")  # original bytes back; escaped characters as UTF-8


def _keep_undecodable(exc: UnicodeDecodeError) -> tuple[str, int]:
    return exc.object[exc.start:exc.end].decode("latin-1"), exc.end


def _escaped_as_utf8(exc: UnicodeEncodeError) -> tuple[bytes, int]:
    run = exc.object[exc.start:exc.end]
    return run.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode("utf-8"), exc.end


codecs.register_error("dlproxy.keep", _keep_undecodable)
codecs.register_error("dlproxy.utf8", _escaped_as_utf8)


def unescape_levels(data: bytes, levels: int = MAX_ESCAPE_LEVELS) -> tuple[bytes, int]:
    """Unescape repeatedly (JSON inside JSON strings); returns (text, levels applied)."""
    done = 0
    while done < levels and b"\\" in data:
        decoded = unescape(data)
        if decoded == data:
            break
        data, done = decoded, done + 1
    return data, done

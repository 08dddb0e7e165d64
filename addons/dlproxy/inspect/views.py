"""Decoded views of a stream of text, built incrementally, with a map back to source offsets. Pure.

    view = EscapeView()
    out = view.feed(chunk)           # the decoded continuation (a trailing incomplete escape waits)
    out = view.feed(b"", final=True)
    view.to_source(view_offset)      # the source offset of a view offset (a cut, a redaction span)

A token written with escapes is not the token: `\\nghp_…` (a JSON `\\n` glues its `n` to the token), `\\u0067hp_…`,
`ghp\\/…`-style escaping, `&#103;hp_…`. Buffered bodies are extracted by type (extract.jsonx, extract.markup); a
stream is not whole, so it is scanned on this view as well: JSON string escapes and HTML character references
decoded wherever they occur, whatever the declared type (decoding an escape that was not one only adds a view that
is scanned too). Where the source has no escape the view is the source, at the same offsets plus a constant shift.
"""

from __future__ import annotations

import html
import html.entities
import re
from bisect import bisect_right

# The named character references that stand for a printable ASCII character other than `& < > " '` (`&lowbar;`,
# `&period;`, `&sol;` ...): the only named ones that can be part of a token. The others (`&nbsp;`, `&mdash;`,
# `&amp;` ...) are most of an HTML page's references and hide nothing: decoding each costs a Python call.
_ASCII_NAMES = b"|".join(sorted(
    name[:-1].encode() for name, value in html.entities.html5.items()
    if name.endswith(";") and len(value) == 1 and 0x20 < ord(value) < 0x7F and value not in "&<>\"'"))
# Escapes decoded in every stream, each kind led by one literal byte (the regex engine finds a literal fast; an
# alternation of the kinds it would try at every byte): JSON string escapes and their JavaScript kin (`\\x67`,
# `\\u{67}`), octal escapes of ASCII (`\\147`: printf, C, Python), a backslash-newline line continuation (YAML
# double quotes and TOML drop the next line's indentation too), HTML character references (numeric ones with or
# without `;`, as HTML parsers read them) and the percent-escapes of token characters (`%67`; `%20` hides none and
# is common in URLs).
_TEXT = ((b"\\", rb"\\(?:u[0-9a-fA-F]{4}|u\{[0-9a-fA-F]{1,6}\}|x[0-9a-fA-F]{2}|[0-1][0-7]{2}|[nrtbf\"\\/']"
                 rb"|\r?\n[ \t]*)"),
         (b"&", rb"&(?:#[0-9]{1,7};?|#[xX][0-9a-fA-F]{1,6};?|(?:" + _ASCII_NAMES + rb");)"),
         (b"%", rb"%(?:2[DdEe]|3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|5[Ff])"))
_TEXT_OPEN = (rb"\\(?:u[0-9a-fA-F]{0,3}|u\{[0-9a-fA-F]{0,6}|x[0-9a-fA-F]?|[0-1][0-7]?|\r|\r?\n[ \t]*)?"
              rb"|&(?:#[xX]?[0-9a-fA-F]{0,7}|[A-Za-z][A-Za-z0-9]{0,31})?|%[0-9A-Fa-f]?")
# MIME (multipart and message bodies): quoted-printable soft line breaks and `=XX` (and RFC 2047 Q words)
_MIME = ((b"=", rb"=(?:\r?\n|[0-9A-F]{2})"),)
_MIME_OPEN = rb"|=(?:\r|[0-9A-F])?"
# Markup (XML, HTML): CDATA section markers and short comments, which a parser drops from the text
_MARKUP = ((b"<", rb"<!(?:\[CDATA\[|--[^>]{0,64}?-->)"), (b"]", rb"\]\]>"))
_MARKUP_OPEN = rb"|<(?:!(?:\[(?:C(?:D(?:A(?:T(?:A)?)?)?)?)?|-(?:-[^>]{0,64})?)?)?|\]\]?"
_SIMPLE = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
MAX_OPEN = 80


def _compiled(mime: bool, markup: bool) -> tuple[tuple[tuple[bytes, re.Pattern], ...], re.Pattern]:
    kinds, opened = _TEXT, _TEXT_OPEN
    if mime:
        kinds, opened = kinds + _MIME, opened + _MIME_OPEN
    if markup:
        kinds, opened = kinds + _MARKUP, opened + _MARKUP_OPEN
    # A possible escape cut off by the end of the data: held until the next bytes decide it.
    return tuple((lead, re.compile(rx)) for lead, rx in kinds), re.compile(rb"(?:" + opened + rb")\Z")


_KINDS = {(mime, markup): _compiled(mime, markup) for mime in (False, True) for markup in (False, True)}


def _matches(kinds, data: bytes) -> list[re.Match] | None:
    """The escapes in `data` in order (a match inside an earlier one dropped); None when no lead byte is there."""
    found: list[re.Match] | None = None
    several = False
    for lead, rx in kinds:
        if lead in data:  # one byte: memchr
            if found is None:
                found = list(rx.finditer(data))
            else:
                more = list(rx.finditer(data))
                if more:
                    several = bool(found)
                    found += more
    if several:
        found.sort(key=lambda m: m.start())
        kept, end = [], -1
        for m in found:
            if m.start() >= end:
                kept.append(m)
                end = m.end()
        found = kept
    return found


def _decode(m: re.Match) -> bytes:
    s = m.group()
    lead = s[0]
    if lead == 0x5C:  # backslash
        c = s[1]
        if c == 0x75:  # \uXXXX, \u{X…}
            cp = int(s[3:-1] if s[2] == 0x7B else s[2:], 16)
            return chr(cp).encode("utf-8", "surrogatepass") if cp <= 0x10FFFF else s
        if 0x30 <= c <= 0x31:  # \ooo: an octal escape of printable ASCII (printf, C, Python)
            return bytes([int(s[1:], 8)])
        if c == 0x78:  # \xXX
            return chr(int(s[2:], 16)).encode("utf-8")
        if c in (0x0A, 0x0D):  # a line continuation
            return b""
        return _SIMPLE.get(c, s[1:2])
    if lead == 0x25 or lead == 0x3D:  # %XX, =XX; `=` and a line end: a soft line break
        return bytes([int(s[1:], 16)]) if s[1] not in (0x0A, 0x0D) else b""
    if lead in (0x3C, 0x5D):  # CDATA markers, comments
        return b""
    text = s.decode("ascii")
    out = html.unescape(text)
    return text.encode("ascii") if out == text else out.encode("utf-8", "surrogatepass")


class EscapeView:
    """The escapes of a byte stream decoded as it arrives: always those of text (_TEXT); with `mime`, quoted-
    printable; with `markup`, CDATA markers and comments (the body's type says which)."""

    __slots__ = ("src", "out", "pending", "_vstarts", "_marks", "escaped", "_kinds", "_open")

    def __init__(self, mime: bool = False, markup: bool = False):
        self._kinds, self._open = _KINDS[(mime, markup)]
        self.src = 0  # source bytes consumed (the pending tail excluded)
        self.out = 0  # view bytes produced
        self.pending = b""
        self._vstarts: list[int] = []  # view offset where each escape's output starts (sorted)
        self._marks: list[tuple[int, int, int, int]] = []  # (view start, view end, source start, source end)
        self.escaped = False  # some escape was decoded: the view differs from the source

    def feed(self, data: bytes, final: bool = False) -> bytes:
        if self.pending:
            data = self.pending + data
            self.pending = b""
        if not data:
            return b""
        matches = _matches(self._kinds, data)
        if matches is None:  # no lead byte: the view is the data
            self.src += len(data)
            self.out += len(data)
            return data
        if not final:
            if matches and matches[-1].end() == len(data):  # may go on (`&#10` then `3;`, more indentation)
                held = matches.pop().start()
            else:
                last = matches[-1].end() if matches else 0
                m = self._open.search(data, max(last, len(data) - MAX_OPEN))
                held = m.start() if m is not None else len(data)
            if held < len(data):
                self.pending = data[held:]
                data = data[:held]
        pieces: list[bytes] = []
        pos = 0
        src, out = self.src, self.out
        for m in matches:
            s, e = m.span()
            decoded = _decode(m)
            pieces.append(data[pos:s])
            vs = out + s - pos
            pieces.append(decoded)
            ve = vs + len(decoded)
            self._vstarts.append(vs)
            ss, se = src + (s - pos), src + (e - pos)
            self._marks.append((vs, ve, ss, se))
            out, src, pos = ve, se, e
            self.escaped = True
        pieces.append(data[pos:])
        tail = len(data) - pos
        self.src = src + tail
        self.out = out + tail
        return b"".join(pieces)

    def to_source(self, v: int, end: bool = False) -> int:
        """Source offset of view offset `v`. Inside an escape's output: its source start (or end, with `end`)."""
        i = bisect_right(self._vstarts, v) - 1
        if i < 0:
            return v
        vs, ve, ss, se = self._marks[i]
        if v == vs:
            return ss
        if v < ve:
            return se if end else ss
        return se + (v - ve)

    def touches(self, start: int, end: int) -> bool:
        """An escape lies in view span [start, end) or right next to it (the boundary bytes of a token)."""
        i = bisect_right(self._vstarts, end) - 1
        return i >= 0 and self._marks[i][1] >= start

    def forget(self, v: int) -> None:
        """Marks before view offset `v` are no longer needed (that part is decided)."""
        i = bisect_right(self._vstarts, v) - 1
        if i > 64:
            del self._vstarts[:i - 1]
            del self._marks[:i - 1]

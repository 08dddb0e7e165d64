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
import re
from bisect import bisect_right

_ESCAPE = re.compile(rb"\\(?:u[0-9a-fA-F]{4}|[nrtbf\"\\/'])|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")
# A possible escape cut off by the end of the data: held until the next bytes decide it.
_OPEN = re.compile(rb"(?:\\(?:u[0-9a-fA-F]{0,3})?|&(?:#[xX]?[0-9a-fA-F]{0,6}|[A-Za-z][A-Za-z0-9]{0,31})?)\Z")
_SIMPLE = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f"}
MAX_OPEN = 40


def _decode(m: re.Match) -> bytes:
    s = m.group()
    if s[0] == 0x5C:  # backslash
        c = s[1]
        if c == 0x75:  # \uXXXX
            return chr(int(s[2:], 16)).encode("utf-8", "surrogatepass")
        return _SIMPLE.get(c, s[1:2])
    text = s.decode("ascii")
    out = html.unescape(text)
    return text.encode("ascii") if out == text else out.encode("utf-8", "surrogatepass")


class EscapeView:
    """JSON escapes and HTML character references of a byte stream, decoded as it arrives."""

    __slots__ = ("src", "out", "pending", "_vstarts", "_marks", "escaped")

    def __init__(self):
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
        if b"\\" not in data and b"&" not in data:
            self.src += len(data)
            self.out += len(data)
            return data
        matches = list(_ESCAPE.finditer(data))
        if not final:
            last = matches[-1].end() if matches else 0
            m = _OPEN.search(data, max(last, len(data) - MAX_OPEN))
            if m is not None:
                self.pending = data[m.start():]
                data = data[:m.start()]
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

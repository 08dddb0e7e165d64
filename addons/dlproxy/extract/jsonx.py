"""JSON and NDJSON bodies: one segment for the whole text, escapes decoded; paths only on demand.

The body is not parsed on the hot path. Its text, with JSON string escapes decoded in place (\\uXXXX,
\\/, \\n ...; repeated for JSON-in-a-string such as tool-call arguments), holds every key and string value,
and a token can no longer hide behind an escape or lose its boundary to one (in raw `\\nghp_…` the token
follows the letter `n`). A finding's path is computed only when asked: `locate_json_path`.
"""

from __future__ import annotations

import json

from . import quickcheck
from .base64blobs import scan_blobs
from .core import DEPTH, Ctx, Level, Loc
from .escapes import unescape_levels
from .locate import locate_spans
from .text import to_utf8

_KEEP_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def too_deep(data: bytes, max_depth: int) -> bool:
    """Bracket nesting deeper than max_depth (strings not excluded; a cheap, conservative estimate)."""
    if not quickcheck.openers(max_depth + 1).may_match(data):
        return False  # that deep needs at least max_depth + 1 opening brackets
    brackets = data.translate(None, _KEEP_BRACKETS)
    if len(brackets) < 2 * max_depth:
        return False
    for _ in range(max_depth):
        inner = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if inner == brackets:
            return False
        brackets = inner
    return b"[]" in brackets or b"{}" in brackets


def extract_json(ctx: Ctx, data: bytes, loc: Loc, lv: Level, charset: str = "", kind: str = "json") -> None:
    """kind: "json" | "ndjson" | "sse" (the label in the location; the text is treated alike)."""
    raw = to_utf8(data, charset)
    jloc = loc.child(":" + kind)
    if too_deep(raw, ctx.limits.max_json_depth):
        ctx.fail(jloc, DEPTH)  # still scanned as text below; the structure is past the limit
    view, levels = unescape_levels(raw)
    if ctx.keep_raw:  # files: the text itself under the file's own location (exact line/column) ...
        paths = JsonPaths(raw, raw, 0)
        seg = ctx.emit(loc, raw, many=lambda spans: [f":{kind}{_suffix(p)}" for p in paths.many(spans)])
        if not levels:
            if seg is not None:
                scan_blobs(ctx, seg, lv)
            return
    paths = JsonPaths(raw, view, levels)
    seg = ctx.emit(jloc, view, many=lambda spans: [_suffix(p) for p in paths.many(spans)])  # ... and decoded
    if seg is not None:
        scan_blobs(ctx, seg, lv)


def _suffix(path: str) -> str:
    return ":" + path if path else ""


# -- lazy paths ---------------------------------------------------------------------------------------

def locate_json_path(text: bytes, start: int, end: int | None = None, *, view: bytes | None = None,
                     levels: int = 0) -> str:
    """The JSON path ("$.messages[2].content[0].text") of the key or string holding view[start:end].

    `view` is the scanned text (default: `text` itself; or its unescaped form, `levels` deep). The n-th
    occurrence of the found bytes in the view is matched to the n-th occurrence among the document's keys
    and strings in document order. NDJSON records are numbered: "$[3].input". "" when unknown.
    """
    if end is None or end <= start:
        end = start + 1
    return JsonPaths(text, text if view is None else view, levels).many([(start, end)])[0]


class JsonPaths:
    """Paths of many spans of one JSON segment: the document is parsed once, on the first request, and each
    request is one pass over the view and the document's strings (see locate.locate_spans)."""

    __slots__ = ("text", "view", "levels", "_docs")

    def __init__(self, text: bytes, view: bytes, levels: int):
        self.text, self.view, self.levels = text, view, levels
        self._docs: list | None = None

    def many(self, spans) -> list[str]:
        if self._docs is None:
            self._docs = _parse_docs(self.text)
        return locate_spans(self.view, spans, self._units, lambda path, _needle: path)

    def _units(self):
        deep = self.levels > 1
        for path, item in _strings(self._docs):
            raw = item.encode("utf-8", "surrogatepass")
            if deep and b"\\" in raw:  # the view may be decoded deeper than JSON itself
                yield path, (raw, unescape_levels(raw, self.levels)[0])
            else:
                yield path, (raw,)


def _parse_docs(text: bytes) -> list:
    try:
        return [("$", json.loads(text.decode("utf-8", "replace")))]
    except RecursionError:
        return []
    except ValueError:
        docs = []
        for i, line in enumerate(text.splitlines()):
            if line.startswith(b"data:"):  # server-sent events
                line = line[5:]
            if line.strip():
                try:
                    docs.append((f"$[{i}]", json.loads(line.decode("utf-8", "replace"))))
                except (ValueError, RecursionError):
                    continue
        return docs


def _strings(docs):
    """(path, text) for every key and string value, in document order, without recursion."""
    stack = list(reversed(docs))
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            items = []
            for key, value in node.items():
                sub = f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"
                items.append((sub, key))
                items.append((sub, value))
            stack.extend(reversed(items))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{path}[{i}]", v) for i, v in enumerate(node)]))

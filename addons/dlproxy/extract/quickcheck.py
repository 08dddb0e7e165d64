"""Hyperscan prechecks that let a large body skip whole-body Python passes it cannot need.

Two passes run over every JSON/text body: the bracket-depth check and the base64-run search (translate + find;
together about as costly as what mitmproxy itself spends on the body). Both have a cheap necessary condition
that Hyperscan answers in one pass at memory speed: "is there any run of 24 base64 characters?" and "are there
at least N opening brackets?". When the answer is no, the pass would find nothing, so it is skipped; when yes,
it runs exactly as before. Without Hyperscan (it is the optional `fast` extra) every check answers "maybe".
"""

from __future__ import annotations

import threading
from functools import lru_cache

try:  # optional, as for the detector's prefilter
    import hyperscan
except ImportError:  # pragma: no cover - depends on the install
    hyperscan = None

MIN_BYTES = 64 * 1024  # below this the Python passes are already cheap


class _Precheck:
    """Expressions compiled to report whether any matches: the pass stops at the first match (scratch space per
    thread)."""

    def __init__(self, *expressions: bytes):
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=list(expressions), ids=list(range(len(expressions))),
                         elements=len(expressions),
                         flags=[hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL] * len(expressions))
        self._local = threading.local()

    def may_match(self, data: bytes, min_bytes: int = MIN_BYTES) -> bool:
        if len(data) < min_bytes:
            return True
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        try:
            self._db.scan(data, match_event_handler=lambda *_: True, scratch=scratch)
        except hyperscan.ScanTerminated:
            return True
        return False


class _Maybe:
    @staticmethod
    def may_match(data: bytes, min_bytes: int = MIN_BYTES) -> bool:
        return True


def _char_class(alphabet: bytes) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % c for c in sorted(set(alphabet))) + b"]"


def run_expression(alphabet: bytes, length: int) -> bytes:
    """The Hyperscan expression run_of looks for (for a caller that adds it to a pass of its own)."""
    return _char_class(alphabet) + b"{%d}" % length


@lru_cache(maxsize=8)
def run_of(alphabet: bytes, length: int) -> _Precheck | _Maybe:
    """May `data` hold `length` consecutive characters of `alphabet`?"""
    if hyperscan is None:
        return _Maybe()
    return _Precheck(run_expression(alphabet, length))


@lru_cache(maxsize=8)
def any_of(expressions: tuple[bytes, ...]) -> _Precheck | _Maybe:
    """May `data` match any of `expressions`?"""
    if hyperscan is None:
        return _Maybe()
    return _Precheck(*expressions)


class _Matches:
    """(expression index, end offset) of every match of a few expressions, in one pass, in order of end."""

    def __init__(self, expressions: tuple[bytes, ...]):
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=list(expressions), ids=list(range(len(expressions))),
                         elements=len(expressions), flags=[hyperscan.HS_FLAG_DOTALL] * len(expressions))
        self._local = threading.local()

    def find(self, data: bytes | memoryview) -> list[tuple[int, int]]:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        found: list[tuple[int, int]] = []
        append = found.append
        self._db.scan(data, match_event_handler=lambda i, _from, to, _flags, _ctx: append((i, to)), scratch=scratch)
        return found


@lru_cache(maxsize=4)
def matches(expressions: tuple[bytes, ...]) -> _Matches | None:
    """A finder of every match's end of `expressions` (None without Hyperscan)."""
    if hyperscan is None:
        return None
    return _Matches(expressions)


@lru_cache(maxsize=8)
def openers(count: int) -> _Precheck | _Maybe:
    """May `data` hold `count` opening JSON brackets (a necessary condition for nesting that deep)?"""
    if hyperscan is None or count > 1000:
        return _Maybe()
    return _Precheck(b"(?:[\\[{][^\\[{]*){%d}" % count)


@lru_cache(maxsize=1)
def glued_tags() -> _Precheck | _Maybe:
    """May `data` hold a tag with a word character right before and after it (`ghp_<b>ab</b>cd`)?"""
    if hyperscan is None:
        return _Maybe()
    return _Precheck(rb"[0-9A-Za-z_]<[A-Za-z/][^<>]{0,256}>[0-9A-Za-z_]")


class _RunEnds:
    """End offsets of the maximal runs of `alphabet` characters of at least `length` that hold at least one
    character outside `plain`, or a match of `also` (an expression over run characters), found in one Hyperscan
    pass: one callback per such run, none for the others.

    Each alternative is a window of `length` run characters with an outside character at position k, then
    the rest of the run and the first byte after it; Hyperscan reports each end offset once, so a run is one
    report whatever its length. A run that reaches the end of `data` has no byte after it: the caller checks
    that tail itself.
    """

    def __init__(self, alphabet: bytes, plain: bytes, length: int, also: bytes = b""):
        run = _ranges(alphabet)
        outside = _ranges(bytes(set(alphabet) - set(plain)))
        stop = b"[^" + run[1:]
        def rep(k: int) -> bytes:
            return b"" if k == 0 else run + b"{%d}" % k

        alternatives = [rep(k) + outside + rep(length - 1 - k) + run + b"*" + stop for k in range(length)]
        expressions = [b"(?:" + b"|".join(alternatives) + b")"]
        if also:
            expressions.append(b"(?:" + also + b")" + run + b"*" + stop)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
                         flags=[hyperscan.HS_FLAG_DOTALL] * len(expressions))
        self._db_count = len(expressions)
        self._local = threading.local()

    def ends(self, data: bytes | memoryview) -> list[int]:
        """Sorted, each end once (a run matching both ways is reported by both expressions)."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        found: list[int] = []
        append = found.append
        self._db.scan(data, match_event_handler=lambda _id, _from, to, _flags, _ctx: append(to - 1),
                      scratch=scratch)
        return sorted(set(found)) if self._db_count > 1 else found


def _ranges(alphabet: bytes) -> bytes:
    """A compact character class: consecutive bytes as ranges (`[0-9A-Za-z\x2b]`)."""
    chars = sorted(set(alphabet))
    parts, i = [], 0
    while i < len(chars):
        j = i
        while j + 1 < len(chars) and chars[j + 1] == chars[j] + 1:
            j += 1
        parts.append(b"\\x%02x" % chars[i] if i == j else b"\\x%02x-\\x%02x" % (chars[i], chars[j]))
        i = j + 1
    return b"[" + b"".join(parts) + b"]"


@lru_cache(maxsize=4)
def run_ends(alphabet: bytes, plain: bytes, length: int, also: bytes = b"") -> _RunEnds | None:
    """A bulk finder of long runs that are not only `plain` characters, or that hold a match of `also` (None
    without Hyperscan)."""
    if hyperscan is None:
        return None
    return _RunEnds(alphabet, plain, length, also)


def _times(char_class: bytes, k: int) -> bytes:
    return char_class + b"{%d}" % k if k else b""


class _LineBlocks:
    """(width, end) of the blocks of consecutive lines of exactly `width` `alphabet` characters, for each width in
    `widths`, that hold a line with a `marked` character followed by `min_lines` - 1 lines or more (and
    `min_chars` characters in all), in one Hyperscan pass: one report per block and width, at the end of the line
    that stops it (a shorter, longer or other line, or the end of data). Lines may be indented and end in CRLF."""

    def __init__(self, alphabet: bytes, marked: bytes, widths: range, min_chars: int, min_lines: int):
        run = _ranges(alphabet)
        stop = b"[^" + run[1:]
        plain = _ranges(bytes(set(alphabet) - set(marked)))
        mark = _ranges(marked)
        expressions = []
        for w in widths:
            full = max(min_lines, -(-min_chars // w))
            line = run + b"{%d}\\r?\\n[ \\t]*" % w
            first = b"(?:" + b"|".join(_times(plain, j) + mark + _times(run, w - 1 - j) for j in range(w)) \
                + b")\\r?\\n[ \\t]*"  # a line with a marked character
            end = b"(?:" + run + b"{1,%d}" % (w - 1) + stop + b"|" + stop[:-1] + b" \\t]|" + run \
                + b"{%d}[^\\r\\n]|" % w + run + b"{0,%d}\\z)" % w  # (a blank is the next line's indentation)
            expressions.append(b"(?:^|\\n)[ \\t]*" + first + b"(?:" + line + b"){%d,}" % (full - 1) + end)
        self.widths = list(widths)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
                         flags=[hyperscan.HS_FLAG_DOTALL] * len(expressions))
        self._local = threading.local()

    def blocks(self, data: bytes) -> list[tuple[int, int]]:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        found: list[tuple[int, int]] = []
        append, widths = found.append, self.widths
        self._db.scan(data, match_event_handler=lambda i, _from, to, _flags, _ctx: append((widths[i], to)),
                      scratch=scratch)
        return found


@lru_cache(maxsize=2)
def line_blocks(alphabet: bytes, marked: bytes, widths: range, min_chars: int, min_lines: int) -> _LineBlocks | None:
    """A finder of blocks of equal-width short lines (None without Hyperscan)."""
    if hyperscan is None:
        return None
    return _LineBlocks(alphabet, marked, widths, min_chars, min_lines)


"""The prefilter: every (keyword offset, keyword index) in a buffer, from one pass over it.

Two backends answer the same question. pyahocorasick is the reference and is always installed; Hyperscan is the
fast path (`pip install dlproxy[fast]`) and is used automatically when importable. `DLPROXY_BACKEND` or the
`backend=` argument forces one. Both report occurrences, overlapping ones included, as sorted
`(start, keyword_index)` pairs, and the detector verifies every candidate the same way, so findings are identical
(the differential tests hold them to that).

`find_literals` reports every occurrence of a keyword. `find` may skip occurrences that cannot start a token:
Hyperscan also checks each keyword's *head* (the first few characters every token must continue with, e.g.
`ghp_` + 8 alphanumerics), so text dense with false starts (`ghp_!`, `eyJword`) never reaches Python.
The stream hold-back uses `find_literals`: a token cut short by the end of a chunk has no head yet.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import ahocorasick

try:  # optional fast path
    import hyperscan
except ImportError:  # pragma: no cover - depends on the install
    hyperscan = None

BACKENDS = ("auto", "hyperscan", "pyahocorasick")


@dataclass(frozen=True)
class Keyword:
    literal: bytes  # as written in the profile (ASCII)
    case_insensitive: bool
    heads: tuple[tuple[bytes, int], ...] = ((b"", 0),)  # (fixed-width regex that must follow, its width)


class PrefilterError(ValueError):
    pass


def hyperscan_available() -> bool:
    return hyperscan is not None


def make_prefilter(keywords: Sequence[Keyword], backend: str = "auto") -> AhoCorasickPrefilter | HyperscanPrefilter:
    """Pick the backend: an explicit choice wins, then `DLPROXY_BACKEND`, then Hyperscan when installed."""
    if backend == "auto":
        backend = os.environ.get("DLPROXY_BACKEND", "auto") or "auto"
    if backend not in BACKENDS:
        raise PrefilterError(f"unknown prefilter backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "hyperscan" and hyperscan is None:
        raise PrefilterError("backend 'hyperscan' requested but the hyperscan package is not installed "
                             "(pip install 'dlproxy[fast]')")
    if backend == "hyperscan" or (backend == "auto" and hyperscan is not None):
        return HyperscanPrefilter(keywords)
    return AhoCorasickPrefilter(keywords)


class AhoCorasickPrefilter:
    """One automaton over the lower-cased keywords, walked over the lower-cased buffer.

    Lower-casing (ASCII only, so offsets are unchanged) lets case-insensitive keywords cost nothing extra;
    a hit of a case-sensitive keyword is then confirmed against the original bytes.
    """

    name = "pyahocorasick"

    def __init__(self, keywords: Sequence[Keyword]):
        self.keywords = list(keywords)
        groups: dict[str, list[tuple[int, bytes, bool]]] = {}
        for index, kw in enumerate(self.keywords):
            groups.setdefault(kw.literal.lower().decode("latin-1"), []).append(
                (index, kw.literal, kw.case_insensitive))
        self._automaton = ahocorasick.Automaton()
        for lowered, targets in groups.items():
            self._automaton.add_word(lowered, (len(lowered), tuple(targets)))
        if groups:
            self._automaton.make_automaton()
        self._empty = not groups

    def find(self, data: bytes) -> list[tuple[int, int]]:
        return self.find_literals(data)

    def find_open(self, data: bytes, tail: int, mark: bytes | None = None) -> tuple[list[tuple[int, int]], int | None]:
        """See HyperscanPrefilter.find_open; here every occurrence is reported, and `mark` is not looked for."""
        return self.find_literals(data), None

    def find_literals(self, data: bytes) -> list[tuple[int, int]]:
        if self._empty or not data:
            return []
        hits: list[tuple[int, int]] = []
        for end, (length, targets) in self._automaton.iter(data.lower().decode("latin-1")):
            start = end - length + 1
            for index, literal, case_insensitive in targets:
                if case_insensitive or data.startswith(literal, start):
                    hits.append((start, index))
        hits.sort()
        return hits


class HyperscanPrefilter:
    """The literals, and the literals with their heads, compiled into Hyperscan block-mode databases.

    Every expression has a fixed width, so the start of a match is its end minus that width (no SOM needed).
    """

    name = "hyperscan"

    def __init__(self, keywords: Sequence[Keyword]):
        self.keywords = list(keywords)
        self._local = threading.local()
        literal = [(_hs_escape(k.literal), i, len(k.literal), k.case_insensitive) for i, k in enumerate(keywords)]
        shaped = []
        for i, k in enumerate(keywords):
            for head, head_width in sorted(set(k.heads)):
                shaped.append((_hs_escape(k.literal) + head, i, len(k.literal) + head_width, k.case_insensitive))
        self._literal = _HsDatabase(literal)
        self._shaped = _HsDatabase(shaped)
        self._shaped_expressions = shaped
        self._open: dict[tuple[int, bytes | None], _HsOpenDatabase] = {}  # built at first use (streams only)
        self._open_lock = threading.Lock()

    def __getstate__(self) -> dict:  # picklable (the scan's detector cache): scratch space is per thread
        return {k: v for k, v in self.__dict__.items() if k not in ("_local", "_open", "_open_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._open = {}
        self._open_lock = threading.Lock()

    def find(self, data: bytes) -> list[tuple[int, int]]:
        return self._shaped.find(data, self._local, "shaped")

    def find_open(self, data: bytes, tail: int, mark: bytes | None = None) -> tuple[list[tuple[int, int]], int | None]:
        """A stream step's pass: `find`'s hits, plus every keyword occurrence that starts in the last `tail` +
        its length bytes (a head cut off by the end of `data` cannot be checked yet), sorted; and where the first
        match of `mark` (an extra expression) ends, -1 when there is none. One scan of one database: a stream
        scanner runs this on every chunk, so a second database (cold in cache by then) would cost as much again.
        """
        db = self._open.get((tail, mark))
        if db is None:
            with self._open_lock:
                db = self._open.get((tail, mark))
                if db is None:
                    db = self._open[(tail, mark)] = _HsOpenDatabase(self._shaped_expressions, self.keywords, tail,
                                                                    mark)
        return db.find(data)

    def find_literals(self, data: bytes) -> list[tuple[int, int]]:
        return self._literal.find(data, self._local, "literal")


class _HsDatabase:
    def __init__(self, expressions: list[tuple[bytes, int, int, bool]]):
        self._db = None
        self._keyword_of = [kw for _, kw, _, _ in expressions]
        self._width_of = [width for _, _, width, _ in expressions]
        if expressions:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(
                expressions=[expr for expr, _, _, _ in expressions],
                ids=list(range(len(expressions))),
                elements=len(expressions),
                flags=[hyperscan.HS_FLAG_CASELESS if ci else 0 for _, _, _, ci in expressions],
            )

    def __getstate__(self) -> dict:  # a compiled database pickles as Hyperscan's own serialized form
        return {**self.__dict__, "_db": None if self._db is None else hyperscan.dumpb(self._db)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._db is not None:
            self._db = hyperscan.loadb(self._db, hyperscan.HS_MODE_BLOCK)

    def find(self, data: bytes, local: threading.local, slot: str) -> list[tuple[int, int]]:
        if self._db is None or not data:
            return []
        scratch = getattr(local, slot, None)
        if scratch is None:  # scratch space is per thread: scans may run in worker threads
            scratch = hyperscan.Scratch(self._db)
            setattr(local, slot, scratch)
        hits: set[tuple[int, int]] = set()
        keyword_of, width_of = self._keyword_of, self._width_of

        def on_match(expr, _from, to, _flags, _context):
            hits.add((to - width_of[expr], keyword_of[expr]))

        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        return sorted(hits)


class _HsOpenDatabase:
    """The shaped expressions, each keyword followed by at most `tail` bytes and the end of the data, and `mark`
    (first match only), in one database."""

    def __init__(self, shaped: list[tuple[bytes, int, int, bool]], keywords: Sequence[Keyword], tail: int,
                 mark: bytes | None):
        expressions = [expr for expr, _, _, _ in shaped]
        flags = [hyperscan.HS_FLAG_CASELESS if ci else 0 for _, _, _, ci in shaped]
        self._shaped = len(shaped)
        self._keyword_of = [kw for _, kw, _, _ in shaped] + list(range(len(keywords)))
        self._width_of = [width for _, _, width, _ in shaped]
        self._keywords = list(keywords)
        self._tail = tail
        for k in keywords:
            expressions.append(_hs_escape(k.literal) + rb"[\s\S]{0,%d}\z" % tail)
            flags.append(hyperscan.HS_FLAG_CASELESS if k.case_insensitive else 0)
        self._mark = len(expressions) if mark is not None else -1
        if mark is not None:
            expressions.append(mark)
            flags.append(hyperscan.HS_FLAG_SINGLEMATCH)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
                         flags=flags)
        self._local = threading.local()

    def find(self, data: bytes) -> tuple[list[tuple[int, int]], int | None]:
        mark_end = -1 if self._mark >= 0 else None
        if not data:
            return [], mark_end
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:  # per thread, as for _HsDatabase
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        hits: set[tuple[int, int]] = set()
        tails: set[int] = set()
        ends: list[int] = []
        shaped, keyword_of, width_of, mark = self._shaped, self._keyword_of, self._width_of, self._mark

        def on_match(expr, _from, to, _flags, _context):
            if expr < shaped:
                hits.add((to - width_of[expr], keyword_of[expr]))
            elif expr == mark:
                ends.append(to)
            else:
                tails.add(keyword_of[expr])  # somewhere in the tail: found below

        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        for kw in tails:
            hits.update((start, kw) for start in self._in_tail(data, self._keywords[kw]))
        return sorted(hits), ends[0] if ends else mark_end

    def _in_tail(self, data: bytes, keyword: Keyword) -> list[int]:
        literal = keyword.literal
        at = max(0, len(data) - len(literal) - self._tail)
        text = data[at:]
        if keyword.case_insensitive:
            text, literal = text.lower(), literal.lower()
        out, i = [], text.find(literal)
        while i != -1:
            out.append(at + i)
            i = text.find(literal, i + 1)
        return out


def _hs_escape(literal: bytes) -> bytes:
    """Hyperscan takes PCRE syntax: escape every non-alphanumeric byte as \\xHH."""
    return b"".join(bytes([c]) if chr(c).isalnum() and c < 128 else b"\\x%02x" % c for c in literal)


"""The prefilter: every (keyword offset, keyword index) in a buffer, from one pass over it.

Two backends answer the same question. pyahocorasick is the reference and is always installed; Hyperscan is the
fast path (`pip install dlproxy[fast]`) and is used automatically when importable. `DLPROXY_BACKEND` or the
`backend=` argument forces one. Both report every occurrence, overlapping ones included, as sorted
`(start, keyword_index)` pairs; the differential tests hold them to identical answers.
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
    """The same literals compiled into a Hyperscan block-mode database (one scratch per thread)."""

    name = "hyperscan"

    def __init__(self, keywords: Sequence[Keyword]):
        self.keywords = list(keywords)
        self._lengths = [len(k.literal) for k in self.keywords]
        self._db = None
        if self.keywords:
            self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._db.compile(
                expressions=[_hs_escape(k.literal) for k in self.keywords],
                ids=list(range(len(self.keywords))),
                elements=len(self.keywords),
                flags=[hyperscan.HS_FLAG_CASELESS if k.case_insensitive else 0 for k in self.keywords],
            )
        self._local = threading.local()

    def _scratch(self):
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        return scratch

    def find(self, data: bytes) -> list[tuple[int, int]]:
        if self._db is None or not data:
            return []
        hits: list[tuple[int, int]] = []
        lengths = self._lengths

        def on_match(index, _from, to, _flags, _context):
            hits.append((to - lengths[index], index))

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch())
        hits.sort()
        return hits


def _hs_escape(literal: bytes) -> bytes:
    """Hyperscan takes PCRE syntax: escape every non-alphanumeric byte as \\xHH."""
    return b"".join(bytes([c]) if chr(c).isalnum() and c < 128 else b"\\x%02x" % c for c in literal)

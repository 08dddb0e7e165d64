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
    """One expression, compiled to report its first match only (scratch space per thread)."""

    def __init__(self, expression: bytes):
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=[expression], ids=[0], elements=1,
                         flags=[hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL])
        self._local = threading.local()

    def may_match(self, data: bytes) -> bool:
        if len(data) < MIN_BYTES:
            return True
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        found = []
        self._db.scan(data, match_event_handler=lambda *_: found.append(True), scratch=scratch)
        return bool(found)


class _Maybe:
    @staticmethod
    def may_match(data: bytes) -> bool:
        return True


def _char_class(alphabet: bytes) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % c for c in sorted(set(alphabet))) + b"]"


@lru_cache(maxsize=8)
def run_of(alphabet: bytes, length: int) -> _Precheck | _Maybe:
    """May `data` hold `length` consecutive characters of `alphabet`?"""
    if hyperscan is None:
        return _Maybe()
    return _Precheck(_char_class(alphabet) + b"{%d}" % length)


@lru_cache(maxsize=8)
def openers(count: int) -> _Precheck | _Maybe:
    """May `data` hold `count` opening JSON brackets (a necessary condition for nesting that deep)?"""
    if hyperscan is None or count > 1000:
        return _Maybe()
    return _Precheck(b"(?:[\\[{][^\\[{]*){%d}" % count)

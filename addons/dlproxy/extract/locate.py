"""Locating many findings inside one structured segment in one pass (a hostile body can hold thousands).

A structured segment (a JSON body, a urlencoded form) is scanned as a decoded *view*; a finding's location is
the *unit* (JSON key or string, form field) that holds it. Offsets in the view do not map to units directly
(escapes change lengths), so occurrences are matched instead: the n-th occurrence of the found bytes in the view
is the n-th occurrence among the units, in document order. One Aho-Corasick pass over the view and one over the
units answer every finding of the segment, whatever their number.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence

import ahocorasick

Unit = tuple[object, Sequence[bytes]]  # (key, texts: the unit's text, and decoded forms of it; counts take the max)

# A span can be a whole decoded blob (a base64 zip of megabytes inside a JSON string). pyahocorasick crashes the
# process on words of megabytes, and matching a finding's first bytes tells its unit just as well, so needles
# are the span's head.
MAX_NEEDLE = 256


def _automaton(needles: Iterable[bytes]) -> ahocorasick.Automaton:
    auto = ahocorasick.Automaton()
    for needle in needles:
        auto.add_word(needle.decode("latin-1"), needle)
    auto.make_automaton()
    return auto


def _occurrences(auto: ahocorasick.Automaton, text: bytes) -> dict[bytes, list[int]]:
    """End offsets of each needle's non-overlapping occurrences, leftmost first (what bytes.count counts)."""
    ends: dict[bytes, list[int]] = {}
    for end, needle in auto.iter(text.decode("latin-1")):
        found = ends.setdefault(needle, [])
        if not found or end + 1 - len(needle) >= found[-1]:
            found.append(end + 1)
    return ends


def locate_spans(view: bytes, spans: Sequence[tuple[int, int]], units: Callable[[], Iterable[Unit]],
                 label: Callable[[object, bytes], str]) -> list[str]:
    """For each (start, end) of `view`, label(key, needle) of the unit holding it ("" when none does).

    `units()` yields the document's units in order; it is called once, and stops being consumed as soon as
    every span is placed.
    """
    needles = [view[s:min(e, s + MAX_NEEDLE)] if e > s else view[s:s + 1] for s, e in spans]
    wanted_of: dict[bytes, list[tuple[int, int]]] = {}  # needle -> [(occurrence index, span index)]
    present = [n for n in dict.fromkeys(needles) if n]
    if not present:
        return [""] * len(spans)
    auto = _automaton(present)
    in_view = _occurrences(auto, view)
    for i, ((start, _), needle) in enumerate(zip(spans, needles, strict=True)):
        if needle:
            wanted = bisect.bisect_right(in_view.get(needle, ()), start)  # occurrences ending by `start`
            wanted_of.setdefault(needle, []).append((wanted, i))
    for pending in wanted_of.values():
        pending.sort(reverse=True)  # popped from the end: smallest occurrence index first
    out = [""] * len(spans)
    seen: dict[bytes, int] = dict.fromkeys(wanted_of, 0)
    left = sum(map(len, wanted_of.values()))
    for key, texts in units():
        counts: dict[bytes, int] = {}
        for text in texts:
            for needle, ends in _occurrences(auto, text).items():
                if len(ends) > counts.get(needle, 0):
                    counts[needle] = len(ends)
        for needle, count in counts.items():
            pending = wanted_of.get(needle)
            if not pending:
                continue
            seen[needle] += count
            while pending and seen[needle] > pending[-1][0]:
                out[pending.pop()[1]] = label(key, needle)
                left -= 1
        if not left:
            break
    return out

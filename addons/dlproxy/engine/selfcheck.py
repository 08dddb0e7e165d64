"""A profile checked against its own data: every enabled entry's `examples` must be found as that entry, and
none of its `counterexamples` may be, through the real detector. `dlproxy profile check` runs it, so an overlay
that changes a pattern, a prefix or a checksum is told which example it broke, at that example's FILE:LINE.
Messages never quote an example (they may be real-looking credentials): entry id and position only.
"""

from __future__ import annotations

from .detector import Detector


def check_examples(detector: Detector) -> list[str]:
    """`FILE:LINE: entries[id].examples[i]: ...` for each example not found and each counterexample found."""
    problems: list[str] = []
    for entry in detector.profile.enabled_entries:
        for key, texts, where, wanted in (
                ("examples", entry.examples, entry.example_sources, True),
                ("counterexamples", entry.counterexamples, entry.counterexample_sources, False)):
            for i, text in enumerate(texts):
                found = any(f.entry_id == entry.id for f in detector.scan(text.encode("utf-8")))
                if found == wanted:
                    continue
                at = where[i] if i < len(where) else entry.source
                what = ("is not found as this entry" if wanted
                        else "is found as this entry (a counterexample must not be)")
                problems.append(f"{at}: {entry.id}.{key}[{i}]: {what}")
    return problems

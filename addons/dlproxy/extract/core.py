"""Types shared by the extractors: limits, segments, unscannable reasons, and the per-message context.

Engine side: imports nothing from mitmproxy. A message becomes a list of Segments (bytes to scan, each
with a location) plus a list of Unscannable parts (a location and a reason from REASONS). Every decoder
draws from one byte budget per message, so memory and time stay bounded whatever the input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..engine.vocab import OVERSIZE_REASONS as _OVERSIZE
from ..engine.vocab import Reason
from .escapes import escaped_view

MiB = 1024 * 1024
log = logging.getLogger("dlproxy.extract")

# Why a part of a message could not be (fully) inspected (engine.vocab.Reason). Policy maps these to
# on_oversize / on_error.
TOO_LARGE = Reason.TOO_LARGE
BOMB = Reason.BOMB
DEPTH = Reason.DEPTH
MEMBERS = Reason.MEMBERS
ENCRYPTED = Reason.ENCRYPTED
CORRUPT_ENCODING = Reason.CORRUPT_ENCODING
UNSUPPORTED_ENCODING = Reason.UNSUPPORTED_ENCODING
TRUNCATED = Reason.TRUNCATED
MALFORMED = Reason.MALFORMED
ERROR = Reason.ERROR
REASONS = (TOO_LARGE, BOMB, DEPTH, MEMBERS, ENCRYPTED, CORRUPT_ENCODING, UNSUPPORTED_ENCODING, TRUNCATED,
           MALFORMED, ERROR)
OVERSIZE_REASONS = _OVERSIZE  # on_oversize; the rest are on_error


@dataclass(frozen=True)
class Limits:
    """Budgets for one message. Built from the profile: Limits.from_settings(settings, **overrides)."""

    max_inspect_bytes: int = 32 * MiB  # decoded bytes per message (decoder outputs + bytes scanned as is)
    max_expansion_ratio: int = 100  # a decoder may produce at most ratio x its input ...
    min_bomb_bytes: int = 1 * MiB  # ... once its output is past this floor (tiny bodies compress well)
    max_archive_depth: int = 3  # nested containers: zip, tar, multipart inside multipart
    max_archive_members: int = 10000  # members per archive, parts per multipart body
    max_base64_depth: int = 2  # base64 inside base64 inside ...
    max_json_depth: int = 64  # bracket nesting; deeper JSON is still scanned as text, but reported
    max_coding_layers: int = 4  # stacked Content-Encodings, or compressed files inside compressed files

    @classmethod
    def from_settings(cls, settings: Any, **overrides: int) -> Limits:
        """Read the profile Settings attributes that exist (getattr), then apply explicit overrides."""
        values = {}
        for name in cls.__dataclass_fields__:
            value = getattr(settings, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def expansion_cap(self, wire: int) -> int:
        """The bomb rule: how much a decoder may produce from `wire` input bytes (the ratio, never below a floor)."""
        return max(self.max_expansion_ratio * wire, self.min_bomb_bytes)


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes worth scanning (UTF-8 text as UTF-8, unknown binary raw) and where they came from.

    `location` is known when extraction runs (e.g. "body:json"). Structured segments refine it only when a
    finding needs it: `locate(start, end)` -> "body:json:$.messages[0].content", or `locate_many(spans)` for
    all findings of the segment in one pass (findings are rare, so paths are never computed for clean
    traffic; a body holding thousands must not cost thousands of passes). Neither raises; both fall back to
    `location`.
    """

    location: str
    data: bytes
    resolver: Callable[[int, int], str] | None = field(default=None, repr=False, compare=False)
    many: Callable[[list[tuple[int, int]]], list[str]] | None = field(default=None, repr=False, compare=False)

    def locate(self, start: int, end: int | None = None) -> str:
        return self.locate_many([(start, start if end is None else end)])[0]

    def locate_many(self, spans: list[tuple[int, int]]) -> list[str]:
        try:
            if self.many is not None:
                return [loc or self.location for loc in self.many(spans)]
            if self.resolver is not None:
                return [self.resolver(s, e) or self.location for s, e in spans]
        except Exception:  # a locator bug must not cost the finding
            pass
        return [self.location] * len(spans)


@dataclass(frozen=True, slots=True)
class Unscannable:
    location: str
    reason: str  # one of REASONS


@dataclass
class Extraction:
    segments: list[Segment] = field(default_factory=list)
    unscannable: list[Unscannable] = field(default_factory=list)
    decoded_bytes: int = 0

    @property
    def reasons(self) -> list[str]:
        """Distinct reasons, in first-seen order (for counting and logging)."""
        return list(dict.fromkeys(u.reason for u in self.unscannable))

    @property
    def scanned_bytes(self) -> int:
        return sum(len(s.data) for s in self.segments)


class ExtractionError(Exception):
    """A decoding step failed; `reason` is from REASONS. The message is the reason only, never content."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Level(NamedTuple):
    """How deep the current data sits: containers, base64 layers, compression layers."""

    archive: int = 0
    base64: int = 0
    layers: int = 0


class Loc:
    """A location known now (`text`) that may resolve to a finer one later (`resolve()`, computed once), e.g. a
    base64 blob inside a JSON body is "body:json:base64" now and "body:json:$.files[0].content:base64" on
    demand."""

    __slots__ = ("text", "lazy", "_resolved")

    def __init__(self, text: str, lazy: Callable[[], str] | None = None):
        self.text = text
        self.lazy = lazy
        self._resolved: str | None = None

    def child(self, suffix: str) -> Loc:
        if self.lazy is None:
            return Loc(self.text + suffix)
        return Loc(self.text + suffix, lambda: self.resolve() + suffix)

    def resolve(self) -> str:
        if self.lazy is None:
            return self.text
        if self._resolved is None:
            self._resolved = self.lazy()
        return self._resolved


Dispatch = Callable[["Ctx", bytes, Loc, Level, str, str], None]


class Ctx:
    """One message's extraction state: the output, the byte budget, and the content dispatcher."""

    __slots__ = ("limits", "out", "left", "keep_raw", "dispatch", "blob_free", "token_window")

    def __init__(self, limits: Limits, dispatch: Dispatch, keep_raw: bool = False, token_window: int | None = None):
        self.limits = limits
        self.out = Extraction()
        self.left = max(0, limits.max_inspect_bytes)
        self.keep_raw = keep_raw  # files: also keep the undecoded text so line/column stay exact
        self.dispatch = dispatch
        self.blob_free: bytes | None = None  # bytes known to hold no base64 run nor separated hex (extract_http)
        self.token_window = token_window  # the widest token looked for: escape views decode only near escapes

    # -- budget -------------------------------------------------------------------------------------
    def charge(self, n: int) -> None:
        self.left -= n
        self.out.decoded_bytes += n

    def take(self, data: bytes, loc: Loc) -> bytes:
        """Charge bytes inspected as they are; past the budget keep the prefix and report too_large."""
        if len(data) > self.left:
            data = data[:self.left]
            self.fail(loc, TOO_LARGE)
        self.charge(len(data))
        return data

    def cap(self, input_len: int) -> tuple[int, str]:
        """How many bytes a decoder of `input_len` bytes may produce, and the reason if it produces more."""
        ratio_cap = self.limits.expansion_cap(input_len)
        if ratio_cap < self.left:
            return ratio_cap, BOMB
        return self.left, TOO_LARGE

    # -- output -------------------------------------------------------------------------------------
    def emit(self, loc: Loc, data: bytes, inner: Callable[[int, int], str] | None = None,
             many: Callable[[list[tuple[int, int]]], list[str]] | None = None) -> Segment | None:
        """A segment to scan; `inner(start, end)` (or `many(spans)`, for many spans at once) gives the suffix
        a span adds to the location."""
        if not data:
            return None
        if inner is not None and many is None:
            many = lambda spans: [inner(s, e) for s, e in spans]  # noqa: E731
        if many is None and loc.lazy is None:
            seg = Segment(loc.text, data)
        elif many is None:
            resolve = loc.resolve
            seg = Segment(loc.text, data, many=lambda spans: [resolve()] * len(spans))
        else:
            resolve = loc.resolve
            seg = Segment(loc.text, data, many=lambda spans: [resolve() + x for x in many(spans)])
        self.out.segments.append(seg)
        if b"\x00" not in data[:512]:  # text: escapes no parser decoded get a decoded view of their own
            view = escaped_view(data, self.token_window)
            if view:  # (a text that is only a line continuation decodes to nothing)
                self.out.segments.append(Segment(seg.location + ":unescaped", self.take(view, loc), seg.resolver))
        return seg

    def fail(self, loc: Loc | str, reason: str) -> None:
        where = loc if isinstance(loc, str) else loc.text
        item = Unscannable(where, reason)
        if item not in self.out.unscannable[-8:]:  # the same member failing twice is one report
            self.out.unscannable.append(item)

    def content(self, data: bytes, loc: Loc, lv: Level, ctype: str = "", name: str = "") -> None:
        """Extract already-charged bytes by type/name/magic; never raises (a bug becomes reason `error`)."""
        try:
            self.dispatch(self, data, loc, lv, ctype, name)
        except Exception as exc:  # the type only: an exception's text may quote the content
            log.warning("dlproxy extractor error at %s: %s", loc.text, type(exc).__name__)
            self.fail(loc, ERROR)


def label(text: str, limit: int = 100) -> str:
    """A field or file name made safe for a location: printable, one line, bounded."""
    if text.isprintable() and len(text) <= limit:
        return text
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + ("…" if len(text) > limit else "")

"""Redaction and scrubbing: replace found secrets in what is forwarded, and keep them out of what is recorded.

Pure functions over bytes and str (no mitmproxy import). A secret is replaced only where it appears literally;
the caller re-inspects the rewritten message and blocks if anything is left (a secret hidden by an encoding we
cannot rewrite — `\\u`-escaped JSON, base64 parts, Basic auth, compressed bodies — is never "redacted" in name
only).

    redact_bytes(body, {secret: entry_id}, quoted=False) -> (new_body, {secrets replaced})
    scrub("…/ghp_x…", {secret: masked}) -> "…/ghp_…abcd"
    safe_path("/p?token=abc&x=1", masks) -> "/p?token=…&x=…"
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

import ahocorasick

MARK = "[REDACTED:{}]"
FORM_TYPES = ("application/x-www-form-urlencoded",)


def replacement(entry_id: str, quoted: bool = False) -> bytes:
    """`[REDACTED:<entry id>]`, percent-encoded where the text is a URL query or a urlencoded form."""
    text = MARK.format(entry_id)
    return (quote(text, safe="") if quoted else text).encode("ascii")


def redact_bytes(data: bytes, secrets: Mapping[str, str], quoted: bool = False) -> tuple[bytes, set[str]]:
    """Replace every literal occurrence of each secret (`{secret: entry_id}`); where two overlap, the one
    starting first, then the longer. One pass over `data` however many secrets there are."""
    return Redactor(secrets)(data, quoted)


class Redactor:
    """`redact_bytes` for many buffers (headers, path, body) with the same secrets: the matcher is built once."""

    __slots__ = ("_secrets", "_raw", "_needles")

    def __init__(self, secrets: Mapping[str, str]):
        self._secrets = dict(secrets)
        self._raw = {secret.encode("latin-1", "replace"): secret for secret in secrets if secret}
        self._needles = _Needles(list(self._raw))

    def __call__(self, data: bytes, quoted: bool = False) -> tuple[bytes, set[str]]:
        spans = self._needles.spans(data)
        if not spans:
            return data, set()
        pieces: list[bytes] = []
        done: set[str] = set()
        pos = 0
        for start, end, needle in spans:
            secret = self._raw[needle]
            pieces.append(data[pos:start])
            pieces.append(replacement(self._secrets[secret], quoted))
            done.add(secret)
            pos = end
        pieces.append(data[pos:])
        return b"".join(pieces), done


class _Needles:
    """Non-overlapping occurrences of a set of byte strings: leftmost first, then longest. A few needles are
    looked for with bytes.find (C); many with one Aho-Corasick pass."""

    __slots__ = ("needles", "_auto")

    def __init__(self, needles: list[bytes]):
        self.needles = needles
        self._auto = None
        if len(needles) > 4:
            self._auto = ahocorasick.Automaton()
            for needle in needles:
                self._auto.add_word(needle.decode("latin-1"), needle)
            self._auto.make_automaton()

    def spans(self, data: bytes) -> list[tuple[int, int, bytes]]:
        if not self.needles or not data:
            return []
        if self._auto is None:
            present = [n for n in self.needles if n in data]
            if not present:
                return []
            found = []
            for needle in present:
                pos = data.find(needle)
                while pos != -1:
                    found.append((pos, -len(needle), needle))
                    pos = data.find(needle, pos + 1)
            found.sort()
        else:
            found = sorted((end + 1 - len(n), -len(n), n) for end, n in self._auto.iter(data.decode("latin-1")))
        out, pos = [], 0
        for start, neg_len, needle in found:
            if start >= pos:
                out.append((start, start - neg_len, needle))
                pos = start - neg_len
        return out


def redact_str(text: str, secrets: Mapping[str, str], quoted: bool = False) -> tuple[str, set[str]]:
    """redact_bytes over a str that mitmproxy decoded as UTF-8 with surrogateescape (a request path): encoded
    back the same way, so any path round-trips, whatever its characters or invalid bytes."""
    out, done = redact_bytes(text.encode("utf-8", "surrogateescape"), secrets, quoted)
    return out.decode("utf-8", "surrogateescape"), done


def is_form(content_type: str | None) -> bool:
    ct = (content_type or "").lower()
    return any(t in ct for t in FORM_TYPES)


def scrub(text: str, masks: Mapping[str, str]) -> str:
    """`text` with every secret replaced by its masked form (`{secret: masked}`), for log lines and incidents."""
    return Scrubber(masks)(text) if masks else text


class Scrubber:
    """`scrub` for many texts with the same secrets: the matcher is built once, each text is one pass."""

    __slots__ = ("_masks", "_needles")

    def __init__(self, masks: Mapping[str, str]):
        self._masks = {s.encode("utf-8", "surrogatepass"): m for s, m in masks.items() if s}
        self._needles = _Needles(list(self._masks))

    def __call__(self, text: str) -> str:
        if not text or not self._masks:
            return text
        data = text.encode("utf-8", "surrogatepass")
        spans = self._needles.spans(data)
        if not spans:
            return text
        pieces, pos = [], 0
        for start, end, needle in spans:
            pieces.append(data[pos:start])
            pieces.append(self._masks[needle].encode("utf-8"))
            pos = end
        pieces.append(data[pos:])
        return b"".join(pieces).decode("utf-8", "surrogatepass")


def mask_found(text: str, detector) -> str:
    """`text` with every credential the detector finds in it replaced by its masked form (`text` itself, the same
    object, when there is none). For text built from traffic whose secrets are not known in advance: log records,
    locations made of decoded names."""
    if not text or detector is None:
        return text
    data = text.encode("utf-8", "surrogateescape")
    findings = detector.scan(data)
    if not findings:
        return text
    pieces, pos = [], 0
    for f in findings:
        pieces += (data[pos:f.start], f.masked.encode("utf-8"))
        pos = f.end
    pieces.append(data[pos:])
    return b"".join(pieces).decode("utf-8", "surrogateescape")


def safe_path(path: str, masks: Mapping[str, str] | None = None, limit: int = 512) -> str:
    """A request path fit for a log line or an incident: query values masked as `…`, found secrets masked,
    control characters dropped, length bounded."""
    base, sep, query = path.partition("?")
    if sep:
        keys = []
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            keys.append(f"{key}=…" if eq and value else key)
        base = f"{base}?{'&'.join(keys)}"
    if masks:
        base = scrub(base, masks)
    base = "".join(c for c in base if c.isprintable())
    return base if len(base) <= limit else base[:limit] + "…"

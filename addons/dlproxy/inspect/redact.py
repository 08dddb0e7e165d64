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

MARK = "[REDACTED:{}]"
FORM_TYPES = ("application/x-www-form-urlencoded",)


def replacement(entry_id: str, quoted: bool = False) -> bytes:
    """`[REDACTED:<entry id>]`, percent-encoded where the text is a URL query or a urlencoded form."""
    text = MARK.format(entry_id)
    return (quote(text, safe="") if quoted else text).encode("ascii")


def redact_bytes(data: bytes, secrets: Mapping[str, str], quoted: bool = False) -> tuple[bytes, set[str]]:
    """Replace every literal occurrence of each secret (`{secret: entry_id}`); longest secrets first."""
    done: set[str] = set()
    for secret in sorted(secrets, key=len, reverse=True):
        raw = secret.encode("latin-1", "replace")
        if raw and raw in data:
            data = data.replace(raw, replacement(secrets[secret], quoted))
            done.add(secret)
    return data, done


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
    for secret in sorted(masks, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, masks[secret])
    return text


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

"""What the engine reports: a Finding never holds the secret itself, only where it is and safe forms of it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MASK_TAIL = 4
MIN_LEN_FOR_TAIL = 16  # shorter secrets show no tail at all


def fingerprint(secret: str | bytes) -> str:
    """`sha256:` + hex digest: lets incidents be correlated without revealing the secret."""
    raw = secret.encode("latin-1", "replace") if isinstance(secret, str) else secret
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def mask(secret: str, prefix: str = "") -> str:
    """Prefix + `…` + last 4 characters (docs/contracts.md). The prefix is the public, literal vendor prefix.

    The tail shows only while at least 16 characters and half of the secret stay hidden, and a prefix that is
    not actually a prefix of the secret (or is half of it) is ignored, so the masked form never gives much away.
    """
    if not prefix or not secret.startswith(prefix) or len(prefix) >= len(secret) // 2:
        prefix = ""
    hidden_with_tail = len(secret) - len(prefix) - MASK_TAIL
    tail = secret[-MASK_TAIL:] if hidden_with_tail >= max(MIN_LEN_FOR_TAIL, len(secret) // 2) else ""
    return f"{prefix}…{tail}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One validated credential in one scanned buffer. `start`/`end` index that buffer (bytes = latin-1 chars)."""

    entry_id: str
    name: str
    severity: str
    start: int
    end: int
    validated: str  # "checksum" | "structure"
    masked: str
    fingerprint: str
    location: str = ""

    def at(self, location: str, shift: int = 0) -> Finding:
        """The same finding re-homed into a location (and offset) of a larger message."""
        return Finding(self.entry_id, self.name, self.severity, self.start + shift, self.end + shift,
                       self.validated, self.masked, self.fingerprint, location)

    def to_dict(self) -> dict:
        return {"entry": self.entry_id, "name": self.name, "severity": self.severity,
                "location": self.location, "masked": self.masked, "fingerprint": self.fingerprint,
                "validated": self.validated}

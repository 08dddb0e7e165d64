"""Sealed evidence: the secrets behind an incident, with a little context, encrypted to age X25519 recipients.

A responder confirms a true positive by decrypting the incident's `evidence` field with the standard tool
(`age -d -i key.txt`) or any age implementation; nobody else, and no log, ever sees the secret in clear. The
plaintext is JSON: `{"incident_id", "items": [{"entry", "fingerprint", "location", "secret", "context"}]}`,
where `context` is the decoded text around the secret (up to `settings.evidence.context` characters each side).
"""

from __future__ import annotations

import functools
import json

import pyrage


@functools.lru_cache(maxsize=16)
def _recipients(recipients: tuple[str, ...]) -> list:
    return [pyrage.x25519.Recipient.from_str(r) for r in recipients]


def seal(recipients: tuple[str, ...], incident_id: str, items: list[dict]) -> str:
    """Armored age ciphertext (`-----BEGIN AGE ENCRYPTED FILE-----` …) of the evidence JSON."""
    plaintext = json.dumps({"incident_id": incident_id, "items": items}, ensure_ascii=False).encode("utf-8")
    return pyrage.encrypt(plaintext, _recipients(tuple(recipients)), armored=True).decode("ascii")

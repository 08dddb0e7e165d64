"""Boundaries: a strong checksum is its own evidence; an escape sequence ends a word; precision holds.

Checksummed entries of fixed extent are found whatever is glued to them (a protobuf length byte, the `n` of a
`\\n` nobody unescaped). Shape-only entries still need a boundary, but an escape sequence right before the token
counts as one. The precision half: 0 checksum findings on a benign corpus (installed Python sources) and on
random candidates of every glued-to entry, glued to random token characters.
"""

from __future__ import annotations

import random
import string
import sys
from pathlib import Path

import pytest
import yaml

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from generators import GENERATORS

ESCAPES = ["\\n", "\\t", "\\r", "\\/", "\\\\", '\\"', "%0A", "%0a", "%20", "\\u000a", "\\x0a"]
SHAPE_ONLY = ["aws-access-key-id", "openai-project-key", "openai-legacy-key", "anthropic-api-key", "slack-bot-token",
              "jwt", "google-api-key", "stripe-secret-key"]
BENIGN_BYTES = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_profiles([builtin_profile_path()]))


@pytest.fixture(scope="module")
def examples() -> dict[str, str]:
    doc = yaml.safe_load(builtin_profile_path().read_text())
    return {e["id"]: e["examples"][0] for e in doc["entries"]}


def _ids(detector, text: str) -> list[str]:
    return [f.entry_id for f in detector.scan(text.encode("latin-1"))]


@pytest.mark.parametrize("entry_id", SHAPE_ONLY)
@pytest.mark.parametrize("escape", ESCAPES)
def test_an_escape_sequence_before_a_shape_only_token_is_a_boundary(detector, examples, entry_id, escape):
    token = examples[entry_id]
    assert _ids(detector, '{"text":"line1' + escape + token + '"}') == [entry_id]


@pytest.mark.parametrize("entry_id", SHAPE_ONLY)
@pytest.mark.parametrize("glue", ["x", "n", "7", "Z"])
def test_a_letter_glued_to_a_shape_only_token_is_not_a_boundary(detector, examples, entry_id, glue):
    assert _ids(detector, "line " + glue + examples[entry_id] + " end") == []


@pytest.mark.parametrize("glue", [b"\x28", b"5", b"X", b"J", b"\\n"])
@pytest.mark.parametrize("entry_id", ["github-classic-pat", "cloudflare-user-api-token", "gitlab-routable-token",
                                      "azure-storage-account-key", "npm-access-token", "bip32-extended-private-key"])
def test_a_checksummed_token_needs_no_boundary(detector, entry_id, glue):
    token = GENERATORS[entry_id](random.Random(f"boundary:{entry_id}")).encode()
    data = b"\x0a" + glue + token + b"J\x0anext"
    [found] = detector.scan(data)
    assert (found.entry_id, found.start, found.end) == (entry_id, 1 + len(glue), 1 + len(glue) + len(token))


def _glue_ok_entries(detector) -> list[str]:
    """Compact checksummed tokens (armored key blocks checksum only part of their body: not mutated here)."""
    return sorted({t.entry.id for ts in detector._targets for t in ts if t.glue_ok and t.max_len <= 300}
                  & set(GENERATORS))


def test_glued_candidates_with_a_wrong_checksum_are_never_findings(detector):
    """Precision of the no-boundary rule: 150 candidates per entry, one character changed, glued both sides."""
    rng = random.Random(20261207)
    alnum = string.ascii_letters + string.digits
    entries = _glue_ok_entries(detector)
    assert len(entries) >= 30
    candidates = 0
    for entry_id in entries:
        chunks = []
        for _ in range(150):
            token = GENERATORS[entry_id](rng)
            i = rng.randrange(len(token) // 2, len(token))
            while not token[i].isalnum():
                i -= 1
            token = token[:i] + rng.choice(alnum.replace(token[i], "")) + token[i + 1:]
            chunks.append("".join(rng.choices(alnum, k=3)) + token + "".join(rng.choices(alnum, k=3)))
            candidates += 1
        found = [f for f in detector.scan("".join(chunks).encode()) if f.validated == "checksum"]
        assert found == [], entry_id
    assert candidates >= 4500


def _benign_corpus() -> list[bytes]:
    """Installed Python sources (the test environment's own site-packages), up to BENIGN_BYTES, in path order."""
    roots = sorted({Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()})
    out, size = [], 0
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            data = path.read_bytes()
            out.append(data)
            size += len(data)
            if size >= BENIGN_BYTES:
                return out
    return out


def test_benign_corpus_has_no_checksum_findings(detector):
    corpus = _benign_corpus()
    assert sum(map(len, corpus)) >= 10 * 1024 * 1024  # a corpus worth the name
    findings = [f for data in corpus for f in detector.scan(data)]
    assert [f for f in findings if f.validated == "checksum"] == []

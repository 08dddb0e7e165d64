"""The built-in profile tested from its own data: every entry's examples and counterexamples, through the real
prefilter and engine, under every available backend (pyahocorasick always, Hyperscan when importable).

This is the guard of the whole profile (Tier A included): adding a vendor is one YAML block, and this file
checks it without being edited.
"""

from __future__ import annotations

import collections
import random
import re
import string
from functools import cache

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlproxy.engine import validators
from dlproxy.engine.detector import Detector
from dlproxy.engine.prefilter import hyperscan_available
from dlproxy.engine.profile import Entry, builtin_profile_path, load_profiles

PROFILE = load_profiles([builtin_profile_path()])
ENTRIES = PROFILE.enabled_entries
BACKENDS = ["pyahocorasick"] + (["hyperscan"] if hyperscan_available() else [])
MIN_ENTRIES = 80

TIER_A_START = "# ---- Tier A:"
TIER_A_END = "# ---- end of Tier A"
TIER_BC_START = "# ---- Tier B and C:"
TIER_BC_END = "# ---- end of Tier B and C"


@cache
def detector(backend: str) -> Detector:
    return Detector(PROFILE, backend=backend)


def _section_ids(start: str, end: str) -> list[str]:
    text = builtin_profile_path().read_text(encoding="utf-8")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    last = next(i for i, line in enumerate(lines) if line.startswith(end))
    return [m.group(1) for line in lines[first:last] if (m := re.match(r"^  - id:\s*(\S+)", line))]


def expected_span(entry: Entry, text: str) -> tuple[int, int]:
    """Where the engine must report `entry` in `text` (an example): the whole token, or its `secret` group."""
    best = None
    for prefix in entry.prefixes:
        literal = re.escape(prefix)
        if entry.case_insensitive:
            literal = f"(?i:{literal})"
        rx = re.compile(f"(?:{entry.before or ''})(?:{literal})(?:{entry.pattern})", re.ASCII)
        m = rx.search(text)
        if m and (best is None or m.start() < best.start()):
            best = m
    assert best is not None, f"{entry.id}: an example does not match its own pattern"
    return best.span("secret") if "secret" in best.re.groupindex else best.span()


CONTEXTS = {
    "bare": ("", ""),
    "json-string": ('{"token": "', '", "n": 1}'),
    "env-line": ("X=", "\n"),
    "single-quotes": ("key = '", "';"),
    "url-query": ("GET /v1/x?q=", "&y=1 HTTP/1.1\r\n"),
    "spaces-newlines": ("\n  ", "  \n"),
    "bearer-header": ("Authorization: Bearer ", "\r\n"),
}

EXAMPLES = [pytest.param(e, ex, id=f"{e.id}[{i}]") for e in ENTRIES for i, ex in enumerate(e.examples)]
COUNTEREXAMPLES = [pytest.param(e, cx, id=f"{e.id}[{i}]") for e in ENTRIES for i, cx in enumerate(e.counterexamples)]


# --- the profile as a whole -----------------------------------------------------------------------------------


def test_profile_has_enough_entries():
    assert len(ENTRIES) >= MIN_ENTRIES, f"only {len(ENTRIES)} enabled entries"


def test_ids_are_unique_in_the_file():
    doc = yaml.safe_load(builtin_profile_path().read_text(encoding="utf-8"))
    ids = [e["id"] for e in doc["entries"]]
    assert len(ids) == len(set(ids)), sorted(i for i, n in collections.Counter(ids).items() if n > 1)


def test_every_entry_has_examples():
    missing = [e.id for e in ENTRIES if not e.examples]
    assert not missing, missing


def test_tier_a_entries_are_real_checksums():
    tier_a = _section_ids(TIER_A_START, TIER_A_END)
    assert tier_a, "no Tier-A entries found between the markers"
    by_id = {e.id: e for e in PROFILE.entries}
    wrong = {}
    for entry_id in tier_a:
        entry = by_id[entry_id]
        validator = validators.get(entry.checksum) if entry.checksum else None
        if validator is None or validator.kind != "checksum":
            wrong[entry_id] = validator.kind if validator else None
    assert not wrong, f"Tier-A entries without a checksum validator: {wrong}"


def test_tier_b_and_c_validators_are_structural():
    tier_bc = _section_ids(TIER_BC_START, TIER_BC_END)
    assert tier_bc
    by_id = {e.id: e for e in PROFILE.entries}
    for entry_id in tier_bc:
        entry = by_id[entry_id]
        if entry.checksum:
            assert validators.get(entry.checksum).kind == "structure", entry_id


def test_every_prefix_is_at_least_three_characters():
    short = [(e.id, p) for e in PROFILE.entries for p in e.prefixes if len(p) < 3]
    assert not short, short


# --- each example, in each context, under each backend ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("entry", "example"), EXAMPLES)
def test_example_is_found_as_its_entry_in_every_context(backend, entry, example):
    det = detector(backend)
    start, end = expected_span(entry, example)
    for name, (before, after) in CONTEXTS.items():
        text = before + example + after
        stats: collections.Counter = collections.Counter()
        findings = det.scan(text.encode("latin-1"), stats=stats)
        ours = [f for f in findings if f.entry_id == entry.id]
        assert len(ours) == 1, (name, [(f.entry_id, f.start, f.end) for f in findings], dict(stats))
        f = ours[0]
        assert (f.start, f.end) == (start + len(before), end + len(before)), name
        assert f.validated == ("structure" if not entry.checksum else validators.get(entry.checksum).kind)
        others = [f for f in findings if f.entry_id != entry.id and f.start < end + len(before)
                  and f.end > start + len(before)]
        assert not others, (name, [(o.entry_id, o.start, o.end) for o in others])
        claimed = sorted(k[0] for k, n in stats.items() if k[1] == "validated" and k[0] != entry.id and n)
        assert not claimed, (name, f"other entries also validated this text: {claimed}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("entry", "counterexample"), COUNTEREXAMPLES)
def test_counterexample_is_not_found_as_its_entry(backend, entry, counterexample):
    det = detector(backend)
    for name, (before, after) in CONTEXTS.items():
        findings = det.scan((before + counterexample + after).encode("latin-1"))
        assert not [f for f in findings if f.entry_id == entry.id], name


# --- the backends agree ------------------------------------------------------------------------------------------


def _all_samples() -> list[str]:
    return [s for e in ENTRIES for s in (*e.examples, *e.counterexamples)]


def _answers(backend: str, data: bytes) -> list[tuple]:
    return [(f.entry_id, f.start, f.end, f.validated, f.fingerprint) for f in detector(backend).scan(data)]


@pytest.mark.skipif(len(BACKENDS) < 2, reason="hyperscan is not installed")
def test_backends_agree_on_the_corpus_of_all_examples_and_counterexamples():
    corpus = "\n".join(_all_samples()).encode("latin-1")
    a, b = _answers("pyahocorasick", corpus), _answers("hyperscan", corpus)
    assert a == b
    assert {f[0] for f in a} >= {e.id for e in ENTRIES}  # every entry shows up in the corpus


@pytest.mark.skipif(len(BACKENDS) < 2, reason="hyperscan is not installed")
def test_backends_agree_on_the_corpus_in_contexts():
    samples = _all_samples()
    rnd = random.Random(7)
    parts = []
    for s in samples:
        before, after = rnd.choice(list(CONTEXTS.values()))
        parts.append(before + s + after)
    corpus = "".join(parts).encode("latin-1")
    assert _answers("pyahocorasick", corpus) == _answers("hyperscan", corpus)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="hyperscan is not installed")
def test_backends_agree_on_a_random_clean_corpus():
    rnd = random.Random(20240601)
    alphabet = string.ascii_letters + string.digits + string.punctuation + " \n\t"
    corpus = "".join(rnd.choice(alphabet) for _ in range(400_000)).encode()
    a, b = _answers("pyahocorasick", corpus), _answers("hyperscan", corpus)
    assert a == b
    assert not [f for f in a if f[3] == "checksum"]


# --- properties -----------------------------------------------------------------------------------------------------

ALL_EXAMPLES = [(e, ex) for e in ENTRIES for ex in e.examples]
NOISE = st.text(alphabet=st.sampled_from(string.printable + '{}[]":,\\'), max_size=300)
# Characters that are a token character for no entry: each planted example is fenced by one of them.
SEPARATORS = st.sampled_from(["\n", " ", "\t", '"', ",", ";", "\r\n", "  "])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), backend=st.sampled_from(BACKENDS))
def test_planted_examples_are_found_at_their_offsets(data, backend):
    planted = data.draw(st.lists(st.sampled_from(ALL_EXAMPLES), min_size=1, max_size=4), label="planted")
    text = data.draw(NOISE, label="noise")
    expected = []
    for entry, example in planted:
        sep1, sep2 = data.draw(SEPARATORS), data.draw(SEPARATORS)
        start, end = expected_span(entry, example)
        offset = len(text) + len(sep1)
        expected.append((entry.id, offset + start, offset + end))
        text += sep1 + example + sep2 + data.draw(NOISE, label="noise")
    found = {(f.entry_id, f.start, f.end) for f in detector(backend).scan(text.encode("latin-1"))}
    missing = [x for x in expected if x not in found]
    assert not missing, missing


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(string.printable + '{}[]":,\\'), max_size=2000),
       backend=st.sampled_from(BACKENDS))
def test_random_text_has_no_checksum_findings(text, backend):
    findings = detector(backend).scan(text.encode("latin-1"))
    assert not [f for f in findings if f.validated == "checksum"]

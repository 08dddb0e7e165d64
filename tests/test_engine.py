"""The Detector: shape, boundaries, mid-token keywords, keyword entries, overlaps, stats, stream hold-back."""

from __future__ import annotations

import random
import re
import textwrap
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dlproxy.engine.detector import Detector
from dlproxy.engine.prefilter import hyperscan_available
from dlproxy.engine.profile import load_profiles

BACKENDS = ["pyahocorasick"] + (["hyperscan"] if hyperscan_available() else [])

PROFILE = """\
profile: engine-test
entries:
  - id: thing-token
    name: Thing Token
    prefixes: ["thg_", "thx_"]
    pattern: "[A-Za-z0-9]{20}"
  - id: mid-token
    name: Mid Keyword
    prefixes: ["MIDKEY"]
    before: "mk-[a-z0-9]{4,10}"
    pattern: "[a-z0-9]{6}"
    boundary: "A-Za-z0-9_-"
  - id: keyword-secret
    name: Keyword Secret
    prefixes: ["my_secret_key"]
    case_insensitive: true
    pattern: "[\\"']?\\\\s{0,3}[:=]\\\\s{0,3}[\\"']?(?P<secret>[A-Za-z0-9/+]{16})"
    boundary: "A-Za-z0-9/+"
  - id: long-thing
    name: Long Thing
    prefixes: ["thg_"]
    pattern: "[A-Za-z0-9]{20}_[a-z]{4}"
    boundary: "A-Za-z0-9_"
  - id: disabled-one
    name: Disabled
    prefixes: ["dis_"]
    pattern: "[a-z]{5}"
    enabled: false
"""

THG = "thg_" + "Ab3" * 6 + "Zz"  # 4 + 20


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "engine.yaml"
    path.write_text(PROFILE)
    return load_profiles([path])


@pytest.fixture(params=BACKENDS)
def detector(request, profile):
    return Detector(profile, backend=request.param)


def spans(detector, data):
    return [(f.entry_id, f.start, f.end) for f in detector.scan(data.encode() if isinstance(data, str) else data)]


def test_finds_token_with_offsets_in_contexts(detector):
    for left, right in [("", ""), ('{"k": "', '"}'), ("X=", "\n"), ("'", "'"), ("<a>", "</a>"), ("?t=", "&x=1"),
                        ("https://u:", "@host/")]:
        data = f"{left}{THG}{right}"
        assert spans(detector, data) == [("thing-token", len(left), len(left) + len(THG))], data


def test_token_glued_to_token_characters_is_not_a_token(detector):
    assert spans(detector, "x" + THG) == []
    assert spans(detector, THG + "Q") == []
    assert spans(detector, "9" + THG + "9") == []
    assert spans(detector, "-" + THG + ".") == [("thing-token", 1, 1 + len(THG))]


def test_wrong_shape_is_not_reported_and_is_counted(detector):
    stats = Counter()
    assert detector.scan(b"thg_short thg_!!!!", stats) == []
    if detector.backend == "pyahocorasick":
        assert stats[("thing-token", "shape_failed")] == 2
    else:  # Hyperscan checks each keyword's head itself: these false starts never reach Python
        assert stats[("thing-token", "shape_failed")] == 0
    stats.clear()
    assert detector.scan(b"thg_Ab3Ab3Ab3Ab3Ab3Ab3Z!", stats) == []  # head fits, the full shape does not
    assert stats[("thing-token", "shape_failed")] >= 1


def test_mid_token_keyword_finds_the_whole_token(detector):
    token = "mk-abc123MIDKEYz9z9z9"
    assert spans(detector, f"key: {token}.") == [("mid-token", 5, 5 + len(token))]
    assert spans(detector, f"key: x{token}") == []          # run longer than the token: not a token
    assert spans(detector, f"key: {token}x") == []


def test_keyword_entry_reports_only_the_secret_group_case_insensitively(detector):
    data = "MY_SECRET_KEY = 'abcdEFGH1234/+zz'\n"
    ((entry, start, end),) = spans(detector, data)
    assert entry == "keyword-secret" and data[start:end] == "abcdEFGH1234/+zz"
    assert spans(detector, "my_Secret_Key:abcdEFGH1234/+zz") == [("keyword-secret", 14, 30)]


def test_overlapping_matches_keep_the_longer(detector):
    token = THG + "_abcd"
    assert spans(detector, f" {token} ") == [("long-thing", 1, 1 + len(token))]


def test_disabled_entries_are_not_scanned(detector):
    assert spans(detector, "dis_abcde") == []


def test_finding_never_holds_the_secret(detector):
    (finding,) = detector.scan(f" {THG} ".encode())
    assert THG not in repr(finding) and THG not in str(finding.to_dict())
    assert finding.masked == "thg_…b3Zz" and finding.fingerprint.startswith("sha256:")
    assert THG[4:] not in finding.masked


def test_undecided_from_holds_open_tokens_but_not_heads_of_a_leading_keyword(detector):
    # a proper head of a keyword that starts its token is public: released ("th" of "thg_", "MY_SECR")
    assert detector.undecided_from(b"hello th") == 8
    assert detector.undecided_from(b"hello MY_SECR") == 13  # case-insensitive keyword
    assert detector.undecided_from(b"hello thg_") == 6  # the whole keyword: its token may follow
    assert detector.undecided_from(b"hello thg_Ab3") == 6
    assert detector.undecided_from(b"hello thg_Ab3 done") == 18
    assert detector.undecided_from(b"hello my_secret_key") == 6
    assert detector.undecided_from(b"plain text only") == 15
    assert detector.undecided_from(f"x {THG}".encode()) == 2  # could still grow into a longer token
    assert detector.undecided_from(f"x {THG}!".encode()) == len(THG) + 3
    # mid-token keyword: the characters before it are secret, so its heads still hold the run before them
    assert detector.undecided_from(b"abc mk-abc123MID") == 4
    assert detector.undecided_from(b"abc mk-abc123MIDKEY") == 4
    assert detector.undecided_from(b"abc mk-ab") == 4  # an open run with the entry's literal lead
    assert detector.undecided_from(b"abc xmk-abc123MID") == 17  # the run before "MID" cannot be `before`
    assert detector.undecided_from(b"abc MK-abc1MID") == 14  # nor can it with the lead in the wrong case
    # "mk-abc1mid" may still grow into "mk-abc1midMIDKEY…": a run with the literal lead is held whatever ends it,
    # so the checks on the keyword head itself only show for an entry without a lead (see the next test)
    assert detector.undecided_from(b"abc mk-abc1mid") == 4


def test_a_keyword_whose_head_fits_no_token_is_decided_one_cut_off_by_the_end_is_not(detector):
    # "thg_" wants 20 alphanumerics: once 16 characters follow and one is not, no token starts there, though "_"
    # could be part of a long-thing token (the Aho-Corasick backend has no heads: it holds such a keyword)
    assert detector.undecided_from(b"x thg_Ab3_" + b"a" * 14) == (2 if detector.backend == "pyahocorasick" else 24)
    assert detector.undecided_from(b"x thg_Ab3" + b"a" * 13) == 2  # the head is still arriving
    assert detector.undecided_from(b"x thg_Ab3" + b"a" * 13, since=5) == 2  # the keyword is not wholly before 5


@pytest.mark.parametrize("seed", range(30))
def test_scan_open_is_scan_and_undecided_from_in_one_pass(detector, seed):
    rng = random.Random(seed)
    words = [b"thg_", b"Ab3", b"Zz", b" ", b"!", b"mk-", b"abc1", b"MID", b"MIDKEY", b"my_secret_key", b"=",
             b"0123456789abcdef", b"\\n", THG.encode()]
    data = b"".join(rng.choice(words) for _ in range(rng.randrange(1, 60)))
    since = rng.randrange(len(data) + 1)
    findings, held, mark_end = detector.scan_open(data, since, mark=rb"[0-9a-f]{16}")
    assert findings == detector.scan(data) and held == detector.undecided_from(data, since)
    if detector.backend == "hyperscan":
        first = re.search(rb"[0-9a-f]{16}", data)
        assert mark_end == (first.end() if first else -1)
    else:
        assert mark_end is None


def test_prepare_streams_builds_the_stream_database_before_the_first_chunk(profile):
    if not hyperscan_available():
        pytest.skip("the stream database is Hyperscan's")
    detector = Detector(profile, backend="hyperscan")
    assert detector.prefilter._open == {}
    detector.prepare_streams()
    [db] = detector.prefilter._open.values()
    detector.scan_open(b"x thg_Ab3", 0)
    assert list(detector.prefilter._open.values()) == [db]  # the step used it, nothing compiled again


def test_prepare_streams_builds_a_database_per_mark_too(profile):
    if not hyperscan_available():
        pytest.skip("the stream database is Hyperscan's")
    detector = Detector(profile, backend="hyperscan")
    detector.prepare_streams(rb"[0-9a-f]{16}")
    built = dict(detector.prefilter._open)
    assert len(built) == 2
    assert detector.scan_open(b"x 0123456789abcdef!", 0, mark=rb"[0-9a-f]{16}")[2] == 18
    detector.scan_open(b"x thg_Ab3", 0)
    assert detector.prefilter._open == built  # both steps used what was built


BARE_MID_PROFILE = """\
profile: engine-test-bare-mid
entries:
  - id: bare-mid-token
    name: Mid Keyword Without Lead
    prefixes: ["MIDKEY"]
    before: "[a-z0-9]{3,6}"
    pattern: "[a-z0-9]{6}"
    boundary: "A-Za-z0-9_-"
"""


@pytest.fixture(params=BACKENDS)
def bare_mid(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("p") / "bare-mid.yaml"
    path.write_text(BARE_MID_PROFILE)
    return Detector(load_profiles([path]), backend=request.param)


def test_a_mid_token_keyword_head_holds_the_run_before_it_only_in_its_case_and_after_a_fitting_run(bare_mid):
    """Without a literal lead, a run shorter than OPEN_RUN_MIN flows on (an ordinary word) unless a proper head
    of the mid-token keyword ends the buffer: then the run may be the token's `before` and is held. Only a head
    in the keyword's case counts, and only after a run that can be `before`: 3 to 6 token characters with a
    non-token character (or nothing) to their left."""
    assert bare_mid.undecided_from(b"see abc1") == 8
    assert bare_mid.undecided_from(b"see abc1MID") == 4
    assert bare_mid.undecided_from(b"see abc1M") == 4
    assert bare_mid.undecided_from(b"see abcMID") == 4  # the shortest `before`
    assert bare_mid.undecided_from(b"abcdefMIDKE") == 0  # the longest, from the start of the buffer
    # case: MIDKEY is case-sensitive, so "mid" and "m" are no heads of it
    assert bare_mid.undecided_from(b"see abc1mid") == 11
    assert bare_mid.undecided_from(b"see abc1m") == 9
    # left boundary: the run before the head must start where a `before` could
    assert bare_mid.undecided_from(b"see abcdefgMID") == 14  # glued to a 7th character: longer than any `before`
    assert bare_mid.undecided_from(b"see abMID") == 9  # shorter than any `before`


def test_model_style_deltas_ending_in_a_keyword_head_are_released_at_once():
    """" a", " secret", " do", " sk_li" (heads of apify_api_, secretaccesskey, dop_v1_, sk_live_) are not held; an
    opening that may be a mid-token keyword's token, or a whole keyword whose token is incomplete, still is."""
    from dlproxy.engine.profile import builtin_profile_path

    det = Detector(load_profiles([builtin_profile_path()]))
    for word in (b" a", b" secret", b" Secret", b" do", b" key", b" sk_li", b" xoxb", b" AKI", b" gh", b" ghp"):
        text = b"Streams carry text" + word
        assert det.undecided_from(text) == len(text), word
    for opening in (b" sk-proj-", b" sk-proj-abcDEF123", b" sk-", b" ghp_", b" ghp_abc123", b" apify_api_",
                    b" secretaccesskey", b" dop_v1_ab"):
        text = b"Streams carry text" + opening
        assert det.undecided_from(text) == len(b"Streams carry text "), opening
    # a head of a mid-token keyword holds the run before it: "abc8Q" may be an Entra secret ("8Q~", 3 before)
    assert det.undecided_from(b"Streams carry text abc8Q") == len(b"Streams carry text ")
    assert det.undecided_from(b"Streams carry text abcd8Q") == len(b"Streams carry text abcd8Q")
    # " sk" and " s" are heads of the literal lead "sk-" of the OpenAI keys (mid-token keyword "T3BlbkFJ"): held
    assert det.undecided_from(b"Streams carry text sk") == len(b"Streams carry text ")


def test_ordinary_prose_is_released_word_by_word_with_the_builtin_profile():
    """Clean text must flow: a model streaming " word" deltas should not have each word held back."""
    from dlproxy.engine.profile import builtin_profile_path

    det = Detector(load_profiles([builtin_profile_path()]))
    text = ("The deployment finished without errors, and the service now answers requests from every region. "
            "Rotate the credentials monthly; keep secrets in the vault, never in source control or chat logs.")
    ends = [i for i in range(1, len(text) + 1) if text[i - 1].isalpha() and (i == len(text) or not text[i].isalpha())]
    held = [text[:i].rsplit(" ", 1)[-1] for i in ends if det.undecided_from(text[:i].encode()) < i]
    assert len(held) <= len(ends) // 10, held
    # "." starts the mid-token keyword ".atlasv1." (Terraform), whose id before it is exactly 14 characters:
    # a 7-letter word before a full stop cannot be one.
    assert det.undecided_from(b"nothing slips through.") == 22
    assert det.undecided_from(b"id AbCdEfGhIjKlMn.") == 3


def test_a_short_trailing_run_is_held_by_the_entries_with_a_literal_lead_only(monkeypatch):
    """A run shorter than OPEN_RUN_MIN can only be held by an entry with a literal lead ("sk-"): undecided_from
    looks at those entries only, and answers as it would looking at every one."""
    from dlproxy.engine.detector import OPEN_RUN_MIN
    from dlproxy.engine.profile import builtin_profile_path

    det = Detector(load_profiles([builtin_profile_path()]))
    assert det._led_runs and sum(len(s) for _, _, s in det._led_runs) < sum(len(s) for _, _, s in det._open_runs)
    rng = random.Random(5)
    pieces = [b"s", b"sk", b"sk-", b"sk-proj-", b"sk-admin-", b"x", b"ab", b"S", b"-", b"_", b"9", b"T3Blb", b" ",
              b"\n", b".", b"~", b"8Q", b"AKIA", b"ghp_", b"abcdefghijkl"]
    texts = [b"Streams carry text " + b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 6)))
             for _ in range(600)]
    fast = [det.undecided_from(t) for t in texts]
    monkeypatch.setattr(det, "_led_runs", det._open_runs)  # every entry, as for a long run
    assert [det.undecided_from(t) for t in texts] == fast
    assert any(len(t) - f < OPEN_RUN_MIN and f < len(t) for t, f in zip(texts, fast, strict=True))  # some held


tokenish = st.sampled_from(["thg_", "thx_", THG, "mk-abc123MIDKEYz9z9z9", "MIDKEY", "my_secret_key=",
                            "abcdEFGH1234/+zz", "_abcd", " ", "\n", "x", "9", "-", '"'])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(tokenish, min_size=1, max_size=12), cut_seed=st.integers(0, 10**6))
@example(parts=["x", " ", THG, " "], cut_seed=4)
@example(parts=[" ", "mk-abc123MIDKEYz9z9z9", " "], cut_seed=10)
@example(parts=["my_secret_key=", "abcdEFGH1234/+zz"], cut_seed=7)
@example(parts=["thg_Ab3Ab3Ab3Ab3Ab3Ab3Zz", "_abcd", "mk-abc123MIDKEYz9z9z9", "my_secret_key="], cut_seed=29)
def test_releasing_up_to_undecided_passes_at_most_a_head_of_the_literal_prefix(detector, parts, cut_seed):
    """Stream safety: of a token the full text has and the cut-off text does not, the bytes before
    undecided_from(cut-off text) hold at most a proper head of the token's literal prefix (its keyword, when that
    starts the token), and nothing at all when its keyword is mid-token."""
    data = "".join(parts).encode()
    full = detector.scan(data)
    cut = cut_seed % (len(data) + 1)
    head = data[:cut]
    released = detector.undecided_from(head)
    assert 0 <= released <= cut
    head_scan = detector.scan(head)
    for f in full:
        if f.start >= released or any(h.start <= f.start < h.end for h in head_scan):
            continue  # not released, or the cut-off text already holds a finding there (the stream acts on it)
        entry = detector.entry(f.entry_id)
        passed = data[f.start:released]
        if entry.case_insensitive:
            passed = passed.lower()
        heads = [p.encode().lower() if entry.case_insensitive else p.encode() for p in entry.prefixes]
        assert entry.before is None and any(len(passed) < len(p) and p.startswith(passed) for p in heads), (
            data, cut, released, f)


@settings(max_examples=100, deadline=None)
@given(parts=st.lists(tokenish, max_size=15))
def test_backends_agree(profile, parts):
    data = "".join(parts).encode()
    results = {b: [(f.entry_id, f.start, f.end, f.fingerprint) for f in Detector(profile, b).scan(data)]
               for b in BACKENDS}
    assert len(set(map(tuple, results.values()))) == 1, results


def test_unknown_backend_is_an_error(profile):
    with pytest.raises(ValueError, match="unknown prefilter backend"):
        Detector(profile, backend="nope")


def test_max_token_len(profile):
    assert Detector(profile).max_token_len == len("my_secret_key") + 1 + 3 + 1 + 3 + 1 + 16
    assert textwrap  # keep import used for readability of PROFILE edits


@settings(max_examples=500, deadline=None)
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=120),
       prefix_len=st.integers(0, 12))
@example(secret="abcdefghijklmnopqrstuvwxyz12", prefix_len=12)
@example(secret="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", prefix_len=4)
def test_masked_form_and_fingerprint_never_reveal_the_secret(secret, prefix_len):
    """masked = (public prefix or nothing) + "…" + (last 4 characters, only when 16 or more stay hidden)."""
    from dlproxy.engine.findings import fingerprint, mask

    prefix = secret[:prefix_len]
    masked = mask(secret, prefix)
    shown_prefix, _, tail = masked.partition("…")
    assert shown_prefix in ("", prefix) and tail in ("", secret[-4:])
    hidden = len(secret) - len(shown_prefix) - len(tail)
    assert hidden >= len(secret) // 2 and (not tail or hidden >= 16)
    assert secret not in masked
    fp = fingerprint(secret)
    assert fp.startswith("sha256:") and len(fp) == 71 and (len(secret) < 8 or secret not in fp)

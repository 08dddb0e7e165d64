"""No profile pattern can freeze the proxy: every shape runs on Python `re` only when it is deterministic (each
choice decided by the next character), else on RE2; what neither runs in linear time is rejected at load.

Work is bounded by *steps*, never by time: `Backtracker` below is a backtracking matcher with Python `re`'s
semantics (greedy repeats try one more first, alternatives in order) that counts every step, so the property
"a shape routed to `re` takes O(pattern × input) steps" is checked on generated nested and ambiguous patterns.
"""

from __future__ import annotations

import re
import re._constants as sre_c
import re._parser as sre_parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlproxy.engine.detector import Detector
from dlproxy.engine.linear import NotLinear, compile_shape, deterministic, engine_of, shape_source
from dlproxy.engine.profile import ProfileError, load_profiles, profile_sources

ISSUE_PATTERN = "(a|aa){1,30}(a|aa){1,30}b"
ISSUE_INPUT = b"acme_g_" + b"a" * 36 + b"c"


class Backtracker:
    """Python `re`'s backtracking over a parse tree, counting steps (one per node visited)."""

    def __init__(self, pattern: str, limit: int):
        self.tree = list(sre_parse.parse(pattern, re.ASCII))
        self.limit = limit
        self.steps = 0

    def match(self, text: bytes) -> int | None:
        self.text = text
        return self._seq(self.tree, 0, 0, lambda p: p)

    def _tick(self):
        self.steps += 1
        if self.steps > self.limit:
            raise OverflowError

    def _seq(self, items, i, pos, k):
        self._tick()
        if i == len(items):
            return k(pos)
        op, arg = items[i]
        nxt = lambda p: self._seq(items, i + 1, p, k)  # noqa: E731
        if op == sre_c.LITERAL:
            return nxt(pos + 1) if pos < len(self.text) and self.text[pos] == arg else None
        if op == sre_c.IN:
            chars = {a for o, a in arg if o == sre_c.LITERAL}
            return nxt(pos + 1) if pos < len(self.text) and self.text[pos] in chars else None
        if op == sre_c.SUBPATTERN:
            return self._seq(list(arg[-1]), 0, pos, nxt)
        if op == sre_c.BRANCH:
            for alt in arg[1]:
                r = self._seq(list(alt), 0, pos, nxt)
                if r is not None:
                    return r
            return None
        if op == sre_c.MAX_REPEAT:
            low, high, body = arg
            return self._rep(list(body), low, high, 0, pos, nxt)
        raise AssertionError(op)

    def _rep(self, body, low, high, count, pos, k):
        self._tick()
        if count < high:
            def again(p):
                return None if p == pos and count >= low else self._rep(body, low, high, count + 1, p, k)
            r = self._seq(body, 0, pos, again)
            if r is not None:
                return r
        return k(pos) if count >= low else None


# --- generated patterns: nested groups, alternatives, optional parts, counted repeats over a tiny alphabet ---

ATOMS = st.sampled_from(["a", "b", "c", "[ab]", "[bc]", "[^a]", "A"])


def _patterns():
    def extend(inner):
        group = inner.map(lambda p: f"(?:{p})")
        alternation = st.lists(inner, min_size=2, max_size=3).map(lambda ps: "(?:" + "|".join(ps) + ")")
        repeat = st.tuples(inner, st.integers(0, 3), st.integers(1, 4)).map(
            lambda t: f"(?:{t[0]}){{{min(t[1], t[2])},{t[2]}}}")
        optional = inner.map(lambda p: f"(?:{p})?")
        sequence = st.lists(inner, min_size=2, max_size=3).map("".join)
        caseless = inner.map(lambda p: f"(?i:{p})")
        return group | alternation | repeat | optional | sequence | caseless

    return st.recursive(ATOMS, extend, max_leaves=8)


INPUTS = st.text(alphabet="abcAB", max_size=24).map(str.encode)


def _size(pattern: str) -> int:
    return len(pattern) + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=_patterns(), text=INPUTS)
def test_a_shape_routed_to_re_takes_linear_steps_and_both_engines_agree(pattern, text):
    source = "(?:" + pattern + ")"
    compiled = compile_shape(source)  # lookaround-free shapes always run on one of the engines
    expected = re.compile(source.encode(), re.ASCII).match(text)  # short input: Python re is fine here
    got = compiled.match(text, 0)
    assert (got and got.span()) == (expected and expected.span()), (pattern, text)
    if engine_of(source) == "re" and "[^" not in source and "(?i" not in source:  # what Backtracker models
        adversarial = [text * 3, b"a" * 30 + b"c", b"ab" * 15 + b"c", b"b" * 30]
        for t in adversarial:
            bt = Backtracker(source, limit=10 ** 7)
            bt.match(t)
            assert bt.steps <= 16 * _size(source) * (len(t) + 1), (pattern, t, bt.steps)


def test_the_backtracker_does_count_the_blow_up_of_an_ambiguous_pattern():
    """The step bound above can fail: the issue's pattern blows it (Python `re` would take minutes)."""
    bt = Backtracker(ISSUE_PATTERN, limit=10 ** 6)
    with pytest.raises(OverflowError):
        bt.match(b"a" * 36 + b"c")
    assert not deterministic(sre_parse.parse(ISSUE_PATTERN, re.ASCII))


def test_the_issue_pattern_runs_on_re2_and_finds_nothing_in_its_input(tmp_path):
    overlay = tmp_path / "slow.yaml"
    overlay.write_text(f"entries:\n  - id: acme-g\n    name: ACME G\n    prefixes: [acme_g_]\n"
                       f"    pattern: '{ISSUE_PATTERN}'\n")
    profile = load_profiles(profile_sources([overlay]))
    assert engine_of(shape_source(None, "acme_g_", ISSUE_PATTERN, False)) == "re2"
    det = Detector(profile)
    assert det.scan(ISSUE_INPUT) == []
    assert [f.entry_id for f in det.scan(b"acme_g_" + b"a" * 36 + b"b ")] == ["acme-g"]


@pytest.mark.parametrize(("pattern", "engine"), [
    ("[A-Za-z0-9]{36}", "re"),
    ("[A-Za-z0-9]{40}[a-f0-9]{8}", "re"),  # fixed counts: no choice between them
    ("[A-Za-z0-9_-]{12,2000}\\.eyJ[A-Za-z0-9_-]{1,8000}", "re"),  # the repeat stops at a character it cannot take
    ("[a-z]{1,10}[a-z0-9]{4}", "re2"),  # where the first repeat stops is a choice
    ("(?:[ab]|bc){1,5}", "re2"),  # two alternatives can start with b
    ("(?:ab|ac){1,5}", "re"),  # Python factors the common prefix: a(?:b|c), decided by the next character
    ("(?:=|=>)x", "re"),  # =(?:|>)x
    ("(?:=|=>)>", "re2"),
])
def test_engine_choice(pattern, engine):
    assert engine_of(shape_source(None, "tok_", pattern, False)) == engine


def test_what_no_engine_can_run_is_rejected_with_file_and_line(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("entries:\n  - id: acme-x\n    name: X\n    prefixes: [acme_x_]\n"
                       "    pattern: '(?:a|ab)(?!c)[a-z]{4}'\n"
                       "  - id: acme-y\n    name: Y\n    prefixes: [acme_y_]\n    pattern: '([a-z]{2})\\1'\n")
    with pytest.raises(ProfileError) as e:
        load_profiles(profile_sources([overlay]))
    assert any(p.startswith(f"{overlay}:5: entries[0].pattern: cannot be matched in linear time: a lookaround")
               for p in e.value.problems), e.value.problems
    assert any(p.startswith(f"{overlay}:9: entries[1].pattern: cannot be matched in linear time: backreferences")
               for p in e.value.problems), e.value.problems
    with pytest.raises(NotLinear):
        compile_shape("(?:[ab]|bc)[a-c]{2}(?=c)")
    with pytest.raises(NotLinear, match="anchors"):
        compile_shape("[a-z]{4}$")


def test_large_counts_are_split_for_re2_without_changing_the_language():
    source = "(?:x|xy)[ab]{20,2500}(?:[ab]{1,90}c){1,40}"
    rx = compile_shape(source)
    assert engine_of(source) == "re2"
    text = b"xy" + b"ab" * 1200 + (b"a" * 50 + b"c") * 3
    assert rx.match(text, 0).span() == re.compile(source.encode()).match(text).span()
    assert rx.match(b"x" + b"a" * 19 + b"c", 0) is None

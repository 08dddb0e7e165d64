"""The Hyperscan prechecks only ever skip passes that would have found nothing: same answers with and without."""

from __future__ import annotations

import random

import pytest

from dlproxy.extract import base64blobs, jsonx, quickcheck

pytestmark = pytest.mark.skipif(quickcheck.hyperscan is None, reason="the prechecks need the fast extra")


def body(rng: random.Random, longest_run: int, deepest: int, size: int = 3 * quickcheck.MIN_BYTES) -> bytes:
    """Prose with occasional near-threshold base64 runs and bracket runs of varying depth."""
    words = [b"the", b"token", b"value", b"quick", b"brown", b"fox,", b"{", b"[", b"}", b"]", b'"k":', b"\n"]
    out = bytearray()
    while len(out) < size:
        pick = rng.random()
        if pick < 0.02:
            out += bytes(rng.choice(base64blobs._B64) for _ in range(rng.randrange(18, longest_run + 1))) + b" "
        elif pick < 0.03:
            depth = rng.randrange(40, deepest + 1)
            out += b"[" * depth + b"1" + b"]" * depth
        else:
            out += rng.choice(words) + b" "
    return bytes(out)


@pytest.mark.parametrize("seed", range(40))
def test_prechecks_change_no_answer(seed, monkeypatch):
    # half the bodies have no 24-character run, a third no nesting past 64: both answers of each precheck
    data = body(random.Random(seed), longest_run=30 if seed % 2 else 23, deepest=90 if seed % 3 else 60)
    fast = (base64blobs.find_blobs(data), jsonx.too_deep(data, 64))
    monkeypatch.setattr(quickcheck, "run_of", lambda *a: quickcheck._Maybe())
    monkeypatch.setattr(quickcheck, "openers", lambda *a: quickcheck._Maybe())
    assert (base64blobs.find_blobs(data), jsonx.too_deep(data, 64)) == fast


def test_prechecks_answer_no_only_when_there_is_nothing():
    prose = b"plain words and punctuation, nothing long. " * 4000
    assert not quickcheck.run_of(base64blobs._B64, base64blobs.MIN_BLOB).may_match(prose)
    assert not quickcheck.openers(65).may_match(prose)
    blob = prose + b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" + prose
    assert quickcheck.run_of(base64blobs._B64, base64blobs.MIN_BLOB).may_match(blob)
    assert base64blobs.find_blobs(blob)
    deep = prose + b"[" * 65 + b"]" * 65
    assert quickcheck.openers(65).may_match(deep) and jsonx.too_deep(deep, 64)
    assert quickcheck.run_of(base64blobs._B64, base64blobs.MIN_BLOB).may_match(b"x" * 100)  # small: always maybe


def test_glued_tags_precheck_finds_every_tag_inside_a_word():
    """The markup text view is built only when some tag has a word character on both sides: the precheck must
    say "maybe" for every such tag, wherever it sits in a big page, and "no" for pages without one."""
    import re

    page = b"<div><p>plain words, <b>bold</b> and <a href='/x'>a link</a>.</p></div>\n" * 2000
    assert not quickcheck.glued_tags().may_match(page)
    rng = random.Random(7)
    for tag in (b"<b>", b"</span>", b"<span class='x'>", b"<br/>", b"<w:t xml:space='preserve'>"):
        at = rng.randrange(len(page))
        glued = page[:at] + b" ab" + tag + b"cd " + page[at:]
        assert re.search(rb"[0-9A-Za-z_]<[A-Za-z/][^<>]{0,256}>[0-9A-Za-z_]", glued)
        assert quickcheck.glued_tags().may_match(glued), tag

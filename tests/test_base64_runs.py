"""The base64-run search: hex-only runs (SHAs, ids) never become candidates, and the bulk (Hyperscan) finder
returns the same candidates as the plain search otherwise."""

from __future__ import annotations

import base64
import hashlib
import random
import re

import pytest

from dlproxy.extract import Limits, base64blobs, extract_file, quickcheck
from tokens import make_ghp

needs_hyperscan = pytest.mark.skipif(quickcheck.hyperscan is None, reason="the bulk finder needs Hyperscan")


def _log(lines: int, blob: bytes = b"") -> bytes:
    out = [f"commit {hashlib.sha1(str(i).encode()).hexdigest()} id={hashlib.md5(str(i).encode()).hexdigest()}\n"
           for i in range(lines)]
    out.insert(lines // 2, f"attachment: {blob.decode()}\n")
    return "".join(out).encode()


@needs_hyperscan
def test_hex_runs_are_not_candidates_and_cost_no_callback(monkeypatch):
    token = make_ghp("b64run")
    blob = base64.b64encode(f"config file\nGITHUB_TOKEN={token}\n".encode())
    data = _log(3000, blob)
    assert len(data) > quickcheck.MIN_BYTES
    spans = base64blobs.find_blobs(data)
    # the first BULK_AFTER runs are found one by one (hex ones too); the rest in bulk, hex-only runs left out
    assert len(spans) == base64blobs.BULK_AFTER + 1
    assert [data[s:e] for s, e in spans if data[s:e].translate(None, base64blobs._HEX)] == [blob]
    finder = quickcheck.run_ends(base64blobs._B64, base64blobs._HEX, base64blobs.MIN_BLOB, base64blobs._HEX_TEXT)
    assert len(finder.ends(data)) == 1  # 6000 hex runs, one report
    ext = extract_file("log.txt", data, Limits())
    assert any(seg.location.endswith(":base64") and token.encode() in seg.data for seg in ext.segments)


@needs_hyperscan
def test_hex_text_past_the_first_runs_of_a_large_segment_is_decoded():
    """Text written as hex (`key=6768705f…`) deep inside a large log of SHAs: the bulk finder leaves out hex-only
    runs, except those that spell text."""
    token = make_ghp("hexdeep")
    hexed = f"export GITHUB_TOKEN={token}\n".encode().hex().encode()
    data = _log(3000, hexed)
    assert data.index(hexed) > 64 * 1024
    assert any(data[s:e] == hexed for s, e in base64blobs.find_blobs(data))
    ext = extract_file("log.txt", data, Limits())
    assert any(seg.location.endswith(":hex") and token.encode() in seg.data for seg in ext.segments)


def test_one_long_run_is_found_without_the_bulk_finder(monkeypatch):
    """An inline image (one megabyte-long run) is found by one find on the translation: the bulk finder, whose
    cost grows inside long runs, is only for segments with many runs."""
    monkeypatch.setattr(quickcheck, "run_ends", lambda *a: pytest.fail("bulk finder used"))
    image = base64.b64encode(random.Random(3).randbytes(600_000))
    data = b'{"messages":[{"content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,' + image \
        + b'"}}]}]}'
    assert [data[s:e] for s, e in base64blobs.find_blobs(data)] == [image]


def test_hex_or_base32_is_decided_past_the_head():
    """A blob whose first characters rule out hex and base32 is base64 (an image's megabyte is not translated
    whole); one whose head is hex is looked at whole."""
    assert base64blobs._hex_or_base32(base64.b64encode(random.Random(4).randbytes(3000))) is False
    assert base64blobs._hex_or_base32(b"6768705f" * 40) is True
    assert base64blobs._hex_or_base32(base64.b32encode(b"x" * 100)) is True
    assert base64blobs._hex_or_base32(b"6768705f" * 40 + b"g") is False


@needs_hyperscan
def test_bulk_finder_matches_the_plain_search(monkeypatch):
    rng = random.Random(7)
    alphabet = base64blobs._B64 + b" \n\r=.-:\"'"
    hex_only = re.compile(rb"-*[0-9a-fA-F]+=*\Z")
    used = []
    real = quickcheck.run_ends
    monkeypatch.setattr(quickcheck, "run_ends", lambda *a: used.append(a) or real(*a))
    for _ in range(40):
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < 100_000:
            r = rng.random()
            if r < 0.3:
                pieces.append(bytes(rng.choice(b"0123456789abcdef") for _ in range(rng.randint(20, 70))))
            elif r < 0.6:
                pieces.append(bytes(rng.choice(base64blobs._B64) for _ in range(rng.randint(1, 90))))
            else:
                pieces.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 10))))
        data = b"".join(pieces)
        bulk = base64blobs.find_blobs(data)
        with monkeypatch.context() as m:
            m.setattr(quickcheck, "run_ends", lambda *a: None)
            plain = base64blobs.find_blobs(data)
        # The plain search also returns hex-only runs; past its first runs the bulk one drops them (dash-led ones
        # excepted).
        assert [s for s in plain if not hex_only.match(data[s[0]:s[1]])] == \
            [s for s in bulk if not hex_only.match(data[s[0]:s[1]])]
        assert set(bulk) <= set(plain)
    assert len(used) == 40  # every sample went to the bulk finder after its first runs


def test_wrapped_block_after_padding_is_found_whole():
    body = base64.encodebytes(("secret file " * 40).encode())
    data = b"x" * 70_000 + b" QUJD= " + body
    assert any(data[s:e].replace(b"\n", b"") == body.replace(b"\n", b"") for s, e in base64blobs.find_blobs(data))

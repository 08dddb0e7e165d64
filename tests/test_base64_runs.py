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
    assert [data[s:e] for s, e in spans] == [blob]
    finder = quickcheck.run_ends(base64blobs._B64, base64blobs._HEX, base64blobs.MIN_BLOB)
    assert len(finder.ends(data)) == 1  # 6000 hex runs, one report
    ext = extract_file("log.txt", data, Limits())
    assert any(seg.location.endswith(":base64") and token.encode() in seg.data for seg in ext.segments)


@needs_hyperscan
def test_bulk_finder_matches_the_plain_search(monkeypatch):
    rng = random.Random(7)
    alphabet = base64blobs._B64 + b" \n\r=.-:\"'"
    hex_only = re.compile(rb"-*[0-9a-fA-F]+=*\Z")
    for _ in range(40):
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < 70_000:
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
        # The plain search also returns hex-only runs; the bulk one drops them (dash-led ones excepted).
        assert [s for s in plain if not hex_only.match(data[s[0]:s[1]])] == \
            [s for s in bulk if not hex_only.match(data[s[0]:s[1]])]
        assert set(bulk) <= set(plain)


def test_wrapped_block_after_padding_is_found_whole():
    body = base64.encodebytes(("secret file " * 40).encode())
    data = b"x" * 70_000 + b" QUJD= " + body
    assert any(data[s:e].replace(b"\n", b"") == body.replace(b"\n", b"") for s, e in base64blobs.find_blobs(data))

"""Parity: every carrier a buffered body is inspected through is found in the same body streamed.

Each case is a body with a token hidden in some carrier (JSON escapes, HTML character references, base64, an
archive ...). It is checked three ways: buffered (extract_http + the detector: the reference), streamed through
ByteStreamScanner in random network chunkings, and (for bodies short enough) split at every byte boundary. Every
case has a control with the plain token in the same place, and a clean twin that must come out byte-identical.
"""

from __future__ import annotations

import json
import random

import pytest

import stream_support
from dlproxy.extract import Limits, extract_http
from dlproxy.inspect.stream import BLOCK, PASS, REDACT, ByteStreamScanner, HoldLimit
from stream_carriers import CARRIERS, zip_of
from stream_support import Judge
from tokens import make_ghp

builtin, ghp_only, detector = stream_support.builtin, stream_support.ghp_only, stream_support.detector

TOKEN = make_ghp("parity")
CLEAN = "ghp_is_not_a_token_here_just_words_x"


def buffered_finds(ctype: str, body: bytes, det) -> bool:
    ext = extract_http(url=None, headers=[("content-type", ctype)], body=body, limits=Limits())
    return any(det.scan(seg.data) for seg in ext.segments)


def stream(det, ctype: str, chunks, action=BLOCK) -> tuple[bytes, ByteStreamScanner, Judge]:
    judge = Judge(action)
    scanner = ByteStreamScanner(det, judge, "body", limits=Limits(), ctype=ctype)
    out = []
    for c in chunks:
        out += scanner.feed(c)
    out += scanner.finish()
    return b"".join(out), scanner, judge


def random_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.choice([1, 2, 3, 7, 16, 64, 1000])
        out.append(data[i:i + n])
        i += n
    return out


def leaked(out: bytes, token: str, det) -> bool:
    """Whatever went out holds the token in a form the buffered extractor finds, or its secret tail literally."""
    return token[-10:].encode() in out or any(
        det.scan(seg.data) for seg in extract_http(url=None, headers=[], body=out, limits=Limits()).segments)


@pytest.mark.parametrize("name", sorted(CARRIERS))
def test_buffered_reference_finds_each_carrier(name, ghp_only):
    ctype, build = CARRIERS[name]
    assert buffered_finds(ctype, build(TOKEN), ghp_only), name
    assert not buffered_finds(ctype, build(CLEAN), ghp_only)


@pytest.mark.parametrize("name", sorted(CARRIERS))
@pytest.mark.parametrize("seed", range(6))
def test_streamed_carrier_is_cut_like_the_buffered_body_is_blocked(name, seed, detector):
    ctype, build = CARRIERS[name]
    body = build(TOKEN)
    out, scanner, judge = stream(detector, ctype, random_chunks(body, random.Random(seed)))
    assert scanner.stopped, name
    assert len(judge.calls) == 1
    assert not leaked(out, TOKEN, detector), (name, out)


@pytest.mark.parametrize("name", sorted(CARRIERS))
def test_clean_twin_streams_byte_identical(name, detector):
    ctype, build = CARRIERS[name]
    body = build(CLEAN)
    for seed in range(4):
        out, scanner, judge = stream(detector, ctype, random_chunks(body, random.Random(seed)))
        assert out == body and not scanner.stopped and judge.calls == []


@pytest.mark.parametrize("name", ["json_newline_escape", "json_unicode_escape", "html_entities", "base64_plain",
                                  "html_named_entity_before", "json_tab_escape", "hex_colons", "hexdump_xxd"])
def test_every_byte_boundary(name, ghp_only):
    ctype, build = CARRIERS[name]
    body = build(TOKEN)
    for i in range(len(body) + 1):
        for chunks in ([body[:i], body[i:]], [body[:i], body[i:i + 3], body[i + 3:]]):
            out, scanner, _ = stream(ghp_only, ctype, chunks)
            assert scanner.stopped and not leaked(out, TOKEN, ghp_only), (i, out)


def test_plain_token_control_is_cut_at_the_token(ghp_only):
    body = json.dumps({"log": "ok " + TOKEN}).encode()
    out, scanner, _ = stream(ghp_only, "application/json", [body[:20], body[20:]])
    assert scanner.stopped and out == body[:body.index(b"ghp_")] or out.startswith(body[:body.index(b"ghp_")])
    assert TOKEN[4:].encode() not in out


def test_escaped_token_is_redacted_in_place(ghp_only):
    body = b'{"log":"x\\n' + TOKEN.encode() + b'","b":"gh\\u0070_' + TOKEN[4:].encode() + b'"}'
    out, scanner, judge = stream(ghp_only, "application/json", random_chunks(body, random.Random(1)), REDACT)
    assert not scanner.stopped and len(judge.calls) == 1
    assert out == b'{"log":"x\\n[REDACTED:github-classic-pat]","b":"[REDACTED:github-classic-pat]"}'


def test_logged_escaped_token_passes_unchanged(ghp_only):
    body = b'{"log":"a \\u0067hp_' + TOKEN[4:].encode() + b'"}'
    out, scanner, judge = stream(ghp_only, "application/json", [body[:9], body[9:]], PASS)
    assert out == body and len(judge.calls) == 1 and judge.calls[0][0].location == "body:unescaped"


def test_archive_larger_than_the_budget_is_uninspectable(ghp_only):
    body = zip_of("GITHUB_TOKEN=" + CLEAN + "\n")
    scanner = ByteStreamScanner(ghp_only, Judge(), "body", limits=Limits(max_inspect_bytes=len(body) // 2))
    with pytest.raises(HoldLimit):
        for i in range(0, len(body), 50):
            scanner.feed(body[i:i + 50])
    assert scanner.held().startswith(b"PK")  # what policy can let through, if it says so


def test_an_open_base64_run_is_bounded(ghp_only):
    scanner = ByteStreamScanner(ghp_only, Judge(), "body", limits=Limits(max_inspect_bytes=1000))
    with pytest.raises(HoldLimit):
        for _ in range(30):
            scanner.feed(b"QUJD" * 16)

"""Hex written with separators (`67:68:70`, `67 68 70`, `0x67, 0x68`, xxd/hexdump/od/Wireshark dumps) is decoded in
every carrier a text segment comes from; text without such a run never reaches the Python regexes."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from dlproxy.extract import Limits, extract_file, extract_http, hexsep, plain_text_body, quickcheck
from hex_forms import c_array, hex_dump, hex_sep, openssl_wrapped
from tokens import make_ghp

needs_hyperscan = pytest.mark.skipif(quickcheck.hyperscan is None, reason="the precheck needs Hyperscan")

TOKEN = make_ghp("hexsep")
FORMS = {
    "colons": hex_sep(":"), "colons-upper": hex_sep(":", upper=True), "dashes": hex_sep("-"), "spaces": hex_sep(" "),
    "commas": hex_sep(","), "comma-space": hex_sep(", "), "dots": hex_sep("."), "c-array": c_array,
    "openssl": openssl_wrapped, "xxd": hex_dump("xxd"), "hexdump-C": hex_dump("hexdump-C"),
    "od-x1": hex_dump("od-x1"), "od-x": hex_dump("od-x"), "wireshark": hex_dump("wireshark"),
}


def _found(ext) -> bool:
    return any(TOKEN.encode() in seg.data for seg in ext.segments if seg.location.endswith(":hex"))


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_form_is_decoded_in_text_json_and_files(form):
    text = FORMS[form](TOKEN)
    for ctype, body in (("text/plain", f"see below\n{text}\nend\n"), ("application/json", json.dumps({"x": text}))):
        ext = extract_http(url=None, headers=[("content-type", ctype)], body=body.encode(), limits=Limits())
        assert _found(ext), (form, ctype)
    assert _found(extract_file("notes.txt", text.encode(), Limits())), form


def test_header_and_query_carriers():
    colons = hex_sep(":")(TOKEN)
    ext = extract_http(url="https://h.test/a?id=" + hex_sep("-")(TOKEN), headers=[("X-Key", colons)], body=b"",
                       limits=Limits())
    assert {s.location for s in ext.segments if TOKEN.encode() in s.data} >= {"header:x-key:hex", "url:query:hex"}


def test_short_runs_and_mixed_text_are_not_decoded():
    """MAC addresses, timestamps, IPv6 and UUIDs are too short or not pairs: no run."""
    text = (b"2024-12-08 02:10:11 mac=aa:bb:cc:dd:ee:ff ip=fe80::1:2:3 id=550e8400-e29b-41d4-a716-446655440000 "
            b"sha=" + hashlib.sha1(b"x").hexdigest().encode() + b"\n") * 50
    assert hexsep.find(text) == []


def test_a_fingerprint_is_not_decoded():
    """A certificate fingerprint (32 random bytes, colon-separated) holds no 10 pairs of printable ASCII in a row:
    the precheck passes it by, and nothing of it becomes a segment."""
    fp = hex_sep(":", upper=True)(random.Random(1).randbytes(32)).encode()
    assert not hexsep.may_hold(fp) or quickcheck.hyperscan is None
    ext = extract_http(url=None, headers=[("content-type", "text/plain")], body=b"SHA256 Fingerprint=" + fp,
                       limits=Limits())
    assert not [s for s in ext.segments if s.location.endswith(":hex")]


def test_decoded_bytes_are_charged_to_the_budget():
    body = ("k: " + hex_sep(":")(("x" * 40 + TOKEN) * 50) + "\n").encode()
    limits = Limits(max_inspect_bytes=len(body) + 500)
    ext = extract_http(url=None, headers=[("content-type", "text/plain")], body=body, limits=limits)
    assert ext.decoded_bytes <= limits.max_inspect_bytes
    assert "too_large" in ext.reasons


@needs_hyperscan
def test_text_without_runs_costs_one_pass_and_no_regex(monkeypatch):
    """Prose, minified JSON, code and a log (colons, spaces, digits, MACs, SHAs): the precheck says no, so neither
    the run nor the dump regex is asked; the proxy's plain-body check still lets such bodies skip blob decoding."""
    calls = []

    class Counting:
        def __init__(self, regex):
            self.regex = regex

        def finditer(self, data, *a):
            calls.append(self.regex.pattern[:20])
            return self.regex.finditer(data, *a)

    monkeypatch.setattr(hexsep, "_RUN", Counting(hexsep._RUN))
    monkeypatch.setattr(hexsep, "_DUMP_LINE", Counting(hexsep._DUMP_LINE))
    rng = random.Random(3)
    words = "the of token request server key value deadbeef cafe 10:20 at: be ad fa ce 12 34 56".split()
    prose = " ".join(rng.choice(words) for _ in range(40000)).encode()
    log = b"".join(b"2024-12-08 02:%02d:%02d INFO mac=%s req=%s took 12 ms\n"
                   % (i % 60, i % 59, b":".join(b"%02x" % rng.randrange(256) for _ in range(6)),
                      hashlib.md5(str(i).encode()).hexdigest().encode()) for i in range(5000))
    minified = json.dumps([{"id": i, "t": "12:34:56", "n": [1, 2, 3], "s": "a: b"} for i in range(8000)],
                          separators=(",", ":")).encode()
    code = b"".join(p.read_bytes() for p in sorted(Path(hexsep.__file__).parents[1].rglob("*.py")))
    for body in (prose, log, minified, code):
        assert len(body) > quickcheck.MIN_BYTES
        assert hexsep.find(body) == []
        assert not hexsep.may_hold(body)
    assert calls == []
    assert plain_text_body([("Content-Type", "text/plain")], prose)
    assert not plain_text_body([("Content-Type", "text/plain")], prose + hex_sep(" ")(TOKEN).encode())


def test_benign_sources_decode_to_no_checksum_finding():
    """Installed Python sources and data files: whatever separated hex they hold decodes to no checksummed token."""
    detector = Detector(load_profiles([builtin_profile_path()]))
    roots = sorted({Path(p) for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()})
    size = runs = 0
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            data = path.read_bytes()
            size += len(data)
            for _, _, decoded in hexsep.find(data):
                runs += 1
                assert [f for f in detector.scan(decoded) if f.validated == "checksum"] == [], path
            if size >= 40 * 1024 * 1024:
                break
    assert size >= 10 * 1024 * 1024

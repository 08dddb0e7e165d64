"""Hex written with separators (`67:68:70`, `67 68 70`, `0x67, 0x68`, xxd/hexdump/od/Wireshark dumps) is decoded in
every carrier a text segment comes from and in streamed bodies; text without such a run never reaches the Python
regexes. (Stream parity for these carriers: test_stream_parity.py, stream_carriers.py.)"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from dlproxy.extract import Limits, extract_file, extract_http, hexsep, plain_text_body, quickcheck
from dlproxy.inspect.stream import BLOCK, HEX_LOOKBACK, ByteStreamScanner, HexRun, HoldLimit
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
    """Installed Python sources: whatever separated hex they hold decodes to no checksummed token."""
    detector = _detector()
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


# -- streams: the same runs found in a body streamed in any chunking -------------------------------------------


def _stream(body: bytes, chunks: list[bytes], limits: Limits | None = None) -> tuple[bytes, ByteStreamScanner]:
    scanner = ByteStreamScanner(_detector(), lambda findings: (BLOCK, findings), "body", limits=limits or Limits(),
                                ctype="text/plain")
    out = [c for chunk in chunks for c in scanner.feed(chunk)] + scanner.finish()
    return b"".join(out), scanner


@lru_cache(maxsize=1)
def _detector() -> Detector:
    return Detector(load_profiles([builtin_profile_path()]))


def _xxd(data: bytes) -> bytes:
    """`xxd` of raw bytes."""
    return b"".join(b"%08x: %-39s  %s\n" % (off, b" ".join(data[off:off + 16][i:i + 2].hex().encode()
                                                            for i in range(0, len(data[off:off + 16]), 2)),
                                          bytes(c if 32 <= c < 127 else 46 for c in data[off:off + 16]))
                    for off in range(0, len(data), 16))


@pytest.mark.parametrize("lead", [b"", b"dump of key.bin:\n"])
def test_a_dump_whose_first_line_is_binary_is_held_from_that_line(lead):
    """The token starts at the end of the dump's first line, whose other bytes are not printable (no run of
    printable pairs there): the line is held because it starts like a dump's (after a newline, or at the stream's
    first byte), so nothing of the token gets through in any chunking."""
    body = lead + _xxd(b"\x00" * 13 + TOKEN.encode() + b"\x01" * 600)
    for size in (1, 7, 50, len(body)):
        out, scanner = _stream(body, [body[i:i + size] for i in range(0, len(body), size)])
        assert scanner.stopped, size
        assert TOKEN[:3].encode().hex()[2:].encode() not in out.replace(b" ", b"")  # `ghp` past its `g`
        assert not any(_detector().scan(d) for _, _, d in hexsep.find(out))


def test_stream_text_without_triggers_is_neither_held_nor_searched(monkeypatch):
    """Prose with digits, colons and hex words streams through: HexRun holds nothing, keeps at most its look-back,
    and never asks hexsep.find (the Hyperscan trigger pass is all it costs)."""
    calls = []
    monkeypatch.setattr(hexsep, "find", lambda data: calls.append(len(data)) or [])
    rng = random.Random(5)
    words = "the of token request be ad fa ce 10:20 1999 at: a-b 12 19".split()
    prose = " ".join(rng.choice(words) for _ in range(30000)).encode()
    run = HexRun()
    for i in range(0, len(prose), 1000):
        regions, hold = run.push(prose[i:i + 1000], i)
        assert regions == [] and hold is None
        assert len(run.data) <= HEX_LOOKBACK + 1000
    assert run.push(b"", len(prose), final=True) == ([], None)
    out, scanner = _stream(prose, [prose[i:i + 4096] for i in range(0, len(prose), 4096)])
    assert out == prose and not scanner.stopped and calls == []


def test_an_endless_hex_run_is_bounded():
    scanner = ByteStreamScanner(_detector(), lambda findings: (BLOCK, findings), "body",
                                limits=Limits(max_inspect_bytes=4000), ctype="text/plain")
    with pytest.raises(HoldLimit):
        for _ in range(100):
            scanner.feed(b"41:42:43:44:45:46:47:48:" * 4)

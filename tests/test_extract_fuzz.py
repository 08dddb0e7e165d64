"""Fuzzing. Arbitrary bytes under arbitrary Content-Type / Content-Encoding headers, and damaged
real containers, never raise, never report `error` (a bug), and never exceed the budgets."""

from __future__ import annotations

import gzip
import json
import os
import zlib

import brotli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dlproxy.extract import REASONS, Limits, extract_file, extract_http
from test_extract_support import docx, make_tar, make_zip

LIMITS = Limits(max_inspect_bytes=256 * 1024, min_bomb_bytes=64 * 1024, max_archive_members=50)
FUZZ = settings(max_examples=int(os.environ.get("DLP_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])

CTYPES = st.sampled_from([
    "", "application/json", "application/x-ndjson", "text/plain; charset=utf-16", "text/html", "application/xml",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "multipart/form-data",
    "multipart/mixed; boundary=\"\"", "application/zip", "application/gzip", "application/octet-stream",
    "image/png", "text/plain; charset=bogus-7",
]) | st.text(max_size=60)
CODINGS = st.sampled_from(["", "gzip", "deflate", "br", "zstd", "gzip, br", "x-gzip", "identity", "compress",
                           "gzip, gzip, gzip, gzip, gzip", "BR", " , "]) | st.text(max_size=20)


def _check(ext, limits: Limits, http: bool = True) -> None:
    assert ext.decoded_bytes <= limits.max_inspect_bytes
    if http:  # every scanned byte was charged (files also keep undecoded text views)
        assert ext.scanned_bytes <= ext.decoded_bytes
    for u in ext.unscannable:
        assert u.reason in REASONS and u.reason != "error", u
    for seg in ext.segments:
        assert isinstance(seg.data, bytes) and seg.data
        assert isinstance(seg.locate(0, min(3, len(seg.data))), str)


def _container(kind: str, payload: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(payload)
    if kind == "zlib":
        return zlib.compress(payload)
    if kind == "br":
        return brotli.compress(payload)
    if kind == "zip":
        return make_zip({"a.txt": payload, "b/c.json": b'{"k": "' + payload[:50] + b'"}'})
    if kind == "docx":
        return docx([payload.decode("latin-1")[:40], "x"])
    if kind == "tar":
        return make_tar({"a": payload, "b": payload[:10]})
    if kind == "multipart":
        return (b"--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"z.zip\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + payload + b"\r\n--b--\r\n")
    return payload


@FUZZ
@given(body=st.binary(max_size=4096), ctype=CTYPES, coding=CODINGS, url=st.text(max_size=200))
@example(body=b"\x1f\x8b" + b"\x00" * 40, ctype="", coding="", url="http://[::1")
@example(body=b"PK\x05\x06" + b"\xff" * 18, ctype="application/zip", coding="", url="")
@example(body=b"--b\r\n\r\n", ctype="multipart/form-data; boundary=b", coding="", url="%%%")
@example(body=b"[" * 3000, ctype="application/json", coding="", url="")
def test_arbitrary_bytes_and_headers(body, ctype, coding, url):
    headers = [("Content-Type", ctype), ("Content-Encoding", coding), ("Cookie", url[:50])]
    _check(extract_http(url=url, headers=headers, body=body, limits=LIMITS), LIMITS)


@FUZZ
@given(kind=st.sampled_from(["gzip", "zlib", "br", "zip", "docx", "tar", "multipart", "raw"]),
       payload=st.binary(max_size=2048), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
                                                        max_size=6), cut=st.integers(0, 10_000))
def test_damaged_containers(kind, payload, flips, cut):
    data = bytearray(_container(kind, payload))
    for pos, xor in flips:
        if data:
            data[pos % len(data)] ^= xor
    data = bytes(data[:max(1, len(data) - cut % (len(data) + 1))])
    coding = {"gzip": "gzip", "zlib": "deflate", "br": "br"}.get(kind, "")
    ctype = "multipart/form-data; boundary=b" if kind == "multipart" else ""
    _check(extract_http(url=None, headers=[("Content-Type", ctype), ("Content-Encoding", coding)], body=data,
                        limits=LIMITS), LIMITS)
    _check(extract_file(f"x.{kind}", data, LIMITS), LIMITS, http=False)


@FUZZ
@given(name=st.text(max_size=30), data=st.binary(max_size=4096))
@example(name="", data=b"\\\n")  # a text that is only a line continuation: no empty escape view
def test_extract_file_arbitrary(name, data):
    _check(extract_file(name, data, LIMITS), LIMITS, http=False)


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=300))
def test_text_never_breaks_json_or_forms(text):
    raw = text.encode("utf-8", "surrogatepass")
    for ctype in ("application/json", "application/x-www-form-urlencoded", "text/html"):
        _check(extract_http(url="/?" + text, headers=[("Content-Type", ctype)], body=raw, limits=LIMITS), LIMITS)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200), ensure_ascii=st.booleans())
def test_json_unescape_matches_json_loads(text, ensure_ascii):
    """The hot-path unescaper (C codecs) decodes a JSON string literal exactly as json.loads does."""
    from dlproxy.extract.escapes import unescape
    literal = json.dumps(text, ensure_ascii=ensure_ascii)[1:-1].encode()
    assert unescape(literal) == text.encode()

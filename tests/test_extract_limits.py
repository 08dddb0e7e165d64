"""Budgets and bad input. Each case: bounded memory and work, an explicit reason, no exception."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import random
import tracemalloc
import zipfile

import brotli
import pytest

from dlproxy.extract import (
    REASONS,
    Limits,
    Segment,
    decode_content_encoding,
    extract_file,
    extract_http,
)
from test_extract_support import b64, found, ghp, http, make_tar, make_zip

TOKEN = ghp("limits")
MiB = 1 << 20


def _measured(fn):
    """(result, peak traced bytes)."""
    tracemalloc.start()
    try:
        result = fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


def _reasons(ext) -> set[tuple[str, str]]:
    return {(u.location, u.reason) for u in ext.unscannable}


@pytest.fixture(scope="module")
def zeros_gzip() -> bytes:
    return gzip.compress(TOKEN.encode() + b" " + bytes(10 * MiB))  # 10 MB of zeros -> ~10 KB


def test_gzip_bomb_stops_at_ratio_with_bounded_memory(zeros_gzip):
    assert len(zeros_gzip) < 20_000
    ext, peak = _measured(lambda: http(body=zeros_gzip, headers=[("Content-Encoding", "gzip")]))
    assert ("body", "bomb") in _reasons(ext)
    limits = Limits()
    cap = max(limits.max_expansion_ratio * len(zeros_gzip), limits.min_bomb_bytes)
    assert ext.decoded_bytes <= cap + 1000
    assert peak < 6 * cap  # vs 10 MB decompressed
    assert ("body", TOKEN) in found(ext)  # the prefix that was decoded is still scanned


def test_budget_exhausted_is_too_large_and_prefix_is_scanned():
    text = (TOKEN + " " + "lorem ipsum dolor sit amet " * 20_000).encode()
    limits = Limits(max_inspect_bytes=100_000)
    ext = http(body=gzip.compress(text), headers=[("Content-Encoding", "gzip")], limits=limits)
    assert ("body", "too_large") in _reasons(ext)
    assert ext.decoded_bytes <= 100_000
    assert found(ext) == [("body", TOKEN)]
    ext = http(body=text, limits=limits)  # identity body over the budget: same reason, prefix scanned
    assert ("body", "too_large") in _reasons(ext) and found(ext) == [("body", TOKEN)]
    late = http(body=b"x " * 60_000 + TOKEN.encode(), limits=limits)
    assert found(late) == [] and ("body", "too_large") in _reasons(late)


def test_zip_bomb_member_is_cut_at_ratio():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("readme.txt", TOKEN)
        with zf.open("zeros.bin", "w", force_zip64=True) as f:
            chunk = bytes(MiB)
            for _ in range(200):  # 200 MB of zeros in ~200 KB
                f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 400_000
    ext, peak = _measured(lambda: http(body=data))
    assert ("body/zeros.bin", "bomb") in _reasons(ext)
    assert ext.decoded_bytes <= len(data) + 100 * len(data) + 1000
    assert peak < 250 * len(data)
    assert ("body/readme.txt", TOKEN) in found(ext)


def test_zip_declared_member_count_over_limit():
    data = make_zip({f"f{i}.txt": (TOKEN if i == 0 else "x") for i in range(12)})
    ext = http(body=data, limits=Limits(max_archive_members=10))
    assert ("body", "members") in _reasons(ext)
    assert ("body/f0.txt", TOKEN) in found(ext)
    huge = http(body=data, limits=Limits(max_archive_members=2))  # > 4x the limit: not even parsed
    assert ("body", "members") in _reasons(huge)


def _encrypt_flag(data: bytes, name: bytes) -> bytes:
    """Set the 'encrypted' flag bit of one member in both its local and central headers."""
    out = bytearray(data)
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = out.find(sig)
        while pos != -1:
            if out[pos + name_at:pos + name_at + len(name)] == name:
                out[pos + flag_at] |= 1
            pos = out.find(sig, pos + 4)
    return bytes(out)


def test_encrypted_zip_member_is_reported_others_scanned():
    data = _encrypt_flag(make_zip({"secret.txt": "hidden", "plain.txt": TOKEN}), b"secret.txt")
    ext = http(body=data, headers=[("Content-Type", "application/zip")])
    assert _reasons(ext) == {("body/secret.txt", "encrypted_archive")}
    assert found(ext) == [("body/plain.txt", TOKEN)]


def test_deeply_nested_json_is_scanned_and_reported():
    body = b"[" * 1000 + json.dumps({"k": "a\n" + TOKEN}).encode() + b"]" * 1000
    ext = http(body=body, headers=[("Content-Type", "application/json")])
    assert ("body:json", "depth") in _reasons(ext)
    assert [t for _, t in found(ext)] == [TOKEN]
    assert ext.decoded_bytes <= 2 * len(body)  # the deep part is scanned as text once, not per level
    deep_objects = b'{"a":' * 5000 + b'"' + TOKEN.encode() + b'"' + b"}" * 5000
    ext = http(body=deep_objects, headers=[("Content-Type", "application/json")])
    assert ("body:json", "depth") in _reasons(ext)
    assert [(loc[:12], t) for loc, t in found(ext)] == [("body:json:$.", TOKEN)]


def test_truncated_multipart():
    body = (b"--b1\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n" + TOKEN.encode() + b"\r\n"
            b"--b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\npartial da")
    ext = http(body=body, headers=[("Content-Type", "multipart/form-data; boundary=b1")])
    assert ("body:multipart", "truncated") in _reasons(ext)
    assert found(ext) == [("body:multipart:a", TOKEN)]
    cut = http(body=body[:30], headers=[("Content-Type", "multipart/form-data; boundary=b1")])
    assert _reasons(cut) <= {("body:multipart", "truncated"), ("body:multipart", "malformed")} and _reasons(cut)


def test_multipart_without_boundary_is_malformed_but_scanned():
    ext = http(body=b"just text " + TOKEN.encode(), headers=[("Content-Type", "multipart/form-data")])
    assert ("body:multipart", "malformed") in _reasons(ext)
    assert [t for _, t in found(ext)] == [TOKEN]


def test_invalid_utf8_json_is_still_scanned():
    body = b'{"a": "\xff\xfe\xc3(", "b": "\xed\xa0\x80 ' + TOKEN.encode() + b'", "c": "\\ud800"}'
    ext = http(body=body, headers=[("Content-Type", "application/json; charset=utf-8")])
    assert found(ext) == [("body:json:$.b", TOKEN)]
    assert not ext.unscannable


def test_corrupt_content_encoding_is_reported_and_raw_scanned():
    ext = http(body=b"plain text, not gzip: " + TOKEN.encode(), headers=[("Content-Encoding", "gzip")])
    assert _reasons(ext) == {("body", "corrupt_encoding")}
    assert found(ext) == [("body:raw", TOKEN)]
    trailing = gzip.compress(b"ok ") + b"garbage " + TOKEN.encode()
    ext = http(body=trailing, headers=[("Content-Encoding", "gzip")])
    assert ("body", "corrupt_encoding") in _reasons(ext) and ("body:raw", TOKEN) in found(ext)
    bad_br = http(body=b"\x00\x01garbage " + TOKEN.encode(), headers=[("Content-Encoding", "br")])
    assert _reasons(bad_br) & {("body", "corrupt_encoding"), ("body", "truncated")}
    assert found(bad_br) == [("body:raw", TOKEN)]


def test_unsupported_and_too_many_codings():
    ext = http(body=TOKEN.encode(), headers=[("Content-Encoding", "compress")])
    assert _reasons(ext) == {("body", "unsupported_encoding")} and found(ext) == [("body:raw", TOKEN)]
    body = TOKEN.encode()
    for _ in range(5):
        body = gzip.compress(body)
    ext = http(body=body, headers=[("Content-Encoding", ", ".join(["gzip"] * 5))])
    assert ("body", "depth") in _reasons(ext)
    ok = http(body=body, headers=[("Content-Encoding", ", ".join(["gzip"] * 5))], limits=Limits(max_coding_layers=5))
    assert found(ok) == [("body", TOKEN)]


def test_truncated_gzip_and_brotli():
    text = (TOKEN + " " + "words and more words " * 5000).encode()
    ext = http(body=gzip.compress(text)[:-200], headers=[("Content-Encoding", "gzip")])
    assert _reasons(ext) == {("body", "truncated")} and found(ext) == [("body", TOKEN)]
    ext = http(body=brotli.compress(text)[:-50], headers=[("Content-Encoding", "br")])
    assert ("body", "truncated") in _reasons(ext) or ("body", "corrupt_encoding") in _reasons(ext)


def test_base64_depth():
    blob = "note: " + TOKEN + " " + "padding text " * 3
    for _ in range(3):
        blob = b64(blob)
    ext = http(body=json.dumps({"x": blob}).encode(), headers=[("Content-Type", "application/json")])
    assert ("body:json:base64:base64:base64", "depth") in _reasons(ext)
    assert found(ext) == []
    ext = http(body=json.dumps({"x": blob}).encode(), headers=[("Content-Type", "application/json")],
               limits=Limits(max_base64_depth=3))
    assert [t for _, t in found(ext)] == [TOKEN] and not ext.unscannable


def test_archive_depth():
    data = make_zip({"t.txt": TOKEN})
    for i in range(4):
        data = make_zip({f"l{i}.zip": data})
    ext = http(body=data)
    assert [r for _, r in _reasons(ext)] == ["depth"]
    assert found(ext) == []
    assert [t for _, t in found(http(body=data, limits=Limits(max_archive_depth=5)))] == [TOKEN]


def test_broken_archives_are_reported_and_raw_scanned():
    stored = make_zip({"k.txt": "key " + TOKEN + " end", "other.txt": "x" * 5000}, method=zipfile.ZIP_STORED)
    ext = http(body=stored[:len(stored) // 2])  # no central directory
    # the local headers are read as a streaming unzip would (the member before the cut), and the raw bytes too
    assert ("body", "truncated") in _reasons(ext) and found(ext) == [("body/k.txt", TOKEN), ("body", TOKEN)]
    crc = bytearray(make_zip({"a.txt": "hello " * 100}))
    crc[crc.find(b"PK\x03\x04") + 30 + 5 + 3] ^= 0xFF  # flip a byte of the compressed data
    ext = http(body=bytes(crc))
    assert {r for _, r in _reasons(ext)} <= {"malformed", "corrupt_encoding", "truncated"} and ext.unscannable
    tar = make_tar({"a.txt": b"x" * 5000, "b.txt": TOKEN.encode()})
    ext = http(body=tar[:3000])
    assert ("body", "truncated") in _reasons(ext) or ("body/a.txt", "truncated") in _reasons(ext)


def test_decode_content_encoding_says_why_it_stopped(zeros_gzip):
    limits = Limits()
    assert decode_content_encoding(brotli.compress(gzip.compress(b"abc")), "gzip, br", limits)[:3] == (b"abc", None, 2)
    assert decode_content_encoding(b"abc", "identity", limits)[:3] == (b"abc", None, 0)
    for body, coding, reason in ((zeros_gzip, "gzip", "bomb"), (b"nope", "gzip", "corrupt_encoding"),
                                 (b"x", "compress", "unsupported_encoding"),
                                 (gzip.compress(bytes(range(256)) * 40)[:-30], "gzip", "truncated")):
        assert decode_content_encoding(body, coding, limits).reason == reason
    over = decode_content_encoding(gzip.compress(b"y" * 5000), "gzip", Limits(max_inspect_bytes=100))
    assert over.reason == "too_large" and over.data == b"y" * 100 and over.decoded == 100
    bomb = decode_content_encoding(zeros_gzip, "gzip", limits)
    assert len(bomb.data) == limits.expansion_cap(len(zeros_gzip)) and bomb.data.startswith(TOKEN.encode())
    inner = decode_content_encoding(brotli.compress(b"not gzip " + TOKEN.encode()), "gzip, br", limits)
    assert inner.reason == "corrupt_encoding" and inner.raw == b"not gzip " + TOKEN.encode()


def test_internal_error_is_a_reason_and_leaks_nothing(monkeypatch, caplog):
    import sys
    dispatch = sys.modules["dlproxy.extract.route"]

    def broken(*args, **kwargs):
        raise ValueError(f"cannot parse {TOKEN}")

    monkeypatch.setattr(dispatch, "extract_json", broken)
    with caplog.at_level(logging.DEBUG):
        ext = http(body=json.dumps({"k": TOKEN}).encode(), headers=[("Content-Type", "application/json")])
    assert _reasons(ext) == {("body", "error")}
    assert TOKEN not in caplog.text
    assert all(u.reason in REASONS for u in ext.unscannable)


def test_top_level_error_is_caught(monkeypatch, caplog):
    import dlproxy.extract as extract

    def broken(*args, **kwargs):
        raise RuntimeError(TOKEN)

    monkeypatch.setattr(extract, "extract_headers", broken)
    with caplog.at_level(logging.DEBUG):
        ext = extract_http(url=None, headers=[("X", TOKEN)], body=None, limits=Limits())
    assert _reasons(ext) == {("header", "error")} and TOKEN not in caplog.text
    assert extract_file("x.bin", b"\x00" * 10, Limits()).unscannable == []


def test_locate_never_raises():
    def bad(start, end):
        raise KeyError(TOKEN)

    assert Segment("body:json", b"x", bad).locate(0, 1) == "body:json"
    assert Segment("body", b"x").locate(5) == "body"


def test_base64_blobs_are_bounded_by_budget():
    text = b64("config\n" * 50_000 + TOKEN)
    ext = http(body=text.encode(), headers=[("Content-Type", "text/plain")], limits=Limits(max_inspect_bytes=200_000))
    assert ext.decoded_bytes <= 200_000
    assert ("body:base64", "too_large") in _reasons(ext)


def test_base64_binary_is_not_decoded_further():
    """Binary with no run of 20 printable characters (compressed image data, say) holds no token: not decoded."""
    blob = base64.b64encode(random.Random(3).randbytes(100_000)).decode()
    ext = http(body=json.dumps({"image": blob}).encode(), headers=[("Content-Type", "application/json")])
    assert [s.location for s in ext.segments] == ["header", "body:json"] and not ext.unscannable


def test_base64_binary_with_text_inside_is_scanned_as_bytes():
    """A sqlite page or an image's metadata: binary, but a receiver reads the printable runs in it."""
    rng = random.Random(4)
    blob = base64.b64encode(rng.randbytes(3000) + b"\x00" + TOKEN.encode() + b"\x00" + rng.randbytes(3000)).decode()
    ext = http(body=json.dumps({"file": blob}).encode(), headers=[("Content-Type", "application/json")])
    assert any(TOKEN.encode() in s.data for s in ext.segments if s.location.endswith(":base64"))


def test_random_data_raises_no_false_alarms():
    """Encrypted-looking uploads and base64 IDs/hashes must not be reported (on_error would block them)."""
    import random
    rng = random.Random(3)
    for _ in range(300):
        body = rng.randbytes(rng.randint(1, 3000))
        ext = http(body=body, headers=[("Content-Type", "application/octet-stream")])
        assert not ext.unscannable
    ids = [base64.b64encode(rng.randbytes(rng.choice((18, 24, 32, 48)))).decode() for _ in range(3000)]
    ext = http(body=json.dumps({"ids": ids}).encode(), headers=[("Content-Type", "application/json")])
    assert not ext.unscannable and found(ext) == []


def test_nested_multipart_depth():
    body = b"T=" + TOKEN.encode()
    for i in range(5):
        b = f"b{i}".encode()
        body = (b"--" + b + b"\r\nContent-Type: " + (b"multipart/mixed; boundary=b" + str(i - 1).encode() if i else
                b"text/plain") + b"\r\nContent-Disposition: form-data; name=\"p\"\r\n\r\n" + body + b"\r\n--" + b + b"--")
    ext = http(body=body, headers=[("Content-Type", "multipart/form-data; boundary=b4")])
    assert _reasons(ext) == {("body:multipart:p:multipart:p:multipart:p", "depth")}
    assert [t for _, t in found(ext)] == [TOKEN]  # past the limit the part is still scanned as raw text
    ext = http(body=body, headers=[("Content-Type", "multipart/form-data; boundary=b4")],
               limits=Limits(max_archive_depth=5))
    assert [t for _, t in found(ext)] == [TOKEN] and not ext.unscannable


def test_zip_declared_size_bomb():
    """A central directory that declares a 4 GB member is a bomb before a byte is inflated."""
    data = bytearray(make_zip({"big.bin": bytes(MiB), "ok.txt": TOKEN}))
    cd = data.find(b"PK\x01\x02")
    assert data[cd + 46:cd + 53] == b"big.bin"
    data[cd + 24:cd + 28] = (4_000_000_000).to_bytes(4, "little")  # uncompressed size
    ext = http(body=bytes(data))
    assert ("body/big.bin", "bomb") in _reasons(ext)
    assert ("body/ok.txt", TOKEN) in found(ext)

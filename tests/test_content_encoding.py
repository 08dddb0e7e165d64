"""Content-Encoding decoding, buffered and streamed, on the same inputs.

Each case runs through the buffered entry point (the whole body at once, within a Limits budget) and through the
incremental decoder (the body in random small chunks, as the stream guard feeds it). The outcome is the decoded
bytes or the reason the body cannot be inspected (the reason strings the incidents and metrics carry).

Where the two paths disagree the case names both outcomes (`Both(buffered=..., streamed=...)`).
"""

from __future__ import annotations

import gzip
import random
import zlib
from typing import NamedTuple

import brotli
import pytest
import zstandard

from dlproxy.extract import ExtractionError, Limits, decode_content_encoding
from dlproxy.inspect.stream import DecodeError, StreamDecoder

MiB = 1 << 20
RATIO = 100  # the default max_expansion_ratio of both paths
PLAIN = b"line of text with a ghp_ lookalike and numbers 1234567890\n" * 400


# --- the two paths -------------------------------------------------------------------------------------------------


def buffered(body: bytes, header: str, limits: Limits | None = None) -> bytes | str:
    try:
        return decode_content_encoding(body, header, limits or Limits())
    except ExtractionError as e:
        return str(e.reason)


def streamed(body: bytes, header: str, seed: int | None = 0) -> bytes | str:
    """`seed` None: the whole body in one feed; else random chunks of 1..64 bytes."""
    try:
        decoder = StreamDecoder.for_header(header, RATIO)
        if decoder is None:
            return body
        out = []
        if seed is None:
            chunks = [body] if body else []
        else:
            rng, chunks, pos = random.Random(seed), [], 0
            while pos < len(body):
                n = rng.randint(1, 64)
                chunks.append(body[pos:pos + n])
                pos += n
        for c in chunks:
            out += decoder.feed(c)
        out += decoder.finish()
        return b"".join(out)
    except DecodeError as e:
        return str(e.reason)


# --- inputs --------------------------------------------------------------------------------------------------------


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def zstd(data: bytes, **params) -> bytes:
    if not params:
        return zstandard.ZstdCompressor().compress(data)
    c = zstandard.ZstdCompressor(compression_params=zstandard.ZstdCompressionParameters(**params)).compressobj()
    return c.compress(data) + c.flush()


def huffman_gzip(data: bytes) -> bytes:
    """gzip without string matching: about 8x on a run of one byte, whatever its length."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31, 9, zlib.Z_HUFFMAN_ONLY)
    return c.compress(data) + c.flush()


def gzip_padded_to(data: bytes, wire_len: int) -> bytes:
    """A gzip member of exactly `wire_len` bytes: the file name field (FNAME) takes up the difference."""
    body = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = body.compress(data) + body.flush()
    trailer = zlib.crc32(data).to_bytes(4, "little") + (len(data) & 0xFFFFFFFF).to_bytes(4, "little")
    name_len = wire_len - 10 - len(deflated) - len(trailer) - 1
    assert name_len > 0
    header = b"\x1f\x8b\x08\x08" + bytes(4) + b"\x00\xff"  # FLG.FNAME set
    return header + b"n" * name_len + b"\x00" + deflated + trailer


def stacked(data: bytes, n: int) -> bytes:
    for _ in range(n):
        data = gzip.compress(data)
    return data


class Both(NamedTuple):
    buffered: bytes | str
    streamed: bytes | str


AT_RATIO = 2_100_000  # decoded bytes; the wire is exactly AT_RATIO / RATIO bytes
TRUNCATED = "truncated"
CORRUPT = "corrupt_encoding"
UNSUPPORTED = "unsupported_encoding"
BOMB = "bomb"
DEPTH = "depth"

# (id, Content-Encoding, wire body, expected outcome: bytes, a reason, or Both(...) where the paths differ)
CASES = [
    ("gzip", "gzip", lambda: gzip.compress(PLAIN), PLAIN),
    ("x-gzip", "x-gzip", lambda: gzip.compress(PLAIN), PLAIN),
    ("deflate-zlib", "deflate", lambda: zlib.compress(PLAIN), PLAIN),
    ("deflate-raw", "deflate", lambda: deflate_raw(PLAIN), PLAIN),
    ("br", "br", lambda: brotli.compress(PLAIN), PLAIN),
    ("zstd", "zstd", lambda: zstd(PLAIN), PLAIN),
    ("identity", "identity", lambda: PLAIN, PLAIN),
    ("empty-header", "", lambda: PLAIN, PLAIN),
    ("gzip-then-br", "gzip, br", lambda: brotli.compress(gzip.compress(PLAIN)), PLAIN),
    ("case-and-space", " GZIP ,  Br ", lambda: brotli.compress(gzip.compress(PLAIN)), PLAIN),
    ("identity-in-list", "identity, gzip,, none", lambda: gzip.compress(PLAIN), PLAIN),
    ("zlib-labelled-gzip", "gzip", lambda: zlib.compress(PLAIN), PLAIN),
    ("gzip-members", "gzip", lambda: gzip.compress(b"harmless ") + gzip.compress(b"second member"),
     b"harmless second member"),
    ("zstd-frames", "zstd", lambda: zstd(b"one ") + zstd(b"two"), b"one two"),
    ("gzip-truncated", "gzip", lambda: gzip.compress(PLAIN)[:-30], TRUNCATED),
    ("deflate-truncated", "deflate", lambda: zlib.compress(PLAIN)[:-30], TRUNCATED),
    ("br-truncated", "br", lambda: brotli.compress(PLAIN)[:-30], TRUNCATED),
    ("zstd-truncated", "zstd", lambda: zstd(PLAIN)[:-30], TRUNCATED),
    ("gzip-garbage", "gzip", lambda: b"this is not gzip at all", CORRUPT),
    ("deflate-garbage", "deflate", lambda: b"\xff\xff\xff not deflate", CORRUPT),
    ("br-garbage", "br", lambda: b"\xff\xff\xff\xff not brotli", CORRUPT),
    ("zstd-garbage", "zstd", lambda: b"\x28\xb5\x2f\xfd not zstd", CORRUPT),
    ("gzip-trailing-garbage", "gzip", lambda: gzip.compress(PLAIN) + b"garbage", CORRUPT),
    ("gzip-trailing-crlf", "gzip", lambda: gzip.compress(PLAIN) + b"\r\n", CORRUPT),
    ("br-trailing-nul", "br", lambda: brotli.compress(PLAIN) + bytes(4), CORRUPT),
    ("gzip-trailing-nul", "gzip", lambda: gzip.compress(PLAIN) + bytes(16), Both(PLAIN, CORRUPT)),
    ("deflate-trailing-nul", "deflate", lambda: zlib.compress(PLAIN) + bytes(16), PLAIN),
    ("deflate-trailing-crlf", "deflate", lambda: zlib.compress(PLAIN) + b"\r\n", Both(CORRUPT, PLAIN)),
    ("zstd-trailing-nul", "zstd", lambda: zstd(PLAIN) + bytes(16), Both(PLAIN, CORRUPT)),
    ("unknown", "compress", lambda: PLAIN, UNSUPPORTED),
    ("unknown-in-list", "gzip, rot13", lambda: gzip.compress(PLAIN), UNSUPPORTED),
    ("empty-gzip", "gzip", lambda: b"", Both(TRUNCATED, b"")),
    ("empty-deflate", "deflate", lambda: b"", Both(TRUNCATED, b"")),
    ("empty-br", "br", lambda: b"", TRUNCATED),
    ("empty-zstd", "zstd", lambda: b"", Both(TRUNCATED, b"")),
    ("gzip-bomb", "gzip", lambda: gzip.compress(bytes(5 * MiB), 1), BOMB),
    ("br-bomb", "br", lambda: brotli.compress(bytes(5 * MiB), quality=1), BOMB),
    ("zstd-bomb", "zstd", lambda: zstd(bytes(5 * MiB)), BOMB),
    ("five-layers", "gzip, gzip, gzip, gzip, gzip", lambda: stacked(PLAIN, 5), Both(DEPTH, PLAIN)),
    ("four-layers", "gzip, gzip, gzip, gzip", lambda: stacked(PLAIN, 4), PLAIN),
    # every layer 8x, together over 400x the wire
    ("stacked-bomb", "gzip, gzip, gzip", lambda: huffman_gzip(huffman_gzip(huffman_gzip(bytes(2 * MiB)))),
     Both(bytes(2 * MiB), BOMB)),
    ("zstd-window-over-8mb", "zstd", lambda: zstd(PLAIN, window_log=24, write_content_size=False),
     Both(CORRUPT, PLAIN)),
]


def _expected(expected, path: str):
    if isinstance(expected, Both):
        return getattr(expected, path)
    return expected


def _show(outcome) -> str:
    return f"{len(outcome)} bytes" if isinstance(outcome, bytes) else outcome


@pytest.mark.parametrize("header,wire,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_buffered(header, wire, expected):
    got = buffered(wire(), header)
    assert _show(got) == _show(_expected(expected, "buffered")) and got == _expected(expected, "buffered")


@pytest.mark.parametrize("header,wire,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", [0, 1, None])
def test_streamed(header, wire, expected, seed):
    got = streamed(wire(), header, seed)
    assert _show(got) == _show(_expected(expected, "streamed")) and got == _expected(expected, "streamed")


def test_ratio_boundary_is_the_same_for_both():
    """Decoded bytes may reach max_expansion_ratio x the wire bytes; one byte more is a bomb (past a 1 MiB floor)."""
    wire_len = AT_RATIO // RATIO
    at = gzip_padded_to(b"a" * AT_RATIO, wire_len)
    over = gzip_padded_to(b"a" * (AT_RATIO + 1), wire_len)
    assert len(at) == len(over) == wire_len
    assert buffered(at, "gzip") == streamed(at, "gzip", None) == b"a" * AT_RATIO
    assert buffered(over, "gzip") == streamed(over, "gzip", None) == BOMB
    floor = gzip.compress(bytes(MiB))  # far over the ratio, but not past the floor
    assert buffered(floor, "gzip") == streamed(floor, "gzip") == bytes(MiB)
    assert buffered(gzip.compress(bytes(MiB + 1)), "gzip") == streamed(gzip.compress(bytes(MiB + 1)), "gzip") == BOMB


def test_buffered_budget_is_too_large():
    body = gzip.compress(b"y" * 5000)
    assert buffered(body, "gzip", Limits(max_inspect_bytes=100)) == "too_large"
    assert buffered(body, "gzip", Limits(max_inspect_bytes=5000)) == b"y" * 5000

"""Content-Encoding decoding, buffered and streamed, on the same inputs.

Each case runs through the buffered entry point (the whole body at once, within a Limits budget) and through the
incremental decoder (the body in random small chunks, as the stream guard feeds it). The outcome is the decoded
bytes or the reason the body cannot be inspected (the reason strings the incidents and metrics carry). Both paths
are one decoder family now (extract.encoding.ContentDecoder); they used to be two, and where the two disagreed
this is what was decided:

- trailing bytes after the last gzip member, zstd frame or deflate stream: NUL padding is accepted (gzip(1) does
  the same), anything else is corrupt_encoding (the streamed path took trailing NULs after gzip/zstd for a bad
  next member, and CR/LF after deflate as padding; the buffered path only ever accepted NULs);
- an empty body under any coding is empty, not truncated (the buffered path said truncated; the streamed path did
  too for br): there is nothing to inspect, and HEAD/204/304 answers carry the header with no body;
- more stacked codings than max_coding_layers is `depth` on both paths (the streamed path decoded any number);
- the expansion ratio bounds every layer's output against the wire bytes (the buffered path measured each layer
  against its own input, so layers of 8x each passed at 512x the wire; the streamed path measured only the last);
- zstd windows above 8 MB (RFC 9659's limit for the content coding) are corrupt_encoding on both paths (the
  streamed path accepted up to 128 MB).

What stays different by nature: a streamed body is judged on the wire bytes seen so far, so a body whose start
expands past the ratio is a bomb there even if its end would bring the average down; the buffered path has a
budget (too_large), a stream has its scanner's bounded window instead.
"""

from __future__ import annotations

import gzip
import random
import zlib
from typing import NamedTuple

import brotli
import pytest
import zstandard

from dlproxy.extract import Limits, decode_content_encoding
from dlproxy.extract.encoding import PIECE, ContentDecoder, DecodeError, decode

MiB = 1 << 20
RATIO = 100  # the default max_expansion_ratio of both paths
PLAIN = b"line of text with a ghp_ lookalike and numbers 1234567890\n" * 400


# --- the two paths -------------------------------------------------------------------------------------------------


def buffered(body: bytes, header: str, limits: Limits | None = None) -> bytes | str:
    res = decode_content_encoding(body, header, limits or Limits())
    return res.data if res.reason is None else str(res.reason)


def streamed(body: bytes, header: str, seed: int | None = 0) -> bytes | str:
    """`seed` None: the whole body in one feed; else random chunks of 1..64 bytes."""
    try:
        decoder = ContentDecoder.for_header(header, Limits(max_expansion_ratio=RATIO))
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


def aws_chunked(data: bytes, size: int = 700, trailer: bytes = b"", sig: bool = True) -> bytes:
    """S3's aws-chunked framing: `hex-size;chunk-signature=…` CRLF data CRLF …, a zero chunk, trailer lines."""
    ext = b";chunk-signature=" + b"0" * 64 if sig else b""
    out = b"".join(b"%x" % len(data[i:i + size]) + ext + b"\r\n" + data[i:i + size] + b"\r\n"
                   for i in range(0, len(data), size))
    return out + b"0" + ext + b"\r\n" + trailer + b"\r\n"


def stacked(data: bytes, n: int) -> bytes:
    for _ in range(n):
        data = gzip.compress(data)
    return data


class Both(NamedTuple):
    """Outcomes that differ by nature: the whole body at once (buffered, or streamed in one feed) vs small chunks."""

    whole: bytes | str
    chunked: bytes | str


FRONT_LOADED = bytes(3 * MiB) + random.Random(7).randbytes(MiB)  # 3 MiB of zeros, then 1 MiB that does not compress


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
    ("gzip-trailing-nul", "gzip", lambda: gzip.compress(PLAIN) + bytes(16), PLAIN),
    ("deflate-trailing-nul", "deflate", lambda: zlib.compress(PLAIN) + bytes(16), PLAIN),
    ("deflate-trailing-crlf", "deflate", lambda: zlib.compress(PLAIN) + b"\r\n", CORRUPT),
    ("zstd-trailing-nul", "zstd", lambda: zstd(PLAIN) + bytes(16), PLAIN),
    ("unknown", "compress", lambda: PLAIN, UNSUPPORTED),
    ("unknown-in-list", "gzip, rot13", lambda: gzip.compress(PLAIN), UNSUPPORTED),
    ("empty-gzip", "gzip", lambda: b"", b""),
    ("empty-deflate", "deflate", lambda: b"", b""),
    ("empty-br", "br", lambda: b"", b""),
    ("empty-zstd", "zstd", lambda: b"", b""),
    ("gzip-bomb", "gzip", lambda: gzip.compress(bytes(5 * MiB), 1), BOMB),
    ("br-bomb", "br", lambda: brotli.compress(bytes(5 * MiB), quality=1), BOMB),
    ("zstd-bomb", "zstd", lambda: zstd(bytes(5 * MiB)), BOMB),
    ("five-layers", "gzip, gzip, gzip, gzip, gzip", lambda: stacked(PLAIN, 5), DEPTH),
    ("four-layers", "gzip, gzip, gzip, gzip", lambda: stacked(PLAIN, 4), PLAIN),
    # every layer 8x, together over 400x the wire
    ("stacked-bomb", "gzip, gzip, gzip", lambda: huffman_gzip(huffman_gzip(huffman_gzip(bytes(2 * MiB)))),
     BOMB),
    # 4x on average, but its first wire bytes expand far past the ratio: a stream cannot wait for the rest
    ("front-loaded", "gzip", lambda: gzip.compress(FRONT_LOADED), Both(FRONT_LOADED, BOMB)),
    ("aws-chunked", "aws-chunked", lambda: aws_chunked(PLAIN), PLAIN),
    ("aws-chunked-unsigned-trailer", "aws-chunked", lambda: aws_chunked(PLAIN, 8192, b"x-amz-checksum-crc32:AAAA\r\n",
                                                                       sig=False), PLAIN + b"x-amz-checksum-crc32:AAAA\r\n"),
    ("aws-chunked-gzip-s3-trailer", "aws-chunked,gzip", lambda: aws_chunked(gzip.compress(PLAIN), trailer=(
        b"x-amz-checksum-crc32:AAAA\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n")), PLAIN),
    ("aws-chunked-gzip-other-trailer", "aws-chunked,gzip", lambda: aws_chunked(gzip.compress(PLAIN), trailer=(
        b"x-note: ghp_hidden_in_a_trailer_line\r\n")), CORRUPT),
    ("aws-chunked-data-after-end", "aws-chunked", lambda: aws_chunked(PLAIN) + b"more", CORRUPT),
    ("aws-chunked-then-gzip", "aws-chunked,gzip", lambda: aws_chunked(gzip.compress(PLAIN)), PLAIN),
    ("aws-chunked-truncated", "aws-chunked", lambda: aws_chunked(PLAIN)[:-100], TRUNCATED),
    ("aws-chunked-bad-size", "aws-chunked", lambda: b"zz;chunk-signature=0\r\nhello\r\n0\r\n\r\n", CORRUPT),
    ("aws-chunked-size-overrun", "aws-chunked", lambda: b"2\r\nhello\r\n0\r\n\r\n", CORRUPT),
    ("zstd-window-over-8mb", "zstd", lambda: zstd(PLAIN, window_log=24, write_content_size=False),
     CORRUPT),
]


def _expected(expected, chunked: bool):
    if isinstance(expected, Both):
        return expected.chunked if chunked else expected.whole
    return expected


def _show(outcome) -> str:
    return f"{len(outcome)} bytes" if isinstance(outcome, bytes) else outcome


@pytest.mark.parametrize("header,wire,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_buffered(header, wire, expected):
    got = buffered(wire(), header)
    assert _show(got) == _show(_expected(expected, False)) and got == _expected(expected, False)


@pytest.mark.parametrize("header,wire,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("seed", [0, 1, None])
def test_streamed(header, wire, expected, seed):
    got = streamed(wire(), header, seed)
    assert _show(got) == _show(_expected(expected, seed is not None)) and got == _expected(expected, seed is not None)


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


def test_the_prefix_before_a_limit_is_decoded_exactly():
    body = gzip.compress(b"secret-free prefix " + bytes(5 * MiB))
    limits = Limits()
    decoder = ContentDecoder.for_header("gzip", limits)
    pieces = []
    with pytest.raises(DecodeError) as e:
        for c in (body[i:i + 1000] for i in range(0, len(body), 1000)):
            pieces += decoder.feed(c)
    assert e.value.reason == BOMB and str(e.value) == BOMB
    assert sum(map(len, pieces)) == decoder.decoded == limits.expansion_cap(decoder.wire)
    res = decode_content_encoding(body, "gzip", Limits(max_expansion_ratio=10**4), cap=2 * MiB)
    assert (res.reason, len(res.data), res.decoded) == ("too_large", 2 * MiB, 2 * MiB)


def test_identity_needs_no_decoder_and_unknown_or_deep_fails_at_the_header():
    for header in (None, "", "identity", " identity ", "none, identity"):
        assert ContentDecoder.for_header(header, Limits()) is None
    for header, reason in (("rot13", UNSUPPORTED), ("gzip, compress", UNSUPPORTED), ("gzip, " * 4 + "br", DEPTH)):
        with pytest.raises(DecodeError) as e:
            ContentDecoder.for_header(header, Limits())
        assert e.value.reason == reason
    assert ContentDecoder.for_header("gzip, " * 4 + "br", Limits(max_coding_layers=5)) is not None


@pytest.mark.parametrize("header,encode", [("gzip", gzip.compress), ("br", brotli.compress), ("zstd", zstd),
                                           ("deflate, gzip", lambda d: gzip.compress(zlib.compress(d)))])
def test_decoded_pieces_are_bounded(header, encode):
    data = b"y" * 5_000_000 + PLAIN
    decoder = ContentDecoder.for_header(header, Limits(max_expansion_ratio=10**6))
    pieces = list(decoder.feed(encode(data))) + list(decoder.finish())
    assert b"".join(pieces) == data and max(map(len, pieces)) <= PIECE


class _Counting:
    """A zlib decompressor that counts the bytes it is handed and the bytes it copies out of its input."""

    def __init__(self, tally: dict, real, *args):
        self._d = real(*args)
        self._tally = tally
        tally["decompressors"] += 1

    def decompress(self, data, max_length=0):
        out = self._d.decompress(data, max_length)
        self._tally["inflated"] += len(out)
        self._tally["fed"] += len(data)
        self._tally["copied"] += len(self._d.unconsumed_tail) + len(self._d.unused_data)
        return out

    def __getattr__(self, name):
        return getattr(self._d, name)


@pytest.mark.parametrize("path", ["buffered", "streamed-whole", "streamed-chunked"])
def test_many_tiny_gzip_members_cost_linear_work(monkeypatch, path):
    """One decompressor per member, each member inflated once, and what zlib is handed or copies grows with the
    body, never faster."""
    members = 20_000
    body = gzip.compress(b"a ") * members + gzip.compress(b"end")
    tally = {"decompressors": 0, "inflated": 0, "fed": 0, "copied": 0}
    real = zlib.decompressobj
    monkeypatch.setattr(zlib, "decompressobj", lambda *a: _Counting(tally, real, *a))
    if path == "buffered":
        out = buffered(body, "gzip")
    else:
        out = streamed(body, "gzip", seed=None if path == "streamed-whole" else 3)
    assert out == b"a " * members + b"end"
    assert tally["decompressors"] == members + 1 and tally["inflated"] == len(out)
    assert tally["fed"] <= 4 * len(body) + (1 << 18)  # re-slicing from each member's end: thousands of times this
    assert tally["copied"] <= 3 * len(body) + (1 << 18)


def test_files_decode_every_stream_and_stop_at_the_cap():
    import bz2
    import lzma

    two = bz2.compress(b"one ") + bz2.compress(b"two") + bytes(8)
    assert decode("bz2", two, 100) == (b"one two", None)
    assert decode("xz", lzma.compress(b"x" * 500), 100) == (b"x" * 100, "over")
    assert decode("xz", lzma.compress(b"x" * 500)[:-20], 1000)[1] == TRUNCATED
    assert decode("bz2", two + b"junk", 100) == (b"one two", CORRUPT)
    assert decode("zlib", zlib.compress(b"pdf text"), 100) == (b"pdf text", None)
    assert decode("rar", b"Rar!", 100) == (b"", UNSUPPORTED)


def test_gzip_names_are_read_from_every_member_header():
    """FNAME/FCOMMENT are text a decompressor skips: read from each member's header (FEXTRA skipped first)."""
    import io

    def member(name: bytes, comment: bytes = b"", extra: bytes = b"") -> bytes:
        flags = 0x08 | (0x10 if comment else 0) | (0x04 if extra else 0)
        head = b"\x1f\x8b\x08" + bytes([flags]) + bytes(4) + b"\x00\xff"
        if extra:
            head += len(extra).to_bytes(2, "little") + extra
        body = gzip.compress(b"data")[10:]  # the deflate stream and trailer of a name-less member
        return head + name + b"\x00" + (comment + b"\x00" if comment else b"") + body

    from dlproxy.extract.encoding import gzip_names

    wire = gzip.compress(b"first") + member(b"b.txt", b"a comment", extra=b"\x1f\x8b\x08\x08xx")
    assert gzip_names(wire) == b"b.txt\na comment"
    buf = io.BytesIO()
    with gzip.GzipFile(filename="named.txt", fileobj=buf, mode="wb") as g:
        g.write(b"x")
    assert gzip_names(buf.getvalue()) == b"named.txt"
    assert gzip_names(b"\x1f\x8b\x08\x08" + bytes(6) + b"n" * 5000) == b""  # no terminator within bounds
    assert gzip_names(member(b"x") * 100).count(b"x") == 64  # at most 64 headers are read

    # a streamed body: the same fields, from each member's header as it arrives, split at any byte
    wire = member(b"a.txt", extra=b"\x00" * 300) + gzip.compress(b"2") + member(b"c.txt", b"last one")
    for step in (1, 3, 11, len(wire)):
        decoder = ContentDecoder(["gzip"], None)
        out = b""
        for i in range(0, len(wire), step):
            out += b"".join(decoder.feed(wire[i:i + step]))
        out += b"".join(decoder.finish())
        assert out == b"data2data" and decoder.names == [b"a.txt", b"c.txt", b"last one"], step
    zlib_under_gzip = ContentDecoder(["gzip"], None)
    assert b"".join(zlib_under_gzip.feed(zlib.compress(b"z"))) == b"z" and zlib_under_gzip.names == []

"""Bounded decoders: Content-Encoding (gzip incl. multi-member, deflate, br, zstd, stacked lists) and
compressed files (gzip, bz2, xz, zstd).

Every decoder feeds its input in slices and asks for at most `cap + 1` output bytes, so a bomb stops at
the cap instead of filling memory. Unlike mitmproxy's decoder this one reads every gzip member (a second
member is a known evasion), rejects trailing garbage, and says why it stopped: (output, status) with
status None (complete), OVER (cap reached; output is the first `cap` bytes), CORRUPT or TRUNCATED (output
is what decoded before the problem).
"""

from __future__ import annotations

import bz2
import lzma
import zlib

import brotli

try:  # Python 3.14 stdlib; mitmproxy depends on the backport for older Pythons
    from compression import zstd
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd

from .core import CORRUPT_ENCODING, DEPTH, TRUNCATED, UNSUPPORTED_ENCODING, ExtractionError, Limits

OVER = "over"
CORRUPT = CORRUPT_ENCODING
_FEED = 1 << 18  # input slice per decompressor call

GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

CODING_ALIASES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "br": "br", "zstd": "zstd"}
HTTP_ZSTD_WINDOW = 1 << 23  # RFC 9659: content-coding zstd uses windows of at most 8 MB
FILE_ZSTD_WINDOW = 1 << 27
XZ_MEMLIMIT = 1 << 27
_WINDOW_LOG_MAX = zstd.DecompressionParameter.window_log_max


def sniff_container(data: bytes) -> str | None:
    """"zip" | "tar" | "gzip" | "bz2" | "xz" | "zstd" | "zlib" | "lzma" by magic bytes, strict enough that random
    binary (an encrypted blob, a base64-decoded ID) practically never passes for a container. zlib and lzma
    headers are short: data that merely starts like them and does not decode is scanned as it is, unreported."""
    head = data[:10]
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip"
    if head.startswith(b"\x1f\x8b\x08") and len(head) >= 4 and head[3] < 0x20:  # deflate, no reserved flags
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZ2_MAGIC) and head[3:4].isdigit() and head[4:10] == b"1AY&SY":
        return "bz2"
    if data[257:262] == b"ustar":
        return "tar"
    if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):  # zlib header (CMF, FLG)
        return "zlib"
    if head[:3] == b"\x5d\x00\x00" and head[3:5] in (b"\x80\x00", b"\x00\x01", b"\x00\x02", b"\x00\x04",
                                                     b"\x00\x08", b"\x00\x10", b"\x00\x20", b"\x00\x40"):
        return "lzma"  # LZMA "alone": properties 0x5d, a power-of-two dictionary size
    return None


def parse_codings(header: str) -> list[str] | None:
    """`gzip, br` -> ["gzip", "br"] in the order applied; identity dropped; None if one is unknown."""
    codings = []
    for token in header.split(","):
        token = token.strip().lower()
        if not token or token in ("identity", "none"):
            continue
        coding = CODING_ALIASES.get(token)
        if coding is None:
            return None
        codings.append(coding)
    return codings


def decode(coding: str, data: bytes, cap: int, zstd_window: int = HTTP_ZSTD_WINDOW) -> tuple[bytes, str | None]:
    """Decode one layer: "gzip" | "deflate" | "br" | "zstd" | "bz2" | "xz"."""
    if coding == "gzip":
        return _zlib(data, cap, 47, gzip_members=True)
    if coding == "deflate":
        out, status = _zlib(data, cap, 15, gzip_members=False)
        if status == CORRUPT and not out:  # many servers send raw deflate under this name
            return _zlib(data, cap, -15, gzip_members=False)
        return out, status
    if coding == "br":
        return _brotli(data, cap)
    if coding == "zstd":
        window_log = zstd_window.bit_length() - 1
        return _members(lambda: zstd.ZstdDecompressor(options={_WINDOW_LOG_MAX: window_log}), ZSTD_MAGIC,
                        data, cap)
    if coding == "bz2":
        return _members(bz2.BZ2Decompressor, BZ2_MAGIC, data, cap)
    if coding == "xz":
        return _members(lambda: lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT), XZ_MAGIC, data, cap)
    if coding == "zlib":  # a zlib stream with no Content-Encoding (a file, an API's compressed field)
        return _zlib(data, cap, 15, gzip_members=False)
    if coding == "lzma":  # .lzma ("alone") files
        return _members(lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=XZ_MEMLIMIT), b"\x5d", data, cap)
    return b"", UNSUPPORTED_ENCODING


def decode_content_encoding(body: bytes, content_encoding: str, limits: Limits) -> bytes:
    """Decode a whole body by its Content-Encoding within the limits, or raise ExtractionError(reason).

    Reasons: unsupported_encoding, corrupt_encoding, truncated, bomb, too_large, depth. For the proxy's own
    use (e.g. a streamed body collected in full); extract_http does the same and keeps partial output.
    """
    codings = parse_codings(content_encoding)
    if codings is None:
        raise ExtractionError(UNSUPPORTED_ENCODING)
    if len(codings) > limits.max_coding_layers:
        raise ExtractionError(DEPTH)
    left = limits.max_inspect_bytes
    for coding in reversed(codings):
        ratio_cap = max(limits.max_expansion_ratio * len(body), limits.min_bomb_bytes)
        cap, over_reason = (ratio_cap, "bomb") if ratio_cap < left else (left, "too_large")
        body, status = decode(coding, body, cap)
        if status == OVER:
            raise ExtractionError(over_reason)
        if status is not None:
            raise ExtractionError(status)
        left -= len(body)
    return body


def _zlib(data: bytes, cap: int, wbits: int, gzip_members: bool) -> tuple[bytes, str | None]:
    out = bytearray()
    view = memoryview(data)
    n = len(data)
    pos = 0
    d = zlib.decompressobj(wbits)
    try:
        while True:
            if d.unconsumed_tail:
                chunk = d.unconsumed_tail
            elif pos < n:
                chunk = view[pos:pos + _FEED]
                pos += len(chunk)
            else:
                chunk = b""
            produced = d.decompress(chunk, cap + 1 - len(out))
            out += produced
            if len(out) > cap:
                return _cut(out, cap), OVER
            if d.eof:
                start = pos - len(d.unused_data)  # absolute offset of whatever follows this stream
                head = data[start:start + 2]
                if gzip_members and head == GZIP_MAGIC:
                    d = zlib.decompressobj(31)
                    pos = start
                    continue
                if not head or (head[0] == 0 and not data[start:].strip(b"\x00")):
                    return bytes(out), None
                return bytes(out), CORRUPT  # trailing garbage: fail closed
            if not chunk and not produced:
                return bytes(out), TRUNCATED
    except zlib.error:
        return bytes(out), CORRUPT


def _brotli(data: bytes, cap: int) -> tuple[bytes, str | None]:
    out = bytearray()
    d = brotli.Decompressor()
    view = memoryview(data)
    try:
        for pos in range(0, len(data), _FEED):
            out += d.process(view[pos:pos + _FEED], output_buffer_limit=cap + 1 - len(out))
            while len(out) <= cap and not d.can_accept_more_data():
                more = d.process(b"", output_buffer_limit=cap + 1 - len(out))
                if not more:
                    break
                out += more
            if len(out) > cap:
                return _cut(out, cap), OVER
        while len(out) <= cap and not d.is_finished():
            more = d.process(b"", output_buffer_limit=cap + 1 - len(out))
            if not more:
                break
            out += more
        if len(out) > cap:
            return _cut(out, cap), OVER
        return bytes(out), None if d.is_finished() else TRUNCATED
    except brotli.error:
        return bytes(out), CORRUPT


def _members(make, magic: bytes, data: bytes, cap: int) -> tuple[bytes, str | None]:
    """bz2 / xz / zstd (decompressor objects with needs_input and eof): concatenated streams allowed."""
    out = bytearray()
    view = memoryview(data)
    n = len(data)
    pos = 0
    d = make()
    try:
        while True:
            if d.needs_input:
                if pos >= n:
                    return bytes(out), TRUNCATED
                chunk = view[pos:pos + _FEED]
                pos += len(chunk)
            else:
                chunk = b""
            out += d.decompress(chunk, cap + 1 - len(out))
            if len(out) > cap:
                return _cut(out, cap), OVER
            if d.eof:
                start = pos - len(d.unused_data)
                if data[start:start + len(magic)] == magic:
                    d = make()
                    pos = start
                    continue
                if start >= n or (data[start] == 0 and not data[start:].strip(b"\x00")):
                    return bytes(out), None
                return bytes(out), CORRUPT
    except (OSError, EOFError, lzma.LZMAError, zstd.ZstdError, ValueError, MemoryError):
        return bytes(out), CORRUPT


def _cut(out: bytearray, cap: int) -> bytes:
    del out[cap:]
    return bytes(out)

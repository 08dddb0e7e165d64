"""Bounded decoders, one incremental family for buffered and streamed bodies: Content-Encoding (gzip incl.
multi-member, deflate, br, zstd, S3's aws-chunked framing, stacked lists) and compressed files (gzip, bz2, xz, zstd, zlib, lzma).

    decoder = ContentDecoder.for_header("gzip, br", limits)   # None for identity; DecodeError if unsupported
    for piece in decoder.feed(chunk): ...                     # decoded pieces of at most 1 MiB
    for piece in decoder.finish(): ...
    decode_content_encoding(body, "gzip", limits, cap)        # a whole body: Decoded(data, reason, ...)

One bomb rule (`Limits.expansion_cap`): every layer may produce at most max_expansion_ratio x the wire bytes fed
so far, and always min_bomb_bytes ("bomb"); all layers together at most the caller's cap ("too_large"). Output
stops exactly at the limit: the prefix is yielded (it is still scanned), then DecodeError(reason) is raised.

Unlike mitmproxy's decoder this one reads every gzip member and zstd frame (a second member is a known evasion).
After the last member only NUL padding may follow; any other trailing byte is corrupt (fail closed). An empty body
decodes to nothing. Input is handed to a decompressor in slices sized by the member being read, so the copy zlib
makes of the bytes after a member's end stays proportional to that member: many tiny members cost linear work.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import brotli

try:  # Python 3.14 stdlib; mitmproxy depends on the backport for older Pythons
    from compression import zstd
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd

from .core import (
    BOMB,
    CORRUPT_ENCODING,
    DEPTH,
    TOO_LARGE,
    TRUNCATED,
    UNSUPPORTED_ENCODING,
    ExtractionError,
    Limits,
)

OVER = "over"
CORRUPT = CORRUPT_ENCODING
PIECE = 1 << 20  # decoded output comes in pieces of at most this size
_SLICE = 1 << 18  # largest input slice per decompressor call
_MIN_SLICE = 64  # first slice of a member that follows a tiny one
_UNBOUNDED = 1 << 62

GZIP_MAGIC = b"\x1f\x8b"
BZ2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

CODING_ALIASES = {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate", "br": "br", "zstd": "zstd",
                  "aws-chunked": "aws-chunked"}
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


def gzip_names(data: bytes, members: int = 64, longest: int = 1024) -> bytes:
    """The FNAME and FCOMMENT fields of the gzip member headers in `data` (the original file name, a comment: text
    a decompressor skips), one per line. Headers are found by their magic, so a later member's are found too."""
    out: list[bytes] = []
    at = data.find(GZIP_MAGIC + b"\x08")
    while at != -1 and members > 0:
        members -= 1
        names, end = gzip_header(data, at, longest)
        out += names
        at = data.find(GZIP_MAGIC + b"\x08", max(at + 3, end or 0))
    return b"\n".join(out)


def gzip_header(data: bytes | bytearray, at: int = 0, longest: int = 1024) -> tuple[list[bytes], int | None]:
    """(the FNAME and FCOMMENT fields of the gzip member header at `at`, the offset where reading it stopped); the
    offset is None while `data` ends before the header does (a streamed member's header arriving in pieces).
    A field with no terminator within `longest` bytes is not read, nor any after it."""
    if len(data) < at + 10:
        return [], None
    flags, pos, out = data[at + 3], at + 10, []
    if not flags & 0x18 or flags & 0xE0:
        return out, pos
    if flags & 0x04:  # FEXTRA comes first
        if pos + 2 > len(data):
            return out, None
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
    for bit in (0x08, 0x10):
        if flags & bit:
            end = data.find(b"\x00", pos, pos + longest)
            if end == -1:
                return out, None if len(data) < pos + longest else pos
            out.append(bytes(data[pos:end]))
            pos = end + 1
    return out, pos


def parse_codings(header: str) -> list[str] | None:
    """`gzip, br` -> ["gzip", "br"] in the order applied; identity dropped; None if one is unknown.
    `aws-chunked` is S3's upload framing: listed first (`aws-chunked,gzip`) but applied last, so undone first."""
    codings = []
    for token in header.split(","):
        token = token.strip().lower()
        if not token or token in ("identity", "none"):
            continue
        coding = CODING_ALIASES.get(token)
        if coding is None:
            return None
        codings.append(coding)
    if "aws-chunked" in codings[:-1]:
        codings = [c for c in codings if c != "aws-chunked"] + ["aws-chunked"]
    return codings


class DecodeError(ExtractionError):
    """A body that cannot be decoded: unsupported_encoding, depth, corrupt_encoding, truncated, bomb, too_large."""


Room = Callable[[], int]  # how many bytes the next decompressor call may produce


class Decoded(NamedTuple):
    """A whole body decoded (decode_content_encoding)."""

    data: bytes  # everything, or the prefix decoded before `reason`
    reason: str | None  # None: complete
    layers: int  # codings undone (0: identity, or not decodable at all)
    decoded: int  # bytes produced by every layer together (what the budget is charged)
    raw: bytes  # what the failing layer was given: the body itself, or an inner layer's input


class ContentDecoder:
    """Incremental, bounded decoding of a list of codings (Content-Encoding order: the last applied is undone
    first). `feed(wire)` / `finish()` yield pieces of at most PIECE bytes and raise DecodeError; a streamed body
    is fed as it arrives, a buffered one at once (decode_content_encoding)."""

    __slots__ = ("stages", "made", "limits", "cap", "wire", "decoded", "failed", "names", "_rooms")

    def __init__(self, codings: Sequence[str], limits: Limits | None, cap: int | None = None,
                 zstd_window: int = HTTP_ZSTD_WINDOW):
        """`limits`: the expansion rule (None: `cap` alone bounds the output); `cap`: the most all layers together
        may produce (None: no budget, as for a stream, whose scanner holds a bounded window)."""
        self.stages = [_stage(c, zstd_window) for c in reversed(codings)]
        for stage in self.stages[:-1]:
            if isinstance(stage, _AwsChunked):
                stage.inner = True
        # FNAME/FCOMMENT of every gzip member header read so far (a decompressor skips them: the caller scans them
        # as content and empties the list)
        self.names: list[bytes] = []
        for stage in self.stages:
            if isinstance(stage, _Zlib) and stage.magic0 is not None:
                stage.names = self.names
        self.made = [0] * len(self.stages)
        self.limits = limits
        self.cap = cap
        self.wire = 0
        self.decoded = 0
        self.failed: int | None = None  # the layer that raised (how many layers were undone before it)
        self._rooms = [(lambda i=i: self._room(i)) for i in range(len(self.stages))]

    @classmethod
    def for_header(cls, value: str | None, limits: Limits, cap: int | None = None) -> ContentDecoder | None:
        """None when there is nothing to decode (no header, identity); DecodeError when unsupported or too deep."""
        codings = parse_codings(value or "")
        if codings is None:
            raise DecodeError(UNSUPPORTED_ENCODING)
        if len(codings) > limits.max_coding_layers:
            raise DecodeError(DEPTH)
        return cls(codings, limits, cap) if codings else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.wire += len(data)
        if data:
            yield from self._through(0, data, final=False)

    def finish(self) -> Iterator[bytes]:
        yield from self._through(0, b"", final=True)

    def collect(self, data: bytes) -> tuple[bytes, str | None]:
        """All of `data` decoded: (output, None), or (the output before the problem, reason)."""
        out: list[bytes] = []
        try:
            out += self.feed(data)
            out += self.finish()
        except DecodeError as e:
            return b"".join(out), e.reason
        return b"".join(out), None

    def _through(self, i: int, data: bytes, final: bool) -> Iterator[bytes]:
        if i == len(self.stages):
            if data:
                yield data
            return
        stage = self.stages[i]
        try:
            if data:
                for piece in stage.feed(data, self._rooms[i]):
                    yield from self._out(i, piece)
            if final:
                for piece in stage.finish(self._rooms[i]):
                    yield from self._out(i, piece)
        except DecodeError:
            if self.failed is None:
                self.failed = i
            raise
        if final:
            yield from self._through(i + 1, b"", final=True)

    def _limits(self, i: int) -> tuple[int, int]:
        """(bytes layer i may still produce by the ratio, bytes all layers may still produce by the cap)."""
        ratio = self.limits.expansion_cap(self.wire) - self.made[i] if self.limits is not None else _UNBOUNDED
        return ratio, (self.cap - self.decoded if self.cap is not None else _UNBOUNDED)

    def _room(self, i: int) -> int:
        return min(PIECE, min(self._limits(i)) + 1)  # one byte past a limit tells that it was crossed

    def _out(self, i: int, piece: bytes) -> Iterator[bytes]:
        ratio_left, cap_left = self._limits(i)
        excess = len(piece) - min(ratio_left, cap_left)
        if excess <= 0:
            self.made[i] += len(piece)
            self.decoded += len(piece)
            yield from self._through(i + 1, piece, final=False)
            return
        keep = piece[:len(piece) - excess]
        self.made[i] += len(keep)
        self.decoded += len(keep)
        if keep:
            yield from self._through(i + 1, keep, final=False)
        raise DecodeError(TOO_LARGE if cap_left <= ratio_left else BOMB)


def decode_content_encoding(body: bytes, content_encoding: str, limits: Limits, cap: int | None = None) -> Decoded:
    """A whole body decoded by its Content-Encoding within the limits (`cap`: at most this many bytes from all
    layers together; default limits.max_inspect_bytes). Never raises: the reason says why it stopped."""
    try:
        decoder = ContentDecoder.for_header(content_encoding, limits,
                                            limits.max_inspect_bytes if cap is None else cap)
    except DecodeError as e:
        return Decoded(b"", e.reason, 0, 0, body)
    if decoder is None:
        return Decoded(body, None, 0, 0, body)
    data, reason = decoder.collect(body)
    raw = body
    if reason is not None and decoder.failed:  # an inner layer failed: what the outer layers made of the body
        codings = parse_codings(content_encoding) or []
        raw = ContentDecoder(codings[len(codings) - decoder.failed:], limits, decoder.cap).collect(body)[0]
    return Decoded(data, reason, len(decoder.stages), decoder.decoded, raw)


def decode(coding: str, data: bytes, cap: int, zstd_window: int = HTTP_ZSTD_WINDOW) -> tuple[bytes, str | None]:
    """One layer ("gzip" | "deflate" | "br" | "zstd" | "bz2" | "xz" | "zlib" | "lzma") of a file or an embedded
    stream, at most `cap` bytes: (output, None | OVER | corrupt_encoding | truncated | unsupported_encoding)."""
    try:
        decoder = ContentDecoder([coding], None, cap, zstd_window)
    except DecodeError as e:
        return b"", e.reason
    out, reason = decoder.collect(data)
    return out, OVER if reason == TOO_LARGE else reason


# --- the layers: feed(data, room) / finish(room) yield output, each call producing at most room() bytes -----------


def _stage(coding: str, zstd_window: int):
    if coding == "gzip":
        return _Zlib(47, members=True)  # 47: gzip or zlib header; the following members are gzip (31)
    if coding == "deflate":
        return _Zlib(None, members=False)
    if coding == "zlib":  # a zlib stream with no Content-Encoding (a PDF stream, an API's compressed field)
        return _Zlib(15, members=False)
    if coding == "br":
        return _Brotli()
    if coding == "aws-chunked":
        return _AwsChunked()
    if coding == "zstd":
        window_log = zstd_window.bit_length() - 1
        return _Frames(lambda: zstd.ZstdDecompressor(options={_WINDOW_LOG_MAX: window_log}), ZSTD_MAGIC[0])
    if coding == "bz2":
        return _Frames(bz2.BZ2Decompressor, BZ2_MAGIC[0])
    if coding == "xz":
        return _Frames(lambda: lzma.LZMADecompressor(memlimit=XZ_MEMLIMIT), XZ_MAGIC[0])
    if coding == "lzma":  # .lzma ("alone") files
        return _Frames(lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=XZ_MEMLIMIT), 0x5D)
    raise DecodeError(UNSUPPORTED_ENCODING)


def _zlib_header(head: bytes) -> bool:
    """A zlib stream's first two bytes (CMF, FLG). A raw deflate stream from a real compressor never has them:
    its first block type would have to be "stored" with non-zero padding bits."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and (head[0] << 8 | head[1]) % 31 == 0


class _Members:
    """Concatenated members (gzip members, zstd frames, bz2/xz streams), each read by a fresh decompressor in
    slices; after the last, only NUL padding. Subclasses: `_start()` a decompressor, `_run(d, chunk, room)`."""

    def __init__(self, magic0: int | None):
        self.magic0 = magic0  # first byte of a following member; None: a single stream
        self.d = None  # None until the first byte arrives (an empty body is no error)
        self.ended = False  # the current member is complete
        self.padded = False  # NUL padding seen: nothing else may follow
        self.slice = _SLICE
        self.member_in = 0  # input bytes of the current member
        self.names: list[bytes] | None = None  # gzip: where the header fields of each member go
        self.header: bytearray | None = None  # the current member's header while it is still arriving

    def feed(self, data: bytes, room: Room) -> Iterator[bytes]:
        view = memoryview(data)
        n, pos = len(view), 0
        if self.d is None:
            self.d = self._start(first=True)
            self.header = bytearray() if self.names is not None else None
        while pos < n:
            if self.ended:
                if not self.padded and view[pos] == self.magic0:
                    self.d = self._start(first=False)
                    self.ended, self.member_in = False, 0
                    self.header = bytearray() if self.names is not None else None
                elif bytes(view[pos:]).strip(b"\x00"):
                    raise DecodeError(CORRUPT)  # trailing garbage: fail closed
                else:
                    self.padded = True
                    return
            chunk = view[pos:pos + self.slice]
            if self.header is not None:
                self._read_header(chunk)
            d = self.d
            yield from self._run(d, chunk, room)
            used = len(chunk) - len(d.unused_data) if d.eof else len(chunk)
            pos += used
            self.member_in += used
            if d.eof:
                self.ended = True
                self.slice = min(_SLICE, max(_MIN_SLICE, 2 * self.member_in))
            else:
                self.slice = min(_SLICE, 2 * self.slice)

    def finish(self, room: Room) -> Iterator[bytes]:
        if self.d is None or self.ended:
            return
        yield from self._drain(self.d, room)
        if not self.d.eof:
            raise DecodeError(TRUNCATED)

    def _read_header(self, chunk) -> None:
        """Add the member's next input bytes to its header until its name fields are read (gzip_header); bytes
        past the header's end may come along and are ignored."""
        head = self.header
        head += chunk
        if head[:2] != GZIP_MAGIC[:len(head[:2])]:  # not a gzip header (a zlib stream under "gzip")
            self.header = None
            return
        names, end = gzip_header(head)
        if end is not None:
            self.names += names
            self.header = None

    def _start(self, first: bool):
        raise NotImplementedError

    def _run(self, d, chunk, room: Room) -> Iterator[bytes]:
        raise NotImplementedError

    def _drain(self, d, room: Room) -> Iterator[bytes]:
        return iter(())


class _Zlib(_Members):
    """gzip (every member), zlib, or "deflate": zlib-wrapped in theory, raw in practice, told by its first bytes."""

    def __init__(self, wbits: int | None, members: bool):
        super().__init__(GZIP_MAGIC[0] if members else None)
        self.wbits = wbits  # None: zlib or raw, by the first two bytes
        self.head = b""  # "deflate": a first byte held until the second arrives

    def feed(self, data: bytes, room: Room) -> Iterator[bytes]:
        if self.wbits is None:
            if len(self.head) + len(data) < 2:
                self.head += data
                return
            if self.head:
                data, self.head = self.head + data, b""
            self.wbits = 15 if _zlib_header(data[:2]) else -15
        try:
            yield from super().feed(data, room)
        except zlib.error:
            raise DecodeError(CORRUPT) from None

    def finish(self, room: Room) -> Iterator[bytes]:
        if self.head:  # a one-byte body
            raise DecodeError(TRUNCATED)
        try:
            yield from super().finish(room)
        except zlib.error:
            raise DecodeError(CORRUPT) from None

    def _start(self, first: bool):
        return zlib.decompressobj(self.wbits if first else 31)

    def _run(self, d, chunk, room: Room) -> Iterator[bytes]:
        limit = room()
        out = d.decompress(chunk, limit)
        while True:
            if out:
                yield out
            if d.eof or len(out) < limit:  # below the limit, zlib has taken all the input it was given
                return
            limit = room()
            out = d.decompress(d.unconsumed_tail, limit)

    def _drain(self, d, room: Room) -> Iterator[bytes]:
        out = d.flush()
        if out:
            yield out


class _Frames(_Members):
    """zstd, bz2, xz, lzma: decompressors with needs_input / eof / unused_data."""

    _ERRORS = (OSError, EOFError, lzma.LZMAError, zstd.ZstdError, ValueError, MemoryError)

    def __init__(self, make: Callable[[], object], magic0: int):
        super().__init__(magic0)
        self.make = make

    def feed(self, data: bytes, room: Room) -> Iterator[bytes]:
        try:
            yield from super().feed(data, room)
        except self._ERRORS:
            raise DecodeError(CORRUPT) from None

    def finish(self, room: Room) -> Iterator[bytes]:
        try:
            yield from super().finish(room)
        except self._ERRORS:
            raise DecodeError(CORRUPT) from None

    def _start(self, first: bool):
        return self.make()

    def _run(self, d, chunk, room: Room) -> Iterator[bytes]:
        out = d.decompress(chunk, room())
        while True:
            if out:
                yield out
            if d.eof or d.needs_input:
                return
            out = d.decompress(b"", room())

    def _drain(self, d, room: Room) -> Iterator[bytes]:
        while not d.eof and not d.needs_input:
            out = d.decompress(b"", room())
            if not out:
                return
            yield out


class _Brotli:
    """One brotli stream (the format has no members); bytes after its end are corrupt. The decoder may return more
    than output_buffer_limit (a window's worth): such output is split into pieces."""

    def __init__(self):
        self.d = brotli.Decompressor()
        self.fed = False

    def feed(self, data: bytes, room: Room) -> Iterator[bytes]:
        self.fed = True
        view = memoryview(data)
        try:
            for pos in range(0, len(view), _SLICE):
                out = self.d.process(view[pos:pos + _SLICE], output_buffer_limit=room())
                while True:
                    yield from _split(out)
                    if self.d.can_accept_more_data():
                        break
                    out = self.d.process(b"", output_buffer_limit=room())
                    if not out:
                        break
        except brotli.error:
            raise DecodeError(CORRUPT) from None

    def finish(self, room: Room) -> Iterator[bytes]:
        if not self.fed:
            return
        try:
            while not self.d.is_finished():
                out = self.d.process(b"", output_buffer_limit=room())
                if not out:
                    break
                yield from _split(out)
        except brotli.error:
            raise DecodeError(CORRUPT) from None
        if not self.d.is_finished():
            raise DecodeError(TRUNCATED)


class _AwsChunked:
    """S3's `aws-chunked` framing of SigV4 streaming uploads: `hex-size[;chunk-signature=…]` CRLF, that many
    bytes, CRLF; a zero-size chunk ends the data, then trailer lines (`x-amz-checksum-crc32:…`) and an empty line.
    The data is the output, never larger than the input. Trailer lines are content too: they are output after the
    data when nothing is encoded inside the framing; under an inner coding (`aws-chunked,gzip`) they cannot be,
    and only S3's own short checksum/signature trailers are accepted (anything else is corrupt: fail closed)."""

    MAX_LINE = 4096
    _S3_TRAILER = re.compile(rb"x-amz-[a-z0-9-]{1,40}:[ \t]*[A-Za-z0-9+/=]{1,64}[ \t]*\r?")

    def __init__(self):
        self.line = b""  # a size or trailer line still arriving
        self.left = 0  # data bytes of the current chunk still to come
        self.eol = 0  # line-end bytes still to skip after a chunk's data
        self.trailers = False  # the zero-size chunk was read
        self.ended = False  # the empty line after the trailers was read
        self.fed = False
        self.inner = False  # set by ContentDecoder: another coding is undone after this one

    def feed(self, data: bytes, room: Room) -> Iterator[bytes]:
        self.fed = self.fed or bool(data)
        pos, n = 0, len(data)
        while pos < n:
            if self.ended:
                raise DecodeError(CORRUPT)
            if self.left:
                take = min(self.left, n - pos)
                yield from _split(data[pos:pos + take])
                pos += take
                self.left -= take
                self.eol = 0 if self.left else 2
                continue
            if self.eol:
                if data[pos] not in b"\r\n":
                    raise DecodeError(CORRUPT)
                self.eol = 0 if data[pos] == 0x0A else self.eol - 1
                pos += 1
                continue
            end = data.find(b"\n", pos)
            self.line += data[pos:n if end == -1 else end]
            if len(self.line) > self.MAX_LINE:
                raise DecodeError(CORRUPT)
            if end == -1:
                return
            pos, line, self.line = end + 1, self.line, b""
            if self.trailers:
                yield from self._trailer(line)
                continue
            size = line.split(b";", 1)[0].strip()
            if not size or size.strip(b"0123456789abcdefABCDEF"):
                raise DecodeError(CORRUPT)
            self.left = int(size, 16)
            self.trailers = self.left == 0

    def _trailer(self, line: bytes) -> Iterator[bytes]:
        if not line.strip():
            self.ended = True
        elif not self.inner:
            yield line + b"\n"
        elif not self._S3_TRAILER.fullmatch(line):
            raise DecodeError(CORRUPT)

    def finish(self, room: Room) -> Iterator[bytes]:
        if self.fed and not self.trailers:
            raise DecodeError(TRUNCATED)
        if self.line:  # a last trailer line without its line end
            yield from self._trailer(self.line)
        return


def _split(out: bytes) -> Iterator[bytes]:
    if len(out) <= PIECE:
        if out:
            yield out
        return
    for pos in range(0, len(out), PIECE):
        yield out[pos:pos + PIECE]

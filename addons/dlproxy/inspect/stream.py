"""Incremental scanning of streamed bodies with minimal hold-back. Pure: no mitmproxy import.

    window = ScanWindow(detector, judge, location="body")
    released, spans = window.push(chunk)        # bytes now safe to forward (redactions applied)
    released, spans = window.push(b"", final=True)
    window.blocked_at                           # stream offset of the first blocked secret, once blocked

    scanner = ByteStreamScanner(detector, judge)          # the same for a raw body, returning chunks to forward
    decoder = StreamDecoder.for_header("gzip", max_ratio) # incremental, bounded Content-Encoding decoding

`judge(findings) -> (action, targets)` is the caller's policy hook: action is "pass", "redact" or "block";
targets are the findings to redact. Findings reach it with stream offsets and their location.

How little is held back: after each chunk the detector says from which offset a token could still be completing
(`Detector.undecided_from`); everything before it is released at once, the rest (a partial prefix, or a prefix
whose token is not complete yet) waits for the next chunk. A token is therefore seen whole even when it is split
across chunks. Of a token, at most a proper head of its literal prefix can be released before it is decided (" a"
of "apify_api_…": public characters, not held so that model-style " word" deltas flow); never a byte past that,
and nothing when its keyword is mid-token (except the short run noted at `Detector.undecided_from`). Already
released text is kept as scan context, so such a token is still found whole, the boundary rule (a token must not
be glued to token characters) sees the byte before it, and a block cuts the stream right where releasing stopped.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence

from ..engine.findings import Finding

PASS, REDACT, BLOCK = "pass", "redact", "block"
Judge = Callable[[list[Finding]], tuple[str, Sequence[Finding]]]
MARK = "[REDACTED:{}]"
CONTEXT_CAP = 256  # released bytes kept as scan context (boundary byte and `before` runs of mid-token keywords)


def marker(entry_id: str, width: int | None = None) -> bytes:
    """`[REDACTED:<entry id>]`; with `width` (a body whose length must not change) fitted to exactly that width:
    padded with `*` inside the brackets, or shortened to `[REDACTED***]`, or plain `*` for very short secrets."""
    text = MARK.format(entry_id)
    if width is None:
        return text.encode("ascii")
    if len(text) <= width:
        return (text[:-1] + "*" * (width - len(text)) + "]").encode("ascii")
    if width >= len("[REDACTED]"):
        return ("[REDACTED" + "*" * (width - len("[REDACTED]")) + "]").encode("ascii")
    return b"*" * width


class Verdicts:
    """One judgement per secret per flow: the judge sees each (entry, fingerprint) once; later sightings of the
    same secret (in another channel, in an event's raw bytes, again in the text) reuse its action."""

    __slots__ = ("judge", "known")

    def __init__(self, judge: Judge):
        self.judge = judge
        self.known: dict[tuple[str, str], str] = {}

    def check(self, findings: list[Finding]) -> tuple[Finding | None, list[Finding]]:
        """(the first finding to block at, or None; the findings to redact)."""
        new = [f for f in findings if (f.entry_id, f.fingerprint) not in self.known]
        if new:
            action, targets = self.judge(new)
            target_keys = {(t.entry_id, t.fingerprint) for t in targets}
            for f in new:
                key = (f.entry_id, f.fingerprint)
                self.known[key] = action if action != REDACT or key in target_keys else PASS
        blocked = [f for f in findings if self.known[(f.entry_id, f.fingerprint)] == BLOCK]
        if blocked:
            return min(blocked, key=lambda f: f.start), []
        return None, [f for f in findings if self.known[(f.entry_id, f.fingerprint)] == REDACT]

    def action_of(self, f: Finding) -> str | None:
        return self.known.get((f.entry_id, f.fingerprint))


class ScanWindow:
    """Scan state of one stream of text: what is decided, what is redacted, where a block cut it.

    Offsets are stream offsets (bytes since the start of this stream). The buffer holds a little released
    context plus the undecided tail; it never grows past context + max_token_len + the chunk being pushed.
    """

    __slots__ = ("detector", "verdicts", "location", "fixed_length", "_ctx", "_max_hold", "_buf", "_base",
                 "_released", "_redactions", "_seen", "blocked_at", "stopped", "scanned")

    def __init__(self, detector, verdicts: Verdicts | Judge, location: str = "body", fixed_length: bool = False):
        self.detector = detector
        self.verdicts = verdicts if isinstance(verdicts, Verdicts) else Verdicts(verdicts)
        self.location = location
        self.fixed_length = fixed_length  # redact with same-width markers (Content-Length kept)
        max_len = max(int(detector.max_token_len), 1)
        self._ctx = min(max_len, CONTEXT_CAP)
        self._max_hold = max_len
        self._buf = b""
        self._base = 0  # stream offset of _buf[0]
        self._released = 0  # stream offset up to which bytes were released
        self._redactions: dict[int, tuple[int, bytes]] = {}  # start -> (end, marker), not yet released
        self._seen: set[tuple[int, str]] = set()  # (start, entry) of findings already handled
        self.blocked_at: int | None = None
        self.stopped = False
        self.scanned = 0

    @property
    def decided(self) -> int:
        """Stream offset up to which everything is decided (and released)."""
        return self._released

    def push(self, data: bytes, final: bool = False) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        """Add `data`; return (bytes now safe to release, redaction spans (start, end, marker) within them).

        After a block nothing more is released: `blocked_at` says where the first blocked secret starts and the
        returned bytes end at or before it.
        """
        if self.stopped:
            return b"", []
        self.scanned += len(data)
        buf = self._buf + data if data else self._buf
        base = self._base
        lo = self._released - base
        detector = self.detector
        findings = detector.scan(buf) if len(buf) > lo else []
        cut = len(buf) if final else detector.undecided_from(buf)
        cut = max(cut, lo, len(buf) - self._max_hold)
        if findings:
            cut = self._judge(findings, base, lo, cut)
            if self.stopped:
                released = self._release(buf, base, lo, cut)
                self._buf, self._base, self._released = b"", base + cut, base + cut
                return released
        released = self._release(buf, base, lo, cut)
        keep = max(0, cut - self._ctx)
        self._buf = buf[keep:]
        self._base = base + keep
        self._released = base + cut
        if self._seen:
            self._seen = {k for k in self._seen if k[0] >= self._base}
        return released

    def _judge(self, findings: list[Finding], base: int, lo: int, cut: int) -> int:
        """Policy for findings not handled before; returns the (possibly extended) release offset."""
        fresh = []
        for f in findings:
            key = (base + f.start, f.entry_id)
            if key not in self._seen:
                self._seen.add(key)
                fresh.append(f.at(self.location, base))
        if not fresh:
            return cut
        blocked, redact = self.verdicts.check(fresh)
        if blocked is not None:
            self.stopped = True
            self.blocked_at = blocked.start
            return max(lo, min(blocked.start - base, cut))
        for f in redact:
            width = f.end - f.start if self.fixed_length else None
            self._redactions[f.start] = (f.end, marker(f.entry_id, width))
            cut = max(cut, f.end - base)
        return cut

    def _release(self, buf: bytes, base: int, lo: int, hi: int) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        if hi <= lo:
            return b"", []
        if not self._redactions:
            return buf[lo:hi], []
        pieces: list[bytes] = []
        spans: list[tuple[int, int, bytes]] = []
        pos = lo
        for start in sorted(s for s in self._redactions if s < base + hi):
            end, mark = self._redactions.pop(start)
            rs, re_ = max(start - base, pos), min(end - base, hi)
            if re_ <= rs:
                continue
            # A secret that began in already-released bytes (a released head of its public prefix, " a" of
            # "apify_api_…"): the marker replaces the unreleased rest; a fixed-length body gets same-width `*`.
            if start - base < lo and self.fixed_length:
                mark = b"*" * (re_ - rs)
            pieces.append(buf[pos:rs])
            pieces.append(mark)
            spans.append((base + rs, base + re_, mark))
            pos = re_
        pieces.append(buf[pos:hi])
        return b"".join(pieces), spans


class ByteStreamScanner:
    """A raw byte stream (chunked download, large upload): chunks in, chunks safe to forward out."""

    def __init__(self, detector, judge: Judge, location: str = "body", fixed_length: bool = False):
        self.window = ScanWindow(detector, judge, location, fixed_length)

    @property
    def stopped(self) -> bool:
        return self.window.stopped

    def feed(self, data: bytes) -> list[bytes]:
        released, _ = self.window.push(data)
        return [released] if released else []

    def finish(self) -> list[bytes]:
        released, _ = self.window.push(b"", final=True)
        return [released] if released else []


# --- Content-Encoding, decoded as it streams ------------------------------------------------------------------


class DecodeError(ValueError):
    """The stream cannot be decoded (unsupported, corrupt, or expanding past the allowed ratio)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


PIECE = 1 << 20  # decoded output is produced in pieces of at most this size
RATIO_GRACE = 1 << 20  # the expansion ratio is enforced once this much has been decoded


class _Zlib:
    def __init__(self, wbits: int, multi_member: bool):
        self.wbits = wbits
        self.multi = multi_member
        self.d = zlib.decompressobj(wbits)
        self.fallback_raw = wbits == 15  # "deflate" is zlib-wrapped in theory, raw in practice
        self.started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self.d.decompress(data, PIECE)
            except zlib.error:
                if self.fallback_raw and not self.started:
                    self.fallback_raw = False
                    self.d = zlib.decompressobj(-15)
                    continue
                raise DecodeError("corrupt_encoding") from None
            self.started = True
            self.fallback_raw = False
            if out:
                yield out
            data = self.d.unconsumed_tail
            if self.d.eof:
                rest = self.d.unused_data
                if rest and self.multi:  # multi-member gzip: every member (mitmproxy itself decodes only the first)
                    self.d = zlib.decompressobj(self.wbits)
                    data = rest
                    continue
                if rest.strip(b"\0\r\n "):
                    raise DecodeError("corrupt_encoding")
                return
            if not data:
                return

    def finish(self) -> Iterator[bytes]:
        out = self.d.flush()
        if out:
            yield out
        if self.started and not self.d.eof:
            raise DecodeError("truncated")


class _Brotli:
    def __init__(self):
        import brotli

        self.error = brotli.error
        self.d = brotli.Decompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self.d.process(data, output_buffer_limit=PIECE)
            while True:
                if out:
                    yield out
                if self.d.can_accept_more_data():
                    return
                out = self.d.process(b"", output_buffer_limit=PIECE)
        except self.error:
            raise DecodeError("corrupt_encoding") from None

    def finish(self) -> Iterator[bytes]:
        if not self.d.is_finished():
            raise DecodeError("truncated")
        return iter(())


class _Zstd:
    def __init__(self):
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd
        self.mod = zstd
        self.d = zstd.ZstdDecompressor()
        self.started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self.d.decompress(data, PIECE)
            except self.mod.ZstdError:
                raise DecodeError("corrupt_encoding") from None
            self.started = True
            if out:
                yield out
            data = b""
            if self.d.eof:
                rest = self.d.unused_data
                if not rest:
                    return
                self.d = self.mod.ZstdDecompressor()  # multi-frame
                data = rest
                continue
            if self.d.needs_input:
                return

    def finish(self) -> Iterator[bytes]:
        if self.started and not self.d.eof:
            raise DecodeError("truncated")
        return iter(())


def _make_stage(name: str):
    if name in ("gzip", "x-gzip"):
        return _Zlib(47, multi_member=True)
    if name == "deflate":
        return _Zlib(15, multi_member=False)
    if name == "br":
        return _Brotli()
    if name == "zstd":
        return _Zstd()
    raise DecodeError("unsupported_encoding")


class StreamDecoder:
    """Incremental, bounded decoding of a `Content-Encoding` chain (`gzip`, `deflate`, `br`, `zstd`, stacked).

    `feed(wire)` / `finish()` yield decoded pieces of at most 1 MiB; a ratio of decoded to wire bytes above
    `max_ratio` (after the first MiB) raises DecodeError("bomb"); corrupt or truncated input raises too (reasons
    as in extract.core: corrupt_encoding, unsupported_encoding, truncated, bomb).
    """

    def __init__(self, encodings: Sequence[str], max_ratio: int = 100):
        self.stages = [_make_stage(e) for e in reversed(encodings)]  # applied last is undone first
        self.max_ratio = max_ratio
        self.wire = 0
        self.decoded = 0

    @classmethod
    def for_header(cls, value: str | None, max_ratio: int = 100) -> StreamDecoder | None:
        """None when there is nothing to decode (no header, identity); DecodeError when unsupported."""
        names = [v.strip().lower() for v in (value or "").split(",")]
        names = [n for n in names if n and n not in ("identity", "none")]
        return cls(names, max_ratio) if names else None

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.wire += len(data)
        yield from self._count(self._through(0, data, final=False))

    def finish(self) -> Iterator[bytes]:
        yield from self._count(self._through(0, b"", final=True))

    def _through(self, i: int, data: bytes, final: bool) -> Iterator[bytes]:
        if i == len(self.stages):
            if data:
                yield data
            return
        stage = self.stages[i]
        if data:
            for piece in stage.feed(data):
                yield from self._through(i + 1, piece, final=False)
        if final:
            for piece in stage.finish():
                yield from self._through(i + 1, piece, final=False)
            yield from self._through(i + 1, b"", final=True)

    def _count(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.decoded += len(piece)
            if self.decoded > RATIO_GRACE and self.decoded > self.max_ratio * max(self.wire, 1):
                raise DecodeError("bomb")
            yield piece

"""Incremental scanning of streamed bodies with minimal hold-back. Pure: no mitmproxy import.

    window = ScanWindow(detector, judge, location="body")
    released, spans = window.push(chunk)        # bytes now safe to forward (redactions applied)
    released, spans = window.push(b"", final=True)
    window.blocked_at                           # stream offset of the first blocked secret, once blocked

    scanner = ByteStreamScanner(detector, judge)          # the same for a raw body, returning chunks to forward

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

import re
from collections.abc import Callable, Sequence

from ..engine.findings import Finding
from ..extract import OVERSIZE_REASONS, Limits, base64blobs, extract_http, hexsep, quickcheck
from ..extract.base64blobs import find_blobs
from ..extract.core import TOO_LARGE
from ..extract.encoding import sniff_container
from ..extract.forms import header_params
from ..extract.text import declared_codec, hidden_wide_text, wide_charset
from .views import EscapeView

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

    __slots__ = ("judge", "known", "secrets", "context", "context_chars")

    def __init__(self, judge: Judge, context_chars: int = -1):
        self.judge = judge
        self.known: dict[tuple[str, str], str] = {}
        # fingerprint → secret text (and the text around it) of every secret judged: what the judge needs to
        # seal evidence and queue a revocation; in memory for the flow's lifetime only.
        self.secrets: dict[str, str] = {}
        self.context: dict[str, str] = {}
        self.context_chars = context_chars  # -1: keep no context

    def check(self, findings: list[Finding], data: bytes = b"", shift: int = 0) -> tuple[Finding | None, list[Finding]]:
        """(the first finding to block at, or None; the findings to redact). `data` is the buffer the findings
        were found in, at stream offset `shift` (findings carry stream offsets)."""
        new = [f for f in findings if (f.entry_id, f.fingerprint) not in self.known]
        if new and data:
            self.remember(new, data, shift)
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

    def remember(self, findings: list[Finding], data: bytes, shift: int = 0) -> None:
        """Keep the secret text of findings made in `data` (at offset `shift`), and the text around it."""
        for f in findings:
            start, end = f.start - shift, f.end - shift
            if f.fingerprint not in self.secrets and 0 <= start < end <= len(data):
                self.secrets[f.fingerprint] = data[start:end].decode("latin-1")
                if self.context_chars >= 0:
                    w = self.context_chars
                    self.context[f.fingerprint] = data[max(0, start - w):end + w].decode("latin-1")

    def action_of(self, f: Finding) -> str | None:
        return self.known.get((f.entry_id, f.fingerprint))


def judge_segments(detector, verdicts: Verdicts, segments, locate: Callable[[Finding, object], Finding]
                   ) -> tuple[Finding | None, list[Finding]]:
    """Scan extracted segments (decoded content a stream cannot release piece by piece), keep each secret's text,
    and judge the findings together, each placed by `locate(finding, segment)`: Verdicts.check's answer."""
    found: list[Finding] = []
    for seg in segments:
        hits = detector.scan(seg.data)
        verdicts.remember(hits, seg.data)
        found += [locate(f, seg) for f in hits]
    return verdicts.check(found) if found else (None, [])


class ScanWindow:
    """Scan state of one stream of text: what is decided, what is redacted, where a block cut it.

    Offsets are stream offsets (bytes since the start of this stream). The buffer holds a little released
    context plus the undecided tail; it never grows past context + max_token_len + the chunk being pushed.
    """

    __slots__ = ("detector", "verdicts", "location", "fixed_length", "_ctx", "_max_hold", "_buf", "_base",
                 "_released", "_redactions", "_seen", "blocked_at", "stopped", "scanned", "on_redact", "accept",
                 "_scanned", "wait_open")

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
        self.on_redact: Callable[[Finding], None] | None = None  # another view applies this window's redactions
        self.accept: Callable[[int, int], bool] | None = None  # which findings (stream span) are this view's own
        # a match the next bytes could still change waits for them (_open_at_end): for a stream whose bytes are
        # held while undecided (not WebSocket messages, relayed as they come)
        self.wait_open = False
        self._scanned: tuple | None = None  # scan() done, release() not yet: (buffer, findings, cut, final, data)

    @property
    def decided(self) -> int:
        """Stream offset up to which everything is decided (and released)."""
        return self._released

    def push(self, data: bytes, final: bool = False,
             limit: int | None = None) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        """Add `data`; return (bytes now safe to release, redaction spans (start, end, marker) within them).

        `limit`: a stream offset not to release past (another view of the same bytes is still undecided there);
        the bytes after it are kept, however many. After a block nothing more is released: `blocked_at` says where
        the first blocked secret starts and the returned bytes end at or before it.
        """
        self.scan(data, final)
        return self.release(limit)

    def scan(self, data: bytes, final: bool = False, mark: bytes | None = None) -> int | None:
        """push() in two steps, for a caller that decides `limit` from what this pass saw: scan `data` (and the
        held bytes) now, release() next. `mark`: an extra prefilter expression looked for in the same pass over
        the held bytes and `data` (Detector.scan_open); returns where its first match ends, -1 for none, None
        when it was not looked for. Until release(), stop_at() sees the bytes held before `data` only."""
        if self.stopped:
            return None
        self.scanned += len(data)
        buf = self._buf + data if data else self._buf
        lo = self._released - self._base
        mark_end = None
        if final:
            findings, cut = self.detector.scan(buf) if len(buf) > lo else [], len(buf)
        elif len(buf) > lo:
            findings, cut, mark_end = self.detector.scan_open(buf, lo, mark)
        else:
            findings, cut = [], self.detector.undecided_from(buf, lo)
        self._scanned = (buf, findings, cut, final, data)
        return mark_end

    def release(self, limit: int | None = None) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        """The second step of push(): judge what scan() found, release what is decided (not past `limit`)."""
        scanned, self._scanned = self._scanned, None
        if self.stopped or scanned is None:
            return b"", []
        buf, findings, cut, final, data = scanned
        base = self._base
        lo = self._released - base
        if findings and not final and self.wait_open:
            findings, cut = self._open_at_end(findings, len(buf), cut, self.detector)
        cut = max(cut, lo, len(buf) - self._max_hold)
        if limit is not None and not final:
            cut = max(min(cut, limit - base), lo)
        if findings:
            cut = self._judge(findings, buf, base, lo, cut)
            if self.stopped:
                released = self._release(buf, base, lo, cut)
                self._buf, self._base, self._released = b"", base + cut, base + cut
                return released
        if cut == len(buf) and lo == cut - len(data) and not self._redactions:
            released = data, []  # the new bytes, all of them and nothing before: no copy
        else:
            released = self._release(buf, base, lo, cut)
        keep = cut - self._ctx
        if keep > 0:
            self._buf = buf[keep:]
            self._base = base + keep
        else:
            self._buf = buf
        self._released = base + cut
        if self._seen:
            self._seen = {k for k in self._seen if k[0] >= self._base}
        return released

    @staticmethod
    def _open_at_end(findings: list[Finding], n: int, cut: int, detector) -> tuple[list[Finding], int]:
        """A match that ends where the bytes so far end is not decided when the next bytes could change it: a
        shape-only one (they may glue on to it, or make it the head of a longer token: a legacy `glpat-` + 20 of a
        routable GitLab token), or one shorter than its entry's longest that the next bytes could still lengthen
        (an Azure key's second `=` still to come: `…RWyg=` then `=` would be judged without its padding). It is
        held from its start and judged once the next bytes are there. A whole checksummed token is judged at once."""
        longest = getattr(detector, "longest", {})
        late = [f for f in findings if (f.end >= n and f.validated == "structure")
                or f.end - f.start < longest.get(f.entry_id, 0) and f.start + longest[f.entry_id] > n]
        if not late:
            return findings, cut
        return [f for f in findings if f not in late], min(cut, *(f.start for f in late))

    def stop_at(self, offset: int) -> bytes:
        """Stop the stream at `offset` (a secret another view found there): release what lies before it."""
        if self.stopped:
            return b""
        self._scanned = None
        self.stopped = True
        self.blocked_at = offset
        base, lo = self._base, self._released - self._base
        released, _ = self._release(self._buf, base, lo, max(lo, min(offset - base, len(self._buf))))
        self._buf = b""
        self._base = self._released = max(offset, self._released)
        return released

    def redact(self, start: int, end: int, entry_id: str) -> None:
        """Redact source bytes [start, end) that another view found a secret in (not yet released)."""
        start = max(start, self._released)
        if end > start:
            self._redactions[start] = (end, marker(entry_id, end - start if self.fixed_length else None))

    def _judge(self, findings: list[Finding], buf: bytes, base: int, lo: int, cut: int) -> int:
        """Policy for findings not handled before; returns the (possibly extended) release offset."""
        fresh = []
        for f in findings:
            key = (base + f.start, f.entry_id)
            if self.accept is not None and not self.accept(base + f.start, base + f.end):
                continue
            if key not in self._seen:
                self._seen.add(key)
                fresh.append(f.at(self.location, base))
        if not fresh:
            return cut
        blocked, redact = self.verdicts.check(fresh, buf, base)
        if blocked is not None:
            self.stopped = True
            self.blocked_at = blocked.start
            return max(lo, min(blocked.start - base, cut))
        for f in redact:
            if self.on_redact is not None:
                self.on_redact(f)
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


class Uninspectable(ValueError):
    """Part of a stream cannot be inspected: `reason` is from extract.REASONS. `can_pass`: the bytes are intact
    (policy may let them through uninspected); False when they are not what the headers say (corrupt, bomb)."""

    can_pass = True

    def __init__(self, reason: str, can_pass: bool | None = None):
        super().__init__(reason)
        self.reason = reason
        if can_pass is not None:
            self.can_pass = can_pass


class HoldLimit(Uninspectable):
    """More than the allowed bytes would have to be held: the stream cannot be inspected within bounds."""

    def __init__(self, what: str = "held bytes"):
        super().__init__(TOO_LARGE)
        self.what = what


_B64_CLASS = bytes(0x61 if (chr(b).isascii() and (chr(b).isalnum() or chr(b) in "+/=_-")) else 0x20
                   for b in range(256))
# The first bytes of a body that is collected whole and extracted at its end like a buffered body (no decoder
# takes it piece by piece): archives and compressed files, documents and images whose text is compressed inside
# (PDF, PNG), other archives (ar/.deb; 7z, named unscannable).
_FILE_MAGICS = (b"%PDF-", b"\x89PNG\r\n\x1a\n", b"!<arch>\n", b"7z\xbc\xaf\x27\x1c")
_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"\x1f\x8b\x08", b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00",
           b"BZh", b"x\x01", b"x\x9c", b"x\xda", b"\x5d\x00\x00", *_FILE_MAGICS)
_COLLECTED = ("zip", "gzip", "zstd", "xz", "bz2", "lzma", "zlib")
# A script whose payload follows it (a zipapp, a makeself installer), when it is not served as text
_SCRIPT_TYPES = ("", "application/octet-stream", "application/x-sh", "application/x-shellscript",
                 "application/x-executable", "application/x-python-code")
WIDE_HEAD = 64  # bytes of a head that is not ASCII looked at for UTF-16/32 text


def whole_body(head: bytes, mime: str, charset: str) -> bool:
    """Is a body that starts with `head` collected whole (see _FILE_MAGICS)? Also text in a charset that is not
    ASCII-compatible: UTF-16/32 (BOM, label or NUL pattern in the head), utf-7 or EBCDIC when declared."""
    kind = sniff_container(head)
    if kind in _COLLECTED and not (kind == "zlib" and head[1:2] == b"^"):  # "x^…" is text
        return True
    if head.startswith(_FILE_MAGICS) or (head.startswith(b"#!") and mime in _SCRIPT_TYPES):
        return True
    if declared_codec(charset) is not None:
        return True
    return wide_charset(head, charset) is not None or hidden_wide_text(head) is not None


TAIL = 256  # Base64Run: bytes of new text looked at first
HOLD_RUN = 8  # a trailing base64 run this long is held until it ends (it may be a blob); shorter runs flow


_PAD_BREAK = re.compile(rb"=(?=[A-Za-z0-9+/=_-])")


def _classes(text: bytes) -> bytes:
    """`text` as classes: `a` for a base64 character, a space for a break. Padding followed by more base64 is a
    break too: it ends a blob, what follows starts a new run ("TOKEN=ghp_…"). A `\r` at the very end is not a break
    yet: it may begin the `\r\n` of a wrapped line."""
    classes = text.translate(_B64_CLASS)
    if b"=" not in text[:-1] and not text.endswith(b"\r"):
        return classes
    marked = bytearray(classes)
    for m in _PAD_BREAK.finditer(text):
        marked[m.start()] = 0x20
    if text.endswith(b"\r") and marked:
        marked[-1] = 0x61
    return bytes(marked)


class Base64Run:
    """The trailing base64 run of a stream of text, kept as the text grows, and the text before it once the run
    has ended (where blobs may be). A block of wrapped lines (equal lengths, a multiple of 4: MIME/PEM, GitHub's
    contents API) counts as one run; padding (`=`) before more base64 ends a run ("TOKEN=ghp_…" starts a new one).

    Each push looks at the new bytes and the run's known shape only (a block of lines of `width` ending at
    `lines_end`, then a partial line of base64 characters), never the whole run again: a megabyte of base64
    costs each byte once.
    """

    __slots__ = ("data", "at", "width", "lines_end")

    def __init__(self):
        self.data = bytearray()  # the open run
        self.at = 0  # stream offset of data[0]
        self.width: int | None = None  # the run starts with a block of wrapped lines this long
        self.lines_end = 0  # where that block ends in data: the partial line after it is base64 only

    def push(self, text: bytes, at: int, closed: bool = True) -> tuple[bytes, int]:
        """Add `text` (at stream offset `at`); return (what is no longer part of the open run, its offset).
        `closed` False: that text is not wanted (the caller knows it holds no blob), b"" comes back instead."""
        want = closed
        run = self.data
        if not run:
            self.at = at
        # the last bytes usually decide it (no copy of a long text); else the run's last byte (a padding `=` there
        # ends the run) and all the new text
        found = self._start(text[-TAIL:], len(run) + len(text) - TAIL, True) if len(text) > TAIL else None
        if found is None:
            r0 = max(0, len(run) - 1)
            found = self._start(bytes(run[r0:]) + text, r0, False)
        k, k0, width = found
        closed_at = self.at
        if k == 0:
            run += text
            closed = b""
        elif k <= len(run):
            closed = bytes(run[:k]) if want else b""
            self.data = run[k:] + text
        else:
            closed = bytes(run) + text[:k - len(run)] if want else b""
            self.data = bytearray(text[k - len(run):])
        self.at += k
        self.width = width
        self.lines_end = k0 - k if width is not None else 0
        return closed, closed_at

    def _start(self, seg: bytes, r0: int, cut_short: bool) -> tuple[int, int, int | None] | None:
        """(where the open run of data + new text starts, where its partial line starts, its block's line width),
        from `seg`, that text from offset r0 on; `cut_short`: seg is only its end, None when more is needed."""
        classes = _classes(seg)
        lines_end = self.lines_end
        j = classes.rfind(b" ")
        if j == -1 and cut_short:
            return None
        k = r0 + j + 1 if j != -1 else lines_end  # no break: the run's partial line goes on
        k0, width = k, None
        while k >= 2:
            if k == lines_end:  # the end of the run's block of lines, all self.width long
                if width is None or width == self.width:
                    k, width = 0, self.width
                break
            if k - 2 < r0 and cut_short:
                return None
            if k - 1 < r0 or seg[k - 1 - r0] != 0x0A:
                break
            nl = k - 2 if k - 2 >= r0 and seg[k - 2 - r0] == 0x0D else k - 1
            j = classes.rfind(b" ", 0, nl - r0)
            if j == -1 and cut_short:
                return None
            line_start = r0 + j + 1 if j != -1 else lines_end
            n = nl - line_start
            if n < 16 or n % 4 or (width is not None and n != width):
                break
            width, k = n, line_start
        return k, k0, width

    def close(self, text: bytes, at: int) -> tuple[bytes, int]:
        """The end of the text: the run, `text` included, is closed."""
        closed_at = self.at if self.data else at
        closed = bytes(self.data) + text
        self.__init__()
        return closed, closed_at


def _word_like(run: bytearray) -> bool:
    """A word of prose (letters, lower case after the first, or all capitals), not the start of base64, which has
    digits, `+`, `/` or capitals inside within a few characters. Such a run flows while it is short: "Streaming" at
    the end of a model's delta is not held until the next one."""
    return len(run) < base64blobs.MIN_BLOB and run.isalpha() and (run[1:].islower() or run.isupper())


# Looked for in the raw window's prefilter pass (ScanWindow.scan): no match there, no blob in what that pass saw.
BLOB_MARK = quickcheck.run_expression(base64blobs._B64, base64blobs.MIN_BLOB)


def _may_hold_blob(text: bytes) -> bool:
    """A blob starts with MIN_BLOB base64 characters in a row (one Hyperscan pass when installed)."""
    return quickcheck.run_of(base64blobs._B64, base64blobs.MIN_BLOB).may_match(text, min_bytes=0)


# Bytes a separated hex run is made of (hex digits, separators, `0x`, line breaks) as " ", the rest as "n"
_NOT_RUN = bytes(0x20 if b in b"0123456789abcdefABCDEFxX :,.-\t\r\n" else 0x6E for b in range(256))
HEX_GAP = 160  # a hex region closes this far past its last trigger (two lines of a dump)
HEX_LOOKBACK = 4096  # text kept to find where the run holding a trigger starts
_TRIGGER_SPAN = 64  # the previous text scanned again with the new (a trigger across the boundary)


class HexRun:
    """Regions of a stream of text that may be separated hex or a hex dump (extract.hexsep), held from where they
    start until they end, then handed back whole to be decoded.

    A region opens at a trigger (hexsep.TRIGGERS: three printable pairs with separators, or a line that starts
    like a dump's), from the start of the run holding it (or of the dump's line), and stays open while triggers
    follow within HEX_GAP bytes: a run of printable pairs triggers at every pair, a dump at every line. Text with
    no trigger costs one Hyperscan pass and is not kept past HEX_LOOKBACK.
    """

    __slots__ = ("data", "at", "open_from", "last")

    def __init__(self):
        self.data = bytearray()  # text from stream offset `at` on
        self.at = 0
        self.open_from: int | None = None  # where the open region starts in data
        self.last = 0  # the end of its last trigger in data

    def push(self, text: bytes, at: int, final: bool = False) -> tuple[list[tuple[bytes, int]], int | None]:
        """Add `text` (at stream offset `at`); return (the regions that closed, each with its stream offset; the
        stream offset to hold from, or None)."""
        data = self.data
        if not data:
            self.at = at
        base = len(data)
        data += text
        spans: list[tuple[int, int]] = []
        if self.open_from is None and self.at == 0 and base < 512 and hexsep.DUMP_START.match(data):
            self.open_from, self.last = 0, len(data)  # a dump from the stream's first byte
        scan_from = max(0, base - _TRIGGER_SPAN)
        for kind, end in hexsep.triggers(bytes(data[scan_from:])):
            end += scan_from
            if end <= base:
                continue  # found in the previous push
            if self.open_from is not None and end - self.last > HEX_GAP:
                spans.append((self.open_from, self.last + HEX_GAP))
                self.open_from = None
            if self.open_from is None:
                self.open_from = self._start(kind, end)
            self.last = end
        if self.open_from is not None and (final or len(data) - self.last > HEX_GAP):
            spans.append((self.open_from, len(data) if final else self.last + HEX_GAP))
            self.open_from = None
        closed = [(bytes(data[s:e]), self.at + s) for s, e in spans]
        keep = self.open_from if self.open_from is not None else max(0, len(data) - HEX_LOOKBACK)
        if final:
            keep = len(data)
        if keep:
            del data[:keep]
            self.at += keep
            self.last -= keep
            if self.open_from is not None:
                self.open_from = 0
        return closed, None if self.open_from is None else self.at + self.open_from

    def _start(self, kind: int, end: int) -> int:
        """Where the run (or the dump line) holding the trigger that ends at `end` starts."""
        data = self.data
        if kind == hexsep.DUMP_TRIGGER:
            return data.rfind(b"\n", 0, end - 1) + 1
        lo = max(0, end - HEX_LOOKBACK)
        return lo + bytes(data[lo:end]).translate(_NOT_RUN).rfind(b"n") + 1


class TextScanner:
    """One stream of text through the views a buffered body gets, fed incrementally, so none exists on one side
    only: chunks in, (bytes safe to forward, redaction spans in them) out.
      - the bytes as they are (ScanWindow: minimal hold-back);
      - their escape view (views.EscapeView: JSON escapes such as `\\n` or `\\u0067` before a token, `\\/`,
        HTML character references), scanned with its own window; a cut or redaction there maps back to the bytes;
      - base64 runs (Base64Run), decoded and extracted (extract: text, archives, nested base64) once the run ends; a
        run of HOLD_RUN or more base64 characters (unless it reads as a word) is held until then (GitHub's
        contents API, data: URLs, a token base64-encoded and streamed a few characters per event);
      - separated hex and hex dumps (HexRun), held from their start and decoded once they end.
    The bytes are released only as far as every view has decided them (`decided`). ByteStreamScanner runs a body
    through it; sse.SSEScanner the reassembled text of each delta channel. More than `limits.max_inspect_bytes`
    held raises HoldLimit (policy: on_oversize).
    """

    def __init__(self, detector, verdicts: Verdicts | Judge, location: str = "body", fixed_length: bool = False,
                 limits: Limits | None = None, mime: str = ""):
        self.detector = detector
        self.verdicts = verdicts if isinstance(verdicts, Verdicts) else Verdicts(verdicts)
        self.window = ScanWindow(detector, self.verdicts, location, fixed_length)
        self.window.wait_open = True
        self.location = location
        # the body's type adds the escapes of its kind: quoted-printable in MIME, CDATA and comments in markup
        self.view = EscapeView(mime=mime.startswith(("multipart/", "message/")),
                               markup="xml" in mime or "html" in mime)
        self.vwindow: ScanWindow | None = None  # made at the first escape: until then the view is the bytes
        self.limits = limits if limits is not None else Limits()
        self.max_hold = max(self.limits.max_inspect_bytes, 1)
        self.run = Base64Run()  # of the view: held while open, searched for blobs once it ends
        self.hexes = HexRun()  # of the view: separated hex, held while open
        self.hold_runs = True  # False: open runs flow (a delta channel's first text: an id that never grows)
        self.blob_prechecks = 0  # closed base64 run texts looked at by a pass of their own (not the window's)

    @property
    def stopped(self) -> bool:
        return self.window.stopped

    @property
    def decided(self) -> int:
        """Offset up to which every view has decided the bytes (all of them released)."""
        return self.window.decided

    def held(self) -> bytes:
        w = self.window
        return w._buf[w._released - w._base:]

    def push(self, data: bytes, final: bool = False) -> tuple[bytes, list[tuple[int, int, bytes]]]:
        window = self.window
        if window.stopped:
            return b"", []
        escapes = self.view
        view = escapes.feed(data, final)
        vwin = self.vwindow
        if vwin is None and escapes.escaped:
            vwin = self._open_view(escapes.out - len(view))
        if vwin is not None:
            vwin.push(view, final)
            if vwin.stopped:
                return window.stop_at(escapes.to_source(vwin.blocked_at)), []
        # One prefilter pass over the held bytes and `data`: findings, hold-back, and, while the view is the bytes
        # themselves and the base64 run text this push closes lies within them, whether any run of base64 long
        # enough to begin a blob is there at all (usually not: then the closed text needs no look of its own).
        run = self.run
        mark = None
        if vwin is None and len(run.data) < base64blobs.MIN_BLOB and \
                (run.at if run.data else escapes.out - len(view)) >= window._base:
            mark = BLOB_MARK
        blob_free = window.scan(data, final, mark) == -1
        hold_from = self._blobs(view, final, blob_free)
        if window.stopped:
            return b"", []
        hex_from = self._hexes(view, final)
        if window.stopped:
            return b"", []
        limit = None
        if not final:
            undecided = vwin.decided if vwin is not None else escapes.out
            for held in (hold_from, hex_from):
                if held is not None:
                    undecided = min(undecided, held)
            limit = escapes.to_source(undecided)
        out = window.release(limit)
        if vwin is not None:
            escapes.forget(vwin.decided)
        if len(window._buf) - (window._released - window._base) > self.max_hold:
            raise HoldLimit()
        return out

    def _open_view(self, start: int) -> ScanWindow:
        """The escape view's window, from the first escape on. Before view offset `start` the view is the bytes
        themselves, so the raw window's context up to there (not an escape it holds undecoded) seeds it."""
        w = self.window
        vwin = ScanWindow(self.detector, self.verdicts, self.location + ":unescaped")
        vwin.on_redact = self._redact_escaped
        vwin.wait_open = True
        vwin.accept = self.view.touches  # a token without escapes in or around it: the raw window's
        vwin._base = vwin._released = w._base
        vwin.push(w._buf[:max(0, start - w._base)])
        self.vwindow = vwin
        return vwin

    def _redact_escaped(self, f: Finding) -> None:
        self.window.redact(self.view.to_source(f.start), self.view.to_source(f.end, end=True), f.entry_id)

    def _blobs(self, view: bytes, final: bool, blob_free: bool = False) -> int | None:
        """Scan base64 runs that ended; return the view offset to hold from (an open run) or None. A blob holding
        a secret stops the window. `blob_free`: the text this closes is known to hold no run a blob can begin
        with (it is not even copied)."""
        if not view and not final:
            return self._hold()
        at = self.view.out - len(view)
        closed, at = self.run.close(view, at) if final else self.run.push(view, at, not blob_free)
        if len(closed) >= base64blobs.MIN_BLOB and not blob_free:
            self.blob_prechecks += 1
            if _may_hold_blob(closed) and self._decoded_secret(closed, at):
                return None
        if len(self.run.data) > self.max_hold:
            raise HoldLimit("base64 run")
        return self._hold()

    def _hold(self) -> int | None:
        run = self.run.data
        if self.hold_runs and len(run) >= HOLD_RUN and not _word_like(run):
            # 3 base64 characters carry 2 whole bytes: at most "gh" of a token the blob starts with
            return self.run.at + 3
        return None

    def _hexes(self, view: bytes, final: bool) -> int | None:
        """Decode the hex regions that ended; return the view offset to hold from (an open one) or None. A region
        holding a secret stops the window."""
        regions, hold = self.hexes.push(view, self.view.out - len(view), final)
        for text, at in regions:
            for start, _end, decoded in hexsep.find(text):
                if self._extracted_secret(decoded, at + start, ":hex", raw=True):
                    return None
        if len(self.hexes.data) > self.max_hold:
            raise HoldLimit("hex run")
        return hold

    def _decoded_secret(self, text: bytes, at: int) -> bool:
        """Base64 blobs in `text` (view offset `at`), decoded and extracted; True when one stops the stream."""
        for start, end in find_blobs(text):
            if self._extracted_secret(text[start:end], at + start, ":base64", raw=False):
                return True
        return False

    def _extracted_secret(self, body: bytes, at: int, suffix: str, raw: bool) -> bool:
        """`body` extracted as text and scanned (with its own bytes when `raw`: decoded content, not a run the other
        views scan); True when a secret in it stops the stream at view offset `at`."""
        ext = extract_http(url=None, headers=[("content-type", "text/plain")], body=body, limits=self.limits)
        segments = [seg for seg in ext.segments if raw or seg.location != "body"]
        blocked, redact = judge_segments(self.detector, self.verdicts, segments,
                                         lambda f, _seg: f.at(self.location + suffix))
        if blocked is not None or redact:  # an encoded secret cannot be redacted in place: cut
            self.window.stop_at(self.view.to_source(at))
            return True
        return False


class ByteStreamScanner:
    """A streamed body (chunked download, large upload): chunks in, chunks safe to forward out.

    The body's text goes through a TextScanner (the bytes, their escape view, base64 runs); a body that starts as
    an archive, a compressed file, a document or image with compressed text, or text in a charset that is not
    ASCII-compatible (whole_body) cannot be decoded piece by piece: it is collected and extracted whole at its
    end, like a buffered body. Whatever would need more than `limits.max_inspect_bytes` held
    raises HoldLimit (policy: on_oversize).
    """

    def __init__(self, detector, judge: Judge, location: str = "body", fixed_length: bool = False,
                 limits: Limits | None = None, ctype: str = ""):
        self.detector = detector
        self._mime, params = header_params(ctype) if ctype else ("", {})
        self._charset = params.get("charset", "")
        self.text = TextScanner(detector, judge, location, fixed_length, limits, self._mime)
        self.verdicts = self.text.verdicts
        self.window = self.text.window
        self.location = location
        self.limits = self.text.limits
        self.max_hold = self.text.max_hold
        self.ctype = ctype
        self._head = b""  # the first bytes, until they say whether the body is collected whole (whole_body)
        self._collect: bytearray | None = None

    @property
    def stopped(self) -> bool:
        return self.window.stopped

    def feed(self, data: bytes) -> list[bytes]:
        return self._push(data, False)

    def finish(self) -> list[bytes]:
        return self._push(b"", True)

    def held(self) -> bytes:
        """What is held back now (for a stream that policy lets through uninspected)."""
        if self._collect is not None:
            return bytes(self._collect)
        if self._head:
            return self._head
        return self.text.held()

    def _push(self, data: bytes, final: bool) -> list[bytes]:
        if self.window.stopped:
            return []
        if self._collect is None and self._head is not None:
            head = self._head = self._head + data
            if not final and ((len(head) < 10 and any(m.startswith(head[:len(m)]) for m in _MAGICS))
                              or (len(head) < WIDE_HEAD and (b"\x00" in head or not head.isascii()))):
                return []  # may still be a magic, or UTF-16/32 text
            data, self._head = head, None
            if whole_body(data, self._mime, self._charset):
                self._collect = bytearray()
        if self._collect is not None:
            return self._collected(data, final)
        released, _ = self.text.push(data, final)
        return [released] if released else []

    def _collected(self, data: bytes, final: bool) -> list[bytes]:
        """An archive or compressed file: held whole, extracted at its end like a buffered body."""
        self._collect += data
        if len(self._collect) > self.max_hold:
            raise HoldLimit("archive")
        if not final:
            return []
        body = bytes(self._collect)
        ext = extract_http(url=None, headers=[("content-type", self.ctype)] if self.ctype else [], body=body,
                           limits=self.limits)
        blocked, redact = judge_segments(self.detector, self.verdicts, ext.segments,
                                         lambda f, seg: f.at(self.location + ":" + seg.location, 0))
        if blocked is not None or redact:  # inside an archive: cannot be redacted in place
            self.window.stopped = True
            self.window.blocked_at = 0
            return []
        if ext.unscannable:
            reason = ext.unscannable[0].reason
            raise Uninspectable(reason, can_pass=reason in OVERSIZE_REASONS)
        self._collect = bytearray()
        return [body] if body else []

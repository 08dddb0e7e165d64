"""Base64 blobs inside text: decoded and extracted when they hold text or an archive.

GitHub's contents API, many upload APIs and data: URLs carry files this way. A blob is a run of at least
24 base64 characters (standard or URL-safe alphabet), optionally `=`-padded, or a block of equal-length
lines (MIME/PEM wrapping). Runs are found in C (translate + find); Python runs once per candidate. A
candidate's first 3 KB are decoded first: binary (an image, a hash, a token itself) stops there.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

from . import hexsep, quickcheck
from .core import DEPTH, Ctx, Level, Loc, Segment
from .encoding import sniff_container
from .text import is_textual, wide_charset

MIN_BLOB = 24
_SNIFF = 4096  # base64 characters decoded to classify a blob
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_RUNS = bytes(0x61 if b in _B64 else 0x20 for b in range(256))
_LINES = bytes(0x61 if b in _B64 else 0x6E if b == 0x0A else 0x72 if b == 0x0D else 0x73 if b in (0x20, 0x09) else 0x20
               for b in range(256))  # line-aware: base64 `a`, \n `n`, \r `r`, indentation `s`
_RUN = b"a" * MIN_BLOB
_HEX = b"0123456789abcdefABCDEF"
# Hex pairs of 16 printable ASCII (or tab, LF, CR) bytes in a row: text written as hex. Runs of hex digits only are
# otherwise left out by the bulk finder; a SHA or a random id holds such a stretch with a chance of about 1e-7.
_HEX_TEXT = rb"(?:[2-7][0-9a-fA-F]|0[9aAdD]){16}"
BULK_AFTER = 64  # runs found one by one before the rest of a large segment goes to the bulk finder
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_B32_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_WS = b"\r\n \t"  # a wrapped block's line breaks and indentation
_HEX_WS = b"0123456789abcdefABCDEF" + _WS
_B32_WS = _B32_CHARS + _WS
_MAX_BASE32 = 64 * 1024  # base64.b32decode is not C code: bounded
_PRINTABLE = bytes(0x61 if 0x21 <= b < 0x7F else 0x20 for b in range(256))
_PRINTABLE_RUN = b"a" * 20  # shorter than the shortest checksummed token


@lru_cache(maxsize=64)
def _wrapped(width: int) -> re.Pattern:
    """Continuation lines of a block wrapped at `width` characters (on the line-aware translation)."""
    return re.compile(rb"(?:r?ns*a{%d}(?!a))*(?:r?ns*a{1,%d}(?!a))?" % (width, width))


def _runs(data: bytes, runs: bytes):
    """(start, end) of the runs of >= MIN_BLOB base64 characters, in order; the generator's `send(pos)` skips to
    `pos` (after a wrapped block). Runs are found one by one (find on the translation); once a large segment has
    shown BULK_AFTER of them (a log full of SHAs and ids), the rest go to the Hyperscan bulk finder, which leaves
    out the runs of hex digits only (never worth decoding: they cost no Python step each) unless they spell text
    (hex pairs of printable ASCII, `_HEX_TEXT`). A segment that is mostly one long run (an inline image) never
    pays for the bulk finder, whose cost grows inside long runs."""
    n = len(data)
    find = runs.find
    pos = find(_RUN)
    found = 0
    while pos != -1:
        end = find(b" ", pos)
        if end == -1:
            end = n
        skip = yield pos, end
        after = max(end, skip or 0)
        found += 1
        if found == BULK_AFTER and n - after >= quickcheck.MIN_BYTES:
            finder = quickcheck.run_ends(_B64, _HEX, MIN_BLOB, _HEX_TEXT)
            if finder is not None:
                yield from _bulk_runs(finder, data, runs, after)
                return
        pos = find(_RUN, after)


def _bulk_runs(finder, data: bytes, runs: bytes, offset: int):
    n = len(data)
    ends = [offset + e for e in finder.ends(memoryview(data)[offset:])]
    tail = runs.rfind(b" ") + 1  # a run reaching the end of data has no byte after it: not in `ends`
    if n - max(tail, offset) >= MIN_BLOB:
        ends.append(n)
    skip = offset
    for end in ends:
        if end <= skip:  # inside the wrapped block just returned
            continue
        start = max(offset, runs.rfind(b" ", 0, end) + 1)
        if end - start >= MIN_BLOB:
            skip = (yield start, end) or 0


def find_blobs(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each base64 candidate in `data` (end includes padding and wrapped lines)."""
    if not quickcheck.run_of(_B64, MIN_BLOB).may_match(data):
        return []  # every candidate starts with such a run
    runs = data.translate(_RUNS)
    spans = []
    append = spans.append
    lines = None
    candidates = _runs(data, runs)
    step = None
    while True:
        try:
            pos, end = candidates.send(step)
        except StopIteration:
            break
        nxt = data[end:end + 1]
        if nxt == b"=":  # padding
            end += 2 if data[end + 1:end + 2] == b"=" else 1
        elif nxt in (b"\n", b"\r") and (end - pos) % 4 == 0 and end - pos <= 1024:  # a wrapped block?
            if lines is None:
                lines = data.translate(_LINES)
            width = end - pos
            m = _wrapped(width).match(lines, end)
            if m and m.end() > end:
                stop = m.end()
                if data[stop:stop + 1] == b"=":
                    stop += 2 if data[stop + 1:stop + 2] == b"=" else 1
                # A single short line after the first is the tail of a 2-line block only when it completes a
                # whole number of base64 quanta (or is padded); otherwise it is the next line of text.
                if lines.count(b"a", end, stop) >= width or (
                        (width + lines.count(b"a", end, stop)) % 4 == 0 or data[stop - 1:stop] == b"="):
                    end = stop
        start = pos
        if data[start] == 0x2D:  # PEM / markdown dashes are not part of the blob
            while start < end and data[start] == 0x2D:
                start += 1
        if end - start >= MIN_BLOB:
            append((start, end))
        step = end
    return spans


SHORT_WIDTHS = range(4, MIN_BLOB)  # columns of a wrapped block whose lines are too short to be runs
SHORT_LINES = 2  # full lines of a short-wrapped block at least (and MIN_BLOB characters in them)
# A block holds one of these (base64 of a token always does): lists of lowercase words or of numbers never do.
_MARKED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ+/-_"
_UNMARKED = bytes(b for b in range(256) if b not in _MARKED)
_REVERSED = {w: re.compile(rb"(?:nr?a{%d}s*)+" % w) for w in SHORT_WIDTHS}  # a block's lines, read backwards
_BLOCKS = re.compile(rb"(?:^|(?<=n))s*(a{%d,%d})r?n(?:s*\1r?n)+" % (SHORT_WIDTHS[0], SHORT_WIDTHS[-1]))
_TAIL = {w: re.compile(rb"s*a{1,%d}" % w) for w in SHORT_WIDTHS}


def find_short_blocks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of blocks of base64 wrapped at fewer than MIN_BLOB columns: SHORT_LINES or more lines of the
    same width (indented or not, LF or CRLF) holding an uppercase letter or `+/-_`, and a shorter last line. With
    Hyperscan one pass finds the blocks' ends, so text without such blocks (prose, code, word and number lists)
    costs that pass only. Without it one regex finds them (a backreference: equal widths), many times slower: only
    in segments of up to quickcheck.MIN_BYTES."""
    if b"\n" not in data:
        return []
    finder = quickcheck.line_blocks(_B64, _MARKED, SHORT_WIDTHS, MIN_BLOB, SHORT_LINES)
    if finder is None and len(data) > quickcheck.MIN_BYTES:
        return []  # the regex costs tens of ms per MB of text with many lines: bounded to small segments
    reports = finder.blocks(data) if finder is not None else None
    if reports == []:
        return []
    lines = data.translate(_LINES)
    found: list[tuple[int, int, int]] = []  # (width, start, end of the last full line)
    if reports is None:
        for m in _BLOCKS.finditer(lines):
            found.append((m.end(1) - m.start(1), m.start(), m.end()))
    else:
        backwards = lines[::-1]
        n = len(data)
        for w, to in reports:
            # Past the block's last newline: the line that stopped it follows, holding a newline at most as its
            # last byte; or the end of data does (the block's own newline may then be the last byte).
            end = n if to == n and data.endswith(b"\n") and _REVERSED[w].match(backwards, 0) else \
                data.rfind(b"\n", 0, to - 1) + 1
            start = _block_start(lines, backwards, end, w)
            if start is not None:
                found.append((w, start, end))
    spans = []
    for w, start, end in found:
        least = max(SHORT_LINES, -(-MIN_BLOB // w))
        if lines.count(b"n", start, end) < least:
            continue
        marked_before = end
        for _ in range(least - 1):  # a marked line followed by least - 1 lines (what the bulk finder reports)
            marked_before = lines.rfind(b"n", start, marked_before - 1) + 1
        if not data[start:marked_before].translate(None, _UNMARKED):
            continue
        tail = _TAIL[w].match(lines, end)
        if tail is not None:
            stop = tail.end()
            while stop < len(data) and data[stop] == 0x3D and stop - tail.end() < 2:  # padding
                stop += 1
            if stop == len(data) or data[stop] in b"\r\n":
                end = stop
        block = data[start:end]
        if block.endswith(b"=") or lines.count(b"a", start, end) % 4 == 1:
            # padded (or not decodable as it is): whole quanta; a line of the same width before the block (a word
            # heading it) is left out
            for _ in range(3):
                if (lines.count(b"a", start, end) + block.count(b"=")) % 4 == 0:
                    break
                newline = lines.find(b"n", start, end)
                start = end if newline == -1 else newline + 1
            else:
                continue
            if start >= end:
                continue
            block = data[start:end]
        spans.append((start, end))
    return spans


def _block_start(lines: bytes, backwards: bytes, end: int, w: int) -> int | None:
    """Where the block of width-`w` lines ending at `end` starts. Its lines are usually alike (same indentation and
    line end): they are matched in strides that double, by comparing bytes; the lines before them by a regex."""
    n = len(lines)
    last = lines.rfind(b"n", 0, end - 1) + 1
    unit = lines[last:end]
    if unit.strip(b"s").rstrip(b"rn") != b"a" * w:
        return None
    size, count = len(unit), 1
    while end - 2 * count * size >= 0 and lines[end - 2 * count * size:end - count * size] == unit * count:
        count *= 2
    step = count // 2
    while step:
        if end - (count + step) * size >= 0 and lines[end - (count + step) * size:end - count * size] == unit * step:
            count += step
        step //= 2
    start = end - count * size
    m = _REVERSED[w].match(backwards, n - start)
    if m is not None:
        start = n - m.end()
    if start and lines[start - 1] != 0x6E:  # its first line is the end of a longer one: not in the block
        start = lines.index(b"n", start) + 1
    return start


def b64decode(blob: bytes) -> bytes:
    """Lenient decode of standard or URL-safe base64, with or without padding and line breaks."""
    clean = blob.translate(_URLSAFE, b"=\r\n \t")
    try:
        return binascii.a2b_base64(clean + b"==")
    except binascii.Error:  # 4n+1 characters: the last one cannot be decoded
        try:
            return binascii.a2b_base64(clean[:-1] + b"==")
        except binascii.Error:
            return b""


def worth_decoding(head: bytes) -> bool:
    """A container, text (also UTF-16/32 or an 8-bit charset), or binary holding a run of printable ASCII long
    enough to be a token (a sqlite page, an image's metadata): bytes a receiver reads tokens from."""
    return (sniff_container(head) is not None or is_textual(head) or wide_charset(head) is not None
            or head.translate(_PRINTABLE).find(_PRINTABLE_RUN) != -1)


def scan_blobs(ctx: Ctx, seg: Segment, lv: Level) -> None:
    """Decode the base64 blobs of an emitted text segment and extract what they hold."""
    data = seg.data
    if len(data) < MIN_BLOB:
        return
    if data is ctx.blob_free:  # checked: no run of MIN_BLOB characters, no separated hex (plain_text_body)
        spans = []
    else:
        spans = find_blobs(data)
        _scan_separated_hex(ctx, seg, lv)
    short = find_short_blocks(data)
    if short:
        spans = sorted(spans + short)
    for start, end in spans:
        blob = data[start:end]
        if _hex_or_base32(blob):
            _scan_hex_or_base32(ctx, seg, lv, start, end, blob)
            continue
        head = b64decode(blob[:_SNIFF])
        n = len(head)
        if n < 16 or not worth_decoding(head):  # most candidates: hashes, IDs, tokens themselves
            continue
        loc = _blob_loc(seg, start, end)
        if lv.base64 >= ctx.limits.max_base64_depth:
            ctx.fail(loc, DEPTH)
            continue
        decoded = b64decode(blob) if len(blob) > _SNIFF else head
        if len(blob) > _SNIFF and not worth_decoding(decoded):
            continue
        decoded = ctx.take(decoded, loc)
        ctx.content(decoded, loc, lv._replace(base64=lv.base64 + 1))
        if ctx.left <= 0:
            return


def _hex_or_base32(blob: bytes) -> bool:
    """Only hex digits, or only base32 characters (padding aside). A prefix decides most blobs (an image's base64
    has a lowercase letter in its first characters): the whole blob is only looked at when the prefix fits."""
    head = blob[:64]
    if head.translate(None, _HEX_WS) and head.rstrip(b"=").translate(None, _B32_WS):
        return False
    return not blob.translate(None, _HEX_WS) or not blob.rstrip(b"=").translate(None, _B32_WS)


def _scan_hex_or_base32(ctx: Ctx, seg: Segment, lv: Level, start: int, end: int, blob: bytes) -> None:
    """A run of only hex (or only base32) characters: decoded as that, not as base64. Hashes and IDs decode to
    random bytes and stop at `worth_decoding`; text written as hex or base32 is scanned. A block wrapped over lines
    (`xxd -p`: 60 columns) is joined first."""
    if b"\n" in blob:
        blob = blob.translate(None, _WS)
    if not blob.translate(None, _HEX):
        if len(blob) % 2:
            blob = blob[:-1]
        decoded = binascii.unhexlify(blob[:_SNIFF])
        full = (lambda: binascii.unhexlify(blob)) if len(blob) > _SNIFF else None
        suffix = ":hex"
    elif len(blob) <= _MAX_BASE32:
        try:
            decoded = base64.b32decode(blob + b"=" * (-len(blob) % 8))
        except (binascii.Error, ValueError):
            return
        full, suffix = None, ":base32"
    else:
        return
    _extract_decoded(ctx, seg, lv, start, end, decoded, full, suffix)


def _scan_separated_hex(ctx: Ctx, seg: Segment, lv: Level) -> None:
    """Hex with separators (`67:68:70`, `0x67, 0x68`, dumps): decoded as hex, kept on the same terms."""
    for start, end, decoded in hexsep.find(seg.data):
        _extract_decoded(ctx, seg, lv, start, end, decoded[:_SNIFF // 2], lambda d=decoded: d, ":hex")
        if ctx.left <= 0:
            return


def _extract_decoded(ctx: Ctx, seg: Segment, lv: Level, start: int, end: int, decoded: bytes, full, suffix: str):
    """`decoded` (the head of what seg.data[start:end] decodes to; `full()` the rest) extracted when worth it."""
    if len(decoded) < 16 or not worth_decoding(decoded):
        return
    loc = _blob_loc(seg, start, end, suffix)
    if lv.base64 >= ctx.limits.max_base64_depth:
        ctx.fail(loc, DEPTH)
        return
    decoded = ctx.take(full() if full else decoded, loc)
    ctx.content(decoded, loc, lv._replace(base64=lv.base64 + 1))


def _blob_loc(seg: Segment, start: int, end: int, suffix: str = ":base64") -> Loc:
    text = seg.location + suffix
    if seg.resolver is None and seg.many is None:
        return Loc(text)
    return Loc(text, lambda: seg.locate(start, end) + suffix)

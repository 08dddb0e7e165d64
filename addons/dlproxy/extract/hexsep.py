"""Hex written with separators between its bytes, as tools print it and receivers read it back.

    67:68:70:5f:…            openssl fingerprints and `-text` dumps (wrapped, indented), MAC-style colons
    67-68-70-5f-…  67 68 70  dashes, spaces (`bytes.fromhex`, `xxd -g1`, `bytes.hex(" ")`)
    0x67, 0x68, 0x70, …      C/JavaScript/Python byte arrays (`xxd -i`)
    00000000: 6768 705f …    dumps with an offset per line and an ASCII column: `xxd`, `hexdump -C`, `od -t x1`,
                             Wireshark; `od -x` and plain `hexdump` print 2-byte words little-endian (decoded too)

(Runs of hex digits without separators are base64 candidates: base64blobs decodes them. `\\x67` and `%67` are
escapes: the escape view decodes them.)

Text without such a run pays one Hyperscan pass for `may_hold`: a run of 10 hex pairs of printable ASCII with a
separator after each (a token written as hex has at least that many in a row, also in a dump line of 16 bytes or
an openssl line of 15; of a space-separated dump, 8 in one half of a `hexdump -C` line). Pairs of printable ASCII
start with a digit 2-7, which prose rarely holds and JSON or logs hold where the separator does not follow: the
pass stays near memory speed. Only then do the Python regexes run. Without Hyperscan they run on segments of up to
quickcheck.MIN_BYTES only. A streamed body is held from a `TRIGGERS` match on (inspect.stream.HexRun).
"""

from __future__ import annotations

import binascii
import re
from functools import lru_cache

from . import quickcheck

MIN_PAIRS = 16  # a separated run this long is decoded (the shortest checksummed token is longer)
_T = rb"[2-7][0-9a-fA-F]"  # a hex pair of printable ASCII
# The precheck: 10 such pairs in a row (8 with spaces: a half line of `hexdump -C`), each separator a pattern of its
# own (literal separators keep the pass fast; a class of them or `{1,2}` makes it many times slower)
PRECHECK = tuple([rb"(?:" + _T + sep + rb"){9}" + _T for sep in (rb":", rb"-", rb"\.", rb",", rb", ")]
                 + [rb"(?:" + _T + rb" ){7}" + _T,
                    rb"(?:0[xX]" + _T + rb", ?){9}0[xX]" + _T,  # byte arrays
                    rb"(?:" + _T + _T + rb" ){4}" + _T + _T])  # xxd / od -x groups of two bytes

_H = rb"[0-9a-fA-F]"
# A run: pairs (optionally `0x`-prefixed) with a separator between each two; a line break (after a separator or
# instead of one) and the next line's indentation may come between them (openssl, xxd -i wrap their output).
_RUN = re.compile(rb"(?<![0-9A-Za-z])(?:0[xX])?" + _H + rb"{2}(?:(?:[ :,.-]{1,2}(?:[ \t]*\r?\n[ \t]*)?|[ \t]*\r?\n"
                  rb"[ \t]*)(?:0[xX])?" + _H + rb"{2}){%d,}(?![0-9A-Za-z])" % (MIN_PAIRS - 1))
# A dump line: at a line start (or a string's), an offset (hex or octal), then groups of 2, 4 or 8 hex digits one or
# two spaces apart; the ASCII column (after more spaces, `|` or `>`) is not matched.
_DUMP_LINE = re.compile(rb"(?:^|(?<=[\"'`=]))[ \t]*(?:0x)?[0-9a-fA-F]{4,16}(:?)[ \t]{1,4}((?:" + _H + rb"{8}|"
                        + _H + rb"{4}|" + _H + rb"{2})(?: {1,2}(?:" + _H + rb"{8}|" + _H + rb"{4}|" + _H + rb"{2})(?![0-9a-fA-F]))*)",
                        re.M)
_SEPARATORS = b" :,.-\r\n\t"


# Where a stream must start holding text back (inspect.stream.HexRun), each a pattern of its own (a few literal
# separators per pattern keep the pass near memory speed): three printable pairs with a separator after each, or
# with `, 0x` (byte arrays); two groups of two printable bytes (`xxd`, `od -x`); a line that starts like a dump's
# (an offset, then two groups of hex; the last pattern). Before one of them, at most two bytes of what a run
# spells have gone by.
_DUMP_HEAD = rb"[ \t]*(?:0x)?[0-9a-fA-F]{4,16}:?[ \t]{1,4}[0-9a-fA-F]{2,4} {1,2}[0-9a-fA-F]{2}"
TRIGGERS = tuple([rb"(?:" + _T + sep + rb"){3}" for sep in (rb":", rb"-", rb"\.", rb" ", rb",", rb", ", rb", 0x")]
                 + [rb"(?:" + _T + _T + rb" ){2}", rb"\n" + _DUMP_HEAD])
DUMP_TRIGGER = len(TRIGGERS) - 1
DUMP_START = re.compile(_DUMP_HEAD)  # the first line of a stream (no newline before it)
_TRIGGERS_RE = [re.compile(t) for t in TRIGGERS]


def triggers(data: bytes) -> list[tuple[int, int]]:
    """(index into TRIGGERS, end offset) of every trigger match in `data`, in order of end."""
    finder = quickcheck.matches(TRIGGERS)
    if finder is not None:
        return finder.find(data)
    found = [(i, m.end()) for i, r in enumerate(_TRIGGERS_RE) for m in r.finditer(data)]
    return sorted(found, key=lambda f: f[1])


@lru_cache(maxsize=1)
def _precheck():
    return quickcheck.any_of(PRECHECK)


def may_hold(data: bytes) -> bool:
    """May `data` hold a separated hex run worth decoding? (one Hyperscan pass; True without Hyperscan)"""
    return _precheck().may_match(data, min_bytes=0)


def find(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, decoded bytes) of every separated hex run and hex dump in `data`, in order. Dumps of 2-byte
    words without `:` after the offset (`od -x`, `hexdump`) are little-endian: they give two entries, the bytes
    as written and swapped."""
    if len(data) < 2 * MIN_PAIRS or not may_hold(data):
        return []
    if quickcheck.hyperscan is None and len(data) > quickcheck.MIN_BYTES:
        return []  # the regexes alone cost a pass per separator-like byte: bounded to small segments
    found = _dumps(data)
    taken = [(s, e) for s, e, _ in found]
    for m in _RUN.finditer(data):
        start, end = m.span()
        if any(s <= start < e for s, e in taken):
            continue
        found.append((start, end, _run_bytes(m.group())))
    found.sort(key=lambda f: f[0])
    return found


def _run_bytes(run: bytes) -> bytes:
    if b"x" in run or b"X" in run:
        run = run.replace(b"0x", b"").replace(b"0X", b"")
    digits = run.translate(None, _SEPARATORS)
    return binascii.unhexlify(digits[:len(digits) // 2 * 2])


def _dumps(data: bytes) -> list[tuple[int, int, bytes]]:
    """Blocks of two or more consecutive dump lines, decoded."""
    if b"\n" not in data:
        return []
    out: list[tuple[int, int, bytes]] = []
    block: list[re.Match] = []
    for m in _DUMP_LINE.finditer(data):
        if block and data.count(b"\n", block[-1].end(), m.start()) != 1:
            _close(block, out)
            block = []
        block.append(m)
    _close(block, out)
    return out


def _close(block: list[re.Match], out: list[tuple[int, int, bytes]]) -> None:
    if len(block) < 2:
        return
    lines = [m.group(2).replace(b" ", b"") for m in block]
    # A full line's ASCII column can start with what reads as hex (`cafe`): every line but the last is full, so
    # the shortest of them is the line width.
    width = min(len(x) for x in lines[:-1])
    digits = b"".join(x[:width] for x in lines)
    decoded = binascii.unhexlify(digits[:len(digits) // 2 * 2])
    start, end = block[0].start(), block[-1].end()
    out.append((start, end, decoded))
    words = all(len(g) == 4 for m in block for g in m.group(2).split())
    if words and not any(m.group(1) for m in block):  # od -x, hexdump: little-endian 2-byte words
        swapped = bytearray(decoded[:len(decoded) // 2 * 2])
        swapped[0::2], swapped[1::2] = decoded[1::2][:len(swapped) // 2], decoded[0::2][:len(swapped) // 2]
        out.append((start, end, bytes(swapped)))



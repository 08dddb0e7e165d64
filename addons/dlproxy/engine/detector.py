"""The Detector: one prefilter pass for all prefixes, then shape, boundaries and validator at each hit.

Work is on bytes as they arrive from HTTP; offsets are byte offsets. The expensive part per byte is the
prefilter (C code); Python runs only at prefix hits, which clean text rarely has.
"""

from __future__ import annotations

import bisect
import re
import re._constants as sre_c
import re._parser as sre_parse
from collections import Counter
from dataclasses import dataclass

from . import validators
from .findings import Finding, fingerprint, mask
from .linear import KW_GROUP as _KW_GROUP
from .linear import compile_shape, shape_source
from .prefilter import Keyword, make_prefilter
from .profile import Entry, Profile, pattern_width

OPEN_RUN_MIN = 12  # see Detector.undecided_from


@dataclass(frozen=True)
class _Target:
    """One (entry, prefix) pair, compiled: what runs at a hit of that prefix."""

    entry: Entry
    prefix: str
    regex: re.Pattern  # or linear.Re2Shape: same .match(data, pos)
    kw_group: int  # group numbers, the same for both engines
    secret_group: int | None
    max_before: int  # > 0: the token may start before the keyword (mid-token keyword)
    max_len: int  # longest match, keyword included
    boundary: bytes  # 256 flags: token characters
    span_regex: re.Pattern  # the longest run of characters the match could consume
    run_back: re.Pattern  # a run of token characters, matched on reversed text (mid-token keywords)
    min_before: int  # shortest text `before` can match
    lead: bytes  # literal characters every `before` match starts with
    validator: validators.Validator | None
    params: dict
    passes_prefix: bool
    glue_ok: bool  # a strong checksum proves the token: no boundary needed on either side
    fixed_before: bool  # `before` has one width: the token starts exactly max_before before the keyword


class Detector:
    """Finds validated credentials of a profile's enabled entries in byte buffers."""

    def __init__(self, profile: Profile, backend: str = "auto"):
        self.profile = profile
        self._entries = {e.id: e for e in profile.entries}
        self._targets: list[list[_Target]] = []
        index: dict[tuple[bytes, bool], int] = {}
        for entry in profile.enabled_entries:
            for prefix in entry.prefixes:
                key = (prefix.encode("ascii"), entry.case_insensitive)
                if key not in index:
                    index[key] = len(self._targets)
                    self._targets.append([])
                self._targets[index[key]].append(_compile_target(entry, prefix))
        keywords = [Keyword(literal, ci, tuple(sorted({h for t in self._targets[i] for h in _heads(t.entry.pattern)})))
                    for (literal, ci), i in index.items()]
        self.prefilter = make_prefilter(keywords, backend)
        self.backend = self.prefilter.name
        self.keywords = keywords
        all_targets = [t for ts in self._targets for t in ts]
        self.max_token_len = max((t.max_len for t in all_targets), default=0)
        self.longest: dict[str, int] = {}  # entry id -> its longest match (a stream judges a shorter one later)
        for t in all_targets:
            self.longest[t.entry.id] = max(self.longest.get(t.entry.id, 0), t.max_len)
        # Proper heads of mid-token keywords ("T3Blb" of "T3BlbkFJ"), for a mid-token keyword cut off by the end
        # of the buffer: lowered head -> (head as written, case-insensitive?, the keyword's mid-token targets).
        # Heads of keywords that start their token are not held (see undecided_from).
        self._kw_heads: dict[bytes, list[tuple[bytes, bool, tuple[_Target, ...]]]] = {}
        for i, k in enumerate(keywords):
            mid_token = tuple(t for t in self._targets[i] if t.max_before)
            if mid_token:
                for n in range(1, len(k.literal)):
                    self._kw_heads.setdefault(k.literal[:n].lower(), []).append(
                        (k.literal[:n], k.case_insensitive, mid_token))
        self._max_head = max(map(len, self._kw_heads), default=0)
        self._head_at_end = re.compile(b"(?:" + b"|".join(re.escape(h) for h in self._kw_heads) + b")\\Z") \
            if self._kw_heads else None  # on the lowered tail: the longest head it ends with
        self._max_keyword = max((len(k.literal) for k in keywords), default=0)
        # Mid-token keywords: a trailing run of token characters may be the start of such a token before its
        # keyword has arrived. Per distinct set of token characters (a translate table: token characters to
        # `a`, others to a space): the longest run any of its entries can have, and each distinct
        # (literal lead, longest run) of those entries.
        runs: dict[bytes, set[tuple[bytes, int]]] = {}
        for t in all_targets:
            if t.max_before:
                runs.setdefault(bytes(0x61 if f else 0x20 for f in t.boundary), set()).add((t.lead, t.max_len))
        self._open_runs = [(table, max(n for _, n in specs), sorted(specs, key=lambda s: s[1]))
                           for table, specs in runs.items()]
        # The same with the entries that have a literal lead only: all a run shorter than OPEN_RUN_MIN can be.
        self._led_runs = [(table, longest, [s for s in specs if s[0]])
                          for table, longest, specs in self._open_runs if any(lead for lead, _ in specs)]
        # Any of them: the trailing run of this table holds each entry's run (a shortcut for the usual chunk end,
        # a word shorter than OPEN_RUN_MIN without any lead's first character).
        self._open_any = bytes(max((tbl[c] for tbl in runs), default=0x20) for c in range(256))
        self._open_longest = max((r[1] for r in self._open_runs), default=0)
        firsts = {lead[0] for _, _, specs in self._open_runs for lead, _ in specs if lead}
        self._not_lead_first = bytes(c for c in range(256) if c not in firsts)  # deleted: what is left is a lead's

    def entry(self, entry_id: str) -> Entry:
        return self._entries[entry_id]

    def scan(self, data: bytes | str, stats: Counter | None = None) -> list[Finding]:
        """Every validated credential in `data`, sorted by start; overlapping matches keep the strongest."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        return self._verified(data, self.prefilter.find(data), stats)

    def scan_open(self, data: bytes, since: int = 0,
                  mark: bytes | None = None) -> tuple[list[Finding], int, int | None]:
        """`(scan(data), undecided_from(data, since), mark_end)` from one prefilter pass: a stream scanner's step.
        `mark`: an extra Hyperscan expression looked for in the same pass; mark_end is where its first match ends
        (-1: none), None when it was not looked for (without Hyperscan)."""
        hits, mark_end = self.prefilter.find_open(data, HEAD_WIDTH, mark)
        return self._verified(data, hits, None), self._undecided(data, self._open_keywords(data, hits, since)), \
            mark_end

    def prepare_streams(self, *marks: bytes) -> None:
        """Build what scan_open needs now (the Hyperscan stream database, and one per `mark` stream scanners
        pass) rather than on the first streamed chunk, whose events would wait for the compile."""
        self.prefilter.find_open(b"", HEAD_WIDTH)
        for mark in marks:
            self.prefilter.find_open(b"", HEAD_WIDTH, mark)

    def undecided_from(self, data: bytes, since: int = 0) -> int:
        """Offset from which a token could still complete if more data arrived; len(data) when none can.

        Everything before it is decided: stream scanners may release those bytes (minus any findings). Of a token
        still arriving, the bytes before that offset hold at most a proper head of its keyword when the keyword
        starts the token ("gh" of "ghp_…": public literal characters), or, when the keyword is mid-token and its
        entry has no literal lead, fewer than OPEN_RUN_MIN of its characters; nothing else of it. Stream scanners
        keep released bytes as scan context, so the token is still found whole and the stream can be cut right
        where releasing stopped.

        `since`: everything before this offset was decided by earlier calls (a stream scanner's released
        bytes), so keywords wholly before it are not looked at again.
        """
        hits, _ = self.prefilter.find_open(data, HEAD_WIDTH)
        return self._undecided(data, self._open_keywords(data, hits, since))

    def _open_keywords(self, data: bytes, hits: list[tuple[int, int]], since: int) -> list[tuple[int, int]]:
        """The keyword occurrences a token may still be arriving at: those whose longest token could reach past
        the end, not wholly before `since`. `find` leaves out a keyword whose head (HEAD_WIDTH characters) is
        there and fits no token: decided; `find_open` adds those whose head is cut off by the end."""
        window = max(0, len(data) - self.max_token_len, since - self._max_keyword + 1)
        return [h for h in hits if h[0] >= window] if window else hits

    def _verified(self, data: bytes, hits: list[tuple[int, int]], stats: Counter | None) -> list[Finding]:
        if not hits:
            return []
        found: list[Finding] = []
        for start, kw in hits:
            for target in self._targets[kw]:
                finding = self._verify(data, start, target, stats)
                if finding is not None:
                    found.append(finding)
        return _resolve_overlaps(found) if len(found) > 1 else found

    def _undecided(self, data: bytes, keywords: list[tuple[int, int]]) -> int:
        """undecided_from, given the keyword occurrences whose token may still be arriving."""
        n = len(data)
        held = n
        # A mid-token keyword cut off by the end of the buffer ("…T3Blb" of "T3BlbkFJ"): the characters before it
        # are secret, so it holds the run of token characters before it (when that run can be the entry's
        # `before`; the case must fit too).
        tail = data[max(0, n - self._max_head):]
        lowered = tail.lower()
        last = self._head_at_end.search(lowered) if self._head_at_end is not None else None
        for k in range(len(tail) - last.start() if last is not None else 0, 0, -1):
            heads = self._kw_heads.get(lowered[-k:])
            if heads is None:
                continue
            cut = tail[-k:]
            for head, case_insensitive, mid_token in heads:
                if not case_insensitive and cut != head:
                    continue
                for target in mid_token:
                    start = self._open_token_start(data, n - k, target)
                    if start is not None:
                        held = min(held, start)
            if held < n:
                break
        # The open start of a token whose mid-token keyword has not arrived yet: a trailing run of token
        # characters that begins with the entry's literal lead ("sk-"), or, for entries with none, a run of
        # OPEN_RUN_MIN or more characters. Shorter runs (ordinary words) flow on: at most OPEN_RUN_MIN - 1
        # characters of such a token can pass before its keyword shows it is one.
        if n and self._open_any[data[-1]] == 0x61:  # the buffer ends in a token character of some entry
            window = data[max(0, n - self._open_longest - 1):]
            window = window[window.translate(self._open_any).rfind(b" ") + 1:]  # the trailing run of any entry
            if len(window) >= OPEN_RUN_MIN:
                runs = self._open_runs
            elif window.translate(None, self._not_lead_first):
                runs = self._led_runs
            else:
                runs = ()
            for table, _longest, specs in runs:
                length = len(window) - window.translate(table).rfind(b" ") - 1  # the trailing run of this table
                if not length:
                    continue
                text = data[n - length:]
                for lead, max_len in specs:
                    if n - length < held and length <= max_len and (
                            _fits_lead(text, lead) if lead else length >= OPEN_RUN_MIN):
                        held = n - length
        # A keyword whose token could still run past the end of the buffer.
        for start, kw in keywords:
            for target in self._targets[kw]:
                token_start = self._token_start(data, start, target)
                if token_start is None or token_start >= held:
                    continue
                if token_start + target.max_len <= n:
                    continue
                run = target.span_regex.match(data, token_start)
                if run.end() >= n:  # the match could still grow: not decided yet
                    held = token_start
        return held

    # -- internals ----------------------------------------------------------------------------------

    @classmethod
    def _open_token_start(cls, data: bytes, pos: int, target: _Target) -> int | None:
        """Where a token would start if `target`'s mid-token keyword began at `pos`; None when the run of token
        characters before it cannot be that entry's `before` (wrong length or wrong literal lead)."""
        start = cls._token_start(data, pos, target)
        if start is None or pos - start < target.min_before or not _fits_lead(data[start:pos], target.lead):
            return None
        return start

    @staticmethod
    def _token_start(data: bytes, start: int, target: _Target) -> int | None:
        """Where a token with a mid-token keyword at `start` begins: the start of the run of token characters."""
        if not target.max_before:
            return start
        behind = data[max(0, start - target.max_before - 1):start][::-1]
        length = target.run_back.match(behind).end()
        if length > target.max_before:
            return None  # the run of token characters is longer than any token
        return start - length

    @classmethod
    def _candidate_starts(cls, data: bytes, start: int, target: _Target) -> list[int]:
        """Where the token may start for a keyword at `start`. A keyword that starts its token: there. A
        checksummed entry with a fixed-width `before`: exactly that far back (whatever is glued before it).
        Otherwise the start of the run of token characters, and, when that run begins with the tail of an escape
        sequence (`\\n`, `%0A`, `\\u000a`), also just after it."""
        if not target.max_before:
            return [start]
        if target.glue_ok and target.fixed_before:
            return [start - target.max_before] if start >= target.max_before else []
        behind = data[max(0, start - target.max_before - 6):start][::-1]
        length = target.run_back.match(behind).end()
        run_start = start - length
        starts = []
        skip = _escape_tail(data, run_start)
        if skip and length - skip <= target.max_before:
            starts.append(run_start + skip)
        if length <= target.max_before:
            starts.append(run_start)
        return starts

    def _verify(self, data: bytes, start: int, target: _Target, stats: Counter | None) -> Finding | None:
        entry = target.entry
        boundary = target.boundary
        m = None
        for token_start in self._candidate_starts(data, start, target):
            if (token_start > 0 and boundary[data[token_start - 1]] and not target.glue_ok
                    and not _escape_before(data, token_start)):
                continue
            m = target.regex.match(data, token_start)
            if m is not None:
                break
        if m is None or (not target.glue_ok and m.end() < len(data) and boundary[data[m.end()]]):
            return _count(stats, entry.id, "shape_failed")
        if target.max_before and m.start(target.kw_group) != start:
            return None  # another occurrence of the keyword inside this token: counted there
        if target.secret_group is not None and m.start(target.secret_group) >= 0:
            s, e = m.span(target.secret_group)
        else:
            s, e = m.span()
        secret = data[s:e].decode("latin-1")
        if target.validator is not None:
            try:
                ok = target.validator(secret, **({"prefix": target.prefix} if target.passes_prefix else {}),
                                      **target.params)
            except Exception:  # a validator bug must not leak the token through a traceback
                ok = False
            if not ok:
                return _count(stats, entry.id, "checksum_failed")
            validated = target.validator.kind
        else:
            validated = "structure"
        _count(stats, entry.id, "validated")
        prefix = target.prefix if secret.startswith(target.prefix) else ""
        return Finding(entry.id, entry.name, entry.severity, s, e, validated, mask(secret, prefix),
                       fingerprint(secret))


# Checksums too short to stand without boundaries (a 16-bit CRC matches one random candidate in 65536).
WEAK_CHECKSUMS = frozenset({"crc16-nkey"})
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPED = frozenset(b"ntrbf/\\\"'")


def _escape_before(data: bytes, pos: int) -> bool:
    """An escape sequence ends right before `pos` (`\\n`, `\\/`, `%0A`, `\\x0a`, `\\u000a`): in JSON nobody
    unescaped, or a URL nobody decoded, its last characters are token characters, yet they end a word."""
    if pos >= 2 and data[pos - 2] == 0x5C and data[pos - 1] in _ESCAPED:
        return True
    if pos >= 3 and data[pos - 3] == 0x25 and data[pos - 2] in _HEX and data[pos - 1] in _HEX:
        return True
    if pos >= 4 and data[pos - 4:pos - 2] == b"\\x" and data[pos - 2] in _HEX and data[pos - 1] in _HEX:
        return True
    return pos >= 6 and data[pos - 6:pos - 4] == b"\\u" and all(c in _HEX for c in data[pos - 4:pos])


def _escape_tail(data: bytes, pos: int) -> int:
    """How many characters at `pos` finish an escape sequence begun just before it (`n` of `\\n`, `0A` of
    `%0A`, `u000a` of `\\u000a`); 0 when none does."""
    if pos < 1:
        return 0
    lead, at = data[pos - 1], data[pos:pos + 5]
    if lead == 0x25:
        return 2 if len(at) >= 2 and at[0] in _HEX and at[1] in _HEX else 0
    if lead != 0x5C or not at:
        return 0
    if at[:1] == b"u" and len(at) == 5 and all(c in _HEX for c in at[1:]):
        return 5
    if at[:1] == b"x" and len(at) >= 3 and at[1] in _HEX and at[2] in _HEX:
        return 3
    return 1 if at[0] in _ESCAPED else 0


def _fits_lead(run: bytes, lead: bytes) -> bool:
    """`run` starts with the literal `lead`, or is a beginning of it (more may still come)."""
    return run[:len(lead)] == lead[:len(run)]


def _count(stats: Counter | None, entry_id: str, result: str) -> None:
    if stats is not None:
        stats[(entry_id, result)] += 1
    return None


def _resolve_overlaps(found: list[Finding]) -> list[Finding]:
    """One finding per stretch of text: prefer a checksum over structure, then the longer match, then the
    earlier one. Greedy in that order; O(n log n): kept spans are disjoint, so one bisect finds the only kept
    span a candidate can overlap."""
    by_start = sorted(found, key=lambda f: (f.start, f.end))
    if all(a.end <= b.start for a, b in zip(by_start, by_start[1:], strict=False)):
        return by_start  # nothing overlaps (the usual case)
    rank = sorted(found, key=lambda f: (f.validated != "checksum", -(f.end - f.start), f.start))
    starts: list[int] = []  # of kept findings, sorted; their ends are sorted the same way (disjoint spans)
    kept: list[Finding] = []
    for f in rank:
        i = bisect.bisect_left(starts, f.end)  # kept[:i] start before f ends; only kept[i - 1] can reach f
        if i and kept[i - 1].end > f.start:
            continue
        starts.insert(i, f.start)
        kept.insert(i, f)
    return kept


def _compile_target(entry: Entry, prefix: str) -> _Target:
    before = entry.before or ""
    regex = compile_shape(shape_source(before, prefix, entry.pattern, entry.case_insensitive))  # linear time
    max_before = pattern_width(before)[1] if before else 0
    max_len = max_before + len(prefix) + pattern_width(entry.pattern)[1]
    boundary = _flags_from_class(entry.boundary)
    consumable = bytearray(boundary)
    for piece in (before, re.escape(prefix), entry.pattern):
        _mark_consumable(sre_parse.parse(piece, re.ASCII), consumable)
    if entry.case_insensitive or "(?i" in entry.pattern or "(?i" in before:
        for c in range(65, 91):
            consumable[c] = consumable[c + 32] = consumable[c] | consumable[c + 32]
    span_regex = re.compile(b"[" + _class_from_flags(consumable) + b"]{0,%d}" % max_len)
    validator = validators.get(entry.checksum) if entry.checksum else None
    run_back = re.compile(b"[" + _class_from_flags(boundary) + b"]{0,%d}" % (max_before + 6))
    min_before = pattern_width(before)[0] if before else 0
    glue_ok = bool(validator and validator.kind == "checksum" and entry.checksum not in WEAK_CHECKSUMS)
    return _Target(entry, prefix, regex, regex.groupindex[_KW_GROUP], regex.groupindex.get("secret"), max_before,
                   max_len, boundary, span_regex, run_back, min_before,
                   _literal_lead(before) if before else b"", validator,
                   dict(entry.checksum_params), bool(validator and "prefix" in validator.params), glue_ok,
                   bool(before) and min_before == max_before)


HEAD_WIDTH = 16
MAX_HEADS = 16  # alternatives one keyword's heads may expand to


def _heads(pattern: str) -> tuple[tuple[bytes, int], ...]:
    """Fixed-width regexes, one of which every match of `pattern` starts with: its first HEAD_WIDTH characters
    as classes, one head per alternative of a leading optional group or alternation (" RSA PRIVATE KEY-",
    " EC PRIVATE KEY--", " PRIVATE KEY-----" …), so a keyword followed by text no alternative allows
    (`-----BEGIN CERTIFICATE`) never reaches Python.

    Only literals, character classes, repeats of one class, groups, alternations and optional groups are
    followed, so the heads accept a superset of what the pattern accepts (the detector still verifies every
    candidate in full). Returns (PCRE source, width) pairs.
    """
    parsed = sre_parse.parse(pattern, re.ASCII)
    if parsed.state.flags & re.IGNORECASE:
        return ((b"", 0),)  # literals would need case folding: leave it to the detector
    heads = _extend([(b"", 0, False)], parsed)
    return tuple(sorted({(src, width) for src, width, _ in heads}))


def _extend(heads: list[tuple[bytes, int, bool]], items) -> list[tuple[bytes, int, bool]]:
    """Each head (source, width, closed) followed by `items`, as far as that stays fixed-width."""
    for op, arg in items:
        if all(closed or width >= HEAD_WIDTH for _, width, closed in heads):
            break
        grown = [g for h in heads for g in _step(h, op, arg)]
        if len(grown) > MAX_HEADS:  # too many alternatives: stop where all heads still agree
            return [(src, width, True) for src, width, _ in heads]
        heads = grown
    return heads


def _step(head: tuple[bytes, int, bool], op, arg) -> list[tuple[bytes, int, bool]]:
    src, width, closed = head
    room = HEAD_WIDTH - width
    if closed or room <= 0:
        return [head]
    if op == sre_c.LITERAL:
        return [(src + b"\\x%02x" % arg, width + 1, False)]
    if op == sre_c.IN:
        return [(src + b"[" + _class_from_flags(_in_flags(arg)) + b"]", width + 1, False)]
    if op == sre_c.SUBPATTERN:
        if arg[1] or arg[2]:  # inline flags such as (?i:…)
            return [(src, width, True)]
        return _extend([head], arg[-1])
    if op == sre_c.BRANCH:
        return [g for branch in arg[1] for g in _extend([head], branch)]
    if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
        low, high, body = arg
        if len(body) == 1 and body[0][0] in (sre_c.IN, sre_c.LITERAL):
            item = body[0][1] if body[0][0] == sre_c.IN else [(sre_c.LITERAL, body[0][1])]
            take = min(low, room)
            if take:
                src += b"[" + _class_from_flags(_in_flags(item)) + b"]{%d}" % take
            return [(src, width + take, take < low or low != high)]
        if low == 0 and high == 1:  # an optional group: absent, or each of its alternatives
            return [head] + _extend([head], body)
        return [(src, width, True)]
    return [(src, width, True)]


def _literal_lead(pattern: str) -> bytes:
    """The literal characters every match of `pattern` starts with (b"" when it starts with a class)."""
    lead = bytearray()
    for op, arg in sre_parse.parse(pattern, re.ASCII):
        if op != sre_c.LITERAL:
            break
        lead.append(arg)
    return bytes(lead)


def _flags_from_class(body: str) -> bytes:
    cls = re.compile(f"[{body}]".encode("ascii"), re.ASCII)
    return bytes(1 if cls.fullmatch(bytes([i])) else 0 for i in range(256))


def _class_from_flags(flags) -> bytes:
    return b"".join(b"\\x%02x" % i for i, f in enumerate(flags) if f) or b"\\x00"


def _mark_consumable(parsed, flags: bytearray) -> None:
    """Mark every byte the parsed pattern could consume (a superset is fine: it only widens hold-back)."""
    for op, arg in parsed:
        if op == sre_c.LITERAL:
            flags[arg] = 1
        elif op == sre_c.NOT_LITERAL or op == sre_c.ANY:
            for i in range(256):
                flags[i] = 1
        elif op == sre_c.IN:
            cls = _in_flags(arg)
            for i in range(256):
                flags[i] |= cls[i]
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            _mark_consumable(arg[2], flags)
        elif op == sre_c.SUBPATTERN:
            _mark_consumable(arg[-1], flags)
        elif op == sre_c.BRANCH:
            for branch in arg[1]:
                _mark_consumable(branch, flags)
        elif op == getattr(sre_c, "ATOMIC_GROUP", None):
            _mark_consumable(arg, flags)


def _in_flags(items) -> bytes:
    """Evaluate a parsed character class by testing each byte (rebuilding it as a tiny regex)."""
    negate = any(op == sre_c.NEGATE for op, _ in items)
    out = bytearray(256)
    for i in range(256):
        hit = False
        for op, arg in items:
            if op == sre_c.LITERAL and arg == i:
                hit = True
            elif op == sre_c.RANGE and arg[0] <= i <= arg[1]:
                hit = True
            elif op == sre_c.CATEGORY and _CATEGORY[arg](i):
                hit = True
        out[i] = hit != negate
    return bytes(out)


_CATEGORY = {
    sre_c.CATEGORY_DIGIT: lambda i: 48 <= i <= 57,
    sre_c.CATEGORY_NOT_DIGIT: lambda i: not 48 <= i <= 57,
    sre_c.CATEGORY_SPACE: lambda i: i in b" \t\n\r\f\v",
    sre_c.CATEGORY_NOT_SPACE: lambda i: i not in b" \t\n\r\f\v",
    sre_c.CATEGORY_WORD: lambda i: chr(i).isascii() and (chr(i).isalnum() or i == 95),
    sre_c.CATEGORY_NOT_WORD: lambda i: not (chr(i).isascii() and (chr(i).isalnum() or i == 95)),
}

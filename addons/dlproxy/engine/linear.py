"""Linear-time shape matching: no profile pattern can make a match run away.

A bounded pattern is not a linear one: `(a|aa){1,30}(a|aa){1,30}b` only uses bounded repeats, yet Python's
backtracking `re` tries exponentially many ways to split a run of `a`s before it gives up. Each entry's shape
(`(?:before)(?P<kw>prefix)(?:pattern)`, matched anchored at a prefix hit) therefore runs on one of two engines:

- Python `re`, only when the shape is *deterministic*: at every choice the matcher makes (take an optional part
  or not, one more repeat or stop, which alternative), the next input character rules out all but one option.
  A backtracking matcher then abandons a wrong option at its first character, so every input character is
  visited a number of times bounded by the pattern's nesting, never by combinations (`deterministic`). The
  common shapes (`[A-Za-z0-9]{36}`, `[a-z0-9]{8}-[a-z0-9]{4}`, `{12,2000}\\.eyJ…`) are deterministic, and `re`
  costs less per call than the RE2 binding.
- RE2 (google-re2) for every other shape: an automaton, linear in the input whatever the pattern. The shape is
  re-serialized from Python's parse tree (exact byte classes, so both engines read it alike), with repeats
  above RE2's count limit split into equivalent chunks.

What neither can run (backreferences, conditionals, possessive/atomic groups, or a lookaround or anchor in a
shape that is not deterministic) is rejected when the profile loads, with the entry's FILE:LINE.
"""

from __future__ import annotations

import re
import re._constants as sre_c
import re._parser as sre_parse

RE2_MAX_REPEAT = 1000  # RE2's limit on a repeat count, and on the product of nested counts
RE2_MAX_MEM = 8 << 20  # RE2's default budget per shape (program + lazily built DFA); every built-in shape fits
_END = 1 << 256  # "the match may end here" in a first/follow set (never conflicts: matching stops there)
_ALL = (1 << 256) - 1
KW_GROUP = "dlproxy_kw"


class NotLinear(ValueError):
    """The shape can be run in linear time by neither engine; the message says why."""


def shape_source(before: str | None, prefix: str, pattern: str, case_insensitive: bool) -> str:
    """What the detector matches at a hit of `prefix` (anchored at the token start)."""
    literal = re.escape(prefix)
    if case_insensitive:
        literal = f"(?i:{literal})"
    return f"(?:{before or ''})(?P<{KW_GROUP}>{literal})(?:{pattern})"


def compile_shape(source: str):
    """A compiled matcher with `.match(data, pos)` and `.groupindex` (str keys): Python `re` when the shape is
    deterministic, else RE2. Raises NotLinear."""
    parsed = sre_parse.parse(source, re.ASCII)
    if deterministic(parsed):
        return re.compile(source.encode("ascii"), re.ASCII)
    return Re2Shape(source, parsed)


def check_shape(source: str) -> str | None:
    """None when the shape can run in linear time; otherwise why not (for `FILE:LINE: field: message`)."""
    try:
        compile_shape(source)
    except NotLinear as e:
        return str(e)
    return None


def engine_of(source: str) -> str:
    return "re" if deterministic(sre_parse.parse(source, re.ASCII)) else "re2"


# --- determinism ----------------------------------------------------------------------------------------------


class _Ambiguous(Exception):
    pass


def deterministic(parsed) -> bool:
    """True when a backtracking matcher never has two live options at once (see the module docstring)."""
    try:
        _seq(list(parsed), _END, parsed.state.flags)
    except _Ambiguous:
        return False
    return True


def _seq(items, follow: int, flags: int) -> int:
    """First set of `items` followed by `follow` (a bit mask of bytes, plus _END); raises _Ambiguous."""
    for op, arg in reversed(items):
        follow = _item(op, arg, follow, flags)
    return follow


def _item(op, arg, follow: int, flags: int) -> int:
    char = _char_mask(op, arg, flags)
    if char is not None:
        return char
    if op == sre_c.SUBPATTERN:
        _group, add, remove, sub = arg
        return _seq(list(sub), follow, (flags | add) & ~remove)
    if op == sre_c.BRANCH:
        firsts = [_seq(list(alt), follow, flags) for alt in arg[1]]
        seen = 0
        for f in firsts:
            if f & seen & _ALL:
                raise _Ambiguous  # two alternatives can start with the same character
            seen |= f
        return seen
    if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
        low, high, body = arg
        body = list(body)
        if high == 0:
            return follow
        if high == sre_c.MAXREPEAT:
            raise _Ambiguous
        own = _seq(body, _END, flags)  # the body's first set on its own (_END: it can match nothing)
        if own & _END or own == 0:
            raise _Ambiguous  # a body that can match nothing: iterations are not told apart
        if low < high and own & follow & _ALL:
            raise _Ambiguous  # "one more" and "stop" can start with the same character
        if len(body) == 1 and _char_mask(*body[0], flags) is not None:
            return own | (follow if low == 0 else 0)
        if high >= 2:
            _seq(body, own if low == high else own | follow, flags)  # between iterations
        _seq(body, follow, flags)  # after the last one
        return own | (follow if low == 0 else 0)
    if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
        _direction, sub = arg
        _seq(list(sub), _END, flags)  # its own match must be deterministic too; it consumes nothing here
        return follow  # zero-width: when it fails, each earlier choice's other option dies at its first character
    if op == sre_c.AT and arg in (sre_c.AT_BOUNDARY, sre_c.AT_NON_BOUNDARY):
        return follow
    raise _Ambiguous  # backreferences, conditionals, atomic groups, other anchors: not proven


def _char_mask(op, arg, flags: int) -> int | None:
    """Bytes matched by a one-character item, as a 256-bit mask (exact, case-insensitivity included: the RE2
    writer turns it back into a class); None for anything else."""
    negate = False
    if op == sre_c.LITERAL:
        mask = 1 << arg
    elif op == sre_c.NOT_LITERAL:
        mask, negate = 1 << arg, True
    elif op == sre_c.ANY:
        return _ALL if flags & sre_c.SRE_FLAG_DOTALL else _ALL & ~(1 << 10)
    elif op == sre_c.IN:
        mask, negate = _in_mask(arg)
    else:
        return None
    if flags & sre_c.SRE_FLAG_IGNORECASE:  # ASCII letters match either case (the set, before any negation)
        for c in range(65, 91):
            if mask >> c & 1 or mask >> (c + 32) & 1:
                mask |= (1 << c) | (1 << (c + 32))
    return (_ALL & ~mask) if negate else mask


def _in_mask(items) -> tuple[int, bool]:
    """(the class's own set, negated?)."""
    negate = any(op == sre_c.NEGATE for op, _ in items)
    mask = 0
    for op, a in items:
        if op == sre_c.LITERAL:
            mask |= 1 << a
        elif op == sre_c.RANGE:
            for c in range(a[0], min(a[1], 255) + 1):
                mask |= 1 << c
        elif op == sre_c.CATEGORY:
            for c in range(256):
                if _CATEGORY[a](c):
                    mask |= 1 << c
    return mask, negate


_CATEGORY = {
    sre_c.CATEGORY_DIGIT: lambda i: 48 <= i <= 57,
    sre_c.CATEGORY_NOT_DIGIT: lambda i: not 48 <= i <= 57,
    sre_c.CATEGORY_SPACE: lambda i: i in b" \t\n\r\f\v",
    sre_c.CATEGORY_NOT_SPACE: lambda i: i not in b" \t\n\r\f\v",
    sre_c.CATEGORY_WORD: lambda i: i < 128 and (chr(i).isalnum() or i == 95),
    sre_c.CATEGORY_NOT_WORD: lambda i: not (i < 128 and (chr(i).isalnum() or i == 95)),
}


# --- RE2 ------------------------------------------------------------------------------------------------------


class Re2Shape:
    """A shape compiled by RE2 from Python's parse tree; `.match(data, pos)` like a compiled `re` pattern."""

    def __init__(self, source: str, parsed) -> None:
        try:
            import re2
        except ImportError:  # pragma: no cover - a declared dependency
            raise NotLinear("needs RE2 (pip install google-re2) to run in linear time") from None
        names = {num: name for name, num in parsed.state.groupdict.items()}
        text = _Re2Writer(names).seq(list(parsed), parsed.state.flags)
        options = re2.Options()
        options.encoding = re2.Options.Encoding.LATIN1
        options.max_mem = RE2_MAX_MEM
        options.log_errors = False
        try:
            self._re = re2.compile(text.encode("latin-1"), options)
        except re2.error as e:
            raise NotLinear(f"RE2 cannot run it ({_re2_reason(e)})") from None
        self.pattern = source
        self.groupindex = {(k.decode() if isinstance(k, bytes) else k): v for k, v in self._re.groupindex.items()}

    def match(self, data: bytes, pos: int = 0):
        return self._re.match(data, pos)

    def __reduce__(self):  # a pickled detector (scan's cache) recompiles the shape from its source
        return _re2_shape, (self.pattern,)


def _re2_shape(source: str) -> Re2Shape:
    return Re2Shape(source, sre_parse.parse(source, re.ASCII))


def _re2_reason(e: Exception) -> str:
    text = str(e.args[0] if e.args else e)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text


class _Re2Writer:
    """Python parse tree → RE2 syntax: every character item as an explicit byte class, repeats kept under RE2's
    count limit by splitting `X{m,n}` into a concatenation of chunks (the same language)."""

    def __init__(self, names: dict[int, str]) -> None:
        self.names = names
        self.capture = True  # False inside a repeat split into chunks (a group cannot appear twice)

    def seq(self, items, flags: int) -> str:
        return "".join(self.item(op, arg, flags) for op, arg in items)

    def item(self, op, arg, flags: int) -> str:
        mask = _char_mask(op, arg, flags)
        if mask is not None:
            return _class(mask)
        if op == sre_c.SUBPATTERN:
            group, add, remove, sub = arg
            inner = self.seq(list(sub), (flags | add) & ~remove)
            if group is None or not self.capture:
                return f"(?:{inner})"
            name = self.names.get(group)
            return f"(?P<{name}>{inner})" if name else f"({inner})"
        if op == sre_c.BRANCH:
            return "(?:" + "|".join(self.seq(list(alt), flags) for alt in arg[1]) + ")"
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            low, high, body = arg
            if high == sre_c.MAXREPEAT:
                raise NotLinear("unbounded repeat")
            lazy = "?" if op == sre_c.MIN_REPEAT else ""
            step = max(1, RE2_MAX_REPEAT // _nested_count(list(body)))
            split = high > step
            capture, self.capture = self.capture, self.capture and not split
            try:
                inner = self.seq(list(body), flags)
            finally:
                self.capture = capture
            if not split:
                return f"(?:{inner}){{{low},{high}}}{lazy}"
            return _chunks(f"(?:{inner})", low, high, step, lazy)
        if op == sre_c.AT and arg == sre_c.AT_BOUNDARY:
            return r"\b"
        if op == sre_c.AT and arg == sre_c.AT_NON_BOUNDARY:
            return r"\B"
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            raise NotLinear("a lookaround (?=, (?!, (?<=, (?<! is only allowed in a deterministic shape "
                            "(each choice decided by the next character); RE2 has none")
        if op in (sre_c.GROUPREF, sre_c.GROUPREF_EXISTS):
            raise NotLinear("backreferences and conditionals cannot run in linear time")
        if op == sre_c.AT:
            raise NotLinear("anchors other than \\b and \\B (^, $, \\A, \\Z) are not supported: the shape is "
                            "matched where its prefix is found")
        raise NotLinear(f"{str(op).lower()} is not supported")


def _nested_count(items) -> int:
    """The largest product of repeat counts nested in `items` (what RE2 limits), after chunking."""
    best = 1
    for op, arg in items:
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            inner = _nested_count(list(arg[2]))
            best = max(best, inner * min(arg[1], max(1, RE2_MAX_REPEAT // inner)))
        elif op == sre_c.SUBPATTERN:
            best = max(best, _nested_count(list(arg[-1])))
        elif op == sre_c.BRANCH:
            best = max([best] + [_nested_count(list(alt)) for alt in arg[1]])
    return best


def _chunks(unit: str, low: int, high: int, step: int, lazy: str) -> str:
    """`unit{low,high}` as chunks of at most `step` counts each: u{m}u{m}…u{0,k}u{0,k}… (the same strings)."""
    out = []
    left = low
    while left > 0:
        n = min(step, left)
        out.append(f"{unit}{{{n}}}" if n > 1 else unit)
        left -= n
    left = high - low
    while left > 0:
        n = min(step, left)
        out.append(f"{unit}{{0,{n}}}{lazy}" if n > 1 else f"{unit}?{lazy}")
        left -= n
    return "".join(out) if out else ""


def _class(mask: int) -> str:
    """A byte class from a mask, as ranges of \\xHH (RE2 in Latin-1 mode reads them as bytes)."""
    if mask == 0:
        return "[^\\x00-\\xff]"
    parts, c = [], 0
    while c < 256:
        if mask >> c & 1:
            start = c
            while c + 1 < 256 and mask >> (c + 1) & 1:
                c += 1
            parts.append(f"\\x{start:02x}" if start == c else f"\\x{start:02x}-\\x{c:02x}")
        c += 1
    return "[" + "".join(parts) + "]"

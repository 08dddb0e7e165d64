"""Headers: every value in one segment (`name: value` lines; a finding resolves to `header:<name>`, or
`header:cookie:<name>` for cookies), plus decoded forms where the raw value hides a token:
`Authorization: Basic` as `user:password`, percent-encoded values (cookies, Referer, gRPC's `grpc-message`),
base64 values. Trailers (the header section after a body) are extracted the same way under `trailer:<name>`:
a location no issuer position names, so a credential in a trailer is never in use.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from .base64blobs import b64decode, scan_blobs
from .core import Ctx, Level, Loc, Segment, label
from .text import percent_decode

_LV = Level()
_AUTH = ("authorization", "proxy-authorization")
_COOKIES = ("cookie", "set-cookie")
_SPECIAL = frozenset(_AUTH + _COOKIES)


def extract_headers(ctx: Ctx, headers: Sequence[tuple[str, str]], kind: str = "header") -> None:
    lines: list[bytes] = []
    starts: list[int] = []
    names: list[str] = []
    offset = 0
    for name, value in headers:
        lname = name.lower()
        raw = value.encode("utf-8", "surrogateescape")
        line = b"%s: %s\n" % (lname.encode("utf-8", "surrogateescape"), raw)
        starts.append(offset)
        names.append(lname)
        lines.append(line)
        offset += len(line)
        if len(raw) >= 24 or lname in _SPECIAL or b"%" in raw:
            _decoded_forms(ctx, lname, raw, kind)
    block = ctx.take(b"".join(lines), Loc(kind))

    def where(start: int, end: int) -> str:
        i = bisect.bisect_right(starts, start) - 1
        if i < 0:
            return ""
        suffix = ":" + label(names[i])
        if names[i] in _COOKIES:
            cookie = _cookie_at(lines[i], start - starts[i])
            suffix += ":" + cookie if cookie else ""
        return suffix

    ctx.emit(Loc(kind), block, where)


def _decoded_forms(ctx: Ctx, lname: str, raw: bytes, kind: str) -> None:
    """Extra segments for a value whose raw form can hide a token: Basic, cookies, %-encoding, base64."""
    hloc = Loc(f"{kind}:{label(lname)}")
    if lname in _AUTH and raw[:6].lower() == b"basic ":
        ctx.emit(hloc.child(":basic"), ctx.take(b64decode(raw[6:].strip()), hloc))
        return
    if lname in _COOKIES:
        _cookies(ctx, raw, hloc)
    elif b"%" in raw:
        decoded = percent_decode(raw)
        if decoded != raw:
            ctx.emit(hloc, ctx.take(decoded, hloc))
    if len(raw) >= 24:
        scan_blobs(ctx, Segment(hloc.text, raw), _LV)


def _cookies(ctx: Ctx, raw: bytes, hloc: Loc) -> None:
    """Cookie values that are percent-encoded or quoted get a decoded segment of their own."""
    if b"%" not in raw and b'"' not in raw:
        return
    for pair in raw.split(b";"):
        name, eq, value = pair.strip().partition(b"=")
        if not eq:
            continue
        decoded = percent_decode(value.strip().strip(b'"'))
        if decoded != value:
            cloc = hloc.child(":" + label(name.decode("utf-8", "replace")))
            ctx.emit(cloc, ctx.take(decoded, cloc))


def _cookie_at(line: bytes, offset: int) -> str:
    head = line.find(b": ") + 2
    pair_start = line.rfind(b";", head, offset) + 1 or head
    name = line[pair_start:offset].partition(b"=")
    if not name[1]:
        return ""
    return label(name[0].strip().decode("utf-8", "replace"))

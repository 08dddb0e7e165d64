"""URLs: userinfo, path, query and fragment, percent-decoded (the query also with '+' as space).

`https://x-access-token:ghs_…@github.com/o/r.git` puts a token in the userinfo; API keys travel in query
parameters (`?key=…`, located `url:query:key`) and sometimes in the path. The host is scanned too (`url:host`):
a token written as a DNS label leaves with the resolver's query.
"""

from __future__ import annotations

from .base64blobs import scan_blobs
from .core import Ctx, Level, Loc
from .forms import extract_form
from .text import percent_decode

_LV = Level()


def extract_url(ctx: Ctx, url: str) -> None:
    raw = url.encode("utf-8", "surrogateescape")
    raw = ctx.take(raw, Loc("url"))
    scheme_end = raw.find(b"://")
    rest = raw[scheme_end + 3:] if scheme_end != -1 and raw[:scheme_end].isalnum() else raw
    fragment = b""
    if b"#" in rest:
        rest, _, fragment = rest.partition(b"#")
    query = b""
    if b"?" in rest:
        rest, _, query = rest.partition(b"?")
    path = rest
    if scheme_end != -1 and not raw.startswith(b"/"):
        authority, slash, path = rest.partition(b"/")
        path = slash + path
        userinfo, at, host = authority.rpartition(b"@")
        if at and userinfo:
            _emit(ctx, Loc("url:userinfo"), percent_decode(userinfo))
        if host:
            ctx.emit(Loc("url:host"), percent_decode(host))
    if path:
        _emit(ctx, Loc("url:path"), percent_decode(path))
    if query:
        extract_form(ctx, query, Loc("url:query"), _LV)
    if fragment:
        _emit(ctx, Loc("url:fragment"), percent_decode(fragment, plus=True))


def _emit(ctx: Ctx, loc: Loc, data: bytes) -> None:
    seg = ctx.emit(loc, data)
    if seg is not None:
        scan_blobs(ctx, seg, _LV)

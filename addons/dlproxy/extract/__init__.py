"""Turn an HTTP message (or a file) into located text segments, so that no encoding, compression or
packaging hides a token from the engine; and say explicitly what could not be inspected, and why.

    ext = extract_http(url=..., headers=[(name, value), ...], body=..., limits=Limits.from_settings(s))
    for seg in ext.segments:
        for f in detector.scan(seg.data):
            f = f.at(seg.locate(f.start, f.end))        # "body:json:$.messages[0].content"
    ext.unscannable                                     # [Unscannable("body", "bomb"), ...] -> policy

Engine side: imports nothing from mitmproxy. Never raises for any input: an internal failure is
reported as Unscannable(location, "error") and never carries body content.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from . import base64blobs, hexsep, quickcheck
from .core import (
    BOMB,
    ERROR,
    OVERSIZE_REASONS,
    REASONS,
    TOO_LARGE,
    TRUNCATED,
    Ctx,
    Extraction,
    ExtractionError,
    Level,
    Limits,
    Loc,
    Segment,
    Unscannable,
)
from .encoding import decode_content_encoding, gzip_names
from .headers import extract_headers
from .jsonx import locate_json_path
from .route import extract_content
from .url import extract_url

__all__ = ["Limits", "Segment", "Unscannable", "Extraction", "ExtractionError", "extract_http", "extract_file",
           "decode_content_encoding", "locate_json_path", "REASONS", "OVERSIZE_REASONS", "plain_text_body"]

_PLAIN_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/x-ndjson",
                "application/jsonl")

log = logging.getLogger(__name__)


def plain_text_body(headers: Sequence[tuple[str, str]], body: bytes) -> bool:
    """True when extracting `body` is a single cheap pass: uncompressed text (JSON, form, plain) with no base64
    run and no separated hex to decode. Only answerable quickly with Hyperscan installed; otherwise False (assume
    the costly path)."""
    if len(body) < quickcheck.MIN_BYTES:
        return False  # the extractor's own search is cheap enough there
    ctype, coded = "", False
    for name, value in headers:
        lname = name.lower()
        if lname == "content-type":
            ctype = value.lower()
        elif lname == "content-encoding" and value.strip().lower() not in ("", "identity"):
            coded = True
    if coded or not ctype.startswith(_PLAIN_TYPES) or quickcheck.hyperscan is None:
        return False
    return not quickcheck.run_of(base64blobs._B64, base64blobs.MIN_BLOB).may_match(body) and not hexsep.may_hold(body)


def extract_http(*, url: str | None, headers: Sequence[tuple[str, str]], body: bytes | None,
                 limits: Limits, blob_free: bool = False, token_window: int | None = None,
                 trailers: Sequence[tuple[str, str]] = ()) -> Extraction:
    """Segments for the URL, every header, the body (decoded by Content-Encoding, then Content-Type) and the
    trailers (HTTP/2 and chunked HTTP/1 header fields after the body; located `trailer:<name>`).

    `blob_free`: the caller found no base64 run nor separated hex in the body (`plain_text_body`), so a text segment that is the
    body itself is not searched for one again. `token_window`: the widest token the caller's detector finds; the
    escape view of a long text then decodes only the text that close to an escape (escapes.escaped_view)."""
    ctx = Ctx(limits, extract_content, token_window=token_window)
    if blob_free and body:
        ctx.blob_free = body
    stage = "url"
    try:
        if url:
            extract_url(ctx, url)
        stage = "header"
        extract_headers(ctx, headers)
        stage = "body"
        if body:
            ctype = ""
            codings: list[str] = []
            for name, value in headers:
                lname = name.lower()
                if lname == "content-type":
                    ctype = value
                elif lname == "content-encoding":
                    codings.append(value)
            _body(ctx, body, ",".join(codings), ctype)
        if trailers:
            stage = "trailer"
            extract_headers(ctx, trailers, "trailer")
    except Exception as exc:  # a bug: report it, never let it (or body content in its text) escape
        log.warning("dlproxy extraction failed in %s: %s", stage, type(exc).__name__)
        ctx.fail(stage, ERROR)
    return ctx.out


def extract_file(name: str, data: bytes, limits: Limits) -> Extraction:
    """Segments of a file for `dlproxy scan`: archives, compressed files, documents, JSON, text.

    Locations start with `name` ("project.zip/.npmrc"). A plain text file is one segment holding the file
    unchanged (offsets give line and column); decoded views of it follow as extra segments.
    """
    ctx = Ctx(limits, extract_content, keep_raw=True)
    try:
        loc = Loc(name)
        data = ctx.take(data, loc)
        ctx.content(data, loc, Level(), "", name)
    except Exception as exc:
        log.warning("dlproxy extraction failed for a file: %s", type(exc).__name__)
        ctx.fail(name, ERROR)
    return ctx.out


def _body(ctx: Ctx, body: bytes, content_encoding: str, ctype: str) -> None:
    loc = Loc("body")
    res = decode_content_encoding(body, content_encoding, ctx.limits, ctx.left)
    if res.layers == 0 and res.reason is None:  # identity
        ctx.content(ctx.take(body, loc), loc, Level(), ctype)
        return
    ctx.charge(res.decoded)
    if "gzip" in content_encoding.lower() and (names := gzip_names(body)):  # the wire's gzip headers: file names
        ctx.emit(loc.child(":gzip-names"), ctx.take(names, loc))
    if res.reason is not None:
        ctx.fail(loc, res.reason)
        if res.reason not in (BOMB, TOO_LARGE) and (res.reason != TRUNCATED or not res.data):
            # not what the header claims: scan it as it is too (a bomb's or the budget's prefix is scanned below)
            ctx.emit(loc.child(":raw"), ctx.take(res.raw, loc) if res.raw is body else res.raw)
        if not res.data:
            return
    ctx.content(res.data, loc, Level(layers=res.layers), ctype)

"""Content dispatch: bytes + Content-Type + file name -> the extractor for them.

Order: container magic first (a gzip or zip is one whatever it is labelled), then the declared type,
then the file name, then sniffing (JSON/markup/text/binary). Unknown binary is scanned as raw bytes.
"""

from __future__ import annotations

from .archives import (
    extract_compressed,
    extract_embedded,
    extract_pdf,
    extract_tar,
    extract_zip,
    unreadable_archive,
)
from .base64blobs import scan_blobs
from .core import DEPTH, UNSUPPORTED_ENCODING, Ctx, Level, Loc
from .encoding import sniff_container
from .forms import extract_form, extract_multipart, header_params
from .jsonx import extract_json
from .mail import extract_mail, looks_like_mail
from .markup import extract_markup
from .text import declared_codec, hidden_wide_text, is_textual, to_utf8, wide_charset

_JSON_TYPES = ("application/json", "text/json", "application/x-json", "application/problem+json")
_NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
                 "application/jsonlines", "application/json-seq", "application/x-json-stream")
_TEXT_APPS = ("javascript", "ecmascript", "yaml", "toml", "graphql", "sql", "x-sh", "x-python", "csv",
              "x-pem-file", "x-php", "x-ruby", "x-perl", "typescript", "x-httpd", "rtf")
_NAME_KINDS = {
    ".json": "json", ".ipynb": "json", ".har": "json", ".map": "json", ".jsonc": "json", ".geojson": "json",
    ".ndjson": "ndjson", ".jsonl": "ndjson",
    ".xml": "xml", ".svg": "xml", ".plist": "xml", ".csproj": "xml", ".config": "xml", ".xaml": "xml",
    ".html": "html", ".htm": "html", ".xhtml": "html",
    ".eml": "mail", ".mht": "mail", ".mhtml": "mail",
}


def extract_content(ctx: Ctx, data: bytes, loc: Loc, lv: Level, ctype: str = "", name: str = "") -> None:
    if not data:
        return
    mime, params = header_params(ctype) if ctype else ("", {})
    charset = params.get("charset", "")
    container = sniff_container(data)
    if container is None and (unreadable := unreadable_archive(data)) is not None:
        ctx.fail(loc.child(":" + unreadable), UNSUPPORTED_ENCODING)  # named, never passed silently
        ctx.emit(loc, data)  # stored members and names are still plain in it
        return
    if container is None and data.startswith(b"%PDF-"):
        extract_pdf(ctx, data, loc, lv)
        return
    if container is not None:
        if container in ("zip", "tar"):
            if lv.archive >= ctx.limits.max_archive_depth:
                ctx.fail(loc, DEPTH)
                ctx.emit(loc, data)
                return
            (extract_zip if container == "zip" else extract_tar)(ctx, data, loc, lv)
        else:
            extract_compressed(ctx, data, loc, lv, container, name)
        return
    if wide_charset(data, charset):  # UTF-16/32 text: scan it as UTF-8 (charged: it is a decoded copy)
        ctx.emit(loc.child(":bytes"), data)  # and as the bytes they are: a BOM or a label can lie (and whatever
        # stores or logs the body keeps its bytes); a token there has no NULs, so genuine UTF-16/32 adds no finding
        data = ctx.take(to_utf8(data, charset), loc)
        charset = ""
    else:
        narrow = declared_codec(charset)
        if narrow is not None:  # utf-7, EBCDIC: the label's reading, besides the bytes (a label may lie)
            view = data.decode(narrow, "replace").encode("utf-8", "surrogatepass")
            ctx.emit(loc.child(":" + narrow), ctx.take(view, loc))
        hidden = hidden_wide_text(data)
        if hidden is not None:  # BOM-less UTF-16/32 past the head: a decoded view, besides the bytes as they are
            codec, offset = hidden
            view = data[offset:].decode(codec, "replace").encode("utf-8", "surrogatepass")
            ctx.emit(loc.child(":" + codec[:6].replace("-", "")), ctx.take(view, loc))  # :utf16 / :utf32
    kind = _kind(mime, name, data)
    if kind == "multipart":
        if lv.archive >= ctx.limits.max_archive_depth:
            ctx.fail(loc, DEPTH)
            ctx.emit(loc, data)
            return
        extract_multipart(ctx, data, loc, lv._replace(archive=lv.archive + 1), params)
    elif kind == "form":
        extract_form(ctx, data, loc.child(":form"), lv)
    elif kind in ("json", "ndjson", "sse"):
        extract_json(ctx, data, loc, lv, charset, kind)
    elif kind == "mail":
        extract_mail(ctx, data, loc, lv)
    elif kind in ("xml", "html"):
        extract_markup(ctx, data, loc, lv, kind, charset)
    elif kind == "text":
        seg = ctx.emit(loc, to_utf8(data, charset))
        if seg is not None:
            scan_blobs(ctx, seg, lv)
        extract_embedded(ctx, data, loc, lv)
    else:
        ctx.emit(loc, data)  # unknown binary: raw bytes, and any container behind a prefix
        extract_embedded(ctx, data, loc, lv)


def _kind(mime: str, name: str, data: bytes) -> str:
    if mime:
        if mime.startswith("multipart/"):
            return "multipart"
        if mime == "message/rfc822":
            return "mail"
        if mime == "application/x-www-form-urlencoded":
            return "form"
        if mime in _NDJSON_TYPES:
            return "ndjson"
        if mime == "text/event-stream":  # SSE: `data: {json}` lines, escapes decoded like JSON
            return "sse"
        if mime in _JSON_TYPES or mime.endswith("+json"):
            return "json"
        if mime in ("text/html", "application/xhtml+xml"):
            return "html"
        if mime.endswith(("/xml", "+xml")):
            return "xml"
        if mime.startswith("text/") or (mime.startswith("application/") and mime.endswith(_TEXT_APPS)):
            return "json" if data[:256].lstrip()[:1] in (b"{", b"[") else "text"
    if name:
        dot = name.rfind(".")
        kind = _NAME_KINDS.get(name[dot:].lower()) if dot != -1 else None
        if kind:
            return kind
    return _sniff(data)


def _sniff(data: bytes) -> str:
    if not is_textual(data):
        return "binary"
    text = data[:4096]
    head = text.lstrip()[:1]
    if head in (b"{", b"["):
        return "json"
    if head == b"<":
        return "html" if text.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")) else "xml"
    return "mail" if looks_like_mail(text) else "text"

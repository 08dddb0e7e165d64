"""XML and HTML: the text with character references decoded; OOXML/ODF documents with runs joined.

Generic markup keeps its tags (they are boundaries, and attributes such as href carry tokens too) and
gets `&#95;` / `&lowbar;` / `&amp;` decoded. Office documents split text into formatting runs
(`<w:r><w:t>ghp_ab</w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>cd…</w:t></w:r>`); their text is rebuilt
with run tags removed and paragraph/cell ends turned into newlines, so a token split by formatting is
whole again. Generic markup whose tags split a word (`ghp_<span>ab</span>cd…`: a page shows, and a reader copies,
one word) also gets its text as a browser or an XML parser reads it: in HTML inline elements join the text around
them and every other tag ends a line; in XML every text node is joined to the next.
"""

from __future__ import annotations

import html
import re

from . import quickcheck
from .base64blobs import scan_blobs
from .core import Ctx, Level, Loc
from .text import to_utf8

_ENTITY = re.compile(rb"&(?:#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{1,31});?")
# Ends of paragraphs, cells, rows, shared strings, and explicit breaks/tabs: text boundaries.
_BLOCK = re.compile(rb"</(?:w:p|a:p|w:tc|w:tr|a:tc|a:tr|si|is|c|row|text:p|text:h|table:table-cell)>"
                    rb"|<(?:w:br|w:cr|w:tab|a:br|text:line-break|text:tab|text:s)\b[^>]*>")
_TAG = re.compile(rb"<[^>]*>")
_SPLITS = re.compile(rb"<!\[CDATA\[|\]\]>|<!--.{0,8192}?-->", re.S)  # bounded: no quadratic scan
_INLINE_TAG = re.compile(rb"</?(?:a|abbr|b|bdi|bdo|big|cite|code|data|del|dfn|em|font|i|ins|kbd|mark|nobr|q|s|samp|"
                         rb"small|span|strike|strong|sub|sup|time|tt|u|var|wbr)(?=[\s/>])[^<>]*>", re.I)
_OOXML_PART = re.compile(r"^(?:word|xl|ppt)/.*\.xml$|^content\.xml$|^styles\.xml$")


def decode_entities(data: bytes) -> bytes:
    if b"&" not in data or not _ENTITY.search(data):
        return data
    return html.unescape(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def extract_markup(ctx: Ctx, data: bytes, loc: Loc, lv: Level, kind: str, charset: str = "") -> None:
    raw = to_utf8(data, charset)
    view = decode_entities(raw)
    mloc = loc.child(":" + kind)
    if ctx.keep_raw:  # files: the text itself under the file's own location, then the decoded view
        seg = ctx.emit(loc, raw)
        if view is raw:
            if seg is not None:
                scan_blobs(ctx, seg, lv)
            return
    seg = ctx.emit(mloc, view)
    if seg is not None:
        scan_blobs(ctx, seg, lv)
    if b"<!" in raw and _SPLITS.search(raw):  # text as an XML parser reads it: CDATA and comments spliced out
        ctx.emit(mloc.child(":spliced"), ctx.take(decode_entities(_SPLITS.sub(b"", raw)), loc))
    if b"<" in raw and quickcheck.glued_tags().may_match(raw):
        ctx.emit(mloc.child(":text"), ctx.take(text_content(raw, kind), loc))


def text_content(markup: bytes, kind: str) -> bytes:
    """The text of a document as it reads: HTML's inline tags removed and its other tags line ends; XML's text
    nodes joined (tags removed). Entities decoded."""
    if kind == "html":
        return decode_entities(_TAG.sub(b"\n", _INLINE_TAG.sub(b"", markup)))
    return decode_entities(_TAG.sub(b"", markup))


def is_office_text_part(member: str) -> bool:
    return bool(_OOXML_PART.match(member))


def office_text(xml: bytes) -> bytes:
    """Document text of an OOXML/ODF XML part: runs joined, blocks on their own lines, entities decoded."""
    return decode_entities(_TAG.sub(b"", _BLOCK.sub(b"\n", xml)))


def extract_office_part(ctx: Ctx, xml: bytes, loc: Loc, lv: Level) -> None:
    seg = ctx.emit(loc, office_text(to_utf8(xml)))
    if seg is not None:
        scan_blobs(ctx, seg, lv)

"""Forms: application/x-www-form-urlencoded (and URL queries), and multipart bodies.

A urlencoded body becomes one segment, `name=value` pairs percent-decoded ('+' as space) one per line;
the field name of a finding is resolved on demand. Multipart is split by a bounded boundary scanner
(bytes.find), not by mitmproxy's multipart_form, which drops parts whose first header is not
Content-Disposition, glues lines together, loses file names and ignores transfer encodings. Every part
is extracted by its own Content-Type / file name (archives, JSON, nested multipart/mixed, base64 or
quoted-printable transfer encoding), located as `body:multipart:<field>` or `<field>[<filename>]`.
"""

from __future__ import annotations

import binascii
import re
from urllib.parse import unquote

from .base64blobs import scan_blobs
from .core import CORRUPT_ENCODING, MALFORMED, MEMBERS, TRUNCATED, Ctx, Level, Loc, label
from .locate import locate_spans
from .text import decode_words, percent_decode

# -- urlencoded ---------------------------------------------------------------------------------------

def form_view(data: bytes) -> bytes:
    """`a=1&b=x%5Fy` -> b"a=1\\nb=x_y" (pairs decoded; the raw body itself when nothing is encoded)."""
    if b"%" not in data and b"+" not in data:
        return data
    return b"\n".join(percent_decode(pair, plus=True) for pair in data.split(b"&"))


def field_at(data: bytes, view: bytes, start: int, end: int) -> str:
    """The decoded name of the field whose `name=value` holds view[start:end] ("" when unknown)."""
    return fields_at(data, view, [(start, end)])[0]


def fields_at(data: bytes, view: bytes, spans) -> list[str]:
    """field_at for many spans, in one pass over the view and the pairs (see locate.locate_spans)."""
    def units():
        for pair in data.split(b"&"):
            decoded = percent_decode(pair, plus=True)
            yield decoded, (decoded,)

    def name_of(decoded: bytes, needle: bytes) -> str:
        name, eq, _ = decoded.partition(b"=")
        if not eq or needle in name:  # a keyless body, or the secret is the name: never echo it
            return ""
        return label(name.decode("utf-8", "replace"), limit=64)

    return locate_spans(view, spans, units, name_of)


def extract_form(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> None:
    """A urlencoded form (or a URL query, with loc "url:query"): fields resolved as loc + ":<name>"."""
    view = form_view(data)
    seg = ctx.emit(loc, view, many=lambda spans: [_suffix(n) for n in fields_at(data, view, spans)])
    if seg is not None:
        scan_blobs(ctx, seg, lv)


def _suffix(name: str) -> str:
    return ":" + name if name else ""


# -- multipart ----------------------------------------------------------------------------------------

_PARAM = re.compile(r';\s*([A-Za-z0-9_.*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_BOUNDARY_LINE = re.compile(rb"\A(?:\r?\n)*--([^\r\n]{1,200}?)[ \t]*\r?\n")


def header_params(value: str) -> tuple[str, dict[str, str]]:
    """`form-data; name="f"; filename*=UTF-8''a%20b.zip` -> ("form-data", {"name": "f", "filename": "a b.zip"})."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for key, val in _PARAM.findall(";" + rest):
        key = key.lower()
        val = val.strip()
        if val.startswith('"') and val.endswith('"') and len(val) >= 2:
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        if key.endswith("*"):  # RFC 5987/2231: charset'lang'percent-encoded
            key = key[:-1]
            charset, _, encoded = val.partition("'")
            _, _, encoded = encoded.partition("'")
            try:
                val = unquote(encoded, encoding=charset or "utf-8", errors="replace")
            except LookupError:
                val = unquote(encoded)
            params[key] = val
        else:
            params.setdefault(key, val)
    return main.strip().lower(), params


def _part_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    last = ""
    for line in block.decode("utf-8", "replace").splitlines():
        if line[:1] in (" ", "\t") and last:  # folded continuation
            headers[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            last = name.strip().lower()
            headers[last] = value.strip()
    return headers


def split_multipart(data: bytes, boundary: bytes) -> tuple[list[tuple[bytes, bytes]], bytes, bool]:
    """Parts as (header block, content), the preamble+epilogue, and whether the close delimiter was seen.

    Bounded: bytes.find per delimiter; lines may end in CRLF or a bare LF.
    """
    delim = b"--" + boundary
    pos = 0 if data.startswith(delim) else data.find(b"\n" + delim)
    if pos == -1:
        return [], data, False
    if pos:
        pos += 1
    outside = [data[:pos]]
    parts = []
    n = len(data)
    while True:
        after = pos + len(delim)
        if data[after:after + 2] == b"--":
            outside.append(data[after + 2:])
            return parts, b"".join(outside), True
        eol = data.find(b"\n", after)
        if eol == -1:
            return parts, b"".join(outside), False
        start = eol + 1
        nxt = data.find(b"\n" + delim, start - 1)
        end = n if nxt == -1 else nxt
        if end > start and data[end - 1] == 0x0D:
            end -= 1
        part = data[start:max(start, end)]
        head, body = _split_part(part)
        parts.append((head, body))
        if nxt == -1:
            return parts, b"".join(outside), False
        pos = nxt + 1


def _split_part(part: bytes) -> tuple[bytes, bytes]:
    if part.startswith(b"\r\n"):
        return b"", part[2:]
    if part.startswith(b"\n"):
        return b"", part[1:]
    crlf = part.find(b"\r\n\r\n")
    lf = part.find(b"\n\n", 0, len(part) if crlf == -1 else crlf)  # only a bare-LF blank line before it
    if crlf == -1 and lf == -1:
        return part, b""  # headers only (or a truncated part)
    if lf == -1 or (crlf != -1 and crlf < lf):
        return part[:crlf], part[crlf + 4:]
    return part[:lf], part[lf + 2:]


def extract_multipart(ctx: Ctx, data: bytes, loc: Loc, lv: Level, params: dict[str, str]) -> None:
    mloc = loc.child(":multipart")
    boundary = params.get("boundary", "").encode("utf-8", "replace")
    if not boundary:
        m = _BOUNDARY_LINE.match(data)
        boundary = m.group(1) if m else b""
    parts, outside, closed = split_multipart(data, boundary) if boundary else ([], data, False)
    if not parts:
        ctx.fail(mloc, MALFORMED)
        seg = ctx.emit(mloc, data)  # nothing parsed: the body is still scanned as text
        if seg is not None:
            scan_blobs(ctx, seg, lv)
        return
    if not closed:
        ctx.fail(mloc, TRUNCATED)
    limit = ctx.limits.max_archive_members
    if len(parts) > limit:
        ctx.fail(mloc, MEMBERS)
        parts = parts[:limit]
    headers_text = [outside]
    for index, (head, body) in enumerate(parts):
        headers_text.append(head)
        _extract_part(ctx, index, head, body, mloc, lv)
        if ctx.left <= 0:
            break
    ctx.emit(mloc.child(":headers"), b"\n".join(h for h in headers_text if h))


def _extract_part(ctx: Ctx, index: int, head: bytes, body: bytes, mloc: Loc, lv: Level) -> None:
    headers = _part_headers(head)
    _, disp = header_params(headers.get("content-disposition", ""))
    ctype = headers.get("content-type", "")
    name = disp.get("name") or f"part{index}"
    filename = disp.get("filename") or ""
    if not filename and ctype:
        filename = header_params(ctype)[1].get("name", "")  # multipart/mixed attachments
    filename = decode_words(filename)
    ploc = mloc.child(":" + label(name) + (f"[{label(filename)}]" if filename else ""))
    if filename:  # a file name is content too (filename*= already percent-decoded, encoded-words decoded)
        ctx.emit(ploc.child(":filename"), ctx.take(filename.encode("utf-8", "surrogateescape"), ploc))
    cte = headers.get("content-transfer-encoding", "").strip().lower()
    if cte == "base64":
        decoded = _transfer_decode(binascii.a2b_base64, body)
    elif cte == "quoted-printable":
        decoded = _transfer_decode(binascii.a2b_qp, body)
    else:
        decoded = None
    if decoded is not None:
        if decoded is _BAD:
            ctx.fail(ploc, CORRUPT_ENCODING)
            decoded = body
        else:
            decoded = ctx.take(decoded, ploc)
        body = decoded
    ctx.content(body, ploc, lv, ctype, filename)  # nested multipart counts toward max_archive_depth there


_BAD = object()  # transfer decoding failed


def _transfer_decode(fn, body: bytes):
    try:
        return fn(body)
    except (binascii.Error, ValueError):
        return _BAD

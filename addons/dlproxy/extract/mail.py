"""Mail carried over HTTP: message/rfc822 bodies, .eml uploads, Gmail API `raw`, SES raw messages.

The standard library's `email` parser undoes what mail transport does to text: quoted-printable soft line
breaks (which split a token across lines), base64 parts, nested multiparts, attached files. Each leaf part is
extracted by its own type and file name (archives through the container path); headers and file names are
scanned as text, RFC 2047 encoded-words (`=?UTF-8?B?…?=` in a Subject) decoded. Parts count toward max_archive_members, nesting toward max_archive_depth.
"""

from __future__ import annotations

import email
import email.policy
import re

from .core import DEPTH, MEMBERS, Ctx, Level, Loc, label
from .text import decode_words

# A message starts with header lines, among them one that mail always has.
_HEAD = re.compile(rb"\A(?:[!-9;-~]+:[^\r\n]*\r?\n(?:[ \t][^\r\n]*\r?\n)*){1,64}\r?\n", re.S)
_MAIL_HEADER = re.compile(rb"^(?:from|to|subject|mime-version|received|return-path|message-id|date):", re.I | re.M)


def looks_like_mail(data: bytes) -> bool:
    """RFC 5322 header lines up to a blank line, with at least one of the headers every message carries."""
    m = _HEAD.match(data[:16384])
    return m is not None and _MAIL_HEADER.search(m.group()) is not None


def extract_mail(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> None:
    mloc = loc.child(":mail")
    ctx.emit(mloc, data)  # headers, and text parts that need no decoding, as they are
    if lv.archive >= ctx.limits.max_archive_depth:
        ctx.fail(mloc, DEPTH)
        return
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    inner = lv._replace(archive=lv.archive + 1)
    words: list[str] = []
    try:
        _parts(ctx, message, mloc, inner, words)
    finally:
        if words:
            ctx.emit(mloc.child(":headers"), ctx.take("\n".join(words).encode("utf-8", "surrogateescape"), mloc))


def _parts(ctx: Ctx, message, mloc: Loc, inner: Level, words: list[str]) -> None:
    """Every leaf part extracted; header values that hold encoded-words collected, decoded, into `words`."""
    for index, part in enumerate(message.walk()):
        if index >= ctx.limits.max_archive_members:
            ctx.fail(mloc, MEMBERS)
            return
        words += [decoded for value in part.values()
                  if isinstance(value, str) and (decoded := decode_words(value)) != value]
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        filename = decode_words(part.get_filename() or "")
        ploc = mloc.child(f":part{index}" + (f"[{label(filename)}]" if filename else ""))
        if filename:
            ctx.emit(ploc.child(":filename"), ctx.take(filename.encode("utf-8", "surrogateescape"), ploc))
        if not payload:
            continue
        ctx.content(ctx.take(payload, ploc), ploc, inner, part.get_content_type(), filename)
        if ctx.left <= 0:
            return

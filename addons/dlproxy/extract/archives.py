"""Archives and compressed files: zip (and docx/xlsx/pptx/odt), tar, gzip/bz2/xz/zstd files.

Members are located as `<archive location>/<member name>` and extracted like any content (nested
archives up to max_archive_depth). Zip bombs are stopped three ways: the declared member count and
sizes (central directory) are checked before reading, every member is read in slices up to
min(budget, ratio x its compressed size), and the whole message shares one byte budget. A container
that cannot be parsed is still scanned as raw bytes (stored members are plain in it) and reported.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile

from .core import (
    DEPTH,
    ENCRYPTED,
    MALFORMED,
    MEMBERS,
    TOO_LARGE,
    TRUNCATED,
    UNSUPPORTED_ENCODING,
    Ctx,
    Level,
    Loc,
    label,
)
from .encoding import FILE_ZSTD_WINDOW, OVER, decode
from .markup import extract_office_part, is_office_text_part

_READ = 1 << 20
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 93})
_AES = 99
_EOCD = b"PK\x05\x06"
_MIN_CD_ENTRY = 46
_COMPRESSED_SUFFIXES = {".gz": "", ".tgz": ".tar", ".gzip": "", ".z": "", ".bz2": "", ".tbz2": ".tar",
                        ".tbz": ".tar", ".xz": "", ".txz": ".tar", ".zst": "", ".tzst": ".tar", ".svgz": ".svg"}


def _zip_entries(data: bytes) -> int | None:
    """Entries the central directory declares (by count and by size), or None without an EOCD record."""
    at = data.rfind(_EOCD, max(0, len(data) - 65557))
    if at == -1 or len(data) < at + 22:
        return None
    _, _, _, _, count, cd_size, _, _ = struct.unpack("<4s4H2LH", data[at:at + 22])
    return max(count, cd_size // _MIN_CD_ENTRY)


def extract_zip(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> None:
    limit = ctx.limits.max_archive_members
    declared = _zip_entries(data)
    if declared is None:
        ctx.fail(loc, TRUNCATED)
        ctx.emit(loc, data)
        return
    if declared > 4 * limit:  # parsing the directory alone would be unbounded work
        ctx.fail(loc, MEMBERS)
        ctx.emit(loc, data)
        return
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception:  # BadZipFile, struct.error, ValueError, ...: a broken container
        ctx.fail(loc, MALFORMED)
        ctx.emit(loc, data)
        return
    if len(infos) > limit:
        ctx.fail(loc, MEMBERS)
        infos = infos[:limit]
    names = {i.filename for i in infos}
    office = "[Content_Types].xml" in names or ("mimetype" in names and "content.xml" in names)
    inner = lv._replace(archive=lv.archive + 1)
    for info in infos:
        if info.is_dir():
            continue
        if ctx.left <= 0:
            ctx.fail(loc, TOO_LARGE)
            return
        mloc = loc.child("/" + label(info.filename, 200))
        if info.flag_bits & 0x1 or info.compress_type == _AES:
            ctx.fail(mloc, ENCRYPTED)
            continue
        if info.compress_type not in _ZIP_METHODS:
            ctx.fail(mloc, UNSUPPORTED_ENCODING)
            continue
        member = _read_member(ctx, zf, info, mloc)
        if office and is_office_text_part(info.filename):
            extract_office_part(ctx, member, mloc, inner)
        else:
            ctx.content(member, mloc, inner, "", info.filename)


def _read_member(ctx: Ctx, zf: zipfile.ZipFile, info: zipfile.ZipInfo, mloc: Loc) -> bytes:
    cap, over = ctx.cap(info.compress_size)
    if info.compress_type == zipfile.ZIP_STORED:
        cap, over = min(ctx.left, info.file_size), TOO_LARGE
    out = bytearray()
    problem = None
    try:
        with zf.open(info) as f:
            while len(out) <= cap:
                chunk = f.read(min(_READ, cap + 1 - len(out)))
                if not chunk:
                    break
                out += chunk
    except EOFError:
        problem = TRUNCATED
    except Exception:  # BadZipFile (CRC, bad local header, overlap), zlib.error, NotImplementedError
        problem = MALFORMED
    if len(out) > cap or info.file_size > cap:  # actually, or by the declared size (a lying directory)
        ctx.fail(mloc, over)
        del out[cap:]
    if problem:
        ctx.fail(mloc, problem)
    ctx.charge(len(out))
    return bytes(out)


def extract_tar(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> None:
    limit = ctx.limits.max_archive_members
    inner = lv._replace(archive=lv.archive + 1)
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
    except Exception:
        ctx.fail(loc, MALFORMED)
        ctx.emit(loc, data)
        return
    count = 0
    while True:
        try:
            member = tf.next()
        except Exception:
            ctx.fail(loc, TRUNCATED)
            return
        if member is None:
            return
        count += 1
        if count > limit:
            ctx.fail(loc, MEMBERS)
            return
        if not member.isfile():
            continue
        if ctx.left <= 0:
            ctx.fail(loc, TOO_LARGE)
            return
        mloc = loc.child("/" + label(member.name, 200))
        cap = min(ctx.left, member.size)
        try:
            content = tf.extractfile(member).read(cap)
        except Exception:
            ctx.fail(mloc, TRUNCATED)
            continue
        if member.size > cap:
            ctx.fail(mloc, TOO_LARGE)
        ctx.charge(len(content))
        ctx.content(content, mloc, inner, "", member.name)
        tf.members.clear()  # tarfile keeps every TarInfo; we do not need them


def inner_name(name: str) -> str:
    lower = name.lower()
    for suffix, replacement in _COMPRESSED_SUFFIXES.items():
        if lower.endswith(suffix):
            return name[:-len(suffix)] + replacement
    return name


def extract_compressed(ctx: Ctx, data: bytes, loc: Loc, lv: Level, coding: str, name: str) -> None:
    """A gzip/bz2/xz/zstd file: decompressed within the budget, then extracted by its inner name."""
    if lv.layers >= ctx.limits.max_coding_layers:
        ctx.fail(loc, DEPTH)
        ctx.emit(loc, data)
        return
    cap, over = ctx.cap(len(data))
    out, status = decode(coding, data, cap, FILE_ZSTD_WINDOW)
    if status is not None:
        ctx.fail(loc, over if status == OVER else status)
    ctx.charge(len(out))
    if not out and status is not None:
        ctx.emit(loc, data)  # not what its magic says: scan it as it is
        return
    ctx.content(out, loc, lv._replace(layers=lv.layers + 1), "", inner_name(name))

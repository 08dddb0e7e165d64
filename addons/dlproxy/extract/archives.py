"""Archives and compressed files: zip (and docx/xlsx/pptx/odt), tar, gzip/bz2/xz/zstd files.

Members are located as `<archive location>/<member name>` and extracted like any content (nested
archives up to max_archive_depth). Zip bombs are stopped three ways: the declared member count and
sizes (central directory) are checked before reading, every member is read in slices up to
min(budget, ratio x its compressed size), and the whole message shares one byte budget. A container
that cannot be parsed is still scanned as raw bytes (stored members are plain in it) and reported.
"""

from __future__ import annotations

import io
import re
import struct
import tarfile
import zipfile
import zlib

from .core import (
    CORRUPT_ENCODING,
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
from .encoding import FILE_ZSTD_WINDOW, OVER, decode, gzip_names
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


def extract_zip(ctx: Ctx, data: bytes, loc: Loc, lv: Level, raw_scanned: bool = False) -> None:
    """`raw_scanned`: the bytes themselves were already emitted (a zip found behind a prefix)."""
    limit = ctx.limits.max_archive_members
    declared = _zip_entries(data)
    if declared is None:  # no central directory: what the local headers hold, as a streaming unzip reads it
        if not _local_entries(ctx, data, loc, lv):
            ctx.fail(loc, TRUNCATED)
        if not raw_scanned:
            ctx.emit(loc, data)
        return
    if declared > 4 * limit:  # parsing the directory alone would be unbounded work
        ctx.fail(loc, MEMBERS)
        if not raw_scanned:
            ctx.emit(loc, data)
        return
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except Exception:  # BadZipFile, struct.error, ValueError, ...: a broken container
        ctx.fail(loc, MALFORMED)
        if not raw_scanned:
            ctx.emit(loc, data)
        return
    if len(infos) > limit:
        ctx.fail(loc, MEMBERS)
        infos = infos[:limit]
    names = {i.filename for i in infos}
    _names(ctx, loc, [i.filename for i in infos], b"\n".join([zf.comment, *(i.comment for i in infos if i.comment)]))
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


def _names(ctx: Ctx, loc: Loc, names: list[str], comment: bytes = b"") -> None:
    """Member names, link targets and comments are content too (a token can be a file name)."""
    text = "\n".join(names).encode("utf-8", "surrogateescape")
    if comment:
        text += b"\n" + comment
    if text.strip():
        ctx.emit(loc.child(":names"), ctx.take(text, loc))


_LOCAL = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, name/extra lengths


def _local_entries(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> bool:
    """Walk the local file headers of a zip without a central directory; True when they parse to the end."""
    pos, names, count = data.find(b"PK\x03\x04"), [], 0
    inner = lv._replace(archive=lv.archive + 1)
    if pos == -1:
        return False
    while pos != -1 and pos + _LOCAL.size <= len(data) and count < ctx.limits.max_archive_members:
        _, _, flags, method, _, _, _, csize, _, nlen, elen = _LOCAL.unpack_from(data, pos)
        start = pos + _LOCAL.size + nlen + elen
        name = data[pos + _LOCAL.size:pos + _LOCAL.size + nlen].decode("utf-8", "replace")
        names.append(name)
        count += 1
        if flags & 0x1:
            ctx.fail(loc.child("/" + label(name, 200)), ENCRYPTED)
            return True
        if method == zipfile.ZIP_DEFLATED:
            cap, over = ctx.cap(max(csize, 1))
            d = zlib.decompressobj(-15)
            try:
                out = d.decompress(data[start:start + csize] if csize and not flags & 0x8 else data[start:], cap + 1)
            except zlib.error:
                _names(ctx, loc, names)
                return False
            end = start + (csize if csize and not flags & 0x8 else len(data) - start - len(d.unused_data))
            if len(out) > cap:
                ctx.fail(loc, over)
                out = out[:cap]
            whole = d.eof
        elif method == zipfile.ZIP_STORED and csize and not flags & 0x8:
            out, end = data[start:start + csize], start + csize
            whole = end <= len(data)
        else:
            _names(ctx, loc, names)
            return False
        ctx.charge(len(out))
        ctx.content(bytes(out), loc.child("/" + label(name, 200)), inner, "", name)
        if not whole:  # cut off inside this member
            _names(ctx, loc, names)
            return False
        pos = data.find(b"PK\x03\x04", end)
    _names(ctx, loc, names)
    return True


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
    names: list[str] = []
    try:
        _tar_members(ctx, tf, loc, inner, limit, names)
    finally:
        _names(ctx, loc, names)


_PAX_SEEN = frozenset({"path", "linkpath", "size", "mtime", "atime", "ctime", "uid", "gid"})  # already named


def _tar_members(ctx: Ctx, tf: tarfile.TarFile, loc: Loc, inner: Level, limit: int, names: list[str]) -> None:
    count = 0
    while True:
        try:
            member = tf.next()
        except Exception:
            ctx.fail(loc, TRUNCATED)
            return
        if member is None:
            return
        names.append(member.name)
        if member.linkname:
            names.append(member.linkname)
        names += [v for k, v in member.pax_headers.items() if k not in _PAX_SEEN and isinstance(v, str)]
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


WEAK_MAGIC = ("zlib", "lzma")
# Archive formats no dependency-free library reads: named, never passed silently (on_error decides).
UNREADABLE_MAGIC = ((b"7z\xbc\xaf\x27\x1c", "7z"), (b"Rar!\x1a\x07", "rar"), (b"MSCF\x00\x00\x00\x00", "cab"),
                    (b"xar!", "xar"))
# Compressed data after a prefix (self-extracting scripts, zipapps): searched for in binary content only.
_EMBEDDED = ((b"\x1f\x8b\x08", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"BZh91AY&SY", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"))


def unreadable_archive(data: bytes) -> str | None:
    for magic, kind in UNREADABLE_MAGIC:
        if data.startswith(magic):
            return kind
    return None


def extract_embedded(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> None:
    """A container behind a prefix: a zip found from its end (zipfile reads a prefixed zip), or the first
    compressed stream after a shell script (makeself). The prefix itself was already scanned."""
    if lv.archive >= ctx.limits.max_archive_depth:
        return
    if _git_pack(ctx, data, loc, lv) or _png_text(ctx, data, loc, lv) or _ar(ctx, data, loc, lv):
        return
    tail = data.rfind(_EOCD, max(0, len(data) - 65557))
    if tail > 0 and data.find(b"PK\x03\x04") > 0:
        extract_zip(ctx, data, loc.child(":zip"), lv, raw_scanned=True)
        return
    ascii_only = data.isascii()  # one fast pass; then no gzip, xz or zstd magic can be in it
    for magic, coding in _EMBEDDED:
        if ascii_only and not magic.isascii():
            continue
        at = data.find(magic, 1)
        if at == -1 or lv.layers >= ctx.limits.max_coding_layers:
            continue
        cap, over = ctx.cap(len(data) - at)
        out, status = decode(coding, data[at:], cap, FILE_ZSTD_WINDOW)
        if not out:  # the magic bytes were a coincidence (random binary): nothing to report
            continue
        if status == OVER:
            ctx.fail(loc, over)
        ctx.charge(len(out))  # trailing data after the stream is normal here (a script's exit code, a signature)
        ctx.content(out, loc.child(":" + coding), lv._replace(archive=lv.archive + 1, layers=lv.layers + 1))
        return


_PACK = re.compile(rb"PACK\x00\x00\x00[\x02\x03]")
_PACK_SLICE = 1 << 16


def _git_pack(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> bool:
    """A git packfile (what `git push` sends after its pkt-line ref updates): every object is a zlib stream after
    a varint header (and a base offset or id for deltas, whose inserted text is literal), inflated one by one."""
    m = _PACK.search(data)
    if m is None:
        return False
    ploc, pos = loc.child(":git-pack"), m.end() + 4
    count = int.from_bytes(data[m.end():pos], "big")
    limit = ctx.limits.max_archive_members
    if count > limit:
        ctx.fail(ploc, MEMBERS)
    inner = lv._replace(archive=lv.archive + 1, layers=lv.layers + 1)
    for n in range(min(count, limit)):
        byte, kind = 0x80, (data[pos] >> 4) & 7 if pos < len(data) else 0
        while byte & 0x80 and pos < len(data):  # type and size
            byte, pos = data[pos], pos + 1
        if kind == 6:  # OFS_DELTA: a varint offset of the base
            byte = 0x80
            while byte & 0x80 and pos < len(data):
                byte, pos = data[pos], pos + 1
        elif kind == 7:  # REF_DELTA: the base's id
            pos += 20
        out, pos, reason = _inflate_at(ctx, data, pos)
        if reason is not None:
            ctx.fail(ploc, reason)
        ctx.charge(len(out))
        ctx.content(out, ploc.child(f"/object{n}"), inner)
        if reason is not None or ctx.left <= 0:
            return True
    return True


def _inflate_at(ctx: Ctx, data: bytes, pos: int) -> tuple[bytes, int, str | None]:
    """The zlib stream at `pos` within the budget: (output, the position after it, None or a reason)."""
    d, out = zlib.decompressobj(), bytearray()
    cap, over = ctx.cap(len(data) - pos)
    try:
        while not d.eof:
            chunk = data[pos:pos + _PACK_SLICE]
            if not chunk:
                return bytes(out), pos, TRUNCATED
            out += d.decompress(chunk, cap + 1 - len(out))
            if len(out) > cap:
                return bytes(out[:cap]), pos, over
            pos += len(chunk) - len(d.unused_data) - len(d.unconsumed_tail)
    except zlib.error:
        return bytes(out), pos, CORRUPT_ENCODING
    return bytes(out), pos, None


_PNG = b"\x89PNG\r\n\x1a\n"


def _png_text(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> bool:
    """A PNG's compressed text chunks (zTXt, iTXt with the compression flag): metadata an image viewer shows."""
    if not data.startswith(_PNG):
        return False
    pos, n = len(_PNG), 0
    while pos + 12 <= len(data) and n < ctx.limits.max_archive_members:
        size, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body, pos = data[pos + 8:pos + 8 + size], pos + 12 + size
        if kind == b"zTXt":
            packed = body.partition(b"\x00")[2][1:]  # keyword, NUL, method
        elif kind == b"iTXt" and body.partition(b"\x00")[2][:1] == b"\x01":  # compressed
            rest = body.partition(b"\x00")[2][2:]  # flag, method; then language, NUL, translated keyword, NUL
            packed = rest.partition(b"\x00")[2].partition(b"\x00")[2]
        else:
            continue
        n += 1
        cap, over = ctx.cap(len(packed))
        out, status = decode("zlib", packed, cap)
        if status is not None:
            ctx.fail(loc, over if status == OVER else status)
        ctx.charge(len(out))
        ctx.content(out, loc.child(f":png-{kind.decode()}{n}"), lv._replace(layers=lv.layers + 1))
    return True


def _ar(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> bool:
    """An ar archive (`.deb`: debian-binary, control.tar.*, data.tar.*): 60-byte headers, members extracted."""
    if not data.startswith(b"!<arch>\n"):
        return False
    pos, names, inner = 8, [], lv._replace(archive=lv.archive + 1)
    while pos + 60 <= len(data):
        head = data[pos:pos + 60]
        size = head[48:58].strip()
        if head[58:60] != b"`\n" or not size.isdigit():
            ctx.fail(loc, MALFORMED)
            break
        name = head[:16].decode("latin-1").strip().rstrip("/")
        member, pos = data[pos + 60:pos + 60 + int(size)], pos + 60 + int(size) + (int(size) & 1)
        names.append(name)
        if len(names) > ctx.limits.max_archive_members:
            ctx.fail(loc, MEMBERS)
            break
        ctx.content(member, loc.child("/" + label(name, 200)), inner, "", name)
    _names(ctx, loc, names)
    return True


_PDF_STREAM = re.compile(rb"/FlateDecode[^>]*>>\s*stream\r?\n")


def extract_pdf(ctx: Ctx, data: bytes, loc: Loc, lv: Level) -> None:
    """PDF: the file as it is, plus its FlateDecode streams decompressed (page text, embedded files).
    An encrypted PDF is named: its strings and streams are ciphertext."""
    ctx.emit(loc, data)
    if b"/Encrypt" in data:
        ctx.fail(loc, ENCRYPTED)
        return
    for n, m in enumerate(_PDF_STREAM.finditer(data)):
        if n >= ctx.limits.max_archive_members or ctx.left <= 0:
            ctx.fail(loc, MEMBERS if ctx.left > 0 else TOO_LARGE)
            return
        end = data.find(b"endstream", m.end())
        raw = data[m.end():end if end != -1 else len(data)]
        cap, over = ctx.cap(len(raw))
        out, status = decode("zlib", raw.rstrip(b"\r\n"), cap)
        if status == OVER:
            ctx.fail(loc, over)
        elif status is not None and not out:
            ctx.fail(loc, CORRUPT_ENCODING)
            continue
        ctx.charge(len(out))
        ctx.content(out, loc.child(f":pdf-stream{n}"), lv._replace(layers=lv.layers + 1))


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
    if status is not None and not out and coding in WEAK_MAGIC:  # only looked like one: scan it as it is
        ctx.emit(loc, data)
        return
    if status is not None:
        ctx.fail(loc, over if status == OVER else status)
    ctx.charge(len(out))
    if not out and status is not None:
        ctx.emit(loc, data)  # not what its magic says: scan it as it is
        return
    if coding == "gzip" and (names := gzip_names(data)):
        ctx.emit(loc.child(":names"), ctx.take(names, loc))
    ctx.content(out, loc, lv._replace(layers=lv.layers + 1), "", inner_name(name))

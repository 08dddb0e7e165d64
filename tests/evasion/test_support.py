"""The leak check itself: every form it promises to see through, and nothing else."""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import quopri
import tarfile
import urllib.parse
import zipfile
import zlib

import brotli
import pytest
import zstandard
from support import Variant, received_any_form, token_for, wrong_checksum

from e2e.conftest import Received

TOKEN = token_for(Variant("leak-check", "unit", lambda t: None))


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", data)
    return buf.getvalue()


def _tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo(name)
        tf.addfile(info, io.BytesIO(b""))
    return buf.getvalue()


RAW = TOKEN.encode()
FORMS = {
    "raw": lambda r: r,
    "percent": lambda r: urllib.parse.quote(urllib.parse.quote("".join(f"%{c:02X}" for c in r))).encode(),
    "json-u": lambda r: json.dumps({"t": "".join(f"\\u{c:04x}" for c in r)}).encode(),
    "base64-wrapped": lambda r: b"\n".join(base64.b64encode(b"k=" + r)[i:i + 5] for i in range(0, 60, 5)),
    "base64url": lambda r: base64.urlsafe_b64encode(b"\xff\xfe" + r).rstrip(b"="),
    "utf16le": lambda r: b"x\0 \0" + r.decode().encode("utf-16-le"),
    "utf16be": lambda r: r.decode().encode("utf-16-be"),
    "utf32": lambda r: r.decode().encode("utf-32-le"),
    "gzip": gzip.compress,
    "deflate": lambda r: zlib.compress(r)[2:-4],
    "zlib": lambda r: b"prefix" + zlib.compress(r),
    "br": brotli.compress,
    "zstd": lambda r: zstandard.ZstdCompressor().compress(r),
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "qp": lambda r: quopri.encodestring(b"x" * 60 + r),
    "html": lambda r: "".join(f"&#x{c:x};" for c in r).encode(),
    "hex": lambda r: r.hex().encode(),
    "cdata": lambda r: b"<a>" + r[:9] + b"]]><![CDATA[" + r[9:] + b"</a>",
    "zip": lambda r: _zip(b"x " + r),
    "tar-name": lambda r: _tar(r.decode()),
    "gzip-in-base64": lambda r: base64.b64encode(gzip.compress(r)),
}


@pytest.mark.parametrize("form", FORMS)
def test_the_leak_check_sees_through(form):
    assert received_any_form([Received("POST", "/", [], FORMS[form](RAW))], TOKEN)


@pytest.mark.parametrize("where", ["path", "header"])
def test_the_leak_check_reads_path_and_headers(where):
    enc = urllib.parse.quote("".join(f"%{c:02X}" for c in RAW))
    rec = Received("GET", f"/x?t={enc}", [], b"") if where == "path" else Received("GET", "/", [("X-A", enc)], b"")
    assert received_any_form([rec], TOKEN)


@pytest.mark.parametrize("form", FORMS)
def test_the_leak_check_does_not_see_another_token(form):
    other = wrong_checksum(TOKEN).encode()
    assert not received_any_form([Received("POST", "/", [], FORMS[form](other))], TOKEN)

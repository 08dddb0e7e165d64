"""Shared helpers for the test_extract* modules (no tests here): real tokens, containers, `found()`."""

from __future__ import annotations

import base64
import functools
import io
import tarfile
import zipfile

from dlproxy.extract import Extraction, Limits, extract_http
from tokens import make_ghp

CLEAN = "nothing secret here, just words"


def ghp(seed: int | str = 0) -> str:
    """A valid classic GitHub PAT: "ghp_" + 30 chars + base62(crc32(body)), width 6."""
    return make_ghp(seed)


@functools.cache
def detector():
    from dlproxy.engine.detector import Detector
    from dlproxy.engine.profile import builtin_profile_path, load_profiles
    return Detector(load_profiles([builtin_profile_path()]))


def found(ext: Extraction) -> list[tuple[str, str]]:
    """(resolved location, token) for every validated finding in every segment."""
    hits = []
    for seg in ext.segments:
        for f in detector().scan(seg.data):
            hits.append((seg.locate(f.start, f.end), seg.data[f.start:f.end].decode("latin-1")))
    return hits


def http(body: bytes | None = None, headers: list[tuple[str, str]] | None = None, url: str | None = None,
         limits: Limits | None = None) -> Extraction:
    return extract_http(url=url, headers=headers or [], body=body, limits=limits or Limits())


def make_zip(members: dict[str, bytes | str], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def docx(runs: list[str]) -> bytes:
    """A minimal real .docx whose one paragraph is split into formatting runs (every other one bold)."""
    body = "".join(f'<w:r>{"<w:rPr><w:b/></w:rPr>" if i % 2 else ""}<w:t xml:space="preserve">{t}</w:t></w:r>'
                   for i, t in enumerate(runs))
    return make_zip({
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                               'package/2006/content-types"/>',
        "word/document.xml": '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
                             f'wordprocessingml/2006/main"><w:body><w:p>{body}</w:p>'
                             '<w:p><w:r><w:t>next paragraph</w:t></w:r></w:p></w:body></w:document>',
    })


def xlsx(rich_runs: list[str]) -> bytes:
    """A minimal .xlsx whose shared string is rich text made of runs."""
    runs = "".join(f"<r><t>{t}</t></r>" for t in rich_runs)
    return make_zip({
        "[Content_Types].xml": "<Types/>",
        "xl/sharedStrings.xml": f'<sst count="2"><si><t>header</t></si><si>{runs}</si></sst>',
        "xl/worksheets/sheet1.xml": '<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c>'
                                    '<c r="B1" t="s"><v>1</v></c></row></sheetData></worksheet>',
    })


def pptx(runs: list[str]) -> bytes:
    text = "".join(f"<a:r><a:t>{t}</a:t></a:r>" for t in runs)
    return make_zip({
        "[Content_Types].xml": "<Types/>",
        "ppt/slides/slide1.xml": f"<p:sld><p:txBody><a:p>{text}</a:p></p:txBody></p:sld>",
    })


def b64(data: bytes | str, urlsafe: bool = False) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()

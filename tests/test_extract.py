"""Every carrier a token can hide in. For each, a real valid token placed inside is found by the
real Detector at the right location, and the same carrier with clean text yields nothing."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import zipfile
import zlib

import brotli
import httpx
import pytest

from dlproxy.extract import Limits, extract_file, locate_json_path
from test_extract_support import CLEAN, b64, docx, found, ghp, http, make_tar, make_zip, pptx, xlsx

try:
    from compression import zstd
except ImportError:
    from backports import zstd

TOKEN = ghp("carriers")
JSON = [("Content-Type", "application/json")]


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


def _multipart(data=None, files=None) -> tuple[bytes, list[tuple[str, str]]]:
    """A multipart body built by httpx's own encoder."""
    req = httpx.Request("POST", "https://upload.example/", data=data, files=files)
    return req.read(), [("Content-Type", req.headers["content-type"])]


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush()


def _hand_multipart(parts: list[bytes], boundary: str = "XyZ") -> tuple[bytes, list[tuple[str, str]]]:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts) + b"--XyZ--\r\n"
    return body, [("Content-Type", f"multipart/form-data; boundary={boundary}")]


def _carriers(secret: str) -> dict[str, tuple[dict, str]]:
    """name -> (extract_http kwargs, expected location of `secret`)."""
    s = secret
    enc = s.replace("_", "%5F")
    doc = _json({"model": "gpt-4o", "messages": [{"role": "user", "content": "line one\n" + s}]})
    files = {}
    body, hdr = _multipart(data={"note": "hello", "token": s}, files={"f": ("a.txt", b"x", "text/plain")})
    files["multipart-field"] = (dict(body=body, headers=hdr), "body:multipart:token")
    body, hdr = _multipart(files={"file": ("notes.txt", ("see " + s).encode(), "text/plain")})
    files["multipart-file"] = (dict(body=body, headers=hdr), "body:multipart:file[notes.txt]")
    body, hdr = _multipart(files={"file": ("project.zip", make_zip({".npmrc": f"//registry/:_authToken={s}\n"}),
                                           "application/zip")})
    files["multipart-zip"] = (dict(body=body, headers=hdr), "body:multipart:file[project.zip]/.npmrc")
    body, hdr = _hand_multipart([b'Content-Type: text/plain\r\nContent-Disposition: form-data; name="ct-first"'
                                 b"\r\n\r\nline1\r\n" + s.encode() + b"\r\nline3"])
    files["multipart-ct-first"] = (dict(body=body, headers=hdr), "body:multipart:ct-first")
    body, hdr = _hand_multipart([b'Content-Disposition: form-data; name="doc"; filename="a.txt"\r\n'
                                 b"Content-Transfer-Encoding: base64\r\n\r\n" + b64("key " + s).encode()])
    files["multipart-cte-base64"] = (dict(body=body, headers=hdr), "body:multipart:doc[a.txt]")
    inner = (b"--in\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=\"x.env\"\r\n\r\nT="
             + s.encode() + b"\r\n--in--")
    body, hdr = _hand_multipart([b'Content-Disposition: form-data; name="files"\r\n'
                                 b"Content-Type: multipart/mixed; boundary=in\r\n\r\n" + inner])
    files["multipart-mixed"] = (dict(body=body, headers=hdr), "body:multipart:files:multipart:part0[x.env]")
    zoo = {
        "url-path": (dict(url=f"https://api.example/v1/{enc}/repos"), "url:path"),
        "url-query": (dict(url=f"https://api.example/v1?q=a+b&access_token={enc}&x=1"), "url:query:access_token"),
        "url-userinfo": (dict(url=f"https://x-access-token:{s}@github.com/o/r.git"), "url:userinfo"),
        "header": (dict(headers=[("Accept", "*/*"), ("X-Api-Key", s)]), "header:x-api-key"),
        "header-basic": (dict(headers=[("Authorization", "Basic " + b64("user:" + s))]),
                         "header:authorization:basic"),
        "header-bearer": (dict(headers=[("Authorization", "Bearer " + s)]), "header:authorization"),
        "cookie": (dict(headers=[("Cookie", f"theme=dark; session={s}; lang=en")]), "header:cookie:session"),
        "cookie-encoded": (dict(headers=[("Cookie", f"theme=dark; gh={enc}")]), "header:cookie:gh"),
        "referer-encoded": (dict(headers=[("Referer", f"https://x.example/?t={enc}")]), "header:referer"),
        "json": (dict(body=doc, headers=JSON), "body:json:$.messages[0].content"),
        "json-unicode-escapes": (dict(body=b'{"k": "' + "".join(f"\\u{ord(c):04x}" for c in s).encode() + b'"}',
                                      headers=JSON), "body:json:$.k"),
        "json-slash-escape": (dict(body=b'{"url": "https:\\/\\/x\\/' + s.encode() + b'"}', headers=JSON),
                              "body:json:$.url"),
        "json-key": (dict(body=_json({s: 1}), headers=JSON), f"body:json:$.{s}"),
        "json-in-json-string": (dict(body=_json({"tool_calls": [{"function": {"arguments": json.dumps(
            {"code": "x = 1\n" + s})}}]}), headers=JSON), "body:json:$.tool_calls[0].function.arguments"),
        "ndjson": (dict(body=b'{"a": 1}\n{"input": "x\\n' + s.encode() + b'"}\n',
                        headers=[("Content-Type", "application/x-ndjson")]), "body:ndjson:$[1].input"),
        "sse": (dict(body=b'data: {"choices": [{"delta": {"content": "x\\n' + s.encode() + b'"}}]}\n\n'
                          b"data: [DONE]\n\n", headers=[("Content-Type", "text/event-stream")]),
                "body:sse:$[0].choices[0].delta.content"),
        "text": (dict(body=f"export GITHUB_TOKEN={s}\n".encode(), headers=[("Content-Type", "text/plain")]),
                 "body"),
        "text-utf16": (dict(body=f"token: {s}".encode("utf-16"), headers=[("Content-Type", "text/plain")]),
                       "body"),
        "form": (dict(body=f"user=me&token={enc}&x=%20".encode(),
                      headers=[("Content-Type", "application/x-www-form-urlencoded")]), "body:form:token"),
        "xml-entities": (dict(body=f"<a><key>{s.replace('_', '&#95;')}</key></a>".encode(),
                              headers=[("Content-Type", "application/xml")]), "body:xml"),
        "html-attribute": (dict(body=f'<html><a href="https://x/?t={s.replace("_", "&lowbar;")}">x</a></html>'
                                .encode(), headers=[("Content-Type", "text/html")]), "body:html"),
        "gzip": (dict(body=gzip.compress(doc), headers=JSON + [("Content-Encoding", "gzip")]),
                 "body:json:$.messages[0].content"),
        "gzip-second-member": (dict(body=gzip.compress(b"harmless ") + gzip.compress(s.encode()),
                                    headers=[("Content-Encoding", "gzip")]), "body"),
        "deflate": (dict(body=zlib.compress(doc), headers=JSON + [("Content-Encoding", "deflate")]),
                    "body:json:$.messages[0].content"),
        "deflate-raw": (dict(body=_raw_deflate(doc), headers=JSON + [("Content-Encoding", "deflate")]),
                        "body:json:$.messages[0].content"),
        "br": (dict(body=brotli.compress(doc), headers=JSON + [("Content-Encoding", "br")]),
               "body:json:$.messages[0].content"),
        "zstd": (dict(body=zstd.compress(doc), headers=JSON + [("Content-Encoding", "zstd")]),
                 "body:json:$.messages[0].content"),
        "stacked-gzip-br": (dict(body=brotli.compress(gzip.compress(doc)),
                                 headers=JSON + [("Content-Encoding", "gzip, br")]),
                            "body:json:$.messages[0].content"),
        "base64-json-value": (dict(body=_json({"path": "README.md", "encoding": "base64", "content":
                                               b64("# readme\n\ntoken = " + s + "\n" + "x" * 80)}),
                                   headers=JSON), "body:json:$.content:base64"),
        "base64-json-wrapped": (dict(body=_json({"content": base64.encodebytes(("# cfg\n" * 20 + s).encode())
                                                 .decode()}), headers=JSON), "body:json:$.content:base64"),
        "base64-urlsafe-form": (dict(body=b"file=" + b64("token: " + s + " ~~??>>", urlsafe=True).encode(),
                                     headers=[("Content-Type", "application/x-www-form-urlencoded")]),
                                "body:form:file:base64"),
        "base64-text": (dict(body=("data " + b64("secret=" + s) + " end").encode(),
                             headers=[("Content-Type", "text/plain")]), "body:base64"),
        "base64-zip-in-json": (dict(body=_json({"attachment": b64(make_zip({"cfg/.env": "T=" + s}))}),
                                    headers=JSON), "body:json:$.attachment:base64/cfg/.env"),
        "zip-body": (dict(body=make_zip({"a/readme.md": "hi", "a/.npmrc": "//r/:_authToken=" + s}),
                          headers=[("Content-Type", "application/zip")]), "body/a/.npmrc"),
        "zip-stored": (dict(body=make_zip({"k.txt": s}, method=0), headers=[("Content-Type", "application/zip")]),
                       "body/k.txt"),
        "zip-in-zip": (dict(body=make_zip({"outer/inner.zip": make_zip({"deep.txt": s})})), "body/outer/inner.zip/"
                                                                                           "deep.txt"),
        "docx-split-runs": (dict(body=docx(["token ", s[:7], s[7:20], s[20:], " end"])),
                            "body/word/document.xml"),
        "xlsx-rich-text": (dict(body=xlsx([s[:10], s[10:]])), "body/xl/sharedStrings.xml"),
        "pptx": (dict(body=pptx([s[:5], s[5:]])), "body/ppt/slides/slide1.xml"),
        "tar": (dict(body=make_tar({"etc/app.conf": f"token={s}\n".encode()})), "body/etc/app.conf"),
        "tar-gz": (dict(body=make_tar({"etc/app.conf": f"token={s}\n".encode()}, "w:gz"),
                        headers=[("Content-Type", "application/gzip")]), "body/etc/app.conf"),
        "gzip-file": (dict(body=gzip.compress(f"log line {s}\n".encode()),
                           headers=[("Content-Type", "application/octet-stream")]), "body"),
        "bz2-file": (dict(body=bz2.compress(f"log line {s}\n".encode())), "body"),
        "binary-raw": (dict(body=bytes(range(256)) * 4 + s.encode() + b"\x00\xff" * 100,
                            headers=[("Content-Type", "application/octet-stream")]), "body"),
    }
    zoo.update(files)
    return zoo


CARRIERS = sorted(_carriers(TOKEN))


@pytest.mark.parametrize("carrier", CARRIERS)
def test_token_found_at_location(carrier):
    kwargs, location = _carriers(TOKEN)[carrier]
    ext = http(**kwargs)
    hits = found(ext)
    assert (location, TOKEN) in hits, hits
    assert {t for _, t in hits} == {TOKEN}
    assert not ext.unscannable, ext.unscannable


@pytest.mark.parametrize("carrier", CARRIERS)
def test_clean_carrier_yields_nothing(carrier):
    kwargs, _ = _carriers(CLEAN)[carrier]
    ext = http(**kwargs)
    assert found(ext) == []
    assert not ext.unscannable, ext.unscannable


def test_token_found_once_per_occurrence_in_json():
    """The JSON body is one segment (no per-leaf copies): a token is reported once, at its own leaf."""
    other = ghp("other")
    body = _json({"a": [TOKEN, "x"], "b": {"c": "see\n" + other, "d": TOKEN}})
    hits = found(http(body=body, headers=JSON))
    assert sorted(hits) == sorted([("body:json:$.a[0]", TOKEN), ("body:json:$.b.c", other),
                                   ("body:json:$.b.d", TOKEN)])


def test_locate_json_path_on_raw_text():
    text = b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"x": "TOKEN"}]}]}'
    at = text.index(b"TOKEN")
    assert locate_json_path(text, at, at + 5) == "$.messages[0].content[1].x"
    assert locate_json_path(b"not json", 0, 3) == ""


def test_extract_file_plain_is_one_unchanged_segment():
    data = f"line1\nTOKEN={TOKEN}\n".encode()
    ext = extract_file("config/.env", data, Limits())
    assert [(s.location, s.data) for s in ext.segments] == [("config/.env", data)]


def test_extract_file_archive_members_and_raw_json():
    data = make_tar({"pkg/.npmrc": f"_authToken={TOKEN}\n".encode(),
                     "pkg/data.json": b'{"k": "a\\n' + TOKEN.encode() + b'"}'}, "w:gz")
    hits = found(extract_file("dist/pkg.tgz", data, Limits()))
    assert ("dist/pkg.tgz/pkg/.npmrc", TOKEN) in hits
    assert ("dist/pkg.tgz/pkg/data.json:json:$.k", TOKEN) in hits


def test_segments_hold_bytes_and_limits_from_settings():
    class Settings:  # the profile's Settings shape
        max_inspect_bytes = 1000
        max_expansion_ratio = 50
        max_archive_depth = 2
        max_archive_members = 7
        max_base64_depth = 1
        default_action = "block"

    limits = Limits.from_settings(Settings(), max_archive_depth=5)
    assert (limits.max_inspect_bytes, limits.max_expansion_ratio, limits.max_archive_depth,
            limits.max_archive_members, limits.max_base64_depth) == (1000, 50, 5, 7, 1)
    assert limits.max_json_depth == Limits().max_json_depth
    ext = http(body=b"x", headers=[("A", "b")], url="/p")
    assert all(isinstance(s.data, bytes) for s in ext.segments)


def test_limits_from_real_profile_settings():
    from dlproxy.engine.profile import builtin_profile_path, load_profiles
    settings = load_profiles([builtin_profile_path()]).settings
    assert Limits.from_settings(settings).max_inspect_bytes == settings.max_inspect_bytes


def test_extract_file_json_keeps_raw_text_first():
    data = b'{"a": "' + TOKEN.encode() + b'", "b": "x\\n' + ghp("b").encode() + b'"}'
    ext = extract_file("conf.json", data, Limits())
    assert ext.segments[0].location == "conf.json" and ext.segments[0].data == data
    hits = found(ext)
    assert ("conf.json:json:$.a", TOKEN) in hits  # raw text: offsets give exact line/column
    assert ("conf.json:json:$.b", ghp("b")) in hits  # only the decoded view sees the escaped one


@pytest.mark.parametrize("body", ['{{"q":"{t}"}}', "{t}", "{t}=x", "a=1&{t}"])
def test_form_location_never_carries_the_secret(body):
    """A keyless urlencoded body (curl --data-binary with JSON) must not turn the secret into a field name."""
    token = ghp("form-name")
    ext = http(body.format(t=token).encode(), [("content-type", "application/x-www-form-urlencoded")])
    hits = found(ext)
    assert [tok for _, tok in hits] == [token]
    (location, _), = hits
    assert location.startswith("body:form") and token not in location and token[4:14] not in location


def test_a_megabyte_blob_inside_json_is_located_without_crashing():
    """A finding inside a base64 zip of megabytes in a JSON string: the blob itself is located as a span of the
    JSON view (pyahocorasick crashed the process on such a word)."""
    import random

    rng = random.Random(3)
    noise = bytes(rng.getrandbits(8) for _ in range(1_500_000))  # incompressible: the blob stays megabytes
    token = ghp("big-blob")
    archive = make_zip({"noise.bin": noise, "src/app.py": f"TOKEN = '{token}'\n"}, zipfile.ZIP_STORED)
    body = _json({"message": "add", "content": b64(archive)})
    hits = found(http(body=body, headers=[("Content-Type", "application/json")]))
    assert [(loc, tok) for loc, tok in hits if tok == token] == [
        ("body:json:$.content:base64/src/app.py", token)], hits


def test_markup_text_content_reads_as_a_browser_or_xml_parser_does():
    from dlproxy.extract.markup import text_content

    html = b"<p>gh<b>p_</b>abc <span>def</span></p><p>next<br>line</p><td>a</td><td>b</td>"
    assert text_content(html, "html").split() == [b"ghp_abc", b"def", b"next", b"line", b"a", b"b"]
    assert text_content(b"<sst><si><r><t>ab</t></r><r><t>cd&#95;e</t></r></si></sst>", "xml") == b"abcd_e"

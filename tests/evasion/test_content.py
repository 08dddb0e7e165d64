"""Evasion, content half: a valid token is found whatever surrounds it inside one message.

Boundaries (escape sequences and binary length/tag bytes glued to the token), encodings a receiver decodes
(base64 at any wrapping, UTF-16 under base64, percent/JSON escapes at depth, XML splits), charsets (labels that
lie, BOM-less UTF-16/32), containers (zip behind a prefix, shell+tar.gz, raw zlib/xz/bz2, PDF, docx, names),
mail carried over HTTP. Each row runs three cases (support.py): the evasion, its plain control, and the
wrong-checksum control that must pass unmodified.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import hashlib
import io
import json
import lzma
import pickle
import random
import struct
import tarfile
import urllib.parse
import zipfile
import zlib

import pytest
from support import (
    Request,
    Variant,
    b,
    cases,
    encoded,
    env_file,
    git_receive_pack,
    header,
    json_text,
    query,
    run_case,
    tar_gz,
    text_body,
)

from hex_forms import c_array, hex_dump, hex_sep, openssl_wrapped

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GH, CF, GL, AZ, NPM, GHS = ("github-classic-pat", "cloudflare-user-api-token", "gitlab-routable-token",
                            "azure-storage-account-key", "npm-access-token", "github-app-installation-token")


# --- encoders --------------------------------------------------------------------------------------------


def b64(data: str | bytes, width: int = 0, indent: str = "", url: bool = False) -> str:
    raw = (base64.urlsafe_b64encode if url else base64.b64encode)(b(data)).decode()
    if not width:
        return raw
    return "\n".join(indent + raw[i:i + width] for i in range(0, len(raw), width))


def pct(text: str | bytes, times: int = 1) -> str:
    out = text.decode("latin-1") if isinstance(text, bytes) else text
    for _ in range(times):
        out = urllib.parse.quote(out, safe="")
    return out


def pct_all(text: str) -> str:
    return "".join(f"%{c:02X}" for c in text.encode())


def json_u(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def wrapped(prefix: str = "", suffix: str = ""):
    return lambda t: b(prefix) + b(t) + b(suffix)


def ctype(content_type: str, path: str = "/upload"):
    return lambda data: text_body(b(data), content_type, path)


raw_body = ctype("application/octet-stream")
plain_text = ctype("text/plain")
json_raw = ctype("application/json")


def form(field: str):
    return lambda v: text_body(f"{field}={v if isinstance(v, str) else v.decode('latin-1')}&x=1",
                               "application/x-www-form-urlencoded")


LONG_PROSE = "The proxy reads every request before it leaves the machine, and nothing secret slips through. " * 800


def sha_log(lines: int, line: str) -> str:
    """A git-log-like text: commit and tree SHAs on every line, `line` in the middle."""
    out = [f"commit {hashlib.sha1(str(i).encode()).hexdigest()} tree {hashlib.sha256(str(i).encode()).hexdigest()}"
           for i in range(lines)]
    out.insert(lines // 2, line)
    return "\n".join(out) + "\n"


# --- binary framings --------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def proto_field(num: int, value: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(value)) + value


def protobuf(t: str | bytes) -> bytes:
    """field 1 = the token, field 9 ('J' tag byte) = a string after it."""
    return proto_field(1, b(t)) + proto_field(9, b"next-field")


def grpc_frame(msg: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def msgpack_map(t: str | bytes) -> bytes:
    """{"token": <str8>, "n": 65}: the fixint 0x41 ('A') key follows the token directly."""
    tok = b(t)
    return b"\x82\xa5token\xd9" + bytes([len(tok)]) + tok + b"\x41\x01"


def cbor_array(t: str | bytes) -> bytes:
    """[<text>, "abc"]: 0x63 ('c') is the next item's head byte."""
    tok = b(t)
    return b"\x82\x78" + bytes([len(tok)]) + tok + b"\x63abc"


# --- containers ----------------------------------------------------------------------------------------------


def zip_bytes(members: dict[str, bytes], comment: bytes = b"", method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.comment = comment
    return buf.getvalue()


def zipapp(t: str | bytes) -> bytes:
    return b"#!/usr/bin/env python3\n" + zip_bytes({"__main__.py": b"print(1)\n", "config.env": env_file(t)})


def makeself(t: str | bytes) -> bytes:
    script = b"#!/bin/sh\n# installer\nskip=4\ntail -n +$skip \"$0\" | tar xz\nexit 0\n"
    return script + tar_gz({"payload/.env": env_file(t)})


def local_headers_only(t: str | bytes) -> bytes:
    """A zip cut before its central directory: only the local file headers are left."""
    data = zip_bytes({"notes/a.txt": b"hello\n", "notes/.env": env_file(t)})
    return data[: data.rfind(b"PK\x01\x02", 0, data.find(b"PK\x05\x06"))].split(b"PK\x01\x02")[0]


def pdf_flate(t: str | bytes) -> bytes:
    stream = zlib.compress(b"BT /F1 12 Tf 72 712 Td (token " + b(t) + b") Tj ET")
    return (b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            b"2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
            b"3 0 obj << /Type /Page /Parent 2 0 R /Contents 4 0 R >> endobj\n"
            b"4 0 obj << /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n"
            + stream + b"\nendstream endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")


def docx_moved(t: str | bytes) -> bytes:
    content_types = (b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                     b'content-types"><Override PartName="/custom/main.xml" ContentType="application/'
                     b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
    rels = (b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
            b'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
            b'2006/relationships/officeDocument" Target="custom/main.xml"/></Relationships>')
    body = b'<w:document xmlns:w="x"><w:body><w:p><w:r><w:t>' + b(t) + b"</w:t></w:r></w:p></w:body></w:document>"
    return zip_bytes({"[Content_Types].xml": content_types, "_rels/.rels": rels, "custom/main.xml": body})


SEVEN_Z = b"7z\xbc\xaf\x27\x1c\x00\x04"


def seven_z(t: str | bytes) -> bytes:
    """A 7z signature header followed by an LZMA1 raw stream of the content (what 7-Zip writes, minus headers)."""
    packed = lzma.compress(env_file(t), format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1}])
    return SEVEN_Z + struct.pack("<IQQI", 0, 0, len(packed), 0)[:24] + packed


# --- mail ----------------------------------------------------------------------------------------------------


def mime_qp(t: str | bytes) -> bytes:
    """A quoted-printable body whose soft line break (`=\\r\\n`) falls inside the token."""
    tok = b(t)
    cut = len(tok) // 2
    return (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: creds\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"the token is " + tok[:cut] + b"=\r\n" + tok[cut:] + b" ok\r\n")


def mime_plain(t: str | bytes) -> bytes:
    return (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: creds\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain\r\n\r\nthe token is " + b(t) + b"\r\n")


def mime_b64_part(t: str | bytes, nested: bool = False, attachment: bytes | None = None) -> bytes:
    part = (b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64(b"deploy key: " + b(t) + b"\n", 76).encode().replace(b"\n", b"\r\n") + b"\r\n--inner--\r\n")
    if attachment is not None:
        part = (b"--inner\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--inner\r\nContent-Type: "
                b"application/zip\r\nContent-Disposition: attachment; filename=\"cfg.zip\"\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n"
                + b64(attachment, 76).encode().replace(b"\n", b"\r\n") + b"\r\n--inner--\r\n")
    inner = b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n" + part
    if nested:
        inner = (b"Content-Type: multipart/alternative; boundary=outer\r\n\r\n--outer\r\n" + inner
                 + b"\r\n--outer--\r\n")
    return b"From: a@example.test\r\nTo: b@example.test\r\nSubject: s\r\nMIME-Version: 1.0\r\n" + inner


def mime_plain_multipart(t: str | bytes) -> bytes:
    return mime_plain(t)


def gmail_raw(mime: bytes) -> Request:
    return text_body(json.dumps({"raw": base64.urlsafe_b64encode(mime).decode().rstrip("=")}), "application/json",
                     "/gmail/v1/users/me/messages/send")


def ses_raw(mime: bytes) -> Request:
    return text_body(json.dumps({"Content": {"Raw": {"Data": base64.b64encode(mime).decode()}}}),
                     "application/json", "/v2/email/outbound-emails")


def ses_query(mime: bytes) -> Request:
    return text_body("Action=SendRawEmail&RawMessage.Data=" + pct(base64.b64encode(mime).decode()),
                     "application/x-www-form-urlencoded", "/")


def multipart_file(filename_param: str, content: bytes = b"hello\n") -> Request:
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; " + filename_param.encode() + b"\r\n"
            b"Content-Type: text/plain\r\n\r\n" + content + b"\r\n--XyZ--\r\n")
    return text_body(body, "multipart/form-data; boundary=XyZ")


# --- carriers ordinary clients and tools produce (second round) --------------------------------------------


def yaml_dq_continued(t: str | bytes) -> str:
    """YAML double-quoted scalar whose escaped line break (`\\` at the end of a line) joins the token's halves."""
    tok = b(t).decode()
    return f'auth:\n  token: "{tok[:18]}\\\n    {tok[18:]}"\n'


def toml_ml_continued(t: str | bytes) -> str:
    """TOML multi-line basic string: a line-ending backslash trims the newline and the indentation after it."""
    tok = b(t).decode()
    return f'[auth]\ntoken = """\n{tok[:18]}\\\n      {tok[18:]}"""\n'


def js_escapes(t: str | bytes, brace: bool) -> str:
    chars = b(t).decode()
    body = "".join(f"\\u{{{ord(c):x}}}" if brace else f"\\x{ord(c):02x}" for c in chars)
    return f'const cfg = {{ token: "{body}" }};\nexport default cfg;\n'


def jwt(claims: dict) -> str:
    def seg(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
    return seg({"alg": "HS256", "typ": "JWT"}) + "." + seg(claims) + "." + "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"


def flask_session(t: str | bytes) -> str:
    """Flask/itsdangerous session cookie: `.` + base64url(zlib(JSON)) + `.timestamp.signature`."""
    payload = zlib.compress(json.dumps({"user": "alice", "gh": b(t).decode(), "pad": "x" * 40}).encode())
    return "." + base64.urlsafe_b64encode(payload).decode().rstrip("=") + ".Z3xqNw.c2lnbmF0dXJl"


def docker_config(t: str | bytes) -> str:
    return json.dumps({"auths": {"ghcr.io": {"auth": base64.b64encode(b"octocat:" + b(t)).decode()}}})


def multipart_parts(*parts: tuple[str, bytes]) -> Request:
    """multipart/form-data from (part headers, content) pairs."""
    body = b"".join(b"--XyZ\r\n" + h.encode() + b"\r\n\r\n" + c + b"\r\n" for h, c in parts) + b"--XyZ--\r\n"
    return text_body(body, "multipart/form-data; boundary=XyZ")


def qp_soft_break(t: str | bytes) -> bytes:
    tok = b(t)
    return b"deploy with " + tok[:15] + b"=\r\n" + tok[15:] + b" ok"


def tar_bytes(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        build(tf)
    return buf.getvalue()


def tar_add(tf, name: str, data: bytes = b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data))


class _Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors (sizes after the data), as streaming zippers do."""

    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, data):
        self.buf += data
        return len(data)


def zip_streamed(members: dict[str, bytes]) -> bytes:
    out = _Unseekable()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            with zf.open(name, "w") as f:
                f.write(data)
    return bytes(out.buf)


def zip_member_comment(t: str | bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("a.txt")
        info.comment = b(t)
        zf.writestr(info, b"hello\n")
    return buf.getvalue()


def gzip_named(name: str | bytes, data: bytes = b"hello\n") -> bytes:
    """A gzip member whose header's FNAME field (the original file name) is `name`."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename=b(name).decode("latin-1"), fileobj=buf, mode="wb", mtime=0) as g:
        g.write(data)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_ztxt(t: str | bytes) -> bytes:
    """A 1x1 PNG with a zTXt (zlib-compressed text) metadata chunk holding the token."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"deploy token " + b(t)))
            + png_chunk(b"IDAT", zlib.compress(b"\x00\x00")) + png_chunk(b"IEND", b""))


def ar_member(name: bytes, data: bytes) -> bytes:
    head = name.ljust(16) + b"0".ljust(12) + b"0".ljust(6) + b"0".ljust(6) + b"100644".ljust(8)
    head += str(len(data)).encode().ljust(10) + b"`\n"
    return head + data + (b"\n" if len(data) % 2 else b"")


def deb_package(t: str | bytes) -> bytes:
    """A .deb: an ar archive whose data.tar.xz member sits at an offset after two other members."""
    def txz(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tf:
            for name, data in members.items():
                tar_add(tf, name, data)
        return buf.getvalue()
    return (b"!<arch>\n" + ar_member(b"debian-binary", b"2.0\n")
            + ar_member(b"control.tar.xz", txz({"./control": b"Package: app\nVersion: 1.0\n"}))
            + ar_member(b"data.tar.xz", txz({"./etc/app/.env": env_file(t)})))


def aws_chunked(data: bytes) -> bytes:
    """The aws-chunked framing of SigV4 streaming uploads (what AWS SDKs send for PutObject)."""
    sig = "0" * 64
    return (f"{len(data):x};chunk-signature={sig}\r\n".encode() + data + f"\r\n0;chunk-signature={sig}\r\n\r\n"
            .encode())


def s3_put(data: str | bytes) -> Request:
    data = b(data)
    return Request("PUT", "/bucket/config.env", (
        ("Content-Type", "text/plain"), ("Content-Encoding", "aws-chunked"),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("x-amz-decoded-content-length", str(len(data)))), aws_chunked(data))


def coded(content_encoding: str, compress=gzip.compress, content_type: str = "application/json"):
    def place(data: str | bytes) -> Request:
        return Request("POST", "/upload", (("Content-Type", content_type), ("Content-Encoding", content_encoding)),
                       compress(b(data)))
    return place


def rfc2047_q(t: str | bytes) -> str:
    """RFC 2047 Q encoding: `_` means a space there, so the token's underscore is written `=5F`."""
    return "=?UTF-8?Q?" + "".join(c if c.isalnum() else f"={ord(c):02X}" for c in b(t).decode()) + "?="


def rfc2047_b(t: str | bytes) -> str:
    return "=?UTF-8?B?" + base64.b64encode(b(t)).decode() + "?="


def mail_subject(subject: str) -> bytes:
    return (b"From: a@example.test\r\nTo: b@example.test\r\nSubject: " + subject.encode() + b"\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nsee subject\r\n")


# --- the table ---------------------------------------------------------------------------------------------

NOT_UTF8_PREFIX = "Caf\xe9 r\xe9sum\xe9 \u201cquoted\u201d "  # cp1252 text: not valid UTF-8


def _bin_around(t: str | bytes) -> bytes:
    rng = random.Random(7)
    return rng.randbytes(200) + b"\x00key\x00" + b(t) + b"\x00" + rng.randbytes(200)


TABLE: list[Variant] = [
    # -- boundaries: escapes glued to the token in JSON that nobody unescapes --------------------------------
    encoded("hdr-json-escaped-newline", "header holding JSON with \\n before the token", header("X-Payload"),
            lambda t: '{"text":"line1\\n' + t + '"}'),
    encoded("hdr-json-escaped-newline-cf", "header JSON \\n, Cloudflare token", header("X-Payload"),
            lambda t: '{"text":"line1\\n' + t + '"}', entry=CF),
    encoded("hdr-json-escaped-tab", "header JSON \\t before the token", header("X-Meta"),
            lambda t: '{"a":"x\\t' + t + '"}', entry=GL),
    encoded("hdr-json-escaped-cr", "header JSON \\r before the token", header("X-Meta"),
            lambda t: '{"a":"x\\r' + t + '"}', entry=NPM),
    encoded("hdr-json-escaped-quote", "header JSON \\\" before the token", header("X-Meta"),
            lambda t: '{"a":"say \\"' + t + '\\""}', entry=GHS),
    encoded("hdr-json-escaped-slash", "header JSON \\/ before the token", header("X-Meta"),
            lambda t: '{"url":"https:\\/\\/x.test\\/' + t + '"}'),
    encoded("hdr-json-escaped-backslash", "header JSON \\\\ before the token", header("X-Meta"),
            lambda t: '{"path":"C:\\\\' + t + '"}', entry=CF),
    encoded("query-json-escaped-newline", "query parameter holding JSON with \\n", query("q"),
            lambda t: pct('{"text":"a\\n' + t + '"}')),
    encoded("query-pct-newline-glue", "query: %0A right before the token", query("q"),
            lambda t: "line%0A" + t, entry=GL),
    encoded("form-slack-payload-newline", "Slack-style payload= form with JSON \\n", form("payload"),
            lambda t: pct('{"text":"deploy\\n' + t + '"}'), entry=GHS),
    encoded("text-code-escaped-newline", "source code in a text body: \"...\\n<token>\"", plain_text,
            lambda t: 'print("line1\\n' + t + '")\n', entry=NPM),
    encoded("json-double-encoded-newline", "JSON string holding JSON: \\\\n before the token", json_text,
            lambda t: '{"args":"first\\n' + t + '"}', entry=CF),
    encoded("text-letters-glued-left", "letters glued before the token", plain_text,
            lambda t: "Bearerx" + t + " ok", entry=CF),
    encoded("text-letters-glued-right", "letters glued after the token", plain_text,
            lambda t: "key " + t + "trailing", entry=GL),
    encoded("protobuf-next-field-ghp", "protobuf: tag byte 'J' of the next field follows", raw_body, protobuf),
    encoded("protobuf-length-byte-cf", "protobuf: the length byte 0x35 ('5') precedes", raw_body, protobuf,
            entry=CF),
    encoded("protobuf-gitlab", "protobuf field holding a GitLab token", raw_body, protobuf, entry=GL),
    encoded("grpc-frame-azure", "gRPC frame (application/grpc) of a protobuf message", ctype("application/grpc"),
            lambda t: grpc_frame(protobuf(t)), entry=AZ),
    encoded("msgpack-next-fixint", "msgpack: a fixint 'A' follows the str8", ctype("application/msgpack"),
            msgpack_map),
    encoded("msgpack-gitlab", "msgpack map, GitLab token", ctype("application/x-msgpack"), msgpack_map, entry=GL),
    encoded("cbor-next-text", "CBOR: the next item's head byte 'c' follows", ctype("application/cbor"),
            cbor_array, entry=CF),
    encoded("cbor-npm", "CBOR array, npm token", ctype("application/cbor"), cbor_array, entry=NPM),
    # -- base64 wrapped, indented, not-UTF-8 underneath --------------------------------------------------
    encoded("b64-wrap-60-2lines", "base64 wrapped at 60 columns (2 lines)", plain_text,
            lambda t: b64("token=" + t + "\n", 60)),
    encoded("b64-wrap-64-2lines", "base64 wrapped at 64 columns (openssl)", plain_text,
            lambda t: b64("token: " + t + "\n", 64), entry=CF),
    encoded("b64-wrap-76-json-github", "GitHub contents API: base64 with \\n every 60 in JSON", json_raw,
            lambda t: json.dumps({"content": b64("export TOKEN=" + t + "\n", 60) + "\n", "encoding": "base64"})),
    encoded("b64-wrap-4", "base64 wrapped at 4 columns", plain_text, lambda t: b64(t, 4), entry=GL),
    encoded("b64-yaml-indented", "base64 block scalar in YAML (indented)", ctype("application/yaml"),
            lambda t: "data:\n  secret: |\n" + b64("TOKEN=" + t + "\n", 40, "    ") + "\nkind: Secret\n",
            entry=NPM),
    encoded("b64-k8s-secret-json", "Kubernetes Secret data (base64 field)", json_raw,
            lambda t: json.dumps({"kind": "Secret", "data": {"token": b64(t)}}), entry=GHS),
    encoded("b64-utf16le-powershell", "PowerShell -EncodedCommand (base64 of UTF-16LE)", plain_text,
            lambda t: "powershell -EncodedCommand " + b64(f"$env:GH='{t}'; gh auth status".encode("utf-16-le"))),
    encoded("b64-utf16le-json", "base64 of UTF-16LE in a JSON field", json_raw,
            lambda t: json.dumps({"cmd": b64(f"set TOKEN={t}".encode("utf-16-le"))}), entry=CF),
    encoded("b64-cp1252", "base64 of a cp1252 text file (not UTF-8)", json_raw,
            lambda t: json.dumps({"file": b64((NOT_UTF8_PREFIX + t + "\n").encode("cp1252"))}), entry=GL),
    encoded("b64-binary-around", "base64 of binary bytes holding the token", json_raw,
            lambda t: json.dumps({"blob": b64(_bin_around(t))}), entry=NPM),
    encoded("grpc-web-text", "grpc-web-text: base64 of gRPC frames", ctype("application/grpc-web-text"),
            lambda t: b64(grpc_frame(protobuf(t))), entry=AZ),
    encoded("b64url-unpadded-header", "base64url (no padding) in a header", header("X-Blob"),
            lambda t: b64("k=" + t, url=True).rstrip("=")),
    encoded("b64-in-query", "base64 in a query parameter (percent-encoded)", query("state"),
            lambda t: pct(b64(json.dumps({"t": t}))), entry=CF),
    # -- percent-encoding and JSON escapes at depth, in every carrier ------------------------------------
    encoded("url-pct-all", "every character percent-encoded in the query", query("token"), pct_all),
    encoded("url-pct-double", "double percent-encoding in the query", query("token"),
            lambda t: pct(pct_all(t)), entry=GL),
    encoded("url-pct-triple", "triple percent-encoding in the query", query("token"),
            lambda t: pct(pct(pct_all(t))), entry=NPM),
    encoded("url-path-pct", "percent-encoded token in the path", lambda v: Request("GET", "/repos/" + v),
            pct_all, entry=GHS),
    encoded("hdr-pct-double", "double percent-encoded header value", header("X-Token"),
            lambda t: pct(pct_all(t)), entry=CF),
    encoded("form-pct-double", "double percent-encoded form field", form("token"), lambda t: pct(pct_all(t))),
    encoded("form-json-u-escaped", "form field holding JSON with \\u-escaped token", form("data"),
            lambda t: pct('{"t":"' + json_u(t) + '"}'), entry=GL),
    encoded("json-u-escaped", "JSON string with every character \\u-escaped", json_raw,
            lambda t: '{"content":"' + json_u(t) + '"}', entry=NPM),
    encoded("json-in-json-in-json", "JSON string holding JSON holding JSON", json_text,
            lambda t: json.dumps({"inner": json.dumps({"deeper": "x\n" + t})}), entry=CF),
    encoded("json-leading-ws-u", "JSON behind leading whitespace, \\u-escaped token", ctype("text/plain"),
            lambda t: '\n\n   {"content":"' + json_u(t) + '"}'),
    encoded("json-xssi-prefix", "XSSI-prefixed JSON ()]}') with \\u-escaped token", ctype("application/json"),
            lambda t: ")]}'\n" + '{"content":"' + json_u(t) + '"}', entry=GHS),
    encoded("json-pct-in-string", "JSON string holding a percent-encoded token", json_raw,
            lambda t: json.dumps({"url": "https://x.test/?t=" + pct_all(t)}), entry=GL),
    encoded("hdr-json-u-escaped", "header with a \\u-escaped token in JSON", header("X-Meta"),
            lambda t: '{"t":"' + json_u(t) + '"}', entry=NPM),
    encoded("html-entities", "HTML numeric entities", ctype("text/html"),
            lambda t: "<p>" + "".join(f"&#{ord(c)};" for c in t) + "</p>", entry=CF),
    encoded("hex-run", "the token as a hex string", plain_text, lambda t: "key=" + b(t).hex()),
    encoded("hex-run-deep-in-log", "the token as hex past 3000 commit SHAs (a > 64 KB text)", plain_text,
            lambda t: sha_log(3000, "key=" + b(t).hex()), entry=CF),
    encoded("hex-run-large-json", "the token as hex in a > 64 KB JSON body", json_raw,
            lambda t: json.dumps({"messages": [{"role": "user", "content": LONG_PROSE}], "key": b(t).hex()}),
            entry=GL),
    encoded("base32-run", "the token as base32", plain_text, lambda t: "key=" + base64.b32encode(b(t)).decode(),
            entry=GL),
    encoded("xml-cdata-split", "token split by a CDATA section in XML", ctype("application/xml"),
            lambda t: f"<a><k>{t[:10]}<![CDATA[{t[10:25]}]]>{t[25:]}</k></a>"),
    encoded("xml-comment-split", "token split by an XML comment", ctype("application/xml"),
            lambda t: f"<a><k>{t[:12]}<!-- x -->{t[12:]}</k></a>", entry=CF),
    encoded("html-comment-split", "token split by an HTML comment", ctype("text/html"),
            lambda t: f"<html><body><p>{t[:8]}<!---->{t[8:]}</p></body></html>", entry=NPM),
    encoded("html-inline-tags-split", "HTML: the token's halves in two spans (a page shows one word)",
            ctype("text/html"), lambda t: f"<p>key: <span>{t[:9]}</span><span class=x>{t[9:]}</span></p>"),
    encoded("html-bold-inside-prefix", "HTML: an inline tag inside the literal prefix (`gl<b>pat-</b>…`)",
            ctype("text/html"), lambda t: f"<p>token {t[:2]}<b>{t[2:6]}</b>{t[6:]} expires</p>", entry=GL),
    encoded("xml-text-nodes-split", "XML: the token split over two elements' text (an Excel rich-text string)",
            ctype("application/xml"), lambda t: f"<sst><si><r><t>{t[:11]}</t></r><r><rPr><b/></rPr><t>{t[11:]}</t>"
                                                 "</r></si></sst>", entry=CF),
    encoded("svg-tspan-split", "SVG text split in tspans", ctype("image/svg+xml"),
            lambda t: f'<svg xmlns="http://www.w3.org/2000/svg"><text>{t[:7]}<tspan>{t[7:]}</tspan></text></svg>',
            entry=NPM),
    # -- charsets --------------------------------------------------------------------------------------------
    encoded("bom-utf16le-on-ascii", "a UTF-16LE byte order mark before plain ASCII text (found by hypothesis)",
            ctype("application/octet-stream"), lambda t: b"\xff\xfe" + b"export TOKEN=" + b(t) + b"\n"),
    encoded("bom-utf32be-on-json", "a UTF-32BE byte order mark before UTF-8 JSON", ctype("application/json"),
            lambda t: b"\x00\x00\xfe\xff" + json.dumps({"k": b(t).decode()}).encode(), entry=CF),
    Variant("charset-utf16-label-utf8-json", "UTF-8 JSON labelled charset=utf-16",
            lambda t: ctype("application/json; charset=utf-16")(json.dumps({"content": "x " + t})),
            lambda t: json_raw(json.dumps({"content": "x " + t}))),
    Variant("charset-utf32be-label-utf8", "UTF-8 text labelled charset=utf-32be",
            lambda t: ctype("text/plain; charset=utf-32be")("token " + t + "\n"),
            lambda t: plain_text("token " + t + "\n"), entry=CF),
    encoded("charset-utf16-bomless-le", "BOM-less UTF-16LE text", plain_text,
            lambda t: ("token " + t + "\n").encode("utf-16-le"), entry=GL),
    encoded("charset-utf16-bomless-be", "BOM-less UTF-16BE JSON", json_raw,
            lambda t: json.dumps({"content": "token " + t}).encode("utf-16-be"), entry=NPM),
    encoded("charset-utf16-cjk-first", "BOM-less UTF-16LE starting with CJK text", plain_text,
            lambda t: ("秘密のトークンです。" + t + "\n").encode("utf-16-le"), entry=GHS),
    encoded("charset-utf32-bomless", "BOM-less UTF-32LE text", raw_body,
            lambda t: ("token " + t + "\n").encode("utf-32-le"), entry=CF),
    encoded("charset-utf7-declared", "charset=utf-7 declared", ctype("text/plain; charset=utf-7"),
            lambda t: "token: +" + b64(t.encode("utf-16-be")).rstrip("=") + "-"),
    encoded("charset-cp037-declared", "EBCDIC cp037 declared", ctype("text/plain; charset=cp037"),
            lambda t: ("token " + t + "\n").encode("cp037"), entry=GL),
    encoded("charset-latin1-label-utf16-body", "UTF-16LE body labelled iso-8859-1", ctype(
        "text/plain; charset=iso-8859-1"), lambda t: ("token " + t).encode("utf-16-le"), entry=NPM),
    # -- containers -------------------------------------------------------------------------------------------
    encoded("zipapp-prefix", "zip behind a #! prefix (zipapp)", raw_body, zipapp),
    encoded("makeself-tar-gz", "shell script followed by a tar.gz (makeself)", ctype("application/x-sh"),
            makeself, entry=CF),
    encoded("zlib-no-content-encoding", "a zlib stream without Content-Encoding", raw_body,
            lambda t: zlib.compress(env_file(t)), entry=GL),
    encoded("gzip-no-content-encoding", "a .gz file upload without Content-Encoding", ctype("application/gzip"),
            lambda t: gzip.compress(env_file(t)), entry=NPM),
    encoded("xz-file", "an .xz file", ctype("application/x-xz"), lambda t: lzma.compress(env_file(t)), entry=GHS),
    encoded("lzma-alone-file", "an .lzma (alone) file", raw_body,
            lambda t: lzma.compress(env_file(t), format=lzma.FORMAT_ALONE), entry=CF),
    encoded("bz2-file", "a .bz2 file", raw_body, lambda t: bz2.compress(env_file(t)), entry=AZ),
    encoded("tar-gz-octet", "a .tar.gz as octet-stream", raw_body, lambda t: tar_gz({"app/.env": env_file(t)})),
    Variant("seven-z", "a 7z archive (LZMA)", lambda t: raw_body(seven_z(t)), lambda t: plain_text(env_file(t)),
            expect="unscannable", entry=GL),
    encoded("pdf-flatedecode", "PDF content stream with /FlateDecode", ctype("application/pdf"), pdf_flate,
            entry=NPM),
    encoded("docx-moved-main-part", "docx whose main part is at custom/main.xml", ctype(
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"), docx_moved, entry=GHS),
    encoded("zip-local-headers-only", "zip entries only in local headers (no central directory)", raw_body,
            local_headers_only, entry=CF),
    Variant("zip-member-name", "an archive member named after the token",
            lambda t: raw_body(zip_bytes({f"keys/{t}.txt": b"x"})), lambda t: raw_body(zip_bytes({"k.txt": b(t)}))),
    Variant("zip-comment", "the token in a zip comment", lambda t: raw_body(zip_bytes({"a.txt": b"x"}, b(t))),
            lambda t: raw_body(zip_bytes({"a.txt": b(t)})), entry=GL),
    Variant("tar-member-name", "a tar member named after the token",
            lambda t: raw_body(tar_gz({f"{t}/readme": b"x"})), lambda t: raw_body(tar_gz({"r": b(t)})), entry=NPM),
    Variant("multipart-filename-star", "multipart filename*=UTF-8'' percent-encoded",
            lambda t: multipart_file(f"filename*=UTF-8''{pct_all(t)}.txt"),
            lambda t: multipart_file('filename="a.txt"', b(t)), entry=CF),
    Variant("multipart-filename-plain", "multipart filename holding the token",
            lambda t: multipart_file(f'filename="{t}.txt"'), lambda t: multipart_file('filename="a.txt"', b(t)),
            entry=GHS),
    # -- mail carried over HTTP ----------------------------------------------------------------------------------
    Variant("rfc822-qp-soft-break", "message/rfc822 body, QP soft break inside the token",
            lambda t: text_body(mime_qp(t), "message/rfc822", "/send"),
            lambda t: text_body(mime_plain(t), "message/rfc822", "/send")),
    Variant("eml-upload-b64-part", ".eml upload with a base64 text part",
            lambda t: multipart_file('filename="mail.eml"', mime_b64_part(t)),
            lambda t: multipart_file('filename="mail.eml"', mime_plain(t)), entry=CF),
    Variant("rfc822-nested-multipart", "nested multipart/alternative > multipart/mixed > base64",
            lambda t: text_body(mime_b64_part(t, nested=True), "message/rfc822", "/send"),
            lambda t: text_body(mime_plain(t), "message/rfc822", "/send"), entry=GL),
    Variant("gmail-api-raw", "Gmail API messages.send {raw: base64url(MIME)}, QP inside",
            lambda t: gmail_raw(mime_qp(t)), lambda t: gmail_raw(mime_plain(t)), entry=NPM),
    Variant("gmail-api-raw-b64-part", "Gmail API raw with a base64 part", lambda t: gmail_raw(mime_b64_part(t)),
            lambda t: gmail_raw(mime_plain(t)), entry=GHS),
    Variant("ses-v2-raw", "SES v2 Content.Raw.Data (base64 MIME), QP inside", lambda t: ses_raw(mime_qp(t)),
            lambda t: ses_raw(mime_plain(t)), entry=CF),
    Variant("ses-v1-query-raw", "SES v1 SendRawEmail RawMessage.Data form field",
            lambda t: ses_query(mime_b64_part(t)), lambda t: ses_query(mime_plain(t)), entry=GL),
    Variant("mail-zip-attachment", "MIME with a base64 zip attachment holding the token",
            lambda t: text_body(mime_b64_part(t, attachment=zip_bytes({"cfg/.env": env_file(t)})),
                                "message/rfc822", "/send"),
            lambda t: text_body(mime_plain(t), "message/rfc822", "/send"), entry=NPM),
    # -- config and source files: quoting, continuation, escapes of other languages ----------------------------
    encoded("yaml-dq-line-continuation", "YAML double-quoted string, `\\`-newline inside the token",
            ctype("application/yaml"), yaml_dq_continued),
    encoded("toml-ml-line-continuation", "TOML \"\"\" string, line-ending backslash inside the token",
            ctype("application/toml"), toml_ml_continued, entry=CF),
    encoded("env-export-quoted", ".env with `export NAME=\"…\"`", plain_text,
            lambda t: b'# deploy\nexport GH_TOKEN="' + b(t) + b'"\nexport X=1\n'),
    encoded("csv-doubled-quotes", "CSV field with doubled quotes around the token", ctype("text/csv"),
            lambda t: b'id,note\n1,"said ""' + b(t) + b'"" twice"\n', entry=GL),
    encoded("js-hex-escapes", "JavaScript source, every character `\\x67`-escaped", ctype("application/javascript"),
            lambda t: js_escapes(t, brace=False), entry=NPM),
    encoded("shell-printf-octal", "shell `printf '\\147\\150…'` (octal escapes, also C and Python)",
            ctype("text/x-shellscript"), lambda t: "export TOKEN=$(printf '" + "".join(f"\\{ord(c):03o}" for c in t)
            + "')\n", entry=GL),
    encoded("python-bytes-octal-mixed", "Python bytes literal, some characters octal-escaped", ctype("text/x-python"),
            lambda t: 'KEY = b"' + "".join(f"\\{ord(c):03o}" if i % 3 == 0 else c for i, c in enumerate(t)) + '"\n',
            entry=CF),
    encoded("js-unicode-brace-escapes", "JavaScript source, every character `\\u{67}`-escaped",
            ctype("application/javascript"), lambda t: js_escapes(t, brace=True)),
    encoded("json-u-prefix-only", "JSON with only the prefix `\\u`-escaped (`\\u0067hp_…`)", json_raw,
            lambda t: '{"content":"' + json_u(b(t).decode()[:4]) + b(t).decode()[4:] + '"}'),
    # -- markup: entities and data: URIs -------------------------------------------------------------------------
    encoded("html-hex-entities-no-semicolon", "HTML hex entities without `;` (`&#x67&#x68…`)", ctype("text/html"),
            lambda t: "<p>" + "".join(f"&#x{ord(c):x}" for c in b(t).decode()) + "</p>", entry=GL),
    encoded("html-lowbar-entity", "HTML named entity for the underscore (`ghp&lowbar;…`)", ctype("text/html"),
            lambda t: "<p>" + b(t).decode().replace("_", "&lowbar;") + "</p>", entry=GHS),
    encoded("html-entities-in-json", "HTML entities inside a JSON string (CMS `body_html`)", json_raw,
            lambda t: json.dumps({"body_html": "<p>" + "".join(f"&#{ord(c)};" for c in b(t).decode()) + "</p>"}),
            entry=CF),
    encoded("xml-attr-char-refs", "XML attribute value of hex character references", ctype("application/xml"),
            lambda t: '<config><auth token="' + "".join(f"&#x{ord(c):X};" for c in b(t).decode()) + '"/></config>',
            entry=NPM),
    encoded("html-data-uri", "HTML <a href=\"data:text/plain;base64,…\">", ctype("text/html"),
            lambda t: '<a href="data:text/plain;base64,' + b64("TOKEN=" + b(t).decode()) + '">cfg</a>'),
    encoded("css-data-uri", "CSS url(data:…;base64,…)", ctype("text/css"),
            lambda t: ".x{background:url(data:application/octet-stream;base64," + b64(b"k=" + b(t)) + ")}",
            entry=CF),
    # -- base64 stacked on other encodings ------------------------------------------------------------------------
    encoded("b64-of-gzip-json", "base64 of a gzip of the token in a JSON field", json_raw,
            lambda t: json.dumps({"blob": b64(gzip.compress(env_file(t)))}), entry=GL),
    encoded("b64-double", "base64 of base64 in a JSON field", json_raw,
            lambda t: json.dumps({"blob": b64(b64("TOKEN=" + b(t).decode()))}), entry=NPM),
    encoded("b64url-unpadded-json", "base64url without padding in a JSON body", json_raw,
            lambda t: json.dumps({"state": b64(b"k=" + b(t), url=True).rstrip("=")}), entry=GHS),
    encoded("jwt-payload-bearer", "a JWT whose payload claim holds the token (Authorization: Bearer)",
            header("Authorization"), lambda t: "Bearer " + jwt({"sub": "alice", "gh": b(t).decode()}), entry=CF),
    encoded("flask-session-cookie", "Flask session cookie: base64url(zlib(JSON))", header("Cookie"),
            lambda t: "session=" + flask_session(t)),
    encoded("docker-config-auth", "Docker config.json auth = base64(user:token)", json_raw, docker_config),
    encoded("npmrc-auth-b64", ".npmrc `_auth=` base64(user:token)", plain_text,
            lambda t: "registry=https://registry.npmjs.org/\n_auth=" + b64(b"me:" + b(t)) + "\n", entry=NPM),
    # -- forms, multipart, APIs ---------------------------------------------------------------------------------
    encoded("multipart-part-qp", "multipart part, Content-Transfer-Encoding quoted-printable, soft break in the token",
            lambda v: multipart_parts(('Content-Disposition: form-data; name="note"\r\n'
                                       "Content-Transfer-Encoding: quoted-printable", b(v))),
            qp_soft_break, entry=GL),
    Variant("multipart-part-b64", "multipart part, Content-Transfer-Encoding base64",
            lambda t: multipart_parts(('Content-Disposition: form-data; name="cfg"; filename="a.env"\r\n'
                                       "Content-Transfer-Encoding: base64", b64(env_file(t), 76).encode())),
            lambda t: multipart_parts(('Content-Disposition: form-data; name="cfg"; filename="a.env"', env_file(t))),
            entry=AZ),
    encoded("multipart-json-field-escaped", "JSON with `\\u`-escapes in a multipart form field",
            lambda v: multipart_parts(('Content-Disposition: form-data; name="meta"\r\nContent-Type: '
                                       "application/json", b(v))),
            lambda t: '{"t":"' + json_u(b(t).decode()) + '"}', entry=NPM),
    encoded("multipart-gzip-part", "a gzip file in a multipart part, no Content-Encoding",
            lambda v: multipart_parts(('Content-Disposition: form-data; name="f"; filename="cfg.gz"\r\n'
                                       "Content-Type: application/octet-stream", b(v))),
            lambda t: gzip.compress(env_file(t)), entry=CF),
    encoded("graphql-get-variables", "GraphQL GET: variables JSON percent-encoded, token `\\u`-escaped",
            lambda v: Request("GET", "/graphql?query=" + pct("query($t:String){q(t:$t)}") + "&variables=" + pct(v)),
            lambda t: '{"t":"' + json_u(b(t).decode()) + '"}', entry=GHS),
    encoded("jsonrpc-batch", "JSON-RPC batch array, token `\\u`-escaped in the second call", json_raw,
            lambda t: json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                  {"jsonrpc": "2.0", "id": 2, "method": "set", "params": {"k": "X"}}]
                                 ).replace('"X"', '"' + json_u(b(t).decode()) + '"')),
    encoded("ndjson-escaped", "NDJSON upload, token `\\u`-escaped on line 3", ctype("application/x-ndjson"),
            lambda t: '{"a":1}\n{"b":2}\n{"c":"' + json_u(b(t).decode()) + '"}\n', entry=GL),
    encoded("query-php-array", "PHP-style array query `cfg[auth][token]=`",
            lambda v: Request("GET", "/save?cfg%5Bauth%5D%5Btoken%5D=" + b(v).decode() + "&x=1"), pct_all),
    encoded("cookie-pct-encoded", "a cookie value, every character percent-encoded", header("Cookie"),
            lambda t: "theme=dark; remember=" + pct_all(b(t).decode()), entry=CF),
    encoded("referer-pct-query", "Referer URL with the token percent-encoded in its query", header("Referer"),
            lambda t: "https://app.example/cb?x=1&code=" + pct_all(b(t).decode()), entry=NPM),
    # -- archives and binary formats ---------------------------------------------------------------------------
    encoded("tar-pax-long-name", "uncompressed tar, a > 100-character path (PAX header)",
            lambda v: text_body(tar_bytes(lambda tf: tar_add(tf, "deep/" + "d" * 120 + "/.env", b(v))),
                                "application/x-tar"), env_file),
    Variant("tar-pax-long-name-token", "uncompressed tar, the token in a long (PAX) member name",
            lambda t: raw_body(tar_bytes(lambda tf: tar_add(tf, "keys/" + "x" * 90 + "/" + b(t).decode()))),
            lambda t: raw_body(tar_bytes(lambda tf: tar_add(tf, "k", b(t)))), entry=GL),
    Variant("tar-symlink-target", "tar.gz, a symlink whose target is the token",
            lambda t: raw_body(gzip.compress(tar_bytes(lambda tf: tar_add(
                tf, "link", type=tarfile.SYMTYPE, linkname="../" + b(t).decode())))),
            lambda t: raw_body(gzip.compress(tar_bytes(lambda tf: tar_add(tf, "k", b(t)))))),
    Variant("tar-pax-attribute", "tar.gz, the token in a PAX extended attribute",
            lambda t: raw_body(gzip.compress(tar_bytes(lambda tf: tar_add(
                tf, "a.txt", b"x", pax_headers={"SCHILY.xattr.user.token": b(t).decode()})))),
            lambda t: raw_body(gzip.compress(tar_bytes(lambda tf: tar_add(tf, "k", b(t))))), entry=CF),
    encoded("zip-data-descriptor", "zip written as a stream (data descriptors, sizes after the data)", raw_body,
            lambda t: zip_streamed({"cfg/.env": env_file(t)}), entry=NPM),
    Variant("zip-member-comment", "the token in a zip member's comment",
            lambda t: raw_body(zip_member_comment(t)), lambda t: raw_body(zip_bytes({"a.txt": b(t)})), entry=GHS),
    encoded("zip-nested-3", "a zip in a zip in a zip", raw_body,
            lambda t: zip_bytes({"l1.zip": zip_bytes({"l2.zip": zip_bytes({"deep/.env": env_file(t)})})}), entry=GL),
    encoded("zip-bzip2-method", "zip member compressed with bzip2 (method 12)", raw_body,
            lambda t: zip_bytes({"cfg/.env": env_file(t)}, method=zipfile.ZIP_BZIP2), entry=AZ),
    encoded("zip-lzma-method", "zip member compressed with LZMA (method 14)", raw_body,
            lambda t: zip_bytes({"cfg/.env": env_file(t)}, method=zipfile.ZIP_LZMA), entry=CF),
    Variant("gzip-fname-content-encoding", "Content-Encoding: gzip whose header FNAME is the token",
            lambda t: Request("POST", "/upload", (("Content-Type", "text/plain"), ("Content-Encoding", "gzip")),
                              gzip_named(b(t) + b".txt")),
            lambda t: coded("gzip", content_type="text/plain")(b(t))),
    Variant("gzip-file-fname", "a .gz upload whose header FNAME is the token", lambda t: raw_body(gzip_named(t)),
            lambda t: raw_body(gzip.compress(b(t))), entry=NPM),
    encoded("png-ztxt", "PNG with a zTXt (zlib) metadata chunk", ctype("image/png"), png_ztxt, entry=GL),
    encoded("git-receive-pack", "git push: a packfile blob (zlib) in /git-receive-pack",
            lambda v: text_body(v, "application/x-git-receive-pack-request", "/o/r.git/git-receive-pack"),
            git_receive_pack),
    encoded("deb-package", "a .deb: ar archive with data.tar.xz at an offset", ctype("application/vnd.debian.binary-package"),
            deb_package, entry=CF),
    encoded("content-type-lies-png", "text declared image/png", ctype("image/png"), env_file, entry=GHS),
    encoded("pickle-length-byte", "a Python pickle: SHORT_BINUNICODE length byte before, MEMOIZE after", raw_body,
            lambda t: pickle.dumps({"token": b(t).decode(), "n": 1}, protocol=4), entry=CF),
    encoded("hex-colons", "the token as colon-separated hex (openssl style)", plain_text,
            lambda t: "key:\n    " + hex_sep(":")(t) + "\n", entry=NPM),
    encoded("hex-colons-header", "a header value of colon-separated upper-case hex", header("X-Key-Id"),
            hex_sep(":", upper=True), entry=CF),
    encoded("hex-dashes-query", "dash-separated hex in the query", query("id"), hex_sep("-"), entry=GL),
    encoded("hex-spaces", "space-separated hex (`bytes.hex(' ')`, `bytes.fromhex` reads it)", plain_text,
            lambda t: "payload: " + hex_sep(" ")(t) + "\n", entry=GHS),
    encoded("hex-commas-json", "comma-separated hex in a JSON string", json_raw,
            lambda t: json.dumps({"bytes": hex_sep(",")(t)}), entry=AZ),
    encoded("hex-c-array", "`xxd -i` C array (`0x67, 0x68,` 12 a line)", plain_text, c_array, entry=CF),
    encoded("hex-openssl-wrapped-json", "openssl -text style wrapped colon hex in a JSON string", json_text,
            openssl_wrapped, entry=NPM),
    encoded("hexdump-xxd", "`xxd` dump: offsets, 2-byte groups, ASCII column", plain_text, hex_dump("xxd")),
    encoded("hexdump-C", "`hexdump -C` dump: offsets, pairs, |ASCII| column", plain_text, hex_dump("hexdump-C"),
            entry=GL),
    encoded("hexdump-od-x1", "`od -t x1` dump: octal offsets, pairs", plain_text, hex_dump("od-x1"), entry=CF),
    encoded("hexdump-od-x-words", "`od -x` dump: 2-byte words little-endian", plain_text, hex_dump("od-x"),
            entry=GHS),
    encoded("hexdump-wireshark", "Wireshark hex dump in a JSON string", json_text, hex_dump("wireshark"),
            entry=AZ),
    encoded("hex-xxd-p-wrapped", "`xxd -p` output: hex wrapped at 60 columns", plain_text,
            lambda t: "\n".join(b(t).hex()[i:i + 60] for i in range(0, 2 * len(b(t)), 60)) + "\n"),
    # -- Content-Encoding spellings and framings ------------------------------------------------------------
    encoded("ce-identity-gzip", "Content-Encoding: identity, gzip", coded("identity, gzip"),
            lambda t: json.dumps({"k": b(t).decode()}), entry=GL),
    encoded("ce-x-gzip", "Content-Encoding: x-gzip", coded("x-gzip"), lambda t: json.dumps({"k": b(t).decode()}),
            entry=NPM),
    encoded("ce-uppercase-gzip", "Content-Encoding: GZIP", coded("GZIP"), lambda t: json.dumps({"k": b(t).decode()}),
            entry=CF),
    encoded("ce-aws-chunked", "S3 PutObject with Content-Encoding: aws-chunked (SigV4 streaming)", s3_put,
            env_file, entry=AZ),
    # -- mail header encodings --------------------------------------------------------------------------------
    Variant("multipart-filename-rfc2047-q", "multipart filename as an RFC 2047 Q encoded-word (`_` is `=5F`)",
            lambda t: multipart_file(f'filename="{rfc2047_q(t)}"'),
            lambda t: multipart_file('filename="a.txt"', b(t))),
    Variant("mail-subject-rfc2047-b", "message/rfc822 Subject as an RFC 2047 B encoded-word",
            lambda t: text_body(mail_subject(rfc2047_b(t)), "message/rfc822", "/send"),
            lambda t: text_body(mime_plain(t), "message/rfc822", "/send"), entry=CF),
    Variant("mail-subject-rfc2047-q", "message/rfc822 Subject as an RFC 2047 Q encoded-word",
            lambda t: text_body(mail_subject(rfc2047_q(t)), "message/rfc822", "/send"),
            lambda t: text_body(mime_plain(t), "message/rfc822", "/send"), entry=GL),
    # -- documented non-goals: no receiver decodes these into the token --------------------------------------
    encoded("source-string-concatenation", "Python source: the token as two concatenated literals", plain_text,
            lambda t: 'TOKEN = ("' + b(t).decode()[:20] + '"\n         "' + b(t).decode()[20:] + '")\n'),
    encoded("reversed", "the token written backwards", plain_text, lambda t: "key " + b(t).decode()[::-1] + "\n"),
]


# Known gaps (case id -> reason): strict xfails, removed as each is closed.
GAPS: dict[str, str] = {
    "source-string-concatenation-evasion": "non-goal: no decoder joins string literals of source code",
    "reversed-evasion": "non-goal: deliberate obfuscation that no standard decoder undoes",
}


@pytest.mark.parametrize(("variant", "kind"), cases(TABLE, GAPS))
def test_content_variant(evasion_proxy, upstream, variant, kind):
    run_case(evasion_proxy, upstream, variant, kind)

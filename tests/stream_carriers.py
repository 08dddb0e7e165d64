"""Carriers of a token in a response body (no tests here): shared by the stream parity tests and the evasion suite.

    CARRIERS[name] = (content type, build)   build(secret) -> body bytes holding `secret` in that carrier
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import tarfile
import zipfile

from hex_forms import c_array, hex_dump, hex_sep


def zip_of(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("repo-main/README.md", "# readme\n" * 40)
        z.writestr("repo-main/.env", text)
    return buf.getvalue()


def targz_of(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = text.encode()
        info = tarfile.TarInfo("repo-main/config.yml")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _b64_wrapped(text: str) -> str:
    b = base64.b64encode(text.encode()).decode()
    return "\n".join(b[i:i + 60] for i in range(0, len(b), 60)) + "\n"


def _html_entities(text: str) -> str:
    return "".join(f"&#{ord(c)};" if c in "gp" else c for c in text)


# name -> (content type, body builder from a secret string); each builder hides the string in its carrier
CARRIERS = {
    "json_newline_escape": ("application/json", lambda t: json.dumps({"log": "step 1 ok\n" + t + "\nstep 2"})
                            .encode()),
    "json_unicode_escape": ("application/json", lambda t: ('{"v":"' + "".join(f"\\u{ord(c):04x}" for c in t)
                                                           + '"}').encode()),
    "json_solidus_escape": ("application/json", lambda t: json.dumps({"url": "https://h/x/" + t}).replace("/", "\\/")
                            .encode()),
    "json_tab_escape": ("application/json", lambda t: json.dumps({"a": "key\t" + t}).encode()),
    "html_entities": ("text/html", lambda t: ("<html><body><pre>token: " + _html_entities(t) + "</pre></body></html>")
                      .encode()),
    "html_named_entity_before": ("text/html", lambda t: ("<p>&lt;" + t + "&gt;</p>").encode()),
    "github_contents_base64": ("application/json", lambda t: json.dumps(
        {"name": ".env", "encoding": "base64", "content": _b64_wrapped("API_TOKEN=" + t + "\nDEBUG=1\n" * 12)})
        .encode()),
    "base64_plain": ("text/plain", lambda t: base64.b64encode(("export GH=" + t + "\n").encode())),
    "zip_download": ("application/zip", lambda t: zip_of("GITHUB_TOKEN=" + t + "\n")),
    "tar_gz_download": ("application/gzip", lambda t: targz_of("token: " + t + "\n")),
    "gzip_file": ("application/octet-stream", lambda t: gzip.compress(("secret=" + t + "\n").encode() * 5)),
    "protobuf_field": ("application/x-protobuf", lambda t: b"\x08\x01\x12" + bytes([len(t)]) + t.encode()
                       + b"\x18\x02"),
    "hex_colons": ("text/plain", lambda t: ("fingerprint: " + hex_sep(":")(t) + "\n").encode()),
    "hex_c_array": ("text/plain", lambda t: c_array(t).encode()),
    "hexdump_xxd": ("text/plain", lambda t: hex_dump("xxd")(t).encode()),
    "hexdump_c_in_json": ("application/json", lambda t: json.dumps({"dump": hex_dump("hexdump-C")(t)}).encode()),
    "hexdump_od_words": ("text/plain", lambda t: hex_dump("od-x")(t).encode()),
    "ndjson_escape": ("application/x-ndjson", lambda t: (json.dumps({"i": 1, "m": "x"}) + "\n"
                                                          + json.dumps({"i": 2, "m": "\n" + t}) + "\n").encode()),
}

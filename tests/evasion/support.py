"""The evasion suite's table machinery: a row type, the three checks every row runs, and a leak check.

A table is a list of `Variant`s. Each row names a carrier (where the token sits and how it is encoded) and
builds, from a token, the `Request` a real client sends through the running proxy to the recording upstream.

    Variant(id, carrier, build, plain=None, expect="blocked", entry="github-classic-pat")
        build(token) -> Request        the evasion: the token hidden in the carrier
        plain(token) -> Request        the control: the same carrier with the token plainly inside
                                       (default: `build` itself, for rows whose carrier IS the test)
        expect   "blocked"             the proxy finds this very token (403 credential_detected, its fingerprint)
                 "unscannable"         the proxy cannot look inside and says so (403 content_not_inspectable),
                                       or finds the token anyway
        entry    the built-in profile entry whose generator (tests/generators.py) makes the token
    encoded(id, carrier, place, encode, ...)  the common shape: build = place(encode(token)), plain = place(token)
    Request(method="POST", path="/upload", headers=(), body=b"")   path is sent as is (query included)

    cases(table, gaps={}) -> pytest params   three per row: `<id>-evasion`, `<id>-plain`, `<id>-wrong_checksum`;
                                       `gaps` maps such case ids to a reason: a known gap, run as a strict xfail
    run_case(proxy, upstream, variant, kind)   sends the request and asserts:
        evasion, plain   blocked as `expect` says; the upstream received the token in no form
                         (`received_any_form`); neither the 403 body nor the proxy's log/incidents/metrics hold it
        wrong_checksum   the same carrier with a token whose checksum is wrong passes to the upstream unmodified
                         (precision; for expect="unscannable" it is named unscannable, with no finding)
    token_for(variant) / wrong_checksum(token, entry)   fresh tokens: seeded by the row id, so reruns agree

`received_any_form(received, token)` says whether any recorded request carried the token in a form its receiver
would decode: as is; percent-decoded (repeatedly, `+` as space or not); JSON/backslash-unescaped; HTML entities;
quoted-printable; base64/base64url runs (any wrapping, indentation); hex runs (also with separators, `0x`
prefixes) and hex dumps; UTF-16LE/BE and UTF-32 text; utf-7, cp037; gzip/deflate/zlib/br/zstd/bz2/xz/lzma; zip and
tar members and names; MIME parts; CDATA/comment splits — applied to each other up to a fixed depth. Test-side
code: clarity over speed, bodies here are small.

Payload builders more than one table uses live here too (the tables import this module, never each other):
`b(x)` (str as latin-1 bytes), `tar_gz(members)`, `env_file(t)`, `git_receive_pack(t)` (what `git push` sends).

Run tables with the `evasion_proxy` fixture (tests/evasion/conftest.py: a `dlproxy run` with the built-in profile).
"""

from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import email
import email.policy
import gzip
import hashlib
import html
import io
import lzma
import quopri
import random
import re
import struct
import tarfile
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.findings import fingerprint
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from e2e.conftest import proxied_client
from generators import GENERATORS

KINDS = ("evasion", "plain", "wrong_checksum")
BLOCKED, UNSCANNABLE = "blocked", "unscannable"


@dataclass(frozen=True)
class Request:
    method: str = "POST"
    path: str = "/upload"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Variant:
    id: str
    carrier: str
    build: Callable[[str], Request]
    plain: Callable[[str], Request] | None = None
    expect: str = BLOCKED
    entry: str = "github-classic-pat"

    def __post_init__(self):
        assert self.expect in (BLOCKED, UNSCANNABLE), self.expect
        assert self.entry in GENERATORS, self.entry


def encoded(id: str, carrier: str, place: Callable[[str | bytes], Request],
            encode: Callable[[str], str | bytes] = lambda t: t, **kw) -> Variant:
    """A row whose evasion is `place(encode(token))` and whose control is `place(token)`."""
    return Variant(id, carrier, lambda t: place(encode(t)), lambda t: place(t), **kw)


def cases(table: Iterable[Variant], gaps: dict[str, str] | None = None) -> list:
    """pytest params (variant, kind) for a table: evasion, plain, wrong_checksum; `gaps` (case id -> reason)
    are known gaps, run as strict xfails so that closing one fails until its entry is removed."""
    table, gaps = list(table), dict(gaps or {})
    ids = [v.id for v in table]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate variant ids: {sorted(dup)}"
    out = []
    for v in table:
        for kind in KINDS:
            case = f"{v.id}-{kind}"
            reason = gaps.pop(case, "")
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(v, kind, id=case, marks=marks))
    assert not gaps, f"gaps for unknown cases: {sorted(gaps)}"
    return out


# --- tokens ----------------------------------------------------------------------------------------------


@cache
def detector() -> Detector:
    return Detector(load_profiles([builtin_profile_path()]))


def token_for(variant: Variant) -> str:
    """A fresh valid token for the row's entry, seeded by the row id (distinct rows, distinct tokens)."""
    token = GENERATORS[variant.entry](random.Random(f"evasion:{variant.id}"))
    assert [f.entry_id for f in detector().scan(f" {token} ")] == [variant.entry], variant.entry
    return token


def wrong_checksum(token: str) -> str:
    """The token with one character changed so that its checksum no longer holds (checked with the engine)."""
    det = detector()
    for i in range(len(token) - 1, -1, -1):
        c = token[i]
        if not c.isalnum():
            continue
        for repl in ("7", "Q", "a") if c not in "7" else ("Q", "a"):
            bad = token[:i] + repl + token[i + 1:]
            if not det.scan(f" {bad} ") and bad != token:
                return bad
    raise AssertionError("no single-character change defeats this token's checksum")


# --- sending and judging ---------------------------------------------------------------------------------


def send(proxy, upstream, request: Request):
    with proxied_client(proxy) as client:
        return client.request(request.method, upstream.url + request.path, headers=list(request.headers),
                              content=request.body)


def run_case(proxy, upstream, variant: Variant, kind: str) -> None:
    token = token_for(variant)
    if kind == "wrong_checksum":
        bad = wrong_checksum(token)
        request = variant.build(bad)
        resp = send(proxy, upstream, request)
        if variant.expect == UNSCANNABLE:
            assert resp.status_code == 403, f"{variant.id}: expected unscannable, got {resp.status_code}"
            err = resp.json()["error"]
            assert err["code"] == "content_not_inspectable" and not err["findings"], err
            return
        assert resp.status_code != 403, f"{variant.id}: the wrong-checksum control was blocked: {resp.text}"
        assert len(upstream.received) == 1, upstream.received
        got = upstream.received[0]
        assert got.body == request.body, f"{variant.id}: body modified in transit"
        assert got.path == request.path or urllib.parse.unquote(got.path) == urllib.parse.unquote(request.path)
        for name, value in request.headers:
            assert got.header(name) == value, f"{variant.id}: header {name} modified in transit"
        return
    request = (variant.build if kind == "evasion" else (variant.plain or variant.build))(token)
    resp = send(proxy, upstream, request)
    leaked = received_any_form(upstream.received, token)
    assert not leaked, f"{variant.id} ({variant.carrier}): the upstream received the token ({resp.status_code})"
    assert resp.status_code == 403, f"{variant.id}: {resp.status_code} {resp.text[:300]}"
    for needle in (token, token[-8:]):
        assert needle not in resp.text
    err = resp.json()["error"]
    if err["code"] == "credential_detected":
        assert fingerprint(token) in {f["fingerprint"] for f in err["findings"]}, (
            f"{variant.id}: blocked for something else: {[f['entry'] for f in err['findings']]}")
    else:
        assert variant.expect == UNSCANNABLE and err["code"] == "content_not_inspectable", err
    proxy.assert_no_leak(token)


# --- the leak check --------------------------------------------------------------------------------------

MAX_DEPTH = 4
MAX_FORMS = 4000
B64_RUN = re.compile(rb"(?:[A-Za-z0-9+/_-][ \t]*(?:\r?\n[ \t]*)?){16,}={0,2}")
HEX_RUN = re.compile(rb"(?:(?:0[xX])?[0-9a-fA-F]{2}(?:[ :,.-]{1,2}|\s+)?){16,}")
DUMP_LINE = re.compile(rb"^[ \t]*[0-9a-fA-F]{4,8}:?[ \t]+((?:[0-9a-fA-F]{2,4} {1,2})*[0-9a-fA-F]{2,4})", re.M)
JSON_ESCAPE = re.compile(rb"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[\\/\"'bfnrt0])")
SPLITS = re.compile(rb"\]\]><!\[CDATA\[|<!\[CDATA\[|\]\]>|<!--.*?-->", re.S)
_ESC = {b"\\": b"\\", b"/": b"/", b'"': b'"', b"'": b"'", b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r",
        b"t": b"\t", b"0": b"\0"}


def received_any_form(received: Iterable, token: str) -> bool:
    """True when any recorded request (path, header and trailer values, body) carries `token` in any decodable
    form."""
    needle = token.encode()
    for rec in received:
        parts = [rec.path.encode("utf-8", "surrogateescape"), rec.body]
        fields = rec.headers + list(getattr(rec, "trailers", ()))
        parts += [f"{k}: {v}".encode("utf-8", "surrogateescape") for k, v in fields]
        for part in parts:
            if carries(part, needle):
                return True
    return False


def carries(data: bytes, needle: bytes) -> bool:
    seen: set[bytes] = set()
    frontier = [data]
    for _ in range(MAX_DEPTH + 1):
        nxt = []
        for item in frontier:
            if item in seen:
                continue
            seen.add(item)
            if needle in item:
                return True
            nxt.extend(x for x in _decodings(item) if x and x not in seen)
            if len(seen) > MAX_FORMS:
                return False
        frontier = nxt
    return False


def _decodings(data: bytes) -> Iterator[bytes]:
    if b"%" in data:
        yield urllib.parse.unquote_to_bytes(data)
        yield urllib.parse.unquote_to_bytes(data.replace(b"+", b" "))
    if b"\\" in data:
        yield JSON_ESCAPE.sub(_unescape, data)
    if b"&" in data:
        yield html.unescape(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
    if b"=" in data:
        yield quopri.decodestring(data)
    if b"<!" in data or b"]]>" in data:
        yield SPLITS.sub(b"", data)
    for m in B64_RUN.finditer(data):
        run = re.sub(rb"\s+", b"", m[0])
        for alt in (b"+/", b"-_"):
            raw = run.rstrip(b"=")
            for cut in range(0, 4):  # the token may start at any offset of the run
                piece = raw[cut:]
                piece = piece[: len(piece) - len(piece) % 4 if len(piece) % 4 == 1 else len(piece)]
                try:
                    yield base64.b64decode(piece + b"=" * (-len(piece) % 4), altchars=alt)
                except (binascii.Error, ValueError):
                    pass
    for m in HEX_RUN.finditer(data):
        digits = re.sub(rb"0[xX]|[^0-9a-fA-F]", b"", m[0])
        for cut in (0, 1):
            piece = digits[cut:]
            yield bytes.fromhex(piece[: len(piece) // 2 * 2].decode())
    if b"\n" in data:  # hex dumps: offsets, then 16 bytes a line (pairs or 2-byte words, either byte order)
        rows = [re.sub(rb"\s", b"", m[1])[:32] for m in DUMP_LINE.finditer(data)]
        if len(rows) > 1:
            raw = bytes.fromhex(b"".join(rows)[: len(b"".join(rows)) // 2 * 2].decode())
            yield raw
            yield bytes(raw[i ^ 1] for i in range(len(raw) // 2 * 2))
    if b"\0" in data or len(data) % 2 == 0:
        for codec in ("utf-16-le", "utf-16-be"):
            for cut in (0, 1):
                yield data[cut:].decode(codec, "ignore").encode("utf-8", "surrogateescape")
        for codec in ("utf-32-le", "utf-32-be"):
            yield _loose(data, codec)
    for codec in ("utf-7", "cp037"):
        yield _loose(data, codec)
    yield from _decompressions(data)
    yield from _containers(data)


def _unescape(m: re.Match) -> bytes:
    code = m[1]
    if code[:1] in (b"u", b"x"):
        return chr(int(code[1:], 16)).encode("utf-8", "surrogatepass")
    return _ESC[code]


def _loose(data: bytes, codec: str) -> bytes:
    try:
        return codecs.decode(data[: len(data) // 4 * 4] if "32" in codec else data, codec, "ignore").encode(
            "utf-8", "surrogateescape")
    except (UnicodeError, ValueError):
        return b""


def _decompressions(data: bytes) -> Iterator[bytes]:
    import brotli
    import zstandard

    attempts: list[Callable[[bytes], bytes]] = [
        gzip.decompress, bz2.decompress, lzma.decompress, brotli.decompress,
        lambda d: zlib.decompressobj(-15).decompress(d, 1 << 24),
        lambda d: zlib.decompressobj(31).decompress(d, 1 << 24),  # a gzip member with data after it
        lambda d: zstandard.ZstdDecompressor().decompressobj().decompress(d)]
    offsets = {0}
    for magic in (b"\x1f\x8b", b"\x78\x9c", b"\x78\x01", b"\x78\xda", b"\x78\x5e", b"BZh", b"\xfd7zXZ",
                  b"\x5d\x00\x00", b"\x28\xb5\x2f\xfd"):
        offsets.update(m.start() for m in re.finditer(re.escape(magic), data))
    for off in sorted(offsets)[:16]:
        piece = data[off:]
        for fn in [*attempts, lambda d: zlib.decompressobj().decompress(d, 1 << 24)]:
            try:
                out = fn(piece)
            except Exception:  # noqa: BLE001 - any failure just means "not this codec"
                continue
            if out:
                yield out


def _containers(data: bytes) -> Iterator[bytes]:
    if b"PK" in data:
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                yield zf.comment
                for info in zf.infolist():
                    yield info.filename.encode("utf-8", "surrogateescape")
                    try:
                        yield zf.read(info)
                    except Exception:  # noqa: BLE001
                        pass
        except Exception:  # noqa: BLE001
            pass
        for m in re.finditer(rb"PK\x03\x04", data):  # entries only in local headers
            head = data[m.start():m.start() + 30]
            if len(head) < 30:
                continue
            method = int.from_bytes(head[8:10], "little")
            size = int.from_bytes(head[18:22], "little")
            name_len, extra_len = int.from_bytes(head[26:28], "little"), int.from_bytes(head[28:30], "little")
            start = m.start() + 30
            yield data[start:start + name_len]
            body = data[start + name_len + extra_len:start + name_len + extra_len + size]
            if method == 8:
                try:
                    yield zlib.decompressobj(-15).decompress(body, 1 << 24)
                except zlib.error:
                    pass
            else:
                yield body
    if len(data) >= 512:
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as tf:
                for member in tf.getmembers():
                    yield member.name.encode("utf-8", "surrogateescape")
                    f = tf.extractfile(member) if member.isfile() else None
                    if f is not None:
                        yield f.read()
        except Exception:  # noqa: BLE001
            pass
    if b"\n" in data and (b"Content-Type" in data or b"content-type" in data or b"MIME-Version" in data):
        try:
            msg = email.message_from_bytes(data, policy=email.policy.compat32)
            for part in msg.walk():
                payload = part.get_payload(decode=True)
                if payload:
                    yield payload
                yield str(part.get_filename() or "").encode("utf-8", "surrogateescape")
        except Exception:  # noqa: BLE001
            pass


# --- carriers every table uses ---------------------------------------------------------------------------


def text_body(data: str | bytes, content_type: str = "text/plain", path: str = "/upload") -> Request:
    body = data.encode("utf-8") if isinstance(data, str) else data
    return Request("POST", path, (("Content-Type", content_type),), body)


def json_text(text: str | bytes) -> Request:
    """A JSON body whose string field holds `text` (json.dumps escaping)."""
    import json

    value = text.decode("latin-1") if isinstance(text, bytes) else text
    return text_body(json.dumps({"messages": [{"role": "user", "content": value}]}), "application/json")


def header(name: str) -> Callable[[str | bytes], Request]:
    def place(value: str | bytes) -> Request:
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        return Request("GET", "/resource", ((name, v),))

    return place


def query(param: str) -> Callable[[str | bytes], Request]:
    def place(value: str | bytes) -> Request:
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        return Request("GET", f"/search?{param}={v}")

    return place


# --- payload builders more than one table uses --------------------------------------------------------------


def b(x: str | bytes) -> bytes:
    return x.encode("latin-1") if isinstance(x, str) else x


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def env_file(t: str | bytes) -> bytes:
    return b"API_URL=https://example.test\nTOKEN=" + b(t) + b"\n"


def pkt_line(data: bytes) -> bytes:
    return b"%04x" % (len(data) + 4) + data


def git_object(kind: int, data: bytes) -> bytes:
    """A packfile object entry: type and size in a varint header, then the zlib-deflated content."""
    size = len(data)
    head = bytearray([(kind << 4) | (size & 0x0F) | (0x80 if size > 15 else 0)])
    size >>= 4
    while size:
        head.append((size & 0x7F) | (0x80 if size > 0x7F else 0))
        size >>= 7
    return bytes(head) + zlib.compress(data)


def git_receive_pack(t: str | bytes) -> bytes:
    """What `git push` sends to /git-receive-pack: a ref update in pkt-lines, a flush, then a packfile whose blob
    objects are zlib streams (a commit adding a .env)."""
    blob = env_file(t)
    commit = (b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <a@x.test> 0 +0000\n"
              b"committer A <a@x.test> 0 +0000\n\nadd config\n")
    objects = [git_object(1, commit), git_object(3, blob)]
    pack = b"PACK" + struct.pack(">II", 2, len(objects)) + b"".join(objects)
    pack += hashlib.sha1(pack).digest()
    ref = b"0" * 40 + b" " + hashlib.sha1(commit).hexdigest().encode() + b" refs/heads/main\x00 report-status\n"
    return pkt_line(ref) + b"0000" + pack

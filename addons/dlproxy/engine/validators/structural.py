"""Tier-B structure validators: a decode or parse that must succeed before a candidate counts as a credential.

None of these formats carries a checksum; what they do carry is structure that random text almost never has:
base32 that decodes to a plausible AWS account, base64 that decodes to `BedrockAPIKey-…`, a JWT header that is a
JSON object with `alg`, a PyPI macaroon that parses field by field, a PEM body that is a DER SEQUENCE, and so on
(docs/token-formats.md, tier B). Each validator is a pure function of the candidate text (plus the entry's
params), O(len(token)), never raises (the `_never_raises` wrapper turns any error into False) and never puts
the token into an exception, a log line or a return value other than a bool.
"""

from __future__ import annotations

import binascii
import functools
import json
import re

from . import register

# --- shared decoding helpers ------------------------------------------------------------------------------

_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64_STD_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URL_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_B32_VALUE = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")}


def _never_raises(func):
    """Any exception inside a validator means "not this credential"; the message (which could quote the token)
    is dropped here, before it can reach a traceback or a log."""

    @functools.wraps(func)
    def wrapper(token, *args, **kwargs):
        try:
            return bool(func(token, *args, **kwargs))
        except Exception:  # noqa: BLE001 - deliberate: validators answer a yes/no question
            return False

    return wrapper


def b64decode(text: str, alphabet: str = "any") -> bytes | None:
    """Strict base64 (`std`, `url`, or `any` of the two, not mixed); padding optional; None when invalid."""
    if not text.isascii():
        return None
    if alphabet == "std" or (alphabet == "any" and "-" not in text and "_" not in text):
        if not _B64_STD_RE.fullmatch(text):
            return None
        raw = text.encode("ascii")
    else:
        if not _B64_URL_RE.fullmatch(text):
            return None
        raw = text.encode("ascii").translate(_URL_TO_STD)
    raw = raw.rstrip(b"=")
    if len(raw) % 4 == 1:
        return None
    raw += b"=" * (-len(raw) % 4)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def json_object(data: bytes | None) -> dict | None:
    """The JSON object encoded (UTF-8) in `data`, or None when it is not one."""
    if not data or data[:1] != b"{":
        return None
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _printable_ascii(data: bytes) -> bool:
    return all(0x20 <= b < 0x7F for b in data)


def _b32_bits(text: str) -> int | None:
    """The big-endian integer of an upper-case RFC 4648 base32 string (no padding), or None."""
    value = 0
    for ch in text:
        digit = _B32_VALUE.get(ch)
        if digit is None:
            return None
        value = (value << 5) | digit
    return value


# --- AWS --------------------------------------------------------------------------------------------------

AWS_KEY_ID_PREFIXES = ("AKIA", "ASIA", "ABIA", "ACCA", "A3T")
_AWS_MAX_ACCOUNT = 999_999_999_999  # account ids are 12 decimal digits


def aws_account_id(key_id: str) -> int | None:
    """The AWS account encoded in a new-generation access key id (bit 20 set), else None.

    docs/token-formats.md B1: base32-decode the 16 characters after the 4-character type; bits 1-40 of the first
    6 decoded bytes are the account (Aidan Steele / Tal Be'ery; WithSecure: bit 20 of the id marks generation).
    """
    if len(key_id) != 20:
        return None
    bits = _b32_bits(key_id[4:])
    if bits is None:
        return None
    first48 = bits >> (80 - 48)
    if not first48 >> 47:  # old generation: the account is not encoded
        return None
    return (first48 & 0x7FFFFFFFFF80) >> 7


@register("aws-access-key-id", "structure")
@_never_raises
def aws_access_key_id(token: str, *, prefix: str = "") -> bool:
    """AKIA/ASIA/ABIA/ACCA/A3T? + 16 base32; a new-generation id must decode to a 12-digit account.
    AWS's documentation placeholders (`AKIAIOSFODNN7EXAMPLE`, `…EXAMPLE`) are not credentials."""
    if len(token) != 20 or not token.startswith(AWS_KEY_ID_PREFIXES) or not token.startswith(prefix):
        return False
    if token.startswith("A3T"):
        if not ("A" <= token[3] <= "Z" or "0" <= token[3] <= "9"):
            return False
    if token.endswith("EXAMPLE"):
        return False
    bits = _b32_bits(token[4:])
    if bits is None:
        return False
    account = aws_account_id(token)
    return account is None or account <= _AWS_MAX_ACCOUNT


@register("aws-bedrock-api-key", "structure")
@_never_raises
def aws_bedrock_api_key(token: str) -> bool:
    """Long-term `ABSK` + base64("BedrockAPIKey-…"), or short-term `bedrock-api-key-` + base64 of a presigned
    `bedrock.amazonaws.com/…` URL (docs/token-formats.md B2). The plaintext must be printable ASCII."""
    if token.startswith("ABSK"):
        data, lead = b64decode(token[4:], "std"), b"BedrockAPIKey-"
    elif token.startswith("bedrock-api-key-"):
        data, lead = b64decode(token[16:], "std"), b"bedrock.amazonaws.com/"
    else:
        return False
    return data is not None and data.startswith(lead) and len(data) > len(lead) + 8 and _printable_ascii(data)


# --- AI providers -----------------------------------------------------------------------------------------

_OPENAI_HALVES = {"sk-proj-": (74, 58), "sk-svcacct-": (74, 58), "sk-admin-": (74, 58)}
_OPENAI_BODY = re.compile(r"[A-Za-z0-9_-]*")
_OPENAI_LEGACY_BODY = re.compile(r"[A-Za-z0-9]{20}")
OPENAI_MARKER = "T3BlbkFJ"  # base64 of "OpenAI"


@register("openai-api-key", "structure")
@_never_raises
def openai_api_key(token: str) -> bool:
    """`sk-(proj|svcacct|admin)-` + N + `T3BlbkFJ` + N with N in {74, 58}, or legacy `sk-` + 20 + marker + 20
    (docs/token-formats.md B3). The marker must sit exactly between two halves of equal length."""
    head, sep, tail = token.partition(OPENAI_MARKER)
    if not sep or OPENAI_MARKER in tail:
        return False
    for kind, lengths in _OPENAI_HALVES.items():
        if head.startswith(kind):
            body = head[len(kind):]
            return (len(body) == len(tail) and len(body) in lengths
                    and bool(_OPENAI_BODY.fullmatch(body)) and bool(_OPENAI_BODY.fullmatch(tail)))
    if head.startswith("sk-") and "-" not in head[3:]:
        return bool(_OPENAI_LEGACY_BODY.fullmatch(head[3:])) and bool(_OPENAI_LEGACY_BODY.fullmatch(tail))
    return False


_ANTHROPIC_BODY = re.compile(r"[A-Za-z0-9_-]{93}AA")


@register("anthropic-api-key", "structure")
@_never_raises
def anthropic_api_key(token: str) -> bool:
    """`sk-ant-api03-` / `sk-ant-admin01-` + 93 `[A-Za-z0-9_-]` + `AA` (docs/token-formats.md B5)."""
    for kind in ("sk-ant-api03-", "sk-ant-admin01-"):
        if token.startswith(kind):
            return bool(_ANTHROPIC_BODY.fullmatch(token, len(kind)))
    return False


_GOOGLE_LAST = frozenset("AEIMQUYcgkosw048")
_GOOGLE_SHAPE = re.compile(r"AIza[A-Za-z0-9_-]{35}")


@register("google-api-key", "structure")
@_never_raises
def google_api_key(token: str) -> bool:
    """`AIza` + 35: 39 chars of base64url for 29 bytes, so the last char carries 2 zero padding bits and can
    only be one of 16 values (docs/token-formats.md B6)."""
    return bool(_GOOGLE_SHAPE.fullmatch(token)) and token[-1] in _GOOGLE_LAST


# --- JWT family -------------------------------------------------------------------------------------------


@register("jwt", "structure")
@_never_raises
def jwt(token: str, *, allow_none: bool = False) -> bool:
    """Three base64url segments: a header that is a JSON object with a string `alg`, a payload that is a JSON
    object, and a signature that decodes (docs/token-formats.md B7). `alg: none` (unsigned, nothing to steal)
    is rejected unless `allow_none`."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    head, body, sig = parts
    header = json_object(b64decode(head, "url"))
    if header is None or not isinstance(header.get("alg"), str):
        return False
    if json_object(b64decode(body, "url")) is None:
        return False
    if header["alg"].lower() == "none":
        return allow_none and sig == ""
    signature = b64decode(sig, "url")
    return signature is not None and len(signature) >= 16


_GHS_STATELESS = re.compile(r"ghs_([0-9]{1,12})_(eyJ[A-Za-z0-9_.-]*)")


@register("github-stateless-installation-token", "structure")
@_never_raises
def github_stateless_installation_token(token: str) -> bool:
    """`ghs_<APPID>_<JWT>` (GitHub, from 2026-04-27; docs/token-formats.md A1–A9): no CRC, so the JWT after
    the numeric app id must be a structurally valid JWT."""
    m = _GHS_STATELESS.fullmatch(token)
    return bool(m) and m.group(1)[0] != "0" and jwt(m.group(2))


# --- package registries ------------------------------------------------------------------------------------

_MAC_EOS, _MAC_LOCATION, _MAC_IDENTIFIER, _MAC_VID, _MAC_SIGNATURE = 0, 1, 2, 4, 6


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]  # IndexError on truncation: caught by _never_raises
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 28:
            raise ValueError("varint too long")


def _macaroon_fields(data: bytes, pos: int) -> tuple[dict[int, bytes], int]:
    """One section of a v2 macaroon: fields (type, length, bytes) in increasing type order up to EOS (0)."""
    fields: dict[int, bytes] = {}
    last = 0
    while True:
        ftype, pos = _varint(data, pos)
        if ftype == _MAC_EOS:
            return fields, pos
        if ftype <= last or ftype not in (_MAC_LOCATION, _MAC_IDENTIFIER, _MAC_VID):
            raise ValueError("bad field order")
        length, pos = _varint(data, pos)
        if pos + length > len(data):
            raise ValueError("truncated")
        fields[ftype] = data[pos:pos + length]
        pos += length
        last = ftype


def parse_macaroon_v2(data: bytes) -> tuple[bytes, bytes, list[bytes], bytes] | None:
    """(location, identifier, caveat identifiers, signature) of a libmacaroons v2 binary macaroon, or None."""
    if not data or data[0] != 2:
        return None
    header, pos = _macaroon_fields(data, 1)
    if _MAC_IDENTIFIER not in header or _MAC_VID in header:
        return None
    caveats = []
    while data[pos] != _MAC_EOS:
        fields, pos = _macaroon_fields(data, pos)
        if _MAC_IDENTIFIER not in fields:
            return None
        caveats.append(fields[_MAC_IDENTIFIER])
        if len(caveats) > 256:
            return None
    pos += 1
    ftype, pos = _varint(data, pos)
    length, pos = _varint(data, pos)
    if ftype != _MAC_SIGNATURE or length != 32 or pos + 32 != len(data):
        return None
    return header.get(_MAC_LOCATION, b""), header[_MAC_IDENTIFIER], caveats, data[pos:]


@register("pypi-macaroon", "structure")
@_never_raises
def pypi_macaroon(token: str, *, location: str = "pypi.org") -> bool:
    """`pypi-` + base64url macaroon v2 (docs/token-formats.md B8): version 0x02, the expected location, an
    identifier, first-party caveats whose identifiers are JSON, a 32-byte signature, nothing after it."""
    if not token.startswith("pypi-"):
        return False
    parsed = parse_macaroon_v2(b64decode(token[5:], "url") or b"")
    if parsed is None:
        return False
    loc, identifier, caveats, _sig = parsed
    if loc != location.encode("ascii") or not identifier:
        return False
    for caveat in caveats:
        json.loads(caveat.decode("utf-8"))  # ValueError → False
    return True


_NUGET_HEAD_LAST = frozenset("aq")  # 20 chars = 96 data bits + 4 zero bits
_NUGET_TAIL_LAST = frozenset("aeimquy4")  # 26 chars = 128 data bits + 2 zero bits


@register("nuget-api-key", "structure")
@_never_raises
def nuget_api_key(token: str) -> bool:
    """`oy2` + 43 lower-case base32 (NuGetGallery ApiKeyV4): chars 0-19 decode to "v4" + 10 non-zero id bytes,
    chars 20-45 to 16 random bytes; unused padding bits are zero (docs/token-formats.md B14)."""
    if len(token) != 46 or not token.islower():
        return False
    head, tail = token[:20].upper(), token[20:].upper()
    hbits, tbits = _b32_bits(head), _b32_bits(tail)
    if hbits is None or tbits is None:
        return False
    if token[19] not in _NUGET_HEAD_LAST or token[45] not in _NUGET_TAIL_LAST:
        return False
    ident = (hbits >> 4).to_bytes(12, "big")
    return ident[:2] == b"v4" and all(ident[2:])


# --- observability / platforms ----------------------------------------------------------------------------


@register("sentry-org-token", "structure")
@_never_raises
def sentry_org_token(token: str) -> bool:
    """`sntrys_` + base64(JSON with iat, url, org[, region_url]) + `_` + 43-char base64 of 32 secret bytes
    (docs/token-formats.md B9)."""
    if not token.startswith("sntrys_"):
        return False
    payload, sep, secret = token[7:].rpartition("_")
    if not sep or len(secret) != 43:
        return False
    claims = json_object(b64decode(payload, "std"))
    if claims is None or not all(k in claims for k in ("iat", "url", "org")):
        return False
    raw = b64decode(secret, "std")
    return raw is not None and len(raw) == 32


@register("grafana-cloud-token", "structure")
@_never_raises
def grafana_cloud_token(token: str) -> bool:
    """`glc_` + base64 JSON `{"o": org, "n": name, "k": key, "m": {"r": region}}` (docs/token-formats.md B10)."""
    if not token.startswith("glc_"):
        return False
    claims = json_object(b64decode(token[4:], "std"))
    if claims is None or not all(isinstance(claims.get(k), str) and claims[k] for k in ("o", "n", "k")):
        return False
    return "m" not in claims or isinstance(claims["m"], dict)


@register("grafana-legacy-api-key", "structure")
@_never_raises
def grafana_legacy_api_key(token: str) -> bool:
    """Base64 JSON `{"k": key, "n": name, "id": org id}` (docs/token-formats.md B11)."""
    claims = json_object(b64decode(token, "std"))
    return (claims is not None and isinstance(claims.get("k"), str) and bool(claims["k"])
            and isinstance(claims.get("n"), str) and isinstance(claims.get("id"), int)
            and not isinstance(claims["id"], bool))


@register("atlassian-dc-token", "structure")
@_never_raises
def atlassian_dc_token(token: str) -> bool:
    """Jira/Confluence Data Center PAT or Bitbucket DC `BBDC-` token: 44 base64 chars decoding to a 12-digit
    user id, `:`, and 20 random bytes (docs/token-formats.md B12)."""
    body = token[5:] if token.startswith("BBDC-") else token
    if len(body) != 44:
        return False
    raw = b64decode(body, "std")
    return raw is not None and len(raw) == 33 and raw[:12].isdigit() and raw[12:13] == b":"


@register("jfrog-reference-token", "structure")
@_never_raises
def jfrog_reference_token(token: str) -> bool:
    """64 base64 chars decoding to `reftkn:01:…` in printable ASCII (docs/token-formats.md B13)."""
    if len(token) != 64:
        return False
    raw = b64decode(token, "std")
    return raw is not None and raw.startswith(b"reftkn:01:") and _printable_ascii(raw)


_HEROKU_SHAPE = re.compile(r"HRKU-AA[A-Za-z0-9_-]{58}")


@register("heroku-api-key", "structure")
@_never_raises
def heroku_api_key(token: str) -> bool:
    """`HRKU-AA` + 58 (65 chars) with the fixed `_____w` (decoded bytes FF FF FF FF) at offset 49
    (docs/token-formats.md B15: 4/4 real keys; undocumented by Heroku)."""
    return bool(_HEROKU_SHAPE.fullmatch(token)) and token[49:55] == "_____w"


@register("onepassword-service-account-token", "structure")
@_never_raises
def onepassword_service_account_token(token: str) -> bool:
    """`ops_` + base64 JSON with the sign-in address, the Secret Key and the master unlock key
    (docs/token-formats.md B20)."""
    if not token.startswith("ops_"):
        return False
    claims = json_object(b64decode(token[4:]))
    return (claims is not None and isinstance(claims.get("signInAddress"), str)
            and isinstance(claims.get("secretKey"), str) and isinstance(claims.get("muk"), dict))


@register("flyio-macaroon", "structure")
@_never_raises
def flyio_macaroon(token: str) -> bool:
    """`fm1r_`/`fm1a_`/`fm2_` + base64 of a msgpack-encoded macaroon: the first byte is an array header
    (docs/token-formats.md B22)."""
    _kind, sep, body = token.partition("_")
    if not sep:
        return False
    raw = b64decode(body, "std")
    if raw is None or len(raw) < 32:
        return False
    return 0x91 <= raw[0] <= 0x9F or raw[0] in (0xDC, 0xDD)


_MAPBOX_SHAPE = re.compile(r"sk\.(eyJ[A-Za-z0-9_-]{2,400}={0,2})\.[A-Za-z0-9_-]{22}")


@register("mapbox-secret-token", "structure")
@_never_raises
def mapbox_secret_token(token: str) -> bool:
    """`sk.` + base64url JSON `{"u": user, "a": token id}` + `.` + 22 (docs/token-formats.md B23)."""
    m = _MAPBOX_SHAPE.fullmatch(token)
    if not m:
        return False
    claims = json_object(b64decode(m.group(1), "url"))
    return claims is not None and isinstance(claims.get("u"), str) and isinstance(claims.get("a"), str)


# --- private keys -----------------------------------------------------------------------------------------

_PEM_BLOCK = re.compile(
    r"-----BEGIN ((?:RSA |EC |DSA |ENCRYPTED )?PRIVATE KEY)-----(.*)-----END \1-----", re.DOTALL)
_PEM_LINE_BREAKS = re.compile(r"\\r|\\n|\s")
_PEM_HEADER = re.compile(r"(?:\s|\\[rn])*([A-Za-z-]{1,32}):[ \t]*([^\r\n\\]*?)[ \t]*(?:\r?\n|(?:\\r)?\\n)")


def der_sequence_body(data: bytes) -> bytes | None:
    """The contents of `data` when it is exactly one DER SEQUENCE (tag 0x30, definite length), else None."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        length, start = first, 2
    else:
        n = first & 0x7F
        if not 1 <= n <= 3 or len(data) < 2 + n or data[2] == 0:
            return None
        length, start = int.from_bytes(data[2:2 + n], "big"), 2 + n
        if length < 0x80:
            return None  # DER uses the short form for lengths < 128
    if start + length != len(data):
        return None
    return data[start:]


@register("private-key-pem", "structure")
@_never_raises
def private_key_pem(token: str) -> bool:
    """A PEM private key block (PKCS#1 RSA, SEC1 EC, DSA, PKCS#8, encrypted PKCS#8) whose base64 body decodes to a
    DER SEQUENCE whose first element is an INTEGER (version), or a SEQUENCE for ENCRYPTED PRIVATE KEY.
    Legacy OpenSSL encryption (`Proc-Type: 4,ENCRYPTED` + `DEK-Info`) has a ciphertext body: it must decode
    to whole cipher blocks. Line breaks may be real or JSON-escaped (`\\n`). docs/token-formats.md B19."""
    m = _PEM_BLOCK.fullmatch(token)
    if not m:
        return False
    label, body = m.group(1), m.group(2)
    headers: dict[str, str] = {}
    pos = 0
    while True:
        h = _PEM_HEADER.match(body, pos)
        if h is None:
            break
        headers[h.group(1).lower()] = h.group(2)
        pos = h.end()
        if len(headers) > 8:
            return False
    raw = b64decode(_PEM_LINE_BREAKS.sub("", body[pos:]), "std")
    if raw is None:
        return False
    if headers:
        if label == "ENCRYPTED PRIVATE KEY" or "ENCRYPTED" not in headers.get("proc-type", ""):
            return False
        return "dek-info" in headers and len(raw) >= 64 and len(raw) % 8 == 0
    inner = der_sequence_body(raw)
    if not inner:
        return False
    return inner[0] == (0x30 if label == "ENCRYPTED PRIVATE KEY" else 0x02)

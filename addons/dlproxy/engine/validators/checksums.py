"""Tier-A validators: formats whose issuer embeds a real checksum (docs/token-formats.md, tier A).

Three structure-kind validators sit here too because they share the key-file parsers: passphrase-protected
PuTTY and OpenSSH keys and OpenPGP blocks without the (optional) armor CRC, which can't be checksummed.

Each validator is a small pure function over the candidate token (the whole match, vendor prefix included).
It answers True only when the embedded checksum matches; anything malformed is simply False. None of them
raises, so no exception text can ever carry a secret. Lookup tables are built once at import, and every
validator runs in time linear in the token.

Parameters come from the profile (`checksum: {name: crc32-base62, hash_prefix: true}`); the engine also passes
`prefix=` (the literal that matched) to validators that declare it. Profile parameters are scalars, so lists
(Azure checksum seeds) are comma-separated strings.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import struct
import zlib
from collections.abc import Callable

from . import register

_MASK32 = 0xFFFFFFFF
_B62_GMP = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_LOWER_FIRST = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_B62_ALPHABETS = {"0-9A-Za-z": _B62_GMP, "0-9a-zA-Z": _B62_LOWER_FIRST}
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
# Entra ID client secrets: base 66, digits ordered 1..9,0 (Microsoft's CustomAlphabetEncoder).
_B66_ENTRA = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890.-_~"
_ALNUM = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_B64_STD = _ALNUM | frozenset("+/")
_B64_URL = _ALNUM | frozenset("-_")
_HEX_LOWER = frozenset("0123456789abcdef")
_HEX_UPPER = frozenset("0123456789ABCDEF")

# Exceptions a malformed candidate can provoke in the parsing helpers; turned into a plain False.
_MALFORMED = (ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError, struct.error,
              binascii.Error, UnicodeError)


def _never_raises(func: Callable[..., bool]) -> Callable[..., bool]:
    """A validator answers False for anything malformed; its exceptions must not carry the token anywhere."""

    @functools.wraps(func)
    def wrapper(token, *args, **kwargs) -> bool:
        if not isinstance(token, str):
            return False
        try:
            return bool(func(token, *args, **kwargs))
        except _MALFORMED:
            return False

    return wrapper


def _encode_fixed(n: int, alphabet: str, width: int) -> str:
    """`n` in base len(alphabet), most significant digit first, left-padded with the zero digit to `width`."""
    base = len(alphabet)
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(alphabet[r])
    return "".join(reversed(out)).rjust(width, alphabet[0])


def _split_prefix(token: str, prefix: str, *, last: bool) -> str | None:
    """The vendor prefix of `token`: the literal the engine matched, else the text up to the vendor's `_`."""
    if prefix:
        return prefix if token.startswith(prefix) else None
    cut = token.rfind("_") if last else token.find("_")
    return token[:cut + 1] if cut >= 0 else ""


# --- CRC32 families (GitHub, npm, Vercel, Deno, Apify, Cloudflare, Zuplo, Atlassian, Grafana, GitLab) ---


@register("crc32-base62", "checksum")
@_never_raises
def crc32_base62(token: str, *, prefix: str = "", alphabet: str = "0-9A-Za-z", hash_prefix: bool = False) -> bool:
    """GitHub scheme: last 6 chars = CRC32 of the random part in base62, zero-padded (§2).

    GitHub, npm and Vercel hash the random part only, in `0-9A-Za-z` order; Deno hashes the prefix too;
    Apify hashes the prefix and uses `0-9a-zA-Z`. Padding matters: one token in five starts its checksum
    with `0`, and the leading digit is always 0–4 since 2^32 < 5·62^5.
    """
    digits = _B62_ALPHABETS.get(alphabet)
    head = _split_prefix(token, prefix, last=True)
    if digits is None or head is None or len(token) < len(head) + 7:
        return False
    body, check = token[len(head):-6], token[-6:]
    if not (_ALNUM.issuperset(body) and _ALNUM.issuperset(check)) or check[0] not in "01234":
        return False
    hashed = token[:-6] if hash_prefix else body
    return _encode_fixed(zlib.crc32(hashed.encode("ascii")), digits, 6) == check


@register("crc32-hex", "checksum")
@_never_raises
def crc32_hex(token: str, *, prefix: str = "", hash_prefix: bool = False, separator: str = "",
              byteorder: str = "big", case: str = "lower") -> bool:
    """Last 8 chars = CRC32 as hex (§3): Cloudflare (body only), Zuplo (hex part, `_` separator),
    Atlassian (everything before the checksum, `=` included, upper case), Grafana (`glsa_…` hashed,
    little-endian bytes)."""
    if byteorder not in ("big", "little") or case not in ("lower", "upper") or len(token) < 9:
        return False
    check, rest = token[-8:], token[:-8]
    if not (_HEX_UPPER if case == "upper" else _HEX_LOWER).issuperset(check):
        return False
    if separator:
        if not rest.endswith(separator):
            return False
        rest = rest[:-len(separator)]
    if hash_prefix:
        hashed = rest
    else:
        head = _split_prefix(token, prefix, last=False)
        if head is None or len(rest) <= len(head):
            return False
        hashed = rest[len(head):]
    expected = zlib.crc32(hashed.encode("ascii")).to_bytes(4, byteorder).hex()
    return (expected.upper() if case == "upper" else expected) == check


@register("crc32-base36", "checksum")
@_never_raises
def crc32_base36(token: str, *, width: int = 7) -> bool:
    """GitLab routable tokens: last `width` chars = CRC32 of everything before them, base36 lower (§3 A16)."""
    if not isinstance(width, int) or not 1 <= width < len(token):
        return False
    hashed, check = token[:-width], token[-width:]
    return _encode_fixed(zlib.crc32(hashed.encode("ascii")), _B36, width) == check


# --- Marvin32 (Azure identifiable keys, CASK, Entra ID secrets) ---------------------------------------


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK32


def marvin32(data: bytes, seed: int) -> int:
    """Microsoft's Marvin32 hash (SymCrypt), the 64-bit `hi:lo` result (§4)."""
    lo, hi = seed & _MASK32, (seed >> 32) & _MASK32
    whole = len(data) & ~3
    words = [w for (w,) in struct.iter_unpack("<I", data[:whole])]
    words.append(int.from_bytes(data[whole:] + b"\x80" + b"\x00" * (3 - (len(data) - whole)), "little"))
    for i, w in enumerate(words):
        lo = (lo + w) & _MASK32
        for _ in range(2 if i == len(words) - 1 else 1):
            hi ^= lo
            lo = (_rotl(lo, 20) + hi) & _MASK32
            hi = _rotl(hi, 9) ^ lo
            lo = (_rotl(lo, 27) + hi) & _MASK32
            hi = _rotl(hi, 19)
    return (hi << 32) | lo


def marvin32_checksum(data: bytes, seed: int) -> int:
    """The 32-bit checksum Microsoft embeds in keys: hi XOR lo of Marvin32."""
    h = marvin32(data, seed)
    return (h >> 32) ^ (h & _MASK32)


@functools.lru_cache(maxsize=64)
def _seed_values(seeds: str) -> tuple[int, ...]:
    """`"Send0000,Listen00"` → seeds; each is 8 ASCII characters read big-endian (`Default0` = 0x44656661756C7430)."""
    out = []
    for name in seeds.split(","):
        name = name.strip()
        raw = name.encode("ascii")
        if len(raw) != 8:
            raise ValueError("a Marvin32 seed name has 8 characters")
        out.append(int.from_bytes(raw, "big"))
    return tuple(out)


def _b64decode_canonical(text: str, *, url_safe: bool = False) -> bytes | None:
    """Strict base64 of unpadded `text`; None unless it is the canonical encoding (unused bits zero)."""
    alphabet = _B64_URL if url_safe else _B64_STD
    if not text or len(text) % 4 == 1 or not alphabet.issuperset(text):
        return None
    std = text.translate(_URL_TO_STD) if url_safe else text
    data = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
    if base64.b64encode(data).decode("ascii").rstrip("=") != std:
        return None
    return data


_URL_TO_STD = str.maketrans("-_", "+/")


def _b64decode_padded(text: str) -> bytes | None:
    """Strict, canonical base64 with its `=` padding (as in key files): None for anything else, including
    unused bits set in the last character, so that a changed character always changes the decoded bytes."""
    stripped = text.rstrip("=")
    if len(text) % 4 or len(text) - len(stripped) > 2:
        return None
    return _b64decode_canonical(stripped)


@register("marvin32-identifiable", "checksum")
@_never_raises
def marvin32_identifiable(token: str, *, prefix: str = "", seeds: str = "Default0", url_safe: bool = False) -> bool:
    """Azure "identifiable" keys (§4 A17/A18): base64 bytes whose last 4 are Marvin32(rest, seed) little-endian,
    with the 4-char service signature just before the 6 checksum characters.

    Also enforces what Microsoft's own validator does: the signature bits sit so that the first checksum
    character is A–P (2 spill bits) or A–D (4 spill bits).
    """
    stripped = token.rstrip("=")
    padding = len(token) - len(stripped)
    if len(stripped) < 16 or padding not in (0, -len(stripped) % 4):
        return False
    signature = stripped[-10:-6]
    if prefix and signature != prefix:
        return False
    data = _b64decode_canonical(stripped, url_safe=url_safe)
    if data is None or len(data) < 24:
        return False
    spill = ((len(data) - 3 - 4) * 8) % 6
    if (spill == 2 and stripped[-6] not in "ABCDEFGHIJKLMNOP") or (spill == 4 and stripped[-6] not in "ABCD"):
        return False
    embedded = int.from_bytes(data[-4:], "little")
    body = data[:-4]
    return any(marvin32_checksum(body, seed) == embedded for seed in _seed_values(seeds))


_CASK_SEED = int.from_bytes(b"Default0", "big")


def _ms_base62(raw: bytes) -> str:
    """Base62 (`0-9A-Za-z`) of bytes as one big number, each leading zero byte kept as a `0` (Base62.Net)."""
    zeros = min(len(raw) - len(raw.lstrip(b"\x00")), len(raw) - 1)
    n = int.from_bytes(raw, "big")
    return "0" * zeros + (_encode_fixed(n, _B62_GMP, 1))


@register("marvin32-cask", "checksum")
@_never_raises
def marvin32_cask(token: str) -> bool:
    """Azure common annotated security keys (§4 A19): Marvin32 (seed `Default0`) over the first 60 decoded bytes.

    84-char keys keep the first 4 characters of the checksum written either as base62 or as base64 of its
    little-endian bytes (both occur); 88-char keys carry the full 4 bytes (`…xx==`).
    """
    if len(token) == 88:
        if not token.endswith("==") or not _ALNUM.issuperset(token[:86]) or token[52:57] != "JQQJ9":
            return False
        data = _b64decode_canonical(token[:86])
        return data is not None and marvin32_checksum(data[:60], _CASK_SEED) == int.from_bytes(data[60:], "little")
    if len(token) != 84 or not _ALNUM.issuperset(token) or token[52:57] != "JQQJ9":
        return False
    data = base64.b64decode(token, validate=True)
    checksum = marvin32_checksum(data[:60], _CASK_SEED).to_bytes(4, "little")
    partial = token[80:]
    return (_ms_base62(checksum).startswith(partial)
            or base64.b64encode(checksum).decode("ascii").startswith(partial))


@register("marvin32-base66", "checksum")
@_never_raises
def marvin32_base66(token: str, *, seed: str = "AadPwd00", digits: int = 3) -> bool:
    """Entra ID client secrets (§4 A20): first `digits` characters of Marvin32(all but them) in base 66.

    Only ~18 bits (1 in 287,496): weaker than CRC32, but the `8Q~` keyword and exact shape come first.
    """
    if not isinstance(digits, int) or not 1 <= digits <= 6 or len(token) <= digits:
        return False
    text, check = token[:-digits], token[-digits:]
    value = marvin32_checksum(text.encode("latin-1"), _seed_values(seed)[0])
    return _encode_fixed(value, _B66_ENTRA, 6)[:digits] == check


# --- NATS nkeys: CRC-16/XMODEM ---------------------------------------------------------------------------


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_CRC16 = _crc16_table()


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[((crc >> 8) ^ b) & 0xFF]
    return crc


_B32 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
# nkeys type bytes (PrefixByteAccount=0, Cluster=2<<3, Server=13<<3, Operator=14<<3, User=20<<3, Curve=23<<3).
_NKEY_SEED_TYPES = frozenset({0, 16, 104, 112, 160, 184})


@register("crc16-nkey", "checksum")
@_never_raises
def crc16_nkey(token: str) -> bool:
    """NATS nkey seeds (§5 A21): base32 of [seed prefix, type, 32-byte seed, CRC-16/XMODEM little-endian]."""
    if len(token) != 58 or not _B32.issuperset(token):
        return False
    data = base64.b32decode(token + "=" * 6)
    if len(data) != 36 or base64.b32encode(data).decode("ascii").rstrip("=") != token:
        return False
    b0, b1 = data[0], data[1]
    if b0 >> 3 != 18 or b1 & 7:  # 18 << 3 is nkeys' PrefixByteSeed ("S")
        return False
    if (((b0 & 7) << 5) | (b1 >> 3)) not in _NKEY_SEED_TYPES:
        return False
    return crc16_xmodem(data[:34]) == int.from_bytes(data[34:], "little")


# --- bech32 (age identities, Nostr nsec) -----------------------------------------------------------------

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_MAP = {c: i for i, c in enumerate(_BECH32_CHARSET)}
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# XOR of the generator terms selected by each possible 5-bit top: one lookup per character instead of five tests.
_BECH32_TOP = tuple(
    functools.reduce(lambda acc, i: acc ^ (_BECH32_GEN[i] if (top >> i) & 1 else 0), range(5), 0) for top in range(32)
)


def _bech32_polymod(values) -> int:
    chk = 1
    for v in values:
        chk = (((chk & 0x1FFFFFF) << 5) ^ v) ^ _BECH32_TOP[chk >> 25]
    return chk


def _bech32_hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits_5_to_8(values) -> bytes | None:
    acc = bits = 0
    out = bytearray()
    for v in values:
        acc = (acc << 5) | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if bits >= 5 or (acc & ((1 << bits) - 1)):
        return None  # non-zero or excess padding: not a canonical encoding
    return bytes(out)


def bech32_decode(text: str) -> tuple[str, list[int]] | None:
    """(hrp, 5-bit data values without the checksum) when `text` is valid BIP-173 bech32, else None.

    No 90-character limit: age identities are longer by design.
    """
    if text != text.lower() and text != text.upper():
        return None
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or len(text) - sep - 1 < 6:
        return None
    hrp, data_part = text[:sep], text[sep + 1:]
    if any(not 33 <= ord(c) <= 126 for c in hrp) or any(c not in _BECH32_MAP for c in data_part):
        return None
    values = [_BECH32_MAP[c] for c in data_part]
    if _bech32_polymod(_bech32_hrp_expand(hrp) + values) != 1:
        return None
    return hrp, values[:-6]


@register("bech32", "checksum")
@_never_raises
def bech32(token: str, *, data_bytes: int = 32) -> bool:
    """BIP-173 bech32 (not bech32m) over the whole string, carrying exactly `data_bytes` bytes (§5 A22/A23)."""
    decoded = bech32_decode(token)
    if decoded is None:
        return False
    payload = _convert_bits_5_to_8(decoded[1])
    return payload is not None and len(payload) == data_bytes


# --- Base58Check (BIP-32 extended private keys) -----------------------------------------------------------

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_MAP = {c: i for i, c in enumerate(_B58)}
_BIP32_PRIVATE_VERSIONS = {"xprv": 0x0488ADE4, "yprv": 0x049D7878, "zprv": 0x04B2430C, "tprv": 0x04358394}
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        n = n * 58 + _B58_MAP[c]
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return b"\x00" * (len(text) - len(text.lstrip("1"))) + raw


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@register("bip32-base58check", "checksum")
@_never_raises
def bip32_base58check(token: str, *, prefix: str = "") -> bool:
    """BIP-32 extended private keys (§5 A25): Base58Check (double SHA-256, 4 bytes) of the 78-byte payload,
    with a private-key version, the 0x00 private-key marker and a scalar in [1, n)."""
    raw = b58decode(token)
    if len(raw) != 82:
        return False
    payload, check = raw[:78], raw[78:]
    if _sha256d(payload)[:4] != check:
        return False
    version = int.from_bytes(payload[:4], "big")
    if prefix and _BIP32_PRIVATE_VERSIONS.get(prefix) != version:
        return False
    if version not in _BIP32_PRIVATE_VERSIONS.values() or payload[45] != 0:
        return False
    return 0 < int.from_bytes(payload[46:], "big") < _SECP256K1_N


# --- Armored key files: OpenPGP, PuTTY, OpenSSH -------------------------------------------------------------

_ESCAPED_NEWLINE = re.compile(r"\\r\\n|\\n|\\r")


def _lines(text: str) -> list[str]:
    """Lines of a key file, whether its newlines are real or JSON/shell-escaped (`\\n`), stripped."""
    return [line.strip() for line in _ESCAPED_NEWLINE.sub("\n", text).splitlines()]


def _crc24_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24 = _crc24_table()


def crc24(data: bytes) -> int:
    """OpenPGP armor checksum (RFC 4880 §6.1): init 0xB704CE, polynomial 0x1864CFB."""
    crc = 0xB704CE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24[((crc >> 16) ^ b) & 0xFF]
    return crc


_PGP_BEGIN = "-----BEGIN PGP PRIVATE KEY BLOCK-----"
_PGP_END = "-----END PGP PRIVATE KEY BLOCK-----"
_ARMOR_HEADER = re.compile(r"[A-Za-z][A-Za-z0-9-]*: ")
_B64_LINE = re.compile(r"[A-Za-z0-9+/=]*")


def _parse_pgp_armor(text: str) -> tuple[bytes, str | None] | None:
    """(decoded data, CRC text or None) of an armored private key block; None when it is not well formed."""
    lines = _lines(text)
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < 3 or lines[0] != _PGP_BEGIN or lines[-1] != _PGP_END:
        return None
    body = lines[1:-1]
    i = 0
    while i < len(body) and _ARMOR_HEADER.match(body[i]):
        i += 1
    body = body[i:]
    crc_text = None
    if body and body[-1].startswith("=") and len(body[-1]) == 5:
        crc_text = body.pop()[1:]
    if not all(_B64_LINE.fullmatch(line) for line in body):
        return None
    data = _b64decode_padded("".join(body))
    return None if data is None else (data, crc_text)


def _pgp_secret_key_packet(data: bytes) -> bool:
    """The first packet is a Secret-Key packet (tag 5) of a known version whose body fits in the data."""
    if len(data) < 8:
        return False
    first = data[0]
    if first == 0xC5:  # new format, tag 5
        l1 = data[1]
        if l1 < 192:
            length, head = l1, 2
        elif l1 < 224:
            length, head = ((l1 - 192) << 8) + data[2] + 192, 3
        elif l1 == 255:
            length, head = int.from_bytes(data[2:6], "big"), 6
        else:
            return False  # partial body lengths are not allowed for key packets
    elif 0x94 <= first <= 0x97:  # old format, tag 5
        ltype = first & 3
        if ltype == 3:
            length, head = len(data) - 1, 1
        else:
            size = 1 << ltype
            length, head = int.from_bytes(data[1:1 + size], "big"), 1 + size
    else:
        return False
    return 6 <= length <= len(data) - head and data[head] in (2, 3, 4, 5, 6)


@register("openpgp-crc24", "checksum")
@_never_raises
def openpgp_crc24(token: str) -> bool:
    """OpenPGP private key block (§5 A27): the armor's `=XXXX` CRC-24 matches and the data opens with a
    Secret-Key packet. A block without a CRC line is left to `openpgp-secret-key`."""
    parsed = _parse_pgp_armor(token)
    if parsed is None or parsed[1] is None:
        return False
    data, crc_text = parsed
    crc = _b64decode_canonical(crc_text)
    return crc is not None and len(crc) == 3 and int.from_bytes(crc, "big") == crc24(data) and _pgp_secret_key_packet(data)


@register("openpgp-secret-key", "structure")
@_never_raises
def openpgp_secret_key(token: str) -> bool:
    """OpenPGP private key block without the optional CRC line (RFC 9580 drops it): structure only."""
    parsed = _parse_pgp_armor(token)
    return parsed is not None and parsed[1] is None and _pgp_secret_key_packet(parsed[0])


def _ssh_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """One SSH wire-format string (uint32 big-endian length + bytes) at `pos`; raises ValueError past the end."""
    if pos + 4 > len(data):
        raise ValueError("truncated")
    n = int.from_bytes(data[pos:pos + 4], "big")
    end = pos + 4 + n
    if end > len(data):
        raise ValueError("truncated")
    return data[pos + 4:end], end


def _ssh(s: bytes) -> bytes:
    return len(s).to_bytes(4, "big") + s


_PUTTY_HEAD = re.compile(r"PuTTY-User-Key-File-([23]): ([\x21-\x7e]{1,64})")
_PUTTY_KDF_KEYS = ("Key-Derivation", "Argon2-Memory", "Argon2-Passes", "Argon2-Parallelism", "Argon2-Salt")
_PUTTY_V2_MAC_KEY = hashlib.sha1(b"putty-private-key-file-mac-key").digest()


def _parse_ppk(text: str) -> dict | None:
    """The fields of a .ppk file (v2 or v3): header values, decoded public and private blobs, MAC bytes."""
    lines = [line for line in _lines(text) if line]
    if not lines:
        return None
    head = _PUTTY_HEAD.fullmatch(lines[0])
    if head is None:
        return None
    out = {"version": int(head.group(1)), "algorithm": head.group(2)}
    pos = 1

    def field(name: str) -> str:
        nonlocal pos
        key, sep, value = lines[pos].partition(": ")
        if key != name or not sep:
            raise ValueError("unexpected line")
        pos += 1
        return value

    def blob(count_field: str) -> bytes:
        nonlocal pos
        count = int(field(count_field))
        if not 1 <= count <= 1000:
            raise ValueError("bad line count")
        chunk = lines[pos:pos + count]
        if len(chunk) != count or not all(_B64_LINE.fullmatch(line) for line in chunk):
            raise ValueError("bad base64 lines")
        pos += count
        data = _b64decode_padded("".join(chunk))
        if data is None:
            raise ValueError("not canonical base64")
        return data

    out["encryption"] = field("Encryption")
    out["comment"] = field("Comment")
    out["public"] = blob("Public-Lines")
    kdf = {}
    while pos < len(lines) and lines[pos].partition(": ")[0] in _PUTTY_KDF_KEYS:
        key, _, value = lines[pos].partition(": ")
        kdf[key] = value
        pos += 1
    out["kdf"] = kdf
    out["private"] = blob("Private-Lines")
    mac = field("Private-MAC")
    if pos != len(lines) or len(mac) % 2 or not _HEX_LOWER.issuperset(mac):  # PuTTY writes lower case
        return None
    out["mac"] = bytes.fromhex(mac)
    return out


def _ppk_mac_input(ppk: dict, comment: bytes) -> bytes:
    return b"".join(_ssh(x) for x in (ppk["algorithm"].encode("ascii"), ppk["encryption"].encode("ascii"),
                                      comment, ppk["public"], ppk["private"]))


def _text_bytes(text: str) -> list[bytes]:
    """The bytes a text field may have had on disk: latin-1 (how the engine decodes) or UTF-8."""
    out = []
    for codec in ("latin-1", "utf-8"):
        try:
            raw = text.encode(codec)
        except UnicodeEncodeError:
            continue
        if raw not in out:
            out.append(raw)
    return out


@register("putty-mac", "checksum")
@_never_raises
def putty_mac(token: str) -> bool:
    """Unencrypted PuTTY .ppk (§5 A28): `Private-MAC` = HMAC-SHA-256 with an empty key (v3) or HMAC-SHA-1 keyed
    with SHA-1("putty-private-key-file-mac-key") (v2) over algorithm, encryption, comment and both blobs.
    Encrypted files need the passphrase; `putty-encrypted` checks their structure."""
    ppk = _parse_ppk(token)
    if ppk is None or ppk["encryption"] != "none" or ppk["kdf"]:
        return False
    if ppk["version"] == 3:
        key, digest, mac_len = b"", hashlib.sha256, 32
    else:
        key, digest, mac_len = _PUTTY_V2_MAC_KEY, hashlib.sha1, 20
    if len(ppk["mac"]) != mac_len:
        return False
    return any(hmac.compare_digest(hmac.new(key, _ppk_mac_input(ppk, c), digest).digest(), ppk["mac"])
               for c in _text_bytes(ppk["comment"]))


_HEX_RE = re.compile(r"[0-9a-f]{2,128}")


@register("putty-encrypted", "structure")
@_never_raises
def putty_encrypted(token: str) -> bool:
    """Passphrase-protected PuTTY .ppk: its MAC can't be checked, so accept it on structure — the public blob
    names the header's algorithm, the private blob is whole AES blocks, v3 carries its Argon2 parameters."""
    ppk = _parse_ppk(token)
    if ppk is None or ppk["encryption"] != "aes256-cbc" or len(ppk["private"]) % 16:
        return False
    algorithm, _ = _ssh_string(ppk["public"], 0)
    if algorithm != ppk["algorithm"].encode("ascii"):
        return False
    if ppk["version"] == 2:
        return not ppk["kdf"] and len(ppk["mac"]) == 20
    kdf = ppk["kdf"]
    return (len(ppk["mac"]) == 32 and set(kdf) == set(_PUTTY_KDF_KEYS)
            and kdf["Key-Derivation"] in ("Argon2id", "Argon2i", "Argon2d")
            and all(kdf[k].isdigit() for k in _PUTTY_KDF_KEYS[1:4])
            and _HEX_RE.fullmatch(kdf["Argon2-Salt"]) is not None)


_SSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_SSH_END = "-----END OPENSSH PRIVATE KEY-----"
_SSH_MAGIC = b"openssh-key-v1\x00"


def _parse_openssh(text: str) -> dict | None:
    """The openssh-key-v1 container: cipher, kdf, kdf options, public keys, private section, trailing bytes."""
    lines = [line for line in _lines(text) if line]
    if len(lines) < 3 or lines[0] != _SSH_BEGIN or lines[-1] != _SSH_END:
        return None
    body = lines[1:-1]
    if not all(_B64_LINE.fullmatch(line) for line in body):
        return None
    data = _b64decode_padded("".join(body))
    if data is None or not data.startswith(_SSH_MAGIC):
        return None
    pos = len(_SSH_MAGIC)
    cipher, pos = _ssh_string(data, pos)
    kdf, pos = _ssh_string(data, pos)
    kdf_options, pos = _ssh_string(data, pos)
    count = int.from_bytes(data[pos:pos + 4], "big")
    pos += 4
    if not 1 <= count <= 64:
        return None
    public = []
    for _ in range(count):
        key, pos = _ssh_string(data, pos)
        public.append(key)
    private, pos = _ssh_string(data, pos)
    return {"cipher": cipher, "kdf": kdf, "kdf_options": kdf_options, "public": public, "private": private,
            "trailing": len(data) - pos}


@register("openssh-checkint", "checksum")
@_never_raises
def openssh_checkint(token: str) -> bool:
    """Unencrypted OpenSSH private key (§5 A29): the private section opens with two equal random 32-bit
    check-ints (a 2^-32 self-check) and its first key names the same type as the public key. This guards
    the container, not every byte: unlike a CRC, the key material itself is not covered."""
    key = _parse_openssh(token)
    if key is None or key["cipher"] != b"none" or key["kdf"] != b"none" or key["kdf_options"] or key["trailing"]:
        return False
    private = key["private"]
    if len(private) < 12 or len(private) % 8 or private[0:4] != private[4:8]:
        return False
    key_type, _ = _ssh_string(private, 8)
    public_type, _ = _ssh_string(key["public"][0], 0)
    return key_type == public_type


@register("openssh-encrypted", "structure")
@_never_raises
def openssh_encrypted(token: str) -> bool:
    """Passphrase-protected OpenSSH private key: bcrypt KDF options (salt, rounds), a named public key and a
    private section of whole cipher blocks (an AEAD tag may follow). Decryption needs the passphrase."""
    key = _parse_openssh(token)
    if key is None or key["cipher"] in (b"", b"none") or key["kdf"] != b"bcrypt":
        return False
    salt, pos = _ssh_string(key["kdf_options"], 0)
    if not 8 <= len(salt) <= 64 or len(key["kdf_options"]) != pos + 4:
        return False
    public_type, _ = _ssh_string(key["public"][0], 0)
    if not public_type or not public_type.isascii():
        return False
    return len(key["private"]) > 0 and len(key["private"]) % 8 == 0 and key["trailing"] in (0, 16)

"""Fresh, valid Tier-A tokens from a `random.Random`: one generator per profile entry id.

The ids are the Tier-A entries of the built-in profile plus three structure-only companions (passphrase-protected
PuTTY/OpenSSH keys, OpenPGP blocks without the armor CRC; their entries sit in the Tier-B section of the profile).

`GENERATORS[entry_id](rng)` returns a token that entry must find. The generators build each format the way its
issuer does (docs/token-formats.md, tier A) and compute checksums with their own small implementations — not the
validators' code — so a token that validates is independent evidence that both sides agree on the algorithm.
Property tests (here and elsewhere) feed them seeded generators: the output is a function of the seed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import string
import zlib
from collections.abc import Callable

ALNUM = string.digits + string.ascii_uppercase + string.ascii_lowercase  # also base62 "GMP" order
ALNUM_LOWER_FIRST = string.digits + string.ascii_lowercase + string.ascii_uppercase
B64_STD = string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/"
B64_URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
B36 = string.digits + string.ascii_lowercase
ENTRA_ALPHABET = string.ascii_letters + string.digits + "_~.-"
ENTRA_B66 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890.-_~"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def encode_base(n: int, alphabet: str, width: int) -> str:
    digits = []
    while n:
        n, r = divmod(n, len(alphabet))
        digits.append(alphabet[r])
    return "".join(reversed(digits)).rjust(width, alphabet[0])


def crc32(text: str) -> int:
    return zlib.crc32(text.encode("ascii"))


# --- CRC32 families -------------------------------------------------------------------------------------


def base62_token(prefix: str, body_len: int, *, hash_prefix: bool = False, alphabet: str = ALNUM) -> Callable:
    """GitHub/npm/Vercel (body hashed), Deno and Apify (prefix hashed): body + 6-char zero-padded CRC32."""

    def make(rng: random.Random, prefix_choice: str | None = None) -> str:
        p = prefix_choice or (rng.choice(prefix) if isinstance(prefix, tuple) else prefix)
        body = rand(rng, ALNUM, body_len)
        return p + body + encode_base(crc32(p + body if hash_prefix else body), alphabet, 6)

    return make


def cloudflare(prefix: str) -> Callable:
    def make(rng: random.Random) -> str:
        body = rand(rng, ALNUM, 40)
        return prefix + body + f"{crc32(body):08x}"

    return make


def zuplo(rng: random.Random) -> str:
    key = rand(rng, "0123456789abcdef", 32)
    return f"zpka_{key}_{crc32(key):08x}"


def atlassian(head: str) -> Callable:
    """`ATATT3xFfGF0…=CRC`: 192 chars, CRC32 (upper hex) of everything before the last 8 (§3 A12–A13)."""

    def make(rng: random.Random) -> str:
        text = head + rand(rng, ALNUM + "_-", 192 - 9 - len(head)) + "="
        return text + f"{crc32(text):08X}"

    return make


def bitbucket_app_password(rng: random.Random) -> str:
    text = "ATBB" + rand(rng, ALNUM, 24)
    return text + f"{crc32(text):08X}"


def grafana(rng: random.Random) -> str:
    text = "glsa_" + rand(rng, ALNUM, 32)
    return text + "_" + crc32(text).to_bytes(4, "little").hex()


def gitlab_routable(rng: random.Random) -> str:
    """GitLab's RoutableToken generator: base64url(16 random bytes + routing payload + its length),
    `.01.`, payload length (base36, 2), then CRC32 of all of it in base36 width 7 (§3 A16)."""
    routing = {"o": encode_base(rng.randrange(1, 10**7), B36, 1), "u": encode_base(rng.randrange(1, 10**8), B36, 1)}
    if rng.random() < 0.5:
        routing["c"] = encode_base(rng.randrange(1, 50), B36, 1)
    payload = "\n".join(f"{k}:{v}" for k, v in sorted(routing.items())).encode()
    encoded = base64.urlsafe_b64encode(rng.randbytes(16) + payload + bytes([len(payload)])).decode().rstrip("=")
    version = ".01" if rng.random() < 0.7 else ""  # the unversioned shape also exists (osv-scalibr vector)
    text = f"glpat-{encoded}{version}.{encode_base(len(encoded), B36, 2)}"
    return text + encode_base(crc32(text), B36, 7)


# --- Marvin32 families (written out independently of the validators) --------------------------------------


def marvin32_checksum(data: bytes, seed: int) -> int:
    """Marvin32 (hi ^ lo): a second, straightforward implementation for cross-checking."""

    def rotl(x: int, n: int) -> int:
        return ((x << n) | (x >> (32 - n))) & 0xFFFFFFFF

    def block(lo: int, hi: int) -> tuple[int, int]:
        hi ^= lo
        lo = rotl(lo, 20)
        lo = (lo + hi) & 0xFFFFFFFF
        hi = rotl(hi, 9)
        hi ^= lo
        lo = rotl(lo, 27)
        lo = (lo + hi) & 0xFFFFFFFF
        hi = rotl(hi, 19)
        return lo, hi

    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    i = 0
    while len(data) - i >= 4:
        lo = (lo + int.from_bytes(data[i:i + 4], "little")) & 0xFFFFFFFF
        lo, hi = block(lo, hi)
        i += 4
    rest = data[i:]  # 0-3 bytes, then the 0x80 end marker, as one little-endian word
    lo = (lo + ((0x80 << (8 * len(rest))) | int.from_bytes(rest, "little"))) & 0xFFFFFFFF
    lo, hi = block(lo, hi)
    lo, hi = block(lo, hi)
    return lo ^ hi


def seed(name: str) -> int:
    return int.from_bytes(name.encode("ascii"), "big")


AZURE_BEFORE = {64: 76, 32: 33, 39: 42, 40: 44}  # random characters before the signature, by key size


def azure_identifiable(signature: str, seeds: tuple[str, ...], size: int, *, url_safe: bool = False) -> Callable:
    """Microsoft HIS v1 keys: random text + signature, zero bits up to a byte boundary, Marvin32 LE appended."""

    def make(rng: random.Random) -> str:
        alphabet = B64_URL if url_safe else B64_STD
        text = rand(rng, alphabet, AZURE_BEFORE[size]) + signature
        std = text.translate(str.maketrans("-_", "+/"))
        n = 0
        for c in std:
            n = (n << 6) | B64_STD.index(c)
        spare = (size - 4) * 8 - 6 * len(std)
        body = (n << spare).to_bytes(size - 4, "big")
        checksum = marvin32_checksum(body, seed(rng.choice(seeds)))
        key = base64.b64encode(body + checksum.to_bytes(4, "little")).decode()
        if url_safe:
            key = key.translate(str.maketrans("+/", "-_"))
        assert key.startswith(text)
        return key if rng.random() < 0.8 else key.rstrip("=")

    return make


def ms_base62(raw: bytes) -> str:
    """Base62.Net's byte-array encoding: the bytes as one big number, leading zero bytes kept as `0`s."""
    zeros = 0
    while zeros < len(raw) - 1 and raw[zeros] == 0:
        zeros += 1
    return "0" * zeros + encode_base(int.from_bytes(raw, "big"), ALNUM, 1)


CASK_PROVIDERS = ("ACOG", "AZDO", "AZMP", "AZCS", "AZAC", "AZEG", "AZFR", "AZMR", "msql")


def azure_cask(rng: random.Random) -> str:
    """Common annotated security key: 52 random, JQQJ99, date, reserved, provider, 4 checksum chars (or 88)."""
    while True:
        text = (rand(rng, ALNUM, 52) + "JQQJ9" + rng.choice("9D") + rng.choice("ABC") + rng.choice("ABCDEFGHIJKL")
                + rand(rng, ALNUM, 16) + rng.choice(CASK_PROVIDERS))
        data = base64.b64decode(text)
        checksum = marvin32_checksum(data, seed("Default0")).to_bytes(4, "little")
        form = rng.choice(("base62", "base64", "long"))
        if form == "long":
            key = base64.b64encode(data + checksum).decode()
            if key[:86].isalnum():
                return key
        else:
            part = (ms_base62(checksum) if form == "base62" else base64.b64encode(checksum).decode())[:4]
            if len(part) == 4 and part.isalnum():
                return text + part


def entra_secret(rng: random.Random) -> str:
    text = rand(rng, ENTRA_ALPHABET, 3) + "8Q~" + rand(rng, ENTRA_ALPHABET, 31)
    return text + encode_base(marvin32_checksum(text.encode(), seed("AadPwd00")), ENTRA_B66, 6)[:3]


# --- NATS, bech32, Base58Check -------------------------------------------------------------------------------


def crc16_xmodem(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


NKEY_TYPES = {"U": 20 << 3, "A": 0, "O": 14 << 3, "N": 13 << 3, "C": 2 << 3, "X": 23 << 3}


def nats_seed(rng: random.Random) -> str:
    kind = NKEY_TYPES[rng.choice(sorted(NKEY_TYPES))]
    raw = bytes([(18 << 3) | (kind >> 5), (kind & 31) << 3]) + rng.randbytes(32)
    raw += crc16_xmodem(raw).to_bytes(2, "little")
    return base64.b32encode(raw).decode().rstrip("=")


def bech32_encode(hrp: str, data: bytes) -> str:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)

    def polymod(values) -> int:
        chk = 1
        for v in values:
            b = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ v
            for i in range(5):
                chk ^= gen[i] if (b >> i) & 1 else 0
        return chk

    acc, bits, five = 0, 0, []
    for byte in data:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            five.append((acc >> bits) & 31)
    if bits:
        five.append((acc << (5 - bits)) & 31)
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    mod = polymod(expanded + five + [0] * 6) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(BECH32[v] for v in five + checksum)


def age_secret_key(rng: random.Random) -> str:
    hrp = "age-secret-key-pq-" if rng.random() < 0.3 else "age-secret-key-"
    return bech32_encode(hrp, rng.randbytes(32)).upper()


def nostr_nsec(rng: random.Random) -> str:
    return bech32_encode("nsec", rng.randbytes(32))


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
BIP32_VERSIONS = {"xprv": "0488ADE4", "yprv": "049D7878", "zprv": "04B2430C", "tprv": "04358394"}


def b58check_encode(payload: bytes) -> str:
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(raw, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(raw) - len(raw.lstrip(b"\x00"))) + out


def bip32_xprv(rng: random.Random) -> str:
    version = bytes.fromhex(BIP32_VERSIONS[rng.choice(sorted(BIP32_VERSIONS))])
    depth = rng.randrange(0, 6)
    parent = rng.randbytes(4) if depth else b"\x00" * 4
    child = rng.randrange(0, 2**32).to_bytes(4, "big") if depth else b"\x00" * 4
    key = rng.randrange(1, SECP256K1_N).to_bytes(32, "big")
    return b58check_encode(version + bytes([depth]) + parent + child + rng.randbytes(32) + b"\x00" + key)


# --- Armored key files -----------------------------------------------------------------------------------------


def crc24(data: bytes) -> int:
    crc = 0xB704CE
    for b in data:
        crc ^= b << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def wrap(text: str, width: int) -> list[str]:
    return [text[i:i + width] for i in range(0, len(text), width)]


def _mpi(raw: bytes) -> bytes:
    raw = raw.lstrip(b"\x00") or b"\x01"
    return int.from_bytes(raw, "big").bit_length().to_bytes(2, "big") + raw


def pgp_secret_key_data(rng: random.Random) -> bytes:
    """A v4 EdDSA (legacy) Secret-Key packet, unprotected (with its 2-octet checksum), then a User ID packet."""
    oid = bytes.fromhex("2B06010401DA470F01")
    public = (b"\x04" + rng.randrange(1_400_000_000, 1_800_000_000).to_bytes(4, "big") + bytes([22, len(oid)])
              + oid + _mpi(b"\x40" + rng.randbytes(32)))
    secret = _mpi(rng.randbytes(32))
    body = public + b"\x00" + secret + (sum(secret) % 65536).to_bytes(2, "big")
    if rng.random() < 0.5:
        packet = bytes([0xC5, len(body)]) + body  # new format, one-octet length
    else:
        packet = bytes([0x95]) + len(body).to_bytes(2, "big") + body  # old format, two-octet length
    uid = f"Test Key {rng.randrange(10**6)} <key{rng.randrange(10**6)}@example.com>".encode()
    return packet + bytes([0xCD, len(uid)]) + uid


def pgp_armor(data: bytes, rng: random.Random, *, with_crc: bool) -> str:
    lines = ["-----BEGIN PGP PRIVATE KEY BLOCK-----"]
    if rng.random() < 0.5:
        lines.append("Comment: dlproxy test key")
    lines.append("")
    lines += wrap(base64.b64encode(data).decode(), 64)
    if with_crc:
        lines.append("=" + base64.b64encode(crc24(data).to_bytes(3, "big")).decode())
    lines.append("-----END PGP PRIVATE KEY BLOCK-----")
    return "\n".join(lines)


def pgp_private_key(rng: random.Random) -> str:
    return pgp_armor(pgp_secret_key_data(rng), rng, with_crc=True)


def pgp_private_key_no_crc(rng: random.Random) -> str:
    return pgp_armor(pgp_secret_key_data(rng), rng, with_crc=False)


def ssh_string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _ppk_text(version: int, encryption: str, comment: str, public: bytes, private: bytes, kdf: list[str],
              mac: bytes, algorithm: str = "ssh-ed25519") -> str:
    pub_lines = wrap(base64.b64encode(public).decode(), 64)
    priv_lines = wrap(base64.b64encode(private).decode(), 64)
    return "\n".join([f"PuTTY-User-Key-File-{version}: {algorithm}", f"Encryption: {encryption}",
                      f"Comment: {comment}", f"Public-Lines: {len(pub_lines)}", *pub_lines, *kdf,
                      f"Private-Lines: {len(priv_lines)}", *priv_lines, f"Private-MAC: {mac.hex()}"])


def putty_private_key(rng: random.Random) -> str:
    """Unencrypted .ppk, v3 (HMAC-SHA-256, empty key) or v2 (HMAC-SHA-1, key SHA-1 of the fixed string)."""
    version = rng.choice((2, 3))
    comment = f"ed25519-key-2024{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    public = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    private = ssh_string(rng.randbytes(32))
    mac_input = b"".join(ssh_string(x) for x in (b"ssh-ed25519", b"none", comment.encode(), public, private))
    if version == 3:
        mac = hmac.new(b"", mac_input, hashlib.sha256).digest()
    else:
        mac = hmac.new(hashlib.sha1(b"putty-private-key-file-mac-key").digest(), mac_input, hashlib.sha1).digest()
    return _ppk_text(version, "none", comment, public, private, [], mac)


def putty_private_key_encrypted(rng: random.Random) -> str:
    """Passphrase-protected .ppk: aes256-cbc private blob (v3 with Argon2 parameters); the MAC is opaque."""
    version = rng.choice((2, 3))
    public = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    private = rng.randbytes(16 * rng.randrange(2, 5))
    kdf = []
    if version == 3:
        kdf = ["Key-Derivation: Argon2id", "Argon2-Memory: 8192", f"Argon2-Passes: {rng.randrange(8, 30)}",
               "Argon2-Parallelism: 1", f"Argon2-Salt: {rng.randbytes(16).hex()}"]
    mac = rng.randbytes(32 if version == 3 else 20)
    return _ppk_text(version, "aes256-cbc", "ed25519-key-20240101", public, private, kdf, mac)


def _openssh_armor(data: bytes) -> str:
    return "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *wrap(base64.b64encode(data).decode(), 70),
                      "-----END OPENSSH PRIVATE KEY-----"])


def openssh_private_key(rng: random.Random) -> str:
    """openssh-key-v1, cipher none: equal check-ints, the ed25519 key, comment, padding 1, 2, 3…"""
    pub = rng.randbytes(32)
    public = ssh_string(b"ssh-ed25519") + ssh_string(pub)
    check = rng.randbytes(4)
    private = (check + check + ssh_string(b"ssh-ed25519") + ssh_string(pub) + ssh_string(rng.randbytes(32) + pub)
               + ssh_string(f"user{rng.randrange(1000)}@host".encode()))
    private += bytes(range(1, 1 + (-len(private) % 8)))
    data = (b"openssh-key-v1\x00" + ssh_string(b"none") + ssh_string(b"none") + ssh_string(b"")
            + (1).to_bytes(4, "big") + ssh_string(public) + ssh_string(private))
    return _openssh_armor(data)


def openssh_private_key_encrypted(rng: random.Random) -> str:
    """openssh-key-v1 with aes256-ctr and bcrypt: the private section is ciphertext of whole blocks."""
    public = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    options = ssh_string(rng.randbytes(16)) + (16).to_bytes(4, "big")
    data = (b"openssh-key-v1\x00" + ssh_string(b"aes256-ctr") + ssh_string(b"bcrypt") + ssh_string(options)
            + (1).to_bytes(4, "big") + ssh_string(public) + ssh_string(rng.randbytes(16 * rng.randrange(6, 10))))
    return _openssh_armor(data)


# --- the table ---------------------------------------------------------------------------------------------------

MESSAGING_SEEDS = ("Send0000", "Listen00", "Manage00", "System00", "Unknown0")

GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "github-classic-pat": base62_token("ghp_", 30),
    "github-oauth-token": base62_token("gho_", 30),
    "github-app-user-token": base62_token("ghu_", 30),
    "github-app-installation-token": base62_token("ghs_", 30),
    "github-app-refresh-token": base62_token("ghr_", 70),
    "npm-access-token": base62_token("npm_", 30),
    "vercel-token": base62_token(("vcp_", "vci_", "vca_", "vcr_", "vck_"), 50),
    "deno-deploy-token": base62_token(("ddp_", "ddo_"), 30, hash_prefix=True),
    "apify-api-token": base62_token("apify_api_", 30, hash_prefix=True, alphabet=ALNUM_LOWER_FIRST),
    "cloudflare-global-api-key": cloudflare("cfk_"),
    "cloudflare-user-api-token": cloudflare("cfut_"),
    "cloudflare-account-api-token": cloudflare("cfat_"),
    "zuplo-api-key": zuplo,
    "atlassian-api-token": atlassian("ATATT3xFfGF0"),
    "atlassian-access-token": atlassian("ATCTT3xFfGN0"),
    "bitbucket-app-password": bitbucket_app_password,
    "grafana-service-account-token": grafana,
    "gitlab-routable-token": gitlab_routable,
    "azure-storage-account-key": azure_identifiable("+ASt", ("Default0",), 64),
    "azure-batch-key": azure_identifiable("+ABa", ("AbAcct00",), 64),
    "azure-ml-classic-key": azure_identifiable("+AMC", ("Classic0",), 64),
    "azure-cosmosdb-key": azure_identifiable("ACDb", ("MastRO00", "MastRW00", "SystRO00", "SystRW00", "SysAll00",
                                                      "Resour00", "Encryp00"), 64),
    "azure-apim-key": azure_identifiable("APIM", ("Tenant00", "IoTHub00", "Gatewy00", "GitKey00"), 64),
    "azure-service-bus-key": azure_identifiable("+ASb", MESSAGING_SEEDS, 32),
    "azure-event-hubs-key": azure_identifiable("+AEh", MESSAGING_SEEDS, 32),
    "azure-relay-key": azure_identifiable("+ARm", MESSAGING_SEEDS, 32),
    "azure-iot-key": azure_identifiable("AIoT", ("IoTHub00", "DpsKey00", "Device00"), 32),
    "azure-cache-redis-key": azure_identifiable("AzCa", ("Access00",), 32),
    "azure-search-key": azure_identifiable("AzSe", ("Query000", "PAdmin00"), 39),
    "azure-container-registry-key": azure_identifiable("+ACR", ("ACRDflt0",), 39),
    "azure-functions-key": azure_identifiable("AzFu", ("Functi00", "System00", "Master00"), 40, url_safe=True),
    "azure-sql-key": azure_identifiable("+SQL", ("UsrPwd00",), 32),
    "azure-cask-key": azure_cask,
    "entra-client-secret": entra_secret,
    "nats-nkey-seed": nats_seed,
    "age-secret-key": age_secret_key,
    "nostr-private-key": nostr_nsec,
    "bip32-extended-private-key": bip32_xprv,
    "pgp-private-key": pgp_private_key,
    "pgp-private-key-no-crc": pgp_private_key_no_crc,
    "putty-private-key": putty_private_key,
    "putty-private-key-encrypted": putty_private_key_encrypted,
    "openssh-private-key": openssh_private_key,
    "openssh-private-key-encrypted": openssh_private_key_encrypted,
}

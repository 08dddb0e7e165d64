"""Test tokens that need nothing but zlib: a real GitHub-format generator and the public revoked vector."""

from __future__ import annotations

import random
import zlib

GMP = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUBLIC_GHP = "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"  # revoked, published for inspection (docs/token-formats.md A1)


def base62(n: int, width: int = 6) -> str:
    digits = ""
    while n:
        n, r = divmod(n, 62)
        digits = GMP[r] + digits
    return digits.rjust(width, "0")


def github_token(prefix: str, seed: int | str = 0) -> str:
    """A valid GitHub-scheme token: prefix + 30 chars drawn by random.Random(seed) + base62(CRC32(body)), width 6."""
    rng = random.Random(seed)
    body = "".join(rng.choice(GMP) for _ in range(30))
    return prefix + body + base62(zlib.crc32(body.encode()))


def make_ghp(seed: int | str = 0) -> str:
    """A fresh, valid classic GitHub PAT (CRC32 of the 30-char body, base62, width 6)."""
    return github_token("ghp_", seed)

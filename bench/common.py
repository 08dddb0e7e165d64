"""What the benchmarks share: a valid GitHub token to plant, best-of timing, rounds in alternating order.

Imported by the bench scripts as `common` (they run as `python bench/<name>.py`, which puts bench/ on the path).
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

MB = 1024 * 1024
GMP = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def github_token(rng: random.Random) -> str:
    """A GitHub classic token with a valid CRC32 check (30 random base62 characters, then 6 of checksum)."""
    body = "".join(rng.choice(GMP) for _ in range(30))
    crc, digits = zlib.crc32(body.encode()), ""
    while crc:
        crc, r = divmod(crc, 62)
        digits = GMP[r] + digits
    return "ghp_" + body + digits.rjust(6, "0")


def best_of[T](fn: Callable[[], T], runs: int = 3) -> tuple[float, T]:
    """(seconds of the fastest of `runs` calls, the last call's result): on a shared machine the fastest run is
    the one least disturbed by other load."""
    times = []
    result: Any = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def alternating_rounds[T](rounds: int, targets: Sequence[str], run: Callable[[str], T]) -> list[dict[str, T]]:
    """`run(target)` for every target once per round, back to back; the order alternates between rounds, so a
    drift in machine load hits every target alike and a ratio can be taken within each round."""
    out = []
    for rnd in range(rounds):
        order = targets if rnd % 2 == 0 else targets[::-1]
        out.append({name: run(name) for name in order})
    return out

"""Engine benchmark: MB/s of the full engine (prefilter + validation) per backend, against baselines
measured in the same run on the same data:

  ceiling   one `bytes.count(b"_")` pass (memory speed: no scanner can beat it)
  re        a Python `re` alternation of every prefix of the profile (the naive approach), hits only

Corpora (64 MiB each by default; DLPROXY_BENCH_MB to change):
  a  clean mixed text: prose, JSON, minified JS, base64, lockfile hashes, git SHAs, UUIDs
  b  the same with a valid GitHub token every 64 KiB
  c  text dense with prefix false starts (`ghp_` + non-token chars, `eyJ` words, AKIA words, certificate and
     public-key PEM headers)

Not a timed test: it prints a table and ratios; the README keeps the latest figures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

from common import MB, best_of, github_token  # noqa: E402
from dlproxy.engine.detector import Detector  # noqa: E402
from dlproxy.engine.prefilter import hyperscan_available  # noqa: E402
from dlproxy.engine.profile import builtin_profile_path, load_profiles  # noqa: E402

SIZE_MB = int(os.environ.get("DLPROXY_BENCH_MB", "64"))
WORDS = ("the of and to in is that for it as with was on be by this are or from at an have not which but "
         "token request server client upload config deploy build release cache proxy secret value key "
         "access policy account region bucket stream event message response header body").split()


def clean_block(rng: random.Random, size: int) -> bytes:
    parts: list[str] = []
    total = 0
    while total < size:
        kind = rng.randrange(7)
        if kind == 0:
            s = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(40, 120))).capitalize() + ".\n"
        elif kind == 1:
            s = json.dumps({"id": rng.randrange(10**9), "name": rng.choice(WORDS), "tags": rng.sample(WORDS, 4),
                            "nested": {"enabled": rng.random() > 0.5, "ratio": rng.random()}}) + "\n"
        elif kind == 2:
            s = "".join(f"function {rng.choice(WORDS)}{i}(a,b){{return a&&b?a+b:null}};var _{i}=[{i},{i*7}];"
                        for i in range(rng.randrange(5, 20))) + "\n"
        elif kind == 3:
            s = base64.b64encode(rng.randbytes(rng.randrange(200, 1200))).decode() + "\n"
        elif kind == 4:
            s = "".join(f"  integrity sha512-{base64.b64encode(hashlib.sha512(rng.randbytes(8)).digest()).decode()}\n"
                        for _ in range(8))
        elif kind == 5:
            s = "".join(f"{hashlib.sha1(rng.randbytes(8)).hexdigest()} refs/heads/{rng.choice(WORDS)}\n"
                        for _ in range(8))
        else:
            s = "".join(f"{uuid.UUID(int=rng.getrandbits(128))}\n" for _ in range(8))
        parts.append(s)
        total += len(s)
    return "".join(parts).encode()[:size]


def false_start_block(rng: random.Random, size: int) -> bytes:
    """Prefixes everywhere, tokens nowhere: the worst case for per-hit Python work."""
    parts: list[str] = []
    total = 0
    while total < size:
        kind = rng.randrange(6)
        if kind == 0:
            s = f"ghp_{rng.choice(WORDS)}!{rng.choice(WORDS)} "
        elif kind == 1:
            s = f"eyJ{rng.choice(WORDS)} "
        elif kind == 2:
            s = f"AKIA{rng.choice(WORDS).upper()} "
        elif kind == 3:  # certificates and public keys: `-----BEGIN` that cannot start a private key
            label = rng.choice(("CERTIFICATE", "PUBLIC KEY", "CERTIFICATE REQUEST", "X509 CRL"))
            s = f"-----BEGIN {label}-----\nMIIB{base64.b64encode(rng.randbytes(45)).decode()}\n-----END {label}-----\n"
        else:
            s = " ".join(rng.choice(WORDS) for _ in range(6)) + " "
        parts.append(s)
        total += len(s)
    return "".join(parts).encode()[:size]


def corpora(size: int) -> dict[str, bytes]:
    rng = random.Random(1234)
    unique = clean_block(rng, min(size, 8 * MB))
    a = (unique * (size // len(unique) + 1))[:size]
    chunks = []
    for off in range(0, size, 64 * 1024):
        chunk = a[off:off + 64 * 1024]
        chunks.append(chunk[:100] + b" " + github_token(rng).encode() + b" " + chunk[100:])
    b = b"".join(chunks)
    fs = false_start_block(rng, min(size, 8 * MB))
    c = (fs * (size // len(fs) + 1))[:size]
    return {"a clean": a, "b token/64KiB": b, "c false starts": c}


def main() -> None:
    profile = load_profiles([builtin_profile_path()])
    backends = ["pyahocorasick"] + (["hyperscan"] if hyperscan_available() else [])
    detectors = {b: Detector(profile, backend=b) for b in backends}
    prefixes = sorted({p for e in profile.enabled_entries for p in e.prefixes}, key=len, reverse=True)
    naive = re.compile(b"|".join(re.escape(p.encode()) for p in prefixes))
    data = corpora(SIZE_MB * MB)
    print(f"engine benchmark: {len(profile.enabled_entries)} entries, {len(prefixes)} prefixes, "
          f"{SIZE_MB} MiB per corpus, best of 3, Python {sys.version.split()[0]}")
    header = f"{'corpus':<16} {'ceiling':>9} {'re':>9}" + "".join(f" {b:>14}" for b in backends)
    header += "".join(f" {b[:5] + '/re':>9} {b[:5] + '/ceil':>10}" for b in backends) + "  findings"
    print(header)
    results = {}
    for name, buf in data.items():
        size = len(buf) / MB
        ceiling = size / best_of(lambda buf=buf: buf.count(b"_"))[0]
        naive_rate = size / best_of(lambda buf=buf: naive.findall(buf), runs=1)[0]
        rates, counts = {}, {}
        for b, det in detectors.items():
            seconds, found = best_of(lambda buf=buf, det=det: det.scan(buf))
            rates[b], counts[b] = size / seconds, len(found)
        results[name] = (ceiling, naive_rate, rates, counts)
        line = f"{name:<16} {ceiling:>8.0f}M {naive_rate:>8.1f}M" + "".join(f" {rates[b]:>13.1f}M" for b in backends)
        line += "".join(f" {rates[b] / naive_rate:>8.1f}x {100 * rates[b] / ceiling:>9.1f}%" for b in backends)
        line += "  " + "/".join(str(counts[b]) for b in backends)
        print(line)
    expected = len(range(0, SIZE_MB * MB, 64 * 1024))
    print(f"\nexpected findings in corpus b: {expected}")
    for b in backends:
        a_rate = results["a clean"][2][b]
        c_rate = results["c false starts"][2][b]
        print(f"{b}: false-start slowdown c vs a = {a_rate / c_rate:.1f}x")


if __name__ == "__main__":
    main()

"""Extraction benchmark: extraction + scan of real-shaped 10 MB messages, against the engine alone on the
same plain text, measured in the same run.

  gzip JSON   an AI chat request (messages with multi-line text, so full of \\n escapes), gzip-encoded
  multipart   an upload: a few form fields and a 10 MB source/log text file (httpx's encoder)
  zip         a 10 MB zip of 40 text members (deflated)
  zip-in-json the same zip, base64 in a JSON body (GitHub contents / upload APIs)

For each: "plain" = Detector.scan over the decoded text (what a scanner that somehow had the text
would do); "extract" = extract_http alone; "total" = extract_http + scanning every segment. Ratio =
total / plain (target for compressed inputs: <= 2). One valid token is planted in each input and must be
found. Not a timed test: prints a table. DLPROXY_BENCH_MB (default 10) sets the size, DLPROXY_BACKEND
the engine backend.

`python bench/extract.py --hex`: what decoding separated hex (`67:68:70`, dumps) adds to the proxy's in-process
path (plain-body check, extraction, scan) and to a streamed body (ByteStreamScanner) for 1 MB of minified JSON,
prose, prose in a JSON chat request with `\\n` escapes, source code and a log, with it and without it (patched out)
in alternating rounds of one run.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import random
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

import httpx  # noqa: E402

from common import MB, alternating_rounds, best_of, github_token  # noqa: E402
from dlproxy.engine.detector import Detector  # noqa: E402
from dlproxy.engine.profile import builtin_profile_path, load_profiles  # noqa: E402
from dlproxy.extract import Limits, extract_http, hexsep, plain_text_body, quickcheck  # noqa: E402
from dlproxy.inspect.stream import PASS, ByteStreamScanner, HexRun  # noqa: E402

SIZE = int(float(os.environ.get("DLPROXY_BENCH_MB", "10")) * MB)
REPEAT = 3
STREAM_CHUNK = 16 * 1024
WORDS = ("the of and to in is that for it as with was on be by this are or from at an have not which but "
         "token request server client upload config deploy build release cache proxy secret value key "
         "access policy account region bucket stream event message response header body def return if "
         "self import class async await function const let var").split()


def lines(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
        if rng.random() < 0.1:
            line = "    " + line.replace(" ", "_", 2) + "(x, y)"
        out.append(line)
        n += len(line) + 1
    return "\n".join(out)


def gzip_json(rng, token):
    messages, n = [], 0
    while n < SIZE:
        text = lines(rng, rng.randint(500, 4000))
        messages.append({"role": rng.choice(["user", "assistant"]), "content": text})
        n += len(text) + 40
    messages[len(messages) // 2]["content"] += "\nmy token is " + token
    plain = json.dumps({"model": "gpt-4o", "messages": messages, "stream": True}).encode()
    body = gzip.compress(plain, 6)
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    return plain, dict(url="https://api.openai.com/v1/chat/completions", headers=headers, body=body)


def multipart(rng, token):
    text = lines(rng, SIZE) + "\nGITHUB_TOKEN=" + token + "\n"
    req = httpx.Request("POST", "https://uploads.example/api", data={"title": "logs", "public": "false"},
                        files={"file": ("server.log", text.encode(), "text/plain")})
    body = req.read()
    return body, dict(url=str(req.url), headers=[("Content-Type", req.headers["content-type"])], body=body)


def make_zip(rng, token):
    buf, plain = io.BytesIO(), []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            text = lines(rng, SIZE // 40)
            if i == 20:
                text += "\n_authToken=" + token + "\n"
            zf.writestr(f"src/module{i}.py", text)
            plain.append(text.encode())
    return b"\n".join(plain), buf.getvalue()


def zip_body(rng, token):
    plain, data = make_zip(rng, token)
    return plain, dict(url="https://uploads.example/a.zip", headers=[("Content-Type", "application/zip")], body=data)


def zip_in_json(rng, token):
    plain, data = make_zip(rng, token)
    body = json.dumps({"message": "add", "content": base64.b64encode(data).decode()}).encode()
    return plain, dict(url="https://api.github.com/repos/o/r/contents/a.zip",
                       headers=[("Content-Type", "application/json")], body=body)


def main() -> int:
    det = Detector(load_profiles([builtin_profile_path()]))
    limits = Limits()
    rng = random.Random(7)
    print(f"extraction benchmark: {SIZE / MB:.0f} MB inputs, engine backend {det.backend}, best of {REPEAT}")
    print(f"{'input':<12} {'wire MB':>8} {'text MB':>8} {'plain MB/s':>11} {'extract MB/s':>13} "
          f"{'total MB/s':>11} {'ratio':>6}  found")
    worst = 0.0
    for name, build in (("gzip JSON", gzip_json), ("multipart", multipart), ("zip", zip_body),
                        ("zip-in-json", zip_in_json)):
        token = github_token(rng)
        plain, kwargs = build(rng, token)
        t_plain, plain_hits = best_of(lambda plain=plain: det.scan(plain), REPEAT)
        t_extract, ext = best_of(lambda kwargs=kwargs: extract_http(limits=limits, **kwargs), REPEAT)

        def total(kwargs=kwargs):
            out = extract_http(limits=limits, **kwargs)
            return [seg.locate(f.start, f.end) for seg in out.segments for f in det.scan(seg.data)]

        t_total, locations = best_of(total, REPEAT)
        mb = len(plain) / MB
        ratio = t_total / t_plain
        worst = max(worst, ratio)
        ok = len(plain_hits) == 1 and len(locations) == 1 and not ext.unscannable
        print(f"{name:<12} {len(kwargs['body']) / MB:>8.2f} {mb:>8.2f} {mb / t_plain:>11.1f} "
              f"{mb / t_extract:>13.1f} {mb / t_total:>11.1f} {ratio:>6.2f}  {locations[0] if locations else '-'}"
              f"{'' if ok else '  UNEXPECTED'}")
    print(f"worst ratio (extract+scan / plain scan): {worst:.2f}  (target <= 2 for compressed inputs)")
    return 0


def hex_inputs(rng: random.Random) -> dict[str, tuple[str, bytes]]:
    """1 MB each: (content type, body) of text without separated hex."""
    mac = lambda: ":".join(f"{rng.randrange(256):02x}" for _ in range(6))  # noqa: E731
    log, n = [], 0
    while n < MB:
        line = (f"2024-12-08 02:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)} INFO "
                f"req={rng.randbytes(16).hex()} mac={mac()} ip=10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)} "
                f"took {rng.randint(1, 999)}ms {lines(rng, 40)}\n")
        log.append(line)
        n += len(line)
    items = [{"id": rng.randint(0, 10**9), "name": lines(rng, 20), "ts": f"2024-01-02T12:{rng.randint(10, 59)}:00Z",
              "sha": rng.randbytes(20).hex(), "score": rng.random(), "tags": [rng.choice(WORDS)] * 3, "ok": True}
             for _ in range(MB // 150)]
    code = b"".join(p.read_bytes() for p in sorted(Path(__file__).resolve().parents[1].glob("addons/**/*.py")))
    prose = lines(rng, MB).replace("\n", " ").replace("_", " ")
    from proxy import big_body  # the proxy benchmark's (b) upload: prose in one JSON string, no escapes

    return {
        "proxy (b) body": ("application/json", big_body()),
        "minified JSON": ("application/json", json.dumps(items, separators=(",", ":")).encode()[:MB]),
        "prose": ("text/plain", prose.encode()[:MB]),
        "chat JSON": ("application/json", json.dumps({"messages": [{"role": "user", "content": lines(rng, MB)}]})
                      .encode()),
        "source code": ("text/plain", (code * (MB // len(code) + 1))[:MB]),
        "log": ("text/plain", "".join(log).encode()[:MB]),
    }


def hex_cost(rounds: int = 15) -> int:
    """Proxy in-process path with and without separated-hex decoding, alternating, same run."""
    det = Detector(load_profiles([builtin_profile_path()]))
    limits = Limits()
    find, may_hold = hexsep.find, hexsep.may_hold

    hex_push = HexRun.push

    def switch(on: bool) -> None:
        hexsep.find = find if on else (lambda data: [])
        hexsep.may_hold = may_hold if on else (lambda data: False)
        HexRun.push = hex_push if on else (lambda self, text, at, final=False: ([], None))

    def proxy_path(ctype: str, body: bytes) -> int:
        headers = [("Content-Type", ctype)]
        ext = extract_http(url="https://api.example/v1", headers=headers, body=body, limits=limits,
                           blob_free=plain_text_body(headers, body), token_window=det.max_token_len)
        return sum(len(det.scan(seg.data)) for seg in ext.segments)

    def streamed(ctype: str, body: bytes) -> int:
        scanner = ByteStreamScanner(det, lambda findings: (PASS, []), limits=limits, ctype=ctype)
        out = [c for i in range(0, len(body), STREAM_CHUNK) for c in scanner.feed(body[i:i + STREAM_CHUNK])]
        return sum(map(len, out + scanner.finish()))

    print(f"separated hex, 1 MB inputs, engine backend {det.backend}, Hyperscan prechecks "
          f"{'on' if quickcheck.hyperscan else 'off'}; ms per MB, best of {rounds} alternating rounds")
    for label, path in (("proxy in-process path (buffered)", proxy_path),
                        (f"streamed body ({STREAM_CHUNK // 1024} KB chunks)", streamed)):
        print(label)
        print(f"  {'input':<14} {'without':>8} {'with':>8} {'added':>8} {'ratio':>6}")
        for name, (ctype, body) in hex_inputs(random.Random(11)).items():
            def run(target: str, ctype=ctype, body=body, path=path) -> float:
                switch(target == "with")
                t0 = time.perf_counter()
                path(ctype, body)
                return time.perf_counter() - t0

            results = alternating_rounds(rounds, ["without", "with"], run)
            switch(True)
            t_without = min(r["without"] for r in results) * 1e3 * MB / len(body)
            t_with = min(r["with"] for r in results) * 1e3 * MB / len(body)
            print(f"  {name:<14} {t_without:>8.3f} {t_with:>8.3f} {t_with - t_without:>8.3f} "
                  f"{t_with / t_without:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(hex_cost() if "--hex" in sys.argv[1:] else main())

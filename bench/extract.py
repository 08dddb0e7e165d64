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
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import random
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

import httpx  # noqa: E402

from common import MB, best_of, github_token  # noqa: E402
from dlproxy.engine.detector import Detector  # noqa: E402
from dlproxy.engine.profile import builtin_profile_path, load_profiles  # noqa: E402
from dlproxy.extract import Limits, extract_http  # noqa: E402

SIZE = int(float(os.environ.get("DLPROXY_BENCH_MB", "10")) * MB)
REPEAT = 3
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


if __name__ == "__main__":
    sys.exit(main())

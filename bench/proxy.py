"""Proxy benchmark (`make bench`): bare `mitmdump` vs `dlproxy run`, same run, same local upstream, loopback only.

    python bench/proxy.py [--duration 3] [--rounds 7] [--quick] [--only abcd]

Scenarios (each bounded in time and count):
  a) small JSON POSTs      10 keep-alive connections for --duration seconds: req/s, p50/p99 latency
  b) 1 MB uploads           4 keep-alive connections for --duration seconds: req/s, p50/p99 latency
                            Each is run --rounds times, every target once per round back to back (order
                            alternating); a ratio is taken within each round and the median round is reported
                            with the range, because this kind of VM drifts by 10-30 % over tens of seconds.
  c) SSE, 500 events        streamed by the upstream every 2 ms, OpenAI chat-completion chunks; per-event latency
                            (client receive time − upstream send time, one monotonic clock) p50/p99, and the
                            delay dlproxy adds over mitmdump streaming the same response (`stream_large_bodies=1`;
                            bare mitmdump buffers an SSE response whole, shown for reference). Two delta shapes: "boundary" deltas end at a
                            word boundary ("Hello, ") — nothing can be in flight, this is the scanner's own cost;
                            "model" deltas start with a space (" Hello") as models stream them — the last word of
                            each delta is held until the next one decides it when the profile has mid-token-keyword
                            entries (engine `undecided_from`), reported with the built-in profile and with those
                            entries disabled.
  d) 1 MB chunked download  4 keep-alive connections GET a 1 MB JSON body the upstream sends chunked (16 KiB chunks):
                            dlproxy streams and inspects it (stream guard); compared with bare mitmdump streaming the
                            same response (`stream_large_bodies=1`), rounds as in (a)/(b).
Targets: dlproxy ≥ 90 % of mitmdump's req/s on (a), (b) and (d); p99 per-event delay added to clean SSE < 1 ms.

`dlproxy run` dispatches hooks only to the addons that have them (proxy/hookindex.py), which mitmdump does not;
(a) and (b) therefore also run "no-dlp": dlproxy's master with that dispatch and dlproxy's option defaults but
none of its addons, so the report shows the inspection's own cost (dlproxy vs no-dlp) next to the target ratio
(dlproxy vs mitmdump). (d) runs it streaming ("no-dlp-stream"), with dlproxy's patch of mitmproxy's HTTP/1 layer
that makes one data event of each read of a chunked body, where mitmproxy makes one per chunk.

Every component is a separate process: the upstream (asyncio), the proxies, and the load generator (asyncio, raw
HTTP/1.1), so the proxy under test gets a core of its own as far as a small machine allows.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from common import alternating_rounds

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LISTEN = re.compile(r"(?i)(?:HTTP\(S\) proxy|reverse proxy to \S+) listening at \[?([^\s\]]+?)\]?:(\d+)")
SMALL = json.dumps({"model": "gpt-4o-mini", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Summarise the quarterly report in three bullet points, please."}]}).encode()
RPS_TARGETS = ("mitmdump", "no-dlp", "dlproxy")
DOWNLOAD_TARGETS = ("mitmdump-stream", "no-dlp-stream", "dlproxy")
DOWNLOAD_CHUNK = 16 * 1024
SENTENCE = ("Streaming proxies must forward every token of a reply as soon as it arrives, so that the user sees "
            "the answer appear word by word, while still checking that nothing secret slips through. ")


# --- the upstream (its own process) ------------------------------------------------------------------------------------


def sse_events(n: int, shape: str) -> list[str]:
    words = SENTENCE.split()
    out = []
    for i in range(n):
        w = words[i % len(words)]
        out.append(f" {w}" if shape == "model" else f"{w} ")
    return out


async def upstream_main(port_pipe: int) -> None:
    download = big_body()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _method, path, _ = line.split(b" ", 2)
                length = 0
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                if length:
                    await reader.readexactly(length)
                if path.startswith(b"/download"):
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\n\r\n")
                    for i in range(0, len(download), DOWNLOAD_CHUNK):
                        part = download[i:i + DOWNLOAD_CHUNK]
                        writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                        await writer.drain()
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                elif path.startswith(b"/sse"):
                    q = dict(p.split("=") for p in path.decode().split("?", 1)[1].split("&"))
                    await stream_sse(writer, int(q["n"]), float(q["interval"]) / 1000, q["shape"])
                else:
                    body = b'{"id":"chatcmpl-bench","object":"chat.completion","choices":[{"index":0,' \
                           b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}'
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stream_sse(writer, n: int, interval: float, shape: str) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                     b"Cache-Control: no-cache\r\n\r\n")
        start = time.perf_counter()
        for i, text in enumerate(sse_events(n, shape)):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            event = {"id": f"chatcmpl-{time.perf_counter_ns()}", "object": "chat.completion.chunk",
                     "created": 1700000000, "model": "gpt-4o-mini",
                     "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
            data = b"data: " + json.dumps(event).encode() + b"\n\n"
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
        done = b"data: [DONE]\n\n"
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    os.write(port_pipe, b"%d\n" % server.sockets[0].getsockname()[1])
    await server.serve_forever()


# --- the load generator (its own process) --------------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> None:
    status = await reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"bad response {status!r}")
    length, chunked = 0, False
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v)
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return
    elif length:
        await reader.readexactly(length)


async def rps_client(port: int, path: str, body: bytes, conns: int, duration: float, limit: int) -> dict:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def worker():
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline and len(latencies) < limit:
                t0 = time.perf_counter()
                writer.write(head + body)
                await writer.drain()
                try:
                    await read_response(reader)
                except (RuntimeError, asyncio.IncompleteReadError):
                    errors += 1
                    return
                latencies.append(time.perf_counter() - t0)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conns)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "errors": errors, "rps": len(latencies) / elapsed,
            "p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000}


async def sse_client(port: int, n: int, interval: float, shape: str, streams: int) -> dict:
    delays: list[float] = []
    events = 0
    for _ in range(streams):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /sse?n={n}&interval={interval}&shape={shape} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        buf = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            now = time.perf_counter_ns()
            buf += data[:-2]
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                m = re.search(rb'"id": ?"chatcmpl-(\d+)"', event)
                if m:
                    delays.append((now - int(m[1])) / 1e6)
                    events += 1
        writer.close()
    return {"events": events, "delays_ms": delays}


def summary(delays: list[float]) -> dict:
    delays = sorted(delays)
    return {"events": len(delays), "p50_ms": pct(delays, 50), "p99_ms": pct(delays, 99), "max_ms": delays[-1]}


def big_body() -> bytes:
    """About 1 MB of JSON: one long user message of prose (an AI prompt with a pasted document)."""
    text = (SENTENCE * (1_000_000 // len(SENTENCE) + 1))[:999_900]
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}).encode()


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


# --- orchestration ---------------------------------------------------------------------------------------------------------


def spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)


def client(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--client", *args], capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


class Proxy:
    def __init__(self, name: str, argv: list[str]):
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        deadline = time.monotonic() + 60
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if m := LISTEN.search(line):
                self.port = int(m[2])
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError(f"{name} did not start:\n{''.join(lines)}")
        # keep reading: a proxy whose log pipe is full blocks on its next log line (mitmproxy logs connections)
        threading.Thread(target=collections.deque, args=(self.proc.stdout, 0), daemon=True, name=f"{name}-log").start()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def mid_token_override(directory: Path) -> Path:
    """An overlay that disables the built-in entries with mid-token keywords (`before`)."""
    sys.path.insert(0, str(ROOT / "addons"))
    from dlproxy.engine.profile import builtin_profile_path, load_profiles

    ids = [e.id for e in load_profiles([builtin_profile_path()]).entries if e.before]
    path = directory / "no-mid-token.yaml"
    body = "".join(f"  - id: {i}\n    enabled: false\n" for i in ids)
    path.write_text(f"entries:\n{body}")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per req/s run")
    ap.add_argument("--rounds", type=int, default=7, help="req/s rounds (every target once per round; odd: a true median)")
    ap.add_argument("--quick", action="store_true", help="1.5 s per scenario, 1 SSE stream (smoke run)")
    ap.add_argument("--only", default="abcd", help="the scenarios to run, e.g. `b` or `bd` (default: all)")
    args = ap.parse_args()
    only = set(args.only)
    duration = 1.5 if args.quick else args.duration
    rounds = 1 if args.quick else max(1, args.rounds)
    streams = 1 if args.quick else 4

    read, write = os.pipe()
    upstream = subprocess.Popen([sys.executable, __file__, "--serve", str(write)], pass_fds=(write,))
    up_port = int(os.fdopen(read).readline())
    reverse = f"reverse:http://127.0.0.1:{up_port}"
    tmp = Path(tempfile.mkdtemp(prefix="dlproxy-bench-"))
    common = ["--listen-host", "127.0.0.1", "--listen-port", "0", "--set", "flow_detail=0"]
    proxies: dict[str, Proxy] = {}
    try:
        proxies["mitmdump"] = Proxy("mitmdump", [str(BIN / "mitmdump"), "--mode", reverse, *common,
                                                 "--set", f"confdir={tmp / 'c1'}"])
        # bare mitmdump buffers SSE whole; the per-event baseline is mitmdump streaming every body
        proxies["mitmdump-stream"] = Proxy("mitmdump-stream", [str(BIN / "mitmdump"), "--mode", reverse, *common,
                                                               "--set", "stream_large_bodies=1",
                                                               "--set", f"confdir={tmp / 'c0'}"])
        proxies["no-dlp-stream"] = Proxy("no-dlp-stream", [sys.executable, __file__, "--no-dlp-master", "--mode",
                                                           reverse, *common, "--set", "stream_large_bodies=1",
                                                           "--set", f"confdir={tmp / 'c5'}"])
        proxies["no-dlp"] = Proxy("no-dlp", [sys.executable, __file__, "--no-dlp-master", "--mode", reverse, *common,
                                             "--set", f"confdir={tmp / 'c4'}"])
        proxies["dlproxy"] = Proxy("dlproxy", [str(BIN / "dlproxy"), "run", "--mode", reverse, *common,
                                               "--metrics-port", "0", "--set", f"confdir={tmp / 'c2'}"])
        proxies["dlproxy-no-mid"] = Proxy("dlproxy-no-mid", [
            str(BIN / "dlproxy"), "run", "--mode", reverse, *common, "--metrics-port", "0",
            "--set", f"confdir={tmp / 'c3'}", "--profile", str(mid_token_override(tmp))])
        big = big_body()
        results: dict = {}
        for scenario, path, body, conns in (("a", "/v1/chat/completions", SMALL, 10), ("b", "/upload", big, 4)):
            if scenario not in only:
                continue
            results[scenario] = alternating_rounds(rounds, RPS_TARGETS, lambda name, path=path, body=body, conns=conns:
                                                   client("rps", str(proxies[name].port), path, str(len(body)),
                                                          str(conns), str(duration), "1" if body is big else "0"))
        if "d" in only:
            results["d"] = alternating_rounds(rounds, DOWNLOAD_TARGETS, lambda name: client(
                "rps", str(proxies[name].port), "/download", "0", "4", str(duration), "0"))
        for shape in ("boundary", "model") if "c" in only else ():
            targets = ["direct", "mitmdump", "mitmdump-stream", "dlproxy", "dlproxy-no-mid"]
            pooled: dict[str, list[float]] = {name: [] for name in targets}
            for rnd in range(streams):  # one stream per target per round, order rotated: noise hits all alike
                for name in targets[rnd % len(targets):] + targets[:rnd % len(targets)]:
                    if name == "mitmdump" and rnd:
                        continue  # buffered whole: one stream shows it
                    port = up_port if name == "direct" else proxies[name].port
                    pooled[name] += client("sse", str(port), "500", "2", shape, "1")["delays_ms"]
            for name in targets:
                results[("c", shape, name)] = summary(pooled[name])
        report(results, duration, rounds, streams)
    finally:
        for p in proxies.values():
            p.stop()
        upstream.terminate()
        upstream.wait(10)
    return 0


def median_run(runs: list[dict], name: str) -> dict:
    return sorted((r[name] for r in runs), key=lambda r: r["rps"])[(len(runs) - 1) // 2]  # the lower middle


def ratios(runs: list[dict], name: str, base: str) -> list[float]:
    return sorted(r[name]["rps"] / r[base]["rps"] for r in runs)


def rps_rows(label: str, runs: list[dict], targets: Sequence[str]) -> None:
    for name in targets:
        r = median_run(runs, name)
        errors = sum(x[name]["errors"] for x in runs)
        print(f"{label:<28}{name:<16}{r['rps']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{errors:>8}")


def target_row(runs: list[dict], base: str, what: str) -> str:
    """dlproxy's req/s over `base`'s, the median of the per-round ratios, against the 90 % target."""
    target = ratios(runs, "dlproxy", base)
    mid = statistics.median(target)
    return (f"{'':<28}{'ratio':<16}{mid * 100:>8.1f}%   dlproxy vs {what}, median round "
            f"(range {target[0] * 100:.0f}-{target[-1] * 100:.0f} %; {'meets' if mid >= 0.9 else 'BELOW'} the 90 % "
            f"target)")


def report(results: dict, duration: float, rounds: int, streams: int) -> None:
    print(f"\ndlproxy proxy benchmark (loopback, {os.cpu_count()} CPUs; req/s: {rounds} rounds of {duration:g} s "
          f"per target, medians; SSE: {streams}×500 events every 2 ms per target, rounds rotated)\n")
    print(f"{'scenario':<28}{'target':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for scenario, label in (("a", "(a) small JSON POST, 10c"), ("b", "(b) 1 MB upload, 4c")):
        if scenario not in results:
            continue
        runs = results[scenario]
        rps_rows(label, runs, RPS_TARGETS)
        own = ratios(runs, "dlproxy", "no-dlp")
        print(target_row(runs, "mitmdump", "mitmdump"))
        print(f"{'':<28}{'':<16}{statistics.median(own) * 100:>8.1f}%   dlproxy vs no-dlp (what the inspection itself "
              f"costs; range {own[0] * 100:.0f}-{own[-1] * 100:.0f} %)\n")
    if "d" in results:
        rps_rows("(d) 1 MB chunked download", results["d"], DOWNLOAD_TARGETS)
        print(target_row(results["d"], "mitmdump-stream", "mitmdump streaming it"))
        own = ratios(results["d"], "dlproxy", "no-dlp-stream")
        print(f"{'':<28}{'':<16}{statistics.median(own) * 100:>8.1f}%   dlproxy vs no-dlp streaming it (what the "
              f"inspection itself costs; range {own[0] * 100:.0f}-{own[-1] * 100:.0f} %)\n")
    if ("c", "model", "dlproxy") not in results:
        return
    print(f"{'(c) SSE per-event latency':<28}{'target':<16}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'events':>8}")
    for shape in ("boundary", "model"):
        for name in ("direct", "mitmdump", "mitmdump-stream", "dlproxy", "dlproxy-no-mid"):
            r = results[("c", shape, name)]
            print(f"{'    ' + shape + ' deltas':<28}{name:<16}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
                  f"{r['max_ms']:>9.3f}{r['events']:>8}")
        base = results[("c", shape, "mitmdump-stream")]
        for name in ("dlproxy", "dlproxy-no-mid"):
            r = results[("c", shape, name)]
            added = r["p99_ms"] - base["p99_ms"]
            verdict = "meets" if added < 1.0 else "ABOVE"
            print(f"{'':<28}{'added p99':<16}{added:>9.3f} ms  {name} vs mitmdump-stream "
                  f"({verdict} the < 1 ms target)")
        print()


def client_main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "rps":
        port, path, size, conns, duration, big = argv[1:]
        body = SMALL if big == "0" else big_body()
        result = asyncio.run(rps_client(int(port), path, body, int(conns), float(duration), 100_000))
    else:
        port, n, interval, shape, streams = argv[1:]
        result = asyncio.run(sse_client(int(port), int(n), float(interval), shape, int(streams)))
    print(json.dumps(result))


def no_dlp_master_main(argv: list[str]) -> None:
    """`dlproxy run` without the dlproxy addons: the same master, indexed dispatch, option defaults and mitmproxy
    patches (proxy/internals: one data event per read of a chunked body), so that what remains is inspection."""
    sys.path.insert(0, str(ROOT / "addons"))
    from mitmproxy.tools import cmdline
    from mitmproxy.tools.main import run

    from dlproxy.proxy import internals
    from dlproxy.proxy.master import DLPMaster

    class NoDLPMaster(DLPMaster):
        def dlp_addons(self) -> list:
            return []

    internals.carry_http1_trailers()
    run(NoDLPMaster, cmdline.mitmdump, argv)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--no-dlp-master":
        no_dlp_master_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve":
        asyncio.run(upstream_main(int(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
    else:
        sys.exit(main())

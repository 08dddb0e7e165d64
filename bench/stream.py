"""Stream benchmark: what dlproxy's inspection costs per chunk of a streamed download, in process.

    python bench/stream.py [--runs 40] [--chunk 16384]

The body of bench/proxy.py's scenario (d) (about 1 MB of JSON) goes through the stream callable StreamGuard
installs on a chunked response (FlowStream: the stream window, escape view, base64 runs, policy), `--chunk` bytes
per call, as mitmproxy would call it; no network, no mitmproxy event loop. Reported: CPU time of this thread per
chunk (min and median over --runs bodies; thread CPU time, so other processes on a shared machine disturb it
less than wall time would), and how many chunks needed a blob look of their own (TextScanner.blob_prechecks).
Compare two trees by running this from each, back to back.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import typing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "addons"))

from mitmproxy.test import taddons, tflow  # noqa: E402

from dlproxy.ops.incidents import IncidentLog  # noqa: E402
from dlproxy.ops.metrics import Metrics  # noqa: E402
from dlproxy.proxy.addon import ProfileState  # noqa: E402
from dlproxy.proxy.streamguard import FlowStream, StreamGuard  # noqa: E402
from proxy import DOWNLOAD_CHUNK, big_body  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=40, help="bodies streamed (after one warm-up)")
    ap.add_argument("--chunk", type=int, default=DOWNLOAD_CHUNK, help="bytes per stream callable call")
    args = ap.parse_args()
    body = big_body()
    chunks = [body[i:i + args.chunk] for i in range(0, len(body), args.chunk)]
    metrics = Metrics()
    state = ProfileState(metrics)
    guard = StreamGuard(state, metrics, IncidentLog(metrics, stream=io.StringIO()))
    with taddons.context(state, guard) as tctx:
        tctx.options.add_option("stream_large_bodies", typing.Optional[str], None, "")  # noqa: UP045
        state.running()  # the built-in profile

        def one() -> tuple[float, int]:
            flow = tflow.tflow(resp=True)
            flow.request.method, flow.request.path = "GET", "/download"
            flow.response.headers.clear()
            flow.response.headers.update({"content-type": "application/json", "transfer-encoding": "chunked"})
            flow.response.content = None
            guard.responseheaders(flow)
            stream = flow.response.stream
            assert isinstance(stream, FlowStream)
            out = []
            t0 = time.thread_time()
            for chunk in chunks:
                out += stream(chunk)
            out += stream(b"")
            elapsed = time.thread_time() - t0
            assert b"".join(out) == body, "the clean body must come out unchanged"
            return elapsed, stream.scanner.text.blob_prechecks

        one()
        results = [one() for _ in range(args.runs)]
    calls = len(chunks) + 1
    per_chunk = sorted(t / calls * 1e6 for t, _ in results)
    print(f"stream inspection of a {len(body) / 1e6:.1f} MB JSON download, {args.chunk} B chunks ({calls} calls), "
          f"{args.runs} runs")
    print(f"  CPU per chunk: min {per_chunk[0]:.1f} us, median {statistics.median(per_chunk):.1f} us")
    print(f"  chunks with a blob look of their own: {results[-1][1]} of {calls}")


if __name__ == "__main__":
    main()

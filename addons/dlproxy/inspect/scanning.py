"""Scanning one message, on the event loop, in a thread, or in a worker process. Pure: no mitmproxy import.

    scan = scan_message(active, url, headers, body, trailers=())   # extract → detect; findings, safe locations
    pool = ScanPool(workers=1)                         # processes for big bodies (see addon.OFFLOAD_BYTES)
    scan = await pool.scan(active, url, headers, body, trailers)

Threads help latency only partly (the extractor and `re` hold the GIL); a process frees the loop almost
completely but costs throughput (the body is pickled to the worker and back). The proxy defaults to threads
(`dlp_scan_workers=0`: nothing to start, nothing to orphan); `dlp_scan_workers=N` uses processes, which is better
wherever the pod has a core to spare. docs/proxy.md has the measurements.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import multiprocessing
import pickle
from dataclasses import dataclass, field

from ..engine.detector import Detector
from ..engine.findings import Finding
from ..extract import Limits, extract_http, plain_text_body
from . import redact
from .policy import Active

MAX_LOCATION = 200  # characters of a finding location shown in responses, incidents and logs


@dataclass(slots=True)
class Scan:
    findings: list[Finding]
    unscannable: list
    secrets: dict[str, Finding]  # secret text → its finding; only filled when something was found
    decoded_bytes: int
    stats: collections.Counter
    context: dict[str, str] = field(default_factory=dict)  # secret → text around it (for sealed evidence only)


def scan_message(active: Active, url: str | None, headers, body: bytes, trailers=(),
                 blob_free: bool | None = None) -> Scan:
    """Extract every located text part of a message (its `trailers` too) and run the detector over each.

    A big uncompressed text body is first checked for base64 runs and separated hex in Hyperscan passes
    (extract.plain_text_body); without any, the extractor does not search it for them (its own search costs more
    than the check). `blob_free`: the caller made that check already (its answer), or None.

    The first `settings.max_findings` findings get their exact location (a JSON path, a form field), one pass
    per segment however many there are; any further ones keep their segment's location ("body:json"), which
    policy treats like any other place that is not a use position. Every one of them is judged."""
    detector = active.detector
    if blob_free is None:
        blob_free = detector.backend == "hyperscan" and plain_text_body(headers, body)
    extraction = extract_http(url=url, headers=headers, body=body, limits=active.limits, blob_free=blob_free,
                              token_window=getattr(detector, "max_token_len", None) or None, trailers=trailers)
    budget = getattr(active.settings, "max_findings", 100)
    stats: collections.Counter = collections.Counter()
    findings: list[Finding] = []
    secrets: dict[str, Finding] = {}
    seen: set[tuple[str, str]] = set()
    evidence = getattr(active.profile.settings, "evidence", None)
    window = evidence.context if evidence is not None else -1
    context: dict[str, str] = {}
    for segment in extraction.segments:
        data = segment.data
        hits = detector.scan(data, stats)
        if not hits:
            continue
        exact = hits[:max(0, budget - len(findings))]
        locations = segment.locate_many([(f.start, f.end) for f in exact]) if exact else []
        locations += [segment.location] * (len(hits) - len(exact))
        for f, location in zip(hits, locations, strict=True):
            located = f.at(location)
            key = (located.fingerprint, located.location)
            if key in seen:
                continue
            seen.add(key)
            findings.append(located)
            secret = data[f.start:f.end].decode("latin-1")
            secrets.setdefault(secret, located)
            if window >= 0 and secret not in context:
                context[secret] = data[max(0, f.start - window):f.end + window].decode("latin-1")
    if findings:
        findings, secrets = _safe_locations(findings, secrets, detector)
    return Scan(findings, list(extraction.unscannable), secrets, extraction.decoded_bytes, stats, context)


def _safe_locations(findings: list[Finding], secrets: dict[str, Finding], detector: Detector):
    """Locations name fields, files and keys taken from the traffic: a secret can be one (a form "field" that
    is a whole keyless body, a JSON key, a multipart `filename*` or an archive member name decoded from an
    encoding the scanned text did not show). Mask every found secret in every location, mask whatever else the
    detector finds in it, and bound the length."""
    scrub = redact.Scrubber({s: f.masked for s, f in secrets.items()})
    cache: dict[str, str] = {}

    def safe(f: Finding) -> Finding:
        loc = cache.get(f.location)
        if loc is None:
            loc = redact.mask_found(scrub(f.location), detector)
            if len(loc) > MAX_LOCATION:
                loc = loc[:MAX_LOCATION] + "…"
            cache[f.location] = loc
        return f if loc == f.location else f.at(loc)

    fixed = {id(f): safe(f) for f in findings}
    return [fixed[id(f)] for f in findings], {s: fixed.get(id(f)) or safe(f) for s, f in secrets.items()}


# --- worker processes --------------------------------------------------------------------------------------

_worker_active: Active | None = None


def _scan_in_worker(generation: int, profile_blob: bytes, backend: str, url, headers, body: bytes,
                    trailers=(), blob_free: bool | None = None) -> Scan:
    """Runs in a worker process: (re)build the detector when the profile generation changed, then scan."""
    global _worker_active
    if _worker_active is None or _worker_active.generation != generation:
        profile = pickle.loads(profile_blob)
        _worker_active = Active(profile, Detector(profile, backend=backend), Limits.from_settings(profile.settings),
                                generation)
    return scan_message(_worker_active, url, headers, body, trailers=trailers, blob_free=blob_free)


class ScanPool:
    """Big-body scanning off the event loop: `workers` processes, or (0) a small thread pool."""

    THREADS = 2

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers
        self._executor: concurrent.futures.Executor | None = None
        self._blobs: dict[int, bytes] = {}

    async def scan(self, active: Active, url, headers, body: bytes, trailers=(),
                   blob_free: bool | None = None) -> Scan:
        """`blob_free`: the caller's answer to the body's precheck (scan_message), None when it made none."""
        loop = asyncio.get_running_loop()
        if self.workers <= 0:
            return await loop.run_in_executor(self._get(), functools.partial(scan_message, trailers=trailers,
                                                                             blob_free=blob_free),
                                              active, url, headers, body)
        try:
            return await loop.run_in_executor(self._get(), _scan_in_worker, active.generation, self._blob(active),
                                              active.detector.backend, url, headers, body, trailers, blob_free)
        except concurrent.futures.process.BrokenProcessPool:
            self.shutdown()  # a worker died (OOM kill?): start afresh next time; this flow fails closed
            raise

    def start(self) -> None:
        """Start the workers now (they take a second to import and compile), rather than on the first big body."""
        executor = self._get()
        for _ in range(max(self.workers, 1)):
            executor.submit(int)  # processes are spawned on the first submissions

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _get(self) -> concurrent.futures.Executor:
        if self._executor is None:
            if self.workers > 0:
                self._executor = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn"))
            else:
                self._executor = concurrent.futures.ThreadPoolExecutor(self.THREADS, thread_name_prefix="dlp-scan")
        return self._executor

    def _blob(self, active: Active) -> bytes:
        blob = self._blobs.get(active.generation)
        if blob is None:
            blob = pickle.dumps(active.profile)
            self._blobs = {active.generation: blob}  # only the newest generation is worth keeping
        return blob

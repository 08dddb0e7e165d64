"""Prometheus metrics and the /metrics /healthz /readyz endpoints.

`Metrics` owns its own `CollectorRegistry` (never prometheus_client's global one), so re-creating it — a
`mitmdump -s` script reload, a second master in a test — can never raise `DuplicateTimeseries`. Every addon
gets the one instance through its constructor and updates the attributes below; names and labels are the
contract of docs/contracts.md (add, never rename). Labels are bounded: entry ids, directions, verdicts, actions,
reasons, results — never hosts, paths, users or anything else taken from traffic.

`MetricsServer` is a small asyncio HTTP/1.1 server on its own port. It runs on mitmproxy's event loop on
purpose: when the loop is blocked, /healthz stops answering, which is the liveness signal we want.
"""

from __future__ import annotations

import asyncio
import collections.abc
import logging
from typing import Protocol

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..engine.vocab import PROFILE_ACTIONS, Direction, Verdict

logger = logging.getLogger(__name__)

RELOAD_RESULTS = ("ok", "error")
SCAN_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXT = "text/plain; charset=utf-8"  # the health endpoints and errors
DEFAULT_PORT = 9464

# `*_created` series double the scrape for no operational value; this process owns all its metrics.
prometheus_client.disable_created_metrics()


class FlowsTotal:
    """dlproxy_flows_total counts what was done: under dry-run a flow that would have been blocked or redacted
    passed, so it counts as verdict `dry_run` (an alert on `verdict="blocked"` stays quiet during a dry-run
    rollout), and dlproxy_dry_run_total{direction,verdict} keeps what would have happened. Otherwise the plain
    Counter (every other attribute is the Counter's)."""

    def __init__(self, counter: Counter, dry_run_total: Counter) -> None:
        self.counter = counter
        self.dry_run_total = dry_run_total
        self.dry_run = False  # set by Metrics.set_dry_run

    def labels(self, direction: str, verdict: str):
        if self.dry_run and verdict in (Verdict.BLOCKED, Verdict.REDACTED):
            return _Both(self.counter.labels(direction=direction, verdict=Verdict.DRY_RUN),
                         self.dry_run_total.labels(direction=direction, verdict=verdict))
        return self.counter.labels(direction=direction, verdict=verdict)

    def __getattr__(self, name: str):
        return getattr(self.counter, name)


class _Both:
    def __init__(self, *children) -> None:
        self.children = children

    def inc(self, amount: float = 1) -> None:
        for child in self.children:
            child.inc(amount)


class Metrics:
    """Every dlproxy metric. Prometheus name = `dlproxy_` + attribute name."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=r)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(name, doc, labels, registry=r)

        # --- the first contract metrics ---
        self.dry_run_total = counter(
            "dlproxy_dry_run_total",
            "Flows dry-run let through that would have been blocked or redacted, by direction and that verdict.",
            "direction", "verdict")
        self.dry_run_enabled = gauge(
            "dlproxy_dry_run_enabled", "1 while --dry-run is on (nothing is blocked or redacted), else 0.")
        self.flows_total = FlowsTotal(counter(
            "dlproxy_flows_total", "Inspected flows (messages for websocket) by direction and verdict "
            "(dry_run: would have been blocked or redacted, passed under dry-run).",
            "direction", "verdict"), self.dry_run_total)
        self.detections_total = counter(
            "dlproxy_detections_total", "Validated credentials found, by profile entry, direction and action taken.",
            "entry", "direction", "action")
        self.scanned_bytes_total = counter(
            "dlproxy_scanned_bytes_total", "Bytes of decoded content scanned, by direction.", "direction")
        self.scan_duration_seconds = Histogram(
            "dlproxy_scan_duration_seconds", "Time spent extracting and scanning one flow or message.",
            ["direction"], buckets=SCAN_BUCKETS, registry=r)
        self.inspection_errors_total = counter(
            "dlproxy_inspection_errors_total", "Flows that could not be inspected (and were handled per on_error).",
            "reason")
        self.profile_entries = gauge(
            "dlproxy_profile_entries", "Enabled entries in the active profile.", "profile")
        self.profile_reloads_total = counter(
            "dlproxy_profile_reloads_total", "Profile reloads by result (ok: swapped in; error: rejected, old kept).",
            "result")
        # --- detector quality ---
        self.candidates_total = counter(
            "dlproxy_candidates_total",
            "Prefix hits by entry and result: validated, or rejected by the checksum or the shape check "
            "(look-alikes that were not blocked).",
            "entry", "result")
        self.unscannable_total = counter(
            "dlproxy_unscannable_total", "Content parts that could not be scanned, by reason.", "reason")
        # --- incident sinks ---
        self.incidents_total = counter(
            "dlproxy_incidents_total", "Incidents recorded, by action (what was done, or would be in dry-run).",
            "action")
        self.webhook_delivered_total = counter(
            "dlproxy_webhook_delivered_total", "Incidents delivered to the webhook.")
        self.webhook_dropped_total = counter(
            "dlproxy_webhook_dropped_total",
            "Incidents not delivered to the webhook: queue_full (dropped at once) or failed (retries exhausted).",
            "reason")
        # --- principals and policies (the principal itself is never a label: unbounded) ---
        self.policy_decisions_total = counter(
            "dlproxy_policy_decisions_total",
            "Decisions a profile policy made, by policy name (from the profile) and the action it chose.",
            "policy", "action")
        self.principal_refusals_total = counter(
            "dlproxy_principal_refusals_total",
            "Clients refused for their identity, by source kind and reason (missing, invalid, expired, ...).",
            "source", "reason")
        # --- closing the loop: revocation at the issuer (ops/revocation.py) ---
        self.revocations_total = counter(
            "dlproxy_revocations_total",
            "Revocation outcomes by revoker: queued, revoked (accepted by the revoker), retry (transient failure, "
            "kept), rejected (permanent error, dropped), error (could not be queued).",
            "revoker", "result")
        self.revocation_queue_depth = gauge(
            "dlproxy_revocation_queue_depth", "Revocations waiting in the durable queue (dlp_state_dir).")
        self._profile_label: str | None = None
        self._preinit()

    def _preinit(self) -> None:
        """Touch the label sets we know, so dashboards and rate() see zeros instead of absent series."""
        for d in Direction:
            for v in Verdict:
                self.flows_total.labels(direction=d, verdict=v)
            self.scanned_bytes_total.labels(direction=d)
            self.scan_duration_seconds.labels(direction=d)
        for d in (Direction.REQUEST, Direction.RESPONSE, Direction.WEBSOCKET):
            for v in (Verdict.BLOCKED, Verdict.REDACTED):
                self.dry_run_total.labels(direction=d, verdict=v)
        for res in RELOAD_RESULTS:
            self.profile_reloads_total.labels(result=res)
        for a in PROFILE_ACTIONS:
            self.incidents_total.labels(action=a)
        for reason in ("queue_full", "failed"):
            self.webhook_dropped_total.labels(reason=reason)

    # --- small helpers, so callers need not know label names ---
    def set_dry_run(self, on: bool) -> None:
        self.flows_total.dry_run = on
        self.dry_run_enabled.set(1 if on else 0)

    def count_candidates(self, stats: collections.abc.Mapping[tuple[str, str], int]) -> None:
        """Add the engine's `Detector.scan(data, stats=Counter())` tallies: `{(entry_id, result): n}`."""
        for (entry, result), n in stats.items():
            if n:
                self.candidates_total.labels(entry=entry, result=result).inc(n)

    def set_profile(self, profile_id: str, entries: int) -> None:
        """Publish the active profile; a profile with a new id replaces the old series (one series at a time)."""
        if self._profile_label is not None and self._profile_label != profile_id:
            try:
                self.profile_entries.remove(self._profile_label)
            except KeyError:
                pass
        self._profile_label = profile_id
        self.profile_entries.labels(profile=profile_id).set(entries)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class ProfileStatus(Protocol):
    """What /readyz needs of the profile state (proxy.addon.ProfileState)."""

    @property
    def ready(self) -> bool: ...


class ProxyStatus(Protocol):
    """What /readyz needs of the proxy server: "" when it listens, else why not (proxy.internals.proxy_listening)."""

    def __call__(self) -> str: ...


class MetricsServer:
    """Addon: serves /metrics, /healthz, /readyz on `dlp_metrics_host:dlp_metrics_port` (-1 disables it)."""

    name = "dlp-metrics-server"
    READ_TIMEOUT = 5.0
    MAX_HEADER_BYTES = 16384

    def __init__(self, metrics: Metrics, state: ProfileStatus | None = None,
                 listening: ProxyStatus | None = None) -> None:
        self.metrics = metrics
        self.state = state
        self.listening = listening
        self.server: asyncio.Server | None = None
        self._start_task: asyncio.Task | None = None
        self._bound: tuple[str, int] | None = None

    def load(self, loader) -> None:
        loader.add_option("dlp_metrics_host", str, "127.0.0.1",
                          "Address for the /metrics /healthz /readyz HTTP server.")
        loader.add_option("dlp_metrics_port", int, DEFAULT_PORT,
                          "Port for /metrics /healthz /readyz (0 = pick a free port; -1 = no metrics server).")

    def configure(self, updated) -> None:
        from mitmproxy import ctx, exceptions

        if "dlp_metrics_port" in updated and not -1 <= ctx.options.dlp_metrics_port <= 65535:
            raise exceptions.OptionsError(
                f"dlp_metrics_port must be -1 (off), 0 (any free port) or 1-65535, not {ctx.options.dlp_metrics_port}")
        if self.server is not None and ({"dlp_metrics_host", "dlp_metrics_port"} & set(updated)):
            want = (ctx.options.dlp_metrics_host, ctx.options.dlp_metrics_port)
            if self._bound is None or want[0] != self._bound[0] or want[1] not in (0, self._bound[1]):
                self._stop()
                self._schedule_start()

    def running(self) -> None:
        # Sync on purpose: a `-s` script reload calls running() through invoke_addon_sync.
        self._schedule_start()

    def done(self) -> None:
        self._stop()

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) actually bound, once listening."""
        return self._bound

    def _schedule_start(self) -> None:
        from mitmproxy import ctx

        if ctx.options.dlp_metrics_port < 0:
            logger.info("dlproxy metrics server disabled (dlp_metrics_port=-1)")
            return
        self._start_task = asyncio.get_running_loop().create_task(
            self._start(ctx.options.dlp_metrics_host, ctx.options.dlp_metrics_port))

    async def started(self) -> bool:
        """Wait for the server started by running(); False when it was asked for and could not listen."""
        task = self._start_task
        if task is not None and not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                pass
        return self._bound is not None or task is None

    async def _start(self, host: str, port: int) -> None:
        try:
            self.server = await asyncio.start_server(self._handle, host, port, reuse_address=True)
        except OSError as e:
            logger.error(f"dlproxy metrics server could not listen at {host}:{port}: {e}")
            return
        sock = self.server.sockets[0].getsockname()
        self._bound = (host, sock[1])
        shown = f"[{host}]" if ":" in host else host
        logger.info(f"dlproxy metrics listening at {shown}:{sock[1]}")

    def _stop(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        self._start_task = None
        if self.server is not None:
            self.server.close()  # closes the listening sockets now; open connections finish on their own
            self.server = None
        self._bound = None

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; no I/O, so tests can call it directly."""
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, TEXT, b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE, self.metrics.render()
        if path in ("/healthz", "/livez"):
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            why = self.not_ready()
            if not why:
                return 200, TEXT, b"ready\n"
            return 503, TEXT, f"not ready: {why}\n".encode()
        if path == "/":
            return 200, TEXT, b"dlproxy: /metrics /healthz /readyz\n"
        return 404, TEXT, b"not found\n"

    def not_ready(self) -> str:
        """Why the proxy is not ready ("" when it is): the profile is loaded and the proxy server listens."""
        if self.state is None or not self.state.ready:
            return getattr(self.state, "not_ready_reason", "profile not loaded")
        if self.listening is None:
            return "proxy not running"
        return self.listening()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            if len(head) > self.MAX_HEADER_BYTES:
                return
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3:
                status, ctype, body = 400, TEXT, b"bad request\n"
                method = "GET"
            else:
                method = parts[0]
                try:
                    status, ctype, body = self.respond(method, parts[1])
                except Exception:
                    logger.exception("dlproxy metrics endpoint failed")
                    status, ctype, body = 500, TEXT, b"internal error\n"
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                      500: "Internal Server Error", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Cache-Control: no-store\r\nConnection: close\r\n\r\n".encode("latin-1")
                + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

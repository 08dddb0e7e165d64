"""The mitmproxy addons for buffered HTTP: the active profile, and the request/response inspectors.

    ProfileState       options dlp_profile, dlp_builtin, dlp_backend, dlp_dry_run, dlp_issuer_binding; `.current`
    RequestInspector   `request`: extract → detect → decide → enforce (403 / redact / log) → record
    ResponseInspector  `response`: the same for buffered responses (withheld: replaced by a 502)

Every hook fails closed: mitmproxy forwards a flow whose hook raised (it only logs the exception), so each
hook catches everything and hands it to enforce.fail_closed (count, apply the profile's `on_error`). Bodies
above `dlp_offload_bytes` (default OFFLOAD_BYTES) are extracted and scanned off the event loop (threads, or
worker processes with `dlp_scan_workers`) so one big upload does not stall every other connection: mitmproxy
runs every flow of every client on one event loop. Nothing here ever formats a secret: findings carry only
masked forms and fingerprints, locations, hosts and paths are scrubbed, and exception text is never logged
(only its type and frames).
"""

from __future__ import annotations

import collections.abc
import logging
import time

from mitmproxy import ctx, exceptions, http

from ..engine.detector import Detector
from ..engine.findings import Finding
from ..engine.profile import ProfileError, load_profiles, profile_sources
from ..engine.vocab import Action, Direction, Enforcement, Reason, Verdict
from ..extract import Limits, plain_text_body
from ..inspect import redact
from ..inspect.policy import Active, Decision, FlowContext, decide, with_action
from ..inspect.scanning import Scan, ScanPool, scan_message
from ..inspect.stream import BLOB_MARK
from ..ops.incidents import IncidentLog
from ..ops.metrics import Metrics
from .apis import api_block_response
from .enforce import (
    GENERATED,
    GENERATION,
    INCIDENT,
    STREAMED,
    VERDICT,
    NotReady,
    fail_closed,
    flow_context,
    record_decision,
)

__all__ = ["ProfileState", "RequestInspector", "ResponseInspector", "QuietFlowLog", "Scan", "scan_message",
           "GENERATED", "GENERATION", "INCIDENT", "STREAMED", "VERDICT", "NotReady"]

logger = logging.getLogger(__name__)

OFFLOAD_BYTES = 256 * 1024  # bodies above this are scanned off the event loop ...
PLAIN_TEXT_FACTOR = 8  # ... unless they are plain text that Hyperscan scans this much faster (see _placement)
RECENT_GENERATIONS = 8  # profiles kept so in-flight flows finish with the one they started with

class ProfileState:
    """The loaded profile, detector and limits; swapped atomically on configure or reload."""

    name = "profilestate"

    def __init__(self, metrics=None) -> None:
        self.metrics = metrics
        self.current: Active | None = None
        self._recent: dict[int, Active] = {}
        self._generation = 0
        self._source: tuple[tuple[str, ...], str, bool] | None = None
        self.dry_run = False
        self.issuer_binding = True
        self.pool = ScanPool(0)  # big bodies: see scanning.py
        self.offload_bytes = OFFLOAD_BYTES  # dlp_offload_bytes
        self.option_problems: list[str] = []  # set by options.OptionCheck

    @property
    def ready(self) -> bool:
        return self.current is not None and not self.option_problems

    @property
    def not_ready_reason(self) -> str:
        return "invalid options" if self.option_problems else "profile not loaded"

    def set_option_problems(self, problems: list[str]) -> None:
        """Bad or unknown dlp_* options (options.OptionCheck): until there are none, every flow is blocked."""
        if problems == self.option_problems:
            return
        self.option_problems = list(problems)
        for line in problems:
            logger.error(f"dlproxy option error: {line}; every flow is blocked until it is fixed")
        if not problems:
            logger.info("dlproxy options are valid again: inspecting")

    def load(self, loader) -> None:
        loader.add_option(
            "dlp_profile", collections.abc.Sequence[str], [],
            "Profile overlay file(s) on the built-in profile; repeat to merge (later files add entries, "
            "override fields by id, `enabled: false` disables). `builtin` places the built-in explicitly.")
        loader.add_option(
            "dlp_builtin", bool, True,
            "Start from the built-in credentials-and-secrets profile; false: the dlp_profile files replace it.")
        loader.add_option(
            "dlp_backend", str, "auto", "Prefilter backend: auto (Hyperscan when installed), hyperscan, pyahocorasick.",
            choices=["auto", "hyperscan", "pyahocorasick"])
        loader.add_option(
            "dlp_dry_run", bool, False,
            "Never block or redact: record what would have been done (incidents and metrics say so).")
        loader.add_option(
            "dlp_issuer_binding", bool, True,
            "Allow a credential sent to one of its own issuer hosts (profile entry `issuers`); "
            "false blocks credentials to every host.")
        loader.add_option(
            "dlp_scan_workers", int, 0,
            "Bodies over dlp_offload_bytes are scanned off the event loop: 0 = in threads, N = in N "
            "worker processes (better latency for other connections when a core is free; more memory).")
        loader.add_option(
            "dlp_offload_bytes", int, OFFLOAD_BYTES,
            "Bodies larger than this are scanned off the event loop. Inline scanning gives more throughput "
            "but stalls every other connection for the time of the scan; offloading keeps them responsive.")

    def configure(self, updated) -> None:
        if "dlp_dry_run" in updated:
            self.dry_run = ctx.options.dlp_dry_run
            if self.metrics is not None:
                self.metrics.set_dry_run(self.dry_run)  # flows it lets through count as dry_run, not blocked
        if "dlp_issuer_binding" in updated:
            self.issuer_binding = ctx.options.dlp_issuer_binding
        if "dlp_offload_bytes" in updated:
            if ctx.options.dlp_offload_bytes < 0:
                raise exceptions.OptionsError(
                    f"dlp_offload_bytes must be >= 0, not {ctx.options.dlp_offload_bytes}")
            self.offload_bytes = ctx.options.dlp_offload_bytes
        if "dlp_scan_workers" in updated:
            workers = ctx.options.dlp_scan_workers
            if not 0 <= workers <= 64:
                raise exceptions.OptionsError(f"dlp_scan_workers must be 0 (threads) to 64, not {workers}")
            if workers != self.pool.workers:
                self.pool.shutdown()
                self.pool = ScanPool(workers)
        # Preloaded addons get no initial all-options configure: without a dlp_* option, running() loads.
        if "dlp_profile" in updated or "dlp_backend" in updated or "dlp_builtin" in updated:
            source = self._wanted()
            if self._source is None and source == ((), "auto", True):
                return  # defaults at startup (or a rollback to them): running() loads once, after all options
            self._load(source)

    def running(self) -> None:
        """Load now if no dlp_* option did; a failure is logged, and mitmproxy's startup check exits 1."""
        try:
            if self.pool.workers:
                self.pool.start()
            if self.current is None:
                self._load(self._wanted())
        except exceptions.OptionsError as e:
            for line in str(e).splitlines():
                logger.error(line)
        except Exception as e:  # never break the other addons' running(); the error fails startup
            logger.error(f"dlproxy could not start ({type(e).__name__}: {e})")

    def done(self) -> None:
        self.pool.shutdown()

    @staticmethod
    def _wanted() -> tuple[tuple[str, ...], str, bool]:
        return tuple(ctx.options.dlp_profile), ctx.options.dlp_backend, ctx.options.dlp_builtin

    def _load(self, source: tuple[tuple[str, ...], str, bool]) -> None:
        if source == self._source and self.current is not None:
            return
        try:
            active = self.build(*source)
        except ProfileError as e:
            raise exceptions.OptionsError(_problems_text(e.problems)) from None
        self._source = source
        self._swap(active, "configure")

    def build(self, paths: tuple[str, ...], backend: str, builtin: bool = True) -> Active:
        """Load (overlays on the built-in profile unless `builtin` is False), validate and compile; raises
        ProfileError listing every problem."""
        try:
            profile = load_profiles(profile_sources(paths, builtin))
            detector = Detector(profile, backend=backend)
        except ProfileError:  # a ValueError too: keep its FILE:LINE problems as they are
            raise
        except ValueError as e:  # e.g. backend 'hyperscan' without the package
            raise ProfileError([f"dlp_backend: {e}"]) from None
        detector.prepare_streams(BLOB_MARK)  # now, not in the first streamed response (its events would wait)
        return Active(profile, detector, Limits.from_settings(profile.settings), self._generation + 1)

    def reload(self, reason: str = "manual") -> bool:
        """Re-read the profile files; on any problem log each `FILE:LINE: field: message` and keep the old one."""
        if self._source is None:
            return False
        try:
            active = self.build(*self._source)
        except ProfileError as e:
            for line in e.problems:
                logger.error(f"dlproxy profile reload ({reason}) rejected: {line}")
            logger.error(f"dlproxy keeps profile {self.current.profile.id if self.current else '(none)'} "
                         f"(generation {self.current.generation if self.current else 0})")
            if self.metrics is not None:
                self.metrics.profile_reloads_total.labels(result="error").inc()
            return False
        self._swap(active, reason)
        if self.metrics is not None:
            self.metrics.profile_reloads_total.labels(result="ok").inc()
        return True

    def _swap(self, active: Active, reason: str) -> None:
        self._generation = active.generation
        self._recent[active.generation] = active
        for old in sorted(self._recent)[:-RECENT_GENERATIONS]:
            del self._recent[old]
        self.current = active
        entries = len(active.profile.enabled_entries)
        if self.metrics is not None:
            self.metrics.set_profile(active.profile.id, entries)
        logger.info(f"dlproxy profile {active.profile.id}: {entries} entries, {active.detector.backend} prefilter "
                    f"(generation {active.generation}, {reason})")

    def active_for(self, flow: http.HTTPFlow) -> Active:
        """The profile this flow is inspected with: the one current when it was first inspected."""
        if self.option_problems:
            raise NotReady("invalid options")
        gen = flow.metadata.get(GENERATION)
        if gen is not None and (active := self._recent.get(gen)) is not None:
            return active
        active = self.current
        if active is None:
            raise NotReady("no profile loaded")
        flow.metadata[GENERATION] = active.generation
        return active


class QuietFlowLog:
    """mitmdump's flow log prints request URLs at its default `flow_detail=1` (query strings carry tokens) and
    headers from 2. When nobody chose a level (still the default), turn it off; `dlproxy run` sets 0 itself.
    An operator who wants the flow log back sets `flow_detail` to 2 or more, knowing it prints credentials."""

    name = "dlp-quiet-flow-log"

    def running(self) -> None:
        opts = ctx.options
        if "flow_detail" in opts and not opts.has_changed("flow_detail"):
            opts.update(flow_detail=0)
            logger.info("dlproxy set flow_detail=0: mitmproxy's flow log would print URLs that carry credentials")


def _problems_text(problems: list[str]) -> str:
    return "dlproxy cannot load the profile:\n" + "\n".join(problems)


# --- the inspectors --------------------------------------------------------------------------------------


class _Inspector:
    """Shared machinery of the request and response inspectors; subclasses pick the message."""

    direction: Direction

    def __init__(self, state: ProfileState, metrics: Metrics | None = None,
                 incidents: IncidentLog | None = None) -> None:
        self.state = state
        self.metrics = metrics
        self.incidents = incidents
        self._clean = metrics.flows_total.labels(direction=self.direction, verdict=Verdict.CLEAN) if metrics else None
        self._duration = metrics.scan_duration_seconds.labels(direction=self.direction) if metrics else None
        self._bytes = metrics.scanned_bytes_total.labels(direction=self.direction) if metrics else None

    # subclass interface
    def message(self, flow: http.HTTPFlow) -> http.Message:
        raise NotImplementedError

    def url(self, flow: http.HTTPFlow) -> str | None:
        return None

    def inspect(self, flow: http.HTTPFlow) -> collections.abc.Awaitable[None] | None:
        """Inspect and enforce. Small bodies are done here and now (no coroutine: this runs for every flow);
        a big body returns an awaitable that scans it off the event loop (mitmproxy awaits what a hook returns)."""
        active = None
        try:
            active = self.state.active_for(flow)
            msg = self.message(flow)
            body = msg.raw_content or b""
            headers = _header_list(msg.headers)
            trailers = trailer_list(msg)
            offload, blob_free = self._placement(active, headers, body)
            if offload:
                return self._inspect_offloaded(flow, active, msg, headers, body, trailers, blob_free)
            started = time.perf_counter()
            scan = scan_message(active, self.url(flow), headers, body, trailers=trailers, blob_free=blob_free)
            self.conclude(flow, active, msg, scan, started)
        except Exception as exc:  # never fail open: mitmproxy would forward the flow
            self.fail(flow, exc, active)
        return None

    def _placement(self, active: Active, headers, body: bytes) -> tuple[bool, bool | None]:
        """(scan off the event loop?, body checked to hold no base64 run or separated hex?; None: not checked).

        Off the loop when the scan would stall other connections: bodies over dlp_offload_bytes, except
        uncompressed text without base64 runs under Hyperscan, which scans about an order of magnitude faster and
        stays inline up to PLAIN_TEXT_FACTOR times the limit. The scan is told what that check found, so it is not
        made twice. (A thread would move Hyperscan's passes to a second core, as they release the GIL, but on a
        quiet two-core machine the hand-off cost more than that gave: docs/proxy.md, "Large bodies".)
        """
        limit = self.state.offload_bytes
        if len(body) <= limit:
            return False, None
        if active.detector.backend != "hyperscan":
            return True, False  # no precheck without it: the scan searches the body itself
        if len(body) > limit * PLAIN_TEXT_FACTOR:
            return True, None  # the scan makes the check, off the loop
        plain = plain_text_body(headers, body)
        return not plain, plain

    async def _inspect_offloaded(self, flow: http.HTTPFlow, active: Active, msg: http.Message, headers,
                                 body: bytes, trailers, blob_free: bool | None) -> None:
        try:
            started = time.perf_counter()
            scan = await self.state.pool.scan(active, self.url(flow), headers, body, trailers, blob_free)
            self.conclude(flow, active, msg, scan, started)
        except Exception as exc:
            self.fail(flow, exc, active)

    def conclude(self, flow: http.HTTPFlow, active: Active, msg: http.Message, scan: Scan, started: float) -> None:
        """Count the scan, then decide, enforce and record (clean flows stop after the counting)."""
        if self.metrics is not None:
            self._duration.observe(time.perf_counter() - started)
            self._bytes.inc(scan.decoded_bytes)
            if scan.stats:
                self.metrics.count_candidates(scan.stats)
        if not scan.findings and not scan.unscannable:
            if self._clean is not None:
                self._clean.inc()
            flow.metadata[VERDICT] = str(Verdict.CLEAN)
            return
        ctx_ = self.context(flow, scan.secrets)
        decision = decide(scan.findings, scan.unscannable, ctx_, active, self.state.dry_run,
                          self.state.issuer_binding)
        if decision.enforcement == Enforcement.REDACT:
            decision = self.redact(flow, msg, active, scan, decision)
        self.finish(flow, decision, ctx_, scan)

    def context(self, flow: http.HTTPFlow, secrets: dict[str, Finding] | None = None,
                scanned: bool = True) -> FlowContext:
        return flow_context(flow, self.direction, secrets, scanned)

    # --- enforcement ---

    def redact(self, flow: http.HTTPFlow, msg: http.Message, active: Active, scan: Scan,
               decision: Decision) -> Decision:
        """Replace each secret whose action is redact; verify by re-inspecting; block when not possible."""
        redacted = {g.fingerprint for g, a in decision.outcomes if a == Action.REDACT}
        targets = {s: f.entry_id for s, f in scan.secrets.items() if f.fingerprint in redacted}
        problem = self._rewrite(flow, msg, targets)
        if problem is None:
            again = scan_message(active, self.url(flow), _header_list(msg.headers), msg.raw_content or b"",
                                 trailers=trailer_list(msg))
            check = decide(again.findings, again.unscannable, self.context(flow, again.secrets), active,
                           False, self.state.issuer_binding)
            if check.action in (Action.BLOCK, Action.REDACT):
                problem = "a credential was still present after redaction"
        if problem is None:
            return decision
        return with_action(decision, Action.BLOCK, f"{problem}, blocked instead of redacted")

    def _rewrite(self, flow: http.HTTPFlow, msg: http.Message, targets: dict[str, str]) -> str | None:
        """Rewrite the message in place; None on success, else why it cannot be done safely."""
        remaining = set(targets)
        redactor = redact.Redactor(targets)
        if isinstance(msg, http.Request):
            out, done = redactor(msg.path.encode("utf-8", "surrogateescape"), quoted=True)
            path = out.decode("utf-8", "surrogateescape")
            if done:
                msg.path = path
                remaining -= done
        fields = []
        for name, value in msg.headers.fields:
            new, done = redactor(value)
            fields.append((name, new))
            remaining -= done
        msg.headers.fields = tuple(fields)
        remaining -= redact_trailers(msg, redactor)
        body = msg.raw_content
        if body:
            encoding = (msg.headers.get("content-encoding") or "identity").strip().lower()
            new, done = redactor(body, quoted=redact.is_form(msg.headers.get("content-type")))
            if done and encoding not in ("identity", ""):
                return f"cannot rewrite a Content-Encoding: {encoding} body"
            if done:
                msg.raw_content = new
                if "content-length" in msg.headers:
                    msg.headers["content-length"] = str(len(new))
                remaining -= done
            elif encoding not in ("identity", "") and remaining:
                return f"cannot redact inside a Content-Encoding: {encoding} body"
        if remaining:
            return "the credential is encoded where it cannot be rewritten"
        return None

    def finish(self, flow: http.HTTPFlow, decision: Decision, ctx_: FlowContext,
               scan: Scan | None = None) -> None:
        """Record (metrics, incident) and enforce a decision."""
        incident_id = record_decision(self.metrics, self.incidents, decision, ctx_, scan=scan)
        if not decision.incident_worthy and decision.verdict == Verdict.ALLOWED:
            logger.debug(f"dlproxy allowed {ctx_.describe()}: {decision.reason}")
        self.enforce(flow, decision, incident_id)

    def enforce(self, flow: http.HTTPFlow, decision: Decision, incident_id: str | None) -> None:
        """Count the flow, mark it, and answer it with the block response when the decision blocks."""
        if self.metrics is not None:
            self.metrics.flows_total.labels(direction=self.direction, verdict=decision.verdict).inc()
        flow.metadata[VERDICT] = str(decision.verdict)
        if incident_id:
            flow.metadata[INCIDENT] = incident_id
        if decision.enforcement == Enforcement.BLOCK:
            flow.response = api_block_response(flow, decision, incident_id or "", self.direction)
            flow.metadata[GENERATED] = True

    def fail(self, flow: http.HTTPFlow, exc: BaseException, active: Active | None) -> None:
        """An inspection that raised: count it, apply on_error (block by default), never raise."""
        fail_closed(flow, exc, f"could not inspect {self.direction}", lambda: self.context(flow, scanned=False),
                    active.settings if active is not None else None, self.state.dry_run, self.metrics,
                    self.incidents, lambda decision, incident_id: self.enforce(flow, decision, incident_id))


def _header_list(headers: http.Headers) -> list[tuple[str, str]]:
    """(name, value) pairs as str, as mitmproxy decodes them (UTF-8, surrogateescape), without its per-item API."""
    return [(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for k, v in headers.fields]


def trailer_list(msg: http.Message) -> list[tuple[str, str]]:
    """The message's trailers (HTTP/2, or chunked HTTP/1: internals.carry_http1_trailers) as (name, value)."""
    return _header_list(msg.trailers) if msg.trailers else []


def redact_trailers(msg: http.Message, redactor: redact.Redactor) -> set[str]:
    """Rewrite the trailer values in place; the secrets replaced. Trailers go out after the body, so this
    works for a streamed message too as long as it runs before its end."""
    if not msg.trailers:
        return set()
    done_all: set[str] = set()
    fields = []
    for name, value in msg.trailers.fields:
        new, done = redactor(value)
        fields.append((name, new))
        done_all |= done
    msg.trailers.fields = tuple(fields)
    return done_all


class RequestInspector(_Inspector):
    """Inspects each buffered request before it is sent upstream; a block means the upstream never sees it."""

    name = "dlp-request-inspector"
    direction = Direction.REQUEST

    def message(self, flow):
        return flow.request

    def url(self, flow):
        return flow.request.url

    def request(self, flow: http.HTTPFlow) -> collections.abc.Awaitable[None] | None:
        if flow.response or flow.error or not flow.live:
            return None  # answered by another addon (or us), or dead: nothing goes upstream
        if flow.request.stream or flow.metadata.get(STREAMED):
            return None  # already forwarded as a stream, inspected by StreamGuard
        return self.inspect(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        """Count flows mitmproxy refused for body_size_limit: blocked as too large, never inspected."""
        try:
            msg = flow.error.msg if flow.error else ""
            if "body_size_limit" not in msg:
                return
            direction = Direction.RESPONSE if msg.startswith("Response") else Direction.REQUEST
            if self.metrics is not None:
                self.metrics.flows_total.labels(direction=direction, verdict=Verdict.BLOCKED).inc()
                self.metrics.unscannable_total.labels(reason=Reason.TOO_LARGE).inc()
            where = self.context(flow, scanned=False).describe()
            logger.warning(f"dlproxy blocked {direction} {where}: body larger than body_size_limit "
                           f"({ctx.options.body_size_limit}), refused without inspection")
        except Exception:
            logger.error("dlproxy error hook failed")


class ResponseInspector(_Inspector):
    """Inspects each buffered response before it reaches the client; a block replaces it by a 502 (withheld)."""

    name = "dlp-response-inspector"
    direction = Direction.RESPONSE

    def message(self, flow):
        return flow.response

    def response(self, flow: http.HTTPFlow) -> collections.abc.Awaitable[None] | None:
        if flow.metadata.get(GENERATED) or flow.response is None or flow.error:
            return None
        if flow.response.stream or flow.metadata.get(STREAMED) or flow.websocket is not None:
            return None  # streamed (already forwarded, inspected by StreamGuard) or a WebSocket handshake
        return self.inspect(flow)

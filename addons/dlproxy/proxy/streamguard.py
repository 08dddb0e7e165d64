"""StreamGuard: inspects the bodies mitmproxy streams instead of buffering, chunk by chunk, with minimal hold-back.

    requestheaders   only with `stream_large_bodies` set: an upload above it, or of unknown length, gets a scanning
                     stream callable (else mitmproxy would switch it to an unscanned stream mid-way).
                     Its URL and headers are inspected here, since RequestInspector skips streamed requests.
    responseheaders  text/event-stream, chunked or unknown-length responses, and bodies above
                     `stream_large_bodies` get a scanning stream callable; the response headers are inspected here.
    response, error  count the flow once in flows_total, however its stream ended.

What is forwarded: every byte that cannot be part of a token at once; only a tail that could still become one is
held (stream.ScanWindow). SSE is scanned on the reassembled text of the AI APIs' deltas and held back in whole
events (sse.SSEScanner). Compressed streams are decoded as they stream and forwarded decoded (Content-Encoding
removed): which responses stream is only known at responseheaders, too late to rewrite Accept-Encoding, and
decoding keeps the hold-back byte-precise and redaction possible. When the length may change (decoding, SSE
redaction or error event) Content-Length is removed and HTTP/1 gets `Transfer-Encoding: chunked`; a fixed-length
body keeps its Content-Length and is redacted with same-width markers.

A block mid-stream: `flow.kill()` is ignored while a body streams, so the callable closes the upstream
connection itself (internals.close_upstream): the upstream stops generating, an HTTP/1 client sees the body
end early, an HTTP/2 client sees only this stream reset. An SSE response from a known AI API first gets that
API's error event (sse.error_event). Every callable catches everything and cuts the stream: from an exception,
mitmproxy would only log a crash, drop that chunk and let the stream run on to its normal end.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import ctx, http
from mitmproxy.utils import human

from ..engine.vocab import Direction, Enforcement, Verdict
from ..extract.core import Limits, Unscannable
from ..extract.encoding import ContentDecoder, DecodeError
from ..inspect.policy import Active, Decision, FlowContext, decide, decide_error
from ..inspect.scanning import Scan
from ..inspect.sse import MAX_EVENT_BYTES, SSEScanner, error_event
from ..inspect.stream import REDACT, ByteStreamScanner, Uninspectable
from ..ops.incidents import IncidentLog
from ..ops.metrics import Metrics
from ..ops.revocation import Sighting
from . import internals
from .addon import ProfileState, RequestInspector, ResponseInspector, scan_message, trailer_list
from .apis import api_block_response, api_of, jsonrpc_request
from .enforce import (
    GENERATED,
    INCIDENT,
    STREAMED,
    VERDICT,
    StreamJudge,
    block_body,
    fail_closed,
    flow_context,
    record_decision,
)

logger = logging.getLogger(__name__)

SSE_TYPES = ("text/event-stream",)
EVENTSTREAM_TYPES = ("application/vnd.amazon.eventstream",)
LINE_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines",
              "application/jsonlines", "application/json-seq", "application/x-json-stream")


def event_framing(headers) -> str | None:
    """How a streamed response is split into events: sse | lines | eventstream; None: a plain byte stream."""
    ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype in SSE_TYPES:
        return "sse"
    if ctype in EVENTSTREAM_TYPES:
        return "eventstream"
    if ctype in LINE_TYPES or "x-vercel-ai-data-stream" in headers:
        return "lines"
    return None


def _length(headers) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _sent_as_http11(flow: http.HTTPFlow, direction: Direction) -> bool:
    """Is the message written as HTTP/1.1 (which frames a body of unknown length with chunks)? A response goes
    out in the client's version; a request in the upstream's, which is HTTP/2 only when its connection, opened
    before the request (mitmproxy's eager connection strategy), negotiated h2. `Transfer-Encoding` must not reach
    an HTTP/2 peer: mitmproxy drops it from a message it converts from HTTP/1, but sends an HTTP/2 message's
    headers as they are (curl exits 92 on it, PROTOCOL_ERROR)."""
    if flow.request.http_version == "HTTP/1.0":
        return False
    if direction == Direction.RESPONSE:
        return flow.request.http_version == "HTTP/1.1"
    server = flow.server_conn
    return not (server is not None and server.alpn == b"h2")


def _upstream_unknown(flow: http.HTTPFlow) -> bool:
    """A request from an HTTP/2 (or /3) client whose TLS upstream connection is not open yet (mitmproxy's lazy
    connection strategy): the upstream may still negotiate HTTP/1.1 or HTTP/2."""
    req = flow.request
    server = flow.server_conn
    return (not req.http_version.startswith("HTTP/1") and req.scheme == "https"
            and (server is None or not server.connected))


class UpstreamFraming:
    """The framing header of a streamed upload whose upstream speaks HTTP/1.1 or HTTP/2, unknown when its headers
    are decided (the upstream connection opens only after requestheaders: connection_strategy=lazy).

    HTTP/1.1 needs `Transfer-Encoding: chunked` for a body of unknown length (mitmproxy would send the body
    unframed); an HTTP/2 upstream must not get it (mitmproxy sends an HTTP/2 request's headers as they are). Such
    an upload gets the header when the upstream is expected to speak HTTP/1.1 and waits here; the upstream's TLS
    handshake (ALPN), done before mitmproxy sends the request's headers, settles it. The ALPN of each handshake is
    kept per client connection and address, so an upload over an already open connection is decided at once."""

    def __init__(self) -> None:
        self.waiting: dict[str, list[http.HTTPFlow]] = {}  # client id -> uploads whose upstream is not known yet
        self.alpn: dict[tuple[str, tuple], bytes | None] = {}  # (client id, upstream address) -> its last ALPN

    def expects_http11(self, flow: http.HTTPFlow) -> bool:
        """Will the upload be sent as HTTP/1.1? Registers it when only the handshake can tell."""
        if not _upstream_unknown(flow):
            return _sent_as_http11(flow, Direction.REQUEST)
        client = flow.client_conn.id
        self.waiting.setdefault(client, []).append(flow)
        return self.alpn.get((client, (flow.request.host, flow.request.port))) != b"h2"

    def tls_established_server(self, data) -> None:
        try:
            client, server = data.context.client.id, data.conn
            self.alpn[(client, tuple(server.address or ()))] = server.alpn
            flows = self.waiting.get(client)
            if not flows:
                return
            rest = []
            for flow in flows:
                if (flow.request.host, flow.request.port) != tuple(server.address or ()):
                    rest.append(flow)
                elif server.alpn == b"h2":
                    flow.request.headers.pop("transfer-encoding", None)
                elif "chunked" not in flow.request.headers.get("transfer-encoding", "").lower():
                    flow.request.headers["transfer-encoding"] = "chunked"
            self.waiting[client] = rest
        except Exception:
            logger.exception("dlproxy could not settle the framing of a streamed upload")

    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def client_disconnected(self, client) -> None:
        self.waiting.pop(client.id, None)
        for key in [k for k in self.alpn if k[0] == client.id]:
            del self.alpn[key]

    def _done(self, flow: http.HTTPFlow) -> None:
        flows = self.waiting.get(flow.client_conn.id)
        if flows and flow in flows:
            flows.remove(flow)


class _Discard:
    """The stream callable of a streamed response replaced by our block (502) at responseheaders: the upstream
    body is dropped (its connection closed) and the block's own body goes out instead. Upstream trailers that
    arrive before the upstream is closed are stored by mitmproxy on the block response: they are dropped too."""

    def __init__(self, flow: http.HTTPFlow, body: bytes):
        self.flow = flow
        self.body = body

    def __call__(self, data: bytes) -> list[bytes]:
        if self.flow.response is not None:
            self.flow.response.trailers = None
        body, self.body = self.body, b""
        if body:
            try:
                internals.close_upstream(self.flow)
            except Exception:
                logger.error("dlproxy could not close the upstream of a blocked response")
        return [body] if body else []


class FlowStream:
    """The `stream` callable of one streamed message: decode → scan → forward what is decided. Never raises."""

    def __init__(self, guard: StreamGuard, flow: http.HTTPFlow, direction: Direction, active: Active,
                 ctx_: FlowContext, decoder: ContentDecoder | None, framing: str | None, fixed_length: bool,
                 verdict: str = Verdict.CLEAN,
                 incident_id: str | None = None):
        self.guard = guard
        self.flow = flow
        self.direction = direction
        self.decoder = decoder
        self.framing = framing
        self.judge = StreamJudge(guard.state, active, ctx_, guard.metrics, guard.incidents, direction, logger,
                                 verdict, incident_id)
        self.msg = flow.request if direction == Direction.REQUEST else flow.response
        detector = active.detector
        if framing:
            hold = min(active.settings.max_inspect_bytes, MAX_EVENT_BYTES)
            self.scanner = SSEScanner(detector, self.judge.verdicts, api_of(flow), max_hold=hold, framing=framing)
        else:
            self.scanner = ByteStreamScanner(detector, self.judge.verdicts, "body:stream", fixed_length,
                                             Limits.from_settings(active.settings),
                                             self.msg.headers.get("content-type", ""))
        self.state = "open"  # open | passthrough | cut
        self.elapsed = 0.0
        self.scanned = 0
        self.accounted = False

    # -- the callable --

    def __call__(self, data: bytes) -> list[bytes]:
        if self.state == "cut":
            if not data:
                self.msg.trailers = None  # arrived after the cut: never forwarded
            return []
        started = time.perf_counter()
        try:
            cut = self._trailers() if not data else None
            if cut is not None:
                out = cut
            else:
                out = self._passthrough(data) if self.state == "passthrough" else self._step(data)
        except Exception as exc:  # never raise from a stream callable: cut instead
            out = self._fail(exc)
        self.elapsed += time.perf_counter() - started
        if not data:
            self.account()
        return [c for c in out if c]  # never b"": on HTTP/1 it would end the body

    def _pieces(self, data: bytes):
        if self.decoder is None:
            return [data] if data else []
        return self.decoder.feed(data) if data else self.decoder.finish()

    def _step(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        scanner = self.scanner
        names = self.decoder.names if self.decoder is not None else None
        try:
            for piece in self._pieces(data):
                if names:
                    out += self._names()
                    if self.state == "cut":
                        return out
                self.scanned += len(piece)
                out += scanner.feed(piece)
                if scanner.stopped:
                    break
            if names:
                out += self._names()
                if self.state == "cut":
                    return out
            if not data and not scanner.stopped:
                out += scanner.finish()
        except DecodeError as e:
            return out + self._unscannable(e.reason, can_pass=False)
        except Uninspectable as e:
            return out + self._unscannable(e.reason, can_pass=e.can_pass)
        if scanner.stopped:
            out += self._cut()
        return out

    def _names(self) -> list[bytes]:
        """The file names and comments of the gzip member headers decoded so far: never forwarded (the body goes
        out decoded) but content all the same, as in a buffered body; a secret there to block cuts the stream
        before the member's data is forwarded."""
        names = self.decoder.names
        text = b"\n".join(names)
        names.clear()
        hits = self.judge.active.detector.scan(text)
        if not hits:
            return []
        verdicts = self.judge.verdicts
        verdicts.remember(hits, text)
        blocked, _ = verdicts.check([f.at("body:gzip-names") for f in hits])
        return self._cut() if blocked is not None else []

    def _passthrough(self, data: bytes) -> list[bytes]:
        try:
            return list(self._pieces(data))
        except DecodeError:
            return self._cut()

    def _trailers(self) -> list[bytes] | None:
        """Inspect the trailers; None when they may follow the body, else what a cut sends.

        mitmproxy stores the trailers (HTTP/2, chunked HTTP/1) on the message before this final call and forwards
        them only after it, so they are judged while the body's undecided tail is still held: a credential in a
        trailer cuts the message like one in its body (the tail and the trailers are never sent)."""
        msg = self.msg
        if not msg.trailers:
            return None
        active = self.judge.active
        scan = scan_message(active, None, [], b"", trailers=trailer_list(msg))
        if not scan.findings and not scan.unscannable:
            return None
        decision = self.judge.decide(scan.findings, scan.unscannable)
        if decision.enforcement == REDACT:
            decision = self.guard.inspectors[self.direction].redact(self.flow, msg, active, scan, decision)
        ctx_ = flow_context(self.flow, self.direction, scan.secrets)
        self.judge.keep(decision, self.guard.record(decision, ctx_, scan))
        return self._cut() if decision.enforcement == Enforcement.BLOCK else None

    # -- policy (StreamJudge) --

    def _unscannable(self, reason: str, can_pass: bool) -> list[bytes]:
        decision = self.judge.unscannable("body:stream", reason)
        if decision.enforcement == Enforcement.BLOCK or not can_pass:
            return self._cut()
        # policy lets what cannot be inspected through (on_oversize allow/scan_prefix, or dry-run)
        self.state = "passthrough"
        if isinstance(self.scanner, SSEScanner):
            return [b"".join(ev.raw for ev in self.scanner.pending) + self.scanner.parser.rest()]
        return [self.scanner.held()]

    def _fail(self, exc: Exception) -> list[bytes]:
        """The stream is cut whatever on_error says."""
        self.judge.fail(self.flow, exc, f"stream inspection failed, cutting the {self.direction} of",
                        self.judge.active.settings)
        return self._cut()

    # -- enforcement --

    def _cut(self) -> list[bytes]:
        """Stop the stream: close the upstream, drop the trailers, give an SSE client its API's error event."""
        self.state = "cut"
        self.msg.trailers = None
        out: list[bytes] = []
        try:
            if self.framing and self.direction == Direction.RESPONSE:
                rpc = jsonrpc_request(self.flow)
                out.append(error_event(self.scanner.error_flavor, self.error_body(), self.framing,
                                       rpc[0] if rpc else None))
        except Exception:
            logger.error("dlproxy could not build the stream error event")
        try:
            internals.close_upstream(self.flow)
        except Exception:
            logger.error("dlproxy could not close the upstream connection of a cut stream")
        try:
            # Ignored while the body streams, but checked once the upstream's end of message arrives (if it came
            # in the same read as the cut): the client then sees the body broken off, never a clean end.
            if self.flow.killable:
                self.flow.kill()
        except Exception:
            pass
        self.account()
        return out

    def error_body(self) -> dict:
        decision = self.judge.block_decision or decide_error("stream", None)
        return block_body(decision, self.judge.incident_id or "", self.direction)

    def account(self) -> None:
        """Count the flow once: flows_total with its strongest verdict, bytes scanned, scan time."""
        if self.accounted:
            return
        self.accounted = True
        try:
            verdict, incident_id = self.judge.verdict, self.judge.incident_id
            self.flow.metadata[VERDICT] = str(verdict)
            if incident_id:
                self.flow.metadata[INCIDENT] = incident_id
            m = self.guard.metrics
            if m is not None:
                m.flows_total.labels(direction=self.direction, verdict=verdict).inc()
                m.scanned_bytes_total.labels(direction=self.direction).inc(self.scanned)
                m.scan_duration_seconds.labels(direction=self.direction).observe(self.elapsed)
        except Exception:
            logger.error("dlproxy could not account a streamed flow")


class StreamGuard:
    """Installs scanning stream callables; see the module docstring."""

    name = "dlp-stream-guard"

    def __init__(self, profiles: ProfileState, metrics: Metrics | None = None,
                 incidents: IncidentLog | None = None) -> None:
        self.state = profiles
        self.metrics = metrics
        self.incidents = incidents
        self.inspectors = {Direction.REQUEST: RequestInspector(profiles, metrics, incidents),
                           Direction.RESPONSE: ResponseInspector(profiles, metrics, incidents)}
        self.large: int | None = None
        self.framing = UpstreamFraming()
        self.addons = [self.framing]

    def configure(self, updated) -> None:
        if "stream_large_bodies" in updated:
            try:
                self.large = human.parse_size(ctx.options.stream_large_bodies)
            except ValueError:  # proxyserver rejects the option itself
                self.large = None

    # -- hooks --

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.large is None or flow.response or flow.error or not flow.live:
            return
        try:
            req = flow.request
            length = _length(req.headers)
            if length is not None and length <= self.large:
                return
            if length is None and req.http_version.startswith("HTTP/1") and \
                    "chunked" not in req.headers.get("transfer-encoding", "").lower():
                return  # HTTP/1 without Content-Length or chunked: no body
            self.install(flow, Direction.REQUEST)
        except Exception as exc:
            self.fail_head(flow, Direction.REQUEST, exc)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        resp = flow.response
        if resp is None or flow.error or flow.metadata.get(GENERATED):
            return
        try:
            if flow.request.method.upper() == "HEAD" or resp.status_code < 200 or resp.status_code in (204, 304):
                return
            framing = event_framing(resp.headers)
            always = framing in ("sse", "eventstream")  # event streams are streamed even with a length
            length = _length(resp.headers)
            if length == 0 and not always:
                return
            chunked = "chunked" in resp.headers.get("transfer-encoding", "").lower()
            large = self.large is not None and length is not None and length > self.large
            if not (always or chunked or length is None or large or resp.stream):
                return  # buffered: ResponseInspector
            self.install(flow, Direction.RESPONSE, framing)
        except Exception as exc:
            self.fail_head(flow, Direction.RESPONSE, exc)

    def response(self, flow: http.HTTPFlow) -> None:
        self._account(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._account(flow)

    # -- installing --

    def install(self, flow: http.HTTPFlow, direction: Direction, framing: str | None = None) -> None:
        active = self.state.active_for(flow)
        verdict, incident_id = self.inspect_head(flow, direction, active)
        if verdict is None:
            return  # blocked on the headers
        msg = flow.request if direction == Direction.REQUEST else flow.response
        try:
            decoder = ContentDecoder.for_header(msg.headers.get("content-encoding"), active.limits)
        except DecodeError as e:
            self.undecodable(flow, direction, active, e.reason)
            return
        fixed = decoder is None and not framing and _length(msg.headers) is not None
        if decoder is not None:
            msg.headers.pop("content-encoding", None)
        if not fixed:
            msg.headers.pop("content-length", None)
            if "chunked" not in msg.headers.get("transfer-encoding", "").lower():
                http11 = (self.framing.expects_http11(flow) if direction == Direction.REQUEST
                          else _sent_as_http11(flow, direction))
                if http11:
                    msg.headers["transfer-encoding"] = "chunked"
        ctx_ = flow_context(flow, direction)
        msg.stream = FlowStream(self, flow, direction, active, ctx_, decoder, framing, fixed, verdict, incident_id)
        if direction == Direction.RESPONSE:
            flow.metadata[STREAMED] = framing or "body"

    def inspect_head(self, flow: http.HTTPFlow, direction: Direction, active: Active) -> tuple[str | None, str | None]:
        """URL (requests) and headers, which the buffered inspectors will not see for a streamed message.
        Returns (verdict, incident id); verdict None when the message was blocked here."""
        inspector = self.inspectors[direction]
        msg = flow.request if direction == Direction.REQUEST else flow.response
        url = flow.request.url if direction == Direction.REQUEST else None
        scan = scan_message(active, url, list(msg.headers.items(multi=True)), b"")
        if not scan.findings and not scan.unscannable:
            return Verdict.CLEAN, None
        ctx_ = flow_context(flow, direction, scan.secrets)
        state = self.state
        decision = decide(scan.findings, scan.unscannable, ctx_, active, state.dry_run, state.issuer_binding)
        if decision.enforcement == REDACT:
            decision = inspector.redact(flow, msg, active, scan, decision)
        incident_id = self.record(decision, ctx_, scan)
        if decision.enforcement == Enforcement.BLOCK:
            self.block_head(flow, direction, decision, incident_id)
            return None, incident_id
        return decision.verdict, incident_id

    def undecodable(self, flow: http.HTTPFlow, direction: Direction, active: Active, reason: str) -> None:
        """A Content-Encoding we cannot decode as it streams: policy's on_error decides (block, or pass as is)."""
        ctx_ = flow_context(flow, direction)
        decision = decide([], [Unscannable("body", reason)], ctx_, active, self.state.dry_run,
                          self.state.issuer_binding)
        incident_id = self.record(decision, ctx_)
        if decision.enforcement == Enforcement.BLOCK:
            self.block_head(flow, direction, decision, incident_id)
        elif self.metrics is not None:
            self.metrics.flows_total.labels(direction=direction, verdict=decision.verdict).inc()

    def block_head(self, flow: http.HTTPFlow, direction: Direction, decision: Decision,
                   incident_id: str | None) -> None:
        """Block before any body byte is forwarded: the block response (403; 502 for a response) in its place."""
        block = api_block_response(flow, decision, incident_id or "", direction)
        if direction == Direction.REQUEST:
            flow.request.stream = False
            flow.response = block
        else:
            block.stream = _Discard(flow, block.content or b"")
            flow.response = block
        flow.metadata[GENERATED] = True
        flow.metadata[VERDICT] = str(decision.verdict)
        if incident_id:
            flow.metadata[INCIDENT] = incident_id
        if self.metrics is not None:
            self.metrics.flows_total.labels(direction=direction, verdict=decision.verdict).inc()

    def fail_head(self, flow: http.HTTPFlow, direction: Direction, exc: Exception) -> None:
        """An exception while deciding how to stream: count it, fail closed (before the profile is known, so
        on_error cannot be read: the flow is blocked)."""
        def block(decision: Decision, incident_id: str | None) -> None:
            if decision.enforcement == Enforcement.BLOCK:
                self.block_head(flow, direction, decision, incident_id)

        fail_closed(flow, exc, "could not set up stream inspection of", lambda: flow_context(flow, direction),
                    None, self.state.dry_run, self.metrics, self.incidents, block)

    # -- recording --

    def record(self, decision: Decision, ctx_: FlowContext, scan: Scan | None = None,
               sighting: Sighting | None = None) -> str | None:
        """Detections, unscannable parts and the incident of one decision (flows_total is counted per flow)."""
        return record_decision(self.metrics, self.incidents, decision, ctx_, logger, scan, sighting)

    @staticmethod
    def _account(flow: http.HTTPFlow) -> None:
        for msg in (flow.request, flow.response):
            stream = getattr(msg, "stream", None) if msg is not None else None
            if isinstance(stream, FlowStream):
                stream.account()

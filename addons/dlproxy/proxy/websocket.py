"""WebSocketGuard: every WebSocket message, text and binary, both directions, is scanned before it is relayed.

    block   the message is not forwarded (`message.drop()`) and the connection closes with code 1008 and a
            reason naming the incident, towards the client and the upstream alike
    redact  the secret is replaced by `[REDACTED:<entry id>]` in the forwarded message
    log     forwarded unchanged, incident recorded

A token split across messages (a chat app streaming model output a few characters per message, or the Realtime
API's JSON `*.delta` events) cannot be held back — messages are relayed as they come — but it is still caught:
each direction keeps the tail of what it sent, and the delta text of JSON events is reassembled per channel
(sse.extract_deltas). When such a token completes, the completing message is dropped and the connection closed,
so the peer never receives a whole token (redaction cannot reach bytes already sent: it becomes a block).

Closing with 1008: mitmproxy has no public API for a close frame and `flow.kill()` does nothing for WebSockets;
internals.close_websocket has the WebSocket layer close both sides itself. Pinned by tests/e2e/test_websocket.py.

`flow.websocket.messages` keeps every message for the connection's life: it is trimmed to the last
KEEP_MESSAGES on every message.
"""

from __future__ import annotations

import json
import logging
import re
import time

from mitmproxy import http

from ..engine.vocab import Direction, Enforcement, Reason, Verdict
from ..extract import Limits, extract_http
from ..extract.base64blobs import find_blobs
from ..extract.encoding import OVER, decode
from ..inspect.policy import Active, FlowContext
from ..inspect.sse import NAMED, extract_deltas, flavor_of, generic_deltas
from ..inspect.stream import BLOCK, REDACT, ScanWindow, marker
from ..ops.incidents import IncidentLog
from ..ops.metrics import Metrics
from . import internals
from .addon import ProfileState
from .enforce import StreamJudge, flow_context

logger = logging.getLogger(__name__)

KEEP_MESSAGES = 1


SOCKETIO = re.compile(rb"\A[0-9]{1,4}(?=[\[{])")  # Engine.IO/Socket.IO packet type before the JSON: 42["chunk", …]
SPLIT_REVEAL = 8  # characters past its keyword a token split across messages may show before the connection closes


class _Side:
    """What one direction has sent so far (scan context and any undecided tail), for tokens split across
    messages: the raw bytes, and the delta text of JSON events per channel (generic channels: per JSON path)."""

    __slots__ = ("window", "channels", "last")

    def __init__(self, window: ScanWindow):
        self.window = window
        self.channels: dict[tuple, ScanWindow] = {}
        self.last: dict[tuple, str] = {}


class _WSFlow:
    """One connection: its StreamJudge (one judgement per secret for the connection's life, both directions) and
    what each side sent. `judge.verdict` is reset for each message: flows_total counts messages."""

    __slots__ = ("active", "judge", "verdicts", "sides", "closed")

    def __init__(self, guard: WebSocketGuard, active: Active | None, ctx_: FlowContext):
        self.active = active
        self.judge = StreamJudge(guard.state, active, ctx_, guard.metrics, guard.incidents, Direction.REQUEST,
                                 logger)
        self.verdicts = self.judge.verdicts
        detector = active.detector if active is not None else None
        self.sides = {c: _Side(ScanWindow(detector, self.verdicts, f"websocket:{'client' if c else 'server'}:split"))
                      for c in (True, False)} if detector is not None else {}
        self.closed = False


class WebSocketGuard:
    name = "dlp-websocket-guard"

    def __init__(self, profiles: ProfileState, metrics: Metrics | None = None,
                 incidents: IncidentLog | None = None) -> None:
        self.state = profiles
        self.metrics = metrics
        self.incidents = incidents
        self.flows: dict[str, _WSFlow] = {}

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self.flows.pop(flow.id, None)

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        ws = flow.websocket
        if ws is None or not ws.messages:
            return
        message = ws.messages[-1]
        del ws.messages[:-KEEP_MESSAGES]  # the layer holds its own reference to the current message
        started = time.perf_counter()
        verdict = Verdict.CLEAN
        try:
            st = self._flow_state(flow)
            if st.closed:
                message.drop()  # already closing: nothing more goes through
                return
            verdict = self._inspect(flow, st, message)
        except Exception as exc:
            verdict = self._fail(flow, message, exc)
        finally:
            if self.metrics is not None:
                self.metrics.flows_total.labels(direction=Direction.WEBSOCKET, verdict=verdict).inc()
                self.metrics.scanned_bytes_total.labels(direction=Direction.WEBSOCKET).inc(
                    len(message.content or b""))
                self.metrics.scan_duration_seconds.labels(direction=Direction.WEBSOCKET).observe(
                    time.perf_counter() - started)

    # -- inspection --

    def _flow_state(self, flow: http.HTTPFlow) -> _WSFlow:
        st = self.flows.get(flow.id)
        if st is None:
            active = self.state.active_for(flow)
            st = self.flows[flow.id] = _WSFlow(self, active, flow_context(flow, Direction.WEBSOCKET))
        return st

    def _inspect(self, flow: http.HTTPFlow, st: _WSFlow, message) -> str:
        content: bytes = message.content or b""
        side = st.sides[message.from_client]
        where = f"websocket:{'client' if message.from_client else 'server'}"
        detector = st.active.detector
        judge = st.judge
        judge.verdict = Verdict.CLEAN
        judge.direction = Direction.REQUEST if message.from_client else Direction.RESPONSE  # server → client

        # 1. the message itself
        findings = detector.scan(content)
        if findings:
            blocked, redact = st.verdicts.check([f.at(where) for f in findings], content)
            if blocked is not None:
                return self._block(flow, st, message)
            if redact:
                for f in sorted(redact, key=lambda f: f.start, reverse=True):
                    content = content[:f.start] + marker(f.entry_id) + content[f.end:]
                message.content = content
                if any(st.verdicts.action_of(f) in (BLOCK, REDACT) for f in detector.scan(content)):
                    return self._block(flow, st, message)  # something left that should not pass

        # 2. what the receiver decodes: JSON escapes, HTML references, base64, compressed binary (pako), archives
        decoded = decoded_findings(detector, content, message.is_text, Limits.from_settings(st.active.settings))
        if decoded:
            judge.unredactable = "encoded in the message, it cannot be redacted in place"
            try:
                blocked, redact = st.verdicts.check([f.at(where + ":" + f.location) for f in decoded])
            finally:
                judge.unredactable = ""
            if blocked is not None or redact:
                return self._block(flow, st, message)

        # 3. a token completed across messages: what this side sent before, plus this message
        if self._push(st, side.window, message.content or b""):
            return self._block(flow, st, message)

        # 4. JSON events (OpenAI Realtime, Socket.IO `42["chunk", …]`, `{"delta": …}`): text per channel
        obj = json_message(content) if message.is_text else None
        if obj is not None:
            deltas = extract_deltas(obj)
            if not deltas and flavor_of(obj) not in NAMED:
                deltas = generic_deltas(obj, side.last)
            for delta in deltas:
                window = side.channels.get(delta.key)
                if window is None:
                    window = side.channels[delta.key] = ScanWindow(detector, st.verdicts,
                                                                   "websocket:" + delta.location[4:] + ":split")
                if self._push(st, window, delta.text.encode("utf-8", "surrogatepass")):
                    return self._block(flow, st, message)

        # 5. a token still arriving a few characters per message: close before the peer holds enough to rebuild it
        for window in (side.window, *side.channels.values()):
            if split_in_flight(detector, window):
                if judge.unscannable(where + ":split", Reason.TRUNCATED).enforcement == Enforcement.BLOCK:
                    return self._block(flow, st, message)
                break
        return judge.verdict

    @staticmethod
    def _push(st: _WSFlow, window: ScanWindow, data: bytes) -> bool:
        """Scan `data` as the continuation of what this side sent; True when a token completed across messages
        must be blocked (findings inside this message alone were judged already: same secret, same verdict)."""
        st.judge.unredactable = "split across messages, the part already sent cannot be redacted"
        try:
            window.push(data)
        finally:
            st.judge.unredactable = ""
        return window.stopped

    # -- enforcement --

    def _block(self, flow: http.HTTPFlow, st: _WSFlow, message) -> str:
        message.drop()
        st.closed = True
        reason = f"dlp_violation: credential detected (incident {st.judge.incident_id or 'unknown'})"
        try:
            if not internals.close_websocket(flow, internals.POLICY_VIOLATION, reason):
                logger.error("dlproxy could not close a WebSocket connection after a block")
        except Exception:
            logger.error("dlproxy could not close a WebSocket connection after a block")
        return Verdict.BLOCKED

    def _fail(self, flow: http.HTTPFlow, message, exc: Exception) -> str:
        """Fail closed whatever on_error says: the message is dropped and the connection closed."""
        message.drop()
        st = self.flows.get(flow.id)
        if st is None:  # it failed before the connection had its state (e.g. no profile loaded)
            try:
                ctx_ = flow_context(flow, Direction.WEBSOCKET)
            except Exception:
                ctx_ = FlowContext(Direction.WEBSOCKET, "")
            st = self.flows[flow.id] = _WSFlow(self, None, ctx_)
        st.judge.fail(flow, exc, "WebSocket inspection failed, closing", None)
        self._block(flow, st, message)
        return Verdict.ERROR


def json_message(content: bytes):
    """The JSON of a text message (after a Socket.IO packet type), or None."""
    m = SOCKETIO.match(content)
    body = content[m.end():] if m else content
    if body[:1] not in (b"{", b"["):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def inflate(content: bytes, limits: Limits) -> bytes | None:
    """A binary message compressed with zlib or raw deflate (pako.deflate / deflateRaw), decoded within the
    expansion limits (a capped prefix is scanned); None when it is not one. gzip and archives are found by
    extract's own sniffing."""
    out, status = decode("deflate", content, limits.expansion_cap(len(content)))
    return out if status is None or status == OVER else None


def decoded_findings(detector, content: bytes, is_text: bool, limits: Limits) -> list:
    """Findings in what a receiver decodes from one message; their location says which view ("body:json", …)."""
    if is_text:
        m = SOCKETIO.match(content)
        body = content[m.end():] if m else content
        if b"\\" not in body and b"&" not in body and b"%" not in body and not find_blobs(body):
            return []
    else:
        body = inflate(content, limits) or content
    ext = extract_http(url=None, headers=[], body=body, limits=limits)
    out = []
    for seg in ext.segments:
        if seg.data == content:
            continue  # the message as it is: scanned already
        out += [f.at(seg.locate(f.start, f.end)) for f in detector.scan(seg.data)]
    return out


def split_in_flight(detector, window: ScanWindow) -> bool:
    """The undecided tail of what a side sent starts with a token keyword and already shows SPLIT_REVEAL characters
    past it (or a third of what follows the keyword, for short tokens): one more message could complete all but
    the token's checksum, from which the peer rebuilds the rest. Validation is impossible before that."""
    buf = window._buf
    if len(buf) - (window._released - window._base) <= 0:
        return False  # nothing of the last message is undecided
    tail = buf[detector.undecided_from(buf):]
    if len(tail) <= SPLIT_REVEAL:
        return False
    for start, kw in detector.prefilter.find_literals(tail[:64]):
        if start:
            continue
        keyword = len(detector.keywords[kw].literal)
        longest = max((t.max_len for t in detector._targets[kw]), default=0)
        if len(tail) - keyword < max(1, min(SPLIT_REVEAL, (longest - keyword) // 3)):
            return False
        # a whole, valid token that could still grow (a variable-length pattern) was judged already, like any other
        return not any(f.start == 0 for f in detector.scan(tail))
    return False

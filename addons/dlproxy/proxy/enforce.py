"""What every inspector does with a decision: the flow's context, the block response, recording, failing closed.

    flow_context(flow, direction, secrets, scanned)   who/where, with secrets masked (policy.FlowContext)
    block_body / block_response / block_message       the block of docs/contracts.md (403; 502 for a response)
    record_decision(metrics, incidents, decision, ctx) detections, unscannable parts, the incident
    fail_closed(exc, ...)                              an inspection that raised: count, on_error, block
    StreamJudge                                        the policy of one stream: each secret judged once,
                                                       each decision noted once, the flow's strongest verdict

Nothing here formats a secret: findings carry only masked forms and fingerprints, and an exception is logged by
its type and frames only (its message could quote the content).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Mapping

from mitmproxy import http, version

from ..engine.findings import Finding
from ..engine.vocab import VERDICT_SEVERITY, Action, Direction, Enforcement, Reason, Verdict
from ..extract.core import Unscannable
from ..inspect import redact
from ..inspect.policy import Active, Decision, FlowContext, decide, decide_error, normalize_host, with_action
from ..inspect.scanning import Scan
from ..inspect.stream import REDACT, Verdicts
from ..ops.incidents import Incident, IncidentLog, mask_path
from ..ops.metrics import Metrics
from ..ops.revocation import Sighting

logger = logging.getLogger(__name__)

# flow.metadata keys (plain values, so flows still serialize)
GENERATION = "dlp_generation"  # int: the profile generation this flow is inspected with
VERDICT = "dlp_verdict"  # str: verdict of the last inspection of this flow
INCIDENT = "dlp_incident"  # str: incident id, when one was recorded
GENERATED = "dlp_generated"  # True: the response is ours (a block), never inspect it
STREAMED = "dlp_streamed"  # set by StreamGuard: the body was inspected as a stream, skip buffered inspection
PRINCIPAL = "dlp_principal"  # str: who sent the flow (set by proxy/principals.py before any inspection)


class NotReady(RuntimeError):
    """No profile is loaded: inspect nothing, block everything (on_error block)."""


def error_reason(exc: BaseException) -> str:
    """The inspection_errors_total label of an exception: not_ready, else its type name (never its message)."""
    return Reason.NOT_READY.value if isinstance(exc, NotReady) else type(exc).__name__


def flow_context(flow: http.HTTPFlow, direction: Direction, secrets: Mapping[str, Finding] | None = None,
                 scanned: bool = True) -> FlowContext:
    """Who/where, with found secrets masked in host and path (they can hide in a URL). When the flow was not
    scanned (`scanned=False`: inspection failed), credential-like runs are cut short instead."""
    masks = {s: f.masked for s, f in (secrets or {}).items()}
    req = flow.request
    peer = flow.client_conn.peername
    host = redact.scrub(normalize_host(req.host), masks) if masks else normalize_host(req.host)
    path = redact.safe_path(req.path, masks)
    principal = flow.metadata.get(PRINCIPAL) or ""
    if masks and principal:
        principal = redact.scrub(principal, masks)
    if not scanned:
        host, path, principal = mask_path(host), mask_path(path), mask_path(principal)
    return FlowContext(direction=direction, host=host, method=req.method, scheme=req.scheme, port=req.port,
                       path=path, client=peer[0] if peer else "", principal=principal)


def record_decision(metrics: Metrics | None, incidents: IncidentLog | None, decision: Decision,
                    ctx_: FlowContext, log: logging.Logger = logger, scan: Scan | None = None,
                    sighting: Sighting | None = None) -> str | None:
    """Count one decision's detections and unscannable parts, and record its incident when it is worth one
    (flows_total is the caller's: a streamed flow is counted once, however many decisions it took).

    Returns the incident id, or None. Without an incident log the incident is logged as a warning on `log`.
    With the `scan` behind the decision (or a stream's `sighting`), the incident log also gets the secrets to
    seal as evidence and to queue for revocation; they go nowhere else."""
    if metrics is not None:
        for f, action in decision.outcomes:
            metrics.detections_total.labels(entry=f.entry_id, direction=ctx_.direction, action=action).inc()
        for u in decision.unscannable:
            metrics.unscannable_total.labels(reason=u.reason).inc()
        for policy, action in decision.policies:
            metrics.policy_decisions_total.labels(policy=policy, action=action).inc()
    if not decision.incident_worthy:
        return None
    incident = Incident.from_decision(decision, ctx_)
    if incidents is not None:
        if sighting is None and scan is not None and scan.secrets:
            sighting = Sighting.of(decision, ctx_.direction, scan.secrets, scan.context)
        if sighting is not None:
            incidents.record(incident, sighting)
        else:
            incidents.record(incident)
    else:
        log.warning("dlproxy " + incident.describe())
    return incident.incident_id


def fail_closed(flow: http.HTTPFlow, exc: BaseException, what: str, context: Callable[[], FlowContext],
                settings, dry_run: bool, metrics: Metrics | None, incidents: IncidentLog | None,
                enforce: Callable[[Decision, str | None], None]) -> None:
    """An inspection raised: count it (inspection_errors_total), log it (type and frames only), decide by the
    profile's on_error (`settings` None: block), record the decision and hand it to `enforce`. Never raises:
    when recording fails too, `enforce` gets a plain block; when that fails, the flow is killed.

    `what` completes the log line "dlproxy {what} {where} ({reason})"."""
    reason = error_reason(exc)
    try:
        if metrics is not None:
            metrics.inspection_errors_total.labels(reason=reason).inc()
        ctx_ = context()
        logger.error(f"dlproxy {what} {ctx_.describe()} ({reason})\n"
                     + "".join(traceback.format_tb(exc.__traceback__)).rstrip())
        decision = decide_error(reason, settings, dry_run)
        enforce(decision, record_decision(metrics, incidents, decision, ctx_))
    except Exception:
        logger.error(f"dlproxy could not record the failed inspection ({reason}); blocking")
        try:
            enforce(decide_error(reason, None), None)
        except Exception:
            if flow.killable:
                flow.kill()


class StreamJudge:
    """The policy of one stream (a streamed body, a WebSocket connection), whose findings arrive piecemeal.

    `judge` is the stream scanners' policy hook (through `verdicts`, which asks it once per secret): it decides
    by the profile, issuer binding and dry-run of `state` (read at each call: a reload applies at once), notes
    the decision and returns (enforcement, findings to redact). Every decision is noted once: detections,
    unscannable parts and incident (record_decision), and what the flow is counted with: its most severe
    verdict, the incident a block names (else the first one), and the first block decision.

    `direction` is the side whose secrets a sighting reports (a WebSocket sets it per message); `unredactable`,
    while set, says why the findings being judged cannot be redacted in place: a redaction becomes a block."""

    def __init__(self, state, active: Active | None, ctx_: FlowContext, metrics: Metrics | None,
                 incidents: IncidentLog | None, direction: Direction, log: logging.Logger = logger,
                 verdict: str = Verdict.CLEAN, incident_id: str | None = None):
        self.state = state  # ProfileState: dry_run, issuer_binding
        self.active = active
        self.ctx = ctx_
        self.metrics = metrics
        self.incidents = incidents
        self.direction = direction
        self.log = log
        evidence = getattr(active.settings, "evidence", None) if active is not None else None
        self.verdicts = Verdicts(self.judge, evidence.context if evidence is not None else -1)
        self.verdict = verdict
        self.incident_id = incident_id
        self.block_decision: Decision | None = None
        self.unredactable = ""

    def judge(self, findings: list[Finding]) -> tuple[str, list[Finding]]:
        decision = self.decide(findings)
        if self.unredactable and decision.enforcement == REDACT:
            decision = with_action(decision, Action.BLOCK, self.unredactable)
        self.note(decision, Sighting.judged(decision, self.direction, self.verdicts))
        targets = [f for f, a in decision.outcomes if a == REDACT] if decision.enforcement == REDACT else []
        return decision.enforcement, targets

    def unscannable(self, location: str, reason: str) -> Decision:
        """Part of the stream cannot be inspected: decide by policy (on_oversize / on_error) and note it."""
        decision = self.decide([], [Unscannable(location, reason)])
        self.note(decision)
        return decision

    def decide(self, findings: list[Finding], unscannable: list[Unscannable] | None = None) -> Decision:
        state = self.state
        return decide(findings, unscannable or [], self.ctx, self.active, state.dry_run, state.issuer_binding)

    def note(self, decision: Decision, sighting: Sighting | None = None) -> None:
        self.keep(decision, record_decision(self.metrics, self.incidents, decision, self.ctx, self.log,
                                            sighting=sighting))

    def keep(self, decision: Decision, incident_id: str | None) -> None:
        if incident_id and (self.incident_id is None or decision.enforcement == Enforcement.BLOCK):
            self.incident_id = incident_id
        if VERDICT_SEVERITY.get(decision.verdict, 0) > VERDICT_SEVERITY.get(self.verdict, 0):
            self.verdict = decision.verdict
        if decision.enforcement == Enforcement.BLOCK and self.block_decision is None:
            self.block_decision = decision

    def fail(self, flow: http.HTTPFlow, exc: BaseException, what: str, settings) -> None:
        """The stream's inspection raised: fail_closed counts, logs and records it (on_error of `settings`; None:
        block). Whatever on_error says, the stream then has a block decision: the caller cuts it (part of it
        may be forwarded already, the rest is unscanned)."""
        def keep(decision: Decision, incident_id: str | None) -> None:
            self.keep(decision, incident_id)
            if self.block_decision is None:
                self.block_decision = decide_error(decision.error or "stream", None)

        fail_closed(flow, exc, what, lambda: self.ctx, settings, self.state.dry_run, self.metrics, self.incidents,
                    keep)


# --- the block response (docs/contracts.md) ---------------------------------------------------------------


def block_body(decision: Decision, incident_id: str, direction: str = Direction.REQUEST) -> dict:
    """The JSON of a block: OpenAI-error-shaped, masked findings only."""
    findings = []
    seen = set()
    limit = decision.report_limit or len(decision.acted)
    for f in decision.acted:
        key = (f.entry_id, f.fingerprint, f.location)
        if key not in seen:
            seen.add(key)
            if len(findings) < limit:
                findings.append({"entry": f.entry_id, "name": f.name, "location": f.location, "masked": f.masked,
                                 "fingerprint": f.fingerprint})
    if decision.acted:
        code = "credential_detected"
    elif decision.unscannable:
        code = "content_not_inspectable"
    else:
        code = "inspection_failed"
    body = {"error": {"type": "dlp_violation", "code": code,
                      "message": block_message(decision, incident_id, direction),
                      "incident_id": incident_id, "findings": findings}}
    if len(seen) > len(findings):  # more than the profile's max_findings: the first ones, and a count
        body["error"]["findings_omitted"] = len(seen) - len(findings)
    if decision.policy:
        body["error"]["policy"] = decision.policy
    if decision.principal:
        body["error"]["principal"] = decision.principal
    return body


REQUEST_BLOCK_STATUS = 403  # the client's own request is refused: "forbidden" is what happened
# A withheld upstream response is not the caller's doing, and 401/403 read as "your API key is wrong or lacks
# permission" to AI SDKs (openai.PermissionDeniedError). 502 says what happened: the gateway would not pass on
# what the upstream returned. SDKs treat it as a server error and may retry it (a bounded number of times).
RESPONSE_BLOCK_STATUS = 502


def block_status(direction: str) -> int:
    return RESPONSE_BLOCK_STATUS if direction == Direction.RESPONSE else REQUEST_BLOCK_STATUS


def block_response(decision: Decision, incident_id: str, direction: str = Direction.REQUEST) -> http.Response:
    """block_body as JSON with the `X-DLP-Incident` header: 403 for a request, 502 for a withheld response."""
    return http.Response.make(
        block_status(direction), json.dumps(block_body(decision, incident_id, direction), ensure_ascii=False).encode(),
        {"Content-Type": "application/json", "X-DLP-Incident": incident_id,
         "Server": f"dlproxy (mitmproxy {version.VERSION})", "Cache-Control": "no-store"})


def block_message(decision: Decision, incident_id: str, direction: str = Direction.REQUEST) -> str:
    """What happened, in the terms of the direction: a refused request (remove the credential, try again), or a
    withheld response (the request did reach the upstream; only its reply was kept back)."""
    if direction == Direction.RESPONSE:
        head, tail = "dlproxy withheld the upstream's response", " The request was sent; the reply was withheld."
        verb = "contained"
    else:
        head, tail, verb = "dlproxy blocked this request", "", "contains"
    if decision.acted:
        first = decision.acted[0]
        names = list(dict.fromkeys(f.name for f in decision.acted))
        kinds = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        others = len({(f.fingerprint, f.location) for f in decision.acted}) - 1
        where = first.location or "the content"
        more = f" (and {others} more)" if others > 0 else ""
        rule = f", and policy {decision.policy} does not allow that" if decision.policy else ""
        fix = tail if tail else " Remove the credential and try again."
        text = f"{head}: it {verb} a {kinds} in {where}{more}{rule}.{fix}"
    elif decision.unscannable:
        u = decision.unscannable[0]
        why = "is too large to inspect" if u.reason == Reason.TOO_LARGE else f"could not be inspected ({u.reason})"
        text = f"{head}: {u.location or 'its content'} {why}, and policy blocks what it cannot inspect.{tail}"
    else:
        text = f"{head}: its content could not be inspected, and policy blocks what it cannot inspect.{tail}"
    return f"{text} (incident {incident_id})" if incident_id else text

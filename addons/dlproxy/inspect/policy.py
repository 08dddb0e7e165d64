"""Policy: findings + what could not be scanned + where the flow goes → one Decision. Pure functions.

    decision = decide(findings, unscannable, ctx, active, dry_run=False, issuer_binding=True)
    decision.enforcement   # "pass" | "block" | "redact": the only thing enforcers act on
    decision.verdict       # what policy decided (in dry-run: what it would have done), for metrics/incidents

Rules, per finding:
- action: the entry's `action` (a string, or per direction `{request: block, response: log}`), else
  `settings.default_action`;
- issuer binding: a finding in its *use position* of a *request* to one of the entry's `issuers` is `allowed`,
  when both `settings.allow_to_issuer` and the `dlp_issuer_binding` option are on. The host matches an issuer
  (`.suffix` matches the bare domain and every subdomain; anything else is an exact name), and the finding's
  location is one of that issuer's positions (`header:authorization` unless the profile says otherwise: a
  documented auth header, query parameter, ...; see `use_locations`). The same credential in a body, the URL
  path, another header or a cookie of that request is a leak like anywhere else. Responses and WebSocket
  messages from an issuer are never exempt;
- principal policies (profile `policies`, see engine/principals.py): the first policy that matches the
  flow's principal, the finding's entry and the destination decides that finding's action (`allow` included),
  before issuer binding and the entry's own action; the decision names it (`policy`);
- `settings.min_matches`: distinct fingerprints (among findings not allowed) needed before acting; below it
  the flow is clean and each finding is counted as `below_min_matches`.
Per unscannable part: the size reasons (`too_large`, `bomb`, `depth`, `members`: extract.OVERSIZE_REASONS)
follow `settings.on_oversize` (block | allow | scan_prefix: the extractor already scanned what fit in the
budget); every other reason (corrupt or unsupported encoding, truncated, malformed, …) follows
`settings.on_error` (block | allow).
The strongest action wins: block > redact > log. Dry-run keeps the verdict and turns the enforcement into
`pass` (the incident and metrics say what would have happened).

No mitmproxy import here: `dlproxy scan`, the stream scanners and the tests call it directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine.findings import Finding
from ..engine.profile import Issuer
from ..engine.vocab import (
    ACTION_STRENGTH,
    OVERSIZE_REASONS,
    VERDICT_OF_ACTION,
    Action,
    Direction,
    Enforcement,
    Reason,
    Verdict,
)


@dataclass(frozen=True, slots=True)
class FlowContext:
    """Where a message goes: what policy, incidents and log lines need about a flow (nothing secret).

    `path` must already be safe to record: query values masked and any found secret replaced by its masked
    form (see `redact.safe_path`). `host` is the destination the proxy connects to, never a client-chosen
    Host header.
    """

    direction: Direction
    host: str
    method: str = ""
    scheme: str = ""
    port: int = 0
    path: str = ""
    client: str = ""
    principal: str = ""  # who sent it (proxy/principals.py); "" when unidentified

    def describe(self) -> str:
        """`POST api.example.com/upload` for log lines."""
        return f"{self.method} {self.host}{self.path}".strip()


@dataclass(frozen=True, slots=True)
class Active:
    """One loaded profile, ready to use; swapped as a whole on reload, never mutated."""

    profile: Any  # dlproxy.profile.Profile
    detector: Any  # dlproxy.engine.Detector
    limits: Any  # dlproxy.extract.Limits
    generation: int = 0
    rules: Rules = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.rules is None:
            object.__setattr__(self, "rules", Rules.from_profile(self.profile))

    @property
    def settings(self):
        return self.profile.settings


class Rules:
    """The per-entry policy table, computed once per profile (never per flow)."""

    __slots__ = ("_actions", "_exact", "_suffixes", "policies")

    def __init__(self, actions: Mapping[str, Mapping[str, str]], issuers: Mapping[str, Iterable[Issuer | str]],
                 policies: Sequence[Any] = ()):
        self.policies = tuple(policies)
        self._actions = {k: dict(v) for k, v in actions.items()}
        # entry -> host -> locations that are a use position there; entry -> ((.suffix, locations), ...)
        self._exact: dict[str, dict[str, frozenset[str]]] = {}
        self._suffixes: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {}
        for entry_id, listed in issuers.items():
            exact: dict[str, frozenset[str]] = {}
            suffixes: dict[str, frozenset[str]] = {}
            for issuer in listed:
                issuer = issuer if isinstance(issuer, Issuer) else Issuer(issuer)
                host = normalize_host(issuer.host)
                table = suffixes if host.startswith(".") else exact
                table[host] = table.get(host, frozenset()) | use_locations(issuer.positions)
            self._exact[entry_id] = exact
            self._suffixes[entry_id] = tuple(suffixes.items())

    @classmethod
    def from_profile(cls, profile) -> Rules:
        default = profile.settings.default_action
        actions = {e.id: {d: e.action_for(d, default) for d in Direction} for e in profile.entries}
        issuers = {e.id: e.issuers for e in profile.entries}
        return cls(actions, issuers, getattr(profile, "policies", ()))

    def action(self, entry_id: str, direction: str, default: str) -> str:
        per = self._actions.get(entry_id)
        return per.get(direction, default) if per else default

    def issued_by(self, entry_id: str, host: str) -> bool:
        """True when `host` is one of the entry's issuers (`.example.com` = example.com and its subdomains)."""
        return self._use_locations(entry_id, host) is not None

    def in_use(self, entry_id: str, host: str, location: str) -> bool:
        """True when a finding at `location` of a request to `host` sits where that issuer expects the
        credential (its use position); anywhere else in the same request it is a leak, even to the issuer."""
        accepted = self._use_locations(entry_id, host)
        return accepted is not None and location in accepted

    def _use_locations(self, entry_id: str, host: str) -> frozenset[str] | None:
        host = normalize_host(host)
        if not host:
            return None
        found = self._exact.get(entry_id, {}).get(host)
        for suffix, accepted in self._suffixes.get(entry_id, ()):
            if host.endswith(suffix) or host == suffix[1:]:
                found = accepted if found is None else found | accepted
        return found


def use_locations(positions: Iterable[str]) -> frozenset[str]:
    """Finding locations (as the extractors name them) that the profile's issuer positions stand for."""
    out: set[str] = set()
    for position in positions:
        kind, _, name = position.partition(":")
        if kind == "header":
            out |= {f"header:{name}", f"header:{name}:basic"}  # Basic credentials are found decoded
        elif kind == "query":
            out.add(f"url:query:{name}")
        elif kind == "form":
            out |= {f"body:form:{name}", f"body:multipart:{name}"}
        elif kind == "json":
            out.add(f"body:json:$.{name}" if name.isidentifier() else f"body:json:$[{json.dumps(name)}]")
        elif kind == "cookie":
            out.add(f"header:cookie:{name}")
        elif kind == "path":
            out.add("url:path")
    return frozenset(out)


def normalize_host(host: str) -> str:
    """Lower-case, no trailing dot, no IPv6 brackets: the form issuer lists are compared in."""
    host = (host or "").strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    action: Action | None = None  # what policy chose; None when clean, or an error let through
    acted: tuple[Finding, ...] = ()  # findings the action applies to
    allowed: tuple[Finding, ...] = ()  # findings sent to their issuer
    outcomes: tuple[tuple[Finding, str], ...] = ()  # every finding with its own action (detections_total)
    unscannable: tuple[Any, ...] = ()  # Unscannable(location, reason) parts that drove the verdict
    reason: str = ""  # a human sentence fragment: "GitHub Personal Access Token in header:authorization"
    dry_run: bool = False
    error: str | None = None  # inspection error reason (verdict "error")
    report_limit: int = 0  # findings listed one by one in incidents and block bodies (0: all); the rest counted
    policy: str = ""  # the principal policy behind the verdict, "" when the entries' own actions decided
    policies: tuple[tuple[str, str], ...] = ()  # (policy, action) of every policy that decided a finding
    principal: str = ""  # who sent it (FlowContext.principal), for the block response

    @property
    def enforcement(self) -> Enforcement:
        """What the proxy does: block, redact or pass. Dry-run always passes."""
        if self.dry_run or self.action not in (Action.BLOCK, Action.REDACT):
            return Enforcement.PASS
        return Enforcement(self.action)

    @property
    def incident_worthy(self) -> bool:
        """Blocked, redacted, logged, or failed closed/open: anything a person may need to look at."""
        return self.action in (Action.BLOCK, Action.REDACT, Action.LOG) or self.verdict == Verdict.ERROR

    @property
    def findings(self) -> tuple[Finding, ...]:
        """All findings considered (acted on, allowed, below threshold), in scan order."""
        return tuple(f for f, _ in self.outcomes)


CLEAN = Decision(Verdict.CLEAN)


def decide(findings: Sequence[Finding], unscannable: Sequence[Any], ctx: FlowContext, active: Active,
           dry_run: bool = False, issuer_binding: bool = True) -> Decision:
    """The verdict for one message. `findings` carry their location; `unscannable` items have `.location`
    and `.reason`."""
    findings = drop_allowlisted(findings, active.profile)
    if not findings and not unscannable:
        return CLEAN
    settings = active.profile.settings
    rules = active.rules
    default = settings.default_action
    binding = issuer_binding and settings.allow_to_issuer and ctx.direction == "request"
    limit = getattr(settings, "max_findings", 0)

    by_policy = policy_actions(rules.policies, findings, ctx) if rules.policies else {}
    allowed: list[Finding] = []
    rest: list[Finding] = []
    for f in findings:
        p = by_policy.get(id(f))
        if p is not None:
            (allowed if p[1] == Action.ALLOW else rest).append(f)
        else:
            (allowed if binding and rules.in_use(f.entry_id, ctx.host, f.location) else rest).append(f)

    outcomes: dict[int, str] = {id(f): Action.ALLOW for f in allowed}
    acted: list[Finding] = []
    strongest = None
    if rest and len({f.fingerprint for f in rest}) >= settings.min_matches:
        for f in rest:
            p = by_policy.get(id(f))
            a = p[1] if p is not None else rules.action(f.entry_id, ctx.direction, default)
            outcomes[id(f)] = a
            acted.append(f)
            if strongest is None or ACTION_STRENGTH[a] > ACTION_STRENGTH[strongest]:
                strongest = a
    else:
        for f in rest:
            outcomes[id(f)] = Action.BELOW_MIN_MATCHES

    blocking, passed = [], []
    for u in unscannable:
        rule = settings.on_oversize if u.reason in OVERSIZE_REASONS else settings.on_error
        (blocking if rule == Action.BLOCK else passed).append(u)

    ordered = tuple((f, outcomes[id(f)]) for f in findings)
    who = {"policies": tuple(dict.fromkeys((by_policy[id(f)][0], a) for f, a in ordered if id(f) in by_policy)),
           "principal": ctx.principal}
    if blocking:
        return Decision(Verdict.BLOCKED, Action.BLOCK, tuple(acted), tuple(allowed), ordered, tuple(blocking) + tuple(passed),
                        _reason(acted, blocking), dry_run,
                        policy=_deciding_policy(acted, outcomes, by_policy, Action.BLOCK), report_limit=limit, **who)
    if strongest is not None:
        # Redacting is all-or-nothing: findings whose action is only "log" are still reported.
        return Decision(VERDICT_OF_ACTION[strongest], strongest, tuple(acted), tuple(allowed), ordered,
                        tuple(passed), _reason(acted, ()), dry_run,
                        policy=_deciding_policy(acted, outcomes, by_policy, strongest), report_limit=limit, **who)
    if allowed:
        policy = _deciding_policy(allowed, outcomes, by_policy, Action.ALLOW)
        why = f" (policy {policy})" if policy else " (sent to its issuer)"
        return Decision(Verdict.ALLOWED, Action.ALLOW, (), tuple(allowed), ordered, tuple(passed),
                        _reason(allowed, ()) + why, dry_run, policy=policy, report_limit=limit, **who)
    if passed:
        return Decision(Verdict.SKIPPED, None, (), (), ordered, tuple(passed), _reason((), passed), dry_run, **who)
    return Decision(Verdict.CLEAN, None, (), (), ordered, (), "", dry_run, **who)


def policy_actions(policies: Sequence[Any], findings: Sequence[Finding], ctx: FlowContext
                   ) -> dict[int, tuple[str, Action]]:
    """id(finding) → (policy name, action) of the first policy matching it; findings no policy matches are
    absent (the entry's own action and issuer binding decide them). Destinations compare with the host the
    proxy connects to; a destination's positions (`in`, or the use position for `allow`) apply to requests."""
    host = normalize_host(ctx.host)
    out: dict[int, tuple[str, Action]] = {}
    for f in findings:
        for p in policies:
            if p.matches(ctx.principal, f.entry_id, host, f.location.lower(), ctx.direction):
                out[id(f)] = (p.name, Action(p.action_for(ctx.direction)))
                break
    return out


def _deciding_policy(findings: Sequence[Finding], outcomes: dict[int, str],
                     by_policy: dict[int, tuple[str, Action]], action: str) -> str:
    """The policy of the first finding whose action is the decision's action ("" when an entry's own)."""
    for f in findings:
        if outcomes.get(id(f)) == action and id(f) in by_policy:
            return by_policy[id(f)][0]
    return ""


def drop_allowlisted(findings: Sequence[Finding], profile) -> Sequence[Finding]:
    """Findings whose fingerprint the profile's `allow` list names are not acted on (nor reported as
    detections): a published test token everyone uses is not a leak."""
    allow = getattr(profile, "allow", ())
    if not allow or not findings:
        return findings
    known = {fp for fp, _ in allow}
    return [f for f in findings if f.fingerprint not in known]


def decide_error(reason: str, settings, dry_run: bool = False) -> Decision:
    """An inspection that failed (an exception, a timeout): `settings.on_error` says block or let through."""
    action = Action.BLOCK if settings is None or settings.on_error == Action.BLOCK else None
    what = f"content could not be inspected ({reason})"
    return Decision(Verdict.ERROR, action, reason=what, dry_run=dry_run, error=reason)


def with_action(decision: Decision, action: Action, reason: str) -> Decision:
    """The same decision escalated (e.g. a redaction that cannot be done safely becomes a block)."""
    return Decision(VERDICT_OF_ACTION[action], action, decision.acted, decision.allowed,
                    tuple((f, action if a == Action.REDACT else a) for f, a in decision.outcomes),
                    decision.unscannable, f"{decision.reason}; {reason}", decision.dry_run, decision.error,
                    report_limit=decision.report_limit, policy=decision.policy, policies=decision.policies,
                    principal=decision.principal)


def _reason(findings: Sequence[Finding], unscannable: Sequence[Any]) -> str:
    parts = []
    if findings:
        first = findings[0]
        parts.append(f"{first.name} in {first.location or 'content'}")
        others = len({(f.fingerprint, f.location) for f in findings}) - 1
        if others > 0:
            parts[-1] += f" and {others} more"
    if unscannable:
        first = unscannable[0]
        what = "too large to inspect" if first.reason == Reason.TOO_LARGE else f"not inspectable ({first.reason})"
        parts.append(f"{first.location or 'content'} {what}")
        if len(unscannable) > 1:
            parts[-1] += f" and {len(unscannable) - 1} more"
    return "; ".join(parts)

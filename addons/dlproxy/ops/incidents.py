"""Incidents: what was found where and what was done, as one JSON line each — never the secret.

`Incident.from_decision(decision, ctx)` builds the record (a Finding holds only the masked form and the
fingerprint, so the secret cannot get in). `IncidentLog` (addon) writes it as one JSON line to stderr or to
`dlp_incident_log` (append, one write() per line, reopened on SIGHUP or when the file was moved away), logs
one human sentence, and optionally POSTs it to `dlp_incident_webhook` from a background task with a bounded
queue, a timeout and retries with exponential backoff; a full queue drops (counted), it never blocks traffic.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple, Protocol, TextIO

from ..engine.vocab import VERDICT_OF_ACTION, Action, Direction, Enforcement
from .metrics import Metrics

logger = logging.getLogger(__name__)

# Long runs of token characters (with a digit) in a path, query key or location could be a credential:
# they are cut to their first 4 characters. Hosts are left alone.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9_\-+=~%]{20,}")


def _mask_runs(text: str) -> str:
    return _TOKEN_RUN.sub(lambda m: m[0][:4] + "…" if any(c.isdigit() for c in m[0]) else m[0], text)


def mask_path(path: str) -> str:
    """Path with every query value replaced by `…` (keys kept) and credential-like runs cut short."""
    path, _, fragment = path.partition("#")
    base, sep, query = path.partition("?")
    out = _mask_runs(base)
    if sep:
        parts = []
        for item in query.split("&"):
            key, eq, _value = item.partition("=")
            parts.append(_mask_runs(key) + ("=…" if eq else ""))
        out += "?" + "&".join(parts)
    return out


def _new_id() -> str:
    return secrets.token_hex(8)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class UnscannablePart(Protocol):
    """A part of a message that could not be inspected (extract.Unscannable)."""

    @property
    def location(self) -> str: ...
    @property
    def reason(self) -> str: ...


class Recordable(Protocol):
    """What an incident needs of a finding (engine.Finding): its masked, JSON-ready form."""

    def to_dict(self) -> dict: ...


class DecisionRecord(Protocol):
    """What an incident needs of a policy decision (inspect.policy.Decision)."""

    @property
    def verdict(self) -> str: ...
    @property
    def action(self) -> str | None: ...
    @property
    def acted(self) -> Sequence[Recordable]: ...
    @property
    def findings(self) -> Sequence[Recordable]: ...
    @property
    def unscannable(self) -> Sequence[UnscannablePart]: ...
    @property
    def reason(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def report_limit(self) -> int: ...
    @property
    def policy(self) -> str: ...


class FlowWhere(Protocol):
    """Where the message went (inspect.policy.FlowContext): nothing secret, the path already scrubbed."""

    @property
    def direction(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def scheme(self) -> str: ...
    @property
    def client(self) -> str: ...
    @property
    def principal(self) -> str: ...


@dataclass
class Incident:
    """One incident: the JSON fields of docs/contracts.md, in to_dict's order (`findings_omitted` only when the
    message held more findings than the profile's `max_findings`: only the first ones are listed)."""

    action: str  # block | redact | log | allow: what was done, or what would have been done in dry-run
    direction: str
    host: str = ""
    path: str = ""  # query values already masked
    method: str = ""
    scheme: str = ""
    client: str = ""
    findings: list[dict] = field(default_factory=list)
    unscannable: list[dict] = field(default_factory=list)
    dry_run: bool = False
    findings_omitted: int = 0
    verdict: str = ""
    reason: str = ""
    principal: str = ""  # who sent it ("" when unidentified)
    policy: str = ""  # the profile policy that decided ("" when the entry's own action did)
    incident_id: str = field(default_factory=_new_id)
    time: str = field(default_factory=_now)
    # Closing the loop (ops/revocation.py), present only when set: one {revoker, fingerprint, status, at} per
    # revocation; the armored age ciphertext of the secrets; the incident a follow-up record updates.
    revocation: list[dict] | None = None
    evidence: str | None = None
    follows: str = ""

    @classmethod
    def from_decision(cls, decision: DecisionRecord, ctx: FlowWhere, *, incident_id: str | None = None) -> Incident:
        """Build from policy's Decision and the FlowContext. A decision without an action (an error let
        through) is recorded as `allow`; without acted-on findings, every finding considered is listed."""
        acted = decision.acted or decision.findings
        limit = decision.report_limit or len(acted)
        return cls(
            action=str(decision.action or Action.ALLOW), direction=str(ctx.direction), host=str(ctx.host),
            path=mask_path(str(ctx.path)), method=str(ctx.method), scheme=str(ctx.scheme), client=str(ctx.client),
            findings=[_finding_dict(f) for f in acted[:limit]], findings_omitted=max(0, len(acted) - limit),
            unscannable=[{"location": str(u.location), "reason": str(u.reason)} for u in decision.unscannable],
            dry_run=bool(decision.dry_run), verdict=str(decision.verdict), reason=str(decision.reason),
            principal=str(ctx.principal), policy=str(decision.policy), incident_id=incident_id or _new_id())

    def to_dict(self) -> dict:
        out = {"time": self.time, "incident_id": self.incident_id, "action": self.action,
               "direction": self.direction, "client": self.client, "method": self.method,
               "scheme": self.scheme, "host": self.host, "path": self.path, "findings": self.findings,
               "unscannable": self.unscannable, "dry_run": self.dry_run, "verdict": self.verdict,
               "reason": self.reason,
               **({"findings_omitted": self.findings_omitted} if self.findings_omitted else {})}
        # Only when set: without principals and policies in the profile, the record is exactly as before.
        if self.principal:
            out["principal"] = self.principal
        if self.policy:
            out["policy"] = self.policy
        out.update(self._closing())
        return out

    def _closing(self) -> dict:
        extra: dict[str, object] = {}
        if self.revocation is not None:
            extra["revocation"] = self.revocation
        if self.evidence is not None:
            extra["evidence"] = self.evidence
        if self.follows:
            extra["follows"] = self.follows
        return extra

    def to_json(self) -> str:
        """One line of JSON, no trailing newline."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def describe(self) -> str:
        """A sentence for the log: `blocked POST api.example.com/upload: GitHub Personal Access Token in
        multipart file notes.txt (incident 7f3c…)`. Built from masked fields only."""
        if self.follows:
            return f"revocation update for incident {self.follows}: {describe_findings(self.findings)}: {self.reason}"
        done = VERDICT_OF_ACTION.get(self.action, self.action)
        verb = f"would have {done} (dry-run)" if self.dry_run else done
        where = f"{self.method} {self.host}{self.path.split('?', 1)[0]}".strip()
        if self.direction == Direction.RESPONSE:
            subject = f"response to {where}"
        elif self.direction == Direction.WEBSOCKET:
            subject = f"websocket message on {self.host}{self.path.split('?', 1)[0]}"
        else:
            subject = where
        what = describe_findings(self.findings, self.findings_omitted)
        if not what and self.unscannable:
            u = self.unscannable[0]
            what = f"content that could not be inspected ({u['reason']}) {describe_location(u['location'])}".rstrip()
        if not what:
            what = self.reason or "policy decision"
        who = f" from {self.principal}" if self.principal else ""
        rule = f", policy {self.policy}" if self.policy else ""
        return f"{verb} {subject}{who}: {what} (incident {self.incident_id}{rule})"

    def summary(self) -> str:
        """The chat/SOC sentence: principal (when known), entry, destination host, action, revocation status.
        `dlproxy: logged GitHub Personal Access Token (github-classic-pat) from alice to api.example.com
        [leaked]; revocation: github queued (incident 7f3c…)`. Built from masked fields only."""
        done = VERDICT_OF_ACTION.get(self.action, self.action)
        verb = f"would have {done} (dry-run)" if self.dry_run else done
        if self.follows:
            verb = f"revocation update for incident {self.follows} ({done})"
        what = ", ".join(dict.fromkeys(f"{f.get('name') or f.get('entry')} ({f.get('entry')})"
                                       for f in self.findings)) or self.reason or "policy decision"
        who = f" from {self.principal}" if self.principal else ""
        arrow = "from" if self.direction == Direction.RESPONSE else "to"
        exposure = sorted({f["exposure"] for f in self.findings if f.get("exposure")})
        text = f"dlproxy: {verb} {what}{who} {arrow} {self.host or 'unknown host'}"
        if exposure:
            text += f" [{', '.join(exposure)}]"
        if self.revocation:
            text += "; revocation: " + ", ".join(f"{r.get('revoker')} {r.get('status')}" for r in self.revocation)
        elif exposure:
            text += "; not revoked"
        return f"{text} (incident {self.incident_id})"


def _finding_dict(f: Recordable) -> dict:
    d = f.to_dict()
    keep = ("entry", "name", "severity", "location", "masked", "fingerprint", "validated")
    out = {k: d.get(k, "") for k in keep}
    if d.get("exposure"):
        out["exposure"] = d["exposure"]
    return out


_LOC_SIMPLE = {"url": "in the URL", "url:path": "in the URL path", "path": "in the URL path",
               "body": "in the body", "body:text": "in the body", "url:query": "in the URL query"}


def describe_location(location: str) -> str:
    """`body:multipart:file[notes.txt]` → `in multipart file notes.txt`; unknown forms are shown as they are."""
    loc = _mask_runs(location or "")
    if not loc:
        return ""
    if loc in _LOC_SIMPLE:
        return _LOC_SIMPLE[loc]
    kind, _, rest = loc.partition(":")
    if kind == "header":
        return f"in header {rest}"
    if kind in ("query", "url") and rest:
        sub, _, name = rest.partition(":")
        if sub == "query" and name:
            return f"in URL query parameter {name}"
        return f"in the URL ({rest})"
    if kind == "body":
        sub, _, name = rest.partition(":")
        m = re.fullmatch(r"(file|field|part)\[(.*?)\](.*)", name)
        if sub == "multipart" and m:
            what = "file" if m[1] == "file" else "field"
            return f"in multipart {what} {m[2]}{m[3]}"
        if sub == "json":
            return f"in JSON body at {name}" if name else "in JSON body"
        if sub == "form":
            return f"in form field {name}" if name else "in form body"
        return f"in body ({rest})"
    if kind in ("sse", "stream"):
        return "in streamed response" + (f" ({rest})" if rest else "")
    if kind in ("websocket", "ws"):
        return "in websocket message" + (f" ({rest})" if rest else "")
    return f"in {loc}"


def describe_findings(findings: list[dict], omitted: int = 0) -> str:
    """`GitHub Personal Access Token in multipart file notes.txt` (+ `and N more`)."""
    if not findings:
        return ""
    first = findings[0]
    text = f"{first.get('name') or first.get('entry')} {describe_location(first.get('location', ''))}".rstrip()
    if len(findings) + omitted > 1:
        text += f" and {len(findings) + omitted - 1} more"
    return text


class WebhookTarget(NamedTuple):
    scheme: str
    host: str
    port: int
    target: str  # path?query sent in the request line
    auth: str | None  # Authorization header value from URL userinfo
    shown: str  # URL without userinfo, for logs


def parse_webhook(url: str) -> WebhookTarget:
    """Parse `http(s)://[user:pass@]host[:port]/path`; raises ValueError with a precise message."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"incident webhook must be an http:// or https:// URL, got {u.scheme or 'no'} scheme")
    if not u.hostname:
        raise ValueError("incident webhook URL has no host")
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError as e:
        raise ValueError(f"incident webhook URL has a bad port: {e}") from None
    auth = None
    if u.username is not None:
        raw = f"{urllib.parse.unquote(u.username)}:{urllib.parse.unquote(u.password or '')}"
        auth = "Basic " + base64.b64encode(raw.encode()).decode()
    host_shown = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    shown = f"{u.scheme}://{host_shown}{'' if u.port is None else f':{u.port}'}{u.path or '/'}"
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return WebhookTarget(u.scheme, u.hostname, port, target, auth, shown)


async def post_json(t: WebhookTarget, body: bytes, timeout: float,
                    headers: tuple[tuple[str, str], ...] = ()) -> int:
    """One HTTP/1.1 POST; returns the status code. Raises OSError/TimeoutError/ValueError on failure."""
    return (await post(t, body, timeout, headers))[0]


async def post(t: WebhookTarget, body: bytes, timeout: float, headers: tuple[tuple[str, str], ...] = (),
               content_type: str = "application/json") -> tuple[int, dict[str, str]]:
    """One HTTP/1.1 POST; returns (status, response headers with lower-case names). `headers` are extra request
    headers (a `Content-Type` among them replaces `content_type`). Raises OSError/TimeoutError/ValueError."""
    extra = [(n, v) for n, v in headers if n.lower() not in ("host", "content-length", "connection")]
    if any(n.lower() == "content-type" for n, _ in extra):
        content_type = ""

    async def go() -> tuple[int, dict[str, str]]:
        ssl_ctx = ssl.create_default_context() if t.scheme == "https" else None
        reader, writer = await asyncio.open_connection(t.host, t.port, ssl=ssl_ctx,
                                                       server_hostname=t.host if ssl_ctx else None)
        try:
            host_hdr = f"[{t.host}]" if ":" in t.host else t.host
            if t.port != (443 if t.scheme == "https" else 80):
                host_hdr += f":{t.port}"
            head = (f"POST {t.target} HTTP/1.1\r\nHost: {host_hdr}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n")
            if content_type:
                head += f"Content-Type: {content_type}\r\n"
            if not any(n.lower() == "user-agent" for n, _ in extra):
                head += "User-Agent: dlproxy\r\n"
            if t.auth and not any(n.lower() == "authorization" for n, _ in extra):
                head += f"Authorization: {t.auth}\r\n"
            for name, value in extra:
                head += f"{name}: {value}\r\n"
            writer.write(head.encode("latin-1") + b"\r\n" + body)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ValueError(f"bad HTTP status line {status_line[:40]!r}")
            response_headers: dict[str, str] = {}
            for _ in range(100):
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                response_headers[name.strip().lower()] = value.strip()
            return int(parts[1]), response_headers
        finally:
            writer.close()

    return await asyncio.wait_for(go(), timeout)


class Closer(Protocol):
    """Seals the evidence and queues the revocations of an incident whose secrets are known (ops.revocation)."""

    def close(self, incident: Incident, sighting: object) -> None: ...


class IncidentLog:
    """Addon: the incident sinks. `record(incident)` never blocks and never raises."""

    name = "dlp-incident-log"
    ROTATION_CHECK_SECONDS = 1.0

    def __init__(self, metrics: Metrics | None = None, *, stream: TextIO | None = None, queue_size: int = 1000,
                 timeout: float = 5.0, retries: int = 3, backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.metrics = metrics
        self.stream = stream  # None: sys.stderr, looked up at write time
        self.queue_size = queue_size
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.path: str = ""
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.webhook: WebhookTarget | None = None
        self._queue: asyncio.Queue[bytes] | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dropping = False
        self.webhook_headers: tuple[tuple[str, str], ...] = ()
        self.webhook_format = "json"
        self.closer: Closer | None = None  # ops.revocation.Revocations

    # --- mitmproxy hooks ---
    def load(self, loader) -> None:
        loader.add_option("dlp_incident_log", str, "",
                          "File to append incident JSON lines to (empty: stderr). Reopened on SIGHUP, for rotation.")
        loader.add_option("dlp_incident_webhook", str, "",
                          "URL to POST each incident to as JSON (http or https; empty: none). Bounded queue, "
                          "retries with backoff; drops (counted) rather than slow traffic down.")
        loader.add_option("dlp_incident_webhook_headers", Sequence[str], [],
                          "Extra headers for the incident webhook, each 'Name: value'; ${env:NAME} in a value is "
                          "replaced by that environment variable (e.g. 'Authorization: Bearer ${env:SOC_TOKEN}').")
        loader.add_option("dlp_incident_webhook_format", str, "json",
                          "Incident webhook payload: json (the incident record), slack ({\"text\": …}) or "
                          "cloudevents (a CloudEvents 1.0 structured-mode envelope around the record).",
                          choices=list(WEBHOOK_FORMATS))

    def configure(self, updated) -> None:
        from mitmproxy import ctx, exceptions

        if "dlp_incident_log" in updated:
            try:
                self.open(ctx.options.dlp_incident_log)
            except OSError as e:
                raise exceptions.OptionsError(f"cannot open incident log {ctx.options.dlp_incident_log}: "
                                              f"{e.strerror}") from None
        if "dlp_incident_webhook" in updated:
            url = ctx.options.dlp_incident_webhook
            try:
                self.webhook = parse_webhook(url) if url else None
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
            if self._task is not None:
                self._stop_sender()
                self._start_sender()
        if "dlp_incident_webhook_headers" in updated:
            try:
                self.webhook_headers = parse_headers(ctx.options.dlp_incident_webhook_headers, os.environ)
            except ValueError as e:
                raise exceptions.OptionsError(f"dlp_incident_webhook_headers: {e}") from None
        if "dlp_incident_webhook_format" in updated:
            self.webhook_format = ctx.options.dlp_incident_webhook_format

    def running(self) -> None:
        self._start_sender()

    def done(self) -> None:
        self._stop_sender()
        self.close()

    # --- the file sink ---
    def open(self, path: str) -> None:
        """Switch to `path` (empty: stderr). Raises OSError when the file cannot be opened."""
        with self._lock:
            new_fd = None
            if path:
                new_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            old, self._fd, self.path = self._fd, new_fd, path
            self._ino = self._identity(new_fd) if new_fd is not None else None
            if old is not None:
                os.close(old)

    def reopen(self) -> None:
        """Reopen the file at the same path (after `mv` by logrotate); called on SIGHUP."""
        if self.path:
            try:
                self.open(self.path)
                logger.info(f"dlproxy reopened incident log {self.path}")
            except OSError as e:
                logger.error(f"dlproxy could not reopen incident log {self.path}: {e.strerror}; keeping the old file")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None

    @staticmethod
    def _identity(fd: int) -> tuple[int, int]:
        st = os.fstat(fd)
        return st.st_dev, st.st_ino

    def _moved_away(self) -> bool:
        """True when the path no longer names our open file (renamed or deleted): checked at most 1/s."""
        now = time.monotonic()
        if now - self._checked < self.ROTATION_CHECK_SECONDS:
            return False
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._ino

    def write_line(self, line: str) -> None:
        data = line.encode("utf-8") + b"\n"
        if self.path and self._moved_away():
            self.reopen()
        with self._lock:
            if self._fd is not None:
                _write_all(self._fd, data)
                return
            stream = self.stream or sys.stderr
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):
                fd = None
            if fd is not None:
                stream.flush()
                _write_all(fd, data)
            else:
                stream.write(data.decode("utf-8"))
                stream.flush()

    # --- recording ---
    def record(self, incident: Incident, sighting: object = None) -> None:
        """Write the JSON line, log the sentence, count it, queue the webhook POST. Never raises.

        `sighting` (ops.revocation.Sighting) holds the secrets behind the findings: the closer seals them as
        evidence and queues their revocation (durably) before the incident is written."""
        try:
            if sighting is not None and self.closer is not None:
                try:
                    self.closer.close(incident, sighting)
                except Exception as e:  # the incident is still written, without evidence/revocation
                    logger.error(f"dlproxy could not seal or queue revocation for incident {incident.incident_id} "
                                 f"({type(e).__name__})")
            line = incident.to_json()
            try:
                self.write_line(line)
            except OSError as e:
                logger.error(f"dlproxy could not write incident {incident.incident_id}: {e.strerror}")
            if self.metrics is not None and not incident.follows:  # a follow-up updates an incident counted once
                self.metrics.incidents_total.labels(action=incident.action).inc()
            text = "dlproxy " + incident.describe()
            if incident.action in (Enforcement.BLOCK, Enforcement.REDACT) and not incident.dry_run:
                logger.warning(text)
            else:
                logger.info(text)
            if self.webhook is not None:
                self._submit(render(incident, self.webhook_format))
        except Exception:  # an incident sink must never break the flow that produced it
            logger.exception("dlproxy incident recording failed")

    # --- the webhook ---
    def _submit(self, body: bytes) -> None:
        loop = self._loop
        if loop is None or self._queue is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._drop("failed")
                return
            self._start_sender()
            loop = self._loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._enqueue(body)
        else:  # called from a worker thread
            loop.call_soon_threadsafe(self._enqueue, body)

    def _enqueue(self, body: bytes) -> None:
        assert self._queue is not None
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self._drop("queue_full")

    def _drop(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_dropped_total.labels(reason=reason).inc()
        if not self._dropping:
            self._dropping = True
            shown = self.webhook.shown if self.webhook else "(none)"
            logger.warning(f"dlproxy incident webhook {shown}: dropping incidents ({reason}); "
                           f"see dlproxy_webhook_dropped_total")

    def _start_sender(self) -> None:
        if self.webhook is None or self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self.queue_size)
        self._task = self._loop.create_task(self._sender(self.webhook, self._queue))

    def _stop_sender(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._queue = None
        self._loop = None

    async def _sender(self, target: WebhookTarget, queue: asyncio.Queue[bytes]) -> None:
        while True:
            body = await queue.get()
            await self._deliver(target, body)

    async def _deliver(self, target: WebhookTarget, body: bytes) -> bool:
        delay = self.backoff
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
            try:
                status, _ = await post(target, body, self.timeout, self.webhook_headers,
                                       WEBHOOK_FORMATS[self.webhook_format])
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                continue
            if 200 <= status < 300:
                if self.metrics is not None:
                    self.metrics.webhook_delivered_total.inc()
                if self._dropping:
                    self._dropping = False
                    logger.info(f"dlproxy incident webhook {target.shown}: delivering again")
                return True
            problem = f"HTTP {status}"
            if 400 <= status < 500 and status not in (408, 425, 429):
                break  # the receiver rejects this payload: retrying will not help
        self._drop("failed")
        logger.warning(f"dlproxy incident webhook {target.shown}: gave up on an incident ({problem})")
        return False


WEBHOOK_FORMATS = {"json": "application/json", "slack": "application/json",
                   "cloudevents": "application/cloudevents+json"}
CLOUDEVENT_TYPE = "io.github.dlproxy.incident"


def render(incident: Incident, fmt: str = "json") -> bytes:
    """The webhook body: the incident record (json), Slack's `{"text": …}`, or a CloudEvents 1.0 envelope."""
    if fmt == "slack":
        return json.dumps({"text": incident.summary()}, ensure_ascii=False).encode("utf-8")
    if fmt == "cloudevents":
        event = {"specversion": "1.0", "type": CLOUDEVENT_TYPE, "source": "dlproxy", "id": incident.incident_id,
                 "time": incident.time, "subject": incident.host, "datacontenttype": "application/json",
                 "data": {**incident.to_dict(), "summary": incident.summary()}}
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return incident.to_json().encode("utf-8")


def parse_headers(lines, environ) -> tuple[tuple[str, str], ...]:
    """`["Name: value", …]` with `${env:NAME}` expanded; ValueError naming the bad line or missing variable."""
    from ..engine.closing import expand_env

    out = []
    for line in lines:
        name, sep, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ValueError(f"expected 'Name: value', got {line[:40]!r}")
        try:
            value = expand_env(value, environ)
        except KeyError as e:
            raise ValueError(f"header {name} uses ${{env:{e.args[0]}}}, which is not set") from None
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name}: the value must be one line")
        out.append((name, value))
    return tuple(out)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

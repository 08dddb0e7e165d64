"""Closing the loop: revoke an exposed credential at its issuer, durably, and seal the evidence.

When an incident carries secrets (a `Sighting`), `Revocations.close(incident, sighting)` runs before the
incident is written:
1. each finding gets its `exposure`: `leaked` (it went on unblocked: action log, dry-run, an allow by
   on_error/on_oversize, a log-action secret beside a redaction), `inbound` (it came from outside: a response, a
   download, a server→client WebSocket message), `blocked` (stopped or redacted before it left) or `issuer`
   (sent to its own issuer: normal use, never revoked);
2. with `settings.evidence.recipients`, the incident gets `evidence` (ops/evidence.py);
3. each secret whose `when` (the entry's `revocation.when`, else the profile's) asks for it — `exposed` =
   leaked or inbound, `always` = also blocked, `never` — is queued once per revoker that covers its entry.
   The job is written to `dlp_state_dir` (encrypted, fsync'd, renamed into place) before the incident says
   `queued`, so a crash after detection still revokes after the restart.

A background task delivers the queue: per revoker, batches (GitHub: up to 1,000 credentials per request) within
its rate limit (GitHub: 60 requests per hour); 2xx = revoked; 429, 5xx, 408 and network errors are retried
with exponential backoff (first `dlp_revocation_backoff_ms`, then doubling up to an hour; a Retry-After is
honoured), across restarts; a batch GitHub refuses with 422 is split into single requests; any other 4xx is
permanent (the job is dropped, counted `rejected`). Each status change is recorded as a follow-up incident
(`follows`: the first incident's id). A delivered (revoker, fingerprint) pair is remembered in the `done` file,
so the same credential seen again is not sent twice.

A revoker receives the raw secret and nothing else from the traffic (GitHub: `{"credentials": [...]}`; webhook:
`{"credentials": [{"credential", "entry", "fingerprint"}]}`). Secrets never reach a log line, a metric, an
incident or an exception message; on disk they exist only inside Fernet (AES-128-CBC + HMAC-SHA256) tokens.
The key comes from `DLPROXY_STATE_KEY`, else `dlp_state_key_file`, else `<dlp_state_dir>/state.key`, created
(0600) with a warning on first use.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from ..engine.closing import Revoker, expand_env
from . import evidence as evidence_mod
from .incidents import Incident, _now, parse_webhook, post

logger = logging.getLogger(__name__)

KEY_ENV = "DLPROXY_STATE_KEY"
MAX_BACKOFF = 3600.0
HOUR = 3600.0
TIMEOUT = 20.0
EXPOSED = ("leaked", "inbound")
RANK = {"issuer": 0, "blocked": 1, "leaked": 2, "inbound": 2}
GITHUB_HEADERS = (("Accept", "application/vnd.github+json"), ("X-GitHub-Api-Version", "2022-11-28"))


# --- what was exposed -------------------------------------------------------------------------------------


def exposures(decision: Any, direction: str) -> dict[str, str]:
    """fingerprint → leaked | inbound | blocked | issuer, for every finding of a decision (the strongest when a
    secret appears more than once)."""
    enforcement = decision.enforcement
    out: dict[str, str] = {}
    for f, action in decision.outcomes:
        if action == "allow":
            e = "issuer"
        elif direction == "response" or f.location.startswith("websocket:server"):
            e = "inbound"
        elif enforcement == "block" or (enforcement == "redact" and action == "redact"):
            e = "blocked"
        else:
            e = "leaked"
        if f.fingerprint not in out or RANK[e] > RANK[out[f.fingerprint]]:
            out[f.fingerprint] = e
    return out


class Sighting:
    """The secrets behind one decision's findings, keyed by fingerprint, and how each was exposed. Lives only
    in memory for the time of `IncidentLog.record`; its repr never shows a secret."""

    __slots__ = ("exposures", "secrets", "context")

    def __init__(self, exposures: dict[str, str], secrets: dict[str, str], context: dict[str, str]):
        self.exposures = exposures
        self.secrets = secrets
        self.context = context

    @classmethod
    def of(cls, decision: Any, direction: str, secrets: dict[str, Any], context: dict[str, str] | None = None
           ) -> Sighting:
        """From a decision and a scan's `{secret: finding}` (and `{secret: context}`)."""
        by_fp = {f.fingerprint: s for s, f in secrets.items()}
        ctx = {secrets[s].fingerprint: c for s, c in (context or {}).items() if s in secrets}
        return cls(exposures(decision, direction), by_fp, ctx)

    @classmethod
    def judged(cls, decision: Any, direction: str, verdicts: Any) -> Sighting | None:
        """From a stream's `inspect.stream.Verdicts` (fingerprint → secret of every secret it judged); None when
        none of the decision's secrets is known."""
        fps = {f.fingerprint for f in decision.findings} & set(verdicts.secrets)
        if not fps:
            return None
        return cls(exposures(decision, direction), {fp: verdicts.secrets[fp] for fp in fps},
                   {fp: verdicts.context[fp] for fp in fps if fp in verdicts.context})

    def __repr__(self) -> str:
        return f"Sighting({len(self.secrets)} secrets)"


# --- the durable queue ------------------------------------------------------------------------------------


def job_key(revoker: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{revoker}\0{fingerprint}".encode()).hexdigest()[:32]


def load_key(state_dir: Path, key_file: str, environ) -> Fernet:
    """The queue's encryption key: $DLPROXY_STATE_KEY, else `key_file`, else state_dir/state.key (created
    0600 with a warning the first time). ValueError when a configured key is not a Fernet key."""
    value = environ.get(KEY_ENV)
    origin = f"${KEY_ENV}"
    if not value and key_file:
        value = Path(key_file).read_text().strip()
        origin = key_file
    if not value:
        path = state_dir / "state.key"
        origin = str(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            value = path.read_text().strip()
        else:
            value = Fernet.generate_key().decode()
            with os.fdopen(fd, "w") as fh:
                fh.write(value + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            _fsync_dir(state_dir)
            logger.warning(f"dlproxy generated the revocation queue key {path} (0600): keep it with the state "
                           f"directory, or set ${KEY_ENV} or dlp_state_key_file to manage it yourself")
    try:
        return Fernet(value.encode() if isinstance(value, str) else value)
    except (ValueError, TypeError):
        raise ValueError(f"the revocation queue key from {origin} is not a valid key (32 url-safe base64 bytes; "
                         f"make one with: python -c 'from cryptography.fernet import Fernet; "
                         f"print(Fernet.generate_key().decode())')") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableQueue:
    """Pending revocations, one encrypted file each under `<state_dir>/revocations/pending/`, written with
    write + fsync + rename + directory fsync; delivered keys appended (fsync'd) to `revocations/done`."""

    def __init__(self, state_dir: Path, fernet: Fernet) -> None:
        self.root = state_dir / "revocations"
        self.pending_dir = self.root / "pending"
        self.pending_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.done_path = self.root / "done"
        self.fernet = fernet
        self.done: set[str] = set()
        self.jobs: dict[str, dict] = {}
        self.unreadable = 0
        self._load()

    def _load(self) -> None:
        try:
            self.done = {line.strip() for line in self.done_path.read_text().splitlines() if line.strip()}
        except FileNotFoundError:
            pass
        for path in sorted(self.pending_dir.iterdir()):
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)  # a write that never completed: its incident never said queued
                continue
            if path.suffix != ".job":
                continue
            try:
                job = json.loads(self.fernet.decrypt(path.read_bytes()))
            except (InvalidToken, ValueError, OSError):
                self.unreadable += 1
                logger.error(f"dlproxy cannot decrypt queued revocation {path.name} (another key?); kept on disk")
                continue
            if job["key"] in self.done:
                path.unlink(missing_ok=True)
            else:
                self.jobs[job["key"]] = job

    def __len__(self) -> int:
        return len(self.jobs)

    def state_of(self, key: str) -> str | None:
        if key in self.done:
            return "revoked"
        return "queued" if key in self.jobs else None

    def put(self, job: dict) -> None:
        self.save(job)
        self.jobs[job["key"]] = job

    def save(self, job: dict) -> None:
        final = self.pending_dir / f"{job['key']}.job"
        tmp = final.with_suffix(".tmp")
        data = self.fernet.encrypt(json.dumps(job).encode())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(self.pending_dir)

    def finish(self, key: str, delivered: bool) -> None:
        """Drop a job; a delivered one is remembered so the same credential is not sent to that revoker again."""
        if delivered:
            fd = os.open(self.done_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, key.encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self.done.add(key)
        (self.pending_dir / f"{key}.job").unlink(missing_ok=True)
        _fsync_dir(self.pending_dir)
        self.jobs.pop(key, None)


# --- delivery ---------------------------------------------------------------------------------------------


class RateLimit:
    """At most `per_hour` requests in any sliding hour (0: unlimited), and nothing before `hold_until`."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self.sent: collections.deque[float] = collections.deque()
        self.hold_until = 0.0

    def delay(self, now: float) -> float:
        """Seconds to wait before the next request may go."""
        wait = max(0.0, self.hold_until - now)
        if self.per_hour:
            while self.sent and self.sent[0] <= now - HOUR:
                self.sent.popleft()
            if len(self.sent) >= self.per_hour:
                wait = max(wait, self.sent[0] + HOUR - now)
        return wait

    def note(self, now: float) -> None:
        if self.per_hour:
            self.sent.append(now)


@dataclass
class Outcome:
    result: str  # revoked | retry | split | rejected
    detail: str = ""
    retry_after: float = 0.0


def classify(status: int, headers: dict[str, str], kind: str, batch: int) -> Outcome:
    """What an HTTP answer means for the jobs of one request."""
    if 200 <= status < 300:
        return Outcome("revoked", f"HTTP {status}")
    retry_after = _retry_after(headers.get("retry-after", ""))
    if status in (408, 425, 429) or status >= 500:
        return Outcome("retry", f"HTTP {status}", retry_after)
    if kind == "github" and status == 403 and (retry_after or headers.get("x-ratelimit-remaining") == "0"):
        return Outcome("retry", "HTTP 403 (rate limited)", retry_after or 60.0)
    if kind == "github" and status == 422 and batch > 1:
        return Outcome("split", "HTTP 422 for the batch")
    return Outcome("rejected", f"HTTP {status}")


def _retry_after(value: str) -> float:
    try:
        return max(0.0, min(float(value), MAX_BACKOFF))
    except ValueError:
        return 0.0


def request_body(revoker: Revoker, jobs: list[dict]) -> bytes:
    """What a revoker receives: the raw credentials (and, for a webhook, which entry and fingerprint)."""
    if revoker.kind == "github":
        return json.dumps({"credentials": [j["secret"] for j in jobs]}).encode()
    return json.dumps({"credentials": [{"credential": j["secret"], "entry": j["entry"],
                                        "fingerprint": j["fingerprint"]} for j in jobs]}).encode()


class Revocations:
    """Addon: evidence sealing, the durable revocation queue and its delivery task."""

    name = "dlp-revocations"

    def __init__(self, state: Any = None, metrics: Any = None, incidents: Any = None, *,
                 clock: Callable[[], float] = time.time, environ=None) -> None:
        self.state = state  # ProfileState: `.current.profile`
        self.metrics = metrics
        self.incidents = incidents  # IncidentLog: follow-up records
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self.state_dir: Path | None = None
        self.key_file = ""
        self.backoff = 5.0
        self.queue: DurableQueue | None = None
        self._queue_failed = False
        self.limits: dict[str, RateLimit] = {}
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned: set[str] = set()

    # --- mitmproxy hooks ---
    def load(self, loader) -> None:
        loader.add_option("dlp_state_dir", str, "",
                          "Directory for durable state: the encrypted revocation queue (and its key, unless "
                          f"${KEY_ENV} or dlp_state_key_file gives one). Empty: <confdir>/dlproxy-state.")
        loader.add_option("dlp_state_key_file", str, "",
                          f"File holding the key that encrypts the revocation queue at rest (a Fernet key); "
                          f"${KEY_ENV} takes precedence. Empty: <dlp_state_dir>/state.key, created on first use.")
        loader.add_option("dlp_revocation_backoff_ms", int, 5000,
                          "Milliseconds before the first retry of a failed revocation; doubles per attempt up to an "
                          "hour.")

    def configure(self, updated) -> None:
        from mitmproxy import ctx, exceptions

        if "dlp_revocation_backoff_ms" in updated:
            if ctx.options.dlp_revocation_backoff_ms <= 0:
                raise exceptions.OptionsError("dlp_revocation_backoff_ms must be > 0")
            self.backoff = ctx.options.dlp_revocation_backoff_ms / 1000
        if {"dlp_state_dir", "confdir", "dlp_state_key_file"} & set(updated):
            self._locate(ctx.options)

    def _locate(self, options) -> None:
        path = options.dlp_state_dir or os.path.join(os.path.expanduser(options.confdir), "dlproxy-state")
        new = Path(os.path.expanduser(path))
        if new != self.state_dir or options.dlp_state_key_file != self.key_file:
            self.state_dir, self.key_file = new, options.dlp_state_key_file
            self.queue, self._queue_failed = None, False

    def running(self) -> None:
        from mitmproxy import ctx

        if self.state_dir is None:  # preloaded addons get no configure() for options left at their defaults
            self._locate(ctx.options)
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._revokers() or self._has_pending_files():
            self._open()
        self._task = self._loop.create_task(self._run())

    def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # --- closing an incident ---
    def close(self, incident: Incident, sighting: Sighting) -> None:
        """Add exposure to the findings, seal the evidence, queue the revocations (durably) and list them."""
        profile = self._profile()
        for f in incident.findings:
            e = sighting.exposures.get(f.get("fingerprint", ""))
            if e:
                f["exposure"] = e
        if profile is None:
            return
        present = [f for f in incident.findings if f.get("fingerprint") in sighting.secrets]
        ev = getattr(profile.settings, "evidence", None)
        if ev is not None and ev.recipients and present:
            items, seen = [], set()
            for f in present:
                fp = f["fingerprint"]
                if fp in seen:
                    continue
                seen.add(fp)
                items.append({"entry": f.get("entry", ""), "fingerprint": fp, "location": f.get("location", ""),
                              "secret": sighting.secrets[fp], "context": sighting.context.get(fp, "")})
            incident.evidence = evidence_mod.seal(ev.recipients, incident.incident_id, items)
        statuses = self._queue_revocations(incident, present, sighting, profile)
        if statuses:
            incident.revocation = statuses

    def _queue_revocations(self, incident: Incident, present: list[dict], sighting: Sighting, profile) -> list[dict]:
        policy = profile.revocation
        if not policy.revokers:
            return []
        whens = {e.id: e.revocation_when or policy.when for e in profile.entries}
        statuses: list[dict] = []
        queued = False
        seen: set[tuple[str, str]] = set()
        for f in present:
            fp, entry = f["fingerprint"], f.get("entry", "")
            exposure = sighting.exposures.get(fp, "leaked")
            when = whens.get(entry, policy.when)
            if when == "never" or exposure == "issuer" or (when == "exposed" and exposure not in EXPOSED):
                continue
            for revoker in policy.revokers:
                if not revoker.covers(entry) or (revoker.id, fp) in seen:
                    continue
                seen.add((revoker.id, fp))
                status = self._enqueue(revoker, f, sighting.secrets[fp], incident)
                queued |= status == "queued"
                statuses.append({"revoker": revoker.id, "fingerprint": fp, "status": status, "at": _now()})
        if queued:
            self._poke()
        return statuses

    def _enqueue(self, revoker: Revoker, finding: dict, secret: str, incident: Incident) -> str:
        queue = self._open()
        if queue is None:
            self._count(revoker.id, "error")
            return "error"
        key = job_key(revoker.id, finding["fingerprint"])
        known = queue.state_of(key)
        if known is not None:
            return known  # the same credential is already queued for (or revoked by) this revoker
        job = {"key": key, "revoker": revoker.id, "secret": secret, "entry": finding.get("entry", ""),
               "name": finding.get("name", ""), "masked": finding.get("masked", ""),
               "fingerprint": finding["fingerprint"], "incident_id": incident.incident_id,
               "action": incident.action, "direction": incident.direction, "host": incident.host,
               "principal": incident.principal, "attempts": 0, "next_at": 0.0, "alone": False,
               "status": "queued"}
        try:
            queue.put(job)
        except OSError as e:
            logger.error(f"dlproxy could not queue the revocation of {finding.get('masked')} for {revoker.id} "
                         f"({e.strerror or type(e).__name__})")
            self._count(revoker.id, "error")
            return "error"
        self._count(revoker.id, "queued")
        self._depth()
        return "queued"

    # --- the delivery task ---
    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                wait = await self.pump()
            except Exception as e:  # keep the task alive; jobs stay on disk
                logger.error(f"dlproxy revocation delivery failed ({type(e).__name__}); retrying")
                wait = self.backoff
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def pump(self) -> float | None:
        """Send every batch that is due and allowed now. Returns the seconds until something else is due
        (None: nothing pending). Tests drive it with an injected clock instead of sleeping."""
        queue = self.queue
        if queue is None or not queue.jobs:
            return None
        revokers = {r.id: r for r in self._revokers()}
        next_due: float | None = None

        def later(t: float) -> None:
            nonlocal next_due
            next_due = t if next_due is None else min(next_due, t)

        by_revoker: dict[str, list[dict]] = collections.defaultdict(list)
        for job in queue.jobs.values():
            by_revoker[job["revoker"]].append(job)
        for rid, jobs in by_revoker.items():
            revoker = revokers.get(rid)
            if revoker is None:
                if rid not in self._warned:
                    self._warned.add(rid)
                    logger.warning(f"dlproxy has {len(jobs)} queued revocation(s) for revoker {rid}, which the "
                                   f"profile no longer defines; they stay queued")
                continue
            limit = self.limits.get(rid)
            if limit is None or limit.per_hour != revoker.per_hour:
                limit = self.limits[rid] = RateLimit(revoker.per_hour)
            while True:
                now = self.clock()
                due = sorted((j for j in by_revoker[rid] if j["key"] in queue.jobs and j["next_at"] <= now),
                             key=lambda j: (j["next_at"], j["key"]))
                waiting = [j["next_at"] for j in by_revoker[rid] if j["key"] in queue.jobs and j["next_at"] > now]
                if waiting:
                    later(min(waiting))
                if not due:
                    break
                wait = limit.delay(now)
                if wait > 0:
                    later(now + wait)
                    break
                batch = [due[0]] if due[0]["alone"] else [j for j in due if not j["alone"]][:revoker.batch]
                limit.note(now)
                await self._send(revoker, batch, limit)
        return None if next_due is None else max(0.0, next_due - self.clock())

    async def _send(self, revoker: Revoker, batch: list[dict], limit: RateLimit) -> None:
        queue = self.queue
        assert queue is not None
        try:
            headers = tuple((n, expand_env(v, self.environ)) for n, v in revoker.headers)
        except KeyError as e:
            outcome = Outcome("retry", f"${{env:{e.args[0]}}} is not set")
        else:
            if revoker.kind == "github":
                headers = GITHUB_HEADERS + headers
            try:
                status, response_headers = await post(parse_webhook(revoker.url), request_body(revoker, batch),
                                                       TIMEOUT, headers)
                outcome = classify(status, response_headers, revoker.kind, len(batch))
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
                outcome = Outcome("retry", type(e).__name__)
        now = self.clock()
        if outcome.result == "split":
            for job in batch:
                job["alone"] = True
                queue.save(job)
            logger.warning(f"dlproxy revoker {revoker.id} refused a batch of {len(batch)} ({outcome.detail}); "
                           f"sending them one by one")
            return
        if outcome.retry_after:
            limit.hold_until = max(limit.hold_until, now + outcome.retry_after)
        for job in batch:
            self._count(revoker.id, outcome.result)
            if outcome.result == "retry":
                delay = max(outcome.retry_after, min(self.backoff * 2 ** job["attempts"], MAX_BACKOFF))
                job["attempts"] += 1
                job["next_at"] = now + delay
                first = job["status"] != "retrying"
                job["status"] = "retrying"
                queue.save(job)
                if first:
                    self._follow_up(job, "retrying", outcome.detail)
            else:
                status = "revoked" if outcome.result == "revoked" else "rejected"
                queue.finish(job["key"], delivered=outcome.result == "revoked")
                self._follow_up(job, status, outcome.detail)
        level = logging.INFO if outcome.result == "revoked" else logging.WARNING
        logger.log(level, f"dlproxy revoker {revoker.id}: {len(batch)} credential(s) {outcome.result} "
                          f"({outcome.detail})")
        self._depth()

    def _follow_up(self, job: dict, status: str, detail: str) -> None:
        """A follow-up incident record: the revocation status of one credential of an earlier incident."""
        if self.incidents is None:
            return
        incident = Incident(action=job["action"], direction=job["direction"], host=job["host"],
                            findings=[{"entry": job["entry"], "name": job["name"], "masked": job["masked"],
                                       "fingerprint": job["fingerprint"]}],
                            reason=f"revocation {status} by {job['revoker']} ({detail})", follows=job["incident_id"],
                            revocation=[{"revoker": job["revoker"], "fingerprint": job["fingerprint"],
                                         "status": status, "at": _now()}])
        incident.principal = job.get("principal", "")
        self.incidents.record(incident)

    # --- helpers ---
    def _profile(self):
        current = getattr(self.state, "current", None)
        return getattr(current, "profile", None)

    def _revokers(self) -> tuple[Revoker, ...]:
        profile = self._profile()
        return profile.revocation.revokers if profile is not None else ()

    def _has_pending_files(self) -> bool:
        return self.state_dir is not None and any((self.state_dir / "revocations" / "pending").glob("*.job"))

    def _open(self) -> DurableQueue | None:
        """The queue, opened on first need; None (logged once) when the state directory is unusable."""
        if self.queue is not None or self._queue_failed:
            return self.queue
        if self.state_dir is None:  # outside mitmproxy (tests, tools) and never configured
            self.state_dir = Path(os.path.expanduser("~/.mitmproxy/dlproxy-state"))
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.queue = DurableQueue(self.state_dir, load_key(self.state_dir, self.key_file, self.environ))
        except (OSError, ValueError) as e:
            self._queue_failed = True
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            logger.error(f"dlproxy cannot use the revocation queue in {self.state_dir}: {why}; exposed "
                         f"credentials will not be revoked (incidents say so)")
            return None
        if self.queue.jobs:
            logger.info(f"dlproxy has {len(self.queue.jobs)} revocation(s) to deliver from {self.state_dir}")
        self._depth()
        return self.queue

    def _poke(self) -> None:
        if self._wake is None or self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _count(self, revoker: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.revocations_total.labels(revoker=revoker, result=result).inc()

    def _depth(self) -> None:
        if self.metrics is not None and self.queue is not None:
            self.metrics.revocation_queue_depth.set(len(self.queue))



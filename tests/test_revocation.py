"""Closing the loop: the revocation/evidence profile sections, exposure, the durable encrypted queue, delivery to
GitHub-style and webhook revokers (batching, rate limit, retries, permanent errors, dedupe) with an injected
clock, sealed evidence, and the webhook sink's headers and payload templates. Real HTTP to a local fake
endpoint (tests/revocation_support.py); time is never slept on: `pump()` is driven with a fake clock."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pyrage
import pytest
import yaml

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import ProfileError, builtin_profile_path, load_profiles
from dlproxy.extract import Limits
from dlproxy.inspect.policy import Active, FlowContext, decide
from dlproxy.inspect.scanning import scan_message
from dlproxy.ops import incidents as incidents_mod
from dlproxy.ops.incidents import Incident, parse_headers, render
from dlproxy.ops.metrics import Metrics
from dlproxy.ops.revocation import KEY_ENV, DurableQueue, RateLimit, Revocations, Sighting, classify, load_key
from dlproxy.proxy.addon import record_decision
from revocation_support import FakeRevoker
from tokens import github_token

AGE = pyrage.x25519.Identity.generate()
RECIPIENT = str(AGE.to_public())


def overlay(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def revocation_profile(tmp_path: Path, url: str, extra: dict | None = None, github: str = "",
                       webhook_url: str = "") -> str:
    """The built-in profile's GitHub OAuth and npm tokens logged (not blocked), `extra`: {entry id: "key: value,
    …"} on top; a github revoker at `url` (`github`: more of its keys), optionally a webhook revoker for npm."""
    fields = {"github-oauth-token": "action: log", "npm-access-token": "action: log"} | (extra or {})
    entries = "".join(f"  - {{id: {k}, {v}}}\n" for k, v in fields.items())
    text = f"""\
profile: closing
settings:
  evidence: {{recipients: ["{RECIPIENT}"], context: 12}}
entries:
{entries}revocation:
  when: exposed
  revokers:
    - id: github
      kind: github
      url: {url}
      entries: [github-classic-pat, github-oauth-token]
{github}"""
    if webhook_url:
        text += f"""\
    - id: soc
      kind: webhook
      url: {webhook_url}
      headers: {{Authorization: "Bearer ${{env:SOC_TOKEN}}"}}
      entries: [npm-access-token]
"""
    return text


class Collector:
    """A stand-in IncidentLog: the real record() path (closer, JSON), lines kept in memory."""

    def __init__(self, closer=None):
        self.lines: list[str] = []
        self.closer = closer

    def record(self, incident: Incident, sighting=None) -> None:
        if sighting is not None and self.closer is not None:
            self.closer.close(incident, sighting)
        self.lines.append(incident.to_json())

    @property
    def records(self) -> list[dict]:
        return [json.loads(x) for x in self.lines]


USED = ("github-classic-pat", "github-oauth-token", "npm-access-token")


@functools.cache
def base_profile() -> Path:
    """The built-in entries these tests use, verbatim (a small profile loads and compiles fast)."""
    doc = yaml.safe_load(builtin_profile_path().read_text())
    doc["entries"] = [e for e in doc["entries"] if e["id"] in USED]
    path = Path(tempfile.mkdtemp(prefix="dlp-revocation-")) / "base.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@functools.cache
def builtin_detector() -> Detector:
    """The overlays change actions and revocation, never patterns: one compiled detector serves every test."""
    return Detector(load_profiles([base_profile()]))


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Loop:
    """Everything a test needs: a profile, the closer with a fake clock, its collector, metrics, the fake."""

    def __init__(self, tmp_path: Path, fake: FakeRevoker, *, extra=None, github="", webhook=None, env=None):
        path = overlay(tmp_path, revocation_profile(tmp_path, fake.url, extra, github,
                                                    webhook.url if webhook else ""))
        self.profile = load_profiles([base_profile(), path])
        self.active = Active(self.profile, builtin_detector(), Limits.from_settings(self.profile.settings), 1)
        self.state = SimpleNamespace(current=self.active)
        self.metrics = Metrics()
        self.clock = Clock()
        self.state_dir = tmp_path / "state"
        self.closer = Revocations(self.state, self.metrics, None, clock=self.clock,
                                  environ={KEY_ENV: KEY, "SOC_TOKEN": "soc-secret-value"} | (env or {}))
        self.closer.state_dir = self.state_dir
        self.closer.backoff = 10.0
        self.log = Collector(self.closer)
        self.closer.incidents = self.log

    def see(self, direction: str, body: str, host: str = "upload.example.com", dry_run: bool = False,
            headers: tuple = ()) -> dict | None:
        """Scan → decide → record_decision, as the proxy does; returns the incident record (None: no incident)."""
        scan = scan_message(self.active, None, [("content-type", "text/plain"), *headers], body.encode())
        ctx = FlowContext(direction=direction, host=host, method="POST", scheme="https", path="/x")
        decision = decide(scan.findings, scan.unscannable, ctx, self.active, dry_run)
        before = len(self.log.lines)
        if record_decision(self.metrics, self.log, decision, ctx, direction, scan=scan) is None:
            assert len(self.log.lines) == before
            return None
        return self.log.records[before]

    def pump(self) -> float | None:
        return asyncio.run(self.closer.pump())


KEY = "0" * 43 + "="  # a valid Fernet key (32 zero bytes): tests that check the file key set none


@pytest.fixture
def fake():
    f = FakeRevoker()
    yield f
    f.close()


def ghp(seed) -> str:
    return github_token("ghp_", seed)


def gho(seed) -> str:
    return github_token("gho_", seed)


def npm(seed) -> str:
    return github_token("npm_", seed)


# --- the profile sections ---------------------------------------------------------------------------------


def test_sections_parse_with_defaults_and_entry_override(tmp_path, fake):
    path = overlay(tmp_path, revocation_profile(tmp_path, fake.url,
                                                {"npm-access-token": "revocation: {when: always}"}))
    p = load_profiles([base_profile(), path])
    (github,) = p.revocation.revokers
    assert (github.kind, github.batch, github.per_hour) == ("github", 1000, 60)
    assert github.covers("github-oauth-token") and not github.covers("npm-access-token")
    assert p.settings.evidence.recipients == (RECIPIENT,) and p.settings.evidence.context == 12
    assert {e.id: e.revocation_when for e in p.entries}["npm-access-token"] == "always"
    assert load_profiles([base_profile()]).revocation.revokers == ()


@pytest.mark.parametrize("bad, message", [
    ("url: http://revoke.example.com/x", "revokers[0].url: must be https"),
    ("url: https://u:p@revoke.example.com/x", "must not carry credentials"),
    ("entries: [nope]", "revokers[0].entries[0]: unknown entry id 'nope'"),
    ("headers: {Authorization: x}", "GitHub's revocation API is unauthenticated"),
    ("batch: 5000", "revokers[0].batch: must be an integer 1..1000"),
    ("kind: gitlab", "revokers[0].kind: must be one of github, webhook"),
    ("colour: red", "revokers[0].colour: unknown key"),
])
def test_bad_revokers_are_reported_with_file_and_line(tmp_path, bad, message):
    key = bad.split(":")[0]
    lines = ["profile: bad", "entries: []", "revocation:", "  when: exposed", "  revokers:", "    - id: github",
             "      kind: github", "      url: https://api.github.com/credentials/revoke",
             "      entries: [github-classic-pat]"]
    replaced = [f"      {bad}" if line.strip().startswith(f"{key}:") and line.startswith("      ") else line
                for line in lines]
    if replaced == lines:
        replaced.append(f"      {bad}")
    path = overlay(tmp_path, "\n".join(replaced) + "\n")
    with pytest.raises(ProfileError) as e:
        load_profiles([base_profile(), path])
    assert any(message in p and p.startswith(f"{path}:") and p.split(":")[1].isdigit() for p in e.value.problems), \
        e.value.problems


def test_bad_when_evidence_and_entry_override_are_reported(tmp_path):
    path = overlay(tmp_path, """\
profile: bad
settings:
  evidence: {recipients: ["age1nope"], colour: 1}
entries:
  - id: npm-access-token
    revocation: {when: sometimes}
revocation:
  when: often
""")
    with pytest.raises(ProfileError) as e:
        load_profiles([base_profile(), path])
    text = str(e.value)
    assert f"{path}:3: settings.evidence.recipients[0]: not an age X25519 recipient" in text
    assert f"{path}:3: settings.evidence.colour: unknown key" in text
    assert f"{path}:6: entries[0].revocation.when: must be one of exposed, never, always" in text
    assert f"{path}:8: revocation.when: must be one of exposed, never, always, got 'often'" in text


def test_loopback_http_is_allowed_for_a_revoker(tmp_path):
    for host in ("127.0.0.1:8080", "localhost", "[::1]:9"):
        path = overlay(tmp_path, f"profile: x\nentries: []\nrevocation:\n  revokers:\n    - id: w\n"
                                 f"      kind: webhook\n      url: http://{host}/r\n")
        assert load_profiles([base_profile(), path]).revocation.revokers[0].url == f"http://{host}/r"


# --- exposure ---------------------------------------------------------------------------------------------


def test_exposure_of_each_kind_of_decision(tmp_path, fake):
    loop = Loop(tmp_path, fake)
    assert loop.see("request", f"k={gho(1)}")["findings"][0]["exposure"] == "leaked"  # action log
    assert loop.see("request", f"k={ghp(1)}")["findings"][0]["exposure"] == "blocked"
    assert loop.see("response", f"k={ghp(2)}")["findings"][0]["exposure"] == "inbound"  # a download
    assert loop.see("request", f"k={ghp(3)}", dry_run=True)["findings"][0]["exposure"] == "leaked"
    auth = (("Authorization", f"Bearer {ghp(4)}"),)
    assert loop.see("request", "k=1", host="api.github.com", headers=auth) is None  # its use position: normal use
    assert loop.see("request", f"k={ghp(5)}", host="api.github.com")["findings"][0]["exposure"] == "blocked"
    assert len(loop.closer.queue) == 3 and len(fake.requests) == 0  # leaked, inbound, dry-run


def test_redaction_protects_redacted_secrets_only():
    from dlproxy.engine.findings import Finding
    from dlproxy.inspect.policy import Decision
    from dlproxy.ops.revocation import exposures

    red = Finding("a", "A", "high", 0, 1, "checksum", "x…", "sha256:a", "body")
    logged = Finding("b", "B", "high", 0, 1, "checksum", "y…", "sha256:b", "body")
    decision = Decision("redacted", "redact", (red, logged), (), ((red, "redact"), (logged, "log")))
    assert exposures(decision, "request") == {"sha256:a": "blocked", "sha256:b": "leaked"}
    allowed = Decision("allowed", "allow", (), (red,), ((red, "allow"),))
    assert exposures(allowed, "request") == {"sha256:a": "issuer"}
    server = Finding("c", "C", "high", 0, 1, "checksum", "z…", "sha256:c", "websocket:server")
    ws = Decision("blocked", "block", (server,), (), ((server, "block"),))
    assert exposures(ws, "websocket") == {"sha256:c": "inbound"}
    assert repr(Sighting({}, {"sha256:a": "secret-value"}, {})) == "Sighting(1 secrets)"


# --- the loop: queue, batch, deliver ----------------------------------------------------------------------


def test_logged_tokens_are_revoked_once_in_one_batch_and_blocked_ones_are_not(tmp_path, fake, caplog):
    caplog.set_level(logging.DEBUG)
    loop = Loop(tmp_path, fake)
    leaked = [gho(i) for i in range(3)]
    first = loop.see("request", " ".join(leaked))
    blocked = loop.see("request", f"x {ghp(7)} y")
    inbound = loop.see("response", f"download {ghp(8)}")
    assert [r["status"] for r in first["revocation"]] == ["queued"] * 3
    assert "revocation" not in blocked and blocked["findings"][0]["exposure"] == "blocked"
    assert inbound["revocation"][0]["status"] == "queued"
    assert len(loop.closer.queue) == 4 and loop.metrics.revocation_queue_depth._value.get() == 4

    assert loop.pump() is None  # everything delivered, nothing left
    assert len(fake.requests) == 1, "one batch"
    (req,) = fake.requests
    assert sorted(req.credentials) == sorted(leaked + [ghp(8)])
    assert req.path == "/credentials/revoke" and "authorization" not in req.headers
    assert req.headers["accept"] == "application/vnd.github+json" and req.headers["x-github-api-version"]
    assert ghp(7) not in fake.credentials()
    follow = [r for r in loop.log.records if r.get("follows")]
    assert len(follow) == 4 and {r["revocation"][0]["status"] for r in follow} == {"revoked"}
    assert {r["follows"] for r in follow} == {first["incident_id"], inbound["incident_id"]}
    assert loop.metrics.revocations_total.labels(revoker="github", result="revoked")._value.get() == 4
    assert loop.metrics.revocation_queue_depth._value.get() == 0

    # seen again: not sent again (dedupe by revoker + fingerprint), the incident says it is revoked
    again = loop.see("request", leaked[0])
    assert again["revocation"][0]["status"] == "revoked"
    assert loop.pump() is None and len(fake.requests) == 1

    # nothing secret anywhere: incidents, logs, metrics, the queue files
    secrets = leaked + [ghp(7), ghp(8)]
    disk = b"".join(p.read_bytes() for p in loop.state_dir.rglob("*") if p.is_file())
    metrics = loop.metrics.render().decode()
    for s in secrets:
        for needle in (s, s[-8:]):
            assert needle not in "\n".join(loop.log.lines)
            assert needle not in caplog.text
            assert needle not in metrics
            assert needle.encode() not in disk


def test_a_revoker_never_gets_an_entry_it_does_not_cover_and_webhooks_get_their_headers(tmp_path, fake):
    soc = FakeRevoker(default=200)
    try:
        loop = Loop(tmp_path, fake, webhook=soc)
        rec = loop.see("request", f"{npm(1)} and {gho(1)}")
        assert sorted(r["revoker"] for r in rec["revocation"]) == ["github", "soc"]
        loop.pump()
        assert fake.credentials() == [gho(1)], "the github revoker never sees the npm token"
        (req,) = soc.requests
        assert req.headers["authorization"] == "Bearer soc-secret-value"
        assert req.body == {"credentials": [{"credential": npm(1), "entry": "npm-access-token",
                                             "fingerprint": rec["findings"][0]["fingerprint"]}]}
    finally:
        soc.close()


def test_when_never_and_always(tmp_path, fake):
    extra = {"github-classic-pat": "revocation: {when: always}",
             "github-oauth-token": "action: log, revocation: {when: never}"}
    loop = Loop(tmp_path, fake, extra=extra)
    assert loop.see("request", ghp(1))["revocation"][0]["status"] == "queued"  # blocked, but always
    assert "revocation" not in loop.see("request", gho(1))  # leaked, but never
    loop.pump()
    assert fake.credentials() == [ghp(1)]


def test_rate_limit_is_honoured_by_count(tmp_path, fake):
    loop = Loop(tmp_path, fake, github="      batch: 1\n      per_hour: 2\n")
    for i in range(5):
        loop.see("request", gho(i))
    wait = loop.pump()
    assert len(fake.requests) == 2 and wait == pytest.approx(3600)
    loop.clock.now += 3599
    assert loop.pump() == pytest.approx(1) and len(fake.requests) == 2
    loop.clock.now += 1
    loop.pump()
    assert len(fake.requests) == 4
    loop.clock.now += 3600
    assert loop.pump() is None and len(fake.requests) == 5
    assert sorted(fake.credentials()) == sorted(gho(i) for i in range(5))


def test_rate_limit_window_slides():
    limit = RateLimit(3)
    for t in (0, 10, 20):
        assert limit.delay(t) == 0
        limit.note(t)
    assert limit.delay(30) == 3570
    assert limit.delay(3600) == 0 and limit.delay(3605) == 0
    assert RateLimit(0).delay(0) == 0


def test_5xx_is_retried_with_backoff_and_429_retry_after_is_honoured(tmp_path, fake):
    loop = Loop(tmp_path, fake)
    fake.answers = [(503, {}), (502, {}), (429, {"Retry-After": "300"})]
    rec = loop.see("request", gho(1))
    assert loop.pump() == pytest.approx(10)  # first backoff
    assert len(fake.requests) == 1 and loop.pump() == pytest.approx(10) and len(fake.requests) == 1
    loop.clock.now += 10
    assert loop.pump() == pytest.approx(20)  # doubled
    loop.clock.now += 20
    assert loop.pump() == pytest.approx(300)  # Retry-After beats the backoff (40)
    loop.clock.now += 300
    assert loop.pump() is None
    assert [r.status for r in fake.requests] == [503, 502, 429, 202]
    statuses = [r["revocation"][0]["status"] for r in loop.log.records if r.get("follows") == rec["incident_id"]]
    assert statuses == ["retrying", "revoked"], "one follow-up when it starts retrying, one when it is done"
    assert loop.metrics.revocations_total.labels(revoker="github", result="retry")._value.get() == 3


def test_retries_survive_a_restart_and_keep_their_backoff(tmp_path, fake):
    loop = Loop(tmp_path, fake)
    fake.answers = [(500, {})]
    loop.see("request", gho(1))
    loop.pump()
    # a new process: same state directory, same key
    again = Loop(tmp_path, fake)
    again.clock.now = loop.clock.now + 5
    again.closer._open()
    assert len(again.closer.queue) == 1
    assert again.pump() == pytest.approx(5) and len(fake.requests) == 1  # still backing off
    again.clock.now += 5
    again.pump()
    assert fake.credentials(202) == [gho(1)]


def test_422_splits_a_batch_and_a_permanent_error_drops_only_the_bad_one(tmp_path, fake):
    bad = gho(99)
    fake.answer(lambda creds: (422, {}) if bad in creds else (202, {}))
    loop = Loop(tmp_path, fake)
    loop.see("request", " ".join([gho(1), bad, gho(2)]))
    assert loop.pump() is None
    sizes = [len(r.credentials) for r in fake.requests]
    assert sizes == [3, 1, 1, 1]
    assert sorted(fake.credentials(202)) == sorted([gho(1), gho(2)])
    assert loop.metrics.revocations_total.labels(revoker="github", result="rejected")._value.get() == 1
    assert len(loop.closer.queue) == 0
    # rejected is not "done": a later sighting is queued again
    assert loop.see("request", bad)["revocation"][0]["status"] == "queued"


def test_unreachable_revoker_is_retried(tmp_path, fake):
    loop = Loop(tmp_path, fake)
    fake.close()
    loop.see("request", gho(1))
    assert loop.pump() == pytest.approx(10)
    assert loop.metrics.revocations_total.labels(revoker="github", result="retry")._value.get() == 1
    assert len(loop.closer.queue) == 1


def test_classify():
    assert classify(202, {}, "github", 5).result == "revoked"
    assert classify(500, {}, "github", 1).result == "retry"
    assert classify(429, {"retry-after": "7"}, "webhook", 1).retry_after == 7
    assert classify(403, {"x-ratelimit-remaining": "0"}, "github", 1).result == "retry"
    assert classify(403, {}, "github", 1).result == "rejected"
    assert classify(422, {}, "github", 2).result == "split"
    assert classify(422, {}, "github", 1).result == "rejected"
    assert classify(404, {}, "webhook", 1).result == "rejected"


# --- the queue on disk ------------------------------------------------------------------------------------


def test_queue_is_encrypted_durable_and_remembers_deliveries(tmp_path):
    from cryptography.fernet import Fernet

    key = Fernet(Fernet.generate_key())
    q = DurableQueue(tmp_path, key)
    secret = ghp(5)
    q.put({"key": "k1", "secret": secret, "revoker": "github"})
    q.put({"key": "k2", "secret": ghp(6), "revoker": "github"})
    files = list((tmp_path / "revocations" / "pending").iterdir())
    assert len(files) == 2 and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert all(secret.encode() not in f.read_bytes() for f in files)
    (tmp_path / "revocations" / "pending" / "k3.tmp").write_bytes(b"half")
    q.finish("k1", delivered=True)
    q2 = DurableQueue(tmp_path, key)
    assert set(q2.jobs) == {"k2"} and q2.state_of("k1") == "revoked" and q2.state_of("k2") == "queued"
    assert not (tmp_path / "revocations" / "pending" / "k3.tmp").exists()
    # a file the key cannot open is kept, never dropped
    q3 = DurableQueue(tmp_path, Fernet(Fernet.generate_key()))
    assert q3.jobs == {} and q3.unreadable == 1
    assert (tmp_path / "revocations" / "pending" / "k2.job").exists()


def test_key_is_generated_once_0600_with_a_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    k1 = load_key(tmp_path, "", {})
    path = tmp_path / "state.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "generated the revocation queue key" in caplog.text
    caplog.clear()
    k2 = load_key(tmp_path, "", {})
    assert k2.decrypt(k1.encrypt(b"x")) == b"x" and caplog.text == ""
    keyfile = tmp_path / "mine.key"
    keyfile.write_text(KEY)
    assert load_key(tmp_path, str(keyfile), {}).decrypt(load_key(tmp_path, "", {KEY_ENV: KEY}).encrypt(b"y")) == b"y"
    with pytest.raises(ValueError, match="not a valid key"):
        load_key(tmp_path, "", {KEY_ENV: "short"})


def test_an_unusable_state_dir_never_stops_the_proxy(tmp_path, fake, caplog):
    loop = Loop(tmp_path, fake)
    loop.closer.state_dir = Path("/proc/no-such-dir/state")
    rec = loop.see("request", gho(1))
    assert rec["revocation"][0]["status"] == "error"
    assert "cannot use the revocation queue" in caplog.text
    assert loop.metrics.revocations_total.labels(revoker="github", result="error")._value.get() == 1


# --- sealed evidence --------------------------------------------------------------------------------------


def test_evidence_decrypts_with_the_identity(tmp_path, fake):
    loop = Loop(tmp_path, fake)
    secret = ghp(11)
    rec = loop.see("request", f"prefix-text {secret} suffix-text")
    assert rec["evidence"].startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    assert secret not in rec["evidence"]
    plain = json.loads(pyrage.decrypt(rec["evidence"].encode(), [AGE]))
    (item,) = plain["items"]
    assert plain["incident_id"] == rec["incident_id"]
    assert item["secret"] == secret and item["entry"] == "github-classic-pat"
    assert item["context"] == f"prefix-text {secret} suffix-text"[:12 + len("prefix-text ") + len(secret)][-(
        12 + len(secret) + 12):]
    assert item["fingerprint"] == rec["findings"][0]["fingerprint"]


@pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed")
def test_evidence_decrypts_with_the_age_cli(tmp_path, fake):
    loop = Loop(tmp_path, fake)
    secret = gho(12)
    rec = loop.see("request", secret)
    identity = tmp_path / "key.txt"
    identity.write_text(str(AGE) + "\n")
    os.chmod(identity, 0o600)
    out = subprocess.run(["age", "-d", "-i", str(identity)], input=rec["evidence"].encode(), capture_output=True,
                         check=True, timeout=30)
    assert json.loads(out.stdout)["items"][0]["secret"] == secret


# --- the webhook sink: headers and templates --------------------------------------------------------------


def _incident() -> Incident:
    inc = Incident(action="log", direction="request", host="api.example.com", method="POST", path="/up",
                   findings=[{"entry": "github-classic-pat", "name": "GitHub Personal Access Token",
                              "masked": "ghp_…abcd", "fingerprint": "sha256:00", "exposure": "leaked"}],
                   revocation=[{"revoker": "github", "fingerprint": "sha256:00", "status": "queued", "at": "t"}])
    inc.principal = "alice"
    return inc


def test_slack_and_cloudevents_payloads_name_what_a_responder_needs():
    inc = _incident()
    text = json.loads(render(inc, "slack"))["text"]
    for part in ("alice", "github-classic-pat", "api.example.com", "logged", "github queued", "leaked",
                 inc.incident_id):
        assert part in text, part
    event = json.loads(render(inc, "cloudevents"))
    assert event["specversion"] == "1.0" and event["id"] == inc.incident_id and event["source"] == "dlproxy"
    assert event["type"] and event["time"] == inc.time and event["data"]["revocation"] == inc.revocation
    assert json.loads(render(inc, "json")) == inc.to_dict()


def test_webhook_headers_expand_env_and_report_missing_variables():
    assert parse_headers(["Authorization: Bearer ${env:T}", "X-A:b"], {"T": "tok"}) == (
        ("Authorization", "Bearer tok"), ("X-A", "b"))
    with pytest.raises(ValueError, match=r"uses \$\{env:MISSING\}, which is not set"):
        parse_headers(["Authorization: ${env:MISSING}"], {})
    with pytest.raises(ValueError, match="expected 'Name: value'"):
        parse_headers(["no colon"], {})


def test_webhook_sink_sends_headers_and_template(fake):
    log = incidents_mod.IncidentLog(None)
    log.webhook = incidents_mod.parse_webhook(fake.url)
    log.webhook_headers = (("Authorization", "Bearer abc"),)
    log.webhook_format = "cloudevents"
    inc = _incident()

    async def go():
        return await log._deliver(log.webhook, render(inc, log.webhook_format))

    assert asyncio.run(go())
    (req,) = fake.requests
    assert req.headers["authorization"] == "Bearer abc"
    assert req.headers["content-type"] == "application/cloudevents+json"
    assert req.body["data"]["incident_id"] == inc.incident_id


# --- streams: the secrets a stream judged ----------------------------------------------------------------


def test_a_stream_window_keeps_the_secret_it_judged_even_when_split_across_chunks():
    from dlproxy.inspect.stream import PASS, ScanWindow, Verdicts

    secret = gho(21)
    verdicts = Verdicts(lambda findings: (PASS, []), context_chars=5)
    window = ScanWindow(builtin_detector(), verdicts, "body:stream")
    window.push(b"abc " + secret[:10].encode())
    window.push(secret[10:].encode() + b" tail", final=True)
    (fp,) = verdicts.secrets
    assert verdicts.secrets[fp] == secret and verdicts.context[fp] == f"abc {secret} tail"
    from dlproxy.engine.findings import fingerprint
    from dlproxy.inspect.policy import Decision

    assert fp == fingerprint(secret)
    f = SimpleNamespace(fingerprint=fp, location="body:stream")
    decision = Decision("logged", "log", (f,), (), ((f, "log"),))
    sighting = Sighting.judged(decision, "response", verdicts)
    assert sighting.secrets == {fp: secret} and sighting.exposures == {fp: "inbound"}
    assert Sighting.judged(Decision("clean"), "request", verdicts) is None


def test_an_overlay_may_hold_only_a_revocation_section(tmp_path, fake):
    path = overlay(tmp_path, f"profile: revoke-only\nrevocation:\n  revokers:\n    - id: soc\n      kind: webhook\n"
                             f"      url: {fake.url}\n")
    p = load_profiles([base_profile(), path])
    assert [r.id for r in p.revocation.revokers] == ["soc"] and len(p.entries) == len(USED)


def test_a_stream_keeps_the_decoded_secret_of_a_base64_carrier():
    import base64

    from dlproxy.inspect.stream import PASS, ByteStreamScanner

    secret = gho(22)
    scanner = ByteStreamScanner(builtin_detector(), lambda findings: (PASS, []), "body:stream", False,
                                Limits.from_settings(load_profiles([base_profile()]).settings), "text/plain")
    blob = base64.b64encode(f"config token={secret} end".encode())
    out = scanner.feed(b"payload " + blob[:20]) + scanner.feed(blob[20:] + b" done") + scanner.finish()
    assert b"".join(out) == b"payload " + blob + b" done"  # passed on unchanged (action: pass)
    assert list(scanner.verdicts.secrets.values()) == [secret]

"""policy.decide: actions per entry and direction, issuer binding, min_matches, unscannable parts, dry-run."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import pytest

from dlproxy.engine.findings import Finding
from dlproxy.engine.profile import Entry, Profile, Settings
from dlproxy.inspect.policy import (
    CLEAN,
    Active,
    FlowContext,
    Rules,
    decide,
    decide_error,
    normalize_host,
    with_action,
)


class U(NamedTuple):  # the extractor's Unscannable(location, reason)
    location: str
    reason: str


def entry(id="github-pat", name="GitHub Personal Access Token", issuers=(".github.com", "ghcr.io"), **kw):
    return Entry(id=id, name=name, prefixes=("ghp_",), pattern="[A-Za-z0-9]{36}", issuers=issuers, **kw)


def active(*entries, **settings) -> Active:
    profile = Profile("test", "Test", Settings(**settings), tuple(entries) or (entry(),))
    return Active(profile, detector=None, limits=None, generation=1)


def finding(entry_id="github-pat", fp="1", location="body", name="GitHub Personal Access Token"):
    return Finding(entry_id, name, "critical", 0, 40, "checksum", "ghp_…abcd", "sha256:" + fp * 64, location)


def req(host="api.example.com"):
    return FlowContext("request", host, "POST", "https", 443, "/upload", "10.0.0.1")


def test_nothing_found_is_clean():
    d = decide([], [], req(), active())
    assert d is CLEAN and d.verdict == "clean" and d.enforcement == "pass" and not d.incident_worthy


def test_default_action_blocks():
    f = finding()
    d = decide([f], [], req(), active())
    assert (d.verdict, d.action, d.enforcement) == ("blocked", "block", "block")
    assert d.acted == (f,) and d.outcomes == ((f, "block"),)
    assert d.reason == "GitHub Personal Access Token in body"


@pytest.mark.parametrize("default,verdict,enforcement", [
    ("block", "blocked", "block"), ("redact", "redacted", "redact"), ("log", "logged", "pass")])
def test_settings_default_action(default, verdict, enforcement):
    d = decide([finding()], [], req(), active(default_action=default))
    assert (d.verdict, d.enforcement) == (verdict, enforcement)
    assert d.incident_worthy


def test_entry_action_overrides_default():
    d = decide([finding()], [], req(), active(entry(action="log"), default_action="block"))
    assert (d.verdict, d.action, d.enforcement) == ("logged", "log", "pass")


def test_per_direction_action():
    e = entry(actions=(("request", "block"), ("response", "log")), action=None)
    a = active(e, default_action="redact")
    assert decide([finding()], [], req(), a).verdict == "blocked"
    resp = replace(req(), direction="response")
    assert decide([finding()], [], resp, a).verdict == "logged"
    ws = replace(req(), direction="websocket")
    assert decide([finding()], [], ws, a).verdict == "redacted"  # not in the mapping: default_action


def test_strongest_action_wins():
    a = active(entry(action="log"), entry(id="npm", name="npm token", action="block"),
               entry(id="slack", name="Slack token", action="redact"))
    d = decide([finding(), finding("npm", "2")], [], req(), a)
    assert d.verdict == "blocked" and len(d.acted) == 2
    assert dict((f.entry_id, act) for f, act in d.outcomes) == {"github-pat": "log", "npm": "block"}
    d = decide([finding(), finding("slack", "3")], [], req(), a)
    assert d.verdict == "redacted"


@pytest.mark.parametrize("host,allowed", [
    ("api.github.com", True), ("github.com", True), ("GITHUB.COM.", True), ("uploads.api.github.com", True),
    ("ghcr.io", True), ("x.ghcr.io", False), ("evilgithub.com", False), ("github.com.evil.example", False),
    ("api.example.com", False), ("", False)])
def test_issuer_binding_hosts(host, allowed):
    f = finding(location="header:authorization")
    d = decide([f], [], req(host), active())
    if allowed:
        assert (d.verdict, d.action, d.enforcement) == ("allowed", "allow", "pass")
        assert d.allowed == (f,) and d.acted == () and not d.incident_worthy
        assert d.outcomes == ((f, "allow"),)
    else:
        assert d.verdict == "blocked"


def test_issuer_binding_can_be_switched_off():
    used = finding(location="header:authorization")
    assert decide([used], [], req("api.github.com"), active(), issuer_binding=False).verdict == "blocked"
    assert decide([used], [], req("api.github.com"), active(allow_to_issuer=False)).verdict == "blocked"


@pytest.mark.parametrize("direction", ["response", "websocket"])
def test_issuer_exemption_is_for_requests_only(direction):
    ctx = replace(req("api.github.com"), direction=direction)
    assert decide([finding(location="header:authorization")], [], ctx, active()).verdict == "blocked"


def test_allowed_and_blocked_in_one_request():
    gh, other = finding(location="header:authorization"), finding("npm", "2", name="npm token")
    d = decide([gh, other], [], req("api.github.com"), active(entry(), entry(id="npm", name="npm token", issuers=())))
    assert d.verdict == "blocked" and d.acted == (other,) and d.allowed == (gh,)
    assert d.reason == "npm token in body"


def test_min_matches_counts_distinct_fingerprints():
    a = active(min_matches=2)
    same_twice = [finding(location="body"), finding(location="header:authorization")]
    d = decide(same_twice, [], req(), a)
    assert (d.verdict, d.enforcement, d.acted) == ("clean", "pass", ())
    assert [act for _, act in d.outcomes] == ["below_min_matches"] * 2 and not d.incident_worthy
    d = decide([finding(fp="1"), finding(fp="2")], [], req(), a)
    assert d.verdict == "blocked" and len(d.acted) == 2


def test_min_matches_ignores_findings_sent_to_their_issuer():
    a = active(entry(), entry(id="npm", name="npm token", issuers=()), min_matches=2)
    d = decide([finding(fp="1", location="header:authorization"), finding("npm", "2")], [], req("api.github.com"), a)
    assert d.verdict == "allowed" and len(d.allowed) == 1 and d.outcomes[1][1] == "below_min_matches"


@pytest.mark.parametrize("on_oversize,verdict", [("block", "blocked"), ("allow", "skipped"),
                                                 ("scan_prefix", "skipped")])
def test_too_large_follows_on_oversize(on_oversize, verdict):
    u = U("body", "too_large")
    d = decide([], [u], req(), active(on_oversize=on_oversize, on_error="block"))
    assert d.verdict == verdict and d.unscannable == (u,)
    assert (d.enforcement == "block") == (verdict == "blocked")


@pytest.mark.parametrize("on_error,verdict", [("block", "blocked"), ("allow", "skipped")])
def test_other_unscannable_reasons_follow_on_error(on_error, verdict):
    u = U("body", "bad_encoding")
    d = decide([], [u], req(), active(on_error=on_error, on_oversize="block"))
    assert d.verdict == verdict
    if verdict == "blocked":
        assert d.reason == "body not inspectable (bad_encoding)"


def test_unscannable_block_wins_over_logged_findings():
    d = decide([finding()], [U("body:zip", "too_large")], req(), active(entry(action="log")))
    assert d.verdict == "blocked" and d.acted and "too large to inspect" in d.reason


def test_allowed_unscannable_keeps_the_finding_verdict():
    d = decide([finding()], [U("body:zip", "too_large")], req(), active(entry(action="log"), on_oversize="allow"))
    assert d.verdict == "logged" and d.unscannable


def test_dry_run_reports_what_would_happen_but_passes():
    for default, verdict in (("block", "blocked"), ("redact", "redacted")):
        d = decide([finding()], [], req(), active(default_action=default), dry_run=True)
        assert d.verdict == verdict and d.dry_run and d.enforcement == "pass" and d.incident_worthy
    d = decide([], [U("body", "too_large")], req(), active(), dry_run=True)
    assert d.verdict == "blocked" and d.enforcement == "pass"


def test_inspection_errors_follow_on_error():
    d = decide_error("ValueError", Settings())
    assert (d.verdict, d.action, d.enforcement) == ("error", "block", "block") and d.incident_worthy
    d = decide_error("ValueError", Settings(on_error="allow"))
    assert (d.verdict, d.action, d.enforcement) == ("error", None, "pass") and d.incident_worthy
    assert decide_error("not_ready", None).enforcement == "block"  # no profile at all: block
    assert decide_error("ValueError", Settings(), dry_run=True).enforcement == "pass"


def test_with_action_escalates_a_redaction():
    d = decide([finding()], [], req(), active(default_action="redact"))
    b = with_action(d, "block", "cannot redact, blocked instead")
    assert (b.verdict, b.enforcement) == ("blocked", "block")
    assert b.outcomes[0][1] == "block" and b.reason.endswith("blocked instead")


def test_reason_counts_other_findings():
    d = decide([finding(fp="1"), finding(fp="2", location="url")], [], req(), active())
    assert d.reason == "GitHub Personal Access Token in body and 1 more"


def test_rules_are_computed_once_from_the_profile():
    rules = Rules.from_profile(Profile("p", "P", Settings(default_action="log"),
                                       (entry(), entry(id="x", action="block", issuers=("Host.Example",)))))
    assert rules.action("github-pat", "request", "block") == "log"
    assert rules.action("x", "websocket", "log") == "block"
    assert rules.action("unknown", "request", "redact") == "redact"
    assert rules.issued_by("x", "host.example") and not rules.issued_by("x", "a.host.example")


def test_normalize_host():
    assert normalize_host(" API.GitHub.com. ") == "api.github.com"
    assert normalize_host("[::1]") == "::1"

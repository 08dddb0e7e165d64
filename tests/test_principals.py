"""Profile `principals` and `policies`: parsing with FILE:LINE problems, never-matching policies, and how a
policy decides a finding (before issuer binding and the entry's own action)."""

from __future__ import annotations

import json
import textwrap

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.findings import Finding
from dlproxy.engine.principals import load_jwks
from dlproxy.engine.profile import ProfileError, load_profiles
from dlproxy.extract import Limits
from dlproxy.inspect.policy import Active, FlowContext, decide
from dlproxy.ops.incidents import Incident

BASE = """\
profile: t
entries:
  - id: github-pat
    name: GitHub Personal Access Token
    prefixes: ["ghp_"]
    pattern: "[A-Za-z0-9]{36}"
    issuers: [".github.com"]
  - id: npm-token
    name: npm Access Token
    prefixes: ["npm_"]
    pattern: "[A-Za-z0-9]{36}"
    action: log
"""


def load(tmp_path, extra: str):
    path = tmp_path / "p.yaml"
    path.write_text(BASE + textwrap.dedent(extra))
    return load_profiles([path])


def problems(tmp_path, extra: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load(tmp_path, extra)
    return info.value.problems


def test_no_sections_is_todays_profile(tmp_path):
    profile = load(tmp_path, "")
    assert profile.principals.sources == () and not profile.principals.require
    assert profile.policies == ()


def test_sections_parse(tmp_path):
    (tmp_path / "htpasswd").write_text("u:$2b$04$abcdefghijklmnopqrstuu5Hf3C3l9bdFkm3YbA1cE/4p8nHYb1Im\n")
    profile = load(tmp_path, """
        principals:
          require: true
          sources:
            - {kind: proxy-auth, htpasswd: htpasswd}
            - kind: source
              networks: [{name: office, cidrs: ["10.1.0.0/16", "fd00::/8"]}]
        policies:
          - name: ci
            principals: ["spiffe://cluster.local/ns/ci/*"]
            entries: [npm-token]
            destinations: [registry.npmjs.org, {host: "*.internal", in: ["*"]}]
            action: allow
          - name: agents
            principals: ["agent-*"]
            action: {request: block, response: log}
    """)
    assert profile.principals.require
    assert [s.kind for s in profile.principals.sources] == ["proxy-auth", "source"]
    assert profile.principals.sources[0].htpasswd == str(tmp_path / "htpasswd")
    ci, agents = profile.policies
    assert ci.destinations[0].positions == ("header:authorization", "header:authorization:*")
    assert ci.destinations[1].positions == ()
    assert agents.entries == ("*",) and agents.action_for("websocket") is None


@pytest.mark.parametrize(("extra", "line", "field", "words"), [
    ("principals:\n  sources:\n    - kind: kerberos\n", 15, "principals.sources[0].kind", "must be one of"),
    ("principals:\n  require: yes-please\n", 14, "principals.require", "true or false"),
    ("principals:\n  require: true\n", 14, "principals.sources", "required when require"),
    ("principals:\n  sources:\n    - {kind: client-cert, ca: missing.pem}\n", 15, "principals.sources[0].ca",
     "no such file"),
    ("principals:\n  sources:\n    - kind: source\n      networks: [{name: x, cidrs: [10.0.0.300/8]}]\n", 16,
     "principals.sources[0].networks[0].cidrs", "not an address range"),
    ("principals:\n  sources:\n    - {kind: jwt-header, header: X-Id, jwks_url: 'http://idp', issuer: i, "
     "audience: a}\n", 15, "principals.sources[0].jwks_url", "https://"),
    ("policies:\n  - name: p\n    entries: [no-such-entry]\n    action: block\n", 15, "policies[0].entries",
     "no entry with id"),
    ("policies:\n  - name: p\n    action: permit\n", 15, "policies[0].action", "must be one of"),
    ("policies:\n  - name: p\n    action: {upload: block}\n", 15, "policies[0].action.upload", "unknown direction"),
    ("policies:\n  - name: p\n    action: block\n    roles: [x]\n", 16, "policies[0].roles", "unknown key"),
    ("policies:\n  - name: p\n    destinations: ['https://x/']\n    action: block\n", 15,
     "policies[0].destinations[0]", "host name or glob"),
    ("policies:\n  - {name: p, action: block, principals: [a]}\n  - {name: p, action: log, principals: [b]}\n", 15,
     "policies[1].name", "duplicate"),
])
def test_problems_name_file_line_and_field(tmp_path, extra, line, field, words):
    got = problems(tmp_path, extra)
    assert any(p.startswith(f"{tmp_path / 'p.yaml'}:{line}: {field}") and words in p for p in got), got


def test_jwks_file_must_hold_public_asymmetric_keys(tmp_path):
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    got = problems(tmp_path, """
        principals:
          sources:
            - {kind: jwt-header, header: X-Id, jwks_file: jwks.json, issuer: i, audience: a}
    """)
    assert any("jwks_file" in p and "not a usable JWK set" in p for p in got), got
    with pytest.raises(ValueError):
        load_jwks(b"{not json")


@pytest.mark.parametrize(("policies", "shadowed"), [
    # an earlier policy for every principal and entry wins over anything later
    ("- {name: all, action: block}\n- {name: ci, principals: [ci], action: allow}", "ci"),
    ("- {name: a, principals: ['agent-*'], action: block}\n"
     "- {name: b, principals: ['agent-x*'], entries: [npm-token], action: log}", "b"),
    ("- {name: a, principals: ['*'], destinations: ['*.example.com'], action: block}\n"
     "- {name: b, principals: [ci], destinations: [api.example.com], action: block}", "b"),
])
def test_policies_that_can_never_match_are_reported(tmp_path, policies, shadowed):
    got = problems(tmp_path, "policies:\n" + textwrap.indent(policies, "  ") + "\n")
    assert any(f"policies.{shadowed}: can never match" in p for p in got), got


@pytest.mark.parametrize("policies", [
    # narrower first, different directions, a glob with ? (not decided), destinations vs none
    "- {name: a, principals: [ci], action: allow}\n- {name: b, principals: ['*'], action: block}",
    "- {name: a, action: {request: block}}\n- {name: b, action: {response: log}}",
    "- {name: a, principals: ['agent-?'], action: block}\n- {name: b, principals: [agent-1], action: log}",
    "- {name: a, destinations: [x.example], action: block}\n- {name: b, action: log}",
])
def test_policies_that_can_match_are_not_reported(tmp_path, policies):
    load(tmp_path, "policies:\n" + textwrap.indent(policies, "  ") + "\n")


# --- decide() with policies -------------------------------------------------------------------------------


def active(tmp_path, policies: str) -> Active:
    profile = load(tmp_path, "policies:\n" + textwrap.indent(textwrap.dedent(policies), "  "))
    return Active(profile, Detector(profile), Limits.from_settings(profile.settings))


def finding(entry="github-pat", location="header:authorization", fp="sha256:1") -> Finding:
    return Finding(entry, "GitHub Personal Access Token", "high", 0, 40, "structure", "ghp_…abcd", fp, location)


def ctx(principal="", host="api.example.com", direction="request") -> FlowContext:
    return FlowContext(direction, host, "POST", "https", 443, "/x", "10.0.0.1", principal)


POLICIES = """\
- name: ci-to-registry
  principals: ["spiffe://cluster.local/ns/ci/*"]
  entries: [github-pat]
  destinations: ["*.example.com"]
  action: allow
- name: agents
  principals: ["agent-*"]
  action: {request: block, response: log}
"""


def test_allow_policy_for_its_principal_and_use_position(tmp_path):
    a = active(tmp_path, POLICIES)
    d = decide([finding()], [], ctx("spiffe://cluster.local/ns/ci/sa/runner"), a)
    assert (d.verdict, d.action, d.policy) == ("allowed", "allow", "ci-to-registry")
    assert d.policies == (("ci-to-registry", "allow"),)
    # the same token in the body is not in use: the entry's own action decides
    d = decide([finding(location="body:json:$.text")], [], ctx("spiffe://cluster.local/ns/ci/sa/runner"), a)
    assert (d.verdict, d.policy) == ("blocked", "")


def test_other_principal_same_token_and_destination(tmp_path):
    a = active(tmp_path, POLICIES)
    d = decide([finding()], [], ctx("agent-7"), a)
    assert (d.verdict, d.policy) == ("blocked", "agents")
    d = decide([finding()], [], ctx(""), a)  # unidentified: no principal glob matches, entry action
    assert (d.verdict, d.policy) == ("blocked", "")


def test_policy_comes_before_issuer_binding_and_entry_action(tmp_path):
    a = active(tmp_path, POLICIES)
    assert decide([finding()], [], ctx("", host="api.github.com"), a).verdict == "allowed"  # issuer
    d = decide([finding()], [], ctx("agent-1", host="api.github.com"), a)
    assert (d.verdict, d.policy) == ("blocked", "agents")
    d = decide([finding(entry="npm-token")], [], ctx("agent-1", direction="response"), a)
    assert (d.verdict, d.policy) == ("logged", "agents")
    d = decide([finding(entry="npm-token")], [], ctx("agent-1", direction="websocket"), a)  # not listed
    assert (d.verdict, d.policy) == ("logged", "")


def test_incident_carries_principal_and_policy(tmp_path):
    a = active(tmp_path, POLICIES)
    c = ctx("agent-7")
    d = decide([finding()], [], c, a)
    data = Incident.from_decision(d, c).to_dict()
    assert (data["principal"], data["policy"]) == ("agent-7", "agents")
    assert "from agent-7" in Incident.from_decision(d, c).describe()


def test_without_principal_or_policy_the_incident_is_as_before(tmp_path):
    a = active(tmp_path, POLICIES)
    c = ctx("")
    data = Incident.from_decision(decide([finding()], [], c, a), c).to_dict()
    assert "principal" not in data and "policy" not in data


def test_jwks_url_downloads_are_cached_and_rate_limited(monkeypatch):
    """When a verification waits for a JWKS download: first use, after jwks_cache_seconds, and for an unknown
    key id or after a failed download at most every JWKS_MIN_REFRESH seconds (clock stubbed)."""
    pyjwt = pytest.importorskip("jwt", reason="PyJWT is a dependency (pyproject.toml): run make install")
    from cryptography.hazmat.primitives.asymmetric import ec

    from dlproxy.engine.principals import Source
    from dlproxy.proxy import principals as pp

    clock = [1000.0]
    monkeypatch.setattr(pp.time, "monotonic", lambda: clock[0])
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key()))
    keys = pp.JwksKeys(Source("jwt-header", jwks_url="https://idp.test/jwks", jwks_cache_seconds=300))
    assert keys.stale("k1")  # never downloaded
    keys.fetched = clock[0]  # a failed download: no keys yet
    assert not keys.stale("k1")
    clock[0] += pp.JWKS_MIN_REFRESH + 1
    assert keys.stale("k1")
    keys.keys, keys.fetched = load_jwks(json.dumps({"keys": [{**jwk, "kid": "k1"}]}).encode()), clock[0]
    assert keys.find("k1") is not None and not keys.stale("k1") and not keys.stale("k2")
    clock[0] += pp.JWKS_MIN_REFRESH + 1
    assert not keys.stale("k1") and keys.stale("k2")  # a rotated key id
    clock[0] += 300
    assert keys.stale("k1")  # the cache expired


def test_an_escalated_decision_keeps_its_policy_and_principal(tmp_path):
    from dlproxy.engine.vocab import Action
    from dlproxy.inspect.policy import with_action

    a = active(tmp_path, "- {name: agents-redact, principals: ['agent-*'], action: redact}\n")
    d = decide([finding()], [], ctx("agent-2"), a)
    assert (d.action, d.policy) == ("redact", "agents-redact")
    e = with_action(d, Action.BLOCK, "cannot rewrite")
    assert (e.action, e.policy, e.principal, e.policies) == ("block", "agents-redact", "agent-2", d.policies)


def test_proxy_auth_tunnels_survive_a_profile_reload(tmp_path):
    """A CONNECT tunnel authenticated before a reload stays authenticated: its requests carry no credentials."""
    from types import SimpleNamespace

    from dlproxy.proxy.principals import PrincipalSources

    (tmp_path / "htpasswd").write_text("u:$2b$04$abcdefghijklmnopqrstuu5Hf3C3l9bdFkm3YbA1cE/4p8nHYb1Im\n")
    profile = load(tmp_path, "principals:\n  sources: [{kind: proxy-auth, htpasswd: htpasswd}]\n")
    state = SimpleNamespace(current=SimpleNamespace(generation=1, profile=profile))
    sources = PrincipalSources(state)
    before = sources.runtime()
    client = type("Client", (), {})()
    before.auth.authenticated[client] = ("u", "pw")
    state.current = SimpleNamespace(generation=2, profile=profile)
    after = sources.runtime()
    assert after is not before and after.auth is not before.auth
    assert after.auth.authenticated[client] == ("u", "pw")

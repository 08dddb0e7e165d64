"""Legitimate use is the use position, not the host: a credential sent to its issuer is allowed only where that
issuer expects it (the Authorization header, or a documented auth header / query parameter / form field); the
same token in a body, the URL path, another header or a cookie of a request to the issuer is a leak."""

from __future__ import annotations

import base64
import json

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import Issuer, ProfileError, builtin_profile_path, load_profiles
from dlproxy.extract import Limits
from dlproxy.inspect.policy import Active, FlowContext, Rules, decide, use_locations
from dlproxy.inspect.scanning import scan_message
from tokens import make_ghp

PROFILE = load_profiles([builtin_profile_path()])
GHP = make_ghp("positions")


@pytest.fixture(scope="module")
def active() -> Active:
    return Active(PROFILE, Detector(PROFILE), Limits.from_settings(PROFILE.settings), 1)


def verdict(active, host, url_path="/", headers=(), body=b"", ctype="application/json", trailers=()):
    url = f"https://{host}{url_path}"
    hdrs = [("Host", host), ("Content-Type", ctype), *headers]
    scan = scan_message(active, url, hdrs, body, trailers=trailers)
    ctx = FlowContext("request", host, "POST", "https", 443, "/")
    d = decide(scan.findings, scan.unscannable, ctx, active)
    return d.verdict, [f.location for f in d.findings]


# --- the schema -------------------------------------------------------------------------------------------

def test_plain_string_means_the_authorization_header_only(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("profile: p\nentries:\n  - id: github-classic-pat\n    issuers: ['api.github.com',"
                    " {host: .example.com, in: ['header:X-Api-Key', 'query:key']}]\n")
    entry = next(e for e in load_profiles([builtin_profile_path(), path]).entries if e.id == "github-classic-pat")
    assert entry.issuers == (Issuer("api.github.com", ("header:authorization",)),
                             Issuer(".example.com", ("header:x-api-key", "query:key")))


@pytest.mark.parametrize("item, message", [
    ("{host: a.example, in: ['body']}", "unknown position 'body'"),
    ("{host: a.example, in: ['header']}", "header: needs a name"),
    ("{host: a.example, in: ['path:x']}", "path takes no name"),
    ("{host: .tenant.example, in: ['path']}", "a suffix issuer may name only header: and query: positions"),
    ("{host: .tenant.example, in: ['form:token']}", "a suffix issuer may name only header: and query: positions"),
    ("{host: a.example, where: ['path']}", "unknown key 'where'"),
    ("{in: ['path']}", "host must be a host name"),
    ("{host: a.example, in: []}", "must be a non-empty list of positions"),
    ("'a/b'", "host must be a host name"),
])
def test_bad_issuers_name_file_line_and_field(tmp_path, item, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"profile: bad\nentries:\n  - id: github-classic-pat\n    issuers: [{item}]\n")
    with pytest.raises(ProfileError) as err:
        load_profiles([builtin_profile_path(), path])
    assert "bad.yaml:4: entries[0].issuers[0]" in str(err.value) and message in str(err.value)


def test_positions_map_to_extractor_locations():
    assert use_locations(["header:authorization"]) == {"header:authorization", "header:authorization:basic"}
    assert use_locations(["query:key", "form:token", "json:client_secret", "cookie:sid", "path"]) == {
        "url:query:key", "body:form:token", "body:multipart:token", "body:json:$.client_secret",
        "header:cookie:sid", "url:path"}


def test_rules_match_host_and_position():
    rules = Rules({}, {"x": [Issuer("api.example.com", ("header:authorization",)),
                              Issuer(".tenant.example", ("header:x-key",)), "plain.example"]})
    assert rules.in_use("x", "API.example.com.", "header:authorization")
    assert not rules.in_use("x", "api.example.com", "body:json:$.content")
    assert rules.in_use("x", "a.tenant.example", "header:x-key")
    assert not rules.in_use("x", "a.tenant.example", "header:authorization")
    assert rules.in_use("x", "plain.example", "header:authorization:basic")
    assert not rules.in_use("x", "plain.example", "url:path")
    assert not rules.in_use("x", "evil.example", "header:authorization")


def test_every_builtin_issuer_names_valid_positions():
    for entry in PROFILE.entries:
        for issuer in entry.issuers:
            assert isinstance(issuer, Issuer) and issuer.positions, entry.id
            assert use_locations(issuer.positions), (entry.id, issuer)


def test_signing_keys_that_are_never_sent_have_no_issuer():
    never_sent = ("aws-secret-access-key", "azure-storage-account-key", "azure-cosmosdb-key", "azure-batch-key",
                  "azure-service-bus-key", "shopify-shared-secret", "stripe-webhook-secret")
    for entry in PROFILE.entries:
        if entry.id in never_sent:
            assert entry.issuers == (), entry.id


# --- end to end through extraction + policy ---------------------------------------------------------------

def test_github_token_in_use_is_allowed(active):
    assert verdict(active, "api.github.com", headers=[("Authorization", f"Bearer {GHP}")])[0] == "allowed"
    assert verdict(active, "api.github.com", headers=[("Authorization", f"token {GHP}")])[0] == "allowed"
    basic = base64.b64encode(f"x-access-token:{GHP}".encode()).decode()
    assert verdict(active, "github.com", headers=[("Authorization", f"Basic {basic}")])[0] == "allowed"


@pytest.mark.parametrize("where", ["gist", "comment", "path", "cookie", "header", "query"])
def test_github_token_elsewhere_in_a_request_to_github_is_a_leak(active, where):
    kw = {}
    if where == "gist":
        kw = {"url_path": "/gists", "body": json.dumps({"files": {"a.txt": {"content": GHP}}}).encode()}
    elif where == "comment":
        kw = {"url_path": "/repos/o/r/issues/1/comments", "body": json.dumps({"body": f"my token {GHP}"}).encode()}
    elif where == "path":
        kw = {"url_path": f"/repos/o/{GHP}"}
    elif where == "cookie":
        kw = {"headers": [("Cookie", f"session={GHP}")]}
    elif where == "header":
        kw = {"headers": [("X-Note", GHP)]}
    elif where == "query":
        kw = {"url_path": f"/search?q={GHP}"}
    assert verdict(active, "api.github.com", **kw)[0] == "blocked"
    # the control: the same request with the token only in the Authorization header passes
    assert verdict(active, "api.github.com", headers=[("Authorization", f"Bearer {GHP}")])[0] == "allowed"


@pytest.mark.parametrize("trailer", [
    ("Authorization", f"Bearer {GHP}"),
    ("Authorization", "Basic " + base64.b64encode(f"x-access-token:{GHP}".encode()).decode()),
    ("grpc-message", "".join(f"%{b:02X}" for b in GHP.encode())),
])
def test_a_trailer_is_never_a_use_position(active, trailer):
    """Trailers come after the body; no issuer reads a credential there: a token in one is a leak."""
    result, locations = verdict(active, "api.github.com", trailers=[trailer])
    assert result == "blocked" and f"trailer:{trailer[0].lower()}" in {loc.removesuffix(":basic") for loc in locations}
    assert all(loc.startswith("trailer:") for loc in locations)


def test_use_and_leak_in_one_request_blocks(active):
    body = json.dumps({"body": GHP}).encode()
    result, locations = verdict(active, "api.github.com", headers=[("Authorization", f"Bearer {GHP}")], body=body)
    assert result == "blocked" and locations == ["header:authorization", "body:json:$.body"]


def test_documented_auth_header_and_query_parameter(active):
    key = next(e for e in PROFILE.entries if e.id == "google-api-key").examples[0]
    assert verdict(active, "maps.googleapis.com", url_path=f"/maps/api/geocode/json?key={key}")[0] == "allowed"
    assert verdict(active, "x.googleapis.com", headers=[("X-Goog-Api-Key", key)])[0] == "allowed"
    assert verdict(active, "x.googleapis.com", body=json.dumps({"text": key}).encode())[0] == "blocked"
    assert verdict(active, "x.googleapis.com", url_path=f"/v1/{key}")[0] == "blocked"


# --- the documentation table ------------------------------------------------------------------------------

def issuer_table() -> str:
    """The table docs/issuers.md carries: every built-in entry, its issuer hosts and their use positions."""
    rows = ["| entry | issuer host | use positions |", "|---|---|---|"]
    for entry in PROFILE.entries:
        if not entry.issuers:
            rows.append(f"| `{entry.id}` | — | never sent: no use position (anywhere it is a leak) |")
        for issuer in entry.issuers:
            rows.append(f"| `{entry.id}` | `{issuer.host}` | {', '.join(f'`{p}`' for p in issuer.positions)} |")
    return "\n".join(rows) + "\n"


def test_docs_table_matches_the_builtin_profile():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "issuers.md").read_text(encoding="utf-8")
    assert issuer_table() in doc, "docs/issuers.md is out of date: paste tests.test_issuer_positions.issuer_table()"

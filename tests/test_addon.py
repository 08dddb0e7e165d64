"""The buffered inspectors and ProfileState, through mitmproxy's own test helpers (taddons, tflow).

Real profile, real detector, real extractor, real Metrics and IncidentLog; only the network is absent.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
from pathlib import Path

import pytest
from mitmproxy import exceptions, http
from mitmproxy.test import taddons, tflow, tutils

from dlproxy.inspect import scanning
from dlproxy.ops.incidents import IncidentLog
from dlproxy.ops.metrics import Metrics
from dlproxy.proxy import addon as addon_mod
from dlproxy.proxy.addon import (
    GENERATED,
    GENERATION,
    INCIDENT,
    VERDICT,
    ProfileState,
    RequestInspector,
    ResponseInspector,
)
from e2e.conftest import E2E_PROFILE, GHO, GHP, NPM, make_token  # noqa: E402  (tests/ is on sys.path)


class Env:
    """One set of addons in a taddons context, with helpers to run the (async) hooks."""

    def __init__(self, tctx, state, req, resp, metrics, incidents, out):
        self.tctx, self.state, self.req, self.resp = tctx, state, req, resp
        self.metrics, self.incidents, self.out = metrics, incidents, out

    def run(self, pending):
        """Hooks return None when done, or an awaitable (big bodies): run it like mitmproxy does."""
        if pending is not None:
            self.tctx.master.event_loop.run_until_complete(pending)

    def request(self, flow):
        self.run(self.req.request(flow))
        return flow

    def response(self, flow):
        self.run(self.resp.response(flow))
        return flow

    def incident_lines(self) -> list[dict]:
        return [json.loads(x) for x in self.out.getvalue().splitlines() if x.strip()]

    def sample(self, name: str, **labels) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def profile_file(tmp_path) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(E2E_PROFILE)
    return path


def make_env(profile_paths, **options):
    metrics = Metrics()
    out = io.StringIO()
    state = ProfileState(metrics)
    incidents = IncidentLog(metrics, stream=out)
    req = RequestInspector(state, metrics, incidents)
    resp = ResponseInspector(state, metrics, incidents)
    tctx = taddons.context(state, incidents, req, resp)
    tctx.configure(state, dlp_profile=[str(p) for p in profile_paths], dlp_builtin=not profile_paths, **options)
    return Env(tctx, state, req, resp, metrics, incidents, out)


@pytest.fixture
def env(profile_file):
    e = make_env([profile_file])
    with e.tctx:
        yield e


def post(body: bytes | str, host="api.example.com", path="/v1/chat/completions", headers=None, port=443):
    if isinstance(body, str):
        body = body.encode()
    hdrs = http.Headers(host=host, content_type="application/json", content_length=str(len(body)))
    for k, v in (headers or {}).items():
        hdrs[k] = v
    req = tutils.treq(method=b"POST", host=host, port=port, scheme=b"https", path=path.encode(), headers=hdrs,
                      content=body)
    return tflow.tflow(req=req)


def chat(text: str) -> str:
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def error_of(flow, status: int = 403) -> dict:
    assert flow.response is not None and flow.response.status_code == status
    assert flow.response.headers["content-type"] == "application/json"
    return json.loads(flow.response.content)["error"]


def assert_secret_absent(env: Env, flow, secret: str, caplog=None) -> None:
    for needle in (secret, secret[-8:]):
        assert needle not in env.out.getvalue()
        if flow.response is not None and flow.metadata.get(GENERATED):
            assert needle.encode() not in flow.response.content
            assert needle not in str(flow.response.headers)
        if caplog is not None:
            assert needle not in caplog.text


# --- requests -----------------------------------------------------------------------------------------


def test_clean_request_passes_untouched(env):
    body = chat("What is the capital of France?")
    f = env.request(post(body))
    assert f.response is None and f.request.content == body.encode()
    assert f.metadata[VERDICT] == "clean" and GENERATION in f.metadata
    assert env.sample("dlproxy_flows_total", direction="request", verdict="clean") == 1
    assert env.incident_lines() == []


def test_block_response_contract(env, caplog):
    caplog.set_level(logging.INFO)
    f = env.request(post(chat(f"please use {GHP} for the deploy")))
    err = error_of(f)
    iid = f.response.headers["x-dlp-incident"]
    assert iid and err["incident_id"] == iid and f.metadata[INCIDENT] == iid
    assert err["type"] == "dlp_violation" and err["code"] == "credential_detected"
    assert "GitHub Personal Access Token" in err["message"] and "body:json:$.messages[0].content" in err["message"]
    assert err["findings"] == [{"entry": "github-pat", "name": "GitHub Personal Access Token",
                                "location": "body:json:$.messages[0].content", "masked": f"ghp_…{GHP[-4:]}",
                                "fingerprint": err["findings"][0]["fingerprint"]}]
    assert err["findings"][0]["fingerprint"].startswith("sha256:")
    [incident] = env.incident_lines()
    assert incident["incident_id"] == iid and incident["action"] == "block" and incident["host"] == "api.example.com"
    assert f.metadata[GENERATED] and f.metadata[VERDICT] == "blocked"
    assert env.sample("dlproxy_flows_total", direction="request", verdict="blocked") == 1
    assert env.sample("dlproxy_detections_total", entry="github-pat", direction="request", action="block") == 1
    assert "blocked POST api.example.com/v1/chat/completions: GitHub Personal Access Token" in caplog.text
    assert_secret_absent(env, f, GHP, caplog)


def test_secret_in_header_and_url_are_found(env):
    f = env.request(post(chat("hi"), headers={"Authorization": f"Bearer {GHP}"}))
    assert error_of(f)["findings"][0]["location"].startswith("header:")
    f = env.request(post(chat("hi"), path=f"/repos/x?access_token={GHP}&page=2"))
    assert error_of(f)["findings"][0]["location"].startswith("url")
    [_, incident] = env.incident_lines()
    assert GHP not in incident["path"] and "access_token=…" in incident["path"]


def test_secret_in_url_path_is_masked_in_incident_and_log(env, caplog):
    caplog.set_level(logging.INFO)
    f = env.request(post(chat("hi"), path=f"/exfil/{GHP}/x"))
    assert error_of(f)
    [incident] = env.incident_lines()
    assert GHP[-8:] not in incident["path"]
    assert_secret_absent(env, f, GHP, caplog)


def test_issuer_binding_allows_the_issuer_only(env):
    auth = {"Authorization": f"Bearer {GHP}"}
    f = env.request(post(chat("hi"), host="api.github.com", headers=auth))
    assert f.response is None and f.metadata[VERDICT] == "allowed"
    assert env.sample("dlproxy_detections_total", entry="github-pat", direction="request", action="allow") == 1
    assert env.incident_lines() == []
    f = env.request(post(chat("hi"), host="github.com.evil.example", headers=auth))
    assert error_of(f)
    f = env.request(post(chat(GHP), host="api.github.com"))  # in the body: a leak even to the issuer
    assert error_of(f)


def test_issuer_binding_option_off_blocks_the_issuer_too(profile_file):
    e = make_env([profile_file], dlp_issuer_binding=False)
    with e.tctx:
        assert error_of(e.request(post(chat("hi"), host="api.github.com", headers={"Authorization": f"Bearer {GHP}"})))


def test_log_action_forwards_and_records(env):
    body = chat(f"npm token {NPM}")
    f = env.request(post(body))
    assert f.response is None and f.request.content == body.encode() and f.metadata[VERDICT] == "logged"
    [incident] = env.incident_lines()
    assert incident["action"] == "log" and incident["findings"][0]["entry"] == "npm-token"
    assert_secret_absent(env, f, NPM)


def test_redact_json_body(env):
    f = env.request(post(chat(f"token {GHO} and more")))
    assert f.response is None and f.metadata[VERDICT] == "redacted"
    doc = json.loads(f.request.content)
    assert doc["messages"][0]["content"] == "token [REDACTED:github-oauth] and more"
    assert f.request.headers["content-length"] == str(len(f.request.raw_content))
    assert GHO.encode() not in f.request.raw_content
    [incident] = env.incident_lines()
    assert incident["action"] == "redact"
    assert_secret_absent(env, f, GHO)


def test_redact_form_header_and_query(env):
    body = f"user=me&token={GHO}&x=1".encode()
    f = post(body, path=f"/login?t={GHO}", headers={"Content-Type": "application/x-www-form-urlencoded",
                                                   "X-Token": GHO})
    env.request(f)
    assert f.response is None and f.metadata[VERDICT] == "redacted"
    assert f.request.urlencoded_form["token"] == "[REDACTED:github-oauth]"
    assert f.request.query["t"] == "[REDACTED:github-oauth]"
    assert f.request.headers["x-token"] == "[REDACTED:github-oauth]"
    assert f.request.headers["content-length"] == str(len(f.request.raw_content))


@pytest.mark.parametrize("path", ["/日本/ページ", "/caf\u00e9"])
def test_redact_in_a_query_under_a_non_latin1_path(env, path):
    f = post(chat("hello"), path=f"{path}?key={GHO}&x=1")
    env.request(f)
    assert f.response is None and f.metadata[VERDICT] == "redacted"
    assert f.request.path == f"{path}?key=%5BREDACTED%3Agithub-oauth%5D&x=1"
    assert_secret_absent(env, f, GHO)


def test_redact_inside_gzip_is_blocked_instead(env):
    body = gzip.compress(chat(f"token {GHO}").encode())
    f = post(body, headers={"Content-Encoding": "gzip"})
    f.request.raw_content = body
    f.request.headers["content-length"] = str(len(body))
    env.request(f)
    err = error_of(f)
    assert err["code"] == "credential_detected"
    [incident] = env.incident_lines()
    assert incident["action"] == "block" and "blocked instead of redacted" in incident["reason"]


def test_redact_of_escaped_json_is_blocked_instead(env):
    escaped = "".join(f"\\u{ord(c):04x}" for c in GHO)
    f = env.request(post('{"messages": [{"role": "user", "content": "' + escaped + '"}]}'))
    assert error_of(f) and f.metadata[VERDICT] == "blocked"


def test_dry_run_forwards_and_reports(profile_file):
    e = make_env([profile_file], dlp_dry_run=True)
    with e.tctx:
        body = chat(GHP)
        f = e.request(post(body))
        assert f.response is None and f.request.content == body.encode()
        [incident] = e.incident_lines()
        assert incident["dry_run"] is True and incident["action"] == "block"
        # what was done (passed, under dry-run), and separately what would have been: an alert on blocks is quiet
        assert e.sample("dlproxy_flows_total", direction="request", verdict="blocked") == 0
        assert e.sample("dlproxy_flows_total", direction="request", verdict="dry_run") == 1
        assert e.sample("dlproxy_dry_run_total", direction="request", verdict="blocked") == 1
        assert e.sample("dlproxy_dry_run_enabled") == 1
        # off again: blocks count as blocks
        e.tctx.configure(e.state, dlp_dry_run=False)
        assert e.request(post(body)).response.status_code == 403
        assert e.sample("dlproxy_flows_total", direction="request", verdict="blocked") == 1
        assert e.sample("dlproxy_dry_run_total", direction="request", verdict="blocked") == 1
        assert e.sample("dlproxy_dry_run_enabled") == 0


def test_min_matches(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text(E2E_PROFILE.replace("default_action: block", "default_action: block\n  min_matches: 2"))
    e = make_env([p])
    with e.tctx:
        assert e.request(post(chat(f"{GHP} and again {GHP}"))).response is None
        two = make_token("ghp_", "second")
        assert error_of(e.request(post(chat(f"{GHP} and {two}"))))


def test_oversize_follows_on_oversize(tmp_path):
    for on_oversize, blocked in (("block", True), ("allow", False)):
        p = tmp_path / f"{on_oversize}.yaml"
        p.write_text(E2E_PROFILE.replace("default_action: block",
                                         f"default_action: block\n  max_inspect_bytes: 1000\n  on_oversize: {on_oversize}"))
        e = make_env([p])
        with e.tctx:
            f = e.request(post(b"x" * 5000, headers={"Content-Type": "text/plain"}))
            if blocked:
                assert error_of(f)["code"] == "content_not_inspectable"
                assert "too large" in error_of(f)["message"]
            else:
                assert f.response is None and f.metadata[VERDICT] == "skipped"
            assert e.sample("dlproxy_unscannable_total", reason="too_large") >= 1


@pytest.fixture
def scan_threads(monkeypatch) -> list[str]:
    """The name of the thread each message was scanned in, in order ("dlp-scan…" = off the event loop)."""
    import threading

    seen: list[str] = []
    real = scanning.scan_message

    def spy(*args, **kw):
        seen.append(threading.current_thread().name)
        return real(*args, **kw)

    monkeypatch.setattr(addon_mod, "scan_message", spy)
    monkeypatch.setattr(scanning, "scan_message", spy)
    return seen


def test_large_body_is_scanned_off_the_loop(env, scan_threads):
    seen = scan_threads
    filler = "lorem ipsum " * (addon_mod.OFFLOAD_BYTES // 10)
    f = env.request(post(chat(filler + GHP)))
    assert error_of(f) and seen[0].startswith("dlp-scan")
    f = env.request(post(chat("small")))
    assert f.response is None and not seen[1].startswith("dlp-scan")


def test_large_body_in_a_worker_process(profile_file):
    e = make_env([profile_file], dlp_scan_workers=1)
    with e.tctx:
        try:
            filler = "lorem ipsum " * (addon_mod.OFFLOAD_BYTES // 10)
            err = error_of(e.request(post(chat(filler + GHP))))
            assert err["findings"][0]["location"] == "body:json:$.messages[0].content"
            body = chat(filler)
            f = e.request(post(body))
            assert f.response is None and f.request.content == body.encode()
        finally:
            e.state.done()


def test_scan_workers_option_is_validated(env):
    with pytest.raises(exceptions.OptionsError):
        env.tctx.configure(env.state, dlp_scan_workers=-1)
    with pytest.raises(exceptions.OptionsError):
        env.tctx.configure(env.state, dlp_offload_bytes=-1)


def test_offload_threshold_is_an_option(env, scan_threads):
    """dlp_offload_bytes moves the line between inline and off-loop scanning; findings are the same."""
    seen = scan_threads
    filler = "lorem ipsum " * (addon_mod.OFFLOAD_BYTES // 10)
    env.tctx.configure(env.state, dlp_offload_bytes=10 * addon_mod.OFFLOAD_BYTES)
    assert error_of(env.request(post(chat(filler + GHP)))) and not seen[-1].startswith("dlp-scan")
    env.tctx.configure(env.state, dlp_offload_bytes=0)
    assert error_of(env.request(post(chat("tiny " + GHP)))) and seen[-1].startswith("dlp-scan")


def test_inspection_crash_fails_closed_without_leaking(env, monkeypatch, caplog):
    def boom(*args, **kw):
        raise RuntimeError(f"parser exploded on {GHP}")

    monkeypatch.setattr(addon_mod, "scan_message", boom)
    f = env.request(post(chat(GHP)))
    err = error_of(f)
    assert err["code"] == "inspection_failed" and f.metadata[VERDICT] == "error"
    assert env.sample("dlproxy_inspection_errors_total", reason="RuntimeError") == 1
    assert env.sample("dlproxy_flows_total", direction="request", verdict="error") == 1
    assert_secret_absent(env, f, GHP, caplog)
    assert "RuntimeError" in caplog.text


def test_inspection_crash_with_a_secret_in_the_path_leaks_nothing(env, monkeypatch, caplog):
    monkeypatch.setattr(addon_mod, "scan_message", lambda *a, **kw: 1 / 0)
    f = env.request(post(chat("x"), path=f"/exfil/{GHP}?t={GHP}"))
    assert error_of(f)["code"] == "inspection_failed"
    assert_secret_absent(env, f, GHP, caplog)


def test_inspection_crash_with_on_error_allow_forwards(tmp_path, monkeypatch):
    p = tmp_path / "p.yaml"
    p.write_text(E2E_PROFILE.replace("default_action: block", "default_action: block\n  on_error: allow"))
    e = make_env([p])
    with e.tctx:
        monkeypatch.setattr(addon_mod, "scan_message", lambda *a, **kw: 1 / 0)
        f = e.request(post(chat("hello")))
        assert f.response is None and f.metadata[VERDICT] == "error"


def test_no_profile_loaded_blocks(env):
    env.state.current = None
    assert error_of(env.request(post(chat("hello"))))["code"] == "inspection_failed"


def test_flows_answered_elsewhere_or_streamed_are_skipped(env):
    f = post(chat(GHP))
    f.response = http.Response.make(200, b"from map_local")
    env.request(f)
    assert f.response.content == b"from map_local"
    f = post(chat(GHP))
    f.request.stream = True
    env.request(f)
    assert f.response is None


# --- responses ----------------------------------------------------------------------------------------


def with_response(body: bytes | str, host="api.example.com", headers=None):
    f = post(chat("hi"), host=host)
    if isinstance(body, str):
        body = body.encode()
    f.response = tutils.tresp(content=body, headers=http.Headers(content_type="text/plain", **(headers or {})))
    return f


def test_clean_response_passes(env):
    f = env.response(with_response("all good"))
    assert f.response.status_code == 200 and f.response.content == b"all good"


def test_secret_in_response_is_withheld_with_a_502_that_says_so(env):
    """Not a 403 (AI SDKs read it as a bad API key) and not "remove the credential": the request did go out."""
    f = env.response(with_response(f"here is your token: {GHP}"))
    err = error_of(f, 502)
    assert f.response.headers["x-dlp-incident"] == err["incident_id"] and err["code"] == "credential_detected"
    assert err["message"].startswith("dlproxy withheld the upstream's response: it contained a GitHub Personal "
                                     "Access Token in body")
    assert "The request was sent; the reply was withheld." in err["message"]
    assert "Remove the credential" not in err["message"]
    assert err["findings"][0]["location"].startswith("body")
    assert env.sample("dlproxy_flows_total", direction="response", verdict="blocked") == 1
    assert_secret_absent(env, f, GHP)


def test_response_from_issuer_is_not_exempt(env):
    assert error_of(env.response(with_response(GHP, host="api.github.com")), 502)


def test_our_own_block_is_not_inspected_again(env):
    f = env.request(post(chat(GHP)))
    before = f.response
    env.response(f)
    assert f.response is before
    assert env.sample("dlproxy_flows_total", direction="response", verdict="clean") == 0


def test_redacted_response_keeps_framing(env):
    f = env.response(with_response(f"token={GHO};", headers={"content-length": "0"}))
    assert f.response.status_code == 200 and f.response.content == b"token=[REDACTED:github-oauth];"
    assert f.response.headers["content-length"] == str(len(f.response.content))


# --- ProfileState -------------------------------------------------------------------------------------


def test_bad_profile_is_an_options_error_with_file_and_line(tmp_path, profile_file):
    bad = tmp_path / "bad.yaml"
    bad.write_text(E2E_PROFILE.replace("checksum: crc32-base62\n    issuers: [\".github.com\", \"localhost\"]",
                                       "checksum: no-such-validator"))
    state = ProfileState(Metrics())
    with taddons.context(state) as tctx:
        with pytest.raises(exceptions.OptionsError) as exc:
            tctx.configure(state, dlp_profile=[str(bad)])
        assert f"{bad}:" in str(exc.value) and "entries[0].checksum" in str(exc.value)
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(state, dlp_backend="nope")


def test_reload_swaps_atomically_and_keeps_old_on_error(tmp_path, caplog):
    p = tmp_path / "p.yaml"
    p.write_text(E2E_PROFILE)
    e = make_env([p])
    with e.tctx:
        first = e.state.current
        in_flight = e.request(post(chat("hello")))
        assert in_flight.metadata[GENERATION] == first.generation
        p.write_text(E2E_PROFILE.replace("action: log", "action: block"))
        assert e.state.reload("test") is True
        second = e.state.current
        assert second.generation == first.generation + 1
        assert e.state.active_for(in_flight) is first  # the flow finishes with the profile it started with
        assert e.sample("dlproxy_profile_reloads_total", result="ok") == 1
        p.write_text("profile: [broken")
        assert e.state.reload("test") is False
        assert e.state.current is second
        assert e.sample("dlproxy_profile_reloads_total", result="error") == 1
        assert f"{p}:" in caplog.text
        assert error_of(e.request(post(chat(NPM))))  # the reloaded profile (npm now blocks) is in force


def test_builtin_profile_when_none_given():
    state = ProfileState(Metrics())
    with taddons.context(state):
        assert not state.ready
        state.running()  # no dlp_* option was set: running() loads the built-in profile
        assert state.ready and state.current.profile.id == "credentials-and-secrets"


def test_a_secret_inside_a_location_is_masked(env, caplog):
    """A keyless form body makes the whole body a "field name": the location must not carry the secret."""
    f = env.request(post(json.dumps({"q": GHP}), headers={"Content-Type": "application/x-www-form-urlencoded"}))
    err = error_of(f)
    assert GHP not in err["findings"][0]["location"] and GHP not in err["message"]
    assert_secret_absent(env, f, GHP, caplog)


def test_plain_text_prompts_stay_inline_costly_bodies_leave_the_loop(env):
    """Big bodies leave the event loop unless they are the one cheap case: uncompressed text without base64 runs
    under Hyperscan (about an order of magnitude faster to scan), up to PLAIN_TEXT_FACTOR × dlp_offload_bytes."""
    active = env.state.current
    prose = chat("a pasted document, words and punctuation only. " * 20000).encode()  # ≈1 MB
    json_headers = [("content-type", "application/json")]
    assert len(prose) > addon_mod.OFFLOAD_BYTES

    def decide(*args) -> bool:
        return env.req._placement(*args)[0]

    if active.detector.backend != "hyperscan":
        assert env.req._placement(active, json_headers, prose) == (True, False)
        return
    # inline, and the extractor is told the body holds no base64 run (it does not search it again)
    assert env.req._placement(active, json_headers, prose) == (False, True)
    assert decide(active, json_headers + [("content-encoding", "gzip")], prose)  # decompression costs
    assert decide(active, [("content-type", "application/octet-stream")], prose)
    with_blob = prose[:-10] + b" " + base64.b64encode(b"x" * 600) + prose[-10:]
    assert decide(active, json_headers, with_blob)  # base64 blobs get decoded: costly
    huge = chat("words only. " * (addon_mod.PLAIN_TEXT_FACTOR * addon_mod.OFFLOAD_BYTES // 10)).encode()
    assert decide(active, json_headers, huge)
    assert env.req._placement(active, json_headers, b"small") == (False, None)  # small: not pre-checked


def test_a_blob_free_body_is_searched_for_base64_runs_once(env, monkeypatch, scan_threads):
    """The inline plain-text path checks for base64 runs before deciding where to scan; the extractor then
    skips its own search of that same body. A body with any such run (a token is one) takes the full path."""
    from dlproxy.extract import base64blobs

    active = env.state.current
    if active.detector.backend != "hyperscan":
        pytest.skip("the plain-text pre-check needs Hyperscan")
    searched: list[int] = []
    real = base64blobs.find_blobs
    monkeypatch.setattr(base64blobs, "find_blobs", lambda data: searched.append(len(data)) or real(data))
    prose = chat("a pasted document, words and punctuation only. " * 20000).encode()
    f = env.request(post(prose))
    assert f.response is None and f.metadata[VERDICT] == "clean"
    assert not scan_threads[-1].startswith("dlp-scan") and len(prose) not in searched
    with_token = chat("a pasted document, words and punctuation only. " * 20000 + GHP).encode()
    f = env.request(post(with_token))
    assert error_of(f)["findings"][0]["entry"] == "github-pat"
    assert scan_threads[-1].startswith("dlp-scan") and len(with_token) in searched

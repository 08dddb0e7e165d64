"""The public strings of engine.vocab stay byte-identical: profile values, metric label values, incident JSON,
the block body and flow metadata. Renaming one breaks profiles and dashboards, so each is spelled out here."""

from __future__ import annotations

import json

import pytest
from mitmproxy.test import tflow

from dlproxy.engine.findings import Finding
from dlproxy.engine.profile import Entry, Profile, ProfileError, Settings, load_profiles
from dlproxy.engine.vocab import (
    ACTION_STRENGTH,
    OVERSIZE_REASONS,
    PROFILE_ACTIONS,
    VERDICT_OF_ACTION,
    VERDICT_SEVERITY,
    Action,
    Direction,
    Enforcement,
    Reason,
    Verdict,
)
from dlproxy.extract.core import Unscannable
from dlproxy.inspect.policy import Active, FlowContext, decide
from dlproxy.ops.incidents import Incident
from dlproxy.ops.metrics import Metrics
from dlproxy.proxy.enforce import block_body, error_reason, flow_context


def test_values_are_pinned():
    assert [str(d) for d in Direction] == ["request", "response", "websocket"]
    assert [str(a) for a in Action] == ["block", "redact", "log", "allow", "below_min_matches"]
    assert list(PROFILE_ACTIONS) == ["block", "redact", "log"]
    assert [str(e) for e in Enforcement] == ["pass", "redact", "block"]
    assert [str(v) for v in Verdict] == ["clean", "blocked", "redacted", "logged", "allowed", "skipped", "error",
                                         "dry_run"]  # dry_run: flows_total only (ops.metrics.FlowsTotal)
    assert [str(r) for r in Reason] == ["too_large", "bomb", "depth", "members", "encrypted_archive",
                                        "corrupt_encoding", "unsupported_encoding", "truncated", "malformed",
                                        "error", "not_ready"]
    assert OVERSIZE_REASONS == {"too_large", "bomb", "depth", "members"}


def test_the_two_orders_mean_different_things():
    # which action wins among the findings of one message
    assert sorted(ACTION_STRENGTH, key=ACTION_STRENGTH.get) == ["log", "redact", "block"]
    # which verdict a streamed flow reports once it took several decisions
    assert sorted(VERDICT_SEVERITY, key=VERDICT_SEVERITY.get) == [
        "clean", "skipped", "allowed", "logged", "redacted", "error", "blocked"]
    assert VERDICT_OF_ACTION == {"block": "blocked", "redact": "redacted", "log": "logged", "allow": "allowed"}


def test_members_are_their_strings():
    assert Verdict.BLOCKED == "blocked" and f"{Verdict.BLOCKED}" == "blocked" and str(Reason.BOMB) == "bomb"
    assert json.dumps({"a": Action.BLOCK}) == '{"a": "block"}'
    assert type(str(Verdict.CLEAN)) is str


def test_metric_label_values():
    text = Metrics().render().decode()
    for d in ("request", "response", "websocket"):
        for v in ("clean", "blocked", "redacted", "logged", "allowed", "skipped", "error"):
            assert f'dlproxy_flows_total{{direction="{d}",verdict="{v}"}} 0.0' in text
    for a in ("block", "redact", "log"):
        assert f'dlproxy_incidents_total{{action="{a}"}} 0.0' in text
    m = Metrics()
    m.detections_total.labels(entry="x", direction=Direction.WEBSOCKET, action=Action.BELOW_MIN_MATCHES).inc()
    m.unscannable_total.labels(reason=Reason.ENCRYPTED).inc()
    text = m.render().decode()
    assert 'dlproxy_detections_total{action="below_min_matches",direction="websocket",entry="x"} 1.0' in text
    assert 'dlproxy_unscannable_total{reason="encrypted_archive"} 1.0' in text


def _active(**settings) -> Active:
    entry = Entry(id="github-pat", name="GitHub Personal Access Token", prefixes=("ghp_",), pattern="[a-z]{4}")
    return Active(Profile("t", "T", Settings(**settings), (entry,)), detector=None, limits=None)


FINDING = Finding("github-pat", "GitHub Personal Access Token", "critical", 0, 40, "checksum", "ghp_…abcd",
                  "sha256:" + "ab" * 32, "body")
CTX = FlowContext(Direction.REQUEST, "api.example.com", "POST", "https", 443, "/upload", "10.0.0.1")


def test_incident_json_is_byte_identical():
    decision = decide([FINDING], [Unscannable("body:zip", Reason.ENCRYPTED)], CTX, _active())
    inc = Incident.from_decision(decision, CTX, incident_id="0123456789abcdef")
    inc.time = "2026-01-01T00:00:00.000Z"
    assert inc.to_json() == (
        '{"time":"2026-01-01T00:00:00.000Z","incident_id":"0123456789abcdef","action":"block",'
        '"direction":"request","client":"10.0.0.1","method":"POST","scheme":"https","host":"api.example.com",'
        '"path":"/upload","findings":[{"entry":"github-pat","name":"GitHub Personal Access Token",'
        '"severity":"critical","location":"body","masked":"ghp_…abcd","fingerprint":"sha256:' + "ab" * 32 + '",'
        '"validated":"checksum"}],"unscannable":[{"location":"body:zip","reason":"encrypted_archive"}],'
        '"dry_run":false,"verdict":"blocked","reason":"GitHub Personal Access Token in body; body:zip not '
        'inspectable (encrypted_archive)"}')
    logged = Incident.from_decision(decide([FINDING], [], CTX, _active(default_action="log")), CTX)
    assert json.loads(logged.to_json())["action"] == "log" and logged.describe().startswith("logged POST")


def test_block_body_codes():
    body = block_body(decide([FINDING], [], CTX, _active()), "id1")
    assert (body["error"]["type"], body["error"]["code"]) == ("dlp_violation", "credential_detected")
    oversize = block_body(decide([], [Unscannable("body", Reason.TOO_LARGE)], CTX, _active()), "id2")
    assert oversize["error"]["code"] == "content_not_inspectable"
    assert "body is too large to inspect" in oversize["error"]["message"]


def test_flow_context_and_error_reason():
    ctx = flow_context(tflow.tflow(), Direction.WEBSOCKET)
    assert ctx.direction == "websocket"
    assert error_reason(ValueError("a secret could be here")) == "ValueError"


@pytest.mark.parametrize("action,message", [
    ("shred", "must be one of block, redact, log, got 'shred'"),
    ("{upload: block}", "unknown direction (expected request, response, websocket)"),
])
def test_profile_messages_list_the_words(tmp_path, action, message):
    path = tmp_path / "p.yaml"
    path.write_text("profile: t\nname: T\nentries:\n  - id: thing\n    name: Thing\n    prefixes: [thing_]\n"
                    f"    pattern: 'thing_[a-z]{{8}}'\n    action: {action}\n")
    with pytest.raises(ProfileError) as e:
        load_profiles([path])
    assert message in str(e.value)

"""Every section parser's shape and unknown-key messages, byte for byte (engine/nodes.py serves them all):
users and tests read them as `FILE:LINE: <label>.<key>: <what>`."""

from __future__ import annotations

import pytest

from dlproxy.engine.profile import ProfileError, load_profiles

FP = "sha256:" + "ab" * 32
DOCS = {
"unknown-keys": f"""\
profile: msgs
name: Messages
colour: red
settings:
  default_action: block
  evidence: {{recipients: ["age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"], colour: 1}}
entries:
  - id: thing
    name: Thing Token
    prefixes: ["thg_"]
    pattern: "[a-z]{{20}}"
    colour: red
    action: {{request: block, sideways: log, response: maybe}}
    revocation: {{when: never, colour: 1}}
allow:
  - {{fingerprint: "{FP}", reason: known, colour: 1}}
principals:
  require: false
  colour: 1
  sources:
    - {{kind: source, networks: [{{name: office, cidrs: [10.0.0.0/8]}}], colour: 1}}
policies:
  - name: p
    action: {{request: block, sideways: log, response: maybe}}
    principals: [x]
    colour: 1
revocation:
  when: exposed
  colour: 1
  revokers:
    - {{id: w, kind: webhook, url: "https://r.example/x", colour: 1}}
""",
"not-mappings": """\
profile: msgs2
name: Messages
settings:
  evidence: [1]
entries:
  - just-a-string
  - id: thing
    name: Thing Token
    prefixes: ["thg_"]
    pattern: "[a-z]{20}"
    revocation: [never]
allow:
  - just-a-string
principals: [1]
policies:
  - just-a-string
revocation:
  revokers:
    - just-a-string
""",
"not-a-mapping-at-all": "- 1\n",
"revocation-not-a-mapping": "profile: x\nname: X\nentries: []\nrevocation: [1]\n",
}

EXPECTED = {
    'unknown-keys': [
        "{path}:3: colour: unknown key (expected one of allow, entries, name, policies, principals, profile, revocation, settings)",
        "{path}:6: settings.evidence.colour: unknown key (expected recipients, context)",
        "{path}:12: entries[0].colour: unknown key",
        "{path}:13: entries[0].action.sideways: unknown direction (expected request, response, websocket)",
        "{path}:13: entries[0].action.response: must be one of block, redact, log, got 'maybe'",
        "{path}:14: entries[0].revocation.colour: unknown key (expected when)",
        "{path}:16: allow[0].colour: unknown key (expected fingerprint, reason)",
        "{path}:19: principals.colour: unknown key (expected require, sources)",
        "{path}:21: principals.sources[0].colour: unknown key for kind source (expected networks)",
        "{path}:24: policies[0].action.sideways: unknown direction (expected request, response, websocket)",
        "{path}:24: policies[0].action.response: must be one of block, redact, log, allow, got 'maybe'",
        "{path}:26: policies[0].colour: unknown key (expected action, destinations, entries, name, principals)",
        "{path}:29: revocation.colour: unknown key (expected when, revokers)",
        "{path}:31: revocation.revokers[0].colour: unknown key (expected one of batch, entries, headers, id, kind, per_hour, url)",
    ],
    'not-mappings': [
        "{path}:4: settings.evidence: must be a mapping with recipients",
        "{path}:6: entries[0]: must be a mapping",
        "{path}:11: entries[1].revocation: must be a mapping like {when: never}",
        "{path}:13: allow[0]: must be a mapping with fingerprint and reason",
        "{path}:14: principals: must be a mapping with sources and require",
        "{path}:16: policies[0]: must be a mapping with name, action, ...",
        "{path}:19: revocation.revokers[0]: must be a mapping with id, kind, url, entries",
    ],
    'not-a-mapping-at-all': [
        "{path}:1: profile: expected a mapping with profile, name, settings, entries",
    ],
    'revocation-not-a-mapping': [
        "{path}:4: revocation: must be a mapping with when and revokers",
    ],
}


@pytest.mark.parametrize("name", DOCS)
def test_shape_and_unknown_key_messages_are_pinned(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_text(DOCS[name])
    with pytest.raises(ProfileError) as e:
        load_profiles([path])
    assert [m.replace(str(path), "{path}") for m in e.value.problems] == EXPECTED[name]

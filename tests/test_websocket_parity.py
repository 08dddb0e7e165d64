"""WebSocket parity: a message is inspected through what its receiver decodes (JSON escapes, base64, zlib/deflate
binary as pako sends it, gzip), deltas are reassembled per connection (Socket.IO `42["chunk", …]`, `{"delta": …}`,
any JSON path), and a token sent a few characters per message is closed on before the peer holds enough of it to
rebuild the rest from its checksum."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import pytest
from mitmproxy.test import tflow

from dlproxy.proxy.websocket import SPLIT_REVEAL
from test_stream_guard import GHP, env, ws_message  # noqa: F401  (fixture used by name)

CLEAN = "a perfectly ordinary message with ghp_ mentioned and nothing else"


def closed(env) -> bool:  # noqa: F811
    return bool(env.ws_closed) and env.ws_closed[0][0] == 1008


@pytest.mark.parametrize("make, text", [
    (lambda t: json.dumps({"log": "line\n" + t}), True),
    (lambda t: '{"v":"' + "".join(f"\\u{ord(c):04x}" for c in t) + '"}', True),
    (lambda t: base64.b64encode(("export GH=" + t + "\n").encode()).decode(), True),
    (lambda t: json.dumps({"file": base64.b64encode(("token: " + t + "\n").encode()).decode()}), True),
    (lambda t: zlib.compress(("token " + t).encode()), False),  # pako.deflate
    (lambda t: zlib.compress(("token " + t).encode())[2:-4], False),  # pako.deflateRaw
    (lambda t: gzip.compress(("token " + t).encode()), False),  # pako.gzip
    (lambda t: '42["message",' + json.dumps("x\n" + t) + "]", True),  # Socket.IO
], ids=["json_newline", "json_unicode", "base64", "json_base64", "zlib", "deflate_raw", "gzip", "socketio_escape"])
def test_a_token_the_receiver_decodes_is_dropped_and_closes(env, make, text):  # noqa: F811
    f = tflow.twebsocketflow(messages=False)
    msg = ws_message(env, f, make(GHP), text=text)
    assert msg.dropped and closed(env)
    [incident] = env.incidents()
    assert incident["action"] == "block" and GHP[-8:] not in json.dumps(incident)
    # the same carrier without a token passes unchanged
    f2 = tflow.twebsocketflow(messages=False)
    env.ws_closed.clear()
    assert not ws_message(env, f2, make(CLEAN.replace("ghp_", "gh")), text=text).dropped and not env.ws_closed


@pytest.mark.parametrize("make", [
    lambda p: '42["chunk",' + json.dumps(p) + "]",
    lambda p: json.dumps({"delta": p}),
    lambda p: json.dumps({"type": "chunk", "data": {"text": p}}),
], ids=["socketio", "delta", "nested_path"])
def test_deltas_are_reassembled_per_connection(env, make):  # noqa: F811
    f = tflow.twebsocketflow(messages=False)
    text = "here it is: " + GHP + " done"
    sent = []
    for i in range(0, len(text), 3):
        msg = ws_message(env, f, make(text[i:i + 3]))
        if msg.dropped:
            break
        sent.append(text[i:i + 3])
    assert closed(env)
    got = "".join(sent)
    # the peer got at most the keyword and SPLIT_REVEAL - 1 characters after it: not enough to rebuild the token
    assert len(got) - got.index("ghp_") - len("ghp_") < SPLIT_REVEAL


def test_one_character_per_message_is_closed_before_the_checksum_can_rebuild_it(env):  # noqa: F811
    f = tflow.twebsocketflow(messages=False)
    sent = ""
    for c in "x " + GHP:
        if ws_message(env, f, c).dropped:
            break
        sent += c
    assert closed(env) and sent.startswith("x ghp_")
    assert len(sent) - len("x ghp_") < SPLIT_REVEAL  # 30 body characters needed to rebuild; a few went out
    [incident] = env.incidents()
    assert incident["action"] == "block" and incident["unscannable"][0]["reason"] == "truncated"


def test_clean_chat_one_character_per_message_flows(env):  # noqa: F811
    f = tflow.twebsocketflow(messages=False)
    for c in CLEAN:
        assert not ws_message(env, f, c).dropped
    assert not env.ws_closed and env.incidents() == []


def test_a_whole_valid_token_that_policy_logs_is_not_closed_on(env):  # noqa: F811
    """A complete token is judged like any other (here: logged, so it passes); the early close is only for a token
    still arriving."""
    from e2e.conftest import NPM

    f = tflow.twebsocketflow(messages=False)
    assert not ws_message(env, f, NPM).dropped and not env.ws_closed
    assert [i["action"] for i in env.incidents()] == ["log"]

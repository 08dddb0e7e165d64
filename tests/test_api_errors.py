"""A blocked AI client gets the error in its own API's format (proxy/apis.py), with the incident id; the 403 block
body contract stays for every other client. Buffered requests here; the streamed error events are in
test_stream_shapes.py and the e2e tests."""

from __future__ import annotations

import json

from dlproxy.proxy.apis import api_of, jsonrpc_request
from test_addon import GHP, chat, env, make_env, post, profile_file  # noqa: F401  (fixtures used by name)


def test_anthropic_gets_its_error_shape(env):  # noqa: F811
    body = json.dumps({"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": GHP}]})
    f = env.request(post(body, host="api.anthropic.com", path="/v1/messages",
                         headers={"anthropic-version": "2023-06-01"}))
    assert f.response.status_code == 403
    got = json.loads(f.response.content)
    assert got["type"] == "error" and got["error"]["type"] == "dlp_violation"
    assert got["error"]["code"] == "credential_detected"  # the block body's fields are all kept
    assert got["error"]["incident_id"] == f.response.headers["x-dlp-incident"]
    assert GHP not in f.response.text and GHP[-8:] not in f.response.text


def test_gemini_gets_a_google_status(env):  # noqa: F811
    body = json.dumps({"contents": [{"parts": [{"text": GHP}]}]})
    f = env.request(post(body, host="generativelanguage.googleapis.com",
                         path="/v1beta/models/gemini-2.0-flash:generateContent"))
    got = json.loads(f.response.content)
    assert f.response.status_code == 403 and got["error"]["status"] == "PERMISSION_DENIED"
    assert got["error"]["incident_id"] == f.response.headers["x-dlp-incident"]


def test_mcp_tools_call_gets_a_jsonrpc_error(env):  # noqa: F811
    body = json.dumps({"jsonrpc": "2.0", "id": 42, "method": "tools/call",
                       "params": {"name": "deploy", "arguments": {"token": GHP}}})
    f = env.request(post(body, host="mcp.example.com", path="/mcp"))
    assert f.response.status_code == 200 and f.response.headers["x-dlp-incident"]
    got = json.loads(f.response.content)
    assert got["jsonrpc"] == "2.0" and got["id"] == 42 and got["error"]["code"] == -32001
    assert got["error"]["data"]["incident_id"] == f.response.headers["x-dlp-incident"]
    assert GHP[-8:] not in f.response.text


def test_other_clients_keep_the_403_contract(env):  # noqa: F811
    f = env.request(post(chat(GHP)))  # OpenAI path: the contract body is already OpenAI's error shape
    got = json.loads(f.response.content)
    assert f.response.status_code == 403 and set(got) == {"error"}
    f = env.request(post(json.dumps({"text": GHP}), host="example.com", path="/upload"))
    assert f.response.status_code == 403 and set(json.loads(f.response.content)) == {"error"}


def test_api_of_and_jsonrpc_request():
    assert api_of(post("{}", host="api.anthropic.com", path="/v1/messages")) == "anthropic"
    assert api_of(post("{}", host="x", path="/v1beta/models/m:streamGenerateContent?alt=sse")) == "gemini"
    assert api_of(post("{}", host="localhost", path="/api/chat")) == "ollama"
    rpc = post(json.dumps({"jsonrpc": "2.0", "id": "a", "method": "tools/call"}), host="h", path="/mcp")
    assert api_of(rpc) == "mcp" and jsonrpc_request(rpc) == ("a", "tools/call")
    assert jsonrpc_request(post("not json", host="h", path="/mcp")) is None
    assert api_of(post("{}", host="example.com", path="/upload")) is None

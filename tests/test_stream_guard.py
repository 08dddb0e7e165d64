"""StreamGuard and WebSocketGuard through mitmproxy's test helpers (taddons, tflow): what gets streamed and how
headers are rewritten, the stream callable's verdicts, fail-closed behaviour, the StreamJudge both guards share,
and the mitmproxy internals both rely on (pinned here so an upgrade breaks a test, not the proxy).
"""

from __future__ import annotations

import gzip
import inspect
import io
import json
import typing

import pytest
import wsproto.events
from mitmproxy import http, version
from mitmproxy.test import taddons, tflow
from mitmproxy.websocket import WebSocketMessage
from wsproto.frame_protocol import Opcode

from dlproxy.engine.vocab import Direction, Enforcement, Reason, Verdict
from dlproxy.ops.incidents import IncidentLog
from dlproxy.ops.metrics import Metrics
from dlproxy.proxy import internals
from dlproxy.proxy.addon import GENERATED, STREAMED, ProfileState
from dlproxy.proxy.enforce import INCIDENT, VERDICT, StreamJudge, flow_context
from dlproxy.proxy.internals import close_frame
from dlproxy.proxy.streamguard import FlowStream, StreamGuard
from dlproxy.proxy.websocket import KEEP_MESSAGES, WebSocketGuard
from e2e.conftest import E2E_PROFILE, GHO, GHP, NPM


class Env:
    def __init__(self, tctx, guard, ws, metrics, out):
        self.tctx, self.guard, self.ws, self.metrics, self.out = tctx, guard, ws, metrics, out

    def sample(self, name: str, **labels) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def incidents(self) -> list[dict]:
        return [json.loads(x) for x in self.out.getvalue().splitlines() if x.strip()]


@pytest.fixture
def env(tmp_path, monkeypatch):
    path = tmp_path / "profile.yaml"
    path.write_text(E2E_PROFILE)
    metrics = Metrics()
    out = io.StringIO()
    state = ProfileState(metrics)
    incidents = IncidentLog(metrics, stream=out)
    guard = StreamGuard(state, metrics, incidents)
    ws = WebSocketGuard(state, metrics, incidents)
    closed: list = []
    monkeypatch.setattr(internals, "close_upstream", lambda flow: closed.append(flow) or True)
    ws_closed: list = []
    monkeypatch.setattr(internals, "close_websocket",
                        lambda flow, code, reason: ws_closed.append((code, reason)) or True)
    with taddons.context(state, incidents, guard, ws) as tctx:
        # proxyserver's options, which StreamGuard reads (the proxyserver addon itself is not needed here)
        tctx.options.add_option("stream_large_bodies", typing.Optional[str], None, "")  # noqa: UP045
        tctx.configure(state, dlp_profile=[str(path)], dlp_builtin=False)
        e = Env(tctx, guard, ws, metrics, out)
        e.closed, e.ws_closed = closed, ws_closed
        yield e


def response_flow(headers: dict, method: str = "POST", path: str = "/v1/chat/completions") -> http.HTTPFlow:
    f = tflow.tflow(resp=True)
    f.request.method = method
    f.request.path = path
    f.response.headers.clear()
    for k, v in headers.items():
        f.response.headers[k] = v
    f.response.content = None
    return f


SSE = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}


def chat_events(text: str, n: int = 3) -> list[bytes]:
    return [b"data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text[i:i + n]}}]}).encode()
            + b"\n\n" for i in range(0, len(text), n)]


def run_stream(flow: http.HTTPFlow, chunks: list[bytes]) -> bytes:
    out = []
    for c in chunks:
        got = flow.response.stream(c)
        assert isinstance(got, list) and all(isinstance(x, bytes) and x for x in got)
        out += got
    out += flow.response.stream(b"")
    return b"".join(out)


# --- what streams ----------------------------------------------------------------------------------------------------


def test_sse_gets_a_scanning_stream_and_chunked_framing(env):
    f = response_flow({"content-type": "text/event-stream; charset=utf-8", "content-length": "500"})
    env.guard.responseheaders(f)
    assert isinstance(f.response.stream, FlowStream) and f.response.stream.framing == "sse"
    assert "content-length" not in f.response.headers  # the length may change (error event, redaction)
    assert f.response.headers["transfer-encoding"] == "chunked"
    assert f.metadata[STREAMED] == "sse"


@pytest.mark.parametrize("headers,streamed", [
    ({"content-type": "application/json", "content-length": "42"}, False),
    ({"content-type": "application/json", "transfer-encoding": "chunked"}, True),
    ({"content-type": "application/octet-stream"}, True),  # unknown length (read until close / HTTP/2)
    ({"content-type": "application/json", "content-length": "0"}, False),
])
def test_what_is_streamed(env, headers, streamed):
    f = response_flow(headers)
    env.guard.responseheaders(f)
    assert isinstance(f.response.stream, FlowStream) is streamed


def test_no_stream_for_head_and_bodiless_statuses(env):
    f = response_flow(SSE, method="HEAD")
    env.guard.responseheaders(f)
    assert not f.response.stream
    f = response_flow(SSE)
    f.response.status_code = 304
    env.guard.responseheaders(f)
    assert not f.response.stream


@pytest.mark.parametrize("client,server_alpn,response_te,request_te", [
    ("HTTP/1.1", None, True, True),
    ("HTTP/2.0", None, False, True),  # the request goes to an HTTP/1 upstream: it needs chunks
    ("HTTP/2.0", b"h2", False, False),
    ("HTTP/1.1", b"h2", True, False),  # the request is re-sent as HTTP/2: no chunks
    ("HTTP/1.0", None, False, False),
])
def test_chunked_framing_only_where_the_message_is_written_as_http11(env, client, server_alpn, response_te,
                                                                     request_te):
    f = response_flow({"content-type": "text/event-stream"})
    f.request.http_version = f.response.http_version = client
    f.server_conn.alpn = server_alpn
    env.guard.responseheaders(f)
    assert ("transfer-encoding" in f.response.headers) is response_te
    env.tctx.options.stream_large_bodies = "1"
    f = tflow.tflow()
    f.request.http_version = client
    f.request.headers["content-encoding"] = "gzip"  # decoded as it streams: the length goes
    f.server_conn.alpn = server_alpn
    env.guard.requestheaders(f)
    assert isinstance(f.request.stream, FlowStream) and "content-length" not in f.request.headers
    assert ("transfer-encoding" in f.request.headers) is request_te


def test_stream_large_bodies_keeps_a_fixed_length(env):
    env.tctx.options.update(stream_large_bodies="1k")
    f = response_flow({"content-type": "application/zip", "content-length": "5000"})
    env.guard.responseheaders(f)
    assert isinstance(f.response.stream, FlowStream) and f.response.headers["content-length"] == "5000"
    f = response_flow({"content-type": "application/zip", "content-length": "500"})
    env.guard.responseheaders(f)
    assert not f.response.stream


def test_uploads_stream_only_with_stream_large_bodies(env):
    f = tflow.tflow()
    f.request.headers["content-length"] = "5000"
    env.guard.requestheaders(f)
    assert not f.request.stream
    env.tctx.options.update(stream_large_bodies="1k")
    env.guard.requestheaders(f)
    assert isinstance(f.request.stream, FlowStream) and f.request.headers["content-length"] == "5000"
    chunked = tflow.tflow()
    del chunked.request.headers["content-length"]
    chunked.request.headers["transfer-encoding"] = "chunked"
    env.guard.requestheaders(chunked)
    assert isinstance(chunked.request.stream, FlowStream)  # unknown length: mitmproxy would switch it unscanned


def test_streamed_upload_with_a_secret_in_the_url_gets_the_403_instead(env):
    env.tctx.options.update(stream_large_bodies="1k")
    f = tflow.tflow()
    f.request.path = f"/upload?token={GHP}"
    f.request.headers["content-length"] = "5000"
    env.guard.requestheaders(f)
    assert not f.request.stream and f.response.status_code == 403 and f.metadata[GENERATED]
    assert env.sample("dlproxy_flows_total", direction="request", verdict="blocked") == 1


def test_secret_in_streamed_response_headers_replaces_the_response(env):
    f = response_flow({**SSE, "x-token": GHP})
    env.guard.responseheaders(f)
    assert f.response.status_code == 502 and f.metadata[GENERATED]  # a withheld response
    body = f.response.stream(b"data: upstream\n\n")
    assert json.loads(b"".join(body))["error"]["type"] == "dlp_violation"
    assert f.response.stream(b"more") == [] and env.closed == [f]


# --- the callable ----------------------------------------------------------------------------------------------------


def test_clean_sse_passes_unchanged_and_counts_once(env):
    f = response_flow(SSE)
    env.guard.responseheaders(f)
    events = chat_events("A clean reply, a few characters per event. ")
    assert run_stream(f, events) == b"".join(events)
    env.guard.response(f)
    assert env.sample("dlproxy_flows_total", direction="response", verdict="clean") == 1
    assert env.sample("dlproxy_scanned_bytes_total", direction="response") == len(b"".join(events))


def test_token_in_sse_cuts_with_the_openai_error_event_and_closes_upstream(env):
    f = response_flow(SSE)
    env.guard.responseheaders(f)
    out = run_stream(f, chat_events("here: " + GHP + " and more", 2))
    assert GHP[:4].encode() not in out.split(b"data: {\"error\"")[0]
    last = out.strip().split(b"\n\n")[-1]
    error = json.loads(last[len(b"data: "):])["error"]
    assert error["type"] == "dlp_violation" and error["findings"][0]["masked"].startswith("ghp_")
    assert env.closed == [f] and f.error is not None  # upstream closed; killed so no clean end can follow
    assert env.sample("dlproxy_flows_total", direction="response", verdict="blocked") == 1
    assert env.sample("dlproxy_detections_total", entry="github-pat", direction="response", action="block") == 1
    (incident,) = env.incidents()
    assert incident["incident_id"] == error["incident_id"] and GHP not in env.out.getvalue()


def test_token_whose_first_character_went_out_alone_is_cut_there_with_the_error_event(env):
    """"g" is a public head of "ghp_": its event goes out at once. The rest of the token arrives in later events:
    the stream stops right after the "g" and the error event follows."""
    f = response_flow(SSE)
    env.guard.responseheaders(f)
    events = chat_events("here: ", 6) + chat_events(GHP[0], 1) + chat_events(GHP[1:] + " and more", 5)
    out = run_stream(f, events)
    sent, sep, last = out.partition(b"data: {\"error\"")
    assert sent == b"".join(events[:2]) and sep  # "here: ", then "g" alone; nothing past it
    error = json.loads(sep[len(b"data: "):] + last)["error"]
    assert error["type"] == "dlp_violation" and error["findings"][0]["entry"] == "github-pat"
    assert env.closed == [f] and f.error is not None


def test_redaction_after_a_released_first_character_in_sse(env):
    f = response_flow(SSE)
    env.guard.responseheaders(f)
    events = chat_events("Use ", 4) + chat_events(GHO[0], 1) + chat_events(GHO[1:] + " for it.", 5)
    out = run_stream(f, events)
    text = "".join(json.loads(e[len(b"data: "):])["choices"][0]["delta"]["content"]
                   for e in out.strip().split(b"\n\n"))
    assert text == "Use g[REDACTED:github-oauth] for it." and GHO[1:].encode() not in out


def test_anthropic_request_gets_the_anthropic_error_event(env):
    f = response_flow(SSE, path="/v1/messages")
    env.guard.responseheaders(f)
    out = run_stream(f, [b"data: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", "
                         b"\"text\": \"" + GHP.encode() + b"\"}}\n\n"])
    assert out.startswith(b"event: error\ndata: ")
    assert json.loads(out.split(b"data: ", 1)[1])["type"] == "error"


def test_redact_and_log_in_a_chunked_body(env):
    f = response_flow({"content-type": "text/plain", "transfer-encoding": "chunked"})
    env.guard.responseheaders(f)
    body = f"a={GHO}\nb={NPM}\n".encode()
    out = run_stream(f, [body[:7], body[7:30], body[30:]])
    assert out == f"a=[REDACTED:github-oauth]\nb={NPM}\n".encode()
    env.guard.response(f)
    assert env.sample("dlproxy_flows_total", direction="response", verdict="redacted") == 1
    (incident,) = env.incidents()  # one decision: redact wins, the log-only finding is reported with it
    assert incident["action"] == "redact" and len(incident["findings"]) == 2


def test_gzip_stream_is_forwarded_decoded(env):
    f = response_flow({"content-type": "text/plain", "transfer-encoding": "chunked", "content-encoding": "gzip"})
    env.guard.responseheaders(f)
    assert "content-encoding" not in f.response.headers
    wire = gzip.compress(b"hello compressed world\n" * 100)
    assert run_stream(f, [wire[:50], wire[50:]]) == b"hello compressed world\n" * 100


def test_corrupt_encoding_mid_stream_cuts(env):
    f = response_flow({"content-type": "text/plain", "transfer-encoding": "chunked", "content-encoding": "gzip"})
    env.guard.responseheaders(f)
    assert f.response.stream(b"definitely not gzip") == []
    assert env.closed == [f]
    assert env.incidents()[0]["unscannable"] == [{"location": "body:stream", "reason": "corrupt_encoding"}]


@pytest.mark.parametrize("coding", ["rot13", "gzip, gzip, gzip, gzip, gzip"])
def test_unsupported_or_too_deep_encoding_is_blocked_at_the_headers(env, coding):
    f = response_flow({"content-type": "text/plain", "transfer-encoding": "chunked", "content-encoding": coding})
    env.guard.responseheaders(f)
    assert f.response.status_code == 502


def test_the_callable_never_raises_and_fails_closed(env, monkeypatch):
    f = response_flow(SSE)
    env.guard.responseheaders(f)
    stream = f.response.stream

    def boom(data):
        raise RuntimeError("scanner bug with " + GHP)  # even an exception text holding a secret stays inside

    monkeypatch.setattr(stream.scanner, "feed", boom)
    out = stream(b"data: x\n\n")
    assert len(out) == 1 and b"dlp_violation" in out[0] and env.closed == [f]
    assert stream(b"data: more\n\n") == [] and stream(b"") == []
    assert env.sample("dlproxy_inspection_errors_total", reason="RuntimeError") == 1
    assert GHP not in env.out.getvalue()


def test_dry_run_passes_but_records(env):
    env.tctx.options.update(dlp_dry_run=True)
    f = response_flow(SSE)
    env.guard.responseheaders(f)
    events = chat_events("x " + GHP + " y")
    assert run_stream(f, events) == b"".join(events)
    (incident,) = env.incidents()
    assert incident["dry_run"] is True and incident["action"] == "block"


# --- WebSocket -----------------------------------------------------------------------------------------------------------


def ws_message(env, flow, content: bytes | str, from_client: bool = True, text: bool = True) -> WebSocketMessage:
    data = content.encode() if isinstance(content, str) else content
    msg = WebSocketMessage(Opcode.TEXT if text else Opcode.BINARY, from_client, data)
    flow.websocket.messages.append(msg)
    env.ws.websocket_message(flow)
    return msg


def test_websocket_clean_messages_pass_and_the_list_is_trimmed(env):
    f = tflow.twebsocketflow(messages=False)
    for i in range(10):
        msg = ws_message(env, f, f"hello {i}", from_client=bool(i % 2), text=bool(i % 3))
        assert not msg.dropped
    assert len(f.websocket.messages) == KEEP_MESSAGES
    assert env.sample("dlproxy_flows_total", direction="websocket", verdict="clean") == 10


@pytest.mark.parametrize("text", [True, False])
def test_websocket_secret_drops_and_closes_1008(env, text):
    f = tflow.twebsocketflow(messages=False)
    msg = ws_message(env, f, f"token {GHP}", text=text)
    assert msg.dropped
    ((code, reason),) = env.ws_closed
    (incident,) = env.incidents()
    assert code == 1008 and incident["incident_id"] in reason and len(reason.encode()) <= 123
    assert incident["direction"] == "websocket"
    later = ws_message(env, f, "anything after", from_client=False)
    assert later.dropped and len(env.ws_closed) == 1


def test_websocket_redact(env):
    f = tflow.twebsocketflow(messages=False)
    msg = ws_message(env, f, f'{{"token": "{GHO}"}}')
    assert not msg.dropped and msg.text == '{"token": "[REDACTED:github-oauth]"}'


def test_websocket_token_split_across_messages(env):
    f = tflow.twebsocketflow(messages=False)
    assert not ws_message(env, f, "key: " + GHP[:10]).dropped  # the keyword and 6 characters: cannot be rebuilt
    assert not ws_message(env, f, "other direction", from_client=False).dropped
    assert ws_message(env, f, GHP[10:] + " tail").dropped
    assert env.ws_closed and env.ws_closed[0][0] == 1008


def test_websocket_split_redact_becomes_block(env):
    f = tflow.twebsocketflow(messages=False)
    assert not ws_message(env, f, "oauth " + GHO[:9]).dropped
    assert ws_message(env, f, GHO[9:]).dropped
    assert env.incidents()[0]["action"] == "block"


def test_websocket_fails_closed(env, monkeypatch):
    f = tflow.twebsocketflow(messages=False)
    monkeypatch.setattr(env.ws, "_inspect", lambda *a: 1 / 0)
    assert ws_message(env, f, "hello").dropped
    assert env.ws_closed and env.sample("dlproxy_inspection_errors_total", reason="ZeroDivisionError") == 1


# --- StreamJudge (proxy/enforce.py): the one policy of both guards --------------------------------------------------
# The same secrets sent through a stream and a WebSocket get the same verdict, one incident each and the same metric
# labels; the judge's own rules (one judgement per secret, most severe verdict, the incident a block names, a
# redaction that cannot be done becomes a block, failing closed) are pinned directly.


def samples(env, name: str) -> list[tuple[dict, float]]:
    return [(dict(s.labels), s.value) for m in env.metrics.registry.collect() for s in m.samples
            if s.name == name and s.value]


def judge_for(env, flow: http.HTTPFlow | None = None, direction: Direction = Direction.RESPONSE) -> StreamJudge:
    flow = flow or tflow.tflow(resp=True)
    state = env.guard.state
    return StreamJudge(state, state.active_for(flow), flow_context(flow, direction), env.metrics,
                       env.guard.incidents, direction)


def through_stream(env: Env, texts: list[str], host: str) -> str:
    """`texts` as the chunks of one streamed response body; the flow's verdict."""
    f = tflow.tflow(resp=True)
    f.request.host = host
    f.response.headers.clear()
    f.response.headers.update({"content-type": "text/plain", "transfer-encoding": "chunked"})
    f.response.content = None
    env.guard.responseheaders(f)
    for t in texts:
        f.response.stream(t.encode())
    f.response.stream(b"")
    return f.metadata[VERDICT]


ORDER = [Verdict.CLEAN, Verdict.ALLOWED, Verdict.LOGGED, Verdict.REDACTED, Verdict.BLOCKED]


def through_websocket(env: Env, texts: list[str], host: str) -> str:
    """`texts` as the messages of one WebSocket connection; the most severe per-message verdict."""
    f = tflow.twebsocketflow(messages=False)
    f.request.host = host
    for t in texts:
        f.websocket.messages.append(WebSocketMessage(Opcode.TEXT, True, t.encode()))
        env.ws.websocket_message(f)
    verdicts = [labels["verdict"] for labels, _ in samples(env, "dlproxy_flows_total")
                if labels["direction"] == "websocket"]
    return max(verdicts, key=ORDER.index)


def summary(env: Env, direction: str) -> dict:
    """What a guard's judging shows: its incidents and detections, without where (the location and direction
    name the guard)."""
    incidents = [{k: v for k, v in i.items() if k in ("action", "verdict", "dry_run")}
                 | {"reason": i["reason"].split(" in ", 1)[0],  # "<name> in <location>…"
                    "findings": sorted((x["entry"], x["fingerprint"], x["masked"]) for x in i["findings"])}
                 for i in env.incidents() if i["direction"] == direction]
    detections = sorted((labels["entry"], labels["action"], value)
                        for labels, value in samples(env, "dlproxy_detections_total")
                        if labels["direction"] == direction)
    return {"incidents": incidents, "detections": detections}


CASES = {
    "block": ([f"a {GHP} b"], "example.org", Verdict.BLOCKED),
    "redact": ([f"a {GHO} b"], "example.org", Verdict.REDACTED),
    "log": ([f"a {NPM} b"], "example.org", Verdict.LOGGED),
    "redact-and-log": ([f"a {GHO} b {NPM} c"], "example.org", Verdict.REDACTED),
    "same-secret-twice": ([f"a {GHO} b", f"again {GHO}"], "example.org", Verdict.REDACTED),
    "issuer-host-not-use-position": ([f"a {GHP} b"], "api.github.com", Verdict.BLOCKED),
    "clean": (["nothing here"], "example.org", Verdict.CLEAN),
}


@pytest.mark.parametrize("case", CASES)
def test_a_stream_and_a_websocket_judge_the_same_secrets_alike(env, case):
    texts, host, expected = CASES[case]
    stream_verdict = through_stream(env, texts, host)
    ws_verdict = through_websocket(env, texts, host)
    assert stream_verdict == ws_verdict == expected
    stream, ws = summary(env, "response"), summary(env, "websocket")
    assert stream == ws
    assert len(stream["incidents"]) == (0 if expected == Verdict.CLEAN else 1)  # once per secret
    assert expected == Verdict.CLEAN or stream["detections"]
    out = env.out.getvalue()
    assert GHP not in out and GHO not in out and NPM not in out


# --- the judge itself ------------------------------------------------------------------------------------------


def finding(env: Env, token: str):
    (f,) = env.guard.state.current.detector.scan(token.encode())
    return f.at("body:stream")


def test_each_secret_is_judged_and_recorded_once(env):
    judge = judge_for(env, )
    f = finding(env, GHO)
    assert judge.verdicts.check([f], GHO.encode()) == (None, [f])
    assert judge.verdicts.check([f], GHO.encode()) == (None, [f])  # again: the same action, nothing recorded
    assert len(env.incidents()) == 1
    assert samples(env, "dlproxy_detections_total") == [
        ({"entry": "github-oauth", "direction": "response", "action": "redact"}, 1.0)]
    assert judge.verdict == Verdict.REDACTED and judge.incident_id == env.incidents()[0]["incident_id"]


def test_the_most_severe_verdict_is_kept_and_a_block_names_the_incident(env):
    judge = judge_for(env, )
    judge.verdicts.check([finding(env, NPM)], NPM.encode())
    logged = judge.incident_id
    assert judge.verdict == Verdict.LOGGED and logged and judge.block_decision is None
    judge.verdicts.check([finding(env, GHP)], GHP.encode())
    assert judge.verdict == Verdict.BLOCKED and judge.incident_id != logged
    blocked = judge.incident_id
    assert judge.block_decision is not None and judge.block_decision.enforcement == Enforcement.BLOCK
    judge.verdicts.check([finding(env, GHO)], GHO.encode())  # a later, milder decision changes neither
    assert judge.verdict == Verdict.BLOCKED and judge.incident_id == blocked
    assert [i["action"] for i in env.incidents()] == ["log", "block", "redact"]


def test_a_redaction_that_cannot_be_done_becomes_a_block(env):
    judge = judge_for(env, )
    judge.unredactable = "split across messages, the part already sent cannot be redacted"
    blocked, redact = judge.verdicts.check([finding(env, GHO)], GHO.encode())
    assert blocked is not None and redact == []
    (incident,) = env.incidents()
    assert incident["action"] == "block" and "the part already sent cannot be redacted" in incident["reason"]
    assert samples(env, "dlproxy_detections_total")[0][0]["action"] == "block"


def test_the_judge_reads_dry_run_when_it_judges(env):
    judge = judge_for(env, )
    env.tctx.options.update(dlp_dry_run=True)
    blocked, redact = judge.verdicts.check([finding(env, GHP)], GHP.encode())
    assert blocked is None and redact == []
    (incident,) = env.incidents()
    assert incident["dry_run"] is True and incident["action"] == "block"


def test_unscannable_parts_are_decided_by_policy_and_noted(env):
    judge = judge_for(env, )
    decision = judge.unscannable("body:stream", Reason.CORRUPT_ENCODING)
    assert decision.enforcement == Enforcement.BLOCK and judge.block_decision is decision
    assert samples(env, "dlproxy_unscannable_total") == [({"reason": "corrupt_encoding"}, 1.0)]
    assert env.incidents()[0]["unscannable"] == [{"location": "body:stream", "reason": "corrupt_encoding"}]


def test_fail_counts_records_and_leaves_a_block_decision_whatever_on_error_says(env):
    f = tflow.tflow(resp=True)
    judge = judge_for(env, f)
    env.tctx.options.update(dlp_dry_run=True)  # the recorded decision passes: the caller still cuts
    try:
        raise RuntimeError("scanner bug with " + GHP)
    except RuntimeError as exc:
        judge.fail(f, exc, "stream inspection failed, cutting the response of", None)
    assert judge.block_decision is not None and judge.block_decision.enforcement == Enforcement.BLOCK
    assert judge.verdict == Verdict.ERROR and judge.incident_id
    assert samples(env, "dlproxy_inspection_errors_total") == [({"reason": "RuntimeError"}, 1.0)]
    assert GHP not in env.out.getvalue()


def test_guards_put_the_judges_verdict_and_incident_on_the_flow(env):
    f = tflow.tflow(resp=True)
    f.response.headers.clear()
    f.response.headers.update({"content-type": "text/plain", "transfer-encoding": "chunked"})
    f.response.content = None
    env.guard.responseheaders(f)
    judge = f.response.stream.judge
    f.response.stream(f"x {NPM} y".encode())
    f.response.stream(b"")
    assert f.metadata[VERDICT] == judge.verdict == Verdict.LOGGED
    assert f.metadata[INCIDENT] == judge.incident_id == env.incidents()[0]["incident_id"]


# --- trailers ---------------------------------------------------------------------------------------------------------


def test_token_in_a_streamed_response_trailer_cuts_before_the_held_tail(env):
    """The trailers are on the message before the final call (mitmproxy stores them, then ends the body): judged
    while the tail that could still become a token is held, so the cut sends neither the tail nor the trailers."""
    f = response_flow({"content-type": "text/plain", "transfer-encoding": "chunked"})
    env.guard.responseheaders(f)
    sent = f.response.stream(b"clean text ghp_")  # 'ghp_' could begin a token: held
    f.response.trailers = http.Headers(grpc_message=f"denied {GHP}")
    sent += f.response.stream(b"")
    assert b"".join(sent) == b"clean text " and f.response.trailers is None
    assert env.closed == [f]
    (incident,) = env.incidents()
    assert incident["action"] == "block" and incident["findings"][0]["location"] == "trailer:grpc-message"
    assert env.sample("dlproxy_flows_total", direction="response", verdict="blocked") == 1
    assert GHP not in env.out.getvalue()


def test_trailer_arriving_after_a_cut_is_dropped(env):
    f = response_flow({"content-type": "text/plain", "transfer-encoding": "chunked"})
    env.guard.responseheaders(f)
    run_stream(f, [f"x {GHP} y".encode()])
    f.response.trailers = http.Headers(x_note="harmless")
    assert f.response.stream(b"") == [] and f.response.trailers is None


def test_redact_in_a_streamed_request_trailer(env):
    env.tctx.options.stream_large_bodies = "1"
    f = tflow.tflow()
    f.request.headers["transfer-encoding"] = "chunked"
    env.guard.requestheaders(f)
    assert isinstance(f.request.stream, FlowStream)
    sent = f.request.stream(b"payload")
    f.request.trailers = http.Headers(x_token=f"t={GHO}", x_other="ok")
    sent += f.request.stream(b"")
    assert b"".join(sent) == b"payload" and env.closed == []
    assert f.request.trailers.fields == ((b"x-token", b"t=[REDACTED:github-oauth]"), (b"x-other", b"ok"))
    (incident,) = env.incidents()
    assert incident["action"] == "redact"


def test_clean_trailers_pass_untouched(env):
    f = response_flow({"content-type": "application/grpc"})
    env.guard.responseheaders(f)
    f.response.trailers = http.Headers(grpc_status="0", grpc_message="all%20fine")
    assert run_stream(f, [b"\0\0\0\0\x01a"]) == b"\0\0\0\0\x01a"
    assert f.response.trailers.fields == ((b"grpc-status", b"0"), (b"grpc-message", b"all%20fine"))
    assert env.closed == [] and env.incidents() == []


def test_buffered_request_trailer_is_blocked_with_403(env):
    f = tflow.tflow()
    f.request.trailers = http.Headers(x_token=GHP)
    env.guard.inspectors["request"].request(f)
    assert f.response is not None and f.response.status_code == 403
    assert json.loads(f.response.content)["error"]["findings"][0]["location"] == "trailer:x-token"


def test_buffered_response_trailer_is_withheld_with_502(env):
    f = tflow.tflow(resp=True)
    f.response.trailers = http.Headers(grpc_message="bad%20" + "".join(f"%{ord(c):02X}" for c in GHP))
    env.guard.inspectors["response"].response(f)
    assert f.response.status_code == 502 and not f.response.trailers


def test_http1_trailer_reader_hands_the_trailers_back():
    """carry_http1_trailers relies on h11's ChunkedReader ending a message with its trailer section, and on the
    HTTP/1 layer's names it wraps."""
    import h11
    from h11._readers import ChunkedReader
    from h11._receivebuffer import ReceiveBuffer
    from mitmproxy.proxy.layers.http import _http1

    internals.carry_http1_trailers()
    internals.carry_http1_trailers()  # idempotent: wrapped once
    assert _http1.make_body_reader.__name__ == "make_body_reader" and _http1.dlp_trailers
    assert _http1.Http1Connection.read_body.__name__ == "read_body_with_trailers"
    assert _http1.Http1Server.send.__name__ == _http1.Http1Client.send.__name__ == "send_with_trailers"
    reader = _http1.make_body_reader(None)
    buf = ReceiveBuffer()
    buf += b"5\r\nhello\r\n0\r\nX-Token: abc\r\n\r\n"
    assert isinstance(reader(buf), h11.Data)
    end = reader(buf)
    assert isinstance(end, h11.EndOfMessage) and not end.headers
    assert reader.trailers.fields == ((b"X-Token", b"abc"),)
    assert isinstance(reader.reader, ChunkedReader) and not isinstance(_http1.make_body_reader(5), type(reader))


def test_http1_chunks_of_one_read_become_one_data_event():
    """The chunks of a chunked body that arrive in one read reach mitmproxy (and a stream callable) as one data
    event, never delayed past that read; trailers still come right before the end of the message."""
    from mitmproxy import options
    from mitmproxy.proxy import context, events
    from mitmproxy.proxy.layers.http import _http1
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import ResponseData, ResponseEndOfMessage, ResponseTrailers

    internals.carry_http1_trailers()
    tctx = context.Context(tflow.tclient_conn(), options.Options())
    tctx.server = tflow.tserver_conn()
    conn = _http1.Http1Client(tctx)
    conn.stream_id, conn.request, conn.response = 1, tflow.treq(), tflow.tresp()
    conn.body_reader = _http1.make_body_reader(None)

    def read(wire: bytes) -> list:
        conn.buf += wire
        return [c.event for c in conn.read_body(events.DataReceived(tctx.server, wire)) if isinstance(c, ReceiveHttp)]

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    assert read(chunk(b"hello ") + chunk(b"chunked ") + chunk(b"wor")[:4]) == [ResponseData(1, b"hello chunked w")]
    assert read(chunk(b"wor")[4:]) == [ResponseData(1, b"or")]
    got = read(chunk(b"one") + chunk(b"two") + b"0\r\nX-Token: abc\r\n\r\n")
    assert [type(e) for e in got] == [ResponseData, ResponseTrailers, ResponseEndOfMessage]
    assert got[0].data == b"onetwo" and got[1].trailers.fields == ((b"X-Token", b"abc"),)


# --- mitmproxy internals we rely on (proxy/internals.py) ------------------------------------------------------------------


def test_pinned_mitmproxy_internals():
    from mitmproxy.addons.proxyserver import Proxyserver
    from mitmproxy.proxy import events, server
    from mitmproxy.proxy.layers import websocket as ws_layer

    assert version.VERSION.startswith("12.3."), "re-check close_upstream/close_websocket against this version"
    assert isinstance(Proxyserver().connections, dict)
    for name in ("close_connection", "server_event", "transports"):
        assert hasattr(server.ConnectionHandler, name) or name in server.ConnectionHandler.__init__.__code__.co_names
    assert events.DataReceived(tflow.tserver_conn(), b"x").data == b"x"
    relay = inspect.getsource(ws_layer.WebsocketLayer.relay_messages)
    assert "wsproto.events.CloseConnection" in relay and "commands.CloseConnection(ws.conn)" in relay


def test_close_frame_is_what_wsproto_reads_as_a_close():
    from wsproto.frame_protocol import FrameProtocol

    proto = FrameProtocol(client=True, extensions=[])  # we pose as the server: unmasked frames
    proto.receive_bytes(close_frame(1008, "dlp_violation: credential detected (incident abc)"))
    (frame,) = list(proto.received_frames())
    assert frame.opcode == Opcode.CLOSE and frame.payload == (1008, "dlp_violation: credential detected (incident abc)")
    assert wsproto.events.CloseConnection(1008, "x").code == 1008
    assert len(close_frame(1008, "é" * 200)) <= 127


def test_upstream_framing_waits_for_the_lazy_upstream_handshake():
    """An HTTP/2 upload whose TLS upstream is not connected yet: chunked framing until the handshake says h2; the
    ALPN is remembered per client connection and address (an upload over the open connection is decided at once)
    and forgotten with the client."""
    from types import SimpleNamespace

    from mitmproxy import connection

    from dlproxy.proxy.streamguard import UpstreamFraming

    framing = UpstreamFraming()

    def upload():
        f = tflow.tflow()
        f.request.http_version, f.request.scheme, f.request.host, f.request.port = "HTTP/2.0", "https", "h", 443
        f.server_conn = connection.Server(address=None)
        f.request.headers["transfer-encoding"] = "chunked"
        return f

    first = upload()
    assert framing.expects_http11(first) and framing.waiting[first.client_conn.id] == [first]
    other = upload()
    other.request.host, other.client_conn = "elsewhere", first.client_conn
    framing.expects_http11(other)
    server = connection.Server(address=("h", 443), alpn=b"h2")
    framing.tls_established_server(SimpleNamespace(context=SimpleNamespace(client=first.client_conn), conn=server))
    assert "transfer-encoding" not in first.request.headers and other.request.headers["transfer-encoding"] == "chunked"
    assert framing.waiting[first.client_conn.id] == [other]
    second = upload()
    second.client_conn = first.client_conn
    assert not framing.expects_http11(second)
    framing.error(second)
    framing.client_disconnected(first.client_conn)
    assert not framing.alpn and first.client_conn.id not in framing.waiting

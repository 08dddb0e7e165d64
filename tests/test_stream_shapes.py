"""Generic stream shapes: any SSE, NDJSON or AWS event stream whose events are JSON is reassembled per JSON string
path, so AI APIs without a named shape are covered too. One case per known API, each streamed a few characters per
event under random network chunkings:

- a clean reply comes out byte-identical;
- a token the model emits a few characters per event (plain, or escaped inside JSON-in-JSON tool arguments) is cut,
  and what the client can reassemble holds it in no decodable form (evasion.support.carries);
- the client gets the error in its own API's format, with the incident id.
"""

from __future__ import annotations

import json
import random
import re

import pytest

import stream_support
from dlproxy.inspect.sse import (
    EventStreamParser,
    LineParser,
    SSEParser,
    SSEScanner,
    error_event,
    eventstream_frame,
    eventstream_payload,
    flavor_of,
    generic_deltas,
    line_data,
    parse_fields,
)
from dlproxy.inspect.stream import BLOCK, REDACT
from evasion.support import carries
from stream_support import Judge
from tokens import make_ghp

builtin, ghp_only, detector = stream_support.builtin, stream_support.ghp_only, stream_support.detector

TOKEN = make_ghp("shapes")
TEXT = "Sure. Here is the value you asked for: {} and that is all for today, thanks."
CLEAN = "Sure. Here is a perfectly ordinary answer that mentions ghp_ and gh but no token at all."


def pieces(text: str, rng: random.Random, lo: int = 1, hi: int = 4) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(lo, hi)
        out.append(text[i:i + n])
        i += n
    return out


def sse(obj, event: str | None = None) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return (f"event: {event}\n" if event else "").encode() + b"data: " + data.encode() + b"\n\n"


def line(obj, prefix: str = "") -> bytes:
    return prefix.encode() + json.dumps(obj).encode() + b"\n"


# -- one builder per API: text pieces -> the wire bytes --------------------------------------------------------------


def gemini(parts: list[str]) -> bytes:
    out = [sse({"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}],
                "usageMetadata": {"promptTokenCount": 4}, "modelVersion": "gemini-2.0-flash",
                "responseId": "resp-abc123"}) for p in parts]
    out.append(sse({"candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                                    "index": 0}], "modelVersion": "gemini-2.0-flash", "responseId": "resp-abc123"}))
    return b"".join(out)


def vercel_v4(parts: list[str]) -> bytes:
    out = [line({"messageId": "msg-e2e"}, "f:")] + [line(p, "0:") for p in parts]
    out += [line({"finishReason": "stop", "usage": {"promptTokens": 1, "completionTokens": 2}, "isContinued": False},
                 "e:"), line({"finishReason": "stop", "usage": {"promptTokens": 1, "completionTokens": 2}}, "d:")]
    return b"".join(out)


def vercel_v5(parts: list[str]) -> bytes:
    out = [sse({"type": "start", "messageId": "msg-e2e"}), sse({"type": "start-step"}),
           sse({"type": "text-start", "id": "0"})]
    out += [sse({"type": "text-delta", "id": "0", "delta": p}) for p in parts]
    out += [sse({"type": "text-end", "id": "0"}), sse({"type": "finish-step"}), sse({"type": "finish"}),
            sse("[DONE]")]
    return b"".join(out)


def ollama_chat(parts: list[str]) -> bytes:
    out = [line({"model": "llama3.2", "created_at": f"2025-01-01T00:00:{i:02d}.{i * 7919:09d}Z",
                 "message": {"role": "assistant", "content": p}, "done": False}) for i, p in enumerate(parts)]
    out.append(line({"model": "llama3.2", "created_at": "2025-01-01T00:01:00Z",
                     "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"}))
    return b"".join(out)


def ollama_generate(parts: list[str]) -> bytes:
    out = [line({"model": "llama3.2", "created_at": f"2025-01-01T00:00:{i:02d}Z", "response": p, "done": False})
           for i, p in enumerate(parts)]
    out.append(line({"model": "llama3.2", "created_at": "2025-01-01T00:01:00Z", "response": "", "done": True}))
    return b"".join(out)


def bedrock(parts: list[str]) -> bytes:
    def frame(event_type: str, payload: dict) -> bytes:
        return eventstream_frame({":event-type": event_type, ":content-type": "application/json",
                                  ":message-type": "event"}, json.dumps(payload).encode())
    pad = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"
    out = [frame("messageStart", {"role": "assistant", "p": pad[:5]})]
    out += [frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}, "p": pad[:7 + i % 40]})
            for i, p in enumerate(parts)]
    out += [frame("contentBlockStop", {"contentBlockIndex": 0, "p": pad[:3]}),
            frame("messageStop", {"stopReason": "end_turn", "p": pad[:9]})]
    return b"".join(out)


def mcp(parts: list[str]) -> bytes:
    """An MCP tools/call result over streamable HTTP: progress notifications, then the result."""
    out = [sse({"jsonrpc": "2.0", "method": "notifications/progress",
                "params": {"progressToken": "t1", "progress": i, "message": p}}, "message")
           for i, p in enumerate(parts)]
    out.append(sse({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "done"}],
                                                          "isError": False}}, "message"))
    return b"".join(out)


def openai_tool_args(parts: list[str]) -> bytes:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    out = [sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "save", "arguments": ""}}]},
        "finish_reason": None}]})]
    out += [sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
        "arguments": p}}]}, "finish_reason": None}]}) for p in parts]
    out += [sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}), sse("[DONE]")]
    return b"".join(out)


def responses_tool_args(parts: list[str]) -> bytes:
    out = [sse({"type": "response.output_item.added", "output_index": 0, "item": {"type": "function_call",
                "id": "fc_1", "name": "save", "arguments": ""}}, "response.output_item.added")]
    out += [sse({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0,
                 "delta": p}, "response.function_call_arguments.delta") for p in parts]
    out.append(sse({"type": "response.completed", "response": {"id": "resp_1", "status": "completed"}},
                   "response.completed"))
    return b"".join(out)


def anthropic_partial_json(parts: list[str]) -> bytes:
    out = [sse({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                     "content": []}}, "message_start"),
           sse({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1",
                                                                             "name": "save", "input": {}}},
               "content_block_start")]
    out += [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta",
                                                                      "partial_json": p}}, "content_block_delta")
            for p in parts]
    out += [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_stop"}, "message_stop")]
    return b"".join(out)


def _json_args(text: str) -> str:
    """Tool arguments: JSON source, with the text as a string value (escapes included: JSON inside JSON)."""
    return json.dumps({"note": "x", "value": text})


# name -> (framing, flavor, builder, how the text is put into the stream)
SHAPES = {
    "gemini": ("sse", None, gemini, str),
    "vercel_v4": ("lines", "vercel-data", vercel_v4, str),
    "vercel_v5": ("sse", "vercel-ui", vercel_v5, str),
    "ollama_chat": ("lines", "ollama", ollama_chat, str),
    "ollama_generate": ("lines", "ollama", ollama_generate, str),
    "bedrock_converse": ("eventstream", None, bedrock, str),
    "mcp_progress": ("sse", "mcp", mcp, str),
    "openai_tool_args": ("sse", "openai", openai_tool_args, _json_args),
    "responses_tool_args": ("sse", "openai", responses_tool_args, _json_args),
    "anthropic_partial_json": ("sse", "anthropic", anthropic_partial_json, _json_args),
}


def run(det, framing, flavor, wire: bytes, rng: random.Random, action=BLOCK):
    judge = Judge(action)
    scanner = SSEScanner(det, judge, flavor, framing=framing)
    out = []
    i = 0
    while i < len(wire):
        n = rng.choice([1, 5, 17, 64, 400])
        out += scanner.feed(wire[i:i + n])
        i += n
    out += scanner.finish()
    return b"".join(out), scanner, judge


def reassembled(out: bytes, framing: str) -> bytes:
    """Everything a client can rebuild from what it received: every string value per JSON path, concatenated."""
    parser = {"sse": SSEParser, "lines": LineParser, "eventstream": EventStreamParser}[framing]()
    raws = parser.feed(out) + ([parser.rest()] if framing != "eventstream" else [])
    channels: dict = {}
    for raw in raws:
        if framing == "sse":
            data = parse_fields(raw)[1]
        elif framing == "lines":
            data = line_data(raw)[0]
        else:
            data = eventstream_payload(raw)
        try:
            obj = json.loads(data or "")
        except ValueError:
            continue
        for d in generic_deltas(obj, {}):
            channels[d.key] = channels.get(d.key, "") + d.text
    return "\n".join(channels.values()).encode()


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("seed", range(5))
def test_clean_reply_is_byte_identical(name, seed, detector):
    framing, flavor, build, put = SHAPES[name]
    wire = build(pieces(put(CLEAN), random.Random(seed)))
    out, scanner, judge = run(detector, framing, flavor, wire, random.Random(seed))
    assert out == wire and not scanner.stopped and judge.calls == []


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("seed", range(8))
def test_token_a_few_characters_per_event_is_cut(name, seed, detector):
    framing, flavor, build, put = SHAPES[name]
    wire = build(pieces(put(TEXT.format(TOKEN)), random.Random(seed)))
    out, scanner, judge = run(detector, framing, flavor, wire, random.Random(seed))
    assert scanner.stopped and len(judge.calls) == 1
    assert not carries(reassembled(out, framing), TOKEN.encode()) and TOKEN[-10:].encode() not in out


@pytest.mark.parametrize("name", ["openai_tool_args", "responses_tool_args", "anthropic_partial_json"])
@pytest.mark.parametrize("escape", ["\n", "\t", "\\"])
def test_json_inside_json_is_reassembled_then_unescaped(name, escape, ghp_only):
    """A token glued to an escape inside tool arguments: only visible once the reassembled arguments are unescaped."""
    framing, flavor, build, _put = SHAPES[name]
    args = json.dumps({"cmd": "echo" + escape + TOKEN})
    assert TOKEN in args and (escape == "\\" or "\\" + {"\n": "n", "\t": "t"}[escape] + "ghp_" in args)
    for seed in range(6):
        wire = build(pieces(args, random.Random(seed)))
        out, scanner, judge = run(ghp_only, framing, flavor, wire, random.Random(seed))
        assert scanner.stopped, seed
        assert not carries(reassembled(out, framing), TOKEN.encode())


def test_unicode_escaped_token_in_tool_arguments_is_cut(ghp_only):
    framing, flavor, build, _put = SHAPES["anthropic_partial_json"]
    args = '{"k": "' + "".join(f"\\u{ord(c):04x}" for c in TOKEN) + '"}'
    out, scanner, _ = run(ghp_only, framing, flavor, build(pieces(args, random.Random(1))), random.Random(2))
    assert scanner.stopped and not carries(reassembled(out, framing), TOKEN.encode())


def test_escaped_token_in_tool_arguments_is_redacted_in_place(ghp_only):
    framing, flavor, build, _put = SHAPES["openai_tool_args"]
    args = json.dumps({"cmd": "echo\n" + TOKEN + " done"})
    out, scanner, judge = run(ghp_only, framing, flavor, build(pieces(args, random.Random(3))), random.Random(4),
                              REDACT)
    assert not scanner.stopped and len(judge.calls) == 1
    text = reassembled(out, framing).decode()
    assert "[REDACTED:github-classic-pat]" in text and TOKEN[4:] not in text
    args_line = next(t for t in text.split("\n") if t.startswith('{"cmd"'))
    # a head of "ghp_" that went out before the token was decided stays; the marker replaces the rest
    assert re.fullmatch(r"echo\n(g|gh|ghp)?\[REDACTED:github-classic-pat\] done", json.loads(args_line)["cmd"])


def test_constant_fields_do_not_hold_clean_events(ghp_only):
    """Ids repeated in every event stay out of their channel: each clean event goes out as soon as it arrives."""
    scanner = SSEScanner(ghp_only, Judge(), None, framing="sse")
    for word in ["Hello", " there", ", friend", "."]:
        ev = sse({"id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "x.chunk", "model": "m-2025-01-01",
                  "candidates": [{"content": {"parts": [{"text": word}]}}]})
        assert scanner.feed(ev) == [ev]


def test_base64_json_inside_an_event_is_decoded(ghp_only):
    """Bedrock InvokeModelWithResponseStream: each frame's `chunk.bytes` is base64 of a JSON delta."""
    import base64

    def frame(text):
        inner = base64.b64encode(json.dumps({"type": "content_block_delta", "index": 0,
                                             "delta": {"type": "text_delta", "text": text}}).encode()).decode()
        return eventstream_frame({":event-type": "chunk", ":message-type": "event"},
                                 json.dumps({"bytes": inner}).encode())
    wire = b"".join(frame(p) for p in pieces(TEXT.format(TOKEN), random.Random(5)))
    out, scanner, _ = run(ghp_only, "eventstream", None, wire, random.Random(6))
    assert scanner.stopped and TOKEN[-8:].encode() not in reassembled(out, "eventstream")


def test_flavors_from_event_shapes():
    assert flavor_of({"candidates": []}) == "gemini"
    assert flavor_of({"jsonrpc": "2.0", "id": 1, "result": {}}) == "mcp"
    assert flavor_of({"type": "text-delta", "id": "0", "delta": "x"}) == "vercel-ui"
    assert flavor_of({"model": "m", "message": {"content": "x"}, "done": False}) == "ollama"


BODY = {"error": {"type": "dlp_violation", "code": "credential_detected", "message": "Request blocked",
                  "incident_id": "inc-123", "findings": [{"entry": "github-classic-pat", "masked": "ghp_…"}]}}


def test_error_events_in_each_api_format():
    gem = json.loads(parse_fields(error_event("gemini", BODY))[1])
    assert gem["error"]["code"] == 403 and gem["error"]["status"] == "PERMISSION_DENIED"
    assert gem["error"]["incident_id"] == "inc-123"
    rpc = json.loads(parse_fields(error_event("mcp", BODY, rpc_id=7))[1])
    assert rpc["jsonrpc"] == "2.0" and rpc["id"] == 7 and rpc["error"]["code"] == -32001
    assert rpc["error"]["data"]["incident_id"] == "inc-123"
    ui = json.loads(parse_fields(error_event("vercel-ui", BODY))[1])
    assert ui["type"] == "error" and "inc-123" in ui["errorText"]
    v4 = error_event("vercel-data", BODY, "lines")
    assert v4.startswith(b'3:"') and b"inc-123" in v4 and v4.endswith(b"\n")
    oll = json.loads(error_event("ollama", BODY, "lines"))
    assert "inc-123" in oll["error"]
    frame = error_event(None, BODY, "eventstream")
    parsed = EventStreamParser().feed(frame)
    assert parsed == [frame] and json.loads(eventstream_payload(frame))["incident_id"] == "inc-123"
    assert b"accessDeniedException" in frame
    anth = json.loads(parse_fields(error_event("anthropic", BODY))[1])
    assert anth == {"type": "error", "error": BODY["error"]}


def test_eventstream_parser_rejects_garbage_and_bounds_frames():
    with pytest.raises(ValueError):
        EventStreamParser().feed(b"\x00" * 16)
    frame = eventstream_frame({":message-type": "event"}, b"x" * 100)
    with pytest.raises(ValueError):
        EventStreamParser(max_event=50).feed(frame)

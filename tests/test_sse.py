"""sse.py: SSE parsing, delta reassembly for OpenAI Chat Completions / Responses / Anthropic Messages, hold-back of
whole events, redaction inside deltas, error events.

For every API: a clean reply streamed a few characters per event comes out byte-identical under 25 random
network chunkings; a token the model emits a few characters per event is always cut, and what the client can
reassemble holds at most a proper head of its public literal prefix ("gh" of "ghp_"), never a byte past it; events
are held only while a token may be in flight.
"""

from __future__ import annotations

import base64
import json
import random
import re

import pytest

import stream_support
from dlproxy.inspect.sse import (
    HoldLimit,
    SSEParser,
    SSEScanner,
    error_event,
    extract_deltas,
    finished_channels,
    flavor_of,
    parse_fields,
)
from dlproxy.inspect.stream import BLOCK, PASS, REDACT
from stream_support import Judge, assert_cut_at_a_head
from tokens import PUBLIC_GHP, make_ghp

# the shared Detector fixtures, bound here so pytest finds them in this module
builtin, ghp_only, detector = stream_support.builtin, stream_support.ghp_only, stream_support.detector


# --- the three APIs' streams, a few characters per event ----------------------------------------------------------


def pieces(text: str, rng: random.Random, lo: int = 1, hi: int = 5) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(lo, hi)
        out.append(text[i:i + n])
        i += n
    return out


def sse(data: dict | str, event: str | None = None) -> bytes:
    body = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + b"data: " + body.encode() + b"\n\n"


def openai_chat(parts: list[str], tool_args: list[str] = ()) -> bytes:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    out = [sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                      "finish_reason": None}]})]
    out += [sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in parts]
    if tool_args:
        out.append(sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function", "function": {"name": "save", "arguments": ""}}]},
            "finish_reason": None}]}))
        out += [sse({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": a}}]}, "finish_reason": None}]}) for a in tool_args]
    out.append(sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def openai_responses(parts: list[str], tool_args: list[str] = ()) -> bytes:
    out = [sse({"type": "response.created", "sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress"}},
               "response.created")]
    seq = 1
    for p in parts:
        out.append(sse({"type": "response.output_text.delta", "sequence_number": seq, "item_id": "msg_1",
                        "output_index": 0, "content_index": 0, "delta": p}, "response.output_text.delta"))
        seq += 1
    out.append(sse({"type": "response.output_text.done", "sequence_number": seq, "item_id": "msg_1",
                    "output_index": 0, "content_index": 0, "text": "".join(parts)}, "response.output_text.done"))
    for a in tool_args:
        seq += 1
        out.append(sse({"type": "response.function_call_arguments.delta", "sequence_number": seq, "item_id": "fc_1",
                        "output_index": 1, "delta": a}, "response.function_call_arguments.delta"))
    out.append(sse({"type": "response.completed", "sequence_number": seq + 1,
                    "response": {"id": "resp_1", "status": "completed"}}, "response.completed"))
    return b"".join(out)


def anthropic(parts: list[str], tool_json: list[str] = ()) -> bytes:
    out = [sse({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                    "content": [], "model": "claude"}}, "message_start"),
           sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start"),
           b"event: ping\ndata: {\"type\": \"ping\"}\n\n"]
    out += [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                "content_block_delta") for p in parts]
    out.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    if tool_json:
        out.append(sse({"type": "content_block_start", "index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "save", "input": {}}}, "content_block_start"))
        out += [sse({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta",
                                                                         "partial_json": j}}, "content_block_delta")
                for j in tool_json]
        out.append(sse({"type": "content_block_stop", "index": 1}, "content_block_stop"))
    out.append(sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta"))
    out.append(sse({"type": "message_stop"}, "message_stop"))
    return b"".join(out)


BUILDERS = {"openai": openai_chat, "responses": openai_responses, "anthropic": anthropic}


def client_text(stream: bytes) -> tuple[str, str, list[dict]]:
    """What an SDK reassembles: (text, tool arguments, error objects), parsing events like a client."""
    text, tool, errors = [], [], []
    parser = SSEParser()
    for raw in parser.feed(stream) + ([parser.rest()] if parser.rest() else []):
        name, data = parse_fields(raw)
        if data is None or data == "[DONE]":
            continue
        obj = json.loads(data)  # every forwarded event is valid JSON
        if name == "error" or "error" in obj:
            errors.append(obj)
            continue
        for d in extract_deltas(obj):
            (tool if "tool" in d.location or "arguments" in d.location or "partial_json" in d.location
             else text).append(d.text)
    return "".join(text), "".join(tool), errors


def feed_all(scanner: SSEScanner, chunks: list[bytes]) -> tuple[bytes, list[int]]:
    out, per_call = [], []
    for c in chunks:
        got = scanner.feed(c)
        assert all(got)
        out += got
        per_call.append(len(got))
    out += scanner.finish()
    return b"".join(out), per_call


def net_chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out, i = [], 0
    size = rng.choice([1, 2, 5, 13, 64, 500, 4096])
    while i < len(data):
        n = rng.randint(1, size)
        out.append(data[i:i + n])
        i += n
    return out


REPLY = ("Sure! Here is a short poem about streams:\n\nWater runs through gh-pages and sk-lines,\n"
         "AKIA-free and clean, ghp_ without the rest; tokens?\nNone here. Done.")


# --- clean streams --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", list(BUILDERS))
@pytest.mark.parametrize("seed", range(25))
def test_clean_stream_is_byte_identical(detector, api, seed):
    rng = random.Random(seed)
    stream = BUILDERS[api](pieces(REPLY, rng), pieces('{"path": "notes/gh.txt", "n": 1}', rng))
    judge = Judge()
    out, _ = feed_all(SSEScanner(detector, judge), net_chunks(stream, rng))
    assert out == stream
    assert judge.calls == []


def test_crlf_and_cr_line_endings_are_kept_byte_identical(ghp_only):
    stream = (b"event: a\r\ndata: {\"x\": 1}\r\n\r\n" b"data: plain\r\rdata: two\n\n"
              b": comment only\n\n" b"retry: 10\r\n\r\n")
    for seed in range(30):
        out, _ = feed_all(SSEScanner(ghp_only, Judge()), net_chunks(stream, random.Random(seed)))
        assert out == stream


def test_parser_splits_events_whatever_the_chunking():
    stream = b"data: a\n\ndata: b\r\n\r\ndata: c\r\rdata: d\ndata: e\n\n"
    want = [b"data: a\n\n", b"data: b\r\n\r\n", b"data: c\r\r", b"data: d\ndata: e\n\n"]
    for seed in range(40):
        parser = SSEParser()
        got = []
        for c in net_chunks(stream, random.Random(seed)):
            got += parser.feed(c)
        assert got == want and parser.rest() == b""
    assert parse_fields(b"event: x\ndata: 1\ndata:2\n: c\n\n") == ("x", "1\n2")


# --- tokens split across events ---------------------------------------------------------------------------------


@pytest.mark.parametrize("api", list(BUILDERS))
@pytest.mark.parametrize("seed", range(25))
def test_token_split_over_many_events_is_cut_within_its_public_prefix(detector, api, seed):
    rng = random.Random(seed)
    token = make_ghp(seed)
    before = "Here is the token you asked for: "
    reply = before + token + " — keep it safe."
    stream = BUILDERS[api](pieces(reply, rng, 1, 4))
    judge = Judge(BLOCK)
    scanner = SSEScanner(detector, judge)
    out, _ = feed_all(scanner, net_chunks(stream, rng))
    assert scanner.stopped
    text, _, errors = client_text(out)
    assert_cut_at_a_head(text, before)  # the reply up to the token, then at most "ghp": nothing past the prefix
    assert token[:4] not in out.decode()
    assert len(judge.calls) == 1
    (finding,) = judge.calls[0]
    assert finding.entry_id == "github-classic-pat"
    assert finding.location.startswith("sse:")


@pytest.mark.parametrize("api", list(BUILDERS))
@pytest.mark.parametrize("seed", range(10))
def test_token_in_tool_call_arguments_is_cut(ghp_only, api, seed):
    rng = random.Random(seed)
    token = make_ghp(f"tool{seed}")
    args = json.dumps({"github_token": token})
    stream = BUILDERS[api](pieces("Saving it now.", rng), pieces(args, rng, 1, 3))
    scanner = SSEScanner(ghp_only, Judge(BLOCK))
    out, _ = feed_all(scanner, net_chunks(stream, rng))
    assert scanner.stopped
    _, tool, _ = client_text(out)
    assert token[:4] not in tool and token not in out.decode()


def test_escaped_token_in_deltas_is_caught(ghp_only):
    """A token JSON-escaped in the deltas never appears literally on the wire; the reassembled text has it."""
    token = make_ghp("esc")
    parts = ["x: ", token[:2], token[2:10], token[10:]]
    stream = b"".join(
        b'data: {"choices": [{"index": 0, "delta": {"content": "'
        + "".join(f"\\u{ord(c):04x}" for c in p).encode() + b'"}}]}\n\n' for p in parts)
    scanner = SSEScanner(ghp_only, Judge(BLOCK))
    out, _ = feed_all(scanner, [stream])
    assert scanner.stopped
    assert client_text(out)[0] == "x: gh"  # the public head went out in its own delta; nothing after it


def test_token_whole_in_one_event_is_blocked_by_the_raw_scan(ghp_only):
    scanner = SSEScanner(ghp_only, Judge(BLOCK))
    out = scanner.feed(b"data: hello\n\n" + f"data: {{\"anything\": \"{PUBLIC_GHP}\"}}\n\n".encode())
    assert scanner.stopped and out == [b"data: hello\n\n"]


def test_plain_text_event_stream_reassembles_data(ghp_only):
    token = make_ghp("plain")
    stream = b"".join(f"data: {p}\n\n".encode() for p in ["start ", token[:5], token[5:20], token[20:], " end"])
    scanner = SSEScanner(ghp_only, Judge(BLOCK))
    out, _ = feed_all(scanner, [stream])
    assert scanner.stopped and out == b"data: start \n\n"


# --- minimal hold-back -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", list(BUILDERS))
def test_events_are_released_as_soon_as_they_complete(detector, api):
    """Clean text with no prefix fragment at the end of a delta: every event goes out in the call it completes."""
    words = "Streams of clean text are released at once , every event , no delay . ".split(" ")
    stream = BUILDERS[api]([w + " " for w in words])
    scanner = SSEScanner(detector, Judge())
    parser = SSEParser()
    for raw in parser.feed(stream):
        assert scanner.feed(raw) == [raw]
    assert scanner.finish() == []


def test_held_events_wait_only_for_the_prefix_to_be_decided(ghp_only):
    chunk = b'data: {"choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n'
    scanner = SSEScanner(ghp_only, Judge())
    assert scanner.feed(chunk % b"look: ") == [chunk % b"look: "]
    assert scanner.feed(chunk % b"gh") == [chunk % b"gh"]  # a head of ghp_ is public: not held
    assert scanner.feed(chunk % b"p_") == []  # the whole keyword: a token may follow
    assert scanner.feed(b"data: {\"choices\": []}\n\n") == []  # order is kept: waits behind the held event
    assert scanner.feed(chunk % b"host town") == [chunk % b"p_", b"data: {\"choices\": []}\n\n",
                                                  chunk % b"host town"]


@pytest.mark.parametrize("api", list(BUILDERS))
def test_model_style_deltas_ending_in_a_keyword_head_are_not_held(builtin, api):
    """" a", " secret", " do", " sk_li" end in heads of apify_api_, secretaccesskey, dop_v1_, sk_live_: public
    characters, released with their event. A mid-token key's opening (" sk-proj-…") and a whole keyword whose
    token is incomplete (" ghp_") are held."""
    scanner = SSEScanner(builtin, Judge())
    parser = SSEParser()
    words = ["Keep", " a", " secret", " or", " do", " not", " sk_li", " at all", " sk-proj-", "abc", " ghp_", "abc",
             " done"]
    held = []
    for raw in parser.feed(BUILDERS[api](words)):
        if raw not in scanner.feed(raw):
            held += [d.text for d in extract_deltas(json.loads(parse_fields(raw)[1]))]
    assert held == [" sk-proj-", "abc", " ghp_", "abc"]


@pytest.mark.parametrize("api", list(BUILDERS))
def test_words_that_could_start_base64_are_not_held_but_base64_is(builtin, api):
    """A delta ending in a long word ("Streaming") goes out with its event; a run that reads as base64 (digits or
    inner capitals) is held until it ends, 3 characters in."""
    scanner = SSEScanner(builtin, Judge())
    parser = SSEParser()
    words = ["Streaming", " proxies", " INSPECTING", " checking", " Z2hwX2Fi", "Y2Rl", " done"]
    held = []
    for raw in parser.feed(BUILDERS[api](words)):
        if raw not in scanner.feed(raw):
            held += [d.text for d in extract_deltas(json.loads(parse_fields(raw)[1]))]
    assert held == [" Z2hwX2Fi", "Y2Rl"]


@pytest.mark.parametrize("api", list(BUILDERS))
@pytest.mark.parametrize("seed", range(6))
def test_token_base64_encoded_a_few_characters_per_event_is_cut(ghp_only, api, seed):
    """The reassembled text goes through the base64 view of a streamed body: decoded once the run ends."""
    token = make_ghp(f"b64-{seed}")
    encoded = base64.b64encode(token.encode()).decode()
    rng = random.Random(seed)
    stream = BUILDERS[api](pieces(f"Here you go: {encoded} — keep it safe.", rng))
    judge = Judge(BLOCK)
    scanner = SSEScanner(ghp_only, judge)
    out, _ = feed_all(scanner, net_chunks(stream, rng))
    assert scanner.stopped and len(judge.calls) == 1 and judge.calls[0][0].location.endswith(":base64")
    text = client_text(out)[0]
    assert encoded[:8] not in text  # the run flows until it has 8 characters: at most 7 (5 bytes, "ghp_" + 1)


def test_finish_reason_and_done_release_a_held_tail(ghp_only):
    scanner = SSEScanner(ghp_only, Judge())
    held = b'data: {"choices": [{"index": 0, "delta": {"content": "ends with ghp_"}}]}\n\n'
    assert scanner.feed(held) == []
    stop = b'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
    assert scanner.feed(stop) == [held, stop]
    anth = SSEScanner(ghp_only, Judge())
    d = sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "ghp_"}})
    assert anth.feed(d) == []
    stop = sse({"type": "content_block_stop", "index": 0})
    assert anth.feed(stop) == []  # the next text block may go on with it (clients join the blocks' text)
    end = sse({"type": "message_stop"})
    assert anth.feed(end) == [d, stop, end]


def test_anthropic_text_reads_on_across_content_blocks(ghp_only):
    """A token whose head ends one text block and whose rest starts the next: the SDKs' text_stream and UIs join
    the blocks, so the text channel is the message's, not the block's (a tool's partial_json stays per block)."""
    token = make_ghp("blocks")
    scanner = SSEScanner(ghp_only, Judge(BLOCK))
    events = [sse({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
              + sse({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": part}})
              + sse({"type": "content_block_stop", "index": i}) for i, part in enumerate((token[:12], token[12:]))]
    out = b"".join(b"".join(scanner.feed(e)) for e in events)
    assert scanner.stopped and token[4:12].encode() not in out


def test_hold_limit(ghp_only):
    scanner = SSEScanner(ghp_only, Judge(), max_hold=1000)
    with pytest.raises(HoldLimit):
        scanner.feed(b"data: " + b"x" * 2000)


# --- redaction ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", list(BUILDERS))
@pytest.mark.parametrize("seed", range(15))
def test_redaction_replaces_the_token_in_the_deltas(detector, api, seed):
    rng = random.Random(seed)
    token = make_ghp(f"red{seed}")
    reply = f"Token: {token} (rotate it)."
    stream = BUILDERS[api](pieces(reply, rng, 1, 6))
    judge = Judge(REDACT)
    scanner = SSEScanner(detector, judge)
    out, _ = feed_all(scanner, net_chunks(stream, rng))
    assert not scanner.stopped
    text, _, errors = client_text(out)  # client_text parses every event: all stayed valid JSON
    # a head of "ghp_" that went out before the keyword was complete stays; the marker replaces the rest
    assert re.fullmatch(r"Token: (g|gh|ghp)?\[REDACTED:github-classic-pat\] \(rotate it\)\.", text), text
    assert token not in out.decode() and not errors
    assert len(judge.calls) == 1


@pytest.mark.parametrize("api", list(BUILDERS))
def test_token_whose_first_character_went_out_alone_is_cut(detector, api):
    """The token's "g" arrives in one event (released: a public head), the rest in later ones: the stream stops
    right after that "g", and the scanner stops (the caller appends the error event)."""
    token = make_ghp("first")
    judge = Judge(BLOCK)
    scanner = SSEScanner(detector, judge)
    out, _ = feed_all(scanner, [BUILDERS[api](["Here: ", token[0], token[1:8], token[8:15], token[15:], " end"])])
    assert scanner.stopped and len(judge.calls) == 1
    text, _, errors = client_text(out)
    assert text == "Here: g" and not errors


@pytest.mark.parametrize("api", list(BUILDERS))
def test_redaction_after_a_released_first_character(detector, api):
    token = make_ghp("first")
    stream = BUILDERS[api](["Here: ", token[0], token[1:8], token[8:15], token[15:], " end"])
    out, _ = feed_all(SSEScanner(detector, Judge(REDACT)), [stream])
    assert client_text(out)[0] == "Here: g[REDACTED:github-classic-pat] end"
    assert token[:4] not in out.decode()


def test_redaction_in_responses_done_event_too(ghp_only):
    token = make_ghp("done")
    stream = openai_responses(["a ", token[:10], token[10:], " b"])
    out, _ = feed_all(SSEScanner(ghp_only, Judge(REDACT)), [stream])
    assert token not in out.decode()
    done = [json.loads(parse_fields(e)[1]) for e in SSEParser().feed(out) if b"output_text.done" in e]
    assert done[0]["text"] == "a [REDACTED:github-classic-pat] b"


def test_log_action_passes_everything_through(ghp_only):
    token = make_ghp("log")
    stream = openai_chat(["k=", token[:7], token[7:], "."])
    judge = Judge(PASS)
    out, _ = feed_all(SSEScanner(ghp_only, judge), [stream])
    assert out == stream and len(judge.calls) == 1


# --- shapes and error events -----------------------------------------------------------------------------------------


def test_flavors_and_channels():
    assert flavor_of({"choices": []}) == "openai"
    assert flavor_of({"type": "response.output_text.delta"}) == "openai"
    assert flavor_of({"type": "content_block_delta"}) == "anthropic"
    assert flavor_of({"hello": 1}) is None
    two = {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "b"}}]}
    assert [d.key for d in extract_deltas(two)] == [("chat", 0, "content"), ("chat", 1, "content")]
    assert finished_channels({"type": "message_stop"}) is None
    assert finished_channels({"choices": [{"index": 1, "finish_reason": "stop"}]}) == [("chat", 1)]


def test_error_events_parse_as_each_sdk_expects():
    body = {"error": {"type": "dlp_violation", "code": "credential_detected", "message": "blocked",
                      "incident_id": "abc", "findings": []}}
    name, data = parse_fields(error_event("openai", body))
    assert name is None and json.loads(data) == body
    name, data = parse_fields(error_event("anthropic", body))
    assert name == "error" and json.loads(data) == {"type": "error", "error": body["error"]}
    name, data = parse_fields(error_event(None, body))
    assert name == "error" and json.loads(data) == body


def test_a_token_inside_one_delta_is_reported_at_its_delta(ghp_only):
    judge = Judge(BLOCK)
    scanner = SSEScanner(ghp_only, judge)
    scanner.feed(openai_chat([f"here {PUBLIC_GHP} there"]))
    assert scanner.stopped
    ((finding,),) = judge.calls
    assert finding.location == "sse:choices[0].delta.content" and finding.start == 5

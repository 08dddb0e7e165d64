"""Server-sent events: incremental parsing, AI-API delta reassembly, hold-back of whole events, error events.
Pure: no mitmproxy import.

    scanner = SSEScanner(detector, judge, flavor="openai")   # flavor: openai | anthropic | None (detect)
    out = scanner.feed(chunk)    # list of bytes to forward now: whole events, unchanged unless redacted
    out = scanner.finish()       # end of stream
    scanner.stopped              # a block verdict ended the stream; the caller appends error_event(...)

A model streams its reply a few characters per event, as JSON deltas, so a token is split across many events and
no single event holds it. The scanner rebuilds the text of every delta channel — OpenAI Chat Completions
`choices[i].delta.content` / `.tool_calls[j].function.arguments`, the Responses API `response.*.delta`,
Anthropic `content_block_delta` (`text_delta.text`, `input_json_delta.partial_json`, `thinking_delta.thinking`) —
and scans it through stream.TextScanner per channel. An event is forwarded, byte-identical, as soon as all the text it
carries is decided; it is held (with every event after it, to keep the order) only while a token may be in
flight in one of its channels. Each event's own bytes are scanned too, so a token inside any other field, or a
non-AI event stream, is caught as well.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..extract.core import Limits
from .stream import BLOCK, REDACT, HoldLimit, Judge, TextScanner, Verdicts, marker

EOL = re.compile(rb"\r\n|\r|\n")
MAX_EVENT_BYTES = 16 * 1024 * 1024  # a single event (or held events) larger than this cannot be inspected
ANTHROPIC_TYPES = frozenset({"message_start", "message_delta", "message_stop", "content_block_start",
                             "content_block_delta", "content_block_stop", "ping"})
CHAT_FIELDS = ("content", "refusal", "reasoning_content", "reasoning")
ANTHROPIC_DELTA_FIELDS = ("text", "partial_json", "thinking")
# Anthropic event type -> the object holding its text: a block's deltas, and the text a block starts with
ANTHROPIC_BLOCK_FIELD = {"content_block_delta": "delta", "content_block_start": "content_block"}
VERCEL_UI_TYPES = frozenset({"start", "start-step", "text-start", "text-delta", "text-end", "reasoning-start",
                             "reasoning-delta", "reasoning-end", "tool-input-start", "tool-input-delta",
                             "tool-input-available", "finish-step", "finish"})
NAMED = ("openai", "anthropic")  # shapes whose delta channels extract_deltas names; every other shape is generic
FINISH_ALL = ("response.completed", "response.failed", "response.incomplete", "message_stop")


# --- parsing ---------------------------------------------------------------------------------------------------


class _Framer:
    """What every framing parser keeps: the bytes of the event not yet complete, capped at `max_event`."""

    def __init__(self, max_event: int = MAX_EVENT_BYTES):
        self._buf = bytearray()
        self.max_event = max_event

    def _check(self, what: str) -> None:
        if len(self._buf) > self.max_event:
            raise HoldLimit(what)

    def rest(self) -> bytes:
        """An unterminated last event (at end of stream)."""
        out = bytes(self._buf)
        self._buf.clear()
        return out


class SSEParser(_Framer):
    """Splits a byte stream into raw events (each up to and including its blank line), bytes untouched."""

    def __init__(self, max_event: int = MAX_EVENT_BYTES):
        super().__init__(max_event)
        self._pos = 0  # start of the line being scanned

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        events: list[bytes] = []
        start = 0
        pos = self._pos
        n = len(buf)
        while True:
            m = EOL.search(buf, pos)
            if m is None:
                break
            if m.end() == n and buf[m.start()] == 13 and m.end() - m.start() == 1:
                break  # a lone CR at the end: could be the first half of CRLF
            blank = m.start() == pos
            pos = m.end()
            if blank:
                events.append(bytes(buf[start:pos]))
                start = pos
        if start:
            del buf[:start]
            pos -= start
        self._pos = pos
        self._check("event too large")
        return events

    def rest(self) -> bytes:
        self._pos = 0
        return super().rest()


class LineParser(_Framer):
    """Splits a byte stream into lines (each with its line end), bytes untouched: NDJSON, Vercel data streams."""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        end = buf.rfind(b"\n") + 1
        lines = bytes(buf[:end]).splitlines(keepends=True) if end else []
        del buf[:end]
        self._check("line too large")
        return lines


class EventStreamParser(_Framer):
    """Splits AWS `application/vnd.amazon.eventstream` (Bedrock ConverseStream, InvokeModelWithResponseStream) into
    whole frames: a 12-byte prelude (total length, headers length, CRC), headers, payload, message CRC."""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= 12:
            total, headers_len, crc = struct.unpack("!III", buf[:12])
            if zlib.crc32(bytes(buf[:8])) != crc or total < 16 or headers_len > total - 16:
                raise ValueError("not an event stream frame")
            if total > self.max_event:
                raise HoldLimit("frame too large")
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out


_VERCEL_PART = re.compile(r"\A([0-9a-z]{1,2}):(?=[\[{\"0-9tfn-])")


def line_data(raw: bytes) -> tuple[str | None, str]:
    """(data, prefix) of one line: NDJSON is the line itself; a Vercel AI SDK data stream part `0:"text"` is the
    JSON after its type code."""
    # JSON text sequences (RFC 7464) start each record with RS; a byte order mark may start the stream
    text = raw.decode("utf-8", "replace").rstrip("\r\n").lstrip("\x1e\ufeff")
    if not text.strip():
        return None, ""
    m = _VERCEL_PART.match(text)
    if m is not None:
        return text[m.end():], m.group()
    return text, ""


def eventstream_payload(raw: bytes) -> str | None:
    """The payload of one event stream frame, as text (JSON for Bedrock)."""
    _total, headers_len = struct.unpack("!II", raw[:8])
    return raw[12 + headers_len:-4].decode("utf-8", "replace")


def parse_fields(raw: bytes) -> tuple[str | None, str | None]:
    """(event name, data) of one raw event; data lines joined with \\n, None when there are none."""
    name = None
    data: list[str] = []
    if raw[:3] == b"\xef\xbb\xbf":  # a byte order mark starting the stream: the client's decoder drops it
        raw = raw[3:]
    for line in EOL.split(raw):
        if not line or line[0] == 58:  # blank or ":" comment
            continue
        key, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if key == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif key == b"event":
            name = value.decode("utf-8", "replace")
    return name, ("\n".join(data) if data else None)


# --- what the AI APIs stream --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delta:
    key: tuple  # the channel: one per choice/tool call/content block/output item
    text: str
    path: tuple  # where the text sits in the event's JSON, for redaction
    location: str  # for findings


def flavor_of(obj: Any) -> str | None:
    """openai | anthropic | gemini | mcp | ollama | vercel-ui | None, from the shape of one event's JSON."""
    if not isinstance(obj, dict):
        return None
    if "choices" in obj or str(obj.get("object", "")).startswith(("chat.completion", "text_completion")):
        return "openai"
    typ = obj.get("type")
    if isinstance(typ, str):
        if typ.startswith("response."):
            return "openai"
        if typ in ANTHROPIC_TYPES:
            return "anthropic"
        if typ in VERCEL_UI_TYPES:
            return "vercel-ui"
    if "candidates" in obj or "promptFeedback" in obj:
        return "gemini"
    if obj.get("jsonrpc") == "2.0":
        return "mcp"
    if "done" in obj and ("message" in obj or "response" in obj):
        return "ollama"
    return None


def extract_deltas(obj: Any) -> list[Delta]:
    """Every text delta in one event's JSON, with the channel it continues."""
    if not isinstance(obj, dict):
        return []
    out: list[Delta] = []
    choices = obj.get("choices")
    if isinstance(choices, list):  # OpenAI Chat Completions (and legacy Completions)
        for i, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            idx = choice.get("index", i)
            text = choice.get("text")
            if isinstance(text, str) and text:
                out.append(Delta(("chat", idx, "text"), text, ("choices", i, "text"), f"sse:choices[{idx}].text"))
            delta = choice.get("delta")
            if not isinstance(delta, dict):
                continue
            for name in CHAT_FIELDS:
                value = delta.get(name)
                if isinstance(value, str) and value:
                    out.append(Delta(("chat", idx, name), value, ("choices", i, "delta", name),
                                     f"sse:choices[{idx}].delta.{name}"))
            calls = delta.get("tool_calls")
            if isinstance(calls, list):
                for j, call in enumerate(calls):
                    fn = call.get("function") if isinstance(call, dict) else None
                    args = fn.get("arguments") if isinstance(fn, dict) else None
                    if isinstance(args, str) and args:
                        t = call.get("index", j)
                        out.append(Delta(("chat", idx, "tool", t), args,
                                         ("choices", i, "delta", "tool_calls", j, "function", "arguments"),
                                         f"sse:choices[{idx}].delta.tool_calls[{t}].function.arguments"))
            fc = delta.get("function_call")
            if isinstance(fc, dict) and isinstance(fc.get("arguments"), str) and fc["arguments"]:
                out.append(Delta(("chat", idx, "function_call"), fc["arguments"],
                                 ("choices", i, "delta", "function_call", "arguments"),
                                 f"sse:choices[{idx}].delta.function_call.arguments"))
        return out
    typ = obj.get("type")
    if not isinstance(typ, str):
        return out
    if typ in ANTHROPIC_BLOCK_FIELD:  # Anthropic Messages
        field = ANTHROPIC_BLOCK_FIELD[typ]
        block = obj.get(field)
        idx = obj.get("index", 0)
        if isinstance(block, dict):
            for name in ANTHROPIC_DELTA_FIELDS:
                value = block.get(name)
                if isinstance(value, str) and value:
                    # text and thinking read on from one block to the next (the SDKs' text_stream, a UI joining
                    # the blocks): one channel for the message; a tool's JSON input is its block's own
                    key = ("anthropic", idx) if name == "partial_json" else ("anthropic-text", name)
                    out.append(Delta(key, value, (field, name), f"sse:content_block[{idx}].{name}"))
        return out
    if typ.endswith(".delta") and isinstance(obj.get("delta"), str) and obj["delta"]:
        # OpenAI Responses API (and Realtime): response.output_text.delta, response.function_call_arguments.delta,
        # response.refusal.delta, response.reasoning_*.delta, ...
        out.append(Delta(_responses_key(obj, typ[:-6]), obj["delta"], ("delta",), f"sse:{typ}"))
    return out


# String leaves whose value is a piece of text (a delta): always appended to their channel. Any other string leaf is
# appended too, unless it repeats the previous value at its path (ids, model names, event types: constants).
TEXT_KEYS = frozenset({"text", "delta", "content", "response", "partial_json", "arguments", "args", "thinking",
                       "reasoning", "output", "data", "value", "message", "chunk", "token", "textDelta",
                       "argsTextDelta", "inputTextDelta", "result", "input", "completion", "outputText"})
MAX_DEPTH = 32


def generic_deltas(obj: Any, last: dict) -> list[Delta]:
    """Every string leaf of an event's JSON, one channel per JSON path, for event streams no named shape knows
    (Gemini, Vercel AI SDK, Ollama, Bedrock, MCP and APIs yet to come). `last` (path -> previous value) lets a
    constant field (an id repeated in every event) stay out of its channel instead of growing it."""
    out: list[Delta] = []
    stack: list[tuple[Any, tuple]] = [(obj, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if not node:
                continue
            nested = _nested_json(node)
            if nested is not None and len(path) < MAX_DEPTH:
                stack.append((nested, path + ("~b64",)))
                continue
            key = path[-1] if path else ""
            if key not in TEXT_KEYS and last.get(path) == node:
                continue
            last[path] = node
            if "~b64" in path:
                out.append(Delta(("json",) + path, node, (), "sse:" + _jsonpath(path)))  # not rewritable
            else:
                out.append(Delta(("json",) + path, node, path, "sse:" + _jsonpath(path)))
        elif len(path) >= MAX_DEPTH:
            continue
        elif isinstance(node, dict):
            stack.extend((v, path + (k,)) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((v, path + (i,)) for i, v in reversed(list(enumerate(node))))
    return out


def _nested_json(value: str) -> Any:
    """A base64 string holding a JSON object (Bedrock InvokeModelWithResponseStream `chunk.bytes`), decoded."""
    if len(value) < 16 or not value.startswith("eyJ"):
        return None
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None


def _jsonpath(path: tuple) -> str:
    out = "$"
    for p in path:
        if p == "~b64":
            out += ":base64"
        else:
            out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _responses_key(obj: dict, stem: str) -> tuple:
    return ("responses", stem, obj.get("item_id"), obj.get("output_index"), obj.get("content_index"),
            obj.get("summary_index"))


def finished_channels(obj: Any) -> list[tuple] | None:
    """Channels this event closes (their text cannot continue); None = every channel (end of the message)."""
    if not isinstance(obj, dict):
        return []
    typ = obj.get("type")
    if typ in FINISH_ALL:
        return None
    if typ == "content_block_stop":
        return [("anthropic", obj.get("index", 0))]
    if isinstance(typ, str) and typ.endswith(".done"):
        return [_responses_key(obj, typ[:-5])]
    choices = obj.get("choices")
    out: list[tuple] = []
    if isinstance(choices, list):
        for i, choice in enumerate(choices):
            if isinstance(choice, dict) and choice.get("finish_reason"):
                out.append(("chat", choice.get("index", i)))  # a prefix: every channel of that choice
    return out


def set_path(obj: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def get_path(obj: Any, path: tuple) -> Any:
    for key in path:
        obj = obj[key]
    return obj


# --- the error event a blocked client gets ---------------------------------------------------------------------


def error_event(flavor: str | None, body: dict, framing: str = "sse", rpc_id: Any = None) -> bytes:
    """The final event for a blocked stream, in the API's own format, so its client raises its own error.

    `body` is the block body of docs/contracts.md `{"error": {"type": "dlp_violation", "code", "message", "incident_id",
    "findings"}}`; every shape carries the incident id.
      openai      `data: {"error": {...}}` (the SDKs raise APIError)
      anthropic   `event: error` + `{"type": "error", "error": {...}}` (the SDK raises APIStatusError)
      gemini      `data: {"error": {"code": 403, "status": "PERMISSION_DENIED", "message", "details", ...}}`
      mcp         a JSON-RPC error response to the request's id (`code` -32001, the block body as `data`)
      vercel-ui   `data: {"type": "error", "errorText": ...}`; Vercel data stream v4 (lines): `3:"message"`
      ollama      `{"error": "message"}` (its client raises ResponseError)
      eventstream an AWS exception frame (`accessDeniedException`; boto3 raises EventStreamError)
      other       `event: error` + the block body (NDJSON: the block body as a line)
    """
    err = body["error"]
    text = f"{err.get('message', 'blocked')} (incident {err.get('incident_id') or 'unknown'})"
    if framing == "eventstream":
        return eventstream_frame({":message-type": "exception", ":exception-type": "accessDeniedException",
                                  ":content-type": "application/json"}, _dumps({"message": text, **err}))
    if framing == "lines":
        if flavor == "vercel-data":
            return b"3:" + _dumps(text) + b"\n"
        if flavor == "ollama":
            return _dumps({"error": text}) + b"\n"
        return _dumps(body) + b"\n"
    if flavor == "openai":
        return b"data: " + _dumps(body) + b"\n\n"
    if flavor == "anthropic":
        return b"event: error\ndata: " + _dumps({"type": "error", "error": err}) + b"\n\n"
    if flavor == "gemini":
        return b"data: " + _dumps(gemini_error(body)) + b"\n\n"
    if flavor == "mcp":
        return b"event: message\ndata: " + _dumps(jsonrpc_error(body, rpc_id)) + b"\n\n"
    if flavor == "vercel-ui":
        return b"data: " + _dumps({"type": "error", "errorText": text}) + b"\n\n"
    return b"event: error\ndata: " + _dumps(body) + b"\n\n"


def gemini_error(body: dict) -> dict:
    """Google's error shape (`google.rpc.Status`), with the block body's fields kept beside it."""
    err = body["error"]
    return {"error": {**err, "code": 403, "status": "PERMISSION_DENIED", "reason": err.get("code"),
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "DLP_VIOLATION",
                                   "domain": "dlproxy", "metadata": {"incident_id": err.get("incident_id") or ""}}]}}


JSONRPC_DLP_ERROR = -32001


def jsonrpc_error(body: dict, rpc_id: Any) -> dict:
    """A JSON-RPC 2.0 error response (MCP): the agent gets a tool error it can handle, not a transport failure."""
    err = body["error"]
    return {"jsonrpc": "2.0", "id": rpc_id,
            "error": {"code": JSONRPC_DLP_ERROR, "message": err.get("message", "blocked"), "data": err}}


def eventstream_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event stream frame (string headers only), CRCs included."""
    hdr = b"".join(bytes([len(k)]) + k.encode() + b"\x07" + struct.pack("!H", len(v)) + v.encode()
                   for k, v in headers.items())
    total = 12 + len(hdr) + len(payload) + 4
    prelude = struct.pack("!II", total, len(hdr))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + hdr + payload
    return message + struct.pack("!I", zlib.crc32(message))


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- the scanner ---------------------------------------------------------------------------------------------------


class _Channel:
    """The reassembled text of one delta channel, scanned as it grows through the views a streamed body gets
    (stream.TextScanner): tool-call arguments are JSON inside JSON, and a token written `\\u0067hp_…`, glued to a
    `\\n`, or base64-encoded a few characters per event only shows in the escape or base64 view."""

    __slots__ = ("text", "spans", "length", "rewritable")

    def __init__(self, text: TextScanner, rewritable: bool = True):
        self.text = text
        self.spans: list[tuple[int, int, bytes]] = []  # redactions applied to this channel's text
        self.length = 0
        self.rewritable = rewritable

    def decided(self, end: int) -> bool:
        return self.text.decided >= end


@dataclass(slots=True)
class _Event:
    raw: bytes
    obj: Any = None
    contribs: list = field(default_factory=list)  # (channel, start, end, path)
    redact_raw: bool = False
    prefix: str = ""  # lines: a Vercel data stream part's type code ("0:")


FRAMINGS = {"sse": SSEParser, "lines": LineParser, "eventstream": EventStreamParser}


class SSEScanner:
    """An event stream: `framing` "sse" (text/event-stream), "lines" (NDJSON, Vercel AI SDK data stream) or
    "eventstream" (AWS binary frames). Events whose data is JSON feed the delta channels."""

    def __init__(self, detector, judge: Verdicts | Judge, flavor: str | None = None, max_hold: int = MAX_EVENT_BYTES,
                 framing: str = "sse"):
        self.detector = detector
        # shared by every channel: one judgement per secret per stream
        self.verdicts = judge if isinstance(judge, Verdicts) else Verdicts(judge)
        self.flavor = flavor  # from the request (path, host, headers); events can refine it
        self.detected: str | None = None  # flavor seen in the events themselves
        self.framing = framing
        self.last: dict[tuple, str] = {}  # generic channels: the previous value at each JSON path
        self.parser = FRAMINGS[framing](max_hold)
        self.max_hold = max_hold
        self.channels: dict[tuple, _Channel] = {}
        self.pending: deque[_Event] = deque()
        self.pending_bytes = 0
        self.stopped = False
        self.scanned = 0

    @property
    def error_flavor(self) -> str | None:
        return self.detected or self.flavor

    # -- feeding --

    def feed(self, data: bytes) -> list[bytes]:
        if self.stopped or not data:
            return []
        out: list[bytes] = []
        for raw in self.parser.feed(data):
            self._event(raw, out)
            if self.stopped:
                break
        return out

    def finish(self) -> list[bytes]:
        if self.stopped:
            return []
        out: list[bytes] = []
        rest = self.parser.rest()
        if rest:
            self._event(rest, out)
        if not self.stopped:
            self._finish_channels(None)
        if not self.stopped:
            self._release(out)
        return out

    # -- one event --

    def _event(self, raw: bytes, out: list[bytes]) -> None:
        self.scanned += len(raw)
        ev = _Event(raw)
        if self.framing == "sse":
            _name, data = parse_fields(raw)
        elif self.framing == "lines":
            data, ev.prefix = line_data(raw)
        else:
            data = eventstream_payload(raw)
        ends: list[tuple] | None = []
        if data is not None:
            obj = None
            if data[:1] in ("{", "[") or (ev.prefix and data[:1] == '"'):
                try:
                    obj = json.loads(data)
                except ValueError:
                    obj = None
            if obj is not None:
                ev.obj = obj
                shape = flavor_of(obj)
                if self.detected is None:
                    self.detected = shape
                deltas = extract_deltas(obj)
                if not deltas and shape not in NAMED:
                    deltas = generic_deltas(obj, self.last)
                for delta in deltas:
                    if not self._add(ev, delta):
                        return
                ends = finished_channels(obj)
            elif data.strip() == "[DONE]":
                ends = None
            elif self.error_flavor is None:
                # a plain-text event stream: its data is one text channel (a token split across events)
                ev.obj = data
                if not self._add(ev, Delta(("data",), data, (), "sse:data")):
                    return
        # after the deltas, so a token inside one delta is reported where it is (same secret: same verdict)
        if not self._scan_raw(ev):
            return
        self.pending.append(ev)
        self.pending_bytes += len(raw)
        if ends is None or ends:
            self._finish_channels(ends)
            if self.stopped:
                return
        self._release(out)
        if self.pending_bytes > self.max_hold:
            raise HoldLimit("held events too large")

    def _scan_raw(self, ev: _Event) -> bool:
        """The event's own bytes, complete: a token anywhere in it (any field, any SSE). False when blocked."""
        findings = self.detector.scan(ev.raw)
        if not findings:
            return True
        blocked, redact = self.verdicts.check([f.at("sse:event") for f in findings], ev.raw)
        if blocked is not None:
            self._stop()
            return False
        ev.redact_raw = bool(redact)
        return True

    def _add(self, ev: _Event, delta: Delta) -> bool:
        ch = self.channels.get(delta.key)
        if ch is None:
            text = TextScanner(self.detector, self.verdicts, delta.location, limits=Limits(max_inspect_bytes=self.max_hold))
            text.hold_runs = False
            ch = self.channels[delta.key] = _Channel(text, rewritable=delta.path is not None
                                                     and self.framing != "eventstream")
        data = delta.text.encode("utf-8", "surrogatepass")
        start = ch.length
        ch.length += len(data)
        _, spans = ch.text.push(data)
        ch.text.hold_runs = True  # once it grows: a value seen once (an id) is not held for the next event
        ch.spans += spans
        ev.contribs.append((ch, start, ch.length, delta.path))
        if ch.text.stopped or (ch.spans and not ch.rewritable):
            self._stop()  # blocked; or a redaction where the event cannot be rewritten: cut instead
            return False
        return True

    def _finish_channels(self, keys: list[tuple] | None) -> None:
        for key, ch in self.channels.items():
            if keys is not None and not any(key[:len(k)] == k for k in keys):
                continue
            if ch.text.decided < ch.length:
                _, spans = ch.text.push(b"", final=True)
                ch.spans += spans
            if ch.text.stopped or (ch.spans and not ch.rewritable):
                self._stop()
                return

    def _stop(self) -> None:
        self.stopped = True
        self.pending.clear()
        self.pending_bytes = 0

    # -- release, in order --

    def _release(self, out: list[bytes]) -> None:
        pending = self.pending
        while pending:
            ev = pending[0]
            for ch, _start, end, _path in ev.contribs:
                if not ch.decided(end):
                    return
            pending.popleft()
            self.pending_bytes -= len(ev.raw)
            out.append(self._render(ev))

    def _render(self, ev: _Event) -> bytes:
        """The event as forwarded: its raw bytes, unless a redaction touches the text it carries."""
        changed = False
        for ch, start, end, path in ev.contribs:
            spans = [s for s in ch.spans if s[0] < end and s[1] > start]
            if not spans:
                continue
            text = (get_path(ev.obj, path) if path else ev.obj).encode("utf-8", "surrogatepass")
            pieces, pos = [], 0
            for s, e, mark in spans:
                rs, re_ = max(s - start, 0), min(e - start, end - start)
                if rs < pos:  # the same secret found twice (as written and through the escape view): one marker
                    pos = max(pos, re_)
                    continue
                pieces.append(text[pos:rs])
                if s >= start:
                    pieces.append(mark)  # the event where the secret starts carries the marker
                pos = max(pos, re_)
            pieces.append(text[pos:])
            new = b"".join(pieces).decode("utf-8", "replace")
            if path:
                set_path(ev.obj, path, new)
            else:
                ev.obj = new
            changed = True
            ch.spans = [s for s in ch.spans if s[1] > end]
        raw = ev.raw
        if changed:
            if self.framing == "lines":
                eol = raw[len(raw.rstrip(b"\r\n")):]
                raw = ev.prefix.encode() + _dumps(ev.obj) + eol
            elif isinstance(ev.obj, str):
                raw = _rewrite(raw, ev.obj)
            else:
                raw = _rewrite(raw, _dumps(ev.obj).decode("utf-8"))
        if ev.redact_raw or changed:
            raw = self._redact_literal(raw)
        return raw

    def _redact_literal(self, raw: bytes) -> bytes:
        """Replace every secret still literally in an event whose secrets are being redacted."""
        for f in reversed(self.detector.scan(raw)):
            if self.verdicts.action_of(f) == REDACT:
                raw = raw[:f.start] + marker(f.entry_id) + raw[f.end:]
        return raw


def _rewrite(raw: bytes, data: str) -> bytes:
    """The event with its data lines replaced by `data` (one `data:` line per line of it); other lines kept."""
    m = EOL.search(raw)
    nl = m.group() if m else b"\n"
    out: list[bytes] = []
    wrote = False
    for line in EOL.split(raw):
        if not line:
            continue
        if line.startswith(b"data:") or line == b"data":
            if not wrote:
                out += [b"data: " + part.encode("utf-8") for part in data.split("\n")]
                wrote = True
            continue
        out.append(line)
    return nl.join(out) + nl + nl


__all__ = ["SSEParser", "SSEScanner", "HoldLimit", "Delta", "extract_deltas", "finished_channels", "flavor_of",
           "error_event", "parse_fields", "BLOCK"]

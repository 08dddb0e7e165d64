"""A local upstream that streams: AI-API SSE replies a few characters per event, and chunked downloads.

Used by tests/e2e/test_streams.py and test_ai_sdks_streaming.py. Binds 127.0.0.1 on an ephemeral port; records what
it received and whether the peer went away mid-stream (the proxy closing the upstream). Like a real server it keeps
the connection open after a complete reply: closing it unannounced races the proxy's reuse of it for the client's
next request (which then gets mitmproxy's 502 "server closed connection").

    server = StreamingUpstream().start()
    server.script(text="Hello ...", chars=3, delay=0.005)   # what the next streams say
    server.chunks = [b"part1", b"part2"]                      # GET /download and /events, one write each
    server.headers, server.fixed_length                       # extra response headers; Content-Length mode
    server.url, server.received, server.aborted.wait(5), server.sent_events
"""

from __future__ import annotations

import http.server
import json
import re
import socketserver
import threading
import time


def split(text: str, chars: int) -> list[str]:
    return [text[i:i + chars] for i in range(0, len(text), chars)] or [""]


def openai_chat_events(text: str, chars: int) -> list[bytes]:
    base = {"id": "chatcmpl-e2e", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini"}
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    out += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in split(text, chars)]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [b"data: " + json.dumps(o).encode() + b"\n\n" for o in out] + [b"data: [DONE]\n\n"]


def responses_events(text: str, chars: int) -> list[bytes]:
    resp = {"id": "resp_e2e", "object": "response", "created_at": 1700000000, "model": "gpt-4o-mini",
            "status": "in_progress", "output": []}
    item = {"type": "message", "id": "msg_e2e", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    events = [("response.created", {"type": "response.created", "sequence_number": 0, "response": resp}),
              ("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 1,
                                              "output_index": 0, "item": item}),
              ("response.content_part.added", {"type": "response.content_part.added", "sequence_number": 2,
                                               "item_id": "msg_e2e", "output_index": 0, "content_index": 0,
                                               "part": part})]
    seq = 3
    for p in split(text, chars):
        events.append(("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": seq, "item_id": "msg_e2e", "output_index": 0,
            "content_index": 0, "delta": p, "logprobs": []}))
        seq += 1
    events.append(("response.output_text.done", {
        "type": "response.output_text.done", "sequence_number": seq, "item_id": "msg_e2e", "output_index": 0,
        "content_index": 0, "text": text, "logprobs": []}))
    full_part = {"type": "output_text", "text": text, "annotations": []}
    full_item = {**item, "status": "completed", "content": [full_part]}
    events.append(("response.content_part.done", {"type": "response.content_part.done", "sequence_number": seq + 1,
                                                  "item_id": "msg_e2e", "output_index": 0, "content_index": 0,
                                                  "part": full_part}))
    events.append(("response.output_item.done", {"type": "response.output_item.done", "sequence_number": seq + 2,
                                                  "output_index": 0, "item": full_item}))
    done = {**resp, "status": "completed", "output": [full_item]}
    events.append(("response.completed", {"type": "response.completed", "sequence_number": seq + 3, "response": done}))
    return [f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode() for name, obj in events]


def anthropic_events(text: str, chars: int) -> list[bytes]:
    msg = {"id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
           "content": [], "stop_reason": None, "stop_sequence": None,
           "usage": {"input_tokens": 5, "output_tokens": 1}}
    events = [("message_start", {"type": "message_start", "message": msg}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
              ("ping", {"type": "ping"})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": p}}) for p in split(text, chars)]
    events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
               ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                  "usage": {"output_tokens": 10}}),
               ("message_stop", {"type": "message_stop"})]
    return [f"event: {name}\ndata: {json.dumps(obj)}\n\n".encode() for name, obj in events]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StreamingUpstream

    def log_message(self, *args):
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline()
                if not line:
                    raise ValueError(bytes(out))  # connection closed mid-body
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, parts: list[bytes], delay: float, content_type: str) -> None:
        srv = self.server
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        if srv.fixed_length:
            self.send_header("Content-Length", str(sum(map(len, parts))))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for k, v in srv.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        try:
            for i, part in enumerate(parts):
                if i and delay:
                    time.sleep(delay)
                if srv.fixed_length:
                    self.wfile.write(part)
                    self.wfile.flush()
                else:
                    self._chunk(part)
                with srv.lock:
                    srv.sent_events += 1
                    srv.sent_at.append(time.perf_counter())
            if not srv.fixed_length:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            srv.completed.set()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            srv.aborted.set()
            self.close_connection = True

    def do_POST(self):
        self._handle()

    def do_GET(self):
        self._handle()

    def _handle(self):
        srv = self.server
        try:
            body = self._read_body()
            n = self.headers.get("Content-Length")
            complete = n is None or len(body) == int(n)
        except (OSError, ValueError) as e:  # closed mid-body: keep what did arrive
            body = e.args[0] if e.args and isinstance(e.args[0], bytes) else b""
            complete = False
        with srv.lock:
            srv.received.append((self.command, self.path, dict(self.headers.items()), body))
            srv.upload_bytes += len(body)
        if not complete:
            srv.incomplete.set()
            self.close_connection = True
            return
        route = self.path.split("?", 1)[0]
        text, chars, delay = srv.text, srv.chars, srv.delay
        if route.endswith("/chat/completions"):
            return self._stream(openai_chat_events(text, chars), delay, "text/event-stream; charset=utf-8")
        if route.endswith("/responses"):
            return self._stream(responses_events(text, chars), delay, "text/event-stream; charset=utf-8")
        if route.endswith("/messages"):
            return self._stream(anthropic_events(text, chars), delay, "text/event-stream; charset=utf-8")
        if route.endswith("/download"):
            return self._stream(list(srv.chunks), delay, "application/octet-stream")
        if route.endswith("/events"):
            return self._stream(list(srv.chunks), delay, "text/event-stream")
        payload = json.dumps({"ok": True, "bytes": len(body)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class StreamingUpstream(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.received: list[tuple[str, str, dict, bytes]] = []
        self.text = "Hello from the streaming upstream."
        self.chars = 3
        self.delay = 0.0
        self.chunks: list[bytes] = [b"hello ", b"world\n"]
        self.headers: dict[str, str] = {}  # extra response headers
        self.fixed_length = False  # Content-Length instead of chunked
        self.sent_events = 0
        self.sent_at: list[float] = []
        self.aborted = threading.Event()
        self.incomplete = threading.Event()  # a request body ended before its Content-Length
        self.upload_bytes = 0
        self.completed = threading.Event()

    def script(self, text: str, chars: int = 3, delay: float = 0.0) -> None:
        self.text, self.chars, self.delay = text, chars, delay

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> StreamingUpstream:
        threading.Thread(target=self.serve_forever, daemon=True, name="sse-upstream").start()
        return self


# mitmproxy 12.3 logs "reverse proxy to ... listening at" in lower case; match both.
LISTEN = re.compile(r"(?i)(?:HTTP\(S\) proxy|reverse proxy to \S+) listening at \[?([^\s\]]+?)\]?:(\d+)")
METRICS = re.compile(r"dlproxy metrics listening at \[?([^\s\]]+?)\]?:(\d+)")


def start_reverse(start_proxy, upstream_url: str, *args: str, name: str, cmd: str = "run"):
    """A shared `dlproxy run --mode reverse:<upstream>` (or `mitmdump -s addons/dlp.py`) from the e2e
    `start_proxy` fixture, waited for here."""
    proxy = start_proxy("--mode", f"reverse:{upstream_url}", *args, name=name, cmd=cmd, wait=False)
    if not proxy.port:
        m = proxy.wait_for(LISTEN)
        if m is None:
            raise RuntimeError(f"proxy exited:\n{proxy.output()}")
        proxy.port = int(m[2])
        proxy.metrics_port = int(proxy.wait_for(METRICS)[2])
    return proxy

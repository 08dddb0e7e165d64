"""Real clients of the AI APIs without a named shape, streaming through `dlproxy run` (reverse mode, the sidecar
setup) from a local upstream that streams a reply a few characters per event: google-genai (Gemini SSE), ollama
(NDJSON), and httpx for the Vercel AI SDK data stream v4 / UI message stream v5, Bedrock ConverseStream (AWS event
stream frames) and MCP streamable HTTP.

A clean reply arrives intact. A reply carrying a valid token split over many events ends, for the client, with the
error in its own API's format carrying the incident id, and what the client received holds the token in no decodable
form. (That the upstream connection is closed at the cut is pinned by test_streams.py and test_ai_sdks_streaming.py;
here a loaded machine may let the short upstream finish first.)
"""

from __future__ import annotations

import http.server
import json
import random
import secrets
import socketserver
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
from sse_upstream import start_reverse

from conftest import GHP
from evasion.support import carries
from test_stream_shapes import (
    bedrock,
    gemini,
    mcp,
    ollama_chat,
    ollama_generate,
    pieces,
    vercel_v4,
    vercel_v5,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CLEAN = "Bytes pass through the gate, nothing secret slips between, the stream flows on, clean."
LEAKY = "Of course. The token from your config is " + GHP + " and it has repo scope. " + "More words. " * 80


class ShapeUpstream(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Serves the scripted stream for any path: `content_type`, `headers`, `events` (one write each).

    Like a real server it keeps the connection open after a complete reply. Closing it unannounced (no
    `Connection: close`) would race the proxy, which keeps its upstream connection for the client's next request
    on the same connection (the ollama client's second call): sent just as the close lands, that request gets
    mitmproxy's 502 "server closed connection" and never reaches the inspector."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.content_type = "text/event-stream"
        self.headers: dict[str, str] = {}
        self.events: list[bytes] = []
        self.aborted = threading.Event()
        self.requests: list[tuple[str, bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def script(self, content_type: str, events: list[bytes], headers: dict | None = None) -> None:
        self.content_type, self.events, self.headers = content_type, events, dict(headers or {})
        self.aborted.clear()
        self.requests.clear()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ShapeUpstream

    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.server.requests.append((self.path, self.rfile.read(n) if n else b""))
        srv = self.server
        self.send_response(200)
        self.send_header("Content-Type", srv.content_type)
        for k, v in srv.headers.items():
            self.send_header(k, v)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for ev in srv.events:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
                self.wfile.flush()
                time.sleep(0.003)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the proxy closed the upstream: the cut
            srv.aborted.set()
            self.close_connection = True

    do_GET = do_POST


@pytest.fixture(scope="module")
def shape_upstream():
    server = ShapeUpstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def sidecar(start_proxy, shape_upstream):
    return start_reverse(start_proxy, shape_upstream.url, name="shapes-reverse")


def split_events(wire: bytes, framing: str) -> list[bytes]:
    if framing == "sse":
        return [e + b"\n\n" for e in wire.split(b"\n\n") if e]
    if framing == "lines":
        return wire.splitlines(keepends=True)
    from dlproxy.inspect.sse import EventStreamParser
    return EventStreamParser().feed(wire)


def script(up: ShapeUpstream, build, framing: str, text: str, ctype: str, headers: dict | None = None) -> None:
    up.script(ctype, split_events(build(pieces(text, random.Random(7), 1, 4)), framing), headers)


@dataclass(frozen=True)
class Marker:
    """This test's request: a path prefix of its own (the upstream serves any path; the incident records the path)
    and the incident log's length before it, so another test's block on the shared proxy cannot stand in."""

    prefix: str
    since: tuple[int, int]


def marker(proxy) -> Marker:
    return Marker(f"/t-{secrets.token_hex(4)}", proxy.mark())


def assert_cut(sidecar, mark: Marker, received: bytes | str, client_error: object = None) -> dict:
    data = received.encode() if isinstance(received, str) else received
    assert not carries(data, GHP.encode()), "the client received the token"
    # Read once, no waiting: the proxy writes the incident before it sends the error carrying its id, and every
    # caller checks that the client got that id.
    blocks = [i for i in sidecar.incidents(since=mark.since)
              if i.get("action") == "block" and i.get("path", "").startswith(mark.prefix + "/")]
    assert len(blocks) == 1, (  # what happened instead
        f"{len(blocks)} block incidents for {mark.prefix}; client error: {str(client_error)[:300]!r}; incidents "
        f"since: {[(i.get('action'), i.get('path'), i.get('reason')) for i in sidecar.incidents(since=mark.since)]}; "
        f"proxy output: {sidecar.output(mark.since)[-1500:]!r}")
    [incident] = blocks
    sidecar.assert_no_leak(GHP)
    return incident


# -- Gemini, with the google-genai SDK ---------------------------------------------------------------------------

genai = pytest.importorskip("google.genai")


def gemini_client(proxy, prefix: str = ""):
    from google.genai import types
    return genai.Client(api_key="test-not-real", http_options=types.HttpOptions(base_url=proxy.url + prefix,
                                                                                 api_version="v1beta"))


def gemini_text(client, got: list[str]) -> None:
    for chunk in client.models.generate_content_stream(model="gemini-2.0-flash", contents="hi"):
        got.append(chunk.text or "")


def test_gemini_sdk_clean_stream_arrives_intact(sidecar, shape_upstream):
    script(shape_upstream, gemini, "sse", CLEAN, "text/event-stream")
    got: list[str] = []
    gemini_text(gemini_client(sidecar), got)
    assert "".join(got) == CLEAN


def test_gemini_sdk_gets_a_google_error_with_the_incident(sidecar, shape_upstream):
    from google.genai import errors
    script(shape_upstream, gemini, "sse", LEAKY, "text/event-stream")
    got: list[str] = []
    mark = marker(sidecar)
    with pytest.raises(errors.APIError) as info:
        gemini_text(gemini_client(sidecar, mark.prefix), got)
    incident = assert_cut(sidecar, mark, "".join(got))
    assert info.value.code == 403 and info.value.status == "PERMISSION_DENIED"
    assert incident["incident_id"] in str(info.value.details)


# -- Ollama, with the ollama client --------------------------------------------------------------------------------

ollama = pytest.importorskip("ollama")


@pytest.mark.parametrize("api", ["chat", "generate"])
def test_ollama_client_clean_and_cut(sidecar, shape_upstream, api):
    mark = marker(sidecar)
    client = ollama.Client(host=sidecar.url + mark.prefix, trust_env=False)
    build = ollama_chat if api == "chat" else ollama_generate

    def run(got):
        if api == "chat":
            for part in client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}], stream=True):
                got.append(part.message.content or "")
        else:
            for part in client.generate(model="llama3.2", prompt="hi", stream=True):
                got.append(part.response or "")

    script(shape_upstream, build, "lines", CLEAN, "application/x-ndjson")
    got: list[str] = []
    run(got)
    assert "".join(got) == CLEAN
    script(shape_upstream, build, "lines", LEAKY, "application/x-ndjson")
    got = []
    mark = Marker(mark.prefix, sidecar.mark())  # after the clean run
    with pytest.raises(ollama.ResponseError) as info:
        run(got)
    incident = assert_cut(sidecar, mark, "".join(got), info.value)
    assert incident["incident_id"] in str(info.value)


# -- Vercel AI SDK, MCP, Bedrock: plain httpx ---------------------------------------------------------------------


def stream_bytes(proxy, path: str, body: dict | None = None) -> bytes:
    with httpx.Client(trust_env=False, timeout=30) as client:
        got = bytearray()
        try:
            with client.stream("POST", proxy.url + path, json=body or {}) as resp:
                for part in resp.iter_bytes():
                    got += part
        except httpx.HTTPError:
            pass
        return bytes(got)


CASES = {
    "vercel_v4": (vercel_v4, "lines", "text/plain; charset=utf-8", {"x-vercel-ai-data-stream": "v1"}, "/api/chat"),
    "vercel_v5": (vercel_v5, "sse", "text/event-stream", {"x-vercel-ai-ui-message-stream": "v1"}, "/api/chat"),
    "bedrock": (bedrock, "eventstream", "application/vnd.amazon.eventstream", {},
                "/model/anthropic.claude-3-haiku/converse-stream"),
    "mcp": (mcp, "sse", "text/event-stream", {}, "/mcp"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_httpx_shapes_clean_and_cut(sidecar, shape_upstream, name):
    build, framing, ctype, headers, path = CASES[name]
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "x"}} if name == "mcp" else {}
    script(shape_upstream, build, framing, CLEAN, ctype, headers)
    wire = b"".join(shape_upstream.events)
    assert stream_bytes(sidecar, path, body) == wire
    script(shape_upstream, build, framing, LEAKY, ctype, headers)
    mark = marker(sidecar)
    got = stream_bytes(sidecar, mark.prefix + path, body)
    incident = assert_cut(sidecar, mark, got)
    assert incident["incident_id"].encode() in got  # the error in the API's own format closes the stream
    tail = split_events(got, framing)[-1]
    if name == "vercel_v4":
        assert tail.startswith(b'3:"')
    elif name == "vercel_v5":
        assert json.loads(tail[len(b"data: "):])["type"] == "error"
    elif name == "mcp":
        err = json.loads(tail.split(b"data: ", 1)[1])
        assert err["id"] == 9 and err["error"]["code"] == -32001
    else:
        assert b"accessDeniedException" in tail

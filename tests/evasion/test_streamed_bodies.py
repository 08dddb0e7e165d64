"""Evasion table, stream half: a token in a STREAMED response (chunked, close-delimited, Content-Encoded) hidden in
the carriers a buffered body is inspected through, through a real `dlproxy run` (built-in profile).

Each row runs three cases (like support.cases): `evasion` (the token in the carrier), `plain` (the same carrier
with the token plainly inside) and `wrong_checksum` (the carrier with a token whose checksum is wrong: it must
arrive byte-identical). For the first two the client must receive the token in no decodable form
(support.carries: escapes, entities, base64, archives, compression ...) and the proxy must record an incident
with the token's fingerprint; the proxy's own output never holds the token.

The upstream here serves each row's body in small writes: `chunked` (Transfer-Encoding: chunked) or `close`
(no length, the body ends when the connection closes), optionally with a Content-Encoding.

The trailer table (TRAILER_ROWS) runs the same three cases for a token in a trailer: the header section after a
body (HTTP/2, chunked HTTP/1), in both directions, buffered and streamed, and gRPC's `grpc-message` (plain and
percent-encoded, as gRPC sends it). Real clients: the `h2` library on a raw socket for HTTP/2 (no HTTP client
sends request trailers), a raw socket for an HTTP/1 chunked request, curl `--raw` for an HTTP/1 response.
A blocked request must not reach the upstream with the token; a response must not bring it to the client
(its trailers are dropped and the stream cut, or the whole response withheld).

Stream shapes (SHAPE_ROWS): what a red team tries after reading the rows above: a byte order mark before the first
event, CRLF and CR line ends, RFC 7464 JSON text sequences, Anthropic text continued across content blocks, the
token in SSE `id:`/`event:` fields and comments, escapes across multi-line `data:`, a UTF-16 labelled event
stream, Content-Encodings in one-byte writes (raw and zlib deflate, zstd, br), gRPC-web binary and text frames,
multipart/x-mixed-replace parts (quoted-printable, base64). The streamed-upload table (REQUEST_ROWS) sends the
carriers and the gzip header rows as chunked uploads that `stream_large_bodies` streams; the WebSocket table
(WS_ROWS) sends messages and close frames (base64 in a binary frame, a Socket.IO binary attachment, UTF-16 binary
text, percent-escapes, references without `;`, base64 and escaped deltas over messages). Known gaps are strict
xfails with their reason.

AI stream rows: a model's reply (SSE or NDJSON, in each API's shape) emits the token a few characters per event,
inside JSON-in-JSON tool arguments, split mid-escape, base64-encoded, one character per event. Their control is the
same stream with the token whole in one event; what the client can rebuild from the deltas (every string per JSON
path, concatenated) must hold the token in no decodable form either.
"""

from __future__ import annotations

import base64
import gzip
import http.server
import json
import random
import socketserver
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import brotli
import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from dlproxy.engine.findings import fingerprint
from dlproxy.extract.encoding import zstd
from e2e.conftest import curl, proxied_client
from e2e.h2server import h1_chunked_post, h2_exchange
from evasion.support import carries, detector, received_any_form, wrong_checksum
from generators import GENERATORS
from stream_carriers import CARRIERS
from test_stream_shapes import (
    anthropic_partial_json,
    gemini,
    ollama_chat,
    openai_tool_args,
    pieces,
    reassembled,
    responses_tool_args,
    sse,
    vercel_v5,
)

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("evasion-streams")]

ENCODERS = {"gzip": gzip.compress, "br": brotli.compress, "deflate": zlib.compress, "zstd": zstd.compress}
DECODERS = {"gzip": gzip.decompress, "br": brotli.decompress}


@dataclass(frozen=True)
class StreamRow:
    id: str
    ctype: str
    build: object  # secret -> body (identity)
    framing: str = "chunked"  # chunked | close
    encoding: str | None = None  # Content-Encoding applied to the body
    piece: int = 7  # bytes per upstream write
    control: object = None  # secret -> the same carrier with the token plainly in it (default: plain_body)
    events: str | None = None  # "sse" | "lines": an AI stream whose deltas the client reassembles
    wire: object = None  # (body, secret) -> the bytes sent, when the secret sits in the encoding itself


def openai_chat(parts: list[str]) -> bytes:
    base = {"id": "chatcmpl-ev1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    out = [sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    out += [sse({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in parts]
    return b"".join(out + [sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                           sse("[DONE]")])


def anthropic_text(parts: list[str]) -> bytes:
    out = [sse({"type": "message_start", "message": {"id": "msg_ev", "role": "assistant", "content": []}},
               "message_start"),
           sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start")]
    out += [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                "content_block_delta") for p in parts]
    return b"".join(out + [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                           sse({"type": "message_stop"}, "message_stop")])


REPLY = "Sure, here it is: {} and nothing else."


def _b64(secret: str) -> str:
    return base64.b64encode(secret.encode()).decode()


def _escape_split(args: str, rng: random.Random) -> list[str]:
    """A few characters per event, with a boundary inside every escape (between the backslash and its letter)."""
    out, i = [], 0
    while i < len(args):
        n = rng.randint(1, 4)
        j = args.find("\\", i, i + n)
        if j != -1:
            n = j - i + 1
        out.append(args[i:i + n])
        i += n
    return out


def _ai(row_id: str, builder, text, framing: str = "sse", split=None, plain=None, ctype: str | None = None,
        **kw) -> StreamRow:
    """An AI stream row: `text(secret)` is what the model emits, split a few characters per event (or by `split`);
    the control emits `plain(secret)` (default: the reply with the token whole) in one event."""
    ctype = ctype or ("text/event-stream" if framing == "sse" else "application/x-ndjson")
    def build(secret: str) -> bytes:
        return builder((split or (lambda t, r: pieces(t, r, 1, 4)))(text(secret), random.Random(row_id + secret)))

    def control(secret: str) -> bytes:
        return builder([(plain or REPLY.format)(secret)])

    return StreamRow(row_id, ctype, build, control=control, events=framing, **kw)


AI_ROWS = [
    _ai("openai-tool-args-newline", openai_tool_args, lambda t: json.dumps({"cmd": "echo\n" + t})),
    _ai("anthropic-partial-json-split-mid-escape", anthropic_partial_json, lambda t: json.dumps({"cmd": "x\n" + t}),
        split=_escape_split),
    _ai("gemini-sse", gemini, REPLY.format),
    _ai("vercel-v5-text-delta", vercel_v5, REPLY.format),
    _ai("ollama-ndjson", ollama_chat, REPLY.format, framing="lines"),
    _ai("responses-function-call-arguments", responses_tool_args, lambda t: json.dumps({"token": t})),
    _ai("openai-one-character-per-event", openai_chat, REPLY.format, split=lambda t, _r: list(t)),
    _ai("openai-sse-gzip", openai_chat, REPLY.format, encoding="gzip", piece=5),
    _ai("openai-base64-token-deltas", openai_chat, lambda t: REPLY.format(_b64(t))),
    _ai("anthropic-base64-token-deltas", anthropic_text, lambda t: "Encoded: " + _b64(t) + "\n"),
    _ai("ollama-base64-token-deltas", ollama_chat, lambda t: REPLY.format(_b64(t)), framing="lines"),
]


def gzip_member(data: bytes, name: bytes = b"", comment: bytes = b"", extra: bytes = b"") -> bytes:
    """One gzip member with the optional FEXTRA, FNAME and FCOMMENT header fields: text every decompressor skips."""
    flags = (0x04 if extra else 0) | (0x08 if name else 0) | (0x10 if comment else 0)
    head = b"\x1f\x8b\x08" + bytes([flags]) + bytes(4) + b"\x00\xff"
    if extra:
        head += struct.pack("<H", len(extra)) + extra
    head += name + b"\0" if name else b""
    head += comment + b"\0" if comment else b""
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return head + co.compress(data) + co.flush() + struct.pack("<II", zlib.crc32(data), len(data))


LOG = b"build step ok\n" * 6


def _gzip_header(row_id: str, wire, framing: str = "chunked", piece: int = 7) -> StreamRow:
    """A clean body, gzip Content-Encoding whose member header holds the secret (`wire(body, secret)`); the
    control gzips the token as content."""
    return StreamRow(row_id, "text/plain", lambda _t: LOG, framing, "gzip", piece, wire=wire)


GZIP_HEADER_ROWS = [
    _gzip_header("gzip-fname-chunked", lambda d, t: gzip_member(d, name=t.encode() + b".env")),
    _gzip_header("gzip-fcomment-close", lambda d, t: gzip_member(d, comment=b"key " + t.encode()), "close"),
    _gzip_header("gzip-fname-second-member-chunked",
                 lambda d, t: gzip_member(d[:30]) + gzip_member(d[30:], name=t.encode())),
    _gzip_header("gzip-fname-after-fextra-one-byte-writes",
                 lambda d, t: gzip_member(d, name=t.encode(), extra=b"AP\x08\x00" + b"\x01" * 8), piece=1),
]


# --- stream shapes a red team tries after reading the rows above -------------------------------------------------


def _crlf(builder, eol: bytes = b"\r\n"):
    return lambda parts: builder(parts).replace(b"\n", eol)


def _bom(builder):
    return lambda parts: b"\xef\xbb\xbf" + builder(parts)


def json_seq(parts: list[str]) -> bytes:
    """RFC 7464 JSON text sequence: each record starts with RS."""
    return b"".join(b"\x1e" + json.dumps({"message": {"role": "assistant", "content": p}, "done": False}).encode()
                    + b"\n" for p in parts) + b'\x1e{"done": true}\n'


def anthropic_blocks(parts: list[str]) -> bytes:
    """Every piece of text in a content block of its own: text_stream and UIs join the blocks."""
    out = [sse({"type": "message_start", "message": {"id": "msg_ev", "role": "assistant", "content": []}},
               "message_start")]
    for i, p in enumerate(parts):
        out += [sse({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                    "content_block_start"),
                sse({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": p}},
                    "content_block_delta"),
                sse({"type": "content_block_stop", "index": i}, "content_block_stop")]
    return b"".join(out + [sse({"type": "message_stop"}, "message_stop")])


def gemini_array(parts: list[str]) -> bytes:
    """Gemini streamGenerateContent without alt=sse: one JSON array, an element per chunk as it is generated."""
    return b"[" + b",\r\n".join(json.dumps({"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}}]})
                                  .encode() for p in parts) + b"]"


def grpc_web(t: str) -> bytes:
    msg = b"\x0a" + bytes([len(t)]) + t.encode() + b"\x12\x02ok"
    return b"\x00" + struct.pack(">I", len(msg)) + msg + b"\x80" + struct.pack(">I", 14) + b"grpc-status:0\r\n"


def grpc_web_text(t: str) -> bytes:
    """grpc-web-text: each frame base64-encoded on its own (padding between them)."""
    frames = [b"\x0a\x03abc", b"\x0a" + bytes([len(t)]) + t.encode() + b"\x12\x02ok"]
    return b"".join(base64.b64encode(b"\x00" + struct.pack(">I", len(m)) + m) for m in frames)


def mixed_replace(cte: str, part: bytes) -> bytes:
    return (b"--frame\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: " + cte.encode() + b"\r\n\r\n"
            + part + b"\r\n--frame\r\n")


def _qp_split(t: str) -> bytes:
    return b"key " + t[:15].encode() + b"=\r\n" + t[15:].encode() + b" ok"


def _deflate_raw(body: bytes, _secret: str) -> bytes:
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return co.compress(body) + co.flush()


def _sse_line(field: str):
    return lambda t: f"{field}: {t}\ndata: {{}}\n\n".encode()


def _sse_data(t: str) -> bytes:
    return f"data: {t}\n\n".encode()


_JSON = "application/json"
SHAPE_ROWS = [
    _ai("openai-sse-bom-first", _bom(openai_chat), REPLY.format),
    _ai("openai-sse-crlf", _crlf(openai_chat), REPLY.format),
    _ai("openai-sse-cr-only", _crlf(openai_chat, b"\r"), REPLY.format),
    _ai("ollama-ndjson-crlf", _crlf(ollama_chat), REPLY.format, framing="lines"),
    _ai("json-seq-records", json_seq, REPLY.format, framing="lines", ctype="application/json-seq"),
    _ai("anthropic-text-across-blocks", anthropic_blocks, REPLY.format),
    _ai("gemini-json-array-stream", gemini_array, REPLY.format, framing="lines", ctype=_JSON),
    StreamRow("sse-token-in-id-field", "text/event-stream", _sse_line("id"), control=_sse_data),
    StreamRow("sse-token-in-event-field", "text/event-stream", _sse_line("event"), control=_sse_data),
    StreamRow("sse-token-in-comment", "text/event-stream", lambda t: f": {t}\n\ndata: {{}}\n\n".encode(),
              control=_sse_data),
    StreamRow("sse-multiline-data-escape", "text/event-stream",
              lambda t: b'data: {"choices": [{"delta":\ndata: {"content": "x\\n' + t.encode() + b'"}}]}\n\n',
              control=_sse_data),
    StreamRow("sse-utf16-charset", "text/event-stream; charset=utf-16",
              lambda t: ("data: " + REPLY.format(t) + "\n\n").encode("utf-16-le"), control=_sse_data),
    StreamRow("deflate-raw-one-byte-writes", "text/plain", lambda t: b"key " + t.encode() + b"\n", encoding="deflate",
              piece=1, wire=_deflate_raw),
    StreamRow("deflate-zlib-one-byte-writes", "text/plain", lambda t: b"key " + t.encode() + b"\n",
              encoding="deflate", piece=1),
    StreamRow("zstd-one-byte-writes", _JSON, lambda t: json.dumps({"log": "a\n" + t}).encode(), encoding="zstd",
              piece=1),
    StreamRow("br-one-byte-writes", _JSON, lambda t: json.dumps({"log": "a\n" + t}).encode(), encoding="br",
              piece=1),
    StreamRow("grpc-web-frames", "application/grpc-web+proto", grpc_web),
    StreamRow("grpc-web-text-frames", "application/grpc-web-text", grpc_web_text),
    StreamRow("mixed-replace-quoted-printable", "multipart/x-mixed-replace; boundary=frame",
              lambda t: mixed_replace("quoted-printable", _qp_split(t))),
    StreamRow("mixed-replace-base64", "multipart/x-mixed-replace; boundary=frame",
              lambda t: mixed_replace("base64", base64.b64encode(b"key " + t.encode()))),
]
# Known gaps (row id -> reason): strict xfails on the evasion case.
SHAPE_GAPS = {
    "sse-utf16-charset": "an event stream is parsed as UTF-8, as the SSE standard (and every browser) reads it; a "
                         "client that honours a UTF-16 charset label rebuilds the token",
    "gemini-json-array-stream": "a JSON array streamed element by element (Gemini streamGenerateContent without "
                                "alt=sse) is not split into events: its deltas are not reassembled",
}


def _rows() -> list[StreamRow]:
    rows = []
    for name, (ctype, build) in sorted(CARRIERS.items()):
        for framing in ("chunked", "close"):
            rows.append(StreamRow(f"{name}-{framing}", ctype, build, framing))
    for name in ("json_newline_escape", "github_contents_base64", "html_entities", "json_unicode_escape"):
        ctype, build = CARRIERS[name]
        for enc in ("gzip", "br"):
            rows.append(StreamRow(f"{name}-{enc}-chunked", ctype, build, "chunked", enc, piece=5))
    return rows + GZIP_HEADER_ROWS + AI_ROWS + SHAPE_ROWS


ROWS = _rows()


def row_params(rows: list, gaps: dict[str, str]) -> list:
    """pytest params (row, kind) for the three cases of each row; `gaps` (row id -> reason): its evasion case is a
    strict xfail."""
    out = []
    for row in rows:
        for kind in ("evasion", "plain", "wrong_checksum"):
            gap = gaps.get(row.id) if kind == "evasion" else None
            marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
            out.append(pytest.param(row, kind, id=f"{row.id}-{kind}", marks=marks))
    return out


class _Upstream(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[StreamRow, bytes]] = {}
        self.trailers: dict[str, list[tuple[str, str]]] = {}  # path -> trailer section of its chunked body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Upstream

    def log_message(self, *args):
        pass

    def do_GET(self):
        row, wire = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Type", row.ctype)
        if row.encoding:
            self.send_header("Content-Encoding", row.encoding)
        if row.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            for i in range(0, len(wire), row.piece):
                part = wire[i:i + row.piece]
                if row.framing == "chunked":
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    self.wfile.write(part)
                self.wfile.flush()
                if i // row.piece % 16 == 0:
                    time.sleep(0.001)
            if row.framing == "chunked":
                fields = "".join(f"{k}: {v}\r\n" for k, v in self.server.trailers.get(self.path, []))
                self.wfile.write(b"0\r\n" + fields.encode("latin-1") + b"\r\n")
        except OSError:  # the proxy closed the upstream: the expected outcome of a cut
            self.close_connection = True


@pytest.fixture(scope="module")
def stream_upstream():
    server = _Upstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def encode(row: StreamRow, body: bytes, secret: str | None) -> bytes:
    """What goes on the wire: `row.wire` places `secret` in the encoding (the control, secret None, is encoded
    plainly)."""
    if row.wire is not None and secret is not None:
        return row.wire(body, secret)
    return ENCODERS[row.encoding](body) if row.encoding else body


def fetch(proxy, server: _Upstream, row: StreamRow, body: bytes, secret: str | None = None) -> tuple[bytes, bool]:
    """(what the client received, decoded; whether the body ended cleanly)."""
    wire = encode(row, body, secret)
    path = f"/{row.id}/{random.random()}"
    server.routes[path] = (row, wire)
    got = bytearray()
    clean = True
    with proxied_client(proxy) as client:
        try:
            with client.stream("GET", server.url + path) as resp:
                for part in resp.iter_bytes():
                    got += part
        except httpx.HTTPError:
            clean = False
    return bytes(got), clean


def plain_body(row: StreamRow, token: str) -> bytes:
    """The control: the token plainly in a body of the same type, framing and encoding."""
    if "json" in row.ctype:
        return json.dumps({"log": "ok", "token": token}).encode()
    return b"some text then " + token.encode() + b" and more\n"


def token_for(row: StreamRow | TrailerRow) -> str:
    token = GENERATORS["github-classic-pat"](random.Random(f"evasion-stream:{row.id}"))
    assert detector().scan(f" {token} ")
    return token


@pytest.mark.parametrize(("row", "kind"), row_params(ROWS, SHAPE_GAPS))
def test_streamed_carrier(evasion_proxy, stream_upstream, row: StreamRow, kind: str):
    token = token_for(row)
    if kind == "wrong_checksum":
        body = row.build(wrong_checksum(token))
        got, clean = fetch(evasion_proxy, stream_upstream, row, body, wrong_checksum(token))
        assert clean and got == body, f"{row.id}: a clean stream was changed or cut"
        return
    body = row.build(token) if kind == "evasion" else (row.control or partial(plain_body, row))(token)
    mark = evasion_proxy.mark()
    got, _clean = fetch(evasion_proxy, stream_upstream, row, body, token if kind == "evasion" else None)
    assert not carries(got, token.encode()), f"{row.id}: the client received the token"
    if row.events:
        assert not carries(reassembled(got, row.events), token.encode()), f"{row.id}: the deltas rebuild the token"
    deadline = time.monotonic() + 10
    while True:
        incidents = evasion_proxy.incidents(since=mark)
        prints = {f.get("fingerprint") for i in incidents for f in i.get("findings", [])}
        if fingerprint(token) in prints or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert fingerprint(token) in prints, f"{row.id}: no incident with the token's fingerprint: {incidents}"
    evasion_proxy.assert_no_leak(token)


def test_table_size():
    assert len(ROWS) >= 40
    assert json.dumps([r.id for r in ROWS])  # ids are plain strings


# --- streamed uploads ----------------------------------------------------------------------------------------

# The same carriers in a chunked upload that `stream_large_bodies` streams (never buffered): the upstream must not
# receive the token in any form.
REQUEST_ROWS = [StreamRow(f"{name}-upload", ctype, build) for name, (ctype, build) in sorted(CARRIERS.items())] + [
    StreamRow(r.id.replace("-chunked", "").replace("-close", "") + "-upload", r.ctype, r.build, encoding=r.encoding,
              piece=r.piece, wire=r.wire) for r in GZIP_HEADER_ROWS]


@pytest.fixture
def upload_proxy(start_proxy):
    return start_proxy("--set", "stream_large_bodies=1", name="evasion-stream-uploads", profiles=())


def upload(proxy, upstream, row: StreamRow, body: bytes, secret: str | None) -> int:
    """POST the row's body as a chunked upload, `row.piece` bytes per chunk; the status the client got (0: the
    connection was cut)."""
    wire = encode(row, body, secret)
    headers = {"content-type": row.ctype, **({"content-encoding": row.encoding} if row.encoding else {})}
    with proxied_client(proxy) as client:
        try:
            return client.post(upstream.url + "/upload", headers=headers,
                               content=(wire[i:i + row.piece] for i in range(0, len(wire), row.piece))).status_code
        except httpx.HTTPError:
            return 0


@pytest.mark.parametrize("kind", ["evasion", "plain", "wrong_checksum"])
@pytest.mark.parametrize("row", REQUEST_ROWS, ids=[r.id for r in REQUEST_ROWS])
def test_streamed_upload_carrier(upload_proxy, upstream, row: StreamRow, kind: str):
    token = token_for(row)
    if kind == "wrong_checksum":
        body = row.build(wrong_checksum(token))
        assert upload(upload_proxy, upstream, row, body, wrong_checksum(token)) == 200
        [rec] = upstream.received
        got = rec.body
        if rec.header("content-encoding"):
            got = DECODERS[rec.header("content-encoding")](got)
        assert got == body, f"{row.id}: a clean upload was changed"
        return
    body = row.build(token) if kind == "evasion" else (row.control or partial(plain_body, row))(token)
    mark = upload_proxy.mark()
    status = upload(upload_proxy, upstream, row, body, token if kind == "evasion" else None)
    assert status != 200, f"{row.id}: the upload went through"
    assert not received_any_form(upstream.received, token), f"{row.id}: the upstream received the token"
    incidents = upload_proxy.incidents(since=mark, wait=10)
    assert fingerprint(token) in {f.get("fingerprint") for i in incidents for f in i.get("findings", [])}, \
        f"{row.id}: no incident with the token's fingerprint: {incidents}"
    upload_proxy.assert_no_leak(token)


# --- trailers ------------------------------------------------------------------------------------------------


@dataclass
class Exchange:
    """What one trailer exchange did: what the receiving side got (the upstream's recorded requests, or the
    client's bytes), and whether the message went through whole (a 2xx that ended cleanly)."""
    received: list  # upstream records (requests)
    client: bytes  # what the client received (responses)
    whole: bool


@dataclass(frozen=True)
class TrailerRow:
    id: str
    direction: str  # request | response
    send: Callable  # (ctx, name, value) -> Exchange
    name: str = "x-token"
    encode: Callable[[str], str] = str  # the trailer value the evasion case sends (the plain case: the token)
    streamed: bool = False  # documentation: which inspection path the row exercises


@dataclass
class TrailerCtx:
    proxy: object
    h2: object  # e2e.h2server.H2Server
    h1: object  # the e2e HTTP/1 upstream (records request trailers)
    stream: _Upstream


def _h2_request(c: TrailerCtx, name: str, value: str) -> Exchange:
    r = h2_exchange(c.proxy.port, c.proxy.ca, c.h2.port, "POST", "/upload", b'{"note": "hello"}',
                    [("content-type", "application/json")], [(name, value)])
    return Exchange(list(c.h2.received), r.text().encode(), r.status == 200 and r.ended)


def _h1_chunked_request(c: TrailerCtx, name: str, value: str) -> Exchange:
    got = h1_chunked_post(c.proxy.port, f"{c.h1.url}/upload", [(name, value)])
    return Exchange(list(c.h1.received), got, got.startswith(b"HTTP/1.1 200"))


def _h2_response(ctype: str, length: bool, extra: tuple = ()):
    """An HTTP/2 response ending in trailers: with a content-length (buffered) or without (streamed)."""
    def send(c: TrailerCtx, name: str, value: str) -> Exchange:
        body = b"\0\0\0\0\x05hello" if "grpc" in ctype else b'{"ok": true}'
        headers = [("content-type", ctype)] + ([("content-length", str(len(body)))] if length else [])
        c.h2.respond("/trailer", [body[:3], body[3:]], headers=headers, trailers=[*extra, (name, value)])
        r = h2_exchange(c.proxy.port, c.proxy.ca, c.h2.port, "POST", "/trailer", b"{}",
                        [("content-type", ctype), ("te", "trailers")])
        return Exchange([], r.text().encode(), r.status == 200 and r.ended and (name, value) in r.trailers)
    return send


def _h1_chunked_response(c: TrailerCtx, name: str, value: str) -> Exchange:
    """curl --raw shows the chunked framing, trailer section included."""
    row = StreamRow("trailer-h1", "application/json", None, "chunked")
    path = f"/trailer/{random.random()}"
    c.stream.routes[path] = (row, b'{"ok": true, "text": "' + b"a" * 40 + b'"}')
    c.stream.trailers[path] = [(name, value)]
    r = curl("-x", c.proxy.url, "--raw", "-i", c.stream.url + path)
    whole = r.returncode == 0 and r.stdout.startswith(b"HTTP/1.1 200") and f"{name}: {value}".encode() in r.stdout
    return Exchange([], r.stdout, whole)


def _percent(token: str) -> str:
    return "".join(f"%{b:02X}" for b in token.encode())


GRPC = "application/grpc"
TRAILER_ROWS = [
    TrailerRow("h2-request-trailer", "request", _h2_request),
    TrailerRow("h1-chunked-request-trailer", "request", _h1_chunked_request),
    TrailerRow("h2-response-trailer", "response", _h2_response("application/json", length=True)),
    TrailerRow("h2-response-trailer-streamed", "response", _h2_response("application/json", length=False),
               streamed=True),
    TrailerRow("h1-chunked-response-trailer", "response", _h1_chunked_response, streamed=True),
    TrailerRow("grpc-message", "response", _h2_response(GRPC, length=False, extra=(("grpc-status", "16"),)),
               name="grpc-message", encode=lambda t: f"token {t} rejected", streamed=True),
    TrailerRow("grpc-message-percent-encoded", "response",
               _h2_response(GRPC, length=False, extra=(("grpc-status", "16"),)),
               name="grpc-message", encode=lambda t: "token%20" + _percent(t) + "%20rejected", streamed=True),
]


@pytest.mark.parametrize("kind", ["evasion", "plain", "wrong_checksum"])
@pytest.mark.parametrize("row", TRAILER_ROWS, ids=[r.id for r in TRAILER_ROWS])
def test_trailer_carrier(evasion_proxy, h2_upstream, upstream, stream_upstream, row: TrailerRow, kind: str):
    c = TrailerCtx(evasion_proxy, h2_upstream, upstream, stream_upstream)
    token = token_for(row)
    if kind == "wrong_checksum":
        value = row.encode(wrong_checksum(token))
        got = row.send(c, row.name, value)
        assert got.whole, f"{row.id}: a clean trailer was blocked or the message cut"
        if row.direction == "request":
            [rec] = got.received
            assert (row.name, value) in [(k.lower(), v) for k, v in rec.trailers], "the trailer did not arrive"
        return
    value = row.encode(token) if kind == "evasion" else token
    mark = evasion_proxy.mark()
    got = row.send(c, row.name, value)
    assert not got.whole, f"{row.id}: the message went through whole"
    assert not received_any_form(got.received, token), f"{row.id}: the upstream received the token"
    assert not carries(got.client, token.encode()), f"{row.id}: the client received the token"
    incidents = evasion_proxy.incidents(since=mark, wait=10)
    findings = [f for i in incidents for f in i.get("findings", [])]
    assert any(f["fingerprint"] == fingerprint(token) and f["location"] == f"trailer:{row.name}"
               for f in findings), f"{row.id}: no incident for the trailer: {incidents}"
    evasion_proxy.assert_no_leak(token)


# --- WebSocket messages ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WSRow:
    """What a client sends over a WebSocket: `send(secret)` -> messages (str: text, bytes: binary), and
    `close(secret)` -> the reason of its close frame (None: a plain close)."""
    id: str
    send: Callable
    close: Callable = lambda _t: None
    control: Callable | None = None  # the same carrier with the token plainly in a message (default: `send`)


def _pieces(text: str, n: int = 3) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)]


def _deflate_raw_msg(data: bytes) -> bytes:
    co = zlib.compressobj(6, zlib.DEFLATED, -15)
    return co.compress(data) + co.flush()


WS_ROWS = [
    WSRow("ws-base64-in-binary-frame", lambda t: [base64.b64encode(b"export GH=" + t.encode() + b"\n")]),
    WSRow("ws-close-reason", lambda _t: ["bye"], close=lambda t: f"token {t}", control=lambda t: [f"token {t}"]),
    WSRow("ws-socketio-binary-attachment-deflated",
          lambda t: ['451-["upload",{"_placeholder":true,"num":0}]', _deflate_raw_msg(b"TOKEN=" + t.encode())],
          control=lambda t: ['451-["upload",{"_placeholder":true,"num":0}]', b"TOKEN=" + t.encode()]),
    WSRow("ws-utf16-binary-text", lambda t: [("token " + t + "\n").encode("utf-16-le")]),
    WSRow("ws-percent-encoded-text", lambda t: ["q=" + "".join(f"%{b:02X}" for b in t.encode()) + "&x=1"]),
    WSRow("ws-html-entities-no-semicolon", lambda t: ["<p>" + "".join(f"&#x{ord(c):x}" for c in t) + "</p>"]),
    WSRow("ws-base64-deltas", lambda t: [json.dumps({"delta": p}) for p in _pieces(_b64("key=" + t + "\n"), 4)],
          control=lambda t: [json.dumps({"delta": "key=" + t})]),
    WSRow("ws-socketio-escaped-deltas", lambda t: ['42["chunk",' + json.dumps(p) + "]" for p in
                                                  _pieces(json.dumps({"cmd": "a\n" + t})[1:-1], 3)]),
]
WS_GAPS = {
    "ws-close-reason": "mitmproxy relays a close frame, reason included, before any addon hook sees it",
    "ws-base64-deltas": "a base64 run split over messages is decoded once it ends, and messages cannot be held: "
                        "the peer has every piece by then",
}


class WSRecorder:
    """Records every message and the close frame's reason of each connection (by path)."""

    def __init__(self):
        self.got: dict[str, list] = {}
        self.reasons: dict[str, str | None] = {}
        self.done: dict[str, threading.Event] = {}
        self.server = serve(self.handler, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="ws-recorder").start()

    def url(self, path: str) -> str:
        self.done[path] = threading.Event()
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}{path}"

    def handler(self, ws) -> None:
        path = ws.request.path
        got = self.got.setdefault(path, [])
        try:
            for message in ws:
                got.append(message)
        except ConnectionClosed:
            pass
        self.reasons[path] = ws.close_reason
        self.done[path].set()


@pytest.fixture(scope="module")
def ws_recorder():
    server = WSRecorder()
    yield server
    server.server.shutdown()


def ws_exchange(proxy, rec: WSRecorder, row_id: str, messages: list, reason: str | None) -> tuple[list, str | None, int]:
    """Send the messages (and close with `reason`); (what the upstream received, its close reason, the close code
    the client saw: 1008 when the proxy closed on a token)."""
    path = f"/{row_id}/{random.random()}"
    code = 1000
    try:
        with connect(rec.url(path), proxy=proxy.url, open_timeout=10, close_timeout=5) as ws:
            for m in messages:
                ws.send(m)
                time.sleep(0.01)
            if reason is not None:
                ws.close(1000, reason)
            else:
                try:
                    ws.recv(timeout=0.5)  # the proxy's close, if it closed on a message
                except TimeoutError:
                    pass
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd is not None else 1006
    rec.done[path].wait(10)
    return rec.got.get(path, []), rec.reasons.get(path), code


def _ws_seen(got: list) -> list[bytes]:
    """Every message as bytes, and what a receiver rebuilds from the JSON deltas (string values per key, joined)."""
    out = [m.encode() if isinstance(m, str) else m for m in got]
    deltas: dict = {}
    for m in got:
        text = m if isinstance(m, str) else ""
        body = text.split("-", 1)[-1] if text[:3].isdigit() else text.lstrip("0123456789")
        try:
            obj = json.loads(body)
        except ValueError:
            continue
        items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
        for k, v in items:
            if isinstance(v, str):
                deltas[k] = deltas.get(k, "") + v
    return out + [v.encode() for v in deltas.values()] + [b"".join(out)]


@pytest.mark.parametrize(("row", "kind"), row_params(WS_ROWS, WS_GAPS))
def test_websocket_carrier(evasion_proxy, ws_recorder, row: WSRow, kind: str):
    token = GENERATORS["github-classic-pat"](random.Random(f"evasion-ws:{row.id}"))
    if kind == "wrong_checksum":
        bad = wrong_checksum(token)
        messages, reason = row.send(bad), row.close(bad)
        got, got_reason, code = ws_exchange(evasion_proxy, ws_recorder, row.id, messages, reason)
        assert code == 1000 and got == messages and got_reason == (reason or ""), f"{row.id}: a clean exchange changed"
        return
    messages = row.send(token) if kind == "evasion" else (row.control or row.send)(token)
    reason = row.close(token) if kind == "evasion" else None
    mark = evasion_proxy.mark()
    got, got_reason, _code = ws_exchange(evasion_proxy, ws_recorder, row.id, messages, reason)
    seen = _ws_seen(got) + [(got_reason or "").encode()]
    assert not any(carries(m, token.encode()) for m in seen), f"{row.id}: the upstream received the token"
    incidents = evasion_proxy.incidents(since=mark, wait=10)
    assert fingerprint(token) in {f.get("fingerprint") for i in incidents for f in i.get("findings", [])}, \
        f"{row.id}: no incident with the token's fingerprint: {incidents}"
    evasion_proxy.assert_no_leak(token)

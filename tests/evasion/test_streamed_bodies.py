"""Evasion table, stream half: a token in a STREAMED response (chunked, close-delimited, Content-Encoded) hidden in
the carriers a buffered body is inspected through, through a real `dlproxy run` (built-in profile).

Each row runs three cases (like support.cases): `evasion` (the token in the carrier), `plain` (the same carrier
with the token plainly inside) and `wrong_checksum` (the carrier with a token whose checksum is wrong: it must
arrive byte-identical). For the first two the client must receive the token in no decodable form
(support.carries: escapes, entities, base64, archives, compression ...) and the proxy must record an incident
with the token's fingerprint; the proxy's own output never holds the token.

The upstream here serves each row's body in small writes: `chunked` (Transfer-Encoding: chunked) or `close`
(no length, the body ends when the connection closes), optionally with a Content-Encoding.
"""

from __future__ import annotations

import gzip
import http.server
import json
import random
import socketserver
import threading
import time
from dataclasses import dataclass

import brotli
import httpx
import pytest

from dlproxy.engine.findings import fingerprint
from e2e.conftest import proxied_client
from evasion.support import carries, detector, wrong_checksum
from generators import GENERATORS
from stream_carriers import CARRIERS

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("evasion-streams")]

ENCODERS = {"gzip": gzip.compress, "br": brotli.compress}


@dataclass(frozen=True)
class StreamRow:
    id: str
    ctype: str
    build: object  # secret -> body (identity)
    framing: str = "chunked"  # chunked | close
    encoding: str | None = None  # Content-Encoding applied to the body
    piece: int = 7  # bytes per upstream write


def _rows() -> list[StreamRow]:
    rows = []
    for name, (ctype, build) in sorted(CARRIERS.items()):
        for framing in ("chunked", "close"):
            rows.append(StreamRow(f"{name}-{framing}", ctype, build, framing))
    for name in ("json_newline_escape", "github_contents_base64", "html_entities", "json_unicode_escape"):
        ctype, build = CARRIERS[name]
        for enc in ("gzip", "br"):
            rows.append(StreamRow(f"{name}-{enc}-chunked", ctype, build, "chunked", enc, piece=5))
    return rows


ROWS = _rows()


class _Upstream(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes: dict[str, tuple[StreamRow, bytes]] = {}

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
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the proxy closed the upstream: the expected outcome of a cut
        self.close_connection = True


@pytest.fixture(scope="module")
def stream_upstream():
    server = _Upstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def fetch(proxy, server: _Upstream, row: StreamRow, body: bytes) -> tuple[bytes, bool]:
    """(what the client received, decoded; whether the body ended cleanly)."""
    wire = ENCODERS[row.encoding](body) if row.encoding else body
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


def token_for(row: StreamRow) -> str:
    token = GENERATORS["github-classic-pat"](random.Random(f"evasion-stream:{row.id}"))
    assert detector().scan(f" {token} ")
    return token


@pytest.mark.parametrize("kind", ["evasion", "plain", "wrong_checksum"])
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_streamed_carrier(evasion_proxy, stream_upstream, row: StreamRow, kind: str):
    token = token_for(row)
    if kind == "wrong_checksum":
        body = row.build(wrong_checksum(token))
        got, clean = fetch(evasion_proxy, stream_upstream, row, body)
        assert clean and got == body, f"{row.id}: a clean stream was changed or cut"
        return
    body = row.build(token) if kind == "evasion" else plain_body(row, token)
    mark = evasion_proxy.mark()
    got, _clean = fetch(evasion_proxy, stream_upstream, row, body)
    assert not carries(got, token.encode()), f"{row.id}: the client received the token"
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
    assert len(ROWS) >= 34
    assert json.dumps([r.id for r in ROWS])  # ids are plain strings

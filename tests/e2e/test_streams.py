"""Streams end to end: a real `dlproxy run` in reverse mode in front of a local upstream that streams.

SSE a few characters per event, chunked downloads, gzip-encoded streams, bodies over `stream_large_bodies` in
both directions, HTTP/2. Clean streams arrive byte-identical; a token is cut with at most a proper head of its
public prefix gone out ("gh" of "ghp_", never a byte past it), the upstream connection is closed at once (it stops generating: internals.close_upstream, pinned here), an AI client gets its API's error
event, and the incident, metrics and logs never hold the secret.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import zlib

import httpx
import pytest
from sse_upstream import StreamingUpstream, openai_chat_events, start_reverse

from conftest import GHO, GHP, NPM, curl
from dlproxy.inspect.sse import SSEParser, extract_deltas, parse_fields
from stream_support import assert_cut_at_a_head

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPLY = "Sure. Streams carry text a few characters at a time; this one is clean, with gh-pages and sk-lines. "


@pytest.fixture(scope="module")
def stream_upstream():
    server = StreamingUpstream().start()
    yield server
    server.shutdown()


@pytest.fixture
def up(stream_upstream) -> StreamingUpstream:
    stream_upstream.reset()
    return stream_upstream


@pytest.fixture
def rproxy(start_proxy, stream_upstream):
    return start_reverse(start_proxy, stream_upstream.url, name="streams-reverse")


@pytest.fixture
def large_proxy(start_proxy, stream_upstream):
    return start_reverse(start_proxy, stream_upstream.url, "--set", "stream_large_bodies=64k", name="streams-large")


def events_of(body: bytes) -> list[tuple[str | None, dict | str | None]]:
    parser = SSEParser()
    out = []
    for raw in parser.feed(body) + ([parser.rest()] if parser.rest() else []):
        name, data = parse_fields(raw)
        if data is not None and data[:1] == "{":
            data = json.loads(data)  # every forwarded event is valid JSON
        out.append((name, data))
    return out


def text_of(events) -> str:
    return "".join(d.text for _, obj in events if isinstance(obj, dict) for d in extract_deltas(obj))


# --- SSE ------------------------------------------------------------------------------------------------------------


def test_clean_sse_arrives_byte_identical(rproxy, up):
    up.script(REPLY * 3, chars=3, delay=0.002)
    r = curl("-N", "-X", "POST", f"{rproxy.url}/v1/chat/completions", "-d", "{}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"".join(openai_chat_events(REPLY * 3, 3))


def test_sse_token_split_over_events_is_cut_with_an_error_event(rproxy, up):
    before = "Here is the token you asked for: "
    up.script(before + GHP + " and then a long tail. " * 40, chars=3, delay=0.01)  # ~3 s if not cut
    mark = rproxy.mark()
    blocked = rproxy.metric("dlproxy_flows_total", direction="response", verdict="blocked")
    r = curl("-N", "-X", "POST", f"{rproxy.url}/v1/chat/completions", "-d", "{}")
    assert r.returncode == 18  # HTTP/1: the body ends before its end (upstream closed)
    events = events_of(r.stdout)
    text = text_of(events)
    assert_cut_at_a_head(text, before)  # at most "ghp" of the token: nothing past its public prefix
    assert len(text) >= len(before) - 8  # only the in-flight tail is held back
    assert GHP not in r.stdout.decode() and GHP[:4].encode() not in r.stdout.split(b'data: {"error"')[0]
    name, last = events[-1]
    assert name is None and last["error"]["type"] == "dlp_violation"
    assert last["error"]["code"] == "credential_detected"
    assert last["error"]["findings"][0]["entry"] == "github-pat"
    assert up.aborted.wait(5), "the upstream connection was not closed"
    assert up.sent_events < 100  # it stopped generating
    (incident,) = rproxy.incidents(since=mark, wait=5)
    assert incident["incident_id"] == last["error"]["incident_id"]
    assert incident["direction"] == "response" and incident["action"] == "block"
    assert incident["findings"][0]["location"] == "sse:choices[0].delta.content"
    assert rproxy.metric("dlproxy_flows_total", direction="response", verdict="blocked") == blocked + 1
    rproxy.assert_no_leak(GHP)


def test_sse_is_guarded_under_mitmdump_with_the_script_too(start_proxy, stream_upstream, up):
    proxy = start_reverse(start_proxy, stream_upstream.url, name="streams-mitmdump", cmd="mitmdump")
    up.script("token: " + GHP + " tail" * 100, chars=3, delay=0.005)
    r = curl("-N", "-X", "POST", f"{proxy.url}/v1/chat/completions", "-d", "{}")
    events = events_of(r.stdout)
    assert_cut_at_a_head(text_of(events), "token: ")
    assert events[-1][1]["error"]["type"] == "dlp_violation"
    assert up.aborted.wait(5)


def test_sse_redact_replaces_the_token_in_the_deltas(rproxy, up):
    up.script(f"Your OAuth token is {GHO} — rotate it soon.", chars=2, delay=0.001)
    r = curl("-N", "-X", "POST", f"{rproxy.url}/v1/messages", "-d", "{}")
    assert r.returncode == 0, r.stderr
    events = events_of(r.stdout)
    # a head of "gho_" that went out in its own delta stays; the marker replaces the rest of the token
    assert re.fullmatch(r"Your OAuth token is (g|gh|gho)?\[REDACTED:github-oauth\] — rotate it soon\.",
                        text_of(events)), text_of(events)
    assert GHO not in r.stdout.decode() and events[-1][0] == "message_stop"


def test_sse_log_action_forwards_unchanged_and_records(rproxy, up):
    up.script(f"npm token: {NPM} done", chars=4)
    mark = rproxy.mark()
    r = curl("-N", "-X", "POST", f"{rproxy.url}/v1/chat/completions", "-d", "{}")
    assert r.returncode == 0 and r.stdout == b"".join(openai_chat_events(f"npm token: {NPM} done", 4))
    (incident,) = rproxy.incidents(since=mark, wait=5)
    assert incident["action"] == "log" and incident["findings"][0]["entry"] == "npm-token"


def test_generic_sse_is_cut_with_a_generic_error_event(rproxy, up):
    up.chunks = [b"data: starting \n\n", f"data: {GHP[:9]}\n\n".encode(), f"data: {GHP[9:]}\n\n".encode(),
                 b"data: never\n\n"]
    up.delay = 0.05
    r = curl("-N", f"{rproxy.url}/events")
    assert r.returncode == 18
    events = events_of(r.stdout)
    assert events[0] == (None, "starting ")
    assert events[-1][0] == "error" and events[-1][1]["error"]["type"] == "dlp_violation"
    assert all(GHP[:4] not in str(data) for _, data in events[:-1])  # (the error event shows the masked form)


# --- chunked and encoded downloads --------------------------------------------------------------------------------


def test_chunked_download_with_a_token_across_a_chunk_boundary(rproxy, up):
    head = b"x" * 5000 + b"\nconfig: token="
    up.chunks = [head + GHP[:11].encode(), GHP[11:].encode() + b"\nmore data\n", b"tail " * 1000]
    up.delay = 1.0  # the cut must close the upstream before its last chunk: a second of margin on a busy machine
    mark = rproxy.mark()
    r = curl("-N", f"{rproxy.url}/download")
    assert r.returncode == 18
    assert r.stdout == head  # every byte before the token, none of it
    assert up.aborted.wait(5) and not up.completed.is_set()  # cut mid-body: the upstream could not finish
    (incident,) = rproxy.incidents(since=mark, wait=5)
    assert incident["findings"][0]["location"] == "body:stream"


@pytest.mark.parametrize("seed", range(3))
def test_clean_chunked_download_is_byte_identical(rproxy, up, seed):
    rng = random.Random(seed)
    data = rng.randbytes(300_000) + b" ghp_ gh sk- AKIA " + rng.randbytes(1000)
    cuts = sorted(rng.sample(range(1, len(data)), 150))
    up.chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]
    r = curl("-N", f"{rproxy.url}/download")
    assert r.returncode == 0 and r.stdout == data


def test_gzip_stream_is_decoded_scanned_and_forwarded_decoded(rproxy, up):
    plain = b"line of a gzip-encoded log\n" * 2000
    wire = gzip.compress(plain)
    up.headers = {"Content-Encoding": "gzip"}
    up.chunks = [wire[i:i + 700] for i in range(0, len(wire), 700)]
    with httpx.Client(timeout=30) as client:
        resp = client.get(f"{rproxy.url}/download")
    assert resp.status_code == 200 and "content-encoding" not in resp.headers
    assert resp.content == plain

    up.reset()
    secret = b"before " * 100 + f"key {GHP} after".encode() + b" tail" * 100
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    up.headers = {"Content-Encoding": "gzip"}
    up.chunks = [c.compress(secret[:700]) + c.flush(zlib.Z_SYNC_FLUSH), c.compress(secret[700:]) + c.flush()]
    r = curl("-N", f"{rproxy.url}/download")
    assert r.returncode == 18 and r.stdout == b"before " * 100 + b"key "


def test_secret_in_streamed_response_headers_gets_the_block(rproxy, up):
    up.headers = {"X-Debug": f"token={GHP}"}
    up.chunks = [b"body " * 10] * 5
    up.delay = 0.05
    with httpx.Client(timeout=30) as client:
        resp = client.get(f"{rproxy.url}/download")
    assert resp.status_code == 502  # a withheld response
    assert resp.json()["error"]["type"] == "dlp_violation" and resp.headers["x-dlp-incident"]
    assert GHP not in resp.text and "x-debug" not in resp.headers


def test_http2_client_sees_the_error_event_then_a_reset(rproxy, up):
    up.script("token " + GHP + " tail" * 200, chars=3, delay=0.005)
    r = curl("-N", "--http2", "-k", "-X", "POST", f"https://127.0.0.1:{rproxy.port}/v1/chat/completions", "-d", "{}")
    assert r.returncode in (18, 92), r.stderr  # the stream is reset
    events = events_of(r.stdout)
    assert events[-1][1]["error"]["type"] == "dlp_violation"
    assert_cut_at_a_head(text_of(events), "token ")
    assert up.aborted.wait(5)


# --- bodies over stream_large_bodies, both directions ----------------------------------------------------------------


def test_large_clean_upload_streams_through_intact(large_proxy, up, tmp_path):
    data = random.Random(1).randbytes(1_200_000)
    path = tmp_path / "clean.bin"
    path.write_bytes(data)
    r = curl("-X", "POST", "--data-binary", f"@{path}", f"{large_proxy.url}/upload")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "bytes": len(data)}
    ((_, _, headers, body),) = up.received
    assert body == data and headers.get("Content-Length") == str(len(data))  # length kept


def test_large_upload_with_a_token_is_cut_before_the_token(large_proxy, up, tmp_path):
    data = b"a" * 600_000 + f" {GHP} ".encode() + b"b" * 600_000
    path = tmp_path / "secret.bin"
    path.write_bytes(data)
    mark = large_proxy.mark()
    r = curl("-X", "POST", "--data-binary", f"@{path}", f"{large_proxy.url}/upload")
    # the upload is cut mid-body: the client's connection is reset (curl 56); no 403 can be sent while it streams
    assert r.returncode != 0 and b'"ok"' not in r.stdout
    assert up.incomplete.wait(5) or not up.received  # the upstream never got a complete request
    for _, _, _, body in up.received:
        assert_cut_at_a_head(body, data[:600_001])  # at most "ghp": not one byte past the public prefix
    (incident,) = large_proxy.incidents(since=mark, wait=5)
    assert incident["direction"] == "request" and incident["action"] == "block"


def test_large_download_keeps_its_length_and_is_cut_at_a_token(large_proxy, up):
    up.fixed_length = True
    data = random.Random(2).randbytes(200_000)
    up.chunks = [data[:70_000], data[70_000:]]
    with httpx.Client(timeout=30) as client:
        resp = client.get(f"{large_proxy.url}/download")
    assert resp.content == data and resp.headers["content-length"] == str(len(data))

    up.reset()
    up.fixed_length = True
    up.chunks = [b"z" * 100_000 + b" " + GHP[:20].encode(), GHP[20:].encode() + b" " + b"z" * 100_000]
    up.delay = 0.1
    r = curl("-N", f"{large_proxy.url}/download")
    assert r.returncode == 18 and r.stdout == b"z" * 100_000 + b" "

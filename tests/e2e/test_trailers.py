"""Trailers through the real proxy: the paths the evasion table (tests/evasion/test_streamed_bodies.py) does not
take. A streamed request (every body streamed with `stream_large_bodies`) whose trailer carries a token is cut
before the trailer is forwarded; redaction rewrites a trailer (buffered request, streamed response); a trailer is
never a use position, so issuer binding does not allow a token there; an HTTP/1 chunked request with trailers
goes through instead of hanging the connection; an HTTP/2 client gets a streamed HTTP/2 response without
HTTP/1 framing headers (curl exits 92 on them).
"""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from e2e.conftest import GHO, GHP, curl, make_token
from e2e.h2server import H2First, h1_chunked_post, h2_exchange

pytestmark = pytest.mark.e2e

REDACTED = "[REDACTED:github-oauth]"


@pytest.fixture
def streaming_proxy(start_proxy):
    """Every request body streamed (inspected by the stream callable, not the buffered inspector)."""
    return start_proxy("--set", "stream_large_bodies=1", name="stream-requests")


def test_http1_chunked_request_with_trailers_is_answered(proxy, upstream):
    """mitmproxy 12.3 alone raises on an HTTP/1 trailer section and leaves the connection open (the client
    hangs); dlproxy carries it: the request and its trailer arrive, the client gets the upstream's answer."""
    got = h1_chunked_post(proxy.port, f"{upstream.url}/upload", [("X-Checksum", "sha256-abc")])
    assert got.startswith(b"HTTP/1.1 200")
    [rec] = upstream.received
    assert rec.body == b"hello" and rec.trailers == [("X-Checksum", "sha256-abc")]


@pytest.mark.parametrize("version", ["h2", "h1"])
def test_streamed_request_is_cut_by_a_token_in_its_trailer(streaming_proxy, h2_upstream, upstream, version):
    secret = make_token("ghp_", f"stream-trailer-{version}")
    mark = streaming_proxy.mark()
    if version == "h2":
        r = h2_exchange(streaming_proxy.port, streaming_proxy.ca, h2_upstream.port, "POST", "/upload", b"x" * 300,
                        trailers=[("x-token", secret)])
        whole, received = r.status == 200 and r.ended, h2_upstream.received
    else:
        got = h1_chunked_post(streaming_proxy.port, f"{upstream.url}/upload", [("X-Token", secret)], b"x" * 300)
        whole, received = got.startswith(b"HTTP/1.1 200"), upstream.received
    assert not whole
    assert not any(r.carries(secret) for r in received)
    [incident] = streaming_proxy.incidents(since=mark, wait=5)
    assert incident["action"] == "block" and incident["findings"][0]["location"] == "trailer:x-token"
    streaming_proxy.assert_no_leak(secret)


def test_streamed_request_with_a_clean_trailer_arrives_whole(streaming_proxy, h2_upstream):
    r = h2_exchange(streaming_proxy.port, streaming_proxy.ca, h2_upstream.port, "POST", "/upload", b"x" * 300,
                    trailers=[("x-checksum", "abc")])
    assert r.status == 200 and r.ended
    [rec] = h2_upstream.received
    assert rec.body == b"x" * 300 and rec.trailers == [("x-checksum", "abc")]


def test_streamed_http2_upload_of_unknown_length_to_an_http1_upstream_arrives_whole(start_proxy, upstream):
    """An HTTP/2 request without a length, streamed, re-sent to an HTTP/1 upstream: it needs chunked framing (and
    its trailers go in the last chunk); the same header must not go to an HTTP/2 upstream (the test above)."""
    proxy = start_proxy("--mode", f"reverse:{upstream.url}", "--set", "stream_large_bodies=1",
                        name="reverse-stream-requests")
    r = h2_exchange(proxy.port, proxy.ca, None, "POST", "/upload", b"x" * 300, trailers=[("x-checksum", "abc")])
    assert r.status == 200 and r.ended
    [rec] = upstream.received
    assert rec.body == b"x" * 300 and rec.trailers == [("x-checksum", "abc")]


def test_redact_in_a_request_trailer(proxy, upstream):
    mark = proxy.mark()
    got = h1_chunked_post(proxy.port, f"{upstream.url}/upload", [("X-Token", f"token {GHO}")])
    assert got.startswith(b"HTTP/1.1 200")
    [rec] = upstream.received
    assert rec.trailers == [("X-Token", f"token {REDACTED}")] and not upstream.saw(GHO)
    [incident] = proxy.incidents(since=mark, wait=5)
    assert incident["action"] == "redact" and incident["findings"][0]["location"] == "trailer:x-token"
    proxy.assert_no_leak(GHO)


def test_redact_in_a_streamed_response_trailer(proxy, h2_upstream):
    h2_upstream.respond("/grpc", [b"\0\0\0\0\x02hi"], headers=[("content-type", "application/grpc")],
                        trailers=[("grpc-status", "16"), ("grpc-message", f"bad {GHO}")])
    r = h2_exchange(proxy.port, proxy.ca, h2_upstream.port, "POST", "/grpc", b"{}", [("te", "trailers")])
    assert r.status == 200 and r.ended and r.body == b"\0\0\0\0\x02hi"
    assert r.trailers == [("grpc-status", "16"), ("grpc-message", f"bad {REDACTED}")]
    proxy.assert_no_leak(GHO)


def test_a_trailer_is_not_a_use_position(proxy, upstream):
    """`localhost` is a GitHub issuer in the e2e profile: the token in its Authorization header is allowed, the
    same token in an Authorization *trailer* is a leak."""
    issuer = f"http://localhost:{upstream.port}/user"
    allowed = h1_chunked_post(proxy.port, issuer, [("X-Checksum", "abc")], headers=[("Authorization", f"token {GHP}")])
    assert allowed.startswith(b"HTTP/1.1 200")
    mark = proxy.mark()
    blocked = h1_chunked_post(proxy.port, issuer, [("Authorization", f"token {GHP}")])
    assert blocked.startswith(b"HTTP/1.1 403")
    assert [r.trailers for r in upstream.received] == [[("X-Checksum", "abc")]]
    [incident] = proxy.incidents(since=mark, wait=5)
    assert incident["findings"][0]["location"] == "trailer:authorization"


def test_response_blocked_at_its_headers_drops_the_upstream_trailers(proxy, h2_upstream):
    """A token in the response headers replaces the response by the 502 before its body: trailers the upstream
    sends with no body in between would land on that 502; they are not forwarded."""
    h2_upstream.respond("/h", [], headers=[("x-note", GHP)], trailers=[("x-token", GHP)])
    r = h2_exchange(proxy.port, proxy.ca, h2_upstream.port, "GET", "/h")
    assert r.status == 502 and GHP not in r.text() and r.trailers == []
    proxy.assert_no_leak(GHP)


@pytest.fixture
def h2_reverse_proxy(start_proxy, h2_upstream):
    return start_proxy("--mode", f"reverse:{h2_upstream.url}", name="reverse-h2")


@pytest.mark.parametrize("ctype", ["text/event-stream", "text/plain"])
def test_http2_upstream_streamed_to_an_http2_client(h2_reverse_proxy, h2_upstream, ctype):
    """HTTP/2 on both sides: the streamed (re-framed) response must not gain `transfer-encoding` (illegal in
    HTTP/2: curl exits 92, h2 raises ProtocolError). Also with trailers, which arrive after the body."""
    body = "".join(f"data: {json.dumps({'n': i, 'text': 'word ' * 4})}\n\n" for i in range(30)).encode()
    h2_upstream.respond("/s", [body[i:i + 50] for i in range(0, len(body), 50)], headers=[("content-type", ctype)],
                        trailers=[("x-done", "1")])
    r = curl("--http2", "--cacert", h2_reverse_proxy.ca, "-sS", "-i", f"https://localhost:{h2_reverse_proxy.port}/s")
    assert r.returncode == 0, r.stderr
    head, _, rest = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200") and b"transfer-encoding" not in head.lower()
    assert rest.startswith(body)
    context = H2First(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(h2_reverse_proxy.ca)
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=30) as client:
        resp = client.get(f"https://localhost:{h2_reverse_proxy.port}/s")
    assert resp.http_version == "HTTP/2" and resp.content == body and "transfer-encoding" not in resp.headers


@pytest.mark.parametrize("strategy", ["lazy", "eager"])
@pytest.mark.parametrize("version", ["h2", "h1"])
def test_streamed_http2_upload_to_a_tls_upstream_is_framed_for_its_version(start_proxy, h2_upstream, tls_upstream,
                                                                          strategy, version):
    """An HTTP/2 upload of unknown length, streamed, to a TLS upstream: an HTTP/1.1 upstream needs chunked framing,
    an HTTP/2 one must not get `transfer-encoding` (h2 rejects it: PROTOCOL_ERROR; bare mitmproxy sends none).
    Which one it is is known at the request's headers only when its connection was opened first (eager); with a
    lazy connection, once its TLS handshake is done. Also for a second request on the same connection."""
    proxy = start_proxy("--set", "stream_large_bodies=1", "--set", f"connection_strategy={strategy}",
                        name=f"stream-requests-{strategy}")
    target = h2_upstream if version == "h2" else tls_upstream
    context = H2First(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(proxy.ca)
    with httpx.Client(http2=True, verify=context, proxy=proxy.url, trust_env=False, timeout=30) as client:
        for i in range(2):
            r = client.post(f"{target.url}/upload", content=iter([b"x" * 100, b"y" * 200]))
            assert r.status_code == 200, (i, r.status_code, r.text)
            # eager: the client is offered what the upstream chose (HTTP/1.1 from an HTTP/1.1 upstream)
            assert r.http_version == ("HTTP/1.1" if (strategy, version) == ("eager", "h1") else "HTTP/2")
    assert [rec.body for rec in target.received] == [b"x" * 100 + b"y" * 200] * 2
    framing = [v.lower() for rec in target.received for k, v in rec.headers if k.lower() == "transfer-encoding"]
    assert framing == ([] if version == "h2" else ["chunked", "chunked"])

"""Requests through the real forward proxy (`dlproxy run`, regular mode): blocked, redacted, logged, allowed.

Every block asserts the upstream never received the secret and that no log line, incident or 403 body holds
it (or its last 8 characters); every clean request asserts the upstream received the body byte for byte.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import zlib

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from conftest import GHO, GHP, NPM, PUBLIC_GHP, curl, curl_response, make_token, proxied_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def assert_blocked(resp: httpx.Response, proxy, secret: str, location_part: str = "") -> dict:
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"] == "application/json"
    err = resp.json()["error"]
    assert err["type"] == "dlp_violation" and err["code"] == "credential_detected"
    assert resp.headers["x-dlp-incident"] == err["incident_id"]
    assert err["findings"] and {"entry", "name", "location", "masked", "fingerprint"} <= set(err["findings"][0])
    assert err["findings"][0]["name"] in err["message"]
    assert location_part in err["findings"][0]["location"]
    for needle in (secret, secret[-8:]):
        assert needle not in resp.text
    [incident] = [i for i in proxy.incidents(wait=5) if i["incident_id"] == err["incident_id"]]
    assert incident["action"] == "block" and not incident["dry_run"]
    proxy.assert_no_leak(secret)
    return err


def test_clean_json_post_reaches_upstream_byte_for_byte(proxy, upstream):
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is 2+2? ✓"}]})
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/v1/chat/completions", content=body.encode(),
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 200 and resp.json()["object"] == "chat.completion"
    assert upstream.bodies() == [body.encode()]


def test_secret_in_json_prompt_is_blocked(proxy, upstream):
    body = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "be brief"},
                                                {"role": "user", "content": f"deploy with {GHP} please"}]}
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/v1/chat/completions", json=body)
    err = assert_blocked(resp, proxy, GHP, "body:json:$.messages[1].content")
    assert "GitHub Personal Access Token" in err["message"]
    assert upstream.received == []


def test_secret_in_authorization_header_is_blocked(proxy, upstream):
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/user", headers={"Authorization": f"token {GHP}"})
    assert_blocked(resp, proxy, GHP, "header:authorization")
    assert not upstream.saw(GHP)


def test_secret_in_basic_auth_is_blocked(proxy, upstream):
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/repo.git/info/refs", auth=("x-access-token", GHP))
    assert_blocked(resp, proxy, GHP, "header:authorization")
    assert upstream.received == []


def test_secret_in_query_is_blocked_and_masked_in_the_incident(proxy, upstream):
    mark = proxy.mark()
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/search", params={"access_token": GHP, "q": "x"})
    assert_blocked(resp, proxy, GHP, "url")
    [incident] = proxy.incidents(since=mark, wait=5)
    assert incident["path"].startswith("/search?") and GHP not in incident["path"]
    assert upstream.received == []


def test_curl_multipart_upload_is_blocked(proxy, upstream, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text(f"deploy notes\nexport GITHUB_TOKEN={GHP}\n")
    resp = curl_response("-x", proxy.url, "-F", f"file=@{notes}", "-F", "comment=see attached",
                         f"{upstream.url}/upload")
    err = assert_blocked(resp, proxy, GHP, "multipart")
    assert "notes.txt" in err["findings"][0]["location"]
    assert upstream.received == []


def test_curl_multipart_clean_upload_is_forwarded_byte_for_byte(proxy, upstream, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 64 + b"plain text, no credentials")
    direct = curl("-F", f"file=@{data}", "-F", "comment=hello", f"{upstream.url}/upload")
    assert direct.returncode == 0
    r = curl("-x", proxy.url, "-F", f"file=@{data}", "-F", "comment=hello", f"{upstream.url}/upload")
    assert r.returncode == 0 and b'"ok": true' in r.stdout
    first, second = upstream.received
    assert _unboundary(second) == _unboundary(first)
    assert data.read_bytes() in second.body


def test_https_through_the_forward_proxy(proxy, tls_upstream):
    body = b'{"input": "hello over TLS"}'
    r = curl("--cacert", proxy.ca, "-x", proxy.url, "-H", "Content-Type: application/json", "--data-binary", body,
             f"{tls_upstream.url}/v1/embeddings")
    assert r.returncode == 0, r.stderr
    assert tls_upstream.bodies() == [body]
    with proxied_client(proxy) as client:
        resp = client.post(f"{tls_upstream.url}/v1/embeddings", json={"input": f"my key {GHP}"})
    assert_blocked(resp, proxy, GHP, "body:json")
    assert tls_upstream.bodies() == [body]


@pytest.mark.parametrize("encode", [
    pytest.param(lambda b: (gzip.compress(b), "gzip"), id="gzip"),
    pytest.param(lambda b: (gzip.compress(b"harmless prefix ") + gzip.compress(b), "gzip"), id="multi-member-gzip"),
    pytest.param(lambda b: (zlib.compress(b), "deflate"), id="deflate"),
])
def test_compressed_bodies_are_decoded_before_scanning(proxy, upstream, encode):
    raw, coding = encode(json.dumps({"prompt": f"use {GHP}"}).encode())
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/v1/completions", content=raw,
                           headers={"Content-Type": "application/json", "Content-Encoding": coding})
    assert_blocked(resp, proxy, GHP)
    assert upstream.received == []


def test_undecodable_content_encoding_fails_closed(proxy, upstream):
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/upload", content=b"\x1f\x8bnot really gzip " + GHP.encode(),
                           headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 403 and GHP not in resp.text
    assert upstream.received == []


def test_chunked_upload_is_inspected(proxy, upstream):
    def chunks():
        yield b'{"text": "first part '
        yield GHP[:10].encode()
        yield GHP[10:].encode() + b'"}'

    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/upload", content=chunks(), headers={"Content-Type": "application/json"})
    assert_blocked(resp, proxy, GHP)
    assert upstream.received == []


def test_large_bodies(proxy, upstream):
    clean = (b"0123456789abcdef" * 65536)  # 1 MiB, scanned off the event loop
    with proxied_client(proxy) as client:
        assert client.post(f"{upstream.url}/upload", content=clean).status_code == 200
        resp = client.post(f"{upstream.url}/upload", content=clean + f" {GHP}".encode())
    assert upstream.bodies() == [clean]
    assert_blocked(resp, proxy, GHP)


def test_issuer_binding(proxy, upstream):
    """localhost is a github-pat issuer in the e2e profile: the token may go there in its use position (the
    Authorization header), and nowhere else: not to another host, not in the body of a request to the issuer."""
    issuer_url = upstream.url.replace("127.0.0.1", "localhost")
    body = json.dumps({"token": GHP}).encode()
    auth = {"Authorization": f"Bearer {GHP}"}
    with proxied_client(proxy) as client:
        ok = client.post(f"{issuer_url}/login/oauth", content=b"{}", headers=auth)
        blocked = client.post(f"{upstream.url}/login/oauth", content=b"{}", headers=auth)
        in_body = client.post(f"{issuer_url}/gists", content=body)
    assert ok.status_code == 200 and upstream.bodies() == [b"{}"]
    assert upstream.received[0].header("authorization") == f"Bearer {GHP}"
    assert_blocked(blocked, proxy, GHP)
    assert_blocked(in_body, proxy, GHP)
    assert proxy.metric("dlproxy_detections_total", entry="github-pat", direction="request", action="allow") >= 1


def test_redact_action(proxy, upstream):
    mark = proxy.mark()
    body = json.dumps({"messages": [{"role": "user", "content": f"token {GHO} end"}]})
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/v1/chat/completions", content=body,
                           headers={"Content-Type": "application/json"})
        form = client.post(f"{upstream.url}/form", data={"user": "me", "token": GHO})
    assert resp.status_code == 200 and form.status_code == 200
    first, second = upstream.received
    assert json.loads(first.body)["messages"][0]["content"] == "token [REDACTED:github-oauth] end"
    assert first.header("content-length") == str(len(first.body))
    assert second.body == b"user=me&token=%5BREDACTED%3Agithub-oauth%5D"
    assert not upstream.saw(GHO)
    incidents = proxy.incidents(since=mark, wait=5)
    assert [i["action"] for i in incidents] == ["redact", "redact"]
    proxy.assert_no_leak(GHO)


def h2_get(port: int, ca: str, path: bytes) -> int:
    """One HTTP/2 GET with a raw (not percent-encoded) :path, as some clients send it; returns the status."""
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(validate_outbound_headers=False))
        conn.initiate_connection()
        conn.send_headers(1, [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost"),
                              (b":path", path)], end_stream=True)
        sock.sendall(conn.data_to_send())
        while True:
            data = sock.recv(65536)
            assert data, "connection closed before the response"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    return int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())


def test_redact_in_the_query_of_a_utf8_path(reverse_proxy, upstream):
    """A raw UTF-8 request target (HTTP/2; mitmproxy refuses non-ASCII HTTP/1 targets): redacted, not blocked."""
    mark = reverse_proxy.mark()
    path = "/日本/ページ?key={}&x=1"
    assert h2_get(reverse_proxy.port, reverse_proxy.ca, path.format(GHO).encode()) == 200
    [received] = upstream.received
    assert received.path.encode("latin-1") == path.format("%5BREDACTED%3Agithub-oauth%5D").encode()
    assert not upstream.saw(GHO)
    [incident] = reverse_proxy.incidents(since=mark, wait=5)
    assert incident["action"] == "redact"
    reverse_proxy.assert_no_leak(GHO)


def test_log_action_forwards_byte_for_byte(proxy, upstream):
    mark = proxy.mark()
    body = f"//registry.npmjs.org/:_authToken={NPM}\n".encode()
    with proxied_client(proxy) as client:
        resp = client.put(f"{upstream.url}/npmrc", content=body)
    assert resp.status_code == 200 and upstream.bodies() == [body]
    [incident] = proxy.incidents(since=mark, wait=5)
    assert incident["action"] == "log" and incident["findings"][0]["entry"] == "npm-token"
    proxy.assert_no_leak(NPM)


def test_look_alike_with_a_bad_checksum_passes(proxy, upstream):
    fake = GHP[:-1] + ("A" if GHP[-1] != "A" else "B")
    body = f"not a token: {fake}".encode()
    with proxied_client(proxy) as client:
        assert client.post(f"{upstream.url}/notes", content=body).status_code == 200
    assert upstream.bodies() == [body]


def test_several_secrets_are_all_reported(proxy, upstream):
    other = make_token("ghp_", "another")
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": f"{GHP} and {other}"}]})
    err = assert_blocked(resp, proxy, GHP)
    assert len({f["fingerprint"] for f in err["findings"]}) == 2
    assert "and 1 more" in err["message"]
    proxy.assert_no_leak(other)


def test_builtin_profile_blocks_the_public_vector(start_proxy, upstream):
    builtin = start_proxy(name="builtin", profiles=())
    with proxied_client(builtin) as client:
        resp = client.post(f"{upstream.url}/v1/chat/completions",
                           json={"messages": [{"role": "user", "content": f"token {PUBLIC_GHP}"}]})
    assert_blocked(resp, builtin, PUBLIC_GHP)
    assert upstream.received == []


# --- helpers ------------------------------------------------------------------------------------------


def _unboundary(rec) -> bytes:
    """A multipart body with its random boundary replaced, so two curl uploads compare byte for byte."""
    boundary = rec.header("content-type").split("boundary=", 1)[1].strip('"').encode()
    return rec.body.replace(boundary, b"BOUNDARY")

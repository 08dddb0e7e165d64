"""Buffered responses through the real proxy: a secret in what the upstream sends back never reaches the client."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import GHO, GHP, proxied_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def assert_response_blocked(resp, proxy, secret: str) -> dict:
    assert resp.status_code == 502, resp.text  # withheld, not "forbidden": the request itself was fine
    err = resp.json()["error"]
    assert err["code"] == "credential_detected" and "withheld the upstream's response" in err["message"]
    assert resp.headers["x-dlp-incident"] == err["incident_id"]
    assert secret not in resp.text and secret[-8:] not in resp.text
    [incident] = [i for i in proxy.incidents(wait=5) if i["incident_id"] == err["incident_id"]]
    assert incident["direction"] == "response" and incident["action"] == "block"
    proxy.assert_no_leak(secret)
    return err


def test_clean_response_is_delivered_byte_for_byte(proxy, upstream):
    payload = json.dumps({"data": "nothing secret here", "n": list(range(50))}).encode()
    upstream.respond("/data", payload, headers={"Content-Type": "application/json"})
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/data")
    assert resp.status_code == 200 and resp.content == payload


def test_secret_in_response_body_is_withheld(proxy, upstream):
    upstream.respond("/config", {"github": {"token": GHP}})
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/config")
    err = assert_response_blocked(resp, proxy, GHP)
    assert err["findings"][0]["location"].startswith("body")


def test_secret_in_response_header_is_blocked(proxy, upstream):
    upstream.respond("/login", b"ok", headers={"Content-Type": "text/plain", "X-Api-Token": GHP})
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/login")
    assert assert_response_blocked(resp, proxy, GHP)["findings"][0]["location"].startswith("header")


def test_gzip_response_is_decoded_before_scanning(proxy, upstream):
    upstream.respond("/dump", gzip.compress(f"export TOKEN={GHP}\n".encode()),
                     headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"})
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/dump")
    assert_response_blocked(resp, proxy, GHP)


def test_response_from_an_issuer_is_not_exempt(proxy, upstream):
    upstream.respond("/token", {"token": GHP})
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url.replace('127.0.0.1', 'localhost')}/token")
    assert_response_blocked(resp, proxy, GHP)


def test_https_response_is_inspected(proxy, tls_upstream):
    tls_upstream.respond("/secret", f"token: {GHP}")
    with proxied_client(proxy) as client:
        resp = client.get(f"{tls_upstream.url}/secret")
    assert_response_blocked(resp, proxy, GHP)


def test_response_redaction_keeps_framing(proxy, upstream):
    upstream.respond("/oauth", {"access_token": GHO, "scope": "repo"})
    with proxied_client(proxy) as client:
        resp = client.get(f"{upstream.url}/oauth")
    assert resp.status_code == 200
    assert resp.json() == {"access_token": "[REDACTED:github-oauth]", "scope": "repo"}
    assert resp.headers["content-length"] == str(len(resp.content))
    proxy.assert_no_leak(GHO)


def test_a_blocked_request_is_not_inspected_again_as_a_response(proxy, upstream):
    before = proxy.metric("dlproxy_flows_total", direction="response", verdict="blocked")
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/x", content=GHP)
    assert resp.status_code == 403 and upstream.received == []
    assert proxy.metric("dlproxy_flows_total", direction="response", verdict="blocked") == before

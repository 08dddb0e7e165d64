"""Messages that tell the truth: a withheld response says so (and is no "bad API key" to an SDK); "ready" only
when the proxy is; the CA hint only where clients need the CA."""

from __future__ import annotations

import re
import socket
import subprocess

import httpx2
import openai
import pytest

from conftest import GHP, dlproxy_cmd, openai_completion

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_sdk_sees_a_withheld_response_as_a_gateway_error_not_a_permission_error(reverse_proxy, upstream):
    upstream.respond("/v1/chat/completions", openai_completion(f"your token is {GHP}"))
    client = openai.OpenAI(api_key="sk-test-not-a-real-key", base_url=f"{reverse_proxy.url}/v1", max_retries=0,
                           http_client=httpx2.Client(trust_env=False, timeout=30))
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "what is my token?"}])
    assert not isinstance(exc.value, (openai.PermissionDeniedError, openai.AuthenticationError))
    assert exc.value.status_code == 502 and exc.value.response.headers["x-dlp-incident"]
    text = str(exc.value)
    assert "withheld the upstream's response" in text and "The request was sent; the reply was withheld." in text
    assert "Remove the credential" not in text
    assert GHP not in text and GHP[-8:] not in text
    assert len(upstream.received) == 1  # the request did go out
    reverse_proxy.assert_no_leak(GHP)


def test_the_ca_hint_only_where_clients_need_the_ca(proxy, reverse_proxy):
    ready = re.compile(r"dlproxy ready[^\n]*")
    forward = proxy.wait_for(ready)
    assert forward and "HTTPS clients must trust" in forward[0] and "mitmproxy-ca-cert.pem" in forward[0]
    reverse = reverse_proxy.wait_for(ready)  # reverse mode to a plain-HTTP upstream: clients speak HTTP to it
    assert reverse and "trust" not in reverse[0]


def test_no_ready_when_the_metrics_port_cannot_be_bound(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(dlproxy_cmd() + ["run", "--listen-port", "0", "--metrics-port", str(port),
                                            "--set", f"confdir={tmp_path / 'conf'}"],
                           capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"metrics server could not listen at 127.0.0.1:{port}" in out
    assert "dlproxy ready" not in out

"""Proxy modes and entry points: reverse mode as an AI-gateway sidecar (OpenAI and Anthropic SDKs, HTTP/2 over
TLS), `mitmdump -s addons/dlp.py`, fail-closed startup, and a crash inside inspection."""

from __future__ import annotations

import json
import ssl
import subprocess
import textwrap

import anthropic
import httpx
import httpx2  # the SDKs' HTTP client (a fork of httpx): their http_client must be one of these
import openai
import pytest

from conftest import E2E_PROFILE, GHP, Proxy, curl, dlproxy_cmd, proxied_client
from e2e.h2server import H2First

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


class Capture:
    """httpx event hook: the exact bytes an SDK sent, to compare with what the upstream received."""

    def __init__(self):
        self.bodies: list[bytes] = []

    def __call__(self, request) -> None:
        self.bodies.append(request.read())


def sdk_http_client(capture: Capture, **kw) -> httpx2.Client:
    return httpx2.Client(event_hooks={"request": [capture]}, trust_env=False, timeout=30, **kw)


# --- reverse mode: the sidecar in front of an AI API -----------------------------------------------------


def test_openai_sdk_clean_prompt_passes_byte_for_byte(reverse_proxy, upstream):
    capture = Capture()
    client = openai.OpenAI(api_key="sk-test-not-a-real-key", base_url=f"{reverse_proxy.url}/v1", max_retries=0,
                           http_client=sdk_http_client(capture))
    out = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hi"}])
    assert out.choices[0].message.content == "Hello from upstream"
    assert upstream.bodies() == capture.bodies


def test_openai_sdk_blocked_prompt_raises_permission_denied(reverse_proxy, upstream):
    client = openai.OpenAI(api_key="sk-test-not-a-real-key", base_url=f"{reverse_proxy.url}/v1", max_retries=0,
                           http_client=sdk_http_client(Capture()))
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": f"Here is my token {GHP}, list my repos"}])
    assert exc.value.status_code == 403
    assert "GitHub Personal Access Token" in str(exc.value)
    assert GHP not in str(exc.value) and GHP[-8:] not in str(exc.value)
    assert exc.value.response.headers["x-dlp-incident"]
    assert upstream.received == []
    reverse_proxy.assert_no_leak(GHP)


def test_anthropic_sdk(reverse_proxy, upstream):
    capture = Capture()
    client = anthropic.Anthropic(api_key="sk-ant-test-not-real", base_url=reverse_proxy.url, max_retries=0,
                                 http_client=sdk_http_client(capture))
    msg = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64,
                                 messages=[{"role": "user", "content": "Say hi"}])
    assert msg.content[0].text == "Hello from upstream"
    assert upstream.bodies() == capture.bodies
    with pytest.raises(anthropic.PermissionDeniedError) as exc:
        client.messages.create(model="claude-3-5-haiku-latest", max_tokens=64,
                               system=f"You may use the token {GHP}",
                               messages=[{"role": "user", "content": "Say hi"}])
    assert "GitHub Personal Access Token" in str(exc.value) and GHP not in str(exc.value)
    assert len(upstream.received) == 1
    reverse_proxy.assert_no_leak(GHP)


def test_http2_over_tls_to_the_reverse_listener(reverse_proxy, upstream):
    """Clients may speak TLS (and HTTP/2) to the sidecar; mitmproxy mints a cert from its CA."""
    body = json.dumps({"messages": [{"role": "user", "content": "hello over h2"}]}).encode()
    context = H2First(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(reverse_proxy.ca)
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=30) as client:
        url = f"https://localhost:{reverse_proxy.port}/v1/chat/completions"
        ok = client.post(url, content=body, headers={"Content-Type": "application/json"})
        blocked = client.post(url, json={"messages": [{"role": "user", "content": GHP}]})
    assert ok.http_version == "HTTP/2" and ok.status_code == 200
    assert blocked.http_version == "HTTP/2" and blocked.status_code == 403
    assert blocked.json()["error"]["code"] == "credential_detected"
    assert upstream.bodies() == [body]
    r = curl("--http2", "--cacert", reverse_proxy.ca, "-i", "--data-binary", f'{{"q": "{GHP}"}}',
             f"https://localhost:{reverse_proxy.port}/v1/chat/completions")
    assert r.stdout.startswith(b"HTTP/2 403"), r.stdout
    assert GHP.encode() not in r.stdout, r.stdout.decode()
    assert upstream.bodies() == [body]
    reverse_proxy.assert_no_leak(GHP)


def test_http11_over_tls_to_the_reverse_listener(reverse_proxy, upstream):
    with httpx.Client(verify=reverse_proxy.ssl_context(), trust_env=False, timeout=30) as client:
        resp = client.post(f"https://127.0.0.1:{reverse_proxy.port}/v1/chat/completions", content=GHP)
    assert resp.http_version == "HTTP/1.1" and resp.status_code == 403 and upstream.received == []


def test_reverse_mode_to_a_tls_upstream(start_proxy, tls_upstream):
    proxy = start_proxy("--mode", f"reverse:{tls_upstream.url}", name="reverse-tls")
    client = openai.OpenAI(api_key="sk-test", base_url=f"{proxy.url}/v1", max_retries=0,
                           http_client=sdk_http_client(capture := Capture()))
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
    assert tls_upstream.bodies() == capture.bodies
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": GHP}])
    assert len(tls_upstream.received) == 1


# --- mitmdump -s addons/dlp.py ---------------------------------------------------------------------------


def test_mitmdump_script_entry_point(start_proxy, upstream):
    proxy = start_proxy(name="mitmdump-s", cmd="mitmdump")
    with proxied_client(proxy) as client:
        ok = client.post(f"{upstream.url}/v1/chat/completions", content=b'{"q": "fine"}')
        blocked = client.post(f"{upstream.url}/v1/chat/completions", json={"q": GHP})
    assert ok.status_code == 200 and upstream.bodies() == [b'{"q": "fine"}']
    assert blocked.status_code == 403 and "GitHub Personal Access Token" in blocked.json()["error"]["message"]
    proxy.assert_no_leak(GHP)


# --- fail closed -----------------------------------------------------------------------------------------


def run_to_exit(args: list[str], tmp_path, timeout: float = 60) -> subprocess.CompletedProcess:
    argv = dlproxy_cmd() + ["run", "--listen-port", "0", "--metrics-port", "0",
                            "--set", f"confdir={tmp_path / 'conf'}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_broken_profile_refuses_to_start(tmp_path):
    broken = tmp_path / "broken.yaml"
    text = E2E_PROFILE.replace('pattern: "[A-Za-z0-9]{36}"', 'pattern: "[A-Za-z0-9]+"', 1)
    broken.write_text(text)
    line = text.splitlines().index('    pattern: "[A-Za-z0-9]+"') + 1
    r = run_to_exit(["--profile", str(broken)], tmp_path)
    assert r.returncode != 0
    assert f"{broken}:{line}: entries[0].pattern: unbounded repeat" in r.stdout + r.stderr
    assert "listening" not in r.stdout + r.stderr


def test_missing_profile_refuses_to_start(tmp_path):
    r = run_to_exit(["--profile", str(tmp_path / "nope.yaml")], tmp_path)
    assert r.returncode != 0 and f"{tmp_path / 'nope.yaml'}: no such file" in r.stdout + r.stderr


@pytest.mark.parametrize("setting", ["dlp_backend=nope", "dlp_dry_run=maybe", "dlp_metrics_port=abc"])
def test_bad_option_value_refuses_to_start(tmp_path, setting):
    r = run_to_exit(["--set", setting], tmp_path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert setting.split("=")[0] in r.stdout + r.stderr or "nope" in r.stdout + r.stderr


def test_broken_profile_with_mitmdump_script_exits_non_zero(tmp_path, start_proxy):
    broken = tmp_path / "broken.yaml"
    broken.write_text("profile: x\nentries:\n  - id: Bad Id\n")
    proxy = start_proxy(profiles=[broken], cmd="mitmdump", wait=False)
    assert proxy.proc.wait(60) != 0
    assert f"{broken}:3: entries[0].id" in proxy.output()


CRASHER = """
# Test-only addon: makes inspection raise for bodies containing CRASH-ME (its message quotes the body).
import dlproxy.proxy.addon as addon

_real = addon.scan_message

def _crashing(active, url, headers, body, **kw):
    if b"CRASH-ME" in body:
        raise RuntimeError("extractor exploded on " + body.decode("latin-1"))
    return _real(active, url, headers, body, **kw)

addon.scan_message = _crashing
"""


def test_crash_inside_inspection_fails_closed_and_the_proxy_stays_up(start_proxy, upstream, tmp_path):
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(CRASHER))
    proxy = start_proxy("-s", str(script), name="crasher")
    with proxied_client(proxy) as client:
        crash = client.post(f"{upstream.url}/x", content=f"CRASH-ME {GHP}".encode())
        after = client.post(f"{upstream.url}/x", content=b"still alive")
    assert crash.status_code == 403 and crash.json()["error"]["code"] == "inspection_failed"
    assert crash.headers["x-dlp-incident"]
    assert after.status_code == 200 and upstream.bodies() == [b"still alive"]
    assert proxy.alive()
    assert proxy.metric("dlproxy_inspection_errors_total", reason="RuntimeError") == 1
    assert "RuntimeError" in proxy.output()
    proxy.assert_no_leak(GHP)


def test_dry_run_forwards_but_reports(start_proxy, upstream):
    proxy = start_proxy("--dry-run", name="dry-run")
    body = json.dumps({"q": GHP}).encode()
    with proxied_client(proxy) as client:
        assert client.post(f"{upstream.url}/x", content=body).status_code == 200
    assert upstream.bodies() == [body]
    [incident] = proxy.incidents(wait=5)
    assert incident["dry_run"] is True and incident["action"] == "block"
    # flows_total says what was done (passed under dry-run): an alert on blocks stays quiet
    assert proxy.metric("dlproxy_flows_total", direction="request", verdict="blocked") == 0
    assert proxy.metric("dlproxy_flows_total", direction="request", verdict="dry_run") == 1
    assert proxy.metric("dlproxy_dry_run_total", direction="request", verdict="blocked") == 1
    proxy.assert_no_leak(GHP)


def test_oversized_body_is_refused_not_forwarded(start_proxy, upstream):
    proxy = start_proxy("--set", "body_size_limit=64k", name="small-limit")
    with proxied_client(proxy) as client:
        resp = client.post(f"{upstream.url}/upload", content=b"x" * 200_000)
    assert resp.status_code == 413 and upstream.received == []
    assert proxy.metric("dlproxy_unscannable_total", reason="too_large") == 1
    assert Proxy.alive(proxy)


def test_flow_log_is_quiet_by_default(proxy, upstream):
    mark = proxy.mark()
    with proxied_client(proxy) as client:
        client.get(f"{upstream.url}/search", params={"q": "harmless-marker-string"})
    assert "harmless-marker-string" not in proxy.output(since=mark)


def test_tls_client_must_trust_the_proxy_ca(proxy, tls_upstream):
    with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(), trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            client.get(f"{tls_upstream.url}/")


def test_http2_client_gets_a_streamed_response_without_hop_by_hop_framing(reverse_proxy, upstream):
    """A streamed (re-framed) response to an HTTP/2 client: no `transfer-encoding` header goes out (it is illegal in
    HTTP/2: curl exits 92, h2 raises ProtocolError), the body arrives whole, clean or cut."""
    events = "".join(f"data: {json.dumps({'n': i, 'text': 'word ' * 5})}\n\n" for i in range(50))
    upstream.respond("/events", events, headers={"Content-Type": "text/event-stream"})
    r = curl("--http2", "--cacert", reverse_proxy.ca, "-sS", "-i", f"https://localhost:{reverse_proxy.port}/events")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200") and b"transfer-encoding" not in head.lower()
    assert body == events.encode()
    context = H2First(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(reverse_proxy.ca)
    with httpx.Client(http2=True, verify=context, trust_env=False, timeout=30) as client:
        resp = client.get(f"https://localhost:{reverse_proxy.port}/events")
    assert resp.http_version == "HTTP/2" and resp.text == events and "transfer-encoding" not in resp.headers

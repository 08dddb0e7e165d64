"""Closing the loop end to end: a real `dlproxy run` revokes exposed tokens at a fake GitHub revocation endpoint
on 127.0.0.1 (the revoker URL is configurable for exactly this), and a queued revocation survives kill -9."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import make_token, proxied_client
from dlproxy.engine.profile import builtin_profile_path
from revocation_support import FakeRevoker

pytestmark = pytest.mark.e2e

OVERLAY = """\
profile: revoke-e2e
entries:
  - {{id: github-oauth-token, action: log}}
revocation:
  when: exposed
  revokers:
    - id: github
      kind: github
      url: {url}
      entries: [github-classic-pat, github-oauth-token]
"""


@pytest.fixture
def fake():
    f = FakeRevoker()
    yield f
    f.close()


def start(start_proxy, tmp_path: Path, fake: FakeRevoker, state: Path | None):
    """A private proxy revoking at `fake`; `state` None: the default state directory, <confdir>/dlproxy-state."""
    overlay = tmp_path / "revoke.yaml"
    overlay.write_text(OVERLAY.format(url=fake.url))
    args = ("--set", f"dlp_state_dir={state}") if state is not None else ()
    return start_proxy(*args, "--set", "dlp_revocation_backoff_ms=200", profiles=[builtin_profile_path(), overlay])


def wait_until(cond, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return got


def test_logged_and_inbound_tokens_are_revoked_once_blocked_ones_are_not(start_proxy, upstream, fake, tmp_path):
    proxy = start(start_proxy, tmp_path, fake, None)
    state = proxy.confdir / "dlproxy-state"
    logged = [make_token("gho_", f"rev-log-{i}") for i in range(2)]
    blocked = make_token("ghp_", "rev-blocked")
    inbound = make_token("ghp_", "rev-inbound")
    upstream.respond("/download", f"release notes\ntoken={inbound}\n")
    with proxied_client(proxy) as client:
        assert client.post(f"{upstream.url}/upload", content=" ".join(logged)).status_code == 200
        assert client.post(f"{upstream.url}/upload", content=blocked).status_code == 403
        assert client.get(f"{upstream.url}/download").status_code == 502  # the upstream's response withheld

    wait_until(lambda: len(fake.credentials(202)) >= 3, "three revocations")
    assert upstream.saw(logged[0]) and not upstream.saw(blocked)
    sent = fake.credentials()
    assert sorted(sent) == sorted(logged + [inbound]), "each exposed token once; the blocked one never"
    assert any(set(logged) <= set(r.credentials) for r in fake.requests), "one incident's tokens go in one batch"
    assert all("authorization" not in r.headers for r in fake.requests)

    incidents = wait_until(lambda: [i for i in proxy.incidents() if i.get("follows")] if len(
        [i for i in proxy.incidents() if i.get("follows")]) >= 3 else None, "follow-up incidents")
    assert {r["revocation"][0]["status"] for r in incidents} == {"revoked"}
    first = [i for i in proxy.incidents() if not i.get("follows")]
    by_exposure = {f["exposure"]: i for i in first for f in i["findings"]}
    assert set(by_exposure) == {"leaked", "blocked", "inbound"}
    assert "revocation" not in by_exposure["blocked"]
    assert by_exposure["inbound"]["direction"] == "response"
    assert proxy.metric("dlproxy_revocations_total", revoker="github", result="revoked") == 3
    assert proxy.metric("dlproxy_revocation_queue_depth") == 0
    assert "generated the revocation queue key" in proxy.output() and (state / "state.key").exists()
    disk = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    for token in logged + [blocked, inbound]:
        proxy.assert_no_leak(token)
        assert token.encode() not in disk and token[-8:].encode() not in disk


def test_kill_9_between_detection_and_delivery_redelivers_once_after_restart(start_proxy, upstream, fake,
                                                                              tmp_path):
    state = tmp_path / "state"
    fake.default = 503  # the issuer is down: the revocation stays queued
    first = start(start_proxy, tmp_path, fake, state)
    token = make_token("gho_", "rev-kill")
    with proxied_client(first) as client:
        assert client.post(f"{upstream.url}/upload", content=token).status_code == 200
    incident = wait_until(lambda: first.incidents(), "the incident")[0]
    assert incident["revocation"][0]["status"] == "queued"
    wait_until(lambda: fake.requests, "a failed delivery attempt")
    first.proc.kill()  # SIGKILL: no shutdown hook runs
    first.proc.wait(10)
    assert list((state / "revocations" / "pending").glob("*.job")), "the job is on disk"

    fake.default = 202
    second = start(start_proxy, tmp_path, fake, state)
    wait_until(lambda: fake.credentials(202), "the delivery after the restart")
    wait_until(lambda: not list((state / "revocations" / "pending").glob("*.job")), "the queue to drain")
    assert fake.credentials(202) == [token]
    assert second.metric("dlproxy_revocation_queue_depth") == 0
    second.stop()

    third = start(start_proxy, tmp_path, fake, state)  # a delivered revocation is not sent again
    assert third.metric("dlproxy_revocation_queue_depth") == 0
    with proxied_client(third) as client:  # nor when the same token is seen again
        assert client.post(f"{upstream.url}/upload", content=token).status_code == 200
    again = wait_until(lambda: third.incidents(), "the new incident")[0]
    assert again["revocation"][0]["status"] == "revoked"
    assert fake.credentials(202) == [token]
    for proxy in (first, second, third):
        assert token not in proxy.output() and token[-8:] not in proxy.output()


def test_streamed_and_websocket_tokens_are_revoked_too(start_proxy, upstream, fake, tmp_path):
    from websockets.sync.client import connect
    from websockets.sync.server import serve

    def echo(ws):
        for message in ws:
            ws.send("echo:" + message)

    server = serve(echo, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = start(start_proxy, tmp_path, fake, tmp_path / "state")
        sse_token = make_token("ghp_", "rev-sse")
        upstream.respond("/events", f"data: {{\"text\": \"{sse_token}\"}}\n\n",
                         headers={"Content-Type": "text/event-stream"})
        with proxied_client(proxy) as client, client.stream("GET", f"{upstream.url}/events") as r:
            with pytest.raises(httpx.RemoteProtocolError):  # the stream is cut at the token
                b"".join(r.iter_raw())
        ws_token = make_token("gho_", "rev-ws")  # logged: the message goes through, and comes back (echo)
        port = server.socket.getsockname()[1]
        with connect(f"ws://127.0.0.1:{port}/ws", proxy=proxy.url, open_timeout=10, close_timeout=5) as ws:
            ws.send(ws_token)
            assert ws.recv(timeout=10) == "echo:" + ws_token
        wait_until(lambda: len(fake.credentials(202)) >= 2, "the streamed and WebSocket revocations")
        assert sorted(fake.credentials()) == sorted([sse_token, ws_token]), "each once"
        first = [i for i in proxy.incidents() if not i.get("follows")]
        exposure = {f["masked"][:4]: f["exposure"] for i in first for f in i["findings"]}
        assert exposure["ghp_"] == "inbound"
        assert "leaked" in {f["exposure"] for i in first for f in i["findings"] if f["masked"].startswith("gho_")}
        for token in (sse_token, ws_token):
            proxy.assert_no_leak(token)
    finally:
        server.shutdown()

"""HostGuard: a credential written into a hostname (CONNECT authority, TLS SNI, upstream address) is refused
before any DNS lookup or upstream connect, and the hostname is never echoed back."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import pytest
from mitmproxy import connection, http, tls
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow, tutils

from dlproxy.ops.incidents import IncidentLog
from dlproxy.ops.metrics import Metrics
from dlproxy.proxy.addon import GENERATED, ProfileState, RequestInspector
from dlproxy.proxy.hostguard import HostGuard
from e2e.conftest import E2E_PROFILE, GHP, NPM


@pytest.fixture
def env(tmp_path):
    path = tmp_path / "profile.yaml"
    path.write_text(E2E_PROFILE + "  - id: npm-access-token\n    action: log\n")  # the built-in npm entry logs too
    metrics = Metrics()
    out = io.StringIO()
    state = ProfileState(metrics)
    incidents = IncidentLog(metrics, stream=out)
    guard = HostGuard(state, metrics, incidents)
    req = RequestInspector(state, metrics, incidents)
    with taddons.context(state, incidents, guard, req) as tctx:
        tctx.configure(state, dlp_profile=[str(path)])
        yield SimpleNamespace(guard=guard, req=req, out=out, metrics=metrics)


def connect_flow(host: str, port: int = 443) -> http.HTTPFlow:
    req = tutils.treq(method=b"CONNECT", host=host, port=port, path=b"", scheme=b"", authority=f"{host}:{port}".encode())
    return tflow.tflow(req=req)


def incidents(env) -> list[dict]:
    return [json.loads(line) for line in env.out.getvalue().splitlines() if line.strip()]


def test_connect_to_a_token_hostname_is_answered_with_our_403(env):
    flow = connect_flow(f"{GHP}.exfil.example")
    env.guard.http_connect(flow)
    assert flow.response is not None and flow.response.status_code == 403 and flow.metadata[GENERATED]
    body = flow.response.get_text()
    err = json.loads(body)["error"]
    assert err["findings"][0]["location"] == "connect:host" and err["findings"][0]["entry"].startswith("github")
    for text in (body, str(flow.response.headers), env.out.getvalue()):
        assert GHP not in text and GHP[-8:] not in text
    [incident] = incidents(env)
    assert incident["action"] == "block" and incident["host"].endswith(".exfil.example")


def test_connect_to_a_clean_or_logged_hostname_goes_on(env):
    flow = connect_flow("api.example.com")
    env.guard.http_connect(flow)
    assert flow.response is None
    flow = connect_flow(f"{NPM}.exfil.example")  # the e2e profile logs npm tokens
    env.guard.http_connect(flow)
    assert flow.response is None and incidents(env)[0]["action"] == "log"


def clienthello(sni: str, server=("10.0.0.1", 443)):
    client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080))
    ctx = SimpleNamespace(client=client, server=connection.Server(address=server))
    hello = SimpleNamespace(sni=sni)
    return tls.ClientHelloData(ctx, hello)


def test_a_token_sni_refuses_both_handshakes(env):
    data = clienthello(f"{GHP}.exfil.example")
    data.establish_server_tls_first = True
    env.guard.tls_clienthello(data)
    assert data.establish_server_tls_first is False
    for hook in (env.guard.tls_start_client, env.guard.tls_start_server):
        start = tls.TlsData(data.context.client, data.context, ssl_conn=object())
        hook(start)
        assert start.ssl_conn is None
    hook_data = server_hooks.ServerConnectionHookData(server=data.context.server, client=data.context.client)
    env.guard.server_connect(hook_data)
    assert hook_data.server.error and GHP not in hook_data.server.error
    env.guard.client_disconnected(data.context.client)
    assert data.context.client.id not in env.guard._refused
    assert GHP not in env.out.getvalue()


def test_a_clean_sni_is_left_alone(env):
    data = clienthello("api.example.com")
    data.establish_server_tls_first = True
    env.guard.tls_clienthello(data)
    assert data.establish_server_tls_first is True
    start = tls.TlsData(data.context.client, data.context, ssl_conn="ctx")
    env.guard.tls_start_server(start)
    assert start.ssl_conn == "ctx"


@pytest.mark.parametrize("address, sni", [((f"{GHP}.exfil.example", 443), None),
                                          (("10.0.0.1", 443), f"{GHP}.exfil.example")])
def test_server_connect_refuses_a_token_destination(env, address, sni):
    client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080))
    server = connection.Server(address=address)
    server.sni = sni
    data = server_hooks.ServerConnectionHookData(server=server, client=client)
    env.guard.server_connect(data)
    assert server.error and "refused" in server.error and GHP not in server.error
    assert incidents(env)[0]["findings"][0]["location"] in ("server:host", "tls:sni")


def test_server_connect_to_a_clean_destination_goes_on(env):
    client = connection.Client(peername=("127.0.0.1", 5000), sockname=("127.0.0.1", 8080))
    data = server_hooks.ServerConnectionHookData(server=connection.Server(address=("api.example.com", 443)),
                                                 client=client)
    env.guard.server_connect(data)
    assert data.server.error is None


def test_a_token_in_the_url_host_or_host_header_blocks_the_request(env):
    flow = tflow.tflow(req=tutils.treq(host=f"{GHP}.exfil.example", port=80, scheme=b"http",
                                       headers=http.Headers(host=f"{GHP}.exfil.example")))
    env.req.request(flow)
    assert flow.response.status_code == 403
    locations = {f["location"] for f in json.loads(flow.response.get_text())["error"]["findings"]}
    assert locations <= {"url:host", "header:host"} and locations
    assert GHP not in flow.response.get_text()

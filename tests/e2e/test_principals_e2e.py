"""Principals and policies end to end: real clients name themselves (proxy auth, client certificates, signed
assertions, source address), and policies scoped to principals decide what they may send where.

Every credential material (htpasswd with bcrypt, CAs, client certificates, JWT signing keys, a JWKS HTTPS
endpoint) is generated here; everything binds 127.0.0.1.
"""

from __future__ import annotations

import datetime
import http.server
import json
import ssl
import threading
import time
from pathlib import Path

import bcrypt
import httpx
import pytest

from conftest import E2E_PROFILE, GHP, NPM, curl, curl_response, make_ca, make_ca_and_leaf

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("principals")]
jwt = pytest.importorskip("jwt", reason="PyJWT is a dependency (pyproject.toml): run make install")

POLICIES = """
policies:
  - name: ci-may-use-github
    principals: ["ci-runner", "spiffe://cluster.local/ns/ci/*"]
    entries: [github-pat]
    destinations: ["127.0.0.1"]
    action: allow
  - name: agents-never-send-credentials
    principals: ["agent-*"]
    entries: ["*"]
    action: block
"""


def profile(tmp: Path, principals: str, name: str = "profile.yaml") -> Path:
    path = tmp / name
    path.write_text(E2E_PROFILE + principals + POLICIES)
    return path


def error_of(response: httpx.Response) -> dict:
    assert response.status_code == 403, response.text
    return response.json()["error"]


# --- proxy-auth: mitmproxy's htpasswd validator with bcrypt, through curl --proxy-user -----------------------


@pytest.fixture(scope="module")
def auth_proxy(start_proxy, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("proxyauth")
    lines = [f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}"
             for user, pw in (("ci-runner", "ci-pass"), ("agent-7", "agent-pass"))]
    (tmp / "htpasswd").write_text("\n".join(lines) + "\n")
    path = profile(tmp, """
principals:
  require: true
  sources:
    - kind: proxy-auth
      htpasswd: htpasswd
""")
    return start_proxy(profiles=[path], name="principals-proxyauth")


def test_proxy_auth_principal_allowed_by_policy_passes(auth_proxy, upstream):
    r = curl_response("-x", auth_proxy.url, "--proxy-user", "ci-runner:ci-pass",
                      "-H", f"Authorization: Bearer {GHP}", f"{upstream.url}/repos")
    assert r.status_code == 200, r.text
    assert upstream.saw(GHP)
    got = upstream.received[-1]
    assert got.header("proxy-authorization") is None  # the proxy credentials stay at the proxy


def test_other_principal_same_token_and_destination_is_blocked(auth_proxy, upstream):
    mark = auth_proxy.mark()
    r = curl_response("-x", auth_proxy.url, "--proxy-user", "agent-7:agent-pass",
                      "-H", f"Authorization: Bearer {GHP}", f"{upstream.url}/repos")
    error = error_of(r)
    assert error["policy"] == "agents-never-send-credentials"
    assert error["principal"] == "agent-7"
    assert "agents-never-send-credentials" in error["message"]
    assert not upstream.saw(GHP)
    incident = auth_proxy.incidents(since=mark, wait=5)[-1]
    assert incident["principal"] == "agent-7"
    assert incident["policy"] == "agents-never-send-credentials"
    assert incident["action"] == "block"
    metrics = auth_proxy.metrics()
    assert "agent-7" not in metrics and "ci-runner" not in metrics  # principals are never labels
    assert auth_proxy.metric("dlproxy_policy_decisions_total", policy="agents-never-send-credentials",
                             action="block") >= 1
    auth_proxy.assert_no_leak(GHP)


def test_allow_policy_covers_only_the_use_position(auth_proxy, upstream):
    r = curl_response("-x", auth_proxy.url, "--proxy-user", "ci-runner:ci-pass",
                      "--data-binary", f"token={GHP}", f"{upstream.url}/gist")
    error = error_of(r)
    assert error["principal"] == "ci-runner"
    assert "policy" not in error  # the entry's own action (block) decided
    assert not upstream.saw(GHP)


def test_proxy_auth_required_answers_407(auth_proxy, upstream):
    r = curl_response("-x", auth_proxy.url, f"{upstream.url}/x")
    assert r.status_code == 407
    assert "Proxy-Authenticate" in r.headers
    r = curl_response("-x", auth_proxy.url, "--proxy-user", "agent-7:wrong", f"{upstream.url}/x")
    assert r.status_code == 407
    assert upstream.received == []
    assert auth_proxy.metric("dlproxy_principal_refusals_total", source="proxy-auth", reason="invalid") >= 1


def test_proxy_auth_over_connect_names_the_tunnel(auth_proxy, tls_upstream):
    url = f"https://127.0.0.1:{tls_upstream.port}/repos"
    for user, status in (("agent-7:agent-pass", 403), ("ci-runner:ci-pass", 200)):
        proxy_url = auth_proxy.url.replace("http://", f"http://{user}@")
        with httpx.Client(proxy=proxy_url, verify=auth_proxy.ssl_context(), trust_env=False, timeout=30) as c:
            r = c.get(url, headers={"Authorization": f"Bearer {GHP}"})
        assert r.status_code == status, r.text
        if status == 403:
            assert error_of(r)["principal"] == "agent-7"
            assert not tls_upstream.saw(GHP)
    assert tls_upstream.saw(GHP)
    r = curl("-x", auth_proxy.url, "--cacert", auth_proxy.ca, "-o", "/dev/null", "-w", "%{http_connect}", url)
    assert r.stdout.decode() == "407"


# --- client-cert: mutual TLS on the listener, httpx with certificates from a CA made here --------------------


def make_client_ca(directory: Path, label: str):
    """A client CA (PEM path) and a function minting (cert, key) files signed by it: a SAN URI (a SPIFFE ID)
    or a subject CN."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = make_ca(f"dlproxy e2e {label} client CA")
    ca_path = directory / f"{label}-ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def mint(stem: str, cn: str | None = None, uri: str | None = None) -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
        sans = [x509.UniformResourceIdentifier(uri)] if uri else [x509.DNSName(f"{cn}.clients.internal")]
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=not cn)
                .sign(ca_key, hashes.SHA256()))
        cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return str(cert_path), str(key_path)

    return ca_path, mint


@pytest.fixture(scope="module")
def mtls(start_proxy, tmp_path_factory, upstream_server):
    tmp = tmp_path_factory.mktemp("mtls")
    ca, mint = make_client_ca(tmp, "good")
    _, mint_rogue = make_client_ca(tmp, "rogue")
    path = profile(tmp, f"""
principals:
  sources:
    - kind: client-cert
      ca: {ca}
""")
    proxy = start_proxy("--mode", f"reverse:{upstream_server.url}", profiles=[path], name="principals-mtls")
    proxy.profile = path
    certs = {"ci": mint("ci", uri="spiffe://cluster.local/ns/ci/sa/runner"), "agent": mint("agent", cn="agent-3"),
             "rogue": mint_rogue("rogue", uri="spiffe://cluster.local/ns/ci/sa/runner")}
    return proxy, certs


def mtls_client(proxy, cert: tuple[str, str] | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=proxy.ca)
    context.check_hostname = False  # the listener's certificate is minted for the upstream's name
    if cert:
        context.load_cert_chain(*cert)
    return httpx.Client(verify=context, trust_env=False, timeout=30)


def test_client_cert_spiffe_id_allowed_by_policy(mtls, upstream):
    proxy, certs = mtls
    with mtls_client(proxy, certs["ci"]) as client:
        r = client.get(f"https://127.0.0.1:{proxy.port}/repos", headers={"Authorization": f"Bearer {GHP}"})
    assert r.status_code == 200, r.text
    assert upstream.saw(GHP)


def test_client_cert_cn_other_principal_blocked(mtls, upstream):
    proxy, certs = mtls
    mark = proxy.mark()
    with mtls_client(proxy, certs["agent"]) as client:
        r = client.get(f"https://127.0.0.1:{proxy.port}/repos", headers={"Authorization": f"Bearer {GHP}"})
    error = error_of(r)
    assert (error["principal"], error["policy"]) == ("agent-3", "agents-never-send-credentials")
    assert not upstream.saw(GHP)
    assert proxy.incidents(since=mark, wait=5)[-1]["principal"] == "agent-3"


@pytest.mark.parametrize("who", [None, "rogue"])
def test_client_without_a_valid_certificate_is_refused(mtls, upstream, who):
    proxy, certs = mtls
    with mtls_client(proxy, certs[who] if who else None) as client, pytest.raises(httpx.TransportError):
        client.get(f"https://127.0.0.1:{proxy.port}/repos", headers={"Authorization": f"Bearer {GHP}"})
    assert upstream.received == []


def test_client_cert_required_under_mitmdump_script_too(mtls, start_proxy, upstream):
    """With `mitmdump -s`, the addons run before mitmproxy's tlsconfig: the certificate is still required."""
    proxy, certs = mtls
    script = start_proxy("--mode", f"reverse:{upstream.url}", profiles=[proxy.profile], cmd="mitmdump")
    with mtls_client(script, None) as client, pytest.raises(httpx.TransportError):
        client.get(f"https://127.0.0.1:{script.port}/repos")
    with mtls_client(script, certs["agent"]) as client:
        r = client.get(f"https://127.0.0.1:{script.port}/repos", headers={"Authorization": f"Bearer {GHP}"})
    assert error_of(r)["principal"] == "agent-3"
    assert not upstream.saw(GHP)


# --- jwt-header: signed assertions, keys from a JWKS file and from a JWKS HTTPS endpoint ----------------------


class Signer:
    def __init__(self, kid: str):
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(self, sub: str, *, expires_in: int = 300, aud: str = "dlproxy", iss: str = "https://idp.test") -> str:
        now = int(time.time())
        claims = {"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + expires_in}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


JWT_SOURCE = """
principals:
  require: true
  sources:
    - kind: jwt-header
      header: Cf-Access-Jwt-Assertion
      {keys}
      issuer: https://idp.test
      audience: dlproxy
      claim: sub
"""


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("key-1")


@pytest.fixture(scope="module")
def jwt_file_proxy(start_proxy, tmp_path_factory, upstream_server, signer):
    tmp = tmp_path_factory.mktemp("jwtfile")
    (tmp / "jwks.json").write_text(json.dumps(signer.jwks()))
    path = profile(tmp, JWT_SOURCE.format(keys="jwks_file: jwks.json"))
    return start_proxy("--mode", f"reverse:{upstream_server.url}", profiles=[path], name="principals-jwt-file")


def assertion_get(proxy, token: str | None, secret: str = GHP) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"}
    if token is not None:
        headers["Cf-Access-Jwt-Assertion"] = token
    with httpx.Client(trust_env=False, timeout=30) as client:
        return client.get(f"{proxy.url}/repos", headers=headers)


def test_jwt_file_principal_allowed_and_header_removed(jwt_file_proxy, upstream, signer):
    r = assertion_get(jwt_file_proxy, signer.token("ci-runner"))
    assert r.status_code == 200, r.text
    got = upstream.received[-1]
    assert got.carries(GHP)
    assert got.header("cf-access-jwt-assertion") is None


def test_jwt_file_other_principal_blocked(jwt_file_proxy, upstream, signer):
    r = assertion_get(jwt_file_proxy, signer.token("agent-42"))
    error = error_of(r)
    assert (error["principal"], error["policy"]) == ("agent-42", "agents-never-send-credentials")
    assert not upstream.saw(GHP)


@pytest.mark.parametrize("case", ["expired", "wrong-key", "wrong-audience", "garbage", "missing"])
def test_jwt_invalid_assertions_are_refused(jwt_file_proxy, upstream, signer, case):
    token = {"expired": signer.token("ci-runner", expires_in=-600),
             "wrong-key": Signer("key-1").token("ci-runner"),
             "wrong-audience": signer.token("ci-runner", aud="someone-else"),
             "garbage": "not.a.jwt", "missing": None}[case]
    r = assertion_get(jwt_file_proxy, token, secret="hello")
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "principal_required"
    assert upstream.received == []
    reason = {"expired": "expired", "wrong-key": "signature", "wrong-audience": "audience", "garbage": "malformed",
              "missing": "missing"}[case]
    source = "none" if case == "missing" else "jwt-header"
    assert jwt_file_proxy.metric("dlproxy_principal_refusals_total", source=source, reason=reason) >= 1


class _JwksHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.fetches += 1
        body = json.dumps(self.server.jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def jwks_server(tmp_path_factory, signer):
    tmp = tmp_path_factory.mktemp("jwks")
    ca, cert, key = make_ca_and_leaf(tmp)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.fetches, server.jwks, server.ca = 0, signer.jwks(), ca
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_jwt_via_jwks_https_endpoint_with_caching(start_proxy, tmp_path_factory, upstream, signer, jwks_server):
    tmp = tmp_path_factory.mktemp("jwturl")
    keys = f"jwks_url: https://127.0.0.1:{jwks_server.server_address[1]}/jwks\n      jwks_ca: {jwks_server.ca}"
    proxy = start_proxy("--mode", f"reverse:{upstream.url}", profiles=[profile(tmp, JWT_SOURCE.format(keys=keys))])
    assert assertion_get(proxy, signer.token("ci-runner")).status_code == 200
    assert error_of(assertion_get(proxy, signer.token("agent-1")))["principal"] == "agent-1"
    assert assertion_get(proxy, Signer("key-1").token("ci-runner")).status_code == 401
    assert jwks_server.fetches == 1  # one download served all three


# --- source: address ranges --------------------------------------------------------------------------------


def test_source_ranges_name_the_client(start_proxy, tmp_path_factory, upstream):
    tmp = tmp_path_factory.mktemp("source")
    path = profile(tmp, """
principals:
  sources:
    - kind: source
      networks:
        - {name: agent-pool, cidrs: ["127.0.0.0/8"]}
""")
    proxy = start_proxy(profiles=[path])
    mark = proxy.mark()
    # npm tokens are only logged by the entry's own action; the agents policy blocks them for this pool
    r = curl_response("-x", proxy.url, "-H", f"X-Token: {NPM}", f"{upstream.url}/x")
    error = error_of(r)
    assert (error["principal"], error["policy"]) == ("agent-pool", "agents-never-send-credentials")
    assert proxy.incidents(since=mark, wait=5)[-1]["principal"] == "agent-pool"
    proxy.assert_no_leak(NPM)

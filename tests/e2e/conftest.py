"""End-to-end fixtures: the REAL proxy as a subprocess, local upstreams that record what they receive.

Reusable by every e2e test module. Everything binds 127.0.0.1 on
ephemeral ports; nothing reaches the network; the proxy is passed explicitly to clients (never via env).

Fixtures
- `upstream` / `tls_upstream` (function scope over one server per session): a threaded HTTP/1.1 server
  (plain / HTTPS with a CA made here) that records every request it receives (`.received`: list of
  `Received(method, path, headers, body)`, cleared at the start of each test) and answers
    /v1/chat/completions   an OpenAI chat completion       /v1/messages   an Anthropic message
    any path registered with `upstream.respond(path, body, status=200, headers=None)`
    anything else          200 {"ok": true, "bytes": N}
  `.url` ("http://127.0.0.1:PORT"), `.port`, `.bodies()`, `.saw(secret)` (True when any request carried it,
  in path, headers or body). `tls_upstream.ca` is the PEM path of its CA.
- `start_proxy(*args, name=None, profiles=None, cmd="run", env=None)` (session scope): start a proxy and
  wait until it listens (proxy and metrics ports parsed from its log). Same `name` → the same running
  process for the whole session (so tests share proxies); `name=None` → a fresh, private one stopped at the
  end of the session. `profiles=None` → the e2e profile below; `()` → the built-in profile.
  `cmd="run"` runs `dlproxy run ...`; `cmd="mitmdump"` runs `mitmdump -s addons/dlp.py --set dlp_profile=...`.
  The profiles given replace the built-in one (`--no-builtin`), so each test sees exactly its profile.
  Every proxy gets its own confdir (CA), its own incident log, `--set ssl_verify_upstream_trusted_ca=`
  the TLS upstream's CA, metrics on port 0.
- `proxy` (regular/forward mode) and `reverse_proxy` (`--mode reverse:<upstream.url>`): shared instances.
- `Proxy`: `.url`, `.port`, `.metrics_port`, `.ca` (mitmproxy-ca-cert.pem to trust), `.output()` (its
  stdout+stderr so far), `.incidents()` (parsed JSON lines), `.metrics()` (Prometheus text),
  `.assert_no_leak(secret)` (the secret and its last 8 characters appear in no log line, incident or metric),
  `.alive()`, `.stop()`; `mark = proxy.mark()` then `proxy.incidents(since=mark)` / `proxy.output(since=mark)`.
- Clients: `proxied_client(proxy)` (httpx through the proxy, trusting its CA, env ignored); `curl(*args)`
  (skips when curl is missing; `--noproxy ''` so NO_PROXY cannot bypass `-x`); `curl_response(*args)` (the
  final response as an httpx.Response).
- Tokens: `make_token(prefix, seed)` builds a valid GitHub-scheme token (CRC32 base62) for any prefix;
  `GHP` (blocked), `GHO` (redacted), `NPM` (logged) are the e2e profile's three actions.

Mark e2e tests `@pytest.mark.e2e`. Session-scoped proxies are per xdist worker (separate processes).
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import re
import shutil
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tokens import PUBLIC_GHP, github_token  # noqa: F401  (PUBLIC_GHP: tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 60


def make_token(prefix: str = "ghp_", seed: int | str = 0) -> str:
    """A valid GitHub-scheme token: prefix + 30 random base62 chars + base62(CRC32(body)), width 6."""
    return github_token(prefix, f"{prefix}{seed}")


GHP = make_token("ghp_", "e2e")  # action block
GHO = make_token("gho_", "e2e")  # action redact
NPM = make_token("npm_", "e2e")  # action log

E2E_PROFILE = """\
# The e2e profile: one entry per action. `localhost` is a GitHub "issuer" here so the issuer-binding tests can
# reach the same upstream as an issuer (http://localhost:PORT) and as a stranger (http://127.0.0.1:PORT).
profile: e2e
name: End-to-end test profile
settings:
  default_action: block
entries:
  - id: github-pat
    name: GitHub Personal Access Token
    vendor: GitHub
    severity: critical
    prefixes: ["ghp_"]
    pattern: "[A-Za-z0-9]{36}"
    checksum: crc32-base62
    issuers: [".github.com", "localhost"]
  - id: github-oauth
    name: GitHub OAuth Access Token
    vendor: GitHub
    severity: critical
    prefixes: ["gho_"]
    pattern: "[A-Za-z0-9]{36}"
    checksum: crc32-base62
    issuers: [".github.com"]
    action: redact
  - id: npm-token
    name: npm Access Token
    vendor: npm
    severity: high
    prefixes: ["npm_"]
    pattern: "[A-Za-z0-9]{36}"
    checksum: crc32-base62
    issuers: ["registry.npmjs.org"]
    action: log
"""


# --- upstream servers ----------------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)  # a chunked request's trailer section

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def carries(self, secret: str) -> bool:
        raw = secret.encode()
        return secret in self.path or any(secret in v for _, v in self.headers + self.trailers) or raw in self.body


def openai_completion(text: str = "Hello from upstream") -> dict:
    return {"id": "chatcmpl-e2e", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}}


def anthropic_message(text: str = "Hello from upstream") -> dict:
    return {"id": "msg_e2e", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": 5}}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        self.trailers = []
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                        name, _, value = line.decode("latin-1").partition(":")
                        self.trailers.append((name.strip(), value.strip()))
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self):
        body = self._body()
        rec = Received(self.command, self.path, list(self.headers.items()), body, self.trailers)
        with self.server.lock:
            self.server.received.append(rec)
        route = self.path.split("?", 1)[0]
        canned = self.server.canned.get(route)
        if canned is not None:
            status, headers, payload = canned
        elif route.endswith("/chat/completions"):
            status, headers, payload = 200, {"Content-Type": "application/json"}, json.dumps(openai_completion()).encode()
        elif route.endswith("/messages"):
            status, headers, payload = 200, {"Content-Type": "application/json"}, json.dumps(anthropic_message()).encode()
        else:
            status, headers = 200, {"Content-Type": "application/json"}
            payload = json.dumps({"ok": True, "bytes": len(body)}).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if not any(k.lower() == "content-length" for k in headers):
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.canned: dict[str, tuple[int, dict, bytes]] = {}
        self.ssl_context = ssl_context
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.ca: str | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def respond(self, path: str, body: bytes | str | dict, status: int = 200, headers: dict | None = None) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
            headers = {"Content-Type": "application/json", **(headers or {})}
        if isinstance(body, str):
            body = body.encode()
        self.canned[path] = (status, dict(headers or {"Content-Type": "text/plain"}), body)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.canned.clear()

    def bodies(self) -> list[bytes]:
        with self.lock:
            return [r.body for r in self.received]

    def saw(self, secret: str) -> bool:
        with self.lock:
            return any(r.carries(secret) for r in self.received)

    def start(self) -> _Server:
        threading.Thread(target=self.serve_forever, daemon=True, name="e2e-upstream").start()
        return self


def make_ca(common_name: str):
    """(CA certificate, its private key): a 30-day EC CA with the extensions strict verifiers require."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    return ca, ca_key


def make_ca_and_leaf(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf for 127.0.0.1/localhost (with the extensions Python 3.13's strict verify needs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca, ca_key = make_ca("dlproxy e2e upstream CA")
    ca_name = ca.subject
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_path, cert_path, key_path = directory / "upstream-ca.pem", directory / "upstream.pem", directory / "upstream.key"
    ca_path.write_bytes(ca.public_bytes(pem))
    cert_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return ca_path, cert_path, key_path


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def upstream_server() -> _Server:
    server = _Server().start()
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def tls_upstream_server(e2e_dir) -> _Server:
    ca, cert, key = make_ca_and_leaf(e2e_dir)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = _Server(context).start()
    server.ca = str(ca)
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def h2_upstream_server(tls_upstream_server, e2e_dir):
    """An HTTP/2-only TLS upstream (h2server.H2Server) with the TLS upstream's certificate, so every proxy here
    trusts it: `https://localhost:PORT` through a proxy's CONNECT, or a reverse proxy to its `.url`."""
    from e2e.h2server import H2Server

    server = H2Server(str(e2e_dir / "upstream.pem"), str(e2e_dir / "upstream.key")).start()
    yield server
    server.shutdown()


@pytest.fixture
def h2_upstream(h2_upstream_server):
    h2_upstream_server.reset()
    return h2_upstream_server


@pytest.fixture
def upstream(upstream_server) -> _Server:
    upstream_server.reset()
    return upstream_server


@pytest.fixture
def tls_upstream(tls_upstream_server) -> _Server:
    tls_upstream_server.reset()
    return tls_upstream_server


# --- the proxy -----------------------------------------------------------------------------------------

LISTEN_RE = re.compile(r"(?:HTTP\(S\) proxy(?: \(upstream mode\))?|reverse proxy to \S+) listening at \[?([^\s\]]+?)\]?:(\d+)", re.I)
METRICS_RE = re.compile(r"dlproxy metrics listening at \[?([^\s\]]+?)\]?:(\d+)")


class Proxy:
    """A running proxy subprocess and what it wrote."""

    def __init__(self, argv: list[str], workdir: Path, env: dict | None = None):
        self.argv = argv
        self.workdir = workdir
        self.confdir = workdir / "conf"
        self.incident_log = workdir / "incidents.jsonl"
        self._lines: list[str] = []
        self._cond = threading.Condition()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            full_env.pop(var, None)
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._pump, daemon=True, name="e2e-proxy-output").start()
        self.port = 0
        self.metrics_port = 0

    def _pump(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern, timeout: float = STARTUP_TIMEOUT) -> re.Match | None:
        """The first log line matching `pattern`, waiting for it; None when the process exited first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines:
                    if m := pattern.search(line):
                        return m
                if self.proc.poll() is not None:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"proxy did not log {pattern.pattern!r}; output:\n{self.output()}")
                self._cond.wait(min(left, 0.2))

    def wait_ready(self) -> Proxy:
        m = self.wait_for(LISTEN_RE)
        if m is None:
            raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.output()}")
        self.port = int(m[2])
        if self.wait_for(METRICS_RE) is None:
            raise RuntimeError(f"proxy exited with {self.proc.returncode}:\n{self.output()}")
        self.metrics_port = int(self.wait_for(METRICS_RE)[2])
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this proxy's CA."""
        return ssl.create_default_context(cafile=self.ca)

    def mark(self) -> tuple[int, int]:
        with self._cond:
            return len(self._lines), len(self.incidents())

    def output(self, since: tuple[int, int] | None = None) -> str:
        with self._cond:
            return "".join(self._lines[since[0] if since else 0:])

    def incidents(self, since: tuple[int, int] | None = None, wait: float = 0.0) -> list[dict]:
        """Incident JSON lines; with `wait`, poll until at least one new one appears (or the time is up)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                lines = self.incident_log.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            found = [json.loads(x) for x in lines[since[1] if since else 0:] if x.strip()]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def metric(self, name: str, **labels) -> float:
        """The value of one sample (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, label_text = key.partition("{")
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if metric == name and got == want:
                return float(value)
        return 0.0

    def assert_no_leak(self, secret: str) -> None:
        """Neither the secret nor its last 8 characters in the log, the incidents or the metrics."""
        for needle in (secret, secret[-8:]):
            assert needle not in self.output(), f"proxy output leaks {needle[:4]}…"
            assert needle not in self.incident_log.read_text() if self.incident_log.exists() else True
            assert needle not in self.metrics()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def dlproxy_cmd() -> list[str]:
    exe = VENV_BIN / "dlproxy"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dlproxy"]


def mitmdump_cmd() -> list[str]:
    exe = VENV_BIN / "mitmdump"
    return [str(exe)] if exe.exists() else [shutil.which("mitmdump") or "mitmdump"]


def proxy_argv(workdir: Path, args: tuple[str, ...], profiles, cmd: str, upstream_ca: str | None) -> list[str]:
    common = ["--set", f"confdir={workdir / 'conf'}", "--set", f"dlp_incident_log={workdir / 'incidents.jsonl'}",
              "--set", "dlp_reload_interval=0"]
    if upstream_ca:
        common += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
    if cmd == "mitmdump":
        argv = mitmdump_cmd() + ["-s", str(ROOT / "addons" / "dlp.py"), "--listen-host", "127.0.0.1",
                                 "--listen-port", "0", "--set", "dlp_metrics_port=0", "--set", "flow_detail=0"]
        argv += [x for p in profiles for x in ("--set", f"dlp_profile={p}")]
        argv += ["--set", "dlp_builtin=false"] if profiles else []
    else:
        argv = dlproxy_cmd() + ["run", "--listen-host", "127.0.0.1", "--listen-port", "0", "--metrics-port", "0"]
        argv += [x for p in profiles for x in ("--profile", str(p))]
        argv += ["--no-builtin"] if profiles else []
    return argv + common + list(args)


@pytest.fixture(scope="session")
def e2e_profile(e2e_dir) -> Path:
    path = e2e_dir / "e2e-profile.yaml"
    path.write_text(E2E_PROFILE)
    return path


@pytest.fixture(scope="session")
def start_proxy(tmp_path_factory, e2e_profile, tls_upstream_server):
    shared: dict[str, Proxy] = {}
    private: list[Proxy] = []

    def start(*args: str, name: str | None = None, profiles=None, cmd: str = "run", env: dict | None = None,
              wait: bool = True) -> Proxy:
        if name is not None and name in shared and shared[name].alive():
            return shared[name]
        workdir = tmp_path_factory.mktemp(f"proxy-{name or 'private'}")
        profiles = [e2e_profile] if profiles is None else list(profiles)
        proxy = Proxy(proxy_argv(workdir, args, profiles, cmd, tls_upstream_server.ca), workdir, env)
        (shared.__setitem__(name, proxy) if name is not None else private.append(proxy))
        return proxy.wait_ready() if wait else proxy

    yield start
    for proxy in [*shared.values(), *private]:
        proxy.stop()


@pytest.fixture
def proxy(start_proxy) -> Proxy:
    """The shared forward (regular mode) proxy with the e2e profile."""
    return start_proxy(name="regular")


@pytest.fixture
def reverse_proxy(start_proxy, upstream) -> Proxy:
    """The shared reverse proxy in front of the plain upstream (the AI-gateway sidecar)."""
    return start_proxy("--mode", f"reverse:{upstream.url}", name="reverse")


def proxied_client(proxy: Proxy, **kw) -> httpx.Client:
    """An httpx client through `proxy`, trusting its CA, ignoring proxy environment variables."""
    return httpx.Client(proxy=proxy.url, verify=proxy.ssl_context(), trust_env=False, timeout=30, **kw)


def curl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl is not installed (tests/tools/ensure-system-deps.sh installs it)")
    return subprocess.run([exe, "-sS", "--noproxy", "", *args], capture_output=True, timeout=timeout)


def curl_response(*args: str, timeout: float = 60) -> httpx.Response:
    """Run curl with `-i` and return its final response (after any 100 Continue) as an httpx.Response."""
    r = curl("-i", *args, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    rest = r.stdout
    while True:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if status >= 200:
            break
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if ":" in line]
    return httpx.Response(status, headers=headers, content=rest)

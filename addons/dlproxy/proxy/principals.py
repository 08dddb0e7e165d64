"""Who sent it: the profile's `principals` sources name the client of each flow (flow.metadata[PRINCIPAL]).

    proxy-auth    mitmproxy's own proxy authentication (its ProxyAuth addon and validators: htpasswd with
                  bcrypt, or LDAP), run with the profile's htpasswd/ldap; without either, the user name that
                  mitmproxy's `proxyauth` option authenticated. The user name is the principal.
    client-cert   mutual TLS on every client-side handshake: a certificate chaining to the configured CA is
                  required (others fail the handshake); the principal is its SAN URI (SPIFFE ID) or subject CN.
    jwt-header    a signed identity assertion in a header (JWKS file, or HTTPS URL with caching); signature,
                  issuer, audience and expiry are verified; the principal is a configured claim. The header is
                  removed before the request goes upstream unless `keep_header`.
    source        client address ranges mapped to names.

Sources are tried in order; the first that names the client wins. With `require: true`, a request nobody
names is refused (407 when a proxy-auth source asks a forward-proxy client for credentials, else 401). An
invalid or expired assertion never becomes a principal. Errors fail closed: the request is refused.
Runs before the inspectors (wiring.py), in requestheaders, so streamed and buffered inspection both see it.
"""

from __future__ import annotations

import asyncio
import collections.abc
import datetime
import ipaddress
import json
import logging
import ssl
import time
import urllib.request
import weakref
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from mitmproxy import connection, ctx, http, tls
from mitmproxy.addons import proxyauth
from OpenSSL import SSL

from ..engine.principals import Principals, Source, load_jwks
from .addon import ProfileState
from .enforce import PRINCIPAL

logger = logging.getLogger(__name__)

MAX_PRINCIPAL = 256  # characters kept of a principal (incidents, logs)
JWKS_MAX_BYTES = 1024 * 1024
JWKS_TIMEOUT = 10.0  # seconds for one JWKS download
JWKS_MIN_REFRESH = 30.0  # seconds between downloads prompted by an unknown key id


class Refused(Exception):
    """The client cannot be let through for its identity: `status` 401 or 407, `reason` for the metric."""

    def __init__(self, source: str, reason: str, message: str):
        super().__init__(message)
        self.source, self.reason, self.message = source, reason, message


def clean_principal(value: Any) -> str:
    """A principal as recorded: a printable string of bounded length ("" when unusable)."""
    if not isinstance(value, str):
        return ""
    value = "".join(c for c in value if c.isprintable())
    return value[:MAX_PRINCIPAL]


# --- client certificates ----------------------------------------------------------------------------------


class ClientCertVerifier:
    """Verifies a client's chain against the configured CA (cryptography's X.509 client verifier: validity,
    chain, key usage) and names it: `auto` = first SAN URI, else subject CN; `cn`; `san-uri`."""

    def __init__(self, source: Source):
        with open(source.ca, "rb") as f:
            self.store = Store(x509.load_pem_x509_certificates(f.read()))
        self.mode = source.principal

    def principal(self, leaf: x509.Certificate, intermediates: list[x509.Certificate]) -> str:
        """The principal; raises VerificationError (or ValueError) when the chain is not acceptable."""
        verifier = PolicyBuilder().store(self.store).time(datetime.datetime.now(datetime.UTC)) \
            .build_client_verifier()
        verified = verifier.verify(leaf, intermediates)
        uris = [n.value for n in (verified.subjects or ()) if isinstance(n, x509.UniformResourceIdentifier)]
        cns = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if self.mode == "san-uri":
            name = uris[0] if uris else ""
        elif self.mode == "cn":
            name = str(cns[0]) if cns else ""
        else:
            name = uris[0] if uris else (str(cns[0]) if cns else "")
        name = clean_principal(name)
        if not name:
            raise ValueError(f"certificate has no {'SAN URI' if self.mode == 'san-uri' else 'name'}")
        return name

    def callback(self, on_verified: collections.abc.Callable[[str], None]):
        """A pyOpenSSL verify callback for one handshake. OpenSSL walks the chain it built from the peer's
        certificates top-down and ends at depth 0; OpenSSL's own verdict is ignored (mitmproxy's context
        trusts its own CA, not ours), and the decision is ours at depth 0."""
        chain: dict[int, Any] = {}

        def verify(conn, cert, errno, depth, ok) -> bool:
            try:
                chain[depth] = cert.to_cryptography()
                if depth != 0:
                    return True
                leaf = chain[0]
                intermediates = [c for d, c in sorted(chain.items()) if d > 0]
                on_verified(self.principal(leaf, intermediates))
                return True
            except (VerificationError, ValueError) as e:
                logger.info(f"dlproxy refused a client certificate: {str(e)[:200]}")
                return False
            except Exception:
                logger.exception("dlproxy client certificate check failed")
                return False

        return verify


# --- JWT assertions -----------------------------------------------------------------------------------------


class JwksKeys:
    """The keys of one jwt-header source: from a file (read once per profile), or an HTTPS URL (cached for
    `jwks_cache_seconds`, downloaded off the event loop, again when an unknown key id shows up)."""

    def __init__(self, source: Source):
        self.source = source
        self.keys = None
        self.fetched: float | None = None  # time.monotonic() of the last download attempt
        self._lock: asyncio.Lock | None = None
        if source.jwks_file:
            with open(source.jwks_file, "rb") as f:
                self.keys = load_jwks(f.read())

    def find(self, kid: str | None):
        if self.keys is None:
            return None
        if kid is None:
            return self.keys.keys[0] if len(self.keys.keys) == 1 else None
        try:
            return self.keys[kid]
        except KeyError:
            return None

    def stale(self, kid: str | None) -> bool:
        """Should this verification wait for a download first? Yes when none was tried, when the keys are older
        than jwks_cache_seconds, and (at most every JWKS_MIN_REFRESH) when the keys or the token's key id are
        missing: a rotation, or a failed download."""
        if not self.source.jwks_url:
            return False
        if self.fetched is None:
            return True
        age = time.monotonic() - self.fetched
        if age > self.source.jwks_cache_seconds:
            return True
        return (self.keys is None or self.find(kid) is None) and age > JWKS_MIN_REFRESH

    async def refresh(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.fetched is not None and time.monotonic() - self.fetched < 1.0:
                return  # another request just did it
            try:
                self.keys = await asyncio.to_thread(self._download)
            except Exception as e:  # keep the old keys; with none, assertions are refused
                logger.warning(f"dlproxy could not fetch JWKS {self.source.jwks_url}: {type(e).__name__}: "
                               f"{str(e)[:200]}")
            self.fetched = time.monotonic()

    def _download(self):
        context = ssl.create_default_context(cafile=self.source.jwks_ca or None)
        request = urllib.request.Request(self.source.jwks_url, headers={"Accept": "application/json"})
        # the proxy's own environment must not route this through itself
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        with opener.open(request, timeout=JWKS_TIMEOUT) as response:
            data = response.read(JWKS_MAX_BYTES + 1)
        if len(data) > JWKS_MAX_BYTES:
            raise ValueError("JWKS larger than 1 MiB")
        return load_jwks(data)


class JwtAssertion:
    """Verifies one jwt-header source's assertions: signature (keys from JwksKeys), issuer, audience, expiry."""

    def __init__(self, source: Source):
        self.source = source
        self.keys = JwksKeys(source)

    def token(self, flow: http.HTTPFlow) -> str | None:
        value = flow.request.headers.get(self.source.header)
        if value is None:
            return None
        value = value.strip()
        if self.source.scheme:
            scheme, _, rest = value.partition(" ")
            if scheme.lower() != self.source.scheme.lower():
                return None  # another kind of credential in the same header (an API key): not an assertion
            value = rest.strip()
        return value

    def kid(self, token: str) -> str | None:
        import jwt  # PyJWT: imported where used, so a proxy without jwt-header sources never needs it

        try:
            return jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return None

    def principal(self, token: str) -> tuple[str, str]:
        """(principal, "") or ("", reason): expired, signature, issuer, audience, malformed, unknown_key, claim."""
        import jwt

        s = self.source
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return "", "malformed"
        key = self.keys.find(header.get("kid"))
        if key is None:
            return "", "unknown_key"
        try:
            claims = jwt.decode(token, key=key.key, algorithms=list(s.algorithms), audience=list(s.audience),
                                issuer=s.issuer, leeway=s.leeway_seconds,
                                options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            return "", "expired"
        except jwt.InvalidSignatureError:
            return "", "signature"
        except jwt.InvalidIssuerError:
            return "", "issuer"
        except jwt.InvalidAudienceError:
            return "", "audience"
        except (jwt.PyJWTError, ValueError, TypeError):
            return "", "invalid"
        name = clean_principal(claims.get(s.claim))
        return (name, "") if name else ("", "claim")


# --- the addon ----------------------------------------------------------------------------------------------


class _Runtime:
    """The sources of one profile generation, ready to use."""

    def __init__(self, principals: Principals, tunnels: collections.abc.MutableMapping):
        self.principals = principals
        self.auth: proxyauth.ProxyAuth | None = None
        self.cert: ClientCertVerifier | None = None
        self.jwts: dict[int, JwtAssertion] = {}
        self.networks: dict[int, list[tuple[Any, str]]] = {}
        for i, s in enumerate(principals.sources):
            if s.kind == "proxy-auth" and (s.htpasswd or s.ldap):
                auth = proxyauth.ProxyAuth()
                auth.validator = proxyauth.Htpasswd("@" + s.htpasswd) if s.htpasswd else proxyauth.Ldap(s.ldap)
                auth.authenticated = tunnels  # CONNECT tunnels stay authenticated across profile reloads
                self.auth = auth
            elif s.kind == "client-cert":
                self.cert = ClientCertVerifier(s)
            elif s.kind == "jwt-header":
                self.jwts[i] = JwtAssertion(s)
            elif s.kind == "source":
                self.networks[i] = [(ipaddress.ip_network(c), n.name) for n in s.networks for c in n.cidrs]


class PrincipalSources:
    """Names the client of each request (flow.metadata[PRINCIPAL]) from the active profile's sources."""

    name = "dlp-principals"

    def __init__(self, state: ProfileState, metrics=None) -> None:
        self.state = state
        self.metrics = metrics
        self._runtime: tuple[int, _Runtime | None] = (-1, None)
        self._certs: weakref.WeakKeyDictionary[connection.Client, str] = weakref.WeakKeyDictionary()
        self._tunnels: weakref.WeakKeyDictionary[connection.Client, tuple[str, str]] = weakref.WeakKeyDictionary()

    def runtime(self) -> _Runtime | None:
        active = self.state.current
        if active is None:
            return None
        gen, rt = self._runtime
        if gen != active.generation:
            principals = getattr(active.profile, "principals", None)
            rt = _Runtime(principals, self._tunnels) if principals is not None and principals.sources else None
            self._runtime = (active.generation, rt)
        return rt

    # --- mutual TLS ---

    def tls_start_client(self, data: tls.TlsData) -> None:
        """Require and verify a client certificate on every client-side handshake (per connection: the context
        mitmproxy built is shared and cached, so only this connection's verify mode changes)."""
        try:
            rt = self.runtime()
            if rt is None or rt.cert is None:
                return
            if data.ssl_conn is None:
                # Loaded with `mitmdump -s`, this addon runs before mitmproxy's tlsconfig: let it build the
                # connection now (it then leaves it alone), so the verify mode set below is never skipped.
                tlsconfig = ctx.master.addons.get("tlsconfig")
                if tlsconfig is not None:
                    tlsconfig.tls_start_client(data)
                if data.ssl_conn is None:
                    return  # no TLS context: mitmproxy fails the connection itself
            client = data.conn

            def verified(name: str) -> None:
                self._certs[client] = name

            data.ssl_conn.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, rt.cert.callback(verified))
        except Exception:
            logger.exception("dlproxy could not require a client certificate; refusing the handshake")
            data.ssl_conn = None  # mitmproxy closes a connection without a TLS context

    def tls_failed_client(self, data: tls.TlsData) -> None:
        rt = self.runtime()
        if rt is not None and rt.cert is not None:
            self._refused("client-cert", "handshake")

    # --- proxy authentication on CONNECT ---

    def http_connect(self, flow: http.HTTPFlow) -> None:
        try:
            rt = self.runtime()
            if rt is None or rt.auth is None:
                return
            header = flow.request.headers.get("proxy-authorization")
            if header or rt.principals.require:
                if not rt.auth.authenticate_http(flow):
                    self._refused("proxy-auth", "invalid" if header else "missing")
                else:
                    rt.auth.authenticated[flow.client_conn] = flow.metadata["proxyauth"]
        except Exception:
            logger.exception("dlproxy proxy authentication failed; refusing")
            self._refuse(flow, Refused("proxy-auth", "error", "identity could not be checked"), 403)

    # --- every request ---

    def requestheaders(self, flow: http.HTTPFlow) -> collections.abc.Awaitable[None] | None:
        if flow.response or flow.error:
            return None
        try:
            rt = self.runtime()
            if rt is None:
                return None
            pending = [j for j in rt.jwts.values() if (t := j.token(flow)) and j.keys.stale(j.kid(t))]
            if pending:
                return self._after_refresh(flow, rt, pending)
            self.resolve(flow, rt)
        except Exception:
            self._fail(flow)
        return None

    async def _after_refresh(self, flow: http.HTTPFlow, rt: _Runtime, pending: list[JwtAssertion]) -> None:
        try:
            for j in pending:
                await j.keys.refresh()
            self.resolve(flow, rt)
        except Exception:
            self._fail(flow)

    def resolve(self, flow: http.HTTPFlow, rt: _Runtime) -> None:
        """Try the sources in order; set the principal, or refuse when it is required and nobody names the
        client. Identity headers are removed whatever the outcome (unless `keep_header`)."""
        principal, refusal = "", None
        for i, s in enumerate(rt.principals.sources):
            name, why = self._source(flow, rt, i, s)
            if flow.response is not None:
                return  # proxy authentication answered 407/401
            if why and refusal is None:
                refusal = Refused(s.kind, why, f"the {s.kind} identity was not accepted ({why})")
            if name and not principal:
                principal = name
        for j in rt.jwts.values():
            if not j.source.keep_header:
                flow.request.headers.pop(j.source.header, None)
        if principal:
            flow.metadata[PRINCIPAL] = principal
            return
        if refusal is not None:
            self._refused(refusal.source, refusal.reason)
            logger.info(f"dlproxy: {refusal.message} from {_peer(flow)}")
        if rt.principals.require:
            refusal = refusal or Refused("none", "missing", "no identity was presented")
            if refusal.reason == "missing":
                self._refused("none", "missing")
            status = 407 if rt.auth is not None and proxyauth.is_http_proxy(flow) else 401
            self._refuse(flow, refusal, status)

    def _source(self, flow: http.HTTPFlow, rt: _Runtime, i: int, s: Source) -> tuple[str, str]:
        """(principal, "") when this source names the client; ("", reason) when it saw a bad identity."""
        if s.kind == "proxy-auth":
            return self._proxy_auth(flow, rt), ""
        if s.kind == "client-cert":
            return self._certs.get(flow.client_conn, ""), ""
        if s.kind == "jwt-header":
            j = rt.jwts[i]
            token = j.token(flow)
            return j.principal(token) if token else ("", "")
        peer = flow.client_conn.peername
        if peer:
            address = ipaddress.ip_address(peer[0])
            if address.version == 6 and address.ipv4_mapped:
                address = address.ipv4_mapped
            for network, name in rt.networks[i]:
                if address in network:
                    return name, ""
        return "", ""

    def _proxy_auth(self, flow: http.HTTPFlow, rt: _Runtime) -> str:
        auth = rt.auth
        if auth is not None:
            header = flow.request.headers.get(proxyauth.http_auth_header(proxyauth.is_http_proxy(flow)), "")
            if flow.client_conn in auth.authenticated:
                auth.requestheaders(flow)
            elif header.lower().startswith("basic ") or rt.principals.require:
                auth.requestheaders(flow)
                if flow.response is not None:
                    self._refused("proxy-auth", "invalid" if header else "missing")
                    return ""
        user = flow.metadata.get("proxyauth")  # set by mitmproxy's proxyauth (its option, or ours above)
        return clean_principal(user[0]) if isinstance(user, tuple | list) and user else ""

    # --- refusing ---

    def _refused(self, source: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.principal_refusals_total.labels(source=source, reason=reason).inc()

    def _refuse(self, flow: http.HTTPFlow, refusal: Refused, status: int) -> None:
        if status == 407:
            response = proxyauth.make_auth_required_response(True)
        else:
            body = {"error": {"type": "dlp_unauthenticated", "code": "principal_required",
                              "message": f"dlproxy refused this request: {refusal.message}."}}
            response = http.Response.make(status, json.dumps(body).encode(),
                                          {"Content-Type": "application/json", "Cache-Control": "no-store"})
        flow.response = response

    def _fail(self, flow: http.HTTPFlow) -> None:
        """Naming the client failed: refuse (fail closed), never let it through as somebody else."""
        logger.exception("dlproxy could not determine the principal; refusing the request")
        self._refused("error", "error")
        try:
            self._refuse(flow, Refused("error", "error", "its identity could not be checked"), 403)
        except Exception:
            if flow.killable:
                flow.kill()


def _peer(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return peer[0] if peer else "?"

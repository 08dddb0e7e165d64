"""The profile's `principals` and `policies` sections: parsed into frozen objects, with FILE:LINE problems.

    principals:
      require: false               # true: a request without a principal is refused
      sources:                     # tried in order, the first that names the client wins
        - kind: proxy-auth         # mitmproxy's proxy authentication; htpasswd: FILE | ldap: SPEC | neither
        - kind: client-cert        # mutual TLS; ca: FILE, principal: auto | cn | san-uri
        - kind: jwt-header         # header, jwks_file | jwks_url, issuer, audience, claim
        - kind: source             # networks: [{name, cidrs}]
    policies:                      # first match wins, before the entry's own action
      - name: ci-publishes-to-npm
        principals: ["spiffe://cluster.local/ns/ci/*"]
        entries: [npm-access-token]
        destinations: [registry.npmjs.org]
        action: allow

Only parsing and matching live here (no mitmproxy import): the proxy addon in proxy/principals.py turns the
sources into authentication, and inspect/policy.py applies the policies. `shadowed()` finds policies an
earlier one always wins over, for `profile check`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .nodes import direction_actions, key_where, mapping

KINDS = ("proxy-auth", "client-cert", "jwt-header", "source")
POLICY_ACTIONS = ("block", "redact", "log", "allow")
POLICY_DIRECTIONS = ("request", "response", "websocket")
CERT_PRINCIPALS = ("auto", "cn", "san-uri")
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
# Where a credential is in use: a plain destination in an `allow` policy allows only this position.
USE_POSITIONS = ("header:authorization", "header:authorization:*")
POLICY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


@dataclass(frozen=True)
class Network:
    name: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """One way of naming the client. Only the fields of its `kind` are used."""

    kind: str
    where: str = ""  # FILE:LINE, for messages
    # proxy-auth
    htpasswd: str = ""
    ldap: str = ""
    # client-cert
    ca: str = ""
    principal: str = "auto"
    # jwt-header
    header: str = ""
    scheme: str = ""  # e.g. "Bearer" when the header is Authorization
    jwks_file: str = ""
    jwks_url: str = ""
    jwks_ca: str = ""
    jwks_cache_seconds: int = 300
    issuer: str = ""
    audience: tuple[str, ...] = ()
    claim: str = "sub"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    leeway_seconds: int = 0
    keep_header: bool = False
    # source
    networks: tuple[Network, ...] = ()


@dataclass(frozen=True)
class Principals:
    sources: tuple[Source, ...] = ()
    require: bool = False

    def has(self, kind: str) -> bool:
        return any(s.kind == kind for s in self.sources)


@dataclass(frozen=True)
class Destination:
    host: str  # glob on the destination host, lower case
    positions: tuple[str, ...] = ()  # globs on finding locations; () = any position


@dataclass(frozen=True)
class Policy:
    name: str
    actions: tuple[tuple[str, str], ...]  # (direction, action); a direction not listed: the policy skips it
    principals: tuple[str, ...] | None = None  # None: anyone, identified or not
    entries: tuple[str, ...] = ("*",)
    destinations: tuple[Destination, ...] | None = None  # None: anywhere
    where: str = ""

    def action_for(self, direction: str) -> str | None:
        for d, a in self.actions:
            if d == direction:
                return a
        return None

    def matches(self, principal: str, entry_id: str, host: str, location: str, direction: str) -> bool:
        """Does this policy apply to one finding? (`host` normalized, `principal` "" when unidentified)."""
        if self.action_for(direction) is None:
            return False
        if self.principals is not None:
            if not principal or not any(fnmatchcase(principal, g) for g in self.principals):
                return False
        if "*" not in self.entries and entry_id not in self.entries:
            return False
        if self.destinations is None:
            return True
        for d in self.destinations:
            if fnmatchcase(host, d.host) and (
                    not d.positions or direction != "request"
                    or any(fnmatchcase(location, p) for p in d.positions)):
                return True
        return False


# --- parsing --------------------------------------------------------------------------------------------

_PRINCIPALS_KEYS = ("require", "sources")
_SOURCE_KEYS = {
    "proxy-auth": {"htpasswd", "ldap"},
    "client-cert": {"ca", "principal"},
    "jwt-header": {"header", "scheme", "jwks_file", "jwks_url", "jwks_ca", "jwks_cache_seconds", "issuer",
                   "audience", "claim", "algorithms", "leeway_seconds", "keep_header"},
    "source": {"networks"},
}
_POLICY_KEYS = {"name", "principals", "entries", "destinations", "action"}


def parse_principals(node, problems: list[str], base: Path | None = None) -> Principals:
    """`node` is the profile loader's located YAML node (`.value`, `.where()`)."""
    if node.value is None:
        return Principals()
    fields = mapping(node, "principals", "must be a mapping with sources and require", _PRINCIPALS_KEYS, problems)
    if fields is None:
        return Principals()
    require = False
    if "require" in fields:
        require = fields["require"].value
        if not isinstance(require, bool):
            problems.append(f"{fields['require'].where()}: principals.require: must be true or false")
            require = False
    sources: list[Source] = []
    if "sources" in fields:
        snode = fields["sources"]
        if not isinstance(snode.value, list) or not snode.value:
            problems.append(f"{snode.where()}: principals.sources: must be a non-empty list")
        else:
            for i, item in enumerate(snode.value):
                source = _parse_source(item, f"principals.sources[{i}]", problems, base)
                if source is not None:
                    sources.append(source)
    elif require:
        problems.append(f"{node.where()}: principals.sources: required when require is true")
    kinds = [s.kind for s in sources]
    for kind in ("proxy-auth", "client-cert"):
        if kinds.count(kind) > 1:
            problems.append(f"{node.where()}: principals.sources: {kind} may appear only once")
    return Principals(tuple(sources), require)


def _parse_source(item, label: str, problems: list[str], base: Path | None) -> Source | None:
    if not isinstance(item.value, dict):
        problems.append(f"{item.where()}: {label}: must be a mapping with a kind")
        return None
    fields = item.value
    kind_node = fields.get("kind")
    if kind_node is None or kind_node.value not in KINDS:
        where = kind_node.where() if kind_node is not None else item.where()
        got = f", got {kind_node.value!r}" if kind_node is not None else ""
        problems.append(f"{where}: {label}.kind: must be one of {', '.join(KINDS)}{got}")
        return None
    kind = kind_node.value
    n_before = len(problems)
    for key, sub in fields.items():
        if key != "kind" and key not in _SOURCE_KEYS[kind]:
            problems.append(f"{key_where(sub)}: {label}.{key}: unknown key for kind {kind} "
                            f"(expected {', '.join(sorted(_SOURCE_KEYS[kind]))})")
    f = _Fields(fields, label, problems, base)
    where = item.where()
    if kind == "proxy-auth":
        htpasswd, ldap = f.file("htpasswd"), f.string("ldap")
        if htpasswd and ldap:
            problems.append(f"{item.where()}: {label}: give htpasswd or ldap, not both")
        if ldap and not re.match(r"^ldaps?:", ldap):
            problems.append(f"{fields['ldap'].where()}: {label}.ldap: must start with ldap: or ldaps: "
                            "(mitmproxy's proxyauth LDAP specification)")
        source = Source(kind, where, htpasswd=htpasswd, ldap=ldap)
    elif kind == "client-cert":
        ca = f.file("ca", required=True)
        if ca:
            _check_pem_certificates(ca, fields["ca"], label, problems)
        principal = f.choice("principal", CERT_PRINCIPALS, "auto")
        source = Source(kind, where, ca=ca, principal=principal)
    elif kind == "jwt-header":
        source = _parse_jwt(f, item, label, problems)
    else:
        source = Source(kind, where, networks=_parse_networks(fields.get("networks"), item, label, problems))
    return source if len(problems) == n_before else None


def _parse_jwt(f: _Fields, item, label: str, problems: list[str]) -> Source:
    fields = item.value
    header = f.string("header", required=True)
    if header and not HEADER_RE.match(header):
        problems.append(f"{fields['header'].where()}: {label}.header: not a valid header name")
    jwks_file, jwks_url = f.file("jwks_file"), f.string("jwks_url")
    if bool(jwks_file) == bool(jwks_url):
        problems.append(f"{item.where()}: {label}: give exactly one of jwks_file, jwks_url")
    if jwks_url and not jwks_url.startswith("https://"):
        problems.append(f"{fields['jwks_url'].where()}: {label}.jwks_url: must be an https:// URL")
    if jwks_file:
        _check_jwks(jwks_file, fields["jwks_file"], label, problems)
    jwks_ca = f.file("jwks_ca")
    if jwks_ca:
        _check_pem_certificates(jwks_ca, fields["jwks_ca"], label, problems)
    issuer = f.string("issuer", required=True)
    audience = f.strings("audience", required=True)
    algorithms = f.strings("algorithms") or Source.algorithms
    for a in algorithms:
        if a not in JWT_ALGORITHMS:
            problems.append(f"{fields['algorithms'].where()}: {label}.algorithms: {a!r} is not an asymmetric "
                            f"JWS algorithm (expected some of {', '.join(JWT_ALGORITHMS)})")
    return Source("jwt-header", item.where(), header=header, scheme=f.string("scheme"), jwks_file=jwks_file,
                  jwks_url=jwks_url, jwks_ca=jwks_ca, jwks_cache_seconds=f.integer("jwks_cache_seconds", 300, 1),
                  issuer=issuer, audience=audience, claim=f.string("claim") or "sub", algorithms=algorithms,
                  leeway_seconds=f.integer("leeway_seconds", 0, 0), keep_header=f.boolean("keep_header", False))


def _parse_networks(node, item, label: str, problems: list[str]) -> tuple[Network, ...]:
    if node is None or not isinstance(node.value, list) or not node.value:
        where = node.where() if node is not None else item.where()
        problems.append(f"{where}: {label}.networks: must be a non-empty list of {{name, cidrs}}")
        return ()
    out = []
    for j, sub in enumerate(node.value):
        sl = f"{label}.networks[{j}]"
        if not isinstance(sub.value, dict) or set(sub.value) != {"name", "cidrs"}:
            problems.append(f"{sub.where()}: {sl}: must be a mapping with exactly name and cidrs")
            continue
        name = sub.value["name"].value
        if not isinstance(name, str) or not name:
            problems.append(f"{sub.value['name'].where()}: {sl}.name: must be a non-empty string")
            continue
        cnode = sub.value["cidrs"]
        cidrs = cnode.value if isinstance(cnode.value, list) else [cnode]
        good = []
        for c in cidrs:
            try:
                good.append(str(ipaddress.ip_network(str(c.value), strict=False)))
            except ValueError:
                problems.append(f"{c.where()}: {sl}.cidrs: {c.value!r} is not an address range (CIDR)")
        out.append(Network(name, tuple(good)))
    return tuple(out)


def parse_policies(node, problems: list[str], entry_ids: set[str]) -> tuple[Policy, ...]:
    if node.value is None:
        return ()
    if not isinstance(node.value, list):
        problems.append(f"{node.where()}: policies: must be a list")
        return ()
    policies: list[Policy] = []
    names: set[str] = set()
    for i, item in enumerate(node.value):
        label = f"policies[{i}]"
        n_before = len(problems)
        fields = mapping(item, label, "must be a mapping with name, action, ...", sorted(_POLICY_KEYS), problems)
        if fields is None:
            continue
        f = _Fields(fields, label, problems, None)
        name = f.string("name", required=True)
        if name and not POLICY_NAME_RE.match(name):
            problems.append(f"{fields['name'].where()}: {label}.name: letters, digits, '.', '_', '-' "
                            f"(at most 64), got {name!r}")
        elif name in names:
            problems.append(f"{fields['name'].where()}: {label}.name: duplicate policy name {name!r}")
        names.add(name)
        actions = _parse_action(fields.get("action"), item, label, problems)
        principals = f.strings("principals", required=True) if "principals" in fields else None
        entries = f.strings("entries", required=True) if "entries" in fields else ("*",)
        for e in entries:
            if e != "*" and e not in entry_ids:
                problems.append(f"{fields['entries'].where()}: {label}.entries: no entry with id {e!r}")
        destinations = None
        if "destinations" in fields:
            destinations = _parse_destinations(fields["destinations"], label, problems,
                                               allow=any(a == "allow" for _, a in actions))
        if len(problems) == n_before:
            policies.append(Policy(name, actions, principals, entries, destinations, item.where()))
    for later, earlier in shadowed(tuple(policies)):
        problems.append(f"{later.where}: policies.{later.name}: can never match: policy {earlier.name!r} "
                        f"({earlier.where}) matches everything it would, first")
    return tuple(policies)


def _parse_action(node, item, label: str, problems: list[str]) -> tuple[tuple[str, str], ...]:
    if node is None:
        problems.append(f"{item.where()}: {label}.action: required key missing")
        return ()
    if isinstance(node.value, str):
        if node.value not in POLICY_ACTIONS:
            problems.append(f"{node.where()}: {label}.action: must be one of {', '.join(POLICY_ACTIONS)}, "
                            f"got {node.value!r}")
            return ()
        return tuple((d, node.value) for d in POLICY_DIRECTIONS)
    if isinstance(node.value, dict) and node.value:
        return direction_actions(node.value, label, POLICY_DIRECTIONS, POLICY_ACTIONS, problems)
    problems.append(f"{node.where()}: {label}.action: must be an action or a mapping of direction to action")
    return ()


def _parse_destinations(node, label: str, problems: list[str], allow: bool) -> tuple[Destination, ...]:
    if not isinstance(node.value, list) or not node.value:
        problems.append(f"{node.where()}: {label}.destinations: must be a non-empty list of hosts")
        return ()
    out = []
    for j, sub in enumerate(node.value):
        dl = f"{label}.destinations[{j}]"
        if isinstance(sub.value, str):
            host, positions = sub.value, (USE_POSITIONS if allow else ())
        elif isinstance(sub.value, dict) and "host" in sub.value and set(sub.value) <= {"host", "in"}:
            host = sub.value["host"].value
            positions = ()
            if "in" in sub.value:
                pnode = sub.value["in"]
                if not isinstance(pnode.value, list) or not all(isinstance(p.value, str) and p.value
                                                                for p in pnode.value):
                    problems.append(f"{pnode.where()}: {dl}.in: must be a list of locations such as "
                                    "header:authorization, query:key, or '*'")
                    continue
                positions = tuple(p.value.lower() for p in pnode.value)
                positions = () if "*" in positions else positions
            elif allow:
                positions = USE_POSITIONS
        else:
            problems.append(f"{sub.where()}: {dl}: must be a host pattern or a mapping with host and in")
            continue
        if not isinstance(host, str) or not host or "/" in host or " " in host:
            problems.append(f"{sub.where()}: {dl}: must be a host name or glob (api.example.com, *.example.com), "
                            f"got {host!r}")
            continue
        out.append(Destination(host.lower().rstrip("."), positions))
    return tuple(out)


# --- never-matching policies -----------------------------------------------------------------------------


def shadowed(policies: tuple[Policy, ...]) -> list[tuple[Policy, Policy]]:
    """(policy, earlier policy that always matches first) for every policy that can never match.

    Conservative: a policy is reported only when an earlier one provably covers every (principal, entry,
    destination, direction) it could match; globs are compared exactly when they use only `*`.
    """
    out = []
    for i, later in enumerate(policies):
        for earlier in policies[:i]:
            if _covers(earlier, later):
                out.append((later, earlier))
                break
    return out


def _covers(a: Policy, b: Policy) -> bool:
    a_dirs = {d for d, _ in a.actions}
    if not {d for d, _ in b.actions} <= a_dirs:
        return False
    if a.principals is not None:
        if b.principals is None or not all(_glob_covers(a.principals, g) for g in b.principals):
            return False
    if "*" not in a.entries and ("*" in b.entries or not set(b.entries) <= set(a.entries)):
        return False
    if a.destinations is None:
        return True
    if b.destinations is None:
        return False
    return all(any(_glob_covers((da.host,), db.host) and _positions_cover(da.positions, db.positions)
                   for da in a.destinations) for db in b.destinations)


def _positions_cover(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    if not a:
        return True
    return bool(b) and all(_glob_covers(a, p) for p in b)


def _glob_covers(patterns: tuple[str, ...], glob: str) -> bool:
    """True when every string `glob` matches is matched by one of `patterns` (decided only for `*`-only globs)."""
    if any(c in glob for c in "?["):
        return False
    return any(not any(c in p for c in "?[") and fnmatchcase(glob, p) for p in patterns)


# --- helpers ----------------------------------------------------------------------------------------------


class _Fields:
    """Typed access to one mapping's fields, each problem reported at its own line."""

    def __init__(self, fields: dict, label: str, problems: list[str], base: Path | None):
        self.fields, self.label, self.problems, self.base = fields, label, problems, base

    def _bad(self, key: str, what: str) -> None:
        self.problems.append(f"{self.fields[key].where()}: {self.label}.{key}: {what}")

    def _missing(self, key: str) -> None:
        any_node = next(iter(self.fields.values()))
        self.problems.append(f"{any_node.file}:{any_node.line}: {self.label}.{key}: required key missing")

    def string(self, key: str, required: bool = False) -> str:
        if key not in self.fields:
            if required:
                self._missing(key)
            return ""
        value = self.fields[key].value
        if not isinstance(value, str) or not value:
            self._bad(key, "must be a non-empty string")
            return ""
        return value

    def strings(self, key: str, required: bool = False) -> tuple[str, ...]:
        if key not in self.fields:
            if required:
                self._missing(key)
            return ()
        node = self.fields[key]
        items = node.value if isinstance(node.value, list) else [node]
        values = tuple(i.value for i in items)
        if not values or not all(isinstance(v, str) and v for v in values):
            self._bad(key, "must be a string or a non-empty list of strings")
            return ()
        return values

    def integer(self, key: str, default: int, minimum: int) -> int:
        if key not in self.fields:
            return default
        value = self.fields[key].value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self._bad(key, f"must be an integer >= {minimum}, got {value!r}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.fields:
            return default
        value = self.fields[key].value
        if not isinstance(value, bool):
            self._bad(key, f"must be true or false, got {value!r}")
            return default
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        if key not in self.fields:
            return default
        value = self.fields[key].value
        if value not in choices:
            self._bad(key, f"must be one of {', '.join(choices)}, got {value!r}")
            return default
        return value

    def file(self, key: str, required: bool = False) -> str:
        """A path (relative to the profile file's folder) that must be a readable file."""
        value = self.string(key, required)
        if not value:
            return ""
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = Path(self.fields[key].file).parent / path
        if not path.is_file():
            self._bad(key, f"no such file: {value}")
            return ""
        return str(path)


def _check_pem_certificates(path: str, node, label: str, problems: list[str]) -> None:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (ValueError, OSError) as e:
        problems.append(f"{node.where()}: {label}: {path} holds no PEM certificate ({type(e).__name__})")


def _check_jwks(path: str, node, label: str, problems: list[str]) -> None:
    try:
        load_jwks(Path(path).read_bytes())
    except (ValueError, OSError) as e:
        problems.append(f"{node.where()}: {label}.jwks_file: {path}: not a usable JWK set ({e})")


def load_jwks(data: bytes) -> Any:
    """A JSON Web Key Set → jwt.PyJWKSet (public keys only); ValueError on anything else."""
    import json

    try:
        import jwt
    except ImportError:
        raise ValueError("PyJWT is not installed (pip install pyjwt)") from None
    try:
        doc = json.loads(data)
        keys = jwt.PyJWKSet.from_dict(doc)
    except (ValueError, jwt.exceptions.PyJWTError, TypeError, AttributeError) as e:
        raise ValueError(type(e).__name__ if not str(e) else str(e)[:200]) from None
    for key in keys.keys:
        if key.key_type == "oct":
            raise ValueError("symmetric (oct) keys are not accepted: anyone holding one could mint identities")
    return keys

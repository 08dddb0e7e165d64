"""Profile sections that close the loop after a detection: `revocation` (who revokes an exposed credential) and
`settings.evidence` (to whom the sealed evidence is encrypted). Parsed here, used by ops/revocation.py.

    revocation:
      when: exposed                 # exposed (leaked or inbound) | never | always (also blocked ones)
      revokers:
        - id: github
          kind: github              # GitHub's credential revocation API: batches of up to 1,000, 60 requests/hour
          url: https://api.github.com/credentials/revoke
          entries: [github-classic-pat, github-oauth-token]
        - id: soc
          kind: webhook             # any HTTP endpoint; header values may use ${env:NAME}
          url: https://soc.example/hooks/dlp-revoke
          headers: {Authorization: "Bearer ${env:SOC_TOKEN}"}
          entries: ["*"]
    settings:
      evidence: {recipients: ["age1…"], context: 64}

An entry may override `when` with `revocation: {when: never}`. A revoker URL must be https unless its host is
loopback: the revoker receives the raw credential. Problems are reported as `FILE:LINE: field: message`.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from .nodes import mapping

WHEN = ("exposed", "never", "always")
KINDS = ("github", "webhook")
DEFAULT_WHEN = "exposed"
GITHUB_BATCH = 1000  # credentials per request (GitHub's documented maximum)
GITHUB_PER_HOUR = 60  # requests per hour (GitHub's documented limit for this unauthenticated endpoint)
DEFAULT_CONTEXT = 64  # characters of context kept on each side of a secret in sealed evidence
MAX_CONTEXT = 4096
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_AGE_RECIPIENT = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_REVOKER_KEYS = {"id", "kind", "url", "headers", "entries", "batch", "per_hour"}


@dataclass(frozen=True)
class Revoker:
    id: str
    kind: str  # github | webhook
    url: str
    headers: tuple[tuple[str, str], ...] = ()  # values may hold ${env:NAME}, expanded when sending
    entries: tuple[str, ...] = ("*",)  # entry ids it revokes, or "*"
    batch: int = 1  # credentials per request
    per_hour: int = 0  # requests per hour (0: no limit)

    def covers(self, entry_id: str) -> bool:
        return "*" in self.entries or entry_id in self.entries


@dataclass(frozen=True)
class RevocationPolicy:
    when: str = DEFAULT_WHEN
    revokers: tuple[Revoker, ...] = ()


@dataclass(frozen=True)
class Evidence:
    recipients: tuple[str, ...] = ()
    context: int = DEFAULT_CONTEXT


NO_REVOCATION = RevocationPolicy()


def env_refs(text: str) -> list[str]:
    """The NAMEs of the `${env:NAME}` references in `text`."""
    return _ENV_REF.findall(text)


def expand_env(text: str, environ) -> str:
    """`text` with each `${env:NAME}` replaced; KeyError(NAME) when a variable is not set."""
    def sub(m: re.Match) -> str:
        value = environ.get(m[1])
        if value is None:
            raise KeyError(m[1])
        return value
    return _ENV_REF.sub(sub, text)


def is_loopback(host: str) -> bool:
    host = (host or "").strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: Any) -> str | None:
    """None when `url` is an https URL, or http to a loopback host; otherwise what is wrong."""
    if not isinstance(url, str) or not url:
        return "must be a URL"
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"must be an http(s) URL with a host, got {url!r}"
    if u.username or u.password:
        return "must not carry credentials in the URL (use headers with ${env:NAME})"
    try:
        _ = u.port
    except ValueError:
        return f"has a bad port: {url!r}"
    if u.scheme == "http" and not is_loopback(u.hostname):
        return "must be https (the revoker receives the raw credential); http only for a loopback host"
    return None


def parse_revocation(node, entry_ids: set[str], problems: list[str]) -> RevocationPolicy:
    """The top-level `revocation` section (`node` is profile._Node); problems appended, never raised."""
    if node is None or node.value is None:
        return NO_REVOCATION
    fields = mapping(node, "revocation", "must be a mapping with when and revokers", ("when", "revokers"), problems)
    if fields is None:
        return NO_REVOCATION
    when = DEFAULT_WHEN
    if "when" in fields:
        when = parse_when(fields["when"], "revocation.when", problems) or DEFAULT_WHEN
    revokers: list[Revoker] = []
    if "revokers" in fields:
        rnode = fields["revokers"]
        if not isinstance(rnode.value, list):
            problems.append(f"{rnode.where()}: revocation.revokers: must be a list")
        else:
            seen: set[str] = set()
            for i, item in enumerate(rnode.value):
                r = _parse_revoker(item, f"revocation.revokers[{i}]", entry_ids, problems)
                if r is None:
                    continue
                if r.id in seen:
                    problems.append(f"{item.where()}: revocation.revokers[{i}].id: duplicate id {r.id!r}")
                    continue
                seen.add(r.id)
                revokers.append(r)
    return RevocationPolicy(when, tuple(revokers))


def parse_when(node, label: str, problems: list[str]) -> str | None:
    if node.value not in WHEN:
        problems.append(f"{node.where()}: {label}: must be one of {', '.join(WHEN)}, got {node.value!r}")
        return None
    return node.value


def parse_entry_revocation(node, label: str, problems: list[str]) -> str | None:
    """An entry's `revocation: {when: …}`: its `when`, or None (the section's)."""
    fields = mapping(node, f"{label}.revocation", "must be a mapping like {when: never}", ("when",), problems)
    if fields is None or "when" not in fields:
        return None
    return parse_when(fields["when"], f"{label}.revocation.when", problems)


def parse_evidence(node, problems: list[str]) -> Evidence | None:
    """`settings.evidence: {recipients: [age1…], context: N}`."""
    if node.value is None:
        return None
    fields = mapping(node, "settings.evidence", "must be a mapping with recipients", ("recipients", "context"),
                     problems)
    if fields is None:
        return None
    recipients: list[str] = []
    rnode = fields.get("recipients")
    if rnode is None or not isinstance(rnode.value, list) or not rnode.value:
        where = rnode.where() if rnode is not None else node.where()
        problems.append(f"{where}: settings.evidence.recipients: must be a non-empty list of age1… recipients")
    else:
        for j, sub in enumerate(rnode.value):
            if not isinstance(sub.value, str) or not _AGE_RECIPIENT.match(sub.value):
                problems.append(f"{sub.where()}: settings.evidence.recipients[{j}]: not an age X25519 recipient "
                                f"(age1 followed by 58 bech32 characters)")
            else:
                recipients.append(sub.value)
    context = DEFAULT_CONTEXT
    if "context" in fields:
        value = fields["context"].value
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CONTEXT:
            problems.append(f"{fields['context'].where()}: settings.evidence.context: must be an integer "
                            f"0..{MAX_CONTEXT}, got {value!r}")
        else:
            context = value
    return Evidence(tuple(recipients), context)


def _parse_revoker(item, label: str, entry_ids: set[str], problems: list[str]) -> Revoker | None:
    n = len(problems)
    fields = mapping(item, label, "must be a mapping with id, kind, url, entries", _REVOKER_KEYS, problems,
                     f"one of {', '.join(sorted(_REVOKER_KEYS))}")
    if fields is None:
        return None
    for key in ("id", "kind", "url"):
        if key not in fields:
            problems.append(f"{item.where()}: {label}.{key}: required key missing")
    if len(problems) > n:
        return None
    rid, kind, url = fields["id"], fields["kind"], fields["url"]
    if not isinstance(rid.value, str) or not _ID.match(rid.value):
        problems.append(f"{rid.where()}: {label}.id: must be a kebab-case id, got {rid.value!r}")
    if kind.value not in KINDS:
        problems.append(f"{kind.where()}: {label}.kind: must be one of {', '.join(KINDS)}, got {kind.value!r}")
    msg = check_url(url.value)
    if msg:
        problems.append(f"{url.where()}: {label}.url: {msg}")
    headers: list[tuple[str, str]] = []
    if "headers" in fields:
        hnode = fields["headers"]
        if not isinstance(hnode.value, dict):
            problems.append(f"{hnode.where()}: {label}.headers: must be a mapping of header name to value")
        else:
            for name, sub in hnode.value.items():
                if not _HEADER_NAME.match(name) or not isinstance(sub.value, str) or any(
                        c in sub.value for c in "\r\n\0"):
                    problems.append(f"{sub.where()}: {label}.headers.{name}: must be a header name with a "
                                    f"one-line string value")
                else:
                    headers.append((name, sub.value))
            if kind.value == "github" and any(n.lower() == "authorization" for n, _ in headers):
                problems.append(f"{hnode.where()}: {label}.headers: GitHub's revocation API is unauthenticated "
                                f"(an Authorization header makes it answer 403)")
    entries: tuple[str, ...] = ("*",)
    if "entries" in fields:
        enode = fields["entries"]
        if not isinstance(enode.value, list) or not enode.value:
            problems.append(f"{enode.where()}: {label}.entries: must be a non-empty list of entry ids or \"*\"")
        else:
            out = []
            for j, sub in enumerate(enode.value):
                if sub.value != "*" and sub.value not in entry_ids:
                    problems.append(f"{sub.where()}: {label}.entries[{j}]: unknown entry id {sub.value!r}")
                else:
                    out.append(sub.value)
            entries = tuple(out)
    elif kind.value == "github":
        problems.append(f"{item.where()}: {label}.entries: required for a github revoker (the GitHub entries it "
                        f"accepts)")
    default_batch, default_rate = (GITHUB_BATCH, GITHUB_PER_HOUR) if kind.value == "github" else (1, 0)
    batch = _int(fields, "batch", label, 1, GITHUB_BATCH if kind.value == "github" else 10000, default_batch,
                 problems)
    per_hour = _int(fields, "per_hour", label, 0, 1_000_000, default_rate, problems)
    if len(problems) > n:
        return None
    return Revoker(rid.value, kind.value, url.value, tuple(headers), entries, batch, per_hour)


def _int(fields: dict, key: str, label: str, lo: int, hi: int, default: int, problems: list[str]) -> int:
    if key not in fields:
        return default
    value = fields[key].value
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        problems.append(f"{fields[key].where()}: {label}.{key}: must be an integer {lo}..{hi}, got {value!r}")
        return default
    return value

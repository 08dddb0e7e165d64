"""Scan reports: text (one line per finding), JSON, and SARIF 2.1.0 as GitHub code scanning reads it.

No report ever holds a secret: findings carry the masked form and the `sha256:` fingerprint only.
"""

from __future__ import annotations

import hashlib
import json

from .. import __version__
from .runner import Outcome, Result
from .suppress import report_path

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}


def render(fmt: str, outcome: Outcome, profile) -> str:
    if fmt == "json":
        return json_report(outcome)
    if fmt == "sarif":
        return json.dumps(sarif(outcome, profile), indent=2) + "\n"
    return text_report(outcome)


def _where(r: Result) -> str:
    where = f"{r.path}:{r.line}:{r.column}"
    return f"{r.commit[:12]} {r.author_date} {where}" if r.commit else where


def text_report(outcome: Outcome) -> str:
    lines = []
    for r in outcome.results:
        note = f" (suppressed: {r.suppressed})" if r.suppressed else ""
        lines.append(f"{_where(r)}: {r.name} ({r.entry}) {r.masked} [{r.validated}] {r.fingerprint[:19]}{note}")
    for u in outcome.unscanned:
        lines.append(f"{u.path}: not scanned ({u.reason})")
    return "".join(line + "\n" for line in lines)


def json_report(outcome: Outcome) -> str:
    doc = {
        "findings": [r.as_json() for r in outcome.results if not r.suppressed],
        "suppressed": [r.as_json() for r in outcome.results if r.suppressed],
        "unscanned": [{"path": u.path, "reason": u.reason} for u in outcome.unscanned],
        "scanned_bytes": outcome.scanned_bytes,
    }
    return json.dumps(doc, indent=2) + "\n"


def partial_fingerprint(r: Result) -> str:
    """Secret + location: two places holding one secret are two alerts; a re-scan of one place is the same."""
    key = "\0".join((r.fingerprint, report_path(r.path), str(r.line), r.commit or ""))
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def sarif(outcome: Outcome, profile) -> dict:
    """One rule per enabled profile entry; regions in Unicode code points (declared by `columnKind`)."""
    entries = profile.enabled_entries
    rule_index = {e.id: i for i, e in enumerate(entries)}
    rules = [{
        "id": e.id,
        "name": "".join(part.capitalize() for part in e.id.split("-")),
        "shortDescription": {"text": f"{e.name} detected"},
        "fullDescription": {"text": f"A {e.name} ({e.vendor or 'credential'}) was found. "
                                    f"Revoke it and remove it from the file and its history."},
        "defaultConfiguration": {"level": SARIF_LEVEL[e.severity]},
        "help": {"text": f"{e.name}: rotate the credential; it was recognised by its prefix"
                         f"{' and checksum' if e.checksum else ' and shape'}."},
        "properties": {"tags": ["security", "secret", e.vendor.lower() or "credential"],
                       "security-severity": SECURITY_SEVERITY[e.severity],
                       "precision": "very-high" if e.checksum else "high"},
    } for e in entries]
    results = [_sarif_result(r, rule_index) for r in outcome.results]
    notifications = [{
        "level": "warning",
        "message": {"text": f"{report_path(u.path)}: not scanned ({u.reason})"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(u.path)}}}],
        "descriptor": {"id": "unscanned"},
    } for u in outcome.unscanned]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "dlproxy", "version": __version__,
                            "informationUri": "https://github.com/dlproxy/dlproxy", "rules": rules}},
        "columnKind": "unicodeCodePoints",
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
        "results": results,
    }]}


def _sarif_result(r: Result, rule_index: dict[str, int]) -> dict:
    text = f"{r.name} {r.masked} (validated by {r.validated})"
    if r.member:
        text += f" in archive member {r.member}"
    if r.commit:
        text += f" added in commit {r.commit[:12]} ({r.author_date})"
    location: dict = {"physicalLocation": {
        "artifactLocation": {"uri": _uri(r.path)},
        "region": {"startLine": r.line, "startColumn": r.column, "endLine": r.line, "endColumn": r.end_column},
    }}
    logical = []
    if r.member:
        logical.append({"name": r.member, "fullyQualifiedName": report_path(r.path), "kind": "resource"})
    if r.commit:
        logical.append({"name": r.commit, "fullyQualifiedName": f"{r.commit}:{r.path}", "kind": "commit"})
    if logical:
        location["logicalLocations"] = logical
    out = {
        "ruleId": r.entry,
        "ruleIndex": rule_index.get(r.entry, -1),
        "level": SARIF_LEVEL.get(r.severity, "error"),
        "message": {"text": text},
        "locations": [location],
        "partialFingerprints": {"secretFingerprint/v1": r.fingerprint,
                                "secretAtLocation/v1": partial_fingerprint(r)},
    }
    if r.commit:
        out["properties"] = {"commitSha": r.commit, "authorDate": r.author_date}
    if r.suppressed:
        kind = "inSource" if r.suppressed == "inline" else "external"
        out["suppressions"] = [{"kind": kind, "justification": r.suppressed}]
    return out


def _uri(path: str) -> str:
    return report_path(path).split("!", 1)[0]

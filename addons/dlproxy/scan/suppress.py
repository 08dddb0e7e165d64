"""Suppressing known findings, three ways; a suppressed finding stays in the report, marked, never dropped.

- inline: `dlproxy:allow` anywhere on the line of the finding (a comment);
- baseline: a JSON file of {fingerprint, path, entry} written by `--write-baseline` and read by `--baseline`
  (no secret in it: the fingerprint is a SHA-256 of the secret);
- profile: `allow: [{fingerprint, reason}]` in the profile (the proxy honours the same list).
"""

from __future__ import annotations

import json
from pathlib import Path

from .runner import Result

BASELINE_VERSION = 1


class BaselineError(ValueError):
    pass


def report_path(path: str) -> str:
    """A path as reports and baselines key it: relative to the working directory when under it, POSIX."""
    if path == "-":
        return "stdin"
    file, sep, member = path.partition("!")
    p = Path(file)
    if p.is_absolute() or file.startswith(".."):
        try:
            p = p.resolve().relative_to(Path.cwd().resolve())
        except (ValueError, OSError):
            pass
    return p.as_posix() + sep + member


def load_baseline(file: str) -> set[tuple[str, str]]:
    try:
        doc = json.loads(Path(file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"{file}: cannot read baseline ({exc.strerror or type(exc).__name__})") from exc
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{file}:{exc.lineno}: not JSON: {exc.msg}") from exc
    items = doc.get("findings") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise BaselineError(f"{file}: findings: expected a list (write one with --write-baseline)")
    keys = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("fingerprint"), str) \
                or not isinstance(item.get("path"), str):
            raise BaselineError(f"{file}: findings[{i}]: expected {{fingerprint, path, entry}}")
        keys.add((item["fingerprint"], item["path"]))
    return keys


def write_baseline(file: str, results: list[Result]) -> None:
    seen = {}
    for r in results:
        if r.suppressed is None or r.suppressed == "baseline":
            key = (r.fingerprint, report_path(r.path))
            seen.setdefault(key, {"fingerprint": r.fingerprint, "path": key[1], "entry": r.entry})
    doc = {"version": BASELINE_VERSION, "tool": "dlproxy",
           "findings": sorted(seen.values(), key=lambda d: (d["path"], d["fingerprint"]))}
    Path(file).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def apply(results: list[Result], allow: dict[str, str], baseline: set[tuple[str, str]] | None) -> None:
    """Mark suppressed results in place (inline comment first, then profile allowlist, then baseline)."""
    for r in results:
        if r.inline_allow:
            r.suppressed = "inline"
        elif r.fingerprint in allow:
            r.suppressed = f"profile: {allow[r.fingerprint]}"
        elif baseline and (r.fingerprint, report_path(r.path)) in baseline:
            r.suppressed = "baseline"

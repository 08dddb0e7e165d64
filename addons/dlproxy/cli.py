"""`dlproxy run | scan | profile check` — the command line (contract: docs/contracts.md).

Exit codes for scan: 0 no findings, 1 findings, 2 usage or profile error. `profile check` prints one
`FILE:LINE: field: message` line per problem and exits 2, or exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from . import __version__
from .engine.findings import Finding
from .engine.profile import ProfileError, builtin_profile_path, load_profiles

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
SKIP_DIRS = {".git", ".hg", ".svn", "node_modules", ".venv", "__pycache__", ".tox", ".mypy_cache"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 2, as documented
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlproxy", description="DLP inspection proxy for credentials and secrets.")
    parser.add_argument("--version", action="version", version=f"dlproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="start the proxy (mitmproxy with the dlproxy addons)",
                         description="Start the proxy. Unknown options are passed to mitmproxy unchanged.")
    run.add_argument("--profile", action="append", default=[], metavar="FILE",
                     help="profile file; repeat to merge (default: the built-in profile)")
    run.add_argument("--listen-host", default="127.0.0.1")
    run.add_argument("--listen-port", type=int, default=8080)
    run.add_argument("--mode", action="append", default=[], help="mitmproxy mode, e.g. reverse:https://api.openai.com")
    run.add_argument("--metrics-host", default="127.0.0.1")
    run.add_argument("--metrics-port", type=int, default=9464, help="0 picks a free port; -1 disables")
    run.add_argument("--incident-log", metavar="FILE", help="append incidents as JSON lines (default: stderr)")
    run.add_argument("--incident-webhook", metavar="URL", help="POST each incident as JSON to URL")
    run.add_argument("--dry-run", action="store_true", help="log only: never block or redact")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="OPTION=VALUE",
                     help="any mitmproxy or dlproxy option")

    scan = sub.add_parser("scan", help="scan files, directories or stdin for credentials")
    scan.add_argument("--profile", action="append", default=[], metavar="FILE")
    scan.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    scan.add_argument("--backend", default="auto", choices=("auto", "hyperscan", "pyahocorasick"))
    scan.add_argument("paths", nargs="+", metavar="PATH", help="file, directory (recursive) or - for stdin")

    profile = sub.add_parser("profile", help="profile tools")
    psub = profile.add_subparsers(dest="profile_command", required=True, parser_class=_Parser)
    check = psub.add_parser("check", help="validate profile files")
    check.add_argument("files", nargs="+", metavar="FILE")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run":
        return run_command(args, extra)
    if args.command == "scan":
        return scan_command(args)
    return profile_check_command(args)


# --- run -------------------------------------------------------------------------------------------


def mitmproxy_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Translate `dlproxy run` flags into the mitmproxy command line the embedded master parses."""
    argv = ["--listen-host", args.listen_host, "--listen-port", str(args.listen_port)]
    for mode in args.mode:
        argv += ["--mode", mode]
    for profile in args.profile:
        argv += ["--set", f"dlp_profile={profile}"]
    argv += ["--set", f"dlp_metrics_host={args.metrics_host}", "--set", f"dlp_metrics_port={args.metrics_port}"]
    if args.incident_log:
        argv += ["--set", f"dlp_incident_log={args.incident_log}"]
    if args.incident_webhook:
        argv += ["--set", f"dlp_incident_webhook={args.incident_webhook}"]
    if args.dry_run:
        argv += ["--set", "dlp_dry_run=true"]
    for option in args.sets:
        argv += ["--set", option]
    return argv + extra


def run_command(args: argparse.Namespace, extra: list[str]) -> int:
    from .proxy.master import main as master_main  # imports mitmproxy: only for `run`

    return master_main(mitmproxy_argv(args, extra))


# --- profile check ---------------------------------------------------------------------------------


def profile_check_command(args: argparse.Namespace) -> int:
    status = EXIT_CLEAN
    for file in args.files:
        try:
            profile = load_profiles([file])
        except ProfileError as exc:
            for line in exc.problems:
                print(line)
            status = EXIT_USAGE
        else:
            print(f"{file}: ok, {len(profile.enabled_entries)} enabled entries "
                  f"({len(profile.entries)} in all)", file=sys.stderr)
    return status


# --- scan ------------------------------------------------------------------------------------------


def scan_command(args: argparse.Namespace) -> int:
    from .engine.detector import Detector
    from .extract import Limits, extract_file
    from .extract.encoding import sniff_container

    try:
        profile = load_profiles(args.profile or [builtin_profile_path()])
        detector = Detector(profile, backend=args.backend)
    except ProfileError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"dlproxy scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    limits = Limits.from_settings(profile.settings)
    results: list[dict] = []
    problems: list[str] = []
    scanned = 0
    files = list(_iter_inputs(args.paths, problems))
    progress = _Progress(len(files)) if len(files) > 50 and sys.stderr.isatty() else None
    for display, path in files:
        try:
            data = sys.stdin.buffer.read() if path is None else path.read_bytes()
        except OSError as exc:
            problems.append(f"{display}: cannot read ({exc.strerror or exc.__class__.__name__})")
            continue
        if progress:
            progress.step(display)
        if path is not None and _looks_binary(data) and sniff_container(data) is None:
            continue
        extraction = extract_file(display, data, limits)
        scanned += len(data)
        seen: set[tuple[str, str]] = set()
        for segment in extraction.segments:
            for finding in detector.scan(segment.data):
                result = _result(display, segment, finding)
                # A decoded view of the same file (JSON escapes, XML entities) finds a plain token twice.
                if (result["path"], finding.fingerprint) not in seen:
                    seen.add((result["path"], finding.fingerprint))
                    results.append(result)
        for item in extraction.unscannable:
            problems.append(f"{display}: {item.location}: not scanned ({item.reason})")
    if progress:
        progress.done()
    for line in problems:
        print(f"dlproxy scan: {line}", file=sys.stderr)
    _print(args.format, results, scanned, detector)
    return EXIT_FINDINGS if results else EXIT_CLEAN


def _iter_inputs(paths: list[str], problems: list[str]) -> Iterator[tuple[str, Path | None]]:
    for raw in paths:
        if raw == "-":
            yield "-", None
            continue
        path = Path(raw)
        if path.is_dir():
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                for name in sorted(names):
                    full = Path(root) / name
                    if full.is_file() and not full.is_symlink():
                        yield str(full), full
        elif path.is_file():
            yield raw, path
        else:
            problems.append(f"{raw}: no such file or directory")


def _looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def _result(display: str, segment, finding: Finding) -> dict:
    """A finding with a line/column. Inside an archive member the path names the member too."""
    data = segment.data
    line = data.count(b"\n", 0, finding.start) + 1
    column = finding.start - (data.rfind(b"\n", 0, finding.start) + 1) + 1
    location = segment.location
    if location.startswith(display + "/"):  # a member of an archive: archive.zip!inner/.npmrc
        path = f"{display}!{location[len(display) + 1:]}"
    elif location == display or location.startswith(display + ":"):  # the file itself, or a decoded view of it
        path = display
    else:
        path = f"{display}!{location}"
    return {"entry": finding.entry_id, "name": finding.name, "path": path, "line": line, "column": column,
            "masked": finding.masked, "fingerprint": finding.fingerprint, "validated": finding.validated,
            "severity": finding.severity, "end_column": column + (finding.end - finding.start)}


def _print(fmt: str, results: list[dict], scanned: int, detector) -> None:
    if fmt == "json":
        keys = ("entry", "name", "path", "line", "column", "masked", "fingerprint", "validated")
        print(json.dumps({"findings": [{k: r[k] for k in keys} for r in results], "scanned_bytes": scanned},
                         indent=2))
    elif fmt == "sarif":
        print(json.dumps(_sarif(results, detector), indent=2))
    else:
        for r in results:
            print(f"{r['path']}:{r['line']}:{r['column']}: {r['name']} ({r['entry']}) {r['masked']} "
                  f"[{r['validated']}] {r['fingerprint'][:19]}")
        print(f"{len(results)} finding(s) in {scanned} bytes", file=sys.stderr)


def _sarif(results: list[dict], detector) -> dict:
    """SARIF 2.1.0 as GitHub code scanning accepts it: one rule per profile entry, regions with line/column."""
    entries = detector.profile.enabled_entries
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
                       "security-severity": SECURITY_SEVERITY[e.severity], "precision": "very-high"
                       if e.checksum else "high"},
    } for e in entries]
    sarif_results = [{
        "ruleId": r["entry"],
        "ruleIndex": rule_index[r["entry"]],
        "level": SARIF_LEVEL[r["severity"]],
        "message": {"text": f"{r['name']} {r['masked']} (validated by {r['validated']})"},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": _sarif_uri(r["path"])},
            "region": {"startLine": r["line"], "startColumn": r["column"], "endLine": r["line"],
                       "endColumn": r["end_column"]},
        }}],
        "partialFingerprints": {"secretFingerprint/v1": r["fingerprint"]},
    } for r in results]
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "dlproxy", "version": __version__,
                            "informationUri": "https://github.com/dlproxy/dlproxy", "rules": rules}},
        "results": sarif_results,
    }]}


def _sarif_uri(path: str) -> str:
    if path == "-":
        return "stdin"
    p = Path(path.split("!", 1)[0])
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return p.as_posix()


class _Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, total: int):
        self.total, self.count = total, 0

    def step(self, name: str) -> None:
        self.count += 1
        width = 30
        filled = width * self.count // self.total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} {name[-40:]:<40}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r" + " " * 90 + "\r")
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())

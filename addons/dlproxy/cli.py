"""`dlproxy run | scan | profile check` — the command line (contract: docs/contracts.md).

Exit codes for scan: 0 no findings, 1 findings, 2 usage or profile error, 3 not fully scanned (scan/command.py).
`profile check` prints one
`FILE:LINE: field: message` line per problem and exits 2, or exits 0.

`--profile FILE` (all three commands) is an overlay on the built-in profile; `--profile builtin` places the
built-in explicitly; `--no-builtin` leaves it out (the files then replace it).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .engine.profile import ProfileError, load_profiles, profile_sources, sort_problems

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


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
    _profile_arguments(run)
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

    scan = sub.add_parser("scan", help="scan files, directories, stdin, staged changes or git history",
                          description="Scan for credentials. `dlproxy scan git [REPO]` scans every commit's "
                                      "added lines. Exit: 0 clean, 1 findings, 2 usage error, 3 not fully scanned.")
    _profile_arguments(scan)
    scan.add_argument("--backend", default="auto", choices=("auto", "hyperscan", "pyahocorasick"))
    scan.add_argument("--no-cache", action="store_true", help="build the detector afresh (no cache)")
    scan_command_module().add_arguments(scan)

    profile = sub.add_parser("profile", help="profile tools")
    psub = profile.add_subparsers(dest="profile_command", required=True, parser_class=_Parser)
    check = psub.add_parser("check", help="validate profile files (overlays, merged as `run --profile` would)",
                            description="Validate the files merged in order onto the built-in profile (as "
                                        "`run --profile A --profile B` merges them), and run every entry's "
                                        "examples and counterexamples.")
    check.add_argument("files", nargs="+", metavar="FILE", help="profile file, or `builtin`")
    check.add_argument("--no-builtin", action="store_true",
                       help="check the files alone: the first one must be a complete profile")
    return parser


def scan_command_module():
    from .scan import command

    return command


def _profile_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", action="append", default=[], metavar="FILE",
                        help="profile overlay on the built-in profile (adds entries, overrides fields by id, "
                             "`enabled: false` disables); repeat to merge; `builtin` names the built-in")
    parser.add_argument("--no-builtin", action="store_true",
                        help="do not start from the built-in profile: the --profile files replace it")


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
    if args.no_builtin:
        argv += ["--set", "dlp_builtin=false"]
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
    from .engine.detector import Detector
    from .engine.selfcheck import check_examples

    try:
        paths = profile_sources(args.files, builtin=not args.no_builtin)
        profile = load_profiles(paths)
        problems = sort_problems(check_examples(Detector(profile)), paths)
    except ProfileError as exc:
        problems = exc.problems
    if problems:
        for line in problems:
            print(line)
        return EXIT_USAGE
    print(f"{', '.join(args.files)}: ok, {len(profile.enabled_entries)} enabled entries "
          f"({len(profile.entries)} in all; merged: {' + '.join(map(str, paths))})", file=sys.stderr)
    return EXIT_CLEAN


# --- scan ------------------------------------------------------------------------------------------


def scan_command(args: argparse.Namespace) -> int:
    from .engine.detector import Detector
    from .scan import cache, command

    paths: list = []

    def build():
        profile = load_profiles(paths)
        return profile, Detector(profile, backend=args.backend)

    backend = f"{args.backend} {os.environ.get('DLPROXY_BACKEND', '')}"
    try:
        paths = profile_sources(args.profile, builtin=not args.no_builtin)
        profile, detector = build() if args.no_cache else cache.cached(paths, backend, build)
    except ProfileError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"dlproxy scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return command.run(args, profile, detector)


if __name__ == "__main__":
    sys.exit(main())

"""`dlproxy scan`: files, directories, stdin, staged changes, diffs and git history.

Exit codes: 0 nothing found, 1 findings (`--exit-code N` changes it), 2 usage or profile error (a missing
path, a bad baseline, not a git repository), 3 no findings but something could not be fully scanned (listed in
the report; `--allow-unscanned` makes it 0). Suppressed findings (inline `dlproxy:allow`, a baseline, the
profile's `allow` list) are reported as suppressed and do not count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..extract import Limits
from . import diff, report, suppress, walk
from .runner import Outcome, Scanner, Unscanned

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_UNSCANNED = 0, 1, 2, 3


def add_arguments(scan: argparse.ArgumentParser) -> None:
    scan.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    scan.add_argument("-o", "--report", metavar="FILE", help="write the report to FILE instead of stdout")
    scan.add_argument("--exit-code", type=int, default=EXIT_FINDINGS, metavar="N",
                      help="exit status when there are findings (default 1)")
    scan.add_argument("-q", "--quiet", action="store_true", help="no summary or progress on stderr")
    scan.add_argument("-v", "--verbose", action="store_true", help="list skipped files with the reason")
    scan.add_argument("--allow-unscanned", action="store_true",
                      help="exit 0, not 3, when something could not be fully scanned (it is still listed)")
    scan.add_argument("--max-file-bytes", type=_size, default=None, metavar="N",
                      help="largest file scanned (default: the profile's max_inspect_bytes); K, M, G suffixes")
    scan.add_argument("--no-ignore", action="store_true", help="scan files .gitignore excludes too")
    scan.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                      help="leave out paths matching GLOB (a name, or a path relative to the scanned folder)")
    scan.add_argument("--follow-symlinks", action="store_true", help="follow symbolic links (default: skip)")
    scan.add_argument("--baseline", metavar="FILE", help="report findings listed in FILE as suppressed")
    scan.add_argument("--write-baseline", metavar="FILE",
                      help="write every current finding to FILE (fingerprint + path, no secret)")
    scan.add_argument("--staged", action="store_true", help="scan only lines added in the git index")
    scan.add_argument("--diff", metavar="REV", help="scan only lines added since REV (git diff REV)")
    scan.add_argument("--since", metavar="REV", help="scan git: only commits after REV")
    scan.add_argument("--range", metavar="A..B", help="scan git: only commits in A..B")
    scan.add_argument("--all", action="store_true", help="scan git: every branch and tag, not only HEAD")
    scan.add_argument("--stdin-diff", choices=("auto", "yes", "no"), default="auto",
                      help="stdin is a unified diff: scan its added lines only (auto: detect `diff --git`)")
    scan.add_argument("paths", nargs="*", metavar="PATH",
                      help="files, folders (recursive) or - for stdin; `git [REPO]` scans history")


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b").rstrip("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}") from None


def run(args: argparse.Namespace, profile, detector) -> int:
    """Scan what the arguments name; print or write the report; return the exit status."""
    err = _Stderr(args.quiet)
    history = bool(args.paths) and args.paths[0] == "git"
    targets = args.paths[1:] if history else args.paths
    mode_problem = _check_modes(args, history, targets)
    if mode_problem:
        print(f"dlproxy scan: {mode_problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        baseline = suppress.load_baseline(args.baseline) if args.baseline else None
    except suppress.BaselineError as exc:
        print(f"dlproxy scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    limits = Limits.from_settings(profile.settings)
    max_file = args.max_file_bytes or limits.max_inspect_bytes
    progress = _Progress() if sys.stderr.isatty() and not args.quiet else None
    outcome = Outcome()
    scanner = Scanner(detector, limits, max_file, outcome, progress.step if progress else None)
    try:
        if history or args.staged or args.diff:
            repo = targets[0] if targets else "."
            diff.check_repo(repo)
            git_args = (diff.history_args(args.since, args.range, args.all) if history
                        else diff.diff_args(args.staged, args.diff))
            empty = history and not args.all and not args.range and not diff.has_head(repo)
            for batch in () if empty else diff.added_lines(diff.run_git(repo, git_args)):
                scanner.scan_lines(batch.lines, batch.where)
                if progress:
                    progress.step(batch.where[-1][2] or batch.where[-1][0], 0)
        else:
            missing = [p for p in targets if p != "-" and not Path(p).exists() and not Path(p).is_symlink()]
            if missing:
                for p in missing:
                    print(f"dlproxy scan: {p}: no such file or directory", file=sys.stderr)
                return EXIT_USAGE
            for target in targets:
                _scan_target(scanner, target, args)
    except diff.GitError as exc:
        if progress:
            progress.done()
        print(f"dlproxy scan: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if progress:
        progress.done()
    suppress.apply(outcome.results, dict(profile.allow), baseline)
    if args.write_baseline:
        suppress.write_baseline(args.write_baseline, outcome.results)
    text = report.render(args.format, outcome, profile)
    if args.report:
        Path(args.report).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.verbose:
        for path, reason in outcome.skipped:
            print(f"dlproxy scan: skipped {path}: {reason}", file=sys.stderr)
    active = [r for r in outcome.results if not r.suppressed]
    err.print(f"{len(active)} finding(s), {len(outcome.results) - len(active)} suppressed, "
              f"{len(outcome.unscanned)} not scanned, in {outcome.scanned_bytes} bytes of {outcome.files} "
              f"input(s)" + (f" (baseline written to {args.write_baseline})" if args.write_baseline else ""))
    if active and not args.write_baseline:
        return args.exit_code
    if outcome.unscanned and not args.allow_unscanned:
        return EXIT_UNSCANNED
    return EXIT_CLEAN


def _check_modes(args, history: bool, targets: list[str]) -> str | None:
    if not history and not args.staged and not args.diff and not targets:
        return "nothing to scan: give a PATH, - for stdin, `git`, --staged or --diff REV"
    if sum(map(bool, (history, args.staged, args.diff))) > 1:
        return "choose one of `git`, --staged and --diff"
    if (args.since or args.range or args.all) and not history:
        return "--since, --range and --all apply to `dlproxy scan git`"
    if args.since and args.range:
        return "choose one of --since and --range"
    if (history or args.staged or args.diff) and len(targets) > 1:
        return "give at most one repository"
    return None


def _scan_target(scanner: Scanner, target: str, args) -> None:
    if target == "-":
        data = sys.stdin.buffer.read(scanner.max_file_bytes + 1)
        if args.stdin_diff == "yes" or (args.stdin_diff == "auto" and diff.looks_like_diff(data)):
            if len(data) > scanner.max_file_bytes:
                scanner.out.unscanned.append(Unscanned("-", "too_large: more than --max-file-bytes"))
                return
            scanner.out.files += 1
            for batch in diff.added_lines(data.splitlines(keepends=True)):
                scanner.scan_lines(batch.lines, batch.where)
            return
        if len(data) > scanner.max_file_bytes:
            scanner.out.unscanned.append(Unscanned("-", f"too_large: more than --max-file-bytes "
                                                        f"{scanner.max_file_bytes}"))
            return
        scanner.scan_bytes("-", data)
        return
    path = Path(target)
    if path.is_dir():
        for full, skipped in walk.walk(path, gitignore=not args.no_ignore, excludes=tuple(args.exclude),
                                       follow_symlinks=args.follow_symlinks):
            if skipped is not None and skipped.unscanned:
                scanner.out.unscanned.append(Unscanned(skipped.path, skipped.reason))
            elif skipped is not None:
                scanner.out.skipped.append((skipped.path, skipped.reason))
            else:
                scanner.scan_path(full, full)
    elif path.is_symlink() and not path.exists():
        scanner.out.unscanned.append(Unscanned(target, "broken symlink"))
    else:
        scanner.scan_path(target, path)


class _Stderr:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def print(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)


class _Progress:
    """One line on stderr (a terminal only): inputs and megabytes so far, and the current input."""

    def __init__(self):
        self.count = 0
        self.bytes = 0

    def step(self, name: str, nbytes: int) -> None:
        self.count += 1
        self.bytes += nbytes
        if self.count % 16 and nbytes < 1 << 20:
            return
        sys.stderr.write(f"\r{self.count} input(s), {self.bytes / 1e6:.1f} MB  {name[-50:]:<50}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r" + " " * 90 + "\r")
        sys.stderr.flush()

"""Added lines of unified diffs and of git history, with the file and the line number in the new file.

Only `+` lines count: context and removed lines are not scanned, so a change that deletes a secret passes,
while history scanning still finds a secret that one commit added and the next removed (it was exposed).
`git log -p` output is streamed and parsed line by line; added lines are batched into large buffers so the
detector runs a few times per megabyte, not once per line.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

COMMIT_MARK = b"\x01dlproxy-commit "
_HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# A merge's combined diff (`--diff-merges=dense-combined`): one prefix column per parent.
_COMBINED = re.compile(rb"^(@@@+) (?:-\d+(?:,\d+)? )+\+(\d+)(?:,\d+)? @@@+")
_MARKS = frozenset(b" +-")
BATCH_BYTES = 4 * 1024 * 1024


class GitError(RuntimeError):
    pass


@dataclass(slots=True)
class Added:
    """Added lines and where each comes from: (file, line number, commit, author date)."""

    lines: list[bytes]
    where: list[tuple[str, int, str | None, str | None]]
    size: int = 0  # bytes of the lines, each with its line end

    def add(self, line: bytes, where: tuple[str, int, str | None, str | None]) -> None:
        self.lines.append(line)
        self.where.append(where)
        self.size += len(line) + 1


def looks_like_diff(data: bytes) -> bool:
    """A unified diff (`git diff`, `diff -u`, `git format-patch`): starts with `diff --git`, or `--- a` + `+++ b` +
    a hunk header, or is a mail whose first `diff --git` is in its first 64 KiB."""
    head = data[:4096]
    if head.startswith(b"diff --git ") or head.startswith(b"diff -"):
        return True
    if head.startswith(b"From ") and re.search(rb"^diff --git ", data[:65536], re.M):  # git format-patch
        return True
    return bool(re.match(rb"(?:[^\n]*\n){0,20}?--- [^\n]*\n\+\+\+ [^\n]*\n@@ ", head))


def _path_of(header: bytes) -> str | None:
    """The new path of a `+++ b/path` line (None for /dev/null)."""
    name = header[4:].rstrip(b"\r\n")
    if b"\t" in name:
        name = name.split(b"\t", 1)[0]
    text = name.decode("utf-8", "surrogateescape")
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape").encode(
            "latin-1", "replace").decode("utf-8", "replace")
    if text == "/dev/null":
        return None
    return text[2:] if text.startswith(("b/", "a/")) else text


def added_lines(lines: Iterable[bytes], batch_bytes: int = BATCH_BYTES) -> Iterator[Added]:
    """Parse unified diff / `git log -p` output into batches of added lines.

    A commit header line is `COMMIT_MARK + sha + " " + author date` (the format `history` asks git for)."""
    commit = date = None
    path: str | None = None
    number = 0
    old_left = new_left = 0  # lines of the current hunk still to come
    columns = 0  # in a merge's combined hunk: the number of parents
    batch = Added([], [])
    for raw in lines:
        if raw.startswith(COMMIT_MARK):
            parts = raw[len(COMMIT_MARK):].split()
            commit = parts[0].decode("ascii", "replace") if parts else None
            date = parts[1].decode("ascii", "replace") if len(parts) > 1 else None
            path, old_left, new_left, columns = None, 0, 0, 0
            continue
        if columns:
            prefix = raw[:columns]
            if len(prefix) == columns and _MARKS.issuperset(prefix):
                if b"-" in prefix:
                    continue
                if prefix.count(b"+") == columns and path is not None:  # new to every parent: the merge's own
                    line = raw[columns:].rstrip(b"\n")
                    batch.add(line[:-1] if line.endswith(b"\r") else line, (path, number, commit, date))
                    if batch.size >= batch_bytes:
                        yield batch
                        batch = Added([], [])
                number += 1
                continue
            columns = 0
        if old_left > 0 or new_left > 0:
            c = raw[:1]
            if c == b"+" and new_left > 0:
                new_left -= 1
                line = raw[1:].rstrip(b"\n")
                if line.endswith(b"\r"):
                    line = line[:-1]
                if path is not None:
                    batch.add(line, (path, number, commit, date))
                    if batch.size >= batch_bytes:
                        yield batch
                        batch = Added([], [])
                number += 1
                continue
            if c == b" ":
                number += 1
                old_left, new_left = old_left - 1, new_left - 1
                continue
            if c == b"-" and old_left > 0:
                old_left -= 1
                continue
            if c == b"\\":
                continue
            old_left = new_left = 0  # anything else ends the hunk
        if raw.startswith(b"+++ "):
            path = _path_of(raw)
        elif raw.startswith(b"@@@"):
            m = _COMBINED.match(raw)
            if m:
                columns, number = len(m.group(1)) - 1, int(m.group(2))
        elif raw.startswith(b"@@"):
            m = _HUNK.match(raw)
            if m:
                old_left = 1 if m.group(1) is None else int(m.group(1))
                number = int(m.group(2))
                new_left = 1 if m.group(3) is None else int(m.group(3))
        elif raw.startswith(b"diff "):
            path = None
    if batch.lines:
        yield batch


def _git(cwd: str, *args: str) -> subprocess.Popen:
    try:
        return subprocess.Popen(["git", "-C", cwd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc


def check_repo(cwd: str) -> None:
    try:
        proc = subprocess.run(["git", "-C", cwd, "rev-parse", "--git-dir"], capture_output=True, timeout=60)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    if proc.returncode != 0:
        raise GitError(f"{cwd}: not a git repository")


def has_head(cwd: str) -> bool:
    """False in a repository without commits yet (an empty history: nothing to scan, not an error)."""
    proc = subprocess.run(["git", "-C", cwd, "rev-parse", "-q", "--verify", "HEAD"], capture_output=True,
                          timeout=60)
    return proc.returncode == 0


_DIFF_OPTS = ("--no-color", "--no-ext-diff", "--no-textconv", "-U0", "--no-renames", "--diff-filter=d")


def history_args(since: str | None, range_: str | None, all_refs: bool) -> list[str]:
    # A merge shows the lines new to every parent (a conflict resolution's own), not those it merely merged.
    args = ["log", "-p", *_DIFF_OPTS, "--diff-merges=dense-combined", f"--format={COMMIT_MARK.decode()}%H %aI"]
    if all_refs:
        args.append("--all")
    if range_:
        args.append(range_)
    elif since:
        args.append(f"{since}..HEAD")
    args.append("--")
    return args


def diff_args(staged: bool, rev: str | None) -> list[str]:
    args = ["diff", *_DIFF_OPTS]
    if staged:
        args.append("--cached")
    if rev:
        args.append(rev)
    args.append("--")
    return args


def run_git(cwd: str, args: list[str]) -> Iterator[bytes]:
    """The lines of a git command's output, streamed; GitError with git's message when it fails."""
    proc = _git(cwd, "-c", "core.quotePath=false", *args)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        yield from proc.stdout
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        proc.stderr.close()
        code = proc.wait()
    if code != 0:
        raise GitError(err.splitlines()[-1] if err else f"git {args[0]} failed with exit {code}")

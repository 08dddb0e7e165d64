"""Which files a directory scan reads: `.gitignore` rules, `--exclude` globs, no symlinks, no VCS folders.

Every file left out is reported with a reason (`dlproxy scan -v` lists them), so a scan never hides what it
did not look at. The `.gitignore` dialect is git's: `#` comments, `!` negation, a trailing `/` for folders
only, a `/` at the start or in the middle anchors the pattern to the folder of its `.gitignore`, `**` spans
folders. Each folder's `.gitignore` applies below it; a later rule overrides an earlier one.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SKIP_DIRS = frozenset({".git", ".hg", ".svn"})


@dataclass(frozen=True, slots=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern
    negate: bool
    dir_only: bool


def _glob_regex(glob: str) -> str:
    """git wildmatch → regex: `*` and `?` stay in one path component, `**` crosses components."""
    out, i, n = [], 0, len(glob)
    while i < n:
        c = glob[i]
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = glob.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = glob[i + 1:j].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_gitignore(text: str) -> list[_Rule]:
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        if not line.endswith("\\ "):
            line = line.rstrip(" ")
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        elif line.startswith("\\!") or line.startswith("\\#"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        body = _glob_regex(line)
        regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.DOTALL)
        rules.append(_Rule(regex, negate, dir_only))
    return rules


class IgnoreStack:
    """The `.gitignore` rules in force in one folder: (folder, rules) from the walk's root down."""

    def __init__(self, layers: tuple[tuple[Path, tuple[_Rule, ...]], ...] = ()):
        self.layers = layers

    def enter(self, folder: Path) -> IgnoreStack:
        try:
            text = (folder / ".gitignore").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return self
        rules = tuple(parse_gitignore(text))
        return IgnoreStack(self.layers + ((folder, rules),)) if rules else self

    def ignored(self, path: Path, is_dir: bool) -> bool:
        verdict = False
        for folder, rules in self.layers:
            rel = path.relative_to(folder).as_posix()
            for rule in rules:
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.match(rel):
                    verdict = not rule.negate
        return verdict


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _inherited(root: Path) -> IgnoreStack:
    """Rules of the `.gitignore` files above `root` up to its repository's top (they apply to it too)."""
    top = _repo_root(root)
    stack = IgnoreStack()
    if top is None or top == root:
        return stack
    chain = [root.parent]
    while chain[-1] != top:
        chain.append(chain[-1].parent)
    for folder in reversed(chain):
        stack = stack.enter(folder)
    return stack


def excluded(rel: str, excludes: tuple[str, ...]) -> str | None:
    """The `--exclude` glob matching a path (relative to the scanned folder) or any of its folders."""
    parts = rel.split("/")
    for glob in excludes:
        g = glob.rstrip("/")
        if "/" in g:
            if fnmatch.fnmatchcase(rel, g) or any(fnmatch.fnmatchcase("/".join(parts[:k]), g)
                                                  for k in range(1, len(parts))):
                return glob
        elif any(fnmatch.fnmatchcase(part, g) for part in parts):
            return glob
    return None


def walk(root: Path, *, gitignore: bool = True, excludes: tuple[str, ...] = (),
         follow_symlinks: bool = False) -> Iterator[tuple[Path, Skipped | None]]:
    """(file, None) for each file to scan under `root`, in sorted order; (path, Skipped) for each left out."""
    root_resolved = root.resolve()
    start = _inherited(root_resolved) if gitignore else IgnoreStack()
    stack_of: dict[str, IgnoreStack] = {}
    for folder, dirs, names in os.walk(root, followlinks=follow_symlinks):
        here = Path(folder)
        parent_stack = stack_of.get(os.path.dirname(folder), start) if folder != str(root) else start
        stack = parent_stack.enter(here) if gitignore else parent_stack
        stack_of[folder] = stack
        keep = []
        for d in sorted(dirs):
            full = here / d
            rel = full.relative_to(root).as_posix()
            if d in SKIP_DIRS:
                yield full, Skipped(str(full), "version-control folder")
            elif (glob := excluded(rel, excludes)) is not None:
                yield full, Skipped(str(full), f"excluded by {glob}")
            elif gitignore and stack.ignored(_abs(full, root, root_resolved), True):
                yield full, Skipped(str(full), "ignored by .gitignore")
            elif full.is_symlink() and not follow_symlinks:
                yield full, Skipped(str(full), "symlink (not followed)")
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(names):
            full = here / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() and not follow_symlinks:
                yield full, Skipped(str(full), "symlink (not followed)")
            elif (glob := excluded(rel, excludes)) is not None:
                yield full, Skipped(str(full), f"excluded by {glob}")
            elif gitignore and stack.ignored(_abs(full, root, root_resolved), False):
                yield full, Skipped(str(full), "ignored by .gitignore")
            elif not full.is_file():
                yield full, Skipped(str(full), "not a regular file")
            else:
                yield full, None


def _abs(path: Path, root: Path, root_resolved: Path) -> Path:
    return root_resolved / path.relative_to(root)

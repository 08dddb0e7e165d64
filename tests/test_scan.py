"""`dlproxy scan` beyond single files: nothing reported clean that was not scanned, every occurrence, SARIF
locations, git history / staged / diff scanning on real repositories, suppression, .gitignore and options."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dlproxy.cli import main
from dlproxy.engine.findings import fingerprint
from dlproxy.scan import diff, runner, walk
from tokens import make_ghp


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DLPROXY_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "dlproxy-cache"))


def scan(capsys, *args, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    code = main(["scan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def scan_json(capsys, *args, **kw):
    code, out, err = scan(capsys, "--format", "json", *args, **kw)
    return code, json.loads(out), err


# --- nothing silently clean ---------------------------------------------------------------------------


def test_missing_path_is_a_usage_error(capsys, tmp_path):
    code, out, err = scan(capsys, str(tmp_path / "nope"))
    assert code == 2
    assert f"{tmp_path / 'nope'}: no such file or directory" in err


def test_every_occurrence_is_reported(capsys, tmp_path):
    token = make_ghp("twice")
    (tmp_path / "f.env").write_text(f"A={token}\nb\nc\nD={token}\n")
    code, report, _ = scan_json(capsys, str(tmp_path / "f.env"))
    assert code == 1
    assert [(f["line"], f["column"]) for f in report["findings"]] == [(1, 3), (4, 3)]


def test_oversize_file_is_unscanned_exit_3_unless_allowed(capsys, tmp_path):
    token = make_ghp("big")
    big = tmp_path / "big.txt"
    big.write_text("x" * 5000 + f"\n{token}\n")
    small = tmp_path / "small.txt"
    small.write_text("nothing\n")
    code, report, _ = scan_json(capsys, "--max-file-bytes", "1k", str(big), str(small))
    assert code == 3
    assert report["findings"] == []
    assert report["unscanned"] == [{"path": str(big), "reason": report["unscanned"][0]["reason"]}]
    assert report["unscanned"][0]["reason"].startswith("too_large")
    assert report["scanned_bytes"] == len("nothing\n")  # the big file's bytes do not count
    assert scan_json(capsys, "--max-file-bytes", "1k", "--allow-unscanned", str(big))[0] == 0
    code, report, _ = scan_json(capsys, "--max-file-bytes", "1M", str(big))
    assert code == 1 and report["findings"][0]["line"] == 2 and report["unscanned"] == []
    # findings win over unscanned parts: exit 1
    (tmp_path / "tok.txt").write_text(token)
    assert scan_json(capsys, "--max-file-bytes", "1k", str(big), str(tmp_path / "tok.txt"))[0] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_unscanned(capsys, tmp_path):
    f = tmp_path / "secret.txt"
    f.write_text("x")
    f.chmod(0)
    try:
        code, report, _ = scan_json(capsys, str(tmp_path))
    finally:
        f.chmod(0o600)
    assert code == 3
    assert report["unscanned"][0]["path"] == str(f) and "unreadable" in report["unscanned"][0]["reason"]


def test_archive_member_not_inspectable_is_listed_and_sarif_notifies(capsys, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("ok/.npmrc", f"token={make_ghp('member')}\n")
        zf.writestr("deep.zip", _nested_zip(5))
    code, report, _ = scan_json(capsys, str(bundle))
    assert code == 1
    assert report["findings"][0]["path"] == f"{bundle}!ok/.npmrc"
    assert any(u["path"].startswith(f"{bundle}!deep.zip") and u["reason"] == "depth" for u in report["unscanned"])
    monkeypatch.chdir(tmp_path)
    code, out, _ = scan(capsys, "--format", "sarif", "bundle.zip")
    run = json.loads(out)["runs"][0]
    (res,) = run["results"]
    assert "ok/.npmrc" in res["message"]["text"]
    assert res["locations"][0]["logicalLocations"][0] == {"name": "ok/.npmrc", "kind": "resource",
                                                          "fullyQualifiedName": "bundle.zip!ok/.npmrc"}
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert any("deep.zip" in n["message"]["text"] and "depth" in n["message"]["text"] for n in notes)


def _nested_zip(depth: int) -> bytes:
    data = b"innermost"
    for i in range(depth):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"level{i}.zip" if i else "leaf.txt", data)
        data = buf.getvalue()
    return data


def test_sarif_columns_in_code_points_and_fingerprints_per_location(capsys, tmp_path, monkeypatch):
    token = make_ghp("sarif")
    (tmp_path / "a.txt").write_text(f"é→ {token}\n{token}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code, out, _ = scan(capsys, "--format", "sarif", "a.txt")
    run = json.loads(out)["runs"][0]
    assert run["columnKind"] == "unicodeCodePoints"
    first, second = run["results"]
    assert first["locations"][0]["physicalLocation"]["region"]["startColumn"] == 4
    assert first["locations"][0]["physicalLocation"]["region"]["endColumn"] == 4 + len(token)
    assert first["partialFingerprints"]["secretFingerprint/v1"] == second["partialFingerprints"][
        "secretFingerprint/v1"]
    assert first["partialFingerprints"]["secretAtLocation/v1"] != second["partialFingerprints"][
        "secretAtLocation/v1"]
    assert token not in out


def test_large_text_file_is_scanned_in_chunks_with_exact_lines(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "CHUNK", 64 * 1024)
    monkeypatch.setattr(runner, "WHOLE", 64 * 1024)
    tokens = [make_ghp(f"chunk{i}") for i in range(40)]
    lines, expected = [], []
    for i, tok in enumerate(tokens):
        lines.extend(["filler line " * 50] * 20)
        lines.append(f"k{i}={tok}")
        expected.append((len(lines), 2 + len(str(i)) + 1))
    (tmp_path / "big.log").write_text("\n".join(lines) + "\n")
    assert (tmp_path / "big.log").stat().st_size > 5 * runner.CHUNK
    code, report, _ = scan_json(capsys, str(tmp_path / "big.log"))
    assert code == 1
    assert [(f["line"], f["column"]) for f in report["findings"]] == expected
    assert report["scanned_bytes"] == (tmp_path / "big.log").stat().st_size


def test_detector_cache_is_keyed_by_profile_content(capsys, tmp_path, monkeypatch):
    import pickle

    from dlproxy.engine.detector import Detector
    from dlproxy.engine.profile import load_profiles

    monkeypatch.setenv("DLPROXY_CACHE_DIR", str(tmp_path / "cache"))
    token = make_ghp("cache")
    (tmp_path / "a.txt").write_text(token)
    assert scan(capsys, str(tmp_path / "a.txt"))[0] == 1
    (entry,) = (tmp_path / "cache").iterdir()
    assert entry.stat().st_mode & 0o077 == 0
    # What the cache holds is what the scan uses: swap in a detector without the GitHub entry.
    profile = load_profiles([])
    profile = type(profile)(profile.id, profile.name, profile.settings,
                            tuple(e for e in profile.entries if e.id != "github-classic-pat"))
    entry.write_bytes(pickle.dumps((profile, Detector(profile))))
    assert scan(capsys, str(tmp_path / "a.txt"))[0] == 0
    assert scan(capsys, "--no-cache", str(tmp_path / "a.txt"))[0] == 1
    entry.write_bytes(b"garbage")  # unreadable cache: rebuilt
    assert scan(capsys, str(tmp_path / "a.txt"))[0] == 1
    overlay = tmp_path / "o.yaml"
    overlay.write_text("profile: o\nallow: []\n")
    from dlproxy.engine.profile import builtin_profile_path

    assert scan(capsys, "--profile", str(builtin_profile_path()), "--profile", str(overlay),
                str(tmp_path / "a.txt"))[0] == 1
    assert len(list((tmp_path / "cache").iterdir())) == 2


# --- walking -----------------------------------------------------------------------------------------


def test_gitignore_exclude_and_symlinks(capsys, tmp_path):
    token = make_ghp("walk")
    (tmp_path / ".gitignore").write_text("*.log\n/build/\n!keep.log\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").write_text("local.env\n")
    for rel in ("app.log", "keep.log", "build/out.txt", "sub/local.env", "sub/x/build/y.txt", "vendor/lib.txt",
                "src/main.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"t={token}\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "s.txt").write_text(f"t={token}\n")
    (tmp_path / "src" / "link.txt").symlink_to(tmp_path / "outside" / "s.txt")
    code, report, err = scan_json(capsys, "-v", "--exclude", "vendor", str(tmp_path))
    found = sorted(Path(f["path"]).relative_to(tmp_path).as_posix() for f in report["findings"])
    assert found == ["keep.log", "outside/s.txt", "src/main.txt", "sub/x/build/y.txt"]
    assert "ignored by .gitignore" in err and f"skipped {tmp_path / 'app.log'}" in err
    assert f"skipped {tmp_path / 'vendor'}: excluded by vendor" in err
    assert f"skipped {tmp_path / 'src' / 'link.txt'}: symlink (not followed)" in err
    code, report, _ = scan_json(capsys, "--no-ignore", str(tmp_path))
    assert len(report["findings"]) == 8


def test_gitignore_rules():
    rules = walk.parse_gitignore("*.pyc\n/top.txt\ndocs/**/*.md\nbuild/\n!important.pyc\n\\#hash\n")
    stack = walk.IgnoreStack((("/r/", tuple(rules)),))
    assert stack.ignored(Path("/r/a/b.pyc"), False)
    assert not stack.ignored(Path("/r/a/important.pyc"), False)
    assert stack.ignored(Path("/r/top.txt"), False) and not stack.ignored(Path("/r/a/top.txt"), False)
    assert stack.ignored(Path("/r/docs/a/b/c.md"), False) and stack.ignored(Path("/r/docs/c.md"), False)
    assert stack.ignored(Path("/r/x/build"), True) and not stack.ignored(Path("/r/x/build"), False)
    assert stack.ignored(Path("/r/#hash"), False)


# --- options -----------------------------------------------------------------------------------------


def test_report_file_exit_code_and_quiet(capsys, tmp_path):
    (tmp_path / "a.txt").write_text(make_ghp("opts"))
    out_file = tmp_path / "report.sarif"
    code, out, err = scan(capsys, "-q", "--exit-code", "7", "--format", "sarif", "-o", str(out_file),
                          str(tmp_path / "a.txt"))
    assert code == 7 and out == "" and err == ""
    assert json.loads(out_file.read_text())["runs"][0]["results"][0]["ruleId"] == "github-classic-pat"


def test_scan_modes_are_exclusive(capsys, tmp_path):
    assert scan(capsys, "--since", "HEAD", str(tmp_path))[0] == 2
    assert scan(capsys)[0] == 2


# --- suppression -------------------------------------------------------------------------------------


def test_baseline_round_trip_without_secrets(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old, new = make_ghp("old"), make_ghp("new")
    Path("a.txt").write_text(f"{old}\n")
    code, _, err = scan(capsys, "--write-baseline", "base.json", "a.txt")
    assert code == 0 and "baseline written" in err
    text = Path("base.json").read_text()
    assert old not in text and old[-8:] not in text
    assert json.loads(text)["findings"] == [{"fingerprint": fingerprint(old), "path": "a.txt",
                                             "entry": "github-classic-pat"}]
    code, report, _ = scan_json(capsys, "--baseline", "base.json", "a.txt")
    assert code == 0 and report["findings"] == []
    assert report["suppressed"][0]["suppressed"] == "baseline"
    Path("a.txt").write_text(f"{old}\n{new}\n")
    code, report, _ = scan_json(capsys, "--baseline", "base.json", "a.txt")
    assert code == 1 and [f["line"] for f in report["findings"]] == [2]
    Path("bad.json").write_text("{not json")
    code, _, err = scan(capsys, "--baseline", "bad.json", "a.txt")
    assert code == 2 and "bad.json:1: not JSON" in err


def test_profile_allowlist_in_scan_and_proxy_policy(capsys, tmp_path):
    from dlproxy.engine.detector import Detector
    from dlproxy.engine.profile import builtin_profile_path, load_profiles
    from dlproxy.extract import Limits
    from dlproxy.inspect.policy import Active, FlowContext, decide

    published, other = make_ghp("published"), make_ghp("other")
    overlay = tmp_path / "allow.yaml"
    overlay.write_text(f"profile: site\nallow:\n  - fingerprint: \"{fingerprint(published)}\"\n"
                       f"    reason: published test token\n")
    (tmp_path / "a.txt").write_text(f"{published}\n")
    profiles = [str(builtin_profile_path()), str(overlay)]
    args = [a for p in profiles for a in ("--profile", p)]
    code, report, _ = scan_json(capsys, *args, str(tmp_path / "a.txt"))
    assert code == 0 and report["suppressed"][0]["suppressed"] == "profile: published test token"

    profile = load_profiles(profiles)
    active = Active(profile, Detector(profile), Limits())
    ctx = FlowContext("request", "example.com")
    assert decide(active.detector.scan(published.encode()), [], ctx, active).enforcement == "pass"
    mixed = active.detector.scan(f"{published} {other}".encode())
    decision = decide(mixed, [], ctx, active)
    assert decision.enforcement == "block" and [f.fingerprint for f in decision.acted] == [fingerprint(other)]

    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: site\nallow:\n  - fingerprint: sha256:abc\n    reason: x\n  - fingerprint: "
                   f"\"{fingerprint(other)}\"\n")
    code, _, err = scan(capsys, "--profile", str(bad), str(tmp_path / "a.txt"))
    assert code == 2
    assert f"{bad}:3: allow[0].fingerprint: must be" in err and f"{bad}:5: allow[1].reason: required" in err


# --- diffs and git -----------------------------------------------------------------------------------


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str, date: str = "2026-01-02T03:04:05+00:00") -> str:
    env = dict(os.environ, **GIT_ENV, GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env,
                          timeout=60).stdout.decode().strip()


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """main: c1 adds a secret on line 3, c2 deletes it, c3 adds a clean file; branch `feature` adds another."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    added, branch_only = make_ghp("history"), make_ghp("branch")
    (r / "config.env").write_text("A=1\nB=2\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "c0", date="2026-01-01T00:00:00+00:00")
    (r / "config.env").write_text(f"A=1\nB=2\nTOKEN={added}\n")
    git(r, "commit", "-q", "-am", "c1 leak", date="2026-01-02T00:00:00+00:00")
    c1 = git(r, "rev-parse", "HEAD")
    (r / "config.env").write_text("A=1\nB=2\n")
    git(r, "commit", "-q", "-am", "c2 remove", date="2026-01-03T00:00:00+00:00")
    c2 = git(r, "rev-parse", "HEAD")
    (r / "readme.md").write_text("clean\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "c3", date="2026-01-04T00:00:00+00:00")
    git(r, "checkout", "-q", "-b", "feature")
    (r / "feature.txt").write_text(f"x\n{branch_only}\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "feature", date="2026-01-05T00:00:00+00:00")
    git(r, "checkout", "-q", "main")
    return r, {"added": added, "branch": branch_only, "c1": c1, "c2": c2}


def test_history_finds_a_secret_added_then_removed(capsys, repo):
    r, info = repo
    code, report, _ = scan_json(capsys, "git", str(r))
    assert code == 1
    (f,) = report["findings"]
    assert (f["path"], f["line"], f["column"], f["commit"]) == ("config.env", 3, 7, info["c1"])
    assert f["author_date"].startswith("2026-01-02T00:00:00")
    code, report, _ = scan_json(capsys, "git", str(r), "--all")
    assert sorted((f["path"], f["line"]) for f in report["findings"]) == [("config.env", 3), ("feature.txt", 2)]
    assert scan_json(capsys, "git", str(r), "--since", info["c1"])[0] == 0
    code, report, _ = scan_json(capsys, "git", str(r), "--range", f"{info['c1']}~1..{info['c2']}")
    assert code == 1 and report["findings"][0]["commit"] == info["c1"]
    code, out, err = scan(capsys, "git", str(r), "--range", "nope..HEAD")
    assert code == 2 and "nope" in err
    assert scan(capsys, "git", str(r.parent))[0] == 2  # not a repository
    empty = r.parent / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    assert scan(capsys, "git", str(empty))[0] == 0  # no commits yet: an empty history
    assert info["added"] not in json.dumps(report)


def test_history_sarif_has_commit_aware_locations(capsys, repo, monkeypatch):
    r, info = repo
    monkeypatch.chdir(r)
    code, out, _ = scan(capsys, "git", "--format", "sarif")
    (res,) = json.loads(out)["runs"][0]["results"]
    assert res["properties"]["commitSha"] == info["c1"]
    loc = res["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == "config.env"
    assert loc["physicalLocation"]["region"]["startLine"] == 3
    assert loc["logicalLocations"][0] == {"name": info["c1"], "kind": "commit",
                                          "fullyQualifiedName": f"{info['c1']}:config.env"}
    assert info["c1"][:12] in res["message"]["text"]


def test_staged_and_diff_scan_added_lines_only(capsys, repo, monkeypatch):
    r, info = repo
    monkeypatch.chdir(r)
    assert scan(capsys, "--staged")[0] == 0
    fresh = make_ghp("staged")
    (r / "config.env").write_text(f"A=1\nNEW={fresh}\nB=2\n")
    git(r, "add", "config.env")
    code, report, _ = scan_json(capsys, "--staged")
    assert code == 1
    assert [(f["path"], f["line"], f["column"]) for f in report["findings"]] == [("config.env", 2, 5)]
    # a commit that deletes a secret passes
    git(r, "commit", "-q", "-m", "add")
    (r / "config.env").write_text("A=1\nB=2\n")
    git(r, "add", "config.env")
    assert scan_json(capsys, "--staged")[0] == 0
    git(r, "commit", "-q", "-m", "remove")
    code, report, _ = scan_json(capsys, "--diff", "HEAD~2")
    assert code == 0  # the secret came and went


def test_unified_diff_on_stdin_reports_added_lines_with_file_lines(capsys, repo, monkeypatch):
    r, info = repo
    patch = subprocess.run(["git", "-C", str(r), "diff", info["c1"], info["c2"]], capture_output=True,
                           check=True).stdout
    assert info["added"].encode() in patch
    code, report, _ = scan_json(capsys, "-", stdin=patch, monkeypatch=monkeypatch)
    assert code == 0  # the diff removes the secret: it passes
    reverse = subprocess.run(["git", "-C", str(r), "diff", "-U5", info["c2"], info["c1"]], capture_output=True,
                             check=True).stdout
    code, report, _ = scan_json(capsys, "-", stdin=reverse, monkeypatch=monkeypatch)
    assert code == 1 and [(f["path"], f["line"]) for f in report["findings"]] == [("config.env", 3)]
    code, report, _ = scan_json(capsys, "--stdin-diff", "no", "-", stdin=patch, monkeypatch=monkeypatch)
    assert code == 1  # scanned as plain text: the removed line counts


def test_diff_parser_counts_hunks_across_files():
    patch = (b"--- a/one\n+++ b/one\n@@ -1,2 +1,3 @@\n ctx\n-old\n+new1\n+new2\n"
             b"--- a/two\n+++ b/two\n@@ -10,0 +11 @@\n+x\n\\ No newline at end of file\n")
    (batch,) = diff.added_lines(patch.splitlines(keepends=True))
    assert batch.lines == [b"new1", b"new2", b"x"]
    assert [w[:2] for w in batch.where] == [("one", 2), ("one", 3), ("two", 11)]
    assert diff.looks_like_diff(patch) and not diff.looks_like_diff(b"--- title ---\ntext\n")
    mail = b"From 0123abc Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n---\n one | 1 +\n\ndiff --git a/one b/one\n"
    assert diff.looks_like_diff(mail + patch) and not diff.looks_like_diff(b"From me\nhello\n")


def test_pre_commit_hook_definition():
    import yaml

    hooks = yaml.safe_load((Path(__file__).parents[1] / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "dlproxy-staged"]
    assert hook["entry"].split()[:3] == ["dlproxy", "scan", "--staged"] and hook["pass_filenames"] is False


def test_progress_line_only_on_a_terminal(tmp_path):
    import pty

    for i in range(40):
        (tmp_path / f"f{i}.txt").write_text("clean\n")
    env = dict(os.environ, DLPROXY_CACHE_DIR=str(tmp_path / "cache"))
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "dlproxy", "scan", str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=slave, env=env, timeout=120)
        os.close(slave)
        tty_err = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            tty_err += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"\r32 input(s)" in tty_err and b"0 finding(s)" in tty_err
    piped = subprocess.run([sys.executable, "-m", "dlproxy", "scan", str(tmp_path)], capture_output=True, env=env,
                           timeout=120)
    assert b"of 40 input(s)" in piped.stderr and b"\r" not in piped.stderr


def test_history_scans_what_a_merge_itself_adds(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    r = tmp_path / "m"
    r.mkdir()
    git(r, "init", "-q", "-b", "main")
    (r / "app.cfg").write_text("a=1\nb=2\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "base")
    git(r, "checkout", "-q", "-b", "side")
    (r / "app.cfg").write_text("a=side\nb=2\n")
    git(r, "commit", "-q", "-am", "side")
    git(r, "checkout", "-q", "main")
    (r / "app.cfg").write_text("a=main\nb=2\n")
    git(r, "commit", "-q", "-am", "main")
    subprocess.run(["git", "-C", str(r), "merge", "-q", "side"], capture_output=True, env=dict(os.environ, **GIT_ENV))
    token = make_ghp("merge")
    (r / "app.cfg").write_text(f"a=merged\ntoken={token}\nb=2\n")  # the resolution adds a secret
    git(r, "commit", "-q", "-am", "merge side")
    merge = git(r, "rev-parse", "HEAD")
    code, report, _ = scan_json(capsys, "git", str(r))
    assert code == 1
    assert [(f["path"], f["line"], f["commit"]) for f in report["findings"]] == [("app.cfg", 2, merge)]


def test_cache_survives_what_it_cannot_store(tmp_path, monkeypatch):
    from dlproxy.scan import cache

    monkeypatch.setenv("DLPROXY_CACHE_DIR", str(tmp_path / "c"))
    (tmp_path / "p.yaml").write_text("profile: p\n")
    value = cache.cached([tmp_path / "p.yaml"], "x", lambda: (lambda: "not picklable"))
    assert value() == "not picklable"
    assert list((tmp_path / "c").iterdir()) == []  # nothing half-written
    assert cache.cached([tmp_path / "missing.yaml"], "x", lambda: 42) == 42  # unreadable profile: built as is
    lazy = cache.LazyPattern(rb"ghp_[a-z]+", 0)
    assert lazy.search(b"x ghp_abc").group() == b"ghp_abc" and lazy.pattern == rb"ghp_[a-z]+"

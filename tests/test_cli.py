"""`dlproxy scan` and `dlproxy profile check` as a user runs them: a real subprocess, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dlproxy.engine.profile import builtin_profile_path
from tokens import PUBLIC_GHP, make_ghp

DLPROXY = [sys.executable, "-m", "dlproxy"]


def run(*args, stdin: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*DLPROXY, *args], input=stdin, capture_output=True, timeout=120, cwd=cwd)


def corrupt(token: str) -> str:
    last = token[-1]
    return token[:-1] + ("A" if last != "A" else "B")


@pytest.fixture
def tree(tmp_path):
    good = make_ghp("cli")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.env").write_text(f"# settings\nGITHUB_TOKEN={good}\nOTHER=1\n")
    (tmp_path / "src" / "clean.py").write_text("print('nothing here: ghp_ is just a prefix')\n")
    (tmp_path / "src" / "twin.json").write_text(json.dumps({"token": corrupt(good)}))
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01" + good.encode() + b"\x00")
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as zf:
        zf.writestr("inner/.npmrc", f"//registry.npmjs.org/:_authToken={PUBLIC_GHP}\n")
    return tmp_path, good


def test_scan_json_finds_tokens_not_twins(tree):
    root, good = tree
    result = run("scan", "--format", "json", str(root))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["scanned_bytes"] > 0
    by_path = {(Path(f["path"].split("!")[0]).name, f["line"], f["column"]): f for f in report["findings"]}
    env = by_path[("config.env", 2, 14)]
    assert env["entry"] == "github-classic-pat"
    assert env["validated"] == "checksum"
    assert set(env) == {"entry", "name", "path", "line", "column", "masked", "fingerprint", "validated"}
    assert any(f["path"].startswith(str(root / "bundle.zip")) and ".npmrc" in f["path"] for f in report["findings"])
    assert not any("twin.json" in f["path"] for f in report["findings"])
    assert not any("blob.bin" in f["path"] for f in report["findings"])  # binary, not an archive: skipped
    assert good not in result.stdout.decode() and good[-8:] not in result.stdout.decode()
    assert PUBLIC_GHP not in result.stdout.decode()


def test_scan_exit_codes_and_stdin(tree):
    root, good = tree
    assert run("scan", str(root / "src" / "clean.py")).returncode == 0
    result = run("scan", "-", stdin=f"token={good}\n".encode())
    assert result.returncode == 1
    assert "stdin" in result.stdout.decode() or "-:1:7" in result.stdout.decode()
    assert good not in result.stdout.decode() + result.stderr.decode()
    assert run("scan", "--format", "yaml", str(root)).returncode == 2
    assert run("scan").returncode == 2


def test_scan_text_format_names_location(tree):
    root, good = tree
    out = run("scan", str(root / "src")).stdout.decode()
    assert f"{root / 'src' / 'config.env'}:2:14:" in out
    assert "ghp_…" + good[-4:] in out


def test_scan_sarif_is_valid_2_1_0(tree):
    root, _ = tree
    result = run("scan", "--format", "sarif", str(root / "src"), cwd=root)
    assert result.returncode == 1
    sarif = json.loads(result.stdout)
    assert sarif["version"] == "2.1.0"
    (run_,) = sarif["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert len(rules) >= 80 and len({r["id"] for r in rules}) == len(rules)
    (res,) = run_["results"]
    assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    region = res["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (2, 14)
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "src/config.env"
    assert float(rules[res["ruleIndex"]]["properties"]["security-severity"]) > 0


def test_scan_with_broken_profile_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: x\nentries:\n  - id: a\n    name: A\n    prefixes: [abc]\n    pattern: 'a+'\n")
    result = run("scan", "--profile", str(bad), str(bad))
    assert result.returncode == 2
    assert f"{bad}:6: entries[0].pattern:" in result.stderr.decode()


def test_profile_check(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: x\nentries:\n  - id: a\n    name: A\n    prefixes: [ab]\n    pattern: '[a-z]{3,}'\n")
    result = run("profile", "check", str(bad))
    assert result.returncode == 2
    lines = result.stdout.decode().splitlines()
    assert f"{bad}:5: entries[0].prefixes[0]: prefix 'ab' is shorter than 3 characters" in lines
    assert any(line.startswith(f"{bad}:6: entries[0].pattern: unbounded repeat") for line in lines)
    builtin = builtin_profile_path()
    assert run("profile", "check", str(builtin)).returncode == 0


def test_run_refuses_a_broken_profile(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: x\nentries:\n  - id: a\n    name: A\n    prefixes: [abcd]\n    pattern: '[a-z]+'\n")
    env = dict(os.environ, HOME=str(tmp_path))
    result = subprocess.run([*DLPROXY, "run", "--profile", str(bad), "--listen-port", "0", "--metrics-port", "0",
                             "--set", f"confdir={tmp_path / 'conf'}"], capture_output=True, timeout=60, env=env)
    assert result.returncode != 0
    assert f"{bad}:6: entries[0].pattern" in (result.stdout + result.stderr).decode()


def _twin(token: str) -> str:
    """The same token with one character of its checksummed part changed (a wrong-checksum twin)."""
    lines = token.splitlines()
    if len(lines) > 2:  # armored key files: change a character in the middle of the body
        mid = len(lines) // 2
        line = lines[mid]
        i = len(line) // 2
        lines[mid] = line[:i] + ("B" if line[i] != "B" else "C") + line[i + 1:]
        return "\n".join(lines)
    i = len(token.rstrip("=")) - 2  # padding is not key material: a changed `=` leaves the key itself intact
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


def test_scan_finds_every_planted_tier_a_token_and_none_of_their_twins(tmp_path):
    """One generated token per Tier-A entry, each beside its broken twin: every token found, no twin."""
    import random

    from dlproxy.engine import validators
    from dlproxy.engine.profile import load_profiles
    from generators import GENERATORS

    checksummed = {e.id for e in load_profiles([]).entries
                   if e.checksum and validators.get(e.checksum).kind == "checksum"}
    rng = random.Random(2026)
    planted = {}
    for entry_id, generate in sorted(GENERATORS.items()):
        if entry_id not in checksummed:  # structure-only companions (encrypted keys) have no checksum to break
            continue
        token = generate(rng)
        planted[entry_id] = token
        (tmp_path / f"{entry_id}.txt").write_text(f"good:\n{token}\n\n")
        (tmp_path / f"{entry_id}.twin.txt").write_text(f"twin:\n{_twin(token)}\n\n")
    result = run("scan", "--format", "json", str(tmp_path))
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["findings"]
    found = {(Path(f["path"]).name, f["entry"]) for f in findings}
    for entry_id in planted:
        assert (f"{entry_id}.txt", entry_id) in found, entry_id
    # An OpenSSH key's only check is its two equal check-ints, which a change in the key bytes does not touch
    # (test_checksums.py mutates the check-ints themselves); every other twin breaks a real checksum.
    twins = sorted(f["path"] for f in findings if ".twin." in f["path"] and "openssh-private-key" not in f["path"])
    assert twins == [], twins
    out = result.stdout.decode()
    assert not any(token in out for token in planted.values())

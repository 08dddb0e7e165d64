"""`--profile` files are overlays on the built-in profile; `profile check` validates them in that merged context
and runs every entry's own examples. Real files, the real loader and detector, the CLI as a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import ProfileError, builtin_profile_path, load_profiles, profile_sources
from dlproxy.engine.selfcheck import check_examples
from tokens import make_ghp

ROOT = Path(__file__).resolve().parents[1]
DLPROXY = [sys.executable, "-m", "dlproxy"]
BUILTIN_IDS = {e.id for e in load_profiles([]).enabled_entries}


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*DLPROXY, *args], capture_output=True, text=True, timeout=120)


def readme_profile() -> str:
    """The custom-profile example of README.md, verbatim (the first yaml block under "Writing a profile")."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Writing a profile"):]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def readme_yaml(tmp_path) -> Path:
    path = tmp_path / "my-company.yaml"
    path.write_text(readme_profile())
    return path


def write(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- merge semantics ------------------------------------------------------------------------------------------


def test_an_add_only_overlay_keeps_every_builtin_entry(tmp_path):
    overlay = write(tmp_path, "entries:\n  - id: acme-key\n    name: ACME\n    prefixes: [acme_k_]\n"
                              "    pattern: '[a-z0-9]{20}'\n")
    profile = load_profiles(profile_sources([overlay]))
    ids = {e.id for e in profile.enabled_entries}
    assert ids == BUILTIN_IDS | {"acme-key"}
    assert profile.id == "credentials-and-secrets"  # the overlay names no id of its own
    det = Detector(profile)
    found = {f.entry_id for f in det.scan(f"a={make_ghp('ov')} b=acme_k_{'x1' * 10}".encode())}
    assert found == {"github-classic-pat", "acme-key"}


def test_overlay_overrides_fields_disables_and_changes_settings(tmp_path):
    overlay = write(tmp_path, """\
profile: site
settings:
  on_oversize: scan_prefix
entries:
  - id: jwt
    action: log
  - id: github-classic-pat
    enabled: false
""")
    profile = load_profiles(profile_sources([overlay]))
    by_id = {e.id: e for e in profile.entries}
    assert by_id["jwt"].action == "log" and by_id["jwt"].pattern  # only the action changed
    assert not by_id["github-classic-pat"].enabled
    assert profile.settings.on_oversize == "scan_prefix" and profile.settings.on_error == "block"
    assert profile.id == "credentials-and-secrets+site"
    assert Detector(profile).scan(make_ghp("off").encode()) == []


def test_builtin_by_name_and_no_builtin(tmp_path):
    full = write(tmp_path, "profile: only\nentries:\n  - id: only-key\n    name: Only\n    prefixes: [only_]\n"
                           "    pattern: '[0-9]{10}'\n", "full.yaml")
    alone = load_profiles(profile_sources([full], builtin=False))
    assert [e.id for e in alone.entries] == ["only-key"]
    assert profile_sources(["builtin"]) == [builtin_profile_path()]
    # the built-in placed after the file: its fields win over the file's
    assert profile_sources([full, "builtin"], builtin=False) == [full, builtin_profile_path()]
    assert {e.id for e in load_profiles(profile_sources([full, "builtin"], builtin=False)).entries} == \
        BUILTIN_IDS | {"only-key"}
    with pytest.raises(ProfileError, match="no profile"):
        profile_sources([], builtin=False)


def test_an_override_of_an_unknown_id_says_so_and_suggests_the_close_one(tmp_path):
    overlay = write(tmp_path, "entries:\n  - id: jwtt\n    action: block\n")
    with pytest.raises(ProfileError) as e:
        load_profiles(profile_sources([overlay]))
    assert f"{overlay}:2: entries[0].name: required key missing (a new entry: no entry 'jwtt' to override; " \
           f"did you mean 'jwt'?)" in e.value.problems


def test_errors_are_sorted_by_line_and_name_the_overlay(tmp_path):
    overlay = write(tmp_path, """\
entries:
  - id: jwt
    severity: extreme
  - id: new-key
    name: New
    prefixes: [nk]
    pattern: '[a-z]{3,}'
settings:
  on_error: maybe
""")
    with pytest.raises(ProfileError) as e:
        load_profiles(profile_sources([overlay]))
    lines = [int(p.split(":")[1]) for p in e.value.problems]
    assert lines == sorted(lines) and lines[0] == 3 and lines[-1] == 9, e.value.problems
    assert all(p.startswith(f"{overlay}:") for p in e.value.problems)


def test_check_examples_names_the_failing_example(tmp_path):
    overlay = write(tmp_path, """\
entries:
  - id: acme-key
    name: ACME
    prefixes: [acme_k_]
    pattern: '[a-z0-9]{20}'
    examples:
      - acme_k_aaaaaaaaaaaaaaaaaaaa
      - acme_k_short
    counterexamples:
      - acme_k_bbbbbbbbbbbbbbbbbbbb
""")
    problems = check_examples(Detector(load_profiles(profile_sources([overlay]))))
    assert problems == [f"{overlay}:8: acme-key.examples[1]: is not found as this entry",
                        f"{overlay}:10: acme-key.counterexamples[0]: is found as this entry "
                        "(a counterexample must not be)"]


def test_an_overlay_that_breaks_a_builtin_entry_fails_on_its_examples(tmp_path):
    overlay = write(tmp_path, "entries:\n  - id: github-classic-pat\n    pattern: '[A-Za-z0-9]{37}'\n")
    problems = check_examples(Detector(load_profiles(profile_sources([overlay]))))
    builtin = str(builtin_profile_path())
    assert problems and all(p.startswith(builtin + ":") and "github-classic-pat.examples[" in p for p in problems)


# --- the CLI ----------------------------------------------------------------------------------------------------


def test_profile_check_accepts_the_readme_example(readme_yaml):
    r = run("profile", "check", str(readme_yaml))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok" in r.stderr


def test_scan_with_the_readme_example_finds_builtin_and_custom_entries(tmp_path, readme_yaml):
    example = re.search(r'examples: \["([^"]+)"\]', readme_profile()).group(1)
    target = write(tmp_path, f"NPM={make_ghp('readme')}\nDEPLOY={example}\n", "repo.env")
    r = run("scan", "--format", "json", "--profile", str(readme_yaml), str(target))
    assert r.returncode == 1, r.stderr
    assert {f["entry"] for f in __import__("json").loads(r.stdout)["findings"]} == {"github-classic-pat",
                                                                                     "acme-deploy-key"}
    alone = run("scan", "--format", "json", "--no-builtin", "--profile", str(readme_yaml), str(target))
    assert alone.returncode == 2 and f"{readme_yaml}:5: entries[0].name: required key missing" in alone.stderr


def test_profile_check_reports_examples_and_missing_files(tmp_path):
    overlay = write(tmp_path, "entries:\n  - id: github-classic-pat\n    examples: ['ghp_notavalidtoken']\n")
    r = run("profile", "check", str(overlay))
    assert r.returncode == 2
    assert r.stdout.splitlines() == [f"{overlay}:3: github-classic-pat.examples[0]: is not found as this entry"]
    missing = tmp_path / "nope.yaml"
    r = run("profile", "check", str(missing))
    assert r.returncode == 2 and r.stdout.splitlines() == [f"{missing}: no such file"]


def test_profile_check_no_builtin_needs_a_complete_profile(tmp_path):
    overlay = write(tmp_path, "entries:\n  - id: jwt\n    action: block\n")
    assert run("profile", "check", str(overlay)).returncode == 0
    r = run("profile", "check", "--no-builtin", str(overlay))
    assert r.returncode == 2 and f"{overlay}:1: profile: required key missing" in r.stdout

"""The profile loader reports every problem as FILE:LINE: field: message, and merges files by entry id."""

from __future__ import annotations

import textwrap

import pytest

from dlproxy.engine.profile import ProfileError, builtin_profile_path, check_pattern, load_profiles

GOOD = """\
profile: test
name: Test
settings:
  default_action: block
entries:
  - id: thing-token
    name: Thing Token
    prefixes: ["thg_"]
    pattern: "[a-z0-9]{10}"
"""


def write(tmp_path, text: str, name: str = "p.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(*paths) -> list[str]:
    with pytest.raises(ProfileError) as info:
        load_profiles(list(paths))
    return info.value.problems


def test_good_profile_loads(tmp_path):
    profile = load_profiles([write(tmp_path, GOOD)])
    assert profile.id == "test"
    assert [e.id for e in profile.entries] == ["thing-token"]
    assert profile.entries[0].prefixes == ("thg_",)


@pytest.mark.parametrize(
    ("replace", "by", "line", "field", "words"),
    [
        ('pattern: "[a-z0-9]{10}"', 'pattern: "[a-z0-9]+"', 9, "entries[0].pattern", "unbounded repeat"),
        ('pattern: "[a-z0-9]{10}"', 'pattern: "[a-z0-9]*x"', 9, "entries[0].pattern", "unbounded repeat"),
        ('pattern: "[a-z0-9]{10}"', 'pattern: "[a-z0-9]{10,}"', 9, "entries[0].pattern", "unbounded repeat"),
        ('pattern: "[a-z0-9]{10}"', 'pattern: "(?:ab|c+){3}"', 9, "entries[0].pattern", "unbounded repeat"),
        ('pattern: "[a-z0-9]{10}"', 'pattern: "[a-z0-9{10}"', 9, "entries[0].pattern", "does not compile"),
        ('prefixes: ["thg_"]', 'prefixes: ["tg"]', 8, "entries[0].prefixes[0]", "shorter than 3"),
        ("    name: Thing Token\n", "    name: Thing Token\n    colour: red\n", 8, "entries[0].colour", "unknown key"),
        ("    name: Thing Token\n", "    name: Thing Token\n    checksum: no-such-check\n", 8,
         "entries[0].checksum", "unknown validator"),
        ("    name: Thing Token\n", "    name: Thing Token\n    severity: huge\n", 8, "entries[0].severity",
         "must be one of"),
        ("    name: Thing Token\n", "    name: Thing Token\n    action: explode\n", 8, "entries[0].action",
         "must be one of"),
        ("    name: Thing Token\n", "    name: Thing Token\n    action: {upload: block}\n", 8,
         "entries[0].action.upload", "unknown direction"),
        ("  default_action: block", "  default_action: shred", 4, "settings.default_action", "must be one of"),
        ("  default_action: block", "  min_matches: 0", 4, "settings.min_matches", "must be >= 1"),
        ("  default_action: block", "  max_inspect_bytes: lots", 4, "settings.max_inspect_bytes", "integer"),
        ("  default_action: block", "  verbosity: 3", 4, "settings.verbosity", "unknown setting"),
        ("    name: Thing Token\n", "    name: Thing Token\n    enabled: sometimes\n", 8, "entries[0].enabled",
         "true or false"),
        ("  - id: thing-token", "  - id: Thing_Token", 6, "entries[0].id", "kebab-case"),
    ],
)
def test_each_problem_names_file_line_and_field(tmp_path, replace, by, line, field, words):
    assert replace in GOOD
    path = write(tmp_path, GOOD.replace(replace, by))
    problems = problems_of(path)
    expected_start = f"{path}:{line}: {field}:"
    assert any(p.startswith(expected_start) and words in p for p in problems), problems


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    text = GOOD + "  - id: second\n    name: Second\n    prefixes: [\"x\"]\n    pattern: \"a+\"\n" \
        "  - id: thing-token\n    name: Duplicate\n    prefixes: [\"dup_\"]\n    pattern: \"[a-z]{4}\"\n"
    path = write(tmp_path, text)
    problems = problems_of(path)
    assert any(p.startswith(f"{path}:12: entries[1].prefixes[0]:") for p in problems), problems
    assert any(p.startswith(f"{path}:13: entries[1].pattern:") for p in problems), problems
    assert any(p.startswith(f"{path}:14: entries[2].id:") and "duplicate" in p for p in problems), problems


def test_missing_required_fields(tmp_path):
    path = write(tmp_path, "profile: t\nentries:\n  - id: a-b\n    name: AB\n")
    problems = problems_of(path)
    assert any(p.startswith(f"{path}:3: entries[0].prefixes: required") for p in problems), problems
    assert any(p.startswith(f"{path}:3: entries[0].pattern: required") for p in problems), problems


def test_invalid_yaml_and_missing_file(tmp_path):
    path = write(tmp_path, "profile: t\nentries: [\n  - id: x\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:") and "invalid YAML" in problem
    missing = tmp_path / "nope.yaml"
    assert problems_of(missing) == [f"{missing}: no such file"]


def test_later_files_override_fields_and_add_entries(tmp_path):
    base = write(tmp_path, GOOD, "base.yaml")
    custom = write(tmp_path, """\
        profile: custom
        settings:
          min_matches: 2
        entries:
          - id: thing-token
            action: log
            enabled: false
          - id: other-token
            name: Other
            prefixes: ["oth_"]
            pattern: "[0-9]{8}"
    """, "custom.yaml")
    profile = load_profiles([base, custom])
    assert profile.settings.min_matches == 2 and profile.settings.default_action == "block"
    thing = next(e for e in profile.entries if e.id == "thing-token")
    assert thing.action == "log" and not thing.enabled and thing.pattern == "[a-z0-9]{10}"
    assert [e.id for e in profile.enabled_entries] == ["other-token"]
    assert profile.id == "test+custom"


def test_per_direction_action(tmp_path):
    path = write(tmp_path, GOOD.replace("    name: Thing Token\n",
                                        "    name: Thing Token\n    action: {request: block, response: log}\n"))
    entry = load_profiles([path]).entries[0]
    assert entry.action_for("request", "redact") == "block"
    assert entry.action_for("response", "redact") == "log"
    assert entry.action_for("websocket", "redact") == "redact"


def test_check_pattern_accepts_bounded_patterns():
    assert check_pattern(r"[A-Za-z0-9]{36}") is None
    assert check_pattern(r"(?:-[a-z]{2,8}){1,4}\.[0-9a-f]{8}") is None
    assert "unbounded" in check_pattern(r"(?:[a-z]{2}(?:x|y+)){1,3}")


def test_builtin_profile_is_valid_and_shipped_in_the_package():
    path = builtin_profile_path()
    assert path.is_file()
    profile = load_profiles([path])
    assert profile.id == "credentials-and-secrets"
    assert len(profile.enabled_entries) >= 80

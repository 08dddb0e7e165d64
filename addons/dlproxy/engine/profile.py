"""Profiles: YAML → validated, immutable Profile/Entry objects, with `FILE:LINE: field: message` errors.

Everything is checked at load time so the hot path never meets a bad pattern: unknown keys, duplicate ids,
short prefixes, unknown validators or parameters, patterns that do not compile, have unbounded repeats, or cannot
be matched in guaranteed linear time (linear.py). Every problem is reported, not just the first, sorted by file
and line. Several files merge: a later file adds entries, overrides fields of an entry with the same `id`
(`enabled: false` turns one off), and overrides settings key by key. `profile_sources` turns a `--profile` list
into files: overlays on the built-in profile unless the built-in is opted out of (`--no-builtin`) or placed
explicitly with the name `builtin`.
"""

from __future__ import annotations

import difflib
import re
import re._constants as sre_c
import re._parser as sre_parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from . import closing, validators
from . import principals as principals_mod
from .linear import check_shape, shape_source
from .nodes import check_keys, direction_actions, key_where, mapping
from .vocab import PROFILE_ACTIONS, Direction

SEVERITIES = ("critical", "high", "medium", "low")
ON_OVERSIZE = ("block", "allow", "scan_prefix")
ON_ERROR = ("block", "allow")
MIN_PREFIX_LEN = 3
MAX_PATTERN_WIDTH = 20000  # characters a single match may span
DEFAULT_BOUNDARY = "A-Za-z0-9"
ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class ProfileError(ValueError):
    """All problems found while loading, each as `FILE:LINE: field: message`."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Settings:
    default_action: str = "block"
    allow_to_issuer: bool = True
    min_matches: int = 1
    max_inspect_bytes: int = 32 * 1024 * 1024
    on_oversize: str = "block"
    on_error: str = "block"
    max_expansion_ratio: int = 100
    max_archive_depth: int = 3
    max_archive_members: int = 10000
    max_base64_depth: int = 2
    max_findings: int = 100  # findings per message located exactly and reported one by one; the rest are counted
    evidence: closing.Evidence | None = None  # settings.evidence (closing.py)


POSITION_KINDS = ("header", "query", "form", "json", "cookie", "path")
DEFAULT_POSITIONS = ("header:authorization",)
SUFFIX_POSITION_KINDS = ("header", "query")  # what a `.suffix` issuer may name (see _check_positions)


class Issuer(NamedTuple):
    """A host (or `.suffix`) that issues an entry's credential, and where a request to it carries the credential
    in legitimate use: `header:<name>`, `query:<param>`, `form:<field>`, `json:<top-level key>`,
    `cookie:<name>`, `path`. The plain string form of `issuers` means the Authorization header only."""

    host: str
    positions: tuple[str, ...] = DEFAULT_POSITIONS


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    prefixes: tuple[str, ...]
    pattern: str
    vendor: str = ""
    severity: str = "high"
    before: str | None = None
    checksum: str | None = None
    checksum_params: tuple[tuple[str, Any], ...] = ()
    issuers: tuple[Issuer | str, ...] = ()  # a plain str is Issuer(str): the Authorization header only
    action: str | None = None  # None: settings.default_action
    actions: tuple[tuple[str, str], ...] = ()  # per-direction overrides
    enabled: bool = True
    case_insensitive: bool = False
    boundary: str = DEFAULT_BOUNDARY
    examples: tuple[str, ...] = ()
    counterexamples: tuple[str, ...] = ()
    notes: str = ""
    revocation_when: str | None = None  # `revocation: {when: …}`; None: the profile's (closing.py)
    source: str = ""  # FILE:LINE of the entry, for messages
    example_sources: tuple[str, ...] = ()  # FILE:LINE of each example
    counterexample_sources: tuple[str, ...] = ()  # ... and of each counterexample

    def action_for(self, direction: str, default: str) -> str:
        for d, a in self.actions:
            if d == direction:
                return a
        return self.action or default


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    settings: Settings
    entries: tuple[Entry, ...]
    sources: tuple[str, ...] = ()
    allow: tuple[tuple[str, str], ...] = ()  # (fingerprint, reason): known secrets nobody acts on
    principals: principals_mod.Principals = principals_mod.Principals()  # who sent it (principals.py)
    policies: tuple[principals_mod.Policy, ...] = ()  # first match wins, before the entry's action
    revocation: closing.RevocationPolicy = closing.NO_REVOCATION

    @property
    def enabled_entries(self) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.enabled)


def builtin_profile_path() -> Path:
    """The built-in profile: a regular file of this package, versioned with the validators it names."""
    return Path(str(resources.files("dlproxy.engine") / "credentials-and-secrets.yaml"))


BUILTIN = "builtin"  # the name that stands for the built-in profile in a --profile list


def profile_sources(paths, builtin: bool = True) -> list[Path]:
    """The files a `--profile` list stands for, in merge order.

    Each file is an overlay on the built-in profile, which comes first unless the list names it (`builtin`, at
    the position given) or `builtin` is False (the files replace it: the first one must then be complete).
    """
    here = builtin_profile_path()
    out = [here if str(p) == BUILTIN else Path(p) for p in paths]
    if builtin and here not in out:
        out.insert(0, here)
    if not out:
        raise ProfileError(["profile: no profile: without the built-in profile, name at least one profile file"])
    return out


def load_profiles(paths) -> Profile:
    """Load and merge profile files in order (none: the built-in); raise ProfileError listing every problem."""
    paths = [Path(p) for p in paths] or [builtin_profile_path()]
    problems: list[str] = []
    merged = _Merged()
    for path in paths:
        doc = _read(path, problems)
        if doc is not None:
            merged.add(path, doc, problems)
    profile = merged.build(problems)
    if problems:
        raise ProfileError(sort_problems(problems, paths))
    return profile


_WHERE = re.compile(r"^(.*?):(\d+):")


def sort_problems(problems: list[str], paths) -> list[str]:
    """By file (in merge order), then line; messages without a FILE:LINE keep their place at the end."""
    order = {str(p): i for i, p in enumerate(paths)}

    def key(item: tuple[int, str]):
        m = _WHERE.match(item[1])
        if m is None:
            return (len(order) + 1, 0, item[0])
        return (order.get(m.group(1), len(order)), int(m.group(2)), item[0])

    return [text for _, text in sorted(enumerate(problems), key=key)]


# --- reading YAML with line numbers ---------------------------------------------------------------


@dataclass
class _Node:
    """A YAML value plus where it came from, so every message can name FILE:LINE."""

    value: Any
    file: str
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def _read(path: Path, problems: list[str]) -> _Node | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{path}: no such file")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}:0: profile: cannot read file ({exc.__class__.__name__})")
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        problems.append(f"{path}:{line}: profile: invalid YAML: {exc.problem}")
        return None
    if node is None:
        problems.append(f"{path}:1: profile: file is empty")
        return None
    return _convert(node, str(path))


_SCALARS = yaml.SafeLoader("")


def _convert(node: yaml.Node, file: str) -> _Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, _Node] = {}
        for key_node, value_node in node.value:
            key = _SCALARS.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            out[str(key)] = _convert(value_node, file)
            out[str(key)].key_line = key_node.start_mark.line + 1  # type: ignore[attr-defined]
        return _Node(out, file, line)
    if isinstance(node, yaml.SequenceNode):
        return _Node([_convert(v, file) for v in node.value], file, line)
    return _Node(_SCALARS.construct_object(node, deep=True), file, line)


# --- merging and validation ------------------------------------------------------------------------

_TOP_KEYS = {"profile", "name", "settings", "entries", "allow", "principals", "policies", "revocation"}
FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ENTRY_KEYS = {"id", "name", "vendor", "severity", "prefixes", "pattern", "before", "checksum", "issuers",
               "action", "enabled", "case_insensitive", "boundary", "examples", "counterexamples", "notes",
               "revocation"}
_SETTINGS_TYPES: dict[str, Any] = {
    "default_action": PROFILE_ACTIONS, "allow_to_issuer": bool, "min_matches": (int, 1),
    "max_inspect_bytes": (int, 1), "on_oversize": ON_OVERSIZE, "on_error": ON_ERROR,
    "max_expansion_ratio": (int, 1), "max_archive_depth": (int, 0), "max_archive_members": (int, 1),
    "max_base64_depth": (int, 0), "max_findings": (int, 1), "evidence": "mapping",
}


class _Merged:
    def __init__(self):
        self.ids: list[_Node] = []
        self.names: list[_Node] = []
        self.settings: dict[str, _Node] = {}
        self.entries: dict[str, dict[str, _Node]] = {}
        self.sources: list[str] = []
        self.sections: dict[str, _Node] = {}  # principals, policies: a later file replaces the whole section
        self.allow: dict[str, str] = {}
        self.revocation: _Node | None = None  # the last file's section wins

    def add(self, path: Path, doc: _Node, problems: list[str]) -> None:
        self.sources.append(str(path))
        if not isinstance(doc.value, dict):
            problems.append(f"{doc.where()}: profile: expected a mapping with profile, name, settings, entries")
            return
        top = doc.value
        check_keys(top, "", _TOP_KEYS, problems, f"one of {', '.join(sorted(_TOP_KEYS))}")
        if "profile" not in top:
            if len(self.sources) == 1:  # an overlay may leave the id to the profile it overlays
                problems.append(f"{doc.where()}: profile: required key missing")
        else:
            node = top["profile"]
            if not isinstance(node.value, str) or not ID_RE.match(node.value):
                problems.append(f"{node.where()}: profile: must be a kebab-case id")
            else:
                self.ids.append(node)
        if "name" in top:
            if not isinstance(top["name"].value, str):
                problems.append(f"{top['name'].where()}: name: must be a string")
            else:
                self.names.append(top["name"])
        if "settings" in top:
            self._add_settings(top["settings"], problems)
        if "allow" in top:
            self._add_allow(top["allow"], problems)
        for key in ("principals", "policies"):
            if key in top:
                self.sections[key] = top[key]
        if "revocation" in top:
            self.revocation = top["revocation"]
        if "entries" not in top and not {"settings", "allow", "principals", "policies", "revocation"} & set(top):
            problems.append(f"{doc.where()}: entries: required key missing")
        if "entries" in top:
            node = top["entries"]
            if not isinstance(node.value, list):
                problems.append(f"{node.where()}: entries: must be a list")
                return
            seen_here: set[str] = set()
            for i, item in enumerate(node.value):
                self._add_entry(i, item, seen_here, problems)

    def _add_allow(self, node: _Node, problems: list[str]) -> None:
        """`allow: [{fingerprint: "sha256:…", reason: …}]`: secrets everyone knows (published test tokens)."""
        if node.value is None:
            return
        if not isinstance(node.value, list):
            problems.append(f"{node.where()}: allow: must be a list of {{fingerprint, reason}}")
            return
        for i, item in enumerate(node.value):
            label = f"allow[{i}]"
            if mapping(item, label, "must be a mapping with fingerprint and reason", ("fingerprint", "reason"),
                       problems) is None:
                continue
            fp, reason = item.value.get("fingerprint"), item.value.get("reason")
            if fp is None or not isinstance(fp.value, str) or not FINGERPRINT_RE.match(fp.value):
                where = fp.where() if fp is not None else item.where()
                problems.append(f"{where}: {label}.fingerprint: must be \"sha256:\" and 64 lower-case hex digits "
                                f"(the fingerprint dlproxy reports)")
                continue
            if reason is None or not isinstance(reason.value, str) or not reason.value.strip():
                problems.append(f"{(reason or item).where()}: {label}.reason: required: say why it is allowed")
                continue
            self.allow[fp.value] = reason.value.strip()

    def _add_settings(self, node: _Node, problems: list[str]) -> None:
        if node.value is None:
            return
        if not isinstance(node.value, dict):
            problems.append(f"{node.where()}: settings: must be a mapping")
            return
        for key, value in node.value.items():
            spec = _SETTINGS_TYPES.get(key)
            if spec is None:
                problems.append(f"{key_where(value)}: settings.{key}: unknown setting "
                                f"(expected one of {', '.join(sorted(_SETTINGS_TYPES))})")
                continue
            msg = _check_type(value.value, spec)
            if msg:
                problems.append(f"{value.where()}: settings.{key}: {msg}")
            else:
                self.settings[key] = value

    def _add_entry(self, i: int, item: _Node, seen_here: set[str], problems: list[str]) -> None:
        label = f"entries[{i}]"
        fields = mapping(item, label, "must be a mapping", _ENTRY_KEYS, problems, expected="")
        if fields is None:
            return
        id_node = fields.get("id")
        if id_node is None:
            problems.append(f"{item.where()}: {label}.id: required key missing")
            return
        if not isinstance(id_node.value, str) or not ID_RE.match(id_node.value):
            problems.append(f"{id_node.where()}: {label}.id: must be a kebab-case id, got {id_node.value!r}")
            return
        entry_id = id_node.value
        if entry_id in seen_here:
            problems.append(f"{id_node.where()}: {label}.id: duplicate id {entry_id!r} in this file")
            return
        seen_here.add(entry_id)
        merged = self.entries.setdefault(entry_id, {})
        for key, node in fields.items():
            if key in _ENTRY_KEYS:
                node.label = label  # type: ignore[attr-defined]
                merged[key] = node
        merged.setdefault("__item__", item)
        merged["__item__"].label = label  # type: ignore[attr-defined]
        merged.setdefault("__files__", _Node(set(), item.file, item.line)).value.add(item.file)

    def build(self, problems: list[str]) -> Profile:
        settings_kwargs = {k: v.value for k, v in self.settings.items() if k != "evidence"}
        if "evidence" in self.settings:
            settings_kwargs["evidence"] = closing.parse_evidence(self.settings["evidence"], problems)
        settings = Settings(**settings_kwargs)
        entries = []
        for entry_id, fields in self.entries.items():
            hint = ""
            if len(self.sources) > 1 and len(fields["__files__"].value) == 1:
                others = [i for i, f in self.entries.items() if fields["__files__"].value != f["__files__"].value]
                close = difflib.get_close_matches(entry_id, others, n=1)
                hint = f" (a new entry: no entry {entry_id!r} to override" + (
                    f"; did you mean {close[0]!r}?)" if close else ")")
            entry = _build_entry(fields, problems, hint)
            if entry is not None:
                entries.append(entry)
        profile_id = "+".join(dict.fromkeys(n.value for n in self.ids)) or "unnamed"
        name = self.names[0].value if self.names else profile_id
        principals = principals_mod.Principals()
        if "principals" in self.sections:
            principals = principals_mod.parse_principals(self.sections["principals"], problems)
        policies: tuple = ()
        if "policies" in self.sections:
            policies = principals_mod.parse_policies(self.sections["policies"], problems, set(self.entries))
        revocation = closing.parse_revocation(self.revocation, set(self.entries), problems)
        return Profile(profile_id, name, settings, tuple(entries), tuple(self.sources), tuple(self.allow.items()),
                       principals, policies, revocation)


def _check_type(value: Any, spec: Any) -> str | None:
    if spec is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if isinstance(spec, tuple) and spec and spec[0] is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        return None if value >= spec[1] else f"must be >= {spec[1]}, got {value}"
    if isinstance(spec, tuple):
        return None if value in spec else f"must be one of {', '.join(spec)}, got {value!r}"
    return None


def _build_entry(fields: dict[str, _Node], problems: list[str], hint: str = "") -> Entry | None:
    item = fields["__item__"]
    n_before = len(problems)

    def where(key: str) -> str:
        node = fields[key]
        return f"{node.where()}: {getattr(node, 'label', '?')}.{key}"

    def get(key: str, default=None):
        return fields[key].value if key in fields else default

    for key in ("name", "prefixes", "pattern"):
        if key not in fields:
            problems.append(f"{item.where()}: {item.label}.{key}: required key missing{hint}")  # type: ignore[attr-defined]
    if len(problems) > n_before:
        return None

    def string(key: str, required: bool = False) -> str | None:
        value = get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or (required and not value):
            problems.append(f"{where(key)}: must be a non-empty string")
            return None
        return value

    def string_list(key: str) -> tuple[str, ...]:
        if key not in fields:
            return ()
        node = fields[key]
        if not isinstance(node.value, list):
            problems.append(f"{where(key)}: must be a list of strings")
            return ()
        out = []
        for j, sub in enumerate(node.value):
            if not isinstance(sub.value, str):
                problems.append(f"{sub.where()}: {node.label}.{key}[{j}]: must be a string")
            else:
                out.append(sub.value)
        return tuple(out)

    def sources(key: str) -> tuple[str, ...]:
        node = fields.get(key)
        if node is None or not isinstance(node.value, list):
            return ()
        return tuple(sub.where() for sub in node.value if isinstance(sub.value, str))

    def boolean(key: str, default: bool) -> bool:
        value = get(key, default)
        if not isinstance(value, bool):
            problems.append(f"{where(key)}: must be true or false, got {value!r}")
            return default
        return value

    name = string("name", required=True) or ""
    vendor = string("vendor") or ""
    notes = string("notes") or ""
    severity = get("severity", "high")
    if severity not in SEVERITIES:
        problems.append(f"{where('severity')}: must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    prefixes = string_list("prefixes")
    if not prefixes and isinstance(get("prefixes"), list):
        problems.append(f"{where('prefixes')}: at least one prefix is required")
    for j, prefix in enumerate(prefixes):
        if len(prefix) < MIN_PREFIX_LEN:
            problems.append(f"{where('prefixes')}[{j}]: prefix {prefix!r} is shorter than {MIN_PREFIX_LEN} characters")
        elif not prefix.isascii():
            problems.append(f"{where('prefixes')}[{j}]: prefix must be ASCII")
    case_insensitive = boolean("case_insensitive", False)
    enabled = boolean("enabled", True)

    pattern = string("pattern", required=True)
    if pattern is not None:
        msg = check_pattern(pattern)
        if msg:
            problems.append(f"{where('pattern')}: {msg}")
    before = string("before")
    if before is not None:
        msg = check_pattern(before)
        if msg:
            problems.append(f"{where('before')}: {msg}")
    if len(problems) == n_before:  # each prefix's whole shape must run in linear time (linear.py)
        for prefix in prefixes:
            msg = check_shape(shape_source(before, prefix, pattern, case_insensitive))
            if msg:
                problems.append(f"{where('pattern')}: cannot be matched in linear time: {msg}")
                break
    boundary = string("boundary") or DEFAULT_BOUNDARY
    if "boundary" in fields:
        try:
            re.compile(f"[{boundary}]")
        except re.error as exc:
            problems.append(f"{where('boundary')}: not a valid character class body: {exc}")

    checksum, params = None, ()
    if "checksum" in fields:
        checksum, params = _check_validator(fields["checksum"], where("checksum"), problems)

    action, actions = None, ()
    if "action" in fields:
        value = get("action")
        if isinstance(value, str):
            if value not in PROFILE_ACTIONS:
                problems.append(f"{where('action')}: must be one of {', '.join(PROFILE_ACTIONS)}, got {value!r}")
            action = value
        elif isinstance(value, dict):
            actions = direction_actions(value, fields["action"].label, Direction, PROFILE_ACTIONS, problems)
        else:
            problems.append(f"{where('action')}: must be an action or a mapping of direction to action")

    issuers = _issuers(fields["issuers"], problems) if "issuers" in fields else ()
    revocation_when = None
    if "revocation" in fields:
        revocation_when = closing.parse_entry_revocation(fields["revocation"], item.label, problems)  # type: ignore[attr-defined]
    if len(problems) > n_before:
        return None
    return Entry(
        id=get("id"), name=name, prefixes=prefixes, pattern=pattern, vendor=vendor, severity=severity,
        before=before, checksum=checksum, checksum_params=params, issuers=issuers,
        action=action, actions=actions, enabled=enabled, case_insensitive=case_insensitive, boundary=boundary,
        examples=string_list("examples"), counterexamples=string_list("counterexamples"), notes=notes,
        revocation_when=revocation_when, source=item.where(), example_sources=sources("examples"),
        counterexample_sources=sources("counterexamples"),
    )


def _issuers(node: _Node, problems: list[str]) -> tuple[Issuer, ...]:
    """`issuers`: host strings (Authorization header only) or `{host: …, in: [position, …]}` mappings."""
    label = f"{getattr(node, 'label', '?')}.issuers"
    if not isinstance(node.value, list):
        problems.append(f"{node.where()}: {label}: must be a list of hosts or {{host, in}} mappings")
        return ()
    out = []
    for j, item in enumerate(node.value):
        where = f"{item.where()}: {label}[{j}]"
        if isinstance(item.value, str):
            host, positions = item.value, DEFAULT_POSITIONS
        elif isinstance(item.value, dict):
            unknown = sorted(set(item.value) - {"host", "in"})
            if unknown:
                problems.append(f"{where}: unknown key {unknown[0]!r} (expected host, in)")
                continue
            host = item.value["host"].value if "host" in item.value else None
            spec = item.value.get("in")
            if spec is None:
                positions = DEFAULT_POSITIONS
            elif not isinstance(spec.value, list) or not spec.value \
                    or not all(isinstance(p.value, str) for p in spec.value):
                problems.append(f"{spec.where()}: {label}[{j}].in: must be a non-empty list of positions")
                continue
            else:
                positions = tuple(p.value for p in spec.value)
        else:
            problems.append(f"{where}: must be a host name, a .suffix, or a mapping {{host, in}}")
            continue
        if not isinstance(host, str) or not host or "/" in host or " " in host or host == ".":
            problems.append(f"{where}: host must be a host name or .suffix, got {host!r}")
            continue
        host = host.lower()
        bad = _check_positions(host, positions)
        if bad:
            problems.append(f"{where}: {bad}")
            continue
        out.append(Issuer(host, tuple(_normal_position(p) for p in positions)))
    return tuple(out)


def _normal_position(position: str) -> str:
    kind, _, name = position.partition(":")
    return f"{kind}:{name.lower()}" if kind in ("header", "cookie") else position


def _check_positions(host: str, positions: tuple[str, ...]) -> str | None:
    """None when every position is well formed. A `.suffix` issuer covers hosts that anyone can register
    (tenants such as x.atlassian.net): it may name only header and query positions, never a place whose content
    such a host stores (path, form or JSON fields, cookies)."""
    for position in positions:
        kind, sep, name = position.partition(":")
        if kind not in POSITION_KINDS:
            return f"unknown position {position!r} (expected {', '.join(k + ':<name>' for k in POSITION_KINDS[:-1])} or path)"
        if (kind == "path") == bool(sep):
            return f"position {position!r}: " + ("path takes no name" if kind == "path" else f"{kind}: needs a name")
        if sep and (not name or any(c in name for c in " :/")):
            return f"position {position!r}: bad name"
        if host.startswith(".") and kind not in SUFFIX_POSITION_KINDS:
            return f"position {position!r} on suffix {host!r}: a suffix issuer may name only header: and query: positions"
    return None


def _check_validator(node: _Node, where: str, problems: list[str]) -> tuple[str | None, tuple]:
    if isinstance(node.value, str):
        name, params = node.value, {}
    elif isinstance(node.value, dict) and "name" in node.value:
        name = node.value["name"].value
        params = {k: v.value for k, v in node.value.items() if k != "name"}
    else:
        problems.append(f"{where}: must be a validator name or a mapping with 'name' and its parameters")
        return None, ()
    validator = validators.get(name) if isinstance(name, str) else None
    if validator is None:
        problems.append(f"{where}: unknown validator {name!r} (known: {', '.join(validators.names())})")
        return None, ()
    unknown = sorted(set(params) - validator.params - {"prefix"})
    if unknown:
        problems.append(f"{where}: validator {name!r} takes no parameter {', '.join(map(repr, unknown))}")
        return None, ()
    if any(isinstance(v, (dict, list)) for v in params.values()):
        problems.append(f"{where}: validator parameters must be scalars")
        return None, ()
    return name, tuple(sorted(params.items()))


def check_pattern(pattern: str) -> str | None:
    """None when the pattern compiles and every repeat is bounded; otherwise what is wrong."""
    try:
        parsed = sre_parse.parse(pattern, re.ASCII)
        re.compile(pattern, re.ASCII)
    except re.error as exc:
        return f"does not compile: {exc}"
    if _has_unbounded_repeat(parsed):
        return "unbounded repeat (+, *, or {n,}): use a bounded repeat such as {20,200}"
    if pattern_width(pattern)[1] > MAX_PATTERN_WIDTH:
        return f"can match more than {MAX_PATTERN_WIDTH} characters"
    return None


def pattern_width(pattern: str) -> tuple[int, int]:
    return sre_parse.parse(pattern, re.ASCII).getwidth()


def _has_unbounded_repeat(parsed) -> bool:
    for op, arg in parsed:
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            if arg[1] == sre_c.MAXREPEAT or _has_unbounded_repeat(arg[2]):
                return True
        elif op in (sre_c.SUBPATTERN,):
            if _has_unbounded_repeat(arg[-1]):
                return True
        elif op in (sre_c.BRANCH,):
            if any(_has_unbounded_repeat(b) for b in arg[1]):
                return True
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT, getattr(sre_c, "ATOMIC_GROUP", None)):
            sub = arg[-1] if isinstance(arg, tuple) else arg
            if _has_unbounded_repeat(sub):
                return True
        elif op == sre_c.GROUPREF_EXISTS:
            if any(p is not None and _has_unbounded_repeat(p) for p in arg[1:]):
                return True
    return False

"""Where a profile problem is, and the checks every section parser repeats (profile, principals, closing).

The profile loader turns YAML into located nodes (profile._Node: `.value`, `.file`, `.line`, `.where()`, and
`.key_line` on the values of a mapping); the section parsers take them as they are. Every problem reads
`FILE:LINE: <label>.<key>: <what is wrong>`, and is appended to the caller's list, never raised.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any


def key_where(node: Any) -> str:
    """FILE:LINE of the key a mapping value stands under (the value's own line when the key's is not known)."""
    return f"{node.file}:{getattr(node, 'key_line', node.line)}"


def check_keys(fields: Mapping[str, Any], label: str, known: Collection[str], problems: list[str],
               expected: str | None = None) -> None:
    """`<label>.<key>: unknown key (expected …)` for each key of `fields` not in `known`. The parenthesis lists
    `known` in its order, or says `expected` instead ("": no parenthesis); without a label the key stands alone."""
    hint = ", ".join(known) if expected is None else expected
    tail = f" (expected {hint})" if hint else ""
    for key, sub in fields.items():
        if key not in known:
            problems.append(f"{key_where(sub)}: {f'{label}.{key}' if label else key}: unknown key{tail}")


def mapping(node: Any, label: str, shape: str, known: Collection[str], problems: list[str],
            expected: str | None = None) -> dict | None:
    """The fields of a mapping node, their unknown keys reported (check_keys); None, with `<label>: <shape>`
    reported, when the node is not a mapping."""
    if not isinstance(node.value, dict):
        problems.append(f"{node.where()}: {label}: {shape}")
        return None
    check_keys(node.value, label, known, problems, expected)
    return node.value


def direction_actions(fields: Mapping[str, Any], label: str, directions: Iterable[str], actions: Iterable[str],
                      problems: list[str]) -> tuple[tuple[str, str], ...]:
    """`<label>.action: {direction: action}`: the (direction, action) pairs that are valid, the others reported."""
    directions, actions = tuple(directions), tuple(actions)
    pairs = []
    for direction, sub in fields.items():
        if direction not in directions:
            problems.append(f"{sub.where()}: {label}.action.{direction}: unknown direction "
                            f"(expected {', '.join(directions)})")
        elif sub.value not in actions:
            problems.append(f"{sub.where()}: {label}.action.{direction}: must be one of "
                            f"{', '.join(actions)}, got {sub.value!r}")
        else:
            pairs.append((direction, sub.value))
    return tuple(pairs)

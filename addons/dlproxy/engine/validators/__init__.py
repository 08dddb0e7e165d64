"""Named validators: small pure functions that decide whether a token-shaped string is the real thing.

A validator takes the candidate token (the whole match, vendor prefix included; for keyword entries the
`secret` group) plus the entry's params and returns True when the checksum or structure holds. Its kind says
what a pass means: "checksum" (a real checksum, near-zero false positives) or "structure" (decode/parse check).
Profiles refer to validators by name (`checksum: crc32-base62` or `checksum: {name: marvin32, seed: Default0}`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

ValidatorFunc = Callable[..., bool]


@dataclass(frozen=True)
class Validator:
    name: str
    kind: str  # "checksum" | "structure"
    func: ValidatorFunc
    params: frozenset[str]  # keyword parameters the function accepts

    def __call__(self, token: str, **params) -> bool:
        return bool(self.func(token, **params))


REGISTRY: dict[str, Validator] = {}


def register(name: str, kind: str) -> Callable[[ValidatorFunc], ValidatorFunc]:
    """Decorator: `@register("crc32-hex", "checksum")`. Names are kebab-case and unique."""
    if kind not in ("checksum", "structure"):
        raise ValueError(f"validator kind must be checksum or structure, not {kind!r}")

    def deco(func: ValidatorFunc) -> ValidatorFunc:
        if name in REGISTRY:
            raise ValueError(f"validator {name!r} registered twice")
        sig = inspect.signature(func)
        params = frozenset(list(sig.parameters)[1:])
        REGISTRY[name] = Validator(name, kind, func, params)
        return func

    return deco


def get(name: str) -> Validator | None:
    _load_all()
    return REGISTRY.get(name)


def names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def _load_all() -> None:
    # Importing the modules registers their validators.
    from . import checksums, structural  # noqa: F401

"""A cache of the built detector for `dlproxy scan`, so a scan of a few files does not pay for reading the
profile and compiling the detector each time.

The key is a SHA-256 of the profile files' contents, the backend, and the engine's own source files (a code
change never meets a stale pickle). A cache that cannot be read or written is ignored: the detector is built
as usual. Files are private to the user (0600 in a 0700 folder); `DLPROXY_CACHE_DIR` moves the folder and
`--no-cache` bypasses it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import sys
import tempfile
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from .. import __version__

ENGINE = Path(__file__).resolve().parents[1] / "engine"


def cache_dir() -> Path:
    explicit = os.environ.get("DLPROXY_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dlproxy"


@lru_cache(maxsize=1)
def _engine_digest() -> bytes:
    h = hashlib.sha256(f"{__version__} {sys.version}".encode())
    for path in sorted(ENGINE.rglob("*")):
        if path.suffix in (".py", ".yaml") and path.is_file():
            h.update(path.relative_to(ENGINE).as_posix().encode() + b"\0" + path.read_bytes())
    return h.digest()


def key(files: Iterable[str | Path], extra: str) -> str | None:
    h = hashlib.sha256(_engine_digest() + extra.encode())
    try:
        for f in files:
            h.update(str(f).encode() + b"\0" + Path(f).read_bytes() + b"\0")
    except OSError:
        return None  # let the builder report the unreadable file
    return h.hexdigest()[:40]


class LazyPattern:
    """A regex compiled on first use. The detector holds hundreds; a scan meets only a few of their entries,
    and compiling all of them again is most of what unpickling a detector would cost."""

    def __init__(self, pattern, flags: int):
        self._source = (pattern, flags)

    def __getattr__(self, name: str):
        compiled = re.compile(*self._source)
        for attr in ("match", "search", "fullmatch", "finditer", "findall", "sub", "split"):
            setattr(self, attr, getattr(compiled, attr))  # later calls skip __getattr__
        self._compiled = compiled
        return getattr(compiled, name)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj):
        if isinstance(obj, re.Pattern):
            return LazyPattern, (obj.pattern, obj.flags)
        return NotImplemented


def cached(files: Iterable[str | Path], extra: str, build: Callable[[], object]) -> object:
    """`build()`, or what an earlier identical build pickled."""
    k = key(files, extra)
    if k is None:
        return build()
    path = cache_dir() / f"detector-{k}.pickle"
    try:
        with path.open("rb") as fh:
            return pickle.load(fh)
    except Exception:  # missing, truncated, from another version: build it again
        pass
    value = build()
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".detector-")
        with os.fdopen(fd, "wb") as fh:
            _Pickler(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        os.replace(tmp, path)
    except Exception:  # a read-only home, a full disk, an unpicklable part: the scan goes on uncached
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return value

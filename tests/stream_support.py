"""Shared fixtures and helpers for test_stream.py and test_sse.py (no tests here).

    builtin, ghp_only   module-scoped Detectors: the built-in profile, and a profile with only the classic GitHub PAT
    detector            parametrized over both
    Judge               a stand-in policy: records the findings it was asked about, answers with a fixed action
    assert_cut_at_a_head  the stream guarantee: of a blocked token, at most a proper head of its prefix went out

Import the fixtures into a test module by name (`from stream_support import builtin, detector, ghp_only`) so
pytest finds them there.
"""

from __future__ import annotations

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from dlproxy.inspect.stream import BLOCK, REDACT

GHP_ONLY = """\
profile: stream-test
entries:
  - id: github-classic-pat
    name: GitHub Personal Access Token
    prefixes: ["ghp_"]
    pattern: "[A-Za-z0-9]{36}"
    checksum: crc32-base62
"""


@pytest.fixture(scope="module")
def builtin() -> Detector:
    return Detector(load_profiles([builtin_profile_path()]))


@pytest.fixture(scope="module")
def ghp_only(tmp_path_factory) -> Detector:
    path = tmp_path_factory.mktemp("p") / "ghp.yaml"
    path.write_text(GHP_ONLY)
    return Detector(load_profiles([path]))


@pytest.fixture(params=["builtin", "ghp_only"])
def detector(request, builtin, ghp_only) -> Detector:
    return builtin if request.param == "builtin" else ghp_only


class Judge:
    """Records what policy was asked; answers with a fixed action."""

    def __init__(self, action: str = BLOCK):
        self.action = action
        self.calls: list[list] = []

    def __call__(self, findings):
        self.calls.append(list(findings))
        return self.action, list(findings) if self.action == REDACT else []


def assert_cut_at_a_head(out, before, prefix="ghp_") -> None:
    """What went out of a stream blocked at a token that follows `before`: part of `before`, or all of it plus at
    most a proper head of the token's public literal prefix ("g", "gh", "ghp" of "ghp_") — never a byte past it."""
    if isinstance(out, bytes) and isinstance(prefix, str):
        prefix = prefix.encode()
    if before.startswith(out):
        return
    assert out.startswith(before), (out, before)
    head = out[len(before):]
    assert len(head) < len(prefix) and prefix.startswith(head), f"{head!r} of the token went out"

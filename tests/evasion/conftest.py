"""Evasion-suite fixtures: the end-to-end fixtures (tests/e2e/conftest.py, re-exported) plus `evasion_proxy`.

`evasion_proxy` is one `dlproxy run` with the built-in profile (default settings: block, on_error/on_oversize
block), shared by every table of the suite in a worker. Tables live in test_*.py next to this file and use
support.py (its docstring documents the row type and the checks).
"""

from __future__ import annotations

import pytest

from e2e.conftest import (  # noqa: F401  (fixtures re-exported so pytest finds them for this directory)
    e2e_dir,
    e2e_profile,
    h2_upstream,
    h2_upstream_server,
    start_proxy,
    tls_upstream_server,
    upstream,
    upstream_server,
)


@pytest.fixture
def evasion_proxy(start_proxy):  # noqa: F811  (the re-exported fixture, requested by name)
    return start_proxy(name="evasion", profiles=())

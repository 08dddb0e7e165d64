"""Shared fixtures for the whole suite (end-to-end fixtures live in tests/e2e/conftest.py)."""

from __future__ import annotations

import pytest

from tokens import make_ghp


@pytest.fixture
def ghp_token() -> str:
    return make_ghp("fixture")

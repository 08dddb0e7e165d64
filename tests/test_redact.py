"""inspect.redact: replacing found secrets in what is forwarded, and scrubbing what is recorded."""

from __future__ import annotations

import pytest

from dlproxy.inspect.redact import redact_bytes, redact_str, safe_path, scrub

SECRET = "gho_" + "a1" * 18


@pytest.mark.parametrize("path", ["/plain", "/日本/ページ", "/caf\u00e9", "/raw\udcff\udce2"])
def test_redact_str_round_trips_any_path(path):
    out, done = redact_str(f"{path}?key={SECRET}&x=1", {SECRET: "github-oauth"}, quoted=True)
    assert out == f"{path}?key=%5BREDACTED%3Agithub-oauth%5D&x=1" and done == {SECRET}
    same, none = redact_str(f"{path}?x=1", {SECRET: "github-oauth"})
    assert same == f"{path}?x=1" and none == set()


def test_redact_bytes_longest_first_and_unquoted():
    longer = SECRET + "zz"
    out, done = redact_bytes(f"a {longer} b {SECRET}".encode(), {SECRET: "s", longer: "l"})
    assert out == b"a [REDACTED:l] b [REDACTED:s]" and done == {SECRET, longer}


def test_scrub_and_safe_path_keep_secrets_out():
    assert scrub(f"/x/{SECRET}", {SECRET: "gho_…a1a1"}) == "/x/gho_…a1a1"
    assert safe_path(f"/日本/{SECRET}?key={SECRET}", {SECRET: "gho_…a1a1"}) == "/日本/gho_…a1a1?key=…"

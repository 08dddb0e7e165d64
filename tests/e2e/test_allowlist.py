"""The profile's `allow` list in the running proxy: an allowlisted fingerprint passes (requests, responses,
streamed bodies), any other token of the same entry is still blocked."""

from __future__ import annotations

import pytest

from dlproxy.engine.findings import fingerprint
from e2e.conftest import make_token, proxied_client

pytestmark = pytest.mark.e2e

PUBLISHED = make_token("ghp_", "published-test-token")
OTHER = make_token("ghp_", "allowlist-other")


@pytest.fixture(scope="module")
def allow_proxy(start_proxy, e2e_profile, tmp_path_factory):
    overlay = tmp_path_factory.mktemp("allow") / "allow.yaml"
    overlay.write_text(f'profile: site\nallow:\n  - fingerprint: "{fingerprint(PUBLISHED)}"\n'
                       f"    reason: published test token\n")
    return start_proxy(profiles=[e2e_profile, overlay])


def test_allowlisted_token_passes_and_others_are_blocked(allow_proxy, upstream):
    with proxied_client(allow_proxy) as c:
        ok = c.post(upstream.url + "/upload", content=f"token={PUBLISHED}\n")
        assert ok.status_code == 200 and upstream.saw(PUBLISHED)
        blocked = c.post(upstream.url + "/upload", content=f"token={OTHER} and {PUBLISHED}\n")
        assert blocked.status_code == 403 and not upstream.saw(OTHER)
        upstream.respond("/published", f"here: {PUBLISHED}\n".encode() * 2000)  # large: streamed or buffered
        got = c.get(upstream.url + "/published")
        assert got.status_code == 200 and got.content.count(PUBLISHED.encode()) == 2000
    allow_proxy.assert_no_leak(OTHER)

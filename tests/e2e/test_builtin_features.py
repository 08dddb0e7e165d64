"""mitmproxy's own features still work under `dlproxy run` (its hook dispatch is indexed, proxy/hookindex.py), and the
DLP addons still see what is really forwarded after them: header rewriting, block lists, `-s` scripts."""

from __future__ import annotations

import textwrap

import pytest

from conftest import GHP, proxied_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


@pytest.fixture
def featured_proxy(start_proxy, tmp_path_factory, upstream):
    script = tmp_path_factory.mktemp("script") / "tagger.py"
    script.write_text(textwrap.dedent("""\
        class Tagger:
            def request(self, flow):
                flow.request.headers["X-Script"] = "ran"
                reversed_secret = flow.request.headers.get("X-Reversed")
                if reversed_secret:
                    flow.request.headers["X-Injected"] = reversed_secret[::-1]

        addons = [Tagger()]
        """))
    return start_proxy("--set", "modify_headers=/~q/X-Modified/yes", "--set", "block_list=:~u /denied:451",
                       "-s", str(script), name="featured")


def test_modify_headers_and_script_apply_and_the_body_passes_unchanged(featured_proxy, upstream):
    with proxied_client(featured_proxy) as client:
        resp = client.post(f"{upstream.url}/v1/echo", content=b'{"q": "hello"}',
                           headers={"Content-Type": "application/json"})
    assert resp.status_code == 200
    (got,) = upstream.received
    assert got.header("X-Modified") == "yes"
    assert got.header("X-Script") == "ran"
    assert got.body == b'{"q": "hello"}'


def test_block_list_answers_before_anything_goes_upstream(featured_proxy, upstream):
    with proxied_client(featured_proxy) as client:
        resp = client.get(f"{upstream.url}/denied")
    assert resp.status_code == 451
    assert upstream.received == []


def test_a_secret_added_by_a_script_is_still_caught(featured_proxy, upstream):
    """The script runs before the DLP addons in the chain, so a header it adds is inspected too (the client
    sends the token reversed, which is not a token; the script turns it back into one)."""
    with proxied_client(featured_proxy) as client:
        resp = client.get(f"{upstream.url}/user", headers={"X-Reversed": GHP[::-1]})
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["code"] == "credential_detected"
    assert err["findings"][0]["location"] == "header:x-injected"
    assert upstream.received == []
    featured_proxy.assert_no_leak(GHP)

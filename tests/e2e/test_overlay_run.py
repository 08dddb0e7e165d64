"""`dlproxy run --profile` and `mitmdump -s addons/dlp.py --set dlp_profile=` with an overlay: the README's
custom-profile example protects with the built-in entries and its own; `dlp_builtin=false` replaces the built-in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT, make_token, proxied_client

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def readme_profile(directory: Path) -> tuple[Path, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text[text.index("## Writing a profile"):], re.S).group(1)
    path = directory / "my-company.yaml"
    path.write_text(block)
    return path, re.search(r'examples: \["([^"]+)"\]', block).group(1)


@pytest.mark.parametrize("cmd", ["run", "mitmdump"])
def test_readme_overlay_blocks_builtin_and_custom_tokens(start_proxy, upstream, tmp_path, cmd):
    overlay, acme = readme_profile(tmp_path)
    option = ("--profile", str(overlay)) if cmd == "run" else ("--set", f"dlp_profile={overlay}")
    proxy = start_proxy(*option, profiles=[], cmd=cmd)
    ghp = make_token("ghp_", "overlay-e2e")
    with proxied_client(proxy) as c:
        assert c.post(f"{upstream.url}/a", content=f"token={ghp}").status_code == 403
        assert c.post(f"{upstream.url}/b", content=f"key={acme}").status_code == 403
        assert c.post(f"{upstream.url}/c", content="nothing").status_code == 200
    assert not upstream.saw(ghp) and not upstream.saw(acme)
    proxy.assert_no_leak(ghp)
    assert 'dlproxy_profile_entries{profile="credentials-and-secrets+my-company"}' in proxy.metrics()


def test_no_builtin_runs_the_given_profile_alone(start_proxy, upstream, e2e_profile):
    proxy = start_proxy(profiles=[e2e_profile], cmd="mitmdump")  # conftest adds dlp_builtin=false
    assert 'dlproxy_profile_entries{profile="e2e"} 3.0' in proxy.metrics()

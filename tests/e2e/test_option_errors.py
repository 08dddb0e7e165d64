"""A typo or a bad option value never means "run uninspected": `dlproxy run` and `mitmdump -s addons/dlp.py`
both refuse to start, naming the option (and the closest valid one)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import ROOT, dlproxy_cmd, mitmdump_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def run_to_exit(argv: list[str], tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(argv + ["--set", f"confdir={tmp_path / 'conf'}"], capture_output=True, text=True,
                          timeout=90, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("typo", "meant"), [("dlp_scan_wrkers=2", "dlp_scan_workers"),
                                             ("dlp_proflie=x.yaml", "dlp_profile"),
                                             ("body_size_limt=1m", "body_size_limit")])
def test_dlproxy_run_refuses_an_unknown_option(tmp_path, typo, meant):
    r = run_to_exit(dlproxy_cmd() + ["run", "--listen-port", "0", "--metrics-port", "0", "--set", typo], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"unknown option {typo.split('=')[0]} (did you mean {meant}?)" in out
    assert "dlproxy ready" not in out


@pytest.mark.parametrize("setting", ["dlp_dry_run=maybe", "dlp_scan_workers=two", "dlp_proflie=x.yaml"])
def test_mitmdump_script_with_a_bad_dlp_option_does_not_run(tmp_path, setting):
    r = run_to_exit(mitmdump_cmd() + ["-s", str(ROOT / "addons" / "dlp.py"), "--listen-port", "0",
                                      "--set", "dlp_metrics_port=0", "--set", setting], tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"dlproxy option error: {setting.split('=')[0]}" in out or \
        f"option error: unknown option {setting.split('=')[0]}" in out

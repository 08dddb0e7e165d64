"""Operations, end to end: a real `dlproxy run` / `mitmdump -s` subprocess, a local upstream, real clients.

Metrics move with real traffic and never show a secret; hot reload (file change, invalid file, SIGHUP) with a
running proxy; the incident log reopens after `mv` + SIGHUP; dry-run forwards but reports what it would have
done; the webhook receives incidents; a `-s` script reload keeps metrics working; mitmproxy's own flow log
prints no secret. Fixtures (upstream, start_proxy, Proxy) come from tests/e2e/conftest.py.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from e2e.conftest import ROOT, Proxy, dlproxy_cmd, make_token, mitmdump_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

OPS_PROFILE = """\
profile: ops-e2e
name: Ops e2e
entries:
  - id: ops-test-token
    name: Ops Test Token
    severity: high
    prefixes: ["opstest_"]
    pattern: "[A-Za-z0-9]{32}"
"""
SECOND_ENTRY = """\
  - id: ops-other-token
    name: Ops Other Token
    severity: critical
    prefixes: ["opsother_"]
    pattern: "[A-Za-z0-9]{32}"
"""
OPS_TOKEN = "opstest_" + "Q7w9E2r4T6y8U1i3O5p7A9s2D4f6G8h1"
OTHER_TOKEN = "opsother_" + "Z2x4C6v8B1n3M5q7W9e2R4t6Y8u1I3o5"


def corrupt(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def replace_file(path: Path, text: str) -> None:
    """Write the way editors and ConfigMaps do: a new file renamed over the old name."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def wait_until(proxy: Proxy, cond, what: str, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except httpx.TransportError:
            pass
        assert proxy.alive(), f"proxy exited {proxy.proc.returncode}:\n{proxy.output()[-4000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{what}; proxy output:\n{proxy.output()[-4000:]}")


def client(proxy: Proxy) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, trust_env=False, timeout=15)


def get(proxy: Proxy, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{proxy.metrics_port}{path}", timeout=5, trust_env=False)


def own_proxy(tmp_path: Path, argv: list[str], env: dict | None = None) -> Proxy:
    """A proxy with options start_proxy fixes (reload interval, incident log), same Proxy helper."""
    return Proxy(argv + ["--set", f"confdir={tmp_path / 'conf'}"], tmp_path, env).wait_ready()


class Receiver:
    """A webhook receiver: records each POSTed JSON body."""

    def __init__(self):
        self.incidents: list[dict] = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                outer.incidents.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/incidents"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_metrics_move_with_traffic_and_never_show_a_secret(start_proxy, upstream):
    tokens = [make_token("ghp_", f"ops-{i}") for i in range(3)]
    twin = corrupt(make_token("ghp_", "ops-twin"))
    p = start_proxy()  # private: counters start at zero
    assert get(p, "/healthz").status_code == 200 and get(p, "/readyz").status_code == 200
    assert p.metric("dlproxy_flows_total", direction="request", verdict="blocked") == 0

    with client(p) as c:
        assert c.get(upstream.url + "/clean?page=2").status_code == 200
        assert c.post(upstream.url + "/v1/chat/completions",
                      json={"messages": [{"role": "user", "content": "hello"}]}).status_code == 200
        assert c.post(upstream.url + "/lookalike", json={"content": f"not a real one: {twin}"}).status_code == 200
        blocked = [
            c.post(upstream.url + "/upload", files={"file": ("notes.txt", f"token={tokens[0]}\n")}),
            c.get(upstream.url + "/repos", headers={"Authorization": f"token {tokens[1]}"}),
            c.get(upstream.url + f"/hook?access_token={tokens[2]}&x=1"),
        ]
    assert [r.status_code for r in blocked] == [403, 403, 403], [r.text for r in blocked]
    assert not any(upstream.saw(t) for t in tokens)
    ids = [r.headers["X-DLP-Incident"] for r in blocked]

    m = p.metric
    assert m("dlproxy_flows_total", direction="request", verdict="blocked") == 3
    assert m("dlproxy_flows_total", direction="request", verdict="clean") == 3
    assert m("dlproxy_flows_total", direction="response", verdict="clean") == 3
    assert m("dlproxy_detections_total", entry="github-pat", direction="request", action="block") == 3
    assert m("dlproxy_scanned_bytes_total", direction="request") > 100
    assert m("dlproxy_scanned_bytes_total", direction="response") > 0
    assert m("dlproxy_scan_duration_seconds_count", direction="request") == 6
    assert m("dlproxy_candidates_total", entry="github-pat", result="validated") >= 3
    assert m("dlproxy_candidates_total", entry="github-pat", result="checksum_failed") >= 1
    assert m("dlproxy_profile_entries", profile="e2e") == 3
    assert m("dlproxy_incidents_total", action="block") == 3
    assert m("dlproxy_profile_reloads_total", result="error") == 0

    # incidents: one JSON line each, the ids the clients saw, query values masked
    records = p.incidents(wait=5)
    assert [r["incident_id"] for r in records] == ids
    assert records[0]["action"] == "block" and records[0]["findings"][0]["entry"] == "github-pat"
    assert records[2]["path"] == "/hook?access_token=…&x=…"
    # the proxy's own log says what happened, in words, with the incident id
    assert p.wait_for(re.compile(rf"dlproxy blocked POST 127\.0\.0\.1\S*/upload: GitHub Personal Access Token "
                                 rf"in multipart file notes\.txt \(incident {ids[0]}\)"), timeout=5)

    scrape = p.metrics()
    for t in tokens:
        p.assert_no_leak(t)  # output (stdout+stderr), incident log, metrics: neither the secret nor its tail
        for text in (p.output(), p.incident_log.read_text(), scrape):
            assert t[4:16] not in text  # nor a piece of its middle
    # labels are ids and enums, never traffic
    assert "127.0.0.1" not in scrape and "/upload" not in scrape and "notes.txt" not in scrape
    # mitmproxy's own flow log is quiet: no request lines, no headers, no bodies
    assert "/hook?" not in p.output() and "Authorization" not in p.output()


def test_hot_reload_invalid_profile_sighup_and_log_rotation(tmp_path, upstream):
    profile = tmp_path / "profile.yaml"
    profile.write_text(OPS_PROFILE)
    log = tmp_path / "incidents.jsonl"
    p = own_proxy(tmp_path, dlproxy_cmd() + [
        "run", "--listen-host", "127.0.0.1", "--listen-port", "0", "--metrics-port", "0",
        "--profile", str(profile), "--no-builtin", "--incident-log", str(log), "--set", "dlp_reload_interval=1"])
    try:
        with client(p) as c:
            def status(token: str) -> int:
                return c.post(upstream.url + "/send", content=f"key: {token}").status_code

            assert status(OPS_TOKEN) == 403 and status(OTHER_TOKEN) == 200
            assert p.metric("dlproxy_profile_entries", profile="ops-e2e") == 1

            # a valid profile that adds an entry: picked up by polling; the new entry's token is now blocked
            replace_file(profile, OPS_PROFILE + SECOND_ENTRY)
            wait_until(p, lambda: status(OTHER_TOKEN) == 403, "the added entry never took effect")
            assert p.metric("dlproxy_profile_reloads_total", result="ok") == 1
            assert p.metric("dlproxy_profile_entries", profile="ops-e2e") == 2

            # an invalid one: FILE:LINE in the log, counted, still ready, the old profile still blocks
            replace_file(profile, (OPS_PROFILE + SECOND_ENTRY).replace("severity: critical", "severity: extreme"))
            wait_until(p, lambda: p.metric("dlproxy_profile_reloads_total", result="error") == 1, "no error reload")
            assert p.wait_for(re.compile(re.escape(f"{profile}:") + r"11: entries\[1\]\.severity: "), timeout=5)
            assert get(p, "/readyz").status_code == 200
            assert status(OTHER_TOKEN) == 403 and status(OPS_TOKEN) == 403
            assert p.metric("dlproxy_profile_reloads_total", result="ok") == 1

            # logrotate: mv the incident log away, SIGHUP → reload (file still invalid: error 2) + reopen
            wait_until(p, lambda: log.exists() and len(log.read_text().splitlines()) >= 4, "incidents missing")
            before = len(log.read_text().splitlines())
            os.rename(log, tmp_path / "incidents.jsonl.1")
            p.proc.send_signal(signal.SIGHUP)
            wait_until(p, lambda: p.metric("dlproxy_profile_reloads_total", result="error") == 2,
                       "SIGHUP did not reload")
            assert status(OPS_TOKEN) == 403
            wait_until(p, lambda: log.exists() and log.read_text().strip(), "the incident log was not reopened")
            assert len(log.read_text().splitlines()) == 1
            assert len((tmp_path / "incidents.jsonl.1").read_text().splitlines()) == before

            # SIGHUP with a valid file: swapped at once
            p.proc.send_signal(signal.SIGSTOP)  # hold the poller so that only SIGHUP can see the change
            replace_file(profile, OPS_PROFILE)
            p.proc.send_signal(signal.SIGHUP)
            p.proc.send_signal(signal.SIGCONT)
            wait_until(p, lambda: status(OTHER_TOKEN) == 200, "SIGHUP with a valid file did not swap")
            assert p.metric("dlproxy_profile_reloads_total", result="ok") == 2
            assert p.wait_for(re.compile(r"generation \d+, sighup\)"), timeout=5)
            assert p.alive()
        for t in (OPS_TOKEN, OTHER_TOKEN):
            p.assert_no_leak(t)
    finally:
        p.stop()


def test_dry_run_forwards_and_reports_what_it_would_have_done(start_proxy, upstream):
    hook = Receiver()
    try:
        token = make_token("ghp_", "ops-dry")
        p = start_proxy("--dry-run", "--incident-webhook", hook.url)
        with client(p) as c:
            r = c.post(upstream.url + "/upload", json={"content": f"here: {token}"})
        assert r.status_code == 200 and "X-DLP-Incident" not in r.headers
        assert upstream.saw(token), "dry-run must forward the request unchanged"
        assert p.metric("dlproxy_flows_total", direction="request", verdict="blocked") == 0
        assert p.metric("dlproxy_flows_total", direction="request", verdict="dry_run") == 1
        assert p.metric("dlproxy_dry_run_total", direction="request", verdict="blocked") == 1
        assert p.metric("dlproxy_detections_total", entry="github-pat", direction="request", action="block") == 1
        rec = p.incidents(wait=5)[0]
        assert rec["dry_run"] is True and rec["action"] == "block" and rec["direction"] == "request"
        wait_until(p, lambda: hook.incidents, "the webhook got nothing")
        assert hook.incidents == [rec]
        wait_until(p, lambda: p.metric("dlproxy_webhook_delivered_total") == 1, "delivery not counted")
        assert p.wait_for(re.compile(r"dlproxy would have blocked \(dry-run\) POST 127\.0\.0\.1\S*/upload: "
                                     r"GitHub Personal Access Token in JSON body"), timeout=5)
        p.assert_no_leak(token)
        assert token[-8:] not in json.dumps(hook.incidents)
    finally:
        hook.close()


def test_incidents_go_to_stderr_by_default(tmp_path, upstream):
    profile = tmp_path / "profile.yaml"
    profile.write_text(OPS_PROFILE)
    p = own_proxy(tmp_path, dlproxy_cmd() + ["run", "--listen-host", "127.0.0.1", "--listen-port", "0",
                                             "--metrics-port", "0", "--profile", str(profile)])
    try:
        with client(p) as c:
            r = c.post(upstream.url + "/x", content=OPS_TOKEN)
        assert r.status_code == 403
        wait_until(p, lambda: '"incident_id"' in p.output(), "no incident line")
        lines = [json.loads(x) for x in p.output().splitlines() if x.startswith('{"time"')]
        assert [x["incident_id"] for x in lines] == [r.headers["X-DLP-Incident"]]
        p.assert_no_leak(OPS_TOKEN)
    finally:
        p.stop()


def test_script_reload_keeps_metrics_and_protection(tmp_path, upstream):
    """`mitmdump -s`: touching the script re-creates the addons. With a registry per Metrics there
    is no DuplicateTimeseries, the metrics server comes back, and secrets are still blocked."""
    script = tmp_path / "dlp.py"
    shutil.copy(ROOT / "addons" / "dlp.py", script)
    profile = tmp_path / "profile.yaml"
    profile.write_text(OPS_PROFILE)
    p = own_proxy(tmp_path, mitmdump_cmd() + [
        "-s", str(script), "--listen-host", "127.0.0.1", "--listen-port", "0", "--set", "dlp_metrics_port=0",
        "--set", "flow_detail=0", "--set", f"dlp_profile={profile}"])
    try:
        with client(p) as c:
            assert c.post(upstream.url + "/x", content=OPS_TOKEN).status_code == 403
            mark = p.mark()
            os.utime(script, (time.time() + 5, time.time() + 5))
            assert p.wait_for(re.compile(r"Loading script .*dlp\.py"), timeout=10)
            wait_until(p, lambda: len(re.findall(r"dlproxy metrics listening", p.output(since=mark))) >= 1,
                       "the metrics server did not come back after the script reload")
            new_port = int(re.findall(r"dlproxy metrics listening at 127\.0\.0\.1:(\d+)", p.output(since=mark))[-1])
            p.metrics_port = new_port
            assert get(p, "/readyz").status_code == 200
            assert c.post(upstream.url + "/x", content=OPS_TOKEN).status_code == 403
            assert p.metric("dlproxy_flows_total", direction="request", verdict="blocked") == 1  # fresh registry
        out = p.output(since=mark)
        assert "DuplicateTimeseries" not in out and "Addon error" not in out, out
    finally:
        p.stop()


def test_mitmdump_script_default_flow_log_prints_no_secret(tmp_path, upstream):
    profile = tmp_path / "profile.yaml"
    profile.write_text(OPS_PROFILE)
    p = own_proxy(tmp_path, mitmdump_cmd() + [
        "-s", str(ROOT / "addons" / "dlp.py"), "--listen-host", "127.0.0.1", "--listen-port", "0",
        "--set", "dlp_metrics_port=0", "--set", "dlp_reload_interval=0", "--set", f"dlp_profile={profile}"],
        env={"COLUMNS": "300"})  # the flow log cuts URLs at the terminal width: a wide one shows them whole
    try:
        with client(p) as c:
            assert c.get(upstream.url + f"/?t={OPS_TOKEN}").status_code == 403
            assert c.post(upstream.url + "/x", headers={"X-Key": OPS_TOKEN}).status_code == 403
        time.sleep(0.3)
        assert OPS_TOKEN[8:20] not in p.output()  # not even a piece of the secret
        p.assert_no_leak(OPS_TOKEN)
    finally:
        p.stop()

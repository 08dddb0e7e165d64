"""Incidents: the JSON record, masking, the file/stderr sink (line atomicity, rotation), the webhook."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import threading
import time

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from dlproxy.engine.findings import Finding
from dlproxy.inspect.policy import Decision, FlowContext
from dlproxy.ops.incidents import (
    Incident,
    IncidentLog,
    describe_location,
    mask_path,
    parse_webhook,
)
from dlproxy.ops.metrics import Metrics

SECRET = "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"
FIELDS = {"time", "incident_id", "action", "direction", "client", "method", "scheme", "host", "path",
          "findings", "unscannable", "dry_run"}
FINDING_FIELDS = {"entry", "name", "severity", "location", "masked", "fingerprint", "validated"}


def finding(location="body:multipart:file[notes.txt]") -> Finding:
    return Finding("github-pat-classic", "GitHub Personal Access Token", "critical", 10, 50, "checksum",
                   "ghp_…Lq17", "sha256:" + "ab" * 32, location)


def ctx(**kw) -> FlowContext:
    base = dict(direction="request", host="api.example.com", method="POST", scheme="https", port=443,
                path="/upload", client="10.0.0.7")
    return FlowContext(**{**base, **kw})


def test_json_shape_and_sentence():
    d = Decision("blocked", "block", acted=(finding(),), reason="GitHub Personal Access Token in …")
    inc = Incident.from_decision(d, ctx())
    rec = json.loads(inc.to_json())
    assert FIELDS <= set(rec)
    assert "\n" not in inc.to_json()
    assert rec["action"] == "block" and rec["direction"] == "request" and rec["dry_run"] is False
    assert rec["host"] == "api.example.com" and rec["method"] == "POST" and rec["client"] == "10.0.0.7"
    assert [set(f) for f in rec["findings"]] == [FINDING_FIELDS]
    assert rec["findings"][0]["masked"] == "ghp_…Lq17"
    assert rec["time"].endswith("Z") and len(rec["incident_id"]) == 16
    assert inc.describe() == (f"blocked POST api.example.com/upload: GitHub Personal Access Token in multipart "
                              f"file notes.txt (incident {inc.incident_id})")


def test_dry_run_says_what_would_have_happened():
    d = Decision("blocked", "block", acted=(finding("header:authorization"),), dry_run=True)
    inc = Incident.from_decision(d, ctx())
    rec = json.loads(inc.to_json())
    assert rec["action"] == "block" and rec["dry_run"] is True and rec["verdict"] == "blocked"
    assert inc.describe().startswith("would have blocked (dry-run) POST api.example.com/upload: "
                                     "GitHub Personal Access Token in header authorization")


def test_unscannable_and_error_decisions():
    class U:
        location, reason = "body:zip", "encrypted_archive"

    inc = Incident.from_decision(Decision("blocked", "block", unscannable=(U(),)), ctx(direction="response"))
    assert inc.to_dict()["unscannable"] == [{"location": "body:zip", "reason": "encrypted_archive"}]
    assert "content that could not be inspected (encrypted_archive)" in inc.describe()
    assert inc.describe().startswith("blocked response to POST api.example.com/upload")
    let_through = Incident.from_decision(Decision("error", None, reason="content could not be inspected (x)"), ctx())
    assert let_through.action == "allow"


def test_query_values_and_token_runs_are_masked():
    assert mask_path("/a/b?x=1&token=" + SECRET + "&flag") == "/a/b?x=…&token=…&flag"
    masked = mask_path(f"/repos/{SECRET}/x?{SECRET}=1")
    assert SECRET not in masked and SECRET[-8:] not in masked and SECRET[-4:] not in masked
    assert mask_path("/v1/chat/completions") == "/v1/chat/completions"
    inc = Incident.from_decision(Decision("blocked", "block", acted=(finding(),)),
                                 ctx(path=f"/upload?key={SECRET}"))
    assert SECRET[-8:] not in inc.to_json() and SECRET[-8:] not in inc.describe()
    assert inc.path == "/upload?key=…"


@pytest.mark.parametrize("loc,text", [
    ("header:authorization", "in header authorization"),
    ("body:json:$.messages[0].content", "in JSON body at $.messages[0].content"),
    ("body:multipart:file[report.zip]/notes.txt", "in multipart file report.zip/notes.txt"),
    ("body:form:password", "in form field password"),
    ("url:query:token", "in URL query parameter token"),
    ("websocket", "in websocket message"),
    ("something:else", "in something:else"),
])
def test_locations_read_like_words(loc, text):
    assert describe_location(loc) == text


def test_file_sink_appends_whole_lines_from_many_threads(tmp_path):
    log = IncidentLog(Metrics())
    path = tmp_path / "incidents.jsonl"
    log.open(str(path))
    inc = Incident.from_decision(Decision("blocked", "block", acted=(finding(),) * 40), ctx())
    line = inc.to_json()
    assert len(line) > 8192  # bigger than any stdio buffer: atomicity must come from one write()

    def writer():
        for _ in range(50):
            log.write_line(line)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 400 and all(x == line for x in lines)


def test_reopen_after_rotation(tmp_path):
    log = IncidentLog()
    path = tmp_path / "incidents.jsonl"
    log.open(str(path))
    log.write_line('{"n":1}')
    os.rename(path, tmp_path / "incidents.jsonl.1")
    log.write_line('{"n":2}')  # the rename was within the check interval... or not: either file is fine
    log.reopen()  # SIGHUP
    log.write_line('{"n":3}')
    log.close()
    old = (tmp_path / "incidents.jsonl.1").read_text().splitlines()
    new = path.read_text().splitlines()
    assert old[0] == '{"n":1}' and new[-1] == '{"n":3}'
    assert sorted(old + new) == ['{"n":1}', '{"n":2}', '{"n":3}']


def test_moved_file_is_noticed_without_sighup(tmp_path):
    log = IncidentLog()
    log.ROTATION_CHECK_SECONDS = 0
    path = tmp_path / "incidents.jsonl"
    log.open(str(path))
    log.write_line("a")
    os.rename(path, tmp_path / "old")
    log.write_line("b")
    log.close()
    assert (tmp_path / "old").read_text() == "a\n" and path.read_text() == "b\n"


def test_record_to_stderr_logs_a_sentence_and_counts(capfd, caplog):
    caplog.set_level(logging.INFO)
    m = Metrics()
    log = IncidentLog(m)
    inc = Incident.from_decision(Decision("blocked", "block", acted=(finding(),)), ctx())
    log.record(inc)
    err = capfd.readouterr().err
    assert json.loads(err.strip())["incident_id"] == inc.incident_id
    assert f"dlproxy blocked POST api.example.com/upload: GitHub Personal Access Token in multipart file " \
           f"notes.txt (incident {inc.incident_id})" in caplog.text
    assert b'dlproxy_incidents_total{action="block"} 1.0' in m.render()


def test_unwritable_log_is_an_options_error(tmp_path):
    async def main():
        log = IncidentLog()
        with taddons.context(log) as tctx:
            with pytest.raises(exceptions.OptionsError, match="cannot open incident log"):
                tctx.configure(log, dlp_incident_log=str(tmp_path / "no" / "such" / "dir" / "f"))
            with pytest.raises(exceptions.OptionsError, match="http"):
                tctx.configure(log, dlp_incident_webhook="ftp://example.com/x")

    asyncio.run(main())


def test_parse_webhook():
    t = parse_webhook("https://user:p%40ss@hooks.example.com:8443/in?x=1")
    assert (t.scheme, t.host, t.port, t.target) == ("https", "hooks.example.com", 8443, "/in?x=1")
    assert t.auth == "Basic dXNlcjpwQHNz" and "p%40ss" not in t.shown and "user" not in t.shown
    assert parse_webhook("http://[::1]/").port == 80
    for bad in ("hooks.example.com/x", "http:///x", "http://h:99999/"):
        with pytest.raises(ValueError):
            parse_webhook(bad)


# --- webhook against a real local receiver ------------------------------------------------------------

class Receiver:
    """http.server on 127.0.0.1 in a thread; answers from a script of statuses, then 200."""

    def __init__(self, statuses=(), delay=0.0):
        self.statuses = list(statuses)
        self.delay = delay
        self.bodies: list[dict] = []
        self.attempts = 0
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.attempts += 1
                time.sleep(outer.delay)
                status = outer.statuses.pop(0) if outer.statuses else 200
                if status == 200:
                    outer.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*a, **kw):
        made.append(Receiver(*a, **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


async def wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.01)


def incident() -> Incident:
    return Incident.from_decision(Decision("blocked", "block", acted=(finding(),)), ctx())


def test_webhook_delivers_and_retries_after_500(receiver, capfd):
    rcv = receiver(statuses=[500, 503])

    async def main():
        m = Metrics()
        log = IncidentLog(m, backoff=0.01)
        with taddons.context(log) as tctx:
            tctx.configure(log, dlp_incident_webhook=rcv.url)
            log.running()
            inc = incident()
            log.record(inc)
            await wait_for(lambda: rcv.bodies)
            assert rcv.bodies[0]["incident_id"] == inc.incident_id and rcv.attempts == 3
            assert b"dlproxy_webhook_delivered_total 1.0" in m.render()
            log.done()

    asyncio.run(main())


def test_webhook_gives_up_and_counts(receiver, capfd, caplog):
    rcv = receiver(statuses=[500] * 10)

    async def main():
        m = Metrics()
        log = IncidentLog(m, backoff=0.01, retries=2)
        with taddons.context(log) as tctx:
            tctx.configure(log, dlp_incident_webhook=rcv.url)
            log.running()
            log.record(incident())
            await wait_for(lambda: b'dlproxy_webhook_dropped_total{reason="failed"} 1.0' in m.render())
            assert rcv.attempts == 3
            log.done()

    asyncio.run(main())
    assert "gave up on an incident (HTTP 500)" in caplog.text


def test_webhook_unreachable_counts_failed(capfd):
    async def main():
        m = Metrics()
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        log = IncidentLog(m, backoff=0.01, retries=1, timeout=1)
        with taddons.context(log) as tctx:
            tctx.configure(log, dlp_incident_webhook=f"http://127.0.0.1:{port}/x")
            log.running()
            log.record(incident())
            await wait_for(lambda: b'dlproxy_webhook_dropped_total{reason="failed"} 1.0' in m.render())
            log.done()

    asyncio.run(main())


def test_webhook_full_queue_drops_without_blocking(receiver, capfd):
    rcv = receiver(delay=0.3)

    async def main():
        m = Metrics()
        log = IncidentLog(m, queue_size=2, backoff=0.01)
        with taddons.context(log) as tctx:
            tctx.configure(log, dlp_incident_webhook=rcv.url)
            log.running()
            for _ in range(10):
                log.record(incident())
            assert rcv.bodies == []  # record() returned ten times before anything was delivered
            await asyncio.sleep(0)
            text = m.render().decode()
            # one in flight (taken off the queue by the sender), two queued, the rest dropped
            dropped = float(text.split('dlproxy_webhook_dropped_total{reason="queue_full"} ')[1].split()[0])
            assert 7 <= dropped <= 8
            await wait_for(lambda: len(rcv.bodies) == 10 - dropped)
            log.done()

    asyncio.run(main())


def test_webhook_timeout_is_retried(receiver, capfd):
    rcv = receiver(delay=0.5)

    async def main():
        m = Metrics()
        log = IncidentLog(m, backoff=0.01, retries=1, timeout=0.1)
        with taddons.context(log) as tctx:
            tctx.configure(log, dlp_incident_webhook=rcv.url)
            log.running()
            log.record(incident())
            await wait_for(lambda: b'dlproxy_webhook_dropped_total{reason="failed"} 1.0' in m.render())
            assert rcv.attempts >= 1
            log.done()

    asyncio.run(main())


def test_record_from_a_worker_thread(receiver, capfd):
    rcv = receiver()

    async def main():
        log = IncidentLog(Metrics())
        with taddons.context(log) as tctx:
            tctx.configure(log, dlp_incident_webhook=rcv.url)
            log.running()
            await asyncio.to_thread(log.record, incident())
            await wait_for(lambda: rcv.bodies)
            log.done()

    asyncio.run(main())

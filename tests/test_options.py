"""Option mistakes never mean "run uninspected": unknown names stop `dlproxy run`; a `dlp_*` value that does not
parse, under `mitmdump -s addons/dlp.py`, blocks every flow (403 inspection_failed, /readyz 503) until fixed."""

from __future__ import annotations

import json
import logging

from mitmproxy import addonmanager, optmanager
from mitmproxy.test import taddons, tflow, tutils

from dlproxy.ops.metrics import Metrics
from dlproxy.proxy.addon import ProfileState, RequestInspector
from dlproxy.proxy.options import OptionCheck, unknown_options
from tokens import make_ghp


def flow(body: bytes):
    req = tutils.treq(method=b"POST", host="api.example.com", port=443, scheme=b"https", path=b"/v1/x",
                      content=body)
    return tflow.tflow(req=req)


def test_a_bad_dlp_value_blocks_every_flow_until_it_is_fixed(caplog):
    caplog.set_level(logging.INFO)
    metrics = Metrics()
    state = ProfileState(metrics)
    inspector = RequestInspector(state, metrics)
    check = OptionCheck(state)
    with taddons.context(state, inspector, check) as tctx:
        state.running()  # loads the built-in profile
        assert state.ready
        # what `mitmdump --set dlp_dry_run=maybe` leaves for the script: an unconverted value
        tctx.options.deferred["dlp_dry_run"] = optmanager._UnconvertedStrings(["maybe"])
        check.load(addonmanager.Loader(tctx.master))
        assert "dlp_dry_run" not in tctx.options.deferred  # mitmproxy no longer drops the script over it
        tctx.master.options.process_deferred()  # what register() does next: no error now
        assert not state.ready and state.not_ready_reason == "invalid options"
        f = flow(b"nothing secret here")
        inspector.request(f)
        assert f.response.status_code == 403
        assert json.loads(f.response.content)["error"]["code"] == "inspection_failed"
        errors = [r.getMessage() for r in caplog.records if "option error" in r.getMessage()]
        assert len(errors) == 1 and "dlp_dry_run" in errors[0]
        check.load(addonmanager.Loader(tctx.master))  # nothing new: not logged again
        assert len([r for r in caplog.records if "option error" in r.getMessage()]) == 1
        tctx.configure(check, dlp_dry_run=False)  # a valid value
        assert state.ready
        ok = flow(b"nothing secret here")
        inspector.request(ok)
        assert ok.response is None
        leak = flow(f"token={make_ghp('opt')}".encode())
        inspector.request(leak)
        assert json.loads(leak.response.content)["error"]["code"] == "credential_detected"


def test_an_unknown_dlp_option_under_the_script_blocks_too():
    state = ProfileState(Metrics())
    check = OptionCheck(state)
    with taddons.context(state, check) as tctx:
        tctx.options.deferred["dlp_proflie"] = optmanager._UnconvertedStrings(["x.yaml"])
        check.load(addonmanager.Loader(tctx.master))
        assert state.option_problems == ["unknown option dlp_proflie (did you mean dlp_profile?)"]


def test_unknown_options_name_the_closest_valid_one():
    state = ProfileState(Metrics())
    with taddons.context(state) as tctx:
        tctx.options.deferred["dlp_scan_wrkers"] = optmanager._UnconvertedStrings(["2"])
        tctx.options.deferred["zzz_nothing_alike"] = optmanager._UnconvertedStrings(["1"])
        assert unknown_options(tctx.options) == ["unknown option dlp_scan_wrkers (did you mean dlp_scan_workers?)",
                                                 "unknown option zzz_nothing_alike"]

"""Nothing secret in dlproxy's own output: log records are scrubbed when created; locations built from decoded
names are scrubbed with the detector too."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from dlproxy.extract import Limits
from dlproxy.inspect import redact
from dlproxy.inspect.policy import Active, FlowContext, decide
from dlproxy.inspect.scanning import scan_message
from dlproxy.ops import logscrub
from dlproxy.ops.incidents import Incident
from tokens import make_ghp

PROFILE = load_profiles([builtin_profile_path()])
DETECTOR = Detector(PROFILE)
TOKEN = make_ghp("output")


@pytest.fixture
def scrubbed_log():
    logscrub.install(lambda: DETECTOR)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.output.scrub")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield log, out
    finally:
        log.removeHandler(handler)
        logscrub.install(lambda: None)


def test_mask_found_masks_every_credential_and_keeps_the_rest():
    text = f"trailer x-token: {TOKEN}; host {TOKEN}.exfil.example"
    out = redact.mask_found(text, DETECTOR)
    assert TOKEN not in out and out.count("ghp_…") == 2 and out.endswith(".exfil.example")
    clean = "nothing here"
    assert redact.mask_found(clean, DETECTOR) is clean


def test_log_messages_args_exceptions_and_stacks_are_scrubbed(scrubbed_log):
    log, out = scrubbed_log
    log.info("plain %s", TOKEN)
    log.warning(f"f-string {TOKEN}")
    try:
        raise AssertionError(f"HTTP/2 trailer x-token: {TOKEN}")
    except AssertionError:
        log.exception("mitmproxy error")
    log.info("with stack", stack_info=True)
    text = out.getvalue()
    assert "plain ghp_…" in text and "f-string ghp_…" in text and "AssertionError: HTTP/2 trailer x-token: ghp_…" in text
    assert TOKEN not in text and TOKEN[-8:] not in text


def test_clean_records_are_untouched(scrubbed_log):
    log, out = scrubbed_log
    log.info("%s and %d", "ghp_ is a prefix", 3)
    assert out.getvalue() == "INFO ghp_ is a prefix and 3\n"


def test_a_scrubber_failure_withholds_the_record(scrubbed_log):
    log, out = scrubbed_log
    logscrub.install(lambda: 1 / 0)
    log.info("secret %s", TOKEN)
    assert out.getvalue() == "INFO dlproxy: log record withheld\n"


@pytest.mark.parametrize("disposition", [
    "form-data; name=\"f\"; filename*=UTF-8''{enc}",
    "form-data; name=\"{enc}\"",
])
def test_a_token_in_a_decoded_name_never_reaches_a_location(disposition):
    """Another finding blocks the request; the part's name (decoded from %-encoding) holds a token."""
    active = Active(PROFILE, DETECTOR, Limits.from_settings(PROFILE.settings), 1)
    other = make_ghp("other")
    name = "".join(f"%{c:02X}" for c in TOKEN.encode())  # the scanned header text never shows it
    body = (f"--b\r\nContent-Disposition: {disposition.format(enc=name)}\r\n\r\n{other}\r\n--b--\r\n").encode()
    scan = scan_message(active, None, [("Content-Type", "multipart/form-data; boundary=b")], body)
    ctx = FlowContext("request", "api.example.com", "POST", "https", 443, "/")
    decision = decide(scan.findings, scan.unscannable, ctx, active)
    record = Incident.from_decision(decision, ctx).to_json()
    assert decision.enforcement == "block"
    assert TOKEN not in record and TOKEN[-8:] not in record
    assert any(f["masked"] == other[:4] + "…" + other[-4:] for f in json.loads(record)["findings"])

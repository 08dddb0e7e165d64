"""Hostile bodies stay linear: thousands of findings, or text dense with false starts, cost work in proportion
to their size. Work is measured by counting Python function calls (sys.setprofile), never by the clock: a
per-finding pass over the whole body shows up as calls growing with the square of the number of findings."""

from __future__ import annotations

import json
import random
import sys
from contextlib import contextmanager
from urllib.parse import quote

import pytest

from dlproxy.engine import detector as detector_mod
from dlproxy.engine.detector import Detector, _resolve_overlaps
from dlproxy.engine.findings import Finding
from dlproxy.engine.prefilter import hyperscan_available
from dlproxy.engine.profile import Settings, builtin_profile_path, load_profiles
from dlproxy.extract import Limits
from dlproxy.inspect import redact
from dlproxy.inspect.policy import Active, FlowContext, decide
from dlproxy.inspect.scanning import scan_message
from dlproxy.ops.incidents import Incident
from tokens import make_ghp

PROFILE = load_profiles([builtin_profile_path()])


@pytest.fixture(scope="module")
def active() -> Active:
    return Active(PROFILE, Detector(PROFILE), Limits.from_settings(PROFILE.settings), 1)


@contextmanager
def counting():
    """Count Python and C function calls made while the block runs."""
    box = [0]

    def hook(frame, event, arg):
        if event in ("call", "c_call"):
            box[0] += 1

    sys.setprofile(hook)
    try:
        yield box
    finally:
        sys.setprofile(None)


def calls(fn) -> int:
    with counting() as box:
        fn()
    return box[0]


def assert_linear(work_at, n: int) -> None:
    """work(4n) stays near 4 x work(n): quadratic work would be 16x."""
    small, big = work_at(n), work_at(4 * n)
    assert big <= 6 * small, (small, big)


# --- overlap resolution -----------------------------------------------------------------------------------

def _old_rule(found: list[Finding]) -> list[Finding]:
    """The greedy rule as first written (quadratic): the reference for the differential test."""
    rank = sorted(found, key=lambda f: (f.validated != "checksum", -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for f in rank:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    kept.sort(key=lambda f: (f.start, f.end))
    return kept


def _finding(start: int, end: int, validated: str, tag: int) -> Finding:
    return Finding(f"e{tag}", "x", "high", start, end, validated, "…", f"sha256:{tag}")


@pytest.mark.parametrize("seed", range(300))
def test_overlap_resolution_matches_the_reference_rule(seed):
    rng = random.Random(seed)
    span = rng.choice((20, 60, 400))
    found = []
    for tag in range(rng.randrange(2, 40)):
        start = rng.randrange(span)
        found.append(_finding(start, start + rng.randrange(1, 30), rng.choice(("checksum", "structure")), tag))
    assert _resolve_overlaps(list(found)) == _old_rule(list(found))


def test_overlap_resolution_work_is_n_log_n():
    def work(n):
        found = []
        for i in range(n):  # every finding overlaps its neighbour: the slow path
            found.append(_finding(10 * i, 10 * i + 12, "checksum" if i % 3 else "structure", i))
        return calls(lambda: _resolve_overlaps(found))
    assert_linear(work, 2000)


def test_many_valid_tokens_in_one_body_scan_in_linear_work():
    det = Detector(PROFILE)

    def work(n):
        body = " ".join(make_ghp(i) for i in range(n)).encode()
        with counting() as box:
            assert len(det.scan(body)) == n
        return box[0]
    assert_linear(work, 1000)


# --- location, cap, decision, redaction, incidents --------------------------------------------------------

def _json_same_token(n: int) -> bytes:
    token = make_ghp("same")
    return json.dumps({"items": [{"note": f"k {token} v"} for _ in range(n)]}).encode()


def _json_distinct(n: int) -> bytes:
    return json.dumps({"items": [{"note": make_ghp(i)} for i in range(n)]}).encode()


def _form_distinct(n: int) -> bytes:
    return "&".join(f"f{i}={quote(make_ghp(i))}" for i in range(n)).encode()


def _decision_work(active, body: bytes, ctype: str) -> int:
    headers = [("Content-Type", ctype)]
    ctx = FlowContext("request", "api.example.com", "POST", "https", 443, "/")

    def run():
        scan = scan_message(active, "https://api.example.com/", headers, body)
        decision = decide(scan.findings, scan.unscannable, ctx, active)
        Incident.from_decision(decision, ctx).to_json()
        redactor = redact.Redactor({s: f.entry_id for s, f in scan.secrets.items()})
        redactor(body)
    return calls(run)


@pytest.mark.parametrize("make, ctype", [(_json_same_token, "application/json"),
                                         (_json_distinct, "application/json"),
                                         (_form_distinct, "application/x-www-form-urlencoded")])
def test_decision_work_grows_linearly_with_findings(active, make, ctype):
    assert_linear(lambda n: _decision_work(active, make(n), ctype), 400)


def test_first_findings_get_exact_locations_the_rest_are_counted(active):
    body = _json_distinct(250)
    scan = scan_message(active, None, [("Content-Type", "application/json")], body)
    assert len(scan.findings) == 250
    assert [f.location for f in scan.findings[:100]] == [f"body:json:$.items[{i}].note" for i in range(100)]
    assert {f.location for f in scan.findings[100:]} == {"body:json"}
    ctx = FlowContext("request", "api.example.com", "POST", "https", 443, "/")
    decision = decide(scan.findings, scan.unscannable, ctx, active)
    assert decision.enforcement == "block" and len(decision.acted) == 250
    record = json.loads(Incident.from_decision(decision, ctx).to_json())
    assert len(record["findings"]) == 100 and record["findings_omitted"] == 150
    assert "and 249 more" in Incident.from_decision(decision, ctx).describe()


def test_max_findings_is_a_setting(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("profile: small\nsettings:\n  max_findings: 3\n")
    profile = load_profiles([builtin_profile_path(), path])
    assert profile.settings.max_findings == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: bad\nsettings:\n  max_findings: 0\n")
    with pytest.raises(ValueError, match=r"bad.yaml:3: settings.max_findings: must be >= 1"):
        load_profiles([builtin_profile_path(), bad])
    act = Active(profile, Detector(profile), Limits.from_settings(profile.settings), 1)
    scan = scan_message(act, None, [("Content-Type", "application/json")], _json_distinct(5))
    assert [f.location for f in scan.findings] == [f"body:json:$.items[{i}].note" for i in range(3)] + ["body:json"] * 2


def test_repeated_token_locations_are_exact(active):
    token = make_ghp("rep")
    body = json.dumps({"a": [token, "x", {"b": f"y {token}"}], "c": token}).encode()
    scan = scan_message(active, None, [("Content-Type", "application/json")], body)
    assert [f.location for f in scan.findings] == ["body:json:$.a[0]", "body:json:$.a[2].b", "body:json:$.c"]


def test_form_locations_are_exact_and_never_echo_a_secret_name(active):
    t1, t2 = make_ghp(1), make_ghp(2)
    body = f"a={t1}&{t2}=v&c={t1}".encode()
    scan = scan_message(active, None, [("Content-Type", "application/x-www-form-urlencoded")], body)
    assert [f.location for f in scan.findings] == ["body:form:a", "body:form", "body:form:c"]


def test_redactor_replaces_every_secret_in_one_pass():
    secrets = {make_ghp(i): "github-pat" for i in range(10)}
    data = " | ".join(list(secrets) * 3).encode()
    out, done = redact.Redactor(secrets)(data)
    assert done == set(secrets)
    assert out == " | ".join(["[REDACTED:github-pat]"] * 30).encode()
    scrub = redact.Scrubber({s: "ghp_…" for s in secrets})
    assert scrub(data.decode()) == " | ".join(["ghp_…"] * 30)


# --- prefilter false starts -------------------------------------------------------------------------------

@pytest.mark.skipif(not hyperscan_available(), reason="heads are checked by the Hyperscan prefilter")
def test_public_pem_headers_never_reach_python():
    det = Detector(PROFILE, backend="hyperscan")
    text = b"".join(b"-----BEGIN %s-----\nMIIBfoo\n-----END %s-----\n" % (k, k)
                    for k in (b"CERTIFICATE", b"PUBLIC KEY", b"CERTIFICATE REQUEST", b"X509 CRL") * 50)
    assert det.prefilter.find(text) == []
    assert len(det.prefilter.find_literals(text)) == 200  # the literal keyword is there (stream hold-back)


def test_private_key_header_variants_each_get_a_head():
    heads = {h for h, _ in detector_mod._heads(PROFILE_ENTRY("private-key-pem").pattern)}
    decoded = {bytes(int(x, 16) for x in h.split(b"\\x")[1:]) for h in heads}
    assert decoded == {b" RSA PRIVATE KEY", b" EC PRIVATE KEY-", b" DSA PRIVATE KEY", b" ENCRYPTED PRIVA",
                       b" PRIVATE KEY----"}


def test_inline_case_insensitive_groups_stop_the_head():
    assert detector_mod._heads("x(?i:abc)[0-9]{4}") == ((b"\\x78", 1),)
    assert detector_mod._heads("(?i)abc") == ((b"", 0),)


def PROFILE_ENTRY(entry_id):
    return next(e for e in PROFILE.entries if e.id == entry_id)


def test_settings_default_max_findings():
    assert Settings().max_findings == 100

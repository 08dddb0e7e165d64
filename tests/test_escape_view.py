"""The escape view of text no parser unescaped (extract.escapes.escaped_view): with the detector's widest token as
its window it decodes only the stretches near an escape of an ASCII character, and finds every token the whole
decoded text shows."""

from __future__ import annotations

import json
import random
import urllib.parse

import pytest

from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import builtin_profile_path, load_profiles
from dlproxy.extract import Limits, extract_http
from dlproxy.extract.escapes import escaped_view
from dlproxy.inspect.policy import Active
from dlproxy.inspect.scanning import scan_message
from tokens import make_ghp

WORDS = "the quick brown fox jumps over a lazy dog while the proxy reads every request".split()


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector(load_profiles([builtin_profile_path()]))


def _prose(rng: random.Random, size: int) -> str:
    out, n = [], 0
    while n < size:
        w = rng.choice(WORDS)
        out.append(w)
        n += len(w) + 1
    return " ".join(out)


def _hide(token: str, how: str) -> str:
    if how == "pct-all":
        return "".join(f"%{c:02X}" for c in token.encode())
    if how == "pct-first":
        return f"%{ord(token[0]):02X}" + token[1:]
    if how == "pct-double":
        return urllib.parse.quote("".join(f"%{c:02X}" for c in token.encode()), safe="")
    if how == "u-last":
        return token[:-1] + f"\\u{ord(token[-1]):04x}"
    if how == "brace-all":
        return "".join(f"\\u{{{ord(c):x}}}" for c in token)
    if how == "ref-dec":
        return "".join(f"&#{ord(c)};" for c in token)
    if how == "ref-hex-first":
        return f"&#x{ord(token[0]):x};" + token[1:]
    if how == "x-middle":
        mid = len(token) // 2
        return token[:mid] + f"\\x{ord(token[mid]):02x}" + token[mid + 1:]
    raise AssertionError(how)


HOWS = ("pct-all", "pct-first", "pct-double", "u-last", "x-middle", "brace-all", "ref-dec", "ref-hex-first")


def _secrets(detector: Detector, data: bytes | None) -> set[bytes]:
    return {data[f.start:f.end] for f in detector.scan(data)} if data else set()


@pytest.mark.parametrize("seed", range(12))
def test_windowed_view_finds_what_the_whole_view_finds(detector, seed):
    rng = random.Random(seed)
    parts, tokens = [], []
    for i in range(rng.randint(1, 4)):
        parts.append(_prose(rng, rng.randint(2_000, 120_000)))
        parts.append(" café=%C3%A9 \\u00e9 50% off ")  # escapes of non-ASCII characters, a bare percent sign
        token = make_ghp(f"view-{seed}-{i}")
        tokens.append(token.encode())
        parts.append(rng.choice(("", "key=", "\n", "x")) + _hide(token, rng.choice(HOWS)))
    parts.append(_prose(rng, rng.randint(0, 50_000)))
    text = " ".join(parts).encode()
    whole = escaped_view(text)
    windowed = escaped_view(text, detector.max_token_len)
    assert _secrets(detector, windowed) == _secrets(detector, whole) == set(tokens)


def test_sparse_escapes_decode_a_small_part_of_a_large_text(detector):
    rng = random.Random(5)
    token = make_ghp("sparse")
    text = (_prose(rng, 400_000) + " url=https://x.test/?t=" + _hide(token, "pct-all") + " "
            + _prose(rng, 400_000)).encode()
    view = escaped_view(text, detector.max_token_len)
    assert _secrets(detector, view) == {token.encode()}
    assert len(view) <= 2 * detector.max_token_len + 200


@pytest.mark.parametrize("how", HOWS)
def test_every_kind_of_escape_is_decoded(detector, how):
    token = make_ghp(f"kind-{how}")
    assert _secrets(detector, escaped_view(("text " + _hide(token, how) + " more").encode())) == {token.encode()}


def test_escapes_of_non_ascii_characters_make_no_view():
    text = ("résumé=r%C3%A9sum%C3%A9 caf\\u00e9 \\u4e2d\\u6587 &#233; \\u{e9} &amp; " * 5000).encode()
    assert escaped_view(text) is None
    assert escaped_view(text, 20_000) is None
    assert escaped_view(b"ghp%5Fabc") == b"ghp_abc"


def test_dense_escapes_decode_the_whole_text(detector):
    token = make_ghp("dense")
    text = (("%20word%2F" * 20_000) + _hide(token, "pct-all")).encode()
    assert escaped_view(text, detector.max_token_len) == escaped_view(text)


def test_a_percent_encoded_token_in_a_large_json_prompt_is_found(detector):
    """Through scan_message (the proxy's buffered path): the JSON view, then the escape view of its text."""
    rng = random.Random(9)
    token = make_ghp("json-url")
    content = _prose(rng, 300_000) + " see https://x.test/cb?token=" + _hide(token, "pct-all") + " " \
        + _prose(rng, 300_000)
    body = json.dumps({"messages": [{"role": "user", "content": content}]}).encode()
    profile = load_profiles([builtin_profile_path()])
    active = Active(profile, detector, Limits.from_settings(profile.settings))
    scan = scan_message(active, "https://api.example/v1/chat", [("Content-Type", "application/json")], body)
    assert {f.fingerprint for f in scan.findings} == {detector.scan(token.encode())[0].fingerprint}
    ext = extract_http(url=None, headers=[("Content-Type", "application/json")], body=body, limits=active.limits,
                       token_window=detector.max_token_len)
    views = [s for s in ext.segments if s.location.endswith(":unescaped")]
    assert len(views) == 1 and len(views[0].data) < len(body) // 4


@pytest.mark.parametrize("text, view", [
    (b'k: "ghp_ab\\\n    cd"\n', b'k: "ghp_abcd"\n'),  # YAML/TOML continuation: the indentation goes too
    (b'k="ghp_ab\\\r\ncd"', b'k="ghp_abcd"'),  # shell, C
])
def test_a_backslash_newline_continuation_makes_a_view(text, view):
    assert escaped_view(text) == view
    assert escaped_view(text * 2000, 100) is not None
    assert escaped_view(b"a line\nwith no continuation\\ at all") is None

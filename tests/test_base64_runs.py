"""The base64-run search: hex-only runs (SHAs, ids) never become candidates, and the bulk (Hyperscan) finder
returns the same candidates as the plain search otherwise."""

from __future__ import annotations

import base64
import hashlib
import random
import re

import pytest

from dlproxy.extract import Limits, base64blobs, extract_file, quickcheck
from tokens import make_ghp

needs_hyperscan = pytest.mark.skipif(quickcheck.hyperscan is None, reason="the bulk finder needs Hyperscan")


def _log(lines: int, blob: bytes = b"") -> bytes:
    out = [f"commit {hashlib.sha1(str(i).encode()).hexdigest()} id={hashlib.md5(str(i).encode()).hexdigest()}\n"
           for i in range(lines)]
    out.insert(lines // 2, f"attachment: {blob.decode()}\n")
    return "".join(out).encode()


@needs_hyperscan
def test_hex_runs_are_not_candidates_and_cost_no_callback(monkeypatch):
    token = make_ghp("b64run")
    blob = base64.b64encode(f"config file\nGITHUB_TOKEN={token}\n".encode())
    data = _log(3000, blob)
    assert len(data) > quickcheck.MIN_BYTES
    spans = base64blobs.find_blobs(data)
    # the first BULK_AFTER runs are found one by one (hex ones too); the rest in bulk, hex-only runs left out
    assert len(spans) == base64blobs.BULK_AFTER + 1
    assert [data[s:e] for s, e in spans if data[s:e].translate(None, base64blobs._HEX)] == [blob]
    finder = quickcheck.run_ends(base64blobs._B64, base64blobs._HEX, base64blobs.MIN_BLOB, base64blobs._HEX_TEXT)
    assert len(finder.ends(data)) == 1  # 6000 hex runs, one report
    ext = extract_file("log.txt", data, Limits())
    assert any(seg.location.endswith(":base64") and token.encode() in seg.data for seg in ext.segments)


@needs_hyperscan
def test_hex_text_past_the_first_runs_of_a_large_segment_is_decoded():
    """Text written as hex (`key=6768705f…`) deep inside a large log of SHAs: the bulk finder leaves out hex-only
    runs, except those that spell text."""
    token = make_ghp("hexdeep")
    hexed = f"export GITHUB_TOKEN={token}\n".encode().hex().encode()
    data = _log(3000, hexed)
    assert data.index(hexed) > 64 * 1024
    assert any(data[s:e] == hexed for s, e in base64blobs.find_blobs(data))
    ext = extract_file("log.txt", data, Limits())
    assert any(seg.location.endswith(":hex") and token.encode() in seg.data for seg in ext.segments)


def test_one_long_run_is_found_without_the_bulk_finder(monkeypatch):
    """An inline image (one megabyte-long run) is found by one find on the translation: the bulk finder, whose
    cost grows inside long runs, is only for segments with many runs."""
    monkeypatch.setattr(quickcheck, "run_ends", lambda *a: pytest.fail("bulk finder used"))
    image = base64.b64encode(random.Random(3).randbytes(600_000))
    data = b'{"messages":[{"content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,' + image \
        + b'"}}]}]}'
    assert [data[s:e] for s, e in base64blobs.find_blobs(data)] == [image]


def test_hex_or_base32_is_decided_past_the_head():
    """A blob whose first characters rule out hex and base32 is base64 (an image's megabyte is not translated
    whole); one whose head is hex is looked at whole."""
    assert base64blobs._hex_or_base32(base64.b64encode(random.Random(4).randbytes(3000))) is False
    assert base64blobs._hex_or_base32(b"6768705f" * 40) is True
    assert base64blobs._hex_or_base32(base64.b32encode(b"x" * 100)) is True
    assert base64blobs._hex_or_base32(b"6768705f" * 40 + b"g") is False


@needs_hyperscan
def test_bulk_finder_matches_the_plain_search(monkeypatch):
    rng = random.Random(7)
    alphabet = base64blobs._B64 + b" \n\r=.-:\"'"
    hex_only = re.compile(rb"-*[0-9a-fA-F]+=*\Z")
    used = []
    real = quickcheck.run_ends
    monkeypatch.setattr(quickcheck, "run_ends", lambda *a: used.append(a) or real(*a))
    for _ in range(40):
        pieces: list[bytes] = []
        while sum(map(len, pieces)) < 100_000:
            r = rng.random()
            if r < 0.3:
                pieces.append(bytes(rng.choice(b"0123456789abcdef") for _ in range(rng.randint(20, 70))))
            elif r < 0.6:
                pieces.append(bytes(rng.choice(base64blobs._B64) for _ in range(rng.randint(1, 90))))
            else:
                pieces.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 10))))
        data = b"".join(pieces)
        bulk = base64blobs.find_blobs(data)
        with monkeypatch.context() as m:
            m.setattr(quickcheck, "run_ends", lambda *a: None)
            plain = base64blobs.find_blobs(data)
        # The plain search also returns hex-only runs; past its first runs the bulk one drops them (dash-led ones
        # excepted).
        assert [s for s in plain if not hex_only.match(data[s[0]:s[1]])] == \
            [s for s in bulk if not hex_only.match(data[s[0]:s[1]])]
        assert set(bulk) <= set(plain)
    assert len(used) == 40  # every sample went to the bulk finder after its first runs


def test_wrapped_block_after_padding_is_found_whole():
    body = base64.encodebytes(("secret file " * 40).encode())
    data = b"x" * 70_000 + b" QUJD= " + body
    assert any(data[s:e].replace(b"\n", b"") == body.replace(b"\n", b"") for s, e in base64blobs.find_blobs(data))


# --- base64 wrapped at fewer than 24 columns -----------------------------------------------------------------


def _wrap(data: bytes, width: int, indent: str = "", eol: str = "\n") -> str:
    raw = base64.b64encode(data).decode()
    return eol.join(indent + raw[i:i + width] for i in range(0, len(raw), width))


@pytest.mark.parametrize("width", list(base64blobs.SHORT_WIDTHS))
@pytest.mark.parametrize("bulk", [True, False], ids=["hyperscan", "regex"])
def test_short_wrapped_blocks_are_found_at_every_width(width, bulk, monkeypatch):
    if bulk and quickcheck.hyperscan is None:
        pytest.skip("needs Hyperscan")
    if not bulk:
        monkeypatch.setattr(quickcheck, "line_blocks", lambda *a: None)
    token = make_ghp(f"short{width}")
    payload = f"TOKEN={token}\n".encode()
    for before, after in (("", ""), ("notes\n", "\nend of notes\n"), ("x\n", "\n"), ("data:\n", "")):
        for indent, eol in (("", "\n"), ("  ", "\n"), ("", "\r\n"), ("\t", "\r\n")):
            data = (before + _wrap(payload, width, indent, eol) + after).encode()
            decoded = [base64blobs.b64decode(data[s:e]) for s, e in base64blobs.find_short_blocks(data)]
            assert payload in decoded, (width, before, indent, eol)
            ext = extract_file("notes.txt", data, Limits())
            assert any(token.encode() in seg.data for seg in ext.segments if seg.location.endswith(":base64"))


def test_a_line_of_the_same_width_before_a_padded_block_is_left_out():
    token = make_ghp("heading")
    block = _wrap(f"k={token}\n".encode(), 5)
    assert block.endswith("=")
    data = ("hello\n" + block + "\nbye\n").encode()
    assert [base64blobs.b64decode(data[s:e]) for s, e in base64blobs.find_short_blocks(data)] == \
        [f"k={token}\n".encode()]


@pytest.mark.parametrize("bulk", [True, False], ids=["hyperscan", "regex"])
def test_word_and_number_lists_and_code_hold_no_short_block(bulk, monkeypatch):
    """Equal-length words or numbers one per line look like a wrapped block but hold no uppercase letter or
    `+/-_`, which base64 of a token always does; code lines hold spaces and punctuation."""
    if bulk and quickcheck.hyperscan is None:
        pytest.skip("needs Hyperscan")
    if not bulk:
        monkeypatch.setattr(quickcheck, "line_blocks", lambda *a: None)
    rng = random.Random(11)
    words = sorted("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9)))
                   for _ in range(6000))
    numbers = [str(rng.randint(1000, 9999)) for _ in range(6000)]
    code = ["    return self._cache[key]", "}", "def f(x, y):", "    pass", "else:", "if x:"] * 1000
    for lines in (words, numbers, code):
        data = "\n".join(lines).encode()[:quickcheck.MIN_BYTES]
        assert base64blobs.find_short_blocks(data) == []


@needs_hyperscan
def test_lists_cost_one_bulk_pass_and_no_step_per_line(monkeypatch):
    """Large word and number lists: the Hyperscan pass reports nothing, so no line is looked at in Python."""
    steps = []
    monkeypatch.setattr(base64blobs, "_block_start", lambda *a: steps.append(a) or 0)
    rng = random.Random(12)
    words = "\n".join(sorted("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9)))
                             for _ in range(60000))).encode()
    numbers = "\n".join(str(rng.randint(1000, 9999)) for _ in range(60000)).encode()
    assert base64blobs.find_short_blocks(words) == base64blobs.find_short_blocks(numbers) == []
    assert steps == []


@needs_hyperscan
def test_short_blocks_the_same_with_and_without_hyperscan(monkeypatch):
    rng = random.Random(13)
    for i in range(30):
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.4:
                parts.append(_wrap(rng.randbytes(rng.randint(10, 80)), rng.choice(base64blobs.SHORT_WIDTHS),
                                   rng.choice(("", " ", "  ")), rng.choice(("\n", "\r\n"))))
            elif r < 0.7:
                parts.append("\n".join(rng.choice(("alpha", "Beta", "gamma", "Delta", "12345")) for _ in range(5)))
            else:
                parts.append("some prose line here, with words\nand another one.")
        data = "\n".join(parts).encode()
        bulk = base64blobs.find_short_blocks(data)
        with monkeypatch.context() as m:
            m.setattr(quickcheck, "line_blocks", lambda *a: None)
            plain = base64blobs.find_short_blocks(data)
        assert sorted(set(bulk)) == sorted(set(plain)), i


@pytest.mark.parametrize("bulk", [True, False], ids=["hyperscan", "regex"])
def test_short_block_search_never_raises_and_spans_stay_inside(bulk, monkeypatch):
    """Padded blocks whose quanta do not add up (a line too many before them, or too few lines) are dropped, never an
    error: an exception here would make a clean body unscannable."""
    if bulk and quickcheck.hyperscan is None:
        pytest.skip("needs Hyperscan")
    if not bulk:
        monkeypatch.setattr(quickcheck, "line_blocks", lambda *a: None)
    rng = random.Random(21)
    samples = [b"abcd\n7S5iLLHFbjkIOP4\r\nhAOPyQvOn+evo4d\r\ngBc7XRx",
               b"XtAYIjwS7z5nAbaHzEtmJFV\r\nAH8vaFpbdkDpqgzohtqQTob\r\nHUg/8R4mLC+mnO4ku2SYTfx"]
    alphabet = b"ABCDabcd0123+/=-_ \t\r\n\n\n.x"
    for _ in range(3000):
        if rng.random() < 0.5:
            samples.append(bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 120))))
        else:
            w = rng.choice(base64blobs.SHORT_WIDTHS)
            samples.append((rng.choice(["", "ABCD\n", "abcd\n"]) + _wrap(rng.randbytes(rng.randint(5, 40)), w,
                            eol=rng.choice(["\n", "\r\n"])) + rng.choice(["", "\n", "==", "\n==", "x"])).encode())
    for data in samples:
        assert all(0 <= s < e <= len(data) for s, e in base64blobs.find_short_blocks(data)), data


def test_hex_wrapped_over_lines_is_joined():
    """`xxd -p` output: hex of a file at 60 columns; the lines are one run of hex, not base64."""
    token = make_ghp("xxd")
    text = f"# deploy settings\nGITHUB_TOKEN={token}\nREGION=eu-west-1\n".encode()
    hexed = "\n".join(text.hex()[i:i + 60] for i in range(0, 2 * len(text), 60)) + "\n"
    ext = extract_file("dump.hex", ("hexdump follows\n" + hexed).encode(), Limits())
    assert any(seg.location.endswith(":hex") and token.encode() in seg.data for seg in ext.segments)

"""stream.py: incremental byte-stream scanning with minimal hold-back.

Properties checked over random chunkings (hypothesis plus fixed seeds): a clean stream comes out byte-identical;
a token split across any chunk boundaries is cut with at most a proper head of its public literal prefix gone out
(never a byte past it); bytes that cannot be part of a token are released at once; redaction keeps or changes the
length as asked. Content-Encoding decoding: test_content_encoding.py.
"""

from __future__ import annotations

import base64
import random
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import dlproxy.inspect.stream as stream_mod
import stream_support
from dlproxy.engine.detector import Detector
from dlproxy.engine.profile import load_profiles
from dlproxy.inspect.stream import (
    BLOCK,
    PASS,
    REDACT,
    ByteStreamScanner,
    ScanWindow,
    Verdicts,
    marker,
)
from stream_support import Judge, assert_cut_at_a_head
from tokens import PUBLIC_GHP, make_ghp

# the shared Detector fixtures, bound here so pytest finds them in this module
builtin, ghp_only, detector = stream_support.builtin, stream_support.ghp_only, stream_support.detector


def chunked(data: bytes, rng: random.Random, max_size: int = 17) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, max_size)
        out.append(data[i:i + n])
        i += n
    return out


def run(scanner: ByteStreamScanner, chunks) -> tuple[bytes, list[int]]:
    """(everything forwarded, bytes forwarded after each call)."""
    out, sizes = [], []
    for c in chunks:
        got = scanner.feed(c)
        assert all(got), "never an empty chunk (b'' would end an HTTP/1 chunked body)"
        out += got
        sizes.append(sum(map(len, got)))
    out += scanner.finish()
    return b"".join(out), sizes


CLEAN_TEXTS = [
    b"The quick brown fox jumps over the lazy dog.\n" * 20,
    b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "gh ghp ghp_ ghp_short sk- AKIA"}]}' * 5,
    bytes(range(256)) * 8,
    b"ghp_" + b"A" * 36 + b" ghp_zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ0mLq10 (checksum off by one)",
]


@pytest.mark.parametrize("text", CLEAN_TEXTS, ids=["prose", "json", "binary", "lookalikes"])
@pytest.mark.parametrize("seed", range(25))
def test_clean_stream_is_byte_identical_for_any_chunking(detector, text, seed):
    judge = Judge()
    out, _ = run(ByteStreamScanner(detector, judge), chunked(text, random.Random(seed)))
    assert out == text
    assert judge.calls == []


@pytest.mark.parametrize("seed", range(30))
def test_token_split_across_chunks_is_cut_within_its_public_prefix(detector, seed):
    token = make_ghp(seed)
    before = b"Here is your config: TOKEN="
    data = before + token.encode() + b"\nand some more text after it\n"
    rng = random.Random(seed)
    judge = Judge(BLOCK)
    scanner = ByteStreamScanner(detector, judge)
    out, _ = run(scanner, chunked(data, rng, max_size=rng.choice([1, 3, 7, 40])))
    assert scanner.stopped
    assert out.startswith(before)  # everything before the token...
    assert_cut_at_a_head(out, before)  # ...and at most "ghp" of it: never a byte past the public prefix
    assert len(judge.calls) == 1 and judge.calls[0][0].entry_id == "github-classic-pat"
    assert judge.calls[0][0].start == len(before) and judge.calls[0][0].location == "body"
    assert scanner.feed(b"more") == [] and scanner.finish() == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=st.binary(max_size=60), right=st.binary(max_size=60), cuts=st.lists(st.integers(0, 200), max_size=8))
@example(left=b"\\\n", right=b"", cuts=[])  # a YAML/TOML line continuation glued to the token (cut there)
@example(left=b"key: \"x\\\r\n  ", right=b"\"", cuts=[7, 9])
@example(left=b"x\x01", right=b"", cuts=[])  # a zlib header: the body is collected whole
@example(left=b"\xfe\xff", right=b"", cuts=[])  # a UTF-16 BOM before ASCII: a lie, the bytes are scanned
def test_no_token_byte_past_a_head_of_its_prefix_is_ever_released_hypothesis(ghp_only, left, right, cuts):
    token = PUBLIC_GHP.encode()
    data = left + b" " + token + b" " + right
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    scanner = ByteStreamScanner(ghp_only, Judge(BLOCK))
    out, _ = run(scanner, chunks)
    start = data.index(token)
    assert scanner.stopped
    if stream_mod.whole_body(data, "", ""):
        assert out == b""  # a body that starts as an archive or a binary file is collected whole: nothing went out
        return
    before = data[:start]
    if not out.startswith(before):  # a line continuation right before the token joins it to what precedes it in
        held = before[len(out):]    # the escape view: the cut is at the continuation, nothing of the token went out
        assert before.startswith(out) and re.fullmatch(rb"(?:\\\r?\n[ \t]*)+", held), held
        return
    assert_cut_at_a_head(out, before)  # the first occurrence is where it stops, at most a proper head of "ghp_" out


def test_bytes_that_cannot_be_a_token_are_released_at_once(ghp_only):
    scanner = ByteStreamScanner(ghp_only, Judge())
    assert scanner.feed(b"hello world. ") == [b"hello world. "]
    assert scanner.feed(b"partial g") == [b"partial g"]  # a head of ghp_ is public: not held
    assert scanner.feed(b"h") == [b"h"]
    assert scanner.feed(b"p_abc") == []  # ghp_ + 3: a token may be in flight
    assert scanner.feed(b"!") == [b"p_abc!"]  # decided: not a token
    assert scanner.feed(b" ghp_") == [b" "]  # the whole keyword: its token may follow
    assert scanner.feed(b"x ") == [b"ghp_x "]
    assert scanner.finish() == []


def _open_run(text: bytes) -> int:
    """The reference for Base64Run, on the whole text: where its trailing base64 run starts. A run is base64
    characters; `=` followed by more of them is a break, a `\r` at the very end is not (yet); a block of wrapped
    lines (equal lengths, a multiple of 4, at least 16) counts as one run."""
    classes = bytearray(text.translate(stream_mod._B64_CLASS))
    for i in range(len(text) - 1):
        if text[i] == ord("=") and classes[i + 1] == ord("a"):
            classes[i] = ord(" ")
    if text.endswith(b"\r"):
        classes[-1] = ord("a")
    k = classes.rfind(b" ") + 1
    width = None
    while k >= 2 and text[k - 1] == 0x0A:
        nl = k - 2 if text[k - 2] == 0x0D else k - 1
        line_start = classes.rfind(b" ", 0, nl) + 1
        n = nl - line_start
        if n < 16 or n % 4 or (width is not None and n != width):
            break
        width, k = n, line_start
    return k


def _base64_hold(seen: bytes) -> int:
    """Where the scanner's base64 view holds from: 3 characters into an open run of 8 or more base64 characters
    (a block of wrapped lines counts as one run) that is not a short word, which may be a blob decoded once it
    ends."""
    start = _open_run(seen)
    run = seen[start:]
    word = len(run) < 24 and run.isalpha() and (run[1:].islower() or run.isupper())
    return start + 3 if len(run) >= 8 and not word else len(seen)


B64_PIECES = [b"QUJD", b"ZGVm", b"+/", b"-_", b"=", b"==", b"\n", b"\r\n", b" ", b"x", b"a" * 60, b"A" * 16,
              b"Zm9vYmFy" * 8, b"\n  ", b".", b"\"", b"TOKEN="]


@pytest.mark.parametrize("seed", range(40))
def test_base64_run_pushed_piecewise_matches_the_whole_text_reference(seed):
    """Base64Run looks only at new bytes and the run's shape; at every step it agrees with the reference on all the
    text seen, and what it closes is exactly the text before the open run."""
    rng = random.Random(seed)
    lines = [bytes(rng.choice(b"ABCDabcd0189+/") for _ in range(rng.choice([16, 60, 64, 76]))) for _ in range(3)]
    pieces = B64_PIECES + [line + b"\n" for line in lines] + [line + b"\r\n" for line in lines]
    text = b"".join(rng.choice(pieces) for _ in range(rng.randrange(5, 120)))
    run, closed, seen, pos = stream_mod.Base64Run(), b"", b"", 0
    while pos < len(text):
        n = rng.choice([1, 2, 3, 7, 40, 500])
        chunk, pos = text[pos:pos + n], pos + n
        seen += chunk
        part, at = run.push(chunk, len(seen) - len(chunk))
        assert at == len(closed) or not part
        closed += part
        assert run.at == _open_run(seen) and closed == seen[:run.at] and bytes(run.data) == seen[run.at:], (seed, seen)
    part, at = run.close(b"", len(seen))
    assert closed + part == seen


def test_hold_back_follows_the_detector_exactly(builtin):
    """Whatever the profile, the scanner releases exactly up to Detector.undecided_from, or less while a base64 run
    that may be a blob is open."""
    rng = random.Random(7)
    words = [b"alpha", b"beta ", b"gh", b"p_", b"AzCa", b"+", b"\n", b"xoxb-", b"12", b" ", b"sk-", b"."]
    text = b"".join(rng.choice(words) for _ in range(400))
    scanner = ByteStreamScanner(builtin, Judge(PASS))
    released = 0
    seen = b""
    for chunk in chunked(text, rng, 9):
        seen += chunk
        before = released
        released += sum(map(len, scanner.feed(chunk)))
        # undecided_from may answer lower for a longer buffer (conservatively); released bytes stay released
        assert released == max(min(builtin.undecided_from(seen), _base64_hold(seen)), before)


SENTENCE = (b"Streaming proxies must forward every token of a reply as soon as it arrives, so that the user sees the "
            b"answer appear word by word, while still checking that nothing secret slips through. ")


def prose(n: int) -> bytes:
    return (SENTENCE * (n // len(SENTENCE) + 1))[:n]


def needs_hyperscan(detector) -> None:
    if detector.backend != "hyperscan":
        pytest.skip("the window's pass looks for long base64 runs with Hyperscan only")


def test_a_clean_download_takes_one_prefilter_pass_per_chunk(detector):
    """Chunks with no run of base64 long enough to begin a blob get no blob look of their own: the window's one
    prefilter pass said so (counted in blob_prechecks). Chunks that hold such a run still get it."""
    needs_hyperscan(detector)
    body = b'{"messages": [{"role": "user", "content": "' + prose(300_000) + b'"}]}'
    chunks = [body[i:i + 16384] for i in range(0, len(body), 16384)]
    scanner = ByteStreamScanner(detector, Judge())
    out, _ = run(scanner, chunks)
    assert out == body and scanner.text.blob_prechecks == 0
    blob = base64.b64encode(prose(3000))  # clean, but a blob: decoded and scanned when its run ends
    body = prose(40_000) + b" " + blob + b" " + prose(40_000)
    judge = Judge()
    scanner = ByteStreamScanner(detector, judge)
    out, _ = run(scanner, [body[i:i + 16384] for i in range(0, len(body), 16384)])
    assert out == body and judge.calls == []
    assert 1 <= scanner.text.blob_prechecks <= 2  # the chunk that closed the run (and the one before it)


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "base64"])
def test_a_token_split_at_every_boundary_is_cut_on_the_one_pass_path(detector, encoded):
    """A token (or a base64 blob holding one) after clean prose, the stream split in two at every offset around it:
    always cut; of a plain token at most a proper head of its prefix goes out, of a blob less than the run a blob
    begins with; and the first chunk took the one-pass path whenever it held less than such a run."""
    needs_hyperscan(detector)
    token = make_ghp("every").encode()
    secret = base64.b64encode(b"export GITHUB_TOKEN=" + token) if encoded else token
    before = prose(3000) + b"TOKEN="
    data = before + secret + b" and the rest of the reply. " + prose(600)
    start = len(before)
    for cut in range(start - 40, start + len(secret) + 3):
        scanner = ByteStreamScanner(detector, Judge(BLOCK))
        out = scanner.feed(data[:cut])
        if cut - start < stream_mod.base64blobs.MIN_BLOB:
            assert scanner.text.blob_prechecks == 0, cut
        out += scanner.feed(data[cut:]) + scanner.finish()
        out = b"".join(out)
        assert scanner.stopped, cut
        if encoded:
            assert data.startswith(out) and len(out) < start + stream_mod.base64blobs.MIN_BLOB, cut
        else:
            assert_cut_at_a_head(out, before)


def test_a_chunk_released_whole_is_the_chunk_itself(ghp_only):
    """Nothing held before it, nothing of it held: the window hands the chunk back as it is (no copy)."""
    window = ScanWindow(ghp_only, Judge())
    first, second = b"hello world. " * 10, b"more words here, "
    assert window.push(first)[0] is first and window.push(second)[0] is second
    assert window.push(b"and ghp_")[0] == b"and "  # the keyword is held
    third = b"x and on. "
    released = window.push(third)[0]
    assert released == b"ghp_" + third  # the held bytes and the chunk: joined


def test_redact_replaces_the_secret_and_keeps_everything_else(detector):
    token = make_ghp("r")
    data = b"a=" + token.encode() + b"&b=" + token.encode() + b"\n"
    for seed in range(10):
        judge = Judge(REDACT)
        out, _ = run(ByteStreamScanner(detector, judge), chunked(data, random.Random(seed)))
        # a head of "ghp_" that went out before the keyword was complete stays; the marker replaces the rest
        assert re.fullmatch(rb"a=(g|gh|ghp)?\[REDACTED:github-classic-pat\]&b=(g|gh|ghp)?"
                            rb"\[REDACTED:github-classic-pat\]\n", out), out
        assert len(judge.calls) == 1  # one judgement per secret per stream


def test_fixed_length_redaction_keeps_the_length(ghp_only):
    token = make_ghp("f").encode()
    data = b"x " + token + b" y"
    out, _ = run(ByteStreamScanner(ghp_only, Judge(REDACT), fixed_length=True), [data[:2], data[2:6], data[6:20], data[20:]])
    assert len(out) == len(data) and token not in out
    assert out == b"x " + marker("github-classic-pat", len(token)) + b" y"


def test_redaction_after_a_released_head_of_the_prefix(ghp_only):
    """A head of "ghp_" went out before the rest of the token arrived: the marker replaces the unreleased rest,
    or, when the length must be kept, same-width `*`."""
    token = make_ghp("h").encode()
    chunks = [b"x g", token[1:12], token[12:] + b" y"]
    scanner = ByteStreamScanner(ghp_only, Judge(REDACT))
    assert [scanner.feed(c) for c in chunks] == [[b"x g"], [], [b"[REDACTED:github-classic-pat] y"]]
    fixed, _ = run(ByteStreamScanner(ghp_only, Judge(REDACT), fixed_length=True), chunks)
    assert fixed == b"x g" + b"*" * (len(token) - 1) + b" y"
    window = ScanWindow(ghp_only, Judge(REDACT))
    assert window.push(b"x gh") == (b"x gh", [])
    assert window.push(token[2:] + b" ") == (b"[REDACTED:github-classic-pat] ", [(4, 2 + len(token),
                                                                                    marker("github-classic-pat"))])


FILLER = st.lists(st.sampled_from([b"", b" ", b"\n", b"x", b"g", b"gh", b"ghp", b"ghp_", b"ghp_short", b"token=",
                                   b"Here is your key: ", b'{"t": "', b'"}', b"-", b"_", b"sk-", b"AKIA"]),
                  max_size=6).map(b"".join)
SEP = st.sampled_from([b" ", b"\n", b"\t", b'"', b"=", b":", b"'"])


@pytest.mark.parametrize("fixed_length", [True, False], ids=["fixed-length", "marker"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seeds=st.lists(st.integers(0, 10**6), min_size=1, max_size=2), fillers=st.lists(FILLER, min_size=3, max_size=3),
       seps=st.lists(SEP, min_size=4, max_size=4), cuts=st.lists(st.integers(0, 10**4), max_size=8),
       prefix_cuts=st.lists(st.tuples(st.integers(0, 1), st.integers(1, 4)), max_size=3))
@example(seeds=[1, 1], fillers=[b"x", b"gh", b""], seps=[b" "] * 4, cuts=[], prefix_cuts=[(0, 1), (1, 3)])
@example(seeds=[2], fillers=[b"", b"", b""], seps=[b"="] * 4, cuts=[1, 2, 3, 4, 5], prefix_cuts=[])
def test_redaction_under_any_chunking_hypothesis(detector, fixed_length, seeds, fillers, seps, cuts, prefix_cuts):
    """One or two tokens in text, cut anywhere (cuts inside the "ghp_" prefix too, so a head of it may go out
    before the rest arrives): no token survives and a rescan finds nothing; a fixed-length body keeps its exact
    length and every byte outside the redacted secrets, otherwise each secret becomes a marker."""
    tokens = [make_ghp(seed).encode() for seed in seeds]
    data, starts = fillers[0], []
    for i, token in enumerate(tokens):
        data += seps[2 * i]
        starts.append(len(data))
        data += token + seps[2 * i + 1] + fillers[i + 1]
    points = {c % (len(data) + 1) for c in cuts}
    points |= {starts[i % len(starts)] + k for i, k in prefix_cuts}  # "g" | "hp_…", "gh" | "p_…", …, "ghp_" | "…"
    points = sorted(points | {0, len(data)})
    chunks = [data[a:b] for a, b in zip(points, points[1:], strict=False)]
    judge = Judge(REDACT)
    out, _ = run(ByteStreamScanner(detector, judge, fixed_length=fixed_length), chunks)
    assert all(token not in out for token in tokens), (chunks, out)
    assert detector.scan(out) == [], (chunks, out)
    spans = {(start, start + len(token)) for start, token in zip(starts, tokens, strict=True)}
    assert judge.calls and {(f.start, f.end) for call in judge.calls for f in call} <= spans  # repeats: judged once
    if fixed_length:
        assert len(out) == len(data)
        redacted = {i for a, b in spans for i in range(a, b)}
        assert all(out[i] == data[i] for i in range(len(data)) if i not in redacted), (chunks, out)
    else:
        assert out.count(b"[REDACTED:github-classic-pat]") == len(tokens), (chunks, out)


@pytest.mark.parametrize("width", [1, 5, 9, 10, 12, 29, 40, 80])
def test_marker_fits_any_width(width):
    m = marker("github-classic-pat", width)
    assert len(m) == width
    assert m == b"[REDACTED:github-classic-pat]" or width != len(b"[REDACTED:github-classic-pat]")


def test_pass_lets_the_secret_through_and_judges_it_once(ghp_only):
    token = make_ghp("p").encode()
    judge = Judge(PASS)
    data = (b"log me " + token + b" ") * 3
    out, _ = run(ByteStreamScanner(ghp_only, judge), chunked(data, random.Random(3)))
    assert out == data
    assert len(judge.calls) == 1


def test_one_judgement_per_secret_across_windows(ghp_only):
    token = make_ghp("v").encode()
    judge = Judge(BLOCK)
    verdicts = Verdicts(judge)
    a = ScanWindow(ghp_only, verdicts, "one")
    b = ScanWindow(ghp_only, verdicts, "two")
    a.push(b"x " + token + b" ", final=True)
    assert a.stopped and a.blocked_at == 2
    b.push(b"yy " + token, final=True)
    assert b.stopped and b.blocked_at == 3
    assert len(judge.calls) == 1


def test_a_token_longer_than_a_chunk_is_held_whole(ghp_only):
    token = make_ghp("long").encode()
    scanner = ByteStreamScanner(ghp_only, Judge(BLOCK))
    out = []
    for byte in token:
        out += scanner.feed(bytes([byte]))
    assert b"".join(out) == b"ghp" and scanner.stopped  # a head of the public prefix, nothing past it


def test_a_glued_checksummed_token_is_found_after_the_glue_was_released(ghp_only):
    """The checksum is the evidence: a token glued to token characters released long before is still cut."""
    token = make_ghp("glue").encode()
    before = b"x" * 5000
    judge = Judge(BLOCK)
    out, _ = run(ByteStreamScanner(ghp_only, judge), chunked(before + token + b" tail", random.Random(5), 64))
    assert len(judge.calls) == 1
    assert_cut_at_a_head(out, before)


def test_boundary_context_survives_release(tmp_path):
    """A shape-only token glued to a token character is not a token, even when the glue was released long before."""
    path = tmp_path / "shape.yaml"
    path.write_text(SHAPE_ONLY)
    shape_only = Detector(load_profiles([path]))
    data = b"x" * 5000 + b"tok_" + b"A1" * 18 + b" tail"
    assert shape_only.scan(b" " + data[5000:])  # found when not glued
    judge = Judge(BLOCK)
    out, _ = run(ByteStreamScanner(shape_only, judge), chunked(data, random.Random(5), 64))
    assert out == data and judge.calls == []


SHAPE_ONLY = """\
profile: shape-test
entries:
  - id: shape-token
    name: Shape-only token
    prefixes: ["tok_"]
    pattern: "[A-Za-z0-9]{36}"
"""


@pytest.mark.parametrize("mime, markup, source, view", [
    (False, False, b'a \\x67\\u{68}\\u0070 b', b"a ghp b"),
    (False, False, b"printf '\\147\\150p_' \\0", b"printf 'ghp_' \\0"),  # octal escapes of ASCII
    (False, False, b'k: "ab\\\n    cd"', b'k: "abcd"'),  # YAML/TOML line continuation
    (False, False, b"&#x67&#104;&#x70; x", b"ghp x"),  # numeric references with or without `;`
    (False, False, b"%67%68%70%5F %20 %C3%A9", b"ghp_ %20 %C3%A9"),  # only token characters' percent-escapes
    (False, False, b"a=\r\nb <![CDATA[c]]>", b"a=\r\nb <![CDATA[c]]>"),  # not MIME, not markup
    (True, False, b"ghp=\r\n_x =5F", b"ghp_x _"),  # quoted-printable in a MIME body
    (False, True, b"gh<![CDATA[p]]>_<!-- x -->a", b"ghp_a"),  # CDATA markers and comments in markup
])
def test_escape_view_kinds_at_every_split(mime, markup, source, view):
    """The stream's escape view decodes each kind wherever the chunks split it (an escape cut off by a chunk end
    waits for the next one) and maps back to the source."""
    from dlproxy.inspect.views import EscapeView

    for cut in range(len(source) + 1):
        v = EscapeView(mime=mime, markup=markup)
        out = v.feed(source[:cut]) + v.feed(source[cut:]) + v.feed(b"", final=True)
        assert out == view, cut
        assert v.to_source(len(view)) == len(source)


def test_escape_view_leaves_references_that_hide_no_token_character():
    """An HTML page is full of `&nbsp;`, `&mdash;`, `&amp;`: none can stand for a token's character, so they make
    no escape (no view, no per-reference work); `&lowbar;` and numeric references still do."""
    from dlproxy.inspect.views import EscapeView

    view = EscapeView()
    page = b"<p>one&nbsp;two &mdash; three &amp; four &lt;b&gt; &quot;x&quot; &hellip;</p>" * 50
    assert view.feed(page, final=True) == page and not view.escaped
    view = EscapeView()
    assert view.feed(b"ghp&lowbar;abc &#103;hp&#x5f;x", final=True) == b"ghp_abc ghp_x" and view.escaped

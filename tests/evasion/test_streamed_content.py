"""Evasion, content half streamed: every row of the content table (test_content.TABLE) that has a body goes
through the stream callable that inspects a streamed body (proxy.streamguard.FlowStream, installed by StreamGuard
as for an upload above `stream_large_bodies` and for a chunked download), in small chunks, with the built-in
profile. What the buffered inspectors find in a body, the streamed path must find too.

Each row runs its three cases (support.cases) in both directions: `evasion` and `plain` must be cut with an
incident naming the token's fingerprint (or, for rows that expect it, named unscannable) and what was forwarded
must hold the token in no decodable form (`leaked`); `wrong_checksum` must come out byte-identical (decoded,
when it had a Content-Encoding: a streamed body is forwarded decoded). The network and mitmproxy's framing are
not involved (tests/evasion/test_streamed_bodies.py runs the stream-specific rows through a real proxy).
"""

from __future__ import annotations

import io
import json
import typing

import pytest
from mitmproxy.test import taddons, tflow
from support import UNSCANNABLE, carries, cases, detector, token_for, wrong_checksum
from test_content import GAPS, TABLE

from dlproxy.engine.findings import fingerprint
from dlproxy.engine.profile import builtin_profile_path
from dlproxy.engine.vocab import Direction
from dlproxy.extract import Limits, extract_http
from dlproxy.extract.encoding import decode_content_encoding
from dlproxy.ops.incidents import IncidentLog
from dlproxy.ops.metrics import Metrics
from dlproxy.proxy import internals
from dlproxy.proxy.addon import ProfileState
from dlproxy.proxy.streamguard import FlowStream, StreamGuard

ROWS = [v for v in TABLE if v.build(token_for(v)).body]
PIECE = {"request": 7, "response": 5}

# Known gaps of the streamed path (case id -> reason): strict xfails, removed as each is closed.
_GAPS = {
    "b64-wrap-4": "base64 wrapped at fewer than 16 columns: a streamed base64 run joins wrapped lines of 16 or more",
    "b64-yaml-indented": "indented wrapped base64 (a YAML block scalar) in small chunks: the run restarts at each "
                         "line's indentation",
    "form-pct-double": "two levels of escapes (percent-encoded percent-escapes): the stream's escape view decodes one",
    "form-json-u-escaped": "two levels of escapes (percent-encoded JSON escapes): the stream's escape view decodes one",
    "multipart-gzip-part": "a compressed file inside a multipart part: multipart is not parsed as it streams (a large "
                           "upload stays streamed, not collected)",
    "git-receive-pack": "a packfile's objects are zlib streams at offsets: only the buffered extractor walks them",
    "hex-xxd-p-wrapped": "hex runs are decoded in buffered bodies only",
    **{row: "markup text joined across tags is read in buffered bodies only" for row in (
        "html-inline-tags-split", "html-bold-inside-prefix", "xml-text-nodes-split", "svg-tspan-split")},
}
STREAM_GAPS: dict[str, str] = {f"{row}-evasion-{direction}": reason for row, reason in _GAPS.items()
                               for direction in ("request", "response")}


def _params() -> list:
    out = []
    for direction in ("request", "response"):
        gaps = {case: reason for case, reason in GAPS.items() if any(case.startswith(v.id + "-") for v in ROWS)}
        gaps.update({case[:-len(direction) - 1]: reason for case, reason in STREAM_GAPS.items()
                     if case.endswith("-" + direction)})
        for p in cases(ROWS, gaps):
            out.append(pytest.param(*p.values, direction, id=f"{p.id}-{direction}", marks=p.marks))
    return out


class Streams:
    """A StreamGuard with the built-in profile whose streams run in-process."""

    def __init__(self, tctx, guard: StreamGuard, out: io.StringIO):
        self.tctx, self.guard, self.out = tctx, guard, out

    def incidents(self, since: int = 0) -> list[dict]:
        return [json.loads(x) for x in self.out.getvalue().splitlines()[since:] if x.strip()]

    def run(self, direction: str, headers, body: bytes, piece: int) -> tuple[bytes, bool]:
        """(what was forwarded, whether the stream was cut)."""
        f = tflow.tflow(resp=True)
        msg = f.request if direction == "request" else f.response
        msg.headers.clear()
        for k, v in headers:
            msg.headers.add(k, v)
        msg.headers["transfer-encoding"] = "chunked"
        msg.content = None
        self.guard.install(f, Direction.REQUEST if direction == "request" else Direction.RESPONSE)
        stream = msg.stream
        assert isinstance(stream, FlowStream), "the message was not streamed"
        out = []
        piece = max(piece, len(body) // 400)  # at most a few hundred chunks: large rows stay cheap
        for i in range(0, len(body), piece):
            out += stream(body[i:i + piece])
        out += stream(b"")
        return b"".join(out), stream.state == "cut"


@pytest.fixture(scope="module")
def streams():
    metrics = Metrics()
    out = io.StringIO()
    state = ProfileState(metrics)
    incidents = IncidentLog(metrics, stream=out)
    guard = StreamGuard(state, metrics, incidents)
    saved = internals.close_upstream
    internals.close_upstream = lambda flow: True
    try:
        with taddons.context(state, incidents, guard) as tctx:
            tctx.options.add_option("stream_large_bodies", typing.Optional[str], None, "")  # noqa: UP045
            tctx.configure(state, dlp_builtin=False, dlp_profile=[str(builtin_profile_path())])
            yield Streams(tctx, guard, out)
    finally:
        internals.close_upstream = saved


def leaked(out: bytes, token: str) -> bool:
    """The forwarded bytes hold the token: literally (its secret tail), in a form the buffered extractor decodes, or
    (for what is short enough to try them all, which is most of what a cut forwards) in any form support.carries
    knows."""
    if token[-8:].encode() in out:
        return True
    det = detector()
    segments = extract_http(url=None, headers=[], body=out, limits=Limits()).segments
    if any(fingerprint(token) == f.fingerprint for seg in segments for f in det.scan(seg.data)):
        return True
    return len(out) <= 1024 and carries(out, token.encode())


@pytest.mark.parametrize(("variant", "kind", "direction"), _params())
def test_content_row_streamed(streams, variant, kind, direction):
    token = token_for(variant)
    piece = PIECE[direction]
    if kind == "wrong_checksum":
        request = variant.build(wrong_checksum(token))
        out, cut = streams.run(direction, request.headers, request.body, piece)
        if variant.expect == UNSCANNABLE:
            assert cut, f"{variant.id}: expected unscannable"
            return
        assert not cut, f"{variant.id}: the wrong-checksum control was cut: {streams.incidents()[-1:]}"
        coding = {k.lower(): v for k, v in request.headers}.get("content-encoding")
        want = decode_content_encoding(request.body, coding, Limits()).data if coding else request.body
        assert out == want, f"{variant.id}: the body was modified"
        return
    request = (variant.build if kind == "evasion" else (variant.plain or variant.build))(token)
    mark = len(streams.incidents())
    out, cut = streams.run(direction, request.headers, request.body, piece)
    incidents = streams.incidents(mark)
    assert not leaked(out, token), f"{variant.id}: the token was forwarded"
    assert cut, f"{variant.id}: the stream was not cut"
    prints = {f["fingerprint"] for i in incidents for f in i.get("findings", [])}
    named = variant.expect == UNSCANNABLE and any(i.get("unscannable") for i in incidents)
    assert fingerprint(token) in prints or named, f"{variant.id}: no incident with the token: {incidents}"
    assert not any(token in json.dumps(i) or token[-8:] in json.dumps(i) for i in incidents)

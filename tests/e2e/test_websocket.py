"""WebSocket end to end: the `websockets` client through the forward proxy (`dlproxy run`) to a local websockets
server that records what it received and can push messages of its own.

Clean text and binary messages pass both ways (permessage-deflate on, as the libraries negotiate it). A message
carrying a token is not delivered and both sides see the connection close with code 1008 and a reason naming
the incident; the upstream never receives the secret. A token the peer sends split over several messages (plain
text, or the Realtime API's JSON `*.delta` events) closes the connection when it completes.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
import zlib

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import serve

from conftest import GHO, GHP

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class WSUpstream:
    """Echoes every message ("echo:" + text, or the bytes reversed); "push:<json list>" makes it send those."""

    def __init__(self):
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self.closes_by_path: dict[str, list[int | None]] = {}
        self.lock = threading.Lock()
        self.server = serve(self.handler, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True, name="ws-upstream").start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.socket.getsockname()[1]}/ws"

    def handler(self, ws) -> None:
        try:
            for message in ws:
                with self.lock:
                    self.received.append(message)
                if isinstance(message, bytes):
                    ws.send(message[::-1])
                elif message.startswith("push:"):
                    for item in json.loads(message[5:]):
                        ws.send(item)
                else:
                    ws.send("echo:" + message)
        except ConnectionClosed:
            pass
        with self.lock:
            self.close_codes.append(ws.close_code)
            self.closes_by_path.setdefault(ws.request.path, []).append(ws.close_code)

    def saw(self, secret: str) -> bool:
        with self.lock:
            return any(secret in (m if isinstance(m, str) else m.decode("latin-1")) for m in self.received)

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.close_codes.clear()


@pytest.fixture(scope="module")
def ws_upstream():
    server = WSUpstream()
    yield server
    server.server.shutdown()


@pytest.fixture
def wsup(ws_upstream) -> WSUpstream:
    ws_upstream.reset()
    return ws_upstream


def client(proxy, upstream: WSUpstream):
    return connect(upstream.url, proxy=proxy.url, open_timeout=10, close_timeout=5)


def closed_with(ws, timeout: float = 5) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as e:
        while True:
            ws.recv(timeout=timeout)
    return e.value


def test_clean_text_and_binary_pass_both_ways(proxy, wsup):
    with client(proxy, wsup) as ws:
        ws.send("hello through the proxy, gh and sk- and ghp_ are fine")
        assert ws.recv(timeout=5) == "echo:hello through the proxy, gh and sk- and ghp_ are fine"
        blob = b"\x00\x01\x02 binary ghp_ \xff"
        ws.send(blob)
        assert ws.recv(timeout=5) == blob[::-1]
        ws.send("push:" + json.dumps(["server says hi", "and again"]))
        assert ws.recv(timeout=5) == "server says hi" and ws.recv(timeout=5) == "and again"
        big = "lorem ipsum " * 20000
        ws.send(big)
        assert ws.recv(timeout=5) == "echo:" + big
    assert wsup.received[0].startswith("hello")


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_client_message_with_a_token_is_dropped_and_the_connection_closes_1008(proxy, wsup, binary):
    mark = proxy.mark()
    with client(proxy, wsup) as ws:
        ws.send("first, clean")
        assert ws.recv(timeout=5) == "echo:first, clean"
        payload = f"my token is {GHP}"
        ws.send(payload.encode() if binary else payload)
        e = closed_with(ws)
    assert e.rcvd is not None and e.rcvd.code == 1008
    (incident,) = proxy.incidents(since=mark, wait=5)
    assert incident["direction"] == "websocket" and incident["action"] == "block"
    assert incident["incident_id"] in e.rcvd.reason
    assert not wsup.saw(GHP) and not wsup.saw(GHP[:12])
    proxy.assert_no_leak(GHP)


def test_server_message_with_a_token_is_not_delivered(proxy, wsup):
    # (pushed one at a time: mitmproxy closes both TCP connections right after relaying a close frame, so a
    # message arriving at the client in the same instant can be lost to the client's own TCP reset)
    with client(proxy, wsup) as ws:
        ws.send("push:" + json.dumps(["before"]))
        assert ws.recv(timeout=5) == "before"
        ws.send("push:" + json.dumps([f"here: {GHP}", "after"]))
        e = closed_with(ws)
    assert e.rcvd is not None and e.rcvd.code == 1008 and "incident" in e.rcvd.reason


def test_upstream_sees_the_close_too(proxy, wsup):
    # a path of its own: an earlier test's connection may still be closing when this one starts
    path = f"/ws?close-test={uuid.uuid4().hex}"
    with connect(wsup.url.removesuffix("/ws") + path, proxy=proxy.url, open_timeout=10, close_timeout=5) as ws:
        ws.send(f"leak {GHP}")
        closed_with(ws)
    for _ in range(50):
        if wsup.closes_by_path.get(path):
            break
        threading.Event().wait(0.05)
    assert wsup.closes_by_path.get(path) == [1008]


def test_redact_action_rewrites_the_message(proxy, wsup):
    with client(proxy, wsup) as ws:
        ws.send(f"oauth={GHO};")
        assert ws.recv(timeout=5) == "echo:oauth=[REDACTED:github-oauth];"
    assert not wsup.saw(GHO)


def test_token_split_across_messages_closes_when_it_completes(proxy, wsup):
    with client(proxy, wsup) as ws:
        ws.send("token: " + GHP[:10])
        assert ws.recv(timeout=5) == "echo:token: " + GHP[:10]
        ws.send(GHP[10:] + " end")
        e = closed_with(ws)
    assert e.rcvd is not None and e.rcvd.code == 1008
    assert not wsup.saw(GHP[10:])  # the completing message never arrived: the upstream has no whole token


def test_realtime_style_json_deltas_are_reassembled(proxy, wsup):
    deltas = ["The key is ", GHP[:6], GHP[6:20], GHP[20:], " ok"]
    events = [json.dumps({"type": "response.output_text.delta", "item_id": "item_1", "output_index": 0,
                          "content_index": 0, "delta": d}) for d in deltas]
    got = []
    with client(proxy, wsup) as ws:
        ws.send("push:" + json.dumps(events))
        with pytest.raises(ConnectionClosed) as e:
            while True:
                got.append(json.loads(ws.recv(timeout=5))["delta"])
    assert e.value.rcvd is not None and e.value.rcvd.code == 1008
    assert GHP not in "".join(got)  # the client never holds the whole token
    assert ("The key is " + GHP[:20]).startswith("".join(got))  # the deltas before the completing one, at most


@pytest.mark.parametrize("encode", [
    lambda t: zlib.compress(f"token {t}".encode()),  # pako.deflate
    lambda t: gzip.compress(f"token {t}".encode()),  # pako.gzip
    lambda t: json.dumps({"log": "x\n" + t}),  # a JSON escape glued to the token
    lambda t: base64.b64encode(f"token {t}\n".encode()).decode(),
], ids=["deflate", "gzip", "json_escape", "base64"])
def test_encoded_token_in_a_message_is_dropped(proxy, wsup, encode):
    with client(proxy, wsup) as ws:
        ws.send(encode(GHP))
        e = closed_with(ws)
    assert e.rcvd is not None and e.rcvd.code == 1008
    assert wsup.received == [] or all(GHP[-10:] not in str(m) for m in wsup.received)
    proxy.assert_no_leak(GHP)


def test_token_one_character_per_message_closes_before_it_can_be_rebuilt(proxy, wsup):
    sent = ""
    with client(proxy, wsup) as ws:
        try:
            for c in "key " + GHP:
                ws.send(c)
                assert ws.recv(timeout=5) == "echo:" + c
                sent += c
        except ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1008
    got = "".join(m for m in wsup.received if isinstance(m, str))
    assert got.startswith("key ghp_") and len(got) < len("key ghp_") + 8  # 30 random characters needed: not there

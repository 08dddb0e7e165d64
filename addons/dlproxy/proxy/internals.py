"""Every use of mitmproxy's private API, in one place. mitmproxy is pinned to 12.3.x; tests/test_stream_guard.py
and tests/test_dispatch.py pin what these functions rely on, so an upgrade breaks a test, not the proxy.

    swap_addon_manager  turn the master's AddonManager into a subclass, in place (hookindex.IndexedAddonManager)
    close_upstream      close a flow's upstream connection from inside a stream callable (a block mid-stream)
    close_websocket     have the WebSocket layer close both sides with a code and a reason
    proxy_listening     is the proxy server up and listening (/readyz)
    carry_http1_trailers  teach mitmproxy's HTTP/1 layer to read and write chunked trailers (process-wide)

Why they are needed: mitmproxy ignores `flow.kill()` while a body streams and for WebSocket messages, and has no
public API for a close frame; its public API neither says whether the proxy server listens. Its HTTP/1 layer
raises on a chunked trailer section it receives (NotImplementedError: the connection hangs, the message is never
inspected) and on trailers it should send to an HTTP/1 peer (AssertionError: the same).
"""

from __future__ import annotations

import asyncio
import struct

import h11
from mitmproxy import addonmanager, ctx, http

POLICY_VIOLATION = 1008  # WebSocket close code
MAX_REASON = 123  # bytes: a close frame's payload is at most 125, two of them the code

_tasks: set[asyncio.Task] = set()


def swap_addon_manager(manager: addonmanager.AddonManager, cls: type) -> None:
    """Make `manager` an instance of `cls` (a subclass adding no state but what it creates lazily): the same
    object, so every reference to it (master, commands, options signals) stays valid."""
    if type(manager) is not addonmanager.AddonManager:
        raise TypeError(f"expected mitmproxy's AddonManager, not {type(manager).__name__}")
    manager.__class__ = cls


def _proxyserver():
    return ctx.master.addons.get("proxyserver")


def _connection_handler(flow: http.HTTPFlow):
    """The ConnectionHandler serving this flow's client: `Proxyserver.connections[client id]`."""
    ps = _proxyserver()
    return ps.connections.get(flow.client_conn.id) if ps is not None else None


def close_upstream(flow: http.HTTPFlow) -> bool:
    """Close the flow's upstream connection now; safe from inside a stream callable. The handler's
    `close_connection(conn)` marks the connection closed and cancels its reader task: the upstream stops
    generating, an HTTP/1 client sees the body end early, an HTTP/2 client sees only this stream reset."""
    handler = _connection_handler(flow)
    conn = flow.server_conn
    if handler is None or conn is None or conn not in handler.transports:
        return False
    handler.close_connection(conn)
    return True


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked (server-to-client) close frame."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")[:MAX_REASON]
    return bytes([0x88, len(payload)]) + payload


def close_websocket(flow: http.HTTPFlow, code: int, reason: str) -> bool:
    """Have mitmproxy's WebSocket layer close both sides with `code` and `reason`.

    The layer is fed a close frame *as if the upstream had sent it* (a `DataReceived` event for the server
    connection, through the handler's `server_event`: the path `inject.websocket` uses). It then runs its own
    close handling: close(code, reason) to the client, echoed to the upstream, both connections closed,
    `websocket_end` fired."""
    from mitmproxy.proxy import events

    handler = _connection_handler(flow)
    if handler is None or flow.server_conn is None:
        return False
    event = events.DataReceived(flow.server_conn, close_frame(code, reason))
    task = asyncio.get_running_loop().create_task(handler.server_event(event), name="dlp-websocket-close")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return True


class _TrailerKeepingReader:
    """h11's ChunkedReader, with a trailer section handed back apart: mitmproxy's HTTP/1 layer raises on an
    end of message that carries headers, so they are taken off it and kept for `_read_body` to deliver.
    Called for every piece of a chunked body: the check is a type identity (h11's events are ABCs, whose
    isinstance is slow), and h11 never subclasses EndOfMessage."""

    __slots__ = ("reader", "trailers")

    def __init__(self, reader):
        self.reader = reader
        self.trailers: http.Headers | None = None

    def __call__(self, buf):
        event = self.reader(buf)
        if type(event) is h11.EndOfMessage and event.headers:
            self.trailers = http.Headers(list(event.headers.raw_items()))
            return h11.EndOfMessage()
        return event

    def read_eof(self):
        return self.reader.read_eof()


def carry_http1_trailers() -> None:
    """Make mitmproxy's HTTP/1 layer carry chunked trailers like its HTTP/2 layer does; idempotent.

    Reading: the trailer section becomes a RequestTrailers/ResponseTrailers event just before the end of the
    message, so mitmproxy stores it as `flow.request.trailers`/`flow.response.trailers` before the `request`/
    `response` hook (buffered) or the stream callable's final call (streamed), where dlproxy inspects it.
    Writing: trailers for an HTTP/1 peer go into the last chunk of a chunked message; a message that is not
    chunked (an HTTP/2 request without a length, re-sent as HTTP/1) has no place for them: they are dropped.
    The chunks of a chunked body that arrive in one read become one data event (see _read_body_keeping)."""
    from mitmproxy.proxy import commands
    from mitmproxy.proxy.layers.http import _http1
    from mitmproxy.proxy.layers.http._base import ReceiveHttp
    from mitmproxy.proxy.layers.http._events import (
        RequestData,
        RequestEndOfMessage,
        RequestTrailers,
        ResponseData,
        ResponseEndOfMessage,
        ResponseTrailers,
    )

    if getattr(_http1, "dlp_trailers", False):
        return
    make_reader = _http1.make_body_reader
    read_body = _http1.Http1Connection.read_body

    def make_body_reader(expected_size):
        reader = make_reader(expected_size)
        return _TrailerKeepingReader(reader) if expected_size is None else reader

    # Both wrappers run for every piece of a body: what cannot concern trailers goes to mitmproxy's own
    # generator as it is, without a generator of ours around it.
    def read_body_with_trailers(self, event):
        reader = self.body_reader
        if type(reader) is not _TrailerKeepingReader:
            return read_body(self, event)
        return _read_body_keeping(self, event, reader)

    def _read_body_keeping(self, event, reader):
        """read_body, with the trailers before the end of the message, and the body bytes of one read as one
        data event: h11 returns a chunked body chunk by chunk, and each data event costs mitmproxy (and a stream
        callable) as much again whatever its size, while chunk boundaries mean nothing to HTTP."""
        data_event = self.ReceiveData
        pieces: list[bytes] = []
        for command in read_body(self, event):
            if type(command) is ReceiveHttp and type(command.event) is data_event:
                pieces.append(command.event.data)
                continue
            if pieces:
                yield _joined(self, pieces)
                pieces = []
            if reader.trailers is not None and isinstance(command, ReceiveHttp) and \
                    isinstance(command.event, self.ReceiveEndOfMessage):
                kind = RequestTrailers if isinstance(self, _http1.Http1Server) else ResponseTrailers
                trailers, reader.trailers = reader.trailers, None
                yield ReceiveHttp(kind(command.event.stream_id, trailers))
            yield command
        if pieces:
            yield _joined(self, pieces)

    def _joined(self, pieces: list[bytes]):
        return ReceiveHttp(self.ReceiveData(self.stream_id, pieces[0] if len(pieces) == 1 else b"".join(pieces)))

    body_events = (RequestData, ResponseData)

    def sending_trailers(send):
        def send_with_trailers(self, event):
            if type(event) in body_events:
                return send(self, event)
            return _send_keeping(self, event)

        def _send_keeping(self, event):
            if isinstance(event, (RequestTrailers, ResponseTrailers)):
                self.dlp_trailers = event.trailers  # written with the last chunk, at the end of the message
                return
            trailers = None
            if isinstance(event, (RequestEndOfMessage, ResponseEndOfMessage)):
                trailers, self.dlp_trailers = getattr(self, "dlp_trailers", None), None
            for command in send(self, event):
                if trailers and isinstance(command, commands.SendData) and command.data == LAST_CHUNK:
                    command = commands.SendData(command.connection, b"0\r\n" + bytes(trailers) + b"\r\n")
                yield command
        return send_with_trailers

    _http1.make_body_reader = make_body_reader
    _http1.Http1Connection.read_body = read_body_with_trailers
    _http1.Http1Server.send = sending_trailers(_http1.Http1Server.send)
    _http1.Http1Client.send = sending_trailers(_http1.Http1Client.send)
    _http1.dlp_trailers = True


LAST_CHUNK = b"0\r\n\r\n"


def proxy_listening() -> str:
    """"" when mitmproxy's proxy server runs and listens, else why not (for /readyz)."""
    ps = _proxyserver()
    if ps is None or not ps.is_running:
        return "proxy not running"
    try:
        if not ps.listen_addrs():
            return "proxy not listening"
    except Exception:  # a server instance in an odd state: not ready, never a 500
        return "proxy not listening"
    return ""
